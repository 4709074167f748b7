//! Smoke test: every workload runs at a tiny size against Strata, so the
//! benchmark keeps working as the server changes. It checks that each cell
//! ran and measured something, never how fast: speed is not a test result.
//!
//! Strata runs in-process (`strata_server::run` on a thread with its own
//! runtime) so the test needs no prebuilt `strata` binary.

use std::path::Path;
use std::sync::mpsc;
use std::thread::JoinHandle;

use clap::Parser as _;
use strata_bench::cli::{Durability, Options, SystemKind};
use strata_bench::error::{BenchError, Result};
use strata_bench::target::strata::{Launcher, ServerProcess};
use strata_server::config::{Durability as ServerDurability, ServeArgs};

/// Starts `strata_server::run` on a thread of its own.
struct InProcess;

struct InProcessServer {
    url: String,
    metrics_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<std::result::Result<(), String>>>,
}

impl Launcher for InProcess {
    fn launch(&self, data_dir: &Path, durability: Durability) -> Result<Box<dyn ServerProcess>> {
        let mut args = ServeArgs::for_tests(data_dir);
        args.durability = match durability {
            Durability::Always => ServerDurability::Always,
            Durability::UnsafeNoSync => ServerDurability::UnsafeNoSync,
        };
        args.log_filter = "warn".into();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let grpc = tokio::net::TcpListener::bind(args.listen)
                    .await
                    .map_err(|e| e.to_string())?;
                let metrics = tokio::net::TcpListener::bind(args.metrics_listen)
                    .await
                    .map_err(|e| e.to_string())?;
                let addrs = (grpc.local_addr(), metrics.local_addr());
                let (Ok(grpc_addr), Ok(metrics_addr)) = addrs else {
                    return Err("reading the bound addresses".to_owned());
                };
                let _ = addr_tx.send((grpc_addr, metrics_addr));
                strata_server::run(args, grpc, metrics, async move {
                    let _ = stop_rx.await;
                })
                .await
                .map_err(|e| e.to_string())
            })
        });
        let (addr, metrics_addr) = addr_rx
            .recv()
            .map_err(|_| BenchError::server("strata", "in-process server did not start"))?;
        Ok(Box::new(InProcessServer {
            url: format!("http://{addr}"),
            metrics_url: format!("http://{metrics_addr}/metrics"),
            stop: Some(stop_tx),
            thread: Some(thread),
        }))
    }
}

impl ServerProcess for InProcessServer {
    fn url(&self) -> &str {
        &self.url
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    fn metrics_url(&self) -> Option<String> {
        Some(self.metrics_url.clone())
    }

    fn stop(&mut self) -> Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => Err(BenchError::server("strata", e)),
            Some(Err(_)) => Err(BenchError::server("strata", "server thread panicked")),
            _ => Ok(()),
        }
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The options of a tiny run of `workloads`.
fn tiny(work_dir: &str, workloads: &[&str]) -> Options {
    let mut args = vec![
        "strata-bench",
        "--clients",
        "1,3",
        "--duration",
        "0.3",
        "--warmup",
        "0.1",
        "--batch-size",
        "10",
        "--multi-streams",
        "3",
        "--events",
        "3000",
        "--read-count",
        "500",
        "--stream-lengths",
        "1,10,100",
        "--streams-per-length",
        "2",
        "--subscribe-writers",
        "2",
        "--recovery-events",
        "3000",
        "--recovery-runs",
        "1",
        "--clients-per-connection",
        "2",
        "--no-json",
        "--work-dir",
        work_dir,
    ];
    args.extend_from_slice(workloads);
    Options::parse_from(args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_workload_runs_at_a_tiny_size() {
    let work = tempfile::tempdir().expect("tempdir");
    let work_dir = work.path().to_str().expect("utf-8 path");
    // What drops the page cache (the disk probe's cold read, the cold
    // workloads) runs last, on its own, so that it cannot slow the short
    // windows of the others.
    let warm = tiny(
        work_dir,
        &[
            "ping",
            "append",
            "append-pipelined",
            "append-batch",
            "multi-append",
            "contended",
            "subscribe",
            "persistent",
            "read-all",
            "read-stream",
            "catch-up",
            "recovery",
        ],
    );
    let mut rows = strata_bench::run_with(warm, Some(&InProcess))
        .await
        .expect("the benchmark runs");
    let cold = tiny(work_dir, &["probe-disk", "read-all-cold", "catch-up-cold"]);
    rows.extend(
        strata_bench::run_with(cold, Some(&InProcess))
            .await
            .expect("the cold part runs"),
    );

    for r in &rows {
        assert!(
            !r.notes.starts_with("FAILED"),
            "{} {} {}: {}",
            r.system,
            r.workload,
            r.clients,
            r.notes
        );
    }
    let names: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    for workload in [
        "append",
        "append-pipelined",
        "append-batch",
        "multi-append",
        "contended",
        "read-all",
        "read-stream",
        "subscribe",
        "persistent",
        "catch-up",
    ] {
        let cells: Vec<_> = rows.iter().filter(|r| r.workload == workload).collect();
        assert_eq!(
            cells.len(),
            2,
            "{workload}: one row per client count in {names:?}"
        );
        for c in cells {
            // A whole read or catch-up may outlast so short a window on a
            // loaded machine; its events still count batch by batch.
            assert!(
                c.events_per_s > 0.0,
                "{workload} {}: no events ({})",
                c.clients,
                c.notes
            );
            assert!(
                c.latency.samples > 0 || matches!(workload, "catch-up" | "read-all"),
                "{workload}: no latency"
            );
        }
    }
    // Calls that carry no events: counted as calls, with their latency.
    let pings: Vec<_> = rows.iter().filter(|r| r.workload == "ping").collect();
    assert_eq!(pings.len(), 2, "ping: one row per client count");
    for p in pings {
        assert!(
            p.ops_per_s > 0.0 && p.latency.samples > 0 && p.events_per_s == 0.0,
            "ping {}: {} calls/s, {} samples ({})",
            p.clients,
            p.ops_per_s,
            p.latency.samples,
            p.notes
        );
    }
    for workload in ["recovery", "recovery-no-index"] {
        let r = rows
            .iter()
            .find(|r| r.workload == workload)
            .expect(workload);
        assert!(
            r.latency.samples == 1 && r.latency.max_ms > 0.0,
            "{workload}"
        );
    }
    // Cold cells drop the page cache before each call, which may take the
    // whole of so short a window: they must run, not necessarily count.
    for workload in ["read-all-cold", "catch-up-cold"] {
        let cells = rows.iter().filter(|r| r.workload == workload).count();
        assert_eq!(
            cells, 2,
            "{workload}: one row per client count in {names:?}"
        );
    }
    let disk: Vec<_> = rows.iter().filter(|r| r.system == "disk").collect();
    assert_eq!(disk.len(), 4, "four disk probes");
    assert!(disk.iter().all(|r| r.ops_per_s > 0.0));
    // The write workloads' server metrics come from the in-process server's
    // /metrics, scraped around each window.
    for workload in ["append", "append-pipelined", "append-batch", "multi-append"] {
        for c in rows.iter().filter(|r| r.workload == workload) {
            let m = c
                .server_metrics
                .unwrap_or_else(|| panic!("{workload} {}: no server metrics", c.clients));
            assert!(
                m.batches > 0 && m.appends > 0,
                "{workload} {}: {m:?}",
                c.clients
            );
            assert!(m.appends_per_batch.is_some() && m.append_ms.is_some());
            assert!(c.client_cpu_us_per_op.is_some() && c.load_avg_1m.is_some());
        }
    }
    let multi = rows
        .iter()
        .find(|r| r.workload == "multi-append")
        .expect("multi-append row");
    // Both rates are counts over the same window: equal but for the
    // rounding of two divisions.
    let per_call = multi.events_per_s / multi.ops_per_s;
    assert!(
        (per_call - 3.0).abs() < 1e-9,
        "3 events per multi-append, got {per_call}"
    );
    let contended = rows
        .iter()
        .find(|r| r.workload == "contended" && r.clients == 3)
        .expect("contended row");
    assert!(contended.extra.contains_key("conflicts"));
    let subscribe = rows
        .iter()
        .find(|r| r.workload == "subscribe")
        .expect("subscribe");
    assert!(subscribe.extra.contains_key("append_p99_ms"));
    let persistent = rows
        .iter()
        .find(|r| r.workload == "persistent")
        .expect("persistent");
    assert!(persistent.extra.contains_key("sub_p99_ms"));
}

/// Strata through its KurrentDB layer: the workloads it maps run next to
/// the native ones and get their ratio; the others are `n/a` rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kurrentdb_layer_runs_beside_native_strata() {
    let work = tempfile::tempdir().expect("tempdir");
    let work_dir = work.path().to_str().expect("utf-8 path");
    let mut options = tiny(
        work_dir,
        &[
            "append",
            "append-batch",
            "contended",
            "subscribe",
            "read-all",
            "read-stream",
            "catch-up",
            "append-pipelined",
            "multi-append",
            "persistent",
            "ping",
        ],
    );
    options.systems = vec![SystemKind::Strata, SystemKind::StrataKurrentdb];
    options.clients = vec![2];
    let rows = strata_bench::run_with(options, Some(&InProcess))
        .await
        .expect("the benchmark runs");
    for r in &rows {
        assert!(
            !r.notes.starts_with("FAILED"),
            "{} {} {}: {}",
            r.system,
            r.workload,
            r.clients,
            r.notes
        );
    }
    let layer: Vec<_> = rows
        .iter()
        .filter(|r| r.system == "strata-kurrentdb")
        .collect();
    for workload in [
        "append",
        "append-batch",
        "contended",
        "subscribe",
        "read-all",
        "read-stream",
        "catch-up",
    ] {
        let r = layer
            .iter()
            .find(|r| r.workload == workload)
            .unwrap_or_else(|| panic!("{workload}: no strata-kurrentdb row"));
        assert!(r.events_per_s > 0.0, "{workload}: no events");
        assert!(
            r.kurrentdb_vs_strata.is_some(),
            "{workload}: no ratio to native strata"
        );
    }
    for workload in ["append-pipelined", "multi-append", "persistent", "ping"] {
        let r = layer
            .iter()
            .find(|r| r.workload == workload)
            .unwrap_or_else(|| panic!("{workload}: no strata-kurrentdb row"));
        assert!(r.notes.starts_with("n/a"), "{workload}: {}", r.notes);
        assert_eq!(r.events_per_s, 0.0, "{workload}: nothing is measured");
    }
    // The layer's appends go through the same group commit.
    let append = layer
        .iter()
        .find(|r| r.workload == "append")
        .expect("append row");
    let m = append.server_metrics.expect("server metrics");
    assert!(m.batches > 0, "{m:?}");
    let summary = strata_bench::report::summary(&rows);
    assert!(
        summary.contains("read-all: 2 clients") && summary.contains("×"),
        "{summary}"
    );
}

#[test]
fn refuses_a_non_loopback_url() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata-bench"))
        .args(["append", "--url", "http://10.1.2.3:2113", "--no-json"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a loopback address"), "{err}");
}
