//! `Delete`, `Tombstone`, `GetStreamMetadata` and `SetStreamMetadata`:
//! lifecycle changes go to the writer like appends (recorded in the log,
//! answered after the group commit); metadata is answered from memory.

use crate::auth::{Caller, StreamOp};
use strata_proto::v1;
use tonic::Status;

use super::convert::{duration_from_wire, expected_from_wire, expected_to_wire};
use super::status::{status_from_append, status_from_read};
use super::StreamsService;
use crate::store::{LifecycleOutcome, LifecycleRequest, StreamAcl, StreamMetadata};

fn wrong_version(
    current_revision: Option<u64>,
    expected: crate::store::ExpectedVersion,
) -> v1::append_response::WrongExpectedVersion {
    v1::append_response::WrongExpectedVersion {
        current_revision,
        expected: Some(expected_to_wire(expected)),
    }
}

/// Records `req`; `Ok(Ok(position, metadata revision))` or the conflict.
async fn record(
    svc: &StreamsService,
    caller: &Caller,
    req: LifecycleRequest,
) -> Result<Result<(u64, Option<u64>), v1::append_response::WrongExpectedVersion>, Status> {
    let op = match &req {
        LifecycleRequest::Delete { .. } => StreamOp::Delete,
        // Admin only, by the layer's table; admin passes every ACL.
        LifecycleRequest::Tombstone { .. } => StreamOp::Delete,
        LifecycleRequest::SetMetadata { .. } => StreamOp::MetadataWrite,
    };
    svc.allow(caller, op, req.stream())?;
    match svc.store.lifecycle(req).await.map_err(status_from_append)? {
        LifecycleOutcome::Success {
            position,
            metadata_revision,
        } => Ok(Ok((position, metadata_revision))),
        LifecycleOutcome::WrongExpectedVersion {
            current_revision,
            expected,
        } => Ok(Err(wrong_version(current_revision, expected))),
    }
}

pub(super) async fn delete(
    svc: &StreamsService,
    caller: &Caller,
    req: v1::DeleteRequest,
) -> Result<v1::DeleteResponse, Status> {
    use v1::delete_response::{Result as R, Success};
    let expected = expected_from_wire(req.expected)?;
    let result = match record(
        svc,
        caller,
        LifecycleRequest::Delete {
            stream: req.stream,
            expected,
        },
    )
    .await?
    {
        Ok((position, _)) => R::Success(Success { position }),
        Err(w) => R::WrongExpectedVersion(w),
    };
    Ok(v1::DeleteResponse {
        result: Some(result),
    })
}

pub(super) async fn tombstone(
    svc: &StreamsService,
    caller: &Caller,
    req: v1::TombstoneRequest,
) -> Result<v1::TombstoneResponse, Status> {
    use v1::tombstone_response::{Result as R, Success};
    let expected = expected_from_wire(req.expected)?;
    let result = match record(
        svc,
        caller,
        LifecycleRequest::Tombstone {
            stream: req.stream,
            expected,
        },
    )
    .await?
    {
        Ok((position, _)) => R::Success(Success { position }),
        Err(w) => R::WrongExpectedVersion(w),
    };
    Ok(v1::TombstoneResponse {
        result: Some(result),
    })
}

pub(super) async fn set_metadata(
    svc: &StreamsService,
    caller: &Caller,
    req: v1::SetStreamMetadataRequest,
) -> Result<v1::SetStreamMetadataResponse, Status> {
    use v1::set_stream_metadata_response::{Result as R, Success};
    let expected = expected_from_wire(req.expected)?;
    let metadata = metadata_from_wire(req.metadata.unwrap_or_default())?;
    let result = match record(
        svc,
        caller,
        LifecycleRequest::SetMetadata {
            stream: req.stream,
            expected,
            metadata,
        },
    )
    .await?
    {
        Ok((position, revision)) => R::Success(Success {
            metadata_revision: revision.unwrap_or_default(),
            position,
        }),
        Err(w) => R::WrongExpectedVersion(w),
    };
    Ok(v1::SetStreamMetadataResponse {
        result: Some(result),
    })
}

pub(super) async fn get_metadata(
    svc: &StreamsService,
    caller: &Caller,
    req: v1::GetStreamMetadataRequest,
) -> Result<v1::StreamMetadataResponse, Status> {
    svc.allow(caller, StreamOp::MetadataRead, &req.stream)?;
    let answer = svc
        .store
        .stream_metadata(&req.stream)
        .map_err(status_from_read)?;
    Ok(v1::StreamMetadataResponse {
        metadata: Some(metadata_to_wire(answer.metadata)),
        metadata_revision: answer.metadata_revision,
    })
}

/// Metadata from the wire; a negative or malformed `max_age` is invalid.
pub fn metadata_from_wire(m: v1::StreamMetadata) -> Result<StreamMetadata, Status> {
    let max_age = m
        .max_age
        .map(|d| duration_from_wire(d, "metadata.max_age"))
        .transpose()?;
    let acl = m.acl.unwrap_or_default();
    Ok(StreamMetadata {
        max_count: m.max_count,
        max_age,
        truncate_before: m.truncate_before,
        acl: StreamAcl {
            read: acl.read,
            write: acl.write,
            delete: acl.delete,
            metadata_read: acl.metadata_read,
            metadata_write: acl.metadata_write,
        },
        custom: m.custom.into(),
    })
}

/// Metadata for the wire.
pub fn metadata_to_wire(m: StreamMetadata) -> v1::StreamMetadata {
    v1::StreamMetadata {
        max_count: m.max_count,
        max_age: m.max_age.map(v1::duration),
        truncate_before: m.truncate_before,
        acl: Some(v1::StreamAcl {
            read: m.acl.read,
            write: m.acl.write,
            delete: m.acl.delete,
            metadata_read: m.acl.metadata_read,
            metadata_write: m.acl.metadata_write,
        }),
        custom: m.custom.to_vec(),
    }
}
