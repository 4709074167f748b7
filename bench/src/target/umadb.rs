//! UmaDB as a peer, through its own Rust client. UmaDB has no streams:
//! each event carries one tag naming its stream, and an append's condition
//! is "fail if an event with this tag exists after the position of the last
//! event I know of in this stream" (or "…exists at all" for a new stream),
//! which is the expected-version check.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use umadb_client::AsyncUmaDbClient;
use umadb_dcb::{
    DcbAppendCondition, DcbError, DcbEvent, DcbEventStoreAsync, DcbQuery, DcbQueryItem,
};

use super::{AppendResult, Expect, FollowFrom, MultiResult, Running};
use crate::cli::{Options, SystemKind};
use crate::clock::{self, stamp_of};
use crate::error::{BenchError, Result};

const SYSTEM: &str = "umadb";

/// One UmaDB client (one HTTP/2 connection), shared by several workers.
pub struct UmaClient {
    inner: AsyncUmaDbClient,
}

fn peer_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Peer {
        system: SYSTEM,
        message: e.to_string(),
    }
}

fn tag(stream: &str) -> String {
    format!("stream:{stream}")
}

fn stream_query(stream: &str) -> DcbQuery {
    DcbQuery::new().item(DcbQueryItem::new().tags([tag(stream)]))
}

impl UmaClient {
    /// Connects to `url` (`http://127.0.0.1:PORT`).
    pub async fn connect(url: &str) -> Result<UmaClient> {
        let inner = AsyncUmaDbClient::connect(url.to_owned(), None, None, None)
            .await
            .map_err(peer_err)?;
        Ok(UmaClient { inner })
    }

    /// Appends under the tag condition.
    pub async fn append(
        &self,
        stream: &str,
        expect: Expect,
        events: usize,
        payload: usize,
    ) -> Result<AppendResult> {
        let t = tag(stream);
        let batch: Vec<DcbEvent> = (0..events)
            .map(|_| {
                DcbEvent::new()
                    .event_type("BenchEvent")
                    .tags([t.clone()])
                    .data(clock::stamped_payload(payload))
                    .uuid(uuid::Uuid::new_v4())
            })
            .collect();
        let condition = DcbAppendCondition::new(stream_query(stream)).after(expect.position);
        match self.inner.append(batch, Some(condition), None).await {
            Ok(position) => Ok(AppendResult::Ok(Expect {
                revision: Some(
                    expect
                        .revision
                        .map_or(events as u64 - 1, |r| r + events as u64),
                ),
                position: Some(position),
            })),
            Err(DcbError::IntegrityError(_)) => {
                // Learn the stream's last position: one backwards read of 1.
                let mut last = self
                    .inner
                    .read(Some(stream_query(stream)), None, true, Some(1))
                    .await
                    .map_err(peer_err)?;
                let position = last
                    .next_batch()
                    .await
                    .map_err(peer_err)?
                    .first()
                    .map(|e| e.position);
                Ok(AppendResult::Conflict(Expect {
                    revision: None,
                    position,
                }))
            }
            Err(e) => Err(peer_err(e)),
        }
    }

    /// Appends 1 event to each of `streams` in one call: each event tagged
    /// with its stream; the condition has one query item per stream tag
    /// and `after` = the latest position the writer knows among them (none
    /// for new streams). That is "no event of any of these streams after my
    /// last view of them": each stream's exact expected version when, as in
    /// `multi-append`, the writer's streams were last written together.
    pub async fn multi_append(
        &self,
        streams: &[String],
        expects: &[Expect],
        payload: usize,
    ) -> Result<MultiResult> {
        let batch: Vec<DcbEvent> = streams
            .iter()
            .map(|s| {
                DcbEvent::new()
                    .event_type("BenchEvent")
                    .tags([tag(s)])
                    .data(clock::stamped_payload(payload))
                    .uuid(uuid::Uuid::new_v4())
            })
            .collect();
        let query = streams.iter().fold(DcbQuery::new(), |q, s| {
            q.item(DcbQueryItem::new().tags([tag(s)]))
        });
        let after = expects.iter().filter_map(|e| e.position).max();
        let condition = DcbAppendCondition::new(query).after(after);
        match self.inner.append(batch, Some(condition), None).await {
            Ok(last) => {
                let k = streams.len() as u64;
                Ok(MultiResult::Ok(
                    expects
                        .iter()
                        .zip(0..)
                        .map(|(e, i)| Expect {
                            revision: Some(e.revision.map_or(0, |r| r + 1)),
                            position: Some(last + 1 + i - k),
                        })
                        .collect(),
                ))
            }
            Err(DcbError::IntegrityError(e)) => Ok(MultiResult::Conflict(e.to_string())),
            Err(e) => Err(peer_err(e)),
        }
    }

    /// Reads up to `count` events after the `from`-th (UmaDB counts from 1).
    pub async fn read_all(
        &self,
        from: u64,
        count: u64,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<u64> {
        let limit = u32::try_from(count).unwrap_or(u32::MAX);
        let mut response = self
            .inner
            .read(None, Some(from + 1), false, Some(limit))
            .await
            .map_err(peer_err)?;
        let mut total = 0u64;
        loop {
            let batch = response.next_batch().await.map_err(peer_err)?;
            if batch.is_empty() {
                return Ok(total);
            }
            total += batch.len() as u64;
            progress(batch.len());
        }
    }

    /// Reads every event tagged with the stream.
    pub async fn read_stream(&self, stream: &str) -> Result<u64> {
        let mut response = self
            .inner
            .read(Some(stream_query(stream)), None, false, None)
            .await
            .map_err(peer_err)?;
        let mut total = 0u64;
        loop {
            let batch = response.next_batch().await.map_err(peer_err)?;
            if batch.is_empty() {
                return Ok(total);
            }
            total += batch.len() as u64;
        }
    }

    /// One gRPC health Check (UmaDB's client asks the whole server).
    pub async fn ping(&self) -> Result<()> {
        let status = self.inner.check_health("").await.map_err(peer_err)?;
        if status != umadb_client::ServingStatus::Serving {
            return Err(peer_err(format!("health check answered {status:?}")));
        }
        Ok(())
    }

    /// The last position (0 when empty).
    pub async fn head(&self) -> Result<u64> {
        Ok(self.inner.head().await.map_err(peer_err)?.unwrap_or(0))
    }

    /// Follows everything through UmaDB's Subscribe.
    pub async fn follow_all(
        &self,
        from: FollowFrom,
        deadline: Instant,
        on_batch: &mut (dyn FnMut(&[u64]) -> bool + Send),
    ) -> Result<()> {
        let after = match from {
            FollowFrom::Start => None,
            FollowFrom::Now => Some(self.head().await?),
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        let Ok(sub) = tokio::time::timeout_at(deadline, self.inner.subscribe(None, after)).await
        else {
            return Ok(());
        };
        let mut sub = sub.map_err(peer_err)?;
        let mut stamps = Vec::new();
        loop {
            let Ok(batch) = tokio::time::timeout_at(deadline, sub.next_batch()).await else {
                return Ok(());
            };
            let batch = batch.map_err(peer_err)?;
            if batch.is_empty() {
                return Ok(());
            }
            stamps.clear();
            stamps.extend(batch.iter().map(|e| stamp_of(&e.event.data).unwrap_or(0)));
            if !on_batch(&stamps) {
                return Ok(());
            }
        }
    }
}

/// Stops the server when dropped.
struct UmaGuard {
    script: PathBuf,
    dir: PathBuf,
}

impl Drop for UmaGuard {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Starts UmaDB with `umadb.sh` in `--umadb-dir` (its venv is kept between
/// runs; the database is deleted first so every run starts empty).
pub async fn start(options: &Options) -> Result<Running> {
    let script = options.peers_dir.join("umadb.sh");
    let dir = &options.umadb_dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| BenchError::io("creating the UmaDB directory", dir, e))?;
    remove_db(dir)?;
    let port = super::strata::free_port()?;
    let url = super::run_script(SYSTEM, &script, dir, port)?;
    let guard = UmaGuard {
        script,
        dir: dir.clone(),
    };
    let pid = std::fs::read_to_string(dir.join("pid"))
        .ok()
        .and_then(|t| t.trim().parse().ok());
    let give_up = Instant::now() + Duration::from_secs(60);
    loop {
        match UmaClient::connect(&url).await {
            Ok(c) if c.head().await.is_ok() => break,
            _ if Instant::now() < give_up => tokio::time::sleep(Duration::from_millis(50)).await,
            _ => return Err(BenchError::server(SYSTEM, format!("{url} does not answer"))),
        }
    }
    Ok(Running::new(
        SystemKind::Umadb,
        url,
        pid,
        options.clients_per_connection,
        Duration::ZERO,
        Box::new(guard),
    ))
}

fn remove_db(dir: &Path) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| BenchError::io("listing the UmaDB directory", dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with("uma.db") {
            let path = entry.path();
            let removed = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            removed.map_err(|e| BenchError::io("removing the old UmaDB database", &path, e))?;
        }
    }
    Ok(())
}
