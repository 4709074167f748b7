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
/// The format version of a segment rewritten by a scavenge: its records
/// keep their positions but some positions are missing (gaps), and a
/// table after the records maps positions to offsets (`docs/FORMAT.md`,
/// "Scavenged segments"). The writer never appends to one.
pub const SCAVENGED_FORMAT_VERSION: u32 = 3;
/// Magic bytes that start the position table of a scavenged segment.
pub const TABLE_MAGIC: [u8; 4] = *b"GAPS";
/// A scavenged segment's table has an entry for every this many records.
pub const TABLE_STRIDE: usize = 64;
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
    encode_header_as(base, FORMAT_VERSION, 0)
}

/// Encodes a header of `version`; `table_offset` (version 3 only, zero
/// otherwise) is where the records end and the position table starts.
fn encode_header_as(base: u64, version: u32, table_offset: u32) -> [u8; HEADER_LEN as usize] {
    let mut h = [0u8; HEADER_LEN as usize];
    h[0..8].copy_from_slice(&MAGIC);
    h[8..12].copy_from_slice(&version.to_le_bytes());
    h[12..16].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&base.to_le_bytes());
    h[24..28].copy_from_slice(&table_offset.to_le_bytes());
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
    if !(OLDEST_FORMAT_VERSION..=SCAVENGED_FORMAT_VERSION).contains(&version) {
        return Err(bad(&format!(
            "format version {version}, this build reads versions {OLDEST_FORMAT_VERSION} to {SCAVENGED_FORMAT_VERSION}"
        )));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&h[16..24]);
    Ok((u64::from_le_bytes(b), version))
}

/// Where the records of a version-3 (scavenged) segment end and its
/// position table starts, from a header that [`decode_header`] accepted;
/// `None` for other versions.
pub fn table_offset(h: &[u8]) -> Option<u64> {
    let version = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
    (version == SCAVENGED_FORMAT_VERSION)
        .then(|| u64::from(u32::from_le_bytes([h[24], h[25], h[26], h[27]])))
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
    put_in_place(storage, &*f, &tmp, &path)?;
    Ok(f)
}

/// Syncs `f` (written at `tmp`), renames it to `path` and syncs their
/// directory: after a crash, `path` names the old file or all of the new.
fn put_in_place(storage: &dyn Storage, f: &dyn StorageFile, tmp: &Path, path: &Path) -> Result<()> {
    f.sync_all().map_err(|e| StorageError::io(tmp, e))?;
    storage
        .rename(tmp, path)
        .map_err(|e| StorageError::io(path, e))?;
    sync_dir(storage, path.parent().unwrap_or(Path::new(".")))
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
    /// For a scavenged segment (version 3), where its records end and
    /// which offset some of its positions are at; `None` when its
    /// positions are dense.
    pub gaps: Option<GapTable>,
}

/// The position table of a scavenged segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GapTable {
    /// File offset where the records end (the table starts).
    pub data_end: u64,
    /// `(position, frame offset)` of every [`TABLE_STRIDE`]th record, the
    /// first included, in order.
    pub entries: Vec<(u64, u64)>,
}

impl GapTable {
    /// The last entry at or before `position`: where a walk to it starts.
    /// `None` when `position` comes before the segment's first record.
    pub fn floor(&self, position: u64) -> Option<(u64, u64)> {
        let i = self.entries.partition_point(|(p, _)| *p <= position);
        i.checked_sub(1).map(|i| self.entries[i])
    }

    /// The bytes of the table, as written at `data_end`.
    fn encode(entries: &[(u64, u64)]) -> Vec<u8> {
        let mut b = Vec::with_capacity(12 + entries.len() * 16);
        b.extend_from_slice(&TABLE_MAGIC);
        b.extend_from_slice(&(entries.len() as u32).to_le_bytes());
        for (p, o) in entries {
            b.extend_from_slice(&p.to_le_bytes());
            b.extend_from_slice(&o.to_le_bytes());
        }
        let crc = crc32fast::hash(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        b
    }

    /// Reads and checks the table of a version-3 segment whose header says
    /// it starts at `data_end`.
    pub fn read(path: &Path, file: &dyn StorageFile, data_end: u64) -> Result<GapTable> {
        let bad =
            |why: &str| StorageError::corrupt(path, data_end, format!("position table: {why}"));
        let len = file.size().map_err(|e| StorageError::io(path, e))?;
        if data_end < HEADER_LEN || len < data_end + 12 {
            return Err(bad("the header points past the end of the file"));
        }
        let mut b = vec![0u8; (len - data_end) as usize];
        let n = file
            .read_at(&mut b, data_end)
            .map_err(|e| StorageError::io(path, e))?;
        b.truncate(n);
        let count = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
        let end = 8 + count * 16;
        if b[0..4] != TABLE_MAGIC || b.len() != end + 4 {
            return Err(bad("bad magic or length"));
        }
        let stored = u32::from_le_bytes([b[end], b[end + 1], b[end + 2], b[end + 3]]);
        if crc32fast::hash(&b[..end]) != stored {
            return Err(bad("CRC-32 mismatch"));
        }
        let word = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(w)
        };
        let entries: Vec<(u64, u64)> = (0..count)
            .map(|i| (word(8 + i * 16), word(16 + i * 16)))
            .collect();
        let ordered = entries
            .windows(2)
            .all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1);
        if !ordered
            || entries
                .iter()
                .any(|(_, o)| *o < HEADER_LEN || *o >= data_end)
        {
            return Err(bad("entries out of order or outside the records"));
        }
        Ok(GapTable { data_end, entries })
    }
}

/// Writes the scavenged version of segment `base`: `frames` (whole record
/// frames, in log order, positions increasing) after a version-3 header,
/// then the position table. The file is written as `<name>.scavenge.tmp`,
/// synced, renamed over the segment and the directory synced, so a crash
/// leaves either the old segment or the new one. Returns the new segment.
pub fn write_scavenged(
    storage: &dyn Storage,
    dir: &Path,
    base: u64,
    frames: &[u8],
    entries: &[(u64, u64)],
) -> Result<Segment> {
    let path = dir.join(file_name(base));
    let tmp = dir.join(format!("{}.scavenge.tmp", file_name(base)));
    let data_end = HEADER_LEN + frames.len() as u64;
    let table_offset = u32::try_from(data_end)
        .map_err(|_| StorageError::corrupt(&path, 0, "a segment over 4 GiB cannot be scavenged"))?;
    let io = |e| StorageError::io(&tmp, e);
    let f = storage.create(&tmp).map_err(io)?;
    let header = encode_header_as(base, SCAVENGED_FORMAT_VERSION, table_offset);
    f.write_at(&header, 0).map_err(io)?;
    f.write_at(frames, HEADER_LEN).map_err(io)?;
    f.write_at(&GapTable::encode(entries), data_end)
        .map_err(io)?;
    put_in_place(storage, &*f, &tmp, &path)?;
    Ok(Segment {
        base,
        path,
        version: SCAVENGED_FORMAT_VERSION,
        file: f,
        gaps: Some(GapTable {
            data_end,
            entries: entries.to_vec(),
        }),
    })
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

    /// Where its records end: the file's end, or a scavenged segment's
    /// position table.
    pub fn data_end(&self) -> Result<u64> {
        match &self.gaps {
            Some(g) => Ok(g.data_end),
            None => self.len(),
        }
    }

    /// Whether some positions between its base and its last record are
    /// missing (a scavenged segment).
    pub fn has_gaps(&self) -> bool {
        self.gaps.is_some()
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
