//! `Streams.Read` without subscription: a bounded read of a stream or of
//! `$all`, forwards or backwards, one event per response (as KurrentDB
//! answers). A stream that does not exist (or is soft-deleted) is answered
//! in-band with `stream_not_found`; a tombstoned one fails with
//! `stream-deleted`. A stream read of a client at compatibility level 1
//! ends with `last_stream_position`. With `count_option.subscription` the
//! call is a
//! catch-up subscription instead (`subscribe`).

use std::sync::Arc;
use strata_proto::kurrentdb::streams::read_req::options::{
    self as opts, all_options::AllOption, stream_options::RevisionOption,
    uuid_option::Content as UuidForm, CountOption, FilterOption, ReadDirection, StreamOption,
};
use strata_proto::kurrentdb::streams::read_resp::{Content, StreamNotFound};
use strata_proto::kurrentdb::streams::{ReadReq, ReadResp};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::filter::{self, CallFilter, Overrun};
use super::{convert, errors, metadata, position, subscribe, KurrentStreams};
use crate::auth::{Caller, StreamOp};
use crate::store::{Direction, ReadError, ReadFrom, ReadStream, RecordedEvent, Store};

/// The name KurrentDB gives the global log in errors.
pub(super) const ALL: &str = "$all";

/// Responses of one read or subscription.
pub(super) type Responses = ReceiverStream<Result<ReadResp, Status>>;

pub(super) async fn handle(
    svc: &KurrentStreams,
    caller: &Caller,
    req: ReadReq,
) -> Result<Responses, Status> {
    let options = req
        .options
        .ok_or_else(|| Status::invalid_argument("options are required"))?;
    let form = options.uuid_option.and_then(|u| u.content);
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
                Target::Stream(s) => subscribe::stream(svc, caller, s, form).await,
                Target::All(from) => subscribe::all(svc, caller, from, filter, form).await,
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
                    return Ok(ReceiverStream::new(mpsc::channel(1).1));
                }
                from = ReadFrom::At(latest);
                max_count = 1;
                deleted_view = svc.store.deleted_at(of).ok().flatten().is_some();
            }
            let reader = svc
                .store
                .read_stream_into::<Vec<RecordedEvent>>(&name, direction, from, max_count)
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
                return Ok(ReceiverStream::new(mpsc::channel(1).1));
            };
            let CallFilter { filter, overrun: o } = filter.unwrap_or_default();
            overrun = o;
            let filter = filter::gated(filter, caller);
            let reader = svc
                .store
                .read_all_into::<Vec<RecordedEvent>>(direction, from, max_count, filter)
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
    Ok(forward(
        name,
        reader,
        count,
        form,
        last_of,
        overrun,
        deleted_view,
    ))
}

/// What a read addresses.
enum Target {
    Stream(opts::StreamOptions),
    All(Option<AllOption>),
}

/// The in-band answer for a stream that does not exist.
fn not_found(stream: &str) -> Responses {
    let (tx, rx) = mpsc::channel(1);
    let message = ReadResp {
        content: Some(Content::StreamNotFound(StreamNotFound {
            stream_identifier: Some(convert::stream_identifier(stream)),
        })),
    };
    // The channel has room for it: this cannot fail.
    let _ = tx.try_send(Ok(message));
    ReceiverStream::new(rx)
}

/// Pulls batches from the store and sends one response per event, at most
/// `count`; stops when the client goes away, or with an error when the
/// filter's regular expression overran.
fn forward(
    name: String,
    mut reader: ReadStream<Vec<RecordedEvent>>,
    count: u64,
    form: Option<UuidForm>,
    last_of: Option<Arc<Store>>,
    overrun: Option<Overrun>,
    deleted_view: bool,
) -> Responses {
    let (tx, rx) = mpsc::channel(32);
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
            for e in events.iter().take(left.min(usize::MAX as u64) as usize) {
                let mut event = convert::read_event(e, form);
                if deleted_view {
                    // A metadata stream's versions, of a stream deleted now.
                    if let Some(r) = event.event.as_mut() {
                        if let Some(d) = metadata::while_deleted(&r.data) {
                            r.data = d.into();
                        }
                    }
                }
                let message = ReadResp {
                    content: Some(Content::Event(event)),
                };
                if tx.send(Ok(message)).await.is_err() {
                    return; // the client went away
                }
                left -= 1;
            }
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
                let message = ReadResp {
                    content: Some(Content::LastStreamPosition(last)),
                };
                let _ = tx.send(Ok(message)).await;
            }
        }
    });
    ReceiverStream::new(rx)
}
