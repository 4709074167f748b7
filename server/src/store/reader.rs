//! Reads: a stream by revision or `$all` by position, forwards or
//! backwards, in bounded batches. Forward `$all` reads scan segments
//! sequentially through a fixed-size buffer; everything else goes through
//! the index (its in-memory tail, then sled) to a record's location. Reads
//! look at committed positions only, never wait for sled, and never hold a
//! whole result in memory.

use std::sync::Arc;

use super::error::{ReadError, Result, StorageError};
use super::index::{Location, RevisionRun};
use super::record::{self, EventRecord};
use super::scanner::{self, Step};
use super::segment::{Segment, HEADER_LEN};
use super::sink::EventSink;
use super::state::{Runs, Shared};
use super::types::{now_micros, Direction, EventId, Filter, ReadFrom, RecordedEvent};

/// Bytes read from a segment at a time by sequential scans.
const SCAN_CHUNK: usize = 256 << 10;
/// A batch closes once its events carry this many bytes of data.
const BATCH_BYTES: usize = 1 << 20;
/// Backward reads read this many events forwards at a time and reverse them.
const BACKWARD_CHUNK: u64 = 128;

/// Batches of a read, in order, each collected into an `S`. Each `next`
/// does blocking I/O.
pub(crate) struct ReadBatches<S = Vec<RecordedEvent>> {
    shared: Arc<Shared>,
    kind: Kind,
    remaining: u64,
    done: bool,
    names: NameCache,
    /// Events read (backward chunks are read forwards, then reversed) but
    /// not yet returned.
    backlog: std::collections::VecDeque<RecordedEvent>,
    visibility: Visibility,
    sink: std::marker::PhantomData<fn() -> S>,
}

enum Kind {
    AllForward {
        cursor: Option<LogCursor>,
        next: u64,
        end: u64,
        filter: Filter,
    },
    AllBackward {
        /// One past the next position to read.
        next_end: u64,
        filter: Filter,
    },
    Stream {
        runs: Runs,
        /// Lowest and highest revision wanted.
        from: u64,
        to: u64,
        /// Positions at or past this are not readable yet.
        end: u64,
        backwards: bool,
        /// The run being read and the revisions of it still to read.
        current: Option<(RevisionRun, u64, u64)>,
        cursor: Option<LogCursor>,
    },
    Empty,
}

impl<S: EventSink> ReadBatches<S> {
    pub(crate) fn all(
        shared: Arc<Shared>,
        direction: Direction,
        from: ReadFrom,
        max_count: u64,
        filter: Filter,
    ) -> Result<Self, ReadError> {
        let end = shared.progress.committed();
        let kind = match direction {
            Direction::Forwards => {
                let next = match from {
                    ReadFrom::Start => 0,
                    ReadFrom::End => end,
                    ReadFrom::At(p) => p,
                };
                if next >= end {
                    Kind::Empty
                } else {
                    Kind::AllForward {
                        cursor: None,
                        next,
                        end,
                        filter,
                    }
                }
            }
            Direction::Backwards => {
                let next_end = match from {
                    ReadFrom::Start => 1.min(end),
                    ReadFrom::End => end,
                    ReadFrom::At(p) => p.saturating_add(1).min(end),
                };
                Kind::AllBackward { next_end, filter }
            }
        };
        Ok(Self::new(shared, kind, max_count))
    }

    pub(crate) fn stream(
        shared: Arc<Shared>,
        stream: &str,
        direction: Direction,
        from: ReadFrom,
        max_count: u64,
    ) -> Result<Self, ReadError> {
        let end = shared.progress.committed();
        let head = shared.stream_head(stream)?;
        let policy = shared.policies.get(stream);
        if policy.as_ref().is_some_and(|p| p.tombstoned) {
            return Err(ReadError::Tombstoned(stream.to_owned()));
        }
        let last = head.map(|h| h.last_revision);
        let (Some(head), false) = (head, policy.as_ref().is_some_and(|p| p.is_deleted(last)))
        else {
            return Err(ReadError::StreamNotFound(stream.to_owned()));
        };
        // Revisions below the floor are hidden (deleted, truncated, beyond
        // max-count): the read starts at it.
        let floor = policy.map_or(0, |p| p.floor(last));
        let backwards = direction == Direction::Backwards;
        let range = match (direction, from) {
            (Direction::Forwards, ReadFrom::Start) => Some((floor, u64::MAX)),
            (Direction::Forwards, ReadFrom::End) => None,
            (Direction::Forwards, ReadFrom::At(r)) => Some((r.max(floor), u64::MAX)),
            (Direction::Backwards, ReadFrom::Start) => (floor == 0).then_some((0, 0)),
            (Direction::Backwards, ReadFrom::End) => Some((floor, u64::MAX)),
            (Direction::Backwards, ReadFrom::At(r)) => (r >= floor).then_some((floor, r)),
        };
        let kind = match range {
            Some((from, to)) => Kind::Stream {
                runs: shared.runs(head.id, from, to, backwards)?,
                from,
                to,
                end,
                backwards,
                current: None,
                cursor: None,
            },
            None => Kind::Empty,
        };
        let mut r = Self::new(shared, kind, max_count);
        r.names.last = Some(Arc::from(stream));
        Ok(r)
    }

    fn new(shared: Arc<Shared>, kind: Kind, max_count: u64) -> Self {
        let visibility = Visibility::new(&shared);
        ReadBatches {
            shared,
            kind,
            remaining: if max_count == 0 { u64::MAX } else { max_count },
            done: false,
            names: NameCache::default(),
            backlog: std::collections::VecDeque::new(),
            visibility,
            sink: std::marker::PhantomData,
        }
    }

    fn is_all_forward(&self) -> bool {
        matches!(self.kind, Kind::AllForward { .. })
    }

    /// Lets a forward `$all` read go on to `end` (a later committed head),
    /// keeping its cursor.
    pub(crate) fn extend_to(&mut self, new_end: u64) {
        if let Kind::AllForward {
            next, end, cursor, ..
        } = &mut self.kind
        {
            if new_end > *end {
                *end = new_end;
                // What the buffer holds past the old end was read before
                // those records were written: read it again.
                if let Some(c) = cursor {
                    c.forget_buffered();
                }
                self.done = *next >= new_end || self.remaining == 0;
            }
        }
    }

    fn next_batch(&mut self) -> Result<S, ReadError> {
        self.visibility = Visibility::new(&self.shared);
        let limit = self.shared.config.read_batch.max(1) as u64;
        let limit = limit.min(self.remaining) as usize;
        let mut out = S::with_limit(limit);
        let mut bytes = 0usize;
        let shared = &self.shared;
        let names = &mut self.names;
        let backlog = &mut self.backlog;
        let vis = &mut self.visibility;
        let drain = |backlog: &mut std::collections::VecDeque<RecordedEvent>,
                     out: &mut S,
                     bytes: &mut usize| {
            while out.len() < limit && *bytes < BATCH_BYTES {
                let Some(e) = backlog.pop_front() else { break };
                *bytes += e.data.len() + e.metadata.len();
                out.push_event(e);
            }
        };
        drain(backlog, &mut out, &mut bytes);
        match &mut self.kind {
            Kind::Empty => {}
            Kind::AllForward {
                cursor,
                next,
                end,
                filter,
            } => {
                // Filtered reads may scan many events per match; bound the
                // scan per batch too so a batch comes back in bounded time.
                let mut scanned = 0usize;
                while out.len() < limit
                    && bytes < BATCH_BYTES
                    && *next < *end
                    && scanned < limit * 64
                {
                    let c = match cursor {
                        Some(c) => c,
                        None => cursor.insert(LogCursor::at(shared, *next)?),
                    };
                    let expected = *next;
                    let ev = c.next_in(shared, expected, *end, |rec| {
                        if filter.matches(rec.stream, rec.event_type)
                            && shared.admits(filter, rec.stream, rec.event_type)
                            && vis.visible(shared, rec.stream, rec.revision, rec.recorded_at_micros)
                        {
                            bytes += rec.data.len() + rec.metadata.len();
                            out.push_record(rec);
                        }
                        rec.position
                    })?;
                    match ev {
                        Next::Record(position) => *next = position + 1,
                        // Positions a scavenge removed, up to the end.
                        Next::Beyond => *next = *end,
                        Next::End => return Err(c.ends_before(expected).into()),
                    }
                    scanned += 1;
                }
                if *next >= *end {
                    self.done = true;
                }
            }
            Kind::AllBackward { next_end, filter } => {
                let mut scanned = 0usize;
                while out.len() < limit
                    && bytes < BATCH_BYTES
                    && *next_end > 0
                    && scanned < limit * 64
                {
                    let lo = next_end.saturating_sub(BACKWARD_CHUNK);
                    let mut chunk = read_range(shared, lo, *next_end, names)?;
                    scanned += chunk.len();
                    *next_end = lo;
                    chunk.reverse();
                    backlog.extend(chunk.into_iter().filter(|e| {
                        filter.matches(&e.stream, &e.event_type)
                            && shared.admits(filter, &e.stream, &e.event_type)
                            && vis.visible(shared, &e.stream, e.revision, e.recorded_at_micros)
                    }));
                    drain(backlog, &mut out, &mut bytes);
                }
                if *next_end == 0 {
                    self.done = true;
                }
            }
            Kind::Stream {
                runs,
                from,
                to,
                end,
                backwards,
                current,
                cursor,
            } => {
                while out.len() < limit && bytes < BATCH_BYTES {
                    let Some((run, lo, hi)) = current.as_mut() else {
                        match runs.next() {
                            None => {
                                self.done = true;
                                break;
                            }
                            Some(r) => {
                                let run = r?;
                                let lo = run.first_revision.max(*from);
                                let hi = run.end_revision().min(to.saturating_add(1));
                                *current = (lo < hi).then_some((run, lo, hi));
                                *cursor = None;
                                continue;
                            }
                        }
                    };
                    let position_of = |rev: u64| run.first_position + (rev - run.first_revision);
                    if !*backwards {
                        if position_of(*lo) >= *end {
                            self.done = true;
                            break;
                        }
                        let c = match cursor {
                            Some(c) => c,
                            // A run's first event is where the run says.
                            None if *lo == run.first_revision => cursor.insert(
                                LogCursor::at_location(shared, run.location, position_of(*lo))?,
                            ),
                            None => cursor.insert(LogCursor::at(shared, position_of(*lo))?),
                        };
                        let read =
                            c.next_in(shared, position_of(*lo), position_of(*hi), |rec| {
                                if vis.visible(
                                    shared,
                                    rec.stream,
                                    rec.revision,
                                    rec.recorded_at_micros,
                                ) {
                                    bytes += rec.data.len() + rec.metadata.len();
                                    out.push_record(rec);
                                }
                                rec.revision
                            })?;
                        match read {
                            Next::Record(revision) => *lo = revision + 1,
                            // The rest of the run was removed by a scavenge.
                            Next::Beyond => *lo = *hi,
                            Next::End => return Err(c.ends_before(position_of(*lo)).into()),
                        }
                    } else {
                        let chunk_lo = hi.saturating_sub(BACKWARD_CHUNK).max(*lo);
                        let mut chunk =
                            read_range(shared, position_of(chunk_lo), position_of(*hi), names)?;
                        *hi = chunk_lo;
                        chunk.reverse();
                        backlog.extend(chunk.into_iter().filter(|e| {
                            e.position < *end
                                && vis.visible(shared, &e.stream, e.revision, e.recorded_at_micros)
                        }));
                        drain(backlog, &mut out, &mut bytes);
                    }
                    if lo >= hi {
                        *current = None;
                        *cursor = None;
                    }
                }
            }
        }
        self.remaining -= out.len() as u64;
        if self.remaining == 0 || matches!(self.kind, Kind::Empty) {
            self.done = true;
        } else if !self.backlog.is_empty() {
            self.done = false;
        }
        Ok(out)
    }
}

impl<S: EventSink> ReadBatches<S> {
    /// The next batch of a forward `$all` read together with the position
    /// it has scanned up to (exclusive) and whether it reached the end.
    pub(crate) fn next_scanned(&mut self) -> Result<(S, Option<u64>, bool), ReadError> {
        let batch = if self.done {
            S::with_limit(1)
        } else {
            self.next_batch()?
        };
        let scanned = match &self.kind {
            Kind::AllForward { next, .. } => Some(*next),
            _ => None,
        };
        Ok((batch, scanned, self.done))
    }
}

/// A read in progress: its batches, each produced by one short hop onto
/// the blocking pool, so a slow consumer holds memory (the batch it has and
/// the one read ahead), not a thread. While the consumer sends one batch,
/// the next is read.
pub struct ReadStream<S = Vec<RecordedEvent>> {
    state: Hop<S>,
}

/// One hop's result: the batch, the `$all` position scanned up to
/// (exclusive), and whether the read reached its end.
pub(crate) type Scanned<S> = (S, Option<u64>, bool);

type HopResult<S> = (Box<ReadBatches<S>>, Result<Scanned<S>, ReadError>);

/// Where a read's cursor is: here, on the blocking pool, or gone.
enum Hop<S> {
    Idle(Box<ReadBatches<S>>),
    /// A hop in progress; kept, so that a `next()` dropped before it
    /// finished (a timeout, a lost `select!`) loses nothing.
    Busy(tokio::task::JoinHandle<HopResult<S>>),
    Done,
}

impl<S: EventSink> ReadStream<S> {
    pub(crate) fn new(batches: ReadBatches<S>) -> Self {
        ReadStream {
            state: Hop::Idle(Box::new(batches)),
        }
    }

    fn start(mut batches: Box<ReadBatches<S>>) -> Hop<S> {
        Hop::Busy(tokio::task::spawn_blocking(move || {
            let r = batches.next_scanned();
            (batches, r)
        }))
    }

    /// The next non-empty batch, in order; `None` at the end of the read.
    /// After an error the read is over. Cancel-safe: a call dropped before
    /// it returned leaves its batch to the next call.
    pub async fn next(&mut self) -> Option<Result<S, ReadError>> {
        loop {
            if matches!(&self.state, Hop::Idle(b) if b.done) {
                self.state = Hop::Done;
            }
            match self.next_scanned().await? {
                Ok((batch, _, _)) if !batch.is_empty() => return Some(Ok(batch)),
                Ok(_) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// The next hop's batch (possibly empty); `None` once the read is over.
    /// The hop after it starts before this returns, unless the read
    /// reached its end (it then waits, idle, for [`Self::extend_to`]).
    pub(crate) async fn next_scanned(&mut self) -> Option<Result<Scanned<S>, ReadError>> {
        let handle = match std::mem::replace(&mut self.state, Hop::Done) {
            Hop::Done => return None,
            Hop::Busy(h) => h,
            Hop::Idle(batches) => match Self::start(batches) {
                Hop::Busy(h) => h,
                _ => return None,
            },
        };
        self.state = Hop::Busy(handle);
        let Hop::Busy(handle) = &mut self.state else {
            return None;
        };
        let joined = handle.await;
        match joined {
            Ok((batches, Ok(scanned))) => {
                self.state = if scanned.2 {
                    Hop::Idle(batches)
                } else {
                    Self::start(batches)
                };
                Some(Ok(scanned))
            }
            Ok((_, Err(e))) => {
                self.state = Hop::Done;
                Some(Err(e))
            }
            Err(_) => {
                self.state = Hop::Done;
                Some(Err(ReadError::ShuttingDown))
            }
        }
    }

    /// Lets a forward `$all` read that reached its end go on to `end`,
    /// with its cursor and buffer. `false` when it cannot (not idle at its
    /// end, or not such a read): start a new read instead.
    pub(crate) fn extend_to(&mut self, end: u64) -> bool {
        match &mut self.state {
            Hop::Idle(b) if b.done && b.is_all_forward() => {
                b.extend_to(end);
                true
            }
            _ => false,
        }
    }
}

impl ReadStream<Vec<RecordedEvent>> {
    /// Every remaining event (for small reads and tests; a large read
    /// should go batch by batch).
    pub async fn collect_all(mut self) -> Result<Vec<RecordedEvent>, ReadError> {
        let mut out = Vec::new();
        while let Some(b) = self.next().await {
            out.extend(b?);
        }
        Ok(out)
    }
}

/// The non-empty batches of a read, on the calling (blocking) thread.
impl<S: EventSink> Iterator for ReadBatches<S> {
    type Item = Result<S, ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            match self.next_batch() {
                Ok(b) if b.is_empty() => continue,
                Ok(b) => return Some(Ok(b)),
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Which events a read may return, from the streams' lifecycle policies as
/// they were when the current batch started (max-count counts from the
/// stream's head then; max-age from then): a read, or a long catch-up,
/// sees a lifecycle change from its next batch on.
pub(crate) struct Visibility {
    /// No stream had a policy: everything is visible, with no lookup.
    none: bool,
    now_micros: i64,
    /// Per stream: the lowest visible revision and the oldest visible
    /// commit time.
    rules: std::collections::HashMap<Box<str>, (u64, i64)>,
    /// The last stream asked about and its rule: consecutive events mostly
    /// share a stream.
    last: Option<(Box<str>, (u64, i64))>,
}

/// Streams whose rule a read keeps before it starts over.
const VISIBILITY_CACHE: usize = 4096;

impl Visibility {
    pub(crate) fn new(shared: &Shared) -> Self {
        let none = shared.policies.is_empty();
        Visibility {
            none,
            // Only an age rule needs the clock.
            now_micros: if none { 0 } else { now_micros() },
            rules: std::collections::HashMap::new(),
            last: None,
        }
    }

    pub(crate) fn visible(
        &mut self,
        shared: &Shared,
        stream: &str,
        revision: u64,
        recorded_at: i64,
    ) -> bool {
        if self.none {
            return true;
        }
        if let Some((name, (floor, oldest))) = &self.last {
            if &**name == stream {
                return revision >= *floor && recorded_at >= *oldest;
            }
        }
        let (floor, oldest) = match self.rules.get(stream) {
            Some(r) => *r,
            None => {
                let rule = match shared.policies.get(stream) {
                    None => (0, i64::MIN),
                    Some(p) if p.tombstoned => (u64::MAX, i64::MAX),
                    Some(p) => {
                        let last = shared
                            .stream_head(stream)
                            .ok()
                            .flatten()
                            .map(|h| h.last_revision);
                        let oldest = p.oldest_visible_micros(self.now_micros);
                        (p.floor(last), oldest.unwrap_or(i64::MIN))
                    }
                };
                if self.rules.len() >= VISIBILITY_CACHE {
                    self.rules.clear();
                }
                self.rules.insert(stream.into(), rule);
                rule
            }
        };
        self.last = Some((stream.into(), (floor, oldest)));
        revision >= floor && recorded_at >= oldest
    }
}

/// Reuses one `Arc<str>` per stream name while consecutive events share it.
#[derive(Default)]
struct NameCache {
    last: Option<Arc<str>>,
}

impl NameCache {
    fn get(&mut self, name: &str) -> Arc<str> {
        match &self.last {
            Some(n) if &**n == name => n.clone(),
            _ => {
                let n: Arc<str> = Arc::from(name);
                self.last = Some(n.clone());
                n
            }
        }
    }
}

/// Reads the events at positions `lo..hi` (committed), in order.
fn read_range(
    shared: &Shared,
    lo: u64,
    hi: u64,
    names: &mut NameCache,
) -> Result<Vec<RecordedEvent>> {
    let mut out = Vec::with_capacity((hi - lo) as usize);
    if lo >= hi {
        return Ok(out);
    }
    let mut cursor = LogCursor::at(shared, lo)?;
    walk_range(shared, &mut cursor, lo, hi, |r| {
        out.push(r.to_event(names.get(r.stream)))
    })?;
    Ok(out)
}

/// Hands the records at positions `lo..hi` (committed) to `f`, in order;
/// positions a scavenge removed are skipped.
fn walk_range(
    shared: &Shared,
    cursor: &mut LogCursor,
    lo: u64,
    hi: u64,
    mut f: impl FnMut(&EventRecord<'_>),
) -> Result<()> {
    let mut expected = lo;
    while expected < hi {
        match cursor.next_in(shared, expected, hi, |r| {
            f(r);
            r.position
        })? {
            Next::Record(p) => expected = p + 1,
            Next::Beyond => break,
            Next::End => return Err(cursor.ends_before(expected)),
        }
    }
    Ok(())
}

/// The ids of the `count` events from `position` on (for idempotency
/// checks), `None` for each that a scavenge removed.
pub(crate) fn read_ids(
    shared: &Shared,
    position: u64,
    count: usize,
) -> Result<Vec<Option<EventId>>> {
    let mut cursor = LogCursor::at(shared, position)?;
    let mut ids = vec![None; count];
    walk_range(
        shared,
        &mut cursor,
        position,
        position + count as u64,
        |r| ids[(r.position - position) as usize] = Some(r.id),
    )?;
    Ok(ids)
}

fn segment_of(shared: &Shared, loc: Location) -> Result<Arc<Segment>> {
    shared.segments.get(loc.segment).ok_or_else(|| {
        StorageError::corrupt(
            shared.log_dir.join(super::segment::file_name(loc.segment)),
            loc.offset,
            "the index points into a segment that does not exist",
        )
    })
}

/// A sequential reader over the log through a bounded buffer.
pub(crate) struct LogCursor {
    seg: Arc<Segment>,
    /// File offset of `buf[at]`.
    offset: u64,
    buf: Vec<u8>,
    at: usize,
    eof: bool,
}

/// What a walk over a range of positions meets next.
pub(crate) enum Next<T> {
    /// A record in the range (what the caller made of it).
    Record(T),
    /// A record at or past the end of the range (not consumed).
    Beyond,
    /// The end of the log.
    End,
}

impl LogCursor {
    fn in_segment(seg: Arc<Segment>, offset: u64) -> Self {
        LogCursor {
            seg,
            offset,
            buf: Vec::new(),
            at: 0,
            eof: false,
        }
    }

    /// A cursor at the record of `position`, where `loc` (from the index)
    /// says it is. In a scavenged segment the index's offsets are not used:
    /// the cursor is at the first record at or after `position` there.
    fn at_location(shared: &Shared, loc: Location, position: u64) -> Result<Self> {
        let seg = segment_of(shared, loc)?;
        if seg.has_gaps() {
            return Self::at_or_after_in(seg, position);
        }
        Ok(Self::in_segment(seg, loc.offset))
    }

    /// A cursor at the first record at or after `position` in a scavenged
    /// segment, from its position table.
    fn at_or_after_in(seg: Arc<Segment>, position: u64) -> Result<Self> {
        let from = seg
            .gaps
            .as_ref()
            .and_then(|g| g.floor(position))
            .map_or(HEADER_LEN, |(_, o)| o);
        let mut c = Self::in_segment(seg, from);
        loop {
            match scanner::step(&c.buf[c.at..], c.eof) {
                Step::Record(rec, _) if rec.position >= position => return Ok(c),
                Step::Record(_, used) => c.at += used,
                Step::NeedMore(needed) => c.refill(needed)?,
                // Past its last record: the cursor goes on to the next
                // segment at its next step.
                Step::End => return Ok(c),
                Step::Corrupt(reason) => {
                    return Err(StorageError::corrupt(
                        &c.seg.path,
                        c.offset + c.at as u64,
                        reason.to_string(),
                    ))
                }
            }
        }
    }

    /// A cursor at the record of `position` (which must be committed):
    /// from the nearest indexed location at or before it, skipping records.
    /// If a scavenge removed that record, the cursor is at the next one.
    pub(crate) fn at(shared: &Shared, position: u64) -> Result<Self> {
        if let Some(seg) = shared.segments.floor(position).filter(|s| s.has_gaps()) {
            return Self::at_or_after_in(seg, position);
        }
        let (indexed, loc) = shared.locate(position)?.ok_or_else(|| {
            StorageError::IndexMismatch(format!("position {position} is not in the index"))
        })?;
        // The records in between (in the same segment) are stepped over by
        // their frame lengths, unchecked, and the one reached must be the
        // record of `position`. If it is not (a damaged length on the way),
        // the walk is done again record by record, so that the error names
        // the damaged record.
        let seg = segment_of(shared, loc)?;
        if seg.has_gaps() {
            // Scavenged since the lookup above.
            return Self::at_or_after_in(seg, position);
        }
        let mut c = Self::in_segment(seg.clone(), loc.offset);
        let skipped = (indexed..position).try_for_each(|p| c.skip_frame(p));
        if skipped.is_ok() && c.reaches(position)? {
            return Ok(c);
        }
        let mut c = Self::in_segment(seg, loc.offset);
        for p in indexed..position {
            c.expect_record(shared, p, |_| ())?;
        }
        Ok(c)
    }

    /// Whether the next record decodes and has `position` (consumes nothing).
    fn reaches(&mut self, position: u64) -> Result<bool> {
        loop {
            match scanner::step(&self.buf[self.at..], self.eof) {
                Step::Record(rec, _) => return Ok(rec.position == position),
                Step::NeedMore(needed) => self.refill(needed)?,
                Step::End | Step::Corrupt(_) => return Ok(false),
            }
        }
    }

    /// Steps over the frame of the record at `position` without decoding it.
    fn skip_frame(&mut self, position: u64) -> Result<()> {
        let corrupt =
            |c: &Self, why: String| StorageError::corrupt(&c.seg.path, c.offset + c.at as u64, why);
        if self.buf.len() - self.at < record::FRAME_HEADER {
            self.refill(record::FRAME_HEADER)?;
        }
        let len = record::peek_len(&self.buf[self.at..]).unwrap_or(0);
        if len == 0 || len > record::MAX_PAYLOAD {
            return Err(corrupt(
                self,
                format!("no record of position {position} to step over"),
            ));
        }
        let used = record::FRAME_HEADER + len;
        if self.buf.len() - self.at < used {
            self.refill(used)?;
            if self.buf.len() < used {
                return Err(corrupt(
                    self,
                    format!("the log ends inside the record of position {position}"),
                ));
            }
        }
        self.at += used;
        Ok(())
    }

    /// Decodes the next record, which must have `position`, and hands it to `f`.
    pub(crate) fn expect_record<T>(
        &mut self,
        shared: &Shared,
        position: u64,
        f: impl FnOnce(&EventRecord<'_>) -> T,
    ) -> Result<T> {
        match self.advance(shared, |r| {
            (r.position == position).then(|| f(r)).ok_or(r.position)
        })? {
            Some(Ok(t)) => Ok(t),
            Some(Err(found)) => Err(StorageError::corrupt(
                &self.seg.path,
                self.offset + self.at as u64,
                format!("expected position {position}, found {found}"),
            )),
            None => Err(self.ends_before(position)),
        }
    }

    /// The error of a walk that met the end of the log before `position`.
    fn ends_before(&self, position: u64) -> StorageError {
        StorageError::corrupt(
            &self.seg.path,
            self.offset + self.at as u64,
            format!("the log ends before position {position}"),
        )
    }

    /// The next record if its position is below `hi`, handed to `f`. Its
    /// position must be `expected`, or (in a scavenged segment, whose
    /// positions may skip) any from `expected` on.
    pub(crate) fn next_in<T>(
        &mut self,
        shared: &Shared,
        expected: u64,
        hi: u64,
        f: impl FnOnce(&EventRecord<'_>) -> T,
    ) -> Result<Next<T>> {
        loop {
            match scanner::step(&self.buf[self.at..], self.eof) {
                Step::Record(rec, used) => {
                    let p = rec.position;
                    if p < expected || (p > expected && !self.seg.has_gaps()) {
                        return Err(StorageError::corrupt(
                            &self.seg.path,
                            self.offset + self.at as u64,
                            format!("expected position {expected}, found {p}"),
                        ));
                    }
                    if p >= hi {
                        return Ok(Next::Beyond);
                    }
                    let t = f(&rec);
                    self.at += used;
                    return Ok(Next::Record(t));
                }
                Step::NeedMore(needed) => self.refill(needed)?,
                Step::End => {
                    if !self.next_segment(shared) {
                        return Ok(Next::End);
                    }
                }
                Step::Corrupt(reason) => {
                    return Err(StorageError::corrupt(
                        &self.seg.path,
                        self.offset + self.at as u64,
                        reason.to_string(),
                    ))
                }
            }
        }
    }

    /// Drops the buffered bytes past the cursor; the next step reads them
    /// from the file again.
    fn forget_buffered(&mut self) {
        self.offset += self.at as u64;
        self.buf.clear();
        self.at = 0;
        self.eof = false;
    }

    fn refill(&mut self, need: usize) -> Result<()> {
        self.offset += self.at as u64;
        let want = need.max(SCAN_CHUNK);
        // A scavenged segment's records end before its position table.
        let room = self.seg.gaps.as_ref().map_or(want, |g| {
            want.min(g.data_end.saturating_sub(self.offset) as usize)
        });
        self.buf.resize(room, 0);
        let n = self.seg.read_at(&mut self.buf, self.offset)?;
        self.buf.truncate(n);
        self.eof = n < want;
        self.at = 0;
        Ok(())
    }

    /// Decodes the next record and hands it to `f`; `None` at the end of
    /// the log.
    pub(crate) fn advance<T>(
        &mut self,
        shared: &Shared,
        f: impl FnOnce(&EventRecord<'_>) -> T,
    ) -> Result<Option<T>> {
        loop {
            match scanner::step(&self.buf[self.at..], self.eof) {
                Step::Record(rec, used) => {
                    let t = f(&rec);
                    self.at += used;
                    return Ok(Some(t));
                }
                Step::NeedMore(needed) => self.refill(needed)?,
                Step::End => {
                    if !self.next_segment(shared) {
                        return Ok(None);
                    }
                }
                Step::Corrupt(reason) => {
                    return Err(StorageError::corrupt(
                        &self.seg.path,
                        self.offset + self.at as u64,
                        reason.to_string(),
                    ))
                }
            }
        }
    }

    fn next_segment(&mut self, shared: &Shared) -> bool {
        let Some(next) = shared.segments.next_after(self.seg.base) else {
            return false;
        };
        self.seg = next;
        self.offset = HEADER_LEN;
        self.buf.clear();
        self.at = 0;
        self.eof = false;
        true
    }
}
