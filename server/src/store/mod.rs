//! The storage engine: a segment log written by one thread with group
//! commit, a derived sled index, reads and subscriptions. It owns the data
//! directory and never knows about gRPC.
//!
//! Layout of a data directory:
//! - `log/` — segment files, the source of truth (see `docs/FORMAT.md`);
//! - `index/` — the sled index, derived, rebuilt from the log when missing;
//! - `LOCK` — held while a process has the directory open.
//!
//! Threading contract: every operation on an open store is async and never
//! blocks the caller's thread (blocking work hops onto the blocking pool,
//! one batch at a time, through `hop`). Opening and closing are blocking
//! by design (recovery, waiting for the writer and indexer): call them from
//! a blocking context. See `docs/ARCHITECTURE.md`.

mod backup;
mod config;
mod error;
mod id_filter;
mod id_index;
mod index;
mod indexer;
pub mod io;
mod lock;
mod policy;
mod reader;
mod record;
mod recovery;
mod scanner;
mod scavenge;
mod segment;
mod sink;
mod state;
mod subscription;
mod tail;
mod types;
mod validate;
mod verify;
mod writer;

use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

pub use backup::{segment_path, BackupFile, BackupPlan, TAIL_BYTES};

/// Holds a data directory's `LOCK` while it lives (see [`lock_data_dir`]).
pub struct DataDirLock {
    _file: File,
}

/// Creates the data directory `data` if it is missing and takes its
/// `LOCK`, as opening a store does, so that nothing else (a server, a
/// backup) uses it meanwhile. `OpenError::Locked` when something does.
pub fn lock_data_dir(data: &Path) -> Result<DataDirLock, OpenError> {
    lock::create_data_dir(data)?;
    Ok(DataDirLock {
        _file: lock::lock_dir(data)?,
    })
}

/// The base position of a segment file name (`<20 digits>.seg`).
pub fn segment_file_base(name: &str) -> Option<u64> {
    segment::parse_name(name)
}
pub use config::{Limits, StoreConfig, SyncMode};
use error::Result;
pub use error::{AppendError, OpenError, ReadError, StorageError};
pub use policy::{StreamAcl, StreamMetadata, StreamPolicy};
use reader::ReadBatches;
pub use reader::ReadStream;
pub use record::EventRecord;
pub use scavenge::{ScavengeState, ScavengeStatus};
pub use segment::{FORMAT_VERSION, OLDEST_FORMAT_VERSION, SCAVENGED_FORMAT_VERSION};
pub use sink::{EventSink, SharedEncoding};
pub use subscription::Subscription;
pub use types::*;

pub use verify::{verify, VerifyReport};

/// Checks a stream name for reading or subscribing (reserved `$` names
/// are allowed there; appends reject them).
pub fn validate_stream_name(name: &str) -> Result<(), ReadError> {
    validate::stream_name(name, false).map_err(ReadError::InvalidArgument)
}

use index::Index;
use segment::SegmentSet;
use state::{Lifecycle, Progress, Shared};
pub use state::{NoObserver, Observer};
use tail::Tail;
use writer::WriteRequest;

/// An open data directory. Cheap to share behind an `Arc`; `close` (or
/// dropping the last handle) stops the writer after it finishes what it
/// has accepted.
pub struct Store {
    shared: Arc<Shared>,
    tx: Mutex<Option<mpsc::Sender<WriteRequest>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    scavenges: Arc<scavenge::Scavenges>,
    _lock: File,
}

impl Store {
    /// Opens or creates the store, recovering the log and the index.
    /// Blocking: call from a blocking context.
    pub fn open(config: StoreConfig) -> Result<Store, OpenError> {
        Self::open_with_observer(config, Arc::new(NoObserver))
    }

    /// Like [`Store::open`], reporting work to `observer`.
    pub fn open_with_observer(
        config: StoreConfig,
        observer: Arc<dyn Observer>,
    ) -> Result<Store, OpenError> {
        let data = config.data_dir.clone();
        lock::create_data_dir(&data)?;
        let lock = lock::lock_dir(&data)?;
        let log_dir = data.join("log");
        let storage = &*config.storage;
        if !storage.dir_exists(&log_dir) {
            // The new directory's name must be durable before any segment
            // in it is: sync its parent too.
            storage
                .create_dir_all(&log_dir)
                .map_err(|e| StorageError::io(&log_dir, e))?;
            segment::sync_dir(storage, &data)?;
        }
        // We hold `LOCK`: a sled lock conflict is our own previous store
        // still shutting down.
        let index = Index::open(&data.join("index"), Duration::from_secs(5))?;
        let (live, _) = broadcast::channel(config.live_buffer.max(1));
        let shared = Arc::new(Shared {
            config,
            log_dir,
            segments: SegmentSet::default(),
            index,
            tail: Tail::default(),
            progress: Progress::default(),
            lifecycle: Lifecycle::default(),
            live,
            policies: Default::default(),
            committed_end: Default::default(),
            observer,
        });
        let started = std::time::Instant::now();
        let recovered = recovery::recover(&shared)?;
        shared
            .tail
            .reset(recovered.next_position, recovered.next_stream_id);
        shared.progress.set_committed(recovered.next_position);
        shared.progress.set_indexed(recovered.next_position);
        shared.observer.indexed(recovered.next_position);
        let policies = policy::load(&shared, recovered.heads.keys())?;
        shared.policies.set(policies);
        tracing::info!(
            head_position = recovered.next_position,
            streams = recovered.heads.len(),
            replayed = recovered.replayed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "store recovered"
        );
        let (tx, threads) = writer::start(shared.clone(), recovered)?;
        Ok(Store {
            shared,
            tx: Mutex::new(Some(tx)),
            threads: Mutex::new(threads),
            scavenges: Default::default(),
            _lock: lock,
        })
    }

    /// Appends events atomically; waits until they are durable (per the
    /// sync mode). A retry of an append already written returns the
    /// original result and writes nothing.
    pub async fn append(&self, req: AppendRequest) -> Result<AppendOutcome, AppendError> {
        validate::append(&req, &self.shared.config.limits)?;
        let (reply, rx) = oneshot::channel();
        self.submit(WriteRequest::Append { req, reply }).await?;
        rx.await.map_err(|_| AppendError::ShuttingDown)?
    }

    /// Appends to several streams in one atomic write (their events take
    /// consecutive positions in request order), if every append's and
    /// check's expected version holds; otherwise writes nothing and names
    /// every condition that failed. A retry of a multi-append already
    /// written returns the original result and writes nothing.
    pub async fn multi_append(
        &self,
        req: MultiAppendRequest,
    ) -> Result<MultiAppendOutcome, AppendError> {
        validate::multi_append(&req, &self.shared.config.limits)?;
        let (reply, rx) = oneshot::channel();
        self.submit(WriteRequest::Multi { req, reply }).await?;
        rx.await.map_err(|_| AppendError::ShuttingDown)?
    }

    /// Appends to one of the server's own `$`-streams (the server's
    /// modules keep what they must remember there, such as consumer
    /// groups); otherwise exactly [`Store::append`].
    pub(crate) async fn append_system(
        &self,
        req: AppendRequest,
    ) -> Result<AppendOutcome, AppendError> {
        validate::system_append(&req, &self.shared.config.limits)?;
        let (reply, rx) = oneshot::channel();
        self.submit(WriteRequest::Append { req, reply }).await?;
        rx.await.map_err(|_| AppendError::ShuttingDown)?
    }

    /// Records a delete, a tombstone or a metadata change in the log (like
    /// an append: durable when this returns) and applies it to every read
    /// from then on.
    pub async fn lifecycle(&self, req: LifecycleRequest) -> Result<LifecycleOutcome, AppendError> {
        validate::stream_name(req.stream(), true).map_err(AppendError::InvalidArgument)?;
        self.record_lifecycle(req).await
    }

    /// A lifecycle change of one of the server's own `$`-streams (its
    /// retention, say); otherwise exactly [`Store::lifecycle`].
    pub(crate) async fn lifecycle_system(
        &self,
        req: LifecycleRequest,
    ) -> Result<LifecycleOutcome, AppendError> {
        let stream = req.stream();
        if !stream.starts_with('$') || stream.starts_with(policy::METADATA_PREFIX) {
            return Err(AppendError::InvalidArgument(format!(
                "'{stream}' is not a server stream"
            )));
        }
        validate::stream_name(stream, false).map_err(AppendError::InvalidArgument)?;
        self.record_lifecycle(req).await
    }

    async fn record_lifecycle(
        &self,
        req: LifecycleRequest,
    ) -> Result<LifecycleOutcome, AppendError> {
        let metadata = match &req {
            LifecycleRequest::SetMetadata { metadata, .. } => metadata.to_json(),
            _ => Vec::new(),
        };
        let limit = self.shared.config.limits.max_event_bytes;
        if metadata.len() as u64 > limit {
            return Err(AppendError::TooLarge {
                what: "stream metadata",
                actual: metadata.len() as u64,
                limit,
                setting: "max-event-bytes",
            });
        }
        let (reply, rx) = oneshot::channel();
        self.submit(WriteRequest::Lifecycle {
            req,
            metadata,
            reply,
        })
        .await?;
        rx.await.map_err(|_| AppendError::ShuttingDown)?
    }

    /// The revision of a stream's last event, hidden or not (`None` when
    /// it has none).
    pub fn stream_revision(&self, stream: &str) -> Result<Option<u64>, ReadError> {
        Ok(self.shared.stream_head(stream)?.map(|h| h.last_revision))
    }

    /// The last revision of a stream that is soft-deleted now (nothing
    /// appended since its last delete); `None` for any other stream.
    pub fn deleted_at(&self, stream: &str) -> Result<Option<u64>, ReadError> {
        // Most streams were never deleted: no lookup of their head.
        let Some(policy) = self.shared.policies.get(stream) else {
            return Ok(None);
        };
        if policy.tombstoned || policy.deleted_before == 0 {
            return Ok(None);
        }
        let last = self.stream_revision(stream)?;
        Ok(last.filter(|_| policy.is_deleted(last)))
    }

    /// A stream's metadata and its revision (empty and absent when never
    /// set; not an error for a stream that does not exist).
    pub fn stream_metadata(&self, stream: &str) -> Result<MetadataAnswer, ReadError> {
        validate_stream_name(stream)?;
        let policy = self.shared.policies.get(stream).unwrap_or_default();
        if policy.tombstoned {
            return Err(ReadError::Tombstoned(stream.to_owned()));
        }
        Ok(MetadataAnswer {
            metadata: policy.metadata.map(|m| (*m).clone()).unwrap_or_default(),
            metadata_revision: policy.metadata_revision,
        })
    }

    /// A stream's metadata as reads apply it now (`None` when never set),
    /// without validating the name: the cheap lookup of access checks.
    pub fn current_metadata(&self, stream: &str) -> Option<Arc<StreamMetadata>> {
        self.shared.policies.get(stream)?.metadata
    }

    async fn submit(&self, work: WriteRequest) -> Result<(), AppendError> {
        if let Some(why) = self.shared.lifecycle.poisoned() {
            return Err(AppendError::Poisoned(why));
        }
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(AppendError::ShuttingDown)?;
        tx.send(work).await.map_err(|_| AppendError::ShuttingDown)
    }

    /// Reads a stream in batches.
    pub async fn read_stream(
        &self,
        stream: &str,
        direction: Direction,
        from: ReadFrom,
        max_count: u64,
    ) -> Result<ReadStream, ReadError> {
        self.read_stream_into(stream, direction, from, max_count)
            .await
    }

    /// Reads a stream in batches collected into `S`.
    pub async fn read_stream_into<S: EventSink>(
        &self,
        stream: &str,
        direction: Direction,
        from: ReadFrom,
        max_count: u64,
    ) -> Result<ReadStream<S>, ReadError> {
        validate_stream_name(stream)?;
        let (shared, stream) = (self.shared.clone(), stream.to_owned());
        let batches =
            hop(move || ReadBatches::stream(shared, &stream, direction, from, max_count)).await??;
        Ok(ReadStream::new(batches))
    }

    /// Reads `$all` in batches.
    pub async fn read_all(
        &self,
        direction: Direction,
        from: ReadFrom,
        max_count: u64,
        filter: Filter,
    ) -> Result<ReadStream, ReadError> {
        self.read_all_into(direction, from, max_count, filter).await
    }

    /// Reads `$all` in batches collected into `S`.
    pub async fn read_all_into<S: EventSink>(
        &self,
        direction: Direction,
        from: ReadFrom,
        max_count: u64,
        filter: Filter,
    ) -> Result<ReadStream<S>, ReadError> {
        let shared = self.shared.clone();
        let batches =
            hop(move || ReadBatches::all(shared, direction, from, max_count, filter)).await??;
        Ok(ReadStream::new(batches))
    }

    /// Starts a subscription: catch-up from the log, then live.
    pub async fn subscribe(
        &self,
        target: SubscriptionTarget,
        from: SubscribeFrom,
    ) -> Result<Subscription, ReadError> {
        self.subscribe_into(target, from).await
    }

    /// Starts a subscription whose event batches are collected into `S`.
    pub async fn subscribe_into<S: EventSink>(
        &self,
        target: SubscriptionTarget,
        from: SubscribeFrom,
    ) -> Result<Subscription<S>, ReadError> {
        if let SubscriptionTarget::Stream(name) = &target {
            validate_stream_name(name)?;
        }
        let shared = self.shared.clone();
        hop(move || Subscription::new(shared, target, from)).await?
    }

    /// Number of durable events: the position the next event will get.
    pub fn head_position(&self) -> u64 {
        self.shared.progress.committed()
    }

    /// Counters for stats and metrics.
    pub async fn stats(&self) -> Result<StoreStats, ReadError> {
        let shared = self.shared.clone();
        hop(move || {
            let segments = shared.segments.all();
            let log_bytes = segments.iter().filter_map(|s| s.len().ok()).sum();
            StoreStats {
                head_position: shared.progress.committed(),
                indexed_position: shared.progress.indexed(),
                streams: shared.tail.streams(),
                log_bytes,
                segments: segments.len() as u64,
                index_bytes: shared.index.size_on_disk(),
            }
        })
        .await
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.shared.config.data_dir
    }

    /// Why the writer refuses appends, if it does.
    pub fn poisoned(&self) -> Option<String> {
        self.shared.lifecycle.poisoned()
    }

    /// Starts a scavenge on a thread of its own: sealed segments are
    /// rewritten without the events reads hide, while appends, reads and
    /// subscriptions go on. After a stop, it resumes after the last segment
    /// done. `None` when one is running already.
    pub fn start_scavenge(&self) -> Option<ScavengeStatus> {
        self.scavenges.start(self.shared.clone())
    }

    /// The running scavenge's progress, or the last one's outcome.
    pub fn scavenge_status(&self) -> ScavengeStatus {
        self.scavenges.status()
    }

    /// Asks the running scavenge to stop after the segment it is on (a
    /// segment is replaced whole or not at all); returns at once.
    pub fn stop_scavenge(&self) -> ScavengeStatus {
        self.scavenges.request_stop();
        self.scavenges.status()
    }

    /// Stops accepting appends, lets the writer finish and sync what it
    /// accepted, waits for the index, and flushes it. Idempotent.
    /// Blocking: call from a blocking context.
    pub fn close(&self) -> Result<()> {
        self.shared.lifecycle.close();
        self.scavenges.stop_and_join();
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let threads: Vec<_> = self
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for t in threads {
            let _ = t.join();
        }
        self.shared.index.flush()
    }

    /// Whether `close` has started.
    pub fn is_closed(&self) -> bool {
        self.shared.lifecycle.is_closing()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "closing the store");
        }
    }
}

/// Runs blocking engine work (sled lookups, log reads, waits for the
/// index) on the blocking pool, so that no engine method blocks the
/// caller's thread. One hop is short: one batch, one chunk, one lookup.
pub(crate) async fn hop<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ReadError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| ReadError::ShuttingDown)
}
