//! The driver's error type: what went wrong, with enough context to act on.

use std::path::PathBuf;

/// Why a benchmark could not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options contradict each other or name something unusable.
    #[error("invalid options: {0}")]
    Config(String),
    /// A file or process operation failed.
    #[error("{what} ({path}): {source}")]
    Io {
        /// What the driver was doing.
        what: &'static str,
        /// The path (or program) involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A server could not be started, reached or stopped.
    #[error("{system}: {message}")]
    Server {
        /// Which system ("strata", "postgres", "umadb").
        system: &'static str,
        /// What happened.
        message: String,
    },
    /// A gRPC call to Strata failed.
    #[error("strata call failed: {0}")]
    Grpc(#[from] tonic::Status),
    /// Connecting to Strata failed.
    #[error("strata connection failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A peer's client reported an error.
    #[error("{system} call failed: {message}")]
    Peer {
        /// Which peer.
        system: &'static str,
        /// Its error, as text.
        message: String,
    },
    /// Writing the results failed.
    #[error("results: {0}")]
    Json(#[from] serde_json::Error),
    /// A worker task panicked or was cancelled.
    #[error("worker task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl BenchError {
    /// An I/O error with context.
    pub fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        BenchError::Io {
            what,
            path: path.into(),
            source,
        }
    }

    /// A server-lifecycle error.
    pub fn server(system: &'static str, message: impl Into<String>) -> Self {
        BenchError::Server {
            system,
            message: message.into(),
        }
    }
}

/// Result of driver operations.
pub type Result<T, E = BenchError> = std::result::Result<T, E>;
