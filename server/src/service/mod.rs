//! The `strata.v1.Streams` gRPC service: one file per RPC, conversions in
//! `convert`, the error mapping in `status`. Nothing here touches the disk
//! directly; blocking engine calls run on the blocking pool.

mod append;
pub(crate) mod consumer_call;
pub mod convert;
mod lifecycle;
mod message_limit;
mod multi_append;
mod operations;
mod persistent;
mod pipelined_append;
mod read;
mod stats;
pub mod status;
mod subscribe;
mod users;
mod wire;

use std::sync::Arc;

use strata_proto::v1;
use strata_proto::v1::encoded::Encoded;
use strata_proto::v1::streams_server::Streams;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::auth::{Caller, StreamOp};
use crate::metrics::Metrics;
use crate::store::Store;

pub use message_limit::MessageLimit;
pub use operations::OperationsService;
pub use persistent::{PersistentService, DEFAULT_BUFFER_SIZE, MAX_BUFFER_SIZE};
pub use users::{status as status_from_directory, UsersService};

/// The Streams service over a store.
#[derive(Clone)]
pub struct StreamsService {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
    warnings: Arc<[String]>,
}

impl StreamsService {
    /// A service over `store`; subscriptions end when `shutdown` turns true.
    /// Response batches follow the store's `read_batch`.
    pub fn new(store: Arc<Store>, metrics: Arc<Metrics>, shutdown: watch::Receiver<bool>) -> Self {
        StreamsService {
            store,
            metrics,
            shutdown,
            warnings: Arc::new([]),
        }
    }

    /// Refuses `op` on `stream` unless the caller may do it (its ACL, or
    /// the role default).
    fn allow(&self, caller: &Caller, op: StreamOp, stream: &str) -> Result<(), Status> {
        caller.check_in(&self.store, op, stream)
    }

    /// What `Stats` warns of (see `config::Security::warnings`).
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings.into();
        self
    }
}

#[tonic::async_trait]
impl Streams for StreamsService {
    async fn append(
        &self,
        request: Request<v1::AppendRequest>,
    ) -> Result<Response<v1::AppendResponse>, Status> {
        let caller = Caller::of(&request)?;
        append::handle(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn multi_append(
        &self,
        request: Request<v1::MultiAppendRequest>,
    ) -> Result<Response<v1::MultiAppendResponse>, Status> {
        let caller = Caller::of(&request)?;
        multi_append::handle(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    type PipelinedAppendStream = ReceiverStream<Result<v1::PipelinedAppendResponse, Status>>;

    async fn pipelined_append(
        &self,
        request: Request<tonic::Streaming<v1::PipelinedAppendRequest>>,
    ) -> Result<Response<Self::PipelinedAppendStream>, Status> {
        let caller = Caller::of(&request)?;
        pipelined_append::handle(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    type ReadStream = ReceiverStream<Result<Encoded, Status>>;

    async fn read(
        &self,
        request: Request<v1::ReadRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let caller = Caller::of(&request)?;
        read::handle(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    type SubscribeStream = ReceiverStream<Result<Encoded, Status>>;

    async fn subscribe(
        &self,
        request: Request<v1::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let caller = Caller::of(&request)?;
        subscribe::handle(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn stats(
        &self,
        _request: Request<v1::StatsRequest>,
    ) -> Result<Response<v1::StatsResponse>, Status> {
        stats::handle(self).await.map(Response::new)
    }

    async fn delete(
        &self,
        request: Request<v1::DeleteRequest>,
    ) -> Result<Response<v1::DeleteResponse>, Status> {
        let caller = Caller::of(&request)?;
        lifecycle::delete(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn tombstone(
        &self,
        request: Request<v1::TombstoneRequest>,
    ) -> Result<Response<v1::TombstoneResponse>, Status> {
        let caller = Caller::of(&request)?;
        lifecycle::tombstone(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn get_stream_metadata(
        &self,
        request: Request<v1::GetStreamMetadataRequest>,
    ) -> Result<Response<v1::StreamMetadataResponse>, Status> {
        let caller = Caller::of(&request)?;
        lifecycle::get_metadata(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }

    async fn set_stream_metadata(
        &self,
        request: Request<v1::SetStreamMetadataRequest>,
    ) -> Result<Response<v1::SetStreamMetadataResponse>, Status> {
        let caller = Caller::of(&request)?;
        lifecycle::set_metadata(self, &caller, request.into_inner())
            .await
            .map(Response::new)
    }
}

/// How long a streaming call waits, at shutdown, for work in flight and for
/// a slow client to take the UNAVAILABLE status.
const SHUTDOWN_NOTICE: std::time::Duration = std::time::Duration::from_secs(1);

/// Resolves once the server starts shutting down.
async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await.map(|_| ());
}
