//! Consumer groups through the client against an in-process server: two
//! consumers share a stream's work, each event acknowledged once; a nack
//! with PARK and a replay; and a consumer that goes on by itself across a
//! server restart, from the group's checkpoint.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::TestServer;
use strata_client::{
    Error, EventData, ExpectedVersion, GroupSettings, GroupTarget, JoinOptions, NackAction,
    PersistentSubscription, TryStreamExt,
};

fn events(n: usize, event_type: &str) -> Vec<EventData> {
    (0..n)
        .map(|i| EventData::binary(event_type, format!("{i}").into_bytes()))
        .collect()
}

/// The next event within `wait`, or `None`.
async fn next(sub: &mut PersistentSubscription, wait: Duration) -> Option<(u64, u64, u32)> {
    match tokio::time::timeout(wait, sub.try_next()).await {
        Ok(Ok(Some(e))) => Some((e.event.position, e.event.revision, e.retry_count)),
        Ok(other) => panic!("the subscription ended: {other:?}"),
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_share_a_stream() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .append("orders", ExpectedVersion::NoStream, events(200, "Placed"))
        .await
        .expect("append");
    let target = GroupTarget::stream("orders");
    client
        .create_group(target.clone(), "billing", GroupSettings::default())
        .await
        .expect("create");
    let again = client
        .create_group(target.clone(), "billing", GroupSettings::default())
        .await;
    assert!(
        matches!(again, Err(Error::AlreadyExists { .. })),
        "{again:?}"
    );
    let mut tasks = Vec::new();
    for name in ["a", "b"] {
        let mut sub = client.join_group(
            target.clone(),
            "billing",
            JoinOptions {
                buffer_size: 8,
                consumer_name: name.into(),
            },
        );
        tasks.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Some((position, revision, _)) =
                next(&mut sub, Duration::from_millis(800)).await
            {
                seen.push(revision);
                sub.ack([position]).await.expect("ack");
            }
            seen
        }));
    }
    let mut count: BTreeMap<u64, usize> = BTreeMap::new();
    let mut per = Vec::new();
    for t in tasks {
        let seen = t.await.expect("consumer");
        per.push(seen.len());
        for r in seen {
            *count.entry(r).or_default() += 1;
        }
    }
    assert_eq!(count.len(), 200);
    assert!(count.values().all(|n| *n == 1));
    assert!(per.iter().all(|n| *n > 0), "{per:?}");
    let info = client
        .group_info(target.clone(), "billing")
        .await
        .expect("info");
    assert_eq!(info.acked_total, 200);
    let listed = client.list_groups(None).await.expect("list");
    assert_eq!(listed.len(), 1);
    client
        .delete_group(target, "billing")
        .await
        .expect("delete");
    assert!(client.list_groups(None).await.expect("list").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parked_event_comes_back_on_replay() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .append("mail", ExpectedVersion::NoStream, events(3, "Send"))
        .await
        .expect("append");
    let target = GroupTarget::stream("mail");
    client
        .create_group(target.clone(), "sender", GroupSettings::default())
        .await
        .expect("create");
    let mut sub = client.join_group(target.clone(), "sender", JoinOptions::default());
    let mut first = Vec::new();
    while first.len() < 3 {
        first.push(next(&mut sub, Duration::from_secs(5)).await.expect("event"));
    }
    sub.ack([first[0].0, first[2].0]).await.expect("ack");
    sub.nack([first[1].0], NackAction::Park, "mail server down")
        .await
        .expect("nack");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while client
        .group_info(target.clone(), "sender")
        .await
        .expect("info")
        .parked_count
        != 1
    {
        assert!(tokio::time::Instant::now() < deadline, "not parked");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        client
            .replay_parked(target.clone(), "sender", None)
            .await
            .expect("replay"),
        1
    );
    let (position, revision, _) = next(&mut sub, Duration::from_secs(5))
        .await
        .expect("replayed");
    assert_eq!((position, revision), (first[1].0, 1));
    sub.ack([position]).await.expect("ack");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_goes_on_across_a_server_restart() {
    let mut server = TestServer::start().await;
    let client = server.client().await;
    client
        .append("jobs", ExpectedVersion::NoStream, events(10, "Job"))
        .await
        .expect("append");
    let target = GroupTarget::stream("jobs");
    let settings = GroupSettings {
        checkpoint_count: 1,
        ..GroupSettings::default()
    };
    client
        .create_group(target.clone(), "workers", settings)
        .await
        .expect("create");
    let mut sub = client.join_group(target.clone(), "workers", JoinOptions::default());
    let mut seen = Vec::new();
    while seen.len() < 10 {
        let (position, revision, _) = next(&mut sub, Duration::from_secs(5)).await.expect("event");
        sub.ack([position]).await.expect("ack");
        seen.push(revision);
    }
    // Acks reach the server before it stops: the stop writes the checkpoint.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.stop().await;
    server.restart().await;
    client
        .append("jobs", ExpectedVersion::Exact(9), events(5, "Job"))
        .await
        .expect("append after the restart");
    // The same subscription joins again by itself and gets only the new
    // events (the checkpoint covers the first ten).
    let mut after = Vec::new();
    while after.len() < 5 {
        let (position, revision, _) = next(&mut sub, Duration::from_secs(10))
            .await
            .expect("event");
        sub.ack([position]).await.expect("ack");
        after.push(revision);
    }
    assert_eq!(after, (10..15).collect::<Vec<_>>());
}
