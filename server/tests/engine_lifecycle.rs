//! Opening, closing and refusing: the directory lock, appends after close,
//! a writer poisoned by a failed segment roll, and requests that are
//! rejected before they change anything.

mod engine_support;

use engine_support::*;
use strata_server::store::*;

const SEGMENT_SIZE: u64 = 4096;

#[test]
fn a_second_open_of_the_same_directory_is_locked() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("open");
    match Store::open(config(tmp.path(), SEGMENT_SIZE)) {
        Err(OpenError::Locked(dir)) => assert_eq!(dir, tmp.path()),
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    // The refused open disturbed nothing.
    rt.block_on(append_ok(
        &first,
        req("s", ExpectedVersion::NoStream, vec![ev("T", b"1")]),
    ));
    assert_eq!(first.head_position(), 1);
    // verify is offline only.
    assert!(matches!(verify(tmp.path()), Err(OpenError::Locked(_))));
    first.close().expect("close");
    // Closed but not dropped: still holds the directory.
    assert!(matches!(
        Store::open(config(tmp.path(), SEGMENT_SIZE)),
        Err(OpenError::Locked(_))
    ));
    drop(first);
    let second = Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("open after drop");
    assert_eq!(second.head_position(), 1);
}

#[test]
fn after_close_appends_are_refused_and_reads_work() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("open");
    rt.block_on(append_ok(
        &store,
        req(
            "s",
            ExpectedVersion::Any,
            vec![ev("T", b"1"), ev("T", b"2")],
        ),
    ));
    assert!(!store.is_closed());
    store.close().expect("close");
    assert!(store.is_closed());
    store.close().expect("close is idempotent");
    let refused = rt.block_on(store.append(req("s", ExpectedVersion::Any, vec![ev("T", b"3")])));
    assert!(
        matches!(refused, Err(AppendError::ShuttingDown)),
        "{refused:?}"
    );
    assert_eq!(store.head_position(), 2);
    assert_eq!(stream_events(&store, "s", Direction::Forwards).len(), 2);
    assert_eq!(all_forwards(&store).len(), 2);
}

#[test]
fn dropping_the_store_closes_it_durably() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("open");
    for i in 0..50u8 {
        rt.block_on(append_ok(
            &store,
            req("s", ExpectedVersion::Any, vec![ev("T", &[i; 100])]),
        ));
    }
    let before = all_forwards(&store);
    drop(store);
    let store = Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("reopen");
    assert_eq!(all_forwards(&store), before);
}

/// Without a fault-injection layer, a failing segment roll: a directory
/// sits where the next segment file must go. The append that needs the new
/// segment fails, the writer refuses every later append, reads keep
/// working, and after a restart nothing of the failed append is there.
#[test]
fn a_failed_roll_poisons_the_writer_but_not_the_reads() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let store = Store::open(config(dir, SEGMENT_SIZE)).expect("open");
    for i in 0..5u8 {
        rt.block_on(append_ok(
            &store,
            req("s", ExpectedVersion::Any, vec![ev("T", &[i; 100])]),
        ));
    }
    let head = store.head_position();
    let before = all_forwards(&store);
    let blocker = dir.join("log").join(format!("{head:020}.seg"));
    std::fs::create_dir_all(blocker.join("in-the-way")).expect("mkdir");

    // Too large for what is left of the segment: it must roll.
    let big = req("s", ExpectedVersion::Any, vec![ev("T", &[9; 3900])]);
    let failed = rt.block_on(store.append(big.clone()));
    assert!(
        matches!(failed, Err(AppendError::Poisoned(_))),
        "{failed:?}"
    );
    assert!(store.poisoned().is_some());
    let small = rt.block_on(store.append(req("s", ExpectedVersion::Any, vec![ev("T", b"x")])));
    assert!(matches!(small, Err(AppendError::Poisoned(_))), "{small:?}");
    assert_eq!(store.head_position(), head, "nothing was acknowledged");
    assert_eq!(all_forwards(&store), before, "reads still work");
    assert_eq!(
        stream_events(&store, "s", Direction::Backwards).len(),
        before.len()
    );
    store.close().expect("close a poisoned store");
    drop(store);

    std::fs::remove_dir_all(&blocker).expect("rm blocker");
    let store = Store::open(config(dir, SEGMENT_SIZE)).expect("reopen");
    assert!(store.poisoned().is_none(), "a restart clears the poison");
    assert_eq!(all_forwards(&store), before, "nothing of the failed append");
    // The failed append's ids were never written: it can be made now.
    let (_, pos) = rt.block_on(append_ok(&store, big));
    assert_eq!(pos, head);
}

#[test]
fn invalid_requests_change_nothing() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cfg = config(tmp.path(), SEGMENT_SIZE);
    cfg.limits.max_event_bytes = 1000;
    cfg.limits.max_append_events = 3;
    let store = Store::open(cfg).expect("open");
    rt.block_on(append_ok(
        &store,
        req("s", ExpectedVersion::Any, vec![ev("T", b"1")]),
    ));
    let twice = ev("T", b"x");
    let invalid = [
        req("$system", ExpectedVersion::Any, vec![ev("T", b"x")]),
        req("", ExpectedVersion::Any, vec![ev("T", b"x")]),
        req("a\u{7}b", ExpectedVersion::Any, vec![ev("T", b"x")]),
        req(&"n".repeat(256), ExpectedVersion::Any, vec![ev("T", b"x")]),
        req("s", ExpectedVersion::Any, vec![]),
        req("s", ExpectedVersion::Any, vec![ev("", b"x")]),
        req("s", ExpectedVersion::Any, vec![twice.clone(), twice]),
    ];
    for r in invalid {
        let got = rt.block_on(store.append(r.clone()));
        assert!(
            matches!(got, Err(AppendError::InvalidArgument(_))),
            "{r:?}: {got:?}"
        );
    }
    let too_big =
        rt.block_on(store.append(req("s", ExpectedVersion::Any, vec![ev("T", &[0; 1001])])));
    assert!(
        matches!(too_big, Err(AppendError::TooLarge { .. })),
        "{too_big:?}"
    );
    let too_many = rt.block_on(store.append(req(
        "s",
        ExpectedVersion::Any,
        (0..4).map(|_| ev("T", b"x")).collect(),
    )));
    assert!(
        matches!(
            too_many,
            Err(AppendError::TooManyEvents {
                actual: 4,
                limit: 3
            })
        ),
        "{too_many:?}"
    );
    assert_eq!(store.head_position(), 1);
    assert_eq!(all_forwards(&store).len(), 1);
    assert!(matches!(
        block_on(store.read_stream("missing", Direction::Forwards, ReadFrom::Start, 0)),
        Err(ReadError::StreamNotFound(_))
    ));
    // Reserved names can be read (they just do not exist here).
    assert!(matches!(
        block_on(store.read_stream("$system", Direction::Forwards, ReadFrom::Start, 0)),
        Err(ReadError::StreamNotFound(_))
    ));
    assert!(matches!(
        block_on(store.read_stream("", Direction::Forwards, ReadFrom::Start, 0)),
        Err(ReadError::InvalidArgument(_))
    ));
}

/// Closing while appends are in flight: every append either succeeds or is
/// refused with `ShuttingDown`, and after a restart the log holds exactly
/// the acknowledged appends, whole, at the positions they were given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_during_appends_keeps_exactly_the_acknowledged_ones() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = std::sync::Arc::new(Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("open"));
    let mut tasks = Vec::new();
    for t in 0..8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            // Until the store refuses: the close below always comes first.
            for i in 0.. {
                let events: Vec<NewEvent> =
                    (0..1 + i % 2).map(|_| ev("T", &[t as u8; 20])).collect();
                let ids: Vec<EventId> = events.iter().map(|e| e.id).collect();
                match store
                    .append(req(&format!("s-{t}"), ExpectedVersion::Any, events))
                    .await
                {
                    Ok(AppendOutcome::Success { position, .. }) => acked.push((position, ids)),
                    Ok(other) => panic!("unexpected {other:?}"),
                    Err(AppendError::ShuttingDown) => break,
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            acked
        }));
    }
    while store.head_position() < 100 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    let closer = store.clone();
    tokio::task::spawn_blocking(move || closer.close())
        .await
        .expect("join")
        .expect("close");
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("task"));
    }
    assert!(
        acked.len() >= 50,
        "appends were acknowledged before the close"
    );
    drop(store);

    let store = Store::open(config(tmp.path(), SEGMENT_SIZE)).expect("reopen");
    let log = tokio::task::block_in_place(|| all_forwards(&store));
    let mut want: Vec<(u64, EventId)> = acked
        .iter()
        .flat_map(|(last, ids)| {
            let first = last + 1 - ids.len() as u64;
            ids.iter()
                .enumerate()
                .map(move |(k, id)| (first + k as u64, *id))
        })
        .collect();
    want.sort();
    let got: Vec<(u64, EventId)> = log.iter().map(|e| (e.position, e.id)).collect();
    assert_eq!(got, want, "the log is exactly the acknowledged appends");
}
