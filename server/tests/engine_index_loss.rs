//! The index is derived: deleting it, or putting back an old copy of it,
//! must give back exactly the same store, including the event-id index that
//! makes retries idempotent.

mod engine_support;

use std::path::Path;

use engine_support::*;
use strata_server::store::*;

const SEGMENT_SIZE: u64 = 4096;
const STREAMS: [&str; 5] = ["acct-1", "acct-2", "order-1", "user-1", "user-22"];

/// Everything a client can observe through reads.
#[derive(Debug, PartialEq)]
struct Snapshot {
    head: u64,
    streams: u64,
    all_forwards: Vec<RecordedEvent>,
    all_backwards: Vec<RecordedEvent>,
    /// Per stream: forwards and backwards.
    by_stream: Vec<(String, Vec<RecordedEvent>, Vec<RecordedEvent>)>,
    filtered: Vec<Vec<RecordedEvent>>,
}

fn snapshot(store: &Store, streams: &[&str]) -> Snapshot {
    let filters = [
        (vec!["acct-"], vec![]),
        (vec!["user-2", "order-"], vec!["Big"]),
        (vec![], vec!["Sm"]),
    ];
    let mut filtered = Vec::new();
    for (s, t) in filters {
        let filter = Filter {
            stream_prefixes: s.iter().map(|x| x.to_string()).collect(),
            event_type_prefixes: t.iter().map(|x: &&str| x.to_string()).collect(),
            gate: None,
        };
        for dir in [Direction::Forwards, Direction::Backwards] {
            let from = if dir == Direction::Forwards {
                ReadFrom::Start
            } else {
                ReadFrom::End
            };
            filtered.push(collect(
                block_on(store.read_all(dir, from, 0, filter.clone())).expect("read"),
            ));
        }
    }
    Snapshot {
        head: store.head_position(),
        streams: stats(store).streams,
        all_forwards: all_forwards(store),
        all_backwards: all_backwards(store),
        by_stream: streams
            .iter()
            .map(|s| {
                (
                    s.to_string(),
                    stream_events(store, s, Direction::Forwards),
                    stream_events(store, s, Direction::Backwards),
                )
            })
            .collect(),
        filtered,
    }
}

/// Appends `count` appends round-robin over `streams`, returning each with its answer.
async fn fill(
    store: &Store,
    streams: &[&str],
    count: usize,
    salt: usize,
) -> Vec<(AppendRequest, AppendOutcome)> {
    let mut done = Vec::new();
    for i in 0..count {
        let n = 1 + (i + salt) % 4;
        let events = (0..n)
            .map(|k| {
                let big = (i + k) % 3 == 0;
                ev(
                    if big { "BigThing" } else { "Small" },
                    &vec![(i + salt) as u8; if big { 150 } else { 10 }],
                )
            })
            .collect();
        let r = req(
            streams[(i + salt) % streams.len()],
            ExpectedVersion::Any,
            events,
        );
        let out = store.append(r.clone()).await.expect("append");
        assert!(matches!(out, AppendOutcome::Success { .. }), "{out:?}");
        done.push((r, out));
    }
    done
}

/// Every earlier append, retried with an expected version that would now
/// fail, answers with its original success and writes nothing.
async fn retries_answer_as_before(store: &Store, done: &[(AppendRequest, AppendOutcome)]) {
    let head = store.head_position();
    for (r, original) in done {
        let mut retry = r.clone();
        retry.expected = ExpectedVersion::NoStream;
        let got = store.append(retry).await.expect("retry");
        assert_eq!(got, *original, "retry of {r:?}");
    }
    assert_eq!(store.head_position(), head, "retries wrote nothing");
    // An old id reused in another stream is still recognised.
    let (r, _) = &done[0];
    let reuse = req("elsewhere", ExpectedVersion::Any, vec![r.events[0].clone()]);
    assert!(
        matches!(
            store.append(reuse).await,
            Err(AppendError::DuplicateEventId { .. })
        ),
        "a reused id is still known"
    );
}

fn open(dir: &Path) -> Store {
    Store::open(config(dir, SEGMENT_SIZE)).expect("open")
}

#[test]
fn deleting_the_index_rebuilds_the_same_store() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let store = open(dir);
    let done = rt.block_on(fill(&store, &STREAMS, 60, 0));
    assert!(stats(&store).segments >= 4, "{:?}", stats(&store));
    let before = snapshot(&store, &STREAMS);
    assert_eq!(before.head, before.all_forwards.len() as u64);
    store.close().expect("close");
    drop(store);

    std::fs::remove_dir_all(dir.join("index")).expect("rm index");
    let store = open(dir);
    assert_eq!(
        snapshot(&store, &STREAMS),
        before,
        "reads after the rebuild"
    );
    assert_eq!(stats(&store).indexed_position, before.head);
    rt.block_on(retries_answer_as_before(&store, &done));
    // Stream heads were rebuilt too: exact expected versions still hold.
    let last_rev = before.by_stream[0].1.last().expect("events").revision;
    let (rev, pos) = rt.block_on(append_ok(
        &store,
        req(
            STREAMS[0],
            ExpectedVersion::Exact(last_rev),
            vec![ev("Small", b"next")],
        ),
    ));
    assert_eq!((rev, pos), (last_rev + 1, before.head));
    store.close().expect("close");
    drop(store);
    let report = verify(dir).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // The index keeps one location per append: verify checks each append's.
    assert!(
        report.index_checked > 0 && report.index_checked <= before.head + 1,
        "verify checked the rebuilt index: {}",
        report.index_checked
    );
}

/// A reopen keeps the index: the ids of sealed segments come from their
/// tables in sled, those of the newest segment, which only memory held,
/// are read back from the log. Retries answer as before either way, also
/// after a second reopen.
#[test]
fn retries_are_recognised_after_a_reopen() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let mut store = open(dir);
    let done = rt.block_on(fill(&store, &STREAMS, 60, 0));
    assert!(stats(&store).segments >= 4, "{:?}", stats(&store));
    let head = store.head_position();
    for _ in 0..2 {
        store.close().expect("close");
        drop(store);
        store = open(dir);
        assert_eq!(store.head_position(), head);
        rt.block_on(retries_answer_as_before(&store, &done));
    }
}

/// An index copied from an earlier point of the same log (as after a crash
/// that lost sled's recent writes) is caught up by replaying the log past
/// what it covers, across several segments, new streams included.
#[test]
fn a_stale_index_is_caught_up_from_the_log() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("data");
    let store = open(&dir);
    let mut done = rt.block_on(fill(&store, &STREAMS[..3], 25, 0));
    store.close().expect("close");
    drop(store);
    let old_index = tmp.path().join("old-index");
    copy_dir(&dir.join("index"), &old_index);

    let store = open(&dir);
    let segments = stats(&store).segments;
    done.extend(rt.block_on(fill(&store, &STREAMS, 40, 1)));
    assert!(
        stats(&store).segments >= segments + 2,
        "the new appends span segments"
    );
    let before = snapshot(&store, &STREAMS);
    store.close().expect("close");
    drop(store);

    std::fs::remove_dir_all(dir.join("index")).expect("rm index");
    copy_dir(&old_index, &dir.join("index"));
    let store = open(&dir);
    assert_eq!(
        snapshot(&store, &STREAMS),
        before,
        "reads after catching up"
    );
    rt.block_on(retries_answer_as_before(&store, &done));
    for (name, events, _) in &before.by_stream {
        let last = events.last().expect("events").revision;
        let out = rt
            .block_on(store.append(req(
                name,
                ExpectedVersion::Exact(last),
                vec![ev("Small", b"n")],
            )))
            .expect("append");
        assert!(
            matches!(out, AppendOutcome::Success { next_expected_revision, .. } if next_expected_revision == last + 1),
            "{name}: head after catching up: {out:?}"
        );
    }
}
