//! Consumer groups (persistent subscriptions): many consumers share a
//! stream's (or `$all`'s) work, each event handed to one of them at a time,
//! retried when it is nacked or not acknowledged in time, parked when it
//! keeps failing. The server keeps the group's position, so a consumer
//! that restarts goes on where the group is.
//!
//! A [`PersistentSubscription`] is a [`Stream`] of [`PersistentEvent`]s;
//! acknowledge each with [`PersistentSubscription::ack`] (or through a
//! [`GroupAcker`] handed to other tasks). After a disconnect it joins the
//! group again by itself; what it held unacknowledged is delivered again
//! (to it or to another consumer), so handlers must be idempotent:
//! delivery is at least once.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use strata_proto::v1;
use strata_proto::v1::persistent_read_request::Kind as ReadKind;
use strata_proto::v1::persistent_read_response::Kind as Answer;
use strata_proto::v1::persistent_subscriptions_client::PersistentSubscriptionsClient;
use tokio::sync::mpsc;

use crate::auth::AuthChannel;
use crate::client::Client;
use crate::error::{error_from_other_status, error_from_status, Error};
use crate::event::RecordedEvent;
use crate::filter::Filter;

/// What a group follows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum GroupTarget {
    /// One stream (it need not exist yet).
    Stream(String),
    /// The global log.
    All,
}

impl GroupTarget {
    /// A stream target.
    pub fn stream(name: impl Into<String>) -> Self {
        GroupTarget::Stream(name.into())
    }

    fn to_wire(&self) -> v1::PersistentTarget {
        match self {
            GroupTarget::Stream(s) => v1::PersistentTarget::stream(s.clone()),
            GroupTarget::All => v1::PersistentTarget::all(),
        }
    }

    fn from_wire(t: Option<v1::PersistentTarget>) -> Self {
        use v1::persistent_target::Kind;
        match t.and_then(|t| t.kind) {
            Some(Kind::Stream(s)) => GroupTarget::Stream(s),
            _ => GroupTarget::All,
        }
    }
}

/// Where a new group starts (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum GroupFrom {
    /// The first event.
    #[default]
    Start,
    /// What is committed after the group is created.
    End,
    /// This revision of a stream target.
    Revision(u64),
    /// This position of `$all`.
    Position(u64),
}

/// How a group hands out events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConsumerStrategy {
    /// The next consumer in turn that has room.
    #[default]
    RoundRobin,
    /// The first consumer (in joining order) that has room.
    DispatchToSingle,
    /// A stream's events to one consumer, in order.
    Pinned,
}

/// A group's settings; [`Default`] is the server's defaults.
///
/// ```
/// use std::time::Duration;
/// use strata_client::{ConsumerStrategy, GroupSettings};
///
/// let settings = GroupSettings {
///     strategy: ConsumerStrategy::Pinned,
///     message_timeout: Duration::from_secs(5),
///     ..GroupSettings::default()
/// };
/// assert_eq!(settings.max_retry_count, 10);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSettings {
    /// Where a new group starts.
    pub from: GroupFrom,
    /// For `$all`: which events.
    pub filter: Filter,
    /// How events are handed out.
    pub strategy: ConsumerStrategy,
    /// How long a consumer may hold an event without acknowledging it.
    pub message_timeout: Duration,
    /// Deliveries after the first before an event is parked.
    pub max_retry_count: u32,
    /// Consumers at once; 0 = no limit.
    pub max_subscriber_count: u32,
    /// The group's position is saved after this many events are done…
    pub checkpoint_count: u32,
    /// …or this long after it was last saved.
    pub checkpoint_after: Duration,
}

impl Default for GroupSettings {
    fn default() -> Self {
        GroupSettings {
            from: GroupFrom::Start,
            filter: Filter::new(),
            strategy: ConsumerStrategy::RoundRobin,
            message_timeout: Duration::from_secs(30),
            max_retry_count: 10,
            max_subscriber_count: 0,
            checkpoint_count: 1000,
            checkpoint_after: Duration::from_secs(1),
        }
    }
}

fn duration_from_wire(d: Option<prost_types::Duration>) -> Duration {
    d.and_then(|d| Duration::try_from(d).ok())
        .unwrap_or_default()
}

impl GroupSettings {
    fn to_wire(&self) -> v1::PersistentSettings {
        use v1::persistent_from::Kind;
        v1::PersistentSettings {
            from: Some(v1::PersistentFrom {
                kind: Some(match self.from {
                    GroupFrom::Start => Kind::Start(()),
                    GroupFrom::End => Kind::End(()),
                    GroupFrom::Revision(r) => Kind::Revision(r),
                    GroupFrom::Position(p) => Kind::Position(p),
                }),
            }),
            filter: self.filter.to_wire(),
            consumer_strategy: match self.strategy {
                ConsumerStrategy::RoundRobin => v1::ConsumerStrategy::RoundRobin,
                ConsumerStrategy::DispatchToSingle => v1::ConsumerStrategy::DispatchToSingle,
                ConsumerStrategy::Pinned => v1::ConsumerStrategy::Pinned,
            } as i32,
            message_timeout: Some(v1::duration(self.message_timeout)),
            max_retry_count: Some(self.max_retry_count),
            max_subscriber_count: self.max_subscriber_count,
            checkpoint_count: self.checkpoint_count,
            checkpoint_after: Some(v1::duration(self.checkpoint_after)),
        }
    }

    fn from_wire(s: Option<v1::PersistentSettings>) -> Self {
        use v1::persistent_from::Kind;
        let Some(s) = s else {
            return GroupSettings::default();
        };
        GroupSettings {
            from: match s.from.and_then(|f| f.kind) {
                Some(Kind::End(())) => GroupFrom::End,
                Some(Kind::Revision(r)) => GroupFrom::Revision(r),
                Some(Kind::Position(p)) => GroupFrom::Position(p),
                _ => GroupFrom::Start,
            },
            filter: Filter::from_wire(s.filter),
            strategy: match v1::ConsumerStrategy::try_from(s.consumer_strategy) {
                Ok(v1::ConsumerStrategy::DispatchToSingle) => ConsumerStrategy::DispatchToSingle,
                Ok(v1::ConsumerStrategy::Pinned) => ConsumerStrategy::Pinned,
                _ => ConsumerStrategy::RoundRobin,
            },
            message_timeout: duration_from_wire(s.message_timeout),
            max_retry_count: s.max_retry_count.unwrap_or(10),
            max_subscriber_count: s.max_subscriber_count,
            checkpoint_count: s.checkpoint_count,
            checkpoint_after: duration_from_wire(s.checkpoint_after),
        }
    }
}

/// A consumer of a group, as [`GroupInfo`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupConsumer {
    /// The name it joined with.
    pub name: String,
    /// Events it holds unacknowledged.
    pub in_flight: u32,
    /// Events handed to it.
    pub delivered: u64,
    /// Events it acknowledged.
    pub acked: u64,
    /// Its buffer size.
    pub buffer_size: u32,
}

/// A group's settings, consumers and counters.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct GroupInfo {
    /// What it follows.
    pub target: GroupTarget,
    /// Its name.
    pub group: String,
    /// Its settings.
    pub settings: GroupSettings,
    /// `live`, `idle` or `replaying-parked`.
    pub status: String,
    /// Connected consumers.
    pub consumers: Vec<GroupConsumer>,
    /// Every event up to this position is done and saved.
    pub checkpoint_position: Option<u64>,
    /// The last event the group read.
    pub last_position: Option<u64>,
    /// Parked events not replayed yet.
    pub parked_count: u64,
    /// The stream holding parked events (readable like any stream).
    pub parked_stream: String,
    /// Events of the target after the checkpoint.
    pub lag: u64,
    /// Events handed out, acknowledged, nacked, timed out and parked since
    /// the server started.
    pub delivered_total: u64,
    /// See `delivered_total`.
    pub acked_total: u64,
    /// See `delivered_total`.
    pub nacked_total: u64,
    /// See `delivered_total`.
    pub timeouts_total: u64,
    /// See `delivered_total`.
    pub parked_total: u64,
}

impl GroupInfo {
    fn from_wire(i: v1::PersistentSubscriptionInfo) -> Self {
        GroupInfo {
            target: GroupTarget::from_wire(i.target),
            group: i.group,
            settings: GroupSettings::from_wire(i.settings),
            status: i.status,
            consumers: i
                .consumers
                .into_iter()
                .map(|c| GroupConsumer {
                    name: c.name,
                    in_flight: c.in_flight,
                    delivered: c.delivered,
                    acked: c.acked,
                    buffer_size: c.buffer_size,
                })
                .collect(),
            checkpoint_position: i.checkpoint_position,
            last_position: i.last_position,
            parked_count: i.parked_count,
            parked_stream: i.parked_stream,
            lag: i.lag,
            delivered_total: i.delivered_total,
            acked_total: i.acked_total,
            nacked_total: i.nacked_total,
            timeouts_total: i.timeouts_total,
            parked_total: i.parked_total,
        }
    }
}

/// What to do with events a handler could not process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NackAction {
    /// Deliver again (to any consumer), counting a retry.
    Retry,
    /// Move to the parked stream now.
    Park,
    /// Treat as done.
    Skip,
    /// Give back (no retry counted) and leave the group: the subscription
    /// ends.
    Stop,
}

impl NackAction {
    fn to_wire(self) -> v1::NackAction {
        match self {
            NackAction::Retry => v1::NackAction::Retry,
            NackAction::Park => v1::NackAction::Park,
            NackAction::Skip => v1::NackAction::Skip,
            NackAction::Stop => v1::NackAction::Stop,
        }
    }
}

/// An event handed to this consumer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersistentEvent {
    /// The event.
    pub event: RecordedEvent,
    /// Deliveries of it before this one.
    pub retry_count: u32,
}

/// How to join a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinOptions {
    /// Most unacknowledged events this consumer holds (1..=10,000).
    pub buffer_size: u32,
    /// A name for [`GroupInfo::consumers`].
    pub consumer_name: String,
}

impl Default for JoinOptions {
    fn default() -> Self {
        JoinOptions {
            buffer_size: 10,
            consumer_name: String::new(),
        }
    }
}

type Requests = Arc<Mutex<Option<mpsc::Sender<v1::PersistentReadRequest>>>>;

/// Acknowledges the events of a [`PersistentSubscription`] from any task.
#[derive(Clone, Debug)]
pub struct GroupAcker {
    requests: Requests,
}

impl GroupAcker {
    async fn send(&self, kind: ReadKind) -> Result<(), Error> {
        let tx = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(tx) = tx else {
            return Err(Error::Unavailable {
                message: "the subscription is not connected; its events will come again".into(),
            });
        };
        tx.send(v1::PersistentReadRequest { kind: Some(kind) })
            .await
            .map_err(|_| Error::Unavailable {
                message: "the subscription's call ended; its events will come again".into(),
            })
    }

    /// The events at these positions are done.
    pub async fn ack(&self, positions: impl IntoIterator<Item = u64>) -> Result<(), Error> {
        let positions = positions.into_iter().collect();
        self.send(ReadKind::Ack(v1::PersistentAck { positions }))
            .await
    }

    /// The events at these positions could not be handled.
    pub async fn nack(
        &self,
        positions: impl IntoIterator<Item = u64>,
        action: NackAction,
        reason: impl Into<String>,
    ) -> Result<(), Error> {
        let positions = positions.into_iter().collect();
        self.send(ReadKind::Nack(v1::PersistentNack {
            positions,
            action: action.to_wire() as i32,
            reason: reason.into(),
        }))
        .await
    }
}

/// A consumer of a group: a [`Stream`] of `Result<PersistentEvent,
/// Error>` that joins again by itself after disconnects and server
/// restarts (see [`Client::join_group`]). It ends with an `Err` when
/// joining again cannot help (the group was deleted or is full, a bad
/// request) and with `None` after a [`NackAction::Stop`].
///
/// ```no_run
/// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
/// use strata_client::{GroupTarget, JoinOptions, TryStreamExt};
///
/// let mut sub = client.join_group(GroupTarget::stream("orders"), "billing", JoinOptions::default());
/// while let Some(e) = sub.try_next().await? {
///     println!("{} #{}", e.event.stream, e.event.revision);
///     sub.ack([e.event.position]).await?;
/// }
/// # Ok(()) }
/// ```
pub struct PersistentSubscription {
    acker: GroupAcker,
    inner: BoxStream<'static, Result<PersistentEvent, Error>>,
}

impl std::fmt::Debug for PersistentSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PersistentSubscription")
            .finish_non_exhaustive()
    }
}

impl PersistentSubscription {
    /// A handle to acknowledge this subscription's events from other tasks.
    pub fn acker(&self) -> GroupAcker {
        self.acker.clone()
    }

    /// The events at these positions are done. (The future does not borrow
    /// the subscription.)
    pub fn ack(
        &self,
        positions: impl IntoIterator<Item = u64>,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'static {
        let acker = self.acker.clone();
        let positions: Vec<u64> = positions.into_iter().collect();
        async move { acker.ack(positions).await }
    }

    /// The events at these positions could not be handled.
    pub fn nack(
        &self,
        positions: impl IntoIterator<Item = u64>,
        action: NackAction,
        reason: impl Into<String>,
    ) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'static {
        let acker = self.acker.clone();
        let positions: Vec<u64> = positions.into_iter().collect();
        let reason = reason.into();
        async move { acker.nack(positions, action, reason).await }
    }
}

impl Stream for PersistentSubscription {
    type Item = Result<PersistentEvent, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

/// The state of a consumer between items.
struct Member {
    client: Client,
    options: v1::PersistentReadOptions,
    requests: Requests,
    answers: Option<tonic::Streaming<v1::PersistentReadResponse>>,
    failures: u32,
    done: bool,
}

impl Member {
    async fn join(&mut self) -> Result<(), Error> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(v1::PersistentReadRequest {
            kind: Some(ReadKind::Options(self.options.clone())),
        })
        .await
        .map_err(|_| Error::Unavailable {
            message: "joining the group".into(),
        })?;
        let mut grpc = self.client.groups_grpc();
        let outgoing = stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
        // A full group is FAILED_PRECONDITION here (not a tombstone).
        let mut answers = grpc
            .read(outgoing)
            .await
            .map_err(error_from_other_status)?
            .into_inner();
        match answers.message().await.map_err(error_from_status)? {
            Some(v1::PersistentReadResponse {
                kind: Some(Answer::Confirmation(_)),
            }) => {}
            other => {
                return Err(Error::Server {
                    code: tonic::Code::Internal,
                    message: format!("expected a confirmation, got {other:?}"),
                })
            }
        }
        *self.requests.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        self.answers = Some(answers);
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<PersistentEvent, Error>> {
        loop {
            if self.done {
                return None;
            }
            if self.answers.is_none() {
                if self.failures > 0 {
                    tokio::time::sleep(self.client.options().backoff(self.failures)).await;
                }
                if let Err(e) = self.join().await {
                    if let Some(e) = self.failed(e) {
                        return Some(Err(e));
                    }
                    continue;
                }
            }
            let answers = self.answers.as_mut()?;
            match answers.message().await {
                Ok(Some(v1::PersistentReadResponse {
                    kind: Some(Answer::Event(e)),
                })) => {
                    self.failures = 0;
                    let Some(event) = e.event else { continue };
                    return Some(
                        RecordedEvent::from_wire(event).map(|event| PersistentEvent {
                            event,
                            retry_count: e.retry_count,
                        }),
                    );
                }
                Ok(Some(_)) => continue,
                // The server ends the call after a STOP.
                Ok(None) => {
                    self.done = true;
                    return None;
                }
                Err(status) => {
                    self.answers = None;
                    *self.requests.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    if let Some(e) = self.failed(error_from_status(status)) {
                        return Some(Err(e));
                    }
                }
            }
        }
    }

    /// `Some` when the error ends the subscription; `None` to join again.
    fn failed(&mut self, error: Error) -> Option<Error> {
        self.failures = self.failures.saturating_add(1);
        if self.client.options().resumes(&error, self.failures) {
            None
        } else {
            self.done = true;
            Some(error)
        }
    }
}

impl Client {
    fn groups_grpc(&self) -> PersistentSubscriptionsClient<AuthChannel> {
        PersistentSubscriptionsClient::new(self.channel())
            .max_decoding_message_size(self.options().max_message_size)
    }

    /// Creates a consumer group of `target` named `group`.
    /// [`Error::AlreadyExists`] when it exists.
    pub async fn create_group(
        &self,
        target: GroupTarget,
        group: impl Into<String>,
        settings: GroupSettings,
    ) -> Result<(), Error> {
        let request = v1::CreatePersistentSubscriptionRequest {
            target: Some(target.to_wire()),
            group: group.into(),
            settings: Some(settings.to_wire()),
        };
        let mut grpc = self.groups_grpc();
        self.unary(request, |r| async move { grpc.create(r).await })
            .await
            .map(|_| ())
    }

    /// Replaces a group's settings (its start stays). [`Error::NotFound`]
    /// when it does not exist.
    pub async fn update_group(
        &self,
        target: GroupTarget,
        group: impl Into<String>,
        settings: GroupSettings,
    ) -> Result<(), Error> {
        let request = v1::UpdatePersistentSubscriptionRequest {
            target: Some(target.to_wire()),
            group: group.into(),
            settings: Some(settings.to_wire()),
        };
        let mut grpc = self.groups_grpc();
        self.unary(request, |r| async move { grpc.update(r).await })
            .await
            .map(|_| ())
    }

    /// Deletes a group; its consumers' subscriptions end.
    pub async fn delete_group(
        &self,
        target: GroupTarget,
        group: impl Into<String>,
    ) -> Result<(), Error> {
        let request = v1::DeletePersistentSubscriptionRequest {
            target: Some(target.to_wire()),
            group: group.into(),
        };
        let mut grpc = self.groups_grpc();
        self.unary(request, |r| async move { grpc.delete(r).await })
            .await
            .map(|_| ())
    }

    /// One group's settings, consumers and counters.
    pub async fn group_info(
        &self,
        target: GroupTarget,
        group: impl Into<String>,
    ) -> Result<GroupInfo, Error> {
        let request = v1::GetPersistentSubscriptionInfoRequest {
            target: Some(target.to_wire()),
            group: group.into(),
        };
        let mut grpc = self.groups_grpc();
        self.unary(request, |r| async move { grpc.get_info(r).await })
            .await
            .map(GroupInfo::from_wire)
    }

    /// Every group (of `target`, when given).
    pub async fn list_groups(&self, target: Option<GroupTarget>) -> Result<Vec<GroupInfo>, Error> {
        let request = v1::ListPersistentSubscriptionsRequest {
            target: target.map(|t| t.to_wire()),
        };
        let mut grpc = self.groups_grpc();
        let list = self
            .unary(request, |r| async move { grpc.list(r).await })
            .await?;
        Ok(list.groups.into_iter().map(GroupInfo::from_wire).collect())
    }

    /// Delivers the group's parked events again (at most `stop_at`, the
    /// oldest first), before newer ones; how many were queued.
    pub async fn replay_parked(
        &self,
        target: GroupTarget,
        group: impl Into<String>,
        stop_at: Option<u64>,
    ) -> Result<u64, Error> {
        let request = v1::ReplayParkedRequest {
            target: Some(target.to_wire()),
            group: group.into(),
            stop_at,
        };
        let mut grpc = self.groups_grpc();
        Ok(self
            .unary(request, |r| async move { grpc.replay_parked(r).await })
            .await?
            .replaying)
    }

    /// Joins a group as a consumer. Nothing is sent until the returned
    /// subscription is first polled.
    pub fn join_group(
        &self,
        target: GroupTarget,
        group: impl Into<String>,
        options: JoinOptions,
    ) -> PersistentSubscription {
        let requests: Requests = Arc::default();
        let member = Member {
            client: self.clone(),
            options: v1::PersistentReadOptions {
                target: Some(target.to_wire()),
                group: group.into(),
                buffer_size: options.buffer_size,
                consumer_name: options.consumer_name,
            },
            requests: requests.clone(),
            answers: None,
            failures: 0,
            done: false,
        };
        let inner = stream::unfold(member, |mut m| async move {
            let item = m.next().await?;
            Some((item, m))
        })
        .boxed();
        PersistentSubscription {
            acker: GroupAcker { requests },
            inner,
        }
    }
}
