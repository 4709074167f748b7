//! The one place where engine errors become gRPC statuses.

use strata_proto::v1::error_detail::Detail;
use strata_proto::v1::{status_with_detail, EventIdInUse, LimitExceeded};
use tonic::{Code, Status};

use crate::store::StoreError;

/// Maps an engine error to the status docs/API.md prescribes. Values a
/// client needs travel as typed details (`strata.v1.ErrorDetail`).
pub fn status_from_store(e: StoreError) -> Status {
    let msg = e.to_string();
    match e {
        StoreError::TooLarge {
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
        StoreError::TooManyEvents { actual, limit } => {
            let detail = Detail::LimitExceeded(LimitExceeded {
                what: "events in an append".to_owned(),
                actual: actual as u64,
                limit: limit as u64,
                setting: "max-append-events".to_owned(),
            });
            status_with_detail(Code::InvalidArgument, msg, detail)
        }
        StoreError::DuplicateEventId { id, position } => {
            let detail = Detail::EventIdInUse(EventIdInUse { id, position });
            status_with_detail(Code::AlreadyExists, msg, detail)
        }
        StoreError::InvalidArgument(_) => Status::invalid_argument(msg),
        StoreError::StreamNotFound(_) => Status::not_found(msg),
        StoreError::Poisoned(_) | StoreError::ShuttingDown => Status::unavailable(msg),
        StoreError::Corrupt { .. } => Status::data_loss(msg),
        StoreError::Io { .. } | StoreError::Index(_) | StoreError::Locked(_) => {
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
        let cases = [
            (
                StoreError::InvalidArgument("x".into()),
                Code::InvalidArgument,
            ),
            (
                StoreError::TooLarge {
                    what: "append",
                    actual: 2,
                    limit: 1,
                    setting: "max-append-bytes",
                },
                Code::InvalidArgument,
            ),
            (
                StoreError::TooManyEvents {
                    actual: 2,
                    limit: 1,
                },
                Code::InvalidArgument,
            ),
            (StoreError::StreamNotFound("s".into()), Code::NotFound),
            (StoreError::ShuttingDown, Code::Unavailable),
            (StoreError::Poisoned("disk".into()), Code::Unavailable),
            (
                StoreError::DuplicateEventId {
                    id: "x".into(),
                    position: 1,
                },
                Code::AlreadyExists,
            ),
        ];
        for (e, code) in cases {
            let text = e.to_string();
            let s = status_from_store(e);
            assert_eq!(s.code(), code, "{text}");
            assert_eq!(s.message(), text);
        }
    }

    #[test]
    fn values_travel_as_typed_details() {
        let s = status_from_store(StoreError::TooLarge {
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
        let s = status_from_store(StoreError::DuplicateEventId {
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
