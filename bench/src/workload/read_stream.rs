//! `read-stream`: each reader reads a whole stream chosen uniformly at
//! random among the preloaded ones (`--stream-lengths` events long, the
//! same number of streams of each length), again and again. Latency is one
//! whole read.

use std::time::Instant;

use super::{finish, watch, Ctx, ReadSet, Tally, Window};
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
    let streams = read_set
        .ok_or_else(|| BenchError::Config("read-stream needs a preloaded read set".into()))?
        .streams
        .clone();
    let clients = running.clients(readers).await?;
    let window = Window::new(o.warmup(), o.duration(), o.max_ops);
    let usage = watch(running, window.clone());
    let handles = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let window = window.clone();
            let streams = streams.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut rng = Rng::new(i as u64);
                while window.running() {
                    let (name, len) = &streams[rng.below(streams.len() as u64) as usize];
                    let began = Instant::now();
                    let n = client.read_stream(name).await?;
                    let done = Instant::now();
                    if n != *len {
                        return Err(BenchError::server(
                            "driver",
                            format!("{name}: read {n} events, stored {len}"),
                        ));
                    }
                    if window.counts(began, done) {
                        tally.op(n, began, done);
                    }
                }
                Ok(tally)
            })
        })
        .collect();
    finish(
        running,
        Workload::ReadStream,
        readers,
        &window,
        handles,
        usage,
        o.payload,
    )
    .await
}
