//! A process-wide monotonic clock, and the event payload that carries its
//! reading so a subscriber can measure append→delivery latency.
//!
//! The payload's first 8 bytes are the nanoseconds since the clock's origin
//! at the moment the append was sent (little-endian); the rest is filler.
//! Writer and subscriber live in the same process, so the readings compare.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

static ORIGIN: OnceLock<Instant> = OnceLock::new();

/// Nanoseconds since the clock's origin (the first call in this process).
pub fn now_nanos() -> u64 {
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// A payload of `size` bytes (at least 8) stamped with the current time.
pub fn stamped_payload(size: usize) -> Vec<u8> {
    let mut data = vec![0xA5u8; size.max(8)];
    data[..8].copy_from_slice(&now_nanos().to_le_bytes());
    data
}

/// The send time stamped in `data`, if it is long enough to hold one.
pub fn stamp_of(data: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = data.get(..8)?.try_into().ok()?;
    Some(u64::from_le_bytes(bytes))
}

/// The time elapsed since a stamp, in nanoseconds (0 if the stamp is in the future).
pub fn since(stamp: u64) -> u64 {
    now_nanos().saturating_sub(stamp)
}

/// A tiny xorshift generator: workload choices need speed, not quality.
pub struct Rng(u64);

impl Rng {
    /// A generator seeded from `seed` and the clock.
    pub fn new(seed: u64) -> Self {
        Rng((seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ now_nanos()) | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A value in `0..n` (`0` when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

/// Seconds as a `Duration`, rejecting negative or non-finite values.
pub fn secs(value: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_round_trips() {
        let p = stamped_payload(256);
        assert_eq!(p.len(), 256);
        let s = stamp_of(&p).expect("stamped");
        assert!(s <= now_nanos());
        assert_eq!(stamp_of(&[1, 2]), None);
    }

    #[test]
    fn rng_stays_in_range() {
        let mut r = Rng::new(7);
        for _ in 0..1000 {
            assert!(r.below(10) < 10);
        }
        assert_eq!(r.below(0), 0);
    }
}
