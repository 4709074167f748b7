//! Settings of the storage engine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::io::Storage;

/// When an append counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `fdatasync` after every group-commit batch, before any of its appends
    /// is acknowledged. Acknowledged means on disk.
    #[default]
    Always,
    /// Never `fdatasync` on the write path; the OS writes back when it likes.
    /// An acknowledged append can be lost on power failure or kernel crash.
    /// For comparisons only; never use it for data you care about.
    UnsafeNoSync,
}

/// Size limits checked before anything is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest data + metadata of one event, in bytes.
    pub max_event_bytes: u64,
    /// Largest total of one append (all events, all fields), in bytes.
    pub max_append_bytes: u64,
    /// Most events in one append.
    pub max_append_events: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_event_bytes: 1 << 20,
            max_append_bytes: 16 << 20,
            max_append_events: 10_000,
        }
    }
}

/// Everything the engine needs to open a data directory.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The data directory (`log/` and `index/` live below it).
    pub data_dir: PathBuf,
    /// Durability of acknowledged appends.
    pub sync_mode: SyncMode,
    /// Target size of a segment file; an append never spans two segments,
    /// so a single larger append gets a larger segment.
    pub segment_size: u64,
    /// Size limits.
    pub limits: Limits,
    /// Committed batches kept for live subscribers before a slow one has to
    /// go back to reading the log.
    pub live_buffer: usize,
    /// Most events (or bytes / 64 KiB, whichever is reached first) in one read batch.
    pub read_batch: usize,
    /// A filtered `$all` subscription sends a checkpoint after scanning this many events…
    pub checkpoint_every_events: u64,
    /// …or after this much time with progress, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Longest a committed append waits in the in-memory index tail before
    /// it is written to the sled index. Reads never wait for it; a crash
    /// replays at most this much of the log at the next open.
    pub index_interval: Duration,
    /// Appends waiting for the sled index that make it write before the
    /// interval ends.
    pub index_appends: usize,
    /// Where segment I/O goes: the file system in production, a fault
    /// injector or a power-loss model in tests.
    pub storage: Arc<dyn Storage>,
}

impl StoreConfig {
    /// Defaults for a data directory.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            data_dir: data_dir.into(),
            sync_mode: SyncMode::Always,
            segment_size: 64 << 20,
            limits: Limits::default(),
            live_buffer: 256,
            read_batch: 512,
            checkpoint_every_events: 1024,
            checkpoint_interval: Duration::from_secs(2),
            index_interval: Duration::from_millis(200),
            index_appends: 32 << 10,
            storage: super::io::os(),
        }
    }
}
