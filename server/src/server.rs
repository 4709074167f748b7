//! Running the server: open the store, serve gRPC (Streams, health,
//! reflection) and metrics until `shutdown` resolves, then shut down in
//! order: health NOT_SERVING, stop accepting, end subscriptions, let
//! in-flight calls finish, drain and sync the writer, flush the index.

use std::future::Future;
use std::sync::Arc;

use strata_proto::kurrentdb::gossip::gossip_server::GossipServer;
use strata_proto::kurrentdb::persistent::persistent_subscriptions_server::PersistentSubscriptionsServer as KurrentPersistentServer;
use strata_proto::kurrentdb::server_features::server_features_server::ServerFeaturesServer;
use strata_proto::kurrentdb::streams_encoded::streams_server::StreamsServer as KurrentStreamsServer;
use strata_proto::kurrentdb::users::users_server::UsersServer as KurrentUsersServer;
use strata_proto::v1::operations_server::OperationsServer;
use strata_proto::v1::persistent_subscriptions_server::PersistentSubscriptionsServer;
use strata_proto::v1::streams_server::StreamsServer;
use strata_proto::v1::users_server::UsersServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic_health::ServingStatus;

use crate::auth::{AuthLayer, Directory, DirectoryError};
use crate::config::ServeArgs;
use crate::groups::{GroupError, Groups};
use crate::kurrentdb::{
    Authority, FeaturesService, GossipService, KurrentPersistent, KurrentStreams, KurrentUsers,
};
use crate::metrics::{self, Metrics};
use crate::service::{
    MessageLimit, OperationsService, PersistentService, StreamsService, UsersService,
};
use crate::store::{OpenError, StorageError, Store, FORMAT_VERSION};

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The consumer groups could not be started.
    #[error("starting consumer groups: {0}")]
    Groups(#[from] GroupError),
    /// The users could not be read, or the first admin not created.
    #[error("users: {0}")]
    Users(#[from] DirectoryError),
    /// TLS or authentication cannot be set up as configured.
    #[error("{0}")]
    Security(String),
    /// The store could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The store could not be closed cleanly (the index flush failed).
    #[error(transparent)]
    Close(#[from] StorageError),
    /// Metrics could not be set up.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be set up.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// A background task panicked.
    #[error("task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
    /// A listener's address could not be read.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves until `shutdown` resolves; returns after a clean shutdown.
pub async fn run(
    args: ServeArgs,
    grpc: TcpListener,
    metrics_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    args.validate()?;
    let security = args.security();
    let tls = match &security.tls {
        Some(files) => {
            // Both providers may be compiled in (the benchmark's peers bring
            // aws-lc); the server uses ring.
            let _ = rustls::crypto::ring::default_provider().install_default();
            Some(files.server_config().map_err(RunError::Security)?)
        }
        None => None,
    };
    let metrics = Metrics::new()?;
    let cfg = args.store_config();
    let observer = metrics.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open_with_observer(cfg, observer)).await??,
    );
    metrics.set_head(store.head_position());

    let directory = Directory::open(store.clone()).await?;
    if security.authenticate && directory.is_empty() {
        match args.admin_password.as_deref() {
            Some(password) => {
                directory.bootstrap_admin(password).await?;
                tracing::info!("created the first admin, 'admin', from STRATA_ADMIN_PASSWORD");
            }
            None => {
                return Err(RunError::Security(
                    "authentication is on and no user exists yet: set STRATA_ADMIN_PASSWORD \
                     to create the first admin ('admin') at this start"
                        .into(),
                ))
            }
        }
    }
    for warning in &security.warnings {
        tracing::warn!("{warning}");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let limit = args.grpc_message_limit();
    let service = StreamsService::new(store.clone(), metrics.clone(), stop_rx.clone())
        .with_warnings(security.warnings.clone());
    let users = UsersServer::new(UsersService::new(directory.clone()));
    let operations = OperationsServer::new(OperationsService::new(store.clone(), stop_rx.clone()));
    let groups = Groups::open(store.clone(), metrics.clone()).await?;
    let persistent =
        PersistentSubscriptionsServer::new(PersistentService::new(groups.clone(), stop_rx.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit + (4 << 20));
    let streams = MessageLimit(
        StreamsServer::new(service)
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit + (4 << 20)),
    );
    // KurrentDB's protocol, on the same port, over the same store.
    let kurrent_streams = MessageLimit(
        KurrentStreamsServer::new(KurrentStreams::new(
            store.clone(),
            stop_rx.clone(),
            args.max_append_bytes,
        ))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit + (4 << 20)),
    );
    let kurrent_persistent =
        KurrentPersistentServer::new(KurrentPersistent::new(groups.clone(), stop_rx.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit + (4 << 20));
    let kurrent_users = KurrentUsersServer::new(KurrentUsers::new(directory.clone()));
    let kurrent_gossip = Authority(GossipServer::new(GossipService::new()));
    let kurrent_features = ServerFeaturesServer::new(FeaturesService);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<StreamsServer<StreamsService>>().await;
    health.set_service_status("", ServingStatus::Serving).await;
    // Health is described too, so `grpcurl` can call it without proto files.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(strata_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(
            strata_proto::kurrentdb::KURRENTDB_FILE_DESCRIPTOR_SET,
        )
        .build_v1()?;
    let reflection_alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(strata_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(
            strata_proto::kurrentdb::KURRENTDB_FILE_DESCRIPTOR_SET,
        )
        .build_v1alpha()?;

    let metrics_addr = metrics_listener.local_addr()?;
    let metrics_tls = match &security.tls {
        Some(files) if args.metrics_tls => {
            Some(files.metrics_acceptor().map_err(RunError::Security)?)
        }
        _ => None,
    };
    let metrics_task = tokio::spawn(metrics::serve(
        metrics_listener,
        metrics.clone(),
        metrics_tls,
        stop_rx.clone(),
    ));
    tracing::info!(
        data_dir = %store.data_dir().display(),
        grpc = %grpc.local_addr()?,
        metrics = %metrics_addr,
        format_version = FORMAT_VERSION,
        head_position = store.head_position(),
        durability = ?args.durability,
        tls = security.tls.is_some(),
        mtls = security.tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        authentication = security.authenticate,
        "strata serving"
    );

    let signal = {
        let health = health.clone();
        async move {
            shutdown.await;
            tracing::info!("shutting down: no new calls, ending subscriptions, draining appends");
            health
                .set_not_serving::<StreamsServer<StreamsService>>()
                .await;
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            let _ = stop_tx.send(true);
            // Checkpoints written, consumers' calls ended.
            groups.shutdown().await;
        }
    };
    // Nagle's algorithm would hold back the small frames of streamed
    // responses for ~40 ms; the builder's tcp_nodelay does not reach
    // sockets accepted from our own listener, so set it here.
    let incoming = tonic::transport::server::TcpIncoming::from(grpc).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        builder = builder.tls_config(tls)?;
    }
    let served = builder
        .layer(AuthLayer::new(
            security.authenticate.then(|| directory.clone()),
            security.tls.is_some(),
        ))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_alpha)
        .add_service(streams)
        .add_service(operations)
        .add_service(persistent)
        .add_service(users)
        .add_service(kurrent_streams)
        .add_service(kurrent_persistent)
        .add_service(kurrent_users)
        .add_service(kurrent_gossip)
        .add_service(kurrent_features)
        .serve_with_incoming_shutdown(incoming, signal)
        .await;
    let closing = store.clone();
    let closed = tokio::task::spawn_blocking(move || closing.close()).await?;
    metrics_task.abort();
    served?;
    closed?;
    tracing::info!(
        head_position = store.head_position(),
        "strata stopped cleanly"
    );
    Ok(())
}
