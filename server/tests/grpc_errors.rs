//! docs/API.md's error table and validation rules, row by row, over real gRPC.
//! After every rejected request the store must be exactly as before: same
//! head position, same streams, same stream heads.

mod common;

use std::time::Duration;

use common::*;
use strata_proto::v1;
use strata_proto::v1::subscribe_response::Content;
use strata_proto::v1::Direction::{Backwards as Bwd, Forwards as Fwd};
use tonic::Code;

/// What the store looks like from outside.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    head_position: u64,
    streams: u64,
    events: u64,
    /// Position and id of the last event in `$all`.
    last: Option<(u64, [u8; 16])>,
    /// Last revision of each watched stream (`None`: not found).
    heads: Vec<(String, Option<u64>)>,
}

/// Streams a wrongly accepted request could have written to.
const WATCHED: &[&str] = &["base", "other", "target", "limits", "$foo", "$bar"];

async fn snapshot(c: &mut Client) -> Snapshot {
    let last = read(c, all_read(Bwd, None, 1, None))
        .await
        .first()
        .map(|e| (e.position, id_bytes(e)));
    let mut heads = Vec::new();
    for name in WATCHED {
        let head = match try_read(c, stream_read(name, Bwd, None, 1)).await {
            Ok(evs) => evs.first().map(|e| e.revision),
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => panic!("reading {name:?}: {s}"),
        };
        heads.push((name.to_string(), head));
    }
    // After the reads, which wait for the index: `streams` is counted from
    // the index, which may lag the head by a moment right after an append.
    let s = stats(c).await;
    Snapshot {
        head_position: s.head_position,
        streams: s.streams,
        events: s.events,
        last,
        heads,
    }
}

/// `base` holds revisions 0..3, `other` one event: positions 0..4.
async fn baseline(c: &mut Client) -> Snapshot {
    append_ok(
        c,
        "base",
        v1::ExpectedVersion::no_stream(),
        events(3, "T", "b"),
    )
    .await;
    append_ok(
        c,
        "other",
        v1::ExpectedVersion::no_stream(),
        events(1, "T", "o"),
    )
    .await;
    let snap = snapshot(c).await;
    assert_eq!(snap.head_position, 4);
    snap
}

enum Call {
    Append(v1::AppendRequest),
    Read(v1::ReadRequest),
    Subscribe(v1::SubscribeRequest),
}

struct Case {
    name: &'static str,
    call: Call,
    code: Code,
    /// Substrings the status message must contain.
    message_has: &'static [&'static str],
}

async fn run_case(c: &mut Client, case: Case) -> tonic::Status {
    match case.call {
        Call::Append(req) => match c.append(req).await {
            Err(s) => s,
            Ok(r) => panic!(
                "{}: append should fail, got {:?}",
                case.name,
                r.into_inner()
            ),
        },
        Call::Read(req) => match try_read(c, req).await {
            Err(s) => s,
            Ok(evs) => panic!("{}: read should fail, got {} events", case.name, evs.len()),
        },
        Call::Subscribe(req) => subscribe_error(c, req).await,
    }
}

/// Runs every case, checking code, message and that nothing changed.
async fn check_cases(c: &mut Client, cases: Vec<Case>) {
    let before = snapshot(c).await;
    for case in cases {
        let name = case.name;
        let (code, has) = (case.code, case.message_has);
        let status = run_case(c, case).await;
        assert_code(&status, code, name);
        for s in has {
            assert!(
                status.message().contains(s),
                "{name}: message {:?} does not name {s:?}",
                status.message()
            );
        }
        assert_eq!(snapshot(c).await, before, "{name}: the store changed");
    }
}

fn uuid_text(s: &str) -> Option<v1::Uuid> {
    Some(v1::Uuid {
        value: Some(v1::uuid::Value::Text(s.into())),
    })
}

fn uuid_raw(b: &[u8]) -> Option<v1::Uuid> {
    Some(v1::Uuid {
        value: Some(v1::uuid::Value::Raw(b.to_vec())),
    })
}

fn one(stream: &str, e: v1::EventData) -> Call {
    Call::Append(append_req(stream, v1::ExpectedVersion::any(), vec![e]))
}

fn with(f: impl FnOnce(&mut v1::EventData)) -> v1::EventData {
    let mut e = event("T", b"x");
    f(&mut e);
    e
}

fn sub(
    target: Option<v1::subscribe_request::Target>,
    from: Option<v1::SubscribeFrom>,
    filter: Option<v1::Filter>,
) -> Call {
    Call::Subscribe(v1::SubscribeRequest {
        target,
        from,
        filter,
    })
}

const IA: Code = Code::InvalidArgument;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_appends_are_invalid_argument_and_change_nothing() {
    let server = TestServer::start().await;
    let mut c = server.client.clone();
    baseline(&mut c).await;

    let twin = event("T", b"twin");
    let twin_as_text = with(|e| {
        e.id = Some(v1::Uuid::from_bytes(
            twin.id.as_ref().expect("id").to_bytes().expect("valid"),
        ))
    });
    let mib = 1usize << 20;
    let cases = vec![
        Case {
            name: "empty stream name",
            call: one("", event("T", b"x")),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "256-byte stream name",
            call: one(&"x".repeat(256), event("T", b"x")),
            code: IA,
            message_has: &["255"],
        },
        Case {
            name: "256-byte stream name of two-byte characters",
            call: one(&"é".repeat(128), event("T", b"x")),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "control character in stream name",
            call: one("tar\u{7}get", event("T", b"x")),
            code: IA,
            message_has: &["control"],
        },
        Case {
            name: "newline in stream name",
            call: one("target\n", event("T", b"x")),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "DEL in stream name",
            call: one("a\u{7f}b", event("T", b"x")),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "$-prefixed stream",
            call: one("$foo", event("T", b"x")),
            code: IA,
            message_has: &["$"],
        },
        Case {
            name: "append to $all",
            call: one("$all", event("T", b"x")),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "empty batch",
            call: Call::Append(append_req("target", v1::ExpectedVersion::any(), vec![])),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "empty batch with no_stream",
            call: Call::Append(append_req(
                "target",
                v1::ExpectedVersion::no_stream(),
                vec![],
            )),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "missing id",
            call: one("target", with(|e| e.id = None)),
            code: IA,
            message_has: &["id"],
        },
        Case {
            name: "id with neither form set",
            call: one("target", with(|e| e.id = Some(v1::Uuid { value: None }))),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "bad UUID text",
            call: one("target", with(|e| e.id = uuid_text("not-a-uuid"))),
            code: IA,
            message_has: &["uuid"],
        },
        Case {
            name: "UUID text with a bad digit",
            call: one(
                "target",
                with(|e| e.id = uuid_text("123e4567-e89b-12d3-a456-42661417400g")),
            ),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "UUID text in braces",
            call: one(
                "target",
                with(|e| e.id = uuid_text("{123e4567-e89b-12d3-a456-426614174000}")),
            ),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "empty UUID text",
            call: one("target", with(|e| e.id = uuid_text(""))),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "raw id of 15 bytes",
            call: one("target", with(|e| e.id = uuid_raw(&[7; 15]))),
            code: IA,
            message_has: &["16"],
        },
        Case {
            name: "raw id of 17 bytes",
            call: one("target", with(|e| e.id = uuid_raw(&[7; 17]))),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "empty raw id",
            call: one("target", with(|e| e.id = uuid_raw(&[]))),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "bad id in the second event",
            call: Call::Append(append_req(
                "target",
                v1::ExpectedVersion::any(),
                vec![event("T", b"ok"), with(|e| e.id = uuid_raw(&[1; 3]))],
            )),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "duplicate ids in one append",
            call: Call::Append(append_req(
                "target",
                v1::ExpectedVersion::any(),
                vec![twin.clone(), event("T", b"between"), twin.clone()],
            )),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "duplicate ids in one append, raw and text forms",
            call: Call::Append(append_req(
                "target",
                v1::ExpectedVersion::no_stream(),
                vec![twin.clone(), twin_as_text],
            )),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "empty type",
            call: one("target", with(|e| e.r#type.clear())),
            code: IA,
            message_has: &["type"],
        },
        Case {
            name: "256-byte type",
            call: one("target", with(|e| e.r#type = "t".repeat(256))),
            code: IA,
            message_has: &["type"],
        },
        Case {
            name: "256-byte content type",
            call: one("target", with(|e| e.content_type = Some("c".repeat(256)))),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "unset expected",
            call: Call::Append(v1::AppendRequest {
                stream: "target".into(),
                expected: None,
                events: vec![event("T", b"x")],
            }),
            code: IA,
            message_has: &["expected"],
        },
        Case {
            name: "expected with no kind",
            call: Call::Append(v1::AppendRequest {
                stream: "target".into(),
                expected: Some(v1::ExpectedVersion { kind: None }),
                events: vec![event("T", b"x")],
            }),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "event data over 1 MiB",
            call: one("target", with(|e| e.data = vec![b'd'; mib + 1].into())),
            code: IA,
            message_has: &["1048576"],
        },
        Case {
            name: "event data + metadata over 1 MiB",
            call: one(
                "target",
                with(|e| {
                    e.data = vec![b'd'; mib - 100].into();
                    e.metadata = vec![b'm'; 101].into();
                }),
            ),
            code: IA,
            message_has: &["1048576"],
        },
        Case {
            name: "over-limit event after a valid one",
            call: Call::Append(append_req(
                "base",
                v1::ExpectedVersion::exact(2),
                vec![
                    event("T", b"ok"),
                    with(|e| e.data = vec![0; mib + 1].into()),
                ],
            )),
            code: IA,
            message_has: &["1048576"],
        },
        Case {
            // 16 events of exactly 1 MiB: every event fits, the append
            // is over 16 MiB, the message under the 17 MiB gRPC limit.
            name: "append over 16 MiB",
            call: Call::Append(append_req(
                "target",
                v1::ExpectedVersion::any(),
                (0..16)
                    .map(|_| with(|e| e.data = vec![b'a'; mib].into()))
                    .collect(),
            )),
            code: IA,
            message_has: &["16777216"],
        },
    ];
    check_cases(&mut c, cases).await;

    // Positive controls at the limits: these are accepted.
    append_ok(
        &mut c,
        &"x".repeat(255),
        v1::ExpectedVersion::no_stream(),
        events(1, "T", "x"),
    )
    .await;
    append_ok(
        &mut c,
        &format!("{}x", "é".repeat(127)),
        v1::ExpectedVersion::no_stream(),
        events(1, "T", "x"),
    )
    .await;
    let at_limit = with(|e| {
        e.r#type = "t".repeat(255);
        e.data = vec![b'd'; mib - 10].into();
        e.metadata = vec![b'm'; 10].into();
    });
    append_ok(
        &mut c,
        "limits",
        v1::ExpectedVersion::no_stream(),
        vec![at_limit],
    )
    .await;
    assert_eq!(stats(&mut c).await.head_position, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits_are_configurable_and_the_grpc_limit_is_resource_exhausted() {
    let server = TestServer::start_with(|a| {
        a.max_event_bytes = 16 << 10;
        a.max_append_bytes = 64 << 10;
        a.max_append_events = 4;
    })
    .await;
    let mut c = server.client.clone();
    baseline(&mut c).await;
    let kib = 1usize << 10;
    let cases = vec![
        Case {
            name: "event over a 16 KiB limit",
            call: one("target", with(|e| e.data = vec![1; 16 * kib + 1].into())),
            code: IA,
            message_has: &["16384", "max-event-bytes"],
        },
        Case {
            name: "append over a 64 KiB limit",
            call: Call::Append(append_req(
                "target",
                v1::ExpectedVersion::any(),
                (0..4)
                    .map(|_| with(|e| e.data = vec![2; 16 * kib].into()))
                    .collect(),
            )),
            code: IA,
            message_has: &["65536", "max-append-bytes"],
        },
        Case {
            name: "more events than max-append-events",
            call: Call::Append(append_req(
                "target",
                v1::ExpectedVersion::any(),
                events(5, "T", "n"),
            )),
            code: IA,
            message_has: &["4"],
        },
        Case {
            // The gRPC limit is the append limit + 1 MiB: 1.0625 MiB.
            name: "request over the gRPC message limit",
            call: one("target", with(|e| e.data = vec![3; 1200 * kib].into())),
            code: Code::ResourceExhausted,
            message_has: &[],
        },
    ];
    check_cases(&mut c, cases).await;
    // The connection survives an over-limit message.
    append_ok(
        &mut c,
        "target",
        v1::ExpectedVersion::no_stream(),
        events(4, "T", "ok"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_reads_and_subscriptions_are_rejected() {
    use v1::read_request::Target as RT;
    use v1::subscribe_request::Target as ST;
    let server = TestServer::start().await;
    let mut c = server.client.clone();
    baseline(&mut c).await;
    let stream_read_with = |target: Option<RT>, direction: i32, from, filter| {
        Call::Read(v1::ReadRequest {
            target,
            direction,
            from,
            max_count: 0,
            filter,
        })
    };
    let s = |n: &str| Some(RT::Stream(n.into()));
    let all = || Some(RT::All(v1::AllTarget {}));
    let f = || Some(filter(&["base"], &[]));
    let cases = vec![
        Case {
            name: "read: empty stream name",
            call: stream_read_with(s(""), 0, None, None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "read: 256-byte stream name",
            call: stream_read_with(s(&"x".repeat(256)), 0, None, None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "read: control character",
            call: stream_read_with(s("ba\u{1b}se"), 0, None, None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "read: unknown direction",
            call: stream_read_with(s("base"), 7, None, None),
            code: IA,
            message_has: &["direction"],
        },
        Case {
            name: "read $all: unknown direction",
            call: stream_read_with(all(), -1, None, None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "read: no target",
            call: stream_read_with(None, 0, None, None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "read: filter on a stream",
            call: stream_read_with(s("base"), 0, None, f()),
            code: IA,
            message_has: &["filter"],
        },
        Case {
            name: "read: position on a stream",
            call: stream_read_with(s("base"), 0, Some(v1::ReadFrom::position(0)), None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "read: revision on $all",
            call: stream_read_with(all(), 0, Some(v1::ReadFrom::revision(0)), None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "read: missing stream",
            call: stream_read_with(s("target"), 0, None, None),
            code: Code::NotFound,
            message_has: &["target"],
        },
        Case {
            name: "read backwards: missing stream",
            call: stream_read_with(s("target"), 1, Some(v1::ReadFrom::end()), None),
            code: Code::NotFound,
            message_has: &[],
        },
        Case {
            name: "read: missing reserved stream",
            call: stream_read_with(s("$foo"), 0, None, None),
            code: Code::NotFound,
            message_has: &[],
        },
        Case {
            name: "subscribe: empty stream name",
            call: sub(Some(ST::Stream(String::new())), None, None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "subscribe: 256-byte stream name",
            call: sub(Some(ST::Stream("y".repeat(256))), None, None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "subscribe: control character",
            call: sub(Some(ST::Stream("a\tb".into())), None, None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "subscribe: no target",
            call: sub(None, None, None),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "subscribe: filter on a stream",
            call: sub(Some(stream_target("base")), None, f()),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "subscribe: after_position on a stream",
            call: sub(
                Some(stream_target("base")),
                Some(v1::SubscribeFrom::after_position(0)),
                None,
            ),
            code: IA,
            message_has: &[],
        },
        Case {
            name: "subscribe: after_revision on $all",
            call: sub(
                Some(all_target()),
                Some(v1::SubscribeFrom::after_revision(0)),
                None,
            ),
            code: IA,
            message_has: &[],
        },
    ];
    check_cases(&mut c, cases).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_beyond_the_end_is_empty_not_an_error() {
    use v1::ReadFrom as F;
    let server = TestServer::start().await;
    let mut c = server.client.clone();
    let before = baseline(&mut c).await;
    for req in [
        stream_read("base", Fwd, Some(F::revision(3)), 0),
        stream_read("base", Fwd, Some(F::revision(1000)), 0),
        stream_read("base", Fwd, Some(F::revision(u64::MAX)), 0),
        stream_read("base", Fwd, Some(F::end()), 5),
        all_read(Fwd, Some(F::position(4)), 0, None),
        all_read(Fwd, Some(F::position(u64::MAX)), 0, None),
        all_read(Fwd, Some(F::position(4)), 0, Some(filter(&["base"], &[]))),
        all_read(Fwd, Some(F::end()), 0, None),
    ] {
        let what = format!("{req:?}");
        let got = try_read(&mut c, req).await;
        assert!(
            matches!(&got, Ok(v) if v.is_empty()),
            "{what}: expected an empty result, got {got:?}"
        );
    }
    // Backwards from beyond the end is not an error either. docs/API.md does not
    // say whether it yields nothing or starts at the last event; accept
    // both, but nothing else.
    for (req, by_revision, last) in [
        (
            stream_read("base", Bwd, Some(F::revision(1000)), 0),
            true,
            2,
        ),
        (all_read(Bwd, Some(F::position(1000)), 0, None), false, 3),
    ] {
        let what = format!("{req:?}");
        let got = try_read(&mut c, req)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let keys = if by_revision {
            revisions(&got)
        } else {
            positions(&got)
        };
        let full: Vec<u64> = (0..=last).rev().collect();
        assert!(
            keys.is_empty() || keys == full,
            "{what}: expected nothing or {full:?}, got {keys:?}"
        );
    }
    assert_eq!(snapshot(&mut c).await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_beyond_the_end_waits_for_live_events() {
    let server = TestServer::start().await;
    let mut c = server.client.clone();
    baseline(&mut c).await; // base: revisions 0..3; $all: 4 events

    let mut stream_sub = Sub::open(
        &mut c,
        sub_req(
            stream_target("base"),
            Some(v1::SubscribeFrom::after_revision(4)),
            None,
        ),
    )
    .await;
    let mut all_sub = Sub::open(
        &mut c,
        sub_req(
            all_target(),
            Some(v1::SubscribeFrom::after_position(5)),
            None,
        ),
    )
    .await;
    for sub in [&mut stream_sub, &mut all_sub] {
        let (evs, _) = sub.until_caught_up().await;
        assert!(evs.is_empty(), "nothing stored beyond the end: {evs:?}");
        sub.expect_quiet(Duration::from_millis(150)).await;
    }
    // Revisions 3 and 4 of base, positions 4 and 5: still before the start.
    append_ok(
        &mut c,
        "base",
        v1::ExpectedVersion::exact(2),
        events(2, "T", "l"),
    )
    .await;
    stream_sub.expect_quiet(Duration::from_millis(200)).await;
    all_sub.expect_quiet(Duration::from_millis(1)).await;
    // Revision 5 (position 6) is the first after the starting points.
    append_ok(
        &mut c,
        "base",
        v1::ExpectedVersion::exact(4),
        events(1, "T", "l"),
    )
    .await;
    let mut caught_up = Vec::new();
    let got = stream_sub.take_events(1, &mut caught_up).await;
    assert_eq!((got[0].revision, got[0].position), (5, 6));
    let got = all_sub.take_events(1, &mut caught_up).await;
    assert_eq!((got[0].revision, got[0].position), (5, 6));
    assert!(caught_up.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_to_a_missing_stream_waits_for_its_first_event() {
    let server = TestServer::start().await;
    let mut c = server.client.clone();
    baseline(&mut c).await;
    let mut subs = Vec::new();
    for from in [
        None,
        Some(v1::SubscribeFrom::start()),
        Some(v1::SubscribeFrom::end()),
    ] {
        let mut sub = Sub::open(&mut c, sub_req(stream_target("later"), from, None)).await;
        let (evs, at) = sub.until_caught_up().await;
        assert!(evs.is_empty(), "{from:?}");
        // A stream with no event yet: nothing to resume after.
        assert_eq!((at.position, at.revision), (None, None), "{from:?}");
        subs.push((format!("{from:?}"), 0, sub));
    }
    let mut after0 = Sub::open(
        &mut c,
        sub_req(
            stream_target("later"),
            Some(v1::SubscribeFrom::after_revision(0)),
            None,
        ),
    )
    .await;
    let (evs, _) = after0.until_caught_up().await;
    assert!(evs.is_empty());
    subs.push(("after_revision(0)".into(), 1, after0));
    for (what, _, sub) in &mut subs {
        let cps = sub.expect_quiet(Duration::from_millis(100)).await;
        assert!(cps.is_empty(), "{what}");
    }
    // Reading it is still NOT_FOUND: subscribing created nothing.
    let read = try_read(&mut c, stream_read("later", Fwd, None, 0)).await;
    assert_eq!(
        read.map(|v| v.len()).map_err(|s| s.code()),
        Err(Code::NotFound)
    );

    append_ok(
        &mut c,
        "noise",
        v1::ExpectedVersion::any(),
        events(1, "T", "n"),
    )
    .await;
    append_ok(
        &mut c,
        "later",
        v1::ExpectedVersion::no_stream(),
        events(2, "First", "f"),
    )
    .await;
    for (what, first_rev, sub) in &mut subs {
        let mut caught_up = Vec::new();
        let want: Vec<u64> = (*first_rev..2).collect();
        let got = sub.take_events(want.len(), &mut caught_up).await;
        assert_eq!(revisions(&got), want, "{what}");
        assert_eq!(got[0].position, 5 + *first_rev, "{what}");
        assert_eq!(got[0].stream, "later");
        assert!(caught_up.is_empty(), "{what}: second caught_up");
        match sub.next_within(Duration::from_millis(50)).await {
            None => {}
            Some(Content::Checkpoint(_)) => panic!("{what}: checkpoint on a stream"),
            Some(other) => panic!("{what}: unexpected {other:?}"),
        }
    }
}
