//! `append`, `append-pipelined` and `append-batch`: each writer appends
//! `per_call` events per call to a stream of its own, always with the exact
//! expected version it got back from its previous append (no-stream for the
//! first), and waits for that answer before its next append. `append` and
//! `append-batch` send unary calls; `append-pipelined` sends the same
//! appends over `PipelinedAppend` calls shared by `--clients-per-connection`
//! writers (PostgreSQL: statements pipelined on a shared connection).

use std::time::Instant;

use super::{finish, watch, Ctx, Tally, Window};
use crate::cli::Workload;
use crate::error::{BenchError, Result};
use crate::report::Row;
use crate::target::{AppendResult, Expect, Running, Writer};

/// Runs one cell of `append` or `append-batch` (unary calls).
pub async fn run(
    ctx: &Ctx,
    running: &Running,
    writers: usize,
    per_call: usize,
    workload: Workload,
) -> Result<Row> {
    let w = running.unary_writers(writers).await?;
    measure(ctx, running, w, per_call, workload).await
}

/// Runs one cell of `append-pipelined`; a row saying "n/a" for a system
/// without a pipelined append (UmaDB).
pub async fn run_pipelined(ctx: &Ctx, running: &Running, writers: usize) -> Result<Row> {
    let workload = Workload::AppendPipelined;
    match running.pipelined_writers(writers).await? {
        Some(w) => measure(ctx, running, w, 1, workload).await,
        None => Ok(Row {
            system: running.kind.name().to_owned(),
            workload: workload.name().to_owned(),
            clients: writers,
            notes: "n/a: its client has no pipelined append (`append` already shares \
                    connections)"
                .into(),
            ..Row::default()
        }),
    }
}

/// Measures `writers`, each appending `per_call` events per append.
async fn measure(
    ctx: &Ctx,
    running: &Running,
    writers: Vec<Writer>,
    per_call: usize,
    workload: Workload,
) -> Result<Row> {
    let o = &ctx.options;
    let count = writers.len();
    let window = Window::new(o.warmup(), o.duration(), o.max_ops);
    let usage = watch(running, window.clone());
    let prefix = ctx.prefix(workload, count);
    let handles = writers
        .into_iter()
        .enumerate()
        .map(|(i, writer)| {
            let window = window.clone();
            let stream = format!("{prefix}-w{i}");
            tokio::spawn(write_own_stream(
                writer, stream, per_call, o.payload, window,
            ))
        })
        .collect();
    finish(running, workload, count, &window, handles, usage, o.payload).await
}

/// One writer's loop: append, wait, chain the expected version, until the
/// window closes. A conflict is an error: nobody else writes the stream.
async fn write_own_stream(
    mut writer: Writer,
    stream: String,
    per_call: usize,
    payload: usize,
    window: std::sync::Arc<Window>,
) -> Result<Tally> {
    let mut tally = Tally::default();
    let mut expect = Expect::NEW;
    while window.running() {
        let began = Instant::now();
        let result = writer.append(&stream, expect, per_call, payload).await?;
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
}
