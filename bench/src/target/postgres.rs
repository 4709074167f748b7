//! PostgreSQL as a peer: one `events` table with a global `bigserial`
//! position and a unique (stream, revision); an append is one statement
//! (hence one transaction) that checks the expected version; `$all` reads
//! by position; subscriptions poll, since PostgreSQL has no push of rows.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Statement};

use super::{AppendResult, Expect, FollowFrom, Running};
use crate::cli::{Options, SystemKind};
use crate::clock::{self, stamp_of};
use crate::error::{BenchError, Result};

const SYSTEM: &str = "postgres";

/// The schema: positions are the global order, (stream, revision) the
/// per-stream order, and event ids are unique (Strata indexes them too, for
/// idempotent retries).
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position    bigserial PRIMARY KEY,
    stream      text        NOT NULL,
    revision    bigint      NOT NULL,
    id          uuid        NOT NULL UNIQUE,
    type        text        NOT NULL,
    data        bytea       NOT NULL,
    metadata    bytea       NOT NULL DEFAULT '',
    recorded_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (stream, revision)
)";

/// One round trip: read the stream's head, insert only if it matches the
/// expectation ($2 = -1 for "no stream"), return the head seen and the new
/// rows' last position and revision. Two racing appends with the same
/// expectation both pass the check; the unique (stream, revision) index
/// then fails the second, which the driver counts as a conflict.
const APPEND: &str = "
WITH cur AS (
    SELECT coalesce(max(revision), -1) AS r FROM events WHERE stream = $1
), ins AS (
    INSERT INTO events (stream, revision, id, type, data)
    SELECT $1, cur.r + u.o, u.id, $4, u.data
    FROM cur, unnest($3::uuid[], $5::bytea[]) WITH ORDINALITY AS u(id, data, o)
    WHERE cur.r = $2
    RETURNING position, revision
)
SELECT (SELECT r FROM cur), (SELECT max(position) FROM ins), (SELECT max(revision) FROM ins)";

const COLUMNS: &str = "position, stream, revision, id, type, data, metadata, recorded_at";

/// A connection (one server backend) with its prepared statements.
pub struct PgClient {
    client: tokio_postgres::Client,
    append: Statement,
    current: Statement,
    read_all: Statement,
    read_stream: Statement,
    head: Statement,
    poll_interval: Duration,
}

fn peer_err(e: impl std::fmt::Display) -> BenchError {
    BenchError::Peer {
        system: SYSTEM,
        message: e.to_string(),
    }
}

impl PgClient {
    /// Connects and prepares the statements (the schema must exist).
    pub async fn connect(url: &str, poll_interval: Duration) -> Result<PgClient> {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(peer_err)?;
        tokio::spawn(async move {
            // Ends when the client is dropped.
            let _ = connection.await;
        });
        let append = client.prepare(APPEND).await.map_err(peer_err)?;
        let current = client
            .prepare("SELECT max(revision) FROM events WHERE stream = $1")
            .await
            .map_err(peer_err)?;
        let read_all = client
            .prepare(&format!(
                "SELECT {COLUMNS} FROM events WHERE position > $1 ORDER BY position LIMIT $2"
            ))
            .await
            .map_err(peer_err)?;
        let read_stream = client
            .prepare(&format!(
                "SELECT {COLUMNS} FROM events WHERE stream = $1 ORDER BY revision"
            ))
            .await
            .map_err(peer_err)?;
        let head = client
            .prepare("SELECT coalesce(max(position), 0) FROM events")
            .await
            .map_err(peer_err)?;
        Ok(PgClient {
            client,
            append,
            current,
            read_all,
            read_stream,
            head,
            poll_interval,
        })
    }

    /// Appends with the expected-version check.
    pub async fn append(
        &self,
        stream: &str,
        expect: Expect,
        events: usize,
        payload: usize,
    ) -> Result<AppendResult> {
        let expected: i64 = expect.revision.map_or(-1, |r| r as i64);
        let ids: Vec<uuid::Uuid> = (0..events).map(|_| uuid::Uuid::new_v4()).collect();
        let data: Vec<Vec<u8>> = (0..events)
            .map(|_| clock::stamped_payload(payload))
            .collect();
        let params: [&(dyn ToSql + Sync); 5] = [&stream, &expected, &ids, &"BenchEvent", &data];
        match self.client.query_one(&self.append, &params).await {
            Ok(row) => {
                let current: i64 = row.get(0);
                let position: Option<i64> = row.get(1);
                let revision: Option<i64> = row.get(2);
                match (position, revision) {
                    (Some(p), Some(r)) => Ok(AppendResult::Ok(Expect {
                        revision: Some(r as u64),
                        position: Some(p as u64),
                    })),
                    _ => Ok(AppendResult::Conflict(Expect {
                        revision: u64::try_from(current).ok(),
                        position: None,
                    })),
                }
            }
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                let row = self
                    .client
                    .query_one(&self.current, &[&stream])
                    .await
                    .map_err(peer_err)?;
                let current: Option<i64> = row.get(0);
                Ok(AppendResult::Conflict(Expect {
                    revision: current.map(|c| c as u64),
                    position: None,
                }))
            }
            Err(e) => Err(peer_err(e)),
        }
    }

    /// Streams up to `count` rows after the `from`-th position.
    pub async fn read_all(
        &self,
        from: u64,
        count: u64,
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<u64> {
        let (from, count) = (from as i64, count as i64);
        let params: [&(dyn ToSql + Sync); 2] = [&from, &count];
        self.stream_rows(&self.read_all, &params, progress).await
    }

    /// Reads one stream's rows.
    pub async fn read_stream(&self, stream: &str) -> Result<u64> {
        let params: [&(dyn ToSql + Sync); 1] = [&stream];
        self.stream_rows(&self.read_stream, &params, &mut |_| {})
            .await
    }

    async fn stream_rows(
        &self,
        statement: &Statement,
        params: &[&(dyn ToSql + Sync)],
        progress: &mut (dyn FnMut(usize) + Send),
    ) -> Result<u64> {
        use futures_util::StreamExt as _;
        let rows = self
            .client
            .query_raw(statement, params.iter().copied())
            .await
            .map_err(peer_err)?;
        let mut rows = std::pin::pin!(rows);
        let (mut total, mut pending) = (0u64, 0usize);
        while let Some(row) = rows.next().await {
            let row = row.map_err(peer_err)?;
            // Decode what a consumer would use, as the gRPC clients do.
            let _stream: &str = row.get(1);
            let data: &[u8] = row.get(5);
            std::hint::black_box(data);
            total += 1;
            pending += 1;
            if pending == 512 {
                progress(pending);
                pending = 0;
            }
        }
        if pending > 0 {
            progress(pending);
        }
        Ok(total)
    }

    /// The last position (positions start at 1; rolled-back appends leave gaps).
    pub async fn head(&self) -> Result<u64> {
        let row = self
            .client
            .query_one(&self.head, &[])
            .await
            .map_err(peer_err)?;
        let head: i64 = row.get(0);
        Ok(head as u64)
    }

    /// Polls for rows past the last seen position: 1000 rows at a time, at
    /// once again after a non-empty poll, after `--pg-poll-ms` after an
    /// empty one. (A poller can skip a row whose position was assigned
    /// before, but committed after, a row it already saw: the well-known
    /// gap of sequence-ordered tables. The benchmark does not correct it.)
    pub async fn follow_all(
        &self,
        from: FollowFrom,
        deadline: Instant,
        on_batch: &mut (dyn FnMut(&[u64]) -> bool + Send),
    ) -> Result<()> {
        let mut last: i64 = match from {
            FollowFrom::Start => 0,
            FollowFrom::Now => self.head().await? as i64,
        };
        let limit: i64 = 1000;
        let mut stamps = Vec::new();
        while Instant::now() < deadline {
            let rows = self
                .client
                .query(&self.read_all, &[&last, &limit])
                .await
                .map_err(peer_err)?;
            if rows.is_empty() {
                tokio::time::sleep(self.poll_interval).await;
                continue;
            }
            stamps.clear();
            for row in &rows {
                last = row.get(0);
                let data: &[u8] = row.get(5);
                stamps.push(stamp_of(data).unwrap_or(0));
            }
            if !on_batch(&stamps) {
                break;
            }
        }
        Ok(())
    }
}

/// Stops the server when dropped.
struct PgGuard {
    script: PathBuf,
    dir: PathBuf,
}

impl Drop for PgGuard {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

/// Starts PostgreSQL on a fresh `dir` with `postgres.sh` and creates the schema.
pub async fn start(options: &Options, dir: &Path) -> Result<Running> {
    let script = options.peers_dir.join("postgres.sh");
    let port = super::strata::free_port()?;
    let url = super::run_script(SYSTEM, &script, dir, port)?;
    let guard = PgGuard {
        script,
        dir: dir.to_path_buf(),
    };
    let pid = std::fs::read_to_string(dir.join("postmaster.pid"))
        .ok()
        .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()));
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .map_err(peer_err)?;
    let conn = tokio::spawn(connection);
    client.batch_execute(SCHEMA).await.map_err(peer_err)?;
    drop(client);
    let _ = conn.await;
    Ok(Running::new(
        SystemKind::Postgres,
        url,
        pid,
        options.clients_per_connection,
        Duration::from_millis(options.pg_poll_ms),
        Box::new(guard),
    ))
}
