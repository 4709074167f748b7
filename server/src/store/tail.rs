//! The index tail: the authoritative in-memory part of the index, for
//! every append committed since the sled index last caught up. The writer
//! adds each committed batch before it answers; the indexer writes batches
//! to sled in large updates and then trims what sled now covers. Readers
//! ask the tail first and sled for the rest, so a read never waits for
//! sled.
//!
//! Everything at or past [`Tail::base`] is in the tail; everything below it
//! is in sled (the indexer trims only after sled covers the trimmed
//! positions). A reader that takes the base and the tail's entries under
//! one lock, then asks sled for what lies below that base, misses nothing
//! and sees nothing twice.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::index::{AppendEntry, Location, RevisionRun, StreamHead};

/// What the tail holds, behind one lock.
#[derive(Debug, Default)]
struct Entries {
    /// Positions below this are in sled.
    base: u64,
    /// Heads of the streams written at or past `base`, with the position
    /// of each stream's last event.
    heads: HashMap<Arc<str>, (StreamHead, u64)>,
    /// Revision runs at or past `base`, per stream id, in revision order.
    runs: HashMap<u64, Vec<RevisionRun>>,
    /// Sparse record locations at or past `base`, in position order.
    locations: Vec<(u64, Location)>,
    /// Streams that exist (stream ids are dense from 0).
    streams: u64,
}

/// The in-memory index tail.
#[derive(Debug, Default)]
pub(crate) struct Tail {
    entries: RwLock<Entries>,
}

/// The revision runs of one stream that the tail holds, and the base below
/// which sled holds the others.
pub(crate) struct TailRuns {
    /// Runs starting below this position are sled's to give.
    pub(crate) base: u64,
    /// The tail's runs of the stream that hold wanted revisions, in
    /// revision order.
    pub(crate) runs: Vec<RevisionRun>,
}

impl Tail {
    /// Recovery: an empty tail over a sled index that covers `base`
    /// positions and holds `streams` streams.
    pub(crate) fn reset(&self, base: u64, streams: u64) {
        *self.write() = Entries {
            base,
            streams,
            ..Entries::default()
        };
    }

    fn read(&self) -> RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Writer: adds a committed batch's appends and new heads (before the
    /// batch is visible to reads).
    pub(crate) fn add(&self, appends: &[AppendEntry], heads: &[(Arc<str>, StreamHead)]) {
        let mut t = self.write();
        for a in appends {
            let at = a.at;
            t.runs.entry(at.stream_id).or_default().push(RevisionRun {
                first_revision: at.revision,
                first_position: at.position,
                count: at.count,
                location: a.first,
            });
            t.locations.extend_from_slice(&a.locations);
            t.streams = t.streams.max(at.stream_id + 1);
        }
        for (name, head) in heads {
            // The head's last event is the last one of its stream's runs.
            let last = t
                .runs
                .get(&head.id)
                .and_then(|r| r.last())
                .map_or(0, |r| r.first_position + u64::from(r.count) - 1);
            t.heads.insert(name.clone(), (*head, last));
        }
    }

    /// Indexer: sled now covers every position below `covered`; forgets
    /// what lies there.
    pub(crate) fn trim(&self, covered: u64) {
        let mut t = self.write();
        if covered <= t.base {
            return;
        }
        t.base = covered;
        t.heads.retain(|_, (_, last)| *last >= covered);
        t.runs.retain(|_, runs| {
            let below = runs.partition_point(|r| r.first_position < covered);
            runs.drain(..below);
            !runs.is_empty()
        });
        let below = t.locations.partition_point(|(p, _)| *p < covered);
        t.locations.drain(..below);
    }

    /// The head of `stream` if the tail has it; `None`: ask sled.
    pub(crate) fn head(&self, stream: &str) -> Option<StreamHead> {
        self.read().heads.get(stream).map(|(h, _)| *h)
    }

    /// The nearest location at or before `position` if `position` is in
    /// the tail; `None`: ask sled.
    pub(crate) fn locate(&self, position: u64) -> Option<(u64, Location)> {
        let t = self.read();
        if position < t.base {
            return None;
        }
        let i = t.locations.partition_point(|(p, _)| *p <= position);
        i.checked_sub(1).map(|i| t.locations[i])
    }

    /// The tail's runs of stream `id` holding revisions in `from..=to`.
    pub(crate) fn runs(&self, id: u64, from: u64, to: u64) -> TailRuns {
        let t = self.read();
        let runs = t.runs.get(&id).map_or_else(Vec::new, |runs| {
            let lo = runs.partition_point(|r| r.end_revision() <= from);
            let hi = runs.partition_point(|r| r.first_revision <= to);
            runs[lo..hi.max(lo)].to_vec()
        });
        TailRuns { base: t.base, runs }
    }

    /// Number of streams.
    pub(crate) fn streams(&self) -> u64 {
        self.read().streams
    }

    /// Number of appends held (for the indexer's size bound and tests).
    #[cfg(test)]
    pub(crate) fn appends(&self) -> usize {
        self.read().runs.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::index::IdEntry;
    use crate::store::types::EventId;

    fn entry(stream_id: u64, position: u64, revision: u64, count: u32) -> AppendEntry {
        AppendEntry {
            first_id: EventId([position as u8; 16]),
            at: IdEntry {
                position,
                revision,
                stream_id,
                count,
            },
            first: Location {
                segment: 0,
                offset: position * 10,
            },
            locations: vec![(
                position,
                Location {
                    segment: 0,
                    offset: position * 10,
                },
            )],
        }
    }

    fn head(id: u64, last_revision: u64) -> StreamHead {
        StreamHead { id, last_revision }
    }

    #[test]
    fn holds_what_sled_lacks_and_trims_what_it_has() {
        let tail = Tail::default();
        tail.reset(10, 1);
        let a: Arc<str> = Arc::from("a");
        let b: Arc<str> = Arc::from("b");
        // a: revisions 5..7 at 10..12; b (new): 0..1 at 12; a: 7..8 at 13.
        tail.add(
            &[entry(0, 10, 5, 2), entry(1, 12, 0, 1)],
            &[(a.clone(), head(0, 6)), (b.clone(), head(1, 0))],
        );
        tail.add(&[entry(0, 13, 7, 1)], &[(a.clone(), head(0, 7))]);
        assert_eq!(tail.streams(), 2);
        assert_eq!(tail.head("a"), Some(head(0, 7)));
        assert_eq!(tail.head("c"), None);
        assert_eq!(tail.locate(9), None, "below the base: sled's");
        assert_eq!(tail.locate(11).map(|(p, _)| p), Some(10));
        assert_eq!(tail.locate(13).map(|(p, _)| p), Some(13));
        let revs = |from, to| -> Vec<u64> {
            tail.runs(0, from, to)
                .runs
                .iter()
                .map(|r| r.first_revision)
                .collect()
        };
        assert_eq!(revs(0, u64::MAX), vec![5, 7]);
        assert_eq!(revs(6, 6), vec![5]);
        assert_eq!(revs(7, u64::MAX), vec![7]);
        assert_eq!(revs(8, u64::MAX), Vec::<u64>::new());
        assert_eq!(revs(0, 4), Vec::<u64>::new());

        tail.trim(13);
        assert_eq!(tail.runs(0, 0, u64::MAX).base, 13);
        assert_eq!(revs(0, u64::MAX), vec![7]);
        assert_eq!(tail.head("b"), None, "b's last event is in sled now");
        assert_eq!(tail.head("a"), Some(head(0, 7)));
        assert_eq!(tail.locate(12), None);
        assert_eq!(tail.appends(), 1);
        tail.trim(5);
        assert_eq!(tail.runs(0, 0, u64::MAX).base, 13, "trims never go back");
        tail.trim(14);
        assert_eq!(tail.appends(), 0);
        assert_eq!(tail.head("a"), None);
        assert_eq!(tail.streams(), 2);
    }
}
