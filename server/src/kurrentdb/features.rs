//! `ServerFeatures.GetSupportedMethods`: exactly the methods this layer
//! serves, in the lower-case form the clients look for, with the features
//! KurrentDB lists for them. The clients decide from it, e.g., to append
//! with `Append` because `BatchAppend` is absent.

use strata_proto::kurrentdb::server_features::server_features_server::ServerFeatures;
use strata_proto::kurrentdb::server_features::{SupportedMethod, SupportedMethods};
use strata_proto::kurrentdb::shared::Empty;
use tonic::{Request, Response, Status};

/// The KurrentDB version whose v1 protocol this layer speaks; the clients
/// compare it to decide what they may ask.
pub const PROTOCOL_VERSION: &str = "24.10.0";

const PERSISTENT: &str = "event_store.client.persistent_subscriptions.PersistentSubscriptions";

const USERS: &str = "event_store.client.users.Users";

/// Every method served: (service, method, features).
pub(super) const SERVED: &[(&str, &str, &[&str])] = &[
    (
        "event_store.client.streams.Streams",
        "Read",
        &["position", "events"],
    ),
    ("event_store.client.streams.Streams", "Append", &[]),
    (
        "event_store.client.streams.Streams",
        "BatchAppend",
        &["deadline_duration"],
    ),
    ("event_store.client.streams.Streams", "Delete", &[]),
    ("event_store.client.streams.Streams", "Tombstone", &[]),
    (PERSISTENT, "Create", &["stream", "all"]),
    (PERSISTENT, "Update", &["stream", "all"]),
    (PERSISTENT, "Delete", &["stream", "all"]),
    (PERSISTENT, "Read", &["stream", "all"]),
    (PERSISTENT, "GetInfo", &["stream", "all"]),
    (PERSISTENT, "List", &["stream", "all"]),
    (PERSISTENT, "ReplayParked", &["stream", "all"]),
    (PERSISTENT, "RestartSubsystem", &[]),
    (USERS, "Create", &[]),
    (USERS, "Update", &[]),
    (USERS, "Delete", &[]),
    (USERS, "Details", &[]),
    (USERS, "ChangePassword", &[]),
    (USERS, "ResetPassword", &[]),
    ("event_store.client.gossip.Gossip", "Read", &[]),
    (
        "event_store.client.server_features.ServerFeatures",
        "GetSupportedMethods",
        &[],
    ),
];

/// `event_store.client.server_features.ServerFeatures`.
#[derive(Clone, Copy, Debug, Default)]
pub struct FeaturesService;

#[tonic::async_trait]
impl ServerFeatures for FeaturesService {
    async fn get_supported_methods(
        &self,
        _request: Request<Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        let methods = SERVED
            .iter()
            .map(|(service, method, features)| SupportedMethod {
                method_name: method.to_lowercase(),
                service_name: service.to_lowercase(),
                features: features.iter().map(|f| f.to_string()).collect(),
            })
            .collect();
        Ok(Response::new(SupportedMethods {
            methods,
            event_store_server_version: PROTOCOL_VERSION.into(),
        }))
    }
}
