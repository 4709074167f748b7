//! Opening a data directory: check every segment header, replay the log
//! past what the index covers (the whole log when the index is missing or
//! does not match), truncate a torn tail of the last segment, and refuse
//! to open on corruption anywhere else.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::error::{Result, StorageError};
use super::index::{records_location, AppendEntry, IdEntry, Index, Location, StreamHead};
use super::io::Storage;
use super::record::{self, EventRecord, FRAME_HEADER};
use super::scanner::{self, Corruption, Scanned, Scanner, Step};
use super::segment::{self, GapTable, Segment, HEADER_LEN};
use super::state::Shared;

/// Index entries applied to sled at a time while replaying.
const REPLAY_CHUNK: usize = 16 * 1024;

/// What the writer starts from.
pub(crate) struct Recovered {
    pub(crate) next_position: u64,
    pub(crate) heads: HashMap<String, StreamHead>,
    pub(crate) next_stream_id: u64,
    pub(crate) write_segment: Option<Arc<Segment>>,
    pub(crate) write_offset: u64,
    pub(crate) replayed: u64,
}

/// Lists, opens and checks the segment files of `log_dir`, in log order.
/// Leftover `.tmp` files from an interrupted segment creation are removed.
pub(crate) fn open_segments(
    storage: &dyn Storage,
    log_dir: &Path,
    writable: bool,
) -> Result<Vec<Arc<Segment>>> {
    let mut bases = Vec::new();
    let names = storage
        .list_dir(log_dir)
        .map_err(|e| StorageError::io(log_dir, e))?;
    let mut removed = false;
    for name in names {
        if writable && name.ends_with(".tmp") {
            let p = log_dir.join(&name);
            storage.remove(&p).map_err(|e| StorageError::io(&p, e))?;
            removed = true;
            continue;
        }
        if let Some(base) = segment::parse_name(&name) {
            bases.push(base);
        }
    }
    if removed {
        segment::sync_dir(storage, log_dir)?;
    }
    bases.sort_unstable();
    let mut out = Vec::with_capacity(bases.len());
    for base in bases {
        let path = log_dir.join(segment::file_name(base));
        let file = storage
            .open(&path, writable)
            .map_err(|e| StorageError::io(&path, e))?;
        let mut seg = Segment {
            base,
            path,
            file,
            version: 0,
            gaps: None,
        };
        let mut h = [0u8; HEADER_LEN as usize];
        let n = seg.read_at(&mut h, 0)?;
        let (header_base, version) = segment::decode_header(&seg.path, &h[..n])?;
        seg.version = version;
        if let Some(data_end) = segment::table_offset(&h) {
            seg.gaps = Some(GapTable::read(&seg.path, &*seg.file, data_end)?);
        }
        if header_base != base {
            return Err(StorageError::corrupt(
                &seg.path,
                0,
                format!("header says base position {header_base}, the name says {base}"),
            ));
        }
        out.push(Arc::new(seg));
    }
    if let Some(first) = out.first() {
        if first.base != 0 {
            return Err(StorageError::corrupt(
                &first.path,
                0,
                "the first segment does not start at position 0: earlier segments are missing",
            ));
        }
    }
    Ok(out)
}

/// Recovers the store's state from the log and the index.
pub(crate) fn recover(shared: &Shared) -> Result<Recovered> {
    let segments = open_segments(&*shared.config.storage, &shared.log_dir, true)?;
    for s in &segments {
        shared.segments.insert(s.clone());
    }
    recover_segments(shared, &segments)
}

/// Runs recovery once more over the already opened segments, after the
/// index was cleared.
fn recover_again(shared: &Shared) -> Result<Recovered> {
    let segments = shared.segments.all();
    recover_segments(shared, &segments)
}

fn recover_segments(shared: &Shared, segments: &[Arc<Segment>]) -> Result<Recovered> {
    let index = &shared.index;
    let start = match resume_point(index, segments)? {
        Some(start) => start,
        None => {
            if index.covered()? > 0 || index.stream_count() > 0 {
                tracing::warn!("the index does not match the log; rebuilding it from the log");
            }
            index.clear()?;
            Start {
                segment: 0,
                offset: HEADER_LEN,
                position: 0,
            }
        }
    };
    let mut heads = HashMap::new();
    // A crash in the middle of `Index::apply` can leave runs stored under
    // ids that no head in sled names yet. Replaying the log gives the
    // streams it meets ids in the order of their first record, which a
    // scavenge may have removed, so it need not give those ids to the same
    // streams as before: new ids start above every id in use.
    let mut next_stream_id = index.highest_run_stream_id()?.map_or(0, |id| id + 1);
    for s in index.streams() {
        let (name, head) = s?;
        next_stream_id = next_stream_id.max(head.id + 1);
        heads.insert(name, head);
    }
    // The ids of covered appends that only memory held are read back from
    // the log: from the segment holding `ids_from` on.
    let ids_from = index.ids_from()?.min(start.position);
    let mut replay = Replay {
        index,
        covered_below: start.position,
        recalled: Vec::new(),
        heads,
        next_stream_id,
        entries: Vec::new(),
        open: None,
        pending_events: 0,
        touched: HashMap::new(),
        replayed: 0,
    };
    let mut scan = Scan {
        expected: start.position,
        end_offset: HEADER_LEN,
    };
    if let Some(last) = segments.last().filter(|s| s.has_gaps()) {
        // A scavenge rewrites only segments with a later one; the writer
        // never appends to a scavenged segment.
        return Err(StorageError::corrupt(
            &last.path,
            0,
            "the last segment is a scavenged one; a segment after it is missing",
        ));
    }
    let Some(last) = segments.last().cloned() else {
        return Ok(Recovered {
            next_position: 0,
            heads: replay.heads,
            next_stream_id: replay.next_stream_id,
            write_segment: None,
            write_offset: HEADER_LEN,
            replayed: 0,
        });
    };
    // The last segment is always scanned from its start, so that every
    // record in it is checked before the writer appends to it; records the
    // index already covers are checked but not replayed again.
    let first_idx = segments
        .iter()
        .position(|s| s.base == start.segment)
        .unwrap_or(segments.len() - 1);
    let ids_idx = segments
        .iter()
        .rposition(|s| s.base <= ids_from)
        .unwrap_or(0)
        .min(first_idx);
    let recalls = ids_from < start.position;
    let mut continues_at: Option<u64> = None;
    for (i, seg) in segments.iter().enumerate().skip(ids_idx) {
        let is_last = i + 1 == segments.len();
        let from = if i == first_idx && !is_last && !recalls {
            start.offset
        } else {
            HEADER_LEN
        };
        let expected = if from == HEADER_LEN {
            seg.base
        } else {
            start.position
        };
        if let Some(c) = continues_at {
            if seg.base != c {
                return Err(StorageError::corrupt(
                    &seg.path,
                    0,
                    format!(
                        "segment starts at position {} but the log continues at {c}",
                        seg.base
                    ),
                ));
            }
        }
        scan.expected = expected;
        scan_segment(seg, from, is_last, &mut scan, &mut |rec, loc| {
            if rec.position >= ids_from {
                replay.record(rec, loc)?;
            }
            Ok(())
        })?;
        replay.flush(scan.expected)?;
        continues_at = Some(scan.expected);
    }
    if scan.expected < start.position {
        // The index covers events the log no longer has (possible only
        // after a crash in the unsafe no-sync mode): rebuild it.
        tracing::warn!(
            index_covers = start.position,
            log_holds = scan.expected,
            "the index is ahead of the log; rebuilding it"
        );
        index.clear()?;
        return recover_again(shared);
    }
    replay.flush(scan.expected)?;
    index.flush()?;
    Ok(Recovered {
        next_position: scan.expected,
        heads: replay.heads,
        next_stream_id: replay.next_stream_id,
        write_segment: Some(last),
        write_offset: scan.end_offset,
        replayed: replay.replayed,
    })
}

struct Start {
    segment: u64,
    offset: u64,
    position: u64,
}

/// Where replay starts: just after the last record the index covers, if
/// the index and the log agree on it; `None` means rebuild from scratch.
fn resume_point(index: &Index, segments: &[Arc<Segment>]) -> Result<Option<Start>> {
    let covered = index.covered()?;
    if covered == 0 {
        return Ok(None);
    }
    let last_covered = covered - 1;
    let Some(seg) = segments.iter().rev().find(|s| s.base <= last_covered) else {
        return Ok(None);
    };
    if let Some(gaps) = &seg.gaps {
        // The index's offsets into a scavenged segment are not used: its
        // table is. Replay starts at its first record past the covered
        // positions (or at its end).
        let mut offset = gaps.floor(last_covered).map_or(HEADER_LEN, |(_, o)| o);
        while offset < gaps.data_end {
            match read_record(seg, offset) {
                Ok((rec_pos, _)) if rec_pos >= covered => break,
                Ok((_, len)) => offset += len as u64,
                Err(_) => return Ok(None),
            }
        }
        return Ok(Some(Start {
            segment: seg.base,
            offset,
            position: covered,
        }));
    }
    let Some((mut pos, loc)) = index.locate(last_covered)? else {
        return Ok(None);
    };
    if loc.segment != seg.base {
        return Ok(None);
    }
    // Walk from the nearest indexed record to the last covered one.
    let mut offset = loc.offset;
    loop {
        match read_record(seg, offset) {
            Ok((rec_pos, len)) if rec_pos == pos => {
                offset += len as u64;
                if pos == covered - 1 {
                    return Ok(Some(Start {
                        segment: seg.base,
                        offset,
                        position: covered,
                    }));
                }
                pos += 1;
            }
            _ => return Ok(None),
        }
    }
}

fn read_record(seg: &Segment, offset: u64) -> Result<(u64, usize)> {
    let mut head = [0u8; 4];
    seg.read_at(&mut head, offset)?;
    let len = record::peek_len(&head)
        .unwrap_or(0)
        .min(record::MAX_PAYLOAD);
    // Never more than the file holds, whatever a damaged length says.
    let available = seg.data_end()?.saturating_sub(offset) as usize;
    let mut buf = vec![0u8; (FRAME_HEADER + len).min(available)];
    let n = seg.read_at(&mut buf, offset)?;
    match scanner::step(&buf[..n], true) {
        Step::Record(rec, used) => Ok((rec.position, used)),
        Step::Corrupt(reason) => Err(StorageError::corrupt(&seg.path, offset, reason.to_string())),
        Step::End | Step::NeedMore(_) => Err(StorageError::corrupt(
            &seg.path,
            offset,
            "the index points past the end of the written data",
        )),
    }
}

struct Scan {
    /// Position the next record must have.
    expected: u64,
    /// End of the last complete append in the last scanned segment.
    end_offset: u64,
}

/// Scans one segment from `from`, calling `on_record` for each record of a
/// complete append. In the last segment a torn tail is cut off; anywhere
/// else a bad record is corruption.
fn scan_segment(
    seg: &Segment,
    from: u64,
    is_last: bool,
    scan: &mut Scan,
    on_record: &mut dyn FnMut(&EventRecord<'_>, Location) -> Result<()>,
) -> Result<()> {
    let file_len = seg.len()?;
    let data_end = seg.data_end()?;
    let mut bytes = vec![0u8; data_end.saturating_sub(from) as usize];
    let n = seg.read_at(&mut bytes, from)?;
    bytes.truncate(n);
    let mut scanner = Scanner::new(&bytes, from, scan.expected).with_gaps(seg.has_gaps());
    // Records of the append in progress (offset into `bytes`, length):
    // replayed only once its commit record is seen.
    let mut open: Vec<(usize, usize)> = Vec::new();
    let (bad_at, reason) = loop {
        match scanner.next_item() {
            Some(Scanned::Record { rec, offset, len }) => {
                open.push(((offset - from) as usize, len));
                if rec.is_commit() {
                    for (o, u) in open.drain(..) {
                        let (r, _) = record::decode(&bytes[o..o + u]).map_err(|e| {
                            StorageError::corrupt(&seg.path, from + o as u64, e.to_string())
                        })?;
                        on_record(
                            &r,
                            Location {
                                segment: seg.base,
                                offset: from + o as u64,
                            },
                        )?;
                    }
                    scan.expected = scanner.committed_next();
                }
            }
            Some(Scanned::End { offset }) => {
                scan.end_offset = offset;
                return Ok(());
            }
            Some(Scanned::Corrupt { offset, reason }) => break (offset, reason),
            None => unreachable!("a scan ends with End or Corrupt"),
        }
    };
    // A hole is never a torn write, and only the last segment may end torn.
    if !is_last || matches!(reason, Corruption::Hole { .. }) {
        return Err(StorageError::corrupt(&seg.path, bad_at, reason.to_string()));
    }
    // In the last segment a bad record is a torn write only if nothing valid
    // follows it; a valid record further on means the damage is in the
    // middle of acknowledged data.
    if let Some(o) = scanner.valid_record_after(bad_at) {
        return Err(StorageError::corrupt(
            &seg.path,
            bad_at,
            format!("{reason}; a valid record follows at offset {o}"),
        ));
    }
    let cut = scanner.committed_end();
    tracing::warn!(
        file = %seg.path.display(),
        offset = cut,
        dropped_from = bad_at,
        reason = %reason,
        "truncating a torn tail (never acknowledged)"
    );
    zero_from(seg, cut, file_len)?;
    scan.end_offset = cut;
    Ok(())
}

/// Overwrites a segment with zeros from `cut` to its end and syncs. Zeros
/// are written, not punched: the segment stays preallocated, so later
/// syncs of appends into it need not commit block allocations.
fn zero_from(seg: &Segment, cut: u64, len: u64) -> Result<()> {
    let io = |e| StorageError::io(&seg.path, e);
    seg.file
        .write_zeros(cut, len.saturating_sub(cut))
        .map_err(io)?;
    seg.file.sync_data().map_err(io)
}

struct Replay<'a> {
    index: &'a Index,
    /// Records below it are covered by the index already: only their
    /// appends' ids are taken, into `recalled`.
    covered_below: u64,
    recalled: Vec<AppendEntry>,
    heads: HashMap<String, StreamHead>,
    next_stream_id: u64,
    entries: Vec<AppendEntry>,
    /// The append being replayed, until its unit's commit record or the
    /// next append of the unit, and its stream's name.
    open: Option<(AppendEntry, String)>,
    pending_events: usize,
    touched: HashMap<String, StreamHead>,
    replayed: u64,
}

impl Replay<'_> {
    /// Replays one record of a committed unit; records arrive in log order,
    /// each unit complete and closed by its commit record. A unit holds one
    /// append, or (format version 2, `MultiAppend`) several appends to
    /// different streams, each a run of records of one stream.
    fn record(&mut self, rec: &EventRecord<'_>, location: Location) -> Result<()> {
        let covered = rec.position < self.covered_below;
        let head = match self.heads.get_mut(rec.stream) {
            Some(h) => {
                if !covered {
                    h.last_revision = h.last_revision.max(rec.revision);
                }
                *h
            }
            None if covered => {
                // Every covered stream has a head in sled: an index out of
                // step with the log. Its ids cannot be placed.
                if rec.is_commit() {
                    self.close_open();
                }
                return Ok(());
            }
            None => {
                let h = StreamHead {
                    id: self.next_stream_id,
                    last_revision: rec.revision,
                };
                self.next_stream_id += 1;
                self.heads.insert(rec.stream.to_owned(), h);
                h
            }
        };
        if self
            .open
            .as_ref()
            .is_some_and(|o| o.0.at.stream_id != head.id)
        {
            // The next append of the same unit starts.
            self.close_open();
        }
        let (open, _) = self.open.get_or_insert_with(|| {
            let entry = AppendEntry {
                first_id: rec.id,
                at: IdEntry {
                    position: rec.position,
                    revision: rec.revision,
                    stream_id: head.id,
                    count: 0,
                },
                first: location,
                locations: Vec::new(),
            };
            (entry, rec.stream.to_owned())
        });
        if records_location(rec.position, location.offset == HEADER_LEN) {
            open.locations.push((rec.position, location));
        }
        open.at.count += 1;
        if !covered {
            self.replayed += 1;
        }
        if rec.is_commit() {
            self.close_open();
            if self.pending_events >= REPLAY_CHUNK || self.recalled.len() >= REPLAY_CHUNK {
                self.flush(rec.position + 1)?;
            }
        }
        Ok(())
    }

    /// Ends the append being replayed: its entry, and its stream's head.
    fn close_open(&mut self) {
        if let Some((done, name)) = self.open.take() {
            if done.at.position < self.covered_below {
                self.recalled.push(done);
                return;
            }
            if let Some(head) = self.heads.get(&name) {
                self.touched.insert(name, *head);
            }
            self.pending_events += done.at.count as usize;
            self.entries.push(done);
        }
    }

    fn flush(&mut self, covered: u64) -> Result<()> {
        if !self.recalled.is_empty() {
            self.index.recall(&self.recalled)?;
            self.recalled.clear();
        }
        if self.entries.is_empty() && self.touched.is_empty() {
            return Ok(());
        }
        let covered = self
            .entries
            .last()
            .map_or(covered, |e| e.at.position + u64::from(e.at.count));
        let heads: Vec<(&str, StreamHead)> =
            self.touched.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        self.index.apply(&self.entries, &heads, covered)?;
        self.entries.clear();
        self.pending_events = 0;
        self.touched.clear();
        Ok(())
    }
}
