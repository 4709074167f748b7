//! The crash harness shared by the crash tiers (`crash_kill9.rs`,
//! `power_cut.rs`): the real `strata` binary under concurrent load, killed
//! at random moments, restarted on the same data directory, and the log
//! checked against a record of every answer. What a crash does to the disk
//! is the tier's [`Disk`]: nothing for kill -9 (the page cache survives),
//! everything unsynced for a power cut.
//!
//! Each round drives several appenders over gRPC (single and multi-event
//! appends, streams owned by one appender and streams shared by all, every
//! kind of expected version, client-generated ids in both wire forms),
//! records every answer, kills the server with SIGKILL at a random moment,
//! lets the tier's disk lose what it loses, restarts the server and checks:
//! - every acknowledged append is there, with identical content, at the
//!   revisions and positions it was acknowledged with;
//! - positions are dense (`$all` holds exactly 0..head), revisions are
//!   contiguous per stream, every id is stored once, nothing unknown is stored;
//! - an append whose answer was lost in the crash is there entirely or not
//!   at all; an idempotent retry of it returns the original result (if it
//!   was written) or writes it now, and exactly one copy exists afterwards;
//! - every event a live subscriber received before the crash is in the log,
//!   unchanged, at the same position (subscribers only see durable events);
//! - a subscription from the start delivers exactly the log, then `caught_up`
//!   at the head.
//!
//! Some rounds also crash the server again while it is recovering. Every
//! `<PREFIX>_ROUNDS_PER_DIR` rounds (default 25) the data directory is
//! stopped gracefully (SIGTERM), checked offline with `strata verify`, and
//! replaced by a fresh one with another segment size, so each round's full
//! check stays cheap however many rounds run. A failing round keeps its
//! data directory and prints its path and the server's log.

#![allow(dead_code)]

pub mod groups;
pub mod lifecycle;
pub mod users;

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_proto::v1;
use strata_proto::v1::append_response::Result as AppendResult;
use strata_proto::v1::multi_append_response::Result as MultiResult;
use strata_proto::v1::streams_client::StreamsClient;
use strata_proto::v1::subscribe_response::Content;
use tonic::transport::{Channel, Endpoint};

type Client = StreamsClient<Channel>;

/// Appenders per round, each on its own connection.
const APPENDERS: usize = 4;
/// Streams each appender owns (it alone writes them, so it can predict
/// their revisions exactly).
const OWNED_STREAMS: usize = 2;
/// Streams every appender writes.
const SHARED_STREAMS: usize = 3;
/// Segment sizes the data directories take turns with: tiny ones roll a
/// segment every few appends, so crashes land inside rolls too.
const SEGMENT_SIZES: [u64; 3] = [16 << 10, 64 << 10, 1 << 20];
/// How long anything that should be prompt may take.
const PATIENCE: Duration = Duration::from_secs(60);

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

// ---------------------------------------------------------------------------
// Small deterministic helpers: a PRNG and a content fingerprint.

/// SplitMix64: tiny, fast, good enough to pick workloads.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    fn id(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_le_bytes());
        id[8..].copy_from_slice(&self.next().to_le_bytes());
        id
    }
}

/// FNV-1a over the length-prefixed fields of an event's content.
fn fingerprint(event_type: &str, data: &[u8], metadata: &[u8], content_type: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [
        event_type.as_bytes(),
        data,
        metadata,
        content_type.as_bytes(),
    ] {
        for b in (part.len() as u64).to_le_bytes().iter().chain(part) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn recorded_fingerprint(e: &v1::RecordedEvent) -> u64 {
    fingerprint(&e.r#type, &e.data, &e.metadata, &e.content_type)
}

fn id_of(e: &v1::RecordedEvent) -> [u8; 16] {
    e.id.as_ref()
        .and_then(|u| u.to_bytes().ok())
        .unwrap_or_else(|| panic!("recorded event at {} has no valid id", e.position))
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

// ---------------------------------------------------------------------------
// The record of what the clients asked and were told.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    Exact(u64),
}

impl Expect {
    fn wire(self) -> v1::ExpectedVersion {
        match self {
            Expect::Any => v1::ExpectedVersion::any(),
            Expect::NoStream => v1::ExpectedVersion::no_stream(),
            Expect::StreamExists => v1::ExpectedVersion::stream_exists(),
            Expect::Exact(r) => v1::ExpectedVersion::exact(r),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum State {
    /// Acknowledged with `(next_expected_revision, position)`.
    Acked { rev: u64, pos: u64 },
    /// Answered `wrong_expected_version`: nothing may be written.
    Rejected,
    /// The answer was lost (the server died): all or nothing may be written.
    InDoubt(String),
}

/// One append as a client sent it, and what became of it.
#[derive(Clone, Debug)]
struct Attempt {
    stream: String,
    expected: Expect,
    ids: Vec<[u8; 16]>,
    fingerprints: Vec<u64>,
    /// The request's events, kept while the attempt may need a retry.
    events: Option<Vec<v1::EventData>>,
    state: State,
    /// The multi-append this append was part of: its parts are consecutive
    /// attempts with the same group, written all together or not at all.
    group: Option<u64>,
}

/// One event of the log after a restart, reduced to what is compared.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    stream: String,
    rev: u64,
    pos: u64,
    id: [u8; 16],
    fingerprint: u64,
}

impl Stored {
    fn from_wire(e: &v1::RecordedEvent) -> Stored {
        Stored {
            stream: e.stream.clone(),
            rev: e.revision,
            pos: e.position,
            id: id_of(e),
            fingerprint: recorded_fingerprint(e),
        }
    }
}

/// Figures printed at the end (and by `scripts/crash-long`).
#[derive(Debug, Default)]
struct Totals {
    rounds: u64,
    recovery_kills: u64,
    data_dirs: u64,
    acked_appends: u64,
    acked_events: u64,
    rejected_appends: u64,
    in_doubt: u64,
    in_doubt_found_written: u64,
    in_doubt_written_by_retry: u64,
    in_doubt_rejected_on_retry: u64,
    idempotent_retries: u64,
    multi_appends_sent: u64,
    live_events_checked: u64,
    lost_events: u64,
}

// ---------------------------------------------------------------------------
// The server process.

const BIN: &str = env!("CARGO_BIN_EXE_strata");

fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Never leave a server behind, whatever failed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `strata` on `data`, appending its log to `log`; does not wait.
fn spawn_server(data: &Path, log: &Path, segment_size: u64) -> Server {
    spawn_server_with(data, log, segment_size, &[], &[])
}

/// [`spawn_server`] with more flags and environment variables.
fn spawn_server_with(
    data: &Path,
    log: &Path,
    segment_size: u64,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Server {
    let addr = free_addr();
    // Two free ports in a row can be the same one: the first was released.
    let mut metrics = free_addr();
    while metrics == addr {
        metrics = free_addr();
    }
    let stderr = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("server log file");
    let mut cmd = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &addr.to_string()])
        .args(["--metrics-listen", &metrics.to_string()])
        .args(["--segment-size", &segment_size.to_string()])
        .args(["--log", "warn"])
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn strata");
    Server { child, addr }
}

fn log_tail(log: &Path) -> String {
    let mut f = match File::open(log) {
        Ok(f) => f,
        Err(e) => return format!("(no server log: {e})"),
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(8 << 10)));
    let mut s = String::new();
    let _ = f.read_to_string(&mut s);
    s
}

async fn connect(addr: SocketAddr) -> Result<Client, tonic::transport::Error> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(1))
        .connect()
        .await?;
    Ok(StreamsClient::new(channel).max_decoding_message_size(64 << 20))
}

/// Starts the server and waits until it answers `Stats`. A lost race for
/// the port is retried with other ports.
async fn start_server(data: &Path, log: &Path, segment_size: u64) -> (Server, Client) {
    start_server_with(data, log, segment_size, &[], &[]).await
}

/// [`start_server`] with more flags and environment variables; with
/// authentication on, an UNAUTHENTICATED `Stats` counts as ready.
async fn start_server_with(
    data: &Path,
    log: &Path,
    segment_size: u64,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Server, Client) {
    for _ in 0..5 {
        let mut server = spawn_server_with(data, log, segment_size, args, envs);
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = server.child.try_wait().expect("try_wait") {
                let tail = log_tail(log);
                if tail.contains("cannot listen") {
                    break; // someone took the port: try others
                }
                panic!("strata exited during start-up ({status}); its log:\n{tail}");
            }
            if let Ok(mut c) = connect(server.addr).await {
                match c.stats(v1::StatsRequest {}).await {
                    Ok(_) => return (server, c),
                    Err(e) if e.code() == tonic::Code::Unauthenticated => return (server, c),
                    Err(_) => {}
                }
            }
            assert!(
                Instant::now() < deadline,
                "strata not ready after {PATIENCE:?}; its log:\n{}",
                log_tail(log)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    panic!("could not start strata on a free port");
}

fn kill9(server: &mut Server) {
    // `Child::kill` sends SIGKILL on Unix.
    server.child.kill().expect("SIGKILL strata");
    server.child.wait().expect("reap strata");
}

/// SIGTERM, then the exit status of a clean shutdown.
fn stop_gracefully(server: &mut Server, log: &Path) {
    let pid = server.child.id().to_string();
    let ok = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(ok.success(), "kill -TERM {pid} failed");
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = server.child.try_wait().expect("try_wait") {
            assert!(
                status.success(),
                "strata exited with {status} after SIGTERM; its log:\n{}",
                log_tail(log)
            );
            return;
        }
        if Instant::now() > deadline {
            kill9(server);
            panic!("strata did not stop within {PATIENCE:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `strata verify` on a stopped data directory must find nothing wrong.
fn offline_verify(data: &Path) {
    let out = Command::new(BIN)
        .arg("verify")
        .arg("--data-dir")
        .arg(data)
        .env_remove("STRATA_DATA_DIR")
        .output()
        .expect("run strata verify");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "strata verify failed:\n{text}");
    assert!(text.contains("ok"), "strata verify said:\n{text}");
}

// ---------------------------------------------------------------------------
// Load: appenders and a live subscriber.

struct Appender {
    client: Client,
    rng: Rng,
    /// Owned streams and their last revision (`None`: not created yet).
    owned: Vec<(String, Option<u64>)>,
    shared: Vec<String>,
    /// Last revision seen per shared stream (a guess: others write too).
    shared_seen: HashMap<String, u64>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct AppenderReport {
    attempts: Vec<Attempt>,
    violations: Vec<String>,
    idempotent_retries: u64,
    multi_appends: u64,
}

fn make_event(rng: &mut Rng) -> (v1::EventData, [u8; 16], u64) {
    let id = rng.id();
    let wire_id = if rng.chance(70) {
        v1::Uuid::from_bytes_raw(id)
    } else {
        v1::Uuid::from_bytes(id)
    };
    let event_type = match rng.range(0, 3) {
        0 => "Created".to_string(),
        1 => "Updated".to_string(),
        2 => "x".repeat(rng.range(1, 255) as usize),
        _ => format!("Type-{}", rng.range(0, 1000)),
    };
    let size = match rng.range(0, 99) {
        0..=79 => rng.range(0, 256),
        80..=97 => rng.range(256, 4096),
        _ => rng.range(16 << 10, 64 << 10),
    } as usize;
    let data = rng.bytes(size);
    let metadata = if rng.chance(50) {
        Vec::new()
    } else {
        let n = rng.range(1, 64) as usize;
        rng.bytes(n)
    };
    let content_type = match rng.range(0, 3) {
        0 => Some("application/json".to_string()),
        1 => Some(String::new()),
        _ => None,
    };
    let fp = fingerprint(
        &event_type,
        &data,
        &metadata,
        content_type.as_deref().unwrap_or(""),
    );
    let event = v1::EventData {
        id: Some(wire_id),
        r#type: event_type,
        data: data.into(),
        metadata: metadata.into(),
        content_type,
    };
    (event, id, fp)
}

async fn run_appender(mut a: Appender) -> AppenderReport {
    let mut report = AppenderReport::default();
    // The last acknowledged append, for in-flight idempotent retries.
    let mut last_acked: Option<(String, Vec<v1::EventData>, u64, u64)> = None;
    while !a.stop.load(Ordering::Relaxed) {
        if a.rng.chance(15) {
            if !multi_append_step(&mut a, &mut report).await {
                break;
            }
            continue;
        }
        if let Some((stream, events, rev, pos)) = last_acked.as_ref().filter(|_| a.rng.chance(5)) {
            // A retry of an append that was answered: same result, no write.
            let expected = if a.rng.chance(50) {
                v1::ExpectedVersion::any()
            } else {
                v1::ExpectedVersion::no_stream()
            };
            let req = v1::AppendRequest {
                stream: stream.clone(),
                expected: Some(expected),
                events: events.clone(),
            };
            match a.client.append(req).await {
                Ok(r) => match r.into_inner().result {
                    Some(AppendResult::Success(s))
                        if (s.next_expected_revision, s.position) == (*rev, *pos) =>
                    {
                        report.idempotent_retries += 1;
                    }
                    other => report.violations.push(format!(
                        "retry of the append acknowledged at ({rev}, {pos}) on {stream:?} \
                         answered {other:?} instead of the original success"
                    )),
                },
                Err(_) => break, // the server is gone; the retry wrote nothing new
            }
            continue;
        }
        let owned_idx = a
            .rng
            .chance(70)
            .then(|| a.rng.range(0, a.owned.len() as u64 - 1) as usize);
        let (stream, expected) = match owned_idx {
            Some(i) => {
                let (name, head) = &a.owned[i];
                let expected = match (head, a.rng.range(0, 9)) {
                    (_, 0) => Expect::Any,
                    (None, _) => Expect::NoStream,
                    (Some(_), 1) => Expect::StreamExists,
                    (Some(r), _) => Expect::Exact(*r),
                };
                (name.clone(), expected)
            }
            None => {
                let name = a.shared[a.rng.range(0, a.shared.len() as u64 - 1) as usize].clone();
                let expected = match a.shared_seen.get(&name) {
                    Some(r) if a.rng.chance(40) => Expect::Exact(*r),
                    _ => Expect::Any,
                };
                (name, expected)
            }
        };
        let n = match a.rng.range(0, 9) {
            0..=5 => 1,
            6..=8 => a.rng.range(2, 8),
            _ => a.rng.range(9, 64),
        } as usize;
        let mut events = Vec::with_capacity(n);
        let mut ids = Vec::with_capacity(n);
        let mut fingerprints = Vec::with_capacity(n);
        for _ in 0..n {
            let (e, id, fp) = make_event(&mut a.rng);
            events.push(e);
            ids.push(id);
            fingerprints.push(fp);
        }
        let req = v1::AppendRequest {
            stream: stream.clone(),
            expected: Some(expected.wire()),
            events: events.clone(),
        };
        let mut attempt = Attempt {
            stream: stream.clone(),
            expected,
            ids,
            fingerprints,
            events: None,
            state: State::Rejected,
            group: None,
        };
        let answer = tokio::time::timeout(PATIENCE, a.client.append(req)).await;
        let result = match answer {
            Ok(Ok(r)) => r.into_inner().result,
            Ok(Err(status)) => {
                attempt.state =
                    State::InDoubt(format!("{:?}: {}", status.code(), status.message()));
                attempt.events = Some(events);
                report.attempts.push(attempt);
                break;
            }
            Err(_) => {
                attempt.state = State::InDoubt("no answer in time".into());
                attempt.events = Some(events);
                report.attempts.push(attempt);
                break;
            }
        };
        let n = n as u64;
        match result {
            Some(AppendResult::Success(s)) => {
                let (rev, pos) = (s.next_expected_revision, s.position);
                attempt.state = State::Acked { rev, pos };
                if rev + 1 < n || pos + 1 < n {
                    report.violations.push(format!(
                        "{stream:?}: an append of {n} events was acknowledged at revision \
                         {rev}, position {pos}"
                    ));
                }
                match owned_idx {
                    Some(i) => {
                        let want = a.owned[i].1.map_or(n - 1, |h| h + n);
                        if rev != want {
                            report.violations.push(format!(
                                "owned stream {stream:?}: acknowledged revision {rev}, expected {want}"
                            ));
                        }
                        a.owned[i].1 = Some(rev);
                    }
                    None => {
                        a.shared_seen.insert(stream.clone(), rev);
                    }
                }
                last_acked = Some((stream, events, rev, pos));
            }
            Some(AppendResult::WrongExpectedVersion(w)) => {
                attempt.state = State::Rejected;
                if owned_idx.is_some() {
                    report.violations.push(format!(
                        "owned stream {stream:?}: {expected:?} was refused (current {:?})",
                        w.current_revision
                    ));
                }
                match w.current_revision {
                    Some(r) => a.shared_seen.insert(stream, r),
                    None => a.shared_seen.remove(&stream),
                };
            }
            None => report
                .violations
                .push(format!("{stream:?}: AppendResponse without a result")),
        }
        report.attempts.push(attempt);
    }
    report
}

/// One multi-append: an owned stream (its exact expected version) and one
/// or two shared streams (`any`). Returns false once the server is gone.
async fn multi_append_step(a: &mut Appender, report: &mut AppenderReport) -> bool {
    let k = a.rng.range(0, a.owned.len() as u64 - 1) as usize;
    let (name, head) = a.owned[k].clone();
    let expected = head.map_or(Expect::NoStream, Expect::Exact);
    let mut parts = vec![(name, expected)];
    let shared = a.rng.range(1, 2) as usize;
    for s in a.shared.iter().take(shared) {
        parts.push((s.clone(), Expect::Any));
    }
    let group = a.rng.next();
    let mut attempts = Vec::new();
    let mut appends = Vec::new();
    for (stream, expected) in parts {
        let n = a.rng.range(1, 5) as usize;
        let (mut events, mut ids, mut fingerprints) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let (e, id, fp) = make_event(&mut a.rng);
            events.push(e);
            ids.push(id);
            fingerprints.push(fp);
        }
        appends.push(v1::AppendRequest {
            stream: stream.clone(),
            expected: Some(expected.wire()),
            events: events.clone(),
        });
        attempts.push(Attempt {
            stream,
            expected,
            ids,
            fingerprints,
            events: Some(events),
            state: State::Rejected,
            group: Some(group),
        });
    }
    let req = v1::MultiAppendRequest {
        appends,
        checks: Vec::new(),
    };
    report.multi_appends += 1;
    let answer = tokio::time::timeout(PATIENCE, a.client.multi_append(req)).await;
    let alive = match answer {
        Ok(Ok(r)) => match r.into_inner().result {
            Some(MultiResult::Success(s)) if s.results.len() == attempts.len() => {
                for (at, r) in attempts.iter_mut().zip(&s.results) {
                    at.state = State::Acked {
                        rev: r.next_expected_revision,
                        pos: r.position,
                    };
                    at.events = None;
                }
                a.owned[k].1 = Some(s.results[0].next_expected_revision);
                for r in &s.results[1..] {
                    a.shared_seen
                        .insert(r.stream.clone(), r.next_expected_revision);
                }
                true
            }
            other => {
                report.violations.push(format!(
                    "a multi-append on owned stream {:?} answered {other:?}",
                    attempts[0].stream
                ));
                for at in &mut attempts {
                    at.events = None;
                }
                true
            }
        },
        Ok(Err(status)) => {
            for at in &mut attempts {
                at.state = State::InDoubt(format!("{:?}: {}", status.code(), status.message()));
            }
            false
        }
        Err(_) => {
            for at in &mut attempts {
                at.state = State::InDoubt("no answer in time".into());
            }
            false
        }
    };
    report.attempts.extend(attempts);
    alive
}

/// What a live `$all` subscriber received: `(position, id, fingerprint)`.
type Seen = Vec<(u64, [u8; 16], u64)>;

/// Opens a `$all` subscription starting at position `head`, waits for its
/// `caught_up`, then collects events in the background until the stream
/// fails (the server dies).
async fn live_subscriber(client: &mut Client, head: u64) -> tokio::task::JoinHandle<Seen> {
    let from = match head {
        0 => v1::SubscribeFrom::start(),
        h => v1::SubscribeFrom::after_position(h - 1),
    };
    let req = v1::SubscribeRequest {
        target: Some(v1::subscribe_request::Target::All(v1::AllTarget {})),
        from: Some(from),
        filter: None,
    };
    let mut stream = client
        .subscribe(req)
        .await
        .expect("live subscription")
        .into_inner();
    let mut seen = Vec::new();
    loop {
        let m = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("caught_up in time")
            .expect("live subscription")
            .expect("live subscription open");
        match m.content {
            Some(Content::CaughtUp(c)) => {
                assert_eq!(
                    c.position,
                    head.checked_sub(1),
                    "caught_up of a live subscription names the last event"
                );
                break;
            }
            Some(Content::Events(b)) => seen.extend(
                b.events
                    .iter()
                    .map(|e| (e.position, id_of(e), recorded_fingerprint(e))),
            ),
            _ => {}
        }
    }
    tokio::spawn(async move {
        while let Ok(Some(m)) = stream.message().await {
            if let Some(Content::Events(b)) = m.content {
                seen.extend(
                    b.events
                        .iter()
                        .map(|e| (e.position, id_of(e), recorded_fingerprint(e))),
                );
            }
        }
        seen
    })
}

// ---------------------------------------------------------------------------
// Checks.

async fn read_log(client: &mut Client) -> Vec<Stored> {
    let req = v1::ReadRequest {
        target: Some(v1::read_request::Target::All(v1::AllTarget {})),
        direction: v1::Direction::Forwards as i32,
        from: Some(v1::ReadFrom::start()),
        max_count: 0,
        filter: None,
    };
    let mut stream = client.read(req).await.expect("read $all").into_inner();
    let mut out = Vec::new();
    while let Some(batch) = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("read $all stalled")
        .expect("read $all")
    {
        out.extend(batch.events.iter().map(Stored::from_wire));
    }
    out
}

async fn head_position(client: &mut Client) -> u64 {
    client
        .stats(v1::StatsRequest {})
        .await
        .expect("stats")
        .into_inner()
        .head_position
}

/// Checks the log against every attempt. Returns, per in-doubt attempt
/// (by index), where its last event is stored, if it was written.
fn check_log(
    attempts: &[Attempt],
    log: &[Stored],
    head: u64,
    violations: &mut Vec<String>,
    lost: &mut u64,
) -> HashMap<usize, Option<(u64, u64)>> {
    if log.len() as u64 != head {
        violations.push(format!(
            "$all holds {} events but the head position is {head}",
            log.len()
        ));
    }
    let mut next_rev: HashMap<&str, u64> = HashMap::new();
    let mut by_id: HashMap<[u8; 16], usize> = HashMap::with_capacity(log.len());
    for (i, e) in log.iter().enumerate() {
        if e.pos != i as u64 {
            violations.push(format!(
                "$all: event {i} has position {} (positions must be dense)",
                e.pos
            ));
        }
        let want = next_rev.entry(e.stream.as_str()).or_insert(0);
        if e.rev != *want {
            violations.push(format!(
                "stream {:?}: position {} has revision {}, expected {}",
                e.stream, e.pos, e.rev, *want
            ));
        }
        *want = e.rev + 1;
        if let Some(first) = by_id.insert(e.id, i) {
            violations.push(format!(
                "event id {} is stored twice: positions {first} and {}",
                hex(&e.id),
                e.pos
            ));
        }
    }
    let mut known: HashSet<[u8; 16]> = HashSet::new();
    let mut in_doubt = HashMap::new();
    for (k, a) in attempts.iter().enumerate() {
        known.extend(a.ids.iter().copied());
        let n = a.ids.len() as u64;
        let found: Vec<Option<&Stored>> = a
            .ids
            .iter()
            .map(|id| by_id.get(id).map(|&i| &log[i]))
            .collect();
        let present = found.iter().flatten().count() as u64;
        let what = format!(
            "append of {n} events to {:?} ({:?}, first id {})",
            a.stream,
            a.expected,
            hex(&a.ids[0])
        );
        match &a.state {
            State::Acked { rev, pos } => {
                for (i, f) in found.iter().enumerate() {
                    let i = i as u64;
                    let (want_rev, want_pos) =
                        ((rev + 1 + i).wrapping_sub(n), (pos + 1 + i).wrapping_sub(n));
                    match f {
                        None => {
                            *lost += 1;
                            violations.push(format!(
                                "LOST: acknowledged {what}: event {i} (revision {want_rev}, \
                                 position {want_pos}) is missing"
                            ));
                        }
                        Some(e) => {
                            let ok = e.stream == a.stream
                                && e.rev == want_rev
                                && e.pos == want_pos
                                && e.fingerprint == a.fingerprints[i as usize];
                            if !ok {
                                *lost += 1;
                                violations.push(format!(
                                    "CHANGED: acknowledged {what}: event {i} should be \
                                     {:?}/{want_rev} at {want_pos}, the log has {e:?}",
                                    a.stream
                                ));
                            }
                        }
                    }
                }
            }
            State::Rejected => {
                if present > 0 {
                    violations.push(format!(
                        "{what} was answered wrong_expected_version but {present} of its \
                         events are stored"
                    ));
                }
            }
            State::InDoubt(_) => {
                if present == 0 {
                    in_doubt.insert(k, None);
                    continue;
                }
                if present != n {
                    violations.push(format!(
                        "PARTIAL: in-doubt {what}: {present} of {n} events are stored"
                    ));
                    continue;
                }
                let first = found[0].expect("present");
                let contiguous = found.iter().enumerate().all(|(i, f)| {
                    f.is_some_and(|e| {
                        e.stream == a.stream
                            && e.pos == first.pos + i as u64
                            && e.rev == first.rev + i as u64
                            && e.fingerprint == a.fingerprints[i]
                    })
                });
                if !contiguous {
                    violations.push(format!(
                        "in-doubt {what}: its events are stored, but not as one append \
                         with the same content"
                    ));
                }
                in_doubt.insert(k, Some((first.rev + n - 1, first.pos + n - 1)));
            }
        }
    }
    // A multi-append's parts: all stored or none, one right after the other.
    let mut k = 0;
    while k < attempts.len() {
        let Some(g) = attempts[k].group else {
            k += 1;
            continue;
        };
        let end = k + attempts[k..]
            .iter()
            .take_while(|a| a.group == Some(g))
            .count();
        let spans: Vec<Option<(u64, u64)>> = (k..end)
            .map(|j| {
                let n = attempts[j].ids.len() as u64;
                let last = match &attempts[j].state {
                    State::Acked { pos, .. } => Some(*pos),
                    _ => in_doubt.get(&j).copied().flatten().map(|(_, pos)| pos),
                };
                last.map(|l| (l + 1 - n, l))
            })
            .collect();
        let present = spans.iter().flatten().count();
        if present != 0 && present != spans.len() {
            violations.push(format!(
                "PARTIAL multi-append on {:?}: {present} of its {} appends are stored",
                attempts[k].stream,
                spans.len()
            ));
        } else if present != 0 {
            let s: Vec<(u64, u64)> = spans.into_iter().flatten().collect();
            if s.windows(2).any(|w| w[1].0 != w[0].1 + 1) {
                violations.push(format!(
                    "a multi-append on {:?} is stored, but not as one unit: {s:?}",
                    attempts[k].stream
                ));
            }
        }
        k = end;
    }
    for e in log {
        if !known.contains(&e.id) {
            violations.push(format!(
                "position {}: event id {} was never sent by a client",
                e.pos,
                hex(&e.id)
            ));
        }
    }
    in_doubt
}

/// A subscription from the start must deliver exactly `log`, then
/// `caught_up` at its end.
async fn check_subscription_from_start(
    client: &mut Client,
    log: &[Stored],
    violations: &mut Vec<String>,
) {
    let req = v1::SubscribeRequest {
        target: Some(v1::subscribe_request::Target::All(v1::AllTarget {})),
        from: Some(v1::SubscribeFrom::start()),
        filter: None,
    };
    let mut stream = client
        .subscribe(req)
        .await
        .expect("subscribe from start")
        .into_inner();
    let mut got = Vec::with_capacity(log.len());
    loop {
        let m = tokio::time::timeout(PATIENCE, stream.message())
            .await
            .expect("subscription from start stalled")
            .expect("subscription from start")
            .expect("subscription from start ended");
        match m.content {
            Some(Content::Events(b)) => got.extend(b.events.iter().map(Stored::from_wire)),
            Some(Content::CaughtUp(c)) => {
                if c.position != (log.len() as u64).checked_sub(1) {
                    violations.push(format!(
                        "subscription from start: caught_up at {:?}, the log holds {}",
                        c.position,
                        log.len()
                    ));
                }
                break;
            }
            _ => {}
        }
    }
    if got != log {
        let first_diff = got.iter().zip(log).position(|(a, b)| a != b);
        violations.push(format!(
            "subscription from start delivered {} events, the log holds {} (first \
             difference at index {first_diff:?})",
            got.len(),
            log.len()
        ));
    }
}

/// What a live subscriber saw before the crash must all be in the log.
fn check_live(seen: &Seen, start: u64, log: &[Stored], violations: &mut Vec<String>) {
    for (i, (pos, id, fp)) in seen.iter().enumerate() {
        if *pos != start + i as u64 {
            violations.push(format!(
                "live subscriber: event {i} has position {pos}, expected {}",
                start + i as u64
            ));
            return;
        }
        match log.get(*pos as usize) {
            Some(e) if e.id == *id && e.fingerprint == *fp => {}
            other => {
                violations.push(format!(
                    "LOST: a live subscriber received position {pos} (id {}) before the \
                     crash; after the restart the log has {other:?}",
                    hex(id)
                ));
                return;
            }
        }
    }
}

/// Retries every in-doubt attempt with its original events, with `any` or
/// its original expected version.
async fn retry_in_doubt(
    client: &mut Client,
    attempts: &mut [Attempt],
    found: &HashMap<usize, Option<(u64, u64)>>,
    rng: &mut Rng,
    totals: &mut Totals,
    violations: &mut Vec<String>,
) -> bool {
    let mut wrote = false;
    let mut keys: Vec<_> = found.keys().copied().collect();
    keys.sort_unstable();
    let mut done_until = 0;
    for k in keys {
        if k < done_until {
            continue; // retried with its multi-append
        }
        if let Some(g) = attempts[k].group {
            let end = k + attempts[k..]
                .iter()
                .take_while(|a| a.group == Some(g))
                .count();
            done_until = end;
            wrote |= retry_multi(client, &mut attempts[k..end], k, found, totals, violations).await;
            continue;
        }
        let a = &mut attempts[k];
        let events = a
            .events
            .take()
            .expect("in-doubt attempts keep their events");
        let expected = if rng.chance(50) {
            Expect::Any
        } else {
            a.expected
        };
        let req = v1::AppendRequest {
            stream: a.stream.clone(),
            expected: Some(expected.wire()),
            events,
        };
        let answer = client
            .append(req)
            .await
            .unwrap_or_else(|e| panic!("retry of an in-doubt append failed: {e}"))
            .into_inner()
            .result;
        let what = format!(
            "retry ({expected:?}) of the in-doubt append to {:?} (first id {})",
            a.stream,
            hex(&a.ids[0])
        );
        match (found[&k], answer) {
            (Some((rev, pos)), Some(AppendResult::Success(s))) => {
                totals.in_doubt_found_written += 1;
                if (s.next_expected_revision, s.position) != (rev, pos) {
                    violations.push(format!(
                        "{what}: answered ({}, {}), but it is stored at ({rev}, {pos})",
                        s.next_expected_revision, s.position
                    ));
                }
                a.state = State::Acked { rev, pos };
            }
            (None, Some(AppendResult::Success(s))) => {
                totals.in_doubt_written_by_retry += 1;
                wrote = true;
                a.state = State::Acked {
                    rev: s.next_expected_revision,
                    pos: s.position,
                };
            }
            (None, Some(AppendResult::WrongExpectedVersion(_))) if expected != Expect::Any => {
                totals.in_doubt_rejected_on_retry += 1;
                a.state = State::Rejected;
            }
            (stored, other) => {
                violations.push(format!("{what}: stored at {stored:?}, answered {other:?}"));
                a.state = State::Rejected;
            }
        }
    }
    wrote
}

/// Retries an in-doubt multi-append (its parts, from index `first` of the
/// attempts) with `any`: a stored one must answer its original results, a
/// missing one is written now. Returns whether it wrote.
async fn retry_multi(
    client: &mut Client,
    parts: &mut [Attempt],
    first: usize,
    found: &HashMap<usize, Option<(u64, u64)>>,
    totals: &mut Totals,
    violations: &mut Vec<String>,
) -> bool {
    let req = v1::MultiAppendRequest {
        appends: parts
            .iter_mut()
            .map(|a| v1::AppendRequest {
                stream: a.stream.clone(),
                expected: Some(Expect::Any.wire()),
                events: a
                    .events
                    .take()
                    .expect("in-doubt attempts keep their events"),
            })
            .collect(),
        checks: Vec::new(),
    };
    let answer = match client.multi_append(req).await {
        Ok(r) => r.into_inner().result,
        Err(e) => {
            violations.push(format!("retry of an in-doubt multi-append failed: {e}"));
            for a in parts {
                a.state = State::Rejected;
            }
            return false;
        }
    };
    let stored = found.get(&first).copied().flatten().is_some();
    match answer {
        Some(MultiResult::Success(s)) if s.results.len() == parts.len() => {
            for (i, (a, r)) in parts.iter_mut().zip(&s.results).enumerate() {
                let got = (r.next_expected_revision, r.position);
                if let Some(Some(orig)) = found.get(&(first + i)) {
                    if *orig != got {
                        violations.push(format!(
                            "retry of an in-doubt multi-append answered {got:?} for {:?}, \
                             it is stored at {orig:?}",
                            a.stream
                        ));
                    }
                }
                a.state = State::Acked {
                    rev: got.0,
                    pos: got.1,
                };
            }
            if stored {
                totals.in_doubt_found_written += 1;
            } else {
                totals.in_doubt_written_by_retry += 1;
            }
            !stored
        }
        other => {
            violations.push(format!(
                "retry of an in-doubt multi-append answered {other:?}"
            ));
            for a in parts {
                a.state = State::Rejected;
            }
            false
        }
    }
}

// ---------------------------------------------------------------------------
// The test.

struct DataDir {
    dir: tempfile::TempDir,
    data: PathBuf,
    segment_size: u64,
    attempts: Vec<Attempt>,
}

impl DataDir {
    fn data(&self) -> PathBuf {
        self.data.clone()
    }
    fn log(&self) -> PathBuf {
        self.dir.path().join("strata.log")
    }
}

/// What a crash does to the disk under the data directory.
pub trait Disk {
    /// Prepares a new data directory below `dir` (a fresh temporary
    /// directory) and returns its path.
    fn fresh(&mut self, dir: &Path) -> PathBuf;
    /// Runs after every kill of the server: whatever the machine loses in
    /// this kind of crash is lost here.
    fn after_kill(&mut self, dir: &Path);
    /// The data directory below `dir` is no longer needed.
    fn retire(&mut self, dir: &Path);
    /// One line about what the crashes cost so far (printed at the end).
    fn summary(&self) -> String;
}

/// The settings of one crash tier.
pub struct Tier {
    /// Name used in messages and the summary line (`<name> summary: …`).
    pub name: &'static str,
    /// Environment prefix of the settings: `<PREFIX>_ROUNDS`, `_SEED`,
    /// `_ROUNDS_PER_DIR`.
    pub env: &'static str,
    /// Rounds when `<PREFIX>_ROUNDS` is not set.
    pub default_rounds: u64,
}

impl Tier {
    /// `<PREFIX>_SEED`, or one from the clock.
    fn seed(&self) -> u64 {
        env_u64(
            &format!("{}_SEED", self.env),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1),
        )
    }
}

fn fail(dir: DataDir, disk: &mut dyn Disk, violations: &[String], context: &str) -> ! {
    disk.retire(dir.dir.path());
    let log = log_tail(&dir.log());
    let kept = dir.dir.keep();
    let shown: Vec<&String> = violations.iter().take(30).collect();
    panic!(
        "{context}: {} violation(s):\n  {}\ndata directory kept at {}\nserver log tail:\n{log}",
        violations.len(),
        shown
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        kept.display()
    );
}

/// Runs the rounds of a crash tier; panics on the first violation.
pub async fn run(tier: Tier, disk: &mut dyn Disk) {
    let name = tier.name;
    let rounds = env_u64(&format!("{}_ROUNDS", tier.env), tier.default_rounds);
    let per_dir = env_u64(&format!("{}_ROUNDS_PER_DIR", tier.env), 25).max(1);
    let seed = tier.seed();
    println!(
        "{name}: {rounds} rounds, {per_dir} per data directory, {}_SEED={seed}",
        tier.env
    );
    let started = Instant::now();
    let mut rng = Rng(seed);
    let mut totals = Totals::default();
    let mut current: Option<(DataDir, Server, Client)> = None;

    for round in 0..rounds {
        if current.is_none() {
            let tmp = tempfile::tempdir().expect("tempdir");
            let data = disk.fresh(tmp.path());
            let dir = DataDir {
                dir: tmp,
                data,
                segment_size: SEGMENT_SIZES[(totals.data_dirs % 3) as usize],
                attempts: Vec::new(),
            };
            totals.data_dirs += 1;
            let (server, client) = start_server(&dir.data(), &dir.log(), dir.segment_size).await;
            current = Some((dir, server, client));
        }
        let (mut dir, mut server, mut client) = current.take().expect("a running server");

        // Knowledge the appenders start from: the verified log's heads.
        let log = read_log(&mut client).await;
        let mut heads: HashMap<String, u64> = HashMap::new();
        for e in &log {
            heads.insert(e.stream.clone(), e.rev);
        }
        let start_head = log.len() as u64;
        drop(log);

        let live = live_subscriber(&mut client, start_head).await;
        let stop = Arc::new(AtomicBool::new(false));
        let shared: Vec<String> = (0..SHARED_STREAMS).map(|k| format!("shared-{k}")).collect();
        let mut tasks = Vec::new();
        for t in 0..APPENDERS {
            let owned = (0..OWNED_STREAMS)
                .map(|k| {
                    let name = format!("own-{t}-{k}");
                    let head = heads.get(&name).copied();
                    (name, head)
                })
                .collect();
            let appender = Appender {
                client: connect(server.addr).await.expect("appender connects"),
                rng: Rng(rng.next()),
                owned,
                shared: shared.clone(),
                shared_seen: HashMap::new(),
                stop: stop.clone(),
            };
            tasks.push(tokio::spawn(run_appender(appender)));
        }

        // Let the load run, then pull the plug.
        let load = Duration::from_millis(rng.range(20, 300));
        tokio::time::sleep(load).await;
        kill9(&mut server);
        disk.after_kill(dir.dir.path());
        stop.store(true, Ordering::Relaxed);
        let mut violations = Vec::new();
        for t in tasks {
            let report = tokio::time::timeout(PATIENCE, t)
                .await
                .expect("appender stops after the kill")
                .expect("appender task");
            violations.extend(report.violations);
            totals.idempotent_retries += report.idempotent_retries;
            totals.multi_appends_sent += report.multi_appends;
            dir.attempts.extend(report.attempts);
        }
        let seen = tokio::time::timeout(PATIENCE, live)
            .await
            .expect("live subscriber ends after the kill")
            .expect("live subscriber task");

        // Sometimes crash the recovery itself before the real restart.
        if rng.chance(10) {
            let mut s = spawn_server(&dir.data(), &dir.log(), dir.segment_size);
            tokio::time::sleep(Duration::from_millis(rng.range(0, 40))).await;
            kill9(&mut s);
            disk.after_kill(dir.dir.path());
            totals.recovery_kills += 1;
        }
        let (new_server, new_client) =
            start_server(&dir.data(), &dir.log(), dir.segment_size).await;
        server = new_server;
        client = new_client;

        let head = head_position(&mut client).await;
        let log = read_log(&mut client).await;
        let found = check_log(
            &dir.attempts,
            &log,
            head,
            &mut violations,
            &mut totals.lost_events,
        );
        check_live(&seen, start_head, &log, &mut violations);
        totals.live_events_checked += seen.len() as u64;
        totals.in_doubt += found.len() as u64;
        let wrote = retry_in_doubt(
            &mut client,
            &mut dir.attempts,
            &found,
            &mut rng,
            &mut totals,
            &mut violations,
        )
        .await;
        let log = if wrote {
            // Exactly one copy of everything, retries included.
            let head = head_position(&mut client).await;
            let log = read_log(&mut client).await;
            let again = check_log(
                &dir.attempts,
                &log,
                head,
                &mut violations,
                &mut totals.lost_events,
            );
            if !again.is_empty() {
                violations.push(format!(
                    "{} appends still in doubt after retry",
                    again.len()
                ));
            }
            log
        } else {
            log
        };
        check_subscription_from_start(&mut client, &log, &mut violations).await;
        if !violations.is_empty() {
            let _ = server.child.kill();
            let _ = server.child.wait();
            fail(
                dir,
                disk,
                &violations,
                &format!("round {round} (seed {seed}, {load:?} of load)"),
            );
        }
        // Only settled attempts remain: the events of rejected ones are
        // checked as absent forever, acknowledged ones as present.
        totals.rounds += 1;

        if (round + 1) % per_dir == 0 || round + 1 == rounds {
            stop_gracefully(&mut server, &dir.log());
            offline_verify(&dir.data());
            disk.retire(dir.dir.path());
            let (appends, events, rejected) = tally(&dir.attempts);
            totals.acked_appends += appends;
            totals.acked_events += events;
            totals.rejected_appends += rejected;
            println!(
                "{name}: {} rounds done, {} events acknowledged, {} lost, {:.0}s",
                totals.rounds,
                totals.acked_events,
                totals.lost_events,
                started.elapsed().as_secs_f64()
            );
        } else {
            current = Some((dir, server, client));
        }
    }

    let elapsed = started.elapsed();
    println!("{name}: {totals:#?}");
    println!("{name}: {}", disk.summary());
    println!(
        "{name} summary: rounds={} acknowledged_appends={} acknowledged_events={} \
         in_doubt={} lost={} elapsed={:.1}s seed={seed}",
        totals.rounds,
        totals.acked_appends,
        totals.acked_events,
        totals.in_doubt,
        totals.lost_events,
        elapsed.as_secs_f64()
    );
    assert_eq!(totals.lost_events, 0);
}

/// Acknowledged appends, their events, and rejected appends.
fn tally(attempts: &[Attempt]) -> (u64, u64, u64) {
    let mut out = (0, 0, 0);
    for a in attempts {
        match a.state {
            State::Acked { .. } => {
                out.0 += 1;
                out.1 += a.ids.len() as u64;
            }
            State::Rejected => out.2 += 1,
            State::InDoubt(_) => {}
        }
    }
    out
}
