//! How fast a scavenge rewrites segments, in process: 1 M events of 256
//! bytes over 1,000 streams (about 330 MB in 64 MiB segments, the default),
//! half of the streams soft-deleted, then one scavenge timed while nothing
//! else runs, with the page cache dropped first when the process may
//! (root). Prints the bytes read and written, the bytes given back, and
//! MB/s of segment data gone through. A second scavenge right after shows
//! the cost of one that finds nothing to do.
//!
//! `cargo run --release -p strata-server --example scavenge_speed [-- DIR]`

use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_server::store::{
    AppendRequest, EventId, ExpectedVersion, LifecycleRequest, NewEvent, ScavengeState,
    ScavengeStatus, Store, StoreConfig, SyncMode,
};

const STREAMS: usize = 1000;
const EVENTS: usize = 1_000_000;
const PER_APPEND: usize = 100;

fn disk_use(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir.join("log"))
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .map(|p| std::fs::metadata(p).expect("metadata").len())
        .sum()
}

fn scavenge(store: &Store) -> (ScavengeStatus, Duration) {
    let started = Instant::now();
    store.start_scavenge().expect("no scavenge running");
    loop {
        let s = store.scavenge_status();
        if s.state != ScavengeState::Running {
            assert_eq!(s.state, ScavengeState::Done, "{s:?}");
            return (s, started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn main() {
    let arg = std::env::args().nth(1);
    let tmp = tempfile::tempdir_in(arg.as_deref().unwrap_or(".")).expect("tempdir");
    let data = tmp.path().join("data");
    let mut config = StoreConfig::new(&data);
    config.sync_mode = SyncMode::UnsafeNoSync;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Store::open(config).expect("open");
    rt.block_on(async {
        let payload = Bytes::from(vec![b'x'; 256]);
        for i in 0..EVENTS / PER_APPEND {
            let req = AppendRequest {
                stream: format!("s-{}", i % STREAMS),
                expected: ExpectedVersion::Any,
                events: (0..PER_APPEND)
                    .map(|_| NewEvent {
                        id: EventId::random(),
                        event_type: "Measured".into(),
                        data: payload.clone(),
                        metadata: Bytes::new(),
                        content_type: None,
                    })
                    .collect(),
            };
            store.append(req).await.expect("append");
        }
        for s in (0..STREAMS).step_by(2) {
            store
                .lifecycle(LifecycleRequest::Delete {
                    stream: format!("s-{s}"),
                    expected: ExpectedVersion::Any,
                })
                .await
                .expect("delete");
        }
    });
    let before = disk_use(&data);
    let cold = drop_caches();
    let (status, took) = scavenge(&store);
    let after = disk_use(&data);
    let secs = took.as_secs_f64();
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "scavenge: {} segments in {secs:.2} s ({}), {} events removed",
        status.segments_total,
        if cold {
            "page cache dropped"
        } else {
            "page cache warm"
        },
        status.events_removed
    );
    println!(
        "  segment files {:.1} MB -> {:.1} MB, {:.1} MB given back ({:.0}%)",
        mb(before),
        mb(after),
        mb(status.bytes_reclaimed),
        100.0 * status.bytes_reclaimed as f64 / before as f64
    );
    println!(
        "  {:.0} MB/s of segments gone through, {:.0} MB/s written",
        mb(before) / secs,
        mb(after) / secs
    );
    let (again, took) = scavenge(&store);
    println!(
        "second scavenge: {:.2} s, {} bytes given back",
        took.as_secs_f64(),
        again.bytes_reclaimed
    );
    store.close().expect("close");
}
