//! Strata: an event-store database server. This crate holds the storage
//! engine ([`store`]), the gRPC service on top of it ([`service`]), metrics,
//! configuration and [`run`], which the `strata` binary and the tests call.
//! [`kurrentdb`] serves KurrentDB's public protocol over the same store.

pub mod auth;
pub mod config;
pub mod groups;
pub mod kurrentdb;
pub mod metrics;
pub mod pattern;
pub mod server;
pub mod service;
pub mod store;

pub use server::{run, RunError};
