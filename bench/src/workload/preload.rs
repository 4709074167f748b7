//! Stores what the read workloads read: the read-stream streams (each
//! `--stream-lengths` long, `--streams-per-length` of each), then filler
//! streams until `$all` holds at least `--events` events. Appends of up to
//! 1000 events, 8 loaders at a time; the time it took is printed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::error::{BenchError, Result};
use crate::target::{AppendResult, Client, Expect, Running};

const LOADERS: usize = 8;
const CHUNK: u64 = 1000;

/// What the read workloads may read.
#[derive(Clone, Debug)]
pub struct ReadSet {
    /// Streams and their lengths.
    pub streams: Vec<(String, u64)>,
    /// Events in `$all` after loading (at least `--events`).
    pub head: u64,
}

/// Appends `len` events to a new stream, `CHUNK` per call.
pub async fn fill_stream(client: &Client, stream: &str, len: u64, payload: usize) -> Result<()> {
    let mut expect = Expect::NEW;
    let mut left = len;
    while left > 0 {
        let n = left.min(CHUNK);
        match client.append(stream, expect, n as usize, payload).await? {
            AppendResult::Ok(next) => expect = next,
            AppendResult::Conflict(now) => {
                return Err(BenchError::server(
                    "driver",
                    format!("preloading {stream}: conflict, stream at {now:?}"),
                ))
            }
        }
        left -= n;
    }
    Ok(())
}

/// Appends at least `events` events over `LOADERS` filler streams named
/// `<prefix>-<i>`.
pub async fn fill(running: &Running, prefix: &str, events: u64, payload: usize) -> Result<()> {
    let clients = running.clients(LOADERS).await?;
    let left = Arc::new(AtomicU64::new(events));
    let handles: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let left = left.clone();
            let stream = format!("{prefix}-{i}");
            tokio::spawn(async move {
                let mut expect = Expect::NEW;
                loop {
                    let taken = left
                        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |l| {
                            l.checked_sub(l.min(CHUNK)).filter(|_| l > 0)
                        })
                        .unwrap_or(0);
                    let n = taken.min(CHUNK);
                    if n == 0 {
                        return Ok::<_, BenchError>(());
                    }
                    match client.append(&stream, expect, n as usize, payload).await? {
                        AppendResult::Ok(next) => expect = next,
                        AppendResult::Conflict(now) => {
                            return Err(BenchError::server(
                                "driver",
                                format!("filling {stream}: conflict, stream at {now:?}"),
                            ))
                        }
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.await??;
    }
    Ok(())
}

/// Loads the read set into `running`.
pub async fn preload(
    running: &Running,
    run_id: &str,
    options: &crate::cli::Options,
) -> Result<ReadSet> {
    let began = Instant::now();
    let mut streams = Vec::new();
    for &len in &options.stream_lengths {
        for i in 0..options.streams_per_length {
            streams.push((format!("{run_id}-rs{len}-{i}"), len));
        }
    }
    let clients = running.clients(LOADERS).await?;
    let mut handles = Vec::new();
    for (w, client) in clients.into_iter().enumerate() {
        let mine: Vec<(String, u64)> = streams.iter().skip(w).step_by(LOADERS).cloned().collect();
        let payload = options.payload;
        handles.push(tokio::spawn(async move {
            for (name, len) in mine {
                fill_stream(&client, &name, len, payload).await?;
            }
            Ok::<_, BenchError>(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let probe = running.clients(1).await?;
    let head = probe[0].head().await?;
    if head < options.events {
        fill(
            running,
            &format!("{run_id}-fill"),
            options.events - head,
            options.payload,
        )
        .await?;
    }
    let head = probe[0].head().await?;
    let secs = began.elapsed().as_secs_f64();
    println!(
        "  {}: preloaded read set, $all holds {head} events ({secs:.1} s)",
        running.kind.name()
    );
    Ok(ReadSet { streams, head })
}
