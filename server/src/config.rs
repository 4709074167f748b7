//! The `strata` command line: `serve` (the default) and its settings, each
//! with a `STRATA_*` environment fallback, a default and a help line.
//! Everything is validated before anything starts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::store::{Limits, StoreConfig, SyncMode};

/// Durability of acknowledged appends, as chosen on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Durability {
    /// fdatasync every group-commit batch before acknowledging it (safe).
    Always,
    /// Never fdatasync: acknowledged appends can be lost on power failure.
    /// For benchmarks and comparisons only.
    UnsafeNoSync,
}

/// When callers must authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// When TLS is on or `--listen` is not loopback (off on loopback
    /// without TLS).
    Auto,
    /// Always.
    Required,
}

/// Settings of `strata serve`.
#[derive(Clone, Debug, Args)]
pub struct ServeArgs {
    /// Data directory (segment log in log/, derived index in index/).
    #[arg(long, env = "STRATA_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Address of the gRPC server.
    #[arg(long, env = "STRATA_LISTEN", default_value = "127.0.0.1:2113")]
    pub listen: SocketAddr,

    /// Address of the Prometheus metrics endpoint (GET /metrics).
    #[arg(long, env = "STRATA_METRICS_LISTEN", default_value = "127.0.0.1:9464")]
    pub metrics_listen: SocketAddr,

    /// When an append counts as durable.
    #[arg(long, env = "STRATA_DURABILITY", value_enum, default_value_t = Durability::Always)]
    pub durability: Durability,

    /// Target size of a segment file, in bytes (preallocated).
    #[arg(long, env = "STRATA_SEGMENT_SIZE", default_value_t = 64 << 20)]
    pub segment_size: u64,

    /// Largest data + metadata of one event, in bytes.
    #[arg(long, env = "STRATA_MAX_EVENT_BYTES", default_value_t = 1 << 20)]
    pub max_event_bytes: u64,

    /// Largest append (all its events), in bytes. The gRPC message limit is set 1 MiB above it.
    #[arg(long, env = "STRATA_MAX_APPEND_BYTES", default_value_t = 16 << 20)]
    pub max_append_bytes: u64,

    /// Most events in one append.
    #[arg(long, env = "STRATA_MAX_APPEND_EVENTS", default_value_t = 10_000)]
    pub max_append_events: usize,

    /// Most events in one Read / Subscribe response batch.
    #[arg(long, env = "STRATA_READ_BATCH", default_value_t = 512)]
    pub read_batch: usize,

    /// Committed batches buffered for live subscribers; a subscriber further
    /// behind reads from the log instead (it is never dropped).
    #[arg(long, env = "STRATA_LIVE_BUFFER", default_value_t = 256)]
    pub live_buffer: usize,

    /// A filtered $all subscription sends a checkpoint after scanning this many events.
    #[arg(long, env = "STRATA_CHECKPOINT_EVENTS", default_value_t = 1024)]
    pub checkpoint_events: u64,

    /// …or after this many milliseconds, whichever comes first.
    #[arg(long, env = "STRATA_CHECKPOINT_INTERVAL_MS", default_value_t = 2000)]
    pub checkpoint_interval_ms: u64,

    /// The server's TLS certificate chain (PEM); with --tls-key, turns TLS on.
    #[arg(long, env = "STRATA_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "STRATA_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Require client certificates signed by this CA (PEM): mTLS, where a
    /// certificate's common name is the user it authenticates as.
    #[arg(long, env = "STRATA_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,

    /// Serve the metrics endpoint over TLS too, with --tls-cert and --tls-key.
    #[arg(long, env = "STRATA_METRICS_TLS", requires = "tls_cert")]
    pub metrics_tls: bool,

    /// When callers must authenticate (the first admin's password comes
    /// from STRATA_ADMIN_PASSWORD).
    #[arg(long, env = "STRATA_AUTH", value_enum, default_value_t = AuthMode::Auto)]
    pub auth: AuthMode,

    /// Serve a non-loopback --listen address without TLS and authentication:
    /// anyone who can reach the port may do everything. For trying out only.
    #[arg(long, env = "STRATA_INSECURE")]
    pub insecure: bool,

    /// The first admin's password (from STRATA_ADMIN_PASSWORD only, never a
    /// flag, so that it stays out of process listings).
    #[arg(skip = std::env::var("STRATA_ADMIN_PASSWORD").ok())]
    pub admin_password: Option<String>,

    /// Log filter (tracing env-filter syntax, e.g. "info,strata_server=debug").
    #[arg(long = "log", env = "STRATA_LOG", default_value = "info")]
    pub log_filter: String,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(pub String);

/// Largest payload the record format accepts (see `docs/FORMAT.md`).
const FORMAT_MAX_APPEND: u64 = 256 << 20;

impl ServeArgs {
    /// Checks the settings against each other and the format's limits.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError(m));
        if self.data_dir.as_os_str().is_empty() {
            return bad("--data-dir is empty".into());
        }
        if self.segment_size < 4096 {
            return bad(format!(
                "--segment-size {} is below 4096 bytes",
                self.segment_size
            ));
        }
        if self.max_event_bytes == 0 {
            return bad("--max-event-bytes must be at least 1".into());
        }
        if self.max_append_bytes < self.max_event_bytes {
            return bad(format!(
                "--max-append-bytes {} is below --max-event-bytes {}",
                self.max_append_bytes, self.max_event_bytes
            ));
        }
        if self.max_append_bytes > FORMAT_MAX_APPEND {
            return bad(format!(
                "--max-append-bytes {} is above the format's maximum of {FORMAT_MAX_APPEND}",
                self.max_append_bytes
            ));
        }
        if self.max_append_events == 0 {
            return bad("--max-append-events must be at least 1".into());
        }
        if self.read_batch == 0 || self.read_batch > 100_000 {
            return bad(format!(
                "--read-batch {} is outside 1..=100000",
                self.read_batch
            ));
        }
        if self.live_buffer == 0 || self.live_buffer > 1 << 16 {
            return bad(format!(
                "--live-buffer {} is outside 1..=65536",
                self.live_buffer
            ));
        }
        if self.checkpoint_events == 0 || self.checkpoint_interval_ms == 0 {
            return bad(
                "--checkpoint-events and --checkpoint-interval-ms must be at least 1".into(),
            );
        }
        if self.listen == self.metrics_listen && self.listen.port() != 0 {
            return bad(format!(
                "--listen and --metrics-listen are both {}",
                self.listen
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("--tls-cert and --tls-key go together".into());
        }
        if (self.tls_client_ca.is_some() || self.metrics_tls) && self.tls_cert.is_none() {
            return bad("--tls-client-ca and --metrics-tls need --tls-cert and --tls-key".into());
        }
        let security = self.security();
        if !self.listen.ip().is_loopback() && !security.is_secure() && !self.insecure {
            return bad(format!(
                "--listen {} is not a loopback address, and serving it needs TLS \
                 (--tls-cert and --tls-key) and authentication (on with TLS; the first \
                 admin's password in STRATA_ADMIN_PASSWORD); pass --insecure to serve it \
                 without them, which lets anyone who reaches the port do everything",
                self.listen
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_filter) {
            return bad(format!("--log '{}': {e}", self.log_filter));
        }
        Ok(())
    }

    /// TLS, authentication and what to warn of.
    pub fn security(&self) -> Security {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::auth::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
            }),
            _ => None,
        };
        let loopback = self.listen.ip().is_loopback();
        let authenticate =
            self.auth == AuthMode::Required || tls.is_some() || (!loopback && !self.insecure);
        let mut warnings = Vec::new();
        if !loopback && (tls.is_none() || !authenticate) {
            warnings.push(format!(
                "started with --insecure: {} is served {}; anyone who reaches it {}",
                self.listen,
                match (tls.is_some(), authenticate) {
                    (false, false) => "without TLS or authentication",
                    (false, true) => "without TLS",
                    _ => "without authentication",
                },
                if authenticate {
                    "can read credentials off the wire"
                } else {
                    "may do everything"
                }
            ));
        }
        Security {
            tls,
            authenticate,
            warnings,
        }
    }

    /// The engine's configuration.
    pub fn store_config(&self) -> StoreConfig {
        let mut c = StoreConfig::new(&self.data_dir);
        c.sync_mode = match self.durability {
            Durability::Always => SyncMode::Always,
            Durability::UnsafeNoSync => SyncMode::UnsafeNoSync,
        };
        c.segment_size = self.segment_size;
        c.limits = Limits {
            max_event_bytes: self.max_event_bytes,
            max_append_bytes: self.max_append_bytes,
            max_append_events: self.max_append_events,
        };
        c.read_batch = self.read_batch;
        c.live_buffer = self.live_buffer;
        c.checkpoint_every_events = self.checkpoint_events;
        c.checkpoint_interval = Duration::from_millis(self.checkpoint_interval_ms);
        c
    }

    /// The gRPC message limit: above the append limit, so that an
    /// over-limit append is answered with a message naming the limit.
    pub fn grpc_message_limit(&self) -> usize {
        (self.max_append_bytes + (1 << 20)) as usize
    }

    /// Settings for tests: data in `dir`, both listeners on ephemeral ports.
    pub fn for_tests(dir: impl Into<PathBuf>) -> Self {
        let mut a = <ServeArgsParser as clap::Parser>::parse_from(["strata"]).args;
        a.data_dir = dir.into();
        a.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        a.metrics_listen = SocketAddr::from(([127, 0, 0, 1], 0));
        a.admin_password = None;
        a
    }
}

/// How the server protects itself, derived from the settings.
#[derive(Clone, Debug)]
pub struct Security {
    /// TLS files, when TLS is on.
    pub tls: Option<crate::auth::tls::TlsFiles>,
    /// Whether callers must authenticate.
    pub authenticate: bool,
    /// What `Stats` and the start log warn of.
    pub warnings: Vec<String>,
}

impl Security {
    /// TLS and authentication both on.
    pub fn is_secure(&self) -> bool {
        self.tls.is_some() && self.authenticate
    }
}

#[derive(clap::Parser)]
struct ServeArgsParser {
    #[command(flatten)]
    args: ServeArgs,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let a = ServeArgs::for_tests("/tmp/x");
        a.validate().expect("valid");
        assert_eq!(a.store_config().limits, Limits::default());
    }

    #[test]
    fn contradictions_are_rejected() {
        let mut a = ServeArgs::for_tests("/tmp/x");
        a.max_append_bytes = 10;
        assert!(a
            .validate()
            .expect_err("append limit below event limit")
            .to_string()
            .contains("--max-append-bytes"));
        let mut a = ServeArgs::for_tests("/tmp/x");
        a.segment_size = 1;
        assert!(a.validate().is_err());
        let mut a = ServeArgs::for_tests("/tmp/x");
        a.log_filter = "=[".into();
        assert!(a.validate().is_err());
    }

    #[test]
    fn a_public_address_needs_tls_or_insecure() {
        let mut a = ServeArgs::for_tests("/tmp/x");
        a.listen = "0.0.0.0:2113".parse().expect("addr");
        let why = a.validate().expect_err("plain text on 0.0.0.0").to_string();
        for flag in [
            "--tls-cert",
            "--tls-key",
            "--insecure",
            "STRATA_ADMIN_PASSWORD",
        ] {
            assert!(why.contains(flag), "{why} names {flag}");
        }
        a.insecure = true;
        a.validate().expect("--insecure serves it");
        let s = a.security();
        assert!(!s.authenticate && s.tls.is_none());
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        a.insecure = false;
        a.tls_cert = Some("c.pem".into());
        a.tls_key = Some("k.pem".into());
        a.validate().expect("TLS serves it");
        assert!(a.security().authenticate && a.security().warnings.is_empty());
    }

    #[test]
    fn loopback_authenticates_only_when_asked_or_with_tls() {
        let mut a = ServeArgs::for_tests("/tmp/x");
        assert!(!a.security().authenticate);
        assert!(a.security().warnings.is_empty());
        a.auth = AuthMode::Required;
        assert!(a.security().authenticate);
        a.auth = AuthMode::Auto;
        a.tls_cert = Some("c.pem".into());
        assert!(a.validate().is_err(), "a certificate without its key");
        a.tls_key = Some("k.pem".into());
        assert!(a.security().authenticate);
    }
}
