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

use super::{AppendResult, Expect, FollowFrom, MultiResult, Running};
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

/// One statement (so one transaction) appending 1 event to each of several
/// streams, all or none: read each stream's head; insert every event, at
/// the revision after its stream's head, only if every head equals its
/// expectation; return each stream's head seen and its new row, in request
/// order. A stream with no new row = the whole append was refused. As for
/// `APPEND`, a racing writer that passed the same checks fails on the
/// unique (stream, revision) index instead.
const MULTI_APPEND: &str = "
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::bigint[], $3::uuid[], $5::bytea[])
        WITH ORDINALITY AS u(stream, expected, id, data, o)
), cur AS (
    SELECT i.*, coalesce((SELECT max(e.revision) FROM events e WHERE e.stream = i.stream), -1) AS r
    FROM input i
), ins AS (
    INSERT INTO events (stream, revision, id, type, data)
    SELECT c.stream, c.r + 1, c.id, $4, c.data FROM cur c
    WHERE NOT EXISTS (SELECT 1 FROM cur WHERE cur.r <> cur.expected)
    ORDER BY c.o
    RETURNING stream, position, revision
)
SELECT c.stream, c.r, ins.position, ins.revision
FROM cur c LEFT JOIN ins ON ins.stream = c.stream
ORDER BY c.o";

const COLUMNS: &str = "position, stream, revision, id, type, data, metadata, recorded_at";

/// A connection (one server backend) with its prepared statements.
pub struct PgClient {
    client: tokio_postgres::Client,
    append: Statement,
    multi_append: Statement,
    current: Statement,
    read_all: Statement,
    read_stream: Statement,
    head: Statement,
    ping: Statement,
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
        let multi_append = client.prepare(MULTI_APPEND).await.map_err(peer_err)?;
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
        let ping = client.prepare("SELECT 1").await.map_err(peer_err)?;
        Ok(PgClient {
            ping,
            client,
            append,
            multi_append,
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

    /// Appends 1 event to each of `streams` in one statement, all or none.
    pub async fn multi_append(
        &self,
        streams: &[String],
        expects: &[Expect],
        payload: usize,
    ) -> Result<MultiResult> {
        let expected: Vec<i64> = expects
            .iter()
            .map(|e| e.revision.map_or(-1, |r| r as i64))
            .collect();
        let ids: Vec<uuid::Uuid> = streams.iter().map(|_| uuid::Uuid::new_v4()).collect();
        let data: Vec<Vec<u8>> = streams
            .iter()
            .map(|_| clock::stamped_payload(payload))
            .collect();
        let params: [&(dyn ToSql + Sync); 5] = [&streams, &expected, &ids, &"BenchEvent", &data];
        let rows = match self.client.query(&self.multi_append, &params).await {
            Ok(rows) => rows,
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => {
                return Ok(MultiResult::Conflict(format!("racing writer: {e}")))
            }
            Err(e) => return Err(peer_err(e)),
        };
        let mut written = Vec::with_capacity(rows.len());
        let mut conflicts = Vec::new();
        for row in &rows {
            let (stream, current): (&str, i64) = (row.get(0), row.get(1));
            let (position, revision): (Option<i64>, Option<i64>) = (row.get(2), row.get(3));
            match (position, revision) {
                (Some(p), Some(r)) => written.push(Expect {
                    revision: Some(r as u64),
                    position: Some(p as u64),
                }),
                _ => conflicts.push(format!("{stream} at {current}")),
            }
        }
        if conflicts.is_empty() && written.len() == streams.len() {
            Ok(MultiResult::Ok(written))
        } else {
            Ok(MultiResult::Conflict(conflicts.join(", ")))
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

    /// `SELECT 1`, prepared: a round trip that reads no table.
    pub async fn ping(&self) -> Result<()> {
        let row = self
            .client
            .query_one(&self.ping, &[])
            .await
            .map_err(peer_err)?;
        let one: i32 = row.get(0);
        if one != 1 {
            return Err(peer_err(format!("SELECT 1 answered {one}")));
        }
        Ok(())
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
