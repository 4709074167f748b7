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

mod id;
mod shortcuts;

pub use generated::*;
pub use id::{format_uuid, parse_uuid, Hyphenated, UuidError, UUID_LEN};
