//! The offline `verify` of a data directory that no process has open:
//! every record's CRC-32 and framing, position continuity, appends that end
//! inside a non-last segment, and the index against the log. It changes
//! nothing.

use std::path::{Path, PathBuf};

use super::error::OpenError;
use super::index::{records_location, Index, Location};
use super::io::OsStorage;
use super::recovery::open_segments;
use super::scanner::{Corruption, Scanned, Scanner};
use super::segment::HEADER_LEN;

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
pub fn verify(data_dir: &Path) -> Result<VerifyReport, OpenError> {
    // Hold the directory as a store does, so that a running store makes this
    // fail at once; a directory that cannot take a lock file (read-only, or
    // missing) is checked all the same.
    let lock = match super::lock::lock_dir(data_dir) {
        Err(e @ OpenError::Locked(_)) => return Err(e),
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
    for seg in &segments {
        report.segments += 1;
        if seg.base != expected {
            report.problems.push(format!(
                "{}: starts at position {}, the log continues at {expected}",
                seg.path.display(),
                seg.base
            ));
        }
        let len = seg.data_end()?;
        let mut bytes = vec![0u8; len.saturating_sub(HEADER_LEN) as usize];
        let n = seg.read_at(&mut bytes, HEADER_LEN)?;
        bytes.truncate(n);
        let is_last = segments.last().is_some_and(|l| l.base == seg.base);
        // Each segment's records start at its base (a scavenged one's at
        // or after it); the base itself was checked against the log above.
        let mut scanner = Scanner::new(&bytes, HEADER_LEN, seg.base).with_gaps(seg.has_gaps());
        // A scavenged segment's table must name records where they are.
        let mut table = seg.gaps.iter().flat_map(|g| g.entries.iter()).peekable();
        let table_problem = |pos: u64, off: u64| {
            format!(
                "{}: position table: position {pos} at offset {off} is not a record there",
                seg.path.display()
            )
        };
        loop {
            match scanner.next_item() {
                Some(Scanned::Record { rec, offset, len }) => {
                    while let Some(&&(p, o)) = table.peek() {
                        if p > rec.position {
                            break;
                        }
                        if p < rec.position || o != offset {
                            report.problems.push(table_problem(p, o));
                        }
                        table.next();
                    }
                    report.records += 1;
                    report.bytes += len as u64;
                    // The positions the index records a location for.
                    let first_in_segment = offset == HEADER_LEN;
                    // The index's offsets into a scavenged segment are
                    // not used (its own table is), so they are not checked.
                    if records_location(rec.position, first_in_segment)
                        && !seg.has_gaps()
                        && locations.len() < 1_000_000
                    {
                        locations.push((
                            rec.position,
                            Location {
                                segment: seg.base,
                                offset,
                            },
                        ));
                    }
                    expected = rec.position + 1;
                }
                Some(Scanned::End { .. }) | None => break,
                // Only the last segment may end inside an append (a torn
                // tail, which opening the store cuts off): an append never
                // spans segments.
                Some(Scanned::Corrupt {
                    reason: Corruption::EndsInsideAppend,
                    ..
                }) if is_last => break,
                Some(Scanned::Corrupt { offset, reason }) => {
                    report
                        .problems
                        .push(format!("{}: offset {offset}: {reason}", seg.path.display()));
                    break;
                }
            }
        }
        for &(p, o) in table {
            report.problems.push(table_problem(p, o));
        }
        if expected < seg.base {
            expected = seg.base;
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
