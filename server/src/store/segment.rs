//! Segment files: naming, the 32-byte header, creation (preallocated and
//! zero-filled, then renamed into place and the directory synced) and the
//! set of open segments that readers share. Knows nothing of records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use super::error::{Result, StorageError};
use super::io::{Storage, StorageFile};

/// Magic bytes at the start of every segment.
pub const MAGIC: [u8; 8] = *b"STRATSEG";
/// The on-disk format version this build writes. It reads every version
/// from [`OLDEST_FORMAT_VERSION`] on (see `docs/FORMAT.md`, "Versions"):
/// version 2 lets one atomic unit hold appends to several streams
/// (`MultiAppend`); a version-1 segment never holds such a unit.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
/// Size of the segment header; records start right after it.
pub const HEADER_LEN: u64 = 32;
/// File-name suffix of segment files.
pub const SUFFIX: &str = ".seg";

/// File name of the segment whose first record has `base` as position.
pub fn file_name(base: u64) -> String {
    format!("{base:020}{SUFFIX}")
}

/// Parses a segment file name back into its base position.
pub fn parse_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Encodes a segment header.
pub fn encode_header(base: u64) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    // 24..28 reserved, zero
    let crc = crc32fast::hash(&h[0..28]);
    h[28..32].copy_from_slice(&crc.to_le_bytes());
    h
}

/// Checks a segment header and returns its base position and format version.
pub fn decode_header(path: &Path, h: &[u8]) -> Result<(u64, u32)> {
    let bad = |why: &str| StorageError::corrupt(path, 0, format!("segment header: {why}"));
    if h.len() < HEADER_LEN as usize {
        return Err(bad("file shorter than the header"));
    }
    if h[0..8] != MAGIC {
        return Err(bad("bad magic"));
    }
    let stored = u32::from_le_bytes([h[28], h[29], h[30], h[31]]);
    if crc32fast::hash(&h[0..28]) != stored {
        return Err(bad("CRC-32 mismatch"));
    }
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
        return Err(bad(&format!(
            "format version {version}, this build reads versions {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION}"
        )));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[16..24]);
    Ok((u64::from_le_bytes(b), version))
}

/// fsyncs a directory so that a created or renamed entry survives a crash.
pub fn sync_dir(storage: &dyn Storage, dir: &Path) -> Result<()> {
    storage.sync_dir(dir).map_err(|e| StorageError::io(dir, e))
}

/// Creates segment `base` in `dir`, `size` bytes long, zero-filled (so that
/// later `fdatasync`s do not have to commit file-size changes), with its
/// header written and synced, then renamed into place and the directory
/// synced. Returns the open file.
pub fn create(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    size: u64,
) -> Result<Arc<dyn StorageFile>> {
    let path = dir.join(file_name(base));
    let tmp = dir.join(format!("{}.tmp", file_name(base)));
    let io = |e| StorageError::io(&tmp, e);
    let f = storage.create(&tmp).map_err(io)?;
    f.write_at(&encode_header(base), 0).map_err(io)?;
    f.write_zeros(HEADER_LEN, size.saturating_sub(HEADER_LEN))
        .map_err(io)?;
    f.sync_all().map_err(io)?;
    storage
        .rename(&tmp, &path)
        .map_err(|e| StorageError::io(&path, e))?;
    sync_dir(storage, dir)?;
    Ok(f)
}

/// Name of the zero-filled file kept ready for the next segment.
pub const SPARE_NAME: &str = "spare.seg.tmp";

/// Makes a zero-filled, synced file of `size` bytes at `<dir>/spare.seg.tmp`,
/// ahead of need, so that rolling to a new segment costs one header write
/// and a rename instead of filling a whole file on the write path.
pub fn prepare_spare(storage: &dyn Storage, dir: &Path, size: u64) -> Result<Arc<dyn StorageFile>> {
    let path = dir.join(SPARE_NAME);
    let io = |e| StorageError::io(&path, e);
    let f = storage.create(&path).map_err(io)?;
    f.write_zeros(0, size).map_err(io)?;
    f.sync_all().map_err(io)?;
    Ok(f)
}

/// Turns a prepared spare file into segment `base`: writes and syncs the
/// header, renames it into place and syncs the directory.
pub fn install_spare(
    storage: &dyn Storage,
    dir: &Path,
    spare: Arc<dyn StorageFile>,
    base: u64,
) -> Result<Arc<dyn StorageFile>> {
    let from = dir.join(SPARE_NAME);
    let to = dir.join(file_name(base));
    spare
        .write_at(&encode_header(base), 0)
        .and_then(|_| spare.sync_all())
        .map_err(|e| StorageError::io(&from, e))?;
    storage
        .rename(&from, &to)
        .map_err(|e| StorageError::io(&to, e))?;
    sync_dir(storage, dir)?;
    Ok(spare)
}

/// One open segment file, shared by the writer and readers.
#[derive(Debug)]
pub struct Segment {
    /// Position of its first record.
    pub base: u64,
    /// Its path, for error messages.
    pub path: PathBuf,
    /// The format version of its header.
    pub version: u32,
    /// The open file (positional reads and writes only).
    pub file: Arc<dyn StorageFile>,
}

impl Segment {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<usize> {
        self.file
            .read_at(buf, offset)
            .map_err(|e| StorageError::io(&self.path, e))
    }

    /// Current length of the file.
    pub fn len(&self) -> Result<u64> {
        self.file
            .size()
            .map_err(|e| StorageError::io(&self.path, e))
    }
}

/// All segments of the log, by base position.
#[derive(Debug, Default)]
pub struct SegmentSet {
    segments: RwLock<BTreeMap<u64, Arc<Segment>>>,
}

impl SegmentSet {
    /// Adds a segment.
    pub fn insert(&self, seg: Arc<Segment>) {
        self.segments
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(seg.base, seg);
    }

    /// The segment with this base.
    pub fn get(&self, base: u64) -> Option<Arc<Segment>> {
        self.read().get(&base).cloned()
    }

    /// The segment after the one with base `base`.
    pub fn next_after(&self, base: u64) -> Option<Arc<Segment>> {
        use std::ops::Bound::{Excluded, Unbounded};
        self.read()
            .range((Excluded(base), Unbounded))
            .next()
            .map(|(_, s)| s.clone())
    }

    /// The last segment whose base is at or before `position`: the one that
    /// holds it, if the log does.
    pub fn floor(&self, position: u64) -> Option<Arc<Segment>> {
        self.read()
            .range(..=position)
            .next_back()
            .map(|(_, s)| s.clone())
    }

    /// Every segment, in log order.
    pub fn all(&self) -> Vec<Arc<Segment>> {
        self.read().values().cloned().collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Arc<Segment>>> {
        self.segments.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sort_as_the_log() {
        let mut names: Vec<String> = [5u64, 1_000_000, 42, 0]
            .iter()
            .map(|b| file_name(*b))
            .collect();
        names.sort();
        let bases: Vec<u64> = names
            .iter()
            .map(|n| parse_name(n).expect("parses"))
            .collect();
        assert_eq!(bases, vec![0, 5, 42, 1_000_000]);
        assert_eq!(parse_name("00000000000000000001.seg.tmp"), None);
        assert_eq!(parse_name("1.seg"), None);
    }

    #[test]
    fn header_round_trip_and_corruption() {
        let p = Path::new("x.seg");
        let h = encode_header(77);
        assert_eq!(decode_header(p, &h).expect("valid"), (77, FORMAT_VERSION));
        for i in 0..h.len() {
            let mut bad = h;
            bad[i] ^= 0x10;
            assert!(decode_header(p, &bad).is_err(), "byte {i}");
        }
    }

    #[test]
    fn create_preallocates_and_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = create(&super::super::io::OsStorage, dir.path(), 10, 4096).expect("create");
        assert_eq!(f.size().expect("size"), 4096);
        assert!(dir.path().join(file_name(10)).exists());
        let mut h = [0u8; 32];
        assert_eq!(f.read_at(&mut h, 0).expect("read"), 32);
        assert_eq!(decode_header(Path::new("x"), &h).expect("header").0, 10);
    }
}
