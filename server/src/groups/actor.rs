//! One consumer group at work: a task that owns everything in flight (the
//! events read from the target and not done yet, who holds which, the
//! retry and replay queues, the checkpoint), fed by a reader task that
//! follows the target through a catch-up subscription, and by the consumers'
//! acks and nacks. Nothing in it waits on a consumer: a slow or stuck one
//! holds at most its buffer, and its events come back on timeout.
//!
//! An event is *done* when it is acknowledged, skipped, or parked (its park
//! record written). The checkpoint is the last event before which every
//! event read is done; it is written to the group's `$checkpoint-<id>`
//! stream now and then, so a restart redelivers at most what came after it.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::settings::{Settings, Strategy, Target};
use super::{checkpoint_stream, GroupMetrics};
use crate::store::{
    AppendRequest, Direction, EventId, ExpectedVersion, LifecycleRequest, NewEvent, ReadFrom,
    RecordedEvent, Store, StreamMetadata, SubscribeFrom, SubscriptionMessage, SubscriptionTarget,
};

/// Events read from the target and not done, at most (the reader waits).
const WINDOW_MAX: usize = 65_536;
/// Events read ahead of delivery, at most.
const PENDING_MAX: usize = 4096;
/// Replayed parked events queued, at most.
const REPLAY_MAX: usize = 1024;
/// How far a PINNED dispatch looks past a queue's head for an event whose
/// consumer has room.
const PINNED_SCAN: usize = 1024;

/// What a consumer does with events it could not handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NackAction {
    /// Deliver again, counting a retry.
    Retry,
    /// Park now.
    Park,
    /// Treat as done.
    Skip,
    /// Give back (no retry counted) and leave.
    Stop,
}

/// Why a consumer's call ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The group was deleted.
    Deleted,
    /// The consumer nacked with STOP.
    Stopped,
    /// The server is shutting down.
    ShuttingDown,
}

/// An event handed to a consumer.
#[derive(Debug)]
pub struct Delivery {
    /// The event.
    pub event: RecordedEvent,
    /// Deliveries before this one.
    pub retry_count: u32,
}

/// A consumer that joined.
pub struct Joined {
    /// Its id within the group.
    pub id: u64,
    /// Its events.
    pub rx: mpsc::Receiver<Delivery>,
    /// Why the group ended its call, when it does (its own channel, so
    /// that a full event channel cannot swallow it).
    pub end: oneshot::Receiver<EndReason>,
}

/// A consumer, as `GetInfo` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsumerInfo {
    /// The name it gave.
    pub name: String,
    /// Events it holds.
    pub in_flight: u32,
    /// Events handed to it.
    pub delivered: u64,
    /// Events it acknowledged.
    pub acked: u64,
    /// Its buffer size.
    pub buffer_size: u32,
}

/// A group's state, as `GetInfo` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// What it follows.
    pub target: Target,
    /// Its name.
    pub group: String,
    /// Its settings.
    pub settings: Settings,
    /// `live`, `idle` or `replaying-parked`.
    pub status: &'static str,
    /// Connected consumers.
    pub consumers: Vec<ConsumerInfo>,
    /// Position of the last event before which all are done.
    pub checkpoint_position: Option<u64>,
    /// Position of the last event read.
    pub last_position: Option<u64>,
    /// Parked events not replayed.
    pub parked_count: u64,
    /// Counters.
    pub delivered_total: u64,
    /// Counters.
    pub acked_total: u64,
    /// Counters.
    pub nacked_total: u64,
    /// Counters.
    pub timeouts_total: u64,
    /// Counters.
    pub parked_total: u64,
    /// The parked events' stream.
    pub parked_stream: String,
    /// Events of the target after the checkpoint.
    pub lag: u64,
}

/// Requests to a group's task.
pub enum Command {
    /// A consumer joins.
    Join {
        /// Its name.
        name: String,
        /// Its buffer size.
        buffer_size: u32,
        /// The consumer, or the limit of consumers that refused it.
        reply: oneshot::Sender<Result<Joined, u32>>,
    },
    /// A consumer left (its call ended).
    Leave(u64),
    /// A consumer's acks.
    Ack(u64, Vec<u64>),
    /// A consumer's nacks.
    Nack(u64, Vec<u64>, NackAction, String),
    /// New settings.
    Update(Settings),
    /// The group's state.
    Info(oneshot::Sender<GroupInfo>),
    /// Replay up to this many parked events; answers how many are queued.
    Replay(Option<u64>, oneshot::Sender<u64>),
    /// End every consumer's call and stop (writing the checkpoint first,
    /// unless the group is deleted).
    Stop(EndReason, oneshot::Sender<()>),
}

/// What a group remembered at start.
pub struct Resume {
    /// The last done event: position and revision.
    pub checkpoint: Option<(u64, u64)>,
    /// The next revision of the parked stream.
    pub parked_next: u64,
    /// The first parked revision not replayed.
    pub parked_floor: u64,
}

/// Completions of the group's own background work.
enum Internal {
    Parked(Item),
    ParkFailed(Item),
    CheckpointWritten((u64, u64)),
    CheckpointFailed,
    ReplayLink(u64, Option<RecordedEvent>),
    /// A replay read finished; the next one starts here (`None`: it
    /// failed, try the same again).
    ReplayRead(Option<u64>),
}

enum SourceMsg {
    Events(Vec<RecordedEvent>),
    Scanned(u64),
    Failed(String),
}

struct Item {
    event: RecordedEvent,
    retry_count: u32,
    /// For a replayed parked event: its revision in the parked stream.
    replay_rev: Option<u64>,
}

struct InFlight {
    item: Item,
    consumer: u64,
    deadline: Instant,
}

struct Consumer {
    id: u64,
    name: String,
    buffer_size: u32,
    in_flight: u32,
    delivered: u64,
    acked: u64,
    tx: mpsc::Sender<Delivery>,
    end: Option<oneshot::Sender<EndReason>>,
    /// Its channel was full in this dispatch (events taken back on timeout
    /// may still wait in it): skipped until the next one.
    blocked: bool,
}

impl Consumer {
    fn has_room(&self) -> bool {
        self.in_flight < self.buffer_size && !self.blocked
    }

    fn end(&mut self, reason: EndReason) {
        if let Some(end) = self.end.take() {
            let _ = end.send(reason);
        }
    }
}

/// Streams PINNED remembers, at most, beyond those with events held.
const MAX_PINS: usize = 100_000;

/// Which queue an event to deliver comes from.
#[derive(Clone, Copy)]
enum Queue {
    Retry,
    Replay,
    Pending,
}

pub(crate) struct Actor {
    store: Arc<Store>,
    id: u64,
    target: Target,
    group: String,
    /// The parked stream's name.
    parked: String,
    settings: Settings,
    metrics: GroupMetrics,
    consumers: Vec<Consumer>,
    /// PINNED: the consumer each stream's events go to, while it stays.
    pins: HashMap<Arc<str>, u64>,
    next_consumer: u64,
    rr: usize,
    retry: VecDeque<Item>,
    replay: VecDeque<Item>,
    pending: VecDeque<Item>,
    in_flight: HashMap<u64, InFlight>,
    deadlines: BTreeSet<(Instant, u64)>,
    /// Events read and not yet counted into the checkpoint: (position,
    /// revision, done).
    window: VecDeque<(u64, u64, bool)>,
    /// The last event read: position and revision.
    last_read: Option<(u64, u64)>,
    /// `$all`: the last position the reader scanned.
    scanned: Option<u64>,
    /// The last done event (the checkpoint to write).
    done_upto: Option<(u64, u64)>,
    written: Option<(u64, u64)>,
    writing: bool,
    done_since_write: u32,
    last_write: Instant,
    parked_next: u64,
    parked_floor: u64,
    parked_floor_written: u64,
    /// Parked revisions being replayed, in order, and whether done.
    replay_window: VecDeque<(u64, bool)>,
    /// The next parked revision a replay reads, and where it stops.
    replay_next: u64,
    replay_until: u64,
    replay_reading: bool,
    delivered_total: u64,
    acked_total: u64,
    nacked_total: u64,
    timeouts_total: u64,
    parked_total: u64,
    internal_tx: mpsc::UnboundedSender<Internal>,
}

/// Starts a group's task; returns its command sender.
pub(crate) fn spawn(
    store: Arc<Store>,
    id: u64,
    target: Target,
    group: String,
    settings: Settings,
    resume: Resume,
    metrics: GroupMetrics,
) -> mpsc::Sender<Command> {
    let (tx, rx) = mpsc::channel(1024);
    let (internal_tx, internal_rx) = mpsc::unbounded_channel();
    let parked = super::parked_stream(&target, &group);
    let actor = Actor {
        store,
        id,
        target,
        group,
        parked,
        settings,
        metrics,
        consumers: Vec::new(),
        pins: HashMap::new(),
        next_consumer: 0,
        rr: 0,
        retry: VecDeque::new(),
        replay: VecDeque::new(),
        pending: VecDeque::new(),
        in_flight: HashMap::new(),
        deadlines: BTreeSet::new(),
        window: VecDeque::new(),
        last_read: resume.checkpoint,
        scanned: None,
        done_upto: resume.checkpoint,
        written: resume.checkpoint,
        writing: false,
        done_since_write: 0,
        last_write: Instant::now(),
        parked_next: resume.parked_next,
        parked_floor: resume.parked_floor,
        parked_floor_written: resume.parked_floor,
        replay_window: VecDeque::new(),
        replay_next: resume.parked_floor,
        replay_until: resume.parked_floor,
        replay_reading: false,
        delivered_total: 0,
        acked_total: 0,
        nacked_total: 0,
        timeouts_total: 0,
        parked_total: 0,
        internal_tx,
    };
    tokio::spawn(actor.run(rx, internal_rx));
    tx
}

impl Actor {
    fn source_from(&self) -> SubscribeFrom {
        use super::settings::Start;
        let after = |n: u64| {
            n.checked_sub(1)
                .map_or(SubscribeFrom::Start, SubscribeFrom::After)
        };
        match (self.last_read, &self.target) {
            (Some((p, _)), Target::All) => SubscribeFrom::After(p),
            (Some((_, r)), Target::Stream(_)) => SubscribeFrom::After(r),
            (None, _) => match self.settings.from {
                Start::Start => SubscribeFrom::Start,
                Start::End => SubscribeFrom::End,
                Start::Revision(r) | Start::Position(r) => after(r),
            },
        }
    }

    fn start_source(&self) -> mpsc::Receiver<SourceMsg> {
        let (tx, rx) = mpsc::channel(4);
        let target = match &self.target {
            Target::Stream(s) => SubscriptionTarget::Stream(s.clone()),
            Target::All => SubscriptionTarget::All(self.settings.filter.clone()),
        };
        tokio::spawn(read_source(
            self.store.clone(),
            target,
            self.source_from(),
            tx,
        ));
        rx
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut internal: mpsc::UnboundedReceiver<Internal>,
    ) {
        let mut source = self.start_source();
        let mut source_retry: Option<tokio::time::Instant> = None;
        let mut tick = tokio::time::interval(self.tick_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.window.len() < WINDOW_MAX && self.pending.len() < PENDING_MAX;
            tokio::select! {
                cmd = commands.recv() => match cmd {
                    None => {
                        self.end_all(EndReason::ShuttingDown);
                        return;
                    }
                    Some(Command::Stop(reason, done)) => {
                        if reason != EndReason::Deleted {
                            self.write_checkpoint_now(&mut internal).await;
                        }
                        self.end_all(reason);
                        let _ = done.send(());
                        return;
                    }
                    Some(Command::Update(s)) => {
                        let filter_changed = !s.same_filter(&self.settings);
                        if filter_changed {
                            // What the old reader scanned says nothing of
                            // the new filter's events.
                            self.scanned = None;
                        }
                        self.retime(s.message_timeout);
                        self.settings = s;
                        tick = tokio::time::interval(self.tick_every());
                        if filter_changed {
                            // Read on from where the reader got to, with the
                            // new filter.
                            source = self.start_source();
                        }
                    }
                    Some(cmd) => self.command(cmd).await,
                },
                Some(msg) = internal.recv() => self.internal(msg),
                msg = source.recv(), if room && source_retry.is_none() => match msg {
                    Some(SourceMsg::Events(events)) => self.read(events),
                    Some(SourceMsg::Scanned(p)) => {
                        self.scanned = Some(self.scanned.map_or(p, |s| s.max(p)));
                        self.advance_checkpoint();
                    }
                    Some(SourceMsg::Failed(why)) => {
                        tracing::warn!(group = %self.group, target = %self.target, %why, "a consumer group's reader failed; retrying in 1 s");
                        source_retry = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                    None => {
                        source_retry = Some(tokio::time::Instant::now() + Duration::from_secs(1));
                    }
                },
                _ = tick.tick() => {
                    if source_retry.is_some_and(|t| t <= tokio::time::Instant::now()) {
                        source_retry = None;
                        source = self.start_source();
                    }
                    self.expire();
                    self.maybe_write_checkpoint(false);
                    self.update_gauges();
                }
            }
            self.dispatch();
        }
    }

    fn tick_every(&self) -> Duration {
        (self.settings.message_timeout / 4)
            .min(self.settings.checkpoint_after)
            .clamp(Duration::from_millis(5), Duration::from_millis(100))
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Join {
                name,
                buffer_size,
                reply,
            } => {
                let limit = self.settings.max_subscriber_count;
                if limit > 0 && self.consumers.len() >= limit as usize {
                    let _ = reply.send(Err(limit));
                    return;
                }
                let buffer_size = buffer_size.max(1);
                let (tx, rx) = mpsc::channel(buffer_size as usize + 1);
                let (end_tx, end) = oneshot::channel();
                let id = self.next_consumer;
                self.next_consumer += 1;
                self.consumers.push(Consumer {
                    id,
                    name,
                    buffer_size,
                    in_flight: 0,
                    delivered: 0,
                    acked: 0,
                    tx,
                    end: Some(end_tx),
                    blocked: false,
                });
                if reply.send(Ok(Joined { id, rx, end })).is_err() {
                    self.leave(id, true);
                }
            }
            Command::Leave(id) => self.leave(id, true),
            Command::Ack(id, positions) => {
                for p in positions {
                    if let Some(f) = self.take_in_flight(p, id) {
                        self.acked_total += 1;
                        self.metrics.acked.inc();
                        if let Some(c) = self.consumer_mut(id) {
                            c.acked += 1;
                        }
                        self.done(f.item);
                    }
                }
                self.advance_checkpoint();
            }
            Command::Nack(id, positions, action, reason) => {
                for p in positions {
                    let Some(f) = self.take_in_flight(p, id) else {
                        continue;
                    };
                    self.nacked_total += 1;
                    self.metrics.nacked.inc();
                    match action {
                        NackAction::Retry => self.requeue(f.item, true),
                        NackAction::Park => self.park(f.item, reason.clone()),
                        NackAction::Skip => self.done(f.item),
                        NackAction::Stop => self.requeue(f.item, false),
                    }
                }
                if action == NackAction::Stop {
                    if let Some(c) = self.consumer_mut(id) {
                        c.end(EndReason::Stopped);
                    }
                    self.leave(id, false);
                }
                self.advance_checkpoint();
            }
            Command::Info(reply) => {
                let info = self.info();
                let _ = reply.send(info);
            }
            Command::Replay(stop_at, reply) => {
                let until = match stop_at {
                    Some(n) => self
                        .parked_next
                        .min(self.replay_until.max(self.replay_next) + n),
                    None => self.parked_next,
                };
                let queued = until.saturating_sub(self.replay_until.max(self.replay_next));
                self.replay_until = self.replay_until.max(until);
                self.read_replay();
                let _ = reply.send(queued);
            }
            Command::Update(_) | Command::Stop(..) => unreachable!("handled by the loop"),
        }
    }

    fn internal(&mut self, msg: Internal) {
        match msg {
            Internal::Parked(item) => {
                self.parked_next += 1;
                self.done(item);
                self.advance_checkpoint();
            }
            Internal::ParkFailed(item) => self.retry.push_back(item),
            Internal::CheckpointWritten(cp) => {
                self.writing = false;
                self.written = Some(cp);
            }
            Internal::CheckpointFailed => self.writing = false,
            Internal::ReplayLink(rev, event) => {
                self.replay_next = self.replay_next.max(rev + 1);
                match event {
                    // The parked event is gone (scavenged), or the group
                    // holds it already (read again from the target after a
                    // restart, or parked twice): one copy is enough.
                    None => self.replay_window.push_back((rev, true)),
                    Some(e) if self.holds(e.position) => self.replay_window.push_back((rev, true)),
                    Some(event) => {
                        self.replay_window.push_back((rev, false));
                        self.replay.push_back(Item {
                            event,
                            retry_count: 0,
                            replay_rev: Some(rev),
                        });
                    }
                }
                self.advance_replay();
            }
            Internal::ReplayRead(next) => {
                self.replay_reading = false;
                if let Some(next) = next {
                    self.replay_next = self.replay_next.max(next);
                    self.advance_replay();
                }
                self.read_replay();
            }
        }
    }

    /// Whether the event at `position` is in the group's hands already:
    /// held, queued, or read and not done.
    fn holds(&self, position: u64) -> bool {
        let queued = |q: &VecDeque<Item>| q.iter().any(|i| i.event.position == position);
        self.in_flight.contains_key(&position)
            || queued(&self.retry)
            || queued(&self.replay)
            || queued(&self.pending)
            || self
                .window
                .binary_search_by_key(&position, |e| e.0)
                .is_ok_and(|i| !self.window[i].2)
    }

    fn consumer_mut(&mut self, id: u64) -> Option<&mut Consumer> {
        self.consumers.iter_mut().find(|c| c.id == id)
    }

    fn take_in_flight(&mut self, position: u64, consumer: u64) -> Option<InFlight> {
        if self.in_flight.get(&position)?.consumer != consumer {
            return None;
        }
        let f = self.in_flight.remove(&position)?;
        self.deadlines.remove(&(f.deadline, position));
        if let Some(c) = self.consumer_mut(consumer) {
            c.in_flight = c.in_flight.saturating_sub(1);
        }
        Some(f)
    }

    /// A consumer is gone: what it held is delivered again (counting a
    /// retry when `count`, as when it crashed mid-batch).
    fn leave(&mut self, id: u64, count: bool) {
        let held: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, f)| f.consumer == id)
            .map(|(p, _)| *p)
            .collect();
        for p in held {
            if let Some(f) = self.take_in_flight(p, id) {
                self.requeue(f.item, count);
            }
        }
        self.consumers.retain(|c| c.id != id);
        self.pins.retain(|_, c| *c != id);
    }

    fn end_all(&mut self, reason: EndReason) {
        for mut c in self.consumers.drain(..) {
            c.end(reason);
        }
    }

    /// Events read from the target, in order.
    fn read(&mut self, events: Vec<RecordedEvent>) {
        let (own_checkpoints, own_parked) = (checkpoint_stream(self.id), self.parked.clone());
        for event in events {
            // After a reader restart, what was read already comes again.
            if self.last_read.is_some_and(|(p, _)| event.position <= p) {
                continue;
            }
            // A filter that takes `$`-streams must not feed the group its
            // own checkpoints and parked links (each would make another).
            if *event.stream == own_checkpoints || *event.stream == own_parked {
                self.scanned = Some(event.position);
                continue;
            }
            // A replayed copy queued before the target's copy came in.
            if let Some(i) = self
                .replay
                .iter()
                .position(|r| r.event.position == event.position)
            {
                if let Some(dup) = self.replay.remove(i) {
                    self.done(dup);
                }
            }
            self.last_read = Some((event.position, event.revision));
            self.window
                .push_back((event.position, event.revision, false));
            self.pending.push_back(Item {
                event,
                retry_count: 0,
                replay_rev: None,
            });
        }
    }

    fn requeue(&mut self, mut item: Item, count: bool) {
        if count {
            item.retry_count += 1;
            if item.retry_count > self.settings.max_retry_count {
                self.park(item, "the maximum retry count was reached".into());
                return;
            }
        }
        self.retry.push_back(item);
    }

    /// Writes the park record, then counts the event done.
    fn park(&mut self, item: Item, reason: String) {
        self.parked_total += 1;
        self.metrics.parked.inc();
        let store = self.store.clone();
        let stream = self.parked.clone();
        let done = self.internal_tx.clone();
        tokio::spawn(async move {
            let e = &item.event;
            let data = json!({
                "stream": &*e.stream,
                "revision": e.revision,
                "position": e.position,
                "reason": reason,
            });
            let req = AppendRequest {
                stream,
                expected: ExpectedVersion::Any,
                events: vec![NewEvent {
                    id: EventId::random(),
                    event_type: "$parked".into(),
                    data: Bytes::from(data.to_string()),
                    metadata: Bytes::new(),
                    content_type: Some("application/json".into()),
                }],
            };
            let msg = match store.append_system(req).await {
                Ok(_) => Internal::Parked(item),
                Err(e) => {
                    tracing::warn!(error = %e, "parking an event failed; it will be delivered again");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Internal::ParkFailed(item)
                }
            };
            let _ = done.send(msg);
        });
    }

    fn done(&mut self, item: Item) {
        match item.replay_rev {
            Some(rev) => {
                if let Some(e) = self.replay_window.iter_mut().find(|e| e.0 == rev) {
                    e.1 = true;
                }
                self.advance_replay();
            }
            None => {
                let p = item.event.position;
                if let Ok(i) = self.window.binary_search_by_key(&p, |e| e.0) {
                    self.window[i].2 = true;
                }
            }
        }
    }

    fn advance_checkpoint(&mut self) {
        while let Some(&(p, r, true)) = self.window.front() {
            self.window.pop_front();
            self.done_upto = Some((p, r));
            self.done_since_write += 1;
        }
        // A filtered `$all` reader may have scanned past what matched.
        if self.window.is_empty() && self.pending.is_empty() {
            if let (Some(s), Target::All) = (self.scanned, &self.target) {
                if self.done_upto.is_none_or(|(p, _)| p < s) {
                    let r = self.done_upto.map_or(0, |(_, r)| r);
                    self.done_upto = Some((s, r));
                    self.last_read = Some((s, r));
                }
            }
        }
        self.maybe_write_checkpoint(false);
    }

    fn advance_replay(&mut self) {
        while let Some(&(rev, true)) = self.replay_window.front() {
            self.replay_window.pop_front();
            self.parked_floor = self.parked_floor.max(rev + 1);
        }
        if self.replay_window.is_empty() && !self.replay_reading {
            self.parked_floor = self
                .parked_floor
                .max(self.replay_next.min(self.replay_until));
        }
        self.read_replay();
    }

    /// Reads more parked links while the replay queue has room.
    fn read_replay(&mut self) {
        if self.replay_reading
            || self.replay_next >= self.replay_until
            || self.replay.len() >= REPLAY_MAX / 2
        {
            return;
        }
        self.replay_reading = true;
        let (store, stream, done) = (
            self.store.clone(),
            self.parked.clone(),
            self.internal_tx.clone(),
        );
        let from = self.replay_next;
        let count = (self.replay_until - from).min(REPLAY_MAX as u64 / 2);
        tokio::spawn(async move {
            let failed = || async {
                tokio::time::sleep(Duration::from_secs(1)).await;
                Internal::ReplayRead(None)
            };
            let links = match store
                .read_stream(&stream, Direction::Forwards, ReadFrom::At(from), count)
                .await
            {
                Ok(r) => match r.collect_all().await {
                    Ok(links) => links,
                    Err(_) => return drop(done.send(failed().await)),
                },
                // Nothing parked there (any more).
                Err(crate::store::ReadError::StreamNotFound(_)) => Vec::new(),
                Err(_) => return drop(done.send(failed().await)),
            };
            let mut next = from + count;
            for link in links {
                let position = serde_json::from_slice::<serde_json::Value>(&link.data)
                    .ok()
                    .and_then(|v| v.get("position").and_then(|p| p.as_u64()));
                let original = match position {
                    Some(p) => match original_event(&store, p).await {
                        Ok(e) => e,
                        Err(_) => return drop(done.send(failed().await)),
                    },
                    None => None,
                };
                next = link.revision + 1;
                let _ = done.send(Internal::ReplayLink(link.revision, original));
            }
            let _ = done.send(Internal::ReplayRead(Some(next)));
        });
    }

    /// A new message timeout applies to what is held already: each
    /// deadline moves to the time of delivery plus the new timeout.
    fn retime(&mut self, timeout: Duration) {
        let old = self.settings.message_timeout;
        if timeout == old {
            return;
        }
        self.deadlines.clear();
        for (p, f) in self.in_flight.iter_mut() {
            let delivered = f.deadline.checked_sub(old).unwrap_or(f.deadline);
            f.deadline = delivered + timeout;
            self.deadlines.insert((f.deadline, *p));
        }
    }

    /// Takes back what was held past its deadline.
    fn expire(&mut self) {
        let now = Instant::now();
        while let Some(&(deadline, p)) = self.deadlines.first() {
            if deadline > now {
                break;
            }
            let consumer = self.in_flight.get(&p).map(|f| f.consumer);
            match consumer.and_then(|c| self.take_in_flight(p, c)) {
                Some(f) => {
                    self.timeouts_total += 1;
                    self.metrics.timeouts.inc();
                    self.requeue(f.item, true);
                }
                None => {
                    self.deadlines.pop_first();
                }
            }
        }
    }

    fn maybe_write_checkpoint(&mut self, force: bool) {
        let due = force
            || self.done_since_write >= self.settings.checkpoint_count.max(1)
            || self.last_write.elapsed() >= self.settings.checkpoint_after;
        let floor_moved = self.parked_floor != self.parked_floor_written;
        if self.writing || !due || (self.done_upto == self.written && !floor_moved) {
            return;
        }
        self.writing = true;
        self.done_since_write = 0;
        self.last_write = Instant::now();
        let cp = self.done_upto;
        let floor = floor_moved.then_some(self.parked_floor);
        self.parked_floor_written = self.parked_floor;
        let (store, id, done) = (self.store.clone(), self.id, self.internal_tx.clone());
        let parked = self.parked.clone();
        tokio::spawn(async move {
            let ok = write_checkpoint(&store, id, &parked, cp, floor).await;
            let _ = done.send(match (ok, cp) {
                (true, Some(cp)) => Internal::CheckpointWritten(cp),
                _ => Internal::CheckpointFailed,
            });
        });
    }

    /// Writes what is done now (on a stop). A write in flight carries an
    /// older checkpoint, and would land after this one or fail as the store
    /// closes: wait for it first.
    async fn write_checkpoint_now(&mut self, internal: &mut mpsc::UnboundedReceiver<Internal>) {
        while self.writing {
            match internal.recv().await {
                Some(msg) => self.internal(msg),
                None => break,
            }
        }
        let floor_moved = self.parked_floor != self.parked_floor_written;
        if self.done_upto != self.written || floor_moved {
            let floor = floor_moved.then_some(self.parked_floor);
            write_checkpoint(&self.store, self.id, &self.parked, self.done_upto, floor).await;
        }
    }

    /// Hands out events while some consumer has room.
    fn dispatch(&mut self) {
        for c in &mut self.consumers {
            c.blocked = false;
        }
        while self.consumers.iter().any(Consumer::has_room) {
            let Some((queue, index, consumer)) = self.pick() else {
                break;
            };
            let q = match queue {
                Queue::Retry => &mut self.retry,
                Queue::Replay => &mut self.replay,
                Queue::Pending => &mut self.pending,
            };
            let Some(item) = q.remove(index) else { break };
            let c = &mut self.consumers[consumer];
            let sent = c.tx.try_send(Delivery {
                event: item.event.clone(),
                retry_count: item.retry_count,
            });
            if let Err(e) = sent {
                let id = c.id;
                let closed = matches!(e, mpsc::error::TrySendError::Closed(_));
                // Full: events taken back on timeout still wait in its
                // channel; it gets more once it reads them.
                c.blocked = true;
                let q = match queue {
                    Queue::Retry => &mut self.retry,
                    Queue::Replay => &mut self.replay,
                    Queue::Pending => &mut self.pending,
                };
                q.insert(index, item);
                if closed {
                    // Its call is gone.
                    self.leave(id, false);
                }
                continue;
            }
            c.in_flight += 1;
            c.delivered += 1;
            let id = c.id;
            self.delivered_total += 1;
            self.metrics.delivered.inc();
            if self.settings.strategy == Strategy::Pinned {
                self.pins.insert(item.event.stream.clone(), id);
                if self.pins.len() > MAX_PINS {
                    self.forget_pins();
                }
            }
            let deadline = Instant::now() + self.settings.message_timeout;
            let p = item.event.position;
            self.deadlines.insert((deadline, p));
            self.in_flight.insert(
                p,
                InFlight {
                    item,
                    consumer: id,
                    deadline,
                },
            );
            if self.settings.strategy == Strategy::RoundRobin {
                self.rr = (consumer + 1) % self.consumers.len();
            }
        }
    }

    /// PINNED remembers too many streams: it keeps those with events held.
    fn forget_pins(&mut self) {
        let held: std::collections::HashSet<&str> = self
            .in_flight
            .values()
            .map(|f| &*f.item.event.stream)
            .collect();
        self.pins.retain(|s, _| held.contains(&**s));
    }

    /// The next event to hand out and the consumer (index) it goes to. An
    /// event whose position is held already (a replayed copy of it) waits.
    fn pick(&self) -> Option<(Queue, usize, usize)> {
        let queues = [
            (Queue::Retry, &self.retry),
            (Queue::Replay, &self.replay),
            (Queue::Pending, &self.pending),
        ];
        let n = self.consumers.len();
        let free = |item: &Item| !self.in_flight.contains_key(&item.event.position);
        match self.settings.strategy {
            Strategy::Pinned => {
                for (kind, q) in queues {
                    for (i, item) in q.iter().take(PINNED_SCAN).enumerate() {
                        if !free(item) {
                            continue;
                        }
                        let c = match self.pins.get(&item.event.stream) {
                            Some(id) => self.consumers.iter().position(|c| c.id == *id),
                            None => Some(pinned_consumer(&item.event.stream, n)),
                        };
                        if let Some(c) = c.filter(|&c| self.consumers[c].has_room()) {
                            return Some((kind, i, c));
                        }
                    }
                }
                None
            }
            strategy => {
                let start = if strategy == Strategy::RoundRobin {
                    self.rr % n
                } else {
                    0
                };
                let consumer = (0..n)
                    .map(|k| (start + k) % n)
                    .find(|&c| self.consumers[c].has_room())?;
                queues.into_iter().find_map(|(kind, q)| {
                    q.iter()
                        .take(PINNED_SCAN)
                        .position(free)
                        .map(|i| (kind, i, consumer))
                })
            }
        }
    }

    fn lag(&self) -> u64 {
        match &self.target {
            Target::All => {
                let done = self.done_upto.map_or(0, |(p, _)| p + 1);
                self.store.head_position().saturating_sub(done)
            }
            Target::Stream(_) => {
                let read = self.last_read.map_or(0, |(_, r)| r + 1);
                let done = self.done_upto.map_or(0, |(_, r)| r + 1);
                read.saturating_sub(done)
            }
        }
    }

    fn update_gauges(&self) {
        self.metrics.in_flight.set(self.in_flight.len() as i64);
        self.metrics.lag.set(self.lag() as i64);
    }

    fn info(&self) -> GroupInfo {
        let mut lag = self.lag();
        if let Target::Stream(s) = &self.target {
            // Events of the stream not read yet count too.
            if let Ok(last) = self.store.stream_revision(s) {
                let head = last.map_or(0, |r| r + 1);
                let done = self.done_upto.map_or(0, |(_, r)| r + 1);
                lag = head.saturating_sub(done);
            }
        }
        GroupInfo {
            target: self.target.clone(),
            group: self.group.clone(),
            settings: self.settings.clone(),
            status: if !self.replay.is_empty() || self.replay_reading {
                "replaying-parked"
            } else if self.consumers.is_empty() {
                "idle"
            } else {
                "live"
            },
            consumers: self
                .consumers
                .iter()
                .map(|c| ConsumerInfo {
                    name: c.name.clone(),
                    in_flight: c.in_flight,
                    delivered: c.delivered,
                    acked: c.acked,
                    buffer_size: c.buffer_size,
                })
                .collect(),
            checkpoint_position: self.written.map(|(p, _)| p),
            last_position: self.last_read.map(|(p, _)| p),
            parked_count: self.parked_next.saturating_sub(self.parked_floor),
            delivered_total: self.delivered_total,
            acked_total: self.acked_total,
            nacked_total: self.nacked_total,
            timeouts_total: self.timeouts_total,
            parked_total: self.parked_total,
            parked_stream: self.parked.clone(),
            lag,
        }
    }
}

/// The consumer (index) a stream's events go to under PINNED.
fn pinned_consumer(stream: &str, consumers: usize) -> usize {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    stream.hash(&mut h);
    (h.finish() % consumers.max(1) as u64) as usize
}

/// The event at `position`, if a read can still see it (of any stream,
/// `$`-streams included).
async fn original_event(
    store: &Store,
    position: u64,
) -> Result<Option<RecordedEvent>, crate::store::ReadError> {
    let every_stream = crate::store::Filter::every_stream();
    let read = store
        .read_all(Direction::Forwards, ReadFrom::At(position), 1, every_stream)
        .await?;
    let events = read.collect_all().await?;
    Ok(events.into_iter().next().filter(|e| e.position == position))
}

/// Writes the checkpoint (and the parked stream's replayed floor).
async fn write_checkpoint(
    store: &Store,
    id: u64,
    parked: &str,
    cp: Option<(u64, u64)>,
    parked_floor: Option<u64>,
) -> bool {
    let mut ok = true;
    if let Some((position, revision)) = cp {
        let req = AppendRequest {
            stream: checkpoint_stream(id),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                id: EventId::random(),
                event_type: "$checkpoint".into(),
                data: Bytes::from(
                    json!({ "position": position, "revision": revision }).to_string(),
                ),
                metadata: Bytes::new(),
                content_type: Some("application/json".into()),
            }],
        };
        if let Err(e) = store.append_system(req).await {
            tracing::warn!(error = %e, "writing a consumer group's checkpoint failed");
            ok = false;
        }
    }
    if let Some(floor) = parked_floor {
        let req = LifecycleRequest::SetMetadata {
            stream: parked.to_owned(),
            expected: ExpectedVersion::Any,
            metadata: StreamMetadata {
                truncate_before: Some(floor),
                ..Default::default()
            },
        };
        if let Err(e) = store.lifecycle_system(req).await {
            tracing::warn!(error = %e, "recording replayed parked events failed");
        }
    }
    ok
}

/// Follows the target and hands what it reads to the group's task.
async fn read_source(
    store: Arc<Store>,
    target: SubscriptionTarget,
    from: SubscribeFrom,
    tx: mpsc::Sender<SourceMsg>,
) {
    let mut sub = match store.subscribe(target, from).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(SourceMsg::Failed(e.to_string())).await;
            return;
        }
    };
    loop {
        let msg = match sub.next().await {
            Ok(Some(SubscriptionMessage::Events(events))) => SourceMsg::Events(events),
            Ok(Some(SubscriptionMessage::Checkpoint { position })) => SourceMsg::Scanned(position),
            Ok(Some(SubscriptionMessage::CaughtUp { position, .. })) => match position {
                Some(p) => SourceMsg::Scanned(p),
                None => continue,
            },
            Ok(None) => return,
            Err(e) => SourceMsg::Failed(e.to_string()),
        };
        let failed = matches!(msg, SourceMsg::Failed(_));
        if tx.send(msg).await.is_err() || failed {
            return;
        }
    }
}
