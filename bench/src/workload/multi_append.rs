//! `multi-append`: each writer owns `--multi-streams` (K) streams and, per
//! operation, appends 1 event to each of them in one atomic call, every
//! stream with the exact expected version the previous call gave back
//! (no-stream for the first). One operation = one call = K events.

use std::sync::Arc;
use std::time::Instant;

use super::{finish, watch, Ctx, Tally, Window};
use crate::cli::Workload;
use crate::error::{BenchError, Result};
use crate::report::Row;
use crate::target::{Client, Expect, MultiResult, Running};

/// Runs one cell of this workload.
pub async fn run(ctx: &Ctx, running: &Running, writers: usize) -> Result<Row> {
    let o = &ctx.options;
    let clients = running.clients(writers).await?;
    let window = Window::new(o.warmup(), o.duration(), o.max_ops);
    let usage = watch(running, window.clone());
    let prefix = ctx.prefix(Workload::MultiAppend, writers);
    let handles = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let streams = (0..o.multi_streams)
                .map(|k| format!("{prefix}-w{i}-s{k}"))
                .collect();
            tokio::spawn(write_own_streams(
                client,
                streams,
                o.payload,
                window.clone(),
            ))
        })
        .collect();
    let mut r = finish(
        running,
        Workload::MultiAppend,
        writers,
        &window,
        handles,
        usage,
        o.payload,
    )
    .await?;
    r.extra
        .insert("streams_per_call".into(), o.multi_streams as f64);
    Ok(r)
}

/// One writer's loop over its own streams until the window closes. A
/// conflict is an error: nobody else writes them.
async fn write_own_streams(
    client: Client,
    streams: Vec<String>,
    payload: usize,
    window: Arc<Window>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut expects = vec![Expect::NEW; streams.len()];
    while window.running() {
        let began = Instant::now();
        let result = client.multi_append(&streams, &expects, payload).await?;
        let done = Instant::now();
        match result {
            MultiResult::Ok(next) if next.len() == streams.len() => expects = next,
            MultiResult::Ok(next) => {
                return Err(BenchError::server(
                    "driver",
                    format!(
                        "multi-append of {} streams answered {} results",
                        streams.len(),
                        next.len()
                    ),
                ))
            }
            MultiResult::Conflict(what) => {
                return Err(BenchError::server(
                    "driver",
                    format!("unexpected multi-append conflict ({what}); expected {expects:?}"),
                ))
            }
        }
        if window.counts(began, done) {
            tally.op(streams.len() as u64, began, done);
        }
    }
    Ok(tally)
}
