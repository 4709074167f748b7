//! KurrentDB compatibility: `Streams.BatchAppend` and the `$$` metadata
//! streams, through the generated KurrentDB clients against the in-process
//! server.

mod common;
mod kurrent_support;

use std::collections::HashMap;

use common::{TestServer, PATIENCE};
use kurrent_support::*;
use prost::Message;
use strata_proto::kurrentdb::shared::{self, uuid, Uuid};
use strata_proto::kurrentdb::streams::append_req::options::ExpectedStreamRevision;
use strata_proto::kurrentdb::streams::batch_append_req::{
    options::ExpectedStreamPosition, Options, ProposedMessage,
};
use strata_proto::kurrentdb::streams::batch_append_resp::{self, success};
use strata_proto::kurrentdb::streams::read_req::options::{
    stream_options::RevisionOption, ReadDirection,
};
use strata_proto::kurrentdb::streams::{BatchAppendReq, BatchAppendResp};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

fn correlation() -> Uuid {
    Uuid {
        value: Some(uuid::Value::String(id_text())),
    }
}

fn message(event_type: &str, data: &str) -> ProposedMessage {
    ProposedMessage {
        id: Some(Uuid {
            value: Some(uuid::Value::String(id_text())),
        }),
        metadata: HashMap::from([
            ("type".to_owned(), event_type.to_owned()),
            ("content-type".to_owned(), "application/json".to_owned()),
        ]),
        custom_metadata: Vec::new().into(),
        data: data.as_bytes().to_vec().into(),
    }
}

fn request(
    id: &Uuid,
    options: Option<(&str, ExpectedStreamPosition)>,
    messages: Vec<ProposedMessage>,
    is_final: bool,
) -> BatchAppendReq {
    BatchAppendReq {
        correlation_id: Some(id.clone()),
        options: options.map(|(stream, expected)| Options {
            stream_identifier: sid(stream),
            expected_stream_position: Some(expected),
            deadline_option: None,
        }),
        proposed_messages: messages,
        is_final,
    }
}

async fn answer(rx: &mut tonic::Streaming<BatchAppendResp>) -> BatchAppendResp {
    tokio::time::timeout(PATIENCE, rx.message())
        .await
        .expect("BatchAppend stalled")
        .expect("BatchAppend failed")
        .expect("BatchAppend ended")
}

fn revision_of(r: &BatchAppendResp) -> u64 {
    match &r.result {
        Some(batch_append_resp::Result::Success(s)) => match s.current_revision_option {
            Some(success::CurrentRevisionOption::CurrentRevision(r)) => r,
            ref other => panic!("no revision: {other:?}"),
        },
        other => panic!("not a success: {other:?}"),
    }
}

#[tokio::test]
async fn batches_share_a_call_span_requests_and_fail_alone() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    let (tx, requests) = mpsc::channel(16);
    let mut rx = k
        .batch_append(ReceiverStream::new(requests))
        .await
        .expect("BatchAppend")
        .into_inner();

    // A batch over two requests, and a conflicting one in between.
    let a = correlation();
    let b = correlation();
    tx.send(request(
        &a,
        Some(("ba-one", ExpectedStreamPosition::NoStream(()))),
        vec![message("T", "a0")],
        false,
    ))
    .await
    .expect("send");
    tx.send(request(
        &b,
        Some(("ba-two", ExpectedStreamPosition::StreamPosition(5))),
        vec![message("T", "b0")],
        true,
    ))
    .await
    .expect("send");
    let conflict = answer(&mut rx).await;
    assert_eq!(conflict.correlation_id, Some(b.clone()));
    let Some(batch_append_resp::Result::Error(status)) = &conflict.result else {
        panic!("a conflict is an error: {conflict:?}");
    };
    assert_eq!(status.code, Code::AlreadyExists as i32, "KurrentDB's code");
    let details = status.details.as_ref().expect("typed detail");
    assert_eq!(
        details.type_url,
        "type.googleapis.com/event_store.client.WrongExpectedVersion"
    );
    let wev = shared::WrongExpectedVersion::decode(details.value.as_slice()).expect("decodes");
    assert_eq!(
        wev.current_stream_revision_option,
        Some(shared::wrong_expected_version::CurrentStreamRevisionOption::CurrentNoStream(()))
    );
    assert_eq!(
        wev.expected_stream_position_option,
        Some(
            shared::wrong_expected_version::ExpectedStreamPositionOption::ExpectedStreamPosition(5)
        )
    );

    tx.send(request(&a, None, vec![message("T", "a1")], true))
        .await
        .expect("send");
    let ok = answer(&mut rx).await;
    assert_eq!(ok.correlation_id, Some(a));
    assert_eq!(revision_of(&ok), 1, "both requests' events in one batch");
    let read = read_events(
        &mut k,
        read_options(
            of_stream("ba-one", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            10,
        ),
    )
    .await;
    assert_eq!(datas(&read), ["a0", "a1"]);

    // A batch without type metadata fails alone, with BadRequest.
    let c = correlation();
    let mut untyped = message("T", "c0");
    untyped.metadata.remove("type");
    tx.send(request(
        &c,
        Some(("ba-three", ExpectedStreamPosition::Any(()))),
        vec![untyped],
        true,
    ))
    .await
    .expect("send");
    let bad = answer(&mut rx).await;
    let Some(batch_append_resp::Result::Error(status)) = &bad.result else {
        panic!("refused: {bad:?}");
    };
    assert_eq!(status.code, Code::InvalidArgument as i32);

    // A request without a correlation id ends the call.
    tx.send(BatchAppendReq {
        correlation_id: None,
        options: None,
        proposed_messages: Vec::new(),
        is_final: true,
    })
    .await
    .expect("send");
    let end = tokio::time::timeout(PATIENCE, rx.message())
        .await
        .expect("the call ends")
        .expect_err("an error");
    assert_eq!(end.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn metadata_streams_set_and_read_the_streams_metadata() {
    let server = TestServer::start().await;
    let mut k = kurrent(&server).await;
    append(
        &mut k,
        "md-s",
        ExpectedStreamRevision::NoStream(E),
        events(5, "e"),
    )
    .await;
    let written = br#"{"$maxCount":2,"$acl":{"$r":"$all"},"owner":"team-a"}"#;
    let mut set = proposed(&id_text(), "$metadata", written);
    let set_meta = append(
        &mut k,
        "$$md-s",
        ExpectedStreamRevision::NoStream(E),
        vec![set.clone()],
    )
    .await;
    assert_eq!(appended(&set_meta).0, 0, "the metadata's first revision");
    let read = read_events(
        &mut k,
        read_options(
            of_stream("md-s", RevisionOption::Start(E)),
            ReadDirection::Forwards,
            10,
        ),
    )
    .await;
    assert_eq!(revisions(&read), [3, 4], "$maxCount 2 keeps the last two");
    let meta = read_events(
        &mut k,
        read_options(
            of_stream("$$md-s", RevisionOption::End(E)),
            ReadDirection::Backwards,
            1,
        ),
    )
    .await;
    assert_eq!(meta.len(), 1);
    assert_eq!(meta[0].data.as_ref(), written, "read back as written");

    // A stale metadata revision is the in-band conflict.
    let stale = append(
        &mut k,
        "$$md-s",
        ExpectedStreamRevision::NoStream(E),
        vec![proposed(&id_text(), "$metadata", b"{}")],
    )
    .await;
    assert!(
        matches!(
            stale,
            strata_proto::kurrentdb::streams::append_resp::Result::WrongExpectedVersion(_)
        ),
        "{stale:?}"
    );
    // Only $metadata events, only valid metadata.
    set = proposed(&id_text(), "Other", b"{}");
    let refused = try_append(&mut k, "$$md-s", ExpectedStreamRevision::Any(E), vec![set])
        .await
        .expect_err("not a $metadata event");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = try_append(
        &mut k,
        "$$md-s",
        ExpectedStreamRevision::Any(E),
        vec![proposed(&id_text(), "$metadata", br#"{"$maxCount":"two"}"#)],
    )
    .await
    .expect_err("a bad $maxCount");
    assert_eq!(refused.code(), Code::InvalidArgument);

    // The native side sees the same metadata.
    let mut native = server.connect().await;
    let md = native
        .get_stream_metadata(strata_proto::v1::GetStreamMetadataRequest {
            stream: "md-s".into(),
        })
        .await
        .expect("native GetStreamMetadata")
        .into_inner();
    assert_eq!(md.metadata.expect("metadata").max_count, Some(2));
}
