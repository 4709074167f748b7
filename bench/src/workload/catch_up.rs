//! `catch-up`: each subscriber subscribes to `$all` from the start and
//! consumes `--events` stored events, then cancels and starts over, until
//! the window closes. Latency is one whole catch-up; events are counted per
//! delivered batch. (PostgreSQL "subscribes" by polling 1000 rows at a time.)
//! `catch-up-cold` drops the page cache before each catch-up and counts the
//! events of whole catch-ups over their own time.

use std::time::Instant;

use super::{cold_rates, drop_page_cache, gather, row, watch, Ctx, ReadSet, Tally, Window};
use crate::cli::Workload;
use crate::error::{BenchError, Result};
use crate::report::Row;
use crate::target::{FollowFrom, Running};

/// Runs one cell of this workload.
pub async fn run(
    ctx: &Ctx,
    running: &Running,
    read_set: Option<&ReadSet>,
    subscribers: usize,
    cold: bool,
) -> Result<Row> {
    let o = &ctx.options;
    let head = read_set
        .ok_or_else(|| BenchError::Config("catch-up needs a preloaded read set".into()))?
        .head;
    let target = o.events.min(head);
    let clients = running.clients(subscribers).await?;
    let window = Window::new(o.warmup(), o.duration(), o.max_ops);
    let usage = watch(running, window.clone());
    let handles = clients
        .into_iter()
        .map(|client| {
            let window = window.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut events_in_window = 0u64;
                while window.running() {
                    if cold {
                        drop_page_cache().await?;
                    }
                    let began = Instant::now();
                    let mut seen = 0u64;
                    let mut on_batch = |stamps: &[u64]| {
                        let n = (stamps.len() as u64).min(target - seen);
                        seen += n;
                        if window.measuring(Instant::now()) {
                            events_in_window += n;
                        }
                        seen < target
                    };
                    client
                        .follow_all(FollowFrom::Start, window.deadline(), &mut on_batch)
                        .await?;
                    let done = Instant::now();
                    if seen == target && window.counts(began, done) {
                        tally.op(if cold { seen } else { 0 }, began, done);
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
        Workload::CatchUpCold
    } else {
        Workload::CatchUp
    };
    let mut r = row(
        running,
        workload.name(),
        subscribers,
        &window,
        tally,
        usage,
        o.payload,
    );
    r.extra.insert("events_per_catch_up".into(), target as f64);
    if cold {
        cold_rates(&mut r, subscribers, events, busy, o.payload);
    }
    Ok(r)
}
