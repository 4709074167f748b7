//! Result rows: the table on stdout, the Strata/peer ratios and the
//! KurrentDB layer's ratio to native Strata (with its summary), the JSON
//! file.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::error::{BenchError, Result};
use crate::scrape::ServerMetrics;
use crate::stats::Latency;

/// One measured cell: a system, a workload, a client count.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    /// "strata", "strata-kurrentdb", "postgres", "umadb", or "disk" for
    /// probe-disk.
    pub system: String,
    /// Workload name (probe-disk and recovery rows name their variant).
    pub workload: String,
    /// Concurrent clients (writers, readers or subscribers).
    pub clients: usize,
    /// Completed operations (calls, reads, syncs) per second.
    pub ops_per_s: f64,
    /// Events per second (written, read or delivered).
    pub events_per_s: f64,
    /// Payload MiB per second (events × payload size; bytes for probe-disk).
    pub mib_per_s: f64,
    /// Latency of one operation (see the workload's notes for what that is).
    pub latency: Latency,
    /// Server CPU over the measured window, percent of one core.
    pub server_cpu_pct: Option<f64>,
    /// Server CPU seconds over the window ÷ operations counted in it, µs.
    pub server_cpu_us_per_op: Option<f64>,
    /// Server peak RSS over the measured window, MiB.
    pub server_peak_rss_mib: Option<f64>,
    /// The driver's own CPU over the window (this process alone, without
    /// the server it spawned), percent of one core.
    pub client_cpu_pct: Option<f64>,
    /// Driver CPU seconds over the window ÷ operations counted in it, µs.
    pub client_cpu_us_per_op: Option<f64>,
    /// The machine's 1-minute load average at the end of the cell.
    pub load_avg_1m: Option<f64>,
    /// Deltas of Strata's `/metrics` across the window (Strata only, and
    /// not with `--url` unless `--metrics-url` is given).
    pub server_metrics: Option<ServerMetrics>,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Strata's events/s divided by this row's (peer rows only; calls/s
    /// for `ping`, whose calls carry no events).
    pub strata_ratio: Option<f64>,
    /// `strata-kurrentdb` rows only: this row's events/s divided by native
    /// Strata's in the same workload and client count of the same run
    /// (1.0 = the layer costs nothing; 0.8 = it costs 20% of the events/s).
    pub kurrentdb_vs_strata: Option<f64>,
    /// Strata `append-pipelined` rows only: their events/s divided by
    /// PostgreSQL's best at the same writer count, the larger of its
    /// `append` and `append-pipelined`.
    pub strata_vs_pg_best: Option<f64>,
    /// Workload-specific figures (conflicts, append latency, …).
    pub extra: BTreeMap<String, f64>,
    /// Free-text remarks (errors, caveats).
    pub notes: String,
}

impl Row {
    /// Whether the cell measured anything: it neither failed nor is
    /// `n/a` for its system.
    pub fn measured(&self) -> bool {
        !self.notes.starts_with("FAILED") && !self.notes.starts_with("n/a")
    }
}

/// The system name of Strata driven through its KurrentDB layer.
const KURRENTDB: &str = "strata-kurrentdb";

/// Fills `strata_ratio` of every peer row from the Strata row of the same
/// workload and client count, `kurrentdb_vs_strata` of every
/// `strata-kurrentdb` row from the same, and `strata_vs_pg_best` of
/// Strata's `append-pipelined` rows.
pub fn fill_ratios(rows: &mut [Row]) {
    let strata: BTreeMap<(String, usize), f64> = rows
        .iter()
        .filter(|r| r.system == "strata")
        .map(|r| ((r.workload.clone(), r.clients), compared(r)))
        .collect();
    let pg_best = postgres_best_append(rows);
    for r in rows.iter_mut() {
        if r.system == "strata" {
            if r.workload == "append-pipelined" {
                r.strata_vs_pg_best = pg_best
                    .get(&r.clients)
                    .filter(|best| **best > 0.0)
                    .map(|best| r.events_per_s / best);
            }
            continue;
        }
        if r.system == "disk" {
            continue;
        }
        if r.system == KURRENTDB {
            r.kurrentdb_vs_strata = strata
                .get(&(r.workload.clone(), r.clients))
                .filter(|s| **s > 0.0 && compared(r) > 0.0)
                .map(|s| compared(r) / s);
            continue;
        }
        if let Some(s) = strata.get(&(r.workload.clone(), r.clients)) {
            if compared(r) > 0.0 {
                r.strata_ratio = Some(s / compared(r));
            }
        }
    }
}

/// One row per (system, workload, clients) out of `rounds` rounds of
/// them, in the order first measured: the round whose rate (what ratios
/// compare) is the median, the lower middle one when even, so that every
/// figure of a row comes from one measured window. Its notes give the
/// spread and any rounds that failed. With one round, the rows as they are.
pub fn median_rounds(rows: Vec<Row>, rounds: usize) -> Vec<Row> {
    if rounds <= 1 {
        return rows;
    }
    let mut cells: Vec<Vec<Row>> = Vec::new();
    for r in rows {
        match cells.iter_mut().find(|c| {
            c[0].system == r.system && c[0].workload == r.workload && c[0].clients == r.clients
        }) {
            Some(cell) => cell.push(r),
            None => cells.push(vec![r]),
        }
    }
    cells.into_iter().map(median_row).collect()
}

fn median_row(cell: Vec<Row>) -> Row {
    let measured = cell.len();
    let (mut ok, bad): (Vec<Row>, Vec<Row>) = cell.into_iter().partition(Row::measured);
    if ok.is_empty() {
        // Every round failed or does not apply: say so once.
        return bad.into_iter().next().unwrap_or_default();
    }
    ok.sort_by(|a, b| compared(a).total_cmp(&compared(b)));
    let (low, high) = (compared(&ok[0]), compared(&ok[ok.len() - 1]));
    let rounds = ok.len();
    let mut row = ok.swap_remove((rounds - 1) / 2);
    let mut notes = format!(
        "median of {rounds} rounds ({} {}–{})",
        compared_unit(&row),
        human(low),
        human(high)
    );
    if let Some(failure) = bad.first() {
        notes.push_str(&format!(
            "; {} of {measured} rounds {}",
            bad.len(),
            failure.notes
        ));
    }
    if !row.notes.is_empty() {
        notes = format!("{notes}; {}", row.notes);
    }
    row.notes = notes;
    row
}

/// What a ratio compares: events/s, or calls/s where calls carry no
/// events (`ping`).
fn compared(r: &Row) -> f64 {
    if counts_calls(r) {
        r.ops_per_s
    } else {
        r.events_per_s
    }
}

/// The unit of [`compared`].
fn compared_unit(r: &Row) -> &'static str {
    if counts_calls(r) {
        "calls/s"
    } else {
        "events/s"
    }
}

fn counts_calls(r: &Row) -> bool {
    r.workload == "ping"
}

/// PostgreSQL's best events/s per writer count over `append` and
/// `append-pipelined`.
fn postgres_best_append(rows: &[Row]) -> BTreeMap<usize, f64> {
    let mut best: BTreeMap<usize, f64> = BTreeMap::new();
    for r in rows.iter().filter(|r| {
        r.system == "postgres" && matches!(r.workload.as_str(), "append" | "append-pipelined")
    }) {
        let b = best.entry(r.clients).or_default();
        *b = b.max(r.events_per_s);
    }
    best
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if v >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A ratio as `1.23×`, `-` when absent.
fn ratio(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.2}×"))
}

/// Microseconds, as `ms` formats, `-` when absent.
fn us(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), ms)
}

/// Milliseconds, `-` when absent.
fn ms_opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), ms)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

/// The header and one line per row, aligned.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "system",
        "workload",
        "clients",
        "ops/s",
        "events/s",
        "MiB/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "srv CPU%",
        "srv µs/op",
        "srv RSS MiB",
        "cli CPU%",
        "cli µs/op",
        "load1",
        "app/batch",
        "ev/batch",
        "fsync ms",
        "srv app ms",
        "srv p50",
        "srv p99",
        "strata÷peer",
        "÷pg best",
        "÷strata",
        "notes",
    ];
    let mut lines: Vec<Vec<String>> = vec![header.iter().map(|h| h.to_string()).collect()];
    for r in rows {
        let lat = &r.latency;
        let m = r.server_metrics.as_ref();
        let has_lat = lat.samples > 0;
        let l = |v: f64| if has_lat { ms(v) } else { "-".into() };
        let mut notes = r.notes.clone();
        for (k, v) in &r.extra {
            if !notes.is_empty() {
                notes.push_str(", ");
            }
            let _ = write!(
                notes,
                "{k}={}",
                if v.fract() == 0.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.3}")
                }
            );
        }
        lines.push(vec![
            r.system.clone(),
            r.workload.clone(),
            r.clients.to_string(),
            human(r.ops_per_s),
            human(r.events_per_s),
            format!("{:.1}", r.mib_per_s),
            l(lat.p50_ms),
            l(lat.p95_ms),
            l(lat.p99_ms),
            l(lat.max_ms),
            opt(r.server_cpu_pct, 0),
            us(r.server_cpu_us_per_op),
            opt(r.server_peak_rss_mib, 0),
            opt(r.client_cpu_pct, 0),
            us(r.client_cpu_us_per_op),
            opt(r.load_avg_1m, 2),
            opt(m.and_then(|m| m.appends_per_batch), 1),
            opt(m.and_then(|m| m.events_per_batch), 1),
            ms_opt(m.and_then(|m| m.fsync_ms)),
            ms_opt(m.and_then(|m| m.append_ms)),
            ms_opt(m.and_then(|m| m.append_p50_ms)),
            ms_opt(m.and_then(|m| m.append_p99_ms)),
            ratio(r.strata_ratio),
            ratio(r.strata_vs_pg_best),
            ratio(r.kurrentdb_vs_strata),
            notes,
        ]);
    }
    let cols = header.len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            lines
                .iter()
                .map(|l| l[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        for (c, cell) in line.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c == cols - 1 {
                out.push_str(cell);
            } else if c <= 1 {
                let _ = write!(out, "{cell}{}  ", " ".repeat(pad));
            } else {
                let _ = write!(out, "{}{cell}  ", " ".repeat(pad));
            }
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (cols - 1)));
            out.push('\n');
        }
    }
    out
}

/// The summary of the KurrentDB layer's cost, printed under the table: one
/// line per workload with `strata-kurrentdb` rows, each client count's
/// events/s ratio to native Strata and the events/s it loses (or gains).
/// Empty when the run has no such row. It reports; it asserts nothing.
pub fn summary(rows: &[Row]) -> String {
    let mut per_workload: Vec<(&str, Vec<String>)> = Vec::new();
    for r in rows.iter().filter(|r| r.system == KURRENTDB) {
        let cell = if r.notes.starts_with("n/a") {
            continue;
        } else if r.notes.starts_with("FAILED") {
            format!("{} failed", clients(r.clients))
        } else {
            match r.kurrentdb_vs_strata {
                Some(x) => {
                    let cost = (1.0 - x) * 100.0;
                    let what = if cost >= 0.0 {
                        format!("costs {cost:.0}%")
                    } else {
                        format!("gains {:.0}%", -cost)
                    };
                    format!("{} {x:.2}× ({what})", clients(r.clients))
                }
                None => format!("{} - (no native row to compare)", clients(r.clients)),
            }
        };
        match per_workload.iter_mut().find(|(w, _)| *w == r.workload) {
            Some((_, cells)) => cells.push(cell),
            None => per_workload.push((&r.workload, vec![cell])),
        }
    }
    if per_workload.is_empty() {
        return String::new();
    }
    let mut out = String::from(
        "\nKurrentDB layer cost (strata-kurrentdb events/s ÷ strata's, same workload, \
         clients and run; the issue's target is a cost of at most 20%, ÷strata ≥ 0.80×):\n",
    );
    for (workload, cells) in per_workload {
        let _ = writeln!(out, "  {workload}: {}", cells.join(", "));
    }
    out
}

/// "1 client", "16 clients".
fn clients(n: usize) -> String {
    if n == 1 {
        "1 client".into()
    } else {
        format!("{n} clients")
    }
}

/// The JSON document of a run.
#[derive(Serialize)]
pub struct RunReport<'a, O: Serialize> {
    /// Seconds since the Unix epoch when the run started.
    pub started_unix: u64,
    /// The command line.
    pub command: Vec<String>,
    /// The parsed options.
    pub options: &'a O,
    /// Every row, ratios filled.
    pub rows: &'a [Row],
}

/// Writes `report` to `<dir>/strata-bench-<started>.json`; returns the path.
pub fn write_json<O: Serialize>(dir: &Path, report: &RunReport<'_, O>) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .map_err(|e| BenchError::io("creating the results directory", dir, e))?;
    let path = dir.join(format!("strata-bench-{}.json", report.started_unix));
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(&path, text).map_err(|e| BenchError::io("writing results", &path, e))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(system: &str, events: f64) -> Row {
        Row {
            system: system.into(),
            workload: "append".into(),
            clients: 16,
            events_per_s: events,
            ..Row::default()
        }
    }

    #[test]
    fn ratios_compare_like_with_like() {
        let mut rows = vec![
            row("strata", 30_000.0),
            row("postgres", 10_000.0),
            row("umadb", 0.0),
        ];
        rows[2].clients = 1;
        fill_ratios(&mut rows);
        assert_eq!(rows[0].strata_ratio, None);
        assert_eq!(rows[1].strata_ratio, Some(3.0));
        assert_eq!(rows[2].strata_ratio, None);
        let t = table(&rows);
        assert!(t.contains("3.00×"), "{t}");
        assert_eq!(t.lines().count(), 5);
    }

    #[test]
    fn rounds_keep_the_median_round_of_each_cell() {
        let mut measured = Vec::new();
        for (strata, pg) in [(300.0, 90.0), (100.0, 110.0), (200.0, 100.0)] {
            let mut s = row("strata", strata);
            s.latency.p50_ms = strata / 100.0;
            measured.push(s);
            measured.push(row("postgres", pg));
        }
        let mut rows = median_rounds(measured, 3);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].system, "strata");
        assert_eq!(rows[0].events_per_s, 200.0);
        // Every figure of the row is the median round's own.
        assert_eq!(rows[0].latency.p50_ms, 2.0);
        assert!(rows[0]
            .notes
            .starts_with("median of 3 rounds (events/s 100–300)"));
        assert_eq!(rows[1].events_per_s, 100.0);
        fill_ratios(&mut rows);
        assert_eq!(rows[1].strata_ratio, Some(2.0));
    }

    #[test]
    fn an_even_number_of_rounds_keeps_the_lower_middle_one() {
        let measured = [40.0, 10.0, 30.0, 20.0].map(|e| row("strata", e)).to_vec();
        let rows = median_rounds(measured, 4);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].events_per_s, 20.0);
    }

    #[test]
    fn failed_rounds_are_counted_and_never_the_median() {
        let failed = |why: &str| Row {
            notes: format!("FAILED: {why}"),
            ..row("strata", 0.0)
        };
        let measured = vec![failed("timeout"), row("strata", 50.0), row("strata", 70.0)];
        let rows = median_rounds(measured, 3);
        assert_eq!(rows[0].events_per_s, 50.0);
        assert!(
            rows[0].notes.contains("1 of 3 rounds FAILED: timeout"),
            "{}",
            rows[0].notes
        );
        let rows = median_rounds(vec![failed("a"), failed("b")], 2);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].notes, "FAILED: a");
    }

    #[test]
    fn one_round_leaves_the_rows_as_measured() {
        let measured = vec![row("strata", 1.0), row("strata", 2.0)];
        let rows = median_rounds(measured, 1);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.notes.is_empty()));
    }

    #[test]
    fn ping_compares_calls() {
        let mut rows = vec![row("strata", 0.0), row("postgres", 0.0)];
        for (r, calls) in rows.iter_mut().zip([8_000.0, 20_000.0]) {
            r.workload = "ping".into();
            r.ops_per_s = calls;
        }
        fill_ratios(&mut rows);
        assert_eq!(rows[1].strata_ratio, Some(0.4));
    }

    #[test]
    fn pipelined_compares_with_postgres_best() {
        let mut rows = vec![
            row("strata", 40_000.0),
            row("postgres", 8_000.0),
            row("postgres", 10_000.0),
            row("postgres", 5_000.0),
        ];
        rows[0].workload = "append-pipelined".into();
        rows[1].workload = "append-pipelined".into();
        rows[3].clients = 1; // another writer count: ignored
        fill_ratios(&mut rows);
        assert_eq!(rows[0].strata_vs_pg_best, Some(4.0));
        assert_eq!(rows[1].strata_ratio, Some(5.0));
        assert_eq!(rows[2].strata_ratio, None); // no strata append row
        assert_eq!(rows[1].strata_vs_pg_best, None);
    }

    #[test]
    fn the_kurrentdb_layer_compares_with_native_strata() {
        let mut rows = vec![
            row("strata", 10_000.0),
            row("strata-kurrentdb", 8_500.0),
            row("strata-kurrentdb", 4_000.0),
            row("strata-kurrentdb", 0.0),
        ];
        rows[2].clients = 1; // no native row with 1 client
        rows[3].workload = "multi-append".into();
        rows[3].notes = "n/a: no such thing".into();
        fill_ratios(&mut rows);
        assert_eq!(rows[1].kurrentdb_vs_strata, Some(0.85));
        assert_eq!(rows[1].strata_ratio, None, "not a peer");
        assert_eq!(rows[2].kurrentdb_vs_strata, None);
        assert_eq!(rows[0].kurrentdb_vs_strata, None);
        let t = table(&rows);
        assert!(t.contains("÷strata") && t.contains("0.85×"), "{t}");
        let s = summary(&rows);
        assert!(
            s.contains("append: 16 clients 0.85× (costs 15%), 1 client - (no native row"),
            "{s}"
        );
        assert!(!s.contains("multi-append"), "n/a rows are left out: {s}");
        assert_eq!(summary(&rows[..1]), "");
    }
}
