//! Typed error details on statuses (`errors.proto`): the one encoder the
//! server uses and the one decoder clients use, so neither parses messages.

use prost::Message as _;
use tonic::{Code, Status};

use super::{error_detail, ErrorDetail, RpcStatus};

/// Type URL of an [`ErrorDetail`] packed in a `google.protobuf.Any`.
pub const ERROR_DETAIL_TYPE_URL: &str = "type.googleapis.com/strata.v1.ErrorDetail";

/// A status whose `grpc-status-details-bin` carries `detail`.
///
/// ```
/// use strata_proto::v1::{detail_of, error_detail::Detail, status_with_detail, EventIdInUse};
/// let d = Detail::EventIdInUse(EventIdInUse { id: "x".into(), position: 7 });
/// let s = status_with_detail(tonic::Code::AlreadyExists, "in use", d.clone());
/// assert_eq!(detail_of(&s), Some(d));
/// ```
pub fn status_with_detail(
    code: Code,
    message: impl Into<String>,
    detail: error_detail::Detail,
) -> Status {
    let message = message.into();
    let any = prost_types::Any {
        type_url: ERROR_DETAIL_TYPE_URL.to_owned(),
        value: ErrorDetail {
            detail: Some(detail),
        }
        .encode_to_vec(),
    };
    let body = RpcStatus {
        code: code as i32,
        message: message.clone(),
        details: vec![any],
    };
    Status::with_details(code, message, body.encode_to_vec().into())
}

/// The [`ErrorDetail`] a status carries, if it carries one.
pub fn detail_of(status: &Status) -> Option<error_detail::Detail> {
    let body = RpcStatus::decode(status.details()).ok()?;
    body.details
        .iter()
        .find(|a| a.type_url == ERROR_DETAIL_TYPE_URL)
        .and_then(|a| ErrorDetail::decode(a.value.as_slice()).ok())
        .and_then(|d| d.detail)
}
