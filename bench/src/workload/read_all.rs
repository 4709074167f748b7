//! `read-all`: each reader reads `--read-count` events of `$all` forwards
//! from a random position (so that every call reads that many), again and
//! again. Latency is one whole call; events are counted per batch.
//! `read-all-cold` drops the page cache before each call and counts the
//! events of whole calls over the calls' own time.

use std::time::Instant;

use super::{cold_rates, drop_page_cache, gather, row, watch, Ctx, ReadSet, Tally, Window};
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
    cold: bool,
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
                    if cold {
                        drop_page_cache().await?;
                    }
                    let began = Instant::now();
                    let mut in_call = 0u64;
                    let mut progress = |n: usize| {
                        in_call += n as u64;
                        if window.measuring(Instant::now()) {
                            events_in_window += n as u64;
                        }
                    };
                    client.read_all(from, count, &mut progress).await?;
                    let done = Instant::now();
                    if window.counts(began, done) {
                        tally.op(if cold { in_call } else { 0 }, began, done);
                        if cold {
                            tally.bump("cold_call_us", (done - began).as_micros() as u64);
                        }
                    }
                }
                if !cold {
                    tally.events = events_in_window;
                }
                Ok(tally)
            })
        })
        .collect();
    let tally = gather(handles).await?;
    let usage = usage.await?;
    let busy = std::time::Duration::from_micros(*tally.counters.get("cold_call_us").unwrap_or(&0));
    let events = tally.events;
    let workload = if cold {
        Workload::ReadAllCold
    } else {
        Workload::ReadAll
    };
    let mut r = row(
        running,
        workload.name(),
        readers,
        &window,
        tally,
        usage,
        o.payload,
    );
    r.extra.insert("events_per_call".into(), count as f64);
    if cold {
        cold_rates(&mut r, readers, events, busy, o.payload);
    }
    Ok(r)
}
