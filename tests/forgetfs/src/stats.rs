//! Counters of a mount, readable while it runs and after it ends.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::state::CutReport;

/// Live counters of one mount. Get them with [`Mounted::stats`](crate::Mounted::stats); the
/// handle stays readable after the mount is gone, so a test can report what a power cut dropped.
#[derive(Debug, Default)]
pub struct Stats {
    file_syncs: AtomicU64,
    dir_syncs: AtomicU64,
    writes: AtomicU64,
    bytes_written: AtomicU64,
    power_cuts: AtomicU64,
    bytes_dropped: AtomicU64,
    names_dropped: AtomicU64,
    names_resurrected: AtomicU64,
}

/// The values of [`Stats`] at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// `fsync`/`fdatasync` requests on files.
    pub file_syncs: u64,
    /// `fsync` requests on directories.
    pub dir_syncs: u64,
    /// Write requests.
    pub writes: u64,
    /// Bytes those write requests carried.
    pub bytes_written: u64,
    /// Power cuts ([`Mounted::cut_power`](crate::Mounted::cut_power)): 0 or 1 for one mount.
    pub power_cuts: u64,
    /// At the power cut: bytes of current contents, of files reachable by their current names,
    /// that the durable image does not hold (never synced, overwritten since the last sync, or
    /// in a file whose name was never made durable).
    pub bytes_dropped: u64,
    /// At the power cut: current names (directory entries) the durable image does not hold.
    pub names_dropped: u64,
    /// At the power cut: names removed or renamed away that come back because the directory
    /// holding them was not synced since.
    pub names_resurrected: u64,
}

impl Stats {
    /// The current values.
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            file_syncs: get(&self.file_syncs),
            dir_syncs: get(&self.dir_syncs),
            writes: get(&self.writes),
            bytes_written: get(&self.bytes_written),
            power_cuts: get(&self.power_cuts),
            bytes_dropped: get(&self.bytes_dropped),
            names_dropped: get(&self.names_dropped),
            names_resurrected: get(&self.names_resurrected),
        }
    }

    pub(crate) fn synced(&self, dir: bool) {
        let counter = if dir {
            &self.dir_syncs
        } else {
            &self.file_syncs
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn wrote(&self, bytes: u32) {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(u64::from(bytes), Ordering::Relaxed);
    }

    pub(crate) fn cut(&self, report: CutReport) {
        self.power_cuts.fetch_add(1, Ordering::Relaxed);
        self.bytes_dropped
            .fetch_add(report.bytes_dropped, Ordering::Relaxed);
        self.names_dropped
            .fetch_add(report.names_dropped, Ordering::Relaxed);
        self.names_resurrected
            .fetch_add(report.names_resurrected, Ordering::Relaxed);
    }
}

impl fmt::Display for StatsSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} file syncs, {} dir syncs, {} writes ({} bytes)",
            self.file_syncs, self.dir_syncs, self.writes, self.bytes_written
        )?;
        if self.power_cuts > 0 {
            write!(
                f,
                "; power cut dropped {} bytes of unsynced data and {} names, resurrected {} names",
                self.bytes_dropped, self.names_dropped, self.names_resurrected
            )?;
        }
        Ok(())
    }
}
