//! `subscribe`: K subscribers follow `$all` from its head while
//! `--subscribe-writers` writers append 1 event per call to streams of
//! their own. Every payload carries its send time; a subscriber's latency
//! sample is delivery time minus send time, for the events sent inside the
//! window (subscribers keep listening 1 s past it so those all arrive).
//! The writers' own append latency is reported beside it, so the delivery
//! cost beyond the append is `delivery p99 − append p99`.

use std::time::Duration;

use super::{gather, row, stamped_writers, watch, Ctx, Tally, Window};
use crate::cli::Workload;
use crate::clock;
use crate::error::Result;
use crate::report::Row;
use crate::stats::Latency;
use crate::target::{FollowFrom, Running};

const GRACE: Duration = Duration::from_secs(1);

/// Runs one cell of this workload.
pub async fn run(ctx: &Ctx, running: &Running, subscribers: usize) -> Result<Row> {
    let o = &ctx.options;
    let sub_clients = running.clients(subscribers).await?;
    let writer_clients = running.clients(o.subscribe_writers).await?;
    let window = Window::new(o.warmup(), o.duration(), None);
    let usage = watch(running, window.clone());
    let prefix = ctx.prefix(Workload::Subscribe, subscribers);
    let listen_until = window.deadline() + GRACE;
    let subs: Vec<_> = sub_clients
        .into_iter()
        .map(|client| {
            let window = window.clone();
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut on_batch = |stamps: &[u64]| {
                    for &s in stamps {
                        if window.stamp_inside(s) {
                            tally.events += 1;
                            tally.ops += 1;
                            tally.latencies.push(clock::since(s));
                        }
                    }
                    true
                };
                client
                    .follow_all(FollowFrom::Now, listen_until, &mut on_batch)
                    .await?;
                Ok(tally)
            })
        })
        .collect();
    let writers = stamped_writers(writer_clients, &window, &prefix, o.payload);
    let mut appended = gather(writers).await?;
    let delivered = gather(subs).await?;
    let usage = usage.await?;
    let mut r = row(
        running,
        Workload::Subscribe.name(),
        subscribers,
        &window,
        delivered,
        usage,
        o.payload,
    );
    let append = Latency::from_nanos(&mut appended.other_latencies);
    let secs = window.length().as_secs_f64().max(1e-9);
    r.extra.insert("writers".into(), o.subscribe_writers as f64);
    r.extra.insert(
        "appended_per_s".into(),
        (appended.events as f64 / secs).round(),
    );
    r.extra
        .insert("append_p50_ms".into(), round3(append.p50_ms));
    r.extra
        .insert("append_p99_ms".into(), round3(append.p99_ms));
    r.extra.insert(
        "delivery_p99_minus_append_p99_ms".into(),
        round3(r.latency.p99_ms - append.p99_ms),
    );
    let expected = appended.events * subscribers as u64;
    if (r.latency.samples as u64) < expected {
        r.notes = format!(
            "delivered {} of {} in-window events",
            r.latency.samples, expected
        );
    }
    Ok(r)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
