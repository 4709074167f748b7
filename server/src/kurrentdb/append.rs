//! `Streams.Append` (client streaming): the options first, then one
//! proposed message per event; one atomic store append once the client
//! half-closes (or UNAVAILABLE, if the server shuts down first). A
//! conflict is answered in-band, as KurrentDB does, with
//! both the current fields and the EventStoreDB 20.6.0 ones filled in.

use strata_proto::kurrentdb::streams::append_req::{self, options::ExpectedStreamRevision};
use strata_proto::kurrentdb::streams::append_resp::{
    self, success, wrong_expected_version as wev, Success, WrongExpectedVersion,
};
use strata_proto::kurrentdb::streams::{AppendReq, AppendResp};
use tokio::sync::watch;
use tonic::{Status, Streaming};

use super::{convert, errors, metadata, position, stopped, KurrentStreams, EMPTY};
use crate::auth::{Caller, StreamOp};
use crate::store::{
    AppendError, AppendOutcome, AppendRequest, ExpectedVersion, LifecycleOutcome, LifecycleRequest,
    NewEvent,
};

pub(super) async fn handle(
    svc: &KurrentStreams,
    caller: &Caller,
    mut requests: Streaming<AppendReq>,
) -> Result<AppendResp, Status> {
    // A client that never half-closes does not hold shutdown up.
    let mut shutdown = svc.shutdown.clone();
    let options = match next(&mut requests, &mut shutdown)
        .await?
        .and_then(|r| r.content)
    {
        Some(append_req::Content::Options(o)) => o,
        _ => {
            return Err(Status::invalid_argument(
                "an append starts with its options",
            ))
        }
    };
    let stream = convert::stream_name(options.stream_identifier)?;
    let expected = expected_from_wire(options.expected_stream_revision)?;
    svc.allow(caller, StreamOp::Write, &stream)?;

    let mut events = Vec::new();
    let mut bytes = 0u64;
    while let Some(message) = next(&mut requests, &mut shutdown).await? {
        let Some(append_req::Content::ProposedMessage(m)) = message.content else {
            return Err(Status::invalid_argument(
                "after the options, an append carries only proposed messages",
            ));
        };
        bytes += (m.data.len() + m.custom_metadata.len()) as u64;
        // The store counts more than this and would refuse the append
        // anyway: stop buffering.
        if bytes > svc.max_append_bytes {
            return Err(errors::from_append(
                &stream,
                crate::store::AppendError::TooLarge {
                    what: "append",
                    actual: bytes,
                    limit: svc.max_append_bytes,
                    setting: "max-append-bytes",
                },
            ));
        }
        events.push(convert::proposed_event(
            m.id,
            m.metadata,
            m.custom_metadata,
            m.data,
        )?);
    }
    Ok(match write(svc, &stream, expected, events).await? {
        Written::Done { revision, position } => success(revision, position),
        Written::Conflict { current, expected } => conflict(current, expected),
    })
}

/// What an append did.
pub(super) enum Written {
    /// Written (or nothing to write): the stream's revision, the last
    /// event's position.
    Done {
        revision: Option<u64>,
        position: Option<u64>,
    },
    /// The expected version did not hold; nothing was written.
    Conflict {
        current: Option<u64>,
        expected: ExpectedVersion,
    },
}

/// Appends `events` to `stream` (checked already), or sets the metadata
/// when `stream` is a `$$` stream; shared by `Append` and `BatchAppend`.
pub(super) async fn write(
    svc: &KurrentStreams,
    stream: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Written, Status> {
    if let Some(of) = metadata::target(stream) {
        return set_metadata(svc, stream, of, expected, events).await;
    }
    if events.is_empty() {
        return empty_append(svc, stream, expected);
    }
    // KurrentDB recreates a soft-deleted stream for an append that expects
    // its last revision, as for one that expects no stream; the store asks
    // for the latter (and checks it again: a stream recreated in between
    // is a conflict).
    let asked = match expected {
        ExpectedVersion::Exact(r) if svc.store.deleted_at(stream).ok().flatten() == Some(r) => {
            ExpectedVersion::NoStream
        }
        e => e,
    };
    let appended = svc
        .store
        .append(AppendRequest {
            stream: stream.to_owned(),
            expected: asked,
            events,
        })
        .await;
    let mut outcome = match appended {
        Ok(outcome) => outcome,
        // Strata's ids are unique across the store; KurrentDB checks the
        // expectation first. When it does not hold, answer the conflict it
        // would answer.
        Err(e @ AppendError::DuplicateEventId { .. }) => {
            let current = svc.store.stream_revision(stream).ok().flatten();
            let current = current.filter(|_| svc.store.deleted_at(stream).ok().flatten().is_none());
            if asked.holds(current) {
                return Err(errors::from_append(stream, e));
            }
            AppendOutcome::WrongExpectedVersion {
                current_revision: current,
                expected,
            }
        }
        Err(e) => return Err(errors::from_append(stream, e)),
    };
    if let AppendOutcome::WrongExpectedVersion { expected: e, .. } = &mut outcome {
        *e = expected;
    }
    Ok(match outcome {
        AppendOutcome::Success {
            next_expected_revision,
            position,
        } => Written::Done {
            revision: Some(next_expected_revision),
            position: Some(position),
        },
        AppendOutcome::WrongExpectedVersion {
            current_revision,
            expected,
        } => Written::Conflict {
            current: current_revision,
            expected,
        },
    })
}

/// An append to `$$S`: the last event's JSON is `S`'s new metadata.
async fn set_metadata(
    svc: &KurrentStreams,
    stream: &str,
    of: &str,
    expected: ExpectedVersion,
    events: Vec<NewEvent>,
) -> Result<Written, Status> {
    if let Some(e) = events.iter().find(|e| e.event_type != metadata::EVENT_TYPE) {
        return Err(Status::invalid_argument(format!(
            "a metadata stream holds only {} events, not '{}'",
            metadata::EVENT_TYPE,
            e.event_type
        )));
    }
    let Some(last) = events.last() else {
        return empty_append(svc, stream, expected);
    };
    let request = LifecycleRequest::SetMetadata {
        stream: of.to_owned(),
        expected,
        metadata: metadata::from_kurrent_json(&last.data)?,
    };
    let outcome = svc
        .store
        .lifecycle(request)
        .await
        .map_err(|e| errors::from_append(of, e))?;
    Ok(match outcome {
        LifecycleOutcome::Success {
            position,
            metadata_revision,
        } => Written::Done {
            revision: metadata_revision,
            position: Some(position),
        },
        LifecycleOutcome::WrongExpectedVersion {
            current_revision,
            expected,
        } => Written::Conflict {
            current: current_revision,
            expected,
        },
    })
}

/// An append of no events writes nothing; KurrentDB still checks the
/// expectation and answers with the stream's revision.
fn empty_append(
    svc: &KurrentStreams,
    stream: &str,
    expected: ExpectedVersion,
) -> Result<Written, Status> {
    crate::store::validate_stream_name(stream).map_err(|e| errors::from_read(stream, e))?;
    let current = svc
        .store
        .stream_revision(stream)
        .map_err(|e| errors::from_read(stream, e))?;
    Ok(if expected.holds(current) {
        Written::Done {
            revision: current,
            position: None,
        }
    } else {
        Written::Conflict { current, expected }
    })
}

/// The client's next message; UNAVAILABLE once the server shuts down.
async fn next(
    requests: &mut Streaming<AppendReq>,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<Option<AppendReq>, Status> {
    if *shutdown.borrow() {
        return Err(Status::unavailable("the server is shutting down"));
    }
    tokio::select! {
        m = requests.message() => m,
        _ = stopped(shutdown) => Err(Status::unavailable("the server is shutting down")),
    }
}

fn expected_from_wire(e: Option<ExpectedStreamRevision>) -> Result<ExpectedVersion, Status> {
    match e {
        Some(ExpectedStreamRevision::Revision(r)) => Ok(ExpectedVersion::Exact(r)),
        Some(ExpectedStreamRevision::NoStream(_)) => Ok(ExpectedVersion::NoStream),
        Some(ExpectedStreamRevision::Any(_)) => Ok(ExpectedVersion::Any),
        Some(ExpectedStreamRevision::StreamExists(_)) => Ok(ExpectedVersion::StreamExists),
        None => Err(Status::invalid_argument(
            "expected_stream_revision is required",
        )),
    }
}

fn success(revision: Option<u64>, position: Option<u64>) -> AppendResp {
    let current_revision_option = Some(match revision {
        Some(r) => success::CurrentRevisionOption::CurrentRevision(r),
        None => success::CurrentRevisionOption::NoStream(EMPTY),
    });
    let position_option = Some(match position {
        Some(p) => {
            let wire = position::to_wire(p);
            success::PositionOption::Position(append_resp::Position {
                commit_position: wire,
                prepare_position: wire,
            })
        }
        None => success::PositionOption::NoPosition(EMPTY),
    });
    AppendResp {
        result: Some(append_resp::Result::Success(Success {
            current_revision_option,
            position_option,
        })),
    }
}

fn conflict(current: Option<u64>, expected: ExpectedVersion) -> AppendResp {
    let (current_old, current_new) = match current {
        Some(r) => (
            wev::CurrentRevisionOption2060::CurrentRevision2060(r),
            wev::CurrentRevisionOption::CurrentRevision(r),
        ),
        None => (
            wev::CurrentRevisionOption2060::NoStream2060(EMPTY),
            wev::CurrentRevisionOption::CurrentNoStream(EMPTY),
        ),
    };
    let (expected_old, expected_new) = match expected {
        ExpectedVersion::Any => (
            wev::ExpectedRevisionOption2060::Any2060(EMPTY),
            wev::ExpectedRevisionOption::ExpectedAny(EMPTY),
        ),
        ExpectedVersion::StreamExists => (
            wev::ExpectedRevisionOption2060::StreamExists2060(EMPTY),
            wev::ExpectedRevisionOption::ExpectedStreamExists(EMPTY),
        ),
        // 20.6.0 clients knew "no stream" only as revision -1.
        ExpectedVersion::NoStream => (
            wev::ExpectedRevisionOption2060::ExpectedRevision2060(u64::MAX),
            wev::ExpectedRevisionOption::ExpectedNoStream(EMPTY),
        ),
        ExpectedVersion::Exact(r) => (
            wev::ExpectedRevisionOption2060::ExpectedRevision2060(r),
            wev::ExpectedRevisionOption::ExpectedRevision(r),
        ),
    };
    AppendResp {
        result: Some(append_resp::Result::WrongExpectedVersion(
            WrongExpectedVersion {
                current_revision_option_20_6_0: Some(current_old),
                expected_revision_option_20_6_0: Some(expected_old),
                current_revision_option: Some(current_new),
                expected_revision_option: Some(expected_new),
            },
        )),
    }
}
