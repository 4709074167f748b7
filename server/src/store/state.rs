//! The engine's shared state, one small type per concern, each field
//! documented with the thread that writes it. Components (writer, indexer,
//! readers, subscriptions, recovery) depend on this module; it depends on
//! none of them.
//!
//! - [`Progress`]: how far the log and the sled index have got, as two
//!   atomics; nothing waits on them (live subscribers wait on the live
//!   broadcast).
//! - [`Lifecycle`]: whether the store takes appends (open, poisoned by an
//!   I/O failure, closing). One `watch` channel: async waiters
//!   (subscriptions) and readers of the flag use the same value.
//! - [`Shared`]: the two above, plus what never changes after open
//!   (config, directories) and the structures with their own
//!   synchronisation (segment set, sled index and its in-memory tail, live
//!   broadcast). Its `stream_head`, `locate` and `runs` are the index as
//!   readers see it: the tail first, then sled.
//! - [`CommittedBatch`]: what the writer hands to subscribers and the
//!   indexer; [`Observer`]: where the engine reports its work.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::config::StoreConfig;
use super::error::Result;
use super::index::{AppendEntry, Index, Location, RevisionRun, StreamHead};
use super::segment::SegmentSet;
use super::tail::Tail;
use super::types::RecordedEvent;

/// How far the log and the sled index have got. Each value has one writer
/// thread and only grows.
///
/// `committed` is stored with `Release` after everything a reader needs to
/// read up to it (segments, the index tail) is in place, and loaded with
/// `Acquire`: a reader that sees a position sees what it takes to read it.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Durable events: the position the next event gets. Written by
    /// recovery before the writer starts, then only by the writer thread,
    /// after each group commit's sync.
    committed: AtomicU64,
    /// Positions the sled index covers (the tail holds the rest). Written
    /// by recovery, then only by the indexer thread.
    indexed: AtomicU64,
}

impl Progress {
    /// Durable events so far.
    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Acquire)
    }

    /// Positions the sled index covers.
    pub(crate) fn indexed(&self) -> u64 {
        self.indexed.load(Ordering::Acquire)
    }

    /// Writer (and recovery): events up to `position` are durable.
    pub(crate) fn set_committed(&self, position: u64) {
        self.committed.store(position, Ordering::Release);
    }

    /// Indexer (and recovery): sled covers `position` positions.
    pub(crate) fn set_indexed(&self, position: u64) {
        self.indexed.store(position, Ordering::Release);
    }
}

/// Whether the store takes appends.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Condition {
    /// Why the writer refuses appends after an I/O failure (set once, by
    /// the writer or indexer thread that saw the failure).
    pub(crate) poisoned: Option<Arc<str>>,
    /// `close` has started (set by the closing caller): subscriptions end,
    /// appends are refused.
    pub(crate) closing: bool,
}

/// [`Condition`] in a `watch` channel, so async waiters wake on a change.
#[derive(Debug)]
pub(crate) struct Lifecycle {
    condition: watch::Sender<Condition>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            condition: watch::Sender::new(Condition::default()),
        }
    }
}

impl Lifecycle {
    /// Refuses appends from now on (the first reason is kept).
    pub(crate) fn poison(&self, why: String) {
        tracing::error!(reason = %why, "writer poisoned; appends are refused until restart");
        self.condition.send_if_modified(|c| {
            if c.poisoned.is_some() {
                return false;
            }
            c.poisoned = Some(why.into());
            true
        });
    }

    /// Why appends are refused, if they are.
    pub(crate) fn poisoned(&self) -> Option<String> {
        self.condition
            .borrow()
            .poisoned
            .as_deref()
            .map(str::to_owned)
    }

    /// Starts closing.
    pub(crate) fn close(&self) {
        self.condition
            .send_if_modified(|c| !std::mem::replace(&mut c.closing, true));
    }

    /// Whether `close` has started.
    pub(crate) fn is_closing(&self) -> bool {
        self.condition.borrow().closing
    }

    /// A receiver to await changes with.
    pub(crate) fn watch(&self) -> watch::Receiver<Condition> {
        self.condition.subscribe()
    }
}

/// State shared by the writer, the indexer, readers and subscriptions.
pub(crate) struct Shared {
    /// Set at open, never changed.
    pub(crate) config: StoreConfig,
    /// `<data>/log`. Set at open, never changed.
    pub(crate) log_dir: PathBuf,
    /// Open segments. Filled by recovery; the writer thread adds each new
    /// segment (before any record in it is committed); readers look up.
    pub(crate) segments: SegmentSet,
    /// The derived sled index. Written by recovery, then only by the
    /// indexer thread; read by readers and by the writer (id lookups).
    pub(crate) index: Index,
    /// What sled does not cover yet. Set by recovery; then added to by the
    /// writer thread before each batch is visible, trimmed by the indexer
    /// thread once sled covers it.
    pub(crate) tail: Tail,
    /// How far the log and the index have got.
    pub(crate) progress: Progress,
    /// Open, poisoned or closing.
    pub(crate) lifecycle: Lifecycle,
    /// Committed batches for live subscribers. Sent to by the writer thread
    /// only.
    pub(crate) live: broadcast::Sender<Arc<CommittedBatch>>,
    /// Every stream's lifecycle (deletes, tombstones, metadata).
    pub(crate) policies: super::policy::Policies,
    /// The active segment's base and the end of its durable bytes: set by
    /// the writer after each sync, before `Progress::committed` (backups).
    pub(crate) committed_end: std::sync::Mutex<(u64, u64)>,
    /// Where the engine reports its work. Set at open.
    pub(crate) observer: Arc<dyn Observer>,
}

impl Shared {
    /// Whether `filter`'s gate admits an event of `stream` (with the
    /// stream's ACL) with `event_type`: the stream predicate first, so the
    /// event predicate only sees events the reader may read.
    pub(crate) fn admits(&self, filter: &super::Filter, stream: &str, event_type: &str) -> bool {
        let Some(gate) = &filter.gate else {
            return true;
        };
        let policy = self.policies.get(stream);
        let acl = policy
            .as_ref()
            .and_then(|p| p.metadata.as_ref())
            .map(|m| &m.acl);
        gate.admits(stream, acl) && gate.admits_event(stream, event_type)
    }
}

/// Revision runs as the index hands them out, lazily.
pub(crate) type Runs = Box<dyn Iterator<Item = Result<RevisionRun>> + Send>;

/// The index as readers see it: the tail for what sled does not cover yet,
/// sled for the rest. Each takes what it needs of the tail under one lock
/// before it asks sled, so nothing is missed while the indexer trims.
impl Shared {
    /// Head of a stream, if the stream exists (committed or about to be:
    /// a caller bounds what it reads by the committed position).
    pub(crate) fn stream_head(&self, name: &str) -> Result<Option<StreamHead>> {
        match self.tail.head(name) {
            Some(h) => Ok(Some(h)),
            None => self.index.stream(name),
        }
    }

    /// The nearest indexed location at or before `position`, with its
    /// position. When sled fails (it refuses every call once a write of
    /// its failed, say on a full disk), the start of the segment holding
    /// `position`: slower to walk from, but `$all` reads go on.
    pub(crate) fn locate(&self, position: u64) -> Result<Option<(u64, Location)>> {
        if let Some(found) = self.tail.locate(position) {
            return Ok(Some(found));
        }
        match self.index.locate(position) {
            Ok(found) => Ok(found),
            Err(e) => match self.segments.floor(position) {
                Some(seg) => {
                    tracing::debug!(error = %e, position, "the index failed; reading from the segment's start");
                    Ok(Some((
                        seg.base,
                        Location {
                            segment: seg.base,
                            offset: super::segment::HEADER_LEN,
                        },
                    )))
                }
                None => Err(e),
            },
        }
    }

    /// The revision runs of stream `id` that hold revisions in `from..=to`,
    /// ascending or descending.
    pub(crate) fn runs(&self, id: u64, from: u64, to: u64, backwards: bool) -> Result<Runs> {
        let tail = self.tail.runs(id, from, to);
        let base = tail.base;
        // Runs starting at or past the base may be in sled already, and
        // are in the tail's copy too.
        let sled = self
            .index
            .runs(id, from, to, backwards)?
            .filter(move |r| r.as_ref().map_or(true, |r| r.first_position < base));
        let tail = tail.runs.into_iter().map(Ok);
        Ok(if backwards {
            Box::new(tail.rev().chain(sled))
        } else {
            Box::new(sled.chain(tail))
        })
    }
}

/// A durable batch as subscribers and the indexer see it.
pub(crate) struct CommittedBatch {
    /// Position of the first event (or the head, when the batch wrote nothing).
    pub(crate) first_position: u64,
    /// One past the last event's position.
    pub(crate) end_position: u64,
    /// The events, in position order (live batches only; empty when
    /// `elided`).
    pub(crate) events: Vec<RecordedEvent>,
    /// The batch was too large to keep in the live buffer: subscribers
    /// read its events from the log instead.
    pub(crate) elided: bool,
    /// The events as a subscriber's sink made them, for every other
    /// subscriber that takes the whole batch (see `EventSink::whole_batch`).
    pub(crate) encoding: super::sink::SharedEncoding,
    /// Some event is of a `$`-stream (which unfiltered `$all` subscribers
    /// do not get).
    pub(crate) has_system: bool,
    /// Some event is of a stream with a lifecycle policy (which decides,
    /// per subscriber, whether it is visible).
    pub(crate) has_policy: bool,
    /// Index entries of the batch's appends (indexer only).
    pub(crate) entries: Vec<AppendEntry>,
    /// The new heads of the streams the batch wrote (indexer only).
    pub(crate) heads: Vec<(Arc<str>, StreamHead)>,
}

/// Callbacks the engine reports its work to (the server turns them into
/// metrics). Every method has an empty default.
pub trait Observer: Send + Sync + 'static {
    /// A group-commit batch was made durable.
    fn batch_committed(&self, _appends: usize, _events: usize, _bytes: usize, _sync: Duration) {}
    /// The index now covers `position` events.
    fn indexed(&self, _position: u64) {}
    /// A scavenge went through a segment, giving back `bytes` and removing
    /// `events` records (both 0 when it had nothing to reclaim).
    fn segment_scavenged(&self, _bytes: u64, _events: u64) {}
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {}
