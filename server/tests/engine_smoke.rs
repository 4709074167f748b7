//! End-to-end checks of the storage engine through its public API.

use bytes::Bytes;
use strata_server::store::*;

fn ev(ty: &str, data: &str) -> NewEvent {
    NewEvent {
        id: EventId::random(),
        event_type: ty.into(),
        data: Bytes::copy_from_slice(data.as_bytes()),
        metadata: Bytes::new(),
        content_type: None,
    }
}

fn req(stream: &str, expected: ExpectedVersion, events: Vec<NewEvent>) -> AppendRequest {
    AppendRequest {
        stream: stream.into(),
        expected,
        events,
    }
}

async fn collect(r: ReadStream) -> Vec<RecordedEvent> {
    r.collect_all().await.expect("batch")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_read_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = StoreConfig::new(dir.path());
    cfg.segment_size = 4096;
    {
        let store = Store::open(cfg.clone()).expect("open");
        let out = store
            .append(req(
                "a",
                ExpectedVersion::NoStream,
                vec![ev("T", "1"), ev("T", "2")],
            ))
            .await
            .expect("append");
        assert_eq!(
            out,
            AppendOutcome::Success {
                next_expected_revision: 1,
                position: 1
            }
        );
        for i in 0..100 {
            let o = store
                .append(req(
                    "b",
                    ExpectedVersion::Any,
                    vec![ev("U", &"x".repeat(i))],
                ))
                .await
                .expect("append");
            assert!(matches!(o, AppendOutcome::Success { .. }));
        }
        let conflict = store
            .append(req("a", ExpectedVersion::Exact(0), vec![ev("T", "3")]))
            .await
            .expect("append");
        assert_eq!(
            conflict,
            AppendOutcome::WrongExpectedVersion {
                current_revision: Some(1),
                expected: ExpectedVersion::Exact(0)
            }
        );
        let a = collect(
            store
                .read_stream("a", Direction::Forwards, ReadFrom::Start, 0)
                .await
                .expect("read"),
        )
        .await;
        assert_eq!(a.len(), 2);
        let all = collect(
            store
                .read_all(Direction::Forwards, ReadFrom::Start, 0, Filter::default())
                .await
                .expect("read"),
        )
        .await;
        assert_eq!(all.len(), 102);
        assert!(all.iter().enumerate().all(|(i, e)| e.position == i as u64));
        let back = collect(
            store
                .read_all(Direction::Backwards, ReadFrom::End, 5, Filter::default())
                .await
                .expect("read"),
        )
        .await;
        assert_eq!(
            back.iter().map(|e| e.position).collect::<Vec<_>>(),
            vec![101, 100, 99, 98, 97]
        );
        let stats = store.stats().await.expect("stats");
        assert!(stats.segments > 1, "{stats:?}");
        store.close().expect("close");
    }
    let store = Store::open(cfg.clone()).expect("reopen");
    assert_eq!(store.head_position(), 102);
    let all = collect(
        store
            .read_all(Direction::Forwards, ReadFrom::Start, 0, Filter::default())
            .await
            .expect("read"),
    )
    .await;
    assert_eq!(all.len(), 102);
    drop(store);
    std::fs::remove_dir_all(dir.path().join("index")).expect("rm index");
    let store = Store::open(cfg).expect("reopen without index");
    let all2 = collect(
        store
            .read_all(Direction::Forwards, ReadFrom::Start, 0, Filter::default())
            .await
            .expect("read"),
    )
    .await;
    assert_eq!(all, all2);
    let b = collect(
        store
            .read_stream("b", Direction::Backwards, ReadFrom::End, 0)
            .await
            .expect("read"),
    )
    .await;
    assert_eq!(b.len(), 100);
    assert_eq!(b[0].revision, 99);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_catch_up_then_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(Store::open(StoreConfig::new(dir.path())).expect("open"));
    for _ in 0..10 {
        store
            .append(req("s", ExpectedVersion::Any, vec![ev("T", "x")]))
            .await
            .expect("append");
    }
    let mut sub = store
        .subscribe(
            SubscriptionTarget::All(Filter::default()),
            SubscribeFrom::Start,
        )
        .await
        .expect("subscribe");
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                store
                    .append(req("s", ExpectedVersion::Any, vec![ev("T", "y")]))
                    .await
                    .expect("append");
            }
        })
    };
    let mut seen = Vec::new();
    let mut caught_up = 0;
    while seen.len() < 60 {
        match sub.next().await.expect("next").expect("open") {
            SubscriptionMessage::Events(es) => seen.extend(es.into_iter().map(|e| e.position)),
            SubscriptionMessage::CaughtUp { .. } => caught_up += 1,
            SubscriptionMessage::Checkpoint { .. } => {}
        }
    }
    writer.await.expect("writer");
    assert_eq!(seen, (0..60).collect::<Vec<_>>());
    assert_eq!(caught_up, 1);
}
