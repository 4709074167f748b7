//! strata-bench: a load driver for Strata that starts the server itself (or
//! targets a loopback `--url`), runs each workload for a fixed time, and
//! reports throughput, latency percentiles and the server's CPU and peak
//! memory as a table on stdout and JSON under `bench/results/`. With the
//! `peers` feature it runs PostgreSQL and UmaDB on the same workloads in
//! the same run and shows Strata's ratio to each; `strata-kurrentdb` runs
//! the same Strata through its KurrentDB layer and shows that layer's cost
//! as its ratio to the native rows.
//!
//! It is a benchmark, never part of the test suite's assertions about
//! Strata's behaviour; `tests/smoke.rs` only checks that every workload
//! still runs. It never sends traffic anywhere but the loopback interface.

pub mod cli;
pub mod clock;
pub mod error;
pub mod procstat;
pub mod report;
pub mod scrape;
pub mod stats;
pub mod target;
pub mod workload;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use cli::{Options, SystemKind, Workload};
use error::{BenchError, Result};
use report::Row;
use target::strata::{BinaryLauncher, Launcher};
use target::Running;
use workload::{run_cell, Ctx};

/// Runs the benchmark the options describe, spawning the `strata` binary.
pub async fn run(options: Options) -> Result<Vec<Row>> {
    options.validate()?;
    let needs_binary = options.url.is_none() && options.systems.iter().any(|s| s.is_strata());
    let launcher = if needs_binary {
        Some(BinaryLauncher::find(options.strata_bin.clone())?)
    } else {
        None
    };
    if let Some(l) = &launcher {
        println!("strata binary: {}", l.bin().display());
    }
    run_with(options, launcher.as_ref().map(|l| l as &dyn Launcher)).await
}

/// Runs the benchmark with Strata started by `launcher` (in-process in the
/// smoke test). Returns every row, ratios filled; prints the table and
/// writes the JSON unless `--no-json`.
pub async fn run_with(options: Options, launcher: Option<&dyn Launcher>) -> Result<Vec<Row>> {
    options.validate()?;
    let started = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let workloads = options.selected_workloads();
    let base = options.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base)
        .map_err(|e| BenchError::io("creating the work directory", &base, e))?;
    let work = tempfile::Builder::new()
        .prefix("strata-bench-")
        .tempdir_in(&base)
        .map_err(|e| BenchError::io("creating a temporary directory", &base, e))?;
    // PostgreSQL runs as the `postgres` user, which must reach its data dir.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let _ = std::fs::set_permissions(work.path(), std::fs::Permissions::from_mode(0o755));
    }
    if options.tls {
        if options.url.is_some() {
            return Err(BenchError::Config(
                "--tls applies to a spawned Strata, not to --url".into(),
            ));
        }
        let dir = work.path().join("tls");
        std::fs::create_dir_all(&dir)
            .map_err(|e| BenchError::io("creating the TLS directory", &dir, e))?;
        target::strata::TlsSetup::generate(&dir)?.install()?;
        println!("strata: TLS with authentication (Basic, as admin; strata-kurrentdb alike)");
    }
    let ctx = Ctx {
        run_id: format!("b{started}x{}", std::process::id()),
        options,
    };
    let o = &ctx.options;
    let mut rows: Vec<Row> = Vec::new();

    if workloads.contains(&Workload::ProbeDisk) {
        println!("probe-disk in {}", work.path().display());
        match workload::probe_disk(work.path(), o.duration()).await {
            Ok(r) => r.into_iter().for_each(|r| emit(&mut rows, r)),
            Err(e) => emit(&mut rows, failed("disk", Workload::ProbeDisk, 1, &e)),
        }
    }
    let per_client: Vec<Workload> = workloads
        .iter()
        .copied()
        .filter(|w| !matches!(w, Workload::ProbeDisk | Workload::Recovery))
        .collect();
    let mut measured: Vec<Row> = Vec::new();
    for round in 0..o.rounds {
        if o.rounds > 1 {
            println!("round {} of {}", round + 1, o.rounds);
        }
        if per_client.is_empty() {
            break;
        }
        for system in rotated(&o.systems, round) {
            println!("{}: starting", system.name());
            let ctx = ctx.for_system(system);
            let data = work
                .path()
                .join(format!("round-{round}"))
                .join(system.name());
            match start(system, &ctx, launcher, &data).await {
                Ok(running) => run_system(&ctx, &running, &per_client, &mut measured).await,
                Err(e) => emit(&mut measured, failed(system.name(), per_client[0], 0, &e)),
            }
            // Stopped: its data is not needed again.
            let _ = std::fs::remove_dir_all(&data);
        }
    }
    if o.systems.contains(&SystemKind::Strata) && workloads.contains(&Workload::Recovery) {
        match launcher {
            Some(l) => match workload::recovery(o, l, work.path()).await {
                Ok(r) => r.into_iter().for_each(|r| emit(&mut rows, r)),
                Err(e) => emit(&mut rows, failed("strata", Workload::Recovery, 1, &e)),
            },
            None => println!("recovery: skipped (it restarts the server; not with --url)"),
        }
    }
    rows.extend(report::median_rounds(measured, o.rounds));

    report::fill_ratios(&mut rows);
    println!();
    print!("{}", report::table(&rows));
    print!("{}", report::summary(&rows));
    if !o.no_json {
        let command: Vec<String> = std::env::args().collect();
        let doc = report::RunReport {
            started_unix: started,
            command,
            options: o,
            rows: &rows,
        };
        let path = report::write_json(&o.results_dir, &doc)?;
        println!("results: {}", path.display());
    }
    Ok(rows)
}

/// The systems in the order round `round` runs them: each round starts one
/// further along, so that no system always runs first (on a cold machine)
/// or last (after the others' files).
fn rotated(systems: &[SystemKind], round: usize) -> Vec<SystemKind> {
    let mut order = systems.to_vec();
    let n = order.len().max(1);
    order.rotate_left(round % n);
    order
}

/// Starts `system`, on `data` if it keeps its data where it is told.
async fn start(
    system: SystemKind,
    ctx: &Ctx,
    launcher: Option<&dyn Launcher>,
    data: &Path,
) -> Result<Running> {
    let o = &ctx.options;
    match system {
        // Both launch the same binary with the same flags, each on a fresh
        // data directory of its own.
        SystemKind::Strata | SystemKind::StrataKurrentdb => match (&o.url, launcher) {
            (Some(url), _) => target::attach_strata(system, url, o).await,
            (None, Some(l)) => target::start_strata(system, l, data, o).await,
            (None, None) => Err(BenchError::Config(format!(
                "no way to start {}",
                system.name()
            ))),
        },
        #[cfg(feature = "peers")]
        SystemKind::Postgres => target::postgres::start(o, data).await,
        #[cfg(feature = "peers")]
        SystemKind::Umadb => target::umadb::start(o).await,
        #[cfg(not(feature = "peers"))]
        other => Err(BenchError::Config(format!(
            "{} needs the `peers` feature",
            other.name()
        ))),
    }
}

/// Most clients a cold cell runs with (when the run has smaller counts).
const COLD_CLIENTS: usize = 16;

async fn run_system(ctx: &Ctx, running: &Running, workloads: &[Workload], rows: &mut Vec<Row>) {
    let o = &ctx.options;
    let system = running.kind.name();
    let mut read_set = None;
    for &w in workloads {
        if w.needs_preload() && read_set.is_none() {
            match workload::preload(running, &ctx.run_id, o).await {
                Ok(set) => read_set = Some(set),
                Err(e) => {
                    emit(rows, failed(system, w, 0, &e));
                    continue;
                }
            }
        }
        for &clients in &o.clients {
            // Cold cells drop the whole page cache before each call; with
            // many clients doing so at once they would measure the drops.
            if w.is_cold() && clients > COLD_CLIENTS && o.clients.iter().any(|&c| c <= COLD_CLIENTS)
            {
                continue;
            }
            match run_cell(ctx, running, read_set.as_ref(), w, clients).await {
                Ok(row) => emit(rows, row),
                Err(e) => emit(rows, failed(system, w, clients, &e)),
            }
        }
    }
}

fn failed(system: &str, workload: Workload, clients: usize, e: &BenchError) -> Row {
    Row {
        system: system.to_owned(),
        workload: workload.name().to_owned(),
        clients,
        notes: format!("FAILED: {e}"),
        ..Row::default()
    }
}

/// Prints a one-line progress report and keeps the row.
fn emit(rows: &mut Vec<Row>, row: Row) {
    if !row.measured() {
        println!(
            "  {} {} {}: {}",
            row.system, row.workload, row.clients, row.notes
        );
    } else {
        println!(
            "  {} {} {}: {:.0} ops/s, {:.0} events/s, p50 {:.2} ms, p99 {:.2} ms",
            row.system,
            row.workload,
            row.clients,
            row.ops_per_s,
            row.events_per_s,
            row.latency.p50_ms,
            row.latency.p99_ms
        );
    }
    rows.push(row);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_round_starts_with_the_next_system() {
        use SystemKind::*;
        let all = [Strata, Postgres, Umadb];
        assert_eq!(rotated(&all, 0), vec![Strata, Postgres, Umadb]);
        assert_eq!(rotated(&all, 1), vec![Postgres, Umadb, Strata]);
        assert_eq!(rotated(&all, 2), vec![Umadb, Strata, Postgres]);
        assert_eq!(rotated(&all, 3), vec![Strata, Postgres, Umadb]);
        assert_eq!(rotated(&[Strata], 5), vec![Strata]);
    }
}
