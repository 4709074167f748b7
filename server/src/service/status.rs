//! The one place where engine errors become gRPC statuses.

use tonic::Status;

use crate::store::StoreError;

/// Maps an engine error to the status docs/API.md prescribes.
pub fn status_from_store(e: StoreError) -> Status {
    let msg = e.to_string();
    match e {
        StoreError::InvalidArgument(_)
        | StoreError::TooLarge { .. }
        | StoreError::TooManyEvents { .. } => Status::invalid_argument(msg),
        StoreError::DuplicateEventId { .. } => Status::already_exists(msg),
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
}
