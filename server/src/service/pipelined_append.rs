//! `PipelinedAppend`: many independent appends over one bidirectional call.
//! A task reads requests while fewer than `MAX_IN_FLIGHT` are unanswered
//! (backpressure: the client's sends wait, nothing fails), runs each as an
//! `Append`, and sends each answer as soon as it is known, tagged with the
//! request's correlation id. The call ends once the client has half-closed
//! and every request is answered.

use std::sync::Arc;

use strata_proto::v1;
use strata_proto::v1::pipelined_append_response::{Error as WireError, Outcome};
use tokio::sync::{mpsc, Semaphore};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::{append, stopped, StreamsService, SHUTDOWN_NOTICE};
use crate::auth::Caller;

/// Appends of one call in flight at most (read, not yet answered).
pub(super) const MAX_IN_FLIGHT: usize = 256;

/// At shutdown: no more requests are read; the appends in flight are
/// answered first (they may have committed), then the call ends with
/// UNAVAILABLE. A client that stopped reading does not hold shutdown up.
async fn end_at_shutdown(
    in_flight: &Arc<Semaphore>,
    tx: &mpsc::Sender<Result<v1::PipelinedAppendResponse, Status>>,
) {
    let all = MAX_IN_FLIGHT as u32;
    let _ = tokio::time::timeout(SHUTDOWN_NOTICE, in_flight.acquire_many(all)).await;
    let unavailable = Status::unavailable("the server is shutting down");
    let _ = tokio::time::timeout(SHUTDOWN_NOTICE, tx.send(Err(unavailable))).await;
}

pub(super) async fn handle(
    svc: &StreamsService,
    caller: &Caller,
    mut requests: Streaming<v1::PipelinedAppendRequest>,
) -> Result<ReceiverStream<Result<v1::PipelinedAppendResponse, Status>>, Status> {
    if *svc.shutdown.borrow() {
        return Err(Status::unavailable("the server is shutting down"));
    }
    let (tx, rx) = mpsc::channel(MAX_IN_FLIGHT);
    let (svc, caller) = (svc.clone(), caller.clone());
    tokio::spawn(async move {
        let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
        let mut shutdown = svc.shutdown.clone();
        loop {
            // Backpressure: no new request is read while the bound is reached.
            let permit = tokio::select! {
                p = in_flight.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                _ = stopped(&mut shutdown) => {
                    end_at_shutdown(&in_flight, &tx).await;
                    break;
                }
            };
            let next = tokio::select! {
                m = requests.message() => m,
                _ = stopped(&mut shutdown) => {
                    drop(permit);
                    end_at_shutdown(&in_flight, &tx).await;
                    break;
                }
            };
            let request = match next {
                Ok(Some(r)) => r,
                // Half-closed: the answers still owed go out as they come.
                Ok(None) => break,
                // The client's side broke; nobody is there to answer.
                Err(_) => break,
            };
            let (svc, caller, tx) = (svc.clone(), caller.clone(), tx.clone());
            tokio::spawn(async move {
                let outcome = match request.append {
                    None => Err(Status::invalid_argument("append is required")),
                    Some(a) => append::handle(&svc, &caller, a).await,
                };
                let outcome = match outcome {
                    Ok(r) => Outcome::Result(r),
                    Err(s) => Outcome::Error(WireError {
                        code: s.code() as i32,
                        message: s.message().to_owned(),
                        details: s.details().to_vec(),
                    }),
                };
                let answer = v1::PipelinedAppendResponse {
                    correlation_id: request.correlation_id,
                    outcome: Some(outcome),
                };
                // Waits while the client reads slowly; the permit is held
                // until then, which is what slows the reading down.
                let _ = tx.send(Ok(answer)).await;
                drop(permit);
            });
        }
        // The stream of answers ends when the last task drops its sender.
    });
    Ok(ReceiverStream::new(rx))
}
