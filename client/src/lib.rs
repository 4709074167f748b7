//! An async Rust client for the [Strata](https://github.com/strata-db/strata)
//! event store.
//!
//! - [`Client::append`] writes events to a stream under an optimistic
//!   concurrency check ([`ExpectedVersion`]); a conflict is the typed
//!   [`Error::WrongExpectedVersion`], carrying the stream's current revision.
//! - [`Client::read_stream`] and [`Client::read_all`] return an
//!   [`EventStream`]: events one by one, forwards or backwards, from any
//!   point, with bounded memory.
//! - [`Client::subscribe_to_stream`] and [`Client::subscribe_to_all`] return a
//!   [`Subscription`] that catches up, then follows live events, and resumes
//!   by itself after a disconnect or server restart without skipping or
//!   repeating an event.
//! - [`Client::delete`] and [`Client::tombstone`] delete a stream (softly,
//!   or for good), and [`Client::set_stream_metadata`] sets its
//!   [`StreamMetadata`]: retention (`max_count`, `max_age`,
//!   `truncate_before`), access lists and application data.
//! - [`Client::create_group`] and [`Client::join_group`]: consumer groups
//!   (persistent subscriptions) that share a stream's work among many
//!   consumers, each event acknowledged once ([`PersistentSubscription`]).
//! - Security ([`ClientOptions`]): TLS to an `https://` URL with the CA
//!   that signs the server's certificate ([`ClientOptions::tls_ca_file`];
//!   no built-in root store), optionally a client certificate for mTLS
//!   ([`ClientOptions::tls_client_identity`]), and [`Credentials`] (user and
//!   password, or an API key) sent with every call. [`Client::users`]
//!   manages users, roles and API keys ([`Users`]). A refused login is
//!   [`Error::Unauthenticated`], a forbidden call [`Error::PermissionDenied`].
//!
//! Every failure is an [`Error`] variant to match on; none needs its
//! message parsed.
//!
//! ```
//! use strata_client::{
//!     Client, EventData, ExpectedVersion, ReadOptions, SubscribeFrom, SubscriptionMessage,
//!     TryStreamExt,
//! };
//!
//! #[derive(serde::Serialize, serde::Deserialize)]
//! struct Deposited {
//!     amount: u64,
//! }
//!
//! # #[cfg(feature = "json")]
//! async fn program(url: &str) -> Result<(), strata_client::Error> {
//!     let client = Client::connect(url).await?;
//!
//!     // Append: the stream must not exist yet.
//!     let events = [
//!         EventData::json("Deposited", &Deposited { amount: 100 })?,
//!         EventData::json("Deposited", &Deposited { amount: 20 })?,
//!     ];
//!     let written = client.append("account-42", ExpectedVersion::NoStream, events).await?;
//!     assert_eq!(written.next_expected_revision, 1);
//!
//!     // A second writer that expects an empty stream gets a typed conflict.
//!     let late = EventData::json("Deposited", &Deposited { amount: 1 })?;
//!     match client.append("account-42", ExpectedVersion::NoStream, [late]).await {
//!         Err(strata_client::Error::WrongExpectedVersion { current, .. }) => {
//!             assert_eq!(current, Some(1))
//!         }
//!         other => panic!("expected a conflict, got {other:?}"),
//!     }
//!
//!     // Read the stream back and fold it into a balance.
//!     let mut balance = 0;
//!     let mut events = client.read_stream("account-42", ReadOptions::forwards()).await?;
//!     while let Some(event) = events.try_next().await? {
//!         balance += event.json::<Deposited>()?.amount;
//!     }
//!     assert_eq!(balance, 120);
//!
//!     // Subscribe: the two stored events, `CaughtUp`, then live events.
//!     let mut subscription = client.subscribe_to_stream("account-42", SubscribeFrom::Start);
//!     let mut seen = 0;
//!     while let Some(message) = subscription.try_next().await? {
//!         match message {
//!             SubscriptionMessage::Event(event) => {
//!                 seen += 1;
//!                 println!("{} #{}: {}", event.stream, event.revision, event.event_type);
//!                 if seen == 3 {
//!                     break;
//!                 }
//!             }
//!             SubscriptionMessage::CaughtUp { .. } => {
//!                 let more = EventData::json("Deposited", &Deposited { amount: 5 })?;
//!                 client.append("account-42", written.next_expected_version(), [more]).await?;
//!             }
//!             _ => {}
//!         }
//!     }
//!     Ok(())
//! }
//! # #[cfg(feature = "json")]
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! #     // Starts a throwaway in-process server for the example to talk to.
//! #     let dir = tempfile::tempdir()?;
//! #     let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! #     let metrics = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! #     let url = format!("http://{}", grpc.local_addr()?);
//! #     let args = strata_server::config::ServeArgs::for_tests(dir.path());
//! #     let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
//! #     let server = tokio::spawn(strata_server::run(args, grpc, metrics, async move {
//! #         let _ = stopped.await;
//! #     }));
//! #     program(&url).await?;
//! #     let _ = stop.send(());
//! #     server.await??;
//! #     Ok(())
//! # }
//! # #[cfg(not(feature = "json"))]
//! # fn main() {}
//! ```
//!
//! Runnable programs live in `client/examples/`: a bank account with an
//! overdraft rule and a retry loop under concurrent writers, a projection
//! that checkpoints a `$all` subscription, and snapshots of a long stream.

mod auth;
mod client;
mod error;
mod event;
mod filter;
mod lifecycle;
mod multi;
mod options;
mod persistent;
mod pipeline;
mod read;
mod subscription;
mod tls;
mod users;

pub use auth::{AuthChannel, AuthHeader, Credentials};
pub use client::{Client, Stats};
pub use error::{Error, LimitExceeded};
pub use event::{AppendResult, EventData, ExpectedVersion, RecordedEvent, JSON_CONTENT_TYPE};
pub use filter::Filter;
pub use lifecycle::{
    DeleteResult, SetStreamMetadataResult, StreamAcl, StreamMetadata, StreamMetadataResult,
};
pub use multi::{MultiAppend, MultiAppendResult, StreamAppended, StreamConflict};
pub use options::ClientOptions;
pub use persistent::{
    ConsumerStrategy, GroupAcker, GroupConsumer, GroupFrom, GroupInfo, GroupSettings, GroupTarget,
    JoinOptions, NackAction, PersistentEvent, PersistentSubscription,
};
pub use pipeline::Pipeline;
pub use read::{Direction, EventStream, ReadFrom, ReadOptions};
pub use subscription::{SubscribeFrom, Subscription, SubscriptionMessage};
pub use users::{UserInfo, Users};

/// The payload type of [`RecordedEvent::data`] and [`RecordedEvent::metadata`].
pub use bytes::Bytes;
/// The stream traits the returned [`EventStream`] and [`Subscription`]
/// implement or are used with, re-exported so callers need no extra
/// dependency: `try_next`, `try_collect`, `next`, `take`, ...
pub use futures_util::stream::{Stream, StreamExt, TryStreamExt};
/// Event ids.
pub use uuid::Uuid;
