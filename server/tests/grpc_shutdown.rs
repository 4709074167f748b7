//! The real `strata` binary: health, reflection and metrics as deployed,
//! and a SIGTERM under load — exit code 0, open subscriptions end with
//! UNAVAILABLE, and after a restart on the same data directory every
//! acknowledged append is there at the position it was acknowledged with.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use strata_proto::v1;
use strata_proto::v1::subscribe_response::Content;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A running `strata` process.
struct Binary {
    child: Child,
    addr: SocketAddr,
    metrics: SocketAddr,
    log: PathBuf,
}

impl Binary {
    /// Starts `strata` on free loopback ports over `data_dir` and waits
    /// until its health check says SERVING.
    async fn start(data_dir: &Path, log: PathBuf) -> Binary {
        let addr = free_addr();
        let metrics = free_addr();
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--metrics-listen")
            .arg(metrics.to_string())
            .env("STRATA_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn strata");
        let mut bin = Binary {
            child,
            addr,
            metrics,
            log,
        };
        bin.wait_serving().await;
        bin
    }

    async fn channel(&self) -> Channel {
        Endpoint::from_shared(format!("http://{}", self.addr))
            .expect("endpoint")
            .connect()
            .await
            .expect("connect")
    }

    async fn wait_serving(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("strata exited early ({status}):\n{}", self.log_text());
            }
            if let Ok(channel) = Endpoint::from_shared(format!("http://{}", self.addr))
                .expect("endpoint")
                .connect()
                .await
            {
                let status = HealthClient::new(channel)
                    .check(HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if matches!(&status, Ok(r) if r.get_ref().status == ServingStatus::Serving as i32) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "strata not serving after 30 s:\n{}",
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Waits for the process to exit, at most 30 s.
    async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            if tokio::time::Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("strata did not exit within 30 s:\n{}", self.log_text());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGTERM, then expects a clean exit.
    async fn stop(mut self) {
        self.sigterm();
        let status = self.wait_exit().await;
        assert_eq!(
            status.code(),
            Some(0),
            "strata exited with {status}:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        // Only after a failed test: never leave a server behind.
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A loopback address with a port that was free a moment ago.
fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("address")
}

/// `GET path` over a plain TCP connection: (status line, body).
fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).expect("connect to metrics");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send request");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a header/body split");
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, body.to_owned())
}

async fn reflection_services_v1(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let req = |m| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(m),
    };
    let requests = tokio_stream::iter(vec![
        req(MessageRequest::ListServices(String::new())),
        req(MessageRequest::FileContainingSymbol(
            "strata.v1.Streams".into(),
        )),
    ]);
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(requests)
        .await
        .expect("reflection call")
        .into_inner();
    let mut services = Vec::new();
    let mut files = 0;
    while let Some(r) = responses.message().await.expect("reflection response") {
        match r.message_response.expect("a response") {
            MessageResponse::ListServicesResponse(l) => {
                services.extend(l.service.into_iter().map(|s| s.name));
            }
            MessageResponse::FileDescriptorResponse(f) => {
                files += f.file_descriptor_proto.len();
            }
            other => panic!("unexpected reflection answer {other:?}"),
        }
    }
    assert!(files > 0, "no descriptor for strata.v1.Streams");
    services
}

async fn reflection_services_v1alpha(channel: Channel) -> Vec<String> {
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
    let requests = tokio_stream::iter(vec![ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }]);
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(requests)
        .await
        .expect("reflection call")
        .into_inner();
    let mut services = Vec::new();
    while let Some(r) = responses.message().await.expect("reflection response") {
        if let Some(MessageResponse::ListServicesResponse(l)) = r.message_response {
            services.extend(l.service.into_iter().map(|s| s.name));
        }
    }
    services
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_serves_health_reflection_and_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = Binary::start(&dir.path().join("data"), dir.path().join("strata.log")).await;
    let channel = bin.channel().await;

    let mut health = HealthClient::new(channel.clone());
    for service in ["", "strata.v1.Streams"] {
        let r = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("health {service:?}: {e}"));
        assert_eq!(
            r.get_ref().status,
            ServingStatus::Serving as i32,
            "health of {service:?}"
        );
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await;
    assert_eq!(
        unknown.map(|r| r.into_inner().status).map_err(|s| s.code()),
        Err(Code::NotFound)
    );

    for (version, services) in [
        ("v1", reflection_services_v1(channel.clone()).await),
        (
            "v1alpha",
            reflection_services_v1alpha(channel.clone()).await,
        ),
    ] {
        for wanted in ["strata.v1.Streams", "grpc.health.v1.Health"] {
            assert!(
                services.iter().any(|s| s == wanted),
                "reflection {version} does not list {wanted}: {services:?}"
            );
        }
    }

    let mut client = v1::streams_client::StreamsClient::new(channel);
    append_ok(
        &mut client,
        "metered",
        v1::ExpectedVersion::no_stream(),
        events(3, "T", "m"),
    )
    .await;
    // The writer updates its metrics just after it answers the batch, so
    // the gauge may trail the acknowledgement by a moment.
    let metrics = bin.metrics;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = tokio::task::spawn_blocking(move || http_get(metrics, "/metrics"))
            .await
            .expect("metrics task");
        assert!(status.starts_with("HTTP/1.1 200"), "status line {status:?}");
        assert!(
            body.contains("# TYPE strata_head_position gauge"),
            "no strata_head_position in:\n{body}"
        );
        if body.lines().any(|l| l == "strata_head_position 3") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "strata_head_position is not 3 after 5 s:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = tokio::task::spawn_blocking(move || http_get(metrics, "/nope"))
        .await
        .expect("metrics task");
    assert!(status.starts_with("HTTP/1.1 404"), "status line {status:?}");

    bin.stop().await;
}

/// One acknowledged append.
#[derive(Debug, Clone)]
struct Acked {
    stream: String,
    last_revision: u64,
    last_position: u64,
    ids: Vec<[u8; 16]>,
}

/// Appends until the server goes away (or a bounded count); returns what
/// was acknowledged and the error that ended it.
async fn appender(
    channel: Channel,
    k: usize,
    started: Arc<AtomicBool>,
) -> (Vec<Acked>, Option<tonic::Status>) {
    let mut c = v1::streams_client::StreamsClient::new(channel);
    let stream = format!("load-{k}");
    let mut acked = Vec::new();
    let mut expected = v1::ExpectedVersion::no_stream();
    for i in 0..5_000 {
        let evs = events(1 + i % 2, "Loaded", &format!("{stream}-{i}"));
        let ids: Vec<[u8; 16]> = evs
            .iter()
            .map(|e| e.id.as_ref().expect("id").to_bytes().expect("valid"))
            .collect();
        match c.append(append_req(&stream, expected, evs)).await {
            Ok(r) => {
                let (rev, pos) = success(&r.into_inner().result.expect("result"));
                expected = v1::ExpectedVersion::exact(rev);
                acked.push(Acked {
                    stream: stream.clone(),
                    last_revision: rev,
                    last_position: pos,
                    ids,
                });
                started.store(true, Ordering::Relaxed);
            }
            Err(status) => return (acked, Some(status)),
        }
    }
    (acked, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_under_load_exits_cleanly_and_keeps_every_acknowledged_append() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let mut bin = Binary::start(&data, dir.path().join("first.log")).await;

    let mut client = v1::streams_client::StreamsClient::new(bin.channel().await);
    let mut sub = Sub::open(&mut client, sub_req(all_target(), None, None)).await;
    let (none, at) = sub.until_caught_up().await;
    assert!(none.is_empty() && at.position.is_none(), "a fresh store");

    let started = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for k in 0..4 {
        // Each appender on its own connection, as separate clients would be.
        let channel = bin.channel().await;
        tasks.push(tokio::spawn(appender(channel, k, started.clone())));
    }
    // Let the load run for a moment, then stop the server under it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !started.load(Ordering::Relaxed) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no append succeeded"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    bin.sigterm();

    // The open subscription ends with UNAVAILABLE, after the events it got.
    let mut seen = Vec::new();
    let ended = loop {
        match sub.raw_next(Duration::from_secs(30)).await {
            None => panic!("the subscription did not end after SIGTERM"),
            Some(Ok(Some(m))) => match m.content.expect("content") {
                Content::Events(b) => seen.extend(b.events),
                other => panic!("unexpected {other:?}"),
            },
            Some(Ok(None)) => panic!("the subscription ended without a status"),
            Some(Err(status)) => break status,
        }
    };
    assert_code(&ended, Code::Unavailable, "subscription at shutdown");

    let status = bin.wait_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}:\n{}",
        bin.log_text()
    );

    let mut acked = Vec::new();
    for t in tasks {
        let (a, err) = t.await.expect("appender");
        let err = err.expect("an appender outlived the server");
        // Answered while the server stopped, or refused afterwards: both say
        // UNAVAILABLE. The only other ending allowed is the client's own
        // "canceled": hyper had queued the request on a connection the server
        // closed, so it was never sent.
        let unsent =
            err.code() == Code::Cancelled && err.message().contains("operation was canceled");
        if !unsent {
            assert_code(&err, Code::Unavailable, "append during shutdown");
        }
        acked.extend(a);
    }
    assert!(acked.len() >= 4, "too little load: {} appends", acked.len());
    let first_log = bin.log_text();
    drop(bin);

    // Restart on the same data directory.
    let bin = Binary::start(&data, dir.path().join("second.log")).await;
    let mut client = v1::streams_client::StreamsClient::new(bin.channel().await)
        .max_decoding_message_size(64 << 20);
    let all = read_all(&mut client).await;
    let head = all.len() as u64;
    assert_eq!(
        positions(&all),
        (0..head).collect::<Vec<_>>(),
        "positions are dense after the restart"
    );
    let acked_events: usize = acked.iter().map(|a| a.ids.len()).sum();
    assert!(
        head as usize >= acked_events,
        "{head} events stored, {acked_events} acknowledged\nfirst run:\n{first_log}"
    );
    for a in &acked {
        let n = a.ids.len() as u64;
        for (i, id) in a.ids.iter().enumerate() {
            let i = i as u64;
            let pos = a.last_position + 1 - n + i;
            let e = all
                .get(pos as usize)
                .unwrap_or_else(|| panic!("acknowledged position {pos} is missing"));
            assert_eq!(
                (&e.stream, e.revision, id_bytes(e)),
                (&a.stream, a.last_revision + 1 - n + i, *id),
                "acknowledged event at position {pos}"
            );
        }
    }
    // What the subscription saw before shutdown is what the log holds.
    assert_eq!(positions(&seen), (0..seen.len() as u64).collect::<Vec<_>>());
    for e in &seen {
        assert_eq!(e, &all[e.position as usize], "subscription vs log");
    }
    // The restarted server appends after everything that was kept.
    let (_, pos) = append_ok(
        &mut client,
        "after-restart",
        v1::ExpectedVersion::no_stream(),
        events(1, "T", "r"),
    )
    .await;
    assert_eq!(pos, head);
    bin.stop().await;

    let verify = Command::new(env!("CARGO_BIN_EXE_strata"))
        .arg("verify")
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run strata verify");
    assert!(
        verify.status.success(),
        "strata verify failed:\n{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
