//! KurrentDB compatibility, first slice: `event_store.client.streams.Streams`
//! (Append, Read of streams and `$all`, subscriptions, Delete, Tombstone),
//! Gossip and ServerFeatures, through the generated KurrentDB clients
//! against the in-process server, interleaved with `strata.v1`.

mod common;
mod kurrent_support;

use kurrent_support::*;

use common::{append_ok, AuthHeader, TestServer, PATIENCE};
use strata_proto::kurrentdb::gossip::gossip_client::GossipClient;
use strata_proto::kurrentdb::gossip::member_info::VNodeState;
use strata_proto::kurrentdb::server_features::server_features_client::ServerFeaturesClient;
use strata_proto::kurrentdb::shared::uuid;
use strata_proto::kurrentdb::streams::append_req::{self, options::ExpectedStreamRevision};
use strata_proto::kurrentdb::streams::append_resp::{self, success, wrong_expected_version};
use strata_proto::kurrentdb::streams::read_req::options::{
    self as ro, all_options::AllOption, stream_options::RevisionOption, CountOption, FilterOption,
    ReadDirection,
};
use strata_proto::kurrentdb::streams::read_resp::{read_event::RecordedEvent, Content};
use strata_proto::kurrentdb::streams::{
    delete_req, delete_resp, tombstone_req, AppendReq, DeleteReq, ReadReq, ReadResp, TombstoneReq,
};
use strata_proto::v1;
use strata_proto::v1::users_client::UsersClient;
use strata_server::config::AuthMode;
use tonic::Code;

#[tokio::test]
async fn append_with_every_expected_form_and_a_conflict() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    let first = append(
        &mut k,
        "k-s",
        ExpectedStreamRevision::NoStream(E),
        events(2, "a"),
    )
    .await;
    let (revision, position) = appended(&first);
    assert_eq!(revision, 1);
    assert!(position >= 1, "no event is at commit position 0");
    let (r, p) = appended(
        &append(
            &mut k,
            "k-s",
            ExpectedStreamRevision::Revision(1),
            events(1, "b"),
        )
        .await,
    );
    assert_eq!(r, 2);
    assert!(p > position);
    let (r, _) = appended(
        &append(
            &mut k,
            "k-s",
            ExpectedStreamRevision::StreamExists(E),
            events(1, "c"),
        )
        .await,
    );
    assert_eq!(r, 3);
    let (r, _) = appended(
        &append(
            &mut k,
            "k-s",
            ExpectedStreamRevision::Any(E),
            events(1, "d"),
        )
        .await,
    );
    assert_eq!(r, 4);

    // Conflicts are answered in-band, in both the new and the 20.6.0 form.
    match append(
        &mut k,
        "k-s",
        ExpectedStreamRevision::NoStream(E),
        events(1, "x"),
    )
    .await
    {
        append_resp::Result::WrongExpectedVersion(w) => {
            assert_eq!(
                w.current_revision_option,
                Some(wrong_expected_version::CurrentRevisionOption::CurrentRevision(4))
            );
            assert_eq!(
                w.expected_revision_option,
                Some(wrong_expected_version::ExpectedRevisionOption::ExpectedNoStream(E))
            );
            assert_eq!(
                w.current_revision_option_20_6_0,
                Some(wrong_expected_version::CurrentRevisionOption2060::CurrentRevision2060(4))
            );
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    match append(
        &mut k,
        "k-new",
        ExpectedStreamRevision::StreamExists(E),
        events(1, "x"),
    )
    .await
    {
        append_resp::Result::WrongExpectedVersion(w) => assert_eq!(
            w.current_revision_option,
            Some(wrong_expected_version::CurrentRevisionOption::CurrentNoStream(E))
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
    match append(
        &mut k,
        "k-s",
        ExpectedStreamRevision::Revision(9),
        events(1, "x"),
    )
    .await
    {
        append_resp::Result::WrongExpectedVersion(w) => assert_eq!(
            w.expected_revision_option,
            Some(wrong_expected_version::ExpectedRevisionOption::ExpectedRevision(9))
        ),
        other => panic!("expected a conflict, got {other:?}"),
    }
    // Nothing of the conflicts was written.
    let all = read_events(
        &mut k,
        read_options(
            of_stream("k-s", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            100,
        ),
    )
    .await;
    assert_eq!(revisions(&all), vec![0, 1, 2, 3, 4]);

    // type and content-type are required metadata.
    let mut bare = proposed(&id_text(), "T", b"{}");
    if let Some(append_req::Content::ProposedMessage(m)) = &mut bare.content {
        m.metadata.remove("content-type");
    }
    let refused = try_append(&mut k, "k-s", ExpectedStreamRevision::Any(E), vec![bare])
        .await
        .expect_err("no content type");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        trailer(&refused, "exception").as_deref(),
        Some("missing-required-metadata-property")
    );
}

#[tokio::test]
async fn a_retry_with_the_same_ids_writes_nothing() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    let batch = events(3, "once");
    let first = append(
        &mut k,
        "k-idem",
        ExpectedStreamRevision::NoStream(E),
        batch.clone(),
    )
    .await;
    // Lost answer: the client retries with the same ids, even with `any`.
    let again = append(
        &mut k,
        "k-idem",
        ExpectedStreamRevision::NoStream(E),
        batch.clone(),
    )
    .await;
    assert_eq!(appended(&again), appended(&first));
    let any = append(&mut k, "k-idem", ExpectedStreamRevision::Any(E), batch).await;
    assert_eq!(appended(&any), appended(&first));
    let read = read_events(
        &mut k,
        read_options(
            of_stream("k-idem", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            100,
        ),
    )
    .await;
    assert_eq!(revisions(&read), vec![0, 1, 2]);
}

#[tokio::test]
async fn stream_reads_both_ways_with_counts_and_event_metadata() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    let id = id_text();
    let mut batch = vec![proposed(&id, "First", b"d-0")];
    batch.extend((1..5).map(|i| proposed(&id_text(), "Kt", format!("d-{i}").as_bytes())));
    let before = std::time::SystemTime::now();
    append(&mut k, "k-r", ExpectedStreamRevision::NoStream(E), batch).await;

    let forwards = read_events(
        &mut k,
        read_options(
            of_stream("k-r", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            3,
        ),
    )
    .await;
    assert_eq!(revisions(&forwards), vec![0, 1, 2]);
    assert_eq!(datas(&forwards), vec!["d-0", "d-1", "d-2"]);
    let backwards = read_events(
        &mut k,
        read_options(
            of_stream("k-r", RevisionOption::End(E)),
            ReadDirection::Backwards,
            2,
        ),
    )
    .await;
    assert_eq!(revisions(&backwards), vec![4, 3]);
    let from_two = read_events(
        &mut k,
        read_options(
            of_stream("k-r", RevisionOption::Revision(2)),
            ReadDirection::Forwards,
            100,
        ),
    )
    .await;
    assert_eq!(revisions(&from_two), vec![2, 3, 4]);
    let back_from_two = read_events(
        &mut k,
        read_options(
            of_stream("k-r", RevisionOption::Revision(2)),
            ReadDirection::Backwards,
            100,
        ),
    )
    .await;
    assert_eq!(revisions(&back_from_two), vec![2, 1, 0]);

    // System metadata, ids in the form asked for, positions never 0.
    let e = &forwards[0];
    assert_eq!(e.metadata.get("type").map(String::as_str), Some("First"));
    assert_eq!(
        e.metadata.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let created: i64 = e.metadata["created"].parse().expect("ticks");
    let since_epoch = before
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64
        * 10;
    assert!(
        (created - since_epoch).abs() < 600 * 10_000_000,
        "created {created} is 100 ns ticks since the Unix epoch (now ≈ {since_epoch})"
    );
    assert_eq!(
        e.id.clone().and_then(|u| u.value),
        Some(uuid::Value::String(id.clone()))
    );
    assert_eq!(e.custom_metadata.as_ref(), b"meta");
    assert!(e.commit_position >= 1 && e.commit_position == e.prepare_position);

    // The structured form by default.
    let mut req = read_options(
        of_stream("k-r", RevisionOption::Start(E)),
        ReadDirection::Forwards,
        1,
    );
    if let Some(o) = &mut req.options {
        o.uuid_option = None;
    }
    let structured = read_events(&mut k, req).await;
    match structured[0].id.clone().and_then(|u| u.value) {
        Some(uuid::Value::Structured(s)) => {
            let u = ::uuid::Uuid::from_u64_pair(
                s.most_significant_bits as u64,
                s.least_significant_bits as u64,
            );
            assert_eq!(u.to_string(), id);
        }
        other => panic!("not structured: {other:?}"),
    }

    // At compatibility 1 a stream read ends with the stream's last
    // revision, whatever the count.
    let answers = try_read(
        &mut k,
        read_options(
            of_stream("k-r", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            2,
        ),
    )
    .await
    .expect("read");
    assert!(
        matches!(
            answers.last(),
            Some(ReadResp {
                content: Some(Content::LastStreamPosition(4))
            })
        ),
        "{answers:?}"
    );
    let mut old = read_options(
        of_stream("k-r", RevisionOption::Start(E)),
        ReadDirection::Forwards,
        2,
    );
    if let Some(o) = &mut old.options {
        o.control_option = None;
    }
    let answers = try_read(&mut k, old).await.expect("read");
    assert_eq!(answers.len(), 2, "level 0: events only");

    // A stream that does not exist is answered in-band.
    let missing = try_read(
        &mut k,
        read_options(
            of_stream("k-none", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            10,
        ),
    )
    .await
    .expect("read of a missing stream");
    assert!(
        matches!(
            missing.as_slice(),
            [ReadResp {
                content: Some(Content::StreamNotFound(_))
            }]
        ),
        "{missing:?}"
    );
}

#[tokio::test]
async fn all_reads_both_ways_and_positions_page_without_gaps() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    append(
        &mut k,
        "k-a1",
        ExpectedStreamRevision::Any(E),
        events(3, "a"),
    )
    .await;
    append(
        &mut k,
        "k-a2",
        ExpectedStreamRevision::Any(E),
        events(2, "b"),
    )
    .await;
    let all = read_events(
        &mut k,
        read_options(of_all(AllOption::Start(E)), ReadDirection::Forwards, 1000),
    )
    .await;
    let ours: Vec<_> = all
        .iter()
        .filter(|e| stream_of(e).starts_with("k-a"))
        .collect();
    assert_eq!(ours.len(), 5);
    assert!(
        all[0].commit_position >= 1,
        "commit position 0 is the start, never an event"
    );
    assert!(all
        .windows(2)
        .all(|w| w[0].commit_position < w[1].commit_position));

    let backwards = read_events(
        &mut k,
        read_options(of_all(AllOption::End(E)), ReadDirection::Backwards, 2),
    )
    .await;
    assert_eq!(datas(&backwards), vec!["b-1", "b-0"]);

    // Paging forwards from the last position seen repeats exactly it
    // (inclusive); paging backwards from it continues before it.
    let page = |p: u64| {
        of_all(AllOption::Position(ro::Position {
            commit_position: p,
            prepare_position: p,
        }))
    };
    let last = backwards[1].commit_position;
    let forwards_from =
        read_events(&mut k, read_options(page(last), ReadDirection::Forwards, 2)).await;
    assert_eq!(datas(&forwards_from), vec!["b-0", "b-1"]);
    let back_from = read_events(
        &mut k,
        read_options(page(last), ReadDirection::Backwards, 2),
    )
    .await;
    assert_eq!(datas(&back_from), vec!["a-2", "a-1"]);
    // Position 0 is the start.
    let from_zero = read_events(&mut k, read_options(page(0), ReadDirection::Forwards, 1)).await;
    assert_eq!(from_zero[0].commit_position, all[0].commit_position);
}

#[tokio::test]
async fn native_and_kurrentdb_appends_interleave_with_the_same_content_and_order() {
    let server = TestServer::start().await;
    let mut native = server.connect().await;
    let mut k = kurrent(&server).await;
    let mut n_event = common::event("Native", b"{\"n\":1}");
    n_event.content_type = Some("application/json".into());
    n_event.metadata = b"nm".to_vec().into();
    let native_id = n_event.id.clone().expect("id").to_bytes().expect("uuid");
    let (_, native_position) = append_ok(
        &mut native,
        "k-mix",
        v1::ExpectedVersion::no_stream(),
        vec![n_event],
    )
    .await;
    let k_id = id_text();
    let (revision, commit) = appended(
        &append(
            &mut k,
            "k-mix",
            ExpectedStreamRevision::Revision(0),
            vec![proposed(&k_id, "Kurrent", b"{\"k\":2}")],
        )
        .await,
    );
    assert_eq!(revision, 1);
    append_ok(
        &mut native,
        "k-mix",
        v1::ExpectedVersion::exact(1),
        common::events(1, "Native", "n"),
    )
    .await;

    // Through the layer: the native events with their content, in order.
    let read = read_events(
        &mut k,
        read_options(
            of_stream("k-mix", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            10,
        ),
    )
    .await;
    assert_eq!(revisions(&read), vec![0, 1, 2]);
    assert_eq!(read[0].data.as_ref(), b"{\"n\":1}");
    assert_eq!(read[0].custom_metadata.as_ref(), b"nm");
    assert_eq!(read[0].metadata["type"], "Native");
    assert_eq!(read[0].metadata["content-type"], "application/json");
    assert_eq!(
        read[0].id.clone().and_then(|u| u.value),
        Some(uuid::Value::String(
            ::uuid::Uuid::from_bytes(native_id).to_string()
        ))
    );
    assert_eq!(read[0].commit_position, native_position + 1);
    // A native event without a content type reads as octet-stream.
    assert_eq!(read[2].metadata["content-type"], "application/octet-stream");

    // Natively: the layer's event with its content, at the same place.
    let native_read = common::read(
        &mut native,
        common::stream_read("k-mix", v1::Direction::Forwards, None, 0),
    )
    .await;
    assert_eq!(common::revisions(&native_read), vec![0, 1, 2]);
    let e = &native_read[1];
    assert_eq!(e.r#type, "Kurrent");
    assert_eq!(e.data.as_ref(), b"{\"k\":2}");
    assert_eq!(e.metadata.as_ref(), b"meta");
    assert_eq!(e.content_type, "application/json");
    assert_eq!(e.position + 1, commit);
    assert_eq!(
        ::uuid::Uuid::from_bytes(common::id_bytes(e)).to_string(),
        k_id
    );
    // And `$all` agrees on the order.
    let all = read_events(
        &mut k,
        read_options(of_all(AllOption::Start(E)), ReadDirection::Forwards, 100),
    )
    .await;
    let mixed: Vec<_> = all
        .iter()
        .filter(|e| stream_of(e) == "k-mix")
        .map(|e| e.metadata["type"].clone())
        .collect();
    assert_eq!(mixed, vec!["Native", "Kurrent", "Native"]);
}

fn delete_req(stream: &str, expected: delete_req::options::ExpectedStreamRevision) -> DeleteReq {
    DeleteReq {
        options: Some(delete_req::Options {
            stream_identifier: sid(stream),
            expected_stream_revision: Some(expected),
        }),
    }
}

fn tombstone_req(stream: &str) -> TombstoneReq {
    TombstoneReq {
        options: Some(tombstone_req::Options {
            stream_identifier: sid(stream),
            expected_stream_revision: Some(tombstone_req::options::ExpectedStreamRevision::Any(E)),
        }),
    }
}

#[tokio::test]
async fn delete_and_tombstone_and_their_effect_on_reads_and_appends() {
    use delete_req::options::ExpectedStreamRevision as D;
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    append(
        &mut k,
        "k-del",
        ExpectedStreamRevision::Any(E),
        events(2, "x"),
    )
    .await;

    // A conflicting delete is an error with KurrentDB's trailers.
    let conflict = k
        .delete(delete_req("k-del", D::Revision(7)))
        .await
        .expect_err("conflict");
    assert_eq!(conflict.code(), Code::FailedPrecondition);
    assert_eq!(
        trailer(&conflict, "exception").as_deref(),
        Some("wrong-expected-version")
    );
    assert_eq!(trailer(&conflict, "actual-version").as_deref(), Some("1"));

    let deleted = k
        .delete(delete_req("k-del", D::Revision(1)))
        .await
        .expect("delete")
        .into_inner();
    assert!(
        matches!(deleted.position_option, Some(delete_resp::PositionOption::Position(p)) if p.commit_position >= 1)
    );
    let gone = try_read(
        &mut k,
        read_options(
            of_stream("k-del", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            10,
        ),
    )
    .await
    .expect("read");
    assert!(matches!(
        gone.as_slice(),
        [ReadResp {
            content: Some(Content::StreamNotFound(_))
        }]
    ));
    // An append re-creates it; revisions continue.
    let (r, _) = appended(
        &append(
            &mut k,
            "k-del",
            ExpectedStreamRevision::NoStream(E),
            events(1, "y"),
        )
        .await,
    );
    assert_eq!(r, 2);
    let back = read_events(
        &mut k,
        read_options(
            of_stream("k-del", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            10,
        ),
    )
    .await;
    assert_eq!(revisions(&back), vec![2]);
    // Deleting a stream that never existed is a wrong expected version,
    // as in KurrentDB; deleting a deleted one again, with `any` or its last
    // revision, has nothing to do.
    let never = k
        .delete(delete_req("k-never", D::Any(E)))
        .await
        .expect_err("a stream that never existed");
    assert_eq!(never.code(), Code::FailedPrecondition);
    assert_eq!(trailer(&never, "actual-version").as_deref(), Some("-1"));
    k.delete(delete_req("k-del-again", D::NoStream(E)))
        .await
        .expect_err("nor with no_stream");
    append(
        &mut k,
        "k-del-again",
        ExpectedStreamRevision::NoStream(E),
        events(2, "x"),
    )
    .await;
    k.delete(delete_req("k-del-again", D::Revision(1)))
        .await
        .expect("delete");
    for again in [D::Any(E), D::Revision(1)] {
        let nothing = k
            .delete(delete_req("k-del-again", again))
            .await
            .expect("deleted already")
            .into_inner();
        assert!(matches!(
            nothing.position_option,
            Some(delete_resp::PositionOption::NoPosition(_))
        ));
    }
    let stale = k
        .delete(delete_req("k-del-again", D::Revision(0)))
        .await
        .expect_err("a stale revision");
    assert_eq!(trailer(&stale, "actual-version").as_deref(), Some("1"));
    // Recreated by an append expecting its last revision, as in KurrentDB.
    let (r, _) = appended(
        &append(
            &mut k,
            "k-del-again",
            ExpectedStreamRevision::Revision(1),
            events(1, "y"),
        )
        .await,
    );
    assert_eq!(r, 2);

    // Tombstone: reads and appends fail with stream-deleted.
    k.tombstone(tombstone_req("k-del"))
        .await
        .expect("tombstone");
    let read = try_read(
        &mut k,
        read_options(
            of_stream("k-del", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            10,
        ),
    )
    .await
    .expect_err("tombstoned");
    assert_eq!(read.code(), Code::FailedPrecondition);
    assert_eq!(
        trailer(&read, "exception").as_deref(),
        Some("stream-deleted")
    );
    assert_eq!(trailer(&read, "stream-name").as_deref(), Some("k-del"));
    let write = try_append(
        &mut k,
        "k-del",
        ExpectedStreamRevision::Any(E),
        events(1, "z"),
    )
    .await
    .expect_err("tombstoned");
    assert_eq!(
        trailer(&write, "exception").as_deref(),
        Some("stream-deleted")
    );
    let again = k
        .tombstone(tombstone_req("k-del"))
        .await
        .expect_err("tombstoned twice");
    assert_eq!(
        trailer(&again, "exception").as_deref(),
        Some("stream-deleted")
    );
}

async fn next(sub: &mut tonic::Streaming<ReadResp>) -> Content {
    tokio::time::timeout(PATIENCE, sub.message())
        .await
        .expect("subscription stalled")
        .expect("subscription failed")
        .expect("subscription ended")
        .content
        .expect("content")
}

#[tokio::test]
async fn a_stream_subscription_confirms_catches_up_and_goes_live() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    append(
        &mut k,
        "k-sub",
        ExpectedStreamRevision::Any(E),
        events(2, "old"),
    )
    .await;
    let mut req = read_options(
        of_stream("k-sub", RevisionOption::Start(E)),
        ReadDirection::Forwards,
        0,
    );
    if let Some(o) = &mut req.options {
        o.count_option = Some(CountOption::Subscription(ro::SubscriptionOptions {}));
    }
    let mut sub = k.read(req).await.expect("subscribe").into_inner();
    assert!(
        matches!(next(&mut sub).await, Content::Confirmation(c) if !c.subscription_id.is_empty())
    );
    let mut seen = Vec::new();
    loop {
        match next(&mut sub).await {
            Content::Event(e) => seen.push(e.event.expect("event").stream_revision),
            Content::CaughtUp(c) => {
                assert_eq!(c.stream_revision, Some(1));
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, vec![0, 1]);
    let mut writer = kurrent(&server).await;
    append(
        &mut writer,
        "k-sub",
        ExpectedStreamRevision::Any(E),
        events(1, "live"),
    )
    .await;
    match next(&mut sub).await {
        Content::Event(e) => {
            let e = e.event.expect("event");
            assert_eq!(
                (e.stream_revision, e.data.as_ref()),
                (2, b"live-0".as_slice())
            );
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn an_all_subscription_resumes_after_a_position() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    let (_, commit) = appended(
        &append(
            &mut k,
            "k-as",
            ExpectedStreamRevision::Any(E),
            events(2, "p"),
        )
        .await,
    );
    // Resume after the first event of the append (commit - 1).
    let mut req = read_options(
        of_all(AllOption::Position(ro::Position {
            commit_position: commit - 1,
            prepare_position: commit - 1,
        })),
        ReadDirection::Forwards,
        0,
    );
    if let Some(o) = &mut req.options {
        o.count_option = Some(CountOption::Subscription(ro::SubscriptionOptions {}));
    }
    let mut sub = k.read(req).await.expect("subscribe").into_inner();
    let mut contents = Vec::new();
    while contents.len() < 3 {
        let m = tokio::time::timeout(PATIENCE, sub.message())
            .await
            .expect("stalled")
            .expect("failed")
            .expect("ended");
        contents.push(m.content.expect("content"));
    }
    assert!(matches!(contents[0], Content::Confirmation(_)));
    match &contents[1] {
        Content::Event(e) => assert_eq!(e.event.as_ref().expect("event").commit_position, commit),
        other => panic!("unexpected {other:?}"),
    }
    match &contents[2] {
        Content::CaughtUp(c) => assert_eq!(c.position.map(|p| p.commit_position), Some(commit)),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn gossip_names_this_server_the_leader_and_features_list_what_is_served() {
    let server = TestServer::start().await;
    let channel = common::channel_with(server.addr, AuthHeader::none()).await;
    let cluster = GossipClient::new(channel.clone())
        .read(E)
        .await
        .expect("gossip")
        .into_inner();
    assert_eq!(cluster.members.len(), 1);
    let me = &cluster.members[0];
    assert_eq!(me.state, VNodeState::Leader as i32);
    assert!(me.is_alive);
    let endpoint = me.http_end_point.clone().expect("endpoint");
    assert_eq!(endpoint.address, server.addr.ip().to_string());
    assert_eq!(endpoint.port, u32::from(server.addr.port()));

    let features = ServerFeaturesClient::new(channel)
        .get_supported_methods(E)
        .await
        .expect("features")
        .into_inner();
    let mut methods: Vec<_> = features
        .methods
        .iter()
        .map(|m| format!("{}/{}", m.service_name, m.method_name))
        .collect();
    methods.sort();
    assert_eq!(
        methods,
        vec![
            "event_store.client.gossip.gossip/read",
            "event_store.client.persistent_subscriptions.persistentsubscriptions/create",
            "event_store.client.persistent_subscriptions.persistentsubscriptions/delete",
            "event_store.client.persistent_subscriptions.persistentsubscriptions/getinfo",
            "event_store.client.persistent_subscriptions.persistentsubscriptions/list",
            "event_store.client.persistent_subscriptions.persistentsubscriptions/read",
            "event_store.client.persistent_subscriptions.persistentsubscriptions/replayparked",
            "event_store.client.persistent_subscriptions.persistentsubscriptions/restartsubsystem",
            "event_store.client.persistent_subscriptions.persistentsubscriptions/update",
            "event_store.client.server_features.serverfeatures/getsupportedmethods",
            "event_store.client.streams.streams/append",
            "event_store.client.streams.streams/batchappend",
            "event_store.client.streams.streams/delete",
            "event_store.client.streams.streams/read",
            "event_store.client.streams.streams/tombstone",
            "event_store.client.users.users/changepassword",
            "event_store.client.users.users/create",
            "event_store.client.users.users/delete",
            "event_store.client.users.users/details",
            "event_store.client.users.users/resetpassword",
            "event_store.client.users.users/update",
        ]
    );
    assert!(!features.event_store_server_version.is_empty());
    // What is not listed is not served.
    let mut p = strata_proto::kurrentdb::persistent::persistent_subscriptions_client::PersistentSubscriptionsClient::new(
        common::channel_with(server.addr, AuthHeader::none()).await,
    );
    p.restart_subsystem(E).await.expect("nothing to restart");
}

#[tokio::test]
async fn with_authentication_on_streams_need_credentials_and_acls_hold() {
    let server = TestServer::start_with(|a| {
        a.auth = AuthMode::Required;
        a.admin_password = Some(ADMIN_PASSWORD.into());
    })
    .await;
    let admin = AuthHeader::basic("admin", ADMIN_PASSWORD);
    let mut nobody = kurrent_as(&server, AuthHeader::none()).await;
    let refused = try_append(
        &mut nobody,
        "k-auth",
        ExpectedStreamRevision::Any(E),
        events(1, "x"),
    )
    .await
    .expect_err("no credentials");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let refused = try_read(
        &mut nobody,
        read_options(of_all(AllOption::Start(E)), ReadDirection::Forwards, 10),
    )
    .await
    .expect_err("no credentials");
    assert_eq!(refused.code(), Code::Unauthenticated);
    // Discovery is open: clients call it before they authenticate.
    let channel = common::channel_with(server.addr, AuthHeader::none()).await;
    GossipClient::new(channel.clone())
        .read(E)
        .await
        .expect("gossip is open");
    ServerFeaturesClient::new(channel)
        .get_supported_methods(E)
        .await
        .expect("features are open");

    let mut k = kurrent_as(&server, admin.clone()).await;
    appended(
        &append(
            &mut k,
            "k-auth",
            ExpectedStreamRevision::Any(E),
            events(1, "x"),
        )
        .await,
    );
    let read = read_events(
        &mut k,
        read_options(
            of_stream("k-auth", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            10,
        ),
    )
    .await;
    assert_eq!(read.len(), 1);

    // A reader may read but not append (access-denied), a writer may not
    // tombstone.
    let mut users = UsersClient::new(common::channel_with(server.addr, admin).await);
    for (user, role) in [("rita", "reader"), ("will", "writer")] {
        users
            .create(v1::CreateUserRequest {
                user: user.into(),
                password: format!("{user}-password"),
                roles: vec![role.into()],
            })
            .await
            .expect("create user");
    }
    let mut rita = kurrent_as(&server, AuthHeader::basic("rita", "rita-password")).await;
    assert_eq!(
        read_events(
            &mut rita,
            read_options(
                of_stream("k-auth", RevisionOption::Start(E)),
                ReadDirection::Forwards,
                10
            ),
        )
        .await
        .len(),
        1
    );
    let denied = try_append(
        &mut rita,
        "k-auth",
        ExpectedStreamRevision::Any(E),
        events(1, "r"),
    )
    .await
    .expect_err("a reader appends");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        trailer(&denied, "exception").as_deref(),
        Some("access-denied")
    );
    let mut will = kurrent_as(&server, AuthHeader::basic("will", "will-password")).await;
    appended(
        &append(
            &mut will,
            "k-auth",
            ExpectedStreamRevision::Any(E),
            events(1, "w"),
        )
        .await,
    );
    let denied = will
        .tombstone(tombstone_req("k-auth"))
        .await
        .expect_err("a writer tombstones");
    assert_eq!(denied.code(), Code::PermissionDenied);
}

#[tokio::test]
async fn reflection_describes_the_kurrentdb_services() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let server = TestServer::start().await;
    let channel = common::channel_with(server.addr, AuthHeader::none()).await;
    let req = |m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let requests = tokio_stream::iter(vec![
        req(MessageRequest::ListServices(String::new())),
        req(MessageRequest::FileContainingSymbol(
            "event_store.client.streams.Streams".into(),
        )),
    ]);
    let mut answers = ServerReflectionClient::new(channel)
        .server_reflection_info(requests)
        .await
        .expect("reflection")
        .into_inner();
    let (mut services, mut files) = (Vec::new(), 0);
    while let Some(a) = answers.message().await.expect("reflection answer") {
        match a.message_response.expect("an answer") {
            MessageResponse::ListServicesResponse(l) => {
                services.extend(l.service.into_iter().map(|s| s.name))
            }
            MessageResponse::FileDescriptorResponse(f) => files += f.file_descriptor_proto.len(),
            other => panic!("unexpected {other:?}"),
        }
    }
    for wanted in [
        "strata.v1.Streams",
        "event_store.client.streams.Streams",
        "event_store.client.gossip.Gossip",
        "event_store.client.server_features.ServerFeatures",
    ] {
        assert!(
            services.iter().any(|s| s == wanted),
            "{wanted}: {services:?}"
        );
    }
    assert!(
        files > 0,
        "no descriptor for event_store.client.streams.Streams"
    );
}

fn filtered(on_streams: bool, prefixes: &[&str], regex: &str) -> FilterOption {
    use ro::filter_options::{Expression, Filter, Window};
    let expression = Expression {
        regex: regex.into(),
        prefix: prefixes.iter().map(|p| p.to_string()).collect(),
    };
    FilterOption::Filter(ro::FilterOptions {
        filter: Some(if on_streams {
            Filter::StreamIdentifier(expression)
        } else {
            Filter::EventType(expression)
        }),
        window: Some(Window::Max(32)),
        checkpoint_interval_multiplier: 1,
    })
}

fn with_filter(mut req: ReadReq, filter: FilterOption) -> ReadReq {
    if let Some(o) = &mut req.options {
        o.filter_option = Some(filter);
    }
    req
}

#[tokio::test]
async fn all_reads_filter_by_stream_and_event_type_prefix() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    append(
        &mut k,
        "k-f1",
        ExpectedStreamRevision::Any(E),
        vec![proposed(&id_text(), "Order", b"o")],
    )
    .await;
    append(
        &mut k,
        "k-f2",
        ExpectedStreamRevision::Any(E),
        vec![proposed(&id_text(), "Invoice", b"i")],
    )
    .await;
    append(
        &mut k,
        "k-f1",
        ExpectedStreamRevision::Any(E),
        vec![proposed(&id_text(), "Invoice", b"j")],
    )
    .await;
    let all = || read_options(of_all(AllOption::Start(E)), ReadDirection::Forwards, 100);

    let by_stream = read_events(&mut k, with_filter(all(), filtered(true, &["k-f1"], ""))).await;
    assert_eq!(datas(&by_stream), vec!["o", "j"]);
    let by_type = read_events(&mut k, with_filter(all(), filtered(false, &["Inv"], ""))).await;
    assert_eq!(datas(&by_type), vec!["i", "j"]);
    let backwards = read_events(
        &mut k,
        with_filter(
            read_options(of_all(AllOption::End(E)), ReadDirection::Backwards, 1),
            filtered(false, &["Order"], ""),
        ),
    )
    .await;
    assert_eq!(datas(&backwards), vec!["o"]);

    // A filter on a stream read is malformed.
    let on_stream = try_read(
        &mut k,
        with_filter(
            read_options(
                of_stream("k-f1", RevisionOption::Start(E)),
                ReadDirection::Forwards,
                9,
            ),
            filtered(true, &["k"], ""),
        ),
    )
    .await;
    assert_eq!(
        on_stream.expect_err("filtered stream").code(),
        Code::InvalidArgument
    );
}

fn event_type_of(e: &RecordedEvent) -> &str {
    e.metadata.get("type").map_or("", String::as_str)
}

/// Subscription messages up to the next event, which it returns; no other
/// content than checkpoints and `caught_up` may come first.
async fn next_event(sub: &mut tonic::Streaming<ReadResp>) -> RecordedEvent {
    loop {
        match next(sub).await {
            Content::Event(e) => return e.event.expect("event"),
            Content::Checkpoint(_) | Content::CaughtUp(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[tokio::test]
async fn all_reads_and_subscriptions_filter_by_regular_expression() {
    use delete_req::options::ExpectedStreamRevision as D;
    // Checkpoints every two scanned events, to see them flow.
    let server = TestServer::start_with(|a| a.checkpoint_events = 2).await;
    let mut k = kurrent(&server).await;
    for (stream, event_type, data) in [
        ("k-rx-order", "Placed", "a"),
        ("k-rx-invoice", "Paid", "b"),
        ("k-rx-order", "PersistentConfig1", "c"),
        ("k-rx-order", "$stats", "s"),
        ("k-rx-gone", "Placed", "g"),
    ] {
        append(
            &mut k,
            stream,
            ExpectedStreamRevision::Any(E),
            vec![proposed(&id_text(), event_type, data.as_bytes())],
        )
        .await;
    }
    // Recorded in `$lifecycle` with type `$deleted`; "g" is hidden.
    k.delete(delete_req("k-rx-gone", D::Any(E)))
        .await
        .expect("delete");
    let all = || read_options(of_all(AllOption::Start(E)), ReadDirection::Forwards, 100);
    let mut read = async |on_streams: bool, regex: &str| {
        read_events(&mut k, with_filter(all(), filtered(on_streams, &[], regex))).await
    };

    // Matched anywhere in the name, as KurrentDB's IsMatch does.
    assert_eq!(datas(&read(true, "invoice$").await), vec!["b"]);
    assert_eq!(datas(&read(false, r"^Pl|Config\d").await), vec!["a", "c"]);
    // The Python client's default: no `$`-types (nor `$`-streams, whose
    // events have them) and no PersistentConfig events.
    let python = read(false, r"^(?!(\$.+$|PersistentConfig\d+$))").await;
    assert_eq!(datas(&python), vec!["a", "b"]);
    // A stream-name expression is asked about `$`-streams too: the Rust and
    // Node clients' exclusion leaves them out, `^\$` finds them.
    let user = read(true, r"^[^\$].*").await;
    assert_eq!(datas(&user), vec!["a", "b", "c", "s"]);
    let system = read(true, r"^\$lifecycle$").await;
    assert!(!system.is_empty(), "the delete is recorded");
    assert!(system
        .iter()
        .all(|e| stream_of(e) == "$lifecycle" && event_type_of(e) == "$deleted"));
    // Backwards, with a count.
    let last = read_events(
        &mut k,
        with_filter(
            read_options(of_all(AllOption::End(E)), ReadDirection::Backwards, 1),
            filtered(true, &[], "order$"),
        ),
    )
    .await;
    assert_eq!(datas(&last), vec!["s"]);

    // An invalid or overlong pattern is INVALID_ARGUMENT, for reads and
    // subscriptions alike.
    let invalid = try_read(&mut k, with_filter(all(), filtered(false, &[], "(Placed")))
        .await
        .expect_err("invalid pattern");
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert!(
        invalid.message().contains("(Placed"),
        "{}",
        invalid.message()
    );
    let long = "a".repeat(1025);
    let overlong = try_read(&mut k, with_filter(all(), filtered(true, &[], &long))).await;
    assert_eq!(overlong.expect_err("long").code(), Code::InvalidArgument);
    let subscription = |filter: FilterOption| {
        let mut req = with_filter(
            read_options(of_all(AllOption::End(E)), ReadDirection::Forwards, 0),
            filter,
        );
        if let Some(o) = &mut req.options {
            o.count_option = Some(CountOption::Subscription(ro::SubscriptionOptions {}));
        }
        req
    };
    let refused = k
        .read(subscription(filtered(true, &[], "[")))
        .await
        .expect_err("invalid pattern");
    assert_eq!(refused.code(), Code::InvalidArgument);

    // A subscription gets the live event that matches (a look-ahead), not
    // the one before it that does not, and checkpoints while nothing
    // matches.
    let mut sub = k
        .read(subscription(filtered(false, &[], r"^(?=Ship)\w+ed$")))
        .await
        .expect("subscribe")
        .into_inner();
    assert!(matches!(next(&mut sub).await, Content::Confirmation(_)));
    let mut writer = kurrent(&server).await;
    for (event_type, data) in [("Packed", "n"), ("Shipped", "m")] {
        append(
            &mut writer,
            "k-rx-order",
            ExpectedStreamRevision::Any(E),
            vec![proposed(&id_text(), event_type, data.as_bytes())],
        )
        .await;
    }
    assert_eq!(datas(&[next_event(&mut sub).await]), vec!["m"]);
    let (_, quiet) = appended(
        &append(
            &mut writer,
            "k-rx-order",
            ExpectedStreamRevision::Any(E),
            (0..3)
                .map(|i| proposed(&id_text(), "Packed", format!("q{i}").as_bytes()))
                .collect(),
        )
        .await,
    );
    loop {
        match next(&mut sub).await {
            Content::Checkpoint(c) if c.commit_position == quiet => break,
            Content::Checkpoint(c) => assert!(c.commit_position < quiet),
            other => panic!("unexpected {other:?}"),
        }
    }

    // A match that backtracks past the limit ends the call.
    append(
        &mut writer,
        "k-rx-costly",
        ExpectedStreamRevision::Any(E),
        vec![proposed(&id_text(), &format!("{}!", "a".repeat(40)), b"x")],
    )
    .await;
    let costly = try_read(
        &mut k,
        with_filter(all(), filtered(false, &[], r"^(?=a)(a|aa)*\1$")),
    )
    .await
    .expect_err("too costly");
    assert_eq!(costly.code(), Code::InvalidArgument);
    assert!(
        costly.message().contains("backtrack"),
        "{}",
        costly.message()
    );
}

#[tokio::test]
async fn an_empty_append_checks_the_expectation_and_writes_nothing() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    match append(
        &mut k,
        "k-empty",
        ExpectedStreamRevision::NoStream(E),
        Vec::new(),
    )
    .await
    {
        append_resp::Result::Success(s) => {
            assert_eq!(
                s.current_revision_option,
                Some(success::CurrentRevisionOption::NoStream(E))
            );
            assert_eq!(
                s.position_option,
                Some(success::PositionOption::NoPosition(E))
            );
        }
        other => panic!("{other:?}"),
    }
    append(
        &mut k,
        "k-empty",
        ExpectedStreamRevision::Any(E),
        events(1, "e"),
    )
    .await;
    assert!(matches!(
        append(
            &mut k,
            "k-empty",
            ExpectedStreamRevision::NoStream(E),
            Vec::new()
        )
        .await,
        append_resp::Result::WrongExpectedVersion(_)
    ));
    match append(
        &mut k,
        "k-empty",
        ExpectedStreamRevision::Revision(0),
        Vec::new(),
    )
    .await
    {
        append_resp::Result::Success(s) => assert_eq!(
            s.current_revision_option,
            Some(success::CurrentRevisionOption::CurrentRevision(0))
        ),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_append_over_the_limit_names_it_in_the_trailers() {
    let server = TestServer::start_with(|a| {
        a.max_event_bytes = 1024;
        a.max_append_bytes = 2048;
    })
    .await;
    let mut k = kurrent(&server).await;
    let big: Vec<_> = (0..3)
        .map(|_| proposed(&id_text(), "Big", &[b'x'; 1000]))
        .collect();
    let refused = try_append(&mut k, "k-big", ExpectedStreamRevision::Any(E), big)
        .await
        .expect_err("over the append limit");
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        trailer(&refused, "exception").as_deref(),
        Some("maximum-append-size-exceeded")
    );
    assert_eq!(
        trailer(&refused, "maximum-append-size").as_deref(),
        Some("2048")
    );
}

#[tokio::test]
async fn stream_acls_hold_through_the_layer() {
    let server = TestServer::start_with(|a| {
        a.auth = AuthMode::Required;
        a.admin_password = Some(ADMIN_PASSWORD.into());
    })
    .await;
    let admin = AuthHeader::basic("admin", ADMIN_PASSWORD);
    let mut users = UsersClient::new(common::channel_with(server.addr, admin.clone()).await);
    users
        .create(v1::CreateUserRequest {
            user: "rita".into(),
            password: "rita-password".into(),
            roles: vec!["reader".into()],
        })
        .await
        .expect("create user");
    let mut k = kurrent_as(&server, admin.clone()).await;
    append(
        &mut k,
        "k-secret",
        ExpectedStreamRevision::Any(E),
        events(1, "s"),
    )
    .await;
    append(
        &mut k,
        "k-open",
        ExpectedStreamRevision::Any(E),
        events(1, "o"),
    )
    .await;
    // Only admins (and nobody named) may read k-secret.
    let mut native =
        v1::streams_client::StreamsClient::new(common::channel_with(server.addr, admin).await);
    native
        .set_stream_metadata(v1::SetStreamMetadataRequest {
            stream: "k-secret".into(),
            expected: Some(v1::ExpectedVersion::any()),
            metadata: Some(v1::StreamMetadata {
                acl: Some(v1::StreamAcl {
                    read: vec!["nobody".into()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("set metadata");

    let mut rita = kurrent_as(&server, AuthHeader::basic("rita", "rita-password")).await;
    let denied = try_read(
        &mut rita,
        read_options(
            of_stream("k-secret", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            9,
        ),
    )
    .await
    .expect_err("the ACL refuses rita");
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(
        trailer(&denied, "exception").as_deref(),
        Some("access-denied")
    );
    // `$all` skips what she may not read.
    let all = read_events(
        &mut rita,
        read_options(of_all(AllOption::Start(E)), ReadDirection::Forwards, 100),
    )
    .await;
    let streams: Vec<_> = all.iter().map(stream_of).collect();
    assert_eq!(streams, vec!["k-open"]);
}

#[tokio::test]
async fn a_subscription_ends_unavailable_at_shutdown_and_the_server_stops() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    let mut req = read_options(of_all(AllOption::End(E)), ReadDirection::Forwards, 0);
    if let Some(o) = &mut req.options {
        o.count_option = Some(CountOption::Subscription(ro::SubscriptionOptions {}));
    }
    let mut sub = k.read(req).await.expect("subscribe").into_inner();
    assert!(matches!(next(&mut sub).await, Content::Confirmation(_)));
    let stopping = tokio::spawn(server.stop());
    // Whatever it still had to say, the call ends UNAVAILABLE (or the
    // connection closes).
    loop {
        match tokio::time::timeout(PATIENCE, sub.message())
            .await
            .expect("the subscription ends")
        {
            Err(s) => {
                assert_eq!(s.code(), Code::Unavailable, "{s}");
                break;
            }
            Ok(None) => break,
            Ok(Some(ReadResp {
                content: Some(Content::CaughtUp(_)),
            })) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    stopping
        .await
        .expect("stop task")
        .expect("the server stops cleanly");
}

#[tokio::test]
async fn an_append_left_open_does_not_hold_shutdown_up() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(AppendReq {
        content: Some(append_req::Content::Options(append_req::Options {
            stream_identifier: sid("k-open-append"),
            expected_stream_revision: Some(ExpectedStreamRevision::Any(E)),
        })),
    })
    .await
    .expect("send options");
    tx.send(proposed(&id_text(), "T", b"{}"))
        .await
        .expect("send event");
    // The client never half-closes.
    let call = tokio::spawn(async move {
        k.append(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    tokio::time::timeout(PATIENCE, server.stop())
        .await
        .expect("the server stops in time")
        .expect("clean stop");
    let answer = call.await.expect("call task");
    assert!(answer.is_err(), "nothing was written: {answer:?}");
    drop(tx);
}
