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
use super::reader::ReadBatches;
use super::state::CommittedBatch;
use super::state::{Condition, Shared};
use super::types::{
    Direction, Filter, ReadFrom, RecordedEvent, SubscribeFrom, SubscriptionMessage,
    SubscriptionTarget,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    CatchUp,
    Live,
}

/// A running subscription; pull messages with [`Subscription::next`].
pub struct Subscription {
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
    pending: VecDeque<SubscriptionMessage>,
    checkpoint: CheckpointClock,
}

struct CheckpointClock {
    enabled: bool,
    sent: u64,
    scanned: u64,
    at: Instant,
}

impl Subscription {
    pub(crate) fn new(
        shared: Arc<Shared>,
        target: SubscriptionTarget,
        from: SubscribeFrom,
    ) -> Result<Self, ReadError> {
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
        })
    }

    /// The next message; `Ok(None)` once the store is closing.
    pub async fn next(&mut self) -> Result<Option<SubscriptionMessage>, ReadError> {
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

    /// Reads one bounded chunk from the log.
    async fn catch_up(&mut self) -> Result<(), ReadError> {
        let shared = self.shared.clone();
        let target = self.target.clone();
        let (next_revision, global_next) = (self.next_revision, self.global_next);
        let chunk =
            super::hop(move || read_chunk(&shared, &target, next_revision, global_next)).await??;
        let before = self.global_next;
        if let Some(last) = chunk.events.last() {
            self.next_revision = last.revision + 1;
        }
        if let Some(g) = chunk.global_next {
            self.global_next = g;
        }
        if !chunk.events.is_empty() {
            self.pending
                .push_back(SubscriptionMessage::Events(chunk.events));
        }
        self.tick_checkpoint(self.global_next.saturating_sub(before), false);
        if chunk.at_head {
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
        Ok(())
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
        let events: Vec<RecordedEvent> = match &self.target {
            SubscriptionTarget::All(filter) => batch
                .events
                .iter()
                .filter(|e| e.position >= before && filter.matches(&e.stream, &e.event_type))
                .cloned()
                .collect(),
            SubscriptionTarget::Stream(name) => batch
                .events
                .iter()
                .filter(|e| &*e.stream == name.as_str() && e.revision >= self.next_revision)
                .cloned()
                .collect(),
        };
        self.global_next = batch.end_position;
        if let Some(last) = events.last() {
            self.next_revision = last.revision + 1;
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

struct Chunk {
    events: Vec<RecordedEvent>,
    global_next: Option<u64>,
    at_head: bool,
}

fn read_chunk(
    shared: &Arc<Shared>,
    target: &SubscriptionTarget,
    next_revision: u64,
    global_next: u64,
) -> Result<Chunk, ReadError> {
    match target {
        SubscriptionTarget::All(filter) => all_chunk(shared, filter, global_next),
        SubscriptionTarget::Stream(name) => {
            let head = shared.progress.committed();
            let mut reader = match ReadBatches::stream(
                shared.clone(),
                name,
                Direction::Forwards,
                ReadFrom::At(next_revision),
                0,
            ) {
                Ok(r) => r,
                Err(ReadError::StreamNotFound(_)) => {
                    return Ok(Chunk {
                        events: Vec::new(),
                        global_next: Some(head),
                        at_head: true,
                    })
                }
                Err(e) => return Err(e),
            };
            let (events, _, done) = reader.next_scanned()?;
            Ok(Chunk {
                events,
                global_next: done.then_some(head),
                at_head: done,
            })
        }
    }
}

fn all_chunk(shared: &Arc<Shared>, filter: &Filter, from: u64) -> Result<Chunk, ReadError> {
    let mut reader = ReadBatches::all(
        shared.clone(),
        Direction::Forwards,
        ReadFrom::At(from),
        0,
        filter.clone(),
    )?;
    let (events, scanned, done) = reader.next_scanned()?;
    Ok(Chunk {
        events,
        global_next: Some(scanned.unwrap_or(from)),
        at_head: done,
    })
}
