//! KurrentDB compatibility (docs/API.md section 6, docs/KURRENTDB.md): the
//! public gRPC protocol of KurrentDB's official clients (packages
//! `event_store.client.*`), served next to `strata.v1` on the same port.
//!
//! This module only translates: every call becomes a call of the same
//! [`Store`] API the native service uses, under the same security layer and
//! the same per-stream checks. It owns the mapping of positions, event
//! metadata, UUIDs and errors (one file each); it must never reach into the
//! store's internals, and neither the store nor `strata.v1` knows it exists.
//!
//! Served: `Streams` (`Read` without and with subscription, `Append`,
//! `BatchAppend`, `Delete`, `Tombstone`, and the `$$` metadata streams), `PersistentSubscriptions` (over the server's
//! consumer groups), `Users` (over the server's users), `Gossip.Read` and
//! `ServerFeatures.GetSupportedMethods`. Everything else of the protocol
//! answers UNIMPLEMENTED.

mod append;
mod batch_append;
mod convert;
mod errors;
mod features;
mod filter;
mod gossip;
mod lifecycle;
mod metadata;
mod persistent;
mod position;
mod read;
mod subscribe;
mod users;
mod wire;

use std::sync::Arc;

use strata_proto::kurrentdb::shared::Empty;
use strata_proto::kurrentdb::streams::{
    AppendReq, AppendResp, BatchAppendReq, BatchAppendResp, DeleteReq, DeleteResp, ReadReq,
    TombstoneReq, TombstoneResp,
};
use strata_proto::kurrentdb::streams_encoded::streams_server::Streams;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{Caller, StreamOp};
use crate::store::Store;

pub use features::FeaturesService;
pub use gossip::{Authority, GossipService};
pub use persistent::KurrentPersistent;
pub use users::KurrentUsers;

/// `event_store.client.streams.Streams` over a store.
#[derive(Clone)]
pub struct KurrentStreams {
    store: Arc<Store>,
    shutdown: watch::Receiver<bool>,
    /// The store's limit on one append's bytes (`--max-append-bytes`): an
    /// `Append` stops buffering events beyond it.
    max_append_bytes: u64,
}

impl KurrentStreams {
    /// The service over `store`; subscriptions end when `shutdown` turns
    /// true; `max_append_bytes` is the store's limit on one append.
    pub fn new(store: Arc<Store>, shutdown: watch::Receiver<bool>, max_append_bytes: u64) -> Self {
        KurrentStreams {
            store,
            shutdown,
            max_append_bytes,
        }
    }

    /// Refuses `op` on `stream` unless the caller may do it (its ACL, or the
    /// role default), exactly as the native handlers decide; the refusal
    /// carries the trailer KurrentDB's clients recognise.
    /// Reading or appending to `$$S` is reading or changing `S`'s metadata.
    fn allow(&self, caller: &Caller, op: StreamOp, stream: &str) -> Result<(), Status> {
        let (op, stream) = match (op, metadata::target(stream)) {
            (StreamOp::Read, Some(of)) => (StreamOp::MetadataRead, of),
            (StreamOp::Write, Some(of)) => (StreamOp::MetadataWrite, of),
            _ => (op, stream),
        };
        caller
            .check_in(&self.store, op, stream)
            .map_err(errors::access_denied)
    }
}

#[tonic::async_trait]
impl Streams for KurrentStreams {
    type ReadStream = read::Responses;

    async fn read(&self, request: Request<ReadReq>) -> Result<Response<Self::ReadStream>, Status> {
        let caller = Caller::of(&request)?;
        read::handle(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn append(
        &self,
        request: Request<Streaming<AppendReq>>,
    ) -> Result<Response<AppendResp>, Status> {
        let caller = Caller::of(&request)?;
        append::handle(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        let caller = Caller::of(&request)?;
        lifecycle::delete(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn tombstone(
        &self,
        request: Request<TombstoneReq>,
    ) -> Result<Response<TombstoneResp>, Status> {
        let caller = Caller::of(&request)?;
        lifecycle::tombstone(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    type BatchAppendStream = ReceiverStream<Result<BatchAppendResp, Status>>;

    async fn batch_append(
        &self,
        request: Request<Streaming<BatchAppendReq>>,
    ) -> Result<Response<Self::BatchAppendStream>, Status> {
        let caller = Caller::of(&request)?;
        batch_append::handle(self, caller, request.into_inner())
            .await
            .map(Response::new)
    }
}

/// KurrentDB's `Empty`, for the oneof cases that carry no value.
const EMPTY: Empty = Empty {};

/// Resolves once the server starts shutting down.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
