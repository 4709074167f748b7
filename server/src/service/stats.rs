//! `Stats`: counters of the store for `strata stats` and monitoring.

use strata_proto::v1;
use tonic::Status;

use super::{status::status_from_read, StreamsService};
use crate::store::FORMAT_VERSION;

pub(super) async fn handle(svc: &StreamsService) -> Result<v1::StatsResponse, Status> {
    let stats = svc.store.stats().await.map_err(status_from_read)?;
    Ok(v1::StatsResponse {
        head_position: stats.head_position,
        streams: stats.streams,
        events: stats.head_position,
        disk_bytes: stats.log_bytes + stats.index_bytes,
        format_version: FORMAT_VERSION,
        indexed_position: stats.indexed_position,
        warnings: svc.warnings.to_vec(),
    })
}
