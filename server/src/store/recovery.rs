//! Opening a data directory: check every segment header, replay the log
//! past what the index covers (the whole log when the index is missing or
//! does not match), truncate a torn tail of the last segment, and refuse
//! to open on corruption anywhere else. Also the offline `verify`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Result, StoreError};
use super::index::{AppendEntry, IdEntry, Index, Location, StreamHead, LOCATION_STRIDE};
use super::io::{OsStorage, Storage};
use super::record::{self, DecodeError, EventRecord, FRAME_HEADER, KIND_EVENT};
use super::segment::{self, Segment, HEADER_LEN};
use super::Shared;

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
fn open_segments(
    storage: &dyn Storage,
    log_dir: &Path,
    writable: bool,
) -> Result<Vec<Arc<Segment>>> {
    let mut bases = Vec::new();
    let names = storage
        .list_dir(log_dir)
        .map_err(|e| StoreError::io(log_dir, e))?;
    let mut removed = false;
    for name in names {
        if writable && name.ends_with(".tmp") {
            let p = log_dir.join(&name);
            storage.remove(&p).map_err(|e| StoreError::io(&p, e))?;
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
            .map_err(|e| StoreError::io(&path, e))?;
        let seg = Segment { base, path, file };
        let mut h = [0u8; HEADER_LEN as usize];
        let n = seg.read_at(&mut h, 0)?;
        let header_base = segment::decode_header(&seg.path, &h[..n])?;
        if header_base != base {
            return Err(StoreError::corrupt(
                &seg.path,
                0,
                format!("header says base position {header_base}, the name says {base}"),
            ));
        }
        out.push(Arc::new(seg));
    }
    if let Some(first) = out.first() {
        if first.base != 0 {
            return Err(StoreError::corrupt(
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
    let mut next_stream_id = 0;
    for s in index.streams() {
        let (name, head) = s?;
        next_stream_id = next_stream_id.max(head.id + 1);
        heads.insert(name, head);
    }
    let mut replay = Replay {
        index,
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
    let mut continues_at: Option<u64> = None;
    for (i, seg) in segments.iter().enumerate().skip(first_idx) {
        let is_last = i + 1 == segments.len();
        let from = if i == first_idx && !is_last {
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
                return Err(StoreError::corrupt(
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
            if rec.position >= start.position {
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
    let Some((mut pos, loc)) = index.locate(covered - 1)? else {
        return Ok(None);
    };
    let Some(seg) = segments.iter().find(|s| s.base == loc.segment) else {
        return Ok(None);
    };
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
    let available = seg.len()?.saturating_sub(offset) as usize;
    let mut buf = vec![0u8; (FRAME_HEADER + len).min(available)];
    let n = seg.read_at(&mut buf, offset)?;
    let (rec, used) = record::decode(&buf[..n])
        .map_err(|e| StoreError::corrupt(&seg.path, offset, e.to_string()))?;
    Ok((rec.position, used))
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
    let mut bytes = vec![0u8; file_len.saturating_sub(from) as usize];
    let n = seg.read_at(&mut bytes, from)?;
    bytes.truncate(n);
    let mut at = 0usize;
    // Records of the append in progress: replayed only once its commit
    // record is seen.
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut committed_end = 0usize;
    let mut next_pos = scan.expected;
    let bad: Option<(usize, String)> = loop {
        match record::decode(&bytes[at..]) {
            Ok((rec, used)) => {
                if rec.position != next_pos {
                    break Some((
                        at,
                        format!("record has position {}, expected {next_pos}", rec.position),
                    ));
                }
                open.push((at, used));
                next_pos += 1;
                at += used;
                if rec.is_commit() {
                    for (o, u) in open.drain(..) {
                        let (r, _) = record::decode(&bytes[o..o + u]).map_err(|e| {
                            StoreError::corrupt(&seg.path, from + o as u64, e.to_string())
                        })?;
                        on_record(
                            &r,
                            Location {
                                segment: seg.base,
                                offset: from + o as u64,
                            },
                        )?;
                    }
                    committed_end = at;
                    scan.expected = next_pos;
                }
            }
            Err(DecodeError::End) => break None,
            Err(DecodeError::Truncated { .. }) if record::is_zero_fill(&bytes[at..]) => break None,
            Err(e) => break Some((at, e.to_string())),
        }
    };
    let tail_garbage = bad.is_some() || !open.is_empty();
    if !tail_garbage {
        // A zero length ends the written data, unless a valid record follows:
        // then the zeros are a hole in acknowledged data (a lost or zeroed
        // write), and treating them as the end would drop what follows.
        if let Some(o) = find_valid_record(&bytes, at + 1, scan.expected) {
            return Err(StoreError::corrupt(
                &seg.path,
                from + at as u64,
                format!(
                    "zero record length inside the log; a valid record follows at offset {}",
                    from + o as u64
                ),
            ));
        }
        scan.end_offset = from + at as u64;
        return Ok(());
    }
    let (bad_at, reason) = bad.unwrap_or((at, "segment ends inside an append".to_string()));
    if !is_last {
        return Err(StoreError::corrupt(&seg.path, from + bad_at as u64, reason));
    }
    // In the last segment a bad record is a torn write only if nothing valid
    // follows it; a valid record further on means the damage is in the
    // middle of acknowledged data.
    if let Some(o) = find_valid_record(&bytes, bad_at + 1, scan.expected) {
        return Err(StoreError::corrupt(
            &seg.path,
            from + bad_at as u64,
            format!(
                "{reason}; a valid record follows at offset {}",
                from + o as u64
            ),
        ));
    }
    let cut = from + committed_end as u64;
    tracing::warn!(
        file = %seg.path.display(),
        offset = cut,
        dropped_bytes = at.max(bad_at) - committed_end,
        reason = %reason,
        "truncating a torn tail (never acknowledged)"
    );
    zero_from(seg, cut, file_len)?;
    scan.end_offset = cut;
    Ok(())
}

/// Whether a frame that decodes, with a position at or after `min_pos`,
/// starts anywhere at or after `from`.
fn find_valid_record(bytes: &[u8], from: usize, min_pos: u64) -> Option<usize> {
    // The usual case, the zero fill of a preallocated segment, in one pass.
    if bytes.get(from..).is_none_or(record::is_zero_fill) {
        return None;
    }
    let mut o = from;
    while o + FRAME_HEADER + record::EVENT_HEADER <= bytes.len() {
        let p = &bytes[o..];
        let plausible = p[FRAME_HEADER] == KIND_EVENT && {
            let mut b = [0u8; 8];
            b.copy_from_slice(&p[FRAME_HEADER + 8..FRAME_HEADER + 16]);
            let pos = u64::from_le_bytes(b);
            pos >= min_pos && pos - min_pos < 1 << 32
        };
        if plausible && record::decode(p).is_ok() {
            return Some(o);
        }
        o += 1;
    }
    None
}

/// Overwrites a segment with zeros from `cut` to its end and syncs. Zeros
/// are written, not punched: the segment stays preallocated, so later
/// syncs of appends into it need not commit block allocations.
fn zero_from(seg: &Segment, cut: u64, len: u64) -> Result<()> {
    let io = |e| StoreError::io(&seg.path, e);
    seg.file
        .write_zeros(cut, len.saturating_sub(cut))
        .map_err(io)?;
    seg.file.sync_data().map_err(io)
}

struct Replay<'a> {
    index: &'a Index,
    heads: HashMap<String, StreamHead>,
    next_stream_id: u64,
    entries: Vec<AppendEntry>,
    /// The append being replayed, until its commit record.
    open: Option<AppendEntry>,
    pending_events: usize,
    touched: HashMap<String, StreamHead>,
    replayed: u64,
}

impl Replay<'_> {
    /// Replays one record of a committed append; records arrive in log
    /// order, each append complete and closed by its commit record.
    fn record(&mut self, rec: &EventRecord<'_>, location: Location) -> Result<()> {
        let head = match self.heads.get_mut(rec.stream) {
            Some(h) => {
                h.last_revision = h.last_revision.max(rec.revision);
                *h
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
        let open = self.open.get_or_insert_with(|| AppendEntry {
            first_id: rec.id,
            at: IdEntry {
                position: rec.position,
                revision: rec.revision,
                stream_id: head.id,
                count: 0,
            },
            locations: Vec::new(),
        });
        if (rec.position - open.at.position).is_multiple_of(LOCATION_STRIDE) {
            open.locations.push((rec.position, location));
        }
        open.at.count += 1;
        self.replayed += 1;
        if rec.is_commit() {
            self.touched.insert(rec.stream.to_owned(), head);
            if let Some(done) = self.open.take() {
                self.pending_events += done.at.count as usize;
                self.entries.push(done);
            }
            if self.pending_events >= REPLAY_CHUNK {
                self.flush(rec.position + 1)?;
            }
        }
        Ok(())
    }

    fn flush(&mut self, covered: u64) -> Result<()> {
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

/// What `verify` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Segment files checked.
    pub segments: u64,
    /// Records whose CRC-32 and framing were checked.
    pub records: u64,
    /// Bytes of record data checked.
    pub bytes: u64,
    /// Problems found, each naming a file and offset.
    pub problems: Vec<String>,
    /// Index entries checked against the log.
    pub index_checked: u64,
}

/// Offline check of a data directory that no process has open: every
/// record's CRC-32 and framing, position continuity, and the index against
/// the log. Changes nothing. Fails with `Locked` while a store has it open.
pub fn verify(data_dir: &Path) -> Result<VerifyReport> {
    // Hold the directory as a store does, so that a running store makes this
    // fail at once; a directory that cannot take a lock file (read-only, or
    // missing) is checked all the same.
    let lock = match super::lock_dir(data_dir) {
        Err(e @ StoreError::Locked(_)) => return Err(e),
        other => other.ok(),
    };
    // With the lock held, a sled lock conflict is a store of this process
    // still shutting down: wait for it as `Store::open` does.
    let lock_wait = if lock.is_some() {
        std::time::Duration::from_secs(5)
    } else {
        std::time::Duration::ZERO
    };
    let log_dir: PathBuf = data_dir.join("log");
    let mut report = VerifyReport::default();
    let segments = match open_segments(&OsStorage, &log_dir, false) {
        Ok(s) => s,
        Err(e) => {
            report.problems.push(e.to_string());
            return Ok(report);
        }
    };
    let mut expected = 0u64;
    let mut locations: Vec<(u64, Location)> = Vec::new();
    let mut append_start = true;
    for seg in &segments {
        report.segments += 1;
        if seg.base != expected {
            report.problems.push(format!(
                "{}: starts at position {}, the log continues at {expected}",
                seg.path.display(),
                seg.base
            ));
        }
        let len = seg.len()?;
        let mut bytes = vec![0u8; len.saturating_sub(HEADER_LEN) as usize];
        let n = seg.read_at(&mut bytes, HEADER_LEN)?;
        bytes.truncate(n);
        let mut at = 0;
        loop {
            match record::decode(&bytes[at..]) {
                Ok((rec, used)) => {
                    if rec.position != expected {
                        report.problems.push(format!(
                            "{}: offset {}: position {}, expected {expected}",
                            seg.path.display(),
                            HEADER_LEN + at as u64,
                            rec.position
                        ));
                    }
                    expected = rec.position + 1;
                    report.records += 1;
                    report.bytes += used as u64;
                    // The index holds the location of every append's first record.
                    if append_start && locations.len() < 1_000_000 {
                        locations.push((
                            rec.position,
                            Location {
                                segment: seg.base,
                                offset: HEADER_LEN + at as u64,
                            },
                        ));
                    }
                    append_start = rec.is_commit();
                    at += used;
                }
                Err(DecodeError::End) => {
                    if let Some(o) = find_valid_record(&bytes, at + 1, expected) {
                        report.problems.push(format!(
                            "{}: offset {}: zero record length, but a valid record follows at offset {}",
                            seg.path.display(),
                            HEADER_LEN + at as u64,
                            HEADER_LEN + o as u64
                        ));
                    }
                    break;
                }
                Err(DecodeError::Truncated { .. }) if record::is_zero_fill(&bytes[at..]) => break,
                Err(e) => {
                    report.problems.push(format!(
                        "{}: offset {}: {e}",
                        seg.path.display(),
                        HEADER_LEN + at as u64
                    ));
                    break;
                }
            }
        }
        // An append never spans segments: only the last segment may end
        // inside one (a torn tail, which opening the store cuts off).
        let is_last = segments.last().is_some_and(|l| l.base == seg.base);
        if !append_start && !is_last {
            report.problems.push(format!(
                "{}: offset {}: segment ends inside an append",
                seg.path.display(),
                HEADER_LEN + at as u64
            ));
        }
    }
    let index_dir = data_dir.join("index");
    if index_dir.exists() {
        let index = Index::open(&index_dir, lock_wait)?;
        let covered = index.covered()?;
        if covered > expected {
            report.problems.push(format!(
                "index covers {covered} positions but the log holds {expected}"
            ));
        }
        for (pos, loc) in locations.iter().filter(|(p, _)| *p < covered) {
            report.index_checked += 1;
            match index.locate(*pos)? {
                Some((p, l)) if p == *pos && l == *loc => {}
                other => report.problems.push(format!(
                    "index: position {pos} maps to {other:?}, the log has it at {loc:?}"
                )),
            }
        }
    }
    Ok(report)
}
