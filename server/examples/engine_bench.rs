//! A small in-process benchmark of the storage engine's durable append path:
//! events/s with 1 and with 64 concurrent appenders (256-byte events,
//! durability `always`), next to this disk's fdatasync rate measured the same
//! way (overwrite of a preallocated file, one sync per write).
//!
//! `cargo run --release -p strata-server --example engine_bench [-- DIR SECONDS]`

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use strata_server::store::{AppendRequest, EventId, ExpectedVersion, NewEvent, Store, StoreConfig};

fn fdatasync_rate(dir: &std::path::Path, secs: f64) -> std::io::Result<f64> {
    let path = dir.join("probe.bin");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(&path)?;
    f.write_all_at(&vec![0u8; 64 << 20], 0)?;
    f.sync_all()?;
    let block = vec![7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        f.write_all_at(&block, (n % 16384) * 4096)?;
        f.sync_data()?;
        n += 1;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    std::fs::remove_file(path)?;
    Ok(rate)
}

async fn appends(store: Arc<Store>, run: usize, writers: usize, per_call: usize, secs: f64) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let payload = Bytes::from(vec![b'x'; 256]);
    let mut tasks = Vec::new();
    for w in 0..writers {
        let (store, stop, count, payload) =
            (store.clone(), stop.clone(), count.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let stream = format!("bench-{run}-{w}");
            let mut expected = ExpectedVersion::NoStream;
            while !stop.load(Ordering::Relaxed) {
                let req = AppendRequest {
                    stream: stream.clone(),
                    expected,
                    events: (0..per_call)
                        .map(|_| NewEvent {
                            id: EventId::random(),
                            event_type: "Bench".into(),
                            data: payload.clone(),
                            metadata: Bytes::new(),
                            content_type: None,
                        })
                        .collect(),
                };
                match store.append(req).await {
                    Ok(strata_server::store::AppendOutcome::Success {
                        next_expected_revision,
                        ..
                    }) => {
                        expected = ExpectedVersion::Exact(next_expected_revision);
                        count.fetch_add(per_call as u64, Ordering::Relaxed);
                    }
                    other => panic!("append failed: {other:?}"),
                }
            }
        }));
    }
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let n = count.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    for t in tasks {
        let _ = t.await;
    }
    n as f64 / elapsed
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let base = args
        .get(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let secs: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let dir = tempfile::tempdir_in(&base)?;
    let sync_rate = fdatasync_rate(dir.path(), secs)?;
    println!("fdatasync (4 KiB overwrite, preallocated): {sync_rate:.0}/s");
    let mut config = StoreConfig::new(dir.path().join("data"));
    if std::env::var_os("ENGINE_BENCH_NO_SYNC").is_some() {
        // Shows the engine's own overhead without the disk; never for real data.
        config.sync_mode = strata_server::store::SyncMode::UnsafeNoSync;
        println!("sync mode: unsafe-no-sync");
    }
    let store = Arc::new(Store::open(config)?);
    for (run, (writers, per_call)) in [(1usize, 1usize), (1, 1), (64, 1), (16, 100)]
        .into_iter()
        .enumerate()
    {
        let rate = appends(store.clone(), run, writers, per_call, secs).await;
        println!(
            "durable appends, {writers:>2} appender(s) x {per_call:>3} events/call, 256-byte events: {rate:.0} events/s"
        );
    }
    let head = store.head_position();
    let t = Instant::now();
    while store.stats().await?.indexed_position < head {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "index caught up {:.2}s after the last append",
        t.elapsed().as_secs_f64()
    );
    store.close()?;
    Ok(())
}
