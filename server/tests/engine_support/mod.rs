//! Helpers shared by the storage-engine integration tests: building
//! requests, draining reads, copying data directories and parsing segment
//! files independently of the engine (so the tests do not trust the code
//! they check).

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use bytes::Bytes;
use strata_server::store::*;

/// Size of a segment header (`docs/FORMAT.md`).
pub const SEGMENT_HEADER: u64 = 32;
/// Size of a record frame header (`len u32 | crc u32`).
pub const FRAME_HEADER: u64 = 8;

/// An event with a random id.
pub fn ev(event_type: &str, data: &[u8]) -> NewEvent {
    NewEvent {
        id: EventId::random(),
        event_type: event_type.into(),
        data: Bytes::copy_from_slice(data),
        metadata: Bytes::new(),
        content_type: None,
    }
}

/// An append request.
pub fn req(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: stream.into(),
        expected,
        events,
    }
}

/// A config with small segments so that tests roll them.
pub fn config(dir: &Path, segment_size: u64) -> StoreConfig {
    let mut cfg = StoreConfig::new(dir);
    cfg.segment_size = segment_size;
    cfg
}

/// Runs a future to completion on a runtime of its own, in a thread of its
/// own, so that the plain helpers below work from sync and async tests alike.
pub fn block_on<F>(f: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| runtime().block_on(f))
            .join()
            .expect("block_on thread")
    })
}

/// Drains a read, panicking on an error.
pub fn collect(mut r: ReadStream) -> Vec<RecordedEvent> {
    block_on(async move {
        let mut out = Vec::new();
        while let Some(b) = r.next().await {
            let b = b.expect("read batch");
            assert!(!b.is_empty(), "a read returned an empty batch");
            out.extend(b);
        }
        out
    })
}

/// Opens and drains a read, returning the first error.
pub fn try_collect(
    r: impl std::future::Future<Output = Result<ReadStream, ReadError>> + Send,
) -> Result<Vec<RecordedEvent>, ReadError> {
    block_on(async move { r.await?.collect_all().await })
}

/// The store's counters.
pub fn stats(store: &Store) -> StoreStats {
    block_on(store.stats()).expect("stats")
}

/// Every event of `$all`, forwards.
pub fn all_forwards(store: &Store) -> Vec<RecordedEvent> {
    try_collect(store.read_all(Direction::Forwards, ReadFrom::Start, 0, Filter::default()))
        .expect("read $all")
}

/// Every event of `$all`, backwards.
pub fn all_backwards(store: &Store) -> Vec<RecordedEvent> {
    try_collect(store.read_all(Direction::Backwards, ReadFrom::End, 0, Filter::default()))
        .expect("read $all backwards")
}

/// Every event of a stream in one direction.
pub fn stream_events(store: &Store, stream: &str, direction: Direction) -> Vec<RecordedEvent> {
    let from = match direction {
        Direction::Forwards => ReadFrom::Start,
        Direction::Backwards => ReadFrom::End,
    };
    try_collect(store.read_stream(stream, direction, from, 0)).expect("read stream")
}

/// Copies a directory tree.
pub fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("mkdir");
    for entry in std::fs::read_dir(src).expect("read_dir") {
        let entry = entry.expect("dir entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            std::fs::copy(entry.path(), &to).expect("copy");
        }
    }
}

/// The segment files of a data directory, in log order.
pub fn segment_files(data_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data_dir.join("log"))
        .expect("read log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    files.sort();
    files
}

/// One record frame as found in a segment file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Byte offset of the frame in the file.
    pub offset: u64,
    /// Bytes of the whole frame (header + payload).
    pub len: u64,
    /// Global position stored in the record.
    pub position: u64,
    /// Whether the record closes its append.
    pub commit: bool,
}

impl Frame {
    /// One past the frame's last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Parses the frames of a segment file up to the first zero length (the
/// end of written data in a preallocated file). Independent of the engine's
/// decoder: it only follows the documented framing and does not check CRCs.
pub fn frames(path: &Path) -> Vec<Frame> {
    let bytes = std::fs::read(path).expect("read segment");
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER as usize;
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 || at + 8 + len > bytes.len() {
            break;
        }
        let payload = &bytes[at + 8..at + 8 + len];
        out.push(Frame {
            offset: at as u64,
            len: (8 + len) as u64,
            position: u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes")),
            commit: payload[1] & 1 != 0,
        });
        at += 8 + len;
    }
    out
}

/// The fields an event is compared on when the commit time is unknown.
pub type EventKey = (
    String,
    u64,
    u64,
    EventId,
    String,
    Bytes,
    Bytes,
    Option<String>,
);

/// An event without its commit time.
pub fn key(e: &RecordedEvent) -> EventKey {
    (
        e.stream.to_string(),
        e.revision,
        e.position,
        e.id,
        e.event_type.clone(),
        e.data.clone(),
        e.metadata.clone(),
        e.content_type.clone(),
    )
}

/// Flips bits of one byte of a file in place.
pub fn xor_byte(path: &Path, offset: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for flip");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).expect("read byte");
    b[0] ^= mask;
    // No fsync: the store reads through the same page cache.
    f.write_all_at(&b, offset).expect("write byte");
}

/// Overwrites bytes of a file in place; returns what was there.
pub fn overwrite(path: &Path, offset: u64, bytes: &[u8]) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .expect("open for overwrite");
    let mut old = vec![0u8; bytes.len()];
    f.read_exact_at(&mut old, offset).expect("read bytes");
    f.write_all_at(bytes, offset).expect("write bytes");
    old
}

/// A temporary directory for tests that open and close stores hundreds of
/// times: on tmpfs (`/dev/shm`) where there is one, since they check
/// recovery logic, not the disk, and every open and close syncs files.
pub fn scratch_dir() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("strata-test-")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::tempdir().expect("tempdir")
}

/// A current-thread runtime for tests that drive the store from plain code.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Appends and expects success; returns (last revision, last position).
pub async fn append_ok(store: &Store, r: AppendRequest) -> (u64, u64) {
    match store.append(r).await.expect("append") {
        AppendOutcome::Success {
            next_expected_revision,
            position,
        } => (next_expected_revision, position),
        other => panic!("expected success, got {other:?}"),
    }
}
