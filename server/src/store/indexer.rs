//! The indexer thread: applies committed batches to the sled index in
//! commit order, merging whatever is queued into one update (sled's cost is
//! per update far more than per key), and advances `Progress::indexed`.
//! It never writes the log; a sled failure poisons the store's appends and
//! stops the indexer, and reads go on over what the index covers.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::Arc;

use super::index::{AppendEntry, StreamHead};
use super::state::CommittedBatch;
use super::state::Shared;

/// Most committed batches the indexer merges into one index update.
const INDEX_MERGE: usize = 256;

/// Applies committed batches to the index in order, merging whatever is
/// queued into one update: sled's cost is per update far more than per key.
pub(crate) fn run(shared: Arc<Shared>, rx: Receiver<Arc<CommittedBatch>>) {
    index_batches(&shared, rx);
    shared.progress.indexer_stopped();
}

fn index_batches(shared: &Shared, rx: Receiver<Arc<CommittedBatch>>) {
    let mut batches = Vec::with_capacity(INDEX_MERGE);
    while let Ok(first) = rx.recv() {
        batches.push(first);
        while batches.len() < INDEX_MERGE {
            match rx.try_recv() {
                Ok(b) => batches.push(b),
                Err(_) => break,
            }
        }
        let end = batches.last().map_or(0, |b| b.end_position);
        let entries: Vec<AppendEntry> = batches
            .iter()
            .flat_map(|b| b.entries.iter().cloned())
            .collect();
        // Later heads of a stream replace earlier ones.
        let mut heads: HashMap<&str, StreamHead> = HashMap::new();
        for b in &batches {
            for (name, head) in &b.heads {
                heads.insert(name, *head);
            }
        }
        let heads: Vec<(&str, StreamHead)> = heads.into_iter().collect();
        let applied = shared.index.apply(&entries, &heads, end);
        drop(heads);
        batches.clear();
        match applied {
            Ok(()) => {
                shared.progress.set_indexed(end);
                shared.observer.indexed(end);
            }
            Err(e) => {
                shared.lifecycle.poison(format!("index update failed: {e}"));
                return;
            }
        }
    }
}
