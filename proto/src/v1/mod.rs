//! Version 1 of the wire contract: package `strata.v1`.
//!
//! Everything generated from `strata/v1/*.proto` is re-exported here, next to
//! the hand-written helpers for it. The generated code is kept in a private
//! module so the workspace lints (`missing_docs`, ...) still apply to the
//! helpers.

mod generated {
    #![allow(missing_docs)]

    tonic::include_proto!("strata.v1");
}

/// The server stubs, over [`encoded`] answers for `Read` and `Subscribe`.
mod server {
    #![allow(missing_docs)]

    include!(concat!(env!("OUT_DIR"), "/server/strata.v1.rs"));
}

mod details;
pub mod encoded;
mod id;
mod shortcuts;

pub use details::{detail_of, status_with_detail, ERROR_DETAIL_TYPE_URL};
pub use generated::*;
pub use id::{format_uuid, hyphenated_ascii, parse_uuid, Hyphenated, UuidError, UUID_LEN};
pub use server::{
    operations_server, persistent_subscriptions_server, streams_server, users_server,
};
pub use shortcuts::duration;
