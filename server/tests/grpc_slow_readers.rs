//! A thousand `Read` calls whose clients stop reading hold no thread of the
//! server: each waits, with a bounded amount of memory, for its client,
//! while a fast read of the same log, an append and a new read of a stream
//! still complete.

mod common;

use std::time::Duration;

use common::*;
use strata_proto::v1;
use strata_proto::v1::streams_client::StreamsClient;
use tonic::transport::Endpoint;

/// Slow readers, spread over this many HTTP/2 connections.
const CONNECTIONS: usize = 10;
const SLOW_READERS: usize = 1000;
/// Events in the log: far more than one call's window, channel and
/// read-ahead hold, so every slow call is stopped part way.
const EVENTS: usize = 4000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_stalled_reads_do_not_hold_up_a_fast_one() {
    let mut server = TestServer::start_with(|a| a.read_batch = 64).await;
    let payload = vec![b'x'; 200];
    for chunk in 0..EVENTS / 100 {
        let events = (0..100).map(|_| event("E", &payload)).collect();
        append_ok(
            &mut server.client,
            &format!("s-{}", chunk % 4),
            v1::ExpectedVersion::any(),
            events,
        )
        .await;
    }

    // Each slow reader takes the first response of its call and then
    // nothing more, keeping the call open.
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        clients.push(stalling_client(server.addr).await);
    }
    let mut stalled = Vec::new();
    for i in 0..SLOW_READERS {
        let mut client = clients[i % CONNECTIONS].clone();
        let mut call = client
            .read(all_read(
                v1::Direction::Forwards,
                Some(v1::ReadFrom::start()),
                0,
                None,
            ))
            .await
            .expect("read call")
            .into_inner();
        let first = tokio::time::timeout(PATIENCE, call.message())
            .await
            .expect("a first batch in time")
            .expect("first batch")
            .expect("the read is not over");
        assert!(!first.events.is_empty());
        stalled.push(call);
    }

    // With every slow call waiting, a fast one reads the whole log.
    let mut fresh = connect(server.addr).await;
    let all = tokio::time::timeout(Duration::from_secs(30), read_all(&mut fresh))
        .await
        .expect("a fast read completes while 1,000 reads are stalled");
    assert_eq!(positions(&all), (0..EVENTS as u64).collect::<Vec<_>>());
    let (revision, position) = append_ok(
        &mut fresh,
        "after",
        v1::ExpectedVersion::no_stream(),
        events(1, "A", "a"),
    )
    .await;
    assert_eq!((revision, position), (0, EVENTS as u64));
    let stream = tokio::time::timeout(
        PATIENCE,
        read(
            &mut fresh,
            stream_read("s-1", v1::Direction::Backwards, None, 5),
        ),
    )
    .await
    .expect("a stream read completes");
    assert_eq!(stream.len(), 5);

    // The stalled calls were only waiting: one of them reads on to the end.
    let mut one = stalled.pop().expect("a stalled call");
    let mut rest = 0;
    while let Some(batch) = tokio::time::timeout(PATIENCE, one.message())
        .await
        .expect("the stalled call goes on")
        .expect("batch")
    {
        rest += batch.events.len();
    }
    assert!(rest > 0 && rest < EVENTS, "read {rest} more events");
    drop(stalled);
    server.stop().await.expect("clean stop");
}

/// A connection whose window is large enough for all its stalled calls'
/// unread data: in HTTP/2 a call's unread bytes also hold the connection's
/// window, and the test is about the server, not about that.
async fn stalling_client(addr: std::net::SocketAddr) -> Client {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .initial_stream_window_size(64 << 10)
        .initial_connection_window_size(256 << 20)
        .connect()
        .await
        .expect("connect");
    StreamsClient::new(channel)
}
