//! Scavenging (API section 3): sealed segments rewritten without hidden
//! events give their space back, while every visible event keeps its
//! stream, revision, position and bytes, on every read path, online, after
//! a reopen, and after the index is rebuilt from the scavenged log.

mod engine_support;

use std::path::Path;
use std::time::{Duration, Instant};

use engine_support::*;
use strata_server::store::*;

const SEGMENT_SIZE: u64 = 64 << 10;
const STREAMS: usize = 40;
const EVENTS_PER_STREAM: usize = 50;

fn name(i: usize) -> String {
    format!("order-{i}")
}

/// Bytes of the segment files of `dir`, or of those among `of`.
fn disk_use(dir: &Path, of: Option<&[std::path::PathBuf]>) -> u64 {
    segment_files(dir)
        .iter()
        .filter(|p| of.is_none_or(|of| of.contains(p)))
        .map(|p| std::fs::metadata(p).expect("metadata").len())
        .sum()
}

/// Interleaved appends of `STREAMS` streams, 500 bytes each, so that every
/// segment holds events of many streams.
fn fill(store: &Store) {
    for round in 0..EVENTS_PER_STREAM {
        for s in 0..STREAMS {
            let data = vec![(s * 7 + round) as u8; 500];
            block_on(append_ok(
                store,
                req(&name(s), ExpectedVersion::Any, vec![ev("Placed", &data)]),
            ));
        }
    }
}

fn lifecycle(store: &Store, r: LifecycleRequest) {
    let out = block_on(store.lifecycle(r)).expect("lifecycle");
    assert!(matches!(out, LifecycleOutcome::Success { .. }), "{out:?}");
}

/// Soft-deletes the streams `which`, then seals the segment the fill
/// ended in with one large append.
fn delete_and_seal(store: &Store, which: impl Iterator<Item = usize>) {
    for s in which {
        lifecycle(
            store,
            LifecycleRequest::Delete {
                stream: name(s),
                expected: ExpectedVersion::Any,
            },
        );
    }
    block_on(append_ok(
        store,
        req("after", ExpectedVersion::Any, vec![ev("T", &[0; 70_000])]),
    ));
}

/// Everything a reader can see, by every read path.
#[derive(Debug, PartialEq)]
struct Visible {
    forwards: Vec<EventKey>,
    backwards: Vec<EventKey>,
    streams: Vec<(Vec<EventKey>, Vec<EventKey>)>,
}

fn visible(store: &Store) -> Visible {
    let keys = |v: Vec<RecordedEvent>| v.iter().map(key).collect::<Vec<_>>();
    let streams = (0..STREAMS)
        .map(|s| {
            let read = |d| {
                let from = match d {
                    Direction::Forwards => ReadFrom::Start,
                    Direction::Backwards => ReadFrom::End,
                };
                match try_collect(store.read_stream(&name(s), d, from, 0)) {
                    Ok(v) => keys(v),
                    Err(ReadError::StreamNotFound(_) | ReadError::Tombstoned(_)) => Vec::new(),
                    Err(e) => panic!("read {}: {e}", name(s)),
                }
            };
            (read(Direction::Forwards), read(Direction::Backwards))
        })
        .collect();
    Visible {
        forwards: keys(all_forwards(store)),
        backwards: keys(all_backwards(store)),
        streams,
    }
}

fn wait_done(store: &Store) -> ScavengeStatus {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = store.scavenge_status();
        if s.state != ScavengeState::Running {
            return s;
        }
        assert!(Instant::now() < deadline, "scavenge still running: {s:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn scavenging_gives_back_the_space_of_hidden_events_and_keeps_every_visible_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("open");
    fill(&store);
    // Half the streams deleted; of the rest, one keeps its last 5 events,
    // one is truncated before revision 40, one is tombstoned.
    for s in (0..STREAMS).step_by(2) {
        lifecycle(
            &store,
            LifecycleRequest::Delete {
                stream: name(s),
                expected: ExpectedVersion::Any,
            },
        );
    }
    let meta = |m: StreamMetadata| LifecycleRequest::SetMetadata {
        stream: String::new(),
        expected: ExpectedVersion::Any,
        metadata: m,
    };
    let with_stream = |r: LifecycleRequest, s: String| match r {
        LifecycleRequest::SetMetadata {
            expected, metadata, ..
        } => LifecycleRequest::SetMetadata {
            stream: s,
            expected,
            metadata,
        },
        other => other,
    };
    lifecycle(
        &store,
        with_stream(
            meta(StreamMetadata {
                max_count: Some(5),
                ..Default::default()
            }),
            name(1),
        ),
    );
    lifecycle(
        &store,
        with_stream(
            meta(StreamMetadata {
                truncate_before: Some(40),
                ..Default::default()
            }),
            name(3),
        ),
    );
    lifecycle(
        &store,
        LifecycleRequest::Tombstone {
            stream: name(5),
            expected: ExpectedVersion::Any,
        },
    );
    // One more append so that the last segment holding the fill is sealed.
    block_on(append_ok(
        &store,
        req("after", ExpectedVersion::Any, vec![ev("T", &[0; 70_000])]),
    ));
    let before = visible(&store);
    let files_before = segment_files(tmp.path());
    let disk_before = disk_use(tmp.path(), None);
    let segments_before = files_before.len();
    assert!(segments_before > 10, "{segments_before} segments");

    let started = store.start_scavenge().expect("nothing running");
    assert_eq!(started.state, ScavengeState::Running);
    // Online: appends and reads go on while it runs.
    let mut appended = 0;
    while store.scavenge_status().state == ScavengeState::Running && appended < 200 {
        block_on(append_ok(
            &store,
            req("during", ExpectedVersion::Any, vec![ev("T", b"x")]),
        ));
        appended += 1;
        assert_eq!(
            stream_events(&store, "during", Direction::Forwards).len(),
            appended
        );
    }
    let status = wait_done(&store);
    assert_eq!(status.state, ScavengeState::Done, "{status:?}");
    assert_eq!(status.segments_done, status.segments_total);
    assert!(status.events_removed > 0);

    // The same files (appends during the scavenge may have added one).
    let disk_after = disk_use(tmp.path(), Some(&files_before));
    assert_eq!(disk_before - disk_after, status.bytes_reclaimed);
    println!(
        "scavenge: {} segments, {} bytes before, {} after, {} events removed",
        status.segments_total, disk_before, disk_after, status.events_removed
    );
    // 21 of 40 streams hidden whole and two more mostly: well over half of
    // the fill's bytes go.
    assert!(
        disk_after * 2 < disk_before,
        "before {disk_before} bytes, after {disk_after}"
    );

    let mut after = visible(&store);
    let during: Vec<_> = after
        .forwards
        .iter()
        .filter(|k| k.0 == "during")
        .cloned()
        .collect();
    assert_eq!(during.len(), appended);
    after.forwards.retain(|k| k.0 != "during");
    after.backwards.retain(|k| k.0 != "during");
    assert_eq!(after, before);

    // A deleted stream re-created after the scavenge continues its revisions.
    let (revision, _) = block_on(append_ok(
        &store,
        req(&name(0), ExpectedVersion::NoStream, vec![ev("Again", b"1")]),
    ));
    assert_eq!(revision, EVENTS_PER_STREAM as u64);
    let after = visible(&store);
    drop(store);

    let report = verify(tmp.path()).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let store = Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("reopen");
    assert_eq!(visible(&store), after);
    drop(store);
    // The index rebuilt from the scavenged log agrees, including the heads
    // of streams whose events are hidden.
    std::fs::remove_dir_all(tmp.path().join("index")).expect("remove index");
    let store = Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("reopen without index");
    assert_eq!(visible(&store), after);
    let (revision, _) = block_on(append_ok(
        &store,
        req(&name(2), ExpectedVersion::NoStream, vec![ev("Again", b"1")]),
    ));
    assert_eq!(revision, EVENTS_PER_STREAM as u64);
    // A second scavenge finds little or nothing more and changes nothing
    // visible.
    let before = visible(&store);
    store.start_scavenge().expect("start again");
    assert_eq!(wait_done(&store).state, ScavengeState::Done);
    assert_eq!(visible(&store), before);
}

#[test]
fn a_retry_of_an_append_whose_events_were_scavenged_gets_the_original_answer() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(tmp.path(), 4096)).expect("open");
    let first = req(
        "s",
        ExpectedVersion::NoStream,
        vec![ev("T", &[1; 300]), ev("T", &[2; 300]), ev("T", &[3; 300])],
    );
    let original = block_on(append_ok(&store, first.clone()));
    for i in 0..30u8 {
        block_on(append_ok(
            &store,
            req("s", ExpectedVersion::Any, vec![ev("T", &[i; 300])]),
        ));
    }
    lifecycle(
        &store,
        LifecycleRequest::SetMetadata {
            stream: "s".into(),
            expected: ExpectedVersion::Any,
            metadata: StreamMetadata {
                max_count: Some(2),
                ..Default::default()
            },
        },
    );
    store.start_scavenge().expect("start");
    let status = wait_done(&store);
    assert_eq!(status.state, ScavengeState::Done, "{status:?}");
    assert!(status.events_removed >= 3, "{status:?}");
    let retried = block_on(store.append(first)).expect("retry");
    assert_eq!(
        retried,
        AppendOutcome::Success {
            next_expected_revision: original.0,
            position: original.1,
        }
    );
    assert_eq!(stream_events(&store, "s", Direction::Forwards).len(), 2);
}

#[test]
fn a_stopped_scavenge_resumes_where_it_stopped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("open");
    fill(&store);
    delete_and_seal(&store, 0..STREAMS);
    let before = visible(&store);
    store.start_scavenge().expect("start");
    let stopped = store.stop_scavenge();
    assert!(
        matches!(stopped.state, ScavengeState::Running | ScavengeState::Done),
        "{stopped:?}"
    );
    let first = wait_done(&store);
    assert!(
        matches!(first.state, ScavengeState::Stopped | ScavengeState::Done),
        "{first:?}"
    );
    if first.state == ScavengeState::Stopped {
        assert!(first.segments_done < first.segments_total, "{first:?}");
    }
    assert!(store.start_scavenge().is_some());
    let second = wait_done(&store);
    assert_eq!(second.state, ScavengeState::Done, "{second:?}");
    assert_eq!(second.segments_done, second.segments_total);
    assert!(second.bytes_reclaimed >= first.bytes_reclaimed);
    assert_eq!(visible(&store), before);
    // Only the last event of each stream (and of each segment) is left.
    let files = segment_files(tmp.path());
    let records: usize = files.iter().map(|f| frames(f).len()).sum();
    assert!(
        records < STREAMS * EVENTS_PER_STREAM / 4,
        "{records} records left"
    );
}

/// A tiny deterministic generator, so that a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// What every stream (and its metadata) reads as.
fn everything(store: &Store, streams: usize) -> (Visible, Vec<String>) {
    let v = visible(store);
    let md = (0..streams)
        .map(|s| {
            format!(
                "{:?}",
                store.stream_metadata(&name(s)).map(|m| format!("{m:?}"))
            )
        })
        .collect();
    (v, md)
}

#[test]
fn random_lifecycles_with_scavenges_read_the_same_after_reopening() {
    for seed in 1..=6u64 {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut store = Store::open(config(tmp.path(), 8 << 10)).expect("open");
        let streams = 8;
        let old_index = tempfile::tempdir().expect("tempdir");
        for step in 0..600 {
            if step == 200 {
                // An index that covers less than the log, as after a crash
                // before sled was flushed: used again at the end.
                drop(store);
                copy_dir(&tmp.path().join("index"), old_index.path());
                store = Store::open(config(tmp.path(), 8 << 10)).expect("reopen");
            }
            let s = name(rng.below(streams as u64) as usize);
            match rng.below(20) {
                0 => {
                    let _ = block_on(store.lifecycle(LifecycleRequest::Delete {
                        stream: s,
                        expected: ExpectedVersion::Any,
                    }));
                }
                1 | 2 => {
                    let max_count = (rng.below(2) == 0).then(|| rng.below(4));
                    let truncate_before = (rng.below(2) == 0).then(|| rng.below(40));
                    lifecycle(
                        &store,
                        LifecycleRequest::SetMetadata {
                            stream: s,
                            expected: ExpectedVersion::Any,
                            metadata: StreamMetadata {
                                max_count,
                                truncate_before,
                                ..Default::default()
                            },
                        },
                    );
                }
                _ => {
                    let n = 1 + rng.below(3) as usize;
                    let events = (0..n).map(|i| ev("T", &[i as u8; 200])).collect();
                    block_on(append_ok(&store, req(&s, ExpectedVersion::Any, events)));
                }
            }
            if step % 150 == 149 {
                store.start_scavenge().expect("start");
                assert_eq!(wait_done(&store).state, ScavengeState::Done);
            }
        }
        let before = everything(&store, streams);
        drop(store);
        let report = verify(tmp.path()).expect("verify");
        assert!(
            report.problems.is_empty(),
            "seed {seed}: {:?}",
            report.problems
        );
        let store = Store::open(config(tmp.path(), 8 << 10)).expect("reopen");
        assert_eq!(everything(&store, streams), before, "seed {seed}, reopened");
        drop(store);
        std::fs::remove_dir_all(tmp.path().join("index")).expect("remove index");
        copy_dir(old_index.path(), &tmp.path().join("index"));
        let store = Store::open(config(tmp.path(), 8 << 10)).expect("reopen");
        assert_eq!(
            everything(&store, streams),
            before,
            "seed {seed}, an index behind the log"
        );
        drop(store);
        std::fs::remove_dir_all(tmp.path().join("index")).expect("remove index");
        let store = Store::open(config(tmp.path(), 8 << 10)).expect("reopen");
        assert_eq!(
            everything(&store, streams),
            before,
            "seed {seed}, index rebuilt"
        );
    }
}

/// A crash in the middle of an index write can leave runs stored under
/// stream ids whose heads never reached sled. Replay then meets the streams
/// in log order, and a scavenge may have removed a stream's first events:
/// a stream must never be given an id whose runs belong to another.
#[test]
fn replay_after_a_scavenge_never_hands_a_stream_another_streams_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(tmp.path(), 4096)).expect("open");
    let one = |s: &str, i: u8| {
        block_on(append_ok(
            &store,
            req(s, ExpectedVersion::Any, vec![ev("T", &[i; 300])]),
        ))
    };
    one("zero", 0);
    for i in 0..5 {
        one("first", i); // positions 1..=5, hidden below
    }
    for i in 0..5 {
        one("second", i); // 6..=10
    }
    for i in 5..10 {
        one("first", i); // 11..=15
    }
    lifecycle(
        &store,
        LifecycleRequest::SetMetadata {
            stream: "first".into(),
            expected: ExpectedVersion::Any,
            metadata: StreamMetadata {
                truncate_before: Some(5),
                ..Default::default()
            },
        },
    );
    for i in 0..20 {
        one("filler", i);
    }
    store.start_scavenge().expect("start");
    assert_eq!(wait_done(&store).state, ScavengeState::Done);
    let first = stream_events(&store, "first", Direction::Forwards);
    let second = stream_events(&store, "second", Direction::Forwards);
    assert_eq!(first.len(), 5);
    assert_eq!(second.len(), 5);
    store.close().expect("close");
    drop(store);
    // What a crash after sled stored the runs but before it stored the
    // heads and the covered position leaves.
    {
        // The engine's threads let go of sled's lock as they end, which
        // can be a moment after the store is dropped.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let db = loop {
            match sled::open(tmp.path().join("index")) {
                Ok(db) => break db,
                Err(e) if std::time::Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => panic!("sled: {e:?}"),
            }
        };
        let streams = db.open_tree("streams").expect("streams");
        for s in ["first", "second", "$$first", "filler"] {
            streams.remove(s).expect("remove");
        }
        let meta = db.open_tree("meta").expect("meta");
        meta.insert("covered", &1u64.to_be_bytes())
            .expect("covered");
        db.flush().expect("flush");
    }
    let store = Store::open(config(tmp.path(), 4096)).expect("reopen");
    let keys = |v: &[RecordedEvent]| v.iter().map(key).collect::<Vec<_>>();
    assert_eq!(
        keys(&stream_events(&store, "second", Direction::Forwards)),
        keys(&second)
    );
    assert_eq!(
        keys(&stream_events(&store, "first", Direction::Forwards)),
        keys(&first)
    );
    assert_eq!(
        keys(&stream_events(&store, "first", Direction::Backwards)),
        keys(&first).into_iter().rev().collect::<Vec<_>>()
    );
}

/// Catch-up subscriptions that read through segments while a scavenge
/// replaces them get every visible event once, in order.
#[test]
fn catch_ups_read_on_while_a_scavenge_replaces_their_segments() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path(), SEGMENT_SIZE);
    cfg.read_batch = 16;
    let store = Store::open(cfg).expect("open");
    fill(&store);
    delete_and_seal(&store, (0..STREAMS).step_by(2));
    let want_all: Vec<EventKey> = all_forwards(&store).iter().map(key).collect();
    let want_one: Vec<EventKey> = stream_events(&store, &name(1), Direction::Forwards)
        .iter()
        .map(key)
        .collect();
    let rt = runtime();
    let got = rt.block_on(async {
        let subscribe = |target| store.subscribe(target, SubscribeFrom::Start);
        let mut all = subscribe(SubscriptionTarget::All(Filter::default()))
            .await
            .expect("subscribe $all");
        let mut one = subscribe(SubscriptionTarget::Stream(name(1)))
            .await
            .expect("subscribe");
        store.start_scavenge().expect("start");
        let mut got = (Vec::new(), Vec::new());
        for (sub, out) in [(&mut all, &mut got.0), (&mut one, &mut got.1)] {
            loop {
                match sub.next().await.expect("next") {
                    Some(SubscriptionMessage::Events(batch)) => {
                        out.extend(batch.iter().map(key));
                        // Slow enough that the scavenge overtakes.
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Some(SubscriptionMessage::CaughtUp { .. }) => break,
                    Some(_) => {}
                    None => panic!("the subscription ended"),
                }
            }
        }
        got
    });
    let status = wait_done(&store);
    assert_eq!(status.state, ScavengeState::Done, "{status:?}");
    assert!(status.events_removed > 0);
    assert_eq!(got.0, want_all);
    assert_eq!(got.1, want_one);
}

/// Events past `max_age` are removed like any hidden event; the stream's
/// last one stays (hidden) and the stream goes on from it.
#[test]
fn a_scavenge_removes_events_past_their_max_age() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(tmp.path(), 4096)).expect("open");
    for i in 0..30u8 {
        block_on(append_ok(
            &store,
            req("telemetry", ExpectedVersion::Any, vec![ev("T", &[i; 300])]),
        ));
    }
    lifecycle(
        &store,
        LifecycleRequest::SetMetadata {
            stream: "telemetry".into(),
            expected: ExpectedVersion::Any,
            metadata: StreamMetadata {
                max_age: Some(Duration::from_millis(50)),
                ..Default::default()
            },
        },
    );
    std::thread::sleep(Duration::from_millis(100));
    for i in 0..12u8 {
        block_on(append_ok(
            &store,
            req("other", ExpectedVersion::Any, vec![ev("T", &[i; 300])]),
        ));
    }
    assert!(stream_events(&store, "telemetry", Direction::Forwards).is_empty());
    let files_before = segment_files(tmp.path());
    let before = disk_use(tmp.path(), Some(&files_before));
    store.start_scavenge().expect("start");
    let status = wait_done(&store);
    assert_eq!(status.state, ScavengeState::Done, "{status:?}");
    // Of 30 events, at most the last of the stream and the last of each
    // segment stay.
    assert!(status.events_removed >= 20, "{status:?}");
    assert!(disk_use(tmp.path(), Some(&files_before)) < before);
    let (revision, _) = block_on(append_ok(
        &store,
        req(
            "telemetry",
            ExpectedVersion::Exact(29),
            vec![ev("T", b"new")],
        ),
    ));
    assert_eq!(revision, 30);
    assert_eq!(
        stream_events(&store, "telemetry", Direction::Forwards).len(),
        1
    );
}
