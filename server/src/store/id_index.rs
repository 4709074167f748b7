//! The event-id part of the index: for each append, its first event id
//! (the append's idempotency key) → where the append is. Looked up only
//! when the writer's filter says an id may have been written before.
//!
//! sled's cost is per key written, and ids are random keys: one insert per
//! append was most of what the whole index cost. So ids are kept by log
//! segment instead. A sealed segment's ids go to sled once, as one table
//! sorted by id in chunks of [`CHUNK`] entries, when the first append of a
//! later segment is indexed; the ids of the newest segment live in memory,
//! and a restart reads them again from that segment, which recovery scans
//! from its start anyway ([`IdIndex::ids_from`]). Each table has a Bloom
//! filter in memory, so that a lookup reads only the tables that may hold
//! the id.
//!
//! Indexes of layouts up to 3 kept one key per append in the `event_ids`
//! tree; it is kept, read only, for the appends it holds.

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::error::Result;
use super::id_filter::Bloom;
use super::index::{be_u64, AppendEntry, IdEntry};
use super::types::EventId;

/// Entries under one key of a table.
const CHUNK: usize = 512;

/// Keys of a table in one sled batch.
const BATCH_KEYS: usize = 32;

/// Bytes of one entry: id, position, revision, stream id, count.
const ENTRY_BYTES: usize = 44;

/// The ids of one segment without a table, by first id.
type SegmentIds = HashMap<EventId, IdEntry>;

/// Event ids of every indexed append.
pub(crate) struct IdIndex {
    /// (segment base, first id of the chunk) → the chunk's entries.
    tables: sled::Tree,
    /// One key per append, from layouts up to 3; read only.
    legacy: sled::Tree,
    has_legacy: bool,
    /// Keys the tables' filters; chosen per process.
    hasher: RandomState,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The ids of segments without a table, by segment base. Only the
    /// newest one still grows; the others are being written out.
    recent: BTreeMap<u64, Arc<SegmentIds>>,
    /// Segments with a table, and the table's filter once it is built
    /// (after a restart the filters are built by the writer's filter fill;
    /// a table without one is always read).
    tabled: BTreeMap<u64, Option<Bloom>>,
}

impl IdIndex {
    /// Over the `tables` tree and the layout-3 `legacy` one.
    pub(crate) fn open(tables: sled::Tree, legacy: sled::Tree) -> Result<Self> {
        let mut tabled = BTreeMap::new();
        let mut from = Vec::new();
        // One range lookup per table.
        while let Some(kv) = tables.range(from.as_slice()..).next() {
            let base = be_u64(&kv?.0, 0);
            tabled.insert(base, None);
            match base.checked_add(1) {
                Some(next) => from = next.to_be_bytes().to_vec(),
                None => break,
            }
        }
        Ok(IdIndex {
            has_legacy: !legacy.is_empty(),
            tables,
            legacy,
            hasher: RandomState::new(),
            state: Mutex::new(State {
                recent: BTreeMap::new(),
                tabled,
            }),
        })
    }

    /// Drops the tables of segments from `from` on: a table is written in
    /// several sled batches before [`super::index::Index`] records that
    /// memory no longer holds the segment, so such a table may be cut short
    /// by a crash. Recovery reads those segments' ids back and writes the
    /// tables again.
    pub(crate) fn drop_tables_from(&self, from: u64) -> Result<()> {
        let mut s = self.lock();
        let stale: Vec<u64> = s.tabled.range(from..).map(|(base, _)| *base).collect();
        for base in stale {
            for k in self.tables.range(table_range(base)).keys() {
                self.tables.remove(k?)?;
            }
            s.tabled.remove(&base);
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The append whose first event has this id.
    pub(crate) fn get(&self, id: &EventId) -> Result<Option<IdEntry>> {
        let h = self.hasher.hash_one(id.0);
        let candidates: Vec<u64> = {
            let s = self.lock();
            for ids in s.recent.values().rev() {
                if let Some(at) = ids.get(id) {
                    return Ok(Some(*at));
                }
            }
            s.tabled
                .iter()
                .rev()
                .filter(|(_, f)| f.as_ref().is_none_or(|f| f.may_contain(h)))
                .map(|(base, _)| *base)
                .collect()
        };
        for base in candidates {
            if let Some(at) = self.table_get(base, id)? {
                return Ok(Some(at));
            }
        }
        if self.has_legacy {
            if let Some(v) = self.legacy.get(id.0)? {
                return Ok(Some(IdEntry {
                    position: be_u64(&v, 0),
                    revision: be_u64(&v, 8),
                    stream_id: be_u64(&v, 16),
                    count: be_u64(&v, 24) as u32,
                }));
            }
        }
        Ok(None)
    }

    /// The entry for `id` in the table of segment `base`.
    fn table_get(&self, base: u64, id: &EventId) -> Result<Option<IdEntry>> {
        let chunk = self
            .tables
            .range(*table_range(base).start()..=table_key(base, id))
            .next_back()
            .transpose()?;
        let Some((_, v)) = chunk else {
            return Ok(None);
        };
        let entries: Vec<&[u8]> = v.chunks_exact(ENTRY_BYTES).collect();
        Ok(entries
            .binary_search_by(|e| e[..16].cmp(&id.0[..]))
            .ok()
            .map(|i| decode(entries[i]).1))
    }

    /// Adds the ids of indexed appends, in log order, and writes the table
    /// of every segment older than the newest one held. Only one thread at
    /// a time adds (the indexer, or recovery before it starts).
    pub(crate) fn add<'a>(&self, appends: impl IntoIterator<Item = &'a AppendEntry>) -> Result<()> {
        let sealed: Vec<(u64, Arc<SegmentIds>)> = {
            let mut s = self.lock();
            for a in appends {
                let base = a.first.segment;
                if s.tabled.contains_key(&base) {
                    // Applied again after a crash: the table has it.
                    continue;
                }
                Arc::make_mut(s.recent.entry(base).or_default()).insert(a.first_id, a.at);
            }
            let newest = s.recent.keys().next_back().copied();
            s.recent
                .iter()
                .filter(|(base, _)| Some(**base) != newest)
                .map(|(base, ids)| (*base, ids.clone()))
                .collect()
        };
        for (base, ids) in sealed {
            self.write_table(base, &ids)?;
        }
        Ok(())
    }

    /// Writes segment `base`'s table, then lets lookups use it instead of
    /// the ids in memory.
    fn write_table(&self, base: u64, ids: &SegmentIds) -> Result<()> {
        let mut sorted: Vec<(&EventId, &IdEntry)> = ids.iter().collect();
        sorted.sort_unstable_by_key(|(id, _)| id.0);
        let mut bloom = Bloom::new(sorted.len());
        // sled does badly with very large batches; the table need not be
        // written at once (lookups use it only once it is whole).
        for keys in sorted.chunks(CHUNK * BATCH_KEYS) {
            let mut batch = sled::Batch::default();
            for chunk in keys.chunks(CHUNK) {
                let mut v = Vec::with_capacity(chunk.len() * ENTRY_BYTES);
                for (id, at) in chunk {
                    encode(&mut v, id, at);
                    bloom.insert(self.hasher.hash_one(id.0));
                }
                batch.insert(&table_key(base, chunk[0].0)[..], v);
            }
            self.tables.apply_batch(batch)?;
        }
        let mut s = self.lock();
        s.recent.remove(&base);
        s.tabled.insert(base, Some(bloom));
        Ok(())
    }

    /// Where the ids only memory holds begin: the base of the oldest
    /// segment without a table (every append before it is in a table or
    /// the legacy tree). `None` when memory holds none.
    pub(crate) fn ids_from(&self) -> Option<u64> {
        self.lock().recent.keys().next().copied()
    }

    /// Calls `f` with every first id held: in memory, in the tables (whose
    /// filters it builds on the way), in the legacy tree. Returns
    /// `Ok(false)` if `stop` was set before the end.
    pub(crate) fn each_id(&self, stop: &AtomicBool, mut f: impl FnMut(&EventId)) -> Result<bool> {
        // Memory first: an id that moves into a table meanwhile is seen here.
        let (recent, bases): (Vec<Arc<SegmentIds>>, Vec<u64>) = {
            let s = self.lock();
            (
                s.recent.values().cloned().collect(),
                s.tabled.keys().copied().collect(),
            )
        };
        for ids in recent {
            ids.keys().for_each(&mut f);
        }
        for base in bases {
            let mut hashes = Vec::new();
            for kv in self.tables.range(table_range(base)) {
                if stop.load(Ordering::Relaxed) {
                    return Ok(false);
                }
                for e in kv?.1.chunks_exact(ENTRY_BYTES) {
                    let (id, _) = decode(e);
                    f(&id);
                    hashes.push(self.hasher.hash_one(id.0));
                }
            }
            let mut bloom = Bloom::new(hashes.len());
            hashes.into_iter().for_each(|h| bloom.insert(h));
            if let Some(slot @ None) = self.lock().tabled.get_mut(&base) {
                *slot = Some(bloom);
            }
        }
        for (n, k) in self.legacy.iter().keys().enumerate() {
            if n % 4096 == 0 && stop.load(Ordering::Relaxed) {
                return Ok(false);
            }
            let k = k?;
            let mut id = [0u8; 16];
            id.copy_from_slice(&k[..16.min(k.len())]);
            f(&EventId(id));
        }
        Ok(true)
    }

    /// Forgets every id, for a rebuild from the log.
    pub(crate) fn clear(&self) -> Result<()> {
        self.tables.clear()?;
        self.legacy.clear()?;
        *self.lock() = State::default();
        Ok(())
    }

    /// Writes part of a table as a crash in the middle of
    /// [`IdIndex::write_table`] leaves it.
    #[cfg(test)]
    pub(crate) fn add_partial_table(&self, base: u64, appends: &[AppendEntry]) -> Result<()> {
        let mut v = Vec::new();
        let mut sorted: Vec<_> = appends.iter().collect();
        sorted.sort_by_key(|a| a.first_id.0);
        for a in &sorted {
            encode(&mut v, &a.first_id, &a.at);
        }
        self.tables
            .insert(&table_key(base, &sorted[0].first_id)[..], v)?;
        Ok(())
    }

    /// Number of keys in the tables.
    #[cfg(test)]
    pub(crate) fn table_keys(&self) -> usize {
        self.tables.len()
    }
}

/// Every key of segment `base`'s table.
fn table_range(base: u64) -> RangeInclusive<[u8; 24]> {
    table_key(base, &EventId([0; 16]))..=table_key(base, &EventId([0xff; 16]))
}

fn table_key(base: u64, id: &EventId) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..8].copy_from_slice(&base.to_be_bytes());
    k[8..].copy_from_slice(&id.0);
    k
}

fn encode(v: &mut Vec<u8>, id: &EventId, at: &IdEntry) {
    v.extend_from_slice(&id.0);
    v.extend_from_slice(&at.position.to_be_bytes());
    v.extend_from_slice(&at.revision.to_be_bytes());
    v.extend_from_slice(&at.stream_id.to_be_bytes());
    v.extend_from_slice(&at.count.to_be_bytes());
}

fn decode(e: &[u8]) -> (EventId, IdEntry) {
    let mut id = [0u8; 16];
    id.copy_from_slice(&e[..16]);
    let mut count = [0u8; 4];
    count.copy_from_slice(&e[40..44]);
    (
        EventId(id),
        IdEntry {
            position: be_u64(e, 16),
            revision: be_u64(e, 24),
            stream_id: be_u64(e, 32),
            count: u32::from_be_bytes(count),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::index::Location;
    use super::*;

    #[test]
    fn ids_of_the_legacy_tree_are_found_and_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = sled::Config::new().path(dir.path()).open().expect("db");
        let legacy = db.open_tree("event_ids").expect("tree");
        // As layout 3 stored an append: id → position, revision, stream, count.
        let mut v = [0u8; 32];
        v[..8].copy_from_slice(&7u64.to_be_bytes());
        v[8..16].copy_from_slice(&3u64.to_be_bytes());
        v[16..24].copy_from_slice(&2u64.to_be_bytes());
        v[24..].copy_from_slice(&5u64.to_be_bytes());
        legacy.insert([9u8; 16], &v[..]).expect("insert");
        let ids = IdIndex::open(db.open_tree("id_tables").expect("tree"), legacy).expect("open");
        let old = IdEntry {
            position: 7,
            revision: 3,
            stream_id: 2,
            count: 5,
        };
        assert_eq!(ids.get(&EventId([9; 16])).expect("get"), Some(old));
        assert_eq!(ids.get(&EventId([8; 16])).expect("get"), None);
        let new = IdEntry {
            position: 12,
            revision: 0,
            stream_id: 4,
            count: 1,
        };
        let appended = AppendEntry {
            first_id: EventId([1; 16]),
            at: new,
            first: Location {
                segment: 0,
                offset: 32,
            },
            locations: Vec::new(),
        };
        ids.add([&appended]).expect("add");
        let mut every = Vec::new();
        let done = ids
            .each_id(&AtomicBool::new(false), |id| every.push(*id))
            .expect("each");
        assert!(done);
        assert_eq!(every, vec![EventId([1; 16]), EventId([9; 16])]);
        assert!(
            !ids.each_id(&AtomicBool::new(true), |_| {}).expect("each"),
            "a stopped fill says so"
        );
    }
}
