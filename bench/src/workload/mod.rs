//! The workloads and the harness they share: a measured window after a
//! warm-up, per-worker tallies merged at the end, and server CPU / peak
//! memory read over exactly the measured window.
//!
//! An operation counts when it started inside the window and completed
//! before it closed; operations straddling either edge are discarded.
//! Reads also count events batch by batch as they arrive inside the window,
//! so a read longer than the window still contributes its throughput.

mod append;
mod catch_up;
mod contended;
mod multi_append;
mod persistent;
mod ping;
mod preload;
mod probe_disk;
mod read_all;
mod read_stream;
mod recovery;
mod subscribe;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use preload::{preload, ReadSet};
pub use probe_disk::probe_disk;
pub use recovery::recovery;

use crate::cli::{Options, SystemKind, Workload};
use crate::clock;
use crate::error::Result;
use crate::procstat;
use crate::report::Row;
use crate::scrape::{self, ServerMetrics};
use crate::stats::Latency;
use crate::target::Running;

/// What every cell of a run shares.
pub struct Ctx {
    /// The options.
    pub options: Options,
    /// A prefix unique to this run, so stream names never collide with an
    /// earlier run's against the same server (`--url`).
    pub run_id: String,
}

impl Ctx {
    /// The context of one system's cells: the KurrentDB layer's streams get
    /// a run id of their own, so that with `--url` (one server for both)
    /// they never collide with the native system's.
    pub fn for_system(&self, system: SystemKind) -> Ctx {
        let run_id = match system {
            SystemKind::StrataKurrentdb => format!("{}k", self.run_id),
            _ => self.run_id.clone(),
        };
        Ctx {
            options: self.options.clone(),
            run_id,
        }
    }

    /// A prefix for the streams of one cell.
    pub fn prefix(&self, workload: Workload, clients: usize) -> String {
        format!("{}-{}-{clients}", self.run_id, workload.name())
    }
}

/// How many times its duration (and at least [`MIN_OVERTIME`]) a window
/// that has measured nothing stays open past its deadline: one operation
/// slower than the whole window (a loaded machine, a stalled fsync) must
/// not leave a cell empty.
const OVERTIME_FACTOR: u32 = 10;
const MIN_OVERTIME: Duration = Duration::from_secs(1);

/// The measured window of one cell.
///
/// If nothing has been measured by its deadline (no operation both began
/// and completed inside it, no batch arrived inside it), the window runs
/// into overtime: it stays open until the first measurement, which closes
/// it at that instant, for at most 10 × `duration` (1 s at least) more. Its
/// length, and so every rate, covers the overtime it used.
pub struct Window {
    start: Instant,
    deadline: Instant,
    overtime_until: Instant,
    start_stamp: u64,
    stopped: AtomicBool,
    ended: Mutex<Option<Instant>>,
    ops: AtomicU64,
    max_ops: Option<u64>,
    measured: AtomicBool,
}

impl Window {
    /// A window opening after `warmup` and lasting `duration` (or `max_ops`).
    pub fn new(warmup: Duration, duration: Duration, max_ops: Option<u64>) -> Arc<Window> {
        let now = Instant::now();
        let deadline = now + warmup + duration;
        Arc::new(Window {
            start: now + warmup,
            deadline,
            overtime_until: deadline + (duration * OVERTIME_FACTOR).max(MIN_OVERTIME),
            start_stamp: clock::now_nanos() + warmup.as_nanos() as u64,
            stopped: AtomicBool::new(false),
            ended: Mutex::new(None),
            ops: AtomicU64::new(0),
            max_ops,
            measured: AtomicBool::new(false),
        })
    }

    /// When the window closes unless it is stopped first: its deadline, or
    /// the end of its overtime while nothing has been measured.
    fn open_until(&self) -> Instant {
        if self.measured.load(Ordering::Acquire) {
            self.deadline
        } else {
            self.overtime_until
        }
    }

    /// Whether workers should keep going.
    pub fn running(&self) -> bool {
        !self.stopped.load(Ordering::Acquire) && Instant::now() < self.open_until()
    }

    /// Whether what happened at `at` is inside the (still open) window, and
    /// so counts: the caller measures it. In overtime only the first
    /// measurement counts, and the window closes at `at`.
    pub fn measuring(&self, at: Instant) -> bool {
        if at < self.start || self.stopped.load(Ordering::Acquire) {
            return false;
        }
        if at < self.deadline {
            self.measured.store(true, Ordering::Release);
            return true;
        }
        if at >= self.overtime_until || self.measured.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.stop(at);
        true
    }

    /// Whether an operation from `began` to `done` counts; if it does, it is
    /// counted toward `--max-ops`.
    pub fn counts(&self, began: Instant, done: Instant) -> bool {
        if began < self.start || !self.measuring(done) {
            return false;
        }
        let n = self.ops.fetch_add(1, Ordering::AcqRel) + 1;
        if self.max_ops.is_some_and(|m| n >= m) {
            self.stop(done);
        }
        true
    }

    fn stop(&self, at: Instant) {
        if !self.stopped.swap(true, Ordering::AcqRel) {
            *self.ended.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
        }
    }

    /// When the window opens.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// When the window closes at the latest, as far as is known now: its
    /// deadline, or once in overtime (past the deadline with nothing
    /// measured) the end of the overtime.
    pub fn deadline(&self) -> Instant {
        if !self.measured.load(Ordering::Acquire) && Instant::now() >= self.deadline {
            self.overtime_until
        } else {
            self.deadline
        }
    }

    /// Whether a payload stamped `stamp` was sent inside the window.
    pub fn stamp_inside(&self, stamp: u64) -> bool {
        let end_stamp = self.start_stamp + self.length().as_nanos() as u64;
        stamp >= self.start_stamp && stamp < end_stamp
    }

    /// The window's length: up to the deadline, to the `--max-ops`-th op, or
    /// to the measurement that ended its overtime.
    pub fn length(&self) -> Duration {
        let end = self
            .ended
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .unwrap_or_else(|| self.open_until());
        end.saturating_duration_since(self.start)
    }

    /// The overtime a window that never measured anything waited in vain.
    fn wasted_overtime(&self) -> Option<Duration> {
        (!self.measured.load(Ordering::Acquire))
            .then(|| self.overtime_until.saturating_duration_since(self.deadline))
    }
}

/// What one worker did inside the window.
#[derive(Default)]
pub struct Tally {
    /// Operations completed.
    pub ops: u64,
    /// Events written, read or delivered.
    pub events: u64,
    /// Operation latencies, nanoseconds.
    pub latencies: Vec<u64>,
    /// A second latency series (e.g. the writers' append latency in subscribe).
    pub other_latencies: Vec<u64>,
    /// Named counters (conflicts, retries, …).
    pub counters: BTreeMap<&'static str, u64>,
}

impl Tally {
    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.events += other.events;
        self.latencies.extend(other.latencies);
        self.other_latencies.extend(other.other_latencies);
        for (k, v) in other.counters {
            *self.counters.entry(k).or_default() += v;
        }
    }

    /// Records a counted operation.
    pub fn op(&mut self, events: u64, began: Instant, done: Instant) {
        self.ops += 1;
        self.events += events;
        self.latencies
            .push(done.duration_since(began).as_nanos() as u64);
    }

    /// Adds to a named counter.
    pub fn bump(&mut self, name: &'static str, by: u64) {
        *self.counters.entry(name).or_default() += by;
    }
}

/// Writes dirty pages back and drops the whole page cache, so that the next
/// read comes from the disk (Linux, root). Every system's files go, but
/// not what a server caches in its own memory (PostgreSQL's shared
/// buffers, for one).
pub async fn drop_page_cache() -> Result<()> {
    tokio::task::spawn_blocking(drop_page_cache_now).await?
}

/// [`drop_page_cache`] on the calling (blocking) thread.
pub fn drop_page_cache_now() -> Result<()> {
    let path = std::path::Path::new("/proc/sys/vm/drop_caches");
    let synced = std::process::Command::new("sync")
        .status()
        .map_err(|e| crate::error::BenchError::io("running sync", path, e))?;
    if !synced.success() {
        return Err(crate::error::BenchError::Config("sync failed".into()));
    }
    std::fs::write(path, "3\n").map_err(|e| {
        crate::error::BenchError::Config(format!(
            "cold workloads drop the page cache through {}, which needs root: {e}",
            path.display()
        ))
    })
}

/// Cold-cell figures: events per second of the calls themselves (the time
/// spent dropping the cache between them is not counted), per client
/// summed.
pub fn cold_rates(row: &mut Row, clients: usize, events: u64, busy: Duration, payload: usize) {
    let per_client_secs = busy.as_secs_f64() / clients.max(1) as f64;
    if events == 0 || per_client_secs <= 0.0 {
        return;
    }
    row.events_per_s = events as f64 / per_client_secs;
    row.mib_per_s = row.events_per_s * payload as f64 / (1 << 20) as f64;
    row.notes = format!(
        "page cache dropped before each call; events/s over the calls' own time{}{}",
        if row.notes.is_empty() { "" } else { "; " },
        row.notes
    );
}

/// CPU and memory of the server and the driver over a window, the deltas
/// of Strata's metrics across it, and the machine's load at its end.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    /// Server CPU, percent of one core.
    pub server_cpu: Option<f64>,
    /// Server CPU seconds over the window.
    pub server_cpu_s: Option<f64>,
    /// Server peak RSS, MiB.
    pub server_rss: Option<f64>,
    /// Driver CPU, percent of one core.
    pub client_cpu: Option<f64>,
    /// Driver CPU seconds over the window.
    pub client_cpu_s: Option<f64>,
    /// The 1-minute load average when the window closed.
    pub load_1m: Option<f64>,
    /// Strata's metrics over the window (when it has a metrics URL).
    pub server_metrics: Option<ServerMetrics>,
    /// Why the metrics are missing although a URL was known.
    pub metrics_error: Option<String>,
}

/// Reads CPU at the window's start and end (resetting the server's peak-RSS
/// mark at the start) and scrapes the server's metrics just before the
/// first reading and just after the last, in a task of its own.
pub fn watch(running: &Running, window: Arc<Window>) -> tokio::task::JoinHandle<Usage> {
    let (pid, metrics_url) = (running.pid, running.metrics_url.clone());
    tokio::spawn(async move {
        tokio::time::sleep_until(tokio::time::Instant::from_std(window.start())).await;
        let scrape0 = match &metrics_url {
            Some(url) => Some(scrape::fetch(url).await),
            None => None,
        };
        if let Some(pid) = pid {
            procstat::reset_peak_rss(pid);
        }
        let server0 = pid.map(procstat::cpu);
        let client0 = procstat::self_cpu();
        while window.running() {
            let left = window.deadline().saturating_duration_since(Instant::now());
            let nap = left.clamp(Duration::from_millis(1), Duration::from_millis(10));
            tokio::time::sleep(nap).await;
        }
        let client1 = procstat::self_cpu();
        let server = pid.zip(server0).map(|(p, s0)| (s0, procstat::cpu(p)));
        let mut usage = Usage {
            server_cpu: server.map(|(s0, s1)| s0.percent_until(&s1)),
            server_cpu_s: server.map(|(s0, s1)| s0.seconds_until(&s1)),
            server_rss: pid.map(procstat::peak_rss_mib),
            client_cpu: Some(client0.percent_until(&client1)),
            client_cpu_s: Some(client0.seconds_until(&client1)),
            load_1m: procstat::load_avg_1m(),
            ..Usage::default()
        };
        if let (Some(url), Some(before)) = (&metrics_url, scrape0) {
            match (before, scrape::fetch(url).await) {
                (Ok(b), Ok(a)) => usage.server_metrics = Some(ServerMetrics::between(&b, &a)),
                (Err(e), _) | (_, Err(e)) => usage.metrics_error = Some(e.to_string()),
            }
        }
        usage
    })
}

/// CPU microseconds per operation: `cpu_s` over `ops` (none without ops).
pub fn cpu_us_per_op(cpu_s: Option<f64>, ops: u64) -> Option<f64> {
    cpu_s.filter(|_| ops > 0).map(|s| s * 1e6 / ops as f64)
}

/// Builds a row from a merged tally.
pub fn row(
    running: &Running,
    workload: &str,
    clients: usize,
    window: &Window,
    mut tally: Tally,
    usage: Usage,
    payload: usize,
) -> Row {
    let secs = window.length().as_secs_f64().max(1e-9);
    let mut extra = BTreeMap::new();
    for (k, v) in &tally.counters {
        extra.insert((*k).to_string(), *v as f64);
    }
    // Reads move many events per call: CPU per event says more there.
    if workload.starts_with("read") || workload.starts_with("catch-up") {
        for (name, cpu_s) in [
            ("srv_us_per_event", usage.server_cpu_s),
            ("cli_us_per_event", usage.client_cpu_s),
        ] {
            if let Some(v) = cpu_us_per_op(cpu_s, tally.events) {
                extra.insert(name.to_string(), v);
            }
        }
    }
    let mut notes = usage.metrics_error.unwrap_or_default();
    if tally.ops == 0 && tally.events == 0 {
        let nothing = match window.wasted_overtime() {
            Some(o) => format!(
                "nothing measured: no operation completed inside the window, nor in {:.1} s \
                 of overtime",
                o.as_secs_f64()
            ),
            None => "nothing measured".to_owned(),
        };
        notes = if notes.is_empty() {
            nothing
        } else {
            format!("{nothing}; {notes}")
        };
    }
    Row {
        system: running.kind.name().to_owned(),
        workload: workload.to_owned(),
        clients,
        ops_per_s: tally.ops as f64 / secs,
        events_per_s: tally.events as f64 / secs,
        mib_per_s: tally.events as f64 * payload as f64 / secs / (1 << 20) as f64,
        latency: Latency::from_nanos(&mut tally.latencies),
        server_cpu_pct: usage.server_cpu,
        server_cpu_us_per_op: cpu_us_per_op(usage.server_cpu_s, tally.ops),
        server_peak_rss_mib: usage.server_rss,
        client_cpu_pct: usage.client_cpu,
        client_cpu_us_per_op: cpu_us_per_op(usage.client_cpu_s, tally.ops),
        load_avg_1m: usage.load_1m,
        server_metrics: usage.server_metrics,
        seconds: secs,
        extra,
        notes,
        ..Row::default()
    }
}

/// Runs one cell of a server workload (everything but recovery and probe-disk).
pub async fn run_cell(
    ctx: &Ctx,
    running: &Running,
    read_set: Option<&ReadSet>,
    workload: Workload,
    clients: usize,
) -> Result<Row> {
    if let Some(why) = running.kind.lacks(workload) {
        return Ok(Row {
            system: running.kind.name().to_owned(),
            workload: workload.name().to_owned(),
            clients,
            notes: format!("n/a: {why}"),
            ..Row::default()
        });
    }
    match workload {
        Workload::Ping => ping::run(ctx, running, clients).await,
        Workload::Append => append::run(ctx, running, clients, 1, Workload::Append).await,
        Workload::AppendBatch => {
            append::run(
                ctx,
                running,
                clients,
                ctx.options.batch_size,
                Workload::AppendBatch,
            )
            .await
        }
        Workload::AppendPipelined => append::run_pipelined(ctx, running, clients).await,
        Workload::MultiAppend => multi_append::run(ctx, running, clients).await,
        Workload::Contended => contended::run(ctx, running, clients).await,
        Workload::Subscribe => subscribe::run(ctx, running, clients).await,
        Workload::Persistent => persistent::run(ctx, running, clients).await,
        Workload::ReadAll => read_all::run(ctx, running, read_set, clients, false).await,
        Workload::ReadAllCold => read_all::run(ctx, running, read_set, clients, true).await,
        Workload::ReadStream => read_stream::run(ctx, running, read_set, clients).await,
        Workload::CatchUp => catch_up::run(ctx, running, read_set, clients, false).await,
        Workload::CatchUpCold => catch_up::run(ctx, running, read_set, clients, true).await,
        Workload::Recovery | Workload::ProbeDisk => Err(crate::error::BenchError::Config(format!(
            "{} is not a per-client workload",
            workload.name()
        ))),
    }
}

/// Starts one task per client, each appending 1 stamped event per call
/// to its own stream `<prefix>-w<i>` while `window` runs; each tally counts
/// the appends inside the window and their latencies (`other_latencies`).
pub fn stamped_writers(
    clients: Vec<crate::target::Client>,
    window: &Arc<Window>,
    prefix: &str,
    payload: usize,
) -> Vec<tokio::task::JoinHandle<Result<Tally>>> {
    use crate::target::{AppendResult, Expect};
    clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let window = window.clone();
            let stream = format!("{prefix}-w{i}");
            tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut expect = Expect::NEW;
                while window.running() {
                    let began = Instant::now();
                    match client.append(&stream, expect, 1, payload).await? {
                        AppendResult::Ok(next) => expect = next,
                        AppendResult::Conflict(now) => {
                            return Err(crate::error::BenchError::server(
                                "driver",
                                format!("unexpected conflict on {stream}: stream at {now:?}"),
                            ))
                        }
                    }
                    let done = Instant::now();
                    if window.counts(began, done) {
                        tally.ops += 1;
                        tally.events += 1;
                        tally
                            .other_latencies
                            .push(done.duration_since(began).as_nanos() as u64);
                    }
                }
                Ok(tally)
            })
        })
        .collect()
}

/// Ends a cell: waits for its clients' tallies and its usage watch, and
/// builds the row.
pub async fn finish(
    running: &Running,
    workload: Workload,
    clients: usize,
    window: &Window,
    handles: Vec<tokio::task::JoinHandle<Result<Tally>>>,
    usage: tokio::task::JoinHandle<Usage>,
    payload: usize,
) -> Result<Row> {
    let tally = gather(handles).await?;
    let usage = usage.await?;
    Ok(row(
        running,
        workload.name(),
        clients,
        window,
        tally,
        usage,
        payload,
    ))
}

/// Waits for every worker and merges their tallies.
pub async fn gather(handles: Vec<tokio::task::JoinHandle<Result<Tally>>>) -> Result<Tally> {
    let mut total = Tally::default();
    let mut first_error = None;
    for h in handles {
        match h.await? {
            Ok(t) => total.merge(t),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(total),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_that_measured_nothing_closes_at_its_first_measurement() {
        let w = Window::new(Duration::ZERO, Duration::from_millis(20), None);
        let began = w.start();
        let late = w.deadline() + Duration::from_millis(5);
        // Past the deadline with nothing measured: still open.
        std::thread::sleep(Duration::from_millis(30));
        assert!(w.running());
        assert!(w.deadline() > late);
        // The first operation to complete counts and closes the window there.
        assert!(w.counts(began, late));
        assert!(!w.running());
        assert!(!w.counts(began, late + Duration::from_millis(1)));
        assert!(!w.measuring(late));
        assert_eq!(w.length(), late - began);
    }

    #[test]
    fn a_window_that_measured_something_closes_at_its_deadline() {
        let w = Window::new(Duration::ZERO, Duration::from_millis(20), None);
        let began = w.start();
        assert!(w.counts(began, began + Duration::from_millis(1)));
        std::thread::sleep(Duration::from_millis(30));
        assert!(!w.running());
        let late = began + Duration::from_millis(25);
        assert!(!w.counts(began, late));
        assert_eq!(w.length(), Duration::from_millis(20));
        // An operation straddling the start never counts, even in overtime.
        let w = Window::new(Duration::from_millis(5), Duration::from_millis(5), None);
        let before = Instant::now();
        assert!(!w.counts(before, w.deadline() + Duration::from_millis(1)));
        assert!(w.wasted_overtime().is_some());
    }
}
