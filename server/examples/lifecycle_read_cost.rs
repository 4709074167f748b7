//! What lifecycle checks cost a `$all` read, in process: 1 M events of 256
//! bytes over 1,000 streams, read whole from the start, first with no
//! stream holding a policy, then with 10% of the streams soft-deleted, then
//! with another 10% under a `max_count`. Each read runs three times; the
//! best is printed (events/s, events returned).
//!
//! `cargo run --release -p strata-server --example lifecycle_read_cost [-- DIR]`

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use strata_server::store::{
    AppendRequest, Direction, EventId, ExpectedVersion, Filter, LifecycleRequest, NewEvent,
    ReadFrom, Store, StoreConfig, StreamMetadata, SyncMode,
};

const STREAMS: usize = 1000;
const EVENTS: usize = 1_000_000;
const PER_APPEND: usize = 100;

async fn read_all(store: &Store) -> (f64, usize) {
    let mut best = 0f64;
    let mut seen = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let mut read = store
            .read_all(Direction::Forwards, ReadFrom::Start, 0, Filter::default())
            .await
            .expect("read");
        let mut n = 0;
        while let Some(batch) = read.next().await {
            n += batch.expect("batch").len();
        }
        best = best.max(n as f64 / started.elapsed().as_secs_f64());
        seen = n;
    }
    (best, seen)
}

fn main() {
    let arg = std::env::args().nth(1);
    let tmp = tempfile::tempdir_in(arg.as_deref().unwrap_or(".")).expect("tempdir");
    let mut config = StoreConfig::new(tmp.path().join("data"));
    config.sync_mode = SyncMode::UnsafeNoSync;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let store = Arc::new(Store::open(config).expect("open"));
    rt.block_on(async {
        let payload = Bytes::from(vec![b'x'; 256]);
        for i in 0..EVENTS / PER_APPEND {
            let req = AppendRequest {
                stream: format!("s-{}", i % STREAMS),
                expected: ExpectedVersion::Any,
                events: (0..PER_APPEND)
                    .map(|_| NewEvent {
                        id: EventId::random(),
                        event_type: "E".into(),
                        data: payload.clone(),
                        metadata: Bytes::new(),
                        content_type: None,
                    })
                    .collect(),
            };
            store.append(req).await.expect("append");
        }
        let (rate, n) = read_all(&store).await;
        println!("no policies:             {rate:>10.0} events/s, {n} events");
        for s in (0..STREAMS).step_by(10) {
            let req = LifecycleRequest::Delete {
                stream: format!("s-{s}"),
                expected: ExpectedVersion::Any,
            };
            store.lifecycle(req).await.expect("delete");
        }
        let (rate, n) = read_all(&store).await;
        println!("10% of streams deleted:  {rate:>10.0} events/s, {n} events");
        for s in (5..STREAMS).step_by(10) {
            let req = LifecycleRequest::SetMetadata {
                stream: format!("s-{s}"),
                expected: ExpectedVersion::Any,
                metadata: StreamMetadata {
                    max_count: Some(10),
                    ..StreamMetadata::default()
                },
            };
            store.lifecycle(req).await.expect("metadata");
        }
        let (rate, n) = read_all(&store).await;
        println!("+ 10% under max_count:   {rate:>10.0} events/s, {n} events");
    });
    drop(store);
}
