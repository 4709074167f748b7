//! The single writer: it owns the active segment and the in-memory stream
//! heads, drains every waiting append into one group-commit batch, checks
//! expected versions, assigns revisions and dense positions in commit
//! order, writes the batch with one write and one `fdatasync`, adds it to
//! the index tail, and only then answers, publishes to subscribers and
//! hands the batch to the indexer. Nothing else assigns positions or
//! writes the log.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::config::SyncMode;
use super::error::{AppendError, Result, StorageError};
use super::id_filter::Ids;
use super::index::{records_location, AppendEntry, IdEntry, Location, StreamHead};
use super::indexer;
use super::io::StorageFile;
use super::policy::{self, StreamPolicy};
use super::record::{self, EventRecord, FLAG_COMMIT};
use super::recovery::Recovered;
use super::segment::{self, Segment, HEADER_LEN};
use super::state::{CommittedBatch, Shared};
use super::types::{
    now_micros, AppendOutcome, AppendRequest, Conflict, EventId, ExpectedVersion, LifecycleOutcome,
    LifecycleRequest, MultiAppendOutcome, MultiAppendRequest, NewEvent, RecordedEvent,
    StreamResult,
};

/// Most bytes the writer gathers into one batch before it writes; a single
/// larger append is written alone.
const MAX_BATCH_BYTES: usize = 8 << 20;

/// Work on its way to the writer: one atomic unit each.
pub(crate) enum WriteRequest {
    /// One append.
    Append {
        req: AppendRequest,
        reply: oneshot::Sender<Result<AppendOutcome, AppendError>>,
    },
    /// Several appends and checks, in one atomic write.
    Multi {
        req: MultiAppendRequest,
        reply: oneshot::Sender<Result<MultiAppendOutcome, AppendError>>,
    },
    /// A delete, a tombstone or a metadata change; `metadata` is the
    /// record data of a metadata change, encoded (and size-checked) by the
    /// caller.
    Lifecycle {
        req: LifecycleRequest,
        metadata: Vec<u8>,
        reply: oneshot::Sender<Result<LifecycleOutcome, AppendError>>,
    },
}

impl WriteRequest {
    fn approx_size(&self) -> usize {
        match self {
            WriteRequest::Append { req, .. } => approx_size(req),
            WriteRequest::Multi { req, .. } => req.appends.iter().map(approx_size).sum(),
            WriteRequest::Lifecycle { metadata, .. } => 256 + metadata.len(),
        }
    }
}

/// Largest event data a committed batch may carry into the live buffer.
/// A subscriber that does not drain its receiver keeps up to `live_buffer`
/// batches alive, so this bounds that memory by bytes, not just batches.
const LIVE_BATCH_BYTES: usize = 256 << 10;

/// Starts the writer and indexer threads.
pub(crate) fn start(
    shared: Arc<Shared>,
    rec: Recovered,
) -> Result<(mpsc::Sender<WriteRequest>, Vec<JoinHandle<()>>)> {
    let (tx, rx) = mpsc::channel(1024);
    let queue = indexer::IndexQueue::new(shared.config.index_appends);
    let seg = match rec.write_segment {
        Some(s) => s,
        None => open_new_segment(&shared, rec.next_position, shared.config.segment_size)?,
    };
    let seg_size = seg.len()?;
    *shared
        .committed_end
        .lock()
        .unwrap_or_else(|e| e.into_inner()) = (seg.base, rec.write_offset.max(HEADER_LEN));
    // Every append's first id, so that new ids need no index lookup.
    let ids = Ids::fill(shared.index.clone());
    let writer = Writer {
        ids,
        seg_size,
        seg,
        offset: rec.write_offset.max(HEADER_LEN),
        heads: rec
            .heads
            .into_iter()
            .map(|(k, v)| (Arc::from(k.as_str()), v))
            .collect(),
        next_stream_id: rec.next_stream_id,
        next_position: rec.next_position,
        policies: shared.policies.snapshot(),
        policy_changes: Vec::new(),
        pending: HashMap::new(),
        pending_order: VecDeque::new(),
        buf: Vec::with_capacity(1 << 20),
        spare: None,
        index_tx: indexer::IndexSender(queue.clone()),
        shared: shared.clone(),
    };
    let w = std::thread::Builder::new()
        .name("strata-writer".into())
        .spawn(move || writer.run(rx))
        .map_err(|e| StorageError::io("writer thread", e))?;
    let s = shared;
    let i = std::thread::Builder::new()
        .name("strata-indexer".into())
        .spawn(move || indexer::run(s, queue))
        .map_err(|e| StorageError::io("indexer thread", e))?;
    Ok((tx, vec![w, i]))
}

fn open_new_segment(shared: &Shared, base: u64, size: u64) -> Result<Arc<Segment>> {
    let file = segment::create(&*shared.config.storage, &shared.log_dir, base, size)?;
    let seg = Arc::new(Segment {
        base,
        path: shared.log_dir.join(segment::file_name(base)),
        file,
        version: segment::FORMAT_VERSION,
        gaps: None,
    });
    shared.segments.insert(seg.clone());
    Ok(seg)
}

struct Writer {
    shared: Arc<Shared>,
    seg: Arc<Segment>,
    seg_size: u64,
    /// Where the next record goes in `seg`.
    offset: u64,
    heads: HashMap<Arc<str>, StreamHead>,
    next_stream_id: u64,
    next_position: u64,
    /// Every stream's lifecycle, including the changes of the batch being
    /// built (readers get them once the batch is durable).
    policies: HashMap<Arc<str>, StreamPolicy>,
    /// The policies the batch being built changed.
    policy_changes: Vec<(Arc<str>, StreamPolicy)>,
    /// The first id of every append written: "new" needs no index lookup.
    ids: Ids,
    /// Appends written but maybe not yet in the index, by first event id,
    /// so idempotency checks see them; pruned once the indexer has them.
    pending: HashMap<EventId, Pending>,
    pending_order: VecDeque<(u64, EventId)>,
    buf: Vec<u8>,
    /// The next segment's file, being zero-filled in the background.
    spare: Option<JoinHandle<Result<Arc<dyn StorageFile>>>>,
    index_tx: indexer::IndexSender,
}

/// An append the index may not have yet.
struct Pending {
    at: IdEntry,
    ids: Vec<EventId>,
}

/// What one request of a batch turned into, waiting for the sync.
enum Reply {
    Append(
        oneshot::Sender<Result<AppendOutcome, AppendError>>,
        Result<AppendOutcome, AppendError>,
    ),
    Multi(
        oneshot::Sender<Result<MultiAppendOutcome, AppendError>>,
        Result<MultiAppendOutcome, AppendError>,
    ),
    Lifecycle(
        oneshot::Sender<Result<LifecycleOutcome, AppendError>>,
        Result<LifecycleOutcome, AppendError>,
    ),
}

impl Reply {
    fn send(self) {
        match self {
            Reply::Append(to, r) => drop(to.send(r)),
            Reply::Multi(to, r) => drop(to.send(r)),
            Reply::Lifecycle(to, r) => drop(to.send(r)),
        }
    }

    /// The batch could not be made durable: only what wrote nothing keeps
    /// its answer.
    fn send_failed(self, why: &str) {
        let poisoned = || AppendError::Poisoned(why.to_owned());
        match self {
            Reply::Append(to, r) => drop(to.send(match r {
                Ok(o @ AppendOutcome::WrongExpectedVersion { .. }) => Ok(o),
                _ => Err(poisoned()),
            })),
            Reply::Multi(to, r) => drop(to.send(match r {
                Ok(o @ MultiAppendOutcome::WrongExpectedVersion { .. }) => Ok(o),
                _ => Err(poisoned()),
            })),
            Reply::Lifecycle(to, r) => drop(to.send(match r {
                Ok(o @ LifecycleOutcome::WrongExpectedVersion { .. }) => Ok(o),
                _ => Err(poisoned()),
            })),
        }
    }
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<WriteRequest>) {
        self.prepare_spare();
        let mut requests = Vec::new();
        while let Some(first) = rx.blocking_recv() {
            let mut bytes = first.approx_size();
            requests.push(first);
            while bytes < MAX_BATCH_BYTES {
                match rx.try_recv() {
                    Ok(r) => {
                        bytes += r.approx_size();
                        requests.push(r);
                    }
                    Err(_) => break,
                }
            }
            self.ids.poll();
            self.commit(&mut requests);
        }
        if let Some(h) = self.spare.take() {
            let _ = h.join();
        }
        tracing::debug!("writer stopped: no more senders");
    }

    /// Turns the waiting requests into one durable batch and answers them.
    fn commit(&mut self, requests: &mut Vec<WriteRequest>) {
        if let Some(why) = self.shared.lifecycle.poisoned() {
            for r in requests.drain(..) {
                match r {
                    WriteRequest::Append { reply, .. } => {
                        Reply::Append(reply, Err(AppendError::ShuttingDown))
                    }
                    WriteRequest::Multi { reply, .. } => {
                        Reply::Multi(reply, Err(AppendError::ShuttingDown))
                    }
                    WriteRequest::Lifecycle { reply, .. } => {
                        Reply::Lifecycle(reply, Err(AppendError::ShuttingDown))
                    }
                }
                .send_failed(&why);
            }
            return;
        }
        self.prune_pending();
        let started = Instant::now();
        let batch_start = self.next_position;
        let now = now_micros();
        let mut replies: Vec<Reply> = Vec::with_capacity(requests.len());
        let mut batch = CommittedBatch {
            first_position: batch_start,
            end_position: batch_start,
            events: Vec::new(),
            // Events are copied for live subscribers only when there are
            // some; one that subscribes during the batch gets it elided
            // (read from the log).
            elided: self.shared.live.receiver_count() == 0,
            encoding: Default::default(),
            has_system: false,
            has_policy: false,
            entries: Vec::new(),
            heads: Vec::new(),
        };
        let mut appends = 0;
        let mut bytes_written = 0;
        let mut sync_time = std::time::Duration::ZERO;
        let mut failure: Option<String> = None;
        for work in requests.drain(..) {
            let mut io = Io {
                sync_time: &mut sync_time,
                bytes_written: &mut bytes_written,
            };
            let reply = match work {
                WriteRequest::Append { req, reply } => {
                    let outcome = self.unit(
                        &mut failure,
                        |w| w.check(&req),
                        |w| {
                            w.make_room(unit_size(std::slice::from_ref(&req)), false, &mut io)?;
                            let (revision, position) = w.stage(&req, now, &mut batch, true);
                            appends += 1;
                            Ok(AppendOutcome::Success {
                                next_expected_revision: revision,
                                position,
                            })
                        },
                    );
                    Reply::Append(reply, outcome)
                }
                WriteRequest::Multi { req, reply } => {
                    let outcome = self.unit(
                        &mut failure,
                        |w| w.check_multi(&req),
                        |w| {
                            let o = w.stage_multi(&req, now, &mut batch, &mut io)?;
                            appends += req.appends.len();
                            Ok(o)
                        },
                    );
                    Reply::Multi(reply, outcome)
                }
                WriteRequest::Lifecycle {
                    req,
                    metadata,
                    reply,
                } => {
                    let outcome = self.unit(
                        &mut failure,
                        |w| w.check_lifecycle(&req),
                        |w| {
                            let o = w.stage_lifecycle(&req, metadata, now, &mut batch, &mut io)?;
                            appends += 1;
                            Ok(o)
                        },
                    );
                    Reply::Lifecycle(reply, outcome)
                }
            };
            replies.push(reply);
        }
        if failure.is_none() {
            match self.flush_and_sync() {
                Ok((n, t)) => {
                    bytes_written += n;
                    sync_time += t;
                }
                Err(e) => failure = Some(e.to_string()),
            }
        }
        if let Some(why) = failure {
            self.shared.lifecycle.poison(why.clone());
            for reply in replies {
                // Nothing in this batch is acknowledged: it may not be on disk.
                reply.send_failed(&why);
            }
            return;
        }
        batch.end_position = self.next_position;
        let events = (batch.end_position - batch.first_position) as usize;
        // Durable: lifecycle changes and the index tail visible to reads,
        // then answered at once; publishing and the sled index come after
        // the answers.
        if !self.policy_changes.is_empty() {
            self.shared.policies.set(self.policy_changes.drain(..));
        }
        if events > 0 {
            self.shared.tail.add(&batch.entries, &batch.heads);
        }
        *self
            .shared
            .committed_end
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = (self.seg.base, self.offset);
        self.shared.progress.set_committed(self.next_position);
        for reply in replies {
            reply.send();
        }
        if events > 0 {
            if self.shared.live.receiver_count() > 0 {
                let live_events = std::mem::take(&mut batch.events);
                let bytes: usize = live_events
                    .iter()
                    .map(|e| e.data.len() + e.metadata.len())
                    .sum();
                let elided = batch.elided || bytes > LIVE_BATCH_BYTES;
                let live = CommittedBatch {
                    first_position: batch.first_position,
                    end_position: batch.end_position,
                    events: if elided { Vec::new() } else { live_events },
                    elided,
                    encoding: Default::default(),
                    has_system: batch.has_system,
                    has_policy: batch.has_policy,
                    entries: Vec::new(),
                    heads: Vec::new(),
                };
                let _ = self.shared.live.send(Arc::new(live));
            }
            batch.events.clear();
            if self.index_tx.0.push(Arc::new(batch)).is_err() {
                self.shared.lifecycle.poison("the indexer stopped".into());
            }
        }
        self.shared
            .observer
            .batch_committed(appends, events, bytes_written, sync_time);
        tracing::trace!(
            appends,
            events,
            elapsed_us = started.elapsed().as_micros() as u64,
            "batch committed"
        );
    }

    /// One atomic unit of a batch: refused after an earlier failure of the
    /// batch; answered without writing when `check` says so (a retry, a
    /// conflict); otherwise staged. A staging failure (I/O) fails the batch.
    fn unit<T>(
        &mut self,
        failure: &mut Option<String>,
        check: impl FnOnce(&Self) -> Result<Option<T>, AppendError>,
        stage: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T, AppendError> {
        if failure.is_some() {
            return Err(AppendError::ShuttingDown);
        }
        if let Some(answer) = check(self)? {
            return Ok(answer);
        }
        stage(self).map_err(|e| {
            *failure = Some(e.to_string());
            e.into()
        })
    }

    /// Idempotency and expected-version checks of a multi-append, as
    /// `check` does for one append. A retry is recognised when every append
    /// is stored, one right after the other (one earlier multi-append); some
    /// stored and some not means ids were reused: an error.
    fn check_multi(
        &self,
        req: &MultiAppendRequest,
    ) -> Result<Option<MultiAppendOutcome>, AppendError> {
        for stream in req
            .appends
            .iter()
            .map(|a| &a.stream)
            .chain(req.checks.iter().map(|c| &c.stream))
        {
            self.current_revision(stream)?;
        }
        let mut stored = Vec::with_capacity(req.appends.len());
        for a in &req.appends {
            let head = self.heads.get(a.stream.as_str()).copied();
            stored.push(self.retry_outcome(a, head)?);
        }
        let found: Vec<(usize, u64, u64)> = stored
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Some(AppendOutcome::Success {
                    next_expected_revision,
                    position,
                }) => Some((i, *next_expected_revision, *position)),
                _ => None,
            })
            .collect();
        if found.len() == req.appends.len() {
            let contiguous = found.windows(2).all(|w| {
                let n = req.appends[w[1].0].events.len() as u64;
                w[1].2 + 1 - n == w[0].2 + 1
            });
            if contiguous {
                let results = found
                    .iter()
                    .map(|&(i, revision, position)| StreamResult {
                        stream: req.appends[i].stream.clone(),
                        next_expected_revision: revision,
                        position,
                    })
                    .collect::<Vec<_>>();
                let position = found.last().map_or(0, |f| f.2);
                return Ok(Some(MultiAppendOutcome::Success { results, position }));
            }
        }
        if let Some(&(i, _, position)) = found.first() {
            let a = &req.appends[i];
            return Err(AppendError::DuplicateEventId {
                id: a.events[0].id.to_string(),
                position: position + 1 - a.events.len() as u64,
            });
        }
        let conditions = req
            .appends
            .iter()
            .map(|a| (&a.stream, a.expected))
            .chain(req.checks.iter().map(|c| (&c.stream, c.expected)));
        let mut conflicts = Vec::new();
        for (stream, expected) in conditions {
            let current = self.current_revision(stream)?;
            if !expected.holds(current) {
                conflicts.push(Conflict {
                    stream: stream.clone(),
                    current_revision: current,
                    expected,
                });
            }
        }
        if conflicts.is_empty() {
            Ok(None)
        } else {
            Ok(Some(MultiAppendOutcome::WrongExpectedVersion { conflicts }))
        }
    }

    /// Encodes every append of a multi-append into the batch buffer as one
    /// atomic unit: contiguous, in one segment, with one commit record at
    /// the very end.
    fn stage_multi(
        &mut self,
        req: &MultiAppendRequest,
        now: i64,
        batch: &mut CommittedBatch,
        io: &mut Io<'_>,
    ) -> Result<MultiAppendOutcome> {
        self.make_room(unit_size(&req.appends), req.appends.len() > 1, io)?;
        let last = req.appends.len() - 1;
        let mut results = Vec::with_capacity(req.appends.len());
        for (i, a) in req.appends.iter().enumerate() {
            let (revision, position) = self.stage(a, now, batch, i == last);
            results.push(StreamResult {
                stream: a.stream.clone(),
                next_expected_revision: revision,
                position,
            });
        }
        let position = self.next_position - 1;
        Ok(MultiAppendOutcome::Success { results, position })
    }

    /// Idempotency and expected-version checks. `Ok(Some(_))` answers the
    /// request without writing; `Ok(None)` means: write it.
    fn check(&self, req: &AppendRequest) -> Result<Option<AppendOutcome>, AppendError> {
        let current = self.current_revision(&req.stream)?;
        let head = self.heads.get(req.stream.as_str()).copied();
        if let Some(outcome) = self.retry_outcome(req, head)? {
            return Ok(Some(outcome));
        }
        if req.expected.holds(current) {
            Ok(None)
        } else {
            Ok(Some(AppendOutcome::WrongExpectedVersion {
                current_revision: current,
                expected: req.expected,
            }))
        }
    }

    /// The stream's last revision as expected versions see it: `None`
    /// when it does not exist or is soft-deleted; an error once tombstoned.
    fn current_revision(&self, stream: &str) -> Result<Option<u64>, AppendError> {
        let last = self.heads.get(stream).map(|h| h.last_revision);
        match self.policies.get(stream) {
            Some(p) if p.tombstoned => Err(AppendError::Tombstoned(stream.to_owned())),
            Some(p) if p.is_deleted(last) => Ok(None),
            _ => Ok(last),
        }
    }

    /// The checks of a lifecycle change; `Ok(None)` means: record it.
    fn check_lifecycle(
        &self,
        req: &LifecycleRequest,
    ) -> Result<Option<LifecycleOutcome>, AppendError> {
        let (current, expected) = match req {
            LifecycleRequest::Delete { stream, expected } => {
                let Some(current) = self.current_revision(stream)? else {
                    return Err(AppendError::StreamNotFound(stream.clone()));
                };
                (Some(current), *expected)
            }
            LifecycleRequest::Tombstone { stream, expected } => {
                (self.current_revision(stream)?, *expected)
            }
            LifecycleRequest::SetMetadata {
                stream, expected, ..
            } => {
                self.current_revision(stream)?;
                let md = policy::metadata_stream(stream);
                (
                    self.heads.get(md.as_str()).map(|h| h.last_revision),
                    *expected,
                )
            }
        };
        if expected.holds(current) {
            Ok(None)
        } else {
            Ok(Some(LifecycleOutcome::WrongExpectedVersion {
                current_revision: current,
                expected,
            }))
        }
    }

    /// Records a lifecycle change as one event of a `$`-stream and updates
    /// the stream's policy (published with the batch).
    fn stage_lifecycle(
        &mut self,
        req: &LifecycleRequest,
        metadata_json: Vec<u8>,
        now: i64,
        batch: &mut CommittedBatch,
        io: &mut Io<'_>,
    ) -> Result<LifecycleOutcome> {
        let stream = req.stream();
        let last = self.heads.get(stream).map(|h| h.last_revision);
        let next_revision = last.map_or(0, |l| l + 1);
        let mut policy = self.policies.get(stream).cloned().unwrap_or_default();
        let (target, event_type, data) = match req {
            LifecycleRequest::Delete { .. } => {
                policy.deleted_before = next_revision;
                (
                    policy::LIFECYCLE_STREAM.to_owned(),
                    policy::DELETED_TYPE,
                    policy::marker_json(stream, next_revision),
                )
            }
            LifecycleRequest::Tombstone { .. } => {
                policy.deleted_before = next_revision;
                policy.tombstoned = true;
                (
                    policy::LIFECYCLE_STREAM.to_owned(),
                    policy::TOMBSTONED_TYPE,
                    policy::marker_json(stream, next_revision),
                )
            }
            LifecycleRequest::SetMetadata { metadata, .. } => {
                policy.metadata = Some(Arc::new(metadata.clone()));
                (
                    policy::metadata_stream(stream),
                    policy::METADATA_TYPE,
                    metadata_json,
                )
            }
        };
        let append = AppendRequest {
            stream: target,
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                id: EventId(*uuid::Uuid::new_v4().as_bytes()),
                event_type: event_type.to_owned(),
                data: data.into(),
                metadata: bytes::Bytes::new(),
                content_type: Some(policy::JSON.to_owned()),
            }],
        };
        self.make_room(unit_size(std::slice::from_ref(&append)), false, io)?;
        let (revision, position) = self.stage(&append, now, batch, true);
        let metadata_revision = matches!(req, LifecycleRequest::SetMetadata { .. }).then(|| {
            policy.metadata_revision = Some(revision);
            revision
        });
        let name: Arc<str> = Arc::from(stream);
        self.policies.insert(name.clone(), policy.clone());
        self.policy_changes.push((name, policy));
        Ok(LifecycleOutcome::Success {
            position,
            metadata_revision,
        })
    }

    /// If `req` repeats a stored append (same ids, same order, same
    /// stream), the original result; an error if its first id starts a
    /// different append. Appends are keyed by their first event id.
    fn retry_outcome(
        &self,
        req: &AppendRequest,
        head: Option<StreamHead>,
    ) -> Result<Option<AppendOutcome>, AppendError> {
        let first = req.events[0].id;
        let pending = self.pending.get(&first);
        let at = match pending {
            Some(p) => p.at,
            // Never written: no need to ask the index.
            None if !self.ids.may_contain(&first) => return Ok(None),
            None => match self.shared.index.first_id(&first)? {
                Some(at) => at,
                None => return Ok(None),
            },
        };
        let same_shape =
            head.map(|h| h.id) == Some(at.stream_id) && at.count as usize == req.events.len();
        let same_ids = same_shape
            && match pending {
                Some(p) => p.ids.iter().zip(&req.events).all(|(a, e)| *a == e.id),
                // Events a scavenge removed are taken on the first id's word.
                None => super::reader::read_ids(&self.shared, at.position, at.count as usize)?
                    .iter()
                    .zip(&req.events)
                    .all(|(a, e)| a.is_none_or(|a| a == e.id)),
            };
        if !same_ids {
            return Err(AppendError::DuplicateEventId {
                id: first.to_string(),
                position: at.position,
            });
        }
        let last = u64::from(at.count) - 1;
        Ok(Some(AppendOutcome::Success {
            next_expected_revision: at.revision + last,
            position: at.position + last,
        }))
    }

    /// Encodes the append into the batch buffer, rolling the segment first
    /// if it does not fit; assigns revisions and positions.
    /// Makes sure a unit of `size` bytes fits in the active segment: flushes
    /// and rolls when it does not (a unit never spans segments). A unit of
    /// several streams never goes into a segment of a format version older
    /// than 2, which could not say what it means.
    fn make_room(&mut self, size: u64, several_streams: bool, io: &mut Io<'_>) -> Result<()> {
        let end = self.offset + self.buf.len() as u64 + size;
        let old_format = several_streams && self.seg.version < segment::FORMAT_VERSION;
        if end > self.seg_size || old_format {
            let (n, t) = self.flush_and_sync()?;
            *io.bytes_written += n;
            *io.sync_time += t;
            if self.offset > HEADER_LEN || HEADER_LEN + size > self.seg_size || old_format {
                self.roll(size)?;
            }
        }
        Ok(())
    }

    /// Encodes the append into the batch buffer (room was made for it) and
    /// assigns revisions and positions; `commit` marks its last record as
    /// the end of its atomic unit.
    fn stage(
        &mut self,
        req: &AppendRequest,
        now: i64,
        batch: &mut CommittedBatch,
        commit: bool,
    ) -> (u64, u64) {
        let (stream, head) = match self.heads.get_key_value(req.stream.as_str()) {
            Some((k, h)) => (k.clone(), Some(*h)),
            None => (Arc::from(req.stream.as_str()), None),
        };
        batch.has_system |= stream.starts_with('$');
        batch.has_policy |= self.policies.contains_key(&stream);
        let stream_id = match head {
            Some(h) => h.id,
            None => {
                self.next_stream_id += 1;
                self.next_stream_id - 1
            }
        };
        let mut revision = head.map_or(0, |h| h.last_revision + 1);
        let first_position = self.next_position;
        let first_revision = revision;
        let first = Location {
            segment: self.seg.base,
            offset: self.offset + self.buf.len() as u64,
        };
        // Most appends of a few events record no location but their run's.
        let mut locations = Vec::new();
        let last = req.events.len() - 1;
        for (i, e) in req.events.iter().enumerate() {
            let position = self.next_position;
            let offset = self.offset + self.buf.len() as u64;
            if records_location(position, offset == HEADER_LEN) {
                locations.push((
                    position,
                    Location {
                        segment: self.seg.base,
                        offset,
                    },
                ));
            }
            let rec = EventRecord {
                flags: if commit && i == last { FLAG_COMMIT } else { 0 },
                position,
                revision,
                recorded_at_micros: now,
                id: e.id,
                stream: &stream,
                event_type: &e.event_type,
                content_type: e.content_type.as_deref().unwrap_or(""),
                metadata: &e.metadata,
                data: &e.data,
            };
            record::encode_event(&mut self.buf, &rec);
            if !batch.elided {
                batch.events.push(RecordedEvent {
                    stream: stream.clone(),
                    revision,
                    position,
                    id: e.id,
                    event_type: e.event_type.clone(),
                    data: e.data.clone(),
                    metadata: e.metadata.clone(),
                    content_type: e.content_type.clone(),
                    recorded_at_micros: now,
                });
            }
            self.next_position += 1;
            revision += 1;
        }
        let at = IdEntry {
            position: first_position,
            revision: first_revision,
            stream_id,
            count: req.events.len() as u32,
        };
        let first_id = req.events[0].id;
        self.ids.insert(&first_id);
        self.pending.insert(
            first_id,
            Pending {
                at,
                ids: req.events.iter().map(|e| e.id).collect(),
            },
        );
        self.pending_order.push_back((first_position, first_id));
        batch.entries.push(AppendEntry {
            first_id,
            at,
            first,
            locations,
        });
        let new_head = StreamHead {
            id: stream_id,
            last_revision: revision - 1,
        };
        self.heads.insert(stream.clone(), new_head);
        batch.heads.push((stream, new_head));
        (new_head.last_revision, self.next_position - 1)
    }

    /// Writes the buffer with one positional write and syncs it per the
    /// sync mode. Returns bytes written and time spent syncing.
    fn flush_and_sync(&mut self) -> Result<(usize, std::time::Duration)> {
        if self.buf.is_empty() {
            return Ok((0, std::time::Duration::ZERO));
        }
        let io = |e| StorageError::io(&self.seg.path, e);
        self.seg.file.write_at(&self.buf, self.offset).map_err(io)?;
        let t = Instant::now();
        if self.shared.config.sync_mode == SyncMode::Always {
            self.seg.file.sync_data().map_err(io)?;
        }
        let n = self.buf.len();
        self.offset += n as u64;
        self.buf.clear();
        Ok((n, t.elapsed()))
    }

    /// Starts a new segment whose first record will be the next position,
    /// from the prepared spare file when it is large enough.
    fn roll(&mut self, need: u64) -> Result<()> {
        let base = self.next_position;
        let dir = &self.shared.log_dir;
        let storage = &*self.shared.config.storage;
        let size = self.shared.config.segment_size;
        let spare = match self.spare.take().map(|h| h.join()) {
            Some(Ok(Ok(f))) => Some(f),
            Some(Ok(Err(e))) => return Err(e),
            Some(Err(_)) => {
                return Err(StorageError::io(
                    self.shared.log_dir.join(segment::SPARE_NAME),
                    std::io::Error::other("the segment preparer panicked"),
                ))
            }
            None => None,
        };
        let (file, size) = match spare {
            Some(f) if HEADER_LEN + need <= size => {
                (segment::install_spare(storage, dir, f, base)?, size)
            }
            _ => {
                let size = size.max(HEADER_LEN + need);
                (segment::create(storage, dir, base, size)?, size)
            }
        };
        let seg = Arc::new(Segment {
            base,
            path: dir.join(segment::file_name(base)),
            file,
            version: segment::FORMAT_VERSION,
            gaps: None,
        });
        self.shared.segments.insert(seg.clone());
        self.seg = seg;
        self.seg_size = size;
        self.offset = HEADER_LEN;
        self.prepare_spare();
        Ok(())
    }

    fn prepare_spare(&mut self) {
        let dir = self.shared.log_dir.clone();
        let storage = self.shared.config.storage.clone();
        let size = self.shared.config.segment_size;
        let spawned = std::thread::Builder::new()
            .name("strata-prealloc".into())
            .spawn(move || segment::prepare_spare(&*storage, &dir, size));
        // Without a spare the roll creates the file itself.
        self.spare = spawned.ok();
    }

    fn prune_pending(&mut self) {
        let indexed = self.shared.progress.indexed();
        while let Some(&(pos, id)) = self.pending_order.front() {
            if pos >= indexed {
                break;
            }
            self.pending_order.pop_front();
            if self.pending.get(&id).is_some_and(|p| p.at.position == pos) {
                self.pending.remove(&id);
            }
        }
    }
}

/// The syncs and bytes a batch's rolls cost, for the observer.
struct Io<'a> {
    sync_time: &'a mut std::time::Duration,
    bytes_written: &'a mut usize,
}

/// Bytes the records of `appends` take in the log.
fn unit_size(appends: &[AppendRequest]) -> u64 {
    appends.iter().map(record::append_len).sum()
}

fn approx_size(req: &AppendRequest) -> usize {
    req.events
        .iter()
        .map(|e| e.data.len() + e.metadata.len() + 128)
        .sum()
}
