//! Measures how long the engine takes to open a data directory holding
//! many events: with its index present, and with `index/` deleted (a full
//! rebuild from the log). Loads the directory first if it is empty.
//!
//! `cargo run --release -p strata-server --example recovery_probe -- DIR EVENTS EVENTS_PER_APPEND`
//!
//! Set `RUST_LOG=info` to see the parts of an open (recovery, id filter).
//! `PROBE_LOAD_NO_SYNC=1` loads without `fdatasync` (faster to set up; the
//! directory is the same once the load has closed the store);
//! `PROBE_SKIP_REBUILD=1` skips the open with `index/` deleted.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use strata_server::store::{AppendRequest, EventId, ExpectedVersion, NewEvent, Store, StoreConfig};

/// Concurrent loaders; each appends to streams of its own.
const LOADERS: u64 = 16;

async fn load(store: Arc<Store>, events: u64, per_append: u64) {
    let payload = Bytes::from(vec![b'x'; 256]);
    let appends = events / per_append;
    let mut tasks = Vec::new();
    for l in 0..LOADERS {
        let (store, payload) = (store.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            for a in (l..appends).step_by(LOADERS as usize) {
                let req = AppendRequest {
                    // A stream per 1000 appends of a loader.
                    stream: format!("probe-{l}-{}", a / (1000 * LOADERS)),
                    expected: ExpectedVersion::Any,
                    events: (0..per_append)
                        .map(|_| NewEvent {
                            id: EventId::random(),
                            event_type: "Probe".into(),
                            data: payload.clone(),
                            metadata: Bytes::new(),
                            content_type: None,
                        })
                        .collect(),
                };
                store.append(req).await.expect("append");
            }
        }));
    }
    for t in tasks {
        t.await.expect("loader");
    }
}

fn open_timed(dir: &std::path::Path, what: &str) -> Result<Store, Box<dyn std::error::Error>> {
    let t = Instant::now();
    let store = Store::open(StoreConfig::new(dir))?;
    println!(
        "open ({what}): {:.3} s, head {}",
        t.elapsed().as_secs_f64(),
        store.head_position()
    );
    Ok(store)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).ok_or("usage: DIR EVENTS PER_APPEND")?);
    let events: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let per_append: u64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    if !dir.join("log").exists() {
        let mut config = StoreConfig::new(&dir);
        if std::env::var_os("PROBE_LOAD_NO_SYNC").is_some() {
            config.sync_mode = strata_server::store::SyncMode::UnsafeNoSync;
        }
        if let Some(ms) = std::env::var("PROBE_INDEX_INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            config.index_interval = std::time::Duration::from_millis(ms);
        }
        let store = Arc::new(Store::open(config)?);
        let t = Instant::now();
        load(store.clone(), events, per_append.max(1)).await;
        println!(
            "loaded {} events in {:.1} s",
            store.head_position(),
            t.elapsed().as_secs_f64()
        );
        let t = Instant::now();
        tokio::task::spawn_blocking(move || store.close()).await??;
        println!("close: {:.3} s", t.elapsed().as_secs_f64());
    }
    for run in 1..=3 {
        let store = open_timed(&dir, &format!("index present, run {run}"))?;
        tokio::task::spawn_blocking(move || store.close()).await??;
    }
    if std::env::var_os("PROBE_SKIP_REBUILD").is_some() {
        return Ok(());
    }
    std::fs::remove_dir_all(dir.join("index"))?;
    let store = open_timed(&dir, "index deleted")?;
    tokio::task::spawn_blocking(move || store.close()).await??;
    Ok(())
}
