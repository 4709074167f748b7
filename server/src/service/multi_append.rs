//! `MultiAppend`: validate, hand to the writer as one atomic unit, answer
//! after the group commit.

use std::time::Instant;

use strata_proto::v1;
use tonic::Status;

use super::{append, convert, status::status_from_append, StreamsService};
use crate::auth::{Caller, StreamOp};
use crate::store::MultiAppendOutcome;

pub(super) async fn handle(
    svc: &StreamsService,
    caller: &Caller,
    req: v1::MultiAppendRequest,
) -> Result<v1::MultiAppendResponse, Status> {
    let started = Instant::now();
    // Every stream written to needs `write`; a stream only checked needs
    // `read` (its state is what the answer reveals).
    let checked = convert::multi_append_request(req).and_then(|req| {
        for a in &req.appends {
            svc.allow(caller, StreamOp::Write, &a.stream)?;
        }
        for c in &req.checks {
            svc.allow(caller, StreamOp::Read, &c.stream)?;
        }
        Ok(req)
    });
    let result = match checked {
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
