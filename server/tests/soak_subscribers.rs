//! Load tier: 1,000 concurrent subscribers on a handful of HTTP/2
//! connections, plus writers, against the real `strata` binary on loopback.
//!
//! Subscribers follow `$all` (most of them), a filtered `$all`, or one
//! stream; some join half-way and catch up under load. Every subscriber
//! checks order as it goes (dense positions, contiguous revisions, only
//! matching events). At the end every subscriber must hold exactly every
//! event it should, none may have been dropped, and the server's resident
//! memory (VmRSS, sampled all along) must stay bounded.
//!
//! `STRATA_SOAK_SECS` sets how long the writers run (default 15),
//! `STRATA_SOAK_SUBSCRIBERS` the number of subscribers (default 1000).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata_proto::v1;
use strata_proto::v1::streams_client::StreamsClient;
use strata_proto::v1::subscribe_response::Content;
use tonic::transport::{Channel, Endpoint};

type Client = StreamsClient<Channel>;

/// HTTP/2 connections the subscribers share.
const CONNECTIONS: usize = 10;
/// Writers, each on its own stream `soak-{w}`.
const WRITERS: usize = 4;
/// Subscribers that join half-way through.
const LATE: usize = 50;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

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
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn_server(data: &Path, log: &Path) -> Server {
    let addr = free_addr();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    for (k, _) in std::env::vars() {
        if k.starts_with("STRATA_") {
            cmd.env_remove(k);
        }
    }
    let child = cmd
        .arg("--data-dir")
        .arg(data)
        .args(["--listen", &addr.to_string()])
        .args(["--metrics-listen", &free_addr().to_string()])
        .args(["--log", "warn"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"))
        .spawn()
        .expect("spawn strata");
    Server { child, addr }
}

async fn connect(addr: SocketAddr) -> Client {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(ch) = endpoint.connect().await {
            let mut c = StreamsClient::new(ch);
            if c.stats(v1::StatsRequest {}).await.is_ok() {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "strata did not come up");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Resident memory of a process, in bytes.
fn vm_rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

#[derive(Clone, Debug)]
enum Kind {
    All,
    /// `$all` filtered on a stream-name prefix.
    Filtered(String),
    Stream(String),
}

struct Progress {
    received: AtomicU64,
    caught_up: AtomicBool,
    failed: std::sync::Mutex<Option<String>>,
}

async fn subscriber(mut client: Client, kind: Kind, progress: Arc<Progress>) {
    let req = match &kind {
        Kind::All => v1::SubscribeRequest {
            target: Some(v1::subscribe_request::Target::All(v1::AllTarget {})),
            from: Some(v1::SubscribeFrom::start()),
            filter: None,
        },
        Kind::Filtered(prefix) => v1::SubscribeRequest {
            target: Some(v1::subscribe_request::Target::All(v1::AllTarget {})),
            from: None,
            filter: Some(v1::Filter {
                stream_prefix: vec![prefix.clone()],
                event_type_prefix: vec![],
            }),
        },
        Kind::Stream(name) => v1::SubscribeRequest {
            target: Some(v1::subscribe_request::Target::Stream(name.clone())),
            from: Some(v1::SubscribeFrom::start()),
            filter: None,
        },
    };
    let fail = |why: String| {
        *progress.failed.lock().expect("progress") = Some(why);
    };
    let mut stream = match client.subscribe(req).await {
        Ok(s) => s.into_inner(),
        Err(e) => return fail(format!("subscribe failed: {e}")),
    };
    let mut next_position = 0u64;
    let mut next_revision = 0u64;
    loop {
        let m = match stream.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return fail("the subscription ended".into()),
            Err(e) => return fail(format!("the subscription failed: {e}")),
        };
        match m.content {
            Some(Content::Events(b)) => {
                for e in &b.events {
                    let ok = match &kind {
                        Kind::All => e.position == next_position,
                        Kind::Filtered(p) => e.position >= next_position && e.stream.starts_with(p),
                        Kind::Stream(name) => e.stream == *name && e.revision == next_revision,
                    };
                    if !ok {
                        return fail(format!(
                            "{kind:?}: got {}@{} (position {}) after position {next_position}, \
                             revision {next_revision}",
                            e.stream, e.revision, e.position
                        ));
                    }
                    next_position = e.position + 1;
                    next_revision = e.revision + 1;
                }
                progress
                    .received
                    .fetch_add(b.events.len() as u64, Ordering::Relaxed);
            }
            Some(Content::CaughtUp(_)) => progress.caught_up.store(true, Ordering::Relaxed),
            Some(Content::Checkpoint(c)) => {
                // The last position scanned: at or past the last delivered.
                if c.position + 1 < next_position {
                    return fail(format!("checkpoint {} went backwards", c.position));
                }
            }
            None => return fail("a message without content".into()),
        }
    }
}

fn kind_of(i: usize) -> Kind {
    match i % 10 {
        0 | 1 => Kind::Stream(format!("soak-{}", i % WRITERS)),
        2 | 3 => Kind::Filtered(format!("soak-{}", i % WRITERS)),
        _ => Kind::All,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_get_every_event() {
    let secs = env_u64("STRATA_SOAK_SECS", 15);
    let total = env_u64("STRATA_SOAK_SUBSCRIBERS", 1000) as usize;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("strata.log");
    let server = spawn_server(&dir.path().join("data"), &log);
    let pid = server.child.id();
    let mut client = connect(server.addr).await;
    let mut conns = Vec::new();
    for _ in 0..CONNECTIONS {
        conns.push(connect(server.addr).await);
    }
    let rss_idle = vm_rss(pid);

    // Subscribers: all but the late ones now.
    let started = Instant::now();
    let mut subs: Vec<(Kind, Arc<Progress>, tokio::task::JoinHandle<()>)> = Vec::new();
    let spawn_sub = |i: usize, subs: &mut Vec<_>| {
        let kind = kind_of(i);
        let p = Arc::new(Progress {
            received: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
            failed: std::sync::Mutex::new(None),
        });
        let h = tokio::spawn(subscriber(
            conns[i % CONNECTIONS].clone(),
            kind.clone(),
            p.clone(),
        ));
        subs.push((kind, p, h));
    };
    let early = total.saturating_sub(LATE);
    for i in 0..early {
        spawn_sub(i, &mut subs);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while subs
        .iter()
        .any(|(_, p, _)| !p.caught_up.load(Ordering::Relaxed))
    {
        if let Some((k, p, _)) = subs
            .iter()
            .find(|(_, p, _)| p.failed.lock().expect("p").is_some())
        {
            panic!("{k:?}: {:?}", p.failed.lock().expect("p"));
        }
        assert!(
            Instant::now() < deadline,
            "subscribers did not all catch up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let setup = started.elapsed();
    let rss_subscribed = vm_rss(pid);

    // Writers and a memory sampler.
    let stop = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(AtomicU64::new(rss_subscribed));
    let sampler = {
        let (stop, peak) = (stop.clone(), peak.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                peak.fetch_max(vm_rss(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let mut c = connect(server.addr).await;
        let stop = stop.clone();
        writers.push(tokio::spawn(async move {
            let mut appended = 0u64;
            let mut appends = 0u64;
            let mut slowest = Duration::ZERO;
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = 1 + (i % 8);
                let events = (0..n)
                    .map(|k| v1::EventData {
                        id: Some(v1::Uuid::from_bytes_raw(*uuid::Uuid::new_v4().as_bytes())),
                        r#type: format!("Soak{}", k % 3),
                        data: vec![(i + k) as u8; 200 + ((i * 31 + k) % 800) as usize].into(),
                        metadata: vec![].into(),
                        content_type: None,
                    })
                    .collect();
                let req = v1::AppendRequest {
                    stream: format!("soak-{w}"),
                    expected: Some(v1::ExpectedVersion::any()),
                    events,
                };
                let t = Instant::now();
                c.append(req).await.expect("append during the soak");
                slowest = slowest.max(t.elapsed());
                appends += 1;
                appended += n;
                i += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (appended, appends, slowest)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs / 2)).await;
    for i in early..total {
        spawn_sub(i, &mut subs);
    }
    tokio::time::sleep(Duration::from_secs(secs - secs / 2)).await;
    stop.store(true, Ordering::Relaxed);
    let (mut written, mut appends, mut slowest) = (0, 0, Duration::ZERO);
    for w in writers {
        let (events, n, slow) = w.await.expect("writer");
        written += events;
        appends += n;
        slowest = slowest.max(slow);
    }
    sampler.await.expect("sampler");

    // What each subscriber must end with.
    let head = client
        .stats(v1::StatsRequest {})
        .await
        .expect("stats")
        .into_inner()
        .head_position;
    assert_eq!(head, written, "every acknowledged event is in the log");
    let mut counts = [0u64; WRITERS];
    {
        let req = v1::ReadRequest {
            target: Some(v1::read_request::Target::All(v1::AllTarget {})),
            direction: 0,
            from: Some(v1::ReadFrom::start()),
            max_count: 0,
            filter: None,
        };
        let mut s = client.read(req).await.expect("read").into_inner();
        while let Some(b) = s.message().await.expect("read") {
            for e in b.events {
                let w: usize = e
                    .stream
                    .strip_prefix("soak-")
                    .and_then(|n| n.parse().ok())
                    .expect("a soak stream");
                counts[w] += 1;
            }
        }
    }
    let expected = |k: &Kind| match k {
        Kind::All => head,
        Kind::Filtered(p) | Kind::Stream(p) => {
            counts[p.trim_start_matches("soak-").parse::<usize>().expect("w")]
        }
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let behind = subs
            .iter()
            .filter(|(k, p, _)| p.received.load(Ordering::Relaxed) < expected(k))
            .count();
        let failed: Vec<String> = subs
            .iter()
            .filter_map(|(_, p, _)| p.failed.lock().expect("p").clone())
            .collect();
        assert!(
            failed.is_empty(),
            "{} subscriber(s) failed or were dropped, e.g. {}",
            failed.len(),
            failed[0]
        );
        if behind == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{behind} subscriber(s) did not get every event"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Nobody got more than it should, then or a moment later.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (k, p, _) in &subs {
        assert_eq!(p.received.load(Ordering::Relaxed), expected(k), "{k:?}");
    }
    let rss_end = vm_rss(pid);
    let peak = peak.load(Ordering::Relaxed);
    println!(
        "soak: {} subscribers on {CONNECTIONS} connections ({LATE} late), {WRITERS} writers \
         for {secs}s: {written} events in {appends} appends (slowest {slowest:?}), {} event \
         deliveries; set-up {:.1}s; server VmRSS idle {} MiB, subscribed {} MiB, peak {} MiB, end {} MiB",
        subs.len(),
        subs.iter()
            .map(|(_, p, _)| p.received.load(Ordering::Relaxed))
            .sum::<u64>(),
        setup.as_secs_f64(),
        rss_idle >> 20,
        rss_subscribed >> 20,
        peak >> 20,
        rss_end >> 20
    );
    assert!(
        slowest < Duration::from_secs(10),
        "an append took {slowest:?} under the subscribers' load"
    );
    assert!(
        peak < rss_subscribed + (256 << 20),
        "the server grew from {} MiB to {} MiB under load",
        rss_subscribed >> 20,
        peak >> 20
    );
    for (_, _, h) in subs {
        h.abort();
    }
    drop(server);
}
