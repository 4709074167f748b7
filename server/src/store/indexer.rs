//! The indexer thread: writes committed batches to the sled index in
//! commit order, off the commit path and in large updates (sled's cost is
//! per update far more than per key): it gathers batches until the
//! configured `index_interval` has passed since the oldest or
//! `index_appends` appends are waiting, and writes what it holds when the
//! writer stops.
//! After each update it advances `Progress::indexed` and trims the index
//! tail, which held those batches for readers meanwhile.
//!
//! It never writes the log. A sled failure poisons the store's appends and
//! stops the indexer; reads go on over the tail and sled, and a restart
//! replays from the log what sled lacks.

use std::collections::HashMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use super::index::StreamHead;
use super::state::{CommittedBatch, Shared};

/// Writes committed batches to sled until the writer drops its channel.
pub(crate) fn run(shared: Arc<Shared>, rx: Receiver<Arc<CommittedBatch>>) {
    let mut waiting: Vec<Arc<CommittedBatch>> = Vec::new();
    let mut appends = 0usize;
    let interval = shared.config.index_interval;
    let most = shared.config.index_appends.max(1);
    let mut due = Instant::now();
    loop {
        let received = if waiting.is_empty() {
            rx.recv().map_err(|_| RecvTimeoutError::Disconnected)
        } else {
            rx.recv_timeout(due.saturating_duration_since(Instant::now()))
        };
        let stopping = match received {
            Ok(batch) => {
                if waiting.is_empty() {
                    due = Instant::now() + interval;
                }
                appends += batch.entries.len();
                waiting.push(batch);
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let full = appends >= most || Instant::now() >= due;
        if !waiting.is_empty() && (full || stopping) {
            if let Err(e) = write(&shared, &waiting) {
                shared.lifecycle.poison(format!("index update failed: {e}"));
                return;
            }
            waiting.clear();
            appends = 0;
        }
        if stopping {
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
