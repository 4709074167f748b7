//! Strata as a system under test: a gRPC client over `strata_proto`, and
//! launchers that start the `strata` binary on a data directory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use strata_proto::v1::{
    self, append_response, multi_append_response, pipelined_append_response, read_request,
    streams_client::StreamsClient, subscribe_request, subscribe_response,
};
use tokio::sync::mpsc;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use super::{AppendResult, Expect, FollowFrom, MultiResult};
use crate::cli::Durability;
use crate::clock::{self, stamp_of};
use crate::error::{BenchError, Result};

const SYSTEM: &str = "strata";
/// The type of every event the driver writes.
pub const EVENT_TYPE: &str = "BenchEvent";

/// `--tls`: spawned servers serve TLS with authentication on, and every
/// client connects over TLS as the admin.
#[derive(Clone, Debug)]
pub struct TlsSetup {
    /// The CA that signed the server's certificate (PEM).
    pub ca: Vec<u8>,
    /// The server's certificate and key files.
    pub cert: PathBuf,
    /// The key of `cert`.
    pub key: PathBuf,
    /// The admin's password (the first admin of every spawned server).
    pub password: String,
}

static TLS: std::sync::OnceLock<TlsSetup> = std::sync::OnceLock::new();

impl TlsSetup {
    /// Makes a CA and a certificate for 127.0.0.1 with `openssl` in `dir`.
    pub fn generate(dir: &Path) -> Result<TlsSetup> {
        let run = |args: &[&str]| -> Result<()> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .map_err(|e| BenchError::io("running openssl", dir, e))?;
            if !out.status.success() {
                return Err(BenchError::Config(format!(
                    "openssl {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                )));
            }
            Ok(())
        };
        std::fs::write(
            dir.join("san.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .map_err(|e| BenchError::io("writing", dir, e))?;
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=strata-bench CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ])?;
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])?;
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ])?;
        let ca = std::fs::read(dir.join("ca.crt"))
            .map_err(|e| BenchError::io("reading the CA", dir, e))?;
        Ok(TlsSetup {
            ca,
            cert: dir.join("server.crt"),
            key: dir.join("server.key"),
            password: format!("bench-{}", uuid::Uuid::new_v4().simple()),
        })
    }

    /// Makes this the setup of every launch and connection of this run.
    pub fn install(self) -> Result<()> {
        TLS.set(self)
            .map_err(|_| BenchError::Config("TLS is set up twice".into()))
    }
}

/// Sets `authorization` on every call when `--tls` is on.
#[derive(Clone)]
pub struct AuthHeader(Option<std::sync::Arc<MetadataValue<Ascii>>>);

impl tonic::service::Interceptor for AuthHeader {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> std::result::Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", MetadataValue::clone(v));
        }
        Ok(request)
    }
}

/// A connection whose calls carry the credentials of the run.
pub type Transport = InterceptedService<Channel, AuthHeader>;

/// One client of Strata; clones share the HTTP/2 connection.
#[derive(Clone)]
pub struct StrataClient {
    inner: StreamsClient<Transport>,
    /// For the consumer-group calls (boxed: the client enum stays small).
    channel: std::sync::Arc<Transport>,
}

/// Asks the server's health service about the whole server over
/// `channel`; anything but SERVING is an error.
pub async fn health_check(channel: &Transport) -> Result<()> {
    use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};
    let status = HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner()
        .status();
    if status != ServingStatus::Serving {
        return Err(BenchError::server(
            SYSTEM,
            format!("health check answered {status:?}"),
        ));
    }
    Ok(())
}

/// Opens one HTTP/2 connection to `url`.
pub async fn connect(url: &str) -> Result<StrataClient> {
    let channel = transport(url).await?;
    let inner = StreamsClient::new(channel.clone())
        .max_decoding_message_size(64 << 20)
        .max_encoding_message_size(64 << 20);
    Ok(StrataClient {
        inner,
        channel: std::sync::Arc::new(channel),
    })
}

/// Opens one HTTP/2 connection to `url` whose calls carry the run's
/// credentials: TLS with the run's CA and the admin's `Basic` header when
/// `--tls` is on. Shared by the native and the KurrentDB clients, so both
/// connect exactly alike.
pub async fn transport(url: &str) -> Result<Transport> {
    // The same window sizes UmaDB's client sets, so reads are not throttled by
    // HTTP/2 flow control on either side of the comparison.
    let mut endpoint = Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 << 20))
        .initial_connection_window_size(Some(8 << 20));
    let mut header = AuthHeader(None);
    if let Some(tls) = TLS.get() {
        endpoint = endpoint.tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(&tls.ca))
                .domain_name("localhost"),
        )?;
        use base64::Engine as _;
        let token =
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{}", tls.password));
        let value: MetadataValue<Ascii> = format!("Basic {token}")
            .parse()
            .map_err(|_| BenchError::Config("credentials are not ASCII".into()))?;
        header = AuthHeader(Some(std::sync::Arc::new(value)));
    }
    Ok(InterceptedService::new(endpoint.connect().await?, header))
}

impl StrataClient {
    /// Creates a consumer group on `$all` for the streams starting with
    /// `prefix`, from what is committed after now.
    pub async fn create_group(&self, prefix: &str, group: &str) -> Result<()> {
        use strata_proto::v1::persistent_subscriptions_client::PersistentSubscriptionsClient;
        let mut g = PersistentSubscriptionsClient::new((*self.channel).clone());
        g.create(v1::CreatePersistentSubscriptionRequest {
            target: Some(v1::PersistentTarget::all()),
            group: group.into(),
            settings: Some(v1::PersistentSettings {
                from: Some(v1::PersistentFrom {
                    kind: Some(v1::persistent_from::Kind::End(())),
                }),
                filter: Some(v1::Filter {
                    stream_prefix: vec![prefix.to_owned()],
                    event_type_prefix: Vec::new(),
                }),
                ..Default::default()
            }),
        })
        .await?;
        Ok(())
    }

    /// Joins `group` with `buffer` and, until `deadline`, hands each
    /// event's stamp to `on_event`, waits `handler`, and acknowledges it.
    pub async fn consume_group(
        &self,
        group: &str,
        buffer: u32,
        handler: std::time::Duration,
        deadline: Instant,
        on_event: &mut (dyn FnMut(u64) + Send),
    ) -> Result<()> {
        use strata_proto::v1::persistent_read_request::Kind as ReadKind;
        use strata_proto::v1::persistent_read_response::Kind as Answer;
        use strata_proto::v1::persistent_subscriptions_client::PersistentSubscriptionsClient;
        let mut g = PersistentSubscriptionsClient::new((*self.channel).clone());
        let (tx, rx) = mpsc::channel(buffer as usize + 1);
        let options = v1::PersistentReadRequest {
            kind: Some(ReadKind::Options(v1::PersistentReadOptions {
                target: Some(v1::PersistentTarget::all()),
                group: group.into(),
                buffer_size: buffer,
                consumer_name: String::new(),
            })),
        };
        let _ = tx.send(options).await;
        let outgoing =
            futures_util::stream::unfold(
                rx,
                |mut rx| async move { rx.recv().await.map(|m| (m, rx)) },
            );
        let mut answers = g.read(outgoing).await?.into_inner();
        let until = tokio::time::Instant::from_std(deadline);
        // A ready message wins over an expired timeout: check the clock too.
        while Instant::now() < deadline {
            let Ok(m) = tokio::time::timeout_at(until, answers.message()).await else {
                return Ok(());
            };
            let Some(m) = m? else { return Ok(()) };
            let Some(Answer::Event(e)) = m.kind else {
                continue;
            };
            let Some(event) = e.event else { continue };
            on_event(stamp_of(&event.data).unwrap_or(0));
            if !handler.is_zero() {
                tokio::time::sleep(handler).await;
            }
            let ack = v1::PersistentReadRequest {
                kind: Some(ReadKind::Ack(v1::PersistentAck {
                    positions: vec![event.position],
                })),
            };
            if tx.send(ack).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Appends `events` stamped payloads of `payload` bytes to `stream`.
    pub async fn append(
        &self,
        stream: &str,
        expect: Expect,
        events: usize,
        payload: usize,
    ) -> Result<AppendResult> {
        let request = append_request(stream, expect, events, payload);
        let response = self.inner.clone().append(request).await?.into_inner();
        append_result(response)
    }

    /// One `MultiAppend` of 1 event to each of `streams`, each expecting
    /// what `expects` says (same order), in one atomic write.
    pub async fn multi_append(
        &self,
        streams: &[String],
        expects: &[Expect],
        payload: usize,
    ) -> Result<MultiResult> {
        let request = v1::MultiAppendRequest {
            appends: streams
                .iter()
                .zip(expects)
                .map(|(stream, expect)| append_request(stream, *expect, 1, payload))
                .collect(),
            checks: Vec::new(),
        };
        let response = self.inner.clone().multi_append(request).await?.into_inner();
        match response.result {
            Some(multi_append_response::Result::Success(s)) => Ok(MultiResult::Ok(
                s.results
                    .iter()
                    .map(|r| Expect {
                        revision: Some(r.next_expected_revision),
                        position: Some(r.position),
                    })
                    .collect(),
            )),
            Some(multi_append_response::Result::WrongExpectedVersion(w)) => {
                let conflicts: Vec<String> = w
                    .conflicts
                    .iter()
                    .map(|c| format!("{} at {:?}", c.stream, c.current_revision))
                    .collect();
                Ok(MultiResult::Conflict(conflicts.join(", ")))
            }
            None => Err(BenchError::server(
                SYSTEM,
                "multi-append answered with no result",
            )),
        }
    }

    /// Reads up to `count` events of `$all` from `from`; reports each batch.
    pub async fn read_all(
        &self,
        from: u64,
        count: u64,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<u64> {
        let request = v1::ReadRequest {
            target: Some(read_request::Target::All(v1::AllTarget {})),
            direction: v1::Direction::Forwards as i32,
            from: Some(v1::ReadFrom::position(from)),
            max_count: count,
            filter: None,
        };
        self.read(request, progress).await
    }

    /// Reads a whole stream.
    pub async fn read_stream(&self, stream: &str) -> Result<u64> {
        let request = v1::ReadRequest {
            target: Some(read_request::Target::Stream(stream.to_owned())),
            direction: v1::Direction::Forwards as i32,
            from: Some(v1::ReadFrom::start()),
            max_count: 0,
            filter: None,
        };
        self.read(request, &mut |_| {}).await
    }

    async fn read(
        &self,
        request: v1::ReadRequest,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<u64> {
        let mut stream = self.inner.clone().read(request).await?.into_inner();
        let mut total = 0u64;
        while let Some(batch) = stream.message().await? {
            total += batch.events.len() as u64;
            progress(batch.events.len());
        }
        Ok(total)
    }

    /// One gRPC health Check: a call that touches no storage.
    pub async fn ping(&self) -> Result<()> {
        health_check(&self.channel).await
    }

    /// Number of events in `$all`.
    pub async fn head(&self) -> Result<u64> {
        Ok(self
            .inner
            .clone()
            .stats(v1::StatsRequest {})
            .await?
            .into_inner()
            .head_position)
    }

    /// Follows `$all` until `deadline` or until `on_batch` returns false.
    /// `on_batch` gets the send stamps of a delivered batch.
    pub async fn follow_all(
        &self,
        from: FollowFrom,
        deadline: Instant,
        on_batch: &mut (dyn FnMut(&[u64]) -> bool + Send),
    ) -> Result<()> {
        let request = v1::SubscribeRequest {
            target: Some(subscribe_request::Target::All(v1::AllTarget {})),
            from: Some(match from {
                FollowFrom::Start => v1::SubscribeFrom::start(),
                FollowFrom::Now => v1::SubscribeFrom::end(),
            }),
            filter: None,
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        let call = tokio::time::timeout_at(deadline, self.inner.clone().subscribe(request)).await;
        let Ok(response) = call else { return Ok(()) };
        let mut stream = response?.into_inner();
        let mut stamps = Vec::new();
        loop {
            let Ok(message) = tokio::time::timeout_at(deadline, stream.message()).await else {
                return Ok(());
            };
            let Some(message) = message? else {
                return Ok(());
            };
            if let Some(subscribe_response::Content::Events(batch)) = message.content {
                stamps.clear();
                stamps.extend(batch.events.iter().map(|e| stamp_of(&e.data).unwrap_or(0)));
                if !on_batch(&stamps) {
                    return Ok(());
                }
            }
        }
    }
}

/// An `Append` request of `events` stamped payloads with the expected
/// version `expect` stands for (exact revision, or no stream).
fn append_request(
    stream: &str,
    expect: Expect,
    events: usize,
    payload: usize,
) -> v1::AppendRequest {
    let expected = match expect.revision {
        Some(r) => v1::ExpectedVersion::exact(r),
        None => v1::ExpectedVersion::no_stream(),
    };
    let events = (0..events)
        .map(|_| v1::EventData {
            id: Some(v1::Uuid::from_bytes_raw(*uuid::Uuid::new_v4().as_bytes())),
            r#type: EVENT_TYPE.to_owned(),
            data: clock::stamped_payload(payload).into(),
            metadata: Default::default(),
            content_type: None,
        })
        .collect();
    v1::AppendRequest {
        stream: stream.to_owned(),
        expected: Some(expected),
        events,
    }
}

/// The driver's view of an `Append` answer.
fn append_result(response: v1::AppendResponse) -> Result<AppendResult> {
    match response.result {
        Some(append_response::Result::Success(s)) => Ok(AppendResult::Ok(Expect {
            revision: Some(s.next_expected_revision),
            position: Some(s.position),
        })),
        Some(append_response::Result::WrongExpectedVersion(w)) => {
            Ok(AppendResult::Conflict(Expect {
                revision: w.current_revision,
                position: None,
            }))
        }
        None => Err(BenchError::server(SYSTEM, "append answered with no result")),
    }
}

/// An answer of a `PipelinedAppend` call as the reader task routes it:
/// the correlation id it carried and the append's outcome.
type PipelinedAnswer = (u64, std::result::Result<v1::AppendResponse, Status>);

/// One writer's share of a `PipelinedAppend` call. The writer has at most
/// one append in flight; its correlation ids are `slot << 32 | sequence`,
/// so the call's reader task routes each answer to its writer by the high
/// half, and the writer checks the whole id against the one it sent.
pub struct PipelineSlot {
    requests: mpsc::Sender<v1::PipelinedAppendRequest>,
    answers: mpsc::Receiver<PipelinedAnswer>,
    slot: u64,
    sent: u64,
}

/// Opens one `PipelinedAppend` call on `client`'s connection, shared by
/// `writers` slots. The call ends when every slot is dropped (the request
/// stream then ends, which half-closes the call).
pub async fn open_pipeline(client: &StrataClient, writers: usize) -> Result<Vec<PipelineSlot>> {
    let (tx, rx) = mpsc::channel(writers.max(1));
    let outgoing =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|m| (m, rx)) });
    let answers = client
        .inner
        .clone()
        .pipelined_append(outgoing)
        .await?
        .into_inner();
    let (routes, slots): (Vec<_>, Vec<_>) = (0..writers as u64)
        .map(|slot| {
            let (to, from) = mpsc::channel(1);
            let slot = PipelineSlot {
                requests: tx.clone(),
                answers: from,
                slot,
                sent: 0,
            };
            (to, slot)
        })
        .unzip();
    tokio::spawn(route_answers(answers, routes));
    Ok(slots)
}

/// Hands every answer of a pipelined call to the slot its correlation id
/// names; when the call ends, tells every slot why.
async fn route_answers(
    mut answers: tonic::Streaming<v1::PipelinedAppendResponse>,
    routes: Vec<mpsc::Sender<PipelinedAnswer>>,
) {
    let end = loop {
        match answers.message().await {
            Ok(Some(a)) => {
                let outcome = match a.outcome {
                    Some(pipelined_append_response::Outcome::Result(r)) => Ok(r),
                    Some(pipelined_append_response::Outcome::Error(e)) => {
                        Err(Status::new(Code::from(e.code), e.message))
                    }
                    None => Err(Status::internal("pipelined answer without an outcome")),
                };
                if let Some(to) = routes.get((a.correlation_id >> 32) as usize) {
                    let _ = to.send((a.correlation_id, outcome)).await;
                }
            }
            Ok(None) => break Status::unavailable("the pipelined call ended"),
            Err(status) => break status,
        }
    };
    for to in &routes {
        let _ = to.try_send((u64::MAX, Err(end.clone())));
    }
}

impl PipelineSlot {
    /// Sends one append on the shared call and waits for its own answer.
    pub async fn append(
        &mut self,
        stream: &str,
        expect: Expect,
        events: usize,
        payload: usize,
    ) -> Result<AppendResult> {
        self.sent += 1;
        let id = (self.slot << 32) | (self.sent & 0xFFFF_FFFF);
        let request = v1::PipelinedAppendRequest {
            correlation_id: id,
            append: Some(append_request(stream, expect, events, payload)),
        };
        let ended = || BenchError::server(SYSTEM, "the pipelined call ended");
        self.requests.send(request).await.map_err(|_| ended())?;
        let (got, outcome) = self.answers.recv().await.ok_or_else(ended)?;
        let response = outcome?;
        if got != id {
            return Err(BenchError::server(
                SYSTEM,
                format!("pipelined answer for correlation id {got}, expected {id}"),
            ));
        }
        append_result(response)
    }
}

/// Polls Stats until the server at `url` answers, for at most `timeout`.
/// Returns when it first answered.
pub async fn wait_serving(url: &str, timeout: Duration) -> Result<Instant> {
    let give_up = Instant::now() + timeout;
    loop {
        if let Ok(client) = connect(url).await {
            if client.head().await.is_ok() {
                return Ok(Instant::now());
            }
        }
        if Instant::now() >= give_up {
            return Err(BenchError::server(
                SYSTEM,
                format!("{url} did not answer Stats within {timeout:?}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A running Strata server the driver controls.
pub trait ServerProcess: Send {
    /// Its gRPC URL (`http://127.0.0.1:PORT`).
    fn url(&self) -> &str;
    /// The process id whose CPU and memory are reported, if known.
    fn pid(&self) -> Option<u32>;
    /// Its Prometheus endpoint (`http://127.0.0.1:PORT/metrics`), if known.
    fn metrics_url(&self) -> Option<String> {
        None
    }
    /// Stops it gracefully and waits until it has exited.
    fn stop(&mut self) -> Result<()>;
}

/// Starts Strata servers on a data directory.
pub trait Launcher: Send + Sync {
    /// Starts a server on `data_dir` (created if missing) on free loopback
    /// ports. Returns once the process is started, not when it serves.
    fn launch(&self, data_dir: &Path, durability: Durability) -> Result<Box<dyn ServerProcess>>;
}

/// Launches the `strata` binary.
pub struct BinaryLauncher {
    bin: PathBuf,
}

impl BinaryLauncher {
    /// Uses `bin`, or finds `strata` next to the running executable (or in
    /// `target/release`).
    pub fn find(bin: Option<PathBuf>) -> Result<Self> {
        if let Some(bin) = bin {
            return if bin.is_file() {
                Ok(BinaryLauncher { bin })
            } else {
                Err(BenchError::Config(format!(
                    "--strata-bin {}: no such file",
                    bin.display()
                )))
            };
        }
        let mut candidates = Vec::new();
        if let Ok(exe) = std::env::current_exe() {
            if let Some(dir) = exe.parent() {
                candidates.push(dir.join("strata"));
                // Test binaries live one level down, in deps/.
                if let Some(up) = dir.parent() {
                    candidates.push(up.join("strata"));
                }
            }
        }
        candidates.push(PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/release/strata"
        )));
        candidates
            .into_iter()
            .find(|c| c.is_file())
            .map(|bin| BinaryLauncher { bin })
            .ok_or_else(|| {
                BenchError::Config(
                    "no strata binary found next to strata-bench nor in target/release; \
                     run `cargo build --release -p strata-server` or pass --strata-bin"
                        .into(),
                )
            })
    }

    /// The binary this launcher starts.
    pub fn bin(&self) -> &Path {
        &self.bin
    }
}

/// A free loopback port (bound then released; the race is harmless here).
pub fn free_port() -> Result<u16> {
    Ok(free_ports::<1>()?[0])
}

/// `N` distinct free loopback ports: all are held bound until each is
/// known, since two ports bound and released one after the other can be
/// the same one.
pub fn free_ports<const N: usize>() -> Result<[u16; N]> {
    let mut held = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for port in &mut ports {
        let l = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| BenchError::io("binding a loopback port", "127.0.0.1:0", e))?;
        *port = l
            .local_addr()
            .map(|a| a.port())
            .map_err(|e| BenchError::io("reading a bound port", "127.0.0.1:0", e))?;
        held.push(l);
    }
    Ok(ports)
}

impl Launcher for BinaryLauncher {
    fn launch(&self, data_dir: &Path, durability: Durability) -> Result<Box<dyn ServerProcess>> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| BenchError::io("creating the data directory", data_dir, e))?;
        let [grpc, metrics] = free_ports::<2>()?;
        let log_path = data_dir.with_extension("log");
        let log = File::create(&log_path)
            .map_err(|e| BenchError::io("creating the server log", &log_path, e))?;
        let log2 = log
            .try_clone()
            .map_err(|e| BenchError::io("cloning the server log", &log_path, e))?;
        let mut command = Command::new(&self.bin);
        command.arg("serve");
        let scheme = match TLS.get() {
            Some(tls) => {
                command
                    .arg("--tls-cert")
                    .arg(&tls.cert)
                    .arg("--tls-key")
                    .arg(&tls.key)
                    .env("STRATA_ADMIN_PASSWORD", &tls.password);
                "https"
            }
            None => "http",
        };
        let child = command
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{grpc}"))
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{metrics}"))
            .arg("--durability")
            .arg(durability.flag())
            .arg("--log")
            .arg("warn")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| BenchError::io("starting strata", &self.bin, e))?;
        Ok(Box::new(ChildServer {
            child: Some(child),
            url: format!("{scheme}://127.0.0.1:{grpc}"),
            metrics_url: format!("http://127.0.0.1:{metrics}/metrics"),
            log: log_path,
        }))
    }
}

/// A `strata` child process; stopped (SIGTERM, then SIGKILL) when dropped.
struct ChildServer {
    child: Option<Child>,
    url: String,
    metrics_url: String,
    log: PathBuf,
}

impl ServerProcess for ChildServer {
    fn url(&self) -> &str {
        &self.url
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn metrics_url(&self) -> Option<String> {
        Some(self.metrics_url.clone())
    }

    fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        // SIGTERM by pid, through kill(1): this crate forbids `unsafe`.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let give_up = Instant::now() + Duration::from_secs(30);
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(BenchError::server(
                        SYSTEM,
                        format!("exited with {status}; see {}", self.log.display()),
                    ))
                }
                Ok(None) if Instant::now() < give_up => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Ok(None) | Err(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(BenchError::server(
                        SYSTEM,
                        "did not stop within 30 s of SIGTERM; killed",
                    ));
                }
            }
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}
