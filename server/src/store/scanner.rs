//! The one decoder of the log: how the bytes of a segment are read as
//! records, and what counts as the end of the data or as damage. Recovery,
//! `verify` and the read cursor all walk segments through this module, so
//! they cannot disagree about what the bytes mean.
//!
//! [`step`] classifies the bytes at one offset (a record, the end of the
//! written data, more bytes needed, or corruption). [`Scanner`] walks a
//! whole segment with it, checking that positions continue and tracking
//! appends (an append's last record carries the commit flag), and reports
//! damage with a typed [`Corruption`] reason. What to do about damage is the
//! caller's policy: recovery cuts a torn tail of the last segment, `verify`
//! reports, a reader fails.

use super::record::{self, DecodeError, EventRecord, FRAME_HEADER, KIND_EVENT};

/// Why the bytes at some offset are not a valid continuation of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Corruption {
    /// The frame does not decode (bad CRC-32, malformed payload, a length
    /// over the format maximum, or cut off by the end of the file).
    Frame(DecodeError),
    /// The record decodes but has the wrong position.
    Position {
        /// The record's position.
        found: u64,
        /// The position the log continues with.
        expected: u64,
    },
    /// A zero length field where a valid record follows later: a hole in
    /// written data, not its end.
    Hole {
        /// File offset of the valid record after the hole.
        valid_at: u64,
    },
    /// The written data ends inside an append (no commit record).
    EndsInsideAppend,
}

impl std::fmt::Display for Corruption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Corruption::Frame(DecodeError::Truncated { .. }) => {
                write!(f, "record cut off by the end of the segment file")
            }
            Corruption::Frame(e) => e.fmt(f),
            Corruption::Position { found, expected } => {
                write!(f, "record has position {found}, expected {expected}")
            }
            Corruption::Hole { valid_at } => write!(
                f,
                "zero record length inside the log; a valid record follows at offset {valid_at}"
            ),
            Corruption::EndsInsideAppend => write!(f, "segment ends inside an append"),
        }
    }
}

/// What the bytes at one offset are.
#[derive(Debug)]
pub(crate) enum Step<'a> {
    /// A record, and the bytes its frame takes.
    Record(EventRecord<'a>, usize),
    /// The end of the written data (a zero length, or the zero fill of a
    /// preallocated segment up to the end of the file).
    End,
    /// The frame runs past the bytes given, and they are not the end of the
    /// file: read at least this many bytes from here and try again.
    NeedMore(usize),
    /// Damage.
    Corrupt(Corruption),
}

/// Classifies the bytes at the start of `bytes`; `at_eof` says that they
/// run to the end of the segment file.
pub(crate) fn step(bytes: &[u8], at_eof: bool) -> Step<'_> {
    match record::decode(bytes) {
        Ok((rec, used)) => Step::Record(rec, used),
        Err(DecodeError::End) => Step::End,
        Err(DecodeError::Truncated { needed }) if !at_eof => Step::NeedMore(needed),
        // A segment can end with fewer free bytes than a length field.
        Err(DecodeError::Truncated { .. }) if record::is_zero_fill(bytes) => Step::End,
        Err(e) => Step::Corrupt(Corruption::Frame(e)),
    }
}

/// Where a frame that decodes, with a position at or after `min_pos`,
/// starts at or after `from` in `bytes`, if anywhere: the test that tells
/// damage in the middle of the data from a torn tail.
pub(crate) fn find_valid_record(bytes: &[u8], from: usize, min_pos: u64) -> Option<usize> {
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

/// One item of a segment walk.
#[derive(Debug)]
pub(crate) enum Scanned<'a> {
    /// A record at `offset` (a file offset); `commits` when it is the last
    /// of its append.
    Record {
        /// The record.
        rec: EventRecord<'a>,
        /// File offset of its frame.
        offset: u64,
        /// Bytes its frame takes.
        len: usize,
    },
    /// The written data ends here, after a complete append.
    End {
        /// File offset of the end.
        offset: u64,
    },
    /// Damage at `offset`; the walk stops.
    Corrupt {
        /// File offset of the damage.
        offset: u64,
        /// What is wrong.
        reason: Corruption,
    },
}

/// Walks the bytes of one segment (read to the end of its file) record by
/// record.
pub(crate) struct Scanner<'a> {
    bytes: &'a [u8],
    /// File offset of `bytes[0]`.
    base: u64,
    at: usize,
    /// Position the next record must have (or, with gaps, at least).
    expected: u64,
    /// The segment is scavenged: positions increase but may skip.
    gaps: bool,
    /// The walk is inside an append (its commit record not seen yet).
    in_append: bool,
    /// End of the last complete append, as an index into `bytes`.
    committed_end: usize,
    /// Position after the last complete append.
    committed_next: u64,
    done: bool,
}

impl<'a> Scanner<'a> {
    /// A walk over `bytes`, which start at file offset `base` and run to
    /// the end of the file; the first record must have position `expected`.
    pub(crate) fn new(bytes: &'a [u8], base: u64, expected: u64) -> Self {
        Scanner {
            bytes,
            base,
            at: 0,
            expected,
            gaps: false,
            in_append: false,
            committed_end: 0,
            committed_next: expected,
            done: false,
        }
    }

    /// The same walk over a scavenged segment, whose positions increase
    /// but may skip (`bytes` must end where its records end).
    pub(crate) fn with_gaps(mut self, gaps: bool) -> Self {
        self.gaps = gaps;
        self
    }

    /// File offset just after the last complete append.
    pub(crate) fn committed_end(&self) -> u64 {
        self.base + self.committed_end as u64
    }

    /// The position after the last complete append.
    pub(crate) fn committed_next(&self) -> u64 {
        self.committed_next
    }

    /// Whether a valid record with a position at or after the last complete
    /// append starts after file offset `offset`: damage there is in the
    /// middle of the data, not a torn tail.
    pub(crate) fn valid_record_after(&self, offset: u64) -> Option<u64> {
        let from = (offset - self.base) as usize + 1;
        find_valid_record(self.bytes, from, self.committed_next).map(|o| self.base + o as u64)
    }

    /// The next item; `None` after `End` or `Corrupt`.
    pub(crate) fn next_item(&mut self) -> Option<Scanned<'a>> {
        if self.done {
            return None;
        }
        let offset = self.base + self.at as u64;
        let bytes: &'a [u8] = self.bytes;
        let item = match step(&bytes[self.at..], true) {
            Step::Record(rec, _)
                if rec.position < self.expected
                    || (rec.position != self.expected && !self.gaps) =>
            {
                Scanned::Corrupt {
                    offset,
                    reason: Corruption::Position {
                        found: rec.position,
                        expected: self.expected,
                    },
                }
            }
            Step::Record(rec, len) => {
                self.at += len;
                self.expected = rec.position + 1;
                self.in_append = !rec.is_commit();
                if rec.is_commit() {
                    self.committed_end = self.at;
                    self.committed_next = self.expected;
                }
                return Some(Scanned::Record { rec, offset, len });
            }
            Step::End | Step::NeedMore(_) if self.in_append => Scanned::Corrupt {
                offset,
                reason: Corruption::EndsInsideAppend,
            },
            Step::End | Step::NeedMore(_) => {
                // A zero length ends the written data, unless a valid record
                // follows: then the zeros are a hole in written data (a lost
                // or zeroed write), and treating them as the end would drop
                // what follows.
                match find_valid_record(bytes, self.at + 1, self.expected) {
                    Some(o) => Scanned::Corrupt {
                        offset,
                        reason: Corruption::Hole {
                            valid_at: self.base + o as u64,
                        },
                    },
                    None => Scanned::End { offset },
                }
            }
            Step::Corrupt(reason) => Scanned::Corrupt { offset, reason },
        };
        self.done = true;
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::record::{encode_event, EventRecord, FLAG_COMMIT};
    use crate::store::types::EventId;

    fn rec(position: u64, commit: bool) -> Vec<u8> {
        let mut b = Vec::new();
        encode_event(
            &mut b,
            &EventRecord {
                flags: if commit { FLAG_COMMIT } else { 0 },
                position,
                revision: position,
                recorded_at_micros: 1,
                id: EventId([position as u8; 16]),
                stream: "s",
                event_type: "T",
                content_type: "",
                metadata: b"",
                data: b"payload",
            },
        );
        b
    }

    fn walk(bytes: &[u8]) -> (Vec<u64>, Option<Corruption>, u64) {
        let mut s = Scanner::new(bytes, 32, 0);
        let mut seen = Vec::new();
        while let Some(item) = s.next_item() {
            match item {
                Scanned::Record { rec, .. } => seen.push(rec.position),
                Scanned::End { .. } => return (seen, None, s.committed_end()),
                Scanned::Corrupt { reason, .. } => return (seen, Some(reason), s.committed_end()),
            }
        }
        unreachable!("a walk ends with End or Corrupt")
    }

    #[test]
    fn complete_appends_then_zero_fill_end_cleanly() {
        let mut b = rec(0, true);
        b.extend(rec(1, false));
        b.extend(rec(2, true));
        let end = b.len() as u64 + 32;
        b.extend([0u8; 100]);
        assert_eq!(walk(&b), (vec![0, 1, 2], None, end));
    }

    #[test]
    fn an_open_append_at_the_end_is_reported() {
        let mut b = rec(0, true);
        let end = b.len() as u64 + 32;
        b.extend(rec(1, false));
        b.extend([0u8; 10]);
        assert_eq!(
            walk(&b),
            (vec![0, 1], Some(Corruption::EndsInsideAppend), end)
        );
    }

    #[test]
    fn holes_gaps_and_bad_frames_are_typed() {
        let first = rec(0, true);
        let mut hole = first.clone();
        hole.extend([0u8; 16]);
        let valid_at = 32 + hole.len() as u64;
        hole.extend(rec(1, true));
        assert_eq!(walk(&hole).1, Some(Corruption::Hole { valid_at }));

        let mut gap = first.clone();
        gap.extend(rec(5, true));
        assert_eq!(
            walk(&gap).1,
            Some(Corruption::Position {
                found: 5,
                expected: 1
            })
        );

        let mut bad = first.clone();
        let mut second = rec(1, true);
        let last = second.len() - 1;
        second[last] ^= 1;
        bad.extend(second);
        assert!(matches!(
            walk(&bad).1,
            Some(Corruption::Frame(DecodeError::CrcMismatch { .. }))
        ));
    }

    #[test]
    fn step_distinguishes_need_more_from_the_end_of_the_file() {
        let r = rec(0, true);
        assert!(matches!(step(&r[..r.len() - 1], false), Step::NeedMore(_)));
        assert!(matches!(
            step(&r[..r.len() - 1], true),
            Step::Corrupt(Corruption::Frame(DecodeError::Truncated { .. }))
        ));
        assert!(matches!(step(&[0, 0], true), Step::End));
        assert!(matches!(step(&[0, 0], false), Step::NeedMore(_)));
    }
}
