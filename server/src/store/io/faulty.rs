//! A fault injector over another storage, for tests: it fails the n-th
//! write or data sync, lets only part of a write through, or reports a
//! full disk. Preallocation (`write_zeros`) and whole-file syncs of new
//! segments are not counted, so a plan's n-th write or sync is one of the
//! writer's own (a record batch, or a segment header on a roll).

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use super::{Storage, StorageFile};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;

/// What a [`FaultyStorage`] does once armed. Counts are 1-based, from the
/// moment of arming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPlan {
    /// The n-th write fails with EIO; later ones succeed.
    FailWrite(u64),
    /// The n-th data sync fails with EIO; later ones succeed.
    FailSync(u64),
    /// The n-th write lets half its bytes through, then fails with ENOSPC.
    ShortWrite(u64),
    /// From the n-th write on, every write (and preallocation) fails with
    /// ENOSPC.
    DiskFull(u64),
    /// The n-th directory sync fails with EIO.
    FailDirSync(u64),
}

#[derive(Debug)]
struct Counters {
    plan: FaultPlan,
    armed: AtomicBool,
    writes: AtomicU64,
    syncs: AtomicU64,
    dir_syncs: AtomicU64,
    injected: AtomicU64,
}

/// Wraps a storage and injects the faults of a [`FaultPlan`].
#[derive(Debug, Clone)]
pub struct FaultyStorage {
    inner: Arc<dyn Storage>,
    c: Arc<Counters>,
}

impl FaultyStorage {
    /// A disarmed injector over `inner`: it passes everything through until
    /// [`FaultyStorage::arm`].
    pub fn new(inner: Arc<dyn Storage>, plan: FaultPlan) -> Self {
        FaultyStorage {
            inner,
            c: Arc::new(Counters {
                plan,
                armed: AtomicBool::new(false),
                writes: AtomicU64::new(0),
                syncs: AtomicU64::new(0),
                dir_syncs: AtomicU64::new(0),
                injected: AtomicU64::new(0),
            }),
        }
    }

    /// Starts counting operations from zero and injecting the plan.
    pub fn arm(&self) {
        self.c.writes.store(0, Ordering::SeqCst);
        self.c.syncs.store(0, Ordering::SeqCst);
        self.c.dir_syncs.store(0, Ordering::SeqCst);
        self.c.armed.store(true, Ordering::SeqCst);
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u64 {
        self.c.injected.load(Ordering::SeqCst)
    }
}

impl Counters {
    fn armed(&self) -> bool {
        self.armed.load(Ordering::SeqCst)
    }

    fn hit(&self, errno: i32) -> io::Error {
        self.injected.fetch_add(1, Ordering::SeqCst);
        io::Error::from_raw_os_error(errno)
    }

    /// How many bytes of a write of `len` may go through, or the error.
    fn on_write(&self, len: usize) -> io::Result<usize> {
        if !self.armed() {
            return Ok(len);
        }
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        match self.plan {
            FaultPlan::FailWrite(k) if n == k => Err(self.hit(EIO)),
            FaultPlan::ShortWrite(k) if n == k => {
                self.injected.fetch_add(1, Ordering::SeqCst);
                Ok(len / 2)
            }
            FaultPlan::DiskFull(k) if n >= k => Err(self.hit(ENOSPC)),
            _ => Ok(len),
        }
    }

    fn on_zeros(&self) -> io::Result<()> {
        match self.plan {
            FaultPlan::DiskFull(k) if self.armed() && self.writes.load(Ordering::SeqCst) >= k => {
                Err(self.hit(ENOSPC))
            }
            _ => Ok(()),
        }
    }

    fn on_sync(&self) -> io::Result<()> {
        if !self.armed() {
            return Ok(());
        }
        let n = self.syncs.fetch_add(1, Ordering::SeqCst) + 1;
        match self.plan {
            FaultPlan::FailSync(k) if n == k => Err(self.hit(EIO)),
            _ => Ok(()),
        }
    }

    fn on_dir_sync(&self) -> io::Result<()> {
        if !self.armed() {
            return Ok(());
        }
        let n = self.dir_syncs.fetch_add(1, Ordering::SeqCst) + 1;
        match self.plan {
            FaultPlan::FailDirSync(k) if n == k => Err(self.hit(EIO)),
            _ => Ok(()),
        }
    }
}

impl Storage for FaultyStorage {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.create(path)?;
        Ok(Arc::new(FaultyFile {
            inner,
            c: self.c.clone(),
        }))
    }

    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        let inner = self.inner.open(path, writable)?;
        Ok(Arc::new(FaultyFile {
            inner,
            c: self.c.clone(),
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.c.on_dir_sync()?;
        self.inner.sync_dir(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list_dir(dir)
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn dir_exists(&self, dir: &Path) -> bool {
        self.inner.dir_exists(dir)
    }
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn StorageFile>,
    c: Arc<Counters>,
}

impl StorageFile for FaultyFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let allowed = self.c.on_write(buf.len())?.min(buf.len());
        self.inner.write_at(&buf[..allowed], offset)?;
        if allowed < buf.len() {
            return Err(io::Error::from_raw_os_error(ENOSPC));
        }
        Ok(())
    }

    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<()> {
        self.c.on_zeros()?;
        self.inner.write_zeros(offset, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.c.on_sync()?;
        self.inner.sync_data()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.inner.sync_all()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn size(&self) -> io::Result<u64> {
        self.inner.size()
    }
}
