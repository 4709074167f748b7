//! The engine's shared state, one small type per concern, each field
//! documented with the thread that writes it. Components (writer, indexer,
//! readers, subscriptions, recovery) depend on this module; it depends on
//! none of them.
//!
//! - [`Progress`]: how far the log and the index have got. One mutex and
//!   one condvar: every wait for "committed" or "indexed" waits here.
//! - [`Lifecycle`]: whether the store takes appends (open, poisoned by an
//!   I/O failure, closing). One `watch` channel: async waiters
//!   (subscriptions) and readers of the flag use the same value.
//! - [`Shared`]: the two above, plus what never changes after open
//!   (config, directories) and the structures with their own
//!   synchronisation (segment set, sled index, live broadcast).
//! - [`CommittedBatch`]: what the writer hands to subscribers and the
//!   indexer; [`Observer`]: where the engine reports its work.

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{broadcast, watch};

use super::config::StoreConfig;
use super::index::{AppendEntry, Index, StreamHead};
use super::segment::SegmentSet;
use super::types::RecordedEvent;

/// How far the log and the index have got.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Positions {
    /// Durable events: the position the next event gets. Written by
    /// recovery before the writer starts, then only by the writer thread,
    /// after each group commit's sync.
    pub(crate) committed: u64,
    /// Positions the sled index covers. Written by recovery, then only by
    /// the indexer thread.
    pub(crate) indexed: u64,
    /// The indexer thread has exited (the writer dropped its channel, or
    /// sled failed): `indexed` will not grow any more. Written by the
    /// indexer thread as it exits.
    pub(crate) indexer_stopped: bool,
}

/// [`Positions`] behind one mutex, with one condvar that is signalled on
/// every change.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    positions: Mutex<Positions>,
    changed: Condvar,
}

impl Progress {
    fn lock(&self) -> MutexGuard<'_, Positions> {
        self.positions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Durable events so far.
    pub(crate) fn committed(&self) -> u64 {
        self.lock().committed
    }

    /// Positions the index covers.
    pub(crate) fn indexed(&self) -> u64 {
        self.lock().indexed
    }

    fn update(&self, f: impl FnOnce(&mut Positions)) {
        let mut p = self.lock();
        f(&mut p);
        drop(p);
        self.changed.notify_all();
    }

    /// Writer (and recovery): events up to `position` are durable.
    pub(crate) fn set_committed(&self, position: u64) {
        self.update(|p| p.committed = position);
    }

    /// Indexer (and recovery): the index covers `position` positions.
    pub(crate) fn set_indexed(&self, position: u64) {
        self.update(|p| p.indexed = position);
    }

    /// Indexer, as it exits.
    pub(crate) fn indexer_stopped(&self) {
        self.update(|p| p.indexer_stopped = true);
    }

    /// Blocks until the index covers `position` positions, or the indexer
    /// has stopped; returns what it covers.
    pub(crate) fn wait_indexed(&self, position: u64) -> u64 {
        let mut p = self.lock();
        // A poisoned writer does not stop the indexer from catching up with
        // what was committed. If the indexer itself stopped (say, the disk
        // is full), reads go on over what it covers; a restart replays the
        // rest from the log.
        while p.indexed < position && !p.indexer_stopped {
            p = self
                .changed
                .wait_timeout(p, Duration::from_millis(100))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        p.indexed
    }

    /// Waits until everything committed so far is indexed; returns the
    /// number of positions a read may look at.
    pub(crate) fn readable_head(&self) -> u64 {
        let committed = self.committed();
        self.wait_indexed(committed)
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
    /// How far the log and the index have got.
    pub(crate) progress: Progress,
    /// Open, poisoned or closing.
    pub(crate) lifecycle: Lifecycle,
    /// Committed batches for live subscribers. Sent to by the writer thread
    /// only.
    pub(crate) live: broadcast::Sender<Arc<CommittedBatch>>,
    /// Where the engine reports its work. Set at open.
    pub(crate) observer: Arc<dyn Observer>,
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
}

/// An observer that ignores everything.
pub struct NoObserver;
impl Observer for NoObserver {}
