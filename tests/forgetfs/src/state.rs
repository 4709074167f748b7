//! The in-memory filesystem: every inode's current and durable state, and the operations the
//! FUSE layer maps onto it. Nothing here knows about FUSE requests or the kernel, so the model's
//! rules are unit-tested without a mount.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ffi::{OsStr, OsString};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo, TimeOrNow};

use crate::data::{Data, MAX_LEN};
use crate::image::{Image, Meta, Node, ROOT};

/// Longest name a directory entry may have.
const NAME_MAX: usize = 255;

type Entries = BTreeMap<OsString, u64>;

enum Body {
    /// A regular file: `cur` is what reads see, `dur` what its last `fsync` made durable.
    File { cur: Data, dur: Data },
    /// A directory: `cur` entries are what lookups see, `dur` what its last `fsyncdir` made
    /// durable. `parent` is the current parent (for `..`).
    Dir {
        cur: Entries,
        dur: Entries,
        parent: u64,
    },
}

struct Inode {
    body: Body,
    meta: Meta,
    dur_meta: Meta,
    /// Current directory entries naming this inode.
    cur_links: u32,
    /// Durable directory entries (of directories still held) naming this inode.
    dur_links: u32,
    /// The kernel's lookup count: the inode must stay while the kernel may still use it.
    nlookup: u64,
}

/// Which of the two states of every inode to take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum View {
    /// What reads see now.
    Current,
    /// What survives a power cut.
    Durable,
}

/// What a power cut threw away.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CutReport {
    /// Bytes of current file contents (of files reachable by current names) that the durable
    /// image does not hold.
    pub(crate) bytes_dropped: u64,
    /// Current directory entries that the durable image does not hold.
    pub(crate) names_dropped: u64,
    /// Durable directory entries that were no longer current (removed or renamed away) and
    /// come back.
    pub(crate) names_resurrected: u64,
}

/// A directory listing as readdir serves it: (inode, kind, name), `.` and `..` first.
type Listing = Vec<(u64, FileType, OsString)>;

/// Directed edge of the name graph: (directory, name, target).
type Edge = (u64, OsString, u64);

/// The whole filesystem while mounted.
pub(crate) struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    /// Per open directory handle, the listing taken when reading started at offset 0, so that
    /// entries added or removed while a reader walks the directory shift nothing.
    dir_handles: HashMap<u64, Listing>,
    next_fh: u64,
    /// Set when the power is cut (or the filesystem unmounted): every later request fails
    /// with `EIO`, as a dead disk would.
    pub(crate) frozen: bool,
}

fn now() -> SystemTime {
    SystemTime::now()
}

impl State {
    /// A filesystem whose current and durable states are both `image`.
    pub(crate) fn from_image(image: &Image) -> State {
        let mut links: HashMap<u64, u32> = HashMap::new();
        let mut parents: HashMap<u64, u64> = HashMap::new();
        for (&ino, node) in &image.nodes {
            if let Node::Dir(entries, _) = node {
                for &child in entries.values() {
                    *links.entry(child).or_default() += 1;
                    if matches!(image.nodes.get(&child), Some(Node::Dir(..))) {
                        parents.insert(child, ino);
                    }
                }
            }
        }
        let mut inodes = HashMap::new();
        for (&ino, node) in &image.nodes {
            let (body, meta) = match node {
                Node::File(data, meta) => (
                    Body::File {
                        cur: data.clone(),
                        dur: data.clone(),
                    },
                    *meta,
                ),
                Node::Dir(entries, meta) => (
                    Body::Dir {
                        cur: entries.clone(),
                        dur: entries.clone(),
                        parent: parents.get(&ino).copied().unwrap_or(ROOT),
                    },
                    *meta,
                ),
            };
            let n = links.get(&ino).copied().unwrap_or(0);
            inodes.insert(
                ino,
                Inode {
                    body,
                    meta,
                    dur_meta: meta,
                    cur_links: n,
                    dur_links: n,
                    nlookup: 0,
                },
            );
        }
        let next_ino = image.nodes.keys().max().copied().unwrap_or(ROOT) + 1;
        State {
            inodes,
            next_ino,
            dir_handles: HashMap::new(),
            next_fh: 1,
            frozen: false,
        }
    }

    fn node(&self, ino: u64) -> Result<&Inode, Errno> {
        self.inodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: u64) -> Result<&mut Inode, Errno> {
        self.inodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn entries(&self, dir: u64) -> Result<&Entries, Errno> {
        match &self.node(dir)?.body {
            Body::Dir { cur, .. } => Ok(cur),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: u64) -> Result<&mut Entries, Errno> {
        match &mut self.node_mut(dir)?.body {
            Body::Dir { cur, .. } => Ok(cur),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn child(&self, dir: u64, name: &OsStr) -> Result<u64, Errno> {
        self.entries(dir)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    fn is_dir(&self, ino: u64) -> Result<bool, Errno> {
        Ok(matches!(self.node(ino)?.body, Body::Dir { .. }))
    }

    fn touch_dir(&mut self, dir: u64) {
        if let Some(n) = self.inodes.get_mut(&dir) {
            let t = now();
            n.meta.mtime = t;
            n.meta.ctime = t;
        }
    }

    /// Number of inodes held (for statfs).
    pub(crate) fn inode_count(&self) -> u64 {
        self.inodes.len() as u64
    }

    /// Attributes of `ino`.
    pub(crate) fn attr(&self, ino: u64) -> Result<FileAttr, Errno> {
        let n = self.node(ino)?;
        let (kind, size, nlink) = match &n.body {
            Body::File { cur, .. } => (FileType::RegularFile, cur.len(), n.cur_links),
            // 1 is the convention for "subdirectory count unknown" (tools then don't rely on it).
            Body::Dir { .. } => (
                FileType::Directory,
                4096,
                u32::from(ino == ROOT || n.cur_links > 0),
            ),
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: n.meta.atime,
            mtime: n.meta.mtime,
            ctime: n.meta.ctime,
            crtime: n.meta.ctime,
            kind,
            perm: n.meta.perm,
            nlink,
            uid: n.meta.uid,
            gid: n.meta.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// Looks `name` up in `parent` and counts the kernel's new reference.
    pub(crate) fn lookup(&mut self, parent: u64, name: &OsStr) -> Result<FileAttr, Errno> {
        let ino = self.child(parent, name)?;
        let attr = self.attr(ino)?;
        self.node_mut(ino)?.nlookup += 1;
        Ok(attr)
    }

    /// The kernel dropped `n` references to `ino`.
    pub(crate) fn forget(&mut self, ino: u64, n: u64) {
        if let Some(node) = self.inodes.get_mut(&ino) {
            node.nlookup = node.nlookup.saturating_sub(n);
        }
        self.maybe_free(ino);
    }

    /// Drops `ino` (and, through its durable entries, what only it kept) once nothing can reach
    /// it any more: no current name, no durable name, no kernel reference.
    fn maybe_free(&mut self, ino: u64) {
        let mut stack = vec![ino];
        while let Some(ino) = stack.pop() {
            if ino == ROOT {
                continue;
            }
            let unreachable = self
                .inodes
                .get(&ino)
                .is_some_and(|n| n.cur_links == 0 && n.dur_links == 0 && n.nlookup == 0);
            if !unreachable {
                continue;
            }
            if let Some(Inode {
                body: Body::Dir { cur, dur, .. },
                ..
            }) = self.inodes.remove(&ino)
            {
                for child in dur.values() {
                    if let Some(c) = self.inodes.get_mut(child) {
                        c.dur_links = c.dur_links.saturating_sub(1);
                    }
                    stack.push(*child);
                }
                for child in cur.values() {
                    if let Some(c) = self.inodes.get_mut(child) {
                        c.cur_links = c.cur_links.saturating_sub(1);
                    }
                    stack.push(*child);
                }
            }
        }
    }

    fn check_new_name(&self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        if name.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if name.is_empty() || name == "." || name == ".." {
            return Err(Errno::EINVAL);
        }
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        Ok(())
    }

    fn insert_new(
        &mut self,
        parent: u64,
        name: &OsStr,
        body: Body,
        meta: Meta,
    ) -> Result<FileAttr, Errno> {
        self.check_new_name(parent, name)?;
        let ino = self.next_ino;
        self.next_ino += 1;
        self.inodes.insert(
            ino,
            Inode {
                body,
                meta,
                dur_meta: meta,
                cur_links: 1,
                dur_links: 0,
                nlookup: 1,
            },
        );
        self.entries_mut(parent)?.insert(name.to_owned(), ino);
        self.touch_dir(parent);
        self.attr(ino)
    }

    /// Creates (or, unless `exclusive`, opens an existing) regular file.
    pub(crate) fn create_file(
        &mut self,
        parent: u64,
        name: &OsStr,
        meta: Meta,
        exclusive: bool,
    ) -> Result<FileAttr, Errno> {
        if let Some(&ino) = self.entries(parent)?.get(name) {
            if exclusive {
                return Err(Errno::EEXIST);
            }
            if self.is_dir(ino)? {
                return Err(Errno::EISDIR);
            }
            return self.lookup(parent, name);
        }
        let body = Body::File {
            cur: Data::default(),
            dur: Data::default(),
        };
        self.insert_new(parent, name, body, meta)
    }

    /// Creates a directory.
    pub(crate) fn mkdir(
        &mut self,
        parent: u64,
        name: &OsStr,
        meta: Meta,
    ) -> Result<FileAttr, Errno> {
        let body = Body::Dir {
            cur: Entries::new(),
            dur: Entries::new(),
            parent,
        };
        self.insert_new(parent, name, body, meta)
    }

    /// Adds the name `newname` in `newparent` for the file `ino`.
    pub(crate) fn link(
        &mut self,
        ino: u64,
        newparent: u64,
        newname: &OsStr,
    ) -> Result<FileAttr, Errno> {
        if self.is_dir(ino)? {
            return Err(Errno::EPERM);
        }
        self.check_new_name(newparent, newname)?;
        self.entries_mut(newparent)?.insert(newname.to_owned(), ino);
        self.touch_dir(newparent);
        let n = self.node_mut(ino)?;
        n.cur_links += 1;
        n.nlookup += 1;
        n.meta.ctime = now();
        self.attr(ino)
    }

    fn remove_entry(&mut self, parent: u64, name: &OsStr, ino: u64) -> Result<(), Errno> {
        self.entries_mut(parent)?.remove(name);
        self.touch_dir(parent);
        if let Some(n) = self.inodes.get_mut(&ino) {
            n.cur_links = n.cur_links.saturating_sub(1);
            n.meta.ctime = now();
        }
        self.maybe_free(ino);
        Ok(())
    }

    /// Removes the name of a file.
    pub(crate) fn unlink(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let ino = self.child(parent, name)?;
        if self.is_dir(ino)? {
            return Err(Errno::EISDIR);
        }
        self.remove_entry(parent, name, ino)
    }

    /// Removes an empty directory.
    pub(crate) fn rmdir(&mut self, parent: u64, name: &OsStr) -> Result<(), Errno> {
        let ino = self.child(parent, name)?;
        match &self.node(ino)?.body {
            Body::File { .. } => return Err(Errno::ENOTDIR),
            Body::Dir { cur, .. } if !cur.is_empty() => return Err(Errno::ENOTEMPTY),
            Body::Dir { .. } => {}
        }
        self.remove_entry(parent, name, ino)
    }

    /// `renameat2`: `flags` may hold `RENAME_NOREPLACE` only.
    pub(crate) fn rename(
        &mut self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: u32,
    ) -> Result<(), Errno> {
        let noreplace = libc::RENAME_NOREPLACE;
        if flags & !noreplace != 0 {
            return Err(Errno::EINVAL);
        }
        let src = self.child(parent, name)?;
        let dst = self.entries(newparent)?.get(newname).copied();
        if newname.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
        if newname.is_empty() || newname == "." || newname == ".." {
            return Err(Errno::EINVAL);
        }
        let src_dir = self.is_dir(src)?;
        if src_dir {
            // Moving a directory under itself (the kernel checks this too).
            let mut up = newparent;
            loop {
                if up == src {
                    return Err(Errno::EINVAL);
                }
                match &self.node(up)?.body {
                    Body::Dir { parent, .. } if up != ROOT => up = *parent,
                    _ => break,
                }
            }
        }
        if let Some(dst) = dst {
            if flags & noreplace != 0 {
                return Err(Errno::EEXIST);
            }
            if dst == src {
                // Two names of one file: POSIX says do nothing.
                return Ok(());
            }
            match (&self.node(dst)?.body, src_dir) {
                (Body::File { .. }, true) => return Err(Errno::ENOTDIR),
                (Body::Dir { .. }, false) => return Err(Errno::EISDIR),
                (Body::Dir { cur, .. }, true) if !cur.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(newparent)?.insert(newname.to_owned(), src);
        self.touch_dir(parent);
        self.touch_dir(newparent);
        if let Some(n) = self.inodes.get_mut(&src) {
            n.meta.ctime = now();
            if let Body::Dir { parent, .. } = &mut n.body {
                *parent = newparent;
            }
        }
        if let Some(dst) = dst {
            if let Some(n) = self.inodes.get_mut(&dst) {
                n.cur_links = n.cur_links.saturating_sub(1);
            }
            self.maybe_free(dst);
        }
        Ok(())
    }

    /// Changes attributes; `size` truncates or extends (with zeros) a file.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn setattr(
        &mut self,
        ino: u64,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        ctime: Option<SystemTime>,
    ) -> Result<FileAttr, Errno> {
        let t = now();
        let n = self.node_mut(ino)?;
        if let Some(size) = size {
            match &mut n.body {
                Body::File { cur, .. } => {
                    if size > MAX_LEN {
                        return Err(Errno::EFBIG);
                    }
                    cur.set_len(size);
                    n.meta.mtime = t;
                }
                Body::Dir { .. } => return Err(Errno::EISDIR),
            }
        }
        if let Some(mode) = mode {
            n.meta.perm = (mode & 0o7777) as u16;
        }
        if let Some(uid) = uid {
            n.meta.uid = uid;
        }
        if let Some(gid) = gid {
            n.meta.gid = gid;
        }
        let resolve = |x: TimeOrNow| match x {
            TimeOrNow::SpecificTime(x) => x,
            TimeOrNow::Now => t,
        };
        if let Some(atime) = atime {
            n.meta.atime = resolve(atime);
        }
        if let Some(mtime) = mtime {
            n.meta.mtime = resolve(mtime);
        }
        n.meta.ctime = ctime.unwrap_or(t);
        self.attr(ino)
    }

    /// Checks that `ino` exists (open, access).
    pub(crate) fn exists(&self, ino: u64) -> Result<(), Errno> {
        self.node(ino).map(|_| ())
    }

    /// Up to `size` bytes of file `ino` from `offset`.
    pub(crate) fn read(&self, ino: u64, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        match &self.node(ino)?.body {
            Body::File { cur, .. } => Ok(cur.read(offset, size.into())),
            Body::Dir { .. } => Err(Errno::EISDIR),
        }
    }

    /// Writes `data` at `offset` of file `ino` (current contents only).
    pub(crate) fn write(&mut self, ino: u64, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let written = u32::try_from(data.len()).map_err(|_| Errno::EINVAL)?;
        let n = self.node_mut(ino)?;
        let Body::File { cur, .. } = &mut n.body else {
            return Err(Errno::EISDIR);
        };
        let end = offset.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        if end > MAX_LEN {
            return Err(Errno::EFBIG);
        }
        cur.write(offset, data);
        let t = now();
        n.meta.mtime = t;
        n.meta.ctime = t;
        Ok(written)
    }

    /// `fallocate`: mode 0 extends with zeros, `FALLOC_FL_KEEP_SIZE` alone is a no-op (the
    /// model has no notion of allocated space); other modes (punching or zeroing holes,
    /// collapsing or inserting ranges) are not supported.
    pub(crate) fn fallocate(
        &mut self,
        ino: u64,
        offset: u64,
        length: u64,
        mode: i32,
    ) -> Result<(), Errno> {
        let n = self.node_mut(ino)?;
        let Body::File { cur, .. } = &mut n.body else {
            return Err(Errno::EISDIR);
        };
        let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
        match mode {
            0 => {
                if end > MAX_LEN {
                    return Err(Errno::EFBIG);
                }
                if end > cur.len() {
                    cur.set_len(end);
                    let t = now();
                    n.meta.mtime = t;
                    n.meta.ctime = t;
                }
                Ok(())
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(Errno::EOPNOTSUPP),
        }
    }

    /// `fsync`/`fdatasync` of a file, or `fsync` of a directory: its current state becomes
    /// durable. Returns whether `ino` is a directory.
    pub(crate) fn sync(&mut self, ino: u64) -> Result<bool, Errno> {
        let n = self.node_mut(ino)?;
        n.dur_meta = n.meta;
        let (old, new): (Entries, Vec<u64>) = match &mut n.body {
            Body::File { cur, dur } => {
                *dur = cur.clone();
                return Ok(false);
            }
            Body::Dir { cur, dur, .. } => {
                let old = std::mem::replace(dur, cur.clone());
                (old, dur.values().copied().collect())
            }
        };
        for child in new {
            if let Some(c) = self.inodes.get_mut(&child) {
                c.dur_links += 1;
            }
        }
        for child in old.values() {
            if let Some(c) = self.inodes.get_mut(child) {
                c.dur_links = c.dur_links.saturating_sub(1);
            }
        }
        for child in old.values() {
            self.maybe_free(*child);
        }
        Ok(true)
    }

    /// Opens directory `ino` for reading; returns the handle.
    pub(crate) fn opendir(&mut self, ino: u64) -> Result<u64, Errno> {
        self.entries(ino)?;
        let fh = self.next_fh;
        self.next_fh += 1;
        self.dir_handles.insert(fh, Listing::new());
        Ok(fh)
    }

    /// Closes a directory handle.
    pub(crate) fn releasedir(&mut self, fh: u64) {
        self.dir_handles.remove(&fh);
    }

    fn listing(&self, ino: u64) -> Result<Listing, Errno> {
        let Body::Dir { cur, parent, .. } = &self.node(ino)?.body else {
            return Err(Errno::ENOTDIR);
        };
        let mut out: Listing = vec![
            (ino, FileType::Directory, ".".into()),
            (*parent, FileType::Directory, "..".into()),
        ];
        for (name, &child) in cur {
            let kind = match self.inodes.get(&child).map(|c| &c.body) {
                Some(Body::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            out.push((child, kind, name.clone()));
        }
        Ok(out)
    }

    /// Feeds the entries of directory `ino` from position `offset` to `add(ino, next_offset,
    /// kind, name)` until it returns `true` (reply buffer full).
    pub(crate) fn readdir(
        &mut self,
        ino: u64,
        fh: u64,
        offset: u64,
        mut add: impl FnMut(u64, u64, FileType, &OsStr) -> bool,
    ) -> Result<(), Errno> {
        let fresh;
        let listing = if offset == 0 || !self.dir_handles.contains_key(&fh) {
            let l = self.listing(ino)?;
            match self.dir_handles.get_mut(&fh) {
                Some(slot) => {
                    *slot = l;
                    &*slot
                }
                None => {
                    fresh = l;
                    &fresh
                }
            }
        } else {
            &self.dir_handles[&fh]
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, (child, kind, name)) in listing.iter().enumerate().skip(skip) {
            if add(*child, i as u64 + 1, *kind, name) {
                break;
            }
        }
        Ok(())
    }

    /// The tree reachable from the root in `view`, renumbered densely, plus the old numbers
    /// of the inodes reached and the name edges kept. A directory reachable under two names
    /// (the durable view can have that: a directory renamed between two directories of which
    /// only one was synced) keeps the first one met, breadth first in name order; files keep
    /// every name (hard links).
    fn build(&self, view: View) -> (Image, HashSet<u64>, HashSet<Edge>) {
        let mut renumber: HashMap<u64, u64> = HashMap::from([(ROOT, ROOT)]);
        let mut queue = VecDeque::from([ROOT]);
        let mut nodes = BTreeMap::new();
        let mut edges = HashSet::new();
        while let Some(old) = queue.pop_front() {
            let Some(inode) = self.inodes.get(&old) else {
                continue;
            };
            let meta = match view {
                View::Current => inode.meta,
                View::Durable => inode.dur_meta,
            };
            let node = match &inode.body {
                Body::File { cur, dur } => Node::File(
                    match view {
                        View::Current => cur.clone(),
                        View::Durable => dur.clone(),
                    },
                    meta,
                ),
                Body::Dir { cur, dur, .. } => {
                    let entries = match view {
                        View::Current => cur,
                        View::Durable => dur,
                    };
                    let mut out = Entries::new();
                    for (name, &child) in entries {
                        let Some(c) = self.inodes.get(&child) else {
                            continue;
                        };
                        let is_dir = matches!(c.body, Body::Dir { .. });
                        let new = match renumber.get(&child) {
                            Some(&n) if !is_dir => n,
                            Some(_) => continue,
                            None => {
                                let n = renumber.len() as u64 + 1;
                                renumber.insert(child, n);
                                queue.push_back(child);
                                n
                            }
                        };
                        out.insert(name.clone(), new);
                        edges.insert((old, name.clone(), child));
                    }
                    Node::Dir(out, meta)
                }
            };
            nodes.insert(renumber[&old], node);
        }
        (Image { nodes }, renumber.into_keys().collect(), edges)
    }

    /// What every inode's state in `view` adds up to.
    pub(crate) fn image(&self, view: View) -> Image {
        self.build(view).0
    }

    /// The durable image, and what it loses against the current state.
    pub(crate) fn cut(&self) -> (Image, CutReport) {
        let (image, durable, durable_edges) = self.build(View::Durable);
        let mut report = CutReport::default();
        let mut seen = HashSet::from([ROOT]);
        let mut queue = VecDeque::from([ROOT]);
        let mut current_edges = HashSet::new();
        while let Some(ino) = queue.pop_front() {
            let Some(inode) = self.inodes.get(&ino) else {
                continue;
            };
            match &inode.body {
                Body::File { cur, dur } => {
                    report.bytes_dropped += if durable.contains(&ino) {
                        cur.bytes_lost_to(dur)
                    } else {
                        cur.len()
                    };
                }
                Body::Dir { cur, .. } => {
                    for (name, &child) in cur {
                        let edge = (ino, name.clone(), child);
                        if !durable_edges.contains(&edge) {
                            report.names_dropped += 1;
                        }
                        current_edges.insert(edge);
                        if seen.insert(child) {
                            queue.push_back(child);
                        }
                    }
                }
            }
        }
        report.names_resurrected = durable_edges.difference(&current_edges).count() as u64;
        (image, report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> Meta {
        Meta::new(0o644, 0, 0)
    }

    fn os(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    fn file(st: &mut State, parent: u64, name: &str, bytes: &[u8]) -> u64 {
        let ino = st
            .create_file(parent, os(name), meta(), true)
            .expect("create")
            .ino
            .0;
        st.write(ino, 0, bytes).expect("write");
        ino
    }

    #[test]
    fn unsynced_file_data_is_lost_synced_kept() {
        let mut st = State::from_image(&Image::empty());
        let a = file(&mut st, ROOT, "a", b"synced");
        st.sync(a).expect("fsync");
        st.write(a, 6, b"+more").expect("write");
        st.sync(ROOT).expect("fsyncdir");
        let (img, report) = st.cut();
        assert_eq!(img.file("a").as_deref(), Some(&b"synced"[..]));
        assert_eq!(report.bytes_dropped, 5);
        assert_eq!(
            st.image(View::Current).file("a").as_deref(),
            Some(&b"synced+more"[..])
        );
    }

    #[test]
    fn names_need_their_directory_synced() {
        let mut st = State::from_image(&Image::empty());
        let d = st.mkdir(ROOT, os("d"), meta()).expect("mkdir").ino.0;
        let f = file(&mut st, d, "f", b"x");
        st.sync(f).expect("fsync");
        st.sync(d).expect("fsyncdir d");
        // d itself is not durable in the root yet: everything under it goes.
        let (img, report) = st.cut();
        assert!(!img.exists("d"));
        assert_eq!(report.names_dropped, 2);
        assert_eq!(report.bytes_dropped, 1);
        st.sync(ROOT).expect("fsyncdir root");
        let (img, report) = st.cut();
        assert_eq!(img.file("d/f").as_deref(), Some(&b"x"[..]));
        assert_eq!(report, CutReport::default());
    }

    #[test]
    fn unlink_and_rename_come_back_unless_synced() {
        let mut st = State::from_image(&Image::empty());
        let a = file(&mut st, ROOT, "a", b"A");
        st.sync(a).expect("fsync");
        st.sync(ROOT).expect("fsyncdir");
        st.rename(ROOT, os("a"), ROOT, os("b"), 0).expect("rename");
        let (img, report) = st.cut();
        assert_eq!(img.paths(), vec![std::path::PathBuf::from("a")]);
        assert_eq!((report.names_dropped, report.names_resurrected), (1, 1));
        st.unlink(ROOT, os("b")).expect("unlink");
        // Kept alive by its durable name although nothing current names it.
        assert_eq!(st.cut().0.file("a").as_deref(), Some(&b"A"[..]));
        st.sync(ROOT).expect("fsyncdir");
        assert!(st.cut().0.paths().is_empty());
        assert!(
            st.inodes.contains_key(&a),
            "the kernel still holds a reference"
        );
        st.forget(a, 1);
        assert!(!st.inodes.contains_key(&a), "inode freed once unreachable");
    }

    #[test]
    fn rename_rules() {
        let mut st = State::from_image(&Image::empty());
        file(&mut st, ROOT, "a", b"A");
        file(&mut st, ROOT, "b", b"B");
        let d = st.mkdir(ROOT, os("d"), meta()).expect("mkdir").ino.0;
        let noreplace = libc::RENAME_NOREPLACE;
        assert_eq!(
            st.rename(ROOT, os("a"), ROOT, os("b"), noreplace),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            st.rename(ROOT, os("a"), ROOT, os("c"), libc::RENAME_EXCHANGE),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            st.rename(ROOT, os("a"), ROOT, os("d"), 0),
            Err(Errno::EISDIR)
        );
        assert_eq!(
            st.rename(ROOT, os("d"), ROOT, os("a"), 0),
            Err(Errno::ENOTDIR)
        );
        assert_eq!(st.rename(ROOT, os("d"), d, os("x"), 0), Err(Errno::EINVAL));
        st.rename(ROOT, os("a"), ROOT, os("c"), noreplace)
            .expect("noreplace to a new name");
        st.rename(ROOT, os("c"), ROOT, os("b"), 0).expect("replace");
        let img = st.image(View::Current);
        assert_eq!(img.file("b").as_deref(), Some(&b"A"[..]));
        assert!(!img.exists("a") && !img.exists("c"));
        file(&mut st, d, "f", b"");
        assert_eq!(st.rmdir(ROOT, os("d")), Err(Errno::ENOTEMPTY));
        assert_eq!(st.unlink(ROOT, os("d")), Err(Errno::EISDIR));
        st.unlink(d, os("f")).expect("unlink");
        st.rmdir(ROOT, os("d")).expect("rmdir");
    }

    #[test]
    fn hard_links_keep_one_identity_and_dir_aliases_keep_one_name() {
        let mut st = State::from_image(&Image::empty());
        let a = file(&mut st, ROOT, "a", b"same");
        st.link(a, ROOT, os("b")).expect("link");
        st.sync(a).expect("fsync");
        st.sync(ROOT).expect("fsyncdir");
        let img = st.cut().0;
        let mut remounted = State::from_image(&img);
        let attr = remounted.lookup(ROOT, os("a")).expect("a");
        assert_eq!(remounted.lookup(ROOT, os("b")).expect("b").ino, attr.ino);
        assert_eq!(attr.nlink, 2);

        // Directory d moves from p to q; q is synced, p is not: both durable names point at d.
        let mut st = State::from_image(&Image::empty());
        let p = st.mkdir(ROOT, os("p"), meta()).expect("p").ino.0;
        let q = st.mkdir(ROOT, os("q"), meta()).expect("q").ino.0;
        st.mkdir(p, os("d"), meta()).expect("d");
        st.sync(p).expect("sync p");
        st.sync(ROOT).expect("sync root");
        st.rename(p, os("d"), q, os("d"), 0).expect("rename");
        st.sync(q).expect("sync q");
        let img = st.cut().0;
        assert!(img.is_dir("p/d"));
        assert!(!img.exists("q/d"), "second name of a directory dropped");
    }

    #[test]
    fn truncate_fallocate_and_pwrite_past_end() {
        let mut st = State::from_image(&Image::empty());
        let a = file(&mut st, ROOT, "a", b"abc");
        st.write(a, 5, b"z").expect("pwrite past end");
        assert_eq!(st.read(a, 0, 100).expect("read"), b"abc\0\0z");
        st.setattr(a, None, None, None, Some(2), None, None, None)
            .expect("truncate");
        st.fallocate(a, 0, 4, 0).expect("fallocate");
        assert_eq!(st.read(a, 0, 100).expect("read"), b"ab\0\0");
        st.fallocate(a, 0, 100, libc::FALLOC_FL_KEEP_SIZE)
            .expect("keep size");
        assert_eq!(st.attr(a).expect("attr").size, 4);
        let punch = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
        assert_eq!(st.fallocate(a, 0, 1, punch), Err(Errno::EOPNOTSUPP));
        assert_eq!(
            st.setattr(a, None, None, None, Some(MAX_LEN + 1), None, None, None),
            Err(Errno::EFBIG)
        );
    }

    #[test]
    fn readdir_snapshot_is_stable_while_entries_go() {
        let mut st = State::from_image(&Image::empty());
        for name in ["a", "b", "c", "d"] {
            file(&mut st, ROOT, name, b"");
        }
        let fh = st.opendir(ROOT).expect("opendir");
        let mut seen = Vec::new();
        st.readdir(ROOT, fh, 0, |_, _, _, name| {
            seen.push(name.to_owned());
            seen.len() == 4
        })
        .expect("readdir");
        st.unlink(ROOT, os("a")).expect("unlink");
        st.unlink(ROOT, os("b")).expect("unlink");
        st.readdir(ROOT, fh, 4, |_, _, _, name| {
            seen.push(name.to_owned());
            false
        })
        .expect("readdir");
        assert_eq!(seen, [".", "..", "a", "b", "c", "d"]);
        st.releasedir(fh);
    }
}
