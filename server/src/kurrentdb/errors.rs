//! Errors as KurrentDB's clients expect them: the gRPC code KurrentDB
//! answers plus its `exception` trailer (and the trailers that go with it),
//! by which the clients pick their typed error. Everything without a
//! KurrentDB counterpart keeps the native status (`service::status`).

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};

use super::convert;
use crate::groups::{GroupError, Target};
use crate::service::status::{status_from_append, status_from_read};
use crate::store::{AppendError, ExpectedVersion, ReadError};

/// The trailer naming the kind of error.
const EXCEPTION: &str = "exception";

/// A status with trailers; a value that is not a valid header value (a
/// stream name outside printable ASCII) is left out.
fn with_trailers(code: Code, message: String, trailers: &[(&'static str, &str)]) -> Status {
    let mut map = MetadataMap::new();
    for (key, value) in trailers {
        if let Ok(v) = MetadataValue::try_from(*value) {
            map.insert(*key, v);
        }
    }
    Status::with_metadata(code, message, map)
}

/// A PERMISSION_DENIED status with KurrentDB's `access-denied` trailer;
/// any other status unchanged.
pub(super) fn access_denied(status: Status) -> Status {
    if status.code() != Code::PermissionDenied {
        return status;
    }
    with_trailers(
        Code::PermissionDenied,
        status.message().to_owned(),
        &[(EXCEPTION, "access-denied")],
    )
}

/// The stream is tombstoned (KurrentDB: "deleted").
pub(super) fn stream_deleted(stream: &str) -> Status {
    with_trailers(
        Code::FailedPrecondition,
        format!("Event stream '{stream}' is deleted."),
        &[(EXCEPTION, "stream-deleted"), ("stream-name", stream)],
    )
}

/// A conflict that the protocol reports as an error (deletes; appends
/// answer it in-band).
pub(super) fn wrong_expected_version(
    operation: &str,
    stream: &str,
    expected: ExpectedVersion,
    current: Option<u64>,
) -> Status {
    let expected = convert::expected_number(expected).to_string();
    let actual = current.map_or(-1, |r| r as i64).to_string();
    with_trailers(
        Code::FailedPrecondition,
        format!(
            "{operation} failed due to WrongExpectedVersion. Stream: {stream}, \
             Expected version: {expected}, Actual version: {actual}"
        ),
        &[
            (EXCEPTION, "wrong-expected-version"),
            ("stream-name", stream),
            ("expected-version", &expected),
            ("actual-version", &actual),
        ],
    )
}

/// A proposed event without a required system metadata key.
pub(super) fn missing_metadata(key: &str) -> Status {
    with_trailers(
        Code::InvalidArgument,
        format!("Required Metadata Property '{key}' is missing"),
        &[
            (EXCEPTION, "missing-required-metadata-property"),
            ("required-metadata-properties", "type,content-type"),
        ],
    )
}

/// A failed append (or delete) of `stream`.
pub(super) fn from_append(stream: &str, e: AppendError) -> Status {
    match e {
        AppendError::Tombstoned(_) => stream_deleted(stream),
        AppendError::TooLarge { limit, .. } => {
            let message = e.to_string();
            with_trailers(
                Code::InvalidArgument,
                message,
                &[
                    (EXCEPTION, "maximum-append-size-exceeded"),
                    ("maximum-append-size", &limit.to_string()),
                ],
            )
        }
        e => status_from_append(e),
    }
}

/// A failed read or subscription of `stream` (`$all` for the log).
pub(super) fn from_read(stream: &str, e: ReadError) -> Status {
    match e {
        ReadError::Tombstoned(_) => stream_deleted(stream),
        e => status_from_read(e),
    }
}

/// A failed consumer-group operation, with the trailers of KurrentDB's
/// persistent subscriptions.
pub(super) fn from_group(e: GroupError) -> Status {
    let message = e.to_string();
    let source = |t: &Target| match t {
        Target::Stream(s) => s.clone(),
        Target::All => "$all".to_owned(),
    };
    match e {
        GroupError::NotFound { target, group } => with_trailers(
            Code::NotFound,
            message,
            &[
                (EXCEPTION, "persistent-subscription-does-not-exist"),
                ("stream-name", &source(&target)),
                ("group-name", &group),
            ],
        ),
        GroupError::AlreadyExists { target, group } => with_trailers(
            Code::AlreadyExists,
            message,
            &[
                (EXCEPTION, "persistent-subscription-exists"),
                ("stream-name", &source(&target)),
                ("group-name", &group),
            ],
        ),
        GroupError::Full(_) => with_trailers(
            Code::FailedPrecondition,
            message,
            &[(EXCEPTION, "maximum-subscribers-reached")],
        ),
        GroupError::Invalid(why) => Status::invalid_argument(why),
        GroupError::Append(e) => status_from_append(e),
        GroupError::Read(e) => status_from_read(e),
        GroupError::ShuttingDown => Status::unavailable(message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trailer<'a>(s: &'a Status, key: &str) -> Option<&'a str> {
        s.metadata().get(key).and_then(|v| v.to_str().ok())
    }

    #[test]
    fn errors_carry_the_trailers_the_clients_read() {
        let s = from_append("s", AppendError::Tombstoned("s".into()));
        assert_eq!(s.code(), Code::FailedPrecondition);
        assert_eq!(trailer(&s, "exception"), Some("stream-deleted"));
        assert_eq!(trailer(&s, "stream-name"), Some("s"));

        let s = wrong_expected_version("Delete", "s", ExpectedVersion::Exact(3), None);
        assert_eq!(trailer(&s, "exception"), Some("wrong-expected-version"));
        assert_eq!(trailer(&s, "expected-version"), Some("3"));
        assert_eq!(trailer(&s, "actual-version"), Some("-1"));

        let s = access_denied(Status::permission_denied("no"));
        assert_eq!(trailer(&s, "exception"), Some("access-denied"));
        let s = access_denied(Status::not_found("x"));
        assert_eq!(trailer(&s, "exception"), None);

        let s = from_read("s", ReadError::StreamNotFound("s".into()));
        assert_eq!(s.code(), Code::NotFound);
    }
}
