//! `Streams.Delete` (soft) and `Streams.Tombstone` (hard), recorded in the
//! log like the native ones. Unlike `Append`, a conflict here is a
//! FAILED_PRECONDITION with KurrentDB's `wrong-expected-version` trailers.
//! Deleting a stream that does not exist succeeds when the expectation
//! allows no stream (`any`, `no_stream`), as in KurrentDB; nothing is
//! recorded then and the answer has no position.

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
        Ok(LifecycleOutcome::Success { position: p, .. }) => Ok(Some(position::to_wire(p))),
        Ok(LifecycleOutcome::WrongExpectedVersion {
            current_revision,
            expected,
        }) => Err(errors::wrong_expected_version(
            operation,
            &stream,
            expected,
            current_revision,
        )),
        Err(AppendError::StreamNotFound(_)) => match expected {
            ExpectedVersion::Any | ExpectedVersion::NoStream => Ok(None),
            expected => Err(errors::wrong_expected_version(
                operation, &stream, expected, None,
            )),
        },
        Err(e) => Err(errors::from_append(&stream, e)),
    }
}
