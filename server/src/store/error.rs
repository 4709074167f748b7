//! Errors of the storage engine, one type per operation, so that a caller
//! matches only what its operation can produce:
//! - [`OpenError`]: opening (and verifying) a data directory;
//! - [`AppendError`]: an append;
//! - [`ReadError`]: a read, a subscription, stats;
//! - [`StorageError`]: the disk or the index failed or holds damage; every
//!   operation can meet it, and components below the facade return it.
//!
//! Each variant carries the fields a caller needs to act on it; none of
//! them knows about gRPC.

use std::path::PathBuf;

/// The disk or the derived index failed, or the log holds damage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A record failed its checksum or is malformed somewhere it cannot be a
    /// torn tail.
    #[error("corrupt log: {file}: offset {offset}: {reason}")]
    Corrupt {
        /// The segment file.
        file: PathBuf,
        /// Byte offset of the bad record inside the file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A file-system operation failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The derived index (sled) failed.
    #[error("index error: {0}")]
    Index(#[from] sled::Error),

    /// The index and the log disagree where they must not (a position the
    /// index should cover, missing).
    #[error("index mismatch: {0}")]
    IndexMismatch(String),
}

/// Why a data directory could not be opened (or verified).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The data directory is in use by another process.
    #[error("data directory {0} is locked by another process")]
    Locked(PathBuf),

    /// Reading or recovering the log or the index failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why an append was refused or failed. A conflict with the expected
/// version is not an error: it is an `AppendOutcome`.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The request itself is malformed (bad name, empty batch, duplicate ids…).
    #[error("invalid request: {0}")]
    InvalidArgument(String),

    /// An event or an append is larger than a configured limit.
    #[error("{what} is {actual} bytes, over the limit of {limit} bytes ({setting})")]
    TooLarge {
        /// What was measured ("event data + metadata", "append").
        what: &'static str,
        /// The measured size.
        actual: u64,
        /// The configured limit.
        limit: u64,
        /// The configuration setting that holds the limit.
        setting: &'static str,
    },

    /// The append holds more events than the configured limit.
    #[error("append has {actual} events, over the limit of {limit} events (max-append-events)")]
    TooManyEvents {
        /// Number of events in the append.
        actual: usize,
        /// The configured limit.
        limit: usize,
    },

    /// An event id of this append was already used by a different append.
    #[error("event id {id} is already used by the event at position {position} and this append is not a retry of that one")]
    DuplicateEventId {
        /// The event id, hyphenated.
        id: String,
        /// Where the id is already stored.
        position: u64,
    },

    /// The stream a delete names does not exist (or is deleted already).
    #[error("stream '{0}' not found")]
    StreamNotFound(String),

    /// The stream was tombstoned: nothing can be done to it any more.
    #[error("stream '{0}' is tombstoned")]
    Tombstoned(String),

    /// An earlier write or sync failed; the writer refuses appends until restart.
    #[error("the writer stopped after an I/O failure ({0}); appends are refused until restart, reads still work")]
    Poisoned(String),

    /// The store is shutting down or closed.
    #[error("the store is shutting down")]
    ShuttingDown,

    /// Looking up an earlier append (for an idempotent retry) failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Why a read, a subscription or stats failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The request itself is malformed (bad stream name…).
    #[error("invalid request: {0}")]
    InvalidArgument(String),

    /// The stream to read does not exist (or is soft-deleted).
    #[error("stream '{0}' not found")]
    StreamNotFound(String),

    /// The stream was tombstoned.
    #[error("stream '{0}' is tombstoned")]
    Tombstoned(String),

    /// The store is shutting down or closed.
    #[error("the store is shutting down")]
    ShuttingDown,

    /// Reading the log or the index failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Result alias of the engine's components (storage failures only).
pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        StorageError::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
