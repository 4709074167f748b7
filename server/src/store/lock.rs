//! The data directory itself: creating it durably, and the `LOCK` file a
//! process holds (an exclusive `flock`) while it has the directory open, so
//! that two servers, or a server and `verify`, never share one.

use std::fs::{File, OpenOptions};
use std::path::Path;

use super::error::{OpenError, Result, StorageError};

/// Creates the data directory if it is missing, with its name made durable
/// (the parent directory synced), so a power cut cannot take the whole log.
pub(crate) fn create_data_dir(data: &Path) -> Result<()> {
    if data.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(data).map_err(|e| StorageError::io(data, e))?;
    if let Some(parent) = data.parent().filter(|p| !p.as_os_str().is_empty()) {
        File::open(parent)
            .and_then(|d| d.sync_all())
            .map_err(|e| StorageError::io(parent, e))?;
    }
    Ok(())
}

pub(crate) fn lock_dir(data: &Path) -> Result<File, OpenError> {
    let path = data.join("LOCK");
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| StorageError::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(OpenError::Locked(data.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(StorageError::io(&path, e).into()),
    }
}
