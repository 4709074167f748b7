//! `ping`: each client makes calls that touch no storage, one after the
//! other, on connections shared as in every workload: the gRPC health
//! Check (Strata, UmaDB), PostgreSQL's `SELECT 1`. It is the floor
//! under every other workload's latency (client, transport, server
//! dispatch), measured the same way, so that `append`'s latency minus
//! `ping`'s is what the commit path costs.

use std::time::Instant;

use super::{finish, watch, Ctx, Tally, Window};
use crate::cli::Workload;
use crate::error::Result;
use crate::report::Row;
use crate::target::Running;

/// Runs one cell of this workload.
pub async fn run(ctx: &Ctx, running: &Running, clients: usize) -> Result<Row> {
    let o = &ctx.options;
    let connected = running.clients(clients).await?;
    let window = Window::new(o.warmup(), o.duration(), o.max_ops);
    let usage = watch(running, window.clone());
    let handles = connected
        .into_iter()
        .map(|client| {
            let window = window.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                while window.running() {
                    let began = Instant::now();
                    client.ping().await?;
                    let done = Instant::now();
                    if window.counts(began, done) {
                        tally.op(0, began, done);
                    }
                }
                Ok(tally)
            })
        })
        .collect();
    finish(
        running,
        Workload::Ping,
        clients,
        &window,
        handles,
        usage,
        o.payload,
    )
    .await
}
