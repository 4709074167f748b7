//! KurrentDB wire ↔ store conversions: stream names, UUIDs, expected
//! versions, and events with their system metadata map.
//!
//! - UUIDs: requests may carry either form; answers use the form the read
//!   asked for (`structured` by default: the UUID's first and last 8 bytes
//!   as big-endian signed integers, or the hyphenated lower-case `string`).
//! - System metadata: `type` is the event type, `content-type` the content
//!   type (`application/octet-stream` for an event written without one),
//!   `created` the time it was recorded in 100 ns ticks since the Unix
//!   epoch, in decimal, as KurrentDB writes it and its clients read it.

use std::collections::HashMap;

use bytes::Bytes;
use strata_proto::kurrentdb::shared::{self, uuid, StreamIdentifier};
use strata_proto::kurrentdb::streams::read_req::options::uuid_option::Content as UuidForm;
use strata_proto::kurrentdb::streams::read_resp::{read_event, ReadEvent};
use tonic::Status;

use super::position;
use super::{errors, metadata};
use crate::store::{EventId, ExpectedVersion, NewEvent, RecordedEvent};

/// The metadata key of the event type.
pub(super) const TYPE: &str = "type";
/// The metadata key of the content type.
pub(super) const CONTENT_TYPE: &str = "content-type";
/// The metadata key of the recording time.
pub(super) const CREATED: &str = "created";
/// The content type of an event written without one.
pub(super) const OCTET_STREAM: &str = "application/octet-stream";

/// A stream name from the wire (UTF-8 bytes).
pub(super) fn stream_name(id: Option<StreamIdentifier>) -> Result<String, Status> {
    let id = id.ok_or_else(|| Status::invalid_argument("stream_identifier is required"))?;
    String::from_utf8(id.stream_name)
        .map_err(|_| Status::invalid_argument("the stream name is not valid UTF-8"))
}

/// A stream name for the wire.
pub(super) fn stream_identifier(name: &str) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: name.as_bytes().to_vec(),
    }
}

/// A UUID from the wire, in either form.
pub(super) fn uuid_from_wire(id: Option<shared::Uuid>) -> Result<[u8; 16], Status> {
    match id.and_then(|u| u.value) {
        Some(uuid::Value::Structured(s)) => Ok(::uuid::Uuid::from_u64_pair(
            s.most_significant_bits as u64,
            s.least_significant_bits as u64,
        )
        .into_bytes()),
        Some(uuid::Value::String(s)) => ::uuid::Uuid::parse_str(&s)
            .map(|u| u.into_bytes())
            .map_err(|e| Status::invalid_argument(format!("bad UUID '{s}': {e}"))),
        None => Err(Status::invalid_argument("the event id is missing")),
    }
}

/// A UUID for the wire, in the form a read asked for.
pub(super) fn uuid_to_wire(bytes: [u8; 16], form: Option<UuidForm>) -> shared::Uuid {
    let id = ::uuid::Uuid::from_bytes(bytes);
    let value = match form {
        Some(UuidForm::String(_)) => uuid::Value::String(id.hyphenated().to_string()),
        _ => {
            let (most, least) = id.as_u64_pair();
            uuid::Value::Structured(uuid::Structured {
                most_significant_bits: most as i64,
                least_significant_bits: least as i64,
            })
        }
    };
    shared::Uuid { value: Some(value) }
}

/// KurrentDB's number for an expected version, as its error trailers carry
/// it (`-2` any, `-1` no stream, `-4` stream exists).
pub(super) fn expected_number(e: ExpectedVersion) -> i64 {
    match e {
        ExpectedVersion::Any => -2,
        ExpectedVersion::NoStream => -1,
        ExpectedVersion::StreamExists => -4,
        ExpectedVersion::Exact(r) => r as i64,
    }
}

/// An event to append from its wire parts. `type` and `content-type` are
/// required, as KurrentDB requires them.
pub(super) fn proposed_event(
    id: Option<shared::Uuid>,
    mut metadata: HashMap<String, String>,
    custom_metadata: Bytes,
    data: Bytes,
) -> Result<NewEvent, Status> {
    let id = uuid_from_wire(id)?;
    let event_type = metadata
        .remove(TYPE)
        .ok_or_else(|| errors::missing_metadata(TYPE))?;
    let content_type = metadata
        .remove(CONTENT_TYPE)
        .ok_or_else(|| errors::missing_metadata(CONTENT_TYPE))?;
    Ok(NewEvent {
        id: EventId(id),
        event_type,
        data,
        metadata: custom_metadata,
        content_type: Some(content_type).filter(|c| !c.is_empty()),
    })
}

/// 100 ns ticks since the Unix epoch of a time in microseconds since it.
pub(super) fn ticks_from_micros(micros: i64) -> i64 {
    micros.saturating_mul(10)
}

/// A stored event as KurrentDB's clients read it.
pub(super) fn read_event(e: &RecordedEvent, form: Option<UuidForm>) -> ReadEvent {
    let wire = position::to_wire(e.position);
    let metadata = HashMap::from([
        (TYPE.to_owned(), e.event_type.clone()),
        (
            CONTENT_TYPE.to_owned(),
            e.content_type
                .clone()
                .unwrap_or_else(|| OCTET_STREAM.into()),
        ),
        (
            CREATED.to_owned(),
            ticks_from_micros(e.recorded_at_micros).to_string(),
        ),
    ]);
    ReadEvent {
        event: Some(read_event::RecordedEvent {
            id: Some(uuid_to_wire(e.id.0, form)),
            stream_identifier: Some(stream_identifier(&e.stream)),
            stream_revision: e.revision,
            prepare_position: wire,
            commit_position: wire,
            metadata,
            custom_metadata: e.metadata.clone(),
            data: metadata::shown_data(&e.stream, &e.event_type, &e.data)
                .map_or_else(|| e.data.clone(), Bytes::from),
        }),
        link: None,
        position: Some(read_event::Position::CommitPosition(wire)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_convert_both_ways_in_both_forms() {
        let text = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let bytes = *::uuid::Uuid::parse_str(text).expect("uuid").as_bytes();
        let structured = uuid_to_wire(bytes, None);
        let string = uuid_to_wire(bytes, Some(UuidForm::String(shared::Empty {})));
        assert_eq!(
            string.value,
            Some(uuid::Value::String(text.to_owned())),
            "hyphenated lower case"
        );
        match &structured.value {
            Some(uuid::Value::Structured(s)) => {
                assert_eq!(s.most_significant_bits as u64, 0x0f8fad5bd9cb469f);
                assert_eq!(s.least_significant_bits as u64, 0xa16570867728950e);
            }
            other => panic!("not structured: {other:?}"),
        }
        assert_eq!(uuid_from_wire(Some(structured)).expect("structured"), bytes);
        assert_eq!(uuid_from_wire(Some(string)).expect("string"), bytes);
        assert!(uuid_from_wire(None).is_err());
    }

    #[test]
    fn created_is_in_ticks_since_the_unix_epoch() {
        assert_eq!(
            ticks_from_micros(1_700_000_000_123_456),
            17_000_000_001_234_560
        );
    }

    #[test]
    fn type_and_content_type_are_required() {
        let id = Some(uuid_to_wire([7; 16], None));
        let only_type = HashMap::from([(TYPE.to_owned(), "T".to_owned())]);
        let err = proposed_event(id.clone(), only_type, Bytes::new(), Bytes::new())
            .expect_err("no content type");
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let both = HashMap::from([
            (TYPE.to_owned(), "T".to_owned()),
            (CONTENT_TYPE.to_owned(), "application/json".to_owned()),
        ]);
        let e = proposed_event(id, both, Bytes::new(), Bytes::from_static(b"{}")).expect("valid");
        assert_eq!(e.event_type, "T");
        assert_eq!(e.content_type.as_deref(), Some("application/json"));
    }
}
