//! Every `Client` method against an in-process server: appends and their
//! conflicts, reads in both directions, subscriptions, stats, and the
//! mapping of each server error back to a typed `Error`.

mod common;

use std::time::{Duration, SystemTime};

use common::TestServer;
use strata_client::{
    Client, ClientOptions, Error, EventData, ExpectedVersion, Filter, MultiAppend, ReadFrom,
    ReadOptions, RecordedEvent, StreamExt, SubscribeFrom, Subscription, SubscriptionMessage,
    TryStreamExt,
};

fn events(n: usize, event_type: &str) -> Vec<EventData> {
    (0..n)
        .map(|i| EventData::binary(event_type, format!("{i}").into_bytes()))
        .collect()
}

async fn read_all_of(client: &Client, stream: &str, options: ReadOptions) -> Vec<RecordedEvent> {
    client
        .read_stream(stream, options)
        .await
        .expect("read opens")
        .try_collect()
        .await
        .expect("read completes")
}

fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.revision).collect()
}

/// The next message, or a panic after 10 s.
async fn next(sub: &mut Subscription) -> SubscriptionMessage {
    tokio::time::timeout(Duration::from_secs(10), sub.try_next())
        .await
        .expect("a message within 10 s")
        .expect("no error")
        .expect("subscription still open")
}

async fn next_event(sub: &mut Subscription) -> RecordedEvent {
    loop {
        if let SubscriptionMessage::Event(e) = next(sub).await {
            return e;
        }
    }
}

#[tokio::test]
async fn connect_reports_unreachable_servers_and_bad_urls() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let e = ClientOptions::new()
        .connect_timeout(Duration::from_secs(1))
        .connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect_err("nothing listens");
    assert!(matches!(e, Error::Connect { .. }), "{e:?}");
    assert!(e.is_transient());
    assert!(e.to_string().contains("refused"), "{e}");

    let e = Client::connect("not a url").await.expect_err("bad url");
    assert!(matches!(e, Error::InvalidUrl { .. }), "{e:?}");
}

#[tokio::test]
async fn append_then_read_back_every_field() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let before = SystemTime::now();
    let id = strata_client::Uuid::new_v4();
    let first = EventData::binary("Opened", b"\x00\x01".to_vec())
        .with_id(id)
        .with_metadata(b"corr=1".to_vec())
        .with_content_type("application/octet-stream");
    let written = client
        .append("account-1", ExpectedVersion::NoStream, [first])
        .await
        .expect("append");
    assert_eq!((written.next_expected_revision, written.position), (0, 0));
    let written = client
        .append(
            "account-1",
            written.next_expected_version(),
            events(2, "Deposited"),
        )
        .await
        .expect("append");
    assert_eq!((written.next_expected_revision, written.position), (2, 2));

    let read = read_all_of(&client, "account-1", ReadOptions::forwards()).await;
    assert_eq!(revisions(&read), [0, 1, 2]);
    let e = &read[0];
    assert_eq!(
        (e.stream.as_str(), e.position, e.id, e.event_type.as_str()),
        ("account-1", 0, id, "Opened")
    );
    assert_eq!(
        (&e.data[..], &e.metadata[..]),
        (&b"\x00\x01"[..], &b"corr=1"[..])
    );
    assert_eq!(e.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(read[1].content_type, None);
    assert_eq!(&read[2].data[..], b"1");
    let age = e.recorded_at.duration_since(before).unwrap_or_default();
    assert!(age < Duration::from_secs(10), "recorded_at is now-ish");
}

#[tokio::test]
async fn conflicts_are_typed_and_write_nothing() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let conflict = |r: Result<_, Error>| match r {
        Err(Error::WrongExpectedVersion {
            current, expected, ..
        }) => (expected, current),
        other => panic!("expected a conflict, got {other:?}"),
    };

    // The stream does not exist: current is None.
    let r = client
        .append("s", ExpectedVersion::StreamExists, events(1, "T"))
        .await;
    assert_eq!(conflict(r), (ExpectedVersion::StreamExists, None));
    let r = client
        .append("s", ExpectedVersion::Exact(0), events(1, "T"))
        .await;
    assert_eq!(conflict(r), (ExpectedVersion::Exact(0), None));

    client
        .append("s", ExpectedVersion::NoStream, events(2, "T"))
        .await
        .expect("append");
    let r = client
        .append("s", ExpectedVersion::NoStream, events(1, "T"))
        .await;
    assert_eq!(conflict(r), (ExpectedVersion::NoStream, Some(1)));
    let r = client
        .append("s", ExpectedVersion::Exact(0), events(1, "T"))
        .await;
    let e = r.expect_err("stale revision");
    assert_eq!(e.conflict(), Some(Some(1)));
    assert!(!e.is_transient());

    // Nothing was written by the refused appends.
    assert_eq!(
        revisions(&read_all_of(&client, "s", ReadOptions::forwards()).await),
        [0, 1]
    );
    // The right expectations go through.
    client
        .append("s", ExpectedVersion::Exact(1), events(1, "T"))
        .await
        .expect("exact");
    client
        .append("s", ExpectedVersion::StreamExists, events(1, "T"))
        .await
        .expect("exists");
    client
        .append("s", ExpectedVersion::Any, events(1, "T"))
        .await
        .expect("any");
}

#[tokio::test]
async fn retries_with_the_same_ids_are_idempotent() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let batch = events(3, "T");
    let first = client
        .append("s", ExpectedVersion::NoStream, batch.clone())
        .await
        .expect("append");
    // A retry whose first answer was "lost", even with another expectation.
    let again = client
        .append("s", ExpectedVersion::Any, batch.clone())
        .await
        .expect("retry");
    assert_eq!(first, again);
    assert_eq!(
        read_all_of(&client, "s", ReadOptions::forwards())
            .await
            .len(),
        3
    );
    // Reusing one of those ids in a different append is an error.
    let reused = EventData::binary("T", vec![]).with_id(batch[0].id());
    let e = client
        .append("other", ExpectedVersion::Any, [reused])
        .await
        .expect_err("id reuse");
    assert!(matches!(e, Error::AlreadyExists { .. }), "{e:?}");
    // The position of the event holding the id travels as a typed detail.
    assert!(
        matches!(
            e,
            Error::AlreadyExists {
                position: Some(_),
                ..
            }
        ),
        "{e:?}"
    );
}

#[tokio::test]
async fn server_errors_map_to_typed_variants() {
    // Appends of more than 2 MiB exceed the gRPC message limit (1 MiB
    // above the 1 MiB append limit).
    let server = TestServer::start_with(|a| a.max_append_bytes = 1 << 20).await;
    let client = server.client().await;
    let invalid = |r: Result<_, Error>, needle: &str| match r {
        Err(Error::InvalidArgument { message, .. }) => {
            assert!(message.contains(needle), "{message:?} lacks {needle:?}")
        }
        other => panic!("expected InvalidArgument ({needle}), got {other:?}"),
    };

    invalid(
        client
            .append("", ExpectedVersion::Any, events(1, "T"))
            .await,
        "",
    );
    invalid(
        client
            .append("$system", ExpectedVersion::Any, events(1, "T"))
            .await,
        "$",
    );
    invalid(client.append("s", ExpectedVersion::Any, []).await, "");
    let twice = EventData::binary("T", vec![]);
    invalid(
        client
            .append("s", ExpectedVersion::Any, [twice.clone(), twice])
            .await,
        "",
    );
    invalid(
        client
            .append("s", ExpectedVersion::Any, [EventData::binary("", vec![])])
            .await,
        "",
    );
    let big = EventData::binary("T", vec![0u8; (1 << 20) + 1]);
    let over = client.append("s", ExpectedVersion::Any, [big]).await;
    // The exceeded limit travels as a typed detail, not only in words.
    match &over {
        Err(Error::InvalidArgument { limit: Some(l), .. }) => {
            assert!(l.limit == 1 << 20 && l.actual > l.limit, "{l:?}")
        }
        other => panic!("no typed limit: {other:?}"),
    }
    invalid(over, "limit");
    let e = client
        .append(
            "s",
            ExpectedVersion::Any,
            (0..3).map(|_| EventData::binary("T", vec![0u8; 1 << 20])),
        )
        .await
        .expect_err("over the gRPC limit");
    assert!(matches!(e, Error::MessageTooLarge { .. }), "{e:?}");

    // An answer over the client's own limit.
    client
        .append(
            "wide",
            ExpectedVersion::Any,
            [EventData::binary("T", vec![0u8; 2048])],
        )
        .await
        .expect("append");
    let small = ClientOptions::new()
        .max_message_size(1024)
        .connect(server.url.as_str())
        .await
        .expect("connect");
    let e = small
        .read_stream("wide", ReadOptions::forwards())
        .await
        .expect("read opens")
        .try_next()
        .await
        .expect_err("batch over the client's limit");
    assert!(matches!(e, Error::MessageTooLarge { .. }), "{e:?}");

    let e = client
        .read_stream("missing", ReadOptions::forwards())
        .await
        .expect_err("no such stream");
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    assert!(!e.is_transient());
    // A revision where a position belongs is refused by the server.
    let e = client
        .read_all(ReadOptions::forwards().from_revision(1), Filter::new())
        .await
        .expect_err("from.revision on $all");
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
}

#[tokio::test]
async fn deadlines_bound_each_call() {
    let server = TestServer::start().await;
    let client = ClientOptions::new()
        .deadline(Some(Duration::from_nanos(1)))
        .connect(server.url.as_str())
        .await
        .expect("connect");
    let e = client
        .stats()
        .await
        .expect_err("nothing answers within 1 ns");
    assert!(matches!(e, Error::DeadlineExceeded { .. }), "{e:?}");
    assert!(e.is_transient());
}

#[tokio::test]
async fn stream_reads_walk_both_ways_from_any_revision() {
    // Batches of 3 events: every read below crosses batch boundaries.
    let server = TestServer::start_with(|a| a.read_batch = 3).await;
    let client = server.client().await;
    client
        .append("s", ExpectedVersion::NoStream, events(10, "T"))
        .await
        .expect("append");
    let read = |o| read_all_of(&client, "s", o);

    assert_eq!(
        revisions(&read(ReadOptions::forwards()).await),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        revisions(&read(ReadOptions::backwards()).await),
        (0..10).rev().collect::<Vec<_>>()
    );
    assert_eq!(
        revisions(&read(ReadOptions::forwards().from_revision(7)).await),
        [7, 8, 9]
    );
    assert_eq!(
        revisions(&read(ReadOptions::backwards().from_revision(4).max_count(3)).await),
        [4, 3, 2]
    );
    assert_eq!(
        revisions(&read(ReadOptions::forwards().max_count(4)).await),
        [0, 1, 2, 3]
    );
    assert_eq!(
        revisions(&read(ReadOptions::backwards().max_count(1)).await),
        [9]
    );
    assert!(read(ReadOptions::forwards().from_revision(10))
        .await
        .is_empty());
    assert!(read(ReadOptions::forwards().start_at(ReadFrom::End))
        .await
        .is_empty());

    // Dropping a stream part-way stops the read; the client keeps working.
    let mut partial = client
        .read_stream("s", ReadOptions::forwards())
        .await
        .expect("read");
    assert_eq!(partial.next().await.expect("one").expect("ok").revision, 0);
    drop(partial);
    assert_eq!(read(ReadOptions::forwards()).await.len(), 10);
}

#[tokio::test]
async fn all_reads_filter_and_page_by_position() {
    let server = TestServer::start_with(|a| a.read_batch = 4).await;
    let client = server.client().await;
    for i in 0..6 {
        let stream = if i % 2 == 0 {
            format!("order-{i}")
        } else {
            format!("user-{i}")
        };
        let kinds = [
            EventData::binary("Created", vec![]),
            EventData::binary("Updated", vec![]),
        ];
        client
            .append(stream, ExpectedVersion::NoStream, kinds)
            .await
            .expect("append");
    }
    let read = |o, f| {
        let client = client.clone();
        async move {
            client
                .read_all(o, f)
                .await
                .expect("read opens")
                .try_collect::<Vec<_>>()
                .await
                .expect("read completes")
        }
    };
    let positions = |v: Vec<RecordedEvent>| v.iter().map(|e| e.position).collect::<Vec<_>>();

    assert_eq!(
        positions(read(ReadOptions::forwards(), Filter::new()).await),
        (0..12).collect::<Vec<_>>()
    );
    assert_eq!(
        positions(read(ReadOptions::backwards().max_count(3), Filter::new()).await),
        [11, 10, 9]
    );
    assert_eq!(
        positions(read(ReadOptions::forwards().from_position(9), Filter::new()).await),
        [9, 10, 11]
    );
    let orders = read(
        ReadOptions::forwards(),
        Filter::new().stream_prefix("order-"),
    )
    .await;
    assert_eq!(orders.len(), 6);
    assert!(orders.iter().all(|e| e.stream.starts_with("order-")));
    let updates = Filter::new()
        .stream_prefix("user-")
        .event_type_prefix("Upd");
    assert_eq!(
        positions(read(ReadOptions::forwards().max_count(2), updates).await),
        [3, 7]
    );
}

#[tokio::test]
async fn stream_subscriptions_catch_up_then_go_live() {
    let server = TestServer::start_with(|a| a.read_batch = 2).await;
    let client = server.client().await;
    client
        .append("chat", ExpectedVersion::NoStream, events(5, "Said"))
        .await
        .expect("append");

    let mut from_start = client.subscribe_to_stream("chat", SubscribeFrom::Start);
    let mut after_2 = client.subscribe_to_stream("chat", SubscribeFrom::AfterRevision(2));
    let mut from_end = client.subscribe_to_stream("chat", SubscribeFrom::End);
    let mut not_yet = client.subscribe_to_stream("later", SubscribeFrom::Start);
    for i in 0..5 {
        assert_eq!(next_event(&mut from_start).await.revision, i);
    }
    // A stream's caught-up names the last revision covered.
    assert_eq!(
        next(&mut from_start).await,
        SubscriptionMessage::CaughtUp {
            position: None,
            revision: Some(4)
        }
    );
    assert_eq!(next_event(&mut after_2).await.revision, 3);
    assert_eq!(
        next(&mut from_end).await.resume_revision(),
        Some(4),
        "from the end: after the stream's last event"
    );
    assert_eq!(
        next(&mut not_yet).await,
        SubscriptionMessage::CaughtUp {
            position: None,
            revision: None
        },
        "an empty stream: nothing to resume after"
    );

    client
        .append("chat", ExpectedVersion::Exact(4), events(1, "Said"))
        .await
        .expect("append");
    client
        .append("later", ExpectedVersion::NoStream, events(1, "Born"))
        .await
        .expect("append");
    assert_eq!(next_event(&mut from_start).await.revision, 5);
    assert_eq!(next_event(&mut from_end).await.revision, 5);
    assert_eq!(next_event(&mut after_2).await.revision, 4);
    assert_eq!(next_event(&mut after_2).await.revision, 5);
    let born = next_event(&mut not_yet).await;
    assert_eq!(
        (born.stream.as_str(), born.event_type.as_str()),
        ("later", "Born")
    );
}

#[tokio::test]
async fn all_subscriptions_filter_and_send_checkpoints() {
    let server = TestServer::start_with(|a| a.checkpoint_events = 4).await;
    let client = server.client().await;
    for i in 0..10 {
        client
            .append(
                format!("noise-{i}"),
                ExpectedVersion::Any,
                events(1, "Noise"),
            )
            .await
            .expect("append");
    }
    client
        .append("order-1", ExpectedVersion::Any, events(1, "Placed"))
        .await
        .expect("append");

    // Nothing matches: checkpoints still report the scan's progress.
    let mut nothing = client.subscribe_to_all(
        SubscribeFrom::Start,
        Filter::new().stream_prefix("nothing-"),
    );
    let mut checkpoints = Vec::new();
    loop {
        match next(&mut nothing).await {
            SubscriptionMessage::Checkpoint { position } => checkpoints.push(position),
            SubscriptionMessage::CaughtUp { position, .. } => {
                // 11 events scanned: the last one covered is 10.
                assert_eq!(position, Some(10));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(!checkpoints.is_empty(), "11 non-matching events scanned");
    assert!(checkpoints.windows(2).all(|w| w[0] < w[1]));
    assert!(checkpoints.iter().all(|&p| p <= 10));

    let mut sub =
        client.subscribe_to_all(SubscribeFrom::Start, Filter::new().stream_prefix("order-"));
    let first = next_event(&mut sub).await;
    assert_eq!((first.stream.as_str(), first.position), ("order-1", 10));

    // From a saved position, and from the end.
    let mut after = client.subscribe_to_all(SubscribeFrom::AfterPosition(8), Filter::new());
    assert_eq!(next_event(&mut after).await.position, 9);
    let mut live = client.subscribe_to_all(SubscribeFrom::End, Filter::new());
    assert_eq!(
        next(&mut live).await.resume_position(),
        Some(10),
        "from the end: after the last event"
    );
    client
        .append("order-2", ExpectedVersion::Any, events(1, "Placed"))
        .await
        .expect("append");
    assert_eq!(next_event(&mut live).await.position, 11);
    assert_eq!(next_event(&mut sub).await.position, 11);
}

#[tokio::test]
async fn invalid_subscriptions_end_with_the_error() {
    let server = TestServer::start().await;
    let client = server.client().await;
    // A position where a revision belongs: not transient, so no retry.
    let mut sub = client.subscribe_to_stream("s", SubscribeFrom::AfterPosition(3));
    let e = sub
        .next()
        .await
        .expect("one item")
        .expect_err("invalid argument");
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    assert!(sub.next().await.is_none(), "ended");

    let mut bad_name = client.subscribe_to_stream("", SubscribeFrom::Start);
    let e = bad_name
        .next()
        .await
        .expect("one item")
        .expect_err("bad name");
    assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
}

#[tokio::test]
async fn stats_count_streams_and_events() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let empty = client.stats().await.expect("stats");
    assert_eq!(
        (empty.head_position, empty.streams, empty.events),
        (0, 0, 0)
    );
    client
        .append("a", ExpectedVersion::Any, events(3, "T"))
        .await
        .expect("append");
    client
        .append("b", ExpectedVersion::Any, events(2, "T"))
        .await
        .expect("append");
    // `streams` comes from the index, which follows the log a moment
    // behind the acknowledgement: wait for it to cover the head.
    let s = loop {
        let s = client.stats().await.expect("stats");
        if s.indexed_position == s.head_position {
            break s;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    assert_eq!((s.head_position, s.streams, s.events), (5, 2, 5));
    assert!(s.disk_bytes > 0);
    assert!(s.format_version >= 1);
    assert!(s.indexed_position <= s.head_position);
}

#[cfg(feature = "json")]
#[tokio::test]
async fn json_events_round_trip() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Moved {
        x: i32,
        label: String,
    }
    let server = TestServer::start().await;
    let client = server.client().await;
    let moved = Moved {
        x: -4,
        label: "north".into(),
    };
    let event = EventData::json("Moved", &moved)
        .expect("serializes")
        .with_metadata_json(&serde_json::json!({"by": "test"}))
        .expect("serializes");
    client
        .append("thing", ExpectedVersion::Any, [event])
        .await
        .expect("append");
    let read = read_all_of(&client, "thing", ReadOptions::forwards()).await;
    assert_eq!(read[0].json::<Moved>().expect("decodes"), moved);
    assert_eq!(read[0].content_type.as_deref(), Some("application/json"));
    let meta: serde_json::Value = read[0].metadata_json().expect("decodes");
    assert_eq!(meta["by"], "test");
    let wrong = read[0].json::<Vec<u8>>().expect_err("not an array");
    assert!(matches!(wrong, Error::Json(_)));
}

#[tokio::test]
async fn clones_share_the_connection_and_work_concurrently() {
    let server = TestServer::start().await;
    let client = server.client().await;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let client = client.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    client
                        .append(format!("w-{w}"), ExpectedVersion::Any, events(1, "T"))
                        .await
                        .expect("append");
                }
            })
        })
        .collect();
    for w in writers {
        w.await.expect("writer");
    }
    assert_eq!(client.stats().await.expect("stats").events, 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_serves_many_tasks_over_one_call() {
    let mut server = TestServer::start().await;
    let client = server.client().await;
    let pipeline = client.pipeline().await.expect("pipeline");
    let mut tasks = Vec::new();
    for t in 0..16 {
        let p = pipeline.clone();
        tasks.push(tokio::spawn(async move {
            let stream = format!("pipe-{t}");
            let mut expected = ExpectedVersion::NoStream;
            for i in 0..25u64 {
                let r = p
                    .append(&stream, expected, events(1, "T"))
                    .await
                    .expect("pipelined append");
                assert_eq!(r.next_expected_revision, i, "{stream}");
                expected = ExpectedVersion::Exact(i);
            }
            // Each append has Append's semantics: conflicts and bad input.
            let conflict = p
                .append(&stream, ExpectedVersion::NoStream, events(1, "T"))
                .await
                .expect_err("conflict");
            assert_eq!(conflict.conflict(), Some(Some(24)), "{conflict:?}");
            let bad = p
                .append("$reserved", ExpectedVersion::Any, events(1, "T"))
                .await
                .expect_err("reserved name");
            assert!(matches!(bad, Error::InvalidArgument { .. }), "{bad:?}");
            // Typed details travel on the pipelined call too.
            let big = EventData::binary("T", vec![0u8; (1 << 20) + 1]);
            let over = p
                .append(&stream, ExpectedVersion::Any, [big])
                .await
                .expect_err("over the event limit");
            assert!(
                matches!(over, Error::InvalidArgument { limit: Some(_), .. }),
                "{over:?}"
            );
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for t in 0..16 {
        let got = read_all_of(&client, &format!("pipe-{t}"), ReadOptions::forwards()).await;
        assert_eq!(revisions(&got), (0..25).collect::<Vec<_>>());
    }
    // When the server goes away the pipeline says so, promptly.
    server.stop().await;
    let e = tokio::time::timeout(
        Duration::from_secs(10),
        pipeline.append("after", ExpectedVersion::Any, events(1, "T")),
    )
    .await
    .expect("an answer, not a hang")
    .expect_err("the call has ended");
    assert!(e.is_transient(), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_appends_commit_together_or_name_every_conflict() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .append("existing", ExpectedVersion::Any, events(1, "T"))
        .await
        .expect("append");
    let multi = MultiAppend::new()
        .append("m-1", ExpectedVersion::NoStream, events(2, "A"))
        .append("m-2", ExpectedVersion::NoStream, events(1, "B"))
        .check("existing", ExpectedVersion::Exact(0));
    let done = client
        .multi_append(multi.clone())
        .await
        .expect("multi-append");
    assert_eq!(done.position, 3);
    let got: Vec<(&str, u64, u64)> = done
        .results
        .iter()
        .map(|r| (r.stream.as_str(), r.next_expected_revision, r.position))
        .collect();
    assert_eq!(got, vec![("m-1", 1, 2), ("m-2", 0, 3)]);
    // A retry answers the same, and writes nothing.
    assert_eq!(client.multi_append(multi).await.expect("retry"), done);
    // Conflicts: both failing conditions are named, with the expectation.
    let e = client
        .multi_append(
            MultiAppend::new()
                .append("m-1", ExpectedVersion::Exact(0), events(1, "A"))
                .append("m-3", ExpectedVersion::Any, events(1, "C"))
                .check("nope", ExpectedVersion::StreamExists),
        )
        .await
        .expect_err("conflicts");
    match e {
        Error::MultiAppendConflict { conflicts } => {
            let named: Vec<(&str, ExpectedVersion, Option<u64>)> = conflicts
                .iter()
                .map(|c| (c.stream.as_str(), c.expected, c.current))
                .collect();
            assert_eq!(
                named,
                vec![
                    ("m-1", ExpectedVersion::Exact(0), Some(1)),
                    ("nope", ExpectedVersion::StreamExists, None)
                ]
            );
        }
        other => panic!("expected MultiAppendConflict, got {other:?}"),
    }
    let all: Vec<RecordedEvent> = client
        .read_all(ReadOptions::forwards(), Filter::new())
        .await
        .expect("read")
        .try_collect()
        .await
        .expect("events");
    assert_eq!(all.len(), 4, "nothing written by the conflict or the retry");
}
