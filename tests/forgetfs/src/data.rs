//! File contents as copy-on-write chunks.
//!
//! A file keeps two versions of its bytes, what reads see and what survives a power cut, and
//! `fsync` makes the second a copy of the first. Copying a whole file on every `fsync` of a log
//! that grows to many megabytes would be quadratic, so contents are split in fixed-size chunks
//! shared through [`Arc`]: a copy clones one pointer per chunk, and a write copies only the
//! chunk it touches when that chunk is still shared with the other version.

use std::cmp::min;
use std::sync::Arc;

/// Bytes per chunk.
pub(crate) const CHUNK: u64 = 64 * 1024;

/// Largest file the model holds (64 GiB): beyond it writes and truncates fail with `EFBIG`.
/// Holes cost one pointer per chunk, so this bounds the memory of a sparse file to 8 MiB.
pub(crate) const MAX_LEN: u64 = 64 << 30;

/// The contents of one file.
///
/// Invariant: `chunks.len() == len.div_ceil(CHUNK)`, and chunk `k` stores the bytes
/// `[k * CHUNK, k * CHUNK + v.len())` with `k * CHUNK + v.len() <= len`. Bytes not stored (a
/// `None` chunk, or past the end of a short one) read as zeros.
#[derive(Clone, Default)]
pub(crate) struct Data {
    len: u64,
    chunks: Vec<Option<Arc<Vec<u8>>>>,
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Data").field("len", &self.len).finish()
    }
}

fn chunk_count(len: u64) -> usize {
    // MAX_LEN / CHUNK fits any usize of 32 bits or more.
    len.div_ceil(CHUNK) as usize
}

impl Data {
    /// Contents holding exactly `bytes`.
    #[cfg(test)]
    pub(crate) fn from_bytes(bytes: &[u8]) -> Data {
        let mut data = Data::default();
        data.write(0, bytes);
        data
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Up to `size` bytes from `offset` (fewer at the end of the file, none past it).
    pub(crate) fn read(&self, offset: u64, size: u64) -> Vec<u8> {
        if offset >= self.len {
            return Vec::new();
        }
        let end = min(self.len, offset.saturating_add(size));
        let mut out = vec![0u8; (end - offset) as usize];
        let mut pos = offset;
        while pos < end {
            let k = pos / CHUNK;
            let start = k * CHUNK;
            let stop = min(start + CHUNK, end);
            if let Some(Some(chunk)) = self.chunks.get(k as usize) {
                let from = (pos - start) as usize;
                let to = min((stop - start) as usize, chunk.len());
                if from < to {
                    let dst = (pos - offset) as usize;
                    out[dst..dst + (to - from)].copy_from_slice(&chunk[from..to]);
                }
            }
            pos = stop;
        }
        out
    }

    /// All bytes.
    pub(crate) fn to_vec(&self) -> Vec<u8> {
        self.read(0, self.len)
    }

    /// Truncates, or extends with zeros. The caller checks `n <= MAX_LEN`.
    pub(crate) fn set_len(&mut self, n: u64) {
        if n < self.len {
            self.chunks.truncate(chunk_count(n));
            let keep = (n % CHUNK) as usize;
            if keep != 0 {
                if let Some(Some(last)) = self.chunks.last_mut() {
                    if last.len() > keep {
                        Arc::make_mut(last).truncate(keep);
                    }
                }
            }
        } else {
            self.chunks.resize(chunk_count(n), None);
        }
        self.len = n;
    }

    /// Writes `buf` at `offset`, extending the file (with zeros before `offset` if it lies past
    /// the end). The caller checks `offset + buf.len() <= MAX_LEN`.
    pub(crate) fn write(&mut self, offset: u64, buf: &[u8]) {
        let end = offset + buf.len() as u64;
        if end > self.len {
            self.set_len(end);
        }
        let mut pos = offset;
        while pos < end {
            let k = (pos / CHUNK) as usize;
            let start = k as u64 * CHUNK;
            let stop = min(start + CHUNK, end);
            let chunk = Arc::make_mut(self.chunks[k].get_or_insert_with(|| Arc::new(Vec::new())));
            let from = (pos - start) as usize;
            let to = (stop - start) as usize;
            if chunk.len() < to {
                // Grow geometrically but never past one chunk.
                let want = to.max(min(chunk.len() * 2, CHUNK as usize));
                chunk.reserve_exact(want - chunk.len());
                chunk.resize(to, 0);
            }
            let src = (pos - offset) as usize;
            chunk[from..to].copy_from_slice(&buf[src..src + (to - from)]);
            pos = stop;
        }
    }

    /// How many of the bytes of `self` (the current contents) a power cut that leaves `durable`
    /// loses: positions past the end of `durable`, and positions where the two differ.
    pub(crate) fn bytes_lost_to(&self, durable: &Data) -> u64 {
        let mut lost = 0;
        for (k, cur) in self.chunks.iter().enumerate() {
            let start = k as u64 * CHUNK;
            let stop = min(start + CHUNK, self.len);
            let kept = min(stop, durable.len).max(start);
            lost += stop - kept;
            if kept == start {
                continue;
            }
            let dur = durable.chunks.get(k).and_then(Option::as_ref);
            let cur = cur.as_ref();
            match (cur, dur) {
                (None, None) => {}
                (Some(a), Some(b)) if Arc::ptr_eq(a, b) => {}
                _ => {
                    let byte = |c: Option<&Arc<Vec<u8>>>, i: usize| {
                        c.and_then(|c| c.get(i)).copied().unwrap_or(0)
                    };
                    let n = (kept - start) as usize;
                    lost += (0..n).filter(|&i| byte(cur, i) != byte(dur, i)).count() as u64;
                }
            }
        }
        lost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_across_chunks_and_holes() {
        let mut d = Data::default();
        d.write(10, b"abc");
        assert_eq!(d.len(), 13);
        assert_eq!(d.to_vec()[..10], [0u8; 10]);
        assert_eq!(&d.to_vec()[10..], b"abc");

        // A write spanning a chunk boundary, far past the end: zeros in between.
        let off = 3 * CHUNK - 2;
        d.write(off, b"wxyz");
        assert_eq!(d.len(), off + 4);
        assert_eq!(d.read(off - 1, 10), b"\0wxyz");
        assert!(d.read(100, CHUNK).iter().all(|&b| b == 0));
        assert_eq!(d.read(off + 4, 10), b"");
    }

    #[test]
    fn truncate_then_extend_reads_zeros() {
        let mut d = Data::from_bytes(&vec![7u8; (CHUNK + 100) as usize]);
        d.set_len(CHUNK + 10);
        d.set_len(CHUNK + 50);
        assert_eq!(d.read(CHUNK, 60), [vec![7u8; 10], vec![0u8; 40]].concat());
        d.set_len(5);
        d.set_len(CHUNK);
        assert_eq!(d.read(0, 10), [vec![7u8; 5], vec![0u8; 5]].concat());
    }

    #[test]
    fn copies_are_independent() {
        let mut cur = Data::from_bytes(b"hello world");
        let dur = cur.clone();
        cur.write(0, b"HELLO");
        assert_eq!(dur.to_vec(), b"hello world");
        assert_eq!(cur.to_vec(), b"HELLO world");
        assert_eq!(cur.bytes_lost_to(&dur), 5);
        cur.write(11, b"!!");
        assert_eq!(cur.bytes_lost_to(&dur), 7);
        assert_eq!(cur.bytes_lost_to(&cur.clone()), 0);
        assert_eq!(cur.bytes_lost_to(&Data::default()), 13);
    }
}
