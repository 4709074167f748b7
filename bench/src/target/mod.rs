//! The systems under test behind one client type: Strata always (through
//! its native `strata.v1` and through its KurrentDB layer), and PostgreSQL
//! and UmaDB with the `peers` feature. Each system maps the same abstract
//! operations (append with an expected version, read `$all`, read a stream,
//! follow `$all`) onto its own API; `bench/README.md` says exactly how.

pub mod kurrentdb;
pub mod strata;

#[cfg(feature = "peers")]
pub mod postgres;
#[cfg(feature = "peers")]
pub mod umadb;

use std::path::Path;
#[cfg(feature = "peers")]
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cli::{Options, SystemKind};
use crate::error::Result;

/// What a writer knows of a stream's state: the expected version of its next
/// append. Strata and PostgreSQL use the revision, UmaDB the position of
/// the stream's last event. `Expect::NEW` means "the stream does not exist".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    /// Revision of the stream's last event.
    pub revision: Option<u64>,
    /// Global position of the stream's last event.
    pub position: Option<u64>,
}

impl Expect {
    /// The state of a stream that does not exist.
    pub const NEW: Expect = Expect {
        revision: None,
        position: None,
    };
}

/// Outcome of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppendResult {
    /// Written; the stream's new state.
    Ok(Expect),
    /// The expected version did not hold; the stream's current state.
    Conflict(Expect),
}

/// Outcome of a multi-stream append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultiResult {
    /// Everything written; each stream's new state, in request order.
    Ok(Vec<Expect>),
    /// Some expectation did not hold and nothing was written; which, as text.
    Conflict(String),
}

/// Where a `$all` subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowFrom {
    /// From the first event (catch-up, then live).
    Start,
    /// From the current head (live only).
    Now,
}

/// A client of one system. Clones share the underlying connection.
#[derive(Clone)]
pub enum Client {
    /// Strata over gRPC.
    Strata(strata::StrataClient),
    /// Strata over gRPC through its KurrentDB layer.
    Kurrentdb(kurrentdb::KurrentClient),
    /// PostgreSQL over its wire protocol.
    #[cfg(feature = "peers")]
    Postgres(Arc<postgres::PgClient>),
    /// UmaDB over gRPC.
    #[cfg(feature = "peers")]
    Umadb(Arc<umadb::UmaClient>),
}

impl Client {
    /// Appends `events` events of `payload` bytes to `stream`, expecting `expect`.
    pub async fn append(
        &self,
        stream: &str,
        expect: Expect,
        events: usize,
        payload: usize,
    ) -> Result<AppendResult> {
        match self {
            Client::Strata(c) => c.append(stream, expect, events, payload).await,
            Client::Kurrentdb(c) => c.append(stream, expect, events, payload).await,
            #[cfg(feature = "peers")]
            Client::Postgres(c) => c.append(stream, expect, events, payload).await,
            #[cfg(feature = "peers")]
            Client::Umadb(c) => c.append(stream, expect, events, payload).await,
        }
    }

    /// Appends 1 event of `payload` bytes to each of `streams` in one atomic
    /// operation, each stream expecting what `expects` says (same order).
    pub async fn multi_append(
        &self,
        streams: &[String],
        expects: &[Expect],
        payload: usize,
    ) -> Result<MultiResult> {
        match self {
            Client::Strata(c) => c.multi_append(streams, expects, payload).await,
            // Refused before a cell starts (`SystemKind::lacks`); never sent.
            Client::Kurrentdb(_) => Err(crate::error::BenchError::Config(
                "strata-kurrentdb: KurrentDB's protocol has no multi-stream append".into(),
            )),
            #[cfg(feature = "peers")]
            Client::Postgres(c) => c.multi_append(streams, expects, payload).await,
            #[cfg(feature = "peers")]
            Client::Umadb(c) => c.multi_append(streams, expects, payload).await,
        }
    }

    /// Reads up to `count` events of `$all` starting at the `from`-th event
    /// (0-based, whatever the system's own numbering); `progress` gets the
    /// size of each batch as it arrives. Returns the events read.
    pub async fn read_all(
        &self,
        from: u64,
        count: u64,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<u64> {
        match self {
            Client::Strata(c) => c.read_all(from, count, progress).await,
            Client::Kurrentdb(c) => c.read_all(from, count, progress).await,
            #[cfg(feature = "peers")]
            Client::Postgres(c) => c.read_all(from, count, progress).await,
            #[cfg(feature = "peers")]
            Client::Umadb(c) => c.read_all(from, count, progress).await,
        }
    }

    /// Reads a whole stream; returns its events.
    pub async fn read_stream(&self, stream: &str) -> Result<u64> {
        match self {
            Client::Strata(c) => c.read_stream(stream).await,
            Client::Kurrentdb(c) => c.read_stream(stream).await,
            #[cfg(feature = "peers")]
            Client::Postgres(c) => c.read_stream(stream).await,
            #[cfg(feature = "peers")]
            Client::Umadb(c) => c.read_stream(stream).await,
        }
    }

    /// One call that touches no storage: the gRPC health Check (Strata,
    /// UmaDB), PostgreSQL's `SELECT 1`.
    pub async fn ping(&self) -> Result<()> {
        match self {
            Client::Strata(c) => c.ping().await,
            // Refused before a cell starts (`SystemKind::lacks`); never sent.
            Client::Kurrentdb(_) => Err(crate::error::BenchError::Config(
                "strata-kurrentdb: the health Check is not a KurrentDB call".into(),
            )),
            #[cfg(feature = "peers")]
            Client::Postgres(c) => c.ping().await,
            #[cfg(feature = "peers")]
            Client::Umadb(c) => c.ping().await,
        }
    }

    /// Number of events in `$all` (approximate for PostgreSQL: the last position).
    pub async fn head(&self) -> Result<u64> {
        match self {
            Client::Strata(c) => c.head().await,
            Client::Kurrentdb(c) => c.head().await,
            #[cfg(feature = "peers")]
            Client::Postgres(c) => c.head().await,
            #[cfg(feature = "peers")]
            Client::Umadb(c) => c.head().await,
        }
    }

    /// The native Strata client, when this is one.
    pub fn into_strata(self) -> Option<strata::StrataClient> {
        match self {
            Client::Strata(c) => Some(c),
            _ => None,
        }
    }

    /// Follows `$all` until `deadline` or until `on_batch` returns false;
    /// `on_batch` gets the send stamps of each delivered batch.
    pub async fn follow_all(
        &self,
        from: FollowFrom,
        deadline: Instant,
        on_batch: &mut (dyn FnMut(&[u64]) -> bool + Send),
    ) -> Result<()> {
        match self {
            Client::Strata(c) => c.follow_all(from, deadline, on_batch).await,
            Client::Kurrentdb(c) => c.follow_all(from, deadline, on_batch).await,
            #[cfg(feature = "peers")]
            Client::Postgres(c) => c.follow_all(from, deadline, on_batch).await,
            #[cfg(feature = "peers")]
            Client::Umadb(c) => c.follow_all(from, deadline, on_batch).await,
        }
    }
}

/// How one writer sends its appends.
pub enum Writer {
    /// One call (Strata, UmaDB) or statement (PostgreSQL) per append,
    /// through a client that may share its connection with other writers.
    Unary(Client),
    /// Strata: one append at a time on a `PipelinedAppend` call shared with
    /// other writers.
    Pipelined(strata::PipelineSlot),
}

impl Writer {
    /// Appends `events` events of `payload` bytes to `stream`, expecting
    /// `expect`, and waits for this append's answer.
    pub async fn append(
        &mut self,
        stream: &str,
        expect: Expect,
        events: usize,
        payload: usize,
    ) -> Result<AppendResult> {
        match self {
            Writer::Unary(c) => c.append(stream, expect, events, payload).await,
            Writer::Pipelined(p) => p.append(stream, expect, events, payload).await,
        }
    }
}

/// A started system: where it listens, which process to watch, how to stop it.
pub struct Running {
    /// Which system.
    pub kind: SystemKind,
    /// Its address (gRPC URL or PostgreSQL connection string).
    pub url: String,
    /// The root process of the server, for CPU and memory readings.
    pub pid: Option<u32>,
    /// Strata's Prometheus endpoint (`http://…/metrics`), scraped around
    /// each window; `None` for the peers and for `--url` without
    /// `--metrics-url`.
    pub metrics_url: Option<String>,
    clients_per_connection: usize,
    #[cfg_attr(not(feature = "peers"), allow(dead_code))]
    poll_interval: Duration,
    /// Stops the server when dropped.
    _guard: Box<dyn Send>,
}

impl Running {
    /// Wraps a started server.
    pub fn new(
        kind: SystemKind,
        url: String,
        pid: Option<u32>,
        clients_per_connection: usize,
        poll_interval: Duration,
        guard: Box<dyn Send>,
    ) -> Self {
        Running {
            kind,
            url,
            pid,
            metrics_url: None,
            clients_per_connection,
            poll_interval,
            _guard: guard,
        }
    }

    /// The same, with Strata's Prometheus endpoint to scrape.
    pub fn with_metrics(mut self, metrics_url: Option<String>) -> Self {
        self.metrics_url = metrics_url;
        self
    }

    /// `n` clients. Strata and UmaDB share one HTTP/2 connection among
    /// `--clients-per-connection` clients; PostgreSQL gets one connection
    /// (one server backend) per client, as its protocol requires.
    pub async fn clients(&self, n: usize) -> Result<Vec<Client>> {
        let per = match self.kind {
            SystemKind::Postgres => 1,
            _ => self.clients_per_connection,
        };
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let c = self.connect().await?;
            for _ in 0..per.min(n - out.len()) {
                out.push(c.clone());
            }
        }
        Ok(out)
    }

    /// `n` writers for `append`: one unary client each, connections shared
    /// as [`Running::clients`] shares them.
    pub async fn unary_writers(&self, n: usize) -> Result<Vec<Writer>> {
        Ok(self
            .clients(n)
            .await?
            .into_iter()
            .map(Writer::Unary)
            .collect())
    }

    /// `n` writers for `append-pipelined`, in groups of
    /// `--clients-per-connection`: Strata opens one connection and one
    /// `PipelinedAppend` call per group; PostgreSQL opens one connection per
    /// group, whose writers' statements tokio-postgres pipelines. `None`
    /// for UmaDB, whose client has no pipelined append, and for Strata's
    /// KurrentDB layer, whose `Append` is one call per append.
    pub async fn pipelined_writers(&self, n: usize) -> Result<Option<Vec<Writer>>> {
        if matches!(self.kind, SystemKind::Umadb | SystemKind::StrataKurrentdb) {
            return Ok(None);
        }
        let per = self.clients_per_connection;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let k = per.min(n - out.len());
            match self.connect().await? {
                Client::Strata(c) => out.extend(
                    strata::open_pipeline(&c, k)
                        .await?
                        .into_iter()
                        .map(Writer::Pipelined),
                ),
                Client::Kurrentdb(_) => return Ok(None),
                // PostgreSQL: the group's writers share one connection.
                #[cfg(feature = "peers")]
                shared => out.extend((0..k).map(|_| Writer::Unary(shared.clone()))),
            }
        }
        Ok(Some(out))
    }

    async fn connect(&self) -> Result<Client> {
        match self.kind {
            SystemKind::Strata => Ok(Client::Strata(strata::connect(&self.url).await?)),
            SystemKind::StrataKurrentdb => {
                Ok(Client::Kurrentdb(kurrentdb::connect(&self.url).await?))
            }
            #[cfg(feature = "peers")]
            SystemKind::Postgres => Ok(Client::Postgres(Arc::new(
                postgres::PgClient::connect(&self.url, self.poll_interval).await?,
            ))),
            #[cfg(feature = "peers")]
            SystemKind::Umadb => Ok(Client::Umadb(Arc::new(
                umadb::UmaClient::connect(&self.url).await?,
            ))),
            #[cfg(not(feature = "peers"))]
            other => Err(crate::error::BenchError::Config(format!(
                "{} needs the `peers` feature",
                other.name()
            ))),
        }
    }
}

/// Starts Strata through `launcher` on `data_dir` and waits until it
/// serves; `kind` is [`SystemKind::Strata`] or
/// [`SystemKind::StrataKurrentdb`], which launch the same server alike and
/// differ only in the protocol their clients speak.
pub async fn start_strata(
    kind: SystemKind,
    launcher: &dyn strata::Launcher,
    data_dir: &Path,
    options: &Options,
) -> Result<Running> {
    let mut server = launcher.launch(data_dir, options.durability)?;
    let url = server.url().to_owned();
    if let Err(e) = strata::wait_serving(&url, Duration::from_secs(120)).await {
        let _ = server.stop();
        return Err(e);
    }
    let pid = server.pid();
    let metrics_url = server.metrics_url();
    Ok(Running::new(
        kind,
        url,
        pid,
        options.clients_per_connection,
        Duration::ZERO,
        Box::new(StopOnDrop(server)),
    )
    .with_metrics(metrics_url))
}

/// Targets an already-running Strata (`--url`) as `kind` (native or
/// through its KurrentDB layer): nothing to stop, no pid; its metrics only
/// if `--metrics-url` names them.
pub async fn attach_strata(kind: SystemKind, url: &str, options: &Options) -> Result<Running> {
    strata::wait_serving(url, Duration::from_secs(10)).await?;
    Ok(Running::new(
        kind,
        url.to_owned(),
        None,
        options.clients_per_connection,
        Duration::ZERO,
        Box::new(()),
    )
    .with_metrics(options.metrics_url.clone()))
}

struct StopOnDrop(Box<dyn strata::ServerProcess>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        if let Err(e) = self.0.stop() {
            eprintln!("strata-bench: stopping strata: {e}");
        }
    }
}

/// Runs a peer script (`SCRIPT start DIR PORT`) and returns the address it
/// prints on its last line.
#[cfg(feature = "peers")]
fn run_script(system: &'static str, script: &Path, dir: &Path, port: u16) -> Result<String> {
    use crate::error::BenchError;
    if !script.is_file() {
        return Err(BenchError::Config(format!(
            "{}: no such script (set --peers-dir)",
            script.display()
        )));
    }
    let out = std::process::Command::new("bash")
        .arg(script)
        .arg("start")
        .arg(dir)
        .arg(port.to_string())
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| BenchError::io("running the peer script", script, e))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().rev().find(|l| !l.trim().is_empty());
    match (out.status.success(), last) {
        (true, Some(url)) => Ok(url.trim().to_owned()),
        _ => Err(BenchError::server(
            system,
            format!(
                "{} start failed ({}): {}{}",
                script.display(),
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        )),
    }
}
