//! An in-process Strata server for the client's tests: `strata_server::run`
//! on 127.0.0.1, in a temporary data directory, stoppable through its
//! shutdown trigger and restartable on the same port and directory.

#![allow(dead_code)] // each test binary uses a different part of this

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use strata_client::{Client, ClientOptions};
use strata_server::config::ServeArgs;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The shutdown trigger and task of a running server.
type Running = (
    oneshot::Sender<()>,
    JoinHandle<Result<(), strata_server::RunError>>,
);

/// A running (or stopped) in-process server.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    configure: Arc<dyn Fn(&mut ServeArgs) + Send + Sync>,
    running: Option<Running>,
}

impl TestServer {
    /// A server with the default settings.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server whose settings `configure` adjusts (batch sizes, limits,
    /// TLS files...); again at each restart.
    pub async fn start_with(configure: impl Fn(&mut ServeArgs) + Send + Sync + 'static) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = grpc.local_addr().expect("addr");
        let mut server = TestServer {
            url: format!("http://{addr}"),
            addr,
            dir,
            configure: Arc::new(configure),
            running: None,
        };
        server.serve(grpc).await;
        server
    }

    async fn serve(&mut self, grpc: TcpListener) {
        let metrics = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let mut args = ServeArgs::for_tests(self.dir.path());
        (self.configure)(&mut args);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(strata_server::run(args, grpc, metrics, async move {
            let _ = stopped.await;
        }));
        self.running = Some((stop, task));
    }

    /// The port the server listens on (for `https://localhost:PORT`).
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Triggers the graceful shutdown and waits for it to finish.
    pub async fn stop(&mut self) {
        let (stop, task) = self.running.take().expect("server is running");
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(20), task)
            .await
            .expect("server stops within 20 s")
            .expect("server task")
            .expect("server ran cleanly");
    }

    /// Starts the server again on the same port and data directory.
    pub async fn restart(&mut self) {
        assert!(self.running.is_none(), "stop the server first");
        let grpc = TcpListener::bind(self.addr)
            .await
            .expect("rebind the same port");
        self.serve(grpc).await;
    }

    /// A client with a short backoff, so resume tests run fast.
    pub async fn client(&self) -> Client {
        ClientOptions::new()
            .resume_backoff(Duration::from_millis(20), Duration::from_millis(200))
            .connect(self.url.as_str())
            .await
            .expect("connect")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some((stop, _)) = self.running.take() {
            let _ = stop.send(());
        }
    }
}
