//! The in-memory index tail: every committed append is readable at once,
//! by every kind of read, before the sled index has any of it, and nothing
//! is missed or seen twice while the indexer writes to sled and trims the
//! tail under concurrent reads.

mod engine_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use engine_support::*;
use strata_server::store::*;

/// A config whose indexer never writes to sled before the store closes.
fn sled_never(dir: &std::path::Path) -> StoreConfig {
    let mut cfg = config(dir, 64 << 10);
    cfg.index_interval = Duration::from_secs(3600);
    cfg.index_appends = usize::MAX;
    cfg
}

fn events(n: usize) -> Vec<NewEvent> {
    (0..n).map(|i| ev("T", format!("{i}").as_bytes())).collect()
}

#[test]
fn every_read_sees_commits_that_sled_does_not_have() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(sled_never(dir.path())).expect("open");
    // Runs longer than the location stride, across segment rolls, and a
    // multi-append.
    let mut sent = Vec::new();
    for i in 0..20u64 {
        let stream = if i % 2 == 0 { "a" } else { "b" };
        let n = [1, 150, 3, 70][(i % 4) as usize];
        let r = req(stream, ExpectedVersion::Any, events(n));
        sent.push(r.clone());
        block_on(append_ok(&store, r));
    }
    let multi = MultiAppendRequest {
        appends: vec![
            req("a", ExpectedVersion::Exact(5 * (1 + 3) - 1), events(2)),
            req("c", ExpectedVersion::NoStream, events(1)),
        ],
        checks: vec![StreamCheck {
            stream: "b".into(),
            expected: ExpectedVersion::StreamExists,
        }],
    };
    let outcome = block_on(store.multi_append(multi)).expect("multi-append");
    assert!(
        matches!(outcome, MultiAppendOutcome::Success { .. }),
        "{outcome:?}"
    );
    let s = stats(&store);
    assert_eq!(s.indexed_position, 0, "sled holds nothing yet: {s:?}");
    let head = s.head_position;
    assert_eq!(head, 5 * (1 + 150 + 3 + 70) + 3);
    assert_eq!(s.streams, 3);

    let all = all_forwards(&store);
    assert_eq!(all.len() as u64, head);
    assert!(all.iter().enumerate().all(|(i, e)| e.position == i as u64));
    let mut back = all_backwards(&store);
    back.reverse();
    assert_eq!(back, all);
    for stream in ["a", "b", "c"] {
        let fwd = stream_events(&store, stream, Direction::Forwards);
        let want: Vec<_> = all
            .iter()
            .filter(|e| &*e.stream == stream)
            .cloned()
            .collect();
        assert_eq!(fwd, want, "{stream}");
        assert!(fwd.iter().enumerate().all(|(i, e)| e.revision == i as u64));
        let mut bwd = stream_events(&store, stream, Direction::Backwards);
        bwd.reverse();
        assert_eq!(bwd, want, "{stream} backwards");
    }
    // From inside a run, both ways, and `$all` from a position inside one.
    let mid = try_collect(store.read_stream("b", Direction::Forwards, ReadFrom::At(200), 5))
        .expect("read b");
    assert_eq!(
        mid.iter().map(|e| e.revision).collect::<Vec<_>>(),
        (200..205).collect::<Vec<_>>()
    );
    let mid = try_collect(store.read_stream("b", Direction::Backwards, ReadFrom::At(200), 3))
        .expect("read b backwards");
    assert_eq!(
        mid.iter().map(|e| e.revision).collect::<Vec<_>>(),
        vec![200, 199, 198]
    );
    let from = try_collect(store.read_all(
        Direction::Forwards,
        ReadFrom::At(333),
        10,
        Filter::default(),
    ))
    .expect("read $all");
    assert_eq!(from[..], all[333..343]);

    // Expected versions, retries and reused ids answer from memory too.
    let last_a = all.iter().filter(|e| &*e.stream == "a").count() as u64 - 1;
    block_on(append_ok(
        &store,
        req("a", ExpectedVersion::Exact(last_a), events(1)),
    ));
    let again = block_on(store.append(sent[3].clone())).expect("retry");
    let b_runs: Vec<_> = all
        .iter()
        .filter(|e| e.id == sent[3].events[0].id)
        .collect();
    assert_eq!(
        again,
        AppendOutcome::Success {
            next_expected_revision: b_runs[0].revision + 69,
            position: b_runs[0].position + 69,
        }
    );
    let mut reused = sent[5].clone();
    reused.events.truncate(1);
    assert!(matches!(
        block_on(store.append(reused)),
        Err(AppendError::DuplicateEventId { .. })
    ));
    assert_eq!(stats(&store).indexed_position, 0);

    // A stream subscription from the end starts after the tail's head.
    let next = block_on(async {
        let mut sub = store
            .subscribe(SubscriptionTarget::Stream("c".into()), SubscribeFrom::End)
            .await
            .expect("subscribe");
        append_ok(&store, req("c", ExpectedVersion::Exact(0), events(1))).await;
        loop {
            match sub.next().await.expect("message").expect("open") {
                SubscriptionMessage::Events(e) => break e,
                _ => continue,
            }
        }
    });
    assert_eq!(next.iter().map(|e| e.revision).collect::<Vec<_>>(), vec![1]);

    // Closing writes the tail to sled; the next open replays nothing.
    let before = all_forwards(&store);
    store.close().expect("close");
    drop(store);
    let store = Store::open(config(dir.path(), 64 << 10)).expect("reopen");
    let s = stats(&store);
    assert_eq!(s.indexed_position, s.head_position);
    assert_eq!(all_forwards(&store), before);
}

#[test]
fn reads_racing_the_indexer_miss_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(dir.path(), 256 << 10);
    // Write to sled and trim the tail after nearly every batch.
    cfg.index_interval = Duration::from_millis(1);
    cfg.index_appends = 1;
    let store = Arc::new(Store::open(cfg).expect("open"));
    let acked: Arc<Vec<AtomicU64>> = Arc::new((0..2).map(|_| AtomicU64::new(0)).collect());
    let deadline = Instant::now() + Duration::from_secs(3);
    let writers: Vec<_> = (0..2usize)
        .map(|w| {
            let (store, acked) = (store.clone(), acked.clone());
            std::thread::spawn(move || {
                block_on(async {
                    let mut count = 0u64;
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let n = [1, 1, 2, 100][i % 4];
                        i += 1;
                        let expected = match count {
                            0 => ExpectedVersion::NoStream,
                            c => ExpectedVersion::Exact(c - 1),
                        };
                        append_ok(&store, req(&format!("w{w}"), expected, events(n))).await;
                        count += n as u64;
                        acked[w].store(count, Ordering::SeqCst);
                    }
                })
            })
        })
        .collect();
    let mut reads = 0u64;
    while Instant::now() < deadline {
        for (w, acked) in acked.iter().enumerate() {
            let stream = format!("w{w}");
            let at_least = acked.load(Ordering::SeqCst);
            if at_least == 0 {
                continue;
            }
            let fwd = stream_events(&store, &stream, Direction::Forwards);
            assert!(
                fwd.len() as u64 >= at_least,
                "{stream}: {} < {at_least}",
                fwd.len()
            );
            assert!(fwd.iter().enumerate().all(|(i, e)| e.revision == i as u64));
            assert!(fwd.windows(2).all(|p| p[0].position < p[1].position));
            let bwd = stream_events(&store, &stream, Direction::Backwards);
            assert!(bwd.len() as u64 >= at_least);
            assert!(bwd.windows(2).all(|p| p[0].revision == p[1].revision + 1));
            // A read from a revision the writer just reached.
            let tail = try_collect(store.read_stream(
                &stream,
                Direction::Forwards,
                ReadFrom::At(at_least - 1),
                0,
            ))
            .expect("read from a revision");
            assert_eq!(tail.first().map(|e| e.revision), Some(at_least - 1));
            reads += 3;
        }
        let head = stats(&store).head_position;
        let all = all_forwards(&store);
        assert!(all.len() as u64 >= head);
        assert!(all.iter().enumerate().all(|(i, e)| e.position == i as u64));
        reads += 1;
    }
    for w in writers {
        w.join().expect("writer");
    }
    assert!(reads > 10, "the readers ran: {reads}");
    let s = stats(&store);
    assert!(s.indexed_position > 0, "sled was written meanwhile: {s:?}");
}
