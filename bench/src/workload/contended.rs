//! `contended`: every writer appends 1 event per call to one of
//! `--hot-streams` shared streams chosen at random, with the expected
//! version it last saw for that stream. A conflict refreshes its view from
//! the answer (Strata), a query (PostgreSQL: the stream's max revision) or a
//! backwards read of 1 (UmaDB), and it retries at once. Latency is from the
//! first attempt to the success; conflicts and retries are counted.

use std::time::Instant;

use super::{finish, watch, Ctx, Tally, Window};
use crate::cli::Workload;
use crate::clock::Rng;
use crate::error::Result;
use crate::report::Row;
use crate::target::{AppendResult, Expect, Running};

/// Runs one cell of this workload.
pub async fn run(ctx: &Ctx, running: &Running, writers: usize) -> Result<Row> {
    let o = &ctx.options;
    let clients = running.clients(writers).await?;
    let window = Window::new(o.warmup(), o.duration(), o.max_ops);
    let usage = watch(running, window.clone());
    let prefix = ctx.prefix(Workload::Contended, writers);
    let hot: Vec<String> = (0..o.hot_streams)
        .map(|h| format!("{prefix}-hot{h}"))
        .collect();
    let handles = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let window = window.clone();
            let hot = hot.clone();
            let payload = o.payload;
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut known = vec![Expect::NEW; hot.len()];
                let mut rng = Rng::new(i as u64);
                'calls: while window.running() {
                    let h = rng.below(hot.len() as u64) as usize;
                    let began = Instant::now();
                    let mut attempts = 0u64;
                    loop {
                        attempts += 1;
                        match client.append(&hot[h], known[h], 1, payload).await? {
                            AppendResult::Ok(next) => {
                                known[h] = next;
                                break;
                            }
                            AppendResult::Conflict(now) => {
                                known[h] = now;
                                if !window.running() {
                                    continue 'calls;
                                }
                            }
                        }
                    }
                    let done = Instant::now();
                    if window.counts(began, done) {
                        tally.op(1, began, done);
                        tally.bump("conflicts", attempts - 1);
                        tally.bump("retried_calls", u64::from(attempts > 1));
                    }
                }
                Ok(tally)
            })
        })
        .collect();
    finish(
        running,
        Workload::Contended,
        writers,
        &window,
        handles,
        usage,
        o.payload,
    )
    .await
}
