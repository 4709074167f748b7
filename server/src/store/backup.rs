//! Online backup: which bytes of which files make a consistent copy of the
//! store, and reading them. The copy is the log alone (the index is derived
//! and is rebuilt from the log when the copy is first opened): every sealed
//! segment whole, and the active segment up to the end of the last durable
//! batch. Sealed segments change only when a scavenge rewrites them (their
//! first bytes then differ, so a later backup sends them whole) and the
//! active one only grows, so a later backup into the same copy sends what
//! it lacks.

use std::sync::Arc;

use super::error::{ReadError, StorageError};
use super::segment::{self, Segment};
use super::Store;

/// Bytes of a file's end that identify it for an incremental backup.
pub const TAIL_BYTES: u64 = 64 << 10;

/// One file of a backup.
pub struct BackupFile {
    /// Path relative to the data directory, `/`-separated.
    pub path: String,
    /// Its size in the copy.
    pub len: u64,
    seg: Arc<Segment>,
}

/// What a backup started now copies.
pub struct BackupPlan {
    /// The files, in log order.
    pub files: Vec<BackupFile>,
    /// Every event below this position is in the copy.
    pub head_position: u64,
}

/// The relative path of a segment file in a data directory.
pub fn segment_path(base: u64) -> String {
    format!("log/{}", segment::file_name(base))
}

impl Store {
    /// The files and lengths of a consistent copy of what is durable now.
    pub fn backup_plan(&self) -> Result<BackupPlan, ReadError> {
        let shared = &self.shared;
        // The position first, then the end of the log's bytes: the bytes
        // cover at least every event below the position (the writer moves
        // the end before the position, both after the sync).
        let head_position = shared.progress.committed();
        let (active, end) = *shared
            .committed_end
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut files = Vec::new();
        for seg in shared.segments.all() {
            if seg.base > active {
                break;
            }
            let len = if seg.base == active { end } else { seg.len()? };
            files.push(BackupFile {
                path: segment_path(seg.base),
                len,
                seg,
            });
        }
        Ok(BackupPlan {
            files,
            head_position,
        })
    }

    /// Up to `len` bytes of `file` from `offset` (blocking I/O in one hop).
    pub async fn backup_read(
        &self,
        file: &BackupFile,
        offset: u64,
        len: usize,
    ) -> Result<Vec<u8>, ReadError> {
        let seg = file.seg.clone();
        let len = len.min(file.len.saturating_sub(offset) as usize);
        super::hop(move || {
            let mut buf = vec![0u8; len];
            let n = seg.read_at(&mut buf, offset)?;
            if n < len {
                return Err(StorageError::corrupt(
                    &seg.path,
                    offset + n as u64,
                    "the segment is shorter than the backup expected",
                ));
            }
            Ok(buf)
        })
        .await?
        .map_err(ReadError::from)
    }

    /// CRC-32s of `file`'s first and last `TAIL_BYTES` bytes below `size`
    /// (as much of them as there is), to check that a copy of its first
    /// `size` bytes is that: the first bytes tell one store's segment from
    /// another's, the last ones where the copy stops.
    pub async fn backup_crcs(&self, file: &BackupFile, size: u64) -> Result<(u32, u32), ReadError> {
        let head = self
            .backup_read(file, 0, size.min(TAIL_BYTES) as usize)
            .await?;
        let from = size.saturating_sub(TAIL_BYTES);
        let tail = self.backup_read(file, from, (size - from) as usize).await?;
        Ok((crc32fast::hash(&head), crc32fast::hash(&tail)))
    }
}
