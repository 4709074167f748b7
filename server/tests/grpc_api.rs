//! The `strata.v1.Streams` contract over real gRPC, in process: every RPC,
//! every `from` / direction / filter variant, expected versions, idempotent
//! retries and both event-id forms.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use strata_proto::v1;
use strata_proto::v1::append_response::Result as AppendResult;
use strata_proto::v1::subscribe_response::Content;
use strata_proto::v1::Direction::{Backwards as Bwd, Forwards as Fwd};

/// A server whose reads come back in batches of two events, so that every
/// read crosses batch boundaries.
async fn small_batch_server() -> TestServer {
    TestServer::start_with(|a| a.read_batch = 2).await
}

fn text_id(s: &str) -> v1::Uuid {
    v1::Uuid {
        value: Some(v1::uuid::Value::Text(s.into())),
    }
}

fn with_id(mut e: v1::EventData, id: v1::Uuid) -> v1::EventData {
    e.id = Some(id);
    e
}

fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

fn micros(ts: &prost_types::Timestamp) -> i64 {
    ts.seconds * 1_000_000 + i64::from(ts.nanos) / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_answers_and_recorded_events_carry_every_field() {
    let server = TestServer::start().await;
    let mut c = server.client.clone();
    let before = now_micros();

    let mut first = event("OrderPlaced", br#"{"total":3}"#);
    first.metadata = b"corr=1".to_vec().into();
    first.content_type = Some("application/json".into());
    let second = event("OrderPaid", b"\x00\x01binary");
    let ids = [
        first.id.clone().expect("id"),
        second.id.clone().expect("id"),
    ];
    let r = append(
        &mut c,
        "order-1",
        v1::ExpectedVersion::no_stream(),
        vec![first, second],
    )
    .await;
    assert_eq!(
        success(&r),
        (1, 1),
        "two events: last revision 1, last position 1"
    );
    let r = append_ok(
        &mut c,
        "other",
        v1::ExpectedVersion::any(),
        events(1, "T", "o"),
    )
    .await;
    assert_eq!(r, (0, 2), "first event of a second stream");
    let r = append_ok(
        &mut c,
        "order-1",
        v1::ExpectedVersion::exact(1),
        events(1, "OrderShipped", "s"),
    )
    .await;
    assert_eq!(r, (2, 3));
    let after = now_micros();

    let got = read(&mut c, stream_read("order-1", Fwd, None, 0)).await;
    assert_eq!(revisions(&got), [0, 1, 2]);
    assert_eq!(positions(&got), [0, 1, 3]);
    for e in &got {
        assert_eq!(e.stream, "order-1");
        let ts = e.recorded_at.as_ref().expect("recorded_at is set");
        let t = micros(ts);
        assert!(
            (before - 1_000_000..=after + 1_000_000).contains(&t),
            "recorded_at {t} outside [{before}, {after}]"
        );
        assert!((0..1_000_000_000).contains(&ts.nanos), "nanos in range");
    }
    assert_eq!(got[0].r#type, "OrderPlaced");
    assert_eq!(&got[0].data[..], br#"{"total":3}"#);
    assert_eq!(&got[0].metadata[..], b"corr=1");
    assert_eq!(got[0].content_type, "application/json");
    assert_eq!(got[1].r#type, "OrderPaid");
    assert_eq!(&got[1].data[..], b"\x00\x01binary");
    assert!(got[1].metadata.is_empty());
    assert_eq!(got[1].content_type, "", "no content type given: empty");
    assert_eq!(
        got[0].recorded_at, got[1].recorded_at,
        "events of one append share their timestamp"
    );
    for (e, sent) in got.iter().zip(&ids) {
        let want = sent.to_bytes().expect("valid id");
        assert_eq!(id_bytes(e), want);
        // The server answers with the lowercase hyphenated text form.
        assert_eq!(
            e.id.as_ref().and_then(|i| i.value.clone()),
            Some(v1::uuid::Value::Text(v1::format_uuid(&want)))
        );
    }

    let s = stats_once_indexed(&mut c).await;
    assert_eq!(s.head_position, 4);
    assert_eq!(s.events, 4);
    assert_eq!(s.streams, 2);
    assert_eq!(s.indexed_position, 4);
    assert!(s.disk_bytes > 0);
    assert!(s.format_version >= 1);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_are_accepted_raw_and_as_text() {
    let server = TestServer::start().await;
    let mut c = server.client.clone();
    let raw = new_id();
    let upper = new_id();
    let simple = new_id();
    let sent = vec![
        with_id(event("T", b"raw"), v1::Uuid::from_bytes_raw(raw)),
        with_id(
            event("T", b"upper"),
            text_id(&v1::format_uuid(&upper).to_uppercase()),
        ),
        with_id(
            event("T", b"simple"),
            text_id(&v1::format_uuid(&simple).replace('-', "")),
        ),
    ];
    let r = append_ok(&mut c, "ids", v1::ExpectedVersion::no_stream(), sent).await;
    assert_eq!(r, (2, 2));
    let got = read(&mut c, stream_read("ids", Fwd, None, 0)).await;
    let want = [raw, upper, simple];
    for (e, w) in got.iter().zip(want) {
        assert_eq!(
            e.id.as_ref().and_then(|i| i.value.clone()),
            Some(v1::uuid::Value::Text(v1::format_uuid(&w))),
            "answered in lowercase hyphenated text"
        );
    }

    // The same ids in the other forms are the same ids: a retry.
    let retry = vec![
        with_id(event("T", b"raw"), text_id(&v1::format_uuid(&raw))),
        with_id(event("T", b"upper"), v1::Uuid::from_bytes_raw(upper)),
        with_id(event("T", b"simple"), v1::Uuid::from_bytes(simple)),
    ];
    let r = append_ok(&mut c, "ids", v1::ExpectedVersion::any(), retry).await;
    assert_eq!(r, (2, 2), "a retry in other id forms returns the original");
    assert_eq!(stats(&mut c).await.head_position, 3, "nothing written");
}

fn conflict(r: &AppendResult) -> (Option<u64>, v1::ExpectedVersion) {
    match r {
        AppendResult::WrongExpectedVersion(w) => {
            (w.current_revision, w.expected.expect("expected is echoed"))
        }
        other => panic!("expected wrong_expected_version, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_expected_version_kind_succeeds_or_conflicts() {
    use v1::ExpectedVersion as E;
    let server = TestServer::start().await;
    let mut c = server.client.clone();

    enum Want {
        Ok(u64),
        Conflict(Option<u64>),
    }
    // (stream, expected, outcome), applied in order.
    let steps: Vec<(&str, E, Want)> = vec![
        // The stream does not exist: only `any` and `no_stream` hold.
        ("s", E::exact(0), Want::Conflict(None)),
        ("s", E::stream_exists(), Want::Conflict(None)),
        ("s", E::no_stream(), Want::Ok(0)),
        // It exists with last revision 0.
        ("s", E::no_stream(), Want::Conflict(Some(0))),
        ("s", E::exact(1), Want::Conflict(Some(0))),
        ("s", E::exact(5), Want::Conflict(Some(0))),
        ("s", E::exact(0), Want::Ok(1)),
        ("s", E::stream_exists(), Want::Ok(2)),
        ("s", E::any(), Want::Ok(3)),
        ("s", E::exact(2), Want::Conflict(Some(3))),
        ("s", E::exact(3), Want::Ok(4)),
        // `any` creates a stream too.
        ("t", E::any(), Want::Ok(0)),
        ("t", E::no_stream(), Want::Conflict(Some(0))),
    ];
    let mut head = 0;
    for (stream, expected, want) in steps {
        let what = format!("{stream} {expected}");
        let r = append(&mut c, stream, expected, events(1, "T", &what)).await;
        match want {
            Want::Ok(rev) => {
                assert_eq!(success(&r), (rev, head), "{what}");
                head += 1;
            }
            Want::Conflict(current) => {
                let (cur, echoed) = conflict(&r);
                assert_eq!(cur, current, "{what}: current_revision");
                assert_eq!(echoed, expected, "{what}: expected echoed back");
            }
        }
        assert_eq!(stats(&mut c).await.head_position, head, "{what}: head");
    }
    let s = read(&mut c, stream_read("s", Fwd, None, 0)).await;
    assert_eq!(revisions(&s), [0, 1, 2, 3, 4], "conflicts wrote nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_return_the_original_success_and_write_nothing() {
    use v1::ExpectedVersion as E;
    let server = TestServer::start().await;
    let mut c = server.client.clone();
    let batch = events(3, "Paid", "p");
    let first = append_ok(&mut c, "pay-1", E::no_stream(), batch.clone()).await;
    assert_eq!(first, (2, 2));
    append_ok(&mut c, "pay-2", E::any(), events(2, "T", "q")).await;
    append_ok(&mut c, "pay-1", E::exact(2), events(1, "Refunded", "r")).await;
    let head = stats(&mut c).await.head_position;
    assert_eq!(head, 6);

    // Whatever the retry's expectation, now right or wrong.
    for expected in [
        E::no_stream(),
        E::any(),
        E::stream_exists(),
        E::exact(0),
        E::exact(2),
        E::exact(3),
        E::exact(99),
    ] {
        let r = append(&mut c, "pay-1", expected, batch.clone()).await;
        assert_eq!(success(&r), first, "retry with {expected}");
        assert_eq!(
            stats(&mut c).await.head_position,
            head,
            "retry with {expected} wrote"
        );
    }
    let got = read(&mut c, stream_read("pay-1", Fwd, None, 0)).await;
    assert_eq!(revisions(&got), [0, 1, 2, 3]);

    // Identical appends racing each other are written once.
    let fresh = events(2, "Raced", "x");
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let mut c = server.connect().await;
        let fresh = fresh.clone();
        tasks.push(tokio::spawn(async move {
            success(&append(&mut c, "race", E::any(), fresh).await)
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("task"));
    }
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "every racing retry gets the same answer: {answers:?}"
    );
    assert_eq!(answers[0].0, 1);
    let race = read(&mut c, stream_read("race", Fwd, None, 0)).await;
    assert_eq!(race.len(), 2, "written once");
    assert_eq!(stats(&mut c).await.head_position, head + 2);

    // The same ids sent to another stream, or mixed with new ids, are not a
    // retry: rejected, nothing written.
    let head = stats(&mut c).await.head_position;
    let other = c.append(append_req("pay-3", E::any(), batch.clone())).await;
    assert!(other.is_err(), "reused ids on another stream: {other:?}");
    // (An append is identified by its first event id.)
    let mut mixed = batch.clone();
    mixed.pop();
    mixed.push(event("T", b"new"));
    let mixed = c.append(append_req("pay-1", E::any(), mixed)).await;
    assert!(mixed.is_err(), "reused ids mixed with new ones: {mixed:?}");
    assert_eq!(stats(&mut c).await.head_position, head);
}

/// Stream `s` holds revisions 0..5 at positions [0, 2, 3, 5, 6]; stream
/// `noise` holds positions 1 and 4.
async fn interleaved(c: &mut Client) -> HashMap<u64, [u8; 16]> {
    use v1::ExpectedVersion as E;
    let mut ids = HashMap::new();
    let mut put = |evs: &[v1::EventData], last: u64| {
        for (i, e) in evs.iter().enumerate() {
            let id = e.id.as_ref().expect("id").to_bytes().expect("valid");
            ids.insert(last + 1 + i as u64 - evs.len() as u64, id);
        }
    };
    for (stream, n) in [
        ("s", 1),
        ("noise", 1),
        ("s", 2),
        ("noise", 1),
        ("s", 1),
        ("s", 1),
    ] {
        let evs = events(n, if stream == "s" { "S" } else { "N" }, stream);
        let (_, last) = append_ok(c, stream, E::any(), evs.clone()).await;
        put(&evs, last);
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_stream_every_direction_start_and_limit() {
    use v1::ReadFrom as F;
    let server = small_batch_server().await;
    let mut c = server.client.clone();
    let ids = interleaved(&mut c).await;
    let pos_of_rev = [0u64, 2, 3, 5, 6];

    let cases: Vec<(v1::Direction, Option<F>, u64, Vec<u64>)> = vec![
        (Fwd, None, 0, vec![0, 1, 2, 3, 4]),
        (Fwd, Some(F::start()), 0, vec![0, 1, 2, 3, 4]),
        (Fwd, Some(F::revision(0)), 0, vec![0, 1, 2, 3, 4]),
        (Fwd, Some(F::revision(2)), 0, vec![2, 3, 4]),
        (Fwd, Some(F::revision(4)), 0, vec![4]),
        (Fwd, Some(F::revision(5)), 0, vec![]),
        (Fwd, Some(F::end()), 0, vec![]),
        (Fwd, Some(F::start()), 2, vec![0, 1]),
        (Fwd, Some(F::revision(1)), 3, vec![1, 2, 3]),
        (Fwd, Some(F::start()), 100, vec![0, 1, 2, 3, 4]),
        (Fwd, None, 5, vec![0, 1, 2, 3, 4]),
        (Bwd, None, 0, vec![4, 3, 2, 1, 0]),
        (Bwd, Some(F::end()), 0, vec![4, 3, 2, 1, 0]),
        (Bwd, Some(F::revision(4)), 0, vec![4, 3, 2, 1, 0]),
        (Bwd, Some(F::revision(2)), 0, vec![2, 1, 0]),
        (Bwd, Some(F::revision(0)), 0, vec![0]),
        (Bwd, Some(F::start()), 0, vec![0]),
        (Bwd, Some(F::end()), 2, vec![4, 3]),
        (Bwd, Some(F::revision(3)), 10, vec![3, 2, 1, 0]),
        (Bwd, Some(F::revision(3)), 1, vec![3]),
    ];
    for (dir, from, max, want) in cases {
        let what = format!("{dir:?} from {from:?} max {max}");
        let got = read(&mut c, stream_read("s", dir, from, max)).await;
        assert_eq!(revisions(&got), want, "{what}");
        for e in &got {
            assert_eq!(e.stream, "s", "{what}");
            assert_eq!(e.position, pos_of_rev[e.revision as usize], "{what}");
            assert_eq!(id_bytes(e), ids[&e.position], "{what}: id");
            assert!(e.recorded_at.is_some(), "{what}: recorded_at");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_every_direction_start_and_limit() {
    use v1::ReadFrom as F;
    let server = small_batch_server().await;
    let mut c = server.client.clone();
    let ids = interleaved(&mut c).await;
    let all: Vec<u64> = (0..7).collect();
    let rev: Vec<u64> = all.iter().rev().copied().collect();

    let cases: Vec<(v1::Direction, Option<F>, u64, Vec<u64>)> = vec![
        (Fwd, None, 0, all.clone()),
        (Fwd, Some(F::start()), 0, all.clone()),
        (Fwd, Some(F::position(0)), 0, all.clone()),
        (Fwd, Some(F::position(3)), 0, vec![3, 4, 5, 6]),
        (Fwd, Some(F::position(6)), 0, vec![6]),
        (Fwd, Some(F::position(7)), 0, vec![]),
        (Fwd, Some(F::end()), 0, vec![]),
        (Fwd, Some(F::start()), 3, vec![0, 1, 2]),
        (Fwd, Some(F::position(2)), 2, vec![2, 3]),
        (Fwd, None, 70, all.clone()),
        (Bwd, None, 0, rev.clone()),
        (Bwd, Some(F::end()), 0, rev.clone()),
        (Bwd, Some(F::position(6)), 0, rev.clone()),
        (Bwd, Some(F::position(3)), 0, vec![3, 2, 1, 0]),
        (Bwd, Some(F::position(0)), 0, vec![0]),
        (Bwd, Some(F::start()), 0, vec![0]),
        (Bwd, Some(F::end()), 3, vec![6, 5, 4]),
        (Bwd, Some(F::position(5)), 2, vec![5, 4]),
    ];
    let by_stream = read(&mut c, stream_read("s", Fwd, None, 0)).await;
    for (dir, from, max, want) in cases {
        let what = format!("$all {dir:?} from {from:?} max {max}");
        let got = read(&mut c, all_read(dir, from, max, None)).await;
        assert_eq!(positions(&got), want, "{what}");
        for e in &got {
            assert_eq!(id_bytes(e), ids[&e.position], "{what}: id");
            if let Some(same) = by_stream.iter().find(|s| s.position == e.position) {
                assert_eq!(e, same, "{what}: $all and stream reads agree");
            } else {
                assert_eq!(e.stream, "noise", "{what}");
            }
        }
    }
}

/// `(position, stream, type)` of the filter fixture, in commit order.
const FILTER_FIXTURE: &[(&str, &str)] = &[
    ("acct-1", "Opened"),
    ("user-1", "UserCreated"),
    ("acct-2", "Opened"),
    ("acct-1", "Deposited"),
    ("order-9", "OrderPlaced"),
    ("acct-2", "Deposited"),
    ("user-1", "UserRenamed"),
    ("acct-1", "Closed"),
    ("acct-10", "Opened"),
    ("user-2", "UserCreated"),
    ("order-9", "OrderClosed"),
    ("acct-2", "Withdrawn"),
];

fn model(streams: &[&str], types: &[&str]) -> Vec<u64> {
    FILTER_FIXTURE
        .iter()
        .enumerate()
        .filter(|(_, (s, t))| {
            (streams.is_empty() || streams.iter().any(|p| s.starts_with(p)))
                && (types.is_empty() || types.iter().any(|p| t.starts_with(p)))
        })
        .map(|(i, _)| i as u64)
        .collect()
}

async fn load_filter_fixture(c: &mut Client) {
    for (stream, ty) in FILTER_FIXTURE {
        append_ok(
            c,
            stream,
            v1::ExpectedVersion::any(),
            vec![event(ty, b"{}")],
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_all_filters_and_within_lists_or_across() {
    use v1::ReadFrom as F;
    let server = small_batch_server().await;
    let mut c = server.client.clone();
    load_filter_fixture(&mut c).await;

    let filters: &[(&[&str], &[&str])] = &[
        (&[], &[]),
        (&["acct-"], &[]),
        (&["acct-1"], &[]), // a prefix: acct-1 and acct-10
        (&["acct-", "user-"], &[]),
        (&[], &["Opened"]),
        (&[], &["Dep", "Clo"]),
        (&[], &["User", "Order"]),
        (&["acct-"], &["Dep", "Clo"]),
        (
            &["acct-2", "order-"],
            &["Deposited", "OrderClosed", "Nothing"],
        ),
        (&["user-"], &["Dep"]), // each list matches something; together nothing
        (&["nomatch"], &[]),
        (&[], &["nomatch"]),
        (&["ACCT-"], &[]), // case-sensitive
        (&[""], &[]),      // the empty prefix matches everything
    ];
    for (streams, types) in filters {
        let want = model(streams, types);
        let f = || Some(filter(streams, types));
        let what = format!("filter {streams:?} {types:?}");

        let fwd = read(&mut c, all_read(Fwd, None, 0, f())).await;
        assert_eq!(positions(&fwd), want, "{what} forwards");
        for e in &fwd {
            let (s, t) = FILTER_FIXTURE[e.position as usize];
            assert_eq!((e.stream.as_str(), e.r#type.as_str()), (s, t), "{what}");
        }

        let bwd = read(&mut c, all_read(Bwd, None, 0, f())).await;
        let rev: Vec<u64> = want.iter().rev().copied().collect();
        assert_eq!(positions(&bwd), rev, "{what} backwards");

        // max_count counts matching events only.
        let fwd2 = read(&mut c, all_read(Fwd, None, 2, f())).await;
        assert_eq!(
            positions(&fwd2),
            want.iter().take(2).copied().collect::<Vec<_>>(),
            "{what} max 2"
        );
        let bwd2 = read(&mut c, all_read(Bwd, None, 2, f())).await;
        assert_eq!(
            positions(&bwd2),
            rev.iter().take(2).copied().collect::<Vec<_>>(),
            "{what} bwd max 2"
        );

        // From a position, both ways.
        let from = read(&mut c, all_read(Fwd, Some(F::position(5)), 0, f())).await;
        let want_from: Vec<u64> = want.iter().copied().filter(|p| *p >= 5).collect();
        assert_eq!(positions(&from), want_from, "{what} from 5");
        let back = read(&mut c, all_read(Bwd, Some(F::position(5)), 0, f())).await;
        let want_back: Vec<u64> = rev.iter().copied().filter(|p| *p <= 5).collect();
        assert_eq!(positions(&back), want_back, "{what} backwards from 5");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_stream_from_start_end_and_after() {
    use v1::SubscribeFrom as F;
    let server = TestServer::start_with(|a| a.read_batch = 2).await;
    let mut c = server.client.clone();
    interleaved(&mut c).await; // s: revisions 0..5; $all: 7 events

    let cases: Vec<(Option<F>, Vec<u64>)> = vec![
        (None, vec![0, 1, 2, 3, 4]),
        (Some(F::start()), vec![0, 1, 2, 3, 4]),
        (Some(F::end()), vec![]),
        (Some(F::after_revision(0)), vec![1, 2, 3, 4]),
        (Some(F::after_revision(2)), vec![3, 4]),
        (Some(F::after_revision(4)), vec![]),
    ];
    let mut subs = Vec::new();
    for (from, want) in cases {
        let what = format!("stream s from {from:?}");
        let mut sub = Sub::open(&mut c, sub_req(stream_target("s"), from, None)).await;
        let (caught, at) = sub.until_caught_up().await;
        assert_eq!(revisions(&caught), want, "{what}: catch-up");
        // Every case covers the stream up to its last revision, 4.
        assert_eq!(
            (at.position, at.revision),
            (None, Some(4)),
            "{what}: caught_up names the last revision covered"
        );
        subs.push((what, sub));
    }

    // Live: only the stream's events, in order, once; no second caught_up.
    append_ok(
        &mut c,
        "noise",
        v1::ExpectedVersion::any(),
        events(1, "N", "n"),
    )
    .await;
    append_ok(
        &mut c,
        "s",
        v1::ExpectedVersion::exact(4),
        events(2, "S", "live"),
    )
    .await;
    append_ok(
        &mut c,
        "noise",
        v1::ExpectedVersion::any(),
        events(1, "N", "n"),
    )
    .await;
    append_ok(
        &mut c,
        "s",
        v1::ExpectedVersion::exact(6),
        events(1, "S", "live"),
    )
    .await;
    for (what, sub) in &mut subs {
        let mut caught_up = Vec::new();
        let live = sub.take_events(3, &mut caught_up).await;
        assert_eq!(revisions(&live), [5, 6, 7], "{what}: live");
        assert_eq!(positions(&live), [8, 9, 11], "{what}: live positions");
        assert!(live.iter().all(|e| e.stream == "s"), "{what}");
        assert!(
            caught_up.is_empty(),
            "{what}: caught_up again: {caught_up:?}"
        );
    }
    for (what, sub) in &mut subs {
        let cps = sub.expect_quiet(Duration::from_millis(200)).await;
        assert!(
            cps.is_empty(),
            "{what}: checkpoints on a stream subscription"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_all_from_start_end_after_and_filtered() {
    use v1::SubscribeFrom as F;
    let server = TestServer::start_with(|a| a.read_batch = 2).await;
    let mut c = server.client.clone();
    load_filter_fixture(&mut c).await; // 12 events
    let head = FILTER_FIXTURE.len() as u64;

    let acct = || Some(filter(&["acct-"], &["Dep", "Clo"]));
    let cases: Vec<(Option<F>, Option<v1::Filter>, Vec<u64>)> = vec![
        (None, None, (0..head).collect()),
        (Some(F::start()), None, (0..head).collect()),
        (Some(F::end()), None, vec![]),
        (Some(F::after_position(3)), None, (4..head).collect()),
        (Some(F::after_position(head - 1)), None, vec![]),
        (Some(F::start()), acct(), model(&["acct-"], &["Dep", "Clo"])),
        (
            Some(F::after_position(3)),
            acct(),
            model(&["acct-"], &["Dep", "Clo"])
                .into_iter()
                .filter(|p| *p > 3)
                .collect(),
        ),
        (Some(F::end()), acct(), vec![]),
        (Some(F::start()), Some(filter(&["nomatch"], &[])), vec![]),
    ];
    let mut subs = Vec::new();
    for (from, f, want) in cases {
        let what = format!("$all from {from:?} filter {f:?}");
        let filtered = f.is_some();
        let mut sub = Sub::open(&mut c, sub_req(all_target(), from, f)).await;
        let (caught, at) = sub.until_caught_up().await;
        assert_eq!(positions(&caught), want, "{what}: catch-up");
        // Every case has covered the log up to its last event.
        assert_eq!(
            (at.position, at.revision),
            (Some(head - 1), None),
            "{what}: caught_up names the last position covered"
        );
        subs.push((what, filtered, sub));
    }

    // Live: one matching and two non-matching events, and another match.
    let live: &[(&str, &str)] = &[
        ("acct-7", "Deposited"),
        ("user-9", "UserCreated"),
        ("acct-7", "Opened"),
        ("acct-8", "Closed"),
    ];
    for (stream, ty) in live {
        append_ok(
            &mut c,
            stream,
            v1::ExpectedVersion::any(),
            vec![event(ty, b"")],
        )
        .await;
    }
    for (what, filtered, sub) in &mut subs {
        let want: Vec<u64> = if what.contains("nomatch") {
            vec![]
        } else if *filtered {
            vec![head, head + 3]
        } else {
            (head..head + 4).collect()
        };
        let mut caught_up = Vec::new();
        let got = sub.take_events(want.len(), &mut caught_up).await;
        assert_eq!(positions(&got), want, "{what}: live");
        for e in &got {
            let (s, t) = live[(e.position - head) as usize];
            assert_eq!((e.stream.as_str(), e.r#type.as_str()), (s, t), "{what}");
        }
        assert!(caught_up.is_empty(), "{what}: caught_up sent twice");
    }
    for (what, _, sub) in &mut subs {
        // Checkpoints may come (filtered), events and caught_up may not.
        sub.expect_quiet(Duration::from_millis(200)).await;
        let _ = what;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_all_subscription_checkpoints_when_nothing_matches() {
    let every = 4u64;
    let server = TestServer::start_with(|a| {
        a.checkpoint_events = every;
        a.checkpoint_interval_ms = 60_000; // only the count matters here
    })
    .await;
    let mut c = server.client.clone();
    for i in 0..10 {
        append_ok(
            &mut c,
            &format!("other-{i}"),
            v1::ExpectedVersion::any(),
            events(1, "T", "x"),
        )
        .await;
    }
    let mut sub = Sub::open(
        &mut c,
        sub_req(all_target(), None, Some(filter(&["match-"], &[]))),
    )
    .await;
    let mut checkpoints = Vec::new();
    let caught_at = loop {
        match sub.next().await {
            Content::Checkpoint(cp) => checkpoints.push(cp.position),
            Content::CaughtUp(cu) => break cu.position,
            Content::Events(b) => panic!("nothing matches, got {b:?}"),
        }
    };
    // Ten events scanned, none matched: the last one covered is 9.
    assert_eq!(caught_at, Some(9));
    let caught_at = 9;
    assert!(
        checkpoints.iter().all(|p| *p <= caught_at),
        "catch-up checkpoints beyond the last event: {checkpoints:?}"
    );

    // Live: twelve non-matching events, one append each.
    for i in 0..12 {
        append_ok(
            &mut c,
            &format!("other-{i}"),
            v1::ExpectedVersion::any(),
            events(1, "T", "y"),
        )
        .await;
    }
    // The last event is at 21.
    let last = 21u64;
    let mut live = Vec::new();
    while live.last().copied().unwrap_or(0) + every <= last {
        match sub.next().await {
            Content::Checkpoint(cp) => live.push(cp.position),
            other => panic!("expected only checkpoints, got {other:?}"),
        }
    }
    let all: Vec<u64> = checkpoints.iter().chain(&live).copied().collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "increasing: {all:?}");
    assert!(live.iter().all(|p| *p <= last), "{live:?}");
    let mut prev = caught_at;
    for p in &live {
        assert!(
            p - prev <= every,
            "a live checkpoint gap above {every}: {live:?}"
        );
        prev = *p;
    }

    // A match after all that arrives with its position.
    append_ok(
        &mut c,
        "match-1",
        v1::ExpectedVersion::any(),
        events(1, "T", "m"),
    )
    .await;
    let mut caught_up = Vec::new();
    let got = sub.take_events(1, &mut caught_up).await;
    assert_eq!(positions(&got), [last + 1]);
    assert!(caught_up.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_all_subscription_checkpoints_on_a_timer() {
    let server = TestServer::start_with(|a| {
        a.checkpoint_events = 1_000_000;
        a.checkpoint_interval_ms = 200;
    })
    .await;
    let mut c = server.client.clone();
    let mut sub = Sub::open(
        &mut c,
        sub_req(all_target(), None, Some(filter(&[], &["Wanted"]))),
    )
    .await;
    let (none, at) = sub.until_caught_up().await;
    assert!(none.is_empty());
    assert_eq!(at.position, None, "an empty log: nothing covered yet");
    append_ok(
        &mut c,
        "a",
        v1::ExpectedVersion::any(),
        events(3, "Unwanted", "u"),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match sub.next_within(left).await {
            // The three events are at 0..=2: the last one scanned is 2.
            Some(Content::Checkpoint(cp)) if cp.position == 2 => break,
            Some(Content::Checkpoint(cp)) => assert!(cp.position < 2, "{cp:?}"),
            Some(other) => panic!("expected a checkpoint, got {other:?}"),
            None => panic!("no checkpoint at position 2 within 5 s"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_follow_appends() {
    let server = TestServer::start().await;
    let mut c = server.client.clone();
    let empty = stats(&mut c).await;
    assert_eq!(
        (
            empty.head_position,
            empty.streams,
            empty.events,
            empty.indexed_position
        ),
        (0, 0, 0, 0)
    );
    for i in 0..5u64 {
        append_ok(
            &mut c,
            &format!("s-{}", i % 2),
            v1::ExpectedVersion::any(),
            events(2, "T", "x"),
        )
        .await;
    }
    // Reads never wait for the on-disk index; it catches up by itself.
    assert_eq!(read_all(&mut c).await.len(), 10);
    let s = stats_once_indexed(&mut c).await;
    assert_eq!(
        (s.head_position, s.streams, s.events, s.indexed_position),
        (10, 2, 10, 10)
    );
    assert!(s.disk_bytes >= empty.disk_bytes);
}

/// Every value a subscription reports (an event's position or revision, a
/// checkpoint, caught_up), given back as `after_…`, resumes with no gap
/// and no duplicate: `$all` unfiltered and filtered, a stream, and both
/// from the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_resume_from_every_reported_value() {
    use v1::SubscribeFrom as F;
    let server = TestServer::start_with(|a| {
        a.read_batch = 3;
        a.checkpoint_events = 3;
    })
    .await;
    let mut c = server.client.clone();
    // r-a gets positions 0, 4, 8, ...; r-b the rest; 24 events.
    for _ in 0..6 {
        append_ok(
            &mut c,
            "r-a",
            v1::ExpectedVersion::any(),
            events(1, "T", "a"),
        )
        .await;
        append_ok(
            &mut c,
            "r-b",
            v1::ExpectedVersion::any(),
            events(3, "T", "b"),
        )
        .await;
    }
    let all = read_all(&mut c).await;
    assert_eq!(all.len(), 24);

    // Everything a subscription reports before it is caught up.
    async fn reported(sub: &mut Sub) -> (Vec<v1::RecordedEvent>, Vec<u64>, v1::CaughtUp) {
        let (mut events, mut checkpoints) = (Vec::new(), Vec::new());
        loop {
            match sub.next().await {
                Content::Events(b) => events.extend(b.events),
                Content::Checkpoint(cp) => checkpoints.push(cp.position),
                Content::CaughtUp(cu) => return (events, checkpoints, cu),
            }
        }
    }

    for f in [None, Some(filter(&["r-a"], &[]))] {
        let matches = |e: &v1::RecordedEvent| f.is_none() || e.stream == "r-a";
        let want_after = |p: u64| -> Vec<u64> {
            all.iter()
                .filter(|e| e.position > p && matches(e))
                .map(|e| e.position)
                .collect()
        };
        let mut sub = Sub::open(&mut c, sub_req(all_target(), Some(F::start()), f.clone())).await;
        let (got, checkpoints, caught_up) = reported(&mut sub).await;
        let every: Vec<u64> = all
            .iter()
            .filter(|e| matches(e))
            .map(|e| e.position)
            .collect();
        assert_eq!(positions(&got), every, "{f:?} from the start");
        let mut values: Vec<u64> = positions(&got);
        values.extend(&checkpoints);
        values.extend(caught_up.position);
        assert_eq!(caught_up.position, Some(23), "{f:?}");
        if f.is_some() {
            assert!(!checkpoints.is_empty(), "a filtered catch-up checkpoints");
        }
        for v in values {
            let mut again = Sub::open(
                &mut c,
                sub_req(all_target(), Some(F::after_position(v)), f.clone()),
            )
            .await;
            let (resumed, _, at) = reported(&mut again).await;
            assert_eq!(positions(&resumed), want_after(v), "{f:?} after {v}");
            assert_eq!(at.position, Some(23), "{f:?} after {v}");
        }
    }

    // A stream: every delivered revision and caught_up's revision.
    let mut sub = Sub::open(
        &mut c,
        sub_req(stream_target("r-a"), Some(F::start()), None),
    )
    .await;
    let (got, checkpoints, caught_up) = reported(&mut sub).await;
    assert!(checkpoints.is_empty(), "no checkpoints on a stream");
    assert_eq!(revisions(&got), (0..6).collect::<Vec<_>>());
    assert_eq!((caught_up.position, caught_up.revision), (None, Some(5)));
    for r in revisions(&got) {
        let mut again = Sub::open(
            &mut c,
            sub_req(stream_target("r-a"), Some(F::after_revision(r)), None),
        )
        .await;
        let (resumed, _, at) = reported(&mut again).await;
        assert_eq!(
            revisions(&resumed),
            (r + 1..6).collect::<Vec<_>>(),
            "after {r}"
        );
        assert_eq!(at.revision, Some(5));
    }

    // From the end: what caught_up names, given back, resumes exactly at
    // the next append.
    let mut end_all = Sub::open(&mut c, sub_req(all_target(), Some(F::end()), None)).await;
    let (_, _, all_at) = reported(&mut end_all).await;
    let mut end_stream =
        Sub::open(&mut c, sub_req(stream_target("r-a"), Some(F::end()), None)).await;
    let (_, _, stream_at) = reported(&mut end_stream).await;
    assert_eq!(all_at.position, Some(23));
    assert_eq!(stream_at.revision, Some(5));
    append_ok(
        &mut c,
        "r-a",
        v1::ExpectedVersion::exact(5),
        events(1, "T", "new"),
    )
    .await;
    let mut after_all = Sub::open(
        &mut c,
        sub_req(all_target(), all_at.position.map(F::after_position), None),
    )
    .await;
    let (resumed, _, _) = reported(&mut after_all).await;
    assert_eq!(positions(&resumed), [24]);
    let mut after_stream = Sub::open(
        &mut c,
        sub_req(
            stream_target("r-a"),
            stream_at.revision.map(F::after_revision),
            None,
        ),
    )
    .await;
    let (resumed, _, _) = reported(&mut after_stream).await;
    assert_eq!(revisions(&resumed), [6]);
}
