//! [`Image`]: the contents of a forgetfs filesystem while it is not mounted.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};
use std::time::SystemTime;

use crate::data::Data;

/// Inode number of the root directory, in an image as in a mount.
pub(crate) const ROOT: u64 = 1;

/// Metadata of one inode.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Meta {
    pub(crate) perm: u16,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) atime: SystemTime,
    pub(crate) mtime: SystemTime,
    pub(crate) ctime: SystemTime,
}

impl Meta {
    pub(crate) fn new(perm: u16, uid: u32, gid: u32) -> Meta {
        let now = SystemTime::now();
        Meta {
            perm,
            uid,
            gid,
            atime: now,
            mtime: now,
            ctime: now,
        }
    }
}

/// One inode of an image.
#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// A regular file and its bytes.
    File(Data, Meta),
    /// A directory: name → inode number.
    Dir(BTreeMap<OsString, u64>, Meta),
}

/// A whole filesystem at rest: what [`Mounted::mount`](crate::Mounted::mount) starts from and
/// what [`Mounted::cut_power`](crate::Mounted::cut_power) and
/// [`Mounted::unmount`](crate::Mounted::unmount) leave.
///
/// Inodes keep their identity: two names of one file (hard links) stay one file. Cloning is
/// cheap (file contents are shared copy-on-write), so one image can be mounted many times, for
/// instance to replay several crash points from the same starting state.
#[derive(Clone)]
pub struct Image {
    /// Inode number → node; [`ROOT`] is always a directory. Numbers are dense from 1.
    pub(crate) nodes: BTreeMap<u64, Node>,
}

impl Default for Image {
    fn default() -> Image {
        Image::empty()
    }
}

impl Image {
    /// A filesystem holding only an empty root directory.
    pub fn empty() -> Image {
        let mut nodes = BTreeMap::new();
        nodes.insert(ROOT, Node::Dir(BTreeMap::new(), Meta::new(0o755, 0, 0)));
        Image { nodes }
    }

    fn resolve(&self, path: &Path) -> Option<&Node> {
        let mut node = self.nodes.get(&ROOT)?;
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => match node {
                    Node::Dir(entries, _) => node = self.nodes.get(entries.get(name)?)?,
                    Node::File(..) => return None,
                },
                Component::ParentDir | Component::Prefix(_) => return None,
            }
        }
        Some(node)
    }

    /// The bytes of the regular file at `path` (relative to the root of the filesystem; a
    /// leading `/` is ignored), or `None` when there is no such file. `..` is not supported.
    pub fn file(&self, path: impl AsRef<Path>) -> Option<Vec<u8>> {
        match self.resolve(path.as_ref())? {
            Node::File(data, _) => Some(data.to_vec()),
            Node::Dir(..) => None,
        }
    }

    /// Whether `path` names a file or directory.
    pub fn exists(&self, path: impl AsRef<Path>) -> bool {
        self.resolve(path.as_ref()).is_some()
    }

    /// Whether `path` names a directory.
    pub fn is_dir(&self, path: impl AsRef<Path>) -> bool {
        matches!(self.resolve(path.as_ref()), Some(Node::Dir(..)))
    }

    /// Every name in the filesystem, files and directories, depth first in name order, relative
    /// to the root (which is not listed). A file with two names is listed under both.
    pub fn paths(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        self.walk(ROOT, &PathBuf::new(), &mut |path, _| {
            out.push(path.to_path_buf())
        });
        out
    }

    /// Total bytes of all distinct files.
    pub fn file_bytes(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| match n {
                Node::File(data, _) => data.len(),
                Node::Dir(..) => 0,
            })
            .sum()
    }

    fn walk(&self, dir: u64, prefix: &Path, visit: &mut dyn FnMut(&Path, &Node)) {
        let Some(Node::Dir(entries, _)) = self.nodes.get(&dir) else {
            return;
        };
        for (name, &ino) in entries {
            let Some(node) = self.nodes.get(&ino) else {
                continue;
            };
            let path = prefix.join(name);
            visit(&path, node);
            if matches!(node, Node::Dir(..)) {
                self.walk(ino, &path, visit);
            }
        }
    }
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut list = f.debug_map();
        self.walk(ROOT, &PathBuf::new(), &mut |path, node| match node {
            Node::File(data, _) => {
                list.entry(&path.display(), &format_args!("{} bytes", data.len()));
            }
            Node::Dir(..) => {
                list.entry(&path.display(), &"dir");
            }
        });
        list.finish()
    }
}
