//! Strata driven through its KurrentDB layer (`strata-kurrentdb`): the same
//! `strata` server, launched exactly as for `strata`, but every operation
//! goes through KurrentDB's public protocol (`event_store.client.streams`)
//! with the generated stubs of `strata_proto::kurrentdb`, so that its rows
//! next to `strata`'s show what the layer costs.
//!
//! Positions: the layer hands out commit = prepare = Strata position + 1
//! (docs/KURRENTDB.md, Positions); this client converts back, so
//! [`Expect::position`] and the `from`-th event of [`KurrentClient::read_all`]
//! mean what they mean for the native client.

use std::collections::HashMap;
use std::time::Instant;

use futures_util::FutureExt as _;
use strata_proto::kurrentdb::shared::{self, Empty, StreamIdentifier};
use strata_proto::kurrentdb::streams::append_req::{self, options::ExpectedStreamRevision};
use strata_proto::kurrentdb::streams::append_resp::{self, success, wrong_expected_version as wev};
use strata_proto::kurrentdb::streams::read_req::options::{
    self as read_options, all_options::AllOption, stream_options::RevisionOption, CountOption,
    FilterOption, ReadDirection, StreamOption,
};
use strata_proto::kurrentdb::streams::read_resp::Content;
use strata_proto::kurrentdb::streams::streams_client::StreamsClient;
use strata_proto::kurrentdb::streams::{read_req, AppendReq, AppendResp, ReadReq, ReadResp};
use tonic::codec::Streaming;

use super::strata::{transport, Transport, EVENT_TYPE};
use super::{AppendResult, Expect, FollowFrom};
use crate::clock::{self, stamp_of};
use crate::error::{BenchError, Result};

const SYSTEM: &str = "strata-kurrentdb";
/// The content type of every event: KurrentDB requires one, and the
/// payload is opaque bytes.
const CONTENT_TYPE: &str = "application/octet-stream";
/// Most events handed to one progress or batch callback: the messages
/// already received when the first of them is read, up to this many.
const MAX_BATCH: usize = 512;

/// One client of Strata's KurrentDB layer; clones share the HTTP/2
/// connection.
#[derive(Clone)]
pub struct KurrentClient {
    inner: StreamsClient<Transport>,
}

/// Opens one HTTP/2 connection to `url`, set up exactly as the native
/// client's (window sizes, `tcp_nodelay`, and with `--tls` the run's CA and
/// the admin's `Basic` header, which the layer accepts).
pub async fn connect(url: &str) -> Result<KurrentClient> {
    let inner = StreamsClient::new(transport(url).await?)
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    Ok(KurrentClient { inner })
}

impl KurrentClient {
    /// Appends `events` stamped payloads of `payload` bytes to `stream`
    /// with one `Streams.Append`: the options (expected revision `n`, or no
    /// stream), then one proposed message per event. A wrong expected
    /// version, answered in-band, is [`AppendResult::Conflict`].
    pub async fn append(
        &self,
        stream: &str,
        expect: Expect,
        events: usize,
        payload: usize,
    ) -> Result<AppendResult> {
        let messages = append_messages(stream, expect, events, payload);
        let response = self
            .inner
            .clone()
            .append(futures_util::stream::iter(messages))
            .await?
            .into_inner();
        append_result(response, events)
    }

    /// Reads up to `count` events of `$all` forwards from the `from`-th
    /// event (Strata position `from`, commit position `from + 1`); reports
    /// the events of each run of messages as they arrive.
    pub async fn read_all(
        &self,
        from: u64,
        count: u64,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<u64> {
        let wire = from.saturating_add(1);
        let all = read_options::AllOptions {
            all_option: Some(AllOption::Position(read_options::Position {
                commit_position: wire,
                prepare_position: wire,
            })),
        };
        let request = read_request(
            StreamOption::All(all),
            ReadDirection::Forwards,
            CountOption::Count(count),
        );
        self.read(request, progress).await
    }

    /// Reads a whole stream, forwards from its start (0 for a stream the
    /// layer answers `stream_not_found`).
    pub async fn read_stream(&self, stream: &str) -> Result<u64> {
        let target = read_options::StreamOptions {
            stream_identifier: Some(stream_identifier(stream)),
            revision_option: Some(RevisionOption::Start(Empty {})),
        };
        let request = read_request(
            StreamOption::Stream(target),
            ReadDirection::Forwards,
            CountOption::Count(u64::MAX),
        );
        self.read(request, &mut |_| {}).await
    }

    /// Number of events in `$all`: the commit position of its last event
    /// (a backwards read of 1 from the end), which is its Strata position
    /// + 1; 0 when `$all` is empty.
    pub async fn head(&self) -> Result<u64> {
        let all = read_options::AllOptions {
            all_option: Some(AllOption::End(Empty {})),
        };
        let request = read_request(
            StreamOption::All(all),
            ReadDirection::Backwards,
            CountOption::Count(1),
        );
        let mut stream = self.inner.clone().read(request).await?.into_inner();
        while let Some(message) = stream.message().await? {
            if let Some(Content::Event(e)) = message.content {
                let commit = e.event.map(|r| r.commit_position).ok_or_else(|| {
                    BenchError::server(SYSTEM, "a $all read answered an event without its record")
                })?;
                return Ok(commit);
            }
        }
        Ok(0)
    }

    /// Follows `$all` with a catch-up subscription (`Streams.Read` with
    /// `subscription`) from its start or its end, until `deadline` or until
    /// `on_batch` returns false. `on_batch` gets the send stamps of each run
    /// of events received together (the layer sends one event per message).
    pub async fn follow_all(
        &self,
        from: FollowFrom,
        deadline: Instant,
        on_batch: &mut (dyn FnMut(&[u64]) -> bool + Send),
    ) -> Result<()> {
        let all = read_options::AllOptions {
            all_option: Some(match from {
                FollowFrom::Start => AllOption::Start(Empty {}),
                FollowFrom::Now => AllOption::End(Empty {}),
            }),
        };
        let request = read_request(
            StreamOption::All(all),
            ReadDirection::Forwards,
            CountOption::Subscription(read_options::SubscriptionOptions {}),
        );
        let deadline = tokio::time::Instant::from_std(deadline);
        let call = tokio::time::timeout_at(deadline, self.inner.clone().read(request)).await;
        let Ok(response) = call else { return Ok(()) };
        let mut stream = response?.into_inner();
        let mut stamps = Vec::with_capacity(MAX_BATCH);
        loop {
            let Ok(first) = tokio::time::timeout_at(deadline, stream.message()).await else {
                return Ok(());
            };
            stamps.clear();
            let ended = take_run(first?, &mut stream, MAX_BATCH, |event| {
                stamps.push(stamp_of(event).unwrap_or(0));
            })?;
            if !stamps.is_empty() && !on_batch(&stamps) {
                return Ok(());
            }
            if ended {
                return Ok(());
            }
        }
    }

    /// Runs a bounded read; reports the events of each run of messages
    /// received together. Returns the events read.
    async fn read(
        &self,
        request: ReadReq,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<u64> {
        let mut stream = self.inner.clone().read(request).await?.into_inner();
        let mut total = 0u64;
        loop {
            let first = stream.message().await?;
            let mut events = 0usize;
            let ended = take_run(first, &mut stream, MAX_BATCH, |_| events += 1)?;
            if events > 0 {
                total += events as u64;
                progress(events);
            }
            if ended {
                return Ok(total);
            }
        }
    }
}

/// Hands the data of `first` (when it is an event) and of every event
/// message already received after it to `on_event`, up to `max` events,
/// without waiting for more. Returns whether the call ended (`first` or a
/// later message was the end of the stream). Confirmations, `caught_up`,
/// checkpoints and the other non-event messages are skipped.
fn take_run(
    first: Option<ReadResp>,
    stream: &mut Streaming<ReadResp>,
    max: usize,
    mut on_event: impl FnMut(&[u8]),
) -> Result<bool> {
    let mut next = first;
    let mut taken = 0usize;
    loop {
        let Some(message) = next else {
            return Ok(true);
        };
        if let Some(Content::Event(e)) = message.content {
            let record = e.event.ok_or_else(|| {
                BenchError::server(SYSTEM, "a read answered an event without its record")
            })?;
            on_event(&record.data);
            taken += 1;
        }
        if taken >= max {
            return Ok(false);
        }
        // `message()` keeps what it has buffered when dropped unfinished.
        match stream.message().now_or_never() {
            Some(received) => next = received?,
            None => return Ok(false),
        }
    }
}

/// A `Streams.Read` request: no filter, no links, UUIDs in the structured
/// form, and compatibility level 1 as KurrentDB's own clients send it.
fn read_request(stream: StreamOption, direction: ReadDirection, count: CountOption) -> ReadReq {
    ReadReq {
        options: Some(read_req::Options {
            stream_option: Some(stream),
            read_direction: direction as i32,
            resolve_links: false,
            count_option: Some(count),
            filter_option: Some(FilterOption::NoFilter(Empty {})),
            uuid_option: Some(read_options::UuidOption {
                content: Some(read_options::uuid_option::Content::Structured(Empty {})),
            }),
            control_option: Some(read_options::ControlOption { compatibility: 1 }),
        }),
    }
}

/// The messages of one `Streams.Append`: the options (expected revision
/// `n`, or no stream, as `expect` says), then `events` proposed messages,
/// each with a random UUID v4 id, `type` and `content-type` metadata and a
/// stamped payload of `payload` bytes.
fn append_messages(stream: &str, expect: Expect, events: usize, payload: usize) -> Vec<AppendReq> {
    let expected = match expect.revision {
        Some(r) => ExpectedStreamRevision::Revision(r),
        None => ExpectedStreamRevision::NoStream(Empty {}),
    };
    let mut messages = Vec::with_capacity(events + 1);
    messages.push(AppendReq {
        content: Some(append_req::Content::Options(append_req::Options {
            stream_identifier: Some(stream_identifier(stream)),
            expected_stream_revision: Some(expected),
        })),
    });
    messages.extend((0..events).map(|_| AppendReq {
        content: Some(append_req::Content::ProposedMessage(
            append_req::ProposedMessage {
                id: Some(structured_uuid(uuid::Uuid::new_v4())),
                metadata: HashMap::from([
                    ("type".to_owned(), EVENT_TYPE.to_owned()),
                    ("content-type".to_owned(), CONTENT_TYPE.to_owned()),
                ]),
                custom_metadata: Default::default(),
                data: clock::stamped_payload(payload).into(),
            },
        )),
    }));
    messages
}

/// The driver's view of an `Append` answer of `events` events: the
/// stream's revision and the last event's Strata position (its commit
/// position − 1), or the conflict with the stream's current revision.
fn append_result(response: AppendResp, events: usize) -> Result<AppendResult> {
    match response.result {
        Some(append_resp::Result::Success(s)) => {
            let revision = match s.current_revision_option {
                Some(success::CurrentRevisionOption::CurrentRevision(r)) => Some(r),
                Some(success::CurrentRevisionOption::NoStream(_)) | None => None,
            };
            if revision.is_none() && events > 0 {
                return Err(BenchError::server(
                    SYSTEM,
                    "an append of events answered success with no revision",
                ));
            }
            let position = match s.position_option {
                Some(success::PositionOption::Position(p)) => p.commit_position.checked_sub(1),
                Some(success::PositionOption::NoPosition(_)) | None => None,
            };
            Ok(AppendResult::Ok(Expect { revision, position }))
        }
        Some(append_resp::Result::WrongExpectedVersion(w)) => {
            let revision = match (w.current_revision_option, w.current_revision_option_20_6_0) {
                (Some(wev::CurrentRevisionOption::CurrentRevision(r)), _) => Some(r),
                (Some(wev::CurrentRevisionOption::CurrentNoStream(_)), _) => None,
                (None, Some(wev::CurrentRevisionOption2060::CurrentRevision2060(r))) => Some(r),
                (None, Some(wev::CurrentRevisionOption2060::NoStream2060(_))) => None,
                (None, None) => {
                    return Err(BenchError::server(
                        SYSTEM,
                        "wrong_expected_version answered with no current revision",
                    ))
                }
            };
            Ok(AppendResult::Conflict(Expect {
                revision,
                position: None,
            }))
        }
        None => Err(BenchError::server(SYSTEM, "append answered with no result")),
    }
}

/// A stream name for the wire (its UTF-8 bytes).
fn stream_identifier(name: &str) -> StreamIdentifier {
    StreamIdentifier {
        stream_name: name.as_bytes().to_vec(),
    }
}

/// A UUID in KurrentDB's structured form: its first and last 8 bytes as
/// big-endian signed integers.
fn structured_uuid(id: uuid::Uuid) -> shared::Uuid {
    let (most, least) = id.as_u64_pair();
    shared::Uuid {
        value: Some(shared::uuid::Value::Structured(shared::uuid::Structured {
            most_significant_bits: most as i64,
            least_significant_bits: least as i64,
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_starts_with_the_options_then_one_message_per_event() {
        let m = append_messages("s", Expect::NEW, 3, 16);
        assert_eq!(m.len(), 4);
        match &m[0].content {
            Some(append_req::Content::Options(o)) => assert_eq!(
                o.expected_stream_revision,
                Some(ExpectedStreamRevision::NoStream(Empty {}))
            ),
            other => panic!("not the options: {other:?}"),
        }
        let next = Expect {
            revision: Some(7),
            position: Some(40),
        };
        match &append_messages("s", next, 1, 16)[0].content {
            Some(append_req::Content::Options(o)) => assert_eq!(
                o.expected_stream_revision,
                Some(ExpectedStreamRevision::Revision(7))
            ),
            other => panic!("not the options: {other:?}"),
        }
        for message in &m[1..] {
            let Some(append_req::Content::ProposedMessage(p)) = &message.content else {
                panic!("not an event: {message:?}");
            };
            assert_eq!(p.metadata.get("type").map(String::as_str), Some(EVENT_TYPE));
            assert_eq!(
                p.metadata.get("content-type").map(String::as_str),
                Some(CONTENT_TYPE)
            );
            assert!(stamp_of(&p.data).is_some() && p.data.len() == 16);
        }
    }

    #[test]
    fn positions_come_back_as_strata_positions() {
        let ok = AppendResp {
            result: Some(append_resp::Result::Success(append_resp::Success {
                current_revision_option: Some(success::CurrentRevisionOption::CurrentRevision(4)),
                position_option: Some(success::PositionOption::Position(append_resp::Position {
                    commit_position: 11,
                    prepare_position: 11,
                })),
            })),
        };
        assert_eq!(
            append_result(ok, 1).expect("success"),
            AppendResult::Ok(Expect {
                revision: Some(4),
                position: Some(10),
            })
        );
        let conflict = AppendResp {
            result: Some(append_resp::Result::WrongExpectedVersion(
                append_resp::WrongExpectedVersion {
                    current_revision_option: Some(wev::CurrentRevisionOption::CurrentRevision(9)),
                    ..Default::default()
                },
            )),
        };
        assert_eq!(
            append_result(conflict, 1).expect("conflict"),
            AppendResult::Conflict(Expect {
                revision: Some(9),
                position: None,
            })
        );
        assert!(append_result(AppendResp { result: None }, 1).is_err());
    }

    #[test]
    fn uuids_are_structured_big_endian_halves() {
        let id = uuid::Uuid::parse_str("0f8fad5b-d9cb-469f-a165-70867728950e").expect("uuid");
        match structured_uuid(id).value {
            Some(shared::uuid::Value::Structured(s)) => {
                assert_eq!(s.most_significant_bits as u64, 0x0f8f_ad5b_d9cb_469f);
                assert_eq!(s.least_significant_bits as u64, 0xa165_7086_7728_950e);
            }
            other => panic!("not structured: {other:?}"),
        }
    }
}
