//! `recovery` (Strata only): stores `--recovery-events` events, stops the
//! server, then measures the time from spawning the process to its first
//! answered Stats call (polled every 2 ms): `--recovery-runs` times with the
//! index present, and `--recovery-rebuild-runs` times with `<data>/index`
//! deleted before each start (a full rebuild from the log).

use std::path::Path;
use std::time::Instant;

use super::preload::fill;
use super::Usage;
use crate::cli::{Options, SystemKind};
use crate::error::{BenchError, Result};
use crate::procstat;
use crate::report::Row;
use crate::stats::Latency;
use crate::target::start_strata;
use crate::target::strata::{wait_serving, Launcher};

/// Extrapolation target of the report (the 10 M events).
const TARGET_EVENTS: f64 = 10_000_000.0;

/// Measures recovery; one row with the index present, one without.
pub async fn recovery(options: &Options, launcher: &dyn Launcher, work: &Path) -> Result<Vec<Row>> {
    let data = work.join("recovery");
    let began = Instant::now();
    {
        let running = start_strata(SystemKind::Strata, launcher, &data, options).await?;
        fill(
            &running,
            "recovery-fill",
            options.recovery_events,
            options.payload,
        )
        .await?;
        // Dropping `running` stops the server gracefully (index flushed).
    }
    println!(
        "  strata: stored {} events for recovery ({:.1} s)",
        options.recovery_events,
        began.elapsed().as_secs_f64()
    );
    let mut rows = Vec::new();
    for (name, delete_index, runs) in [
        ("recovery", false, options.recovery_runs),
        ("recovery-no-index", true, options.recovery_rebuild_runs),
    ] {
        let mut times = Vec::new();
        let mut usage = Usage::default();
        for _ in 0..runs {
            if delete_index {
                let index = data.join("index");
                std::fs::remove_dir_all(&index)
                    .map_err(|e| BenchError::io("deleting the index", &index, e))?;
            }
            let t0 = Instant::now();
            let mut server = launcher.launch(&data, options.durability)?;
            let served = wait_serving(server.url(), std::time::Duration::from_secs(600)).await;
            let served = match served {
                Ok(at) => at,
                Err(e) => {
                    let _ = server.stop();
                    return Err(e);
                }
            };
            times.push(served.duration_since(t0).as_nanos() as u64);
            if let Some(pid) = server.pid() {
                // CPU of the whole start, averaged over its wall time.
                let wall = served.duration_since(t0).as_secs_f64().max(1e-9);
                let ticks = procstat::cpu_seconds(pid);
                usage.server_cpu = Some(100.0 * ticks / wall);
                usage.server_rss = Some(procstat::peak_rss_mib(pid));
            }
            server.stop()?;
        }
        let latency = Latency::from_nanos(&mut times);
        let secs = latency.p50_ms / 1e3;
        let n = options.recovery_events as f64;
        let mut row = Row {
            system: "strata".into(),
            workload: name.into(),
            clients: 1,
            ops_per_s: if secs > 0.0 { 1.0 / secs } else { 0.0 },
            events_per_s: if secs > 0.0 { n / secs } else { 0.0 },
            latency,
            server_cpu_pct: usage.server_cpu,
            server_peak_rss_mib: usage.server_rss,
            load_avg_1m: procstat::load_avg_1m(),
            seconds: secs,
            notes: format!(
                "N={} events; latency = start→serving",
                options.recovery_events
            ),
            ..Row::default()
        };
        row.extra.insert(
            "extrapolated_10M_s".into(),
            (secs * TARGET_EVENTS / n * 100.0).round() / 100.0,
        );
        rows.push(row);
    }
    Ok(rows)
}
