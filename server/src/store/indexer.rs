//! The indexer thread: writes committed batches to the sled index in
//! commit order, off the commit path and in large updates (sled's cost is
//! per update far more than per key): it gathers batches until the
//! configured `index_interval` has passed since the oldest or
//! `index_appends` appends are waiting, and writes what it holds when the
//! writer stops.
//! After each update it advances `Progress::indexed` and trims the index
//! tail, which held those batches for readers meanwhile.
//!
//! The writer hands batches over through an [`IndexQueue`] that wakes the
//! indexer only when it has something to decide (the first batch of an
//! interval, a full queue, the end): a batch in between costs the writer a
//! lock, not a thread wake-up on a machine whose cores the commit path
//! needs.
//!
//! It never writes the log. A sled failure poisons the store's appends and
//! stops the indexer; reads go on over the tail and sled, and a restart
//! replays from the log what sled lacks.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::index::StreamHead;
use super::state::{CommittedBatch, Shared};

/// The writer waits while this many times `index_appends` appends wait for
/// the indexer (it is behind: sled is slow).
const BACKLOG_FACTOR: usize = 4;

/// Committed batches on their way from the writer to the indexer.
pub(crate) struct IndexQueue {
    state: Mutex<QueueState>,
    /// The indexer waits on it.
    ready: Condvar,
    /// The writer waits on it while the backlog is too long.
    room: Condvar,
    /// `index_appends`.
    most: usize,
}

#[derive(Default)]
struct QueueState {
    batches: Vec<Arc<CommittedBatch>>,
    appends: usize,
    /// When the oldest waiting batch arrived.
    since: Option<Instant>,
    /// The writer stopped.
    closed: bool,
    /// The indexer stopped (a sled failure).
    gone: bool,
}

impl IndexQueue {
    pub(crate) fn new(most: usize) -> Arc<Self> {
        Arc::new(IndexQueue {
            state: Mutex::default(),
            ready: Condvar::new(),
            room: Condvar::new(),
            most: most.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a batch to the indexer; `Err` when the indexer has stopped.
    pub(crate) fn push(&self, batch: Arc<CommittedBatch>) -> Result<(), ()> {
        let mut s = self.lock();
        while s.appends >= self.most.saturating_mul(BACKLOG_FACTOR) && !s.gone {
            s = self.room.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.gone {
            return Err(());
        }
        let first = s.batches.is_empty();
        if first {
            s.since = Some(Instant::now());
        }
        s.appends += batch.entries.len();
        s.batches.push(batch);
        let full = s.appends >= self.most;
        drop(s);
        if first || full {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The writer has stopped: the indexer writes what is left and ends.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// The next batches to write, once the interval since the oldest has
    /// passed, enough appends wait, or the writer stopped; `None` at the
    /// end.
    fn take(&self, interval: std::time::Duration) -> Option<Vec<Arc<CommittedBatch>>> {
        let mut s = self.lock();
        loop {
            if s.batches.is_empty() {
                if s.closed {
                    return None;
                }
                s = self.ready.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            let due = s.since.unwrap_or_else(Instant::now) + interval;
            let now = Instant::now();
            if s.closed || s.appends >= self.most || now >= due {
                break;
            }
            s = self
                .ready
                .wait_timeout(s, due - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let batches = std::mem::take(&mut s.batches);
        s.appends = 0;
        s.since = None;
        drop(s);
        self.room.notify_all();
        Some(batches)
    }

    fn stopped(&self) {
        self.lock().gone = true;
        self.room.notify_all();
    }
}

/// Closes the queue when the writer goes, however it goes.
pub(crate) struct IndexSender(pub(crate) Arc<IndexQueue>);

impl Drop for IndexSender {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// Writes committed batches to sled until the writer closes the queue.
pub(crate) fn run(shared: Arc<Shared>, queue: Arc<IndexQueue>) {
    let interval = shared.config.index_interval;
    while let Some(batches) = queue.take(interval) {
        if let Err(e) = write(&shared, &batches) {
            shared.lifecycle.poison(format!("index update failed: {e}"));
            queue.stopped();
            return;
        }
    }
}

/// One sled update for `batches`, then the tail forgets them.
fn write(shared: &Shared, batches: &[Arc<CommittedBatch>]) -> super::error::Result<()> {
    let end = batches.last().map_or(0, |b| b.end_position);
    // Later heads of a stream replace earlier ones.
    let mut heads: HashMap<&str, StreamHead> = HashMap::new();
    for b in batches {
        for (name, head) in &b.heads {
            heads.insert(name, *head);
        }
    }
    let heads: Vec<(&str, StreamHead)> = heads.into_iter().collect();
    let entries = batches.iter().flat_map(|b| &b.entries);
    shared.index.apply(entries, &heads, end)?;
    shared.progress.set_indexed(end);
    shared.tail.trim(end);
    shared.observer.indexed(end);
    Ok(())
}
