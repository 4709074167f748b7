//! `Read`: a server stream of batches. A task pulls one batch at a time
//! from the store (each a short hop on the blocking pool) into a small
//! bounded channel, so memory stays bounded, a slow client holds no
//! thread, and a client that goes away stops the read.

use strata_proto::v1;
use strata_proto::v1::encoded::Encoded;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{convert, status::status_from_read, wire::WireEvents, StreamsService};
use crate::auth::{Caller, StreamOp};
use crate::store::EventSink as _;

pub(super) async fn handle(
    svc: &StreamsService,
    caller: &Caller,
    req: v1::ReadRequest,
) -> Result<ReceiverStream<Result<Encoded, Status>>, Status> {
    let mut params = convert::read_request(req)?;
    match &params.target {
        convert::Target::Stream(s) => svc.allow(caller, StreamOp::Read, s)?,
        // Streams the caller may not read are skipped.
        convert::Target::All => params.filter.gate = caller.read_gate(),
    }
    let target = match &params.target {
        convert::Target::Stream(_) => "stream",
        convert::Target::All => "all",
    };
    svc.metrics.reads.with_label_values(&[target]).inc();
    // Open the read first, so that NOT_FOUND and friends fail the call itself.
    let mut reader = match params.target {
        convert::Target::Stream(s) => {
            svc.store
                .read_stream_into::<WireEvents>(&s, params.direction, params.from, params.max_count)
                .await
        }
        convert::Target::All => {
            svc.store
                .read_all_into::<WireEvents>(
                    params.direction,
                    params.from,
                    params.max_count,
                    params.filter,
                )
                .await
        }
    }
    .map_err(status_from_read)?;
    let (tx, rx) = mpsc::channel(2);
    let metrics = svc.metrics.clone();
    tokio::spawn(async move {
        loop {
            let events = tokio::select! {
                b = reader.next() => b,
                _ = tx.closed() => return, // the client went away
            };
            let Some(events) = events else { return };
            let msgs: Vec<Result<Encoded, Status>> = match events {
                Ok(events) => {
                    metrics.read_events.inc_by(events.len() as u64);
                    events
                        .into_batches()
                        .iter()
                        .map(|b| Ok(Encoded::read_response(b)))
                        .collect()
                }
                Err(e) => vec![Err(status_from_read(e))],
            };
            for m in msgs {
                if tx.send(m).await.is_err() {
                    return; // the client went away
                }
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}
