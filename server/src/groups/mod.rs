//! Consumer groups (persistent subscriptions, API section 4), built over
//! the store's public operations like any client would be, plus the
//! server's own `$`-streams:
//!
//! - `$groups`: every create, update and delete of a group, as JSON events
//!   (`$group-created`, `$group-updated`, `$group-deleted`); read whole at
//!   start. A group's id is the position of the event that created it.
//! - `$checkpoint-<id>`: the group's checkpoints (`max_count` 1).
//! - `$persistent-<target>::<group>-parked`: its parked events, one link
//!   each (JSON naming the event's stream, revision and position, and the
//!   reason); replayed ones are below the stream's `truncate_before`.
//!
//! Each group runs as one task (`actor.rs`); what is in flight lives only
//! there and is rebuilt from the checkpoint after a restart.

mod actor;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use prometheus::{IntCounter, IntGauge};
use tokio::sync::{mpsc, oneshot, Mutex};

use actor::{Command, Resume};
pub use actor::{ConsumerInfo, Delivery, EndReason, GroupInfo, Joined, NackAction};
pub use settings::{Settings, Start, Strategy, Target};

use crate::metrics::Metrics;
use crate::store::{
    AppendError, AppendOutcome, AppendRequest, Direction, EventId, ExpectedVersion,
    LifecycleRequest, NewEvent, ReadError, ReadFrom, Store, StreamMetadata,
};

/// The stream of group definitions.
pub const GROUPS_STREAM: &str = "$groups";

/// The checkpoint stream of group `id`.
pub fn checkpoint_stream(id: u64) -> String {
    format!("$checkpoint-{id}")
}

/// The parked-events stream of a group (API section 4).
pub fn parked_stream(target: &Target, group: &str) -> String {
    match target {
        Target::Stream(s) => format!("$persistent-{s}::{group}-parked"),
        Target::All => format!("$persistent-$all::{group}-parked"),
    }
}

/// Why a group operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// No such group.
    #[error("consumer group '{group}' of {target} does not exist")]
    NotFound {
        /// Its target.
        target: Target,
        /// Its name.
        group: String,
    },
    /// The group exists.
    #[error("consumer group '{group}' of {target} exists already")]
    AlreadyExists {
        /// Its target.
        target: Target,
        /// Its name.
        group: String,
    },
    /// A bad request.
    #[error("{0}")]
    Invalid(String),
    /// The group has as many consumers as its settings allow.
    #[error("consumer group has its maximum of {0} consumers")]
    Full(u32),
    /// The store refused a write.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The store refused a read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// One group's metrics (children of the labelled families).
#[derive(Clone)]
pub(crate) struct GroupMetrics {
    delivered: IntCounter,
    acked: IntCounter,
    nacked: IntCounter,
    timeouts: IntCounter,
    parked: IntCounter,
    in_flight: IntGauge,
    lag: IntGauge,
}

impl GroupMetrics {
    fn new(m: &Metrics, label: &str) -> Self {
        GroupMetrics {
            delivered: m.group_delivered.with_label_values(&[label]),
            acked: m.group_acked.with_label_values(&[label]),
            nacked: m.group_nacked.with_label_values(&[label]),
            timeouts: m.group_timeouts.with_label_values(&[label]),
            parked: m.group_parked.with_label_values(&[label]),
            in_flight: m.group_in_flight.with_label_values(&[label]),
            lag: m.group_lag.with_label_values(&[label]),
        }
    }

    fn remove(m: &Metrics, label: &str) {
        for family in [
            &m.group_delivered,
            &m.group_acked,
            &m.group_nacked,
            &m.group_timeouts,
            &m.group_parked,
        ] {
            let _ = family.remove_label_values(&[label]);
        }
        let _ = m.group_in_flight.remove_label_values(&[label]);
        let _ = m.group_lag.remove_label_values(&[label]);
    }
}

/// The metrics label of a group.
fn label(target: &Target, group: &str) -> String {
    match target {
        Target::Stream(s) => format!("{s}::{group}"),
        Target::All => format!("$all::{group}"),
    }
}

struct Handle {
    id: u64,
    settings: Settings,
    tx: mpsc::Sender<Command>,
}

type Key = (Target, String);

/// Every consumer group of the server.
pub struct Groups {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    groups: Mutex<BTreeMap<KeyOrd, Handle>>,
}

/// A `Key` that sorts: `$all` first, then streams by name, then groups.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct KeyOrd(Option<String>, String);

impl KeyOrd {
    fn of(target: &Target, group: &str) -> Self {
        match target {
            Target::All => KeyOrd(None, group.to_owned()),
            Target::Stream(s) => KeyOrd(Some(s.clone()), group.to_owned()),
        }
    }

    fn key(&self) -> Key {
        let target = match &self.0 {
            None => Target::All,
            Some(s) => Target::Stream(s.clone()),
        };
        (target, self.1.clone())
    }
}

impl Groups {
    /// The store the groups read and record in.
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Reads every group's definition, checkpoint and parked count from
    /// the log, and starts them.
    pub async fn open(store: Arc<Store>, metrics: Arc<Metrics>) -> Result<Arc<Groups>, GroupError> {
        let mut defs: BTreeMap<KeyOrd, (u64, Settings)> = BTreeMap::new();
        let events = match store
            .read_stream(GROUPS_STREAM, Direction::Forwards, ReadFrom::Start, 0)
            .await
        {
            Ok(r) => r.collect_all().await?,
            Err(ReadError::StreamNotFound(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        for e in events {
            let (target, group, settings) = match settings::parse_definition(&e.data) {
                Ok(d) => d,
                Err(why) => {
                    tracing::warn!(position = e.position, %why, "unreadable consumer group definition");
                    continue;
                }
            };
            let key = KeyOrd::of(&target, &group);
            match e.event_type.as_str() {
                "$group-created" => {
                    defs.insert(key, (e.position, settings));
                }
                "$group-updated" => {
                    if let Some(d) = defs.get_mut(&key) {
                        d.1 = settings;
                    }
                }
                "$group-deleted" => {
                    defs.remove(&key);
                }
                _ => {}
            }
        }
        let groups = Arc::new(Groups {
            store: store.clone(),
            metrics,
            groups: Mutex::new(BTreeMap::new()),
        });
        let mut map = groups.groups.lock().await;
        for (key, (id, settings)) in defs {
            let (target, group) = key.key();
            let resume = resume_of(&store, id, &parked_stream(&target, &group)).await?;
            let tx = groups.spawn(id, &target, &group, settings.clone(), resume);
            map.insert(key, Handle { id, settings, tx });
        }
        let n = map.len();
        drop(map);
        if n > 0 {
            tracing::info!(groups = n, "consumer groups started");
        }
        Ok(groups)
    }

    fn spawn(
        &self,
        id: u64,
        target: &Target,
        group: &str,
        settings: Settings,
        resume: Resume,
    ) -> mpsc::Sender<Command> {
        let metrics = GroupMetrics::new(&self.metrics, &label(target, group));
        actor::spawn(
            self.store.clone(),
            id,
            target.clone(),
            group.to_owned(),
            settings,
            resume,
            metrics,
        )
    }

    fn check(target: &Target, group: &str) -> Result<(), GroupError> {
        settings::check_group(group).map_err(GroupError::Invalid)?;
        if let Target::Stream(s) = target {
            crate::store::validate_stream_name(s)
                .map_err(|e| GroupError::Invalid(e.to_string()))?;
        }
        Ok(())
    }

    async fn record(
        &self,
        event_type: &str,
        target: &Target,
        group: &str,
        settings: &Settings,
    ) -> Result<u64, GroupError> {
        let req = AppendRequest {
            stream: GROUPS_STREAM.into(),
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                id: EventId::random(),
                event_type: event_type.into(),
                data: Bytes::from(settings::definition_json(target, group, settings)),
                metadata: Bytes::new(),
                content_type: Some("application/json".into()),
            }],
        };
        match self.store.append_system(req).await? {
            AppendOutcome::Success { position, .. } => Ok(position),
            AppendOutcome::WrongExpectedVersion { .. } => {
                unreachable!("an append with `any` has no conflict")
            }
        }
    }

    /// Creates a group.
    pub async fn create(
        &self,
        target: Target,
        group: String,
        mut settings: Settings,
    ) -> Result<(), GroupError> {
        Self::check(&target, &group)?;
        let mut map = self.groups.lock().await;
        let key = KeyOrd::of(&target, &group);
        if map.contains_key(&key) {
            return Err(GroupError::AlreadyExists { target, group });
        }
        // "End" is what is committed now, so that a restart skips nothing.
        if settings.from == Start::End {
            settings.from = match &target {
                Target::All => Start::Position(self.store.head_position()),
                Target::Stream(s) => Start::Revision(stream_next_revision(&self.store, s).await?),
            };
        }
        let id = self
            .record("$group-created", &target, &group, &settings)
            .await?;
        let keep_last = LifecycleRequest::SetMetadata {
            stream: checkpoint_stream(id),
            expected: ExpectedVersion::Any,
            metadata: StreamMetadata {
                max_count: Some(1),
                ..Default::default()
            },
        };
        self.store.lifecycle_system(keep_last).await?;
        // A group of the same name deleted before left its parked stream
        // deleted: what it held is below the next revision.
        let parked = parked_stream(&target, &group);
        let parked_next = stream_next_revision(&self.store, &parked).await?;
        if parked_next > 0 {
            let floor = LifecycleRequest::SetMetadata {
                stream: parked,
                expected: ExpectedVersion::Any,
                metadata: StreamMetadata {
                    truncate_before: Some(parked_next),
                    ..Default::default()
                },
            };
            self.store.lifecycle_system(floor).await?;
        }
        let resume = Resume {
            checkpoint: None,
            parked_next,
            parked_floor: parked_next,
        };
        let tx = self.spawn(id, &target, &group, settings.clone(), resume);
        map.insert(key, Handle { id, settings, tx });
        Ok(())
    }

    /// Replaces a group's settings (its start point stays what it was).
    pub async fn update(
        &self,
        target: Target,
        group: String,
        mut settings: Settings,
    ) -> Result<(), GroupError> {
        Self::check(&target, &group)?;
        let mut map = self.groups.lock().await;
        let Some(h) = map.get_mut(&KeyOrd::of(&target, &group)) else {
            return Err(GroupError::NotFound { target, group });
        };
        settings.from = h.settings.from;
        self.record("$group-updated", &target, &group, &settings)
            .await?;
        h.settings = settings.clone();
        let _ = h.tx.send(Command::Update(settings)).await;
        Ok(())
    }

    /// Deletes a group; its consumers' calls end.
    pub async fn delete(&self, target: Target, group: String) -> Result<(), GroupError> {
        Self::check(&target, &group)?;
        let mut map = self.groups.lock().await;
        let key = KeyOrd::of(&target, &group);
        let Some(h) = map.get(&key) else {
            return Err(GroupError::NotFound { target, group });
        };
        self.record("$group-deleted", &target, &group, &h.settings)
            .await?;
        let h = map.remove(&key).expect("present");
        let (done, wait) = oneshot::channel();
        if h.tx
            .send(Command::Stop(EndReason::Deleted, done))
            .await
            .is_ok()
        {
            let _ = wait.await;
        }
        // The checkpoint and parked streams go with it (a scavenge gives
        // their space back).
        for stream in [checkpoint_stream(h.id), parked_stream(&target, &group)] {
            let req = LifecycleRequest::Delete {
                stream,
                expected: ExpectedVersion::Any,
            };
            match self.store.lifecycle_system(req).await {
                Ok(_) | Err(AppendError::StreamNotFound(_)) => {}
                Err(e) => tracing::warn!(error = %e, "deleting a consumer group's stream"),
            }
        }
        GroupMetrics::remove(&self.metrics, &label(&target, &group));
        Ok(())
    }

    async fn sender(
        &self,
        target: &Target,
        group: &str,
    ) -> Result<mpsc::Sender<Command>, GroupError> {
        Self::check(target, group)?;
        let map = self.groups.lock().await;
        map.get(&KeyOrd::of(target, group))
            .map(|h| h.tx.clone())
            .ok_or_else(|| GroupError::NotFound {
                target: target.clone(),
                group: group.to_owned(),
            })
    }

    /// Sends the group's task the command `make` builds around a reply
    /// channel, and waits for the reply; also hands back the task's sender.
    async fn ask<T>(
        &self,
        target: &Target,
        group: &str,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<(mpsc::Sender<Command>, T), GroupError> {
        let tx = self.sender(target, group).await?;
        let (reply, rx) = oneshot::channel();
        tx.send(make(reply))
            .await
            .map_err(|_| GroupError::ShuttingDown)?;
        let answer = rx.await.map_err(|_| GroupError::ShuttingDown)?;
        Ok((tx, answer))
    }

    /// One group's state.
    pub async fn info(&self, target: &Target, group: &str) -> Result<GroupInfo, GroupError> {
        let (_, info) = self.ask(target, group, Command::Info).await?;
        Ok(info)
    }

    /// Every group's state (of one target, when given).
    pub async fn list(&self, target: Option<&Target>) -> Result<Vec<GroupInfo>, GroupError> {
        let keys: Vec<Key> = {
            let map = self.groups.lock().await;
            map.keys()
                .map(KeyOrd::key)
                .filter(|(t, _)| target.is_none_or(|want| want == t))
                .collect()
        };
        let mut out = Vec::with_capacity(keys.len());
        for (t, g) in keys {
            match self.info(&t, &g).await {
                Ok(i) => out.push(i),
                // Deleted meanwhile.
                Err(GroupError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Joins a group as a consumer; returns the consumer and the channel to
    /// send its acks and nacks on.
    pub async fn join(
        &self,
        target: &Target,
        group: &str,
        name: String,
        buffer_size: u32,
    ) -> Result<(Joined, Consumer), GroupError> {
        let join = |reply| Command::Join {
            name,
            buffer_size,
            reply,
        };
        let (tx, joined) = self.ask(target, group, join).await?;
        match joined {
            Ok(joined) => {
                let id = joined.id;
                Ok((joined, Consumer { id, tx }))
            }
            Err(limit) => Err(GroupError::Full(limit)),
        }
    }

    /// Queues parked events for delivery again; how many.
    pub async fn replay_parked(
        &self,
        target: &Target,
        group: &str,
        stop_at: Option<u64>,
    ) -> Result<u64, GroupError> {
        let (_, queued) = self
            .ask(target, group, |reply| Command::Replay(stop_at, reply))
            .await?;
        Ok(queued)
    }

    /// Writes every group's checkpoint and ends every consumer's call.
    pub async fn shutdown(&self) {
        let mut map = self.groups.lock().await;
        for (_, h) in std::mem::take(&mut *map) {
            let (done, wait) = oneshot::channel();
            if h.tx
                .send(Command::Stop(EndReason::ShuttingDown, done))
                .await
                .is_ok()
            {
                let _ = wait.await;
            }
        }
    }
}

/// A connected consumer's way back to its group.
pub struct Consumer {
    id: u64,
    tx: mpsc::Sender<Command>,
}

impl Consumer {
    /// Events done.
    pub async fn ack(&self, positions: Vec<u64>) {
        let _ = self.tx.send(Command::Ack(self.id, positions)).await;
    }

    /// Events not handled.
    pub async fn nack(&self, positions: Vec<u64>, action: NackAction, reason: String) {
        let _ = self
            .tx
            .send(Command::Nack(self.id, positions, action, reason))
            .await;
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        // The call ended: what it held goes to the others.
        let tx = self.tx.clone();
        let id = self.id;
        if tx.try_send(Command::Leave(id)).is_err() {
            tokio::spawn(async move {
                let _ = tx.send(Command::Leave(id)).await;
            });
        }
    }
}

/// The next revision of a stream (0 when it has none).
async fn stream_next_revision(store: &Store, stream: &str) -> Result<u64, GroupError> {
    Ok(store.stream_revision(stream)?.map_or(0, |r| r + 1))
}

/// What group `id` remembered: its last checkpoint and its parked stream.
async fn resume_of(store: &Store, id: u64, parked: &str) -> Result<Resume, GroupError> {
    let last = |stream: String| async move {
        match store
            .read_stream(&stream, Direction::Backwards, ReadFrom::End, 1)
            .await
        {
            Ok(r) => Ok(r.collect_all().await?.into_iter().next()),
            Err(ReadError::StreamNotFound(_)) => Ok(None),
            Err(e) => Err(GroupError::from(e)),
        }
    };
    let checkpoint = last(checkpoint_stream(id)).await?.and_then(|e| {
        let v: serde_json::Value = serde_json::from_slice(&e.data).ok()?;
        Some((v.get("position")?.as_u64()?, v.get("revision")?.as_u64()?))
    });
    let parked_next = stream_next_revision(store, parked).await?;
    let parked_floor = store
        .stream_metadata(parked)
        .ok()
        .and_then(|m| m.metadata.truncate_before)
        .unwrap_or(0)
        .min(parked_next);
    Ok(Resume {
        checkpoint,
        parked_next,
        parked_floor,
    })
}
