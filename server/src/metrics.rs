//! Prometheus metrics and the plain-HTTP `/metrics` endpoint. The engine
//! reports through [`crate::store::Observer`]; the service records
//! request-level figures directly.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::store::Observer;

/// Every metric Strata exports.
pub struct Metrics {
    registry: Registry,
    /// Appends that wrote events.
    pub appends: IntCounter,
    /// Events written.
    pub events_written: IntCounter,
    /// Bytes written to the log.
    pub bytes_written: IntCounter,
    /// Appends per group-commit batch.
    pub batch_appends: Histogram,
    /// Events per group-commit batch.
    pub batch_events: Histogram,
    /// Time spent in fdatasync per batch.
    pub fsync_seconds: Histogram,
    /// Append latency as the service sees it (validation to answer).
    pub append_seconds: Histogram,
    /// Append answers by outcome (success, conflict, error).
    pub append_results: IntCounterVec,
    /// Read calls by target (stream, all).
    pub reads: IntCounterVec,
    /// Events returned by reads.
    pub read_events: IntCounter,
    /// Subscriptions currently open.
    pub active_subscriptions: IntGauge,
    /// Number of durable events (next position).
    pub head_position: IntGauge,
    /// Positions covered by the index.
    pub indexed_position: IntGauge,
    /// head_position - indexed_position.
    pub index_lag: IntGauge,
    /// Sealed segments scavenges went through.
    pub scavenge_segments: IntCounter,
    /// Bytes of segment files scavenges gave back.
    pub scavenge_bytes_reclaimed: IntCounter,
    /// Events scavenges removed.
    pub scavenge_events_removed: IntCounter,
    /// Events consumer groups handed to consumers, by group.
    pub group_delivered: IntCounterVec,
    /// Events consumers acknowledged, by group.
    pub group_acked: IntCounterVec,
    /// Events consumers nacked, by group.
    pub group_nacked: IntCounterVec,
    /// Events taken back from a consumer after the message timeout.
    pub group_timeouts: IntCounterVec,
    /// Events parked, by group.
    pub group_parked: IntCounterVec,
    /// Events held by a group's consumers.
    pub group_in_flight: IntGaugeVec,
    /// Events of a group's target after its checkpoint.
    pub group_lag: IntGaugeVec,
}

fn buckets_seconds() -> Vec<f64> {
    vec![
        0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
        1.0, 2.5,
    ]
}

fn buckets_counts() -> Vec<f64> {
    vec![
        1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
    ]
}

impl Metrics {
    /// Creates and registers every metric, plus process metrics.
    pub fn new() -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new_custom(Some("strata".into()), None)?;
        let counter = |name: &str, help: &str| -> Result<IntCounter, prometheus::Error> {
            let c = IntCounter::new(name, help)?;
            registry.register(Box::new(c.clone()))?;
            Ok(c)
        };
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::new(name, help)?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let histogram =
            |name: &str, help: &str, b: Vec<f64>| -> Result<Histogram, prometheus::Error> {
                let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(b))?;
                registry.register(Box::new(h.clone()))?;
                Ok(h)
            };
        let counter_vec =
            |name: &str, help: &str, label: &str| -> Result<IntCounterVec, prometheus::Error> {
                let c = IntCounterVec::new(Opts::new(name, help), &[label])?;
                registry.register(Box::new(c.clone()))?;
                Ok(c)
            };
        let gauge_vec =
            |name: &str, help: &str, label: &str| -> Result<IntGaugeVec, prometheus::Error> {
                let g = IntGaugeVec::new(Opts::new(name, help), &[label])?;
                registry.register(Box::new(g.clone()))?;
                Ok(g)
            };
        let m = Metrics {
            appends: counter("appends_total", "Appends that wrote events")?,
            events_written: counter("events_written_total", "Events written to the log")?,
            bytes_written: counter("bytes_written_total", "Bytes written to the log")?,
            batch_appends: histogram(
                "batch_appends",
                "Appends per group-commit batch",
                buckets_counts(),
            )?,
            batch_events: histogram(
                "batch_events",
                "Events per group-commit batch",
                buckets_counts(),
            )?,
            fsync_seconds: histogram(
                "fsync_seconds",
                "fdatasync latency per batch",
                buckets_seconds(),
            )?,
            append_seconds: histogram(
                "append_seconds",
                "Append latency seen by the service",
                buckets_seconds(),
            )?,
            append_results: counter_vec(
                "append_results_total",
                "Append answers by outcome",
                "outcome",
            )?,
            reads: counter_vec("reads_total", "Read calls by target", "target")?,
            read_events: counter("read_events_total", "Events returned by reads")?,
            active_subscriptions: gauge("active_subscriptions", "Subscriptions currently open")?,
            head_position: gauge("head_position", "Number of durable events (next position)")?,
            indexed_position: gauge("indexed_position", "Positions covered by the index")?,
            index_lag: gauge("index_lag", "Durable events not yet indexed")?,
            scavenge_segments: counter(
                "scavenge_segments_total",
                "Sealed segments scavenges went through",
            )?,
            scavenge_bytes_reclaimed: counter(
                "scavenge_bytes_reclaimed_total",
                "Bytes of segment files scavenges gave back",
            )?,
            scavenge_events_removed: counter(
                "scavenge_events_removed_total",
                "Events scavenges removed from the log",
            )?,
            group_delivered: counter_vec(
                "group_delivered_total",
                "Events consumer groups handed to consumers",
                "group",
            )?,
            group_acked: counter_vec(
                "group_acked_total",
                "Events consumers acknowledged",
                "group",
            )?,
            group_nacked: counter_vec("group_nacked_total", "Events consumers nacked", "group")?,
            group_timeouts: counter_vec(
                "group_timeouts_total",
                "Events taken back after the message timeout",
                "group",
            )?,
            group_parked: counter_vec("group_parked_total", "Events parked", "group")?,
            group_in_flight: gauge_vec(
                "group_in_flight",
                "Events held by a group's consumers",
                "group",
            )?,
            group_lag: gauge_vec(
                "group_lag",
                "Events of a group's target after its checkpoint",
                "group",
            )?,
            registry,
        };
        #[cfg(target_os = "linux")]
        m.registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Arc::new(m))
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        out
    }

    /// Records the head position as known to the service.
    pub fn set_head(&self, head: u64) {
        self.head_position.set(head as i64);
        self.update_index_lag();
    }

    fn update_index_lag(&self) {
        self.index_lag
            .set((self.head_position.get() - self.indexed_position.get()).max(0));
    }
}

impl Observer for Metrics {
    fn batch_committed(&self, appends: usize, events: usize, bytes: usize, sync: Duration) {
        self.appends.inc_by(appends as u64);
        self.events_written.inc_by(events as u64);
        self.bytes_written.inc_by(bytes as u64);
        self.batch_appends.observe(appends as f64);
        self.batch_events.observe(events as f64);
        self.fsync_seconds.observe(sync.as_secs_f64());
        self.head_position.add(events as i64);
        self.update_index_lag();
    }

    fn indexed(&self, position: u64) {
        self.indexed_position.set(position as i64);
        self.update_index_lag();
    }

    fn segment_scavenged(&self, bytes: u64, events: u64) {
        self.scavenge_segments.inc();
        self.scavenge_bytes_reclaimed.inc_by(bytes);
        self.scavenge_events_removed.inc_by(events);
    }
}

/// Serves `GET /metrics` (anything else gets 404) until `shutdown` fires,
/// over TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let Ok((sock, _)) = accepted else {
            continue;
        };
        let (metrics, tls) = (metrics.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => answer(sock, &metrics).await,
                Some(tls) => {
                    let handshake = tokio::time::timeout(Duration::from_secs(5), tls.accept(sock));
                    if let Ok(Ok(sock)) = handshake.await {
                        answer(sock, &metrics).await;
                    }
                }
            }
        });
    }
}

/// Answers one HTTP/1.1 request on `sock`, then closes it.
async fn answer<S>(mut sock: S, metrics: &Metrics)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 4096];
    let mut n = 0;
    // Read until the end of the request head (or give up at 4 KiB / 5 s).
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while n < buf.len() {
            match sock.read(&mut buf[n..]).await {
                Ok(0) | Err(_) => break,
                Ok(k) => n += k,
            }
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
    })
    .await;
    if read.is_err() {
        return;
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let response = if method == "GET" && (path == "/metrics" || path.starts_with("/metrics?")) {
        let body = metrics.render();
        let mut r = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes();
        r.extend_from_slice(&body);
        r
    } else {
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n"
            .to_vec()
    };
    let _ = sock.write_all(&response).await;
    let _ = sock.shutdown().await;
}
