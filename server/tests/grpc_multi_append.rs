//! `MultiAppend` over real gRPC (docs/API.md, "More ways to append"): one
//! atomic write across streams, checks on streams that are not written,
//! every conflict named, bad requests refused without writing, idempotent
//! retries, and the whole surviving a restart with the index rebuilt.

mod common;

use common::*;
use strata_proto::v1;
use strata_proto::v1::multi_append_response::{Result as Multi, Success};
use tonic::Code;

fn multi(
    appends: Vec<v1::AppendRequest>,
    checks: Vec<(&str, v1::ExpectedVersion)>,
) -> v1::MultiAppendRequest {
    v1::MultiAppendRequest {
        appends,
        checks: checks
            .into_iter()
            .map(|(s, e)| v1::StreamCheck {
                stream: s.into(),
                expected: Some(e),
            })
            .collect(),
    }
}

async fn send(client: &mut Client, req: v1::MultiAppendRequest) -> Result<Multi, tonic::Status> {
    Ok(client
        .multi_append(req)
        .await?
        .into_inner()
        .result
        .expect("MultiAppendResponse.result is set"))
}

fn success(r: Multi) -> Success {
    match r {
        Multi::Success(s) => s,
        other => panic!("expected success, got {other:?}"),
    }
}

fn order_request() -> v1::MultiAppendRequest {
    multi(
        vec![
            append_req(
                "order-1",
                v1::ExpectedVersion::no_stream(),
                events(2, "OrderPlaced", "o"),
            ),
            append_req(
                "stock-9",
                v1::ExpectedVersion::any(),
                events(1, "Reserved", "s"),
            ),
            append_req(
                "ledger",
                v1::ExpectedVersion::any(),
                events(3, "Posted", "l"),
            ),
        ],
        vec![("customer-7", v1::ExpectedVersion::no_stream())],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_to_several_streams_commit_together_in_request_order() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    append_ok(
        &mut client,
        "before",
        v1::ExpectedVersion::any(),
        events(1, "T", "b"),
    )
    .await;

    let s = success(
        send(&mut client, order_request())
            .await
            .expect("multi-append"),
    );
    let got: Vec<(String, u64, u64)> = s
        .results
        .iter()
        .map(|r| (r.stream.clone(), r.next_expected_revision, r.position))
        .collect();
    assert_eq!(
        got,
        vec![
            ("order-1".into(), 1, 2),
            ("stock-9".into(), 0, 3),
            ("ledger".into(), 2, 6)
        ]
    );
    assert_eq!(s.position, 6);
    // $all holds them at consecutive positions, in request order.
    let log = read_all(&mut client).await;
    let streams: Vec<&str> = log.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(
        streams,
        ["before", "order-1", "order-1", "stock-9", "ledger", "ledger", "ledger"]
    );
    assert_eq!(positions(&log), (0..7).collect::<Vec<_>>());
    // The check wrote nothing.
    let missing = try_read(
        &mut client,
        stream_read(
            "customer-7",
            v1::Direction::Forwards,
            Some(v1::ReadFrom::start()),
            0,
        ),
    )
    .await;
    assert_eq!(missing.expect_err("no stream").code(), Code::NotFound);
    // Each stream continues normally.
    let (rev, _) = append_ok(
        &mut client,
        "ledger",
        v1::ExpectedVersion::exact(2),
        events(1, "T", "n"),
    )
    .await;
    assert_eq!(rev, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_condition_is_named_and_nothing_is_written() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    append_ok(
        &mut client,
        "a",
        v1::ExpectedVersion::any(),
        events(2, "T", "a"),
    )
    .await;
    append_ok(
        &mut client,
        "c",
        v1::ExpectedVersion::any(),
        events(1, "T", "c"),
    )
    .await;
    let head = stats(&mut client).await.head_position;
    let req = multi(
        vec![
            // Holds.
            append_req("b", v1::ExpectedVersion::no_stream(), events(1, "T", "b")),
            // Fails: a is at revision 1.
            append_req("a", v1::ExpectedVersion::exact(0), events(1, "T", "a2")),
        ],
        vec![
            // Fails: c exists.
            ("c", v1::ExpectedVersion::no_stream()),
            // Fails: d does not exist.
            ("d", v1::ExpectedVersion::stream_exists()),
            // Holds.
            ("a", v1::ExpectedVersion::stream_exists()),
        ],
    );
    // `a` is both written and checked: refused before anything else.
    let e = send(&mut client, req.clone())
        .await
        .expect_err("a stream twice");
    assert_eq!(e.code(), Code::InvalidArgument);
    let mut req = req;
    req.checks.pop();
    match send(&mut client, req).await.expect("answer") {
        Multi::WrongExpectedVersion(w) => {
            let named: Vec<(&str, Option<u64>)> = w
                .conflicts
                .iter()
                .map(|c| (c.stream.as_str(), c.current_revision))
                .collect();
            assert_eq!(named, vec![("a", Some(1)), ("c", Some(0)), ("d", None)]);
            assert!(w.conflicts.iter().all(|c| c.expected.is_some()));
        }
        other => panic!("expected conflicts, got {other:?}"),
    }
    assert_eq!(
        stats(&mut client).await.head_position,
        head,
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_invalid_argument_and_change_nothing() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let ok = || append_req("x", v1::ExpectedVersion::any(), events(1, "T", "x"));
    let twice_same_id = {
        let e = event("T", b"1");
        vec![
            append_req("p", v1::ExpectedVersion::any(), vec![e.clone()]),
            append_req("q", v1::ExpectedVersion::any(), vec![e]),
        ]
    };
    let cases = vec![
        (
            "no appends",
            multi(vec![], vec![("x", v1::ExpectedVersion::any())]),
        ),
        ("the same stream twice", multi(vec![ok(), ok()], vec![])),
        (
            "a reserved stream",
            multi(
                vec![
                    ok(),
                    append_req("$sys", v1::ExpectedVersion::any(), events(1, "T", "s")),
                ],
                vec![],
            ),
        ),
        (
            "an empty append",
            multi(
                vec![ok(), append_req("e", v1::ExpectedVersion::any(), vec![])],
                vec![],
            ),
        ),
        ("one event id twice", multi(twice_same_id, vec![])),
        (
            "a check without expected",
            v1::MultiAppendRequest {
                appends: vec![ok()],
                checks: vec![v1::StreamCheck {
                    stream: "y".into(),
                    expected: None,
                }],
            },
        ),
        (
            "a check on an empty name",
            multi(vec![ok()], vec![("", v1::ExpectedVersion::any())]),
        ),
    ];
    for (what, req) in cases {
        let e = send(&mut client, req).await.expect_err(what);
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
        assert!(!e.message().is_empty(), "{what}");
    }
    assert_eq!(stats(&mut client).await.head_position, 0, "nothing written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_returns_the_original_result_and_reused_ids_are_refused() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let req = order_request();
    let first = success(send(&mut client, req.clone()).await.expect("first"));
    // The retry's `no_stream` no longer holds; it is a retry all the same.
    let again = success(send(&mut client, req.clone()).await.expect("retry"));
    assert_eq!(first, again);
    assert_eq!(stats(&mut client).await.head_position, 6, "written once");
    // One of its appends, reused in a different multi-append: refused.
    let reuse = multi(
        vec![
            append_req("other", v1::ExpectedVersion::any(), events(1, "T", "z")),
            req.appends[1].clone(),
        ],
        vec![],
    );
    let e = send(&mut client, reuse).await.expect_err("ids reused");
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert_eq!(stats(&mut client).await.head_position, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_appends_survive_a_restart_with_the_index_rebuilt() {
    let server = TestServer::start_with(|a| a.segment_size = 4096).await;
    let mut client = server.connect().await;
    for round in 0..20u64 {
        let req = multi(
            vec![
                append_req(
                    "m-a",
                    v1::ExpectedVersion::any(),
                    events(2, "T", &format!("a{round}")),
                ),
                append_req(
                    "m-b",
                    v1::ExpectedVersion::any(),
                    events(3, "T", &format!("b{round}")),
                ),
            ],
            vec![],
        );
        success(send(&mut client, req).await.expect("multi-append"));
    }
    drop(client);
    let dir = server.stop_and_keep().await;
    std::fs::remove_dir_all(dir.path().join("data").join("index")).expect("remove the index");
    let server = TestServer::start_in(dir, |a| a.segment_size = 4096).await;
    let mut client = server.connect().await;
    let a = read(
        &mut client,
        stream_read(
            "m-a",
            v1::Direction::Forwards,
            Some(v1::ReadFrom::start()),
            0,
        ),
    )
    .await;
    let b = read(
        &mut client,
        stream_read(
            "m-b",
            v1::Direction::Backwards,
            Some(v1::ReadFrom::end()),
            0,
        ),
    )
    .await;
    assert_eq!(
        a.iter().map(|e| e.revision).collect::<Vec<_>>(),
        (0..40).collect::<Vec<_>>()
    );
    assert_eq!(
        b.iter().map(|e| e.revision).collect::<Vec<_>>(),
        (0..60).rev().collect::<Vec<_>>()
    );
    // Heads were rebuilt per stream: exact expected versions hold.
    append_ok(
        &mut client,
        "m-a",
        v1::ExpectedVersion::exact(39),
        events(1, "T", "x"),
    )
    .await;
    append_ok(
        &mut client,
        "m-b",
        v1::ExpectedVersion::exact(59),
        events(1, "T", "y"),
    )
    .await;
}
