//! `PipelinedAppend` over real gRPC (docs/API.md, "More ways to append"):
//! many appends on one call, each answered by correlation id with
//! `Append`'s exact semantics; per-message errors that do not end the call;
//! the end of the call after the half-close; backpressure instead of errors
//! when the client does not read its answers.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use strata_proto::v1;
use strata_proto::v1::append_response::Result as AppendResult;
use strata_proto::v1::pipelined_append_response::Outcome;
use tokio_stream::StreamExt;

fn pipelined(id: u64, append: v1::AppendRequest) -> v1::PipelinedAppendRequest {
    v1::PipelinedAppendRequest {
        correlation_id: id,
        append: Some(append),
    }
}

/// Sends `requests` on one call, half-closes, and collects every answer.
async fn run(
    client: &mut Client,
    requests: Vec<v1::PipelinedAppendRequest>,
) -> Vec<v1::PipelinedAppendResponse> {
    let mut answers = client
        .pipelined_append(tokio_stream::iter(requests))
        .await
        .expect("PipelinedAppend call")
        .into_inner();
    let mut out = Vec::new();
    while let Some(a) = tokio::time::timeout(PATIENCE, answers.next())
        .await
        .expect("answers keep coming")
    {
        out.push(a.expect("answer"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_append_is_answered_by_its_correlation_id_with_appends_semantics() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let mut requests = Vec::new();
    // 200 single-event appends over 10 streams…
    for i in 0..200u64 {
        let stream = format!("p-{}", i % 10);
        requests.push(pipelined(
            1000 + i,
            append_req(
                &stream,
                v1::ExpectedVersion::any(),
                events(1, "T", &format!("e{i}")),
            ),
        ));
    }
    // …one malformed append (empty stream name), one with no append at all,
    // and one conflict.
    requests.push(pipelined(
        7,
        append_req("", v1::ExpectedVersion::any(), events(1, "T", "bad")),
    ));
    requests.push(v1::PipelinedAppendRequest {
        correlation_id: 8,
        append: None,
    });
    requests.push(pipelined(
        9,
        append_req("fresh", v1::ExpectedVersion::exact(5), events(1, "T", "c")),
    ));
    let answers = run(&mut client, requests).await;

    let by_id: HashMap<u64, &v1::PipelinedAppendResponse> =
        answers.iter().map(|a| (a.correlation_id, a)).collect();
    assert_eq!(answers.len(), 203, "one answer per request");
    assert_eq!(by_id.len(), 203, "no correlation id answered twice");
    for id in [7, 8] {
        match &by_id[&id].outcome {
            Some(Outcome::Error(e)) => {
                assert_eq!(e.code, tonic::Code::InvalidArgument as i32, "{e:?}");
                assert!(!e.message.is_empty());
            }
            other => panic!("request {id}: expected an INVALID_ARGUMENT error, got {other:?}"),
        }
    }
    match &by_id[&9].outcome {
        Some(Outcome::Result(r)) => match &r.result {
            Some(AppendResult::WrongExpectedVersion(w)) => assert_eq!(w.current_revision, None),
            other => panic!("expected a conflict, got {other:?}"),
        },
        other => panic!("expected a result, got {other:?}"),
    }
    let mut positions = Vec::new();
    for i in 0..200u64 {
        match &by_id[&(1000 + i)].outcome {
            Some(Outcome::Result(r)) => {
                positions.push(success(r.result.as_ref().expect("result")).1)
            }
            other => panic!("append {i}: {other:?}"),
        }
    }
    positions.sort_unstable();
    assert_eq!(positions, (0..200).collect::<Vec<_>>(), "dense positions");

    // Everything acknowledged is there, and nothing else.
    let log = read_all(&mut client).await;
    assert_eq!(log.len(), 200);
    for k in 0..10 {
        let s = stream_read(
            &format!("p-{k}"),
            v1::Direction::Forwards,
            Some(v1::ReadFrom::start()),
            0,
        );
        assert_eq!(read(&mut client, s).await.len(), 20);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_on_the_call_returns_the_original_result() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let append = append_req("r", v1::ExpectedVersion::no_stream(), events(3, "T", "x"));
    let first = run(&mut client, vec![pipelined(1, append.clone())]).await;
    // The retry says `no_stream` again, which no longer holds: an idempotent
    // retry answers the original success all the same.
    let again = run(&mut client, vec![pipelined(2, append)]).await;
    let result = |a: &[v1::PipelinedAppendResponse]| match &a[0].outcome {
        Some(Outcome::Result(r)) => success(r.result.as_ref().expect("result")),
        other => panic!("{other:?}"),
    };
    assert_eq!(result(&first), (2, 2));
    assert_eq!(result(&first), result(&again));
    assert_eq!(read_all(&mut client).await.len(), 3, "written once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_its_answers_stalls_the_call_without_errors() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let n = 3_000u64;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut answers = client
        .pipelined_append(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("call")
        .into_inner();
    let sender = tokio::spawn(async move {
        for i in 0..n {
            let a = append_req(
                "bp",
                v1::ExpectedVersion::any(),
                events(1, "T", &i.to_string()),
            );
            if tx.send(pipelined(i, a)).await.is_err() {
                return i;
            }
        }
        n
    });
    // Read nothing for a while: whatever the server and the transport
    // buffer, the call must stall, not fail.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut got = 0u64;
    while let Some(a) = tokio::time::timeout(PATIENCE, answers.next())
        .await
        .expect("answers keep coming")
    {
        let a = a.expect("answer");
        assert!(matches!(a.outcome, Some(Outcome::Result(_))), "{a:?}");
        got += 1;
    }
    assert_eq!(sender.await.expect("sender"), n, "every request was sent");
    assert_eq!(got, n, "every request was answered");
    assert_eq!(stats(&mut client).await.head_position, n);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_a_call_whose_client_stopped_reading() {
    let server = TestServer::start().await;
    let mut client = server.connect().await;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let _unread = client
        .pipelined_append(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("call")
        .into_inner();
    // Keeps sending (never half-closes) and never reads an answer.
    let sender = tokio::spawn(async move {
        for i in 0..5_000u64 {
            let a = append_req(
                "stuck",
                v1::ExpectedVersion::any(),
                events(1, "T", &i.to_string()),
            );
            if tx.send(pipelined(i, a)).await.is_err() {
                break;
            }
        }
        tx
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    // `stop` fails the test if the server does not stop within PATIENCE.
    server
        .stop()
        .await
        .expect("the server stops although a pipelined client stopped reading");
    sender.abort();
}
