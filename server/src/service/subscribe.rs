//! `Subscribe`: a task per subscription pulls from the engine and pushes
//! into a small bounded channel. A slow client only slows its own task
//! (the engine then serves it from the log); it is never dropped. The
//! task ends when the client goes away or the server shuts down.

use strata_proto::v1;
use strata_proto::v1::encoded::Encoded;
use strata_proto::v1::subscribe_response::Content;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{
    convert, status::status_from_read, stopped, wire::WireEvents, StreamsService, SHUTDOWN_NOTICE,
};
use crate::auth::{Caller, StreamOp};
use crate::store::{SubscriptionMessage, SubscriptionTarget};

pub(super) async fn handle(
    svc: &StreamsService,
    caller: &Caller,
    req: v1::SubscribeRequest,
) -> Result<ReceiverStream<Result<Encoded, Status>>, Status> {
    let (mut target, from) = convert::subscribe_request(req)?;
    match &mut target {
        SubscriptionTarget::Stream(s) => svc.allow(caller, StreamOp::Read, s)?,
        // Streams the caller may not read are skipped.
        SubscriptionTarget::All(filter) => filter.gate = caller.read_gate(),
    }
    if *svc.shutdown.borrow() {
        return Err(Status::unavailable("the server is shutting down"));
    }
    let mut sub = svc
        .store
        .subscribe_into::<WireEvents>(target, from)
        .await
        .map_err(status_from_read)?;
    let (tx, rx) = mpsc::channel(4);
    let metrics = svc.metrics.clone();
    let mut shutdown = svc.shutdown.clone();
    tokio::spawn(async move {
        metrics.active_subscriptions.inc();
        loop {
            let next = tokio::select! {
                m = sub.next() => m,
                _ = stopped(&mut shutdown) => {
                    let _ = tx.send(Err(Status::unavailable("the server is shutting down"))).await;
                    break;
                }
                _ = tx.closed() => break,
            };
            let msgs: Vec<Result<Encoded, Status>> = match next {
                Ok(Some(SubscriptionMessage::Events(events))) => events
                    .into_batches()
                    .iter()
                    .map(|b| Ok(Encoded::subscribe_events(b)))
                    .collect(),
                Ok(Some(SubscriptionMessage::CaughtUp { position, revision })) => {
                    vec![Ok(content(Content::CaughtUp(v1::CaughtUp {
                        position,
                        revision,
                    })))]
                }
                Ok(Some(SubscriptionMessage::Checkpoint { position })) => {
                    vec![Ok(content(Content::Checkpoint(v1::Checkpoint {
                        position,
                    })))]
                }
                Ok(None) => vec![Err(Status::unavailable("the server is shutting down"))],
                Err(e) => vec![Err(status_from_read(e))],
            };
            let mut end = false;
            for m in msgs {
                end |= m.is_err();
                // Waits while the client is slow; ends if it went away.
                let sent = tokio::select! {
                    r = tx.send(m) => r.is_ok(),
                    _ = stopped(&mut shutdown) => {
                        // Shutting down while the client was slow: it still
                        // learns why the subscription ends, if it reads on.
                        let unavailable = Status::unavailable("the server is shutting down");
                        let _ = tokio::time::timeout(SHUTDOWN_NOTICE, tx.send(Err(unavailable))).await;
                        false
                    }
                };
                if !sent {
                    end = true;
                    break;
                }
            }
            if end {
                break;
            }
        }
        metrics.active_subscriptions.dec();
    });
    Ok(ReceiverStream::new(rx))
}

fn content(c: Content) -> Encoded {
    Encoded::of(&v1::SubscribeResponse { content: Some(c) })
}
