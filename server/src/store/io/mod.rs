//! The I/O seam under the log: every file and directory operation on
//! segments goes through [`Storage`] and [`StorageFile`], so that tests can
//! put a fault injector ([`FaultyStorage`]) or a power-loss model
//! ([`SimStorage`]) where production has the file system ([`OsStorage`]).
//!
//! The contract the engine relies on, and every implementation honours:
//! - data written with [`StorageFile::write_at`] survives a power loss only
//!   once [`StorageFile::sync_data`] (or `sync_all`) on that file returned;
//! - a created, renamed or removed name survives a power loss only once
//!   [`Storage::sync_dir`] on its directory returned;
//! - nothing else is promised: unsynced writes and names may survive in
//!   part, in any prefix, or not at all.
//!
//! The sled index and the directory lock do not go through the seam: the
//! index is derived (rebuilt from the log) and the lock does not persist.

mod faulty;
mod os;
mod sim;

use std::fmt::Debug;
use std::io;
use std::path::Path;
use std::sync::Arc;

pub use faulty::{FaultPlan, FaultyStorage};
pub use os::OsStorage;
pub use sim::{CutMode, SimStorage};

/// A directory tree of files the log lives in.
pub trait Storage: Send + Sync + Debug + 'static {
    /// Creates `path` empty (truncating an existing file), open for reading
    /// and writing. The new name is durable only after [`Storage::sync_dir`].
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Opens an existing file, for reading and, with `writable`, writing.
    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of directory `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The names in directory `dir` (no `.` or `..`), in no order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `dir` and its missing parents; `Ok` if it exists. Callers
    /// sync the parent to make a new directory durable.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Whether `path` names an existing directory.
    fn dir_exists(&self, dir: &Path) -> bool;
}

/// An open file of a [`Storage`]. Positional I/O only, so that one handle
/// serves the writer and any number of readers at once.
pub trait StorageFile: Send + Sync + Debug {
    /// Reads up to `buf.len()` bytes at `offset`; fewer only at the end of
    /// the file.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `offset`, extending the file if needed. On an
    /// error, any prefix of `buf` may have been written.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Writes `len` zero bytes at `offset` (real zeros, so the blocks are
    /// allocated: later syncs of overwrites need not change metadata).
    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<()>;
    /// `fdatasync`: the file's data and length become durable.
    fn sync_data(&self) -> io::Result<()>;
    /// `fsync`: data, length and other metadata become durable.
    fn sync_all(&self) -> io::Result<()>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// The file's current length.
    fn size(&self) -> io::Result<u64>;
}

/// The production storage, shared by default.
pub fn os() -> Arc<dyn Storage> {
    Arc::new(OsStorage)
}

/// Zeros written per call by `write_zeros` implementations.
const ZERO_CHUNK: usize = 1 << 20;
