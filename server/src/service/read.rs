//! `Read`: a server stream of batches, produced on the blocking pool into a
//! small bounded channel, so memory stays bounded and a client that goes
//! away stops the read.

use strata_proto::v1;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{convert, status::status_from_read, wire_batches, StreamsService};

pub(super) async fn handle(
    svc: &StreamsService,
    req: v1::ReadRequest,
) -> Result<ReceiverStream<Result<v1::ReadResponse, Status>>, Status> {
    let params = convert::read_request(req)?;
    let target = match &params.target {
        convert::Target::Stream(_) => "stream",
        convert::Target::All => "all",
    };
    svc.metrics.reads.with_label_values(&[target]).inc();
    let store = svc.store.clone();
    // Open the read first, so that NOT_FOUND and friends fail the call itself.
    let reader = tokio::task::spawn_blocking(move || match params.target {
        convert::Target::Stream(s) => {
            store.read_stream(&s, params.direction, params.from, params.max_count)
        }
        convert::Target::All => store.read_all(
            params.direction,
            params.from,
            params.max_count,
            params.filter,
        ),
    })
    .await
    .map_err(|e| Status::internal(format!("read task failed: {e}")))?
    .map_err(status_from_read)?;
    let (tx, rx) = mpsc::channel(2);
    let metrics = svc.metrics.clone();
    let batch = svc.read_batch;
    tokio::task::spawn_blocking(move || {
        for events in reader {
            let msgs = match events {
                Ok(events) => {
                    metrics.read_events.inc_by(events.len() as u64);
                    wire_batches(&events, batch)
                        .into_iter()
                        .map(|events| Ok(v1::ReadResponse { events }))
                        .collect()
                }
                Err(e) => vec![Err(status_from_read(e))],
            };
            for m in msgs {
                if tx.blocking_send(m).is_err() {
                    return; // the client went away
                }
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}
