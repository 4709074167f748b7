//! Shared helpers of the gRPC test tier (`grpc_*.rs`): an in-process server
//! on `127.0.0.1:0` over a temporary data directory, a connected client, and
//! small wrappers that keep the tests about behaviour rather than plumbing.
//!
//! Every test binary compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use strata_proto::v1;
use strata_proto::v1::streams_client::StreamsClient;
use strata_proto::v1::subscribe_response::Content;
use strata_server::config::ServeArgs;
use strata_server::RunError;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// The Streams client type every test uses.
pub type Client = StreamsClient<Channel>;

/// How long a test waits for something that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A server running in this process, with its own temporary data directory.
pub struct TestServer {
    /// A client connected to the server.
    pub client: Client,
    /// Address of the gRPC listener.
    pub addr: SocketAddr,
    /// Address of the metrics listener.
    pub metrics_addr: SocketAddr,
    /// Resolves the server's shutdown future when sent (or dropped).
    pub shutdown: Option<oneshot::Sender<()>>,
    /// The task running `strata_server::run`.
    pub handle: JoinHandle<Result<(), RunError>>,
    /// The data directory; removed when the server is dropped.
    pub dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts a server with the test defaults.
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    /// Starts a server after letting `configure` change its settings.
    pub async fn start_with(configure: impl FnOnce(&mut ServeArgs)) -> TestServer {
        Self::start_in(tempfile::tempdir().expect("tempdir"), configure).await
    }

    /// Starts a server on the data directory below `dir` (kept from an
    /// earlier server by [`TestServer::stop_and_keep`], or fresh).
    pub async fn start_in(
        dir: tempfile::TempDir,
        configure: impl FnOnce(&mut ServeArgs),
    ) -> TestServer {
        let mut args = ServeArgs::for_tests(dir.path().join("data"));
        args.log_filter = "warn".into();
        configure(&mut args);
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind gRPC");
        let metrics = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind metrics");
        let addr = grpc.local_addr().expect("gRPC address");
        let metrics_addr = metrics.local_addr().expect("metrics address");
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(strata_server::run(args, grpc, metrics, async move {
            // A dropped sender (a failed test) shuts the server down too.
            let _ = rx.await;
        }));
        let client = connect(addr).await;
        let mut server = TestServer {
            client,
            addr,
            metrics_addr,
            shutdown: Some(tx),
            handle,
            dir,
        };
        server.wait_ready().await;
        server
    }

    /// Waits until the server answers `Stats`.
    async fn wait_ready(&mut self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            match self.client.stats(v1::StatsRequest {}).await {
                Ok(_) => return,
                // Serving, with authentication on.
                Err(e) if e.code() == Code::Unauthenticated => return,
                Err(e) if tokio::time::Instant::now() < deadline => {
                    assert!(!self.handle.is_finished(), "server exited early: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => panic!("server not ready after {PATIENCE:?}: {e}"),
            }
        }
    }

    /// A second, independent connection to the server.
    pub async fn connect(&self) -> Client {
        connect(self.addr).await
    }

    /// Stops the server cleanly and hands back its directory, for a restart.
    pub async fn stop_and_keep(mut self) -> tempfile::TempDir {
        self.shut_down().await.expect("clean stop");
        self.dir
    }

    /// Triggers shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), RunError> {
        self.shut_down().await
    }

    async fn shut_down(&mut self) -> Result<(), RunError> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.handle)
            .await
            .expect("server did not stop in time")
            .expect("server task panicked")
    }
}

/// Connects a client to `addr`, retrying while the server starts.
pub async fn connect(addr: SocketAddr) -> Client {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect_timeout(Duration::from_secs(2));
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match endpoint.connect().await {
            Ok(channel) => {
                return StreamsClient::new(channel)
                    .max_decoding_message_size(64 << 20)
                    .max_encoding_message_size(usize::MAX)
            }
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot connect to {addr}: {e}"),
        }
    }
}

/// A fresh random event id, in the 16-byte form.
pub fn new_id() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

/// An event with a random id (raw form), the given type and data.
pub fn event(event_type: &str, data: &[u8]) -> v1::EventData {
    v1::EventData {
        id: Some(v1::Uuid::from_bytes_raw(new_id())),
        r#type: event_type.into(),
        data: data.to_vec().into(),
        metadata: Vec::new().into(),
        content_type: None,
    }
}

/// `n` events of type `event_type` with data `"{prefix}-{i}"`.
pub fn events(n: usize, event_type: &str, prefix: &str) -> Vec<v1::EventData> {
    (0..n)
        .map(|i| event(event_type, format!("{prefix}-{i}").as_bytes()))
        .collect()
}

/// An append request.
pub fn append_req(
    stream: &str,
    expected: v1::ExpectedVersion,
    events: Vec<v1::EventData>,
) -> v1::AppendRequest {
    v1::AppendRequest {
        stream: stream.into(),
        expected: Some(expected),
        events,
    }
}

/// Appends and returns the answer; a gRPC error fails the test.
pub async fn append(
    client: &mut Client,
    stream: &str,
    expected: v1::ExpectedVersion,
    events: Vec<v1::EventData>,
) -> v1::append_response::Result {
    client
        .append(append_req(stream, expected, events))
        .await
        .unwrap_or_else(|e| panic!("append to {stream:?} failed: {e}"))
        .into_inner()
        .result
        .expect("AppendResponse.result is set")
}

/// `(next_expected_revision, position)` of a successful append.
pub fn success(r: &v1::append_response::Result) -> (u64, u64) {
    match r {
        v1::append_response::Result::Success(s) => (s.next_expected_revision, s.position),
        other => panic!("expected success, got {other:?}"),
    }
}

/// Appends that must succeed; returns `(next_expected_revision, position)`.
pub async fn append_ok(
    client: &mut Client,
    stream: &str,
    expected: v1::ExpectedVersion,
    events: Vec<v1::EventData>,
) -> (u64, u64) {
    success(&append(client, stream, expected, events).await)
}

/// The 16 bytes of a recorded event's id (answered in the text form).
pub fn id_bytes(e: &v1::RecordedEvent) -> [u8; 16] {
    e.id.as_ref()
        .expect("RecordedEvent.id is set")
        .to_bytes()
        .expect("RecordedEvent.id is a valid uuid")
}

/// Runs a read; every batch must be non-empty. Errors at call time and
/// errors in the stream are both returned.
pub async fn try_read(
    client: &mut Client,
    req: v1::ReadRequest,
) -> Result<Vec<v1::RecordedEvent>, Status> {
    let mut stream = client.read(req).await?.into_inner();
    let mut out = Vec::new();
    while let Some(batch) = tokio::time::timeout(PATIENCE, stream.message())
        .await
        .expect("read stalled")?
    {
        assert!(!batch.events.is_empty(), "a ReadResponse batch is empty");
        out.extend(batch.events);
    }
    Ok(out)
}

/// Reads; an error fails the test.
pub async fn read(client: &mut Client, req: v1::ReadRequest) -> Vec<v1::RecordedEvent> {
    let what = format!("{req:?}");
    try_read(client, req)
        .await
        .unwrap_or_else(|e| panic!("read {what} failed: {e}"))
}

/// A read request for one stream.
pub fn stream_read(
    stream: &str,
    direction: v1::Direction,
    from: Option<v1::ReadFrom>,
    max_count: u64,
) -> v1::ReadRequest {
    v1::ReadRequest {
        target: Some(v1::read_request::Target::Stream(stream.into())),
        direction: direction as i32,
        from,
        max_count,
        filter: None,
    }
}

/// A read request for `$all`.
pub fn all_read(
    direction: v1::Direction,
    from: Option<v1::ReadFrom>,
    max_count: u64,
    filter: Option<v1::Filter>,
) -> v1::ReadRequest {
    v1::ReadRequest {
        target: Some(v1::read_request::Target::All(v1::AllTarget {})),
        direction: direction as i32,
        from,
        max_count,
        filter,
    }
}

/// Reads the whole of `$all` forwards.
pub async fn read_all(client: &mut Client) -> Vec<v1::RecordedEvent> {
    read(
        client,
        all_read(
            v1::Direction::Forwards,
            Some(v1::ReadFrom::start()),
            0,
            None,
        ),
    )
    .await
}

/// A filter from prefix lists.
pub fn filter(streams: &[&str], types: &[&str]) -> v1::Filter {
    v1::Filter {
        stream_prefix: streams.iter().map(|s| s.to_string()).collect(),
        event_type_prefix: types.iter().map(|s| s.to_string()).collect(),
    }
}

/// The store's counters.
pub async fn stats(client: &mut Client) -> v1::StatsResponse {
    client
        .stats(v1::StatsRequest {})
        .await
        .expect("stats")
        .into_inner()
}

/// Stats once the on-disk index has caught up with the head (it is
/// written in the background within a fraction of a second; reads never
/// wait for it). Fails after 10 s.
pub async fn stats_once_indexed(client: &mut Client) -> v1::StatsResponse {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats(client).await;
        assert!(s.indexed_position <= s.head_position, "{s:?}");
        if s.indexed_position == s.head_position {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the index never caught up: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Positions of events, for compact assertions.
pub fn positions(events: &[v1::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

/// Revisions of events, for compact assertions.
pub fn revisions(events: &[v1::RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.revision).collect()
}

/// A subscription request.
pub fn sub_req(
    target: v1::subscribe_request::Target,
    from: Option<v1::SubscribeFrom>,
    filter: Option<v1::Filter>,
) -> v1::SubscribeRequest {
    v1::SubscribeRequest {
        target: Some(target),
        from,
        filter,
    }
}

/// The `$all` subscription target.
pub fn all_target() -> v1::subscribe_request::Target {
    v1::subscribe_request::Target::All(v1::AllTarget {})
}

/// A stream subscription target.
pub fn stream_target(name: &str) -> v1::subscribe_request::Target {
    v1::subscribe_request::Target::Stream(name.into())
}

/// An open subscription.
pub struct Sub {
    inner: tonic::Streaming<v1::SubscribeResponse>,
}

impl Sub {
    /// Opens a subscription; a gRPC error fails the test.
    pub async fn open(client: &mut Client, req: v1::SubscribeRequest) -> Sub {
        let what = format!("{req:?}");
        let inner = client
            .subscribe(req)
            .await
            .unwrap_or_else(|e| panic!("subscribe {what} failed: {e}"))
            .into_inner();
        Sub { inner }
    }

    /// The next message, waiting at most `wait`; `None` on timeout. An
    /// error or the end of the stream fails the test.
    pub async fn next_within(&mut self, wait: Duration) -> Option<Content> {
        match tokio::time::timeout(wait, self.inner.message()).await {
            Err(_) => None,
            Ok(Ok(Some(m))) => Some(m.content.expect("SubscribeResponse.content is set")),
            Ok(Ok(None)) => panic!("subscription ended"),
            Ok(Err(e)) => panic!("subscription failed: {e}"),
        }
    }

    /// The next message; fails the test when none comes in time.
    pub async fn next(&mut self) -> Content {
        self.next_within(PATIENCE)
            .await
            .expect("no subscription message in time")
    }

    /// The raw next item (message, end or error), waiting at most `wait`;
    /// `None` on timeout.
    pub async fn raw_next(
        &mut self,
        wait: Duration,
    ) -> Option<Result<Option<v1::SubscribeResponse>, Status>> {
        tokio::time::timeout(wait, self.inner.message()).await.ok()
    }

    /// Collects events until `n` have arrived; checkpoints are skipped and
    /// `caught_up` messages are pushed to `caught_up`.
    pub async fn take_events(
        &mut self,
        n: usize,
        caught_up: &mut Vec<v1::CaughtUp>,
    ) -> Vec<v1::RecordedEvent> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.next().await {
                Content::Events(b) => {
                    assert!(!b.events.is_empty(), "an EventBatch is empty");
                    out.extend(b.events);
                }
                Content::CaughtUp(c) => caught_up.push(c),
                Content::Checkpoint(_) => {}
            }
        }
        assert_eq!(out.len(), n, "more events than expected arrived");
        out
    }

    /// Expects that no event and no `caught_up` arrives within `wait`;
    /// returns the checkpoints seen meanwhile.
    pub async fn expect_quiet(&mut self, wait: Duration) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut checkpoints = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return checkpoints;
            }
            match self.next_within(left).await {
                None => return checkpoints,
                Some(Content::Checkpoint(c)) => checkpoints.push(c.position),
                Some(other) => panic!("expected no message, got {other:?}"),
            }
        }
    }

    /// Waits for `caught_up`; returns the events before it and the message.
    pub async fn until_caught_up(&mut self) -> (Vec<v1::RecordedEvent>, v1::CaughtUp) {
        let mut out = Vec::new();
        loop {
            match self.next().await {
                Content::Events(b) => {
                    assert!(!b.events.is_empty(), "an EventBatch is empty");
                    out.extend(b.events);
                }
                Content::CaughtUp(c) => return (out, c),
                Content::Checkpoint(_) => {}
            }
        }
    }
}

/// The status of a subscribe call that must fail, at call time or as the
/// stream's first item.
pub async fn subscribe_error(client: &mut Client, req: v1::SubscribeRequest) -> Status {
    let what = format!("{req:?}");
    let mut stream = match client.subscribe(req).await {
        Err(status) => return status,
        Ok(r) => r.into_inner(),
    };
    match tokio::time::timeout(Duration::from_secs(2), stream.message()).await {
        Ok(Err(status)) => status,
        Ok(Ok(m)) => panic!("subscribe {what} should fail, got {m:?}"),
        Err(_) => panic!("subscribe {what} should fail, but it waits"),
    }
}

/// Asserts a status code, with the message in the failure text.
pub fn assert_code(status: &Status, code: Code, what: &str) {
    assert_eq!(
        status.code(),
        code,
        "{what}: expected {code:?}, got {:?}: {}",
        status.code(),
        status.message()
    );
}

/// The value of metric `name` (without labels) on the metrics endpoint.
pub fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l[name.len()..].trim().parse().ok())
}

/// Every event of the store in `dir`, opened as a data directory.
pub fn events_of_copy(dir: &std::path::Path) -> Vec<strata_server::store::RecordedEvent> {
    use strata_server::store::{Direction, Filter, ReadFrom, Store, StoreConfig};
    let store = Store::open(StoreConfig::new(dir)).expect("the copy opens");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let events = rt.block_on(async {
        store
            .read_all(Direction::Forwards, ReadFrom::Start, 0, Filter::default())
            .await
            .expect("read")
            .collect_all()
            .await
            .expect("read")
    });
    store.close().expect("close");
    events
}

/// Sets the `authorization` header of every call.
#[derive(Clone)]
pub struct AuthHeader(pub Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl AuthHeader {
    /// `Basic base64(user:password)`.
    pub fn basic(user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::raw(&format!("Basic {token}"))
    }

    /// `Bearer <key>`.
    pub fn bearer(key: &str) -> Self {
        Self::raw(&format!("Bearer {key}"))
    }

    /// Exactly `value`.
    pub fn raw(value: &str) -> Self {
        AuthHeader(Some(value.parse().expect("an ASCII header value")))
    }

    /// No header.
    pub fn none() -> Self {
        AuthHeader(None)
    }
}

impl tonic::service::Interceptor for AuthHeader {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// A channel whose calls carry an `authorization` header.
pub type AuthChannel = tonic::service::interceptor::InterceptedService<Channel, AuthHeader>;

/// A connection to `addr` whose calls carry `auth`.
pub async fn channel_with(addr: SocketAddr, auth: AuthHeader) -> AuthChannel {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    tonic::service::interceptor::InterceptedService::new(channel, auth)
}
