//! Positions in `$all`: Strata's dense 0-based `position` and KurrentDB's
//! pair of commit and prepare positions.
//!
//! KurrentDB's first event is never at commit position 0, and its clients
//! use 0 to mean "the start" (a subscription "after 0" starts with the first
//! event). Strata's first event is at position 0, so the layer shifts by
//! one: an event at Strata position `p` is at commit = prepare = `p + 1`.
//! Both numbers are always equal (Strata writes no multi-record
//! transactions), strictly increasing and never 0, so a client's saved
//! position resumes with no gap and no duplicate. A wire position is read
//! by its commit position; the prepare position is ignored.

use crate::store::{ReadFrom, SubscribeFrom};

/// The wire commit (and prepare) position of Strata position `p`.
pub(super) fn to_wire(p: u64) -> u64 {
    p.saturating_add(1)
}

/// Where a forwards `$all` read from wire commit position `commit` starts:
/// that event included (0 is the start).
pub(super) fn read_forwards_from(commit: u64) -> ReadFrom {
    match commit {
        0 => ReadFrom::Start,
        u64::MAX => ReadFrom::End,
        c => ReadFrom::At(c - 1),
    }
}

/// Where a backwards `$all` read from wire commit position `commit` starts.
/// As in KurrentDB, a backwards read from a position returns the events
/// before it, so the last event of one page is the start of the next.
/// `None`: nothing lies before it.
pub(super) fn read_backwards_from(commit: u64) -> Option<ReadFrom> {
    match commit {
        0 | 1 => None,
        u64::MAX => Some(ReadFrom::End),
        c => Some(ReadFrom::At(c - 2)),
    }
}

/// Where a `$all` subscription from wire commit position `commit` starts:
/// after that event (0, which no event has, is the start).
pub(super) fn subscribe_after(commit: u64) -> SubscribeFrom {
    match commit {
        0 => SubscribeFrom::Start,
        u64::MAX => SubscribeFrom::End,
        c => SubscribeFrom::After(c - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_event_is_never_at_zero_and_positions_round_trip() {
        assert_eq!(to_wire(0), 1);
        for p in [0, 1, 41, 1 << 40] {
            assert_eq!(read_forwards_from(to_wire(p)), ReadFrom::At(p));
            assert_eq!(subscribe_after(to_wire(p)), SubscribeFrom::After(p));
        }
        assert_eq!(read_forwards_from(0), ReadFrom::Start);
        assert_eq!(subscribe_after(0), SubscribeFrom::Start);
        assert_eq!(read_backwards_from(to_wire(0)), None);
        assert_eq!(read_backwards_from(to_wire(5)), Some(ReadFrom::At(4)));
        assert_eq!(read_backwards_from(u64::MAX), Some(ReadFrom::End));
    }
}
