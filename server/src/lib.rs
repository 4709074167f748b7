//! Strata: an event-store database server. This crate holds the storage
//! engine ([`store`]), and the gRPC service and `strata` binary built on it.

pub mod store;
