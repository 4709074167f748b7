//! `Streams.Delete` (soft) and `Streams.Tombstone` (hard), recorded in the
//! log like the native ones. Unlike `Append`, a conflict here is a
//! FAILED_PRECONDITION with KurrentDB's `wrong-expected-version` trailers.
//! Deleting a stream that is deleted already succeeds when the expectation
//! allows no stream (`any`, `no_stream`); nothing is recorded then and the
//! answer has no position. Deleting one that never existed (no event, no
//! metadata) is a wrong expected version, as in KurrentDB.

use strata_proto::kurrentdb::streams::{
    delete_req, delete_resp, tombstone_req, tombstone_resp, DeleteReq, DeleteResp, TombstoneReq,
    TombstoneResp,
};
use tonic::Status;

use super::{convert, errors, position, KurrentStreams, EMPTY};
use crate::auth::{Caller, StreamOp};
use crate::store::{AppendError, ExpectedVersion, LifecycleOutcome, LifecycleRequest};

/// The store's expectation from the `expected_stream_revision` oneof of a
/// delete or a tombstone request (two generated types of the same shape);
/// returns INVALID_ARGUMENT from the handler when it is unset.
macro_rules! expected {
    ($E:ident, $value:expr) => {
        match $value {
            Some($E::Revision(r)) => ExpectedVersion::Exact(r),
            Some($E::NoStream(_)) => ExpectedVersion::NoStream,
            Some($E::Any(_)) => ExpectedVersion::Any,
            Some($E::StreamExists(_)) => ExpectedVersion::StreamExists,
            None => return Err(missing_expected()),
        }
    };
}

pub(super) async fn delete(
    svc: &KurrentStreams,
    caller: &Caller,
    req: DeleteReq,
) -> Result<DeleteResp, Status> {
    use delete_req::options::ExpectedStreamRevision as E;
    let options = req
        .options
        .ok_or_else(|| Status::invalid_argument("options are required"))?;
    let stream = convert::stream_name(options.stream_identifier)?;
    let expected = expected!(E, options.expected_stream_revision);
    let position = record(svc, caller, false, stream, expected).await?;
    Ok(DeleteResp {
        position_option: Some(match position {
            Some(p) => delete_resp::PositionOption::Position(delete_resp::Position {
                commit_position: p,
                prepare_position: p,
            }),
            None => delete_resp::PositionOption::NoPosition(EMPTY),
        }),
    })
}

pub(super) async fn tombstone(
    svc: &KurrentStreams,
    caller: &Caller,
    req: TombstoneReq,
) -> Result<TombstoneResp, Status> {
    use tombstone_req::options::ExpectedStreamRevision as E;
    let options = req
        .options
        .ok_or_else(|| Status::invalid_argument("options are required"))?;
    let stream = convert::stream_name(options.stream_identifier)?;
    let expected = expected!(E, options.expected_stream_revision);
    let position = record(svc, caller, true, stream, expected).await?;
    Ok(TombstoneResp {
        position_option: Some(match position {
            Some(p) => tombstone_resp::PositionOption::Position(tombstone_resp::Position {
                commit_position: p,
                prepare_position: p,
            }),
            None => tombstone_resp::PositionOption::NoPosition(EMPTY),
        }),
    })
}

/// Records, as KurrentDB does on a soft delete, the deleted revisions in
/// the metadata (`$tb`), so that a recreated stream's metadata says where
/// it starts again. Best effort: the delete itself is recorded already and
/// hides those revisions whether or not this lands.
async fn truncate_deleted(svc: &KurrentStreams, stream: &str) {
    let Ok(Some(last)) = svc.store.stream_revision(stream) else {
        return;
    };
    let Ok(current) = svc.store.stream_metadata(stream) else {
        return;
    };
    let mut metadata = current.metadata;
    metadata.truncate_before = Some(metadata.truncate_before.unwrap_or(0).max(last + 1));
    let req = LifecycleRequest::SetMetadata {
        stream: stream.to_owned(),
        expected: ExpectedVersion::Any,
        metadata,
    };
    if let Err(e) = svc.store.lifecycle(req).await {
        tracing::warn!(stream, error = %e, "recording a deleted stream's truncation");
    }
}

fn missing_expected() -> Status {
    Status::invalid_argument("expected_stream_revision is required")
}

/// Records the delete or tombstone; the wire position of its record, or
/// `None` when nothing needed recording.
async fn record(
    svc: &KurrentStreams,
    caller: &Caller,
    hard: bool,
    stream: String,
    expected: ExpectedVersion,
) -> Result<Option<u64>, Status> {
    // A tombstone is admin only, by the layer's table; admin passes every ACL.
    svc.allow(caller, StreamOp::Delete, &stream)?;
    let (operation, req) = if hard {
        let req = LifecycleRequest::Tombstone {
            stream: stream.clone(),
            expected,
        };
        ("Tombstone", req)
    } else {
        let req = LifecycleRequest::Delete {
            stream: stream.clone(),
            expected,
        };
        ("Delete", req)
    };
    match svc.store.lifecycle(req).await {
        Ok(LifecycleOutcome::Success { position: p, .. }) => {
            if !hard {
                truncate_deleted(svc, &stream).await;
            }
            Ok(Some(position::to_wire(p)))
        }
        Ok(LifecycleOutcome::WrongExpectedVersion {
            current_revision,
            expected,
        }) => Err(errors::wrong_expected_version(
            operation,
            &stream,
            expected,
            current_revision,
        )),
        // Deleted already: done, if the expectation allows no stream. A
        // stream that never existed (no event, no metadata) cannot be
        // deleted, as in KurrentDB.
        // KurrentDB keeps a deleted stream's last revision for this check.
        Err(AppendError::StreamNotFound(_)) => {
            let deleted_at = svc.store.deleted_at(&stream).ok().flatten();
            let existed = deleted_at.is_some()
                || svc
                    .store
                    .stream_metadata(&stream)
                    .is_ok_and(|m| m.metadata_revision.is_some());
            match expected {
                ExpectedVersion::Any | ExpectedVersion::NoStream if existed => Ok(None),
                ExpectedVersion::Exact(r) if deleted_at == Some(r) => Ok(None),
                ExpectedVersion::StreamExists if existed => Err(errors::stream_deleted(&stream)),
                expected => Err(errors::wrong_expected_version(
                    operation, &stream, expected, deleted_at,
                )),
            }
        }
        Err(e) => Err(errors::from_append(&stream, e)),
    }
}
