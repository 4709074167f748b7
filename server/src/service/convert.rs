//! Wire ↔ domain conversions of the Streams service. Every malformed
//! request is turned into an INVALID_ARGUMENT status here, before the
//! engine sees it.

use std::time::Duration;

use strata_proto::v1;
use tonic::Status;

use crate::store::{
    AppendOutcome, AppendRequest, Direction, EventId, ExpectedVersion, Filter, MultiAppendOutcome,
    MultiAppendRequest, NewEvent, ReadFrom, RecordedEvent, StreamCheck, SubscribeFrom,
    SubscriptionTarget,
};

/// The name that addresses the global log where a stream name is expected.
pub const ALL: &str = "$all";

fn invalid(msg: impl Into<String>) -> Status {
    Status::invalid_argument(msg.into())
}

/// An append request from the wire.
pub fn append_request(req: v1::AppendRequest) -> Result<AppendRequest, Status> {
    let expected = expected_from_wire(req.expected)?;
    let events = req
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| event_from_wire(i, e))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppendRequest {
        stream: req.stream,
        expected,
        events,
    })
}

/// A multi-append request from the wire.
pub fn multi_append_request(req: v1::MultiAppendRequest) -> Result<MultiAppendRequest, Status> {
    let appends = req
        .appends
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            append_request(a).map_err(|s| invalid(format!("append {i}: {}", s.message())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let checks = req
        .checks
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            Ok(StreamCheck {
                stream: c.stream,
                expected: expected_from_wire(c.expected)
                    .map_err(|s| invalid(format!("check {i}: {}", s.message())))?,
            })
        })
        .collect::<Result<Vec<_>, Status>>()?;
    Ok(MultiAppendRequest { appends, checks })
}

/// A multi-append answer for the wire.
pub fn multi_outcome_to_wire(o: MultiAppendOutcome) -> v1::MultiAppendResponse {
    use v1::multi_append_response::{
        AppendResult, Conflict, Result as R, Success, WrongExpectedVersion,
    };
    let result = match o {
        MultiAppendOutcome::Success { results, position } => R::Success(Success {
            results: results
                .into_iter()
                .map(|r| AppendResult {
                    stream: r.stream,
                    next_expected_revision: r.next_expected_revision,
                    position: r.position,
                })
                .collect(),
            position,
        }),
        MultiAppendOutcome::WrongExpectedVersion { conflicts } => {
            R::WrongExpectedVersion(WrongExpectedVersion {
                conflicts: conflicts
                    .into_iter()
                    .map(|c| Conflict {
                        stream: c.stream,
                        current_revision: c.current_revision,
                        expected: Some(expected_to_wire(c.expected)),
                    })
                    .collect(),
            })
        }
    };
    v1::MultiAppendResponse {
        result: Some(result),
    }
}

fn event_from_wire(i: usize, e: v1::EventData) -> Result<NewEvent, Status> {
    let id =
        e.id.as_ref()
            .ok_or_else(|| invalid(format!("event {i}: id is missing")))?
            .to_bytes()
            .map_err(|err| invalid(format!("event {i}: bad id: {err}")))?;
    Ok(NewEvent {
        id: EventId(id),
        event_type: e.r#type,
        data: e.data,
        metadata: e.metadata,
        content_type: e.content_type.filter(|c| !c.is_empty()),
    })
}

/// An expected version from the wire; unset is an error.
pub fn expected_from_wire(e: Option<v1::ExpectedVersion>) -> Result<ExpectedVersion, Status> {
    use v1::expected_version::Kind;
    match e.and_then(|e| e.kind) {
        Some(Kind::Any(())) => Ok(ExpectedVersion::Any),
        Some(Kind::NoStream(())) => Ok(ExpectedVersion::NoStream),
        Some(Kind::StreamExists(())) => Ok(ExpectedVersion::StreamExists),
        Some(Kind::Exact(r)) => Ok(ExpectedVersion::Exact(r)),
        None => Err(invalid(
            "expected is required: one of any, no_stream, stream_exists or exact",
        )),
    }
}

/// An expected version for the wire.
pub fn expected_to_wire(e: ExpectedVersion) -> v1::ExpectedVersion {
    match e {
        ExpectedVersion::Any => v1::ExpectedVersion::any(),
        ExpectedVersion::NoStream => v1::ExpectedVersion::no_stream(),
        ExpectedVersion::StreamExists => v1::ExpectedVersion::stream_exists(),
        ExpectedVersion::Exact(r) => v1::ExpectedVersion::exact(r),
    }
}

/// An append answer for the wire.
pub fn outcome_to_wire(o: AppendOutcome) -> v1::AppendResponse {
    use v1::append_response::{Result as R, Success, WrongExpectedVersion};
    let result = match o {
        AppendOutcome::Success {
            next_expected_revision,
            position,
        } => R::Success(Success {
            next_expected_revision,
            position,
        }),
        AppendOutcome::WrongExpectedVersion {
            current_revision,
            expected,
        } => R::WrongExpectedVersion(WrongExpectedVersion {
            current_revision,
            expected: Some(expected_to_wire(expected)),
        }),
    };
    v1::AppendResponse {
        result: Some(result),
    }
}

/// A stored event for the wire.
pub fn event_to_wire(e: &RecordedEvent) -> v1::RecordedEvent {
    let micros = e.recorded_at_micros;
    v1::RecordedEvent {
        stream: e.stream.to_string(),
        revision: e.revision,
        position: e.position,
        id: Some(v1::Uuid::from_bytes(e.id.0)),
        r#type: e.event_type.clone(),
        data: e.data.clone(),
        metadata: e.metadata.clone(),
        content_type: e.content_type.clone().unwrap_or_default(),
        recorded_at: Some(timestamp_from_micros(micros)),
    }
}

/// A duration from the wire; a negative or malformed one (named `field`
/// in the error) is invalid.
pub fn duration_from_wire(d: prost_types::Duration, field: &str) -> Result<Duration, Status> {
    let seconds = u64::try_from(d.seconds)
        .map_err(|_| Status::invalid_argument(format!("{field} must not be negative")))?;
    let nanos = u32::try_from(d.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| {
            Status::invalid_argument(format!("{field}.nanos must be in 0..1000000000"))
        })?;
    Ok(Duration::new(seconds, nanos))
}

/// A time in microseconds since the Unix epoch as a protobuf `Timestamp`.
pub fn timestamp_from_micros(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// What a read or subscription addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// One stream.
    Stream(String),
    /// `$all`.
    All,
}

/// A wire filter as the store's.
pub fn filter_from_wire(f: v1::Filter) -> Filter {
    Filter {
        stream_prefixes: f.stream_prefix,
        event_type_prefixes: f.event_type_prefix,
        gate: None,
    }
}

fn target_from_wire(
    stream: Option<String>,
    is_all: bool,
    filter: Option<v1::Filter>,
) -> Result<(Target, Filter), Status> {
    let filter = filter.map(filter_from_wire).unwrap_or_default();
    let target = match (stream, is_all) {
        (Some(s), _) if s == ALL => Target::All,
        (Some(s), _) => Target::Stream(s),
        (None, true) => Target::All,
        (None, false) => return Err(invalid("target is required: a stream name or all")),
    };
    if let Target::Stream(name) = &target {
        if !filter.is_empty() {
            return Err(invalid("filter applies only to $all"));
        }
        crate::store::validate_stream_name(name).map_err(|e| invalid(e.to_string()))?;
    }
    Ok((target, filter))
}

/// A read request in domain terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadParams {
    /// Stream or `$all`.
    pub target: Target,
    /// Direction.
    pub direction: Direction,
    /// Inclusive start.
    pub from: ReadFrom,
    /// 0 = no limit.
    pub max_count: u64,
    /// `$all` filter (empty for streams).
    pub filter: Filter,
}

/// A read request from the wire.
pub fn read_request(req: v1::ReadRequest) -> Result<ReadParams, Status> {
    use v1::read_from::Kind;
    use v1::read_request::Target as T;
    let direction = match v1::Direction::try_from(req.direction) {
        Ok(v1::Direction::Forwards) => Direction::Forwards,
        Ok(v1::Direction::Backwards) => Direction::Backwards,
        Err(_) => return Err(invalid(format!("unknown direction {}", req.direction))),
    };
    let (stream, is_all) = match req.target {
        Some(T::Stream(s)) => (Some(s), false),
        Some(T::All(_)) => (None, true),
        None => (None, false),
    };
    let (target, filter) = target_from_wire(stream, is_all, req.filter)?;
    let from = match (req.from.and_then(|f| f.kind), &target) {
        (None, _) => match direction {
            Direction::Forwards => ReadFrom::Start,
            Direction::Backwards => ReadFrom::End,
        },
        (Some(Kind::Start(())), _) => ReadFrom::Start,
        (Some(Kind::End(())), _) => ReadFrom::End,
        (Some(Kind::Revision(r)), Target::Stream(_)) => ReadFrom::At(r),
        (Some(Kind::Position(p)), Target::All) => ReadFrom::At(p),
        (Some(Kind::Revision(_)), Target::All) => {
            return Err(invalid(
                "from.revision applies to streams; use from.position for $all",
            ))
        }
        (Some(Kind::Position(_)), Target::Stream(_)) => {
            return Err(invalid(
                "from.position applies to $all; use from.revision for a stream",
            ))
        }
    };
    Ok(ReadParams {
        target,
        direction,
        from,
        max_count: req.max_count,
        filter,
    })
}

/// A subscribe request from the wire.
pub fn subscribe_request(
    req: v1::SubscribeRequest,
) -> Result<(SubscriptionTarget, SubscribeFrom), Status> {
    use v1::subscribe_from::Kind;
    use v1::subscribe_request::Target as T;
    let (stream, is_all) = match req.target {
        Some(T::Stream(s)) => (Some(s), false),
        Some(T::All(_)) => (None, true),
        None => (None, false),
    };
    let (target, filter) = target_from_wire(stream, is_all, req.filter)?;
    let from = match (req.from.and_then(|f| f.kind), &target) {
        (None, _) | (Some(Kind::Start(())), _) => SubscribeFrom::Start,
        (Some(Kind::End(())), _) => SubscribeFrom::End,
        (Some(Kind::AfterRevision(r)), Target::Stream(_)) => SubscribeFrom::After(r),
        (Some(Kind::AfterPosition(p)), Target::All) => SubscribeFrom::After(p),
        (Some(Kind::AfterRevision(_)), Target::All) => {
            return Err(invalid(
                "from.after_revision applies to streams; use from.after_position for $all",
            ))
        }
        (Some(Kind::AfterPosition(_)), Target::Stream(_)) => {
            return Err(invalid(
                "from.after_position applies to $all; use from.after_revision for a stream",
            ))
        }
    };
    let target = match target {
        Target::Stream(s) => SubscriptionTarget::Stream(s),
        Target::All => SubscriptionTarget::All(filter),
    };
    Ok((target, from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn event(id: Option<v1::Uuid>) -> v1::EventData {
        v1::EventData {
            id,
            r#type: "T".into(),
            data: Bytes::from_static(b"{}"),
            metadata: Bytes::new(),
            content_type: Some("application/json".into()),
        }
    }

    #[test]
    fn append_conversion() {
        let ok = append_request(v1::AppendRequest {
            stream: "s".into(),
            expected: Some(v1::ExpectedVersion::exact(3)),
            events: vec![event(Some(v1::Uuid::from_bytes([1; 16])))],
        })
        .expect("valid");
        assert_eq!(ok.expected, ExpectedVersion::Exact(3));
        assert_eq!(ok.events[0].id, EventId([1; 16]));
        assert_eq!(
            ok.events[0].content_type.as_deref(),
            Some("application/json")
        );

        let no_expected = append_request(v1::AppendRequest {
            stream: "s".into(),
            expected: None,
            events: vec![event(Some(v1::Uuid::from_bytes([1; 16])))],
        });
        assert_eq!(
            no_expected.expect_err("unset expected").code(),
            tonic::Code::InvalidArgument
        );

        let no_id = append_request(v1::AppendRequest {
            stream: "s".into(),
            expected: Some(v1::ExpectedVersion::any()),
            events: vec![event(None)],
        });
        assert!(no_id
            .expect_err("missing id")
            .message()
            .contains("id is missing"));

        let bad_id = append_request(v1::AppendRequest {
            stream: "s".into(),
            expected: Some(v1::ExpectedVersion::any()),
            events: vec![event(Some(v1::Uuid {
                value: Some(v1::uuid::Value::Text("nope".into())),
            }))],
        });
        assert_eq!(
            bad_id.expect_err("bad id").code(),
            tonic::Code::InvalidArgument
        );
    }

    #[test]
    fn read_conversion() {
        let r = read_request(v1::ReadRequest {
            target: Some(v1::read_request::Target::Stream("s".into())),
            direction: 1,
            from: None,
            max_count: 0,
            filter: None,
        })
        .expect("valid");
        assert_eq!(r.from, ReadFrom::End);
        assert!(read_request(v1::ReadRequest {
            direction: 9,
            ..Default::default()
        })
        .is_err());
        assert!(
            read_request(v1::ReadRequest::default()).is_err(),
            "target unset"
        );
        let mismatched = read_request(v1::ReadRequest {
            target: Some(v1::read_request::Target::All(v1::AllTarget {})),
            from: Some(v1::ReadFrom::revision(3)),
            ..Default::default()
        });
        assert!(mismatched.is_err());
        let filtered_stream = read_request(v1::ReadRequest {
            target: Some(v1::read_request::Target::Stream("s".into())),
            filter: Some(v1::Filter {
                stream_prefix: vec!["a".into()],
                event_type_prefix: vec![],
            }),
            ..Default::default()
        });
        assert!(filtered_stream.is_err());
    }

    #[test]
    fn timestamps_convert_exactly() {
        let e = RecordedEvent {
            stream: "s".into(),
            revision: 0,
            position: 0,
            id: EventId([0; 16]),
            event_type: "T".into(),
            data: Bytes::new(),
            metadata: Bytes::new(),
            content_type: None,
            recorded_at_micros: 1_700_000_000_123_456,
        };
        let w = event_to_wire(&e);
        let ts = w.recorded_at.expect("timestamp");
        assert_eq!((ts.seconds, ts.nanos), (1_700_000_000, 123_456_000));
        assert_eq!(w.content_type, "");
    }
}
