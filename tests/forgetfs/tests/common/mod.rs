//! Shared fixture for the forgetfs mount tests: a fresh temporary mountpoint per test, always
//! unmounted (also when the test fails).

#![allow(dead_code)] // Each test binary uses a different part.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_forgetfs::{preflight, Image, Mounted, Stats};
use tempfile::TempDir;

/// Fails the test (never skips it) when this machine cannot mount forgetfs.
pub fn require_env() {
    if let Err(e) = preflight() {
        panic!("forgetfs mount tests need root and /dev/fuse, and this machine lacks them: {e}");
    }
}

/// A forgetfs mount on its own temporary directory.
pub struct Fixture {
    // Declared first: dropped (unmounted) before the directory is removed.
    mnt: Option<Mounted>,
    dir: TempDir,
}

impl Fixture {
    /// Mounts `image` on a new temporary directory.
    pub fn new(image: Image) -> Fixture {
        require_env();
        let dir = tempfile::Builder::new()
            .prefix("forgetfs-test-")
            .tempdir()
            .expect("temporary mountpoint");
        let mnt = Mounted::mount(dir.path(), image).expect("mount forgetfs");
        Fixture {
            mnt: Some(mnt),
            dir,
        }
    }

    fn mounted(&self) -> &Mounted {
        self.mnt.as_ref().expect("mounted")
    }

    /// `rel` inside the mount.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mounted().mountpoint().join(rel)
    }

    /// The mount's counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.mounted().stats()
    }

    /// What a power cut now would leave.
    pub fn durable_image(&self) -> Image {
        self.mounted().durable_image()
    }

    /// Cuts the power; the fixture is unmounted until [`Fixture::remount`].
    pub fn cut_power(&mut self) -> Image {
        self.mnt.take().expect("mounted").cut_power()
    }

    /// Unmounts cleanly; the fixture is unmounted until [`Fixture::remount`].
    pub fn unmount(&mut self) -> Image {
        self.mnt.take().expect("mounted").unmount()
    }

    /// Mounts `image` again on the same directory.
    pub fn remount(&mut self, image: Image) {
        assert!(self.mnt.is_none(), "still mounted");
        self.mnt = Some(Mounted::mount(self.dir.path(), image).expect("remount forgetfs"));
    }
}

/// fsync of a directory (FUSE fsyncdir).
pub fn sync_dir(path: impl AsRef<Path>) {
    File::open(path.as_ref())
        .and_then(|d| d.sync_all())
        .expect("fsync directory");
}

/// Writes `bytes` to a new (or truncated) file and fsyncs the file (not its directory).
pub fn write_synced(path: impl AsRef<Path>, bytes: &[u8]) {
    use std::io::Write;
    let mut f = File::create(path.as_ref()).expect("create");
    f.write_all(bytes).expect("write");
    f.sync_all().expect("fsync");
}
