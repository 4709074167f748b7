//! The `strata.v1.Operations` service: `Backup`, a consistent copy of the
//! store streamed as file chunks while the server runs (a task reads one
//! chunk at a time, a short hop each, into a small bounded channel, so a
//! slow client costs a few chunks of memory and no thread), and the
//! scavenge controls over the store's scavenger thread.

use std::collections::HashMap;
use std::sync::Arc;

use strata_proto::v1;
use strata_proto::v1::backup_chunk::Kind;
use strata_proto::v1::operations_server::Operations;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use super::convert::timestamp_from_micros;
use super::status::status_from_read;
use crate::store::{BackupFile, ScavengeState, ScavengeStatus, Store};

/// Largest data of one chunk.
const CHUNK: usize = 1 << 20;

/// The Operations service over a store.
#[derive(Clone)]
pub struct OperationsService {
    store: Arc<Store>,
    shutdown: watch::Receiver<bool>,
}

impl OperationsService {
    /// A service over `store`; a backup in progress ends (UNAVAILABLE) when
    /// `shutdown` turns true.
    pub fn new(store: Arc<Store>, shutdown: watch::Receiver<bool>) -> Self {
        OperationsService { store, shutdown }
    }
}

/// What the client's copy holds of one file: size, head and tail CRC-32.
type Have = HashMap<String, (u64, u32, u32)>;

fn have_from_wire(req: v1::BackupRequest) -> Result<Have, Status> {
    let mut have = HashMap::new();
    for f in req.have {
        let name = f.path.strip_prefix("log/").unwrap_or("");
        if crate::store::segment_file_base(name).is_none() {
            return Err(Status::invalid_argument(format!(
                "have: {:?} is not a segment file of a data directory (log/<20 digits>.seg)",
                f.path
            )));
        }
        if have
            .insert(f.path.clone(), (f.size, f.head_crc32, f.tail_crc32))
            .is_some()
        {
            return Err(Status::invalid_argument(format!(
                "have: {:?} is listed twice",
                f.path
            )));
        }
    }
    Ok(have)
}

fn chunk(kind: Kind) -> Result<v1::BackupChunk, Status> {
    Ok(v1::BackupChunk { kind: Some(kind) })
}

/// Where the copy of `file` must be written from: past what the client
/// already holds of it, if that is a prefix of it.
async fn resume_at(store: &Store, file: &BackupFile, have: &Have) -> Result<u64, Status> {
    let Some(&(size, head, tail)) = have.get(&file.path) else {
        return Ok(0);
    };
    if size > file.len {
        return Ok(0);
    }
    let ours = store
        .backup_crcs(file, size)
        .await
        .map_err(status_from_read)?;
    Ok(if ours == (head, tail) { size } else { 0 })
}

async fn send_backup(
    store: Arc<Store>,
    have: Have,
    shutdown: watch::Receiver<bool>,
    tx: &mpsc::Sender<Result<v1::BackupChunk, Status>>,
) -> Result<(), Status> {
    let stopping = || {
        if *shutdown.borrow() {
            Err(Status::unavailable("the server is shutting down"))
        } else {
            Ok(())
        }
    };
    let plan = store.backup_plan().map_err(status_from_read)?;
    let mut bytes_sent = 0u64;
    for file in &plan.files {
        let mut at = resume_at(&store, file, &have).await?;
        while at < file.len {
            stopping()?;
            let data = store
                .backup_read(file, at, CHUNK)
                .await
                .map_err(status_from_read)?;
            let n = data.len() as u64;
            let msg = chunk(Kind::Data(v1::FileData {
                path: file.path.clone(),
                offset: at,
                data,
            }));
            if tx.send(msg).await.is_err() {
                return Ok(()); // the client went away
            }
            at += n;
            bytes_sent += n;
        }
        let end = chunk(Kind::End(v1::FileEnd {
            path: file.path.clone(),
            size: file.len,
        }));
        if tx.send(end).await.is_err() {
            return Ok(());
        }
    }
    let ours: Vec<String> = plan.files.iter().map(|f| f.path.clone()).collect();
    let mut stale: Vec<&String> = have.keys().filter(|p| !ours.contains(p)).collect();
    stale.sort();
    for path in stale {
        if tx.send(chunk(Kind::Remove(path.clone()))).await.is_err() {
            return Ok(());
        }
    }
    let done = chunk(Kind::Done(v1::BackupDone {
        head_position: plan.head_position,
        bytes_sent,
        files: plan.files.len() as u32,
    }));
    let _ = tx.send(done).await;
    Ok(())
}

fn status_to_wire(s: ScavengeStatus) -> v1::ScavengeStatus {
    use v1::scavenge_status::State;
    let state = match s.state {
        ScavengeState::Idle => State::Idle,
        ScavengeState::Running => State::Running,
        ScavengeState::Done => State::Done,
        ScavengeState::Stopped => State::Stopped,
        ScavengeState::Failed => State::Failed,
    };
    v1::ScavengeStatus {
        state: state as i32,
        segments_done: s.segments_done,
        segments_total: s.segments_total,
        bytes_reclaimed: s.bytes_reclaimed,
        events_removed: s.events_removed,
        started_at: (s.started_at_micros != 0).then(|| timestamp_from_micros(s.started_at_micros)),
        error: s.error,
    }
}

#[tonic::async_trait]
impl Operations for OperationsService {
    async fn start_scavenge(
        &self,
        _request: Request<v1::StartScavengeRequest>,
    ) -> Result<Response<v1::ScavengeStatus>, Status> {
        match self.store.start_scavenge() {
            Some(started) => Ok(Response::new(status_to_wire(started))),
            None => Err(Status::already_exists("a scavenge is running")),
        }
    }

    async fn get_scavenge(
        &self,
        _request: Request<v1::GetScavengeRequest>,
    ) -> Result<Response<v1::ScavengeStatus>, Status> {
        Ok(Response::new(status_to_wire(self.store.scavenge_status())))
    }

    async fn stop_scavenge(
        &self,
        _request: Request<v1::StopScavengeRequest>,
    ) -> Result<Response<v1::ScavengeStatus>, Status> {
        Ok(Response::new(status_to_wire(self.store.stop_scavenge())))
    }

    type BackupStream = ReceiverStream<Result<v1::BackupChunk, Status>>;

    async fn backup(
        &self,
        request: Request<v1::BackupRequest>,
    ) -> Result<Response<Self::BackupStream>, Status> {
        let have = have_from_wire(request.into_inner())?;
        let (tx, rx) = mpsc::channel(4);
        let (store, shutdown) = (self.store.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            if let Err(status) = send_backup(store, have, shutdown, &tx).await {
                let _ = tx.send(Err(status)).await;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}
