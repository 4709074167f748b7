//! forgetfs: an in-memory FUSE filesystem that forgets everything not synced when the power is
//! cut. Power-loss tests run a program (a database, the Strata server) on a forgetfs mount, cut
//! the power at some instant, mount what survived and check what the program recovers.
//!
//! ```no_run
//! use strata_forgetfs::{Image, Mounted};
//! # fn main() -> std::io::Result<()> {
//! let dir = tempfile::tempdir()?;
//! let mnt = Mounted::mount(dir.path(), Image::empty())?;
//! std::fs::write(mnt.mountpoint().join("log"), b"not synced")?;
//! let stats = mnt.stats();
//! let image = mnt.cut_power();
//! assert!(!image.exists("log")); // the root directory was never synced
//! println!("{}", stats.snapshot()); // ... power cut dropped 10 bytes of unsynced data ...
//! let again = Mounted::mount(dir.path(), image)?; // mount what survived
//! # drop(again);
//! # Ok(())
//! # }
//! ```
//!
//! # The model
//!
//! Every inode has two states: *current*, what reads, lookups and listings see, and
//! *durable*, what survives a power cut.
//!
//! - A regular file's durable state is its bytes and length as of its last `fsync` or
//!   `fdatasync` (both copy all data and the length; metadata such as the mode goes along). A
//!   file never synced is durably empty (length 0). A write to a file opened `O_SYNC` or
//!   `O_DSYNC` is followed by an `fsync` from the kernel, so it is durable (as data; its name
//!   still needs the directory synced).
//! - A directory's durable state is its entries (name → inode) as of its last `fsync` on the
//!   directory (FUSE `fsyncdir`). Creating, renaming (also over an existing name), linking,
//!   unlinking, `mkdir` and `rmdir` change only current entries, the root directory's too.
//!   A new directory becomes durable in its parent when the parent is synced; its own entries
//!   when it is synced itself.
//! - [`Mounted::cut_power`] returns the durable [`Image`]: from the root's durable entries,
//!   recursively, every reachable inode with its durable contents. An inode reachable under two
//!   durable names (hard links, or a file renamed between directories of which both were synced
//!   at different times) stays one inode. A directory reachable under two durable names keeps
//!   only the first met (breadth first, in name order), since a directory has one parent.
//! - [`Mounted::unmount`] returns the current image, as if everything had been synced.
//! - [`Mounted::mount`] starts from an image with current = durable = the image.
//!
//! Every `write` reaches the filesystem synchronously (FUSE writeback caching is off), so a
//! program killed with `SIGKILL` leaves all bytes it wrote in the current state; only a power
//! cut loses them. `close` (FUSE `flush`/`release`) makes nothing durable. `flock` and POSIX
//! locks are left to the kernel, which handles them locally for the mount.
//!
//! Supported: create/open/read/write at any offset (writing past the end fills with zeros),
//! truncate and extend (`ftruncate`, `O_TRUNC`), `fallocate` mode 0 (extend with zeros; with
//! `FALLOC_FL_KEEP_SIZE` alone a no-op; other modes fail with `EOPNOTSUPP`), `rename`
//! (`RENAME_NOREPLACE` too; `RENAME_EXCHANGE`/`RENAME_WHITEOUT` fail with `EINVAL`), hard links,
//! `unlink`, `mkdir`, `rmdir`, `readdir`, `stat`/`chmod`/`chown`/`utimes`, `statfs` (1 TiB,
//! nearly all free), `access` (always allowed). Not supported: symlinks, device nodes, fifos,
//! sockets, extended attributes; files past 64 GiB (`EFBIG`).
//!
//! # Limits: what a real disk does that the model does not
//!
//! The model is strict in one direction: it keeps exactly what was synced and nothing more.
//! That is the worst a POSIX filesystem may do, so a program that survives forgetfs relies
//! only on what `fsync` promises. But it is not every behaviour a real disk can show:
//!
//! - A real disk usually keeps *more* than was synced: data the kernel wrote back on its own,
//!   a prefix of an unsynced append, a rename committed with someone else's journal
//!   transaction. ext4 and XFS persist a rename atomically in both directories, and commit an
//!   `fsync` together with every earlier metadata change; forgetfs syncs each directory on its
//!   own, so after a cut a file renamed across directories may show up under both names, or
//!   neither. A program may therefore see, after a real crash, states that forgetfs never
//!   produces (for instance a partly written, never synced block, a torn write, or a file
//!   longer than its last sync); forgetfs drops every unsynced byte of a file at once.
//! - A real disk may *reorder*: it may persist a later write and lose an earlier one that was
//!   not synced either; forgetfs loses both. It does not model sector tearing, bit rot, a disk
//!   that lies about `fsync`, or an `fsync` that fails (`EIO`) and loses the dirty pages.
//! - `sync(2)`, `syncfs(2)` and `sync_file_range(2)` never reach a FUSE filesystem: the kernel
//!   forwards only `fsync`/`fdatasync` (and those it issues itself for `O_SYNC`/`O_DSYNC`), so
//!   here they make nothing durable. On a real disk `syncfs` makes everything durable;
//!   `sync_file_range` writes data back but promises nothing about metadata or the disk's
//!   cache, so forgetfs is right to ignore it. sled 0.34 on Linux makes its log durable in
//!   `flush()` with `sync_file_range` only: on forgetfs its data survives a power cut only
//!   through the `fsync` of its periodic flusher (`flush_every_ms`) or of closing the
//!   database; sled never syncs a directory, so its files' names need someone else's sync.
//! - Shared writable `mmap`: pages written through a mapping reach forgetfs only when the
//!   kernel writes them back (`msync`, `munmap`, memory pressure), not at each store.
//! - Stricter than ext4 in two common cases: ext4's `fsync` of a newly created file commits
//!   the journal transaction holding its directory entry, so the name usually survives without
//!   a directory `fsync` (here it does not); and ext4 (`auto_da_alloc`) starts writing back a
//!   file that replaces another by `rename`, so the unsynced new contents often survive (here
//!   the replaced name keeps its old file until the directory is synced, and the new file is
//!   durably empty unless synced).
//!
//! # Mounting
//!
//! The crate uses fuser's pure-Rust mount path: as root it calls `mount(2)` on `/dev/fuse`
//! itself, so neither libfuse nor a `fusermount` binary is needed (see [`preflight`]). Each
//! mount is a fresh kernel superblock, so nothing the kernel cached survives into the next
//! mount of an image; attribute and entry cache lifetimes are zero within a mount.
//!
//! The filesystem is served by a thread of the process that mounted it. Ending a mount calls
//! `umount(2)`, and if files are still open on it, detaches it lazily (`MNT_DETACH`). fuser's
//! `AutoUnmount` is not used because it needs `fusermount`: a process that dies without ending
//! its mounts (killed by a test timeout, say) leaves them dead ("Transport endpoint is not
//! connected") until someone runs `umount -l` on them.

mod data;
mod fs;
mod image;
mod mount;
mod state;
mod stats;

pub use image::Image;
pub use mount::{preflight, Mounted};
pub use stats::{Stats, StatsSnapshot};
