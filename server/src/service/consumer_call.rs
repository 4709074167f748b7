//! A consumer's `Read` call over a consumer group, whatever its protocol
//! (`strata.v1` or KurrentDB's): the group's deliveries go out, the
//! consumer's acks and nacks come in, as two tasks, so that a consumer that
//! stops reading cannot hold up its own acks. The protocol only says how a
//! delivery is written and how a request is read.

use tokio::sync::{mpsc, oneshot, watch};
use tonic::{Status, Streaming};

use crate::groups::{Consumer, Delivery, EndReason, Joined, NackAction};

/// What a consumer's request after its options asks.
pub enum ConsumerRequest {
    /// These events are done.
    Ack(Vec<u64>),
    /// These events were not handled.
    Nack(Vec<u64>, NackAction, String),
}

/// Runs the call of `member` (what `Groups::join` answers) until the client ends it or goes away, the group ends it
/// (`deleted` is the message when the group was deleted), or the server
/// shuts down. `deliver` writes a delivery as a response; `parse` reads a
/// request, and its error ends the call with that status.
pub fn serve<In, Out>(
    (joined, consumer): (Joined, Consumer),
    mut inbound: Streaming<In>,
    out: mpsc::Sender<Result<Out, Status>>,
    shutdown: watch::Receiver<bool>,
    deleted: &'static str,
    deliver: impl FnMut(Delivery) -> Out + Send + 'static,
    mut parse: impl FnMut(In) -> Result<ConsumerRequest, Status> + Send + 'static,
) where
    In: Send + 'static,
    Out: Send + 'static,
{
    let (ended, mut forward_ended) = oneshot::channel();
    let forwarding = tokio::spawn(forward(
        joined.rx,
        joined.end,
        out.clone(),
        shutdown,
        deleted,
        deliver,
        ended,
    ));
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                m = inbound.message() => m,
                _ = out.closed() => break,
                _ = &mut forward_ended => break,
            };
            let request = match msg {
                Ok(Some(m)) => parse(m),
                Ok(None) | Err(_) => break,
            };
            match request {
                Ok(ConsumerRequest::Ack(positions)) => consumer.ack(positions).await,
                Ok(ConsumerRequest::Nack(positions, action, reason)) => {
                    consumer.nack(positions, action, reason).await
                }
                Err(e) => {
                    let _ = out.send(Err(e)).await;
                    break;
                }
            }
        }
        forwarding.abort();
        // Dropping the consumer gives back what it held.
        drop(consumer);
    });
}

/// Hands the group's deliveries to the client until the call ends.
async fn forward<Out>(
    mut deliveries: mpsc::Receiver<Delivery>,
    mut end: oneshot::Receiver<EndReason>,
    out: mpsc::Sender<Result<Out, Status>>,
    mut shutdown: watch::Receiver<bool>,
    deleted: &'static str,
    mut deliver: impl FnMut(Delivery) -> Out,
    // Dropped on return: the call's other half ends too.
    _ended: oneshot::Sender<()>,
) {
    let status = |reason: Result<EndReason, ()>| match reason {
        Ok(EndReason::Stopped) => None,
        Ok(EndReason::Deleted) => Some(Status::not_found(deleted)),
        Ok(EndReason::ShuttingDown) | Err(_) => {
            Some(Status::unavailable("the server is shutting down"))
        }
    };
    loop {
        let stopping = async {
            let _ = shutdown.wait_for(|s| *s).await;
        };
        let d = tokio::select! {
            d = deliveries.recv() => d,
            reason = &mut end => {
                if let Some(s) = status(reason.map_err(|_| ())) {
                    let _ = out.send(Err(s)).await;
                }
                return;
            }
            _ = stopping => {
                let _ = out.send(Err(Status::unavailable("the server is shutting down"))).await;
                return;
            }
        };
        let Some(delivery) = d else {
            // The group let go of this consumer: say why, if it said.
            if let Some(s) = status(end.try_recv().map_err(|_| ())) {
                let _ = out.send(Err(s)).await;
            }
            return;
        };
        if out.send(Ok(deliver(delivery))).await.is_err() {
            return;
        }
    }
}
