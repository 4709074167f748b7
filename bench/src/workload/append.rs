//! `append` and `append-batch`: each writer appends `per_call` events per
//! call to a stream of its own, always with the exact expected version it
//! got back from its previous append (no-stream for the first).

use std::time::Instant;

use super::{gather, row, watch, Ctx, Tally, Window};
use crate::cli::Workload;
use crate::error::{BenchError, Result};
use crate::report::Row;
use crate::target::{AppendResult, Expect, Running};

/// Runs one cell of this workload.
pub async fn run(
    ctx: &Ctx,
    running: &Running,
    writers: usize,
    per_call: usize,
    workload: Workload,
) -> Result<Row> {
    let o = &ctx.options;
    let clients = running.clients(writers).await?;
    let window = Window::new(o.warmup(), o.duration(), o.max_ops);
    let usage = watch(running, window.clone());
    let prefix = ctx.prefix(workload, writers);
    let handles = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let window = window.clone();
            let stream = format!("{prefix}-w{i}");
            let payload = o.payload;
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut expect = Expect::NEW;
                while window.running() {
                    let began = Instant::now();
                    let result = client.append(&stream, expect, per_call, payload).await?;
                    let done = Instant::now();
                    match result {
                        AppendResult::Ok(next) => expect = next,
                        AppendResult::Conflict(now) => {
                            return Err(BenchError::server(
                                "driver",
                                format!(
                                    "unexpected conflict on {stream}: expected {expect:?}, stream is at {now:?}"
                                ),
                            ))
                        }
                    }
                    if window.counts(began, done) {
                        tally.op(per_call as u64, began, done);
                    }
                }
                Ok(tally)
            })
        })
        .collect();
    let tally = gather(handles).await?;
    let usage = usage.await?;
    Ok(row(
        running,
        workload.name(),
        writers,
        &window,
        tally,
        usage,
        o.payload,
    ))
}
