//! `Streams.Read` without subscription: a bounded read of a stream or of
//! `$all`, forwards or backwards, one event per response (as KurrentDB
//! answers), each encoded straight from the log (`wire`). A stream that
//! does not exist (or is soft-deleted) is answered in-band with
//! `stream_not_found`; a tombstoned one fails with `stream-deleted`. A
//! stream read of a client at compatibility level 1 ends with
//! `last_stream_position`. With `count_option.subscription` the call is a
//! catch-up subscription instead (`subscribe`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use prost::Message as _;
use strata_proto::kurrentdb::streams::read_req::options::{
    self as opts, all_options::AllOption, stream_options::RevisionOption, CountOption,
    FilterOption, ReadDirection, StreamOption,
};
use strata_proto::kurrentdb::streams::read_req::Options;
use strata_proto::kurrentdb::streams::read_resp::{Content, ReadEvent, StreamNotFound};
use strata_proto::kurrentdb::streams::{ReadReq, ReadResp};
use strata_proto::v1::encoded::Encoded;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tonic::Status;

use super::filter::{self, CallFilter, Overrun};
use super::wire::{self, IdForm, KurrentEvents, Messages, Structured, Text};
use super::{convert, errors, metadata, position, subscribe, KurrentStreams};
use crate::auth::{Caller, StreamOp};
use crate::store::{Direction, ReadError, ReadFrom, ReadStream, Store};

/// The name KurrentDB gives the global log in errors.
pub(super) const ALL: &str = "$all";

/// What a read's or a subscription's task sends: a batch of encoded
/// messages, or the status that ends the call.
pub(super) type Batch = Result<Messages, Status>;

/// Batches a read or a subscription may have ready before the client takes
/// them (each at most one store batch, about 1 MiB of events).
pub(super) const BATCHES: usize = 4;

/// Responses of one read or subscription: the batches of its task, one
/// message at a time.
pub struct Responses {
    rx: mpsc::Receiver<Batch>,
    batch: Messages,
}

impl Responses {
    /// The responses `rx` brings.
    pub(super) fn new(rx: mpsc::Receiver<Batch>) -> Self {
        Responses {
            rx,
            batch: Messages::default(),
        }
    }

    /// Exactly these messages, then the end.
    pub(super) fn of(messages: Messages) -> Self {
        Responses {
            rx: mpsc::channel(1).1,
            batch: messages,
        }
    }
}

impl Stream for Responses {
    type Item = Result<Encoded, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if let Some(message) = self.batch.next() {
                return Poll::Ready(Some(Ok(message)));
            }
            match ready!(self.rx.poll_recv(cx)) {
                Some(Ok(batch)) => self.batch = batch,
                Some(Err(status)) => return Poll::Ready(Some(Err(status))),
                None => return Poll::Ready(None),
            }
        }
    }
}

/// A small answer, encoded by prost.
pub(super) fn message(content: Content) -> Encoded {
    Encoded::of(&ReadResp {
        content: Some(content),
    })
}

pub(super) async fn handle(
    svc: &KurrentStreams,
    caller: &Caller,
    req: ReadReq,
) -> Result<Responses, Status> {
    let options = req
        .options
        .ok_or_else(|| Status::invalid_argument("options are required"))?;
    if wire::wants_text(
        options
            .uuid_option
            .as_ref()
            .and_then(|u| u.content.as_ref()),
    ) {
        read::<Text>(svc, caller, options).await
    } else {
        read::<Structured>(svc, caller, options).await
    }
}

/// A read whose event ids go in the form `F`.
async fn read<F: IdForm>(
    svc: &KurrentStreams,
    caller: &Caller,
    options: Options,
) -> Result<Responses, Status> {
    let filter = match options.filter_option {
        Some(FilterOption::Filter(f)) => Some(filter::from_wire(f)?),
        Some(FilterOption::NoFilter(_)) | None => None,
    };
    let target = match options.stream_option {
        Some(StreamOption::Stream(s)) => Target::Stream(s),
        Some(StreamOption::All(a)) => Target::All(a.all_option),
        None => return Err(Status::invalid_argument("stream_option is required")),
    };
    if filter.is_some() && matches!(target, Target::Stream(_)) {
        return Err(Status::invalid_argument("a filter applies to $all only"));
    }
    let count = match options.count_option {
        Some(CountOption::Count(n)) => n,
        Some(CountOption::Subscription(_)) => {
            return match target {
                Target::Stream(s) => subscribe::stream::<F>(svc, caller, s).await,
                Target::All(from) => subscribe::all::<F>(svc, caller, from, filter).await,
            }
        }
        None => return Err(Status::invalid_argument("count_option is required")),
    };
    let direction = match ReadDirection::try_from(options.read_direction) {
        Ok(ReadDirection::Forwards) => Direction::Forwards,
        Ok(ReadDirection::Backwards) => Direction::Backwards,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "unknown read direction {}",
                options.read_direction
            )))
        }
    };
    // Count 0 reads nothing, but still answers for a missing stream.
    let max_count = count.max(1);
    let is_stream = matches!(target, Target::Stream(_));
    let mut overrun = None;
    let mut deleted_view = false;
    let (name, reader) = match target {
        Target::Stream(s) => {
            let name = convert::stream_name(s.stream_identifier)?;
            svc.allow(caller, StreamOp::Read, &name)?;
            let mut from = match (s.revision_option, direction) {
                (Some(RevisionOption::Start(_)), _) => ReadFrom::Start,
                (Some(RevisionOption::End(_)), _) => ReadFrom::End,
                (Some(RevisionOption::Revision(r)), _) => ReadFrom::At(r),
                (None, Direction::Forwards) => ReadFrom::Start,
                (None, Direction::Backwards) => ReadFrom::End,
            };
            let mut max_count = max_count;
            if let Some(of) = metadata::target(&name) {
                // KurrentDB's metadata streams keep only their latest
                // version: a read finds it when its range covers it.
                let latest = match svc.store.stream_metadata(of) {
                    Ok(m) => m.metadata_revision,
                    // The metadata of a tombstoned stream is gone with it.
                    Err(ReadError::Tombstoned(_)) => return Err(errors::stream_deleted(&name)),
                    Err(e) => return Err(errors::from_read(&name, e)),
                };
                let Some(latest) = latest else {
                    return Ok(not_found(&name));
                };
                let covered = match (direction, from) {
                    (Direction::Forwards, ReadFrom::Start)
                    | (Direction::Backwards, ReadFrom::End) => true,
                    (Direction::Forwards, ReadFrom::At(r)) => r <= latest,
                    (Direction::Backwards, ReadFrom::At(r)) => r >= latest,
                    (Direction::Backwards, ReadFrom::Start) => latest == 0,
                    (Direction::Forwards, ReadFrom::End) => false,
                };
                if !covered {
                    return Ok(Responses::of(Messages::default()));
                }
                from = ReadFrom::At(latest);
                max_count = 1;
                deleted_view = svc.store.deleted_at(of).ok().flatten().is_some();
            }
            let reader = svc
                .store
                .read_stream_into::<KurrentEvents<F>>(&name, direction, from, max_count)
                .await;
            (name, reader)
        }
        Target::All(from) => {
            let from = match (from, direction) {
                (Some(AllOption::Start(_)) | None, Direction::Forwards) => Some(ReadFrom::Start),
                (Some(AllOption::End(_)), Direction::Forwards) => Some(ReadFrom::End),
                (Some(AllOption::Position(p)), Direction::Forwards) => {
                    Some(position::read_forwards_from(p.commit_position))
                }
                (Some(AllOption::Start(_)), Direction::Backwards) => None,
                (Some(AllOption::End(_)) | None, Direction::Backwards) => Some(ReadFrom::End),
                (Some(AllOption::Position(p)), Direction::Backwards) => {
                    position::read_backwards_from(p.commit_position)
                }
            };
            let Some(from) = from else {
                // Nothing lies before the start.
                return Ok(Responses::of(Messages::default()));
            };
            let CallFilter { filter, overrun: o } = filter.unwrap_or_default();
            overrun = o;
            let filter = filter::gated(filter, caller);
            let reader = svc
                .store
                .read_all_into::<KurrentEvents<F>>(direction, from, max_count, filter)
                .await;
            (ALL.to_owned(), reader)
        }
    };
    let reader = match reader {
        Ok(reader) => reader,
        Err(ReadError::StreamNotFound(_)) => return Ok(not_found(&name)),
        Err(e) => return Err(errors::from_read(&name, e)),
    };
    let compatible = options.control_option.is_some_and(|c| c.compatibility >= 1);
    let last_of = (is_stream && compatible).then(|| svc.store.clone());
    Ok(forward(name, reader, count, last_of, overrun, deleted_view))
}

/// What a read addresses.
enum Target {
    Stream(opts::StreamOptions),
    All(Option<AllOption>),
}

/// The in-band answer for a stream that does not exist.
fn not_found(stream: &str) -> Responses {
    Responses::of(Messages::one(message(Content::StreamNotFound(
        StreamNotFound {
            stream_identifier: Some(convert::stream_identifier(stream)),
        },
    ))))
}

/// A metadata stream's version as KurrentDB shows it while the stream is
/// deleted (a read of at most one event: decoded and encoded again).
fn while_deleted(m: Encoded) -> Encoded {
    let Ok(mut resp) = ReadResp::decode(m.to_bytes()) else {
        return m;
    };
    if let Some(Content::Event(ReadEvent { event: Some(r), .. })) = resp.content.as_mut() {
        if let Some(d) = metadata::while_deleted(&r.data) {
            r.data = d.into();
        }
    }
    Encoded::of(&resp)
}

/// Pulls batches from the store and sends one response per event, at most
/// `count`; stops when the client goes away, or with an error when the
/// filter's regular expression overran.
fn forward<F: IdForm>(
    name: String,
    mut reader: ReadStream<KurrentEvents<F>>,
    count: u64,
    last_of: Option<Arc<Store>>,
    overrun: Option<Overrun>,
    deleted_view: bool,
) -> Responses {
    let (tx, rx) = mpsc::channel(BATCHES);
    tokio::spawn(async move {
        let mut left = count;
        while left > 0 {
            let batch = tokio::select! {
                b = reader.next() => b,
                _ = tx.closed() => return, // the client went away
            };
            let events = match batch {
                None => break,
                Some(Ok(events)) => events,
                Some(Err(e)) => {
                    let _ = tx.send(Err(errors::from_read(&name, e))).await;
                    return;
                }
            };
            if let Some(status) = overrun.as_ref().and_then(filter::failure) {
                let _ = tx.send(Err(status)).await;
                return;
            }
            let mut messages = events.into_messages(left.min(usize::MAX as u64) as usize);
            if deleted_view {
                // A metadata stream's versions, of a stream deleted now.
                messages = messages.rewrite(while_deleted);
            }
            let sent = messages.len() as u64;
            if tx.send(Ok(messages)).await.is_err() {
                return; // the client went away
            }
            left -= sent;
        }
        // An overrun may have left nothing to send: a read it cut short
        // still fails (one that got its count did not need what overran).
        if let Some(status) = overrun
            .as_ref()
            .filter(|_| left > 0)
            .and_then(filter::failure)
        {
            let _ = tx.send(Err(status)).await;
            return;
        }
        // Compatibility 1: a stream read ends with the stream's last
        // revision, as KurrentDB's does.
        if let Some(store) = last_of {
            if let Ok(Some(last)) = store.stream_revision(&name) {
                let last = message(Content::LastStreamPosition(last));
                let _ = tx.send(Ok(Messages::one(last))).await;
            }
        }
    });
    Responses::new(rx)
}
