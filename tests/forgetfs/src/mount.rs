//! Mounting an [`Image`], and the two ways a mount ends.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

use crate::fs::{lock, ForgetFs};
use crate::image::Image;
use crate::state::{State, View};
use crate::stats::Stats;

/// How long ending a mount waits for its request loop to stop before leaving it behind.
const JOIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks that this process can mount forgetfs: `/dev/fuse` must exist and open, and the
/// process must run as root, because forgetfs mounts with `mount(2)` itself (fuser's
/// pure-Rust path) and never through a `fusermount` helper.
///
/// [`Mounted::mount`] calls this first; tests may call it to fail early with the same message.
pub fn preflight() -> io::Result<()> {
    let mut missing = Vec::new();
    match effective_uid() {
        Ok(0) => {}
        Ok(uid) => missing.push(format!(
            "it must run as root (effective uid is {uid}): it mounts with mount(2) directly, \
             with no fusermount helper"
        )),
        Err(e) => missing.push(format!("cannot tell the effective uid: {e}")),
    }
    match OpenOptions::new().read(true).write(true).open("/dev/fuse") {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(
            "/dev/fuse is missing (load the fuse kernel module, or give the container the \
             device, e.g. docker run --device /dev/fuse --cap-add SYS_ADMIN)"
                .to_owned(),
        ),
        Err(e) => missing.push(format!("/dev/fuse does not open: {e}")),
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("forgetfs cannot mount here: {}", missing.join("; ")),
        ))
    }
}

fn effective_uid() -> io::Result<u32> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
        .ok_or_else(|| io::Error::other("no Uid line in /proc/self/status"))
}

/// Detaches the mount at `path` lazily: it leaves the namespace now, and the kernel drops it
/// when its last open file closes.
#[allow(unsafe_code)]
fn lazy_detach(path: &Path) -> io::Result<()> {
    let path = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call, which only reads it.
    let rc = unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn annotate(e: io::Error, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// A mounted forgetfs filesystem.
///
/// It ends with [`cut_power`](Mounted::cut_power) (keep only what was synced) or
/// [`unmount`](Mounted::unmount) (keep everything); dropping it unmounts like `unmount` and
/// throws the image away.
pub struct Mounted {
    mountpoint: PathBuf,
    state: Arc<Mutex<State>>,
    stats: Arc<Stats>,
    /// `None` once the mount has ended.
    unmounter: Option<SessionUnmounter>,
    session: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for Mounted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mounted")
            .field("mountpoint", &self.mountpoint)
            .field("stats", &self.stats.snapshot())
            .finish()
    }
}

impl Mounted {
    /// Mounts `image` at `mountpoint` (an existing directory), with current and durable state
    /// both equal to `image`. The mount is served by a background thread of this process.
    ///
    /// Needs root and `/dev/fuse` (see [`preflight`]).
    pub fn mount(mountpoint: &Path, image: Image) -> io::Result<Mounted> {
        preflight()?;
        let mountpoint = mountpoint
            .canonicalize()
            .map_err(|e| annotate(e, format!("forgetfs: mountpoint {}", mountpoint.display())))?;
        let state = Arc::new(Mutex::new(State::from_image(&image)));
        let stats = Arc::new(Stats::default());
        let fs = ForgetFs {
            state: Arc::clone(&state),
            stats: Arc::clone(&stats),
        };
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName("forgetfs".to_owned()),
            // Shows as type fuse.forgetfs in /proc/mounts.
            MountOption::CUSTOM("subtype=forgetfs".to_owned()),
            MountOption::RW,
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        config.acl = SessionACL::Owner;
        config.n_threads = Some(1);
        let mut session = Session::new(fs, &mountpoint, &config)
            .map_err(|e| annotate(e, format!("forgetfs: mounting at {}", mountpoint.display())))?;
        let unmounter = session.unmount_callable();
        let session = thread::Builder::new()
            .name("forgetfs".to_owned())
            .spawn(move || session.run())?;
        Ok(Mounted {
            mountpoint,
            state,
            stats,
            unmounter: Some(unmounter),
            session: Some(session),
        })
    }

    /// Where it is mounted (canonical path).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The mount's counters; the handle outlives the mount.
    pub fn stats(&self) -> Arc<Stats> {
        Arc::clone(&self.stats)
    }

    /// What a power cut now would leave, without cutting.
    pub fn durable_image(&self) -> Image {
        lock(&self.state).image(View::Durable)
    }

    /// Cuts the power: from this instant every request fails with `EIO`, the filesystem is
    /// unmounted, and what is returned is only what was durable: the names the root's last
    /// `fsyncdir` held, recursively through each directory's last `fsyncdir`, each file with
    /// the contents of its last `fsync` (empty if never synced). [`Stats`] records what was
    /// dropped.
    ///
    /// If files are still open on the mount (the process under test still runs), the mount is
    /// detached lazily: it leaves the namespace at once and those files keep failing with
    /// `EIO` until closed.
    pub fn cut_power(mut self) -> Image {
        let image = {
            let mut st = lock(&self.state);
            st.frozen = true;
            let (image, report) = st.cut();
            self.stats.cut(report);
            image
        };
        self.end();
        image
    }

    /// Unmounts cleanly, keeping everything as reads saw it, as if every file and directory
    /// had been synced. If files are still open the mount is detached lazily (as in
    /// [`cut_power`](Mounted::cut_power)); writes that race with this call may be missed.
    pub fn unmount(mut self) -> Image {
        let clean = self.umount();
        let image = {
            let mut st = lock(&self.state);
            st.frozen = true;
            st.image(View::Current)
        };
        self.finish(clean);
        image
    }

    /// `umount(2)`; false if it failed (busy) or the mount had already ended.
    fn umount(&mut self) -> bool {
        self.unmounter
            .take()
            .is_some_and(|mut u| u.unmount().is_ok())
    }

    fn end(&mut self) {
        let clean = self.umount();
        self.finish(clean);
    }

    /// After `umount`: waits for the request loop to stop (it does once the kernel drops the
    /// connection), or detaches the busy mount and leaves the loop serving `EIO` until its
    /// last file closes.
    fn finish(&mut self, clean: bool) {
        let Some(session) = self.session.take() else {
            return;
        };
        if !clean {
            // Errors: the mount is already gone, nothing is left to detach.
            let _ = lazy_detach(&self.mountpoint);
            return;
        }
        let deadline = Instant::now() + JOIN_TIMEOUT;
        while !session.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(5));
        }
        if session.is_finished() {
            // The loop's own error (if any) changes nothing for the caller: the image is taken.
            let _ = session.join();
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.unmounter.is_some() {
            let clean = self.umount();
            lock(&self.state).frozen = true;
            self.finish(clean);
        }
    }
}
