//! The derived index in sled: stream heads, (stream, revision) → position,
//! position → log location, event id → position. It is never the source of
//! truth: it records the log position it covers and anything it lacks is
//! rebuilt from the log. It never reads or writes segment files.

use std::path::Path;
use std::time::{Duration, Instant};

use super::error::Result;
use super::types::EventId;

const COVERED_KEY: &[u8] = b"covered";

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

/// What the index knows of an event id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdEntry {
    /// Global position of the event.
    pub position: u64,
    /// Its revision.
    pub revision: u64,
    /// Its stream's id.
    pub stream_id: u64,
}

/// Everything the index stores about one event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// The event's id and coordinates.
    pub id: EventId,
    /// Position, revision, stream.
    pub at: IdEntry,
    /// Where its record is.
    pub location: Location,
}

/// The sled database and its trees.
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    streams: sled::Tree,
    revisions: sled::Tree,
    positions: sled::Tree,
    ids: sled::Tree,
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
        Ok(Index {
            streams: db.open_tree("streams")?,
            revisions: db.open_tree("revisions")?,
            positions: db.open_tree("positions")?,
            ids: db.open_tree("event_ids")?,
            meta: db.open_tree("meta")?,
            db,
        })
    }

    /// Number of log positions the index covers (all positions below it).
    pub fn covered(&self) -> Result<u64> {
        Ok(self
            .meta
            .get(COVERED_KEY)?
            .map(|v| be_u64(&v, 0))
            .unwrap_or(0))
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

    /// Number of streams.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// Location of the record at `position`.
    pub fn location(&self, position: u64) -> Result<Option<Location>> {
        Ok(self
            .positions
            .get(position.to_be_bytes())?
            .map(|v| Location {
                segment: be_u64(&v, 0),
                offset: be_u64(&v, 8),
            }))
    }

    /// What the index knows of an event id.
    pub fn event_id(&self, id: &EventId) -> Result<Option<IdEntry>> {
        Ok(self.ids.get(id.0)?.map(|v| IdEntry {
            position: be_u64(&v, 0),
            revision: be_u64(&v, 8),
            stream_id: be_u64(&v, 16),
        }))
    }

    /// Positions of a stream's events with revisions in `from..=to`, in
    /// ascending or descending revision order, lazily.
    pub fn revisions(
        &self,
        stream_id: u64,
        from: u64,
        to: u64,
        backwards: bool,
    ) -> Box<dyn Iterator<Item = Result<(u64, u64)>> + Send> {
        let range = self
            .revisions
            .range(rev_key(stream_id, from)..=rev_key(stream_id, to));
        let map = |kv: sled::Result<(sled::IVec, sled::IVec)>| {
            let (k, v) = kv?;
            Ok((be_u64(&k, 8), be_u64(&v, 0)))
        };
        if backwards {
            Box::new(range.rev().map(map))
        } else {
            Box::new(range.map(map))
        }
    }

    /// Stores the entries of a committed batch and the new heads of the
    /// streams it touched, then marks `covered` as indexed. Re-applying the
    /// same entries is harmless, which recovery relies on.
    pub fn apply(
        &self,
        entries: &[IndexEntry],
        heads: &[(&str, StreamHead)],
        covered: u64,
    ) -> Result<()> {
        let mut streams = sled::Batch::default();
        for (name, head) in heads {
            streams.insert(
                name.as_bytes(),
                &cat(head.id, head.last_revision, None)[..16],
            );
        }
        let mut revisions = sled::Batch::default();
        let mut positions = sled::Batch::default();
        let mut ids = sled::Batch::default();
        for e in entries {
            let pos = e.at.position.to_be_bytes();
            revisions.insert(&rev_key(e.at.stream_id, e.at.revision)[..], &pos[..]);
            positions.insert(
                &pos[..],
                &cat(e.location.segment, e.location.offset, None)[..16],
            );
            ids.insert(
                &e.id.0[..],
                &cat(e.at.position, e.at.revision, Some(e.at.stream_id))[..],
            );
        }
        self.revisions.apply_batch(revisions)?;
        self.positions.apply_batch(positions)?;
        self.ids.apply_batch(ids)?;
        self.streams.apply_batch(streams)?;
        self.meta.insert(COVERED_KEY, &covered.to_be_bytes())?;
        Ok(())
    }

    /// Removes everything, for a rebuild from the log.
    pub fn clear(&self) -> Result<()> {
        for t in [
            &self.streams,
            &self.revisions,
            &self.positions,
            &self.ids,
            &self.meta,
        ] {
            t.clear()?;
        }
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

fn rev_key(stream_id: u64, revision: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&stream_id.to_be_bytes());
    k[8..].copy_from_slice(&revision.to_be_bytes());
    k
}

fn cat(a: u64, b: u64, c: Option<u64>) -> [u8; 24] {
    let mut v = [0u8; 24];
    v[..8].copy_from_slice(&a.to_be_bytes());
    v[8..16].copy_from_slice(&b.to_be_bytes());
    if let Some(c) = c {
        v[16..].copy_from_slice(&c.to_be_bytes());
    }
    v
}

fn be_u64(v: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = v.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_and_look_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let idx = Index::open(dir.path(), Duration::ZERO).expect("open");
        assert_eq!(idx.covered().expect("covered"), 0);
        let entries: Vec<IndexEntry> = (0..3)
            .map(|i| IndexEntry {
                id: EventId([i as u8; 16]),
                at: IdEntry {
                    position: i,
                    revision: i,
                    stream_id: 1,
                },
                location: Location {
                    segment: 0,
                    offset: 32 + i * 100,
                },
            })
            .collect();
        let head = StreamHead {
            id: 1,
            last_revision: 2,
        };
        idx.apply(&entries, &[("s", head)], 3).expect("apply");
        assert_eq!(idx.covered().expect("covered"), 3);
        assert_eq!(idx.stream("s").expect("get"), Some(head));
        assert_eq!(idx.stream("t").expect("get"), None);
        assert_eq!(
            idx.location(1).expect("loc"),
            Some(Location {
                segment: 0,
                offset: 132
            })
        );
        assert_eq!(
            idx.event_id(&EventId([2; 16]))
                .expect("id")
                .map(|e| e.position),
            Some(2)
        );
        let fwd: Vec<_> = idx
            .revisions(1, 1, u64::MAX, false)
            .map(|r| r.expect("rev"))
            .collect();
        assert_eq!(fwd, vec![(1, 1), (2, 2)]);
        let back: Vec<_> = idx
            .revisions(1, 0, 1, true)
            .map(|r| r.expect("rev"))
            .collect();
        assert_eq!(back, vec![(1, 1), (0, 0)]);
        idx.clear().expect("clear");
        assert_eq!(idx.covered().expect("covered"), 0);
        assert_eq!(idx.stream("s").expect("get"), None);
    }
}
