//! Subscriptions: catch up from the log, then follow the writer's
//! published batches. Every event is delivered once, in order, across the
//! switch. A subscriber that falls behind the live buffer (or sees a gap)
//! goes back to reading the log; it is never dropped for being slow.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

use super::error::ReadError;
use super::reader::{ReadBatches, ReadStream, Visibility};
use super::sink::EventSink;
use super::state::CommittedBatch;
use super::state::{Condition, Shared};
use super::types::{
    Direction, ReadFrom, RecordedEvent, SubscribeFrom, SubscriptionMessage, SubscriptionTarget,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    CatchUp,
    Live,
}

/// A running subscription; pull messages with [`Subscription::next`].
/// Event batches are collected into `S`.
pub struct Subscription<S = Vec<RecordedEvent>> {
    shared: Arc<Shared>,
    target: SubscriptionTarget,
    live: broadcast::Receiver<Arc<CommittedBatch>>,
    /// Becomes true when the store closes.
    closing: watch::Receiver<Condition>,
    /// Stream: next revision to deliver. `$all`: unused (see `global_next`).
    next_revision: u64,
    /// Next global position not yet examined.
    global_next: u64,
    mode: Mode,
    caught_up_sent: bool,
    pending: VecDeque<SubscriptionMessage<S>>,
    checkpoint: CheckpointClock,
    /// The catch-up read, kept from batch to batch (cursor, buffer, one
    /// batch read ahead) until the subscription reaches the head.
    reader: Option<CatchUp<S>>,
}

struct CatchUp<S> {
    read: ReadStream<S>,
    /// A stream read: the head when it started, which is how far the
    /// subscription has looked once the read is done.
    head: u64,
}

struct CheckpointClock {
    enabled: bool,
    sent: u64,
    scanned: u64,
    at: Instant,
}

impl<S: EventSink> Subscription<S> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        target: SubscriptionTarget,
        from: SubscribeFrom,
    ) -> Result<Self, ReadError> {
        if let SubscriptionTarget::Stream(name) = &target {
            if shared.policies.get(name).is_some_and(|p| p.tombstoned) {
                return Err(ReadError::Tombstoned(name.clone()));
            }
        }
        // Subscribe to live batches before anything is read, so nothing
        // committed from here on can be missed.
        let live = shared.live.subscribe();
        let closing = shared.lifecycle.watch();
        let head = shared.progress.committed();
        let (next_revision, global_next) = match (&target, from) {
            (SubscriptionTarget::All(_), SubscribeFrom::Start) => (0, 0),
            (SubscriptionTarget::All(_), SubscribeFrom::End) => (0, head),
            (SubscriptionTarget::All(_), SubscribeFrom::After(p)) => (0, p.saturating_add(1)),
            (SubscriptionTarget::Stream(_), SubscribeFrom::Start) => (0, 0),
            (SubscriptionTarget::Stream(name), SubscribeFrom::End) => {
                // The head may already count a batch committed after
                // `head`: it is then also delivered live, and skipped there
                // by revision.
                let next = shared.stream_head(name)?.map_or(0, |h| h.last_revision + 1);
                (next, 0)
            }
            (SubscriptionTarget::Stream(_), SubscribeFrom::After(r)) => (r.saturating_add(1), 0),
        };
        let enabled = matches!(&target, SubscriptionTarget::All(f) if !f.is_empty());
        Ok(Subscription {
            checkpoint: CheckpointClock {
                enabled,
                sent: global_next,
                scanned: 0,
                at: Instant::now(),
            },
            shared,
            target,
            live,
            closing,
            next_revision,
            global_next,
            mode: Mode::CatchUp,
            caught_up_sent: false,
            pending: VecDeque::new(),
            reader: None,
        })
    }

    /// The next message; `Ok(None)` once the store is closing.
    pub async fn next(&mut self) -> Result<Option<SubscriptionMessage<S>>, ReadError> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Ok(Some(m));
            }
            if self.shared.lifecycle.is_closing() {
                return Ok(None);
            }
            match self.mode {
                Mode::CatchUp => self.catch_up().await?,
                Mode::Live => {
                    if !self.follow().await? {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Reads one bounded batch from the log.
    async fn catch_up(&mut self) -> Result<(), ReadError> {
        if self.reader.is_none() {
            let opening = Self::open_reader(
                self.shared.clone(),
                self.target.clone(),
                self.next_revision,
                self.global_next,
            );
            match opening.await? {
                Ok(r) => self.reader = Some(r),
                // The stream does not exist yet: nothing to catch up on up
                // to the head seen before it was looked up (a first event
                // committed since is delivered live).
                Err(head) => {
                    self.reached_head(head);
                    return Ok(());
                }
            }
        }
        let step = match self.reader.as_mut() {
            Some(r) => r.read.next_scanned().await,
            None => None,
        };
        let Some(step) = step else {
            self.reader = None;
            return Ok(());
        };
        let (events, scanned, done) = match step {
            Ok(s) => s,
            Err(e) => {
                self.reader = None;
                return Err(e);
            }
        };
        let before = self.global_next;
        if let Some(last) = events.last_revision() {
            self.next_revision = last + 1;
        }
        if let Some(g) = scanned {
            self.global_next = g;
        }
        if !events.is_empty() {
            self.pending.push_back(SubscriptionMessage::Events(events));
        }
        self.tick_checkpoint(self.global_next.saturating_sub(before), false);
        if done {
            let head = self.shared.progress.committed();
            let stream_head = self.reader.as_ref().map_or(0, |r| r.head);
            let reader = self.reader.as_mut();
            match self.target {
                // More was committed meanwhile: read on with the same cursor.
                SubscriptionTarget::All(_)
                    if head > self.global_next
                        && reader.is_some_and(|r| r.read.extend_to(head)) => {}
                SubscriptionTarget::All(_) => self.reached_head(self.global_next),
                SubscriptionTarget::Stream(_) => self.reached_head(stream_head),
            }
        }
        Ok(())
    }

    /// The catch-up read from where the subscription stands; for a stream
    /// that does not exist, the head as it was before the stream was
    /// looked up.
    async fn open_reader(
        shared: Arc<Shared>,
        target: SubscriptionTarget,
        next_revision: u64,
        global_next: u64,
    ) -> Result<Result<CatchUp<S>, u64>, ReadError> {
        super::hop(move || {
            let head = shared.progress.committed();
            let batches = match &target {
                SubscriptionTarget::All(filter) => ReadBatches::all(
                    shared,
                    Direction::Forwards,
                    ReadFrom::At(global_next),
                    0,
                    filter.clone(),
                )?,
                SubscriptionTarget::Stream(name) => match ReadBatches::stream(
                    shared,
                    name,
                    Direction::Forwards,
                    ReadFrom::At(next_revision),
                    0,
                ) {
                    Ok(r) => r,
                    Err(ReadError::StreamNotFound(_)) => return Ok(Err(head)),
                    Err(e) => return Err(e),
                },
            };
            Ok(Ok(CatchUp {
                read: ReadStream::new(batches),
                head,
            }))
        })
        .await?
    }

    /// The catch-up is over, having looked at everything before `head`:
    /// follow live batches from there.
    fn reached_head(&mut self, head: u64) {
        self.reader = None;
        self.global_next = self.global_next.max(head);
        self.mode = Mode::Live;
        if !self.caught_up_sent {
            self.caught_up_sent = true;
            let (position, revision) = match self.target {
                SubscriptionTarget::All(_) => (self.global_next.checked_sub(1), None),
                SubscriptionTarget::Stream(_) => (None, self.next_revision.checked_sub(1)),
            };
            self.pending
                .push_back(SubscriptionMessage::CaughtUp { position, revision });
        }
    }

    /// Waits for the next live batch. `false` when the store closed.
    async fn follow(&mut self) -> Result<bool, ReadError> {
        let wait = self
            .checkpoint
            .enabled
            .then_some(self.shared.config.checkpoint_interval);
        let live = &mut self.live;
        let closing = &mut self.closing;
        let received = tokio::select! {
            r = async {
                match wait {
                    Some(wait) => tokio::time::timeout(wait, live.recv()).await.ok(),
                    None => Some(live.recv().await),
                }
            } => r,
            // The broadcast sender outlives a closed store while
            // subscriptions hold it, so closing must wake them itself.
            _ = async { closing.wait_for(|c| c.closing).await.map(|_| ()) } => {
                return Ok(false)
            }
        };
        let Some(received) = received else {
            self.tick_checkpoint(0, true);
            return Ok(true);
        };
        let batch = match received {
            Ok(b) => b,
            Err(RecvError::Lagged(_)) => {
                self.mode = Mode::CatchUp;
                return Ok(true);
            }
            Err(RecvError::Closed) => return Ok(false),
        };
        if batch.end_position <= self.global_next {
            return Ok(true);
        }
        if batch.first_position > self.global_next || batch.elided {
            // Something was not seen live (a gap, or a batch too large for
            // the live buffer): read it from the log.
            self.mode = Mode::CatchUp;
            return Ok(true);
        }
        let before = self.global_next;
        let limit = self.shared.config.read_batch.max(1);
        // Lifecycle applies live too: an event hidden when it was committed
        // (a stream truncated past it, deleted in the same batch) is not
        // delivered, as a catch-up would not deliver it.
        // Only a batch with events of streams that have a policy needs it.
        let mut vis = batch.has_policy.then(|| Visibility::new(&self.shared));
        let shared = &self.shared;
        let mut visible = |e: &RecordedEvent| {
            vis.as_mut()
                .is_none_or(|v| v.visible(shared, &e.stream, e.revision, e.recorded_at_micros))
        };
        let events = match &self.target {
            // Taken whole: the encoding is shared with every subscriber
            // that does the same. Only without `$`-stream events and events
            // of streams with a lifecycle policy.
            SubscriptionTarget::All(filter)
                if filter.is_empty()
                    && !batch.has_system
                    && !batch.has_policy
                    && batch.first_position >= before =>
            {
                S::whole_batch(&batch.events, &batch.encoding, limit)
            }
            SubscriptionTarget::All(filter) => some_of(&batch.events, limit, |e| {
                e.position >= before
                    && filter.matches(&e.stream, &e.event_type)
                    && shared.admits(filter, &e.stream, &e.event_type)
                    && visible(e)
            }),
            SubscriptionTarget::Stream(name) => some_of(&batch.events, limit, |e| {
                &*e.stream == name.as_str() && e.revision >= self.next_revision && visible(e)
            }),
        };
        self.global_next = batch.end_position;
        if let Some(last) = events.last_revision() {
            self.next_revision = last + 1;
        }
        if !events.is_empty() {
            self.pending.push_back(SubscriptionMessage::Events(events));
        }
        self.tick_checkpoint(self.global_next - before, false);
        Ok(true)
    }

    fn tick_checkpoint(&mut self, scanned: u64, timer: bool) {
        let c = &mut self.checkpoint;
        if !c.enabled {
            return;
        }
        c.scanned += scanned;
        let due = c.scanned >= self.shared.config.checkpoint_every_events
            || c.at.elapsed() >= self.shared.config.checkpoint_interval
            || timer;
        if due && self.global_next > c.sent {
            c.sent = self.global_next;
            c.scanned = 0;
            c.at = Instant::now();
            // `global_next > sent >= 0`: something was scanned.
            self.pending.push_back(SubscriptionMessage::Checkpoint {
                position: self.global_next - 1,
            });
        }
    }
}

fn some_of<S: EventSink>(
    events: &[RecordedEvent],
    limit: usize,
    mut keep: impl FnMut(&RecordedEvent) -> bool,
) -> S {
    let mut sink = S::with_limit(limit);
    for e in events.iter().filter(|e| keep(e)) {
        sink.push_shared(e);
    }
    sink
}
