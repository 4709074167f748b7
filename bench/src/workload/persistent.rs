//! `persistent`: K consumers of one consumer group on `$all` (filtered to
//! the cell's streams) while `--subscribe-writers` writers append 1 stamped
//! event per call; each consumer waits `--handler-us` per event (the
//! simulated handler) before acknowledging it, holding up to
//! `--group-buffer` unacknowledged. Throughput is events delivered (and
//! then acknowledged) per second inside the window; latency is
//! append→delivery of those, so when the consumers cannot keep up it shows
//! the backlog. One plain `$all` subscription
//! follows the same events in the same cell, so the group's delivery
//! latency sits beside the catch-up subscription's (`sub_p50_ms`,
//! `sub_p99_ms`). Strata only.

use std::time::{Duration, Instant};

use super::{gather, row, stamped_writers, watch, Ctx, Tally, Window};
use crate::cli::Workload;
use crate::clock;
use crate::error::Result;
use crate::report::Row;
use crate::stats::Latency;
use crate::target::{Client, FollowFrom, Running};

const GRACE: Duration = Duration::from_secs(1);

/// Runs one cell of this workload.
pub async fn run(ctx: &Ctx, running: &Running, consumers: usize) -> Result<Row> {
    let o = &ctx.options;
    let workload = Workload::Persistent;
    let mut clients: Vec<_> = running
        .clients(consumers + 1)
        .await?
        .into_iter()
        .filter_map(Client::into_strata)
        .collect();
    let Some(admin) = clients.first() else {
        return Ok(Row {
            system: running.kind.name().to_owned(),
            workload: workload.name().to_owned(),
            clients: consumers,
            notes: "n/a: consumer groups are Strata's".into(),
            ..Row::default()
        });
    };
    let prefix = ctx.prefix(workload, consumers);
    let group = format!("{prefix}-group");
    admin.create_group(&prefix, &group).await?;
    let follower = clients.remove(0);
    let writer_clients = running.clients(o.subscribe_writers).await?;
    let window = Window::new(o.warmup(), o.duration(), None);
    let usage = watch(running, window.clone());
    let listen_until = window.deadline() + GRACE;
    let handler = Duration::from_micros(o.handler_us);
    let members: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let (window, group) = (window.clone(), group.clone());
            let buffer = o.group_buffer;
            tokio::spawn(async move {
                let c = client;
                let mut tally = Tally::default();
                // Deliveries inside the window count, whenever their event
                // was written: at saturation, latency shows the backlog.
                let mut on_event = |stamp: u64| {
                    if window.measuring(Instant::now()) {
                        tally.events += 1;
                        tally.ops += 1;
                        if stamp != 0 {
                            tally.latencies.push(clock::since(stamp));
                        }
                    }
                };
                c.consume_group(&group, buffer, handler, window.deadline(), &mut on_event)
                    .await?;
                Ok(tally)
            })
        })
        .collect();
    let sub = {
        let window = window.clone();
        tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut on_batch = |stamps: &[u64]| {
                for &s in stamps {
                    if window.stamp_inside(s) {
                        tally.other_latencies.push(clock::since(s));
                    }
                }
                true
            };
            follower
                .follow_all(FollowFrom::Now, listen_until, &mut on_batch)
                .await?;
            Ok(tally)
        })
    };
    let writers = stamped_writers(writer_clients, &window, &prefix, o.payload);
    let appended = gather(writers).await?;
    let delivered = gather(members).await?;
    let delivered_events = delivered.events;
    let mut followed = gather(vec![sub]).await?;
    let usage = usage.await?;
    let mut r = row(
        running,
        workload.name(),
        consumers,
        &window,
        delivered,
        usage,
        o.payload,
    );
    let secs = window.length().as_secs_f64().max(1e-9);
    let sub = Latency::from_nanos(&mut followed.other_latencies);
    r.extra.insert("handler_us".into(), o.handler_us as f64);
    r.extra.insert("buffer".into(), f64::from(o.group_buffer));
    r.extra.insert(
        "appended_per_s".into(),
        (appended.events as f64 / secs).round(),
    );
    if o.handler_us > 0 {
        r.extra.insert(
            "handler_bound_per_s".into(),
            (consumers as f64 * 1e6 / o.handler_us as f64).round(),
        );
    }
    r.extra.insert("sub_p50_ms".into(), round3(sub.p50_ms));
    r.extra.insert("sub_p99_ms".into(), round3(sub.p99_ms));
    if delivered_events + appended.events / 50 < appended.events {
        r.notes = format!(
            "the consumers kept up with {delivered_events} of {} appended events",
            appended.events
        );
    }
    Ok(r)
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
