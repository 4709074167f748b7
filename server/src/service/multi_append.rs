//! `MultiAppend`: validate, hand to the writer as one atomic unit, answer
//! after the group commit.

use std::time::Instant;

use strata_proto::v1;
use tonic::Status;

use super::{append, convert, status::status_from_append, StreamsService};
use crate::store::MultiAppendOutcome;

pub(super) async fn handle(
    svc: &StreamsService,
    req: v1::MultiAppendRequest,
) -> Result<v1::MultiAppendResponse, Status> {
    let started = Instant::now();
    let result = match convert::multi_append_request(req) {
        Ok(req) => svc
            .store
            .multi_append(req)
            .await
            .map_err(status_from_append),
        Err(status) => Err(status),
    };
    let outcome = match &result {
        Ok(MultiAppendOutcome::Success { .. }) => "success",
        Ok(MultiAppendOutcome::WrongExpectedVersion { .. }) => "wrong_expected_version",
        Err(_) => "error",
    };
    append::observe(svc, outcome, started);
    result.map(convert::multi_outcome_to_wire)
}
