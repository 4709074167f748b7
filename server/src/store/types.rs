//! The engine's domain types: what an append carries, what a read returns.

use std::sync::Arc;

use bytes::Bytes;

/// A client-chosen event id (a UUID) that makes retries idempotent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub [u8; 16]);

impl EventId {
    /// A fresh random (version 4) id.
    pub fn random() -> Self {
        EventId(*uuid::Uuid::new_v4().as_bytes())
    }

    /// The 16 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        uuid::Uuid::from_bytes(self.0).hyphenated().fmt(f)
    }
}

impl std::fmt::Debug for EventId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "EventId({self})")
    }
}

/// An event as a client proposes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// Idempotency id.
    pub id: EventId,
    /// Event type, 1..=255 bytes of UTF-8.
    pub event_type: String,
    /// Opaque payload.
    pub data: Bytes,
    /// Opaque metadata.
    pub metadata: Bytes,
    /// Optional media type of `data`, e.g. `application/json`.
    pub content_type: Option<String>,
}

/// A stored event as reads and subscriptions return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    /// The stream the event belongs to.
    pub stream: Arc<str>,
    /// 0-based index inside its stream.
    pub revision: u64,
    /// 0-based index in the global log (`$all`).
    pub position: u64,
    /// The client's event id.
    pub id: EventId,
    /// Event type.
    pub event_type: String,
    /// Payload.
    pub data: Bytes,
    /// Metadata.
    pub metadata: Bytes,
    /// Media type of `data`, when the client gave one.
    pub content_type: Option<String>,
    /// When the writer committed the event, in microseconds since the Unix epoch.
    pub recorded_at_micros: i64,
}

/// The optimistic-concurrency condition of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpectedVersion {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream must hold at least one event.
    StreamExists,
    /// The stream's last event must have exactly this revision.
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether the condition holds for a stream whose last visible
    /// revision is `current` (`None`: no stream).
    pub fn holds(self, current: Option<u64>) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => current.is_none(),
            ExpectedVersion::StreamExists => current.is_some(),
            ExpectedVersion::Exact(r) => current == Some(r),
        }
    }
}

/// One append: events for one stream under one expected-version condition.
#[derive(Clone, Debug)]
pub struct AppendRequest {
    /// Target stream.
    pub stream: String,
    /// Concurrency condition.
    pub expected: ExpectedVersion,
    /// 1..=N events, written atomically.
    pub events: Vec<NewEvent>,
}

/// A condition on a stream that a multi-append does not write.
#[derive(Clone, Debug)]
pub struct StreamCheck {
    /// The stream.
    pub stream: String,
    /// The state it must be in.
    pub expected: ExpectedVersion,
}

/// Several appends (each to a different stream) and conditions on other
/// streams, committed in one atomic write or not at all.
#[derive(Clone, Debug)]
pub struct MultiAppendRequest {
    /// The appends, in the order their events take positions; at least one.
    pub appends: Vec<AppendRequest>,
    /// Conditions on streams that are not written.
    pub checks: Vec<StreamCheck>,
}

/// Where one append of a multi-append landed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamResult {
    /// The stream.
    pub stream: String,
    /// Revision of its last written event.
    pub next_expected_revision: u64,
    /// Position of its last written event.
    pub position: u64,
}

/// A stream whose condition did not hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The stream.
    pub stream: String,
    /// Revision of its last event; `None` when it does not exist.
    pub current_revision: Option<u64>,
    /// What the request expected.
    pub expected: ExpectedVersion,
}

/// The answer to a valid multi-append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiAppendOutcome {
    /// Every append is durable (or was already, for an idempotent retry).
    Success {
        /// One result per append, in request order.
        results: Vec<StreamResult>,
        /// Position of the last event written.
        position: u64,
    },
    /// At least one append or check failed; nothing was written.
    WrongExpectedVersion {
        /// Every append and check that failed, in request order (appends first).
        conflicts: Vec<Conflict>,
    },
}

/// The answer to an append that was valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The events are durable (or were already, for an idempotent retry).
    Success {
        /// Revision of the last written event.
        next_expected_revision: u64,
        /// Position of the last written event.
        position: u64,
    },
    /// The expected version did not hold; nothing was written.
    WrongExpectedVersion {
        /// Revision of the stream's last event; `None` when the stream does not exist.
        current_revision: Option<u64>,
        /// What the request expected.
        expected: ExpectedVersion,
    },
}

/// Direction of a read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Direction {
    /// Ascending revisions / positions.
    #[default]
    Forwards,
    /// Descending revisions / positions.
    Backwards,
}

/// Where a read starts. `At` is inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// The first event (forwards) or, backwards, nothing before it.
    Start,
    /// The last event (backwards) or, forwards, nothing after it.
    End,
    /// A revision (stream reads) or position (`$all` reads), included.
    At(u64),
}

/// Where a subscription starts. `After` is exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubscribeFrom {
    /// From the first event.
    Start,
    /// Only events committed after the subscription started.
    End,
    /// The event after this revision (stream) or position (`$all`).
    After(u64),
}

/// A filter for `$all`: an event matches when, for every non-empty list,
/// it matches one of its prefixes, and the gate (if any) admits it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Stream-name prefixes.
    pub stream_prefixes: Vec<String>,
    /// Event-type prefixes.
    pub event_type_prefixes: Vec<String>,
    /// The reader's own predicates: which streams it may see at all (the
    /// security layer's access rules) and which events its protocol asks
    /// for beyond prefixes; `None` admits everything.
    pub gate: Option<StreamGate>,
}

/// Predicates a reader brings, which the read paths ask of every event
/// that passes the filter's prefixes: one over its stream's name and ACL
/// (e.g. the security layer's access rules), then one over its stream name
/// and event type (e.g. a protocol's regular-expression filter), so the
/// second never sees an event the first refuses. Either may be absent;
/// both must admit. The store only evaluates them; what they mean is their
/// maker's business.
#[derive(Clone)]
pub struct StreamGate {
    streams: Option<Arc<GateFn>>,
    events: Option<Arc<EventFn>>,
}

type GateFn = dyn Fn(&str, Option<&crate::store::StreamAcl>) -> bool + Send + Sync;
type EventFn = dyn Fn(&str, &str) -> bool + Send + Sync;

impl StreamGate {
    /// A gate admitting the streams for which `admits` is true.
    pub fn new(
        admits: impl Fn(&str, Option<&crate::store::StreamAcl>) -> bool + Send + Sync + 'static,
    ) -> Self {
        StreamGate {
            streams: Some(Arc::new(admits)),
            events: None,
        }
    }

    /// A gate admitting the events for which `admits(stream, event_type)`
    /// is true.
    pub fn events(admits: impl Fn(&str, &str) -> bool + Send + Sync + 'static) -> Self {
        StreamGate {
            streams: None,
            events: Some(Arc::new(admits)),
        }
    }

    /// A gate admitting what both `self` and `other` admit.
    pub fn and(self, other: StreamGate) -> Self {
        let streams = match (self.streams, other.streams) {
            (Some(a), Some(b)) => {
                let both: Arc<GateFn> = Arc::new(move |s, acl| a(s, acl) && b(s, acl));
                Some(both)
            }
            (a, b) => a.or(b),
        };
        let events = match (self.events, other.events) {
            (Some(a), Some(b)) => {
                let both: Arc<EventFn> = Arc::new(move |s, t| a(s, t) && b(s, t));
                Some(both)
            }
            (a, b) => a.or(b),
        };
        StreamGate { streams, events }
    }

    /// Whether `stream`, whose ACL is `acl`, is admitted.
    pub fn admits(&self, stream: &str, acl: Option<&crate::store::StreamAcl>) -> bool {
        self.streams.as_ref().is_none_or(|f| f(stream, acl))
    }

    /// Whether an event of `stream` with `event_type` is admitted.
    pub fn admits_event(&self, stream: &str, event_type: &str) -> bool {
        self.events.as_ref().is_none_or(|f| f(stream, event_type))
    }
}

impl std::fmt::Debug for StreamGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamGate")
            .field("streams", &self.streams.is_some())
            .field("events", &self.events.is_some())
            .finish()
    }
}

impl PartialEq for StreamGate {
    fn eq(&self, other: &Self) -> bool {
        fn same<T: ?Sized>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
        }
        same(&self.streams, &other.streams) && same(&self.events, &other.events)
    }
}

impl Eq for StreamGate {}

impl Filter {
    /// True when the filter lets everything through.
    pub fn is_empty(&self) -> bool {
        self.stream_prefixes.is_empty()
            && self.event_type_prefixes.is_empty()
            && self.gate.is_none()
    }

    /// A filter that every event matches, those of `$`-streams too (an
    /// empty filter leaves those out).
    pub fn every_stream() -> Self {
        Filter {
            stream_prefixes: vec![String::new(), "$".into()],
            event_type_prefixes: Vec::new(),
            gate: None,
        }
    }

    /// Whether an event of `stream` with `event_type` passes the prefixes
    /// (the read paths ask the gate apart, as it needs the stream's ACL).
    /// Events of `$`-streams (metadata history, lifecycle records) pass
    /// only a filter with a stream prefix that starts with `$`.
    pub fn matches(&self, stream: &str, event_type: &str) -> bool {
        if stream.starts_with('$') && !self.stream_prefixes.iter().any(|p| p.starts_with('$')) {
            return false;
        }
        let stream_ok = self.stream_prefixes.is_empty()
            || self
                .stream_prefixes
                .iter()
                .any(|p| stream.starts_with(p.as_str()));
        let type_ok = self.event_type_prefixes.is_empty()
            || self
                .event_type_prefixes
                .iter()
                .any(|p| event_type.starts_with(p.as_str()));
        stream_ok && type_ok
    }
}

/// What a subscription reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriptionTarget {
    /// One stream (which may not exist yet).
    Stream(String),
    /// The global log, filtered.
    All(Filter),
}

/// A change to a stream's lifecycle, recorded in the log like an append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LifecycleRequest {
    /// Soft delete: the stream's events are hidden and it counts as not
    /// existing until an append re-creates it (revisions continue).
    Delete {
        /// The stream.
        stream: String,
        /// Checked against the stream.
        expected: ExpectedVersion,
    },
    /// Hard delete: final.
    Tombstone {
        /// The stream (it need not exist).
        stream: String,
        /// Checked against the stream.
        expected: ExpectedVersion,
    },
    /// Replaces the stream's metadata (the stream need not exist).
    SetMetadata {
        /// The stream.
        stream: String,
        /// Checked against the metadata's own revision.
        expected: ExpectedVersion,
        /// The new metadata.
        metadata: super::policy::StreamMetadata,
    },
}

impl LifecycleRequest {
    /// The stream the change is about.
    pub fn stream(&self) -> &str {
        match self {
            LifecycleRequest::Delete { stream, .. }
            | LifecycleRequest::Tombstone { stream, .. }
            | LifecycleRequest::SetMetadata { stream, .. } => stream,
        }
    }
}

/// The result of a lifecycle change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LifecycleOutcome {
    /// Recorded.
    Success {
        /// Position of the record in the log.
        position: u64,
        /// The metadata's new revision (metadata changes only).
        metadata_revision: Option<u64>,
    },
    /// The expected version did not hold; nothing was written.
    WrongExpectedVersion {
        /// The stream's last revision (or the metadata's), absent when none.
        current_revision: Option<u64>,
        /// What the request expected.
        expected: ExpectedVersion,
    },
}

/// A stream's metadata as `GetStreamMetadata` answers it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetadataAnswer {
    /// The metadata (empty when never set).
    pub metadata: super::policy::StreamMetadata,
    /// Its revision; absent when never set.
    pub metadata_revision: Option<u64>,
}

/// One message of a subscription.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SubscriptionMessage<E = Vec<RecordedEvent>> {
    /// Events in order, never repeated, never skipped.
    Events(E),
    /// Sent once, when the subscription first reaches the live head. Each
    /// value is a point to resume after, with no gap and no duplicate.
    CaughtUp {
        /// `$all`: the last position covered (the last event scanned, or
        /// the one it started after); `None` while the log is empty, and
        /// for streams.
        position: Option<u64>,
        /// A stream: the last revision covered; `None` while the stream
        /// is empty, and for `$all`.
        revision: Option<u64>,
    },
    /// Progress of a filtered `$all` subscription.
    Checkpoint {
        /// The last position scanned (delivered if it matched).
        position: u64,
    },
}

/// Counters describing the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Number of durable events, which is also the next position.
    pub head_position: u64,
    /// Number of positions the index covers.
    pub indexed_position: u64,
    /// Number of streams.
    pub streams: u64,
    /// Bytes used by segment files.
    pub log_bytes: u64,
    /// Number of segment files.
    pub segments: u64,
    /// Bytes used by the index on disk.
    pub index_bytes: u64,
}

/// The wall clock in microseconds since the Unix epoch (commit times,
/// retention by age).
pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
