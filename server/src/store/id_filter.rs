//! An in-memory filter over the first event id of every append ever
//! written (an append's idempotency key), so that the writer recognises a
//! new id as new without touching the index: only a possible repeat goes
//! to sled.
//!
//! A scalable Bloom filter: levels of doubling capacity, each sized for
//! about 1% false positives, so it never needs rebuilding as the log grows.
//! The hash is SipHash with keys chosen at random per process, so ids
//! chosen by a client cannot be made to collide on purpose (that would only
//! cost index lookups, never correctness: a "maybe" is always checked).
//! Owned by the writer thread; filled from the index by a thread of its
//! own after open ([`Ids`]), so that a large index does not delay the first
//! append: until it is full, every id is a "maybe".

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::index::Index;
use super::types::EventId;

/// Bits per entry of a level (about 1% false positives with 7 probes).
const BITS_PER_ENTRY: usize = 10;
/// Probes per lookup.
const PROBES: u64 = 7;
/// Entries of the first level.
const FIRST_CAPACITY: usize = 1 << 16;

/// A Bloom filter of fixed capacity: one level of [`IdFilter`], and a
/// sealed segment's filter in the id index.
pub(crate) struct Bloom {
    bits: Vec<u64>,
    /// Number of bits, a power of two.
    mask: u64,
    capacity: usize,
    len: usize,
}

impl Bloom {
    pub(crate) fn new(capacity: usize) -> Self {
        let nbits = (capacity * BITS_PER_ENTRY).next_power_of_two().max(64);
        Bloom {
            bits: vec![0; nbits / 64],
            mask: nbits as u64 - 1,
            capacity,
            len: 0,
        }
    }

    fn probes(&self, h: u64) -> impl Iterator<Item = u64> + '_ {
        // Double hashing (Kirsch–Mitzenmacher): h1 + i·h2.
        let h2 = h.rotate_left(32) | 1;
        (0..PROBES).map(move |i| h.wrapping_add(i.wrapping_mul(h2)) & self.mask)
    }

    pub(crate) fn insert(&mut self, h: u64) {
        let h2 = h.rotate_left(32) | 1;
        for i in 0..PROBES {
            let b = h.wrapping_add(i.wrapping_mul(h2)) & self.mask;
            self.bits[(b / 64) as usize] |= 1 << (b % 64);
        }
        self.len += 1;
    }

    pub(crate) fn may_contain(&self, h: u64) -> bool {
        self.probes(h)
            .all(|b| self.bits[(b / 64) as usize] & (1 << (b % 64)) != 0)
    }
}

/// "Definitely never written" or "maybe written" for an append's first id.
pub(crate) struct IdFilter {
    hasher: RandomState,
    levels: Vec<Bloom>,
}

impl IdFilter {
    /// An empty filter with fresh random keys.
    pub(crate) fn new() -> Self {
        IdFilter {
            hasher: RandomState::new(),
            levels: vec![Bloom::new(FIRST_CAPACITY)],
        }
    }

    fn hash(&self, id: &EventId) -> u64 {
        self.hasher.hash_one(id.0)
    }

    /// Records an id.
    pub(crate) fn insert(&mut self, id: &EventId) {
        let h = self.hash(id);
        let full = self.levels.last().is_none_or(|l| l.len >= l.capacity);
        if full {
            let capacity = self
                .levels
                .last()
                .map_or(FIRST_CAPACITY, |l| l.capacity * 2);
            self.levels.push(Bloom::new(capacity));
        }
        if let Some(l) = self.levels.last_mut() {
            l.insert(h);
        }
    }

    /// False only if `id` was never inserted.
    pub(crate) fn may_contain(&self, id: &EventId) -> bool {
        let h = self.hash(id);
        self.levels.iter().any(|l| l.may_contain(h))
    }

    /// Ids recorded.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.levels.iter().map(|l| l.len).sum()
    }
}

/// The writer's filter: being filled from the index in the background at
/// first, then complete.
pub(crate) enum Ids {
    /// The fill is running; every id is a "maybe". The ids written
    /// meanwhile are kept to add to the filter when it arrives, since the
    /// fill may have passed them in the index already, or not reached
    /// them.
    Filling {
        rx: Receiver<Option<IdFilter>>,
        written: Vec<EventId>,
        _fill: Fill,
    },
    /// Every id written is in the filter.
    Ready(IdFilter),
    /// The fill failed; every id stays a "maybe" (correct, slower).
    Unavailable,
}

/// The thread filling the filter. Dropping it stops the thread and waits
/// for it, so that the index it reads is let go of when the writer stops.
pub(crate) struct Fill {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Fill {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Ids {
    /// Starts filling a filter from every first id the index holds.
    pub(crate) fn fill(index: Index) -> Self {
        let (tx, rx) = mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let spawned = std::thread::Builder::new()
            .name("strata-id-filter".into())
            .spawn(move || {
                let started = Instant::now();
                let mut filter = IdFilter::new();
                let mut count = 0u64;
                let filled = index.each_first_id(&stopped, |id| {
                    filter.insert(id);
                    count += 1;
                });
                match filled {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "filling the event id filter failed; every id is checked in the index");
                        let _ = tx.send(None);
                        return;
                    }
                }
                tracing::info!(
                    ids = count,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "event id filter filled"
                );
                let _ = tx.send(Some(filter));
            });
        match spawned {
            Ok(thread) => Ids::Filling {
                rx,
                written: Vec::new(),
                _fill: Fill {
                    stop,
                    thread: Some(thread),
                },
            },
            Err(_) => Ids::Unavailable,
        }
    }

    /// Takes the filled filter if it has arrived.
    pub(crate) fn poll(&mut self) {
        let Ids::Filling { rx, written, .. } = self else {
            return;
        };
        *self = match rx.try_recv() {
            Ok(Some(mut filter)) => {
                for id in written.iter() {
                    filter.insert(id);
                }
                Ids::Ready(filter)
            }
            Err(TryRecvError::Empty) => return,
            Ok(None) | Err(TryRecvError::Disconnected) => Ids::Unavailable,
        };
    }

    /// Records an id.
    pub(crate) fn insert(&mut self, id: &EventId) {
        match self {
            Ids::Filling { written, .. } => written.push(*id),
            Ids::Ready(filter) => filter.insert(id),
            Ids::Unavailable => {}
        }
    }

    /// False only if `id` was never written.
    pub(crate) fn may_contain(&self, id: &EventId) -> bool {
        match self {
            Ids::Ready(filter) => filter.may_contain(id),
            Ids::Filling { .. } | Ids::Unavailable => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> EventId {
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&i.to_le_bytes());
        b[8..].copy_from_slice(&(!i).to_le_bytes());
        EventId(b)
    }

    #[test]
    fn every_inserted_id_is_a_maybe_and_few_others_are() {
        let mut f = IdFilter::new();
        let n = 300_000u64; // several levels
        for i in 0..n {
            f.insert(&id(i));
        }
        assert_eq!(f.len(), n as usize);
        assert!(f.levels.len() > 2, "the filter grew levels");
        assert!((0..n).all(|i| f.may_contain(&id(i))), "no false negative");
        let false_positives = (n..n + 100_000).filter(|&i| f.may_contain(&id(i))).count();
        // About 1% per level; a handful of levels.
        assert!(
            false_positives < 6_000,
            "{false_positives} false positives in 100000"
        );
    }

    #[test]
    fn ids_written_while_filling_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = Index::open(dir.path(), std::time::Duration::ZERO).expect("index");
        let mut ids = Ids::fill(index);
        let early = id(7);
        ids.insert(&early);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while !matches!(ids, Ids::Ready(_)) {
            assert!(ids.may_contain(&id(8)), "a maybe until filled");
            assert!(Instant::now() < deadline, "the fill never finished");
            std::thread::sleep(std::time::Duration::from_millis(1));
            ids.poll();
        }
        assert!(ids.may_contain(&early), "written while filling");
        let never = (100..200).filter(|&i| !ids.may_contain(&id(i))).count();
        assert!(
            never > 90,
            "the filter answers \"new\" once filled: {never}"
        );
    }

    #[test]
    fn keys_differ_per_filter() {
        let a = IdFilter::new();
        let b = IdFilter::new();
        let x = id(42);
        assert_ne!(
            a.hash(&x),
            b.hash(&x),
            "per-process (per-filter) random keys"
        );
    }
}
