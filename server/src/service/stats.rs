//! `Stats`: counters of the store for `strata stats` and monitoring.

use strata_proto::v1;
use tonic::Status;

use super::StreamsService;
use crate::store::FORMAT_VERSION;

pub(super) async fn handle(svc: &StreamsService) -> Result<v1::StatsResponse, Status> {
    let store = svc.store.clone();
    let (stats, index_bytes) =
        tokio::task::spawn_blocking(move || (store.stats(), store.index_bytes()))
            .await
            .map_err(|e| Status::internal(format!("stats task failed: {e}")))?;
    Ok(v1::StatsResponse {
        head_position: stats.head_position,
        streams: stats.streams,
        events: stats.head_position,
        disk_bytes: stats.log_bytes + index_bytes,
        format_version: FORMAT_VERSION,
        indexed_position: stats.indexed_position,
    })
}
