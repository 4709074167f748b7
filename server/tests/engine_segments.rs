//! Segment boundaries: a segment filled to within a few bytes of its end,
//! exactly full, and appends larger than the segment size. Reads in every
//! direction, `verify`, and a full index rebuild must all get past them.

mod engine_support;

use engine_support::*;
use strata_server::store::*;

const SEGMENT_SIZE: u64 = 4096;
/// Frame header, event header, one-byte stream name and one-byte type.
const RECORD_OVERHEAD: u64 = 8 + 56 + 1 + 1;

fn check_reads(store: &Store, n: u64, what: &str) {
    let fwd = all_forwards(store);
    assert_eq!(
        fwd.iter().map(|e| e.position).collect::<Vec<_>>(),
        (0..n).collect::<Vec<_>>(),
        "{what}: $all forwards"
    );
    let mut bwd = all_backwards(store);
    bwd.reverse();
    assert_eq!(bwd, fwd, "{what}: $all backwards");
    let filtered = collect(
        block_on(store.read_all(
            Direction::Forwards,
            ReadFrom::Start,
            0,
            Filter {
                stream_prefixes: vec!["t".into()],
                event_type_prefixes: vec![],
                gate: None,
            },
        ))
        .expect("filtered read"),
    );
    let want: Vec<_> = fwd.iter().filter(|e| &*e.stream == "t").cloned().collect();
    assert_eq!(filtered, want, "{what}: filtered $all");
    assert_eq!(
        stream_events(store, "t", Direction::Forwards),
        want,
        "{what}: stream t"
    );
}

/// The first segment ends with `free` unused bytes (0 to 9), then the log
/// continues in a second segment.
#[test]
fn segment_filled_to_within_a_few_bytes_of_its_end() {
    let rt = runtime();
    for free in 0..10u64 {
        let what = format!("{free} bytes free");
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let store = Store::open(config(dir, SEGMENT_SIZE)).expect("open");
        let fill = SEGMENT_SIZE - SEGMENT_HEADER - free - RECORD_OVERHEAD;
        let big = vec![b'x'; fill as usize];
        rt.block_on(append_ok(
            &store,
            req("s", ExpectedVersion::Any, vec![ev("T", &big)]),
        ));
        rt.block_on(append_ok(
            &store,
            req("t", ExpectedVersion::Any, vec![ev("T", b"1")]),
        ));
        rt.block_on(append_ok(
            &store,
            req("t", ExpectedVersion::Any, vec![ev("T", b"2")]),
        ));
        let segs = segment_files(dir);
        assert_eq!(segs.len(), 2, "{what}: the second append rolled");
        let first = frames(&segs[0]);
        assert_eq!(first.len(), 1, "{what}");
        assert_eq!(
            first[0].end(),
            SEGMENT_SIZE - free,
            "{what}: the fill is exact"
        );
        check_reads(&store, 3, &what);
        store.close().expect("close");
        drop(store);

        let report = verify(dir).expect("verify");
        assert!(
            report.problems.is_empty(),
            "{what}: verify: {:?}",
            report.problems
        );
        assert_eq!(report.records, 3, "{what}");

        std::fs::remove_dir_all(dir.join("index")).expect("rm index");
        let store = Store::open(config(dir, SEGMENT_SIZE))
            .unwrap_or_else(|e| panic!("{what}: rebuild: {e}"));
        assert_eq!(store.head_position(), 3, "{what}: head after rebuild");
        check_reads(&store, 3, &format!("{what}, rebuilt"));
        let (rev, pos) = rt.block_on(append_ok(
            &store,
            req("t", ExpectedVersion::Exact(1), vec![ev("T", b"3")]),
        ));
        assert_eq!((rev, pos), (2, 3), "{what}");
        check_reads(&store, 4, &format!("{what}, after another append"));
    }
}

/// An append larger than the segment size gets a segment of its own, both
/// as the very first append (replacing the empty first segment) and later.
#[test]
fn appends_larger_than_a_segment() {
    let rt = runtime();
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let big = |b: u8| vec![b; 3 * SEGMENT_SIZE as usize];
    let store = Store::open(config(dir, SEGMENT_SIZE)).expect("open");
    rt.block_on(append_ok(
        &store,
        req("t", ExpectedVersion::NoStream, vec![ev("T", &big(1))]),
    ));
    rt.block_on(append_ok(
        &store,
        req("s", ExpectedVersion::Any, vec![ev("T", b"small")]),
    ));
    rt.block_on(append_ok(
        &store,
        req(
            "t",
            ExpectedVersion::Exact(0),
            vec![ev("T", &big(2)), ev("T", &big(3))],
        ),
    ));
    rt.block_on(append_ok(
        &store,
        req("t", ExpectedVersion::Exact(2), vec![ev("T", b"tail")]),
    ));
    check_reads(&store, 5, "oversized");
    let fwd = all_forwards(&store);
    assert_eq!(fwd[0].data.len(), 3 * SEGMENT_SIZE as usize);
    assert!(fwd[0].data.iter().all(|b| *b == 1));
    assert!(fwd[3].data.iter().all(|b| *b == 3));
    store.close().expect("close");
    drop(store);

    let report = verify(dir).expect("verify");
    assert!(report.problems.is_empty(), "verify: {:?}", report.problems);
    assert_eq!(report.records, 5);

    let store = Store::open(config(dir, SEGMENT_SIZE)).expect("reopen");
    assert_eq!(all_forwards(&store), fwd, "after reopen");
    store.close().expect("close");
    drop(store);
    std::fs::remove_dir_all(dir.join("index")).expect("rm index");
    let store = Store::open(config(dir, SEGMENT_SIZE)).expect("rebuild");
    assert_eq!(all_forwards(&store), fwd, "after rebuild");
    check_reads(&store, 5, "oversized, rebuilt");
}

/// Group-commit batches larger than a segment: many concurrent appends of a
/// few hundred bytes each, so that one batch is flushed part in one segment
/// and part in the next. Positions stay dense and every append whole, also
/// after a reopen and a full rebuild.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_that_span_segment_rolls() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let store = std::sync::Arc::new(Store::open(config(dir, SEGMENT_SIZE)).expect("open"));
    let mut tasks = Vec::new();
    for t in 0..16u8 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..12u8 {
                let events = (0..1 + i % 3).map(|_| ev("T", &[t; 300])).collect();
                append_ok(&store, req(&format!("s-{t}"), ExpectedVersion::Any, events)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let total: u64 = 16 * (0..12u64).map(|i| 1 + i % 3).sum::<u64>();
    assert_eq!(store.head_position(), total);
    assert!(stats(&store).segments > 10, "{:?}", stats(&store));
    let check = |store: &Store, what: &str| {
        let all = all_forwards(store);
        assert_eq!(
            all.iter().map(|e| e.position).collect::<Vec<_>>(),
            (0..total).collect::<Vec<_>>(),
            "{what}"
        );
        for t in 0..16u8 {
            let s = stream_events(store, &format!("s-{t}"), Direction::Forwards);
            assert_eq!(s.len() as u64, total / 16, "{what}");
            assert!(s.iter().enumerate().all(|(i, e)| e.revision == i as u64));
            assert!(s.iter().all(|e| e.data.iter().all(|b| *b == t)), "{what}");
        }
        all
    };
    let before = tokio::task::block_in_place(|| check(&store, "live"));
    store.close().expect("close");
    drop(store);
    let report = verify(dir).expect("verify");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    std::fs::remove_dir_all(dir.join("index")).expect("rm index");
    let store = Store::open(config(dir, SEGMENT_SIZE)).expect("rebuild");
    let after = tokio::task::block_in_place(|| check(&store, "rebuilt"));
    assert_eq!(after, before);
}
