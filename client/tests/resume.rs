//! Subscriptions survive a server restart: the server is shut down through
//! the shutdown trigger of `strata_server::run` while a consumer is in the
//! middle of a subscription, started again on the same port and data
//! directory, and the consumer must see every event exactly once, in order.

mod common;

use std::time::Duration;

use common::TestServer;
use strata_client::{
    ClientOptions, Error, EventData, ExpectedVersion, Filter, SubscribeFrom, Subscription,
    SubscriptionMessage, TryStreamExt,
};
use tokio::sync::mpsc;

fn events(n: usize) -> Vec<EventData> {
    (0..n).map(|_| EventData::binary("T", vec![])).collect()
}

/// Forwards the events of `sub` to a channel, slowly (so that a restart
/// hits the consumer mid-stream), as (stream, revision, position).
fn consume(mut sub: Subscription) -> mpsc::UnboundedReceiver<(String, u64, u64)> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(message) = sub.try_next().await.expect("no error reaches the consumer") {
            if let SubscriptionMessage::Event(e) = message {
                tokio::time::sleep(Duration::from_micros(300)).await;
                if tx.send((e.stream, e.revision, e.position)).is_err() {
                    return;
                }
            }
        }
        panic!("the subscription ended");
    });
    rx
}

async fn take(
    rx: &mut mpsc::UnboundedReceiver<(String, u64, u64)>,
    n: usize,
) -> Vec<(String, u64, u64)> {
    let mut got = Vec::with_capacity(n);
    while got.len() < n {
        let item = tokio::time::timeout(Duration::from_secs(20), rx.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} events within 20 s", got.len()))
            .expect("consumer alive");
        got.push(item);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_resume_after_a_restart_without_gap_or_duplicate() {
    // Small batches and checkpoints, so the restart lands mid-catch-up.
    let mut server = TestServer::start_with(|a| {
        a.read_batch = 16;
        a.checkpoint_events = 32;
    })
    .await;
    let client = server.client().await;
    for i in 0..20 {
        let stream = if i % 2 == 0 { "acct-1" } else { "noise" };
        client
            .append(stream, ExpectedVersion::Any, events(10))
            .await
            .expect("append");
    }

    let mut all_rx = consume(client.subscribe_to_all(SubscribeFrom::Start, Filter::new()));
    let mut filtered_rx = consume(
        client.subscribe_to_all(SubscribeFrom::Start, Filter::new().stream_prefix("acct-")),
    );
    let mut stream_rx = consume(client.subscribe_to_stream("acct-1", SubscribeFrom::Start));

    // Let the consumers get going, then pull the server away.
    let head_all = take(&mut all_rx, 30).await;
    let head_filtered = take(&mut filtered_rx, 30).await;
    let head_stream = take(&mut stream_rx, 30).await;
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.restart().await;
    for _ in 0..5 {
        client
            .append("acct-1", ExpectedVersion::Any, events(10))
            .await
            .expect("append after the restart");
        client
            .append("noise", ExpectedVersion::Any, events(10))
            .await
            .expect("append after the restart");
    }

    let all: Vec<_> = head_all
        .into_iter()
        .chain(take(&mut all_rx, 270).await)
        .collect();
    let positions: Vec<u64> = all.iter().map(|e| e.2).collect();
    assert_eq!(
        positions,
        (0..300).collect::<Vec<_>>(),
        "$all: each position once"
    );

    let filtered: Vec<_> = head_filtered
        .into_iter()
        .chain(take(&mut filtered_rx, 120).await)
        .collect();
    assert!(filtered.iter().all(|e| e.0 == "acct-1"));
    let revisions: Vec<u64> = filtered.iter().map(|e| e.1).collect();
    assert_eq!(
        revisions,
        (0..150).collect::<Vec<_>>(),
        "filtered $all: each event once"
    );

    let stream: Vec<_> = head_stream
        .into_iter()
        .chain(take(&mut stream_rx, 120).await)
        .collect();
    let revisions: Vec<u64> = stream.iter().map(|e| e.1).collect();
    assert_eq!(
        revisions,
        (0..150).collect::<Vec<_>>(),
        "stream: each revision once"
    );

    // Nothing more arrives: no duplicate trails behind.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for rx in [&mut all_rx, &mut filtered_rx, &mut stream_rx] {
        assert!(rx.try_recv().is_err(), "no event beyond the last one");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_subscription_from_end_keeps_its_place_across_a_restart() {
    let mut server = TestServer::start().await;
    let client = server.client().await;
    client
        .append("s", ExpectedVersion::NoStream, events(5))
        .await
        .expect("append");
    let mut sub = client.subscribe_to_stream("s", SubscribeFrom::End);
    let first = tokio::time::timeout(Duration::from_secs(10), sub.try_next())
        .await
        .expect("in time")
        .expect("ok")
        .expect("open");
    assert!(
        matches!(first, SubscriptionMessage::CaughtUp { .. }),
        "{first:?}"
    );

    server.stop().await;
    server.restart().await;
    // Appended after the restart, possibly before the subscription is back:
    // these are after its starting point, so all three must arrive.
    client
        .append("s", ExpectedVersion::Exact(4), events(3))
        .await
        .expect("append");
    let mut revisions = Vec::new();
    while revisions.len() < 3 {
        let message = tokio::time::timeout(Duration::from_secs(10), sub.try_next())
            .await
            .expect("in time")
            .expect("ok")
            .expect("open");
        match message {
            SubscriptionMessage::Event(e) => revisions.push(e.revision),
            other => panic!("caught-up is yielded once, got {other:?}"),
        }
    }
    assert_eq!(revisions, [5, 6, 7]);
}

#[tokio::test]
async fn a_subscription_gives_up_after_the_configured_attempts() {
    let mut server = TestServer::start().await;
    let client = ClientOptions::new()
        .resume_backoff(Duration::from_millis(10), Duration::from_millis(20))
        .max_resume_attempts(Some(2))
        .connect(server.url.as_str())
        .await
        .expect("connect");
    let mut sub = client.subscribe_to_all(SubscribeFrom::End, Filter::new());
    let first = sub.try_next().await.expect("ok").expect("open");
    assert!(matches!(first, SubscriptionMessage::CaughtUp { .. }));
    server.stop().await; // and never back
    let e = tokio::time::timeout(Duration::from_secs(10), sub.try_next())
        .await
        .expect("gives up in time")
        .expect_err("the last error");
    assert!(e.is_transient(), "{e:?}");
    assert!(
        matches!(e, Error::Unavailable { .. } | Error::ConnectionLost { .. }),
        "{e:?}"
    );
    assert!(sub.try_next().await.expect("ended").is_none());
}
