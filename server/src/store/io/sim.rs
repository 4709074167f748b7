//! A power-loss model, for tests: an in-memory file tree that keeps what
//! was written apart from what was synced, and on a power cut keeps only
//! the synced state (or, in [`CutMode::TornPrefix`], the synced state plus
//! a random prefix of the unsynced operations, the last write possibly
//! torn, which is what a disk with a volatile cache may leave behind).
//!
//! A cut can be scheduled at the n-th mutating operation, so it lands
//! anywhere: inside a group commit, a segment roll, the rename of the
//! spare segment, recovery's torn-tail cut. From the cut on every
//! operation fails with EIO (the machine is off) and handles opened before
//! it stay dead; [`SimStorage::power_on`] lets a new store open the
//! durable image.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Storage, StorageFile};

const EIO: i32 = 5;

/// What survives a power cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// Exactly what was synced: the strict model.
    SyncedOnly,
    /// What was synced, plus a random prefix of each file's and each
    /// directory's unsynced operations; the last kept write may be cut at
    /// any byte.
    TornPrefix,
}

/// One unsynced change to a file.
#[derive(Clone, Debug)]
enum FileOp {
    Write { offset: u64, bytes: Vec<u8> },
    Zeros { offset: u64, len: u64 },
    SetLen(u64),
}

#[derive(Debug, Default)]
struct SimFile {
    /// What reads see.
    data: Vec<u8>,
    /// What a power cut keeps.
    durable: Vec<u8>,
    /// Changes since the last sync, in order.
    pending: Vec<FileOp>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Node {
    File(u64),
    Dir,
}

#[derive(Clone, Debug)]
enum DirOp {
    Insert(String, Node),
    Remove(String),
}

#[derive(Debug, Default)]
struct SimDir {
    entries: BTreeMap<String, Node>,
    durable: BTreeMap<String, Node>,
    pending: Vec<DirOp>,
}

/// Counters of a [`SimStorage`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Mutating operations so far (the clock that schedules cuts).
    pub ops: u64,
    /// File syncs.
    pub file_syncs: u64,
    /// Directory syncs.
    pub dir_syncs: u64,
    /// Power cuts.
    pub cuts: u64,
    /// Unsynced file operations the cuts threw away.
    pub dropped_file_ops: u64,
    /// Unsynced directory operations the cuts threw away.
    pub dropped_dir_ops: u64,
}

#[derive(Debug)]
struct State {
    root: PathBuf,
    /// Bumped by each cut: handles of an older generation are dead.
    generation: u64,
    /// Between a cut and `power_on`.
    off: bool,
    cut_at: Option<u64>,
    mode: CutMode,
    rng: u64,
    next_ino: u64,
    files: HashMap<u64, SimFile>,
    /// Directories by path relative to the root ("" is the root).
    dirs: HashMap<PathBuf, SimDir>,
    stats: SimStats,
}

/// The power-loss model. Cheap to clone; clones share one file tree.
#[derive(Debug, Clone)]
pub struct SimStorage {
    state: Arc<Mutex<State>>,
}

impl SimStorage {
    /// An empty tree whose root is `root` (which always exists and is
    /// durable); every path the engine uses must lie below it.
    pub fn new(root: impl Into<PathBuf>, seed: u64) -> Self {
        let mut dirs = HashMap::new();
        dirs.insert(PathBuf::new(), SimDir::default());
        SimStorage {
            state: Arc::new(Mutex::new(State {
                root: root.into(),
                generation: 0,
                off: false,
                cut_at: None,
                mode: CutMode::SyncedOnly,
                rng: seed | 1,
                next_ino: 1,
                files: HashMap::new(),
                dirs,
                stats: SimStats::default(),
            })),
        }
    }

    /// Schedules a power cut at the `n`-th mutating operation from now
    /// (that operation does not happen), keeping what `mode` says.
    pub fn cut_after(&self, n: u64, mode: CutMode) {
        let mut s = self.lock();
        s.cut_at = Some(s.stats.ops + n.max(1));
        s.mode = mode;
    }

    /// Cuts the power now, unless it is already off.
    pub fn cut_now(&self, mode: CutMode) {
        let mut s = self.lock();
        if !s.off {
            s.mode = mode;
            s.cut();
        }
    }

    /// Whether the power is off (a scheduled cut happened).
    pub fn is_off(&self) -> bool {
        self.lock().off
    }

    /// Turns the power back on: the durable image is what a new store sees.
    pub fn power_on(&self) {
        let mut s = self.lock();
        s.off = false;
        s.cut_at = None;
    }

    /// The counters so far.
    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a mutating operation: counts it, and cuts the power instead
    /// when its turn has come.
    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let mut s = self.lock();
        if s.off {
            return Err(dead());
        }
        s.stats.ops += 1;
        if s.cut_at.is_some_and(|at| s.stats.ops >= at) {
            s.cut();
            return Err(dead());
        }
        f(&mut s)
    }

    fn look<T>(&self, f: impl FnOnce(&State) -> io::Result<T>) -> io::Result<T> {
        let s = self.lock();
        if s.off {
            return Err(dead());
        }
        f(&s)
    }
}

fn dead() -> io::Error {
    io::Error::from_raw_os_error(EIO)
}

fn not_found(p: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", p.display()),
    )
}

impl State {
    /// `path` relative to the root, split into parent directory and name.
    fn split(&self, path: &Path) -> io::Result<(PathBuf, String)> {
        let rel = self.rel(path)?;
        let name = rel
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?
            .to_string_lossy()
            .into_owned();
        let parent = rel.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok((parent, name))
    }

    fn rel(&self, path: &Path) -> io::Result<PathBuf> {
        let rel = path.strip_prefix(&self.root).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is outside the simulated tree", path.display()),
            )
        })?;
        Ok(rel
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect())
    }

    fn dir_mut(&mut self, rel: &Path) -> io::Result<&mut SimDir> {
        self.dirs.get_mut(rel).ok_or_else(|| not_found(rel))
    }

    fn lookup(&self, path: &Path) -> io::Result<u64> {
        let (parent, name) = self.split(path)?;
        match self.dirs.get(&parent).and_then(|d| d.entries.get(&name)) {
            Some(Node::File(ino)) => Ok(*ino),
            _ => Err(not_found(path)),
        }
    }

    fn insert(&mut self, parent: &Path, name: String, node: Node) -> io::Result<Option<Node>> {
        let d = self.dir_mut(parent)?;
        d.pending.push(DirOp::Insert(name.clone(), node));
        Ok(d.entries.insert(name, node))
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Throws away what a power cut loses and turns the power off.
    fn cut(&mut self) {
        self.off = true;
        self.cut_at = None;
        self.generation += 1;
        self.stats.cuts += 1;
        let torn = self.mode == CutMode::TornPrefix;
        // Directories first: which names survive.
        let mut dir_paths: Vec<PathBuf> = self.dirs.keys().cloned().collect();
        dir_paths.sort();
        for p in &dir_paths {
            let keep = if torn {
                let n = self.dirs[p].pending.len() as u64;
                (self.next_random() % (n + 1)) as usize
            } else {
                0
            };
            let d = self.dirs.get_mut(p).expect("listed");
            let dropped = d.pending.len() - keep;
            for op in d.pending.drain(..).take(keep) {
                match op {
                    DirOp::Insert(name, node) => {
                        d.durable.insert(name, node);
                    }
                    DirOp::Remove(name) => {
                        d.durable.remove(&name);
                    }
                }
            }
            d.entries = d.durable.clone();
            self.stats.dropped_dir_ops += dropped as u64;
        }
        // Keep what is reachable from the root through durable entries.
        let mut dirs = HashMap::new();
        let mut files = HashMap::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(p) = stack.pop() {
            let Some(d) = self.dirs.remove(&p) else {
                continue;
            };
            for (name, node) in &d.entries {
                match node {
                    Node::Dir => stack.push(p.join(name)),
                    Node::File(ino) => {
                        if let Some(f) = self.files.remove(ino) {
                            files.insert(*ino, f);
                        }
                    }
                }
            }
            dirs.insert(p, d);
        }
        for f in files.values_mut() {
            let keep = if torn {
                let n = f.pending.len() as u64;
                (self.rng_for_file() % (n + 1)) as usize
            } else {
                0
            };
            let dropped = f.pending.len() - keep;
            let ops: Vec<FileOp> = f.pending.drain(..).collect();
            for (i, op) in ops.into_iter().take(keep).enumerate() {
                let last = i + 1 == keep;
                let op = match op {
                    FileOp::Write { offset, mut bytes } if last && !bytes.is_empty() => {
                        let cut = (self.rng_for_file() % (bytes.len() as u64 + 1)) as usize;
                        bytes.truncate(cut);
                        FileOp::Write { offset, bytes }
                    }
                    other => other,
                };
                apply(&mut f.durable, &op);
            }
            f.data = f.durable.clone();
            self.stats.dropped_file_ops += dropped as u64;
        }
        if !dirs.contains_key(Path::new("")) {
            dirs.insert(PathBuf::new(), SimDir::default());
        }
        self.dirs = dirs;
        self.files = files;
    }

    fn rng_for_file(&mut self) -> u64 {
        self.next_random()
    }
}

fn apply(data: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { offset, bytes } => {
            let end = *offset as usize + bytes.len();
            if data.len() < end {
                data.resize(end, 0);
            }
            data[*offset as usize..end].copy_from_slice(bytes);
        }
        FileOp::Zeros { offset, len } => {
            let end = (*offset + *len) as usize;
            if data.len() < end {
                data.resize(end, 0);
            }
            data[*offset as usize..end].fill(0);
        }
        FileOp::SetLen(len) => data.resize(*len as usize, 0),
    }
}

impl Storage for SimStorage {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let (ino, generation) = self.mutate(|s| {
            let (parent, name) = s.split(path)?;
            if let Some(Node::File(ino)) = s.dirs.get(&parent).and_then(|d| d.entries.get(&name)) {
                // O_TRUNC on an existing file.
                let ino = *ino;
                let f = s.files.get_mut(&ino).ok_or_else(|| not_found(path))?;
                f.data.clear();
                f.pending.push(FileOp::SetLen(0));
                return Ok((ino, s.generation));
            }
            let ino = s.next_ino;
            s.next_ino += 1;
            s.insert(&parent, name, Node::File(ino))?;
            s.files.insert(ino, SimFile::default());
            Ok((ino, s.generation))
        })?;
        Ok(Arc::new(SimHandle {
            sim: self.clone(),
            ino,
            generation,
            writable: true,
        }))
    }

    fn open(&self, path: &Path, writable: bool) -> io::Result<Arc<dyn StorageFile>> {
        let (ino, generation) = self.look(|s| Ok((s.lookup(path)?, s.generation)))?;
        Ok(Arc::new(SimHandle {
            sim: self.clone(),
            ino,
            generation,
            writable,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.mutate(|s| {
            let ino = s.lookup(from)?;
            let (fp, fname) = s.split(from)?;
            let (tp, tname) = s.split(to)?;
            s.dir_mut(&tp)?;
            let d = s.dir_mut(&fp)?;
            d.entries.remove(&fname);
            d.pending.push(DirOp::Remove(fname));
            // A replaced inode stays until a cut: a durable name may still
            // refer to it.
            s.insert(&tp, tname, Node::File(ino))?;
            Ok(())
        })
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.mutate(|s| {
            s.lookup(path)?;
            let (parent, name) = s.split(path)?;
            let d = s.dir_mut(&parent)?;
            d.entries.remove(&name);
            d.pending.push(DirOp::Remove(name));
            // The inode stays until a cut: a durable name may still refer to it.
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.mutate(|s| {
            let rel = s.rel(dir)?;
            let d = s.dir_mut(&rel)?;
            d.durable = d.entries.clone();
            d.pending.clear();
            s.stats.dir_syncs += 1;
            Ok(())
        })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.look(|s| {
            let rel = s.rel(dir)?;
            let d = s.dirs.get(&rel).ok_or_else(|| not_found(dir))?;
            Ok(d.entries.keys().cloned().collect())
        })
    }

    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.mutate(|s| {
            let rel = s.rel(dir)?;
            let mut at = PathBuf::new();
            for c in rel.components() {
                let name = c.as_os_str().to_string_lossy().into_owned();
                let next = at.join(&name);
                if !s.dirs.contains_key(&next) {
                    s.insert(&at, name, Node::Dir)?;
                    s.dirs.insert(next.clone(), SimDir::default());
                }
                at = next;
            }
            Ok(())
        })
    }

    fn dir_exists(&self, dir: &Path) -> bool {
        self.look(|s| Ok(s.rel(dir).is_ok_and(|r| s.dirs.contains_key(&r))))
            .unwrap_or(false)
    }
}

/// An open file of the model.
#[derive(Debug)]
struct SimHandle {
    sim: SimStorage,
    ino: u64,
    generation: u64,
    writable: bool,
}

impl SimHandle {
    fn with_file<T>(
        &self,
        s: &mut State,
        f: impl FnOnce(&mut SimFile) -> io::Result<T>,
    ) -> io::Result<T> {
        if s.generation != self.generation {
            return Err(dead());
        }
        let file = s.files.get_mut(&self.ino).ok_or_else(dead)?;
        f(file)
    }

    fn change(&self, op: FileOp) -> io::Result<()> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(9)); // EBADF
        }
        self.sim.mutate(|s| {
            self.with_file(s, |f| {
                apply(&mut f.data, &op);
                f.pending.push(op);
                Ok(())
            })
        })
    }

    fn sync(&self) -> io::Result<()> {
        self.sim.mutate(|s| {
            self.with_file(s, |f| {
                for op in f.pending.drain(..) {
                    apply(&mut f.durable, &op);
                }
                Ok(())
            })?;
            s.stats.file_syncs += 1;
            Ok(())
        })
    }
}

impl StorageFile for SimHandle {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut s = self.sim.lock();
        if s.off {
            return Err(dead());
        }
        self.with_file(&mut s, |f| {
            let start = (offset as usize).min(f.data.len());
            let n = buf.len().min(f.data.len() - start);
            buf[..n].copy_from_slice(&f.data[start..start + n]);
            Ok(n)
        })
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.change(FileOp::Write {
            offset,
            bytes: buf.to_vec(),
        })
    }

    fn write_zeros(&self, offset: u64, len: u64) -> io::Result<()> {
        self.change(FileOp::Zeros { offset, len })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.sync()
    }

    fn sync_all(&self) -> io::Result<()> {
        self.sync()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.change(FileOp::SetLen(len))
    }

    fn size(&self) -> io::Result<u64> {
        let mut s = self.sim.lock();
        if s.off {
            return Err(dead());
        }
        self.with_file(&mut s, |f| Ok(f.data.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sim() -> (SimStorage, PathBuf) {
        let root = PathBuf::from("/sim");
        (SimStorage::new(&root, 7), root)
    }

    fn read_all(f: &dyn StorageFile) -> Vec<u8> {
        let mut b = vec![0u8; f.size().expect("size") as usize];
        let n = f.read_at(&mut b, 0).expect("read");
        b.truncate(n);
        b
    }

    #[test]
    fn unsynced_writes_and_names_are_lost() {
        let (s, root) = sim();
        let a = root.join("a");
        let f = s.create(&a).expect("create");
        f.write_at(b"hello", 0).expect("write");
        f.sync_data().expect("sync");
        s.sync_dir(&root).expect("dir sync");
        f.write_at(b" world", 5).expect("write");
        let b = s.create(&root.join("b")).expect("create b");
        b.write_at(b"x", 0).expect("write");
        b.sync_data().expect("sync b");
        s.cut_now(CutMode::SyncedOnly);
        assert!(f.read_at(&mut [0u8; 1], 0).is_err(), "dead after the cut");
        s.power_on();
        assert!(f.size().is_err(), "old handles stay dead");
        let mut names = s.list_dir(&root).expect("list");
        names.sort();
        assert_eq!(names, vec!["a".to_string()], "b's name was never synced");
        let f = s.open(&a, false).expect("open");
        assert_eq!(read_all(&*f), b"hello");
    }

    #[test]
    fn rename_is_durable_only_after_the_directory_sync() {
        for sync in [false, true] {
            let (s, root) = sim();
            let t = root.join("t.tmp");
            let f = s.create(&t).expect("create");
            f.write_at(b"data", 0).expect("write");
            f.sync_all().expect("sync");
            s.sync_dir(&root).expect("dir sync");
            s.rename(&t, &root.join("t")).expect("rename");
            if sync {
                s.sync_dir(&root).expect("dir sync");
            }
            s.cut_now(CutMode::SyncedOnly);
            s.power_on();
            let names = s.list_dir(&root).expect("list");
            let want = if sync { "t" } else { "t.tmp" };
            assert_eq!(names, vec![want.to_string()], "sync {sync}");
            let f = s.open(&root.join(want), false).expect("open");
            assert_eq!(read_all(&*f), b"data");
        }
    }

    #[test]
    fn a_new_directory_needs_its_parent_synced() {
        let (s, root) = sim();
        let d = root.join("log");
        s.create_dir_all(&d).expect("mkdir");
        let f = s.create(&d.join("x")).expect("create");
        f.sync_data().expect("sync");
        s.sync_dir(&d).expect("sync log");
        s.cut_now(CutMode::SyncedOnly);
        s.power_on();
        assert!(!s.dir_exists(&d), "the parent was never synced");
        s.create_dir_all(&d).expect("mkdir");
        s.sync_dir(&root).expect("sync root");
        let f = s.create(&d.join("x")).expect("create");
        f.sync_data().expect("sync");
        s.sync_dir(&d).expect("sync log");
        s.cut_now(CutMode::SyncedOnly);
        s.power_on();
        assert_eq!(s.list_dir(&d).expect("list"), vec!["x".to_string()]);
    }

    #[test]
    fn a_scheduled_cut_stops_the_operation_it_lands_on() {
        let (s, root) = sim();
        let f = s.create(&root.join("a")).expect("create");
        s.sync_dir(&root).expect("dir sync");
        s.cut_after(2, CutMode::SyncedOnly);
        f.write_at(b"1", 0).expect("first write");
        assert!(f.sync_data().is_err(), "the cut lands on the sync");
        assert!(s.is_off());
        s.power_on();
        let f = s.open(&root.join("a"), false).expect("open");
        assert_eq!(f.size().expect("size"), 0);
    }

    #[test]
    fn torn_prefix_keeps_a_prefix_of_unsynced_writes() {
        for seed in 0..50 {
            let root = PathBuf::from("/sim");
            let s = SimStorage::new(&root, seed);
            let f = s.create(&root.join("a")).expect("create");
            s.sync_dir(&root).expect("dir sync");
            f.write_at(b"aaaa", 0).expect("w");
            f.sync_data().expect("sync");
            f.write_at(b"bbbb", 4).expect("w");
            f.write_at(b"cccc", 8).expect("w");
            s.cut_now(CutMode::TornPrefix);
            s.power_on();
            let f = s.open(&root.join("a"), false).expect("open");
            let got = read_all(&*f);
            let full = b"aaaabbbbcccc";
            assert!(
                got.len() >= 4 && full.starts_with(&got),
                "seed {seed}: {got:?}"
            );
        }
    }
}
