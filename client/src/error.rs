//! The client's error type, and the one place where a gRPC status becomes
//! one of its variants ([`error_from_status`], and
//! [`error_from_other_status`] for the services other than `Streams`).
//!
//! Callers match on variants, never on message text: a concurrency conflict
//! is [`Error::WrongExpectedVersion`], a missing stream [`Error::NotFound`],
//! a tombstoned one [`Error::Tombstoned`], refused credentials
//! [`Error::Unauthenticated`], and [`Error::is_transient`] says whether
//! retrying can help.

use std::path::PathBuf;

use strata_proto::v1::error_detail::Detail;
use tonic::{Code, Status};

use crate::event::ExpectedVersion;
use crate::multi::StreamConflict;

/// Everything that can go wrong in a call to the server.
///
/// ```
/// use strata_client::{Error, ExpectedVersion};
///
/// fn describe(e: &Error) -> String {
///     match e {
///         Error::WrongExpectedVersion { current, .. } => format!("conflict, stream at {current:?}"),
///         Error::NotFound { .. } => "no such stream".to_owned(),
///         e if e.is_transient() => format!("try again later: {e}"),
///         e => format!("failed: {e}"),
///     }
/// }
/// let conflict = Error::WrongExpectedVersion {
///     stream: "account-1".into(),
///     expected: ExpectedVersion::NoStream,
///     current: Some(4),
/// };
/// assert_eq!(describe(&conflict), "conflict, stream at Some(4)");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The server URL could not be parsed.
    #[error("invalid server URL {url:?}: {}", chain(source))]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        #[source]
        source: tonic::transport::Error,
    },

    /// The [`ClientOptions`](crate::ClientOptions) cannot be used, with each
    /// other or with the URL; nothing was sent. An `https://` URL without
    /// a CA, TLS options with an `http://` URL (which would connect in
    /// plain text), a URL that is neither, PEM that does not parse, or
    /// credentials that cannot travel in a header (a `:` in a Basic user
    /// name, an API key that is not printable ASCII). The message never
    /// holds a password or key.
    #[error("invalid client options: {message}")]
    InvalidOptions {
        /// What is wrong.
        message: String,
    },

    /// A file named in the options (a CA, a client certificate or key)
    /// could not be read.
    #[error("cannot read {}: {source}", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },

    /// [`Client::connect`](crate::Client::connect) could not reach the
    /// server, or the TLS handshake failed (e.g. a server certificate that
    /// the CA did not sign or that is not valid for the host name).
    #[error("cannot connect to {url}: {}", chain(source))]
    Connect {
        /// The URL connected to.
        url: String,
        /// The transport failure (refused, timed out, ...).
        #[source]
        source: tonic::transport::Error,
    },

    /// The expected version of an append, delete, tombstone or metadata
    /// change did not match: nothing was written. Decide again from the
    /// current state and retry. For
    /// [`Client::set_stream_metadata`](crate::Client::set_stream_metadata),
    /// `stream` is the metadata stream `$$<stream>` and `current` the
    /// metadata's revision.
    #[error("wrong expected version on stream '{stream}': expected {expected}, current revision {}", display_revision(.current))]
    WrongExpectedVersion {
        /// The stream whose version was checked.
        stream: String,
        /// What the request expected.
        expected: ExpectedVersion,
        /// Revision of the stream's last event now; `None` when the stream
        /// does not exist.
        current: Option<u64>,
    },

    /// Some appends or checks of a multi-append did not hold: nothing was
    /// written. Every failed one is listed.
    #[error("wrong expected version in a multi-append: {}", display_conflicts(.conflicts))]
    MultiAppendConflict {
        /// Every append and check that failed, appends first.
        conflicts: Vec<StreamConflict>,
    },

    /// The request was malformed or over a configured limit
    /// (`INVALID_ARGUMENT`): bad stream name, reserved `$` name, empty
    /// batch, duplicate id in one append, event too large, ...
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// The server's explanation.
        message: String,
        /// The limit the request exceeded, when that was the problem.
        limit: Option<LimitExceeded>,
    },

    /// The stream to read or delete does not exist, or was deleted
    /// (`NOT_FOUND`).
    #[error("not found: {message}")]
    NotFound {
        /// The server's explanation.
        message: String,
    },

    /// The stream is tombstoned (`FAILED_PRECONDITION`): it was deleted for
    /// good, and every read, subscription, append, delete and metadata call
    /// on it fails. Its name can never be used again.
    #[error("failed precondition: {message}")]
    Tombstoned {
        /// The server's explanation, naming the stream.
        message: String,
    },

    /// The server did not accept the call's credentials
    /// (`UNAUTHENTICATED`): none were given while authentication is on, or
    /// the user name, password or API key is wrong (the server does not say
    /// which). Nothing was written.
    #[error("{}", prefixed("authentication failed", message))]
    Unauthenticated {
        /// The server's explanation.
        message: String,
    },

    /// The credentials are valid but their user may not do this
    /// (`PERMISSION_DENIED`): its roles, or the stream's access list, do
    /// not allow it. Nothing was written.
    #[error("{}", prefixed("permission denied", message))]
    PermissionDenied {
        /// The server's explanation.
        message: String,
    },

    /// An event id of the append is already used by a different append,
    /// or a user, API key or consumer group of that name exists
    /// (`ALREADY_EXISTS`). A retry of the *same* append is not an error.
    #[error("already exists: {message}")]
    AlreadyExists {
        /// The server's explanation.
        message: String,
        /// Position of the stored event that already has the id.
        position: Option<u64>,
    },

    /// A message exceeded the server's gRPC message limit
    /// (`RESOURCE_EXHAUSTED`) or the client's own
    /// ([`ClientOptions::max_message_size`](crate::ClientOptions::max_message_size)).
    #[error("message too large: {message}")]
    MessageTooLarge {
        /// gRPC's explanation.
        message: String,
    },

    /// The server is shutting down, refusing writes, or cannot be reached
    /// right now (`UNAVAILABLE`). Transient.
    #[error("server unavailable: {message}")]
    Unavailable {
        /// The explanation.
        message: String,
    },

    /// The call did not finish within its deadline (`DEADLINE_EXCEEDED`).
    /// Transient; an append may or may not have been written, so retry it
    /// with the same event ids (the server deduplicates).
    #[error("deadline exceeded: {message}")]
    DeadlineExceeded {
        /// The explanation.
        message: String,
    },

    /// The connection broke during the call (`UNKNOWN` or `CANCELLED` from
    /// the transport). Transient.
    #[error("connection lost ({code:?}): {message}")]
    ConnectionLost {
        /// The status code the transport reported.
        code: Code,
        /// The explanation.
        message: String,
    },

    /// Any other failure reported by the server (`INTERNAL`, `DATA_LOSS`,
    /// ...; `FAILED_PRECONDITION` outside stream operations, e.g. a full
    /// consumer group, or the `Users` service while authentication is off).
    #[error("server error ({code:?}): {message}")]
    Server {
        /// The gRPC status code.
        code: Code,
        /// The server's explanation.
        message: String,
    },

    /// The server's answer did not have the shape the contract promises.
    #[error("unexpected response from the server: {message}")]
    Protocol {
        /// What was wrong with it.
        message: String,
    },

    /// Event data could not be encoded to or decoded from JSON.
    #[cfg(feature = "json")]
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl Error {
    /// Whether retrying the same call later can succeed: the server was
    /// unavailable, the connection broke, or the deadline passed.
    /// Subscriptions resume by themselves after exactly these errors.
    ///
    /// ```
    /// use strata_client::Error;
    ///
    /// assert!(Error::Unavailable { message: "shutting down".into() }.is_transient());
    /// assert!(!Error::InvalidArgument { message: "bad name".into(), limit: None }.is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Unavailable { .. }
                | Error::DeadlineExceeded { .. }
                | Error::ConnectionLost { .. }
                | Error::Connect { .. }
        )
    }

    /// The stream's current revision when this is a
    /// [`WrongExpectedVersion`](Error::WrongExpectedVersion) conflict:
    /// `Some(None)` when the stream does not exist, `None` for every other
    /// error.
    ///
    /// ```
    /// use strata_client::{Error, ExpectedVersion};
    ///
    /// let e = Error::WrongExpectedVersion {
    ///     stream: "s".into(),
    ///     expected: ExpectedVersion::Exact(1),
    ///     current: None,
    /// };
    /// assert_eq!(e.conflict(), Some(None));
    /// assert_eq!(Error::NotFound { message: String::new() }.conflict(), None);
    /// ```
    pub fn conflict(&self) -> Option<Option<u64>> {
        match self {
            Error::WrongExpectedVersion { current, .. } => Some(*current),
            _ => None,
        }
    }
}

/// Maps a gRPC status from the server (or from the transport) to an
/// [`Error`]. The only place where status codes are interpreted.
pub(crate) fn error_from_status(status: Status) -> Error {
    let message = status.message().to_owned();
    let detail = strata_proto::v1::detail_of(&status);
    match status.code() {
        Code::InvalidArgument => Error::InvalidArgument {
            message,
            limit: match detail {
                Some(Detail::LimitExceeded(l)) => Some(LimitExceeded {
                    what: l.what,
                    actual: l.actual,
                    limit: l.limit,
                    setting: l.setting,
                }),
                _ => None,
            },
        },
        Code::NotFound => Error::NotFound { message },
        // The Streams service answers FAILED_PRECONDITION only for a
        // tombstoned stream (other services: `error_from_other_status`).
        Code::FailedPrecondition => Error::Tombstoned { message },
        Code::Unauthenticated => Error::Unauthenticated { message },
        Code::PermissionDenied => Error::PermissionDenied { message },
        Code::AlreadyExists => Error::AlreadyExists {
            message,
            position: match detail {
                Some(Detail::EventIdInUse(d)) => Some(d.position),
                _ => None,
            },
        },
        // RESOURCE_EXHAUSTED is the server's answer to an over-limit
        // request; tonic itself reports a message over this client's own
        // limit (either way) as OUT_OF_RANGE.
        Code::ResourceExhausted | Code::OutOfRange => Error::MessageTooLarge { message },
        Code::Unavailable => Error::Unavailable { message },
        Code::DeadlineExceeded => Error::DeadlineExceeded { message },
        // The transport reports a broken connection as UNKNOWN (hyper) or
        // CANCELLED (an HTTP/2 reset); this client never cancels a call it
        // still waits for, so neither comes from the caller.
        code @ (Code::Unknown | Code::Cancelled) => Error::ConnectionLost { code, message },
        code => Error::Server { code, message },
    }
}

/// [`error_from_status`] for the services other than `Streams` (consumer
/// groups, users, and whatever a caller reaches through
/// [`Client::channel`](crate::Client::channel)), where
/// `FAILED_PRECONDITION` is a state of the server rather than a tombstone
/// (a full consumer group; the `Users` service while authentication is
/// off): [`Error::Server`] with that code.
pub(crate) fn error_from_other_status(status: Status) -> Error {
    match status.code() {
        code @ Code::FailedPrecondition => Error::Server {
            code,
            message: status.message().to_owned(),
        },
        _ => error_from_status(status),
    }
}

/// The [`Error`] of a status from a service this crate does not wrap,
/// called through [`Client::channel`](crate::Client::channel): as for the
/// crate's own calls, except that `FAILED_PRECONDITION` is an
/// [`Error::Server`] (outside the `Streams` service it means no tombstone).
///
/// ```
/// use strata_client::Error;
///
/// let e = Error::from(tonic::Status::unauthenticated("invalid credentials"));
/// assert!(matches!(e, Error::Unauthenticated { .. }));
/// assert_eq!(e.to_string(), "authentication failed: invalid credentials");
/// ```
impl From<Status> for Error {
    fn from(status: Status) -> Self {
        error_from_other_status(status)
    }
}

/// An error and its causes, `: `-separated: tonic's transport errors say
/// only "transport error" at the top.
pub(crate) fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    let mut last = text.clone();
    while let Some(cause) = source {
        // Layers often repeat their cause's message; say it once.
        let message = cause.to_string();
        if message != last {
            text.push_str(": ");
            text.push_str(&message);
        }
        last = message;
        source = cause.source();
    }
    text
}

/// A configured server limit that a request exceeded (the typed detail of
/// an [`Error::InvalidArgument`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LimitExceeded {
    /// What was measured, e.g. "append" or "event data + metadata".
    pub what: String,
    /// The measured value (bytes, or events).
    pub actual: u64,
    /// The configured limit.
    pub limit: u64,
    /// The server setting that holds the limit, e.g. "max-append-bytes".
    pub setting: String,
}

/// `what: message`, or the message alone when it already starts with
/// `what` (servers often say "permission denied: ..." themselves).
fn prefixed(what: &str, message: &str) -> String {
    let starts = message
        .get(..what.len())
        .is_some_and(|start| start.eq_ignore_ascii_case(what));
    if starts {
        message.to_owned()
    } else if message.is_empty() {
        what.to_owned()
    } else {
        format!("{what}: {message}")
    }
}

fn display_conflicts(conflicts: &[StreamConflict]) -> String {
    conflicts
        .iter()
        .map(|c| {
            format!(
                "'{}' expected {}, current revision {}",
                c.stream,
                c.expected,
                display_revision(&c.current)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn display_revision(revision: &Option<u64>) -> String {
    match revision {
        Some(r) => r.to_string(),
        None => "none (the stream does not exist)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_variants() {
        type Check = fn(&Error) -> bool;
        let cases: [(Status, Check, bool); 13] = [
            (
                Status::invalid_argument("x"),
                |e| matches!(e, Error::InvalidArgument { message, limit: None } if message == "x"),
                false,
            ),
            (
                Status::not_found("x"),
                |e| matches!(e, Error::NotFound { .. }),
                false,
            ),
            (
                Status::failed_precondition("stream 's' is tombstoned"),
                |e| matches!(e, Error::Tombstoned { message } if message == "stream 's' is tombstoned"),
                false,
            ),
            (
                Status::unauthenticated("invalid credentials"),
                |e| {
                    matches!(e, Error::Unauthenticated { message } if message == "invalid credentials")
                        && e.to_string() == "authentication failed: invalid credentials"
                },
                false,
            ),
            (
                Status::permission_denied("stream 'x' is not readable"),
                |e| {
                    matches!(e, Error::PermissionDenied { .. })
                        && e.to_string() == "permission denied: stream 'x' is not readable"
                },
                false,
            ),
            (
                Status::already_exists("x"),
                |e| matches!(e, Error::AlreadyExists { .. }),
                false,
            ),
            (
                Status::resource_exhausted("x"),
                |e| matches!(e, Error::MessageTooLarge { .. }),
                false,
            ),
            (
                Status::out_of_range("x"),
                |e| matches!(e, Error::MessageTooLarge { .. }),
                false,
            ),
            (
                Status::unavailable("x"),
                |e| matches!(e, Error::Unavailable { .. }),
                true,
            ),
            (
                Status::deadline_exceeded("x"),
                |e| matches!(e, Error::DeadlineExceeded { .. }),
                true,
            ),
            (
                Status::unknown("x"),
                |e| {
                    matches!(
                        e,
                        Error::ConnectionLost {
                            code: Code::Unknown,
                            ..
                        }
                    )
                },
                true,
            ),
            (
                Status::cancelled("x"),
                |e| {
                    matches!(
                        e,
                        Error::ConnectionLost {
                            code: Code::Cancelled,
                            ..
                        }
                    )
                },
                true,
            ),
            (
                Status::internal("x"),
                |e| {
                    matches!(
                        e,
                        Error::Server {
                            code: Code::Internal,
                            ..
                        }
                    )
                },
                false,
            ),
        ];
        for (status, check, transient) in cases {
            let code = status.code();
            let e = error_from_status(status);
            assert!(check(&e), "{code:?} -> {e:?}");
            assert_eq!(e.is_transient(), transient, "{code:?}");
            assert_eq!(e.conflict(), None);
        }
    }

    #[test]
    fn failed_precondition_outside_streams_is_no_tombstone() {
        let e = error_from_other_status(Status::failed_precondition("authentication is off"));
        assert!(matches!(
            e,
            Error::Server {
                code: Code::FailedPrecondition,
                ..
            }
        ));
        let e = Error::from(Status::permission_denied("admin only"));
        assert!(matches!(e, Error::PermissionDenied { .. }));
        assert!(!e.is_transient());
    }

    #[test]
    fn refusals_say_so_once() {
        let e = |status| error_from_status(status).to_string();
        assert_eq!(
            e(Status::unauthenticated("authentication failed")),
            "authentication failed"
        );
        assert_eq!(e(Status::unauthenticated("")), "authentication failed");
        assert_eq!(
            e(Status::permission_denied(
                "permission denied: needs the ops role"
            )),
            "permission denied: needs the ops role"
        );
        assert_eq!(
            e(Status::permission_denied("needs the ops role")),
            "permission denied: needs the ops role"
        );
    }

    #[test]
    fn conflict_message_names_the_revision() {
        let e = Error::WrongExpectedVersion {
            stream: "s".into(),
            expected: ExpectedVersion::Exact(3),
            current: Some(5),
        };
        assert_eq!(
            e.to_string(),
            "wrong expected version on stream 's': expected exact(3), current revision 5"
        );
        let e = Error::WrongExpectedVersion {
            stream: "s".into(),
            expected: ExpectedVersion::StreamExists,
            current: None,
        };
        assert!(e.to_string().ends_with("none (the stream does not exist)"));
    }
}
