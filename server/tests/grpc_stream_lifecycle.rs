//! Stream lifecycle over gRPC (`docs/API.md` section 2): soft delete,
//! tombstone, stream metadata and retention, seen the same way by every
//! read path (stream reads both ways, `$all` both ways, filters, catch-up
//! of both kinds of subscription), and kept across a restart.

mod common;

use std::time::Duration;

use common::*;
use strata_proto::v1;
use strata_proto::v1::subscribe_response::Content;
use tonic::Code;

fn any() -> v1::ExpectedVersion {
    v1::ExpectedVersion::any()
}

async fn delete(
    client: &mut Client,
    stream: &str,
    expected: v1::ExpectedVersion,
) -> Result<v1::delete_response::Result, tonic::Status> {
    let r = client
        .delete(v1::DeleteRequest {
            stream: stream.into(),
            expected: Some(expected),
        })
        .await?;
    Ok(r.into_inner().result.expect("DeleteResponse.result is set"))
}

async fn tombstone(
    client: &mut Client,
    stream: &str,
    expected: v1::ExpectedVersion,
) -> Result<v1::tombstone_response::Result, tonic::Status> {
    let r = client
        .tombstone(v1::TombstoneRequest {
            stream: stream.into(),
            expected: Some(expected),
        })
        .await?;
    Ok(r.into_inner()
        .result
        .expect("TombstoneResponse.result is set"))
}

async fn set_metadata(
    client: &mut Client,
    stream: &str,
    expected: v1::ExpectedVersion,
    metadata: v1::StreamMetadata,
) -> Result<v1::set_stream_metadata_response::Result, tonic::Status> {
    let r = client
        .set_stream_metadata(v1::SetStreamMetadataRequest {
            stream: stream.into(),
            expected: Some(expected),
            metadata: Some(metadata),
        })
        .await?;
    Ok(r.into_inner()
        .result
        .expect("SetStreamMetadataResponse.result is set"))
}

async fn get_metadata(
    client: &mut Client,
    stream: &str,
) -> Result<v1::StreamMetadataResponse, tonic::Status> {
    Ok(client
        .get_stream_metadata(v1::GetStreamMetadataRequest {
            stream: stream.into(),
        })
        .await?
        .into_inner())
}

fn forwards(stream: &str) -> v1::ReadRequest {
    stream_read(stream, v1::Direction::Forwards, None, 0)
}

fn backwards(stream: &str) -> v1::ReadRequest {
    stream_read(stream, v1::Direction::Backwards, None, 0)
}

fn all(direction: v1::Direction, filter: Option<v1::Filter>) -> v1::ReadRequest {
    all_read(direction, None, 0, filter)
}

fn data_of(events: &[v1::RecordedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8_lossy(&e.data).into_owned())
        .collect()
}

/// Everything a catch-up subscription delivers before `caught_up`.
async fn catch_up(client: &mut Client, target: v1::subscribe_request::Target) -> Vec<String> {
    let mut sub = Sub::open(client, sub_req(target, None, None)).await;
    let mut seen = Vec::new();
    loop {
        match sub.next().await {
            Content::Events(b) => seen.extend(data_of(&b.events)),
            Content::CaughtUp(_) => return seen,
            Content::Checkpoint(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_soft_deleted_stream_is_hidden_everywhere_and_can_be_recreated() {
    let mut server = TestServer::start().await;
    let c = &mut server.client;
    append_ok(
        c,
        "a",
        v1::ExpectedVersion::no_stream(),
        events(3, "A", "a"),
    )
    .await;
    append_ok(
        c,
        "b",
        v1::ExpectedVersion::no_stream(),
        events(2, "B", "b"),
    )
    .await;

    // A wrong expectation writes nothing.
    let conflict = delete(c, "a", v1::ExpectedVersion::exact(1))
        .await
        .expect("delete");
    let v1::delete_response::Result::WrongExpectedVersion(w) = conflict else {
        panic!("expected a conflict, got {conflict:?}");
    };
    assert_eq!(w.current_revision, Some(2));
    let done = delete(c, "a", v1::ExpectedVersion::exact(2))
        .await
        .expect("delete");
    let v1::delete_response::Result::Success(s) = done else {
        panic!("expected success, got {done:?}");
    };
    assert_eq!(s.position, 5, "the delete takes the next position");

    let err = try_read(c, forwards("a")).await.expect_err("deleted");
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(
        data_of(&read(c, all(v1::Direction::Forwards, None)).await),
        ["b-0", "b-1"]
    );
    assert_eq!(
        data_of(&read(c, all(v1::Direction::Backwards, None)).await),
        ["b-1", "b-0"]
    );
    let only_a = Some(filter(&["a"], &[]));
    assert!(read(c, all(v1::Direction::Forwards, only_a))
        .await
        .is_empty());
    assert_eq!(catch_up(c, all_target()).await, ["b-0", "b-1"]);
    // The delete itself is an event of `$lifecycle`, seen only by asking.
    let system = read(c, all(v1::Direction::Forwards, Some(filter(&["$"], &[])))).await;
    assert_eq!(positions(&system), [5]);
    assert_eq!(system[0].stream, "$lifecycle");
    assert_eq!(system[0].r#type, "$deleted");

    // Deleted: "no stream" for expected versions, and NOT_FOUND again.
    assert_eq!(
        delete(c, "a", any()).await.expect_err("gone").code(),
        Code::NotFound
    );
    assert_eq!(
        delete(c, "never", any())
            .await
            .expect_err("never existed")
            .code(),
        Code::NotFound
    );
    let exact = append(c, "a", v1::ExpectedVersion::exact(2), events(1, "A", "x")).await;
    assert!(matches!(
        exact,
        v1::append_response::Result::WrongExpectedVersion(ref w) if w.current_revision.is_none()
    ));
    // Re-created: revisions continue, only the new events are visible.
    let (revision, _) = append_ok(
        c,
        "a",
        v1::ExpectedVersion::no_stream(),
        events(2, "A", "new"),
    )
    .await;
    assert_eq!(revision, 4);
    let a = read(c, forwards("a")).await;
    assert_eq!(
        (revisions(&a), data_of(&a)),
        (vec![3, 4], vec!["new-0".into(), "new-1".into()])
    );
    assert_eq!(revisions(&read(c, backwards("a")).await), [4, 3]);
    assert_eq!(catch_up(c, stream_target("a")).await, ["new-0", "new-1"]);
    let from_zero = read(
        c,
        stream_read(
            "a",
            v1::Direction::Forwards,
            Some(v1::ReadFrom::revision(0)),
            0,
        ),
    )
    .await;
    assert_eq!(revisions(&from_zero), [3, 4]);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tombstone_is_final() {
    let mut server = TestServer::start().await;
    let c = &mut server.client;
    append_ok(
        c,
        "t",
        v1::ExpectedVersion::no_stream(),
        events(2, "T", "t"),
    )
    .await;
    append_ok(
        c,
        "keep",
        v1::ExpectedVersion::no_stream(),
        events(1, "K", "k"),
    )
    .await;
    let conflict = tombstone(c, "t", v1::ExpectedVersion::no_stream())
        .await
        .expect("call");
    assert!(matches!(
        conflict,
        v1::tombstone_response::Result::WrongExpectedVersion(_)
    ));
    let done = tombstone(c, "t", v1::ExpectedVersion::stream_exists())
        .await
        .expect("call");
    assert!(matches!(done, v1::tombstone_response::Result::Success(_)));

    let precondition = |e: tonic::Status, what: &str| {
        assert_eq!(e.code(), Code::FailedPrecondition, "{what}: {e}");
        assert!(
            e.message().contains("tombstoned"),
            "{what}: {}",
            e.message()
        );
    };
    precondition(try_read(c, forwards("t")).await.expect_err("read"), "read");
    let err = c
        .append(append_req("t", any(), events(1, "T", "x")))
        .await
        .expect_err("append");
    precondition(err, "append");
    let err = c
        .multi_append(v1::MultiAppendRequest {
            appends: vec![append_req("keep", any(), events(1, "K", "x"))],
            checks: vec![v1::StreamCheck {
                stream: "t".into(),
                expected: Some(any()),
            }],
        })
        .await
        .expect_err("multi-append");
    precondition(err, "multi-append");
    precondition(delete(c, "t", any()).await.expect_err("delete"), "delete");
    precondition(
        tombstone(c, "t", any()).await.expect_err("tombstone"),
        "tombstone",
    );
    let md = v1::StreamMetadata::default();
    precondition(
        set_metadata(c, "t", any(), md).await.expect_err("set"),
        "set metadata",
    );
    precondition(get_metadata(c, "t").await.expect_err("get"), "get metadata");
    match c.subscribe(sub_req(stream_target("t"), None, None)).await {
        Err(e) => precondition(e, "subscribe"),
        Ok(r) => {
            let e = r.into_inner().message().await.expect_err("subscribe");
            precondition(e, "subscribe");
        }
    }
    assert_eq!(
        data_of(&read(c, all(v1::Direction::Forwards, None)).await),
        ["k-0"]
    );
    assert_eq!(catch_up(c, all_target()).await, ["k-0"]);

    // A name that holds no stream can be reserved.
    let reserved = tombstone(c, "reserved", v1::ExpectedVersion::no_stream()).await;
    assert!(matches!(
        reserved,
        Ok(v1::tombstone_response::Result::Success(_))
    ));
    let err = c
        .append(append_req(
            "reserved",
            v1::ExpectedVersion::no_stream(),
            events(1, "R", "r"),
        ))
        .await
        .expect_err("append to a reserved name");
    precondition(err, "append to a reserved name");
    // Reserved names are refused.
    assert_eq!(
        delete(c, "$lifecycle", any())
            .await
            .expect_err("reserved")
            .code(),
        Code::InvalidArgument
    );
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_retention_applies_on_every_read_path() {
    let mut server = TestServer::start().await;
    let c = &mut server.client;
    let none = get_metadata(c, "m").await.expect("get");
    assert_eq!(none.metadata_revision, None);
    assert_eq!(none.metadata.unwrap_or_default().max_count, None);

    // Allowed before the stream exists; checked against its own revision.
    let md = v1::StreamMetadata {
        max_count: Some(2),
        custom: b"\x00opaque".to_vec(),
        acl: Some(v1::StreamAcl {
            read: vec!["$role:reader".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let first = set_metadata(c, "m", v1::ExpectedVersion::no_stream(), md.clone())
        .await
        .expect("set");
    let v1::set_stream_metadata_response::Result::Success(s) = first else {
        panic!("expected success, got {first:?}");
    };
    assert_eq!(s.metadata_revision, 0);
    append_ok(
        c,
        "m",
        v1::ExpectedVersion::no_stream(),
        events(5, "M", "m"),
    )
    .await;
    append_ok(
        c,
        "other",
        v1::ExpectedVersion::no_stream(),
        events(1, "O", "o"),
    )
    .await;
    assert_eq!(revisions(&read(c, forwards("m")).await), [3, 4]);
    assert_eq!(revisions(&read(c, backwards("m")).await), [4, 3]);
    assert_eq!(
        data_of(&read(c, all(v1::Direction::Forwards, None)).await),
        ["m-3", "m-4", "o-0"]
    );
    assert_eq!(
        data_of(&read(c, all(v1::Direction::Backwards, Some(filter(&["m"], &[])))).await),
        ["m-4", "m-3"]
    );
    assert_eq!(catch_up(c, stream_target("m")).await, ["m-3", "m-4"]);
    assert_eq!(catch_up(c, all_target()).await, ["m-3", "m-4", "o-0"]);
    let got = get_metadata(c, "m").await.expect("get");
    assert_eq!(got.metadata_revision, Some(0));
    let got = got.metadata.expect("metadata");
    assert_eq!(
        (got.max_count, got.custom.as_slice()),
        (Some(2), &b"\x00opaque"[..])
    );
    assert_eq!(got.acl.expect("acl").read, ["$role:reader"]);

    let stale = set_metadata(c, "m", v1::ExpectedVersion::no_stream(), md)
        .await
        .expect("set");
    let v1::set_stream_metadata_response::Result::WrongExpectedVersion(w) = stale else {
        panic!("expected a conflict, got {stale:?}");
    };
    assert_eq!(w.current_revision, Some(0));
    let truncate = v1::StreamMetadata {
        truncate_before: Some(4),
        ..Default::default()
    };
    let second = set_metadata(c, "m", v1::ExpectedVersion::exact(0), truncate)
        .await
        .expect("set");
    assert!(
        matches!(second, v1::set_stream_metadata_response::Result::Success(ref s) if s.metadata_revision == 1)
    );
    assert_eq!(revisions(&read(c, forwards("m")).await), [4]);
    // The history is the stream `$$m`.
    let history = read(c, forwards("$$m")).await;
    assert_eq!(revisions(&history), [0, 1]);
    assert!(history.iter().all(|e| e.r#type == "$metadata"));

    // Hiding every event is not deleting: the stream reads empty.
    let zero = v1::StreamMetadata {
        max_count: Some(0),
        ..Default::default()
    };
    set_metadata(c, "m", any(), zero).await.expect("set");
    assert!(read(c, forwards("m")).await.is_empty());

    // max_age hides what is older than it.
    append_ok(
        c,
        "aged",
        v1::ExpectedVersion::no_stream(),
        events(2, "A", "old"),
    )
    .await;
    let aged = v1::StreamMetadata {
        max_age: Some(prost_types::Duration {
            seconds: 1,
            nanos: 0,
        }),
        ..Default::default()
    };
    set_metadata(c, "aged", any(), aged).await.expect("set");
    assert_eq!(read(c, forwards("aged")).await.len(), 2);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    append_ok(c, "aged", any(), events(1, "A", "young")).await;
    assert_eq!(data_of(&read(c, forwards("aged")).await), ["young-0"]);

    let negative = v1::StreamMetadata {
        max_age: Some(prost_types::Duration {
            seconds: -1,
            nanos: 0,
        }),
        ..Default::default()
    };
    let err = set_metadata(c, "aged", any(), negative)
        .await
        .expect_err("negative");
    assert_eq!(err.code(), Code::InvalidArgument);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_survives_a_restart() {
    let mut server = TestServer::start().await;
    let c = &mut server.client;
    append_ok(
        c,
        "del",
        v1::ExpectedVersion::no_stream(),
        events(2, "D", "d"),
    )
    .await;
    append_ok(
        c,
        "tomb",
        v1::ExpectedVersion::no_stream(),
        events(1, "T", "t"),
    )
    .await;
    append_ok(
        c,
        "meta",
        v1::ExpectedVersion::no_stream(),
        events(3, "M", "m"),
    )
    .await;
    delete(c, "del", any()).await.expect("delete");
    tombstone(c, "tomb", any()).await.expect("tombstone");
    let md = v1::StreamMetadata {
        truncate_before: Some(2),
        ..Default::default()
    };
    set_metadata(c, "meta", any(), md).await.expect("set");
    let dir = server.stop_and_keep().await;

    let mut server = TestServer::start_in(dir, |_| {}).await;
    let c = &mut server.client;
    assert_eq!(
        try_read(c, forwards("del"))
            .await
            .expect_err("deleted")
            .code(),
        Code::NotFound
    );
    assert_eq!(
        try_read(c, forwards("tomb"))
            .await
            .expect_err("tombstoned")
            .code(),
        Code::FailedPrecondition
    );
    assert_eq!(revisions(&read(c, forwards("meta")).await), [2]);
    assert_eq!(
        get_metadata(c, "meta")
            .await
            .expect("get")
            .metadata_revision,
        Some(0)
    );
    assert_eq!(
        data_of(&read(c, all(v1::Direction::Forwards, None)).await),
        ["m-2"]
    );
    let (revision, _) = append_ok(
        c,
        "del",
        v1::ExpectedVersion::no_stream(),
        events(1, "D", "again"),
    )
    .await;
    assert_eq!(revision, 2);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_subscribers_get_no_system_events_and_no_hidden_ones() {
    let mut server = TestServer::start().await;
    let c = &mut server.client;
    append_ok(
        c,
        "seed",
        v1::ExpectedVersion::no_stream(),
        events(1, "S", "s"),
    )
    .await;
    let mut plain = Sub::open(
        c,
        sub_req(all_target(), Some(v1::SubscribeFrom::end()), None),
    )
    .await;
    let dollar = Some(filter(&["$"], &[]));
    let mut system = Sub::open(
        c,
        sub_req(all_target(), Some(v1::SubscribeFrom::end()), dollar),
    )
    .await;
    let mut caught_up = Vec::new();
    // Wait for both to be live before anything is written.
    for sub in [&mut plain, &mut system] {
        loop {
            if let Content::CaughtUp(_) = sub.next().await {
                break;
            }
        }
    }
    let zero = v1::StreamMetadata {
        max_count: Some(0),
        ..Default::default()
    };
    set_metadata(c, "z", any(), zero).await.expect("set");
    append_ok(c, "z", any(), events(2, "Z", "z")).await;
    delete(c, "seed", any()).await.expect("delete");
    append_ok(c, "visible", any(), events(1, "V", "v")).await;

    // The unfiltered subscriber: only the visible append.
    let got = plain.take_events(1, &mut caught_up).await;
    assert_eq!(data_of(&got), ["v-0"]);
    assert!(plain
        .expect_quiet(Duration::from_millis(300))
        .await
        .is_empty());
    // The `$` subscriber: the metadata change and the delete, in order.
    let got = system.take_events(2, &mut caught_up).await;
    let kinds: Vec<(&str, &str)> = got
        .iter()
        .map(|e| (e.stream.as_str(), e.r#type.as_str()))
        .collect();
    assert_eq!(kinds, [("$$z", "$metadata"), ("$lifecycle", "$deleted")]);
    server.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_event_goes_alone_in_its_response() {
    let mut server = TestServer::start_with(|a| {
        a.max_event_bytes = 4 << 20;
        a.max_append_bytes = 16 << 20;
    })
    .await;
    let c = &mut server.client;
    let small = event("E", &vec![b's'; 900 << 10]);
    let large = event("E", &vec![b'l'; (7 << 20) / 2]);
    append_ok(
        c,
        "big",
        v1::ExpectedVersion::no_stream(),
        vec![small, large],
    )
    .await;
    let mut call = c.read(forwards("big")).await.expect("read").into_inner();
    let mut sizes = Vec::new();
    while let Some(batch) = call.message().await.expect("batch") {
        sizes.push(batch.events.len());
    }
    assert_eq!(sizes, [1, 1], "each event in a response of its own");
    server.stop().await.expect("clean stop");
}
