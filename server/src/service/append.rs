//! `Append`: validate, hand to the writer, answer after the group commit.

use std::time::Instant;

use strata_proto::v1;
use tonic::Status;

use super::{convert, status::status_from_append, StreamsService};
use crate::auth::{Caller, StreamOp};
use crate::store::AppendOutcome;

pub(super) async fn handle(
    svc: &StreamsService,
    caller: &Caller,
    req: v1::AppendRequest,
) -> Result<v1::AppendResponse, Status> {
    let started = Instant::now();
    let checked = convert::append_request(req).and_then(|req| {
        svc.allow(caller, StreamOp::Write, &req.stream)
            .map(|()| req)
    });
    let result = match checked {
        Ok(req) => svc.store.append(req).await.map_err(status_from_append),
        Err(status) => Err(status),
    };
    let outcome = match &result {
        Ok(AppendOutcome::Success { .. }) => "success",
        Ok(AppendOutcome::WrongExpectedVersion { .. }) => "wrong_expected_version",
        Err(_) => "error",
    };
    observe(svc, outcome, started);
    result.map(convert::outcome_to_wire)
}

/// Counts an append's (or multi-append's) outcome and its latency.
pub(super) fn observe(svc: &StreamsService, outcome: &str, started: Instant) {
    svc.metrics
        .append_results
        .with_label_values(&[outcome])
        .inc();
    svc.metrics
        .append_seconds
        .observe(started.elapsed().as_secs_f64());
}
