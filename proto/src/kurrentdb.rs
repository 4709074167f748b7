//! KurrentDB's (EventStoreDB's) public gRPC protocol, packages
//! `event_store.client.*` (`proto/kurrentdb/*.proto`), as the official
//! KurrentDB clients speak it (docs/API.md section 6).
//!
//! This module owns only the generated messages, client and server stubs and
//! the descriptor set of that protocol. Translating it to Strata's store is
//! the server's business; `strata.v1` never depends on anything here.
//!
//! The generated code nests as the protobuf packages do (prost refers across
//! packages by relative paths), so it lives in a private tree and is exported
//! under short names:
//!
//! | module              | package                                        |
//! |---------------------|------------------------------------------------|
//! | [`shared`]          | `event_store.client`                           |
//! | [`streams`]         | `event_store.client.streams`                   |
//! | [`persistent`]      | `event_store.client.persistent_subscriptions`  |
//! | [`gossip`]          | `event_store.client.gossip`                    |
//! | [`server_features`] | `event_store.client.server_features`           |
//! | [`users`]           | `event_store.client.users`                     |
//! | [`google_rpc`]      | `google.rpc` (the status `BatchAppend` answers) |
//!
//! Every package has its `*_client` and `*_server` stubs (e.g.
//! `streams::streams_server::StreamsServer`); the server mounts
//! [`streams_encoded`] in place of the latter. Event `data` and
//! `custom_metadata` are `bytes::Bytes`; `google.protobuf.Empty` is `()`.

mod generated {
    // `ReadResp` oneofs carry a whole event next to small variants; boxing
    // it would cost an allocation per delivered event for nothing.
    #![allow(missing_docs, clippy::large_enum_variant)]

    /// `event_store.*`
    pub mod event_store {
        /// `event_store.client` and the packages under it.
        pub mod client {
            include!(concat!(env!("OUT_DIR"), "/kurrentdb/event_store.client.rs"));

            /// `event_store.client.streams`
            pub mod streams {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/kurrentdb/event_store.client.streams.rs"
                ));
            }

            /// `event_store.client.persistent_subscriptions`
            pub mod persistent_subscriptions {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/kurrentdb/event_store.client.persistent_subscriptions.rs"
                ));
            }

            /// `event_store.client.gossip`
            pub mod gossip {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/kurrentdb/event_store.client.gossip.rs"
                ));
            }

            /// `event_store.client.server_features`
            pub mod server_features {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/kurrentdb/event_store.client.server_features.rs"
                ));
            }

            /// `event_store.client.users`
            pub mod users {
                include!(concat!(
                    env!("OUT_DIR"),
                    "/kurrentdb/event_store.client.users.rs"
                ));
            }
        }
    }

    /// `google.*`
    pub mod google {
        /// `google.rpc`: KurrentDB's copy of `Status` and `Code`.
        pub mod rpc {
            include!(concat!(env!("OUT_DIR"), "/kurrentdb/google.rpc.rs"));
        }
    }
}

pub use generated::event_store::client as shared;
pub use generated::event_store::client::{
    gossip, persistent_subscriptions as persistent, server_features, streams, users,
};
pub use generated::google::rpc as google_rpc;

/// The `Streams` server stub the server mounts: the same service as
/// `streams::streams_server`, except that `Read` answers with
/// [`crate::v1::encoded::Encoded`] messages, each a `ReadResp` already
/// encoded, so that stored events go from the log's bytes to the wire
/// without becoming generated messages first.
pub mod streams_encoded {
    #![allow(missing_docs)]
    include!(concat!(
        env!("OUT_DIR"),
        "/kurrentdb_server/event_store.client.streams.rs"
    ));
}

/// The encoded `google.protobuf.FileDescriptorSet` of KurrentDB's protocol and
/// every file it imports (the well-known types), with source comments, for
/// gRPC reflection next to [`crate::FILE_DESCRIPTOR_SET`] (tonic-reflection
/// keeps the first of two files with the same name, so the shared well-known
/// types do not clash).
pub const KURRENTDB_FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("kurrentdb_descriptor");

#[cfg(test)]
mod tests;
