//! Helpers of the format fixture tests (`format_fixture*.rs`): a runtime,
//! copying a fixture's flat `log/` directory, listing its segments, the
//! store's config and reading `$all`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use strata_server::store::{Direction, Filter, ReadFrom, RecordedEvent, Store, StoreConfig};

/// A current-thread runtime for the engine's async calls.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Copies the files of `from` (no subdirectories) into `to`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("create dir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        std::fs::copy(entry.path(), to.join(entry.file_name())).expect("copy");
    }
}

/// A store config for `dir` with segments of `segment_size` bytes.
pub fn config(dir: &Path, segment_size: u64) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.segment_size = segment_size;
    c
}

/// The segment files of a log directory, in log order.
pub fn segments(log: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(log)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

/// Every event of `$all`, forwards.
pub fn read_all(rt: &tokio::runtime::Runtime, store: &Store) -> Vec<RecordedEvent> {
    rt.block_on(async {
        let read = store.read_all(Direction::Forwards, ReadFrom::Start, 0, Filter::default());
        read.await?.collect_all().await
    })
    .expect("read $all")
}
