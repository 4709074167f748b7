//! Subscriptions that survive disconnects and server restarts.
//!
//! A [`Subscription`] remembers what it has delivered: the last revision
//! for a stream, the next global position for `$all` (from the last event,
//! checkpoint or caught-up marker). When the server stream breaks with a
//! transient error, it waits (exponential backoff, capped), subscribes again
//! from exactly there, and drops anything it already delivered, so the
//! caller sees every event once, in order. Errors that retrying cannot fix
//! end it.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use strata_proto::v1;
use strata_proto::v1::subscribe_response::Content;

use crate::client::Client;
use crate::error::{error_from_status, Error};
use crate::event::RecordedEvent;
use crate::filter::Filter;

/// Where a subscription starts; the event there is excluded.
///
/// ```
/// use strata_client::SubscribeFrom;
///
/// // Continue a `$all` projection after the position it saved:
/// let saved: Option<u64> = Some(41);
/// let from = saved.map_or(SubscribeFrom::Start, SubscribeFrom::AfterPosition);
/// assert_eq!(from, SubscribeFrom::AfterPosition(41));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubscribeFrom {
    /// Everything stored, then live events.
    Start,
    /// Only events committed after the subscription is set up.
    End,
    /// The events after this revision (stream subscriptions).
    AfterRevision(u64),
    /// The events after this global position (`$all` subscriptions).
    AfterPosition(u64),
}

impl SubscribeFrom {
    fn to_wire(self) -> v1::SubscribeFrom {
        match self {
            SubscribeFrom::Start => v1::SubscribeFrom::start(),
            SubscribeFrom::End => v1::SubscribeFrom::end(),
            SubscribeFrom::AfterRevision(r) => v1::SubscribeFrom::after_revision(r),
            SubscribeFrom::AfterPosition(p) => v1::SubscribeFrom::after_position(p),
        }
    }
}

/// One item of a [`Subscription`].
///
/// ```no_run
/// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
/// use strata_client::{Filter, SubscribeFrom, SubscriptionMessage, TryStreamExt};
///
/// let mut sub = client.subscribe_to_all(SubscribeFrom::Start, Filter::new());
/// while let Some(message) = sub.try_next().await? {
///     match message {
///         SubscriptionMessage::Event(e) => println!("{} {}", e.position, e.event_type),
///         SubscriptionMessage::CaughtUp { position, .. } => println!("live after {position:?}"),
///         SubscriptionMessage::Checkpoint { position } => println!("scanned up to {position}"),
///         _ => {}
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubscriptionMessage {
    /// The next event, in commit order.
    Event(RecordedEvent),
    /// Every event committed before the subscription reached the live head
    /// has been delivered. Yielded once per [`Subscription`] (not again
    /// after it resumes).
    CaughtUp {
        /// `$all`: the last position covered (the last event scanned, or
        /// the one the subscription started after); `None` while the log is
        /// empty, and for stream subscriptions.
        position: Option<u64>,
        /// A stream: the last revision covered; `None` while the stream is
        /// empty, and for `$all` subscriptions.
        revision: Option<u64>,
    },
    /// Progress of a filtered `$all` subscription: every event up to and
    /// including `position` was scanned, and delivered if it matched.
    Checkpoint {
        /// The position of the last event scanned.
        position: u64,
    },
}

impl SubscriptionMessage {
    /// For `$all` subscriptions: the position to save so that
    /// `SubscribeFrom::AfterPosition(saved)` continues right after this
    /// message. `None` when there is nothing to save yet (caught up on an
    /// empty log: resume from `Start`).
    ///
    /// ```
    /// use strata_client::SubscriptionMessage;
    ///
    /// assert_eq!(SubscriptionMessage::Checkpoint { position: 9 }.resume_position(), Some(9));
    /// let empty = SubscriptionMessage::CaughtUp { position: None, revision: None };
    /// assert_eq!(empty.resume_position(), None);
    /// ```
    pub fn resume_position(&self) -> Option<u64> {
        match self {
            SubscriptionMessage::Event(e) => Some(e.position),
            SubscriptionMessage::CaughtUp { position, .. } => *position,
            SubscriptionMessage::Checkpoint { position } => Some(*position),
        }
    }

    /// For stream subscriptions: the revision to save so that
    /// `SubscribeFrom::AfterRevision(saved)` continues right after this
    /// message. `None` when there is nothing to save yet (caught up on an
    /// empty stream: resume from `Start`).
    ///
    /// ```
    /// use strata_client::SubscriptionMessage;
    ///
    /// let caught_up = SubscriptionMessage::CaughtUp { position: None, revision: Some(4) };
    /// assert_eq!(caught_up.resume_revision(), Some(4));
    /// ```
    pub fn resume_revision(&self) -> Option<u64> {
        match self {
            SubscriptionMessage::Event(e) => Some(e.revision),
            SubscriptionMessage::CaughtUp { revision, .. } => *revision,
            SubscriptionMessage::Checkpoint { .. } => None,
        }
    }
}

/// A live subscription: a [`Stream`] of `Result<SubscriptionMessage,
/// Error>` that resumes by itself after disconnects and server restarts
/// (see [`Client::subscribe_to_stream`] and [`Client::subscribe_to_all`]).
/// It yields an `Err` and ends only when resuming cannot help (an invalid
/// request, or [`ClientOptions::max_resume_attempts`](crate::ClientOptions::max_resume_attempts)
/// exceeded). Drop it to unsubscribe.
///
/// ```no_run
/// # async fn demo(client: strata_client::Client) -> Result<(), strata_client::Error> {
/// use strata_client::{StreamExt, SubscribeFrom, SubscriptionMessage};
///
/// // Print the next 10 events of stream "chat", then unsubscribe.
/// let events = client
///     .subscribe_to_stream("chat", SubscribeFrom::End)
///     .filter_map(|m| async move {
///         match m {
///             Ok(SubscriptionMessage::Event(e)) => Some(e),
///             _ => None,
///         }
///     })
///     .take(10);
/// events.for_each(|e| async move { println!("{}", e.event_type) }).await;
/// # Ok(()) }
/// ```
pub struct Subscription {
    inner: BoxStream<'static, Result<SubscriptionMessage, Error>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").finish_non_exhaustive()
    }
}

impl Subscription {
    pub(crate) fn to_stream(client: Client, stream: String, from: SubscribeFrom) -> Self {
        Self::new(Follow::new(client, Target::Stream(stream), from))
    }

    pub(crate) fn to_all(client: Client, from: SubscribeFrom, filter: Filter) -> Self {
        Self::new(Follow::new(client, Target::All(filter), from))
    }

    fn new(follow: Follow) -> Self {
        let inner = stream::unfold(follow, |mut f| async move {
            let item = f.next().await?;
            Some((item, f))
        });
        Subscription {
            inner: inner.boxed(),
        }
    }
}

impl Stream for Subscription {
    type Item = Result<SubscriptionMessage, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

enum Target {
    Stream(String),
    All(Filter),
}

/// The state of one subscription across its server streams.
struct Follow {
    client: Client,
    target: Target,
    /// Where the caller asked to start.
    origin: SubscribeFrom,
    /// Stream target: revision of the last delivered event.
    last_revision: Option<u64>,
    /// `$all` target: every position below this was delivered or skipped.
    next_position: Option<u64>,
    /// Stream target caught up on an empty stream, nothing delivered yet:
    /// a resume starts from the start (not from `End`, which would skip
    /// what was appended meanwhile).
    from_start: bool,
    caught_up_sent: bool,
    live: Option<tonic::Streaming<v1::SubscribeResponse>>,
    batch: VecDeque<v1::RecordedEvent>,
    /// Consecutive failed attempts since the last delivered message.
    failures: u32,
    done: bool,
}

impl Follow {
    fn new(client: Client, target: Target, origin: SubscribeFrom) -> Self {
        Follow {
            client,
            target,
            origin,
            last_revision: None,
            next_position: None,
            from_start: false,
            caught_up_sent: false,
            live: None,
            batch: VecDeque::new(),
            failures: 0,
            done: false,
        }
    }

    /// The next message for the caller; `None` once the subscription ended.
    async fn next(&mut self) -> Option<Result<SubscriptionMessage, Error>> {
        loop {
            if self.done {
                return None;
            }
            while let Some(event) = self.batch.pop_front() {
                if !self.is_new(&event) {
                    continue;
                }
                return Some(match RecordedEvent::from_wire(event) {
                    Ok(event) => {
                        self.delivered(&event);
                        Ok(SubscriptionMessage::Event(event))
                    }
                    Err(e) => {
                        self.done = true;
                        Err(e)
                    }
                });
            }
            let Some(live) = self.live.as_mut() else {
                if self.failures > 0 {
                    tokio::time::sleep(self.client.options().backoff(self.failures)).await;
                }
                match self.client.open_subscription(self.request()).await {
                    Ok(live) => self.live = Some(live),
                    Err(e) => {
                        if let Some(end) = self.failed(e) {
                            return Some(Err(end));
                        }
                    }
                }
                continue;
            };
            let content = match live.message().await {
                Ok(Some(response)) => response.content,
                Ok(None) => {
                    // A server stream ends only on shutdown, which sends
                    // UNAVAILABLE first; a bare end means the same.
                    let lost = Error::Unavailable {
                        message: "the subscription ended without a status".into(),
                    };
                    if let Some(end) = self.failed(lost) {
                        return Some(Err(end));
                    }
                    continue;
                }
                Err(status) => {
                    if let Some(end) = self.failed(error_from_status(status)) {
                        return Some(Err(end));
                    }
                    continue;
                }
            };
            self.failures = 0;
            match content {
                Some(Content::Events(batch)) => self.batch = batch.events.into(),
                Some(Content::CaughtUp(v1::CaughtUp { position, revision })) => {
                    // Nothing covered yet (an empty log) resumes from the start.
                    self.scanned_to(position.map_or(0, |p| p + 1));
                    if let Target::Stream(_) = self.target {
                        if self.last_revision.is_none() {
                            match revision {
                                Some(r) => self.last_revision = Some(r),
                                // Caught up on an empty stream: a resume
                                // from the start misses nothing.
                                None => self.from_start = true,
                            }
                        }
                    }
                    if !self.caught_up_sent {
                        self.caught_up_sent = true;
                        return Some(Ok(SubscriptionMessage::CaughtUp { position, revision }));
                    }
                }
                Some(Content::Checkpoint(v1::Checkpoint { position })) => {
                    self.scanned_to(position + 1);
                    return Some(Ok(SubscriptionMessage::Checkpoint { position }));
                }
                None => {}
            }
        }
    }

    /// Handles a failed attempt: returns the error to end with, or `None`
    /// to try again (after a backoff).
    fn failed(&mut self, error: Error) -> Option<Error> {
        self.live = None;
        self.batch.clear();
        self.failures = self.failures.saturating_add(1);
        if self.client.options().resumes(&error, self.failures) {
            return None;
        }
        self.done = true;
        Some(error)
    }

    /// Whether `event` is after everything already delivered.
    fn is_new(&self, event: &v1::RecordedEvent) -> bool {
        match self.target {
            Target::Stream(_) => self.last_revision.is_none_or(|r| event.revision > r),
            Target::All(_) => self.next_position.is_none_or(|n| event.position >= n),
        }
    }

    fn delivered(&mut self, event: &RecordedEvent) {
        match self.target {
            Target::Stream(_) => self.last_revision = Some(event.revision),
            Target::All(_) => self.scanned_to(event.position + 1),
        }
    }

    /// `$all`: everything below `position` was delivered or filtered out.
    fn scanned_to(&mut self, position: u64) {
        if let Target::All(_) = self.target {
            self.next_position = Some(self.next_position.map_or(position, |n| n.max(position)));
        }
    }

    /// The request that continues right after what was delivered.
    fn request(&self) -> v1::SubscribeRequest {
        use v1::subscribe_request::Target as Wire;
        let (target, filter, from) = match &self.target {
            Target::Stream(stream) => {
                let from = match (self.last_revision, self.from_start) {
                    (Some(revision), _) => SubscribeFrom::AfterRevision(revision),
                    (None, true) => SubscribeFrom::Start,
                    (None, false) => self.origin,
                };
                (Wire::Stream(stream.clone()), None, from)
            }
            Target::All(filter) => {
                let from = match self.next_position {
                    Some(0) => SubscribeFrom::Start,
                    Some(next) => SubscribeFrom::AfterPosition(next - 1),
                    None => self.origin,
                };
                (Wire::All(v1::AllTarget {}), filter.to_wire(), from)
            }
        };
        v1::SubscribeRequest {
            target: Some(target),
            from: Some(from.to_wire()),
            filter,
        }
    }
}
