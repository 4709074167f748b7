//! Shared helpers of the KurrentDB tier (`kurrentdb_*.rs`): the generated
//! KurrentDB clients against the in-process server, and wrappers for the
//! protocol's wordier messages. Every test binary uses a different part.
#![allow(dead_code)]

use std::collections::HashMap;

use crate::common::{self, AuthChannel, AuthHeader, TestServer, PATIENCE};
use strata_proto::kurrentdb::shared::{uuid, Empty, StreamIdentifier, Uuid};
use strata_proto::kurrentdb::streams::append_req::{self, options::ExpectedStreamRevision};
use strata_proto::kurrentdb::streams::append_resp::{self, success};
use strata_proto::kurrentdb::streams::read_req::options::{
    self as ro, all_options::AllOption, stream_options::RevisionOption, uuid_option, CountOption,
    FilterOption, ReadDirection, StreamOption,
};
use strata_proto::kurrentdb::streams::read_resp::{read_event::RecordedEvent, Content};
use strata_proto::kurrentdb::streams::streams_client::StreamsClient;
use strata_proto::kurrentdb::streams::{read_req, AppendReq, ReadReq, ReadResp};
use tonic::Status;

pub type Kurrent = StreamsClient<AuthChannel>;

pub const E: Empty = Empty {};
pub const ADMIN_PASSWORD: &str = "kurrent admin pw";

pub async fn kurrent(server: &TestServer) -> Kurrent {
    kurrent_as(server, AuthHeader::none()).await
}

pub async fn kurrent_as(server: &TestServer, auth: AuthHeader) -> Kurrent {
    StreamsClient::new(common::channel_with(server.addr, auth).await)
}

pub fn sid(name: &str) -> Option<StreamIdentifier> {
    Some(StreamIdentifier {
        stream_name: name.as_bytes().to_vec(),
    })
}

pub fn id_text() -> String {
    ::uuid::Uuid::new_v4().to_string()
}

/// A proposed event with a text id.
pub fn proposed(id: &str, event_type: &str, data: &[u8]) -> AppendReq {
    AppendReq {
        content: Some(append_req::Content::ProposedMessage(
            append_req::ProposedMessage {
                id: Some(Uuid {
                    value: Some(uuid::Value::String(id.to_owned())),
                }),
                metadata: HashMap::from([
                    ("type".to_owned(), event_type.to_owned()),
                    ("content-type".to_owned(), "application/json".to_owned()),
                ]),
                custom_metadata: b"meta".to_vec().into(),
                data: data.to_vec().into(),
            },
        )),
    }
}

pub async fn try_append(
    client: &mut Kurrent,
    stream: &str,
    expected: ExpectedStreamRevision,
    events: Vec<AppendReq>,
) -> Result<append_resp::Result, Status> {
    let mut requests = vec![AppendReq {
        content: Some(append_req::Content::Options(append_req::Options {
            stream_identifier: sid(stream),
            expected_stream_revision: Some(expected),
        })),
    }];
    requests.extend(events);
    let answer = client.append(tokio_stream::iter(requests)).await?;
    Ok(answer
        .into_inner()
        .result
        .expect("AppendResp.result is set"))
}

pub async fn append(
    client: &mut Kurrent,
    stream: &str,
    expected: ExpectedStreamRevision,
    events: Vec<AppendReq>,
) -> append_resp::Result {
    try_append(client, stream, expected, events)
        .await
        .unwrap_or_else(|e| panic!("append to {stream} failed: {e}"))
}

/// `(current revision, commit position)` of a successful append.
pub fn appended(r: &append_resp::Result) -> (u64, u64) {
    match r {
        append_resp::Result::Success(s) => {
            let revision = match s.current_revision_option {
                Some(success::CurrentRevisionOption::CurrentRevision(r)) => r,
                other => panic!("no revision: {other:?}"),
            };
            let position = match s.position_option {
                Some(success::PositionOption::Position(p)) => {
                    assert_eq!(p.commit_position, p.prepare_position);
                    p.commit_position
                }
                other => panic!("no position: {other:?}"),
            };
            (revision, position)
        }
        other => panic!("expected success, got {other:?}"),
    }
}

pub fn events(n: usize, prefix: &str) -> Vec<AppendReq> {
    (0..n)
        .map(|i| proposed(&id_text(), "Kt", format!("{prefix}-{i}").as_bytes()))
        .collect()
}

pub fn read_options(stream: StreamOption, direction: ReadDirection, count: u64) -> ReadReq {
    ReadReq {
        options: Some(read_req::Options {
            stream_option: Some(stream),
            read_direction: direction as i32,
            resolve_links: false,
            count_option: Some(CountOption::Count(count)),
            filter_option: Some(FilterOption::NoFilter(E)),
            uuid_option: Some(ro::UuidOption {
                content: Some(uuid_option::Content::String(E)),
            }),
            control_option: Some(ro::ControlOption { compatibility: 1 }),
        }),
    }
}

pub fn of_stream(name: &str, from: RevisionOption) -> StreamOption {
    StreamOption::Stream(ro::StreamOptions {
        stream_identifier: sid(name),
        revision_option: Some(from),
    })
}

pub fn of_all(from: AllOption) -> StreamOption {
    StreamOption::All(ro::AllOptions {
        all_option: Some(from),
    })
}

pub async fn try_read(client: &mut Kurrent, req: ReadReq) -> Result<Vec<ReadResp>, Status> {
    let mut stream = client.read(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(m) = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("read stalled")?
    {
        out.push(m);
    }
    Ok(out)
}

/// The events of a read (which must answer nothing else).
pub async fn read_events(client: &mut Kurrent, req: ReadReq) -> Vec<RecordedEvent> {
    try_read(client, req)
        .await
        .expect("read")
        .into_iter()
        .filter_map(|m| match m.content {
            Some(Content::Event(e)) => Some(e.event.expect("ReadEvent.event")),
            // Compatibility 1 ends a stream read with its last revision.
            Some(Content::LastStreamPosition(_)) => None,
            other => panic!("not an event: {other:?}"),
        })
        .collect()
}

pub fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.stream_revision).collect()
}

pub fn datas(events: &[RecordedEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| String::from_utf8(e.data.to_vec()).expect("utf-8"))
        .collect()
}

pub fn stream_of(e: &RecordedEvent) -> String {
    String::from_utf8(e.stream_identifier.clone().expect("stream").stream_name).expect("utf-8")
}

pub fn trailer(s: &Status, key: &str) -> Option<String> {
    s.metadata()
        .get(key)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}
