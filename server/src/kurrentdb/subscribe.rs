//! `Streams.Read` with `count_option.subscription`: a catch-up
//! subscription over the store's. The first response is the confirmation,
//! then stored events, `caught_up` once the subscription reaches the live
//! head, then live events; a filtered `$all` subscription also gets
//! `checkpoint`s (at the store's pace: KurrentDB's checkpoint window and
//! multiplier are not honoured). A slow client only slows its own task; the
//! subscription ends when the client goes away or the server shuts down.

use std::time::{Duration, SystemTime};

use strata_proto::kurrentdb::streams::read_req::options::{
    all_options::AllOption, stream_options::RevisionOption, StreamOptions,
};
use strata_proto::kurrentdb::streams::read_resp::{
    CaughtUp, Checkpoint, Content, Position, SubscriptionConfirmation,
};
use tokio::sync::mpsc;
use tonic::Status;

use super::filter::{self, CallFilter, Overrun};
use super::read::{message, Batch, Responses, ALL, BATCHES};
use super::wire::{IdForm, KurrentEvents, Messages};
use super::{convert, errors, position, stopped, KurrentStreams};
use crate::auth::{Caller, StreamOp};
use crate::store::{
    ReadError, SubscribeFrom, Subscription, SubscriptionMessage, SubscriptionTarget,
};

/// A subscription to one stream: from its start, its end, or after a
/// revision.
pub(super) async fn stream<F: IdForm>(
    svc: &KurrentStreams,
    caller: &Caller,
    options: StreamOptions,
) -> Result<Responses, Status> {
    let name = convert::stream_name(options.stream_identifier)?;
    svc.allow(caller, StreamOp::Read, &name)?;
    let from = match options.revision_option {
        Some(RevisionOption::Start(_)) | None => SubscribeFrom::Start,
        Some(RevisionOption::End(_)) => SubscribeFrom::End,
        Some(RevisionOption::Revision(r)) => SubscribeFrom::After(r),
    };
    start::<F>(
        svc,
        name.clone(),
        SubscriptionTarget::Stream(name),
        from,
        None,
    )
    .await
}

/// A subscription to `$all`: from its start, its end, or after a position.
pub(super) async fn all<F: IdForm>(
    svc: &KurrentStreams,
    caller: &Caller,
    from: Option<AllOption>,
    filter: Option<CallFilter>,
) -> Result<Responses, Status> {
    let from = match from {
        Some(AllOption::Start(_)) | None => SubscribeFrom::Start,
        Some(AllOption::End(_)) => SubscribeFrom::End,
        Some(AllOption::Position(p)) => position::subscribe_after(p.commit_position),
    };
    let CallFilter { filter, overrun } = filter.unwrap_or_default();
    start::<F>(
        svc,
        ALL.to_owned(),
        SubscriptionTarget::All(filter::gated(filter, caller)),
        from,
        overrun,
    )
    .await
}

async fn start<F: IdForm>(
    svc: &KurrentStreams,
    name: String,
    target: SubscriptionTarget,
    from: SubscribeFrom,
    overrun: Option<Overrun>,
) -> Result<Responses, Status> {
    if *svc.shutdown.borrow() {
        return Err(Status::unavailable("the server is shutting down"));
    }
    let sub = svc
        .store
        .subscribe_into::<KurrentEvents<F>>(target, from)
        .await
        .map_err(|e| errors::from_read(&name, e))?;
    let (tx, rx) = mpsc::channel(BATCHES);
    let confirmation = message(Content::Confirmation(SubscriptionConfirmation {
        subscription_id: uuid::Uuid::new_v4().to_string(),
    }));
    // The channel is empty: this cannot fail.
    let _ = tx.try_send(Ok(Messages::one(confirmation)));
    tokio::spawn(pump(sub, tx, svc.shutdown.clone(), name, overrun));
    Ok(Responses::new(rx))
}

/// Moves the subscription's messages to the client until one of them goes,
/// or the filter's regular expression overran.
async fn pump<F: IdForm>(
    mut sub: Subscription<KurrentEvents<F>>,
    tx: mpsc::Sender<Batch>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    name: String,
    overrun: Option<Overrun>,
) {
    loop {
        let next = tokio::select! {
            m = sub.next() => m,
            _ = stopped(&mut shutdown) => {
                notify(&tx, unavailable()).await;
                return;
            }
            _ = tx.closed() => return,
        };
        // An overrun ends the call, whatever the store sent along.
        let batch = match overrun.as_ref().and_then(filter::failure) {
            Some(status) => Err(status),
            None => responses(next, &name),
        };
        let end = batch.is_err();
        let sent = tokio::select! {
            r = tx.send(batch) => r.is_ok(),
            _ = stopped(&mut shutdown) => {
                notify(&tx, unavailable()).await;
                false
            }
        };
        if !sent || end {
            return;
        }
    }
}

/// The responses for one message of the store's subscription.
fn responses<F>(
    next: Result<Option<SubscriptionMessage<KurrentEvents<F>>>, ReadError>,
    name: &str,
) -> Batch {
    match next {
        Ok(Some(SubscriptionMessage::Events(events))) => Ok(events.into_messages(usize::MAX)),
        Ok(Some(SubscriptionMessage::CaughtUp { position, revision })) => {
            Ok(Messages::one(message(Content::CaughtUp(CaughtUp {
                timestamp: Some(now()),
                stream_revision: revision.map(|r| r as i64),
                position: position.map(wire_position),
            }))))
        }
        Ok(Some(SubscriptionMessage::Checkpoint { position: p })) => {
            let wire = position::to_wire(p);
            Ok(Messages::one(message(Content::Checkpoint(Checkpoint {
                commit_position: wire,
                prepare_position: wire,
                timestamp: Some(now()),
            }))))
        }
        Ok(None) => Err(unavailable()),
        Err(e) => Err(errors::from_read(name, e)),
    }
}

fn unavailable() -> Status {
    Status::unavailable("the server is shutting down")
}

/// How long a subscription waits, at shutdown, for a slow client to take
/// the UNAVAILABLE status.
const SHUTDOWN_NOTICE: Duration = Duration::from_secs(1);

/// Tells the client why its subscription ends, if it reads on in time.
async fn notify(tx: &mpsc::Sender<Batch>, status: Status) {
    let _ = tokio::time::timeout(SHUTDOWN_NOTICE, tx.send(Err(status))).await;
}

fn wire_position(p: u64) -> Position {
    let wire = position::to_wire(p);
    Position {
        commit_position: wire,
        prepare_position: wire,
    }
}

fn now() -> prost_types::Timestamp {
    prost_types::Timestamp::from(SystemTime::now())
}
