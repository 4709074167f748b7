//! Command-line options of `strata-bench`, validated before anything starts.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::clock::secs;
use crate::error::{BenchError, Result};

/// A workload the driver can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Each client makes calls that touch no storage (gRPC health Check; PostgreSQL `SELECT 1`).
    Ping,
    /// Each writer appends 1 event per call to its own stream (exact expected version).
    Append,
    /// As append, but the writers share PipelinedAppend calls (one per --clients-per-connection).
    AppendPipelined,
    /// Each writer appends `--batch-size` events per call to its own stream.
    AppendBatch,
    /// Each writer appends 1 event to each of `--multi-streams` own streams in one atomic call.
    MultiAppend,
    /// Writers share `--hot-streams` streams with expected versions; conflicts are retried.
    Contended,
    /// Readers read `--read-count` events of $all forwards from a random position.
    ReadAll,
    /// As read-all, with the page cache dropped before each call (needs root).
    ReadAllCold,
    /// Readers read whole streams of `--stream-lengths` events, chosen at random.
    ReadStream,
    /// Live $all subscribers while `--subscribe-writers` writers append; append→delivery latency.
    Subscribe,
    /// Subscribers catch up on $all from the start over `--events` stored events.
    CatchUp,
    /// As catch-up, with the page cache dropped before each catch-up (needs root).
    CatchUpCold,
    /// K consumers of one consumer group ack after `--handler-us` while writers append (Strata only).
    Persistent,
    /// Time from process start to serving with `--recovery-events` stored (Strata only).
    Recovery,
    /// This machine's fdatasync rate and sequential write bandwidth (no server).
    ProbeDisk,
}

impl Workload {
    /// Every workload, in the order a full run takes them.
    pub const ALL: [Workload; 15] = [
        Workload::ProbeDisk,
        Workload::Ping,
        Workload::Append,
        Workload::AppendPipelined,
        Workload::AppendBatch,
        Workload::MultiAppend,
        Workload::Contended,
        Workload::Subscribe,
        Workload::ReadAll,
        Workload::ReadAllCold,
        Workload::ReadStream,
        Workload::CatchUp,
        Workload::CatchUpCold,
        Workload::Persistent,
        Workload::Recovery,
    ];

    /// The name used on the command line and in results.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Ping => "ping",
            Workload::Append => "append",
            Workload::AppendPipelined => "append-pipelined",
            Workload::AppendBatch => "append-batch",
            Workload::MultiAppend => "multi-append",
            Workload::Contended => "contended",
            Workload::ReadAll => "read-all",
            Workload::ReadAllCold => "read-all-cold",
            Workload::ReadStream => "read-stream",
            Workload::Subscribe => "subscribe",
            Workload::CatchUp => "catch-up",
            Workload::CatchUpCold => "catch-up-cold",
            Workload::Persistent => "persistent",
            Workload::Recovery => "recovery",
            Workload::ProbeDisk => "probe-disk",
        }
    }

    /// Whether the workload drops the page cache before each call.
    pub fn is_cold(self) -> bool {
        matches!(self, Workload::ReadAllCold | Workload::CatchUpCold)
    }

    /// Whether the workload needs `--events` stored events first.
    pub fn needs_preload(self) -> bool {
        matches!(
            self,
            Workload::ReadAll
                | Workload::ReadAllCold
                | Workload::ReadStream
                | Workload::CatchUp
                | Workload::CatchUpCold
        )
    }
}

/// A system under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SystemKind {
    /// Strata (spawned from `--strata-bin`, or `--url`).
    Strata,
    /// The same Strata, launched alike, driven through its KurrentDB layer
    /// (`event_store.client.streams`) instead of `strata.v1`.
    StrataKurrentdb,
    /// PostgreSQL, started by `<peers-dir>/postgres.sh` (needs feature `peers`).
    Postgres,
    /// UmaDB, started by `<peers-dir>/umadb.sh` (needs feature `peers`).
    Umadb,
}

impl SystemKind {
    /// The name used in tables and results.
    pub fn name(self) -> &'static str {
        match self {
            SystemKind::Strata => "strata",
            SystemKind::StrataKurrentdb => "strata-kurrentdb",
            SystemKind::Postgres => "postgres",
            SystemKind::Umadb => "umadb",
        }
    }

    /// Whether this is a Strata server (native or through its KurrentDB
    /// layer): spawned from `--strata-bin`, or reached at `--url`.
    pub fn is_strata(self) -> bool {
        matches!(self, SystemKind::Strata | SystemKind::StrataKurrentdb)
    }

    /// Why this system cannot run `workload`, when it cannot: its cells are
    /// then rows saying `n/a: <why>`, with nothing measured. (The peers'
    /// own gaps, append-pipelined on UmaDB and persistent, are answered by
    /// those workloads themselves.)
    pub fn lacks(self, workload: Workload) -> Option<&'static str> {
        match (self, workload) {
            (SystemKind::StrataKurrentdb, Workload::AppendPipelined) => Some(
                "KurrentDB's Append is one call per append; its pipelined \
                 counterpart (BatchAppend) is not driven here",
            ),
            (SystemKind::StrataKurrentdb, Workload::Ping) => Some(
                "the health Check is the server's, whichever protocol a client speaks: \
                 see strata's row",
            ),
            (SystemKind::StrataKurrentdb, Workload::MultiAppend) => {
                Some("KurrentDB's protocol has no atomic multi-stream append")
            }
            (SystemKind::StrataKurrentdb, Workload::Persistent) => {
                Some("persistent subscriptions are not driven through the KurrentDB layer")
            }
            _ => None,
        }
    }
}

/// Durability passed to a spawned Strata (`--durability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Durability {
    /// fdatasync before acknowledging (Strata's default; the peers' default too).
    Always,
    /// No fdatasync (Strata's benchmark-only mode); not comparable with the peers.
    UnsafeNoSync,
}

impl Durability {
    /// The value of Strata's `--durability` flag.
    pub fn flag(self) -> &'static str {
        match self {
            Durability::Always => "always",
            Durability::UnsafeNoSync => "unsafe-no-sync",
        }
    }
}

/// Load driver for Strata, with PostgreSQL and UmaDB as peers on the same workloads.
///
/// Starts each system itself on a temporary data directory and free loopback
/// ports (or targets a running Strata with --url), runs every (workload,
/// clients) cell for a warm-up plus a fixed duration (or --max-ops), prints a
/// table and writes JSON under --results-dir.
#[derive(Clone, Debug, Parser, serde::Serialize)]
#[command(name = "strata-bench", version)]
pub struct Options {
    /// Workloads to run (default: all), in the order given.
    #[arg(value_enum)]
    pub workloads: Vec<Workload>,

    /// Workloads to run, as a comma-separated list (added to the positional ones).
    #[arg(long = "workload", value_enum, value_delimiter = ',')]
    pub workload_list: Vec<Workload>,

    /// Systems to run, comma-separated; strata-kurrentdb is the same Strata
    /// driven through its KurrentDB layer; postgres and umadb need the `peers`
    /// feature.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "strata")]
    pub systems: Vec<SystemKind>,

    /// Concurrent clients per cell (writers, readers or subscribers), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,256")]
    pub clients: Vec<usize>,

    /// Measured seconds per cell.
    #[arg(long, default_value_t = 5.0)]
    pub duration: f64,

    /// Warm-up seconds before each measured window (not counted).
    #[arg(long, default_value_t = 1.0)]
    pub warmup: f64,

    /// End a cell's measured window after this many operations, if sooner than --duration.
    #[arg(long)]
    pub max_ops: Option<u64>,

    /// Bytes of data per event.
    #[arg(long, default_value_t = 256)]
    pub payload: usize,

    /// Events per call in append-batch.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,

    /// Streams of its own each multi-append writer writes (1 event each) per call.
    #[arg(long, default_value_t = 4)]
    pub multi_streams: usize,

    /// Streams shared by the writers of the contended workload.
    #[arg(long, default_value_t = 4)]
    pub hot_streams: usize,

    /// Events stored before read-all, read-stream and catch-up (filled up if fewer).
    #[arg(long, default_value_t = 1_000_000)]
    pub events: u64,

    /// Events read by one read-all call.
    #[arg(long, default_value_t = 100_000)]
    pub read_count: u64,

    /// Lengths of the streams read by read-stream, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,10,100,1000")]
    pub stream_lengths: Vec<u64>,

    /// Streams of each length for read-stream.
    #[arg(long, default_value_t = 20)]
    pub streams_per_length: usize,

    /// Writers appending (1 event per call, own stream) during the subscribe
    /// and persistent workloads.
    #[arg(long, default_value_t = 4)]
    pub subscribe_writers: usize,

    /// Simulated handler time per event of a persistent consumer, microseconds.
    #[arg(long, default_value_t = 1000)]
    pub handler_us: u64,

    /// Unacknowledged events a persistent consumer holds at most.
    #[arg(long, default_value_t = 10)]
    pub group_buffer: u32,

    /// Events stored before measuring recovery.
    #[arg(long, default_value_t = 1_000_000)]
    pub recovery_events: u64,

    /// Restarts measured with the index present.
    #[arg(long, default_value_t = 3)]
    pub recovery_runs: usize,

    /// Restarts measured with the index deleted (a full rebuild; slow).
    #[arg(long, default_value_t = 1)]
    pub recovery_rebuild_runs: usize,

    /// Clients sharing one HTTP/2 connection (Strata and UmaDB); PostgreSQL uses one per client.
    #[arg(long, default_value_t = 16)]
    pub clients_per_connection: usize,

    /// A running Strata to target instead of spawning one (loopback only, e.g. http://127.0.0.1:2113).
    #[arg(long)]
    pub url: Option<String>,

    /// Prometheus endpoint of the --url server (loopback only, e.g.
    /// http://127.0.0.1:2114/metrics), scraped around each window; a spawned
    /// Strata's is found by itself.
    #[arg(long)]
    pub metrics_url: Option<String>,

    /// The `strata` binary (default: next to this binary, then target/release/strata).
    #[arg(long)]
    pub strata_bin: Option<PathBuf>,

    /// A spawned Strata serves TLS (a CA and certificate made with openssl
    /// in the work directory) with authentication on; its clients connect
    /// over TLS as the admin with Basic credentials. Peers are unchanged.
    #[arg(long)]
    pub tls: bool,

    /// Durability of a spawned Strata.
    #[arg(long, value_enum, default_value_t = Durability::Always)]
    pub durability: Durability,

    /// Runs every system through every cell this many times, the systems
    /// in a rotated order each round, each on fresh data; a row is then the
    /// round with the median rate (the lower middle one when even), and
    /// ratios compare those rows. probe-disk and recovery run once.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,

    /// Where temporary data directories go (default: the system temp dir).
    #[arg(long)]
    pub work_dir: Option<PathBuf>,

    /// Where the JSON results go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub results_dir: PathBuf,

    /// Do not write JSON results.
    #[arg(long)]
    pub no_json: bool,

    /// Directory holding postgres.sh and umadb.sh.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/peers"))]
    pub peers_dir: PathBuf,

    /// Where UmaDB's Python venv is kept between runs (its database is recreated each run).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../target/bench-peers/umadb"))]
    pub umadb_dir: PathBuf,

    /// PostgreSQL subscription poll interval when a poll returns nothing, in milliseconds.
    #[arg(long, default_value_t = 1)]
    pub pg_poll_ms: u64,
}

impl Options {
    /// The workloads to run, deduplicated, in order (all when none is named).
    pub fn selected_workloads(&self) -> Vec<Workload> {
        let mut out: Vec<Workload> = Vec::new();
        for w in self.workloads.iter().chain(&self.workload_list) {
            if !out.contains(w) {
                out.push(*w);
            }
        }
        if out.is_empty() {
            out = Workload::ALL.to_vec();
        }
        out
    }

    /// Measured window per cell.
    pub fn duration(&self) -> Duration {
        secs(self.duration).unwrap_or_default()
    }

    /// Warm-up per cell.
    pub fn warmup(&self) -> Duration {
        secs(self.warmup).unwrap_or_default()
    }

    /// Checks the options before anything starts.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BenchError::Config(m));
        if secs(self.duration).is_none_or(|d| d.is_zero()) {
            return bad(format!("--duration {} must be positive", self.duration));
        }
        if secs(self.warmup).is_none() {
            return bad(format!("--warmup {} must be zero or positive", self.warmup));
        }
        if self.clients.is_empty() || self.clients.contains(&0) {
            return bad("--clients needs positive counts".into());
        }
        if self.payload < 8 {
            return bad(format!(
                "--payload {} is below 8 bytes (the send timestamp)",
                self.payload
            ));
        }
        if self.batch_size == 0
            || self.hot_streams == 0
            || self.clients_per_connection == 0
            || self.multi_streams == 0
        {
            return bad(
                "--batch-size, --hot-streams, --multi-streams and --clients-per-connection \
                 must be at least 1"
                    .into(),
            );
        }
        if self.read_count == 0 || self.events == 0 || self.recovery_events == 0 {
            return bad("--read-count, --events and --recovery-events must be at least 1".into());
        }
        if self.stream_lengths.is_empty()
            || self.stream_lengths.contains(&0)
            || self.streams_per_length == 0
        {
            return bad("--stream-lengths and --streams-per-length must be positive".into());
        }
        if self.subscribe_writers == 0
            || self.recovery_runs == 0
            || self.recovery_rebuild_runs == 0
            || self.rounds == 0
        {
            return bad(
                "--subscribe-writers, --recovery-runs, --recovery-rebuild-runs and --rounds \
                 must be at least 1"
                    .into(),
            );
        }
        if let Some(url) = &self.metrics_url {
            if self.url.is_none() {
                return bad(
                    "--metrics-url goes with --url (a spawned Strata's metrics are found by itself)"
                        .into(),
                );
            }
            check_loopback_flag("--metrics-url", url)?;
        }
        if let Some(url) = &self.url {
            check_loopback(url)?;
            if self.systems.iter().any(|s| !s.is_strata()) {
                return bad("--url targets Strata only; drop the peers from --systems".into());
            }
        }
        #[cfg(not(feature = "peers"))]
        if let Some(s) = self.systems.iter().find(|s| !s.is_strata()) {
            return bad(format!(
                "--systems {}: this build has no peers; rebuild with `--features peers`",
                s.name()
            ));
        }
        Ok(())
    }
}

/// Refuses a URL whose host is not a loopback address: the driver sends load
/// to this machine only.
pub fn check_loopback(url: &str) -> Result<()> {
    check_loopback_flag("--url", url)
}

/// [`check_loopback`] for the URL given to option `flag`.
pub fn check_loopback_flag(flag: &str, url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| BenchError::Config(format!("{flag} {url}: only http:// is supported")))?;
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.parse::<u16>().is_ok() => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) if host == "localhost" => (host, 0)
            .to_socket_addrs()
            .map(|mut a| a.all(|a| a.ip().is_loopback()))
            .unwrap_or(false),
        Err(_) => false,
    };
    if loopback {
        Ok(())
    } else {
        Err(BenchError::Config(format!(
            "{flag} {url}: not a loopback address; the driver only sends load to this machine"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        for ok in [
            "http://127.0.0.1:2113",
            "http://127.0.0.2:80/",
            "http://[::1]:2113",
            "http://localhost:2113",
        ] {
            check_loopback(ok).expect(ok);
        }
        for bad in [
            "http://10.0.0.1:2113",
            "http://example.com:2113",
            "https://127.0.0.1:1",
            "http://192.168.1.1",
        ] {
            assert!(check_loopback(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_validate_and_select_everything() {
        let o = Options::parse_from(["strata-bench"]);
        o.validate().expect("defaults are valid");
        assert_eq!(o.selected_workloads(), Workload::ALL.to_vec());
        assert_eq!(o.clients, vec![1, 16, 256]);
        let o = Options::parse_from([
            "strata-bench",
            "--metrics-url",
            "http://127.0.0.1:1/metrics",
        ]);
        assert!(o.validate().is_err(), "--metrics-url without --url");
        let o = Options::parse_from(["strata-bench", "append", "--workload", "read-all,append"]);
        assert_eq!(
            o.selected_workloads(),
            vec![Workload::Append, Workload::ReadAll]
        );
    }
}
