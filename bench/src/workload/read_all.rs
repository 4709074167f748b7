//! `read-all`: each reader reads `--read-count` events of `$all` forwards
//! from a random position (so that every call reads that many), again and
//! again. Latency is one whole call; events are counted per batch.

use std::time::Instant;

use super::{gather, row, watch, Ctx, ReadSet, Tally, Window};
use crate::cli::Workload;
use crate::clock::Rng;
use crate::error::{BenchError, Result};
use crate::report::Row;
use crate::target::Running;

/// Runs one cell of this workload.
pub async fn run(
    ctx: &Ctx,
    running: &Running,
    read_set: Option<&ReadSet>,
    readers: usize,
) -> Result<Row> {
    let o = &ctx.options;
    let head = read_set
        .ok_or_else(|| BenchError::Config("read-all needs a preloaded read set".into()))?
        .head;
    let count = o.read_count.min(head);
    let clients = running.clients(readers).await?;
    let window = Window::new(o.warmup(), o.duration(), o.max_ops);
    let usage = watch(running, window.clone());
    let handles = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let window = window.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut rng = Rng::new(i as u64);
                let mut events_in_window = 0u64;
                while window.running() {
                    let from = rng.below(head - count + 1);
                    let began = Instant::now();
                    let mut progress = |n: usize| {
                        if window.measuring(Instant::now()) {
                            events_in_window += n as u64;
                        }
                    };
                    client.read_all(from, count, &mut progress).await?;
                    let done = Instant::now();
                    if window.counts(began, done) {
                        tally.op(0, began, done);
                    }
                }
                tally.events = events_in_window;
                Ok(tally)
            })
        })
        .collect();
    let tally = gather(handles).await?;
    let usage = usage.await?;
    let mut r = row(
        running,
        Workload::ReadAll.name(),
        readers,
        &window,
        tally,
        usage,
        o.payload,
    );
    r.extra.insert("events_per_call".into(), count as f64);
    Ok(r)
}
