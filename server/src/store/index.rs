//! The derived index in sled: stream heads, (stream, revision) → position
//! (revision runs, packed several to a key), position → log location, event
//! id → position (by segment, [`super::id_index`]). It is never the source of
//! truth: it records the log position it covers and anything it lacks is
//! rebuilt from the log. It never reads or writes segment files.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::error::Result;
use super::id_index::IdIndex;
use super::types::EventId;

const COVERED_KEY: &[u8] = b"covered";
const LAYOUT_KEY: &[u8] = b"layout";
const IDS_FROM_KEY: &[u8] = b"ids_from";
/// The layout of the trees below. An index of another layout is cleared
/// at open and rebuilt from the log.
///
/// - 1: a location for every append's first event (and every 64th event
///   of an append).
/// - 2: revision runs carry their first event's location; the position
///   table holds only every 64th position and each segment's first record.
/// - 3: a stream's consecutive revision runs are packed, up to
///   [`PACK_RUNS`] under one key (a layout-2 run is a pack of one, so a
///   layout-2 index is kept as it is).
/// - 4: event ids in one table per sealed segment instead of one key per
///   append (a layout-2 or -3 index is kept: its `event_ids` tree is read
///   for the appends it holds).
const LAYOUT: u64 = 4;

/// Most revision runs under one key of the revisions tree. sled's cost is
/// per key written far more than per byte, and a single-event append is
/// one run: packing a stream's runs turns one insert per append into one
/// per stream per index update.
const PACK_RUNS: usize = 32;

/// Bytes of one run in a pack: first position, count, segment, offset.
const RUN_BYTES: usize = 32;

/// Where a record lives in the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    /// Base position of the segment (its file name).
    pub segment: u64,
    /// Byte offset of the frame inside the segment file.
    pub offset: u64,
}

/// A stream's id inside the index and its last revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamHead {
    /// Dense id, assigned in order of first appearance in the log.
    pub id: u64,
    /// Revision of the stream's last event.
    pub last_revision: u64,
}

/// Every how many positions the index records a location, so that finding
/// any position scans at most this many records.
pub const LOCATION_STRIDE: u64 = 64;

/// Whether the index records the location of the record at `position`:
/// every `LOCATION_STRIDE`-th position, and the first record of each
/// segment (so that the nearest location at or before any position is in
/// that position's segment).
pub fn records_location(position: u64, first_in_segment: bool) -> bool {
    first_in_segment || position.is_multiple_of(LOCATION_STRIDE)
}

/// Most appends (or stream heads) in one sled batch.
const APPLY_CHUNK: usize = 1024;

/// What the index knows of an append, keyed by the id of its first event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdEntry {
    /// Global position of the append's first event.
    pub position: u64,
    /// Revision of its first event.
    pub revision: u64,
    /// Its stream's id.
    pub stream_id: u64,
    /// Number of events in the append.
    pub count: u32,
}

/// A run of consecutive revisions of one stream stored at consecutive
/// positions: one append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RevisionRun {
    /// Revision of the run's first event.
    pub first_revision: u64,
    /// Position of the run's first event.
    pub first_position: u64,
    /// Number of events.
    pub count: u32,
    /// Where its first event is.
    pub location: Location,
}

impl RevisionRun {
    /// One past the run's last revision.
    pub fn end_revision(&self) -> u64 {
        self.first_revision + u64::from(self.count)
    }
}

/// Everything the index stores about one append. An append's records are
/// contiguous in one segment, which is what lets the index keep one
/// entry per append instead of one per event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendEntry {
    /// Id of the first event (the idempotency key of the append).
    pub first_id: EventId,
    /// Position, revision, stream and size of the append.
    pub at: IdEntry,
    /// Where its first event is.
    pub first: Location,
    /// The locations the index records among its events
    /// ([`records_location`]).
    pub locations: Vec<(u64, Location)>,
}

/// The sled database and its trees.
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    streams: sled::Tree,
    revisions: sled::Tree,
    positions: sled::Tree,
    ids: Arc<IdIndex>,
    meta: sled::Tree,
}

impl Index {
    /// Opens (or creates) the index in `dir`, waiting up to `lock_wait` for
    /// sled's file lock.
    ///
    /// sled releases its lock only when its background threads let go of a
    /// closed database, which can lag behind the drop of the last handle. A
    /// caller that holds the data directory's `LOCK` knows that a conflict
    /// is a store of this process still being torn down, and can wait for it
    /// instead of failing the reopen.
    pub fn open(dir: &Path, lock_wait: Duration) -> Result<Self> {
        let deadline = Instant::now() + lock_wait;
        let db = loop {
            let opened = sled::Config::new()
                .path(dir)
                .cache_capacity(256 << 20)
                .flush_every_ms(Some(1000))
                .open();
            match opened {
                Err(sled::Error::Io(e))
                    if e.to_string().contains("could not acquire lock")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                other => break other?,
            }
        };
        let index = Index {
            streams: db.open_tree("streams")?,
            revisions: db.open_tree("revisions")?,
            positions: db.open_tree("positions")?,
            ids: Arc::new(IdIndex::open(
                db.open_tree("id_tables")?,
                db.open_tree("event_ids")?,
            )?),
            meta: db.open_tree("meta")?,
            db,
        };
        let layout = index.meta.get(LAYOUT_KEY)?.map(|v| be_u64(&v, 0));
        if layout == Some(2) || layout == Some(3) {
            // Its runs read as packs of one and its ids stay where they
            // are; later updates pack runs and table ids.
            index.meta.insert(LAYOUT_KEY, &LAYOUT.to_be_bytes())?;
        } else if layout != Some(LAYOUT) {
            if layout.is_some() || index.covered()? > 0 {
                tracing::warn!(
                    found = layout.unwrap_or(1),
                    layout = LAYOUT,
                    "the index has another layout; rebuilding it from the log"
                );
            }
            index.clear()?;
        }
        index.ids.drop_tables_from(index.ids_from()?)?;
        Ok(index)
    }

    /// Number of log positions the index covers (all positions below it).
    pub fn covered(&self) -> Result<u64> {
        Ok(self
            .meta
            .get(COVERED_KEY)?
            .map(|v| be_u64(&v, 0))
            .unwrap_or(0))
    }

    /// Where recovery starts reading event ids back into memory: every
    /// append at a lower position has its id in sled.
    pub fn ids_from(&self) -> Result<u64> {
        match self.meta.get(IDS_FROM_KEY)? {
            Some(v) => Ok(be_u64(&v, 0)),
            // Layout 3 and before stored every covered append's id.
            None => self.covered(),
        }
    }

    /// Head of a stream, if the stream exists.
    pub fn stream(&self, name: &str) -> Result<Option<StreamHead>> {
        Ok(self.streams.get(name.as_bytes())?.map(|v| StreamHead {
            id: be_u64(&v, 0),
            last_revision: be_u64(&v, 8),
        }))
    }

    /// Every stream and its head.
    pub fn streams(&self) -> impl Iterator<Item = Result<(String, StreamHead)>> + '_ {
        self.streams.iter().map(|kv| {
            let (k, v) = kv?;
            let name = String::from_utf8_lossy(&k).into_owned();
            Ok((
                name,
                StreamHead {
                    id: be_u64(&v, 0),
                    last_revision: be_u64(&v, 8),
                },
            ))
        })
    }

    /// The highest stream id any revision run is stored under. After a
    /// crash in the middle of [`Index::apply`], runs may be stored under
    /// ids that no head in `streams` names yet; recovery gives new streams
    /// ids above this, so that none inherits such runs.
    pub fn highest_run_stream_id(&self) -> Result<Option<u64>> {
        Ok(self.revisions.last()?.map(|(k, _)| be_u64(&k, 0)))
    }

    /// Number of streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The indexed location at or before `position`, with its position:
    /// the records from there to `position` are contiguous in one segment.
    pub fn locate(&self, position: u64) -> Result<Option<(u64, Location)>> {
        let found = self.positions.range(..=position.to_be_bytes()).next_back();
        Ok(match found {
            Some(kv) => {
                let (k, v) = kv?;
                Some((
                    be_u64(&k, 0),
                    Location {
                        segment: be_u64(&v, 0),
                        offset: be_u64(&v, 8),
                    },
                ))
            }
            None => None,
        })
    }

    /// The append whose first event has this id.
    pub fn first_id(&self, id: &EventId) -> Result<Option<IdEntry>> {
        self.ids.get(id)
    }

    /// Calls `f` with the first event id of every append the index holds;
    /// `Ok(false)` if `stop` was set before the end.
    pub fn each_first_id(&self, stop: &AtomicBool, f: impl FnMut(&EventId)) -> Result<bool> {
        self.ids.each_id(stop, f)
    }

    /// Holds the ids of appends the index already covers, which recovery
    /// reads back from the log from [`Index::ids_from`] on.
    pub fn recall<'a>(&self, appends: impl IntoIterator<Item = &'a AppendEntry>) -> Result<()> {
        self.ids.add(appends)?;
        self.note_ids_from()
    }

    fn note_ids_from(&self) -> Result<()> {
        if let Some(from) = self.ids.ids_from() {
            self.meta.insert(IDS_FROM_KEY, &from.to_be_bytes())?;
        }
        Ok(())
    }

    /// The revision runs of a stream that hold revisions in `from..=to`, in
    /// ascending or descending order, lazily.
    pub fn runs(
        &self,
        stream_id: u64,
        from: u64,
        to: u64,
        backwards: bool,
    ) -> Result<Box<dyn Iterator<Item = Result<RevisionRun>> + Send>> {
        if from > to {
            return Ok(Box::new(std::iter::empty()));
        }
        // The pack holding `from` may start before it; packs after it start
        // past `from`. Runs outside `from..=to` are dropped.
        let keep = move |r: &RevisionRun| r.end_revision() > from && r.first_revision <= to;
        let floor: Vec<RevisionRun> = match self.pack_at(stream_id, from)? {
            Some((k, v)) => unpack(&k, &v).filter(keep).collect(),
            None => Vec::new(),
        };
        let rest = self.revisions.range((
            Bound::Excluded(rev_key(stream_id, from)),
            Bound::Included(rev_key(stream_id, to)),
        ));
        let pack = move |kv: sled::Result<(sled::IVec, sled::IVec)>| -> Vec<Result<RevisionRun>> {
            match kv {
                Ok((k, v)) => unpack(&k, &v).filter(keep).map(Ok).collect(),
                Err(e) => vec![Err(e.into())],
            }
        };
        if backwards {
            let rest = rest.rev().flat_map(move |kv| pack(kv).into_iter().rev());
            Ok(Box::new(rest.chain(floor.into_iter().rev().map(Ok))))
        } else {
            Ok(Box::new(
                floor.into_iter().map(Ok).chain(rest.flat_map(pack)),
            ))
        }
    }

    /// Stores the entries of committed appends and the new heads of the
    /// streams they touched, then marks `covered` as indexed. Re-applying
    /// the same entries is harmless, which recovery relies on.
    pub fn apply<'a>(
        &self,
        appends: impl IntoIterator<Item = &'a AppendEntry>,
        heads: &[(&str, StreamHead)],
        covered: u64,
    ) -> Result<()> {
        // sled holds a whole batch in memory until it is written out, and
        // does badly with very large ones: write in chunks.
        let mut appends = appends.into_iter().peekable();
        while appends.peek().is_some() {
            let mut positions = sled::Batch::default();
            let mut ids = Vec::new();
            // Each stream's appends of this chunk, in commit order (so in
            // revision order).
            let mut by_stream: HashMap<u64, Vec<&AppendEntry>> = HashMap::new();
            for a in appends.by_ref().take(APPLY_CHUNK) {
                let at = a.at;
                by_stream.entry(at.stream_id).or_default().push(a);
                for (pos, loc) in &a.locations {
                    positions.insert(
                        &pos.to_be_bytes()[..],
                        &cat(loc.segment, loc.offset, 0, 0)[..16],
                    );
                }
                ids.push(a);
            }
            self.revisions.apply_batch(self.packed_runs(by_stream)?)?;
            self.positions.apply_batch(positions)?;
            self.ids.add(ids)?;
        }
        for chunk in heads.chunks(APPLY_CHUNK) {
            let mut streams = sled::Batch::default();
            for (name, head) in chunk {
                streams.insert(
                    name.as_bytes(),
                    &cat(head.id, head.last_revision, 0, 0)[..16],
                );
            }
            self.streams.apply_batch(streams)?;
        }
        self.note_ids_from()?;
        // Last: a crash before it leaves `covered` where it was, and
        // recovery re-applies the same entries.
        self.meta.insert(COVERED_KEY, &covered.to_be_bytes())?;
        Ok(())
    }

    /// The pack of stream `stream_id` that starts at or before `revision`
    /// (the one holding it, if any does), as its key and value.
    fn pack_at(&self, stream_id: u64, revision: u64) -> Result<Option<(sled::IVec, sled::IVec)>> {
        Ok(self
            .revisions
            .range(rev_key(stream_id, 0)..=rev_key(stream_id, revision))
            .next_back()
            .transpose()?)
    }

    /// The revisions-tree update that adds these appends' runs, stream by
    /// stream: to the stream's last pack while it has room and the runs
    /// follow on, then to new packs keyed by their first revision. A run
    /// the pack already holds (an update applied again after a crash) is
    /// skipped, so applying the same entries twice changes nothing.
    fn packed_runs(&self, by_stream: HashMap<u64, Vec<&AppendEntry>>) -> Result<sled::Batch> {
        let mut batch = sled::Batch::default();
        for (stream_id, appends) in by_stream {
            let Some(first) = appends.first() else {
                continue;
            };
            // Revisions only grow within a stream id: a stream's runs at
            // revision 0 start its first pack.
            let mut pack: Option<Pack> = match first.at.revision {
                0 => None,
                r => self.pack_at(stream_id, r)?.map(|(k, v)| Pack {
                    key: be_u64(&k, 8),
                    end: unpack(&k, &v).last().map_or(0, |r| r.end_revision()),
                    runs: v.to_vec(),
                    changed: false,
                }),
            };
            for a in appends {
                let at = a.at;
                let run = cat(
                    at.position,
                    u64::from(at.count),
                    a.first.segment,
                    a.first.offset,
                );
                match &mut pack {
                    Some(p) if at.revision < p.end => {}
                    Some(p) if at.revision == p.end && p.runs.len() < PACK_RUNS * RUN_BYTES => {
                        p.runs.extend_from_slice(&run);
                        p.end += u64::from(at.count);
                        p.changed = true;
                    }
                    _ => {
                        if let Some(p) = pack.take().filter(|p| p.changed) {
                            batch.insert(&rev_key(stream_id, p.key)[..], p.runs);
                        }
                        pack = Some(Pack {
                            key: at.revision,
                            end: at.revision + u64::from(at.count),
                            runs: run.to_vec(),
                            changed: true,
                        });
                    }
                }
            }
            if let Some(p) = pack.filter(|p| p.changed) {
                batch.insert(&rev_key(stream_id, p.key)[..], p.runs);
            }
        }
        Ok(batch)
    }

    /// Removes everything, for a rebuild from the log.
    pub fn clear(&self) -> Result<()> {
        for t in [&self.streams, &self.revisions, &self.positions, &self.meta] {
            t.clear()?;
        }
        self.ids.clear()?;
        self.meta.insert(LAYOUT_KEY, &LAYOUT.to_be_bytes())?;
        self.db.flush()?;
        Ok(())
    }

    /// Writes everything to disk.
    pub fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    /// Bytes the index uses on disk.
    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// A stream's pack of revision runs being extended by an update.
struct Pack {
    /// The first revision of its first run (its key).
    key: u64,
    /// One past the revision of its last run's last event.
    end: u64,
    /// The runs, [`RUN_BYTES`] each.
    runs: Vec<u8>,
    /// Whether the update has to write it.
    changed: bool,
}

/// The runs of the pack stored under key `k` with value `v`, in revision
/// order: each starts where the one before it ends.
fn unpack<'a>(k: &[u8], v: &'a [u8]) -> impl Iterator<Item = RevisionRun> + 'a {
    let mut revision = be_u64(k, 8);
    v.chunks_exact(RUN_BYTES).map(move |r| {
        let run = RevisionRun {
            first_revision: revision,
            first_position: be_u64(r, 0),
            count: be_u64(r, 8) as u32,
            location: Location {
                segment: be_u64(r, 16),
                offset: be_u64(r, 24),
            },
        };
        revision = run.end_revision();
        run
    })
}

fn rev_key(stream_id: u64, revision: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&stream_id.to_be_bytes());
    k[8..].copy_from_slice(&revision.to_be_bytes());
    k
}

fn cat(a: u64, b: u64, c: u64, d: u64) -> [u8; 32] {
    let mut v = [0u8; 32];
    v[..8].copy_from_slice(&a.to_be_bytes());
    v[8..16].copy_from_slice(&b.to_be_bytes());
    v[16..24].copy_from_slice(&c.to_be_bytes());
    v[24..].copy_from_slice(&d.to_be_bytes());
    v
}

/// The big-endian `u64` at `at` (zero where `v` is too short).
pub(super) fn be_u64(v: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = v.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(first: u64, rev: u64, count: u32) -> AppendEntry {
        AppendEntry {
            first_id: EventId([first as u8; 16]),
            at: IdEntry {
                position: first,
                revision: rev,
                stream_id: 1,
                count,
            },
            first: Location {
                segment: 0,
                offset: 32 + first * 100,
            },
            locations: vec![(
                first,
                Location {
                    segment: 0,
                    offset: 32 + first * 100,
                },
            )],
        }
    }

    #[test]
    fn apply_and_look_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = Index::open(dir.path(), Duration::ZERO).expect("open");
        assert_eq!(idx.covered().expect("covered"), 0);
        // stream 1: revisions 0..3 at positions 0..3, then 3..5 at positions 10..12
        let appends = [append(0, 0, 3), append(10, 3, 2)];
        let head = StreamHead {
            id: 1,
            last_revision: 4,
        };
        idx.apply(&appends, &[("s", head)], 12).expect("apply");
        assert_eq!(idx.covered().expect("covered"), 12);
        assert_eq!(idx.stream("s").expect("get"), Some(head));
        assert_eq!(idx.stream("t").expect("get"), None);
        assert_eq!(idx.locate(2).expect("loc").map(|(p, _)| p), Some(0));
        assert_eq!(
            idx.locate(11).expect("loc").map(|(p, l)| (p, l.offset)),
            Some((10, 1032))
        );
        assert_eq!(
            idx.first_id(&EventId([10; 16]))
                .expect("id")
                .map(|e| e.count),
            Some(2)
        );
        assert_eq!(idx.first_id(&EventId([11; 16])).expect("id"), None);
        let runs = |from, to, back| -> Vec<u64> {
            idx.runs(1, from, to, back)
                .expect("runs")
                .map(|r| r.expect("run").first_revision)
                .collect()
        };
        assert_eq!(runs(0, u64::MAX, false), vec![0, 3]);
        assert_eq!(runs(1, u64::MAX, false), vec![0, 3]);
        assert_eq!(runs(3, u64::MAX, false), vec![3]);
        assert_eq!(runs(4, 4, false), vec![3]);
        assert_eq!(runs(5, u64::MAX, false), Vec::<u64>::new());
        assert_eq!(runs(0, 4, true), vec![3, 0]);
        assert_eq!(runs(1, 2, true), vec![0]);
        idx.clear().expect("clear");
        assert_eq!(idx.covered().expect("covered"), 0);
        assert_eq!(idx.stream("s").expect("get"), None);
    }

    /// `count`-event appends to `streams` streams in turn, `n` in all, at
    /// consecutive positions (first ids distinct).
    fn interleaved(streams: u64, n: usize, count: impl Fn(usize) -> u32) -> Vec<AppendEntry> {
        let mut next_revision = vec![0u64; streams as usize];
        let mut position = 0;
        (0..n)
            .map(|i| {
                let stream = i as u64 % streams;
                let c = count(i);
                let revision = next_revision[stream as usize];
                next_revision[stream as usize] += u64::from(c);
                let mut id = [0u8; 16];
                id[..8].copy_from_slice(&(i as u64).to_be_bytes());
                let at = IdEntry {
                    position,
                    revision,
                    stream_id: stream + 1,
                    count: c,
                };
                let first = Location {
                    segment: 0,
                    offset: 32 + position * 100,
                };
                position += u64::from(c);
                AppendEntry {
                    first_id: EventId(id),
                    at,
                    first,
                    locations: Vec::new(),
                }
            })
            .collect()
    }

    /// What `runs` must give: the appends' runs of `stream_id` that hold
    /// revisions in `from..=to`, in the asked order.
    fn model(
        appends: &[AppendEntry],
        stream_id: u64,
        from: u64,
        to: u64,
        back: bool,
    ) -> Vec<RevisionRun> {
        let mut runs: Vec<RevisionRun> = appends
            .iter()
            .filter(|a| a.at.stream_id == stream_id)
            .map(|a| RevisionRun {
                first_revision: a.at.revision,
                first_position: a.at.position,
                count: a.at.count,
                location: a.first,
            })
            .filter(|r| from <= to && r.end_revision() > from && r.first_revision <= to)
            .collect();
        if back {
            runs.reverse();
        }
        runs
    }

    fn all_runs(idx: &Index, stream_id: u64, from: u64, to: u64, back: bool) -> Vec<RevisionRun> {
        idx.runs(stream_id, from, to, back)
            .expect("runs")
            .map(|r| r.expect("run"))
            .collect()
    }

    #[test]
    fn runs_are_packed_per_stream_and_read_back_in_any_window() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = Index::open(dir.path(), Duration::ZERO).expect("open");
        // 3 streams, 1 to 3 events per append; applied in three updates.
        let appends = interleaved(3, 300, |i| (i % 3) as u32 + 1);
        for part in [&appends[..7], &appends[7..150], &appends[150..]] {
            idx.apply(part, &[], part.last().map_or(0, |a| a.at.position + 1))
                .expect("apply");
        }
        // 100 runs per stream, 32 to a key: 4 keys each, not 100.
        assert_eq!(idx.revisions.len(), 3 * 4);
        for stream_id in 1..=3 {
            let last = model(&appends, stream_id, 0, u64::MAX, false)
                .last()
                .map_or(0, |r| r.end_revision());
            for from in (0..last + 2).step_by(7) {
                for to in [from, from + 1, from + 40, last, u64::MAX] {
                    for back in [false, true] {
                        assert_eq!(
                            all_runs(&idx, stream_id, from, to, back),
                            model(&appends, stream_id, from, to, back),
                            "stream {stream_id}, {from}..={to}, backwards {back}"
                        );
                    }
                }
            }
        }
        assert_eq!(all_runs(&idx, 1, u64::MAX, u64::MAX, false), vec![]);
        assert_eq!(all_runs(&idx, 9, 0, u64::MAX, true), vec![]);
    }

    #[test]
    fn applying_appends_again_changes_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = Index::open(dir.path(), Duration::ZERO).expect("open");
        let appends = interleaved(2, 200, |_| 1);
        idx.apply(&appends[..120], &[], 0).expect("apply");
        // A crash after these trees were written but before `covered`
        // moved: recovery applies again from an earlier append, in other
        // updates, with the rest after it.
        idx.apply(&appends[50..90], &[], 0).expect("again");
        idx.apply(&appends[90..], &[], 200).expect("rest");
        for stream_id in 1..=2 {
            for back in [false, true] {
                assert_eq!(
                    all_runs(&idx, stream_id, 0, u64::MAX, back),
                    model(&appends, stream_id, 0, u64::MAX, back)
                );
            }
            assert_eq!(
                all_runs(&idx, stream_id, 33, 70, false),
                model(&appends, stream_id, 33, 70, false)
            );
        }
        assert_eq!(idx.revisions.len(), 2 * 4);
    }

    #[test]
    fn ids_are_tabled_per_sealed_segment_and_the_newest_recalled() {
        let dir = tempfile::tempdir().expect("tempdir");
        // 3 segments of 1,000 appends each.
        let mut appends = interleaved(4, 3000, |i| (i % 2) as u32 + 1);
        for (i, a) in appends.iter_mut().enumerate() {
            a.first.segment = (i as u64 / 1000) * 1000;
        }
        let found = |idx: &Index, a: &AppendEntry| idx.first_id(&a.first_id).expect("id");
        {
            let idx = Index::open(dir.path(), Duration::ZERO).expect("open");
            idx.apply(&appends[..1500], &[], 1).expect("apply");
            // Segment 0 is sealed: 1,000 ids in chunks of 512.
            assert_eq!(idx.ids.table_keys(), 2);
            assert_eq!(idx.ids_from().expect("from"), 1000);
            idx.apply(&appends[1500..], &[], 2).expect("apply");
            assert_eq!(idx.ids.table_keys(), 4);
            assert_eq!(idx.ids_from().expect("from"), 2000);
            for a in &appends {
                assert_eq!(found(&idx, a), Some(a.at), "{:?}", a.first_id);
            }
            assert_eq!(found(&idx, &append(9, 0, 1)), None);
            idx.flush().expect("flush");
        }
        let idx = Index::open(dir.path(), Duration::ZERO).expect("reopen");
        for a in &appends[..2000] {
            assert_eq!(found(&idx, a), Some(a.at), "tabled: {:?}", a.first_id);
        }
        // Memory held the newest segment: recovery reads it back.
        assert_eq!(found(&idx, &appends[2500]), None);
        idx.recall(&appends[2000..]).expect("recall");
        let stop = AtomicBool::new(false);
        let mut every = Vec::new();
        assert!(idx
            .each_first_id(&stop, |id| every.push(*id))
            .expect("each"));
        every.sort_by_key(|id| id.0);
        let mut want: Vec<EventId> = appends.iter().map(|a| a.first_id).collect();
        want.sort_by_key(|id| id.0);
        assert_eq!(every, want);
        // The fill built the tables' filters: no id is lost to them.
        for a in &appends {
            assert_eq!(found(&idx, a), Some(a.at), "{:?}", a.first_id);
        }
        // Applying the tabled segments again changes nothing.
        idx.apply(&appends[500..1200], &[], 2).expect("again");
        assert_eq!(idx.ids.table_keys(), 4);
    }

    #[test]
    fn a_table_cut_short_by_a_crash_is_written_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut appends = interleaved(2, 2000, |_| 1);
        for (i, a) in appends.iter_mut().enumerate() {
            a.first.segment = (i as u64 / 1000) * 1000;
        }
        {
            let idx = Index::open(dir.path(), Duration::ZERO).expect("open");
            idx.apply(&appends[..1500], &[], 1500).expect("apply");
            // The first sled batch of segment 1000's table, and then the
            // crash: `ids_from` still says memory held segment 1000.
            idx.ids
                .add_partial_table(1000, &appends[1000..1100])
                .expect("partial");
            idx.flush().expect("flush");
        }
        let idx = Index::open(dir.path(), Duration::ZERO).expect("reopen");
        assert_eq!(idx.ids_from().expect("from"), 1000);
        // Recovery reads segment 1000 back, then the log goes on.
        idx.recall(&appends[1000..1500]).expect("recall");
        idx.apply(&appends[1500..], &[], 2000).expect("apply");
        for a in &appends {
            assert_eq!(idx.first_id(&a.first_id).expect("id"), Some(a.at));
        }
    }

    #[test]
    fn a_layout_2_index_is_kept_and_packed_onwards() {
        let dir = tempfile::tempdir().expect("tempdir");
        let appends = interleaved(1, 40, |_| 2);
        {
            let idx = Index::open(dir.path(), Duration::ZERO).expect("open");
            // As layout 2 stored them: one run per key.
            for a in &appends[..10] {
                let at = a.at;
                let v = cat(at.position, 2, a.first.segment, a.first.offset);
                idx.revisions
                    .insert(&rev_key(1, at.revision)[..], &v[..])
                    .expect("insert");
            }
            idx.meta
                .insert(COVERED_KEY, &20u64.to_be_bytes())
                .expect("covered");
            idx.meta
                .insert(LAYOUT_KEY, &2u64.to_be_bytes())
                .expect("layout");
            idx.flush().expect("flush");
        }
        let idx = Index::open(dir.path(), Duration::ZERO).expect("reopen");
        assert_eq!(idx.covered().expect("covered"), 20, "not rebuilt");
        idx.apply(&appends[10..], &[], 80).expect("apply");
        for back in [false, true] {
            assert_eq!(
                all_runs(&idx, 1, 0, u64::MAX, back),
                model(&appends, 1, 0, u64::MAX, back)
            );
        }
        // The last single run took in the 30 that followed it.
        assert_eq!(idx.revisions.len(), 10);
    }
}
