//! Scavenging: rewriting sealed segments without the events that reads hide
//! (deleted, tombstoned, truncated, past `max_count` or `max_age`), online,
//! on a thread of its own. Each new segment is written beside the old one,
//! synced, and renamed over it (`segment::write_scavenged`), so a crash at
//! any moment leaves one or the other, both holding every visible event.
//! Survivors keep their bytes, positions and revisions; the index's offsets
//! into a rewritten segment are not used again (its own table is).
//!
//! What is kept even when hidden: the events of `$lifecycle` and of the
//! `$$` metadata streams (the store's policies are rebuilt from them;
//! other `$`-streams follow their own retention), each stream's
//! last event (a rebuilt index learns its revision from it), the last
//! record of every segment (so positions stay dense across segment
//! boundaries) and the commit record of any atomic unit that keeps a record
//! (so every unit still ends in one). Every rule keeps the last records of
//! an append, so what survives of an append is its tail, at consecutive
//! positions: the shape a replay of the log indexes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::error::{Result, StorageError};
use super::policy::{LIFECYCLE_STREAM, METADATA_PREFIX};
use super::reader::Visibility;
use super::scanner::{Scanned, Scanner};
use super::segment::{self, Segment, HEADER_LEN, TABLE_STRIDE};
use super::state::Shared;
use super::types::now_micros;

/// Where a scavenge is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScavengeState {
    /// None has run since the store opened.
    Idle,
    /// One is rewriting segments.
    Running,
    /// The last one went through every sealed segment.
    Done,
    /// The last one was stopped; the next start resumes after the last
    /// segment it finished.
    Stopped,
    /// The last one met an error (in `error`).
    Failed,
}

/// The progress of the running scavenge, or the outcome of the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScavengeStatus {
    /// Where it is.
    pub state: ScavengeState,
    /// Sealed segments gone through (rewritten or found with nothing to
    /// reclaim).
    pub segments_done: u64,
    /// Sealed segments it goes through.
    pub segments_total: u64,
    /// Bytes of segment files given back.
    pub bytes_reclaimed: u64,
    /// Records removed.
    pub events_removed: u64,
    /// When it started, microseconds since the Unix epoch (0: never).
    pub started_at_micros: i64,
    /// What failed, when `state` is `Failed`.
    pub error: String,
}

impl Default for ScavengeStatus {
    fn default() -> Self {
        ScavengeStatus {
            state: ScavengeState::Idle,
            segments_done: 0,
            segments_total: 0,
            bytes_reclaimed: 0,
            events_removed: 0,
            started_at_micros: 0,
            error: String::new(),
        }
    }
}

/// The store's scavenges: at most one running.
#[derive(Default)]
pub(crate) struct Scavenges {
    status: Mutex<ScavengeStatus>,
    /// Asks the running scavenge to stop at its next segment.
    stop: AtomicBool,
    /// The base of the first segment a resumed scavenge goes through.
    resume_from: Mutex<Option<u64>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Scavenges {
    /// The running or last scavenge.
    pub(crate) fn status(&self) -> ScavengeStatus {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Starts a scavenge on its own thread; `None` if one is running.
    pub(crate) fn start(self: &Arc<Self>, shared: Arc<Shared>) -> Option<ScavengeStatus> {
        let mut status = self.status.lock().unwrap_or_else(|e| e.into_inner());
        if status.state == ScavengeState::Running {
            return None;
        }
        let resume_from = match status.state {
            ScavengeState::Stopped => self
                .resume_from
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
            _ => None,
        };
        let resumed = resume_from.is_some();
        *status = ScavengeStatus {
            state: ScavengeState::Running,
            started_at_micros: now_micros(),
            // A resumed scavenge goes on counting.
            ..if resumed {
                status.clone()
            } else {
                ScavengeStatus::default()
            }
        };
        let started = status.clone();
        self.stop.store(false, Ordering::SeqCst);
        let me = self.clone();
        let mut thread = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(done) = thread.take() {
            let _ = done.join();
        }
        let spawned = std::thread::Builder::new()
            .name("strata-scavenge".into())
            .spawn(move || me.run(&shared, resume_from.unwrap_or(0)));
        match spawned {
            Ok(t) => *thread = Some(t),
            Err(e) => {
                status.state = ScavengeState::Failed;
                status.error = format!("starting the scavenge thread: {e}");
                return Some(status.clone());
            }
        }
        Some(started)
    }

    /// Asks the running scavenge to stop after the segment it is on.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// Stops the running scavenge and waits for its thread (at close).
    pub(crate) fn stop_and_join(&self) {
        self.request_stop();
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }

    fn update(&self, f: impl FnOnce(&mut ScavengeStatus)) {
        f(&mut self.status.lock().unwrap_or_else(|e| e.into_inner()));
    }

    fn run(&self, shared: &Shared, from: u64) {
        let sealed = sealed_segments(shared);
        let total = sealed.len() as u64;
        let done_before = sealed.iter().filter(|s| s.base < from).count() as u64;
        self.update(|s| {
            s.segments_total = total;
            s.segments_done = done_before;
        });
        tracing::info!(segments = total, from, "scavenge started");
        for seg in sealed.iter().filter(|s| s.base >= from) {
            if self.stop.load(Ordering::SeqCst) || shared.lifecycle.is_closing() {
                *self.resume_from.lock().unwrap_or_else(|e| e.into_inner()) = Some(seg.base);
                self.update(|s| s.state = ScavengeState::Stopped);
                tracing::info!(at_segment = seg.base, "scavenge stopped");
                return;
            }
            match scavenge_segment(shared, seg) {
                Ok(reclaimed) => {
                    shared
                        .observer
                        .segment_scavenged(reclaimed.bytes, reclaimed.events);
                    self.update(|s| {
                        s.segments_done += 1;
                        s.bytes_reclaimed += reclaimed.bytes;
                        s.events_removed += reclaimed.events;
                    });
                }
                Err(e) => {
                    tracing::error!(error = %e, segment = seg.base, "scavenge failed");
                    self.update(|s| {
                        s.state = ScavengeState::Failed;
                        s.error = e.to_string();
                    });
                    return;
                }
            }
        }
        self.update(|s| s.state = ScavengeState::Done);
        let status = self.status();
        tracing::info!(
            bytes_reclaimed = status.bytes_reclaimed,
            events_removed = status.events_removed,
            "scavenge done"
        );
    }
}

/// The segments a scavenge may rewrite: every one but the last (which the
/// writer appends to), and only those whose records are all durable.
fn sealed_segments(shared: &Shared) -> Vec<Arc<Segment>> {
    let all = shared.segments.all();
    let committed = shared.progress.committed();
    all.windows(2)
        .filter(|w| w[1].base <= committed)
        .map(|w| w[0].clone())
        .collect()
}

/// What rewriting one segment gave back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reclaimed {
    pub(crate) bytes: u64,
    pub(crate) events: u64,
}

/// Rewrites `seg` without its removable records, if it has any, and puts
/// the new segment in its place for readers.
pub(crate) fn scavenge_segment(shared: &Shared, seg: &Arc<Segment>) -> Result<Reclaimed> {
    let data_end = seg.data_end()?;
    let mut bytes = vec![0u8; data_end.saturating_sub(HEADER_LEN) as usize];
    let n = seg.read_at(&mut bytes, HEADER_LEN)?;
    bytes.truncate(n);
    let mut scanner = Scanner::new(&bytes, HEADER_LEN, seg.base).with_gaps(seg.has_gaps());
    let mut visibility = Visibility::new(shared);
    let mut heads: HashMap<String, Option<u64>> = HashMap::new();
    // (offset into `bytes`, frame length, position, keep) of every record.
    let mut records: Vec<(usize, usize, u64, bool)> = Vec::new();
    let mut unit_start = 0usize;
    loop {
        match scanner.next_item() {
            Some(Scanned::Record { rec, offset, len }) => {
                let head = match heads.get(rec.stream) {
                    Some(h) => *h,
                    None => {
                        let h = shared.stream_head(rec.stream)?.map(|h| h.last_revision);
                        heads.insert(rec.stream.to_owned(), h);
                        h
                    }
                };
                let keep = rec.stream == LIFECYCLE_STREAM
                    || rec.stream.starts_with(METADATA_PREFIX)
                    || head.is_none_or(|h| rec.revision >= h)
                    || visibility.visible(shared, rec.stream, rec.revision, rec.recorded_at_micros);
                records.push(((offset - HEADER_LEN) as usize, len, rec.position, keep));
                if rec.is_commit() {
                    let unit = &mut records[unit_start..];
                    if unit.iter().any(|r| r.3) {
                        if let Some(last) = unit.last_mut() {
                            last.3 = true;
                        }
                    }
                    unit_start = records.len();
                }
            }
            Some(Scanned::End { .. }) => break,
            Some(Scanned::Corrupt { offset, reason }) => {
                return Err(StorageError::corrupt(&seg.path, offset, reason.to_string()))
            }
            None => unreachable!("a scan ends with End or Corrupt"),
        }
    }
    if let Some(last) = records.last_mut() {
        last.3 = true;
    }
    let removed = records.iter().filter(|r| !r.3).count() as u64;
    if removed == 0 {
        return Ok(Reclaimed::default());
    }
    let mut frames = Vec::with_capacity(bytes.len());
    let mut entries = Vec::new();
    for (i, (o, len, position, _)) in records.iter().filter(|r| r.3).enumerate() {
        if i % TABLE_STRIDE == 0 {
            entries.push((*position, HEADER_LEN + frames.len() as u64));
        }
        frames.extend_from_slice(&bytes[*o..*o + *len]);
    }
    drop(bytes);
    let old_len = seg.len()?;
    let new = segment::write_scavenged(
        &*shared.config.storage,
        &shared.log_dir,
        seg.base,
        &frames,
        &entries,
    )?;
    let new_len = new.len()?;
    shared.segments.insert(Arc::new(new));
    tracing::debug!(
        segment = seg.base,
        removed,
        bytes_before = old_len,
        bytes_after = new_len,
        "segment scavenged"
    );
    Ok(Reclaimed {
        bytes: old_len.saturating_sub(new_len),
        events: removed,
    })
}
