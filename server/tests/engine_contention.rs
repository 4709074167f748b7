//! Optimistic concurrency under contention: many tasks appending to one
//! stream with exact expected versions, each retrying from the revision the
//! conflict answer reports. Every revision has exactly one winner.

mod engine_support;

use std::collections::BTreeMap;
use std::sync::Arc;

use engine_support::*;
use strata_server::store::*;

const TASKS: usize = 16;
const WINS_PER_TASK: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_winner_per_revision() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(config(tmp.path(), 4096)).expect("open"));
    // Another stream written concurrently, so positions interleave.
    let noise = {
        let store = store.clone();
        tokio::spawn(async move {
            for i in 0..40u8 {
                append_ok(
                    &store,
                    req("noise", ExpectedVersion::Any, vec![ev("N", &[i])]),
                )
                .await;
            }
        })
    };
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            // (revision, position, event id) of each win; number of conflicts.
            let mut wins = Vec::new();
            let mut conflicts = 0u64;
            let mut expected = ExpectedVersion::NoStream;
            while wins.len() < WINS_PER_TASK {
                let e = ev("Won", format!("{t}").as_bytes());
                let id = e.id;
                match store
                    .append(req("contended", expected, vec![e]))
                    .await
                    .expect("append")
                {
                    AppendOutcome::Success {
                        next_expected_revision,
                        position,
                    } => {
                        let want = match expected {
                            ExpectedVersion::NoStream => 0,
                            ExpectedVersion::Exact(r) => r + 1,
                            other => panic!("unexpected {other:?}"),
                        };
                        assert_eq!(next_expected_revision, want, "task {t}");
                        wins.push((next_expected_revision, position, id));
                        expected = ExpectedVersion::Exact(next_expected_revision);
                    }
                    AppendOutcome::WrongExpectedVersion {
                        current_revision,
                        expected: echoed,
                    } => {
                        assert_eq!(echoed, expected, "task {t}: the expectation is echoed");
                        let current = current_revision.expect("the stream exists after a conflict");
                        if let ExpectedVersion::Exact(r) = expected {
                            assert!(current > r, "task {t}: the stream only grows");
                        }
                        conflicts += 1;
                        expected = ExpectedVersion::Exact(current);
                    }
                }
            }
            (t, wins, conflicts)
        }));
    }
    let mut by_revision: BTreeMap<u64, (usize, u64, EventId)> = BTreeMap::new();
    let mut conflicts = 0;
    for task in tasks {
        let (t, wins, c) = task.await.expect("task");
        conflicts += c;
        assert_eq!(wins.len(), WINS_PER_TASK);
        for (rev, pos, id) in wins {
            if let Some(other) = by_revision.insert(rev, (t, pos, id)) {
                panic!("revision {rev} won by tasks {} and {t}", other.0);
            }
        }
    }
    noise.await.expect("noise");
    let total = TASKS * WINS_PER_TASK;
    assert_eq!(by_revision.len(), total, "total = sum of wins");
    assert!(conflicts > 0, "the test produced no contention");

    let stream =
        tokio::task::block_in_place(|| stream_events(&store, "contended", Direction::Forwards));
    assert_eq!(stream.len(), total, "the stream holds exactly the wins");
    for (e, (rev, (t, pos, id))) in stream.iter().zip(&by_revision) {
        assert_eq!(e.revision, *rev, "dense revisions");
        assert_eq!(e.position, *pos, "the winner's answer names its position");
        assert_eq!(e.id, *id, "revision {rev} holds task {t}'s event");
        assert_eq!(&e.data[..], format!("{t}").as_bytes());
    }
    let all = tokio::task::block_in_place(|| all_forwards(&store));
    assert_eq!(all.len(), total + 40);
    assert!(
        all.iter().enumerate().all(|(i, e)| e.position == i as u64),
        "dense positions"
    );
    store.close().expect("close");
}

/// Readers running while writers append see whole appends only (all of an
/// append's events or none), dense positions and no gap, in every direction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_see_whole_appends_and_no_gaps() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path(), 4096);
    cfg.read_batch = 7;
    let store = Arc::new(Store::open(cfg).expect("open"));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            for i in 0..40 {
                let k = 1 + (i + w) % 4;
                let events = (0..k)
                    .map(|j| ev("Part", format!("{w}/{i}/{j}/{k}").as_bytes()))
                    .collect();
                append_ok(&store, req(&format!("c-{w}"), ExpectedVersion::Any, events)).await;
            }
        }));
    }
    let mut readers = Vec::new();
    for r in 0..2 {
        let (store, done) = (store.clone(), done.clone());
        readers.push(tokio::task::spawn_blocking(move || {
            let mut reads = 0;
            loop {
                let last = done.load(std::sync::atomic::Ordering::Acquire);
                let events = if r == 0 {
                    all_forwards(&store)
                } else {
                    let mut b = all_backwards(&store);
                    b.reverse();
                    b
                };
                check_whole(&events);
                assert!(
                    events
                        .iter()
                        .enumerate()
                        .all(|(i, e)| e.position == i as u64),
                    "$all reads are dense from position 0"
                );
                for w in 0..3 {
                    let name = format!("c-{w}");
                    if let Ok(read) =
                        block_on(store.read_stream(&name, Direction::Forwards, ReadFrom::Start, 0))
                    {
                        let s = collect(read);
                        assert!(s.iter().enumerate().all(|(i, e)| e.revision == i as u64));
                        check_whole(&s);
                    }
                }
                reads += 1;
                if last {
                    return reads;
                }
            }
        }));
    }
    for w in writers {
        w.await.expect("writer");
    }
    done.store(true, std::sync::atomic::Ordering::Release);
    for r in readers {
        assert!(r.await.expect("reader") >= 1);
    }
    let all = tokio::task::block_in_place(|| all_forwards(&store));
    let total: usize = (0..3)
        .map(|w| (0..40).map(|i| 1 + (i + w) % 4).sum::<usize>())
        .sum();
    assert_eq!(all.len(), total);
    store.close().expect("close");
}

/// Events of one append are consecutive and complete; positions are dense
/// from zero (for `$all`) or at least increasing (for a stream).
fn check_whole(events: &[RecordedEvent]) {
    let mut i = 0;
    while i < events.len() {
        let tag = std::str::from_utf8(&events[i].data)
            .expect("utf-8")
            .to_string();
        let parts: Vec<usize> = tag.split('/').map(|p| p.parse().expect("number")).collect();
        let (j, k) = (parts[2], parts[3]);
        assert_eq!(j, 0, "an append starts with its first event: {tag}");
        assert!(
            i + k <= events.len(),
            "append {tag} is cut off at the end of a read"
        );
        for (n, e) in events[i..i + k].iter().enumerate() {
            let want = format!("{}/{}/{n}/{k}", parts[0], parts[1]);
            assert_eq!(
                &e.data[..],
                want.as_bytes(),
                "the events of one append are together"
            );
        }
        i += k;
    }
    assert!(events.windows(2).all(|w| w[0].position < w[1].position));
}
