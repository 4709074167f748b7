//! `Streams.BatchAppend` (bidirectional): many appends over one call, each
//! named by a correlation id. A batch's first request carries its options
//! (stream, expected revision, deadline); its events may come over several
//! requests, and it is written, atomically, once a request says
//! `is_final`. Batches are written concurrently and answered as they
//! finish, each by its correlation id; a failure (a conflict included) is a
//! `google.rpc.Status` with KurrentDB's typed detail, and ends nothing but
//! its own batch.
//!
//! Bounds: at most [`MAX_OPEN_BATCHES`] batches of one call are open (being
//! received or written) at once — a request beyond that is answered
//! RESOURCE_EXHAUSTED for its batch —, a batch's data is bounded by the
//! store's append limit, and a batch past its deadline is answered
//! DEADLINE_EXCEEDED (it may still have been written, as in KurrentDB).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use prost::Message;
use strata_proto::kurrentdb::google_rpc;
use strata_proto::kurrentdb::shared::{self, AllStreamPosition};
use strata_proto::kurrentdb::streams::batch_append_req::options::{
    DeadlineOption, ExpectedStreamPosition,
};
use strata_proto::kurrentdb::streams::batch_append_resp::{self, success, Success};
use strata_proto::kurrentdb::streams::{BatchAppendReq, BatchAppendResp};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

use super::append::{write, Written};
use super::{convert, errors, position, stopped, KurrentStreams};
use crate::auth::{Caller, StreamOp};
use crate::store::{AppendError, ExpectedVersion, NewEvent};

/// Batches of one call open at once, at most.
pub(super) const MAX_OPEN_BATCHES: usize = 256;

/// A batch's deadline when it names none (KurrentDB's default).
const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);

type Out = mpsc::Sender<Result<BatchAppendResp, Status>>;

/// A batch being received.
struct Open {
    correlation_id: shared::Uuid,
    stream: String,
    expected: ExpectedVersion,
    deadline: tokio::time::Instant,
    events: Vec<NewEvent>,
    bytes: u64,
    /// Answered already (refused): later requests of it are dropped.
    failed: bool,
}

pub(super) async fn handle(
    svc: &KurrentStreams,
    caller: Caller,
    mut requests: Streaming<BatchAppendReq>,
) -> Result<ReceiverStream<Result<BatchAppendResp, Status>>, Status> {
    if *svc.shutdown.borrow() {
        return Err(Status::unavailable("the server is shutting down"));
    }
    let (out, rx) = mpsc::channel(64);
    let svc = svc.clone();
    tokio::spawn(async move {
        let mut shutdown = svc.shutdown.clone();
        let mut open: HashMap<[u8; 16], Open> = HashMap::new();
        let mut writing = JoinSet::new();
        loop {
            // Finished writes give their room back.
            while writing.try_join_next().is_some() {}
            let msg = tokio::select! {
                m = requests.message() => m,
                _ = stopped(&mut shutdown) => {
                    let _ = out.send(Err(Status::unavailable("the server is shutting down"))).await;
                    return;
                }
                _ = out.closed() => return,
            };
            let req = match msg {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(_) => return,
            };
            if let Err(status) = receive(&svc, &caller, req, &mut open, &mut writing, &out).await {
                let _ = out.send(Err(status)).await;
                return;
            }
        }
        // The client half-closed: answer what is being written, then end.
        while writing.join_next().await.is_some() {}
    });
    Ok(ReceiverStream::new(rx))
}

/// Takes one request: opens, extends or completes its batch. An error ends
/// the whole call (a request without a correlation id).
async fn receive(
    svc: &KurrentStreams,
    caller: &Caller,
    req: BatchAppendReq,
    open: &mut HashMap<[u8; 16], Open>,
    writing: &mut JoinSet<()>,
    out: &Out,
) -> Result<(), Status> {
    let wire_id = req
        .correlation_id
        .ok_or_else(|| Status::invalid_argument("a BatchAppend request needs a correlation_id"))?;
    let id = convert::uuid_from_wire(Some(wire_id.clone()))?;
    if !open.contains_key(&id) {
        if open.len() + writing.len() >= MAX_OPEN_BATCHES {
            let status = Status::resource_exhausted(format!(
                "at most {MAX_OPEN_BATCHES} batches of one call may be open at once"
            ));
            send(out, failure(wire_id, None, &status)).await;
            return Ok(());
        }
        let batch = match start(svc, caller, wire_id.clone(), req.options) {
            Ok(b) => b,
            Err((stream, status)) => {
                send(out, failure(wire_id.clone(), stream.as_deref(), &status)).await;
                // Later requests of the batch are dropped.
                Open {
                    correlation_id: wire_id.clone(),
                    stream: String::new(),
                    expected: ExpectedVersion::Any,
                    deadline: tokio::time::Instant::now(),
                    events: Vec::new(),
                    bytes: 0,
                    failed: true,
                }
            }
        };
        open.insert(id, batch);
    }
    let batch = open.get_mut(&id).expect("inserted above");
    if !batch.failed {
        if let Err(status) = add(svc, batch, req.proposed_messages) {
            send(out, failure(wire_id, Some(&batch.stream), &status)).await;
            batch.failed = true;
        }
    }
    if req.is_final {
        let batch = open.remove(&id).expect("present");
        if !batch.failed {
            writing.spawn(finish(svc.clone(), batch, out.clone()));
        }
    }
    Ok(())
}

/// A new batch from its first request's options.
fn start(
    svc: &KurrentStreams,
    caller: &Caller,
    correlation_id: shared::Uuid,
    options: Option<strata_proto::kurrentdb::streams::batch_append_req::Options>,
) -> Result<Open, (Option<String>, Status)> {
    let o = options.ok_or_else(|| {
        (
            None,
            Status::invalid_argument("a batch's first request carries its options"),
        )
    })?;
    let stream = convert::stream_name(o.stream_identifier).map_err(|s| (None, s))?;
    let fail = |s: Status| (Some(stream.clone()), s);
    let expected = match o.expected_stream_position {
        Some(ExpectedStreamPosition::StreamPosition(r)) => ExpectedVersion::Exact(r),
        Some(ExpectedStreamPosition::NoStream(())) => ExpectedVersion::NoStream,
        Some(ExpectedStreamPosition::StreamExists(())) => ExpectedVersion::StreamExists,
        Some(ExpectedStreamPosition::Any(())) | None => ExpectedVersion::Any,
    };
    let now = tokio::time::Instant::now();
    let deadline = match o.deadline_option {
        Some(DeadlineOption::Deadline(d)) => {
            let d = Duration::try_from(d).unwrap_or(Duration::ZERO);
            now + d.min(Duration::from_secs(3600))
        }
        Some(DeadlineOption::Deadline21100(t)) => {
            let at = SystemTime::try_from(t).unwrap_or(SystemTime::UNIX_EPOCH);
            let left = at
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO);
            now + left.min(Duration::from_secs(3600))
        }
        None => now + DEFAULT_DEADLINE,
    };
    svc.allow(caller, StreamOp::Write, &stream).map_err(fail)?;
    Ok(Open {
        correlation_id,
        stream,
        expected,
        deadline,
        events: Vec::new(),
        bytes: 0,
        failed: false,
    })
}

/// Adds a request's events to its batch, within the append limit.
fn add(
    svc: &KurrentStreams,
    batch: &mut Open,
    messages: Vec<strata_proto::kurrentdb::streams::batch_append_req::ProposedMessage>,
) -> Result<(), Status> {
    for m in messages {
        batch.bytes += (m.data.len() + m.custom_metadata.len()) as u64;
        if batch.bytes > svc.max_append_bytes {
            return Err(errors::from_append(
                &batch.stream,
                AppendError::TooLarge {
                    what: "append",
                    actual: batch.bytes,
                    limit: svc.max_append_bytes,
                    setting: "max-append-bytes",
                },
            ));
        }
        batch.events.push(convert::proposed_event(
            m.id,
            m.metadata,
            m.custom_metadata,
            m.data,
        )?);
    }
    Ok(())
}

/// Writes a complete batch and answers it.
async fn finish(svc: KurrentStreams, batch: Open, out: Out) {
    let Open {
        correlation_id,
        stream,
        expected,
        deadline,
        events,
        ..
    } = batch;
    let written = tokio::time::timeout_at(deadline, write(&svc, &stream, expected, events)).await;
    let answer = match written {
        Err(_) => failure(
            correlation_id,
            Some(&stream),
            &Status::deadline_exceeded("the batch's deadline passed before it was written"),
        ),
        Ok(Err(status)) => failure(correlation_id, Some(&stream), &status),
        Ok(Ok(Written::Done { revision, position })) => BatchAppendResp {
            correlation_id: Some(correlation_id),
            result: Some(batch_append_resp::Result::Success(Success {
                current_revision_option: Some(match revision {
                    Some(r) => success::CurrentRevisionOption::CurrentRevision(r),
                    None => success::CurrentRevisionOption::NoStream(()),
                }),
                position_option: Some(match position {
                    Some(p) => {
                        let wire = position::to_wire(p);
                        success::PositionOption::Position(AllStreamPosition {
                            commit_position: wire,
                            prepare_position: wire,
                        })
                    }
                    None => success::PositionOption::NoPosition(()),
                }),
            })),
            stream_identifier: Some(convert::stream_identifier(&stream)),
            expected_stream_position: Some(expected_to_wire(expected)),
        },
        Ok(Ok(Written::Conflict { current, expected })) => {
            conflict(correlation_id, &stream, current, expected)
        }
    };
    send(&out, answer).await;
}

async fn send(out: &Out, answer: BatchAppendResp) {
    let _ = out.send(Ok(answer)).await;
}

fn expected_to_wire(e: ExpectedVersion) -> batch_append_resp::ExpectedStreamPosition {
    use batch_append_resp::ExpectedStreamPosition as P;
    match e {
        ExpectedVersion::Exact(r) => P::StreamPosition(r),
        ExpectedVersion::NoStream => P::NoStream(()),
        ExpectedVersion::Any => P::Any(()),
        ExpectedVersion::StreamExists => P::StreamExists(()),
    }
}

/// `message` packed as the `Any` KurrentDB's clients unpack.
fn any<M: Message>(name: &str, message: &M) -> prost_types::Any {
    prost_types::Any {
        type_url: format!("type.googleapis.com/event_store.client.{name}"),
        value: message.encode_to_vec(),
    }
}

fn conflict(
    correlation_id: shared::Uuid,
    stream: &str,
    current: Option<u64>,
    expected: ExpectedVersion,
) -> BatchAppendResp {
    use shared::wrong_expected_version::{
        CurrentStreamRevisionOption as Current, ExpectedStreamPositionOption as Expected,
    };
    let detail = shared::WrongExpectedVersion {
        current_stream_revision_option: Some(match current {
            Some(r) => Current::CurrentStreamRevision(r),
            None => Current::CurrentNoStream(()),
        }),
        expected_stream_position_option: Some(match expected {
            ExpectedVersion::Exact(r) => Expected::ExpectedStreamPosition(r),
            ExpectedVersion::Any => Expected::ExpectedAny(()),
            ExpectedVersion::StreamExists => Expected::ExpectedStreamExists(()),
            ExpectedVersion::NoStream => Expected::ExpectedNoStream(()),
        }),
    };
    let actual = current.map_or(-1, |r| r as i64);
    BatchAppendResp {
        correlation_id: Some(correlation_id),
        result: Some(batch_append_resp::Result::Error(google_rpc::Status {
            // KurrentDB's code for this status.
            code: Code::AlreadyExists as i32,
            message: format!(
                "Append failed due to WrongExpectedVersion. Stream: {stream}, Expected version: \
                 {}, Actual version: {actual}",
                convert::expected_number(expected)
            ),
            details: Some(any("WrongExpectedVersion", &detail)),
        })),
        stream_identifier: Some(convert::stream_identifier(stream)),
        expected_stream_position: Some(expected_to_wire(expected)),
    }
}

/// A failed batch: the status's code and message, and the typed detail its
/// `exception` trailer names.
fn failure(correlation_id: shared::Uuid, stream: Option<&str>, status: &Status) -> BatchAppendResp {
    let exception = status
        .metadata()
        .get("exception")
        .and_then(|v| v.to_str().ok());
    let details = match exception {
        Some("stream-deleted") => Some(any(
            "StreamDeleted",
            &shared::StreamDeleted {
                stream_identifier: stream.map(convert::stream_identifier),
            },
        )),
        Some("access-denied") => Some(any("AccessDenied", &shared::AccessDenied {})),
        Some("maximum-append-size-exceeded") => {
            let max = status
                .metadata()
                .get("maximum-append-size")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(u32::MAX);
            Some(any(
                "MaximumAppendSizeExceeded",
                &shared::MaximumAppendSizeExceeded {
                    max_append_size: max,
                },
            ))
        }
        _ if status.code() == Code::DeadlineExceeded => Some(any("Timeout", &shared::Timeout {})),
        _ if status.code() == Code::InvalidArgument => Some(any(
            "BadRequest",
            &shared::BadRequest {
                message: status.message().to_owned(),
            },
        )),
        _ => None,
    };
    // KurrentDB answers a deleted stream with NOT_FOUND here.
    let code = match exception {
        Some("stream-deleted") => Code::NotFound,
        _ => status.code(),
    };
    BatchAppendResp {
        correlation_id: Some(correlation_id),
        result: Some(batch_append_resp::Result::Error(google_rpc::Status {
            code: code as i32,
            message: status.message().to_owned(),
            details,
        })),
        stream_identifier: stream.map(convert::stream_identifier),
        expected_stream_position: None,
    }
}
