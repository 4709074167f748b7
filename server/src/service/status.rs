//! The one place where engine errors become gRPC statuses.

use strata_proto::v1::error_detail::Detail;
use strata_proto::v1::{status_with_detail, EventIdInUse, LimitExceeded};
use tonic::{Code, Status};

use crate::store::{AppendError, ReadError, StorageError};

/// Maps a failed append to the status docs/API.md prescribes. Values a
/// client needs travel as typed details (`strata.v1.ErrorDetail`).
pub fn status_from_append(e: AppendError) -> Status {
    let msg = e.to_string();
    match e {
        AppendError::TooLarge {
            what,
            actual,
            limit,
            setting,
        } => {
            let detail = Detail::LimitExceeded(LimitExceeded {
                what: what.to_owned(),
                actual,
                limit,
                setting: setting.to_owned(),
            });
            status_with_detail(Code::InvalidArgument, msg, detail)
        }
        AppendError::TooManyEvents { actual, limit } => {
            let detail = Detail::LimitExceeded(LimitExceeded {
                what: "events in an append".to_owned(),
                actual: actual as u64,
                limit: limit as u64,
                setting: "max-append-events".to_owned(),
            });
            status_with_detail(Code::InvalidArgument, msg, detail)
        }
        AppendError::DuplicateEventId { id, position } => {
            let detail = Detail::EventIdInUse(EventIdInUse { id, position });
            status_with_detail(Code::AlreadyExists, msg, detail)
        }
        AppendError::InvalidArgument(_) => Status::invalid_argument(msg),
        AppendError::StreamNotFound(_) => Status::not_found(msg),
        AppendError::Tombstoned(_) => Status::failed_precondition(msg),
        AppendError::Poisoned(_) | AppendError::ShuttingDown => Status::unavailable(msg),
        AppendError::Storage(e) => status_from_storage(e),
    }
}

/// Maps a failed read, subscription or stats call to its status.
pub fn status_from_read(e: ReadError) -> Status {
    let msg = e.to_string();
    match e {
        ReadError::InvalidArgument(_) => Status::invalid_argument(msg),
        ReadError::StreamNotFound(_) => Status::not_found(msg),
        ReadError::Tombstoned(_) => Status::failed_precondition(msg),
        ReadError::ShuttingDown => Status::unavailable(msg),
        ReadError::Storage(e) => status_from_storage(e),
    }
}

/// Damage is DATA_LOSS; a failing disk or index is INTERNAL.
fn status_from_storage(e: StorageError) -> Status {
    let msg = e.to_string();
    match e {
        StorageError::Corrupt { .. } => Status::data_loss(msg),
        StorageError::Io { .. } | StorageError::Index(_) | StorageError::IndexMismatch(_) => {
            Status::internal(msg)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn codes() {
        let appends = [
            (
                AppendError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (
                AppendError::TooLarge {
                    what: "append",
                    actual: 2,
                    limit: 1,
                    setting: "max-append-bytes",
                },
                Code::InvalidArgument,
            ),
            (
                AppendError::TooManyEvents {
                    actual: 2,
                    limit: 1,
                },
                Code::InvalidArgument,
            ),
            (AppendError::ShuttingDown, Code::Unavailable),
            (AppendError::Poisoned("disk".into()), Code::Unavailable),
            (
                AppendError::DuplicateEventId {
                    id: "x".into(),
                    position: 1,
                },
                Code::AlreadyExists,
            ),
            (
                AppendError::Storage(StorageError::IndexMismatch("x".into())),
                Code::Internal,
            ),
        ];
        for (e, code) in appends {
            let text = e.to_string();
            let s = status_from_append(e);
            assert_eq!(s.code(), code, "{text}");
            assert_eq!(s.message(), text);
        }
        let reads = [
            (
                ReadError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (ReadError::StreamNotFound("s".into()), Code::NotFound),
            (ReadError::ShuttingDown, Code::Unavailable),
            (
                ReadError::Storage(StorageError::corrupt("f", 1, "bad")),
                Code::DataLoss,
            ),
        ];
        for (e, code) in reads {
            let text = e.to_string();
            let s = status_from_read(e);
            assert_eq!(s.code(), code, "{text}");
            assert_eq!(s.message(), text);
        }
    }

    #[test]
    fn values_travel_as_typed_details() {
        let s = status_from_append(AppendError::TooLarge {
            what: "append",
            actual: 20,
            limit: 10,
            setting: "max-append-bytes",
        });
        match strata_proto::v1::detail_of(&s) {
            Some(Detail::LimitExceeded(l)) => {
                assert_eq!((l.actual, l.limit), (20, 10));
                assert_eq!(
                    (l.what.as_str(), l.setting.as_str()),
                    ("append", "max-append-bytes")
                );
            }
            other => panic!("no limit detail: {other:?}"),
        }
        let s = status_from_append(AppendError::DuplicateEventId {
            id: "a".into(),
            position: 42,
        });
        match strata_proto::v1::detail_of(&s) {
            Some(Detail::EventIdInUse(d)) => assert_eq!((d.id.as_str(), d.position), ("a", 42)),
            other => panic!("no id detail: {other:?}"),
        }
        assert_eq!(strata_proto::v1::detail_of(&Status::internal("x")), None);
    }
}
