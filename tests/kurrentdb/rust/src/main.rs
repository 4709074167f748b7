//! KurrentDB compatibility checks with KurrentDB's official Rust client, the
//! `kurrentdb` crate, unchanged, against a running Strata server.
//!
//! Usage: `strata-kurrentdb-rust-check TARGET...` with, for every TARGET, the
//! environment tests/kurrentdb/run.sh documents (KDB_URL_<target>,
//! KDB_NATIVE_<target>, KDB_CA, KDB_ADMIN_PASSWORD, KDB_STRATA). Prints
//! `ok <target> <check>` or `FAIL <target> <check>: <why>` per check (or
//! `skip <target> <check>: <why>` for one that does not apply to the target)
//! and a summary; exits 1 if a check failed. KDB_ONLY (space separated check
//! names) runs only those.
//!
//! Every check is written to KurrentDB's documented behaviour as this client
//! surfaces it (its typed errors, its positions), not to Strata's. Every
//! call and every wait is bounded: a call by CALL, one subscription message
//! by WAIT, a whole check by CHECK.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use kurrentdb::operations::{self, Features, OperationalOptions};
use kurrentdb::{
    Acl, AppendToStreamOptions, BatchAppendClient, BatchAppendOptions, BatchWriteResult, Client,
    ClientSettings, Credentials, CurrentRevision, DeletePersistentSubscriptionOptions,
    DeleteStreamOptions, Error, EventData, GetPersistentSubscriptionInfoOptions,
    ListPersistentSubscriptionsOptions, NakAction, PersistentSubscription,
    PersistentSubscriptionEvent, PersistentSubscriptionOptions, PersistentSubscriptionToAllOptions,
    Position, ReadAllOptions, ReadEvent, ReadStreamOptions, RecordedEvent,
    ReplayParkedMessagesOptions, ResolvedEvent, RestartPersistentSubscriptionSubsystem,
    StreamAclBuilder, StreamMetadata, StreamMetadataResult, StreamPosition, StreamState,
    SubscribeToAllOptions, SubscribeToPersistentSubscriptionOptions, SubscribeToStreamOptions,
    Subscription, SubscriptionEvent, SubscriptionFilter, SystemConsumerStrategy,
    TombstoneStreamOptions, VersionedMetadata,
};
use serde_json::{Value, json};
use uuid::Uuid;

/// One client call (a unary call, or a whole read).
const CALL: Duration = Duration::from_secs(15);
/// One message of a subscription.
const WAIT: Duration = Duration::from_secs(10);
/// A whole check.
const CHECK: Duration = Duration::from_secs(120);
/// How long "nothing more arrives" is watched for.
const QUIET: Duration = Duration::from_millis(700);

type Outcome = Result<(), String>;
/// An Err starting with this is a check that does not apply to the target
/// (printed `skip <target> <check>: <why>`, neither ok nor failed).
const SKIP: &str = "skip: ";
type Check = fn(Arc<Ctx>) -> Pin<Box<dyn Future<Output = Outcome> + Send>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        &[$((stringify!($name), (|c| Box::pin($name(c))) as Check)),*]
    };
}

const CHECKS: &[(&str, Check)] = checks![
    server_features,
    discover_gossip,
    append_expected_states,
    append_idempotent,
    append_position_usable,
    read_stream_ranges,
    read_stream_last_position,
    read_missing_stream,
    read_all_ranges,
    filtered_read_all,
    subscribe_stream_catchup_live,
    subscribe_all_catchup_live,
    subscribe_all_filtered_checkpoints,
    subscribe_all_filter_kinds,
    delete_stream,
    tombstone_stream,
    tombstoned_read_fails_at_call,
    metadata_roundtrip,
    metadata_max_count,
    metadata_max_age,
    metadata_acl,
    batch_append,
    persistent_share_ack,
    persistent_nack_retry_park,
    persistent_replay_parked,
    persistent_info,
    persistent_list,
    persistent_delete,
    persistent_all,
    persistent_restart_subsystem,
    users,
    native_to_kurrentdb,
    kurrentdb_to_native,
];

// ---------------------------------------------------------------- context

struct Ctx {
    target: String,
    /// The connection string as run.sh gives it.
    url: String,
    client: Client,
    tls: bool,
    /// host:port of the server.
    host_port: String,
    native_url: String,
    ca: String,
    admin_password: String,
    strata: String,
    run: String,
    counter: AtomicU32,
}

impl Ctx {
    /// A name no other run or check uses.
    fn uniq(&self, what: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("{what}-{}-{n}", self.run)
    }

    /// A second client over `url`.
    fn client_for(&self, url: &str) -> Result<Client, String> {
        let settings: ClientSettings = url
            .parse()
            .map_err(|e| format!("connection string {url:?}: {e}"))?;
        Client::new(settings).map_err(|e| format!("Client::new({url:?}): {e}"))
    }

    /// The connection string of this server without credentials.
    fn anonymous_url(&self) -> String {
        if self.tls {
            format!(
                "kurrentdb://{}?tls=true&tlsCaFile={}",
                self.host_port, self.ca
            )
        } else {
            format!("kurrentdb://{}?tls=false", self.host_port)
        }
    }

    /// Runs the native `strata` CLI with `args` (plus the server's URL,
    /// credentials and `--json`); its JSON lines.
    async fn strata(&self, args: &[&str]) -> Result<Vec<Value>, String> {
        let mut cmd: Vec<String> = vec!["30".into(), self.strata.clone()];
        cmd.extend(args.iter().map(|a| a.to_string()));
        cmd.extend(["--url".into(), self.native_url.clone(), "--json".into()]);
        if self.tls {
            cmd.extend([
                "--ca".into(),
                self.ca.clone(),
                "--user".into(),
                "admin".into(),
                "--password".into(),
                self.admin_password.clone(),
            ]);
        }
        let shown = format!("strata {}", args.join(" "));
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new("timeout").args(&cmd).output()
        })
        .await
        .map_err(|e| format!("{shown}: {e}"))?
        .map_err(|e| format!("{shown}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{shown}: exit {:?}: {}",
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).map_err(|e| format!("{shown}: not JSON {l:?}: {e}")))
            .collect()
    }
}

// ---------------------------------------------------------------- helpers

macro_rules! ensure_eq {
    ($got:expr, $want:expr, $($what:tt)+) => {{
        let got = $got;
        let want = $want;
        if got != want {
            return Err(format!("{}: expected {:?}, got {:?}", format!($($what)+), want, got));
        }
    }};
}

macro_rules! ensure {
    ($cond:expr, $($what:tt)+) => {
        if !$cond {
            return Err(format!($($what)+));
        }
    };
}

/// `$got` must match `$pat` (then `$then` is its value); anything else fails
/// the check with "<what>: expected <want>, got <what it was>".
macro_rules! expect {
    ($got:expr, $pat:pat $(if $guard:expr)? => $then:expr, $want:expr, $($what:tt)+) => {
        match $got {
            $pat $(if $guard)? => $then,
            other => {
                return Err(format!(
                    "{}: expected {}, got {:?}",
                    format!($($what)+),
                    $want,
                    other
                ));
            }
        }
    };
}

/// `$got` must be `Err(Error::$variant)`.
macro_rules! expect_err {
    ($got:expr, $variant:ident, $($what:tt)+) => {
        expect!(
            $got,
            Err(Error::$variant) => {},
            concat!("Err(", stringify!($variant), ")"),
            $($what)+
        )
    };
}

/// `$got` must be `Err(Error::Grpc)` with gRPC code `$code` (and `$more`, if
/// given, is said after the expectation).
macro_rules! expect_code {
    ($got:expr, $code:literal, more $more:literal, $($what:tt)+) => {
        expect!(
            $got,
            Err(e) if is_code(&e, $code) => {},
            concat!("Err(Grpc ", $code, ")", $more),
            $($what)+
        )
    };
    ($got:expr, $code:literal, $($what:tt)+) => {
        expect_code!($got, $code, more "", $($what)+)
    };
}

/// The events of a read, without their positions.
fn events_only(v: Vec<(Ev, Position)>) -> Vec<Ev> {
    v.into_iter().map(|(e, _)| e).collect()
}

/// `r`'s value, or the check's failure "<what>: <the error>".
fn expect_ok<T>(r: kurrentdb::Result<T>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e:?}"))
}

/// A forwards read of the whole stream `$s` must give `$want`.
macro_rules! ensure_read {
    ($c:expr, $s:expr, $want:expr, $($what:tt)+) => {
        ensure_eq!(read_stream($c, $s, fwd()).await?, $want, $($what)+)
    };
}

/// `fut`, failing with `what` if it takes longer than `limit`.
async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| format!("{what}: no answer within {limit:?}"))
}

/// A call's result, success or error (the check fails only if the call
/// does not answer within CALL).
async fn attempt<F: Future>(what: &str, fut: F) -> Result<F::Output, String> {
    within(what, CALL, fut).await
}

/// A call's result, or the check's failure if the call did not succeed.
async fn call<T>(what: &str, fut: impl Future<Output = kurrentdb::Result<T>>) -> Result<T, String> {
    attempt(what, fut)
        .await?
        .map_err(|e| format!("{what}: {e:?} ({e})"))
}

/// An event as compared: stream, revision, id, type, data.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Ev {
    stream: String,
    rev: u64,
    id: Uuid,
    ty: String,
    data: Vec<u8>,
}

fn of(e: &RecordedEvent) -> Ev {
    Ev {
        stream: e.stream_id().to_string(),
        rev: e.revision,
        id: e.id,
        ty: e.event_type.clone(),
        data: e.data.to_vec(),
    }
}

/// The event a ResolvedEvent carries (the resolved one when it is a link).
fn event_of(r: &ResolvedEvent) -> Result<&RecordedEvent, String> {
    r.event
        .as_ref()
        .ok_or_else(|| format!("a ResolvedEvent without its event: {r:?}"))
}

/// A JSON event to append, and how it reads back at `stream`/`rev`.
fn json_event(stream: &str, rev: u64, ty: &str, data: Value) -> (EventData, Ev) {
    let id = Uuid::new_v4();
    let bytes = serde_json::to_vec(&data).expect("JSON");
    let event = EventData::json(ty, &data).expect("JSON").id(id);
    (
        event,
        Ev {
            stream: stream.to_string(),
            rev,
            id,
            ty: ty.to_string(),
            data: bytes,
        },
    )
}

/// `n` JSON events for `stream` from revision `first`.
fn json_events(stream: &str, first: u64, n: u64, ty: &str) -> (Vec<EventData>, Vec<Ev>) {
    (first..first + n)
        .map(|rev| json_event(stream, rev, ty, json!({"rev": rev, "stream": stream})))
        .unzip()
}

fn opts(state: StreamState) -> AppendToStreamOptions {
    AppendToStreamOptions::default().stream_state(state)
}

/// Appends `events` to `stream`: the crate's WriteResult, as
/// (next_expected_version, position).
async fn append(
    c: &Client,
    stream: &str,
    state: StreamState,
    events: Vec<EventData>,
) -> Result<(u64, Position), String> {
    let what = format!("append_to_stream({stream:?}, {state:?})");
    let r = call(&what, c.append_to_stream(stream, &opts(state), events)).await?;
    Ok((r.next_expected_version, r.position))
}

/// Appends `events` one call each: their positions.
async fn append_each(
    c: &Client,
    stream: &str,
    events: Vec<EventData>,
) -> Result<Vec<Position>, String> {
    let mut out = Vec::new();
    for e in events {
        out.push(append(c, stream, StreamState::Any, vec![e]).await?.1);
    }
    Ok(out)
}

/// Appends the next `n` of `events` to `stream` in one call (as `append`).
async fn append_next(
    c: &Client,
    stream: &str,
    state: StreamState,
    events: &mut impl Iterator<Item = EventData>,
    n: usize,
) -> Result<(u64, Position), String> {
    append(c, stream, state, events.by_ref().take(n).collect()).await
}

/// Every event a read gives, or the client's error (from the call or from
/// the stream, wherever the client surfaced it).
async fn collect(
    what: &str,
    fut: impl Future<Output = kurrentdb::Result<kurrentdb::ReadStream>>,
) -> Result<kurrentdb::Result<Vec<(Ev, Position)>>, String> {
    within(what, CALL, async {
        let mut rs = fut.await?;
        let mut out = Vec::new();
        while let Some(r) = rs.next().await? {
            let e = r.event.expect("a read event without its event");
            out.push((of(&e), e.position));
        }
        Ok(out)
    })
    .await
}

async fn read_stream(c: &Client, stream: &str, o: ReadStreamOptions) -> Result<Vec<Ev>, String> {
    let what = format!("read_stream({stream:?})");
    match collect(&what, c.read_stream(stream, &o)).await? {
        Ok(v) => Ok(v.into_iter().map(|(e, _)| e).collect()),
        Err(e) => Err(format!("{what}: {e:?}")),
    }
}

async fn read_stream_result(
    c: &Client,
    stream: &str,
) -> Result<kurrentdb::Result<Vec<Ev>>, String> {
    let what = format!("read_stream({stream:?})");
    Ok(
        collect(&what, c.read_stream(stream, &ReadStreamOptions::default()))
            .await?
            .map(|v| v.into_iter().map(|(e, _)| e).collect()),
    )
}

async fn read_all(c: &Client, o: ReadAllOptions) -> Result<Vec<(Ev, Position)>, String> {
    match collect("read_all", c.read_all(&o)).await? {
        Ok(v) => Ok(v),
        Err(e) => Err(format!("read_all: {e:?}")),
    }
}

fn fwd() -> ReadStreamOptions {
    ReadStreamOptions::default().forwards()
}

fn is_code(e: &Error, code: &str) -> bool {
    matches!(e, Error::Grpc { code: c, .. } if format!("{c:?}") == code)
}

/// A subscription message, as compared.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Msg {
    Confirmed,
    Event(Ev, Position),
    CaughtUp,
    Checkpoint(Position),
    Other(String),
}

async fn sub_next(sub: &mut Subscription) -> Result<Msg, String> {
    let m = expect_ok(
        within("subscription", WAIT, sub.next_subscription_event()).await?,
        "subscription failed",
    )?;
    Ok(match m {
        SubscriptionEvent::Confirmed(_) => Msg::Confirmed,
        SubscriptionEvent::EventAppeared(r) => {
            let e = event_of(&r)?;
            Msg::Event(of(e), e.position)
        }
        SubscriptionEvent::CaughtUp(_) => Msg::CaughtUp,
        SubscriptionEvent::Checkpoint(p) => Msg::Checkpoint(p),
        other => Msg::Other(format!("{other:?}")),
    })
}

/// subscribe_to_stream of `stream` from `from`.
async fn subscribe_from(c: &Client, stream: &str, from: StreamPosition<u64>) -> Subscription {
    let o = SubscribeToStreamOptions::default().start_from(from);
    c.subscribe_to_stream(stream, &o).await
}

/// Messages of `sub` until `done(log)` holds (each message bounded by WAIT,
/// all of them by `limit`). Events of `$`-streams are left out.
async fn sub_until(
    sub: &mut Subscription,
    limit: Duration,
    done: impl Fn(&[Msg]) -> bool,
) -> Result<Vec<Msg>, String> {
    let start = Instant::now();
    let mut log = Vec::new();
    while !done(&log) {
        if start.elapsed() > limit {
            return Err(format!(
                "subscription: condition not met within {limit:?}; got {log:?}"
            ));
        }
        let m = sub_next(sub)
            .await
            .map_err(|e| format!("{e}; got so far {log:?}"))?;
        if let Msg::Event(e, _) = &m
            && e.stream.starts_with('$')
        {
            continue;
        }
        log.push(m);
    }
    Ok(log)
}

fn events_in(log: &[Msg]) -> Vec<Ev> {
    log.iter()
        .filter_map(|m| match m {
            Msg::Event(e, _) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn count_events(log: &[Msg]) -> usize {
    log.iter().filter(|m| matches!(m, Msg::Event(..))).count()
}

fn has(log: &[Msg], m: &Msg) -> bool {
    log.contains(m)
}

/// The next event of a persistent subscription: (event, retry count).
async fn ps_next(
    sub: &mut PersistentSubscription,
    limit: Duration,
) -> Result<(ResolvedEvent, usize), String> {
    let start = Instant::now();
    loop {
        let left = limit
            .checked_sub(start.elapsed())
            .ok_or_else(|| format!("persistent subscription: no event within {limit:?}"))?;
        match within(
            "persistent subscription",
            left,
            sub.next_subscription_event(),
        )
        .await?
        {
            Ok(PersistentSubscriptionEvent::EventAppeared { retry_count, event }) => {
                return Ok((event, retry_count));
            }
            Ok(PersistentSubscriptionEvent::Confirmed(_)) => continue,
            Err(e) => return Err(format!("persistent subscription failed: {e:?}")),
        }
    }
}

/// Nothing arrives on `sub` for QUIET.
async fn ps_quiet(sub: &mut PersistentSubscription, who: &str) -> Outcome {
    match tokio::time::timeout(QUIET, sub.next_subscription_event()).await {
        Err(_) => Ok(()),
        Ok(Ok(PersistentSubscriptionEvent::EventAppeared { event, retry_count })) => Err(format!(
            "{who} got an event it should not have: {:?} (retry_count {retry_count})",
            event.event.as_ref().map(of)
        )),
        Ok(other) => Err(format!("{who}: unexpected {other:?}")),
    }
}

async fn ps_connect(
    c: &Client,
    stream: &str,
    group: &str,
    buffer: usize,
) -> Result<PersistentSubscription, String> {
    let o = SubscribeToPersistentSubscriptionOptions::default().buffer_size(buffer);
    call(
        &format!("subscribe_to_persistent_subscription({stream:?}, {group:?})"),
        c.subscribe_to_persistent_subscription(stream, group, &o),
    )
    .await
}

async fn ps_create(
    c: &Client,
    stream: &str,
    group: &str,
    o: &PersistentSubscriptionOptions,
) -> Outcome {
    call(
        "create_persistent_subscription",
        c.create_persistent_subscription(stream, group, o),
    )
    .await
}

async fn ps_ack(sub: &mut PersistentSubscription, events: &[&ResolvedEvent]) -> Outcome {
    for e in events {
        call("ack", sub.ack(e)).await?;
    }
    Ok(())
}

/// The next `n` events of `sub`, each acknowledged once received.
async fn ps_take_acked(sub: &mut PersistentSubscription, n: usize) -> Result<Vec<Ev>, String> {
    let mut got = Vec::new();
    for _ in 0..n {
        let (r, _) = ps_next(sub, WAIT).await?;
        got.push(of(event_of(&r)?));
        ps_ack(sub, &[&r]).await?;
    }
    Ok(got)
}

fn ps_from_start() -> PersistentSubscriptionOptions {
    PersistentSubscriptionOptions::default().start_from(StreamPosition::Start)
}

// ---------------------------------------------------------------- checks

/// ServerFeatures, which the client calls before anything else: what it
/// concludes about the server. KurrentDB 24.10 lists BatchAppend, the
/// persistent-subscription management rpcs (List, GetInfo, ReplayParked and
/// RestartSubsystem; the client needs all four, else it falls back to
/// KurrentDB's HTTP API) and Create with the feature `all`.
async fn server_features(ctx: Arc<Ctx>) -> Outcome {
    let info = call("server_info", ctx.client.server_info()).await?;
    let v = info.version();
    ensure_eq!((v.major(), v.minor()), (24, 10), "server version");
    let mut missing = Vec::new();
    for (name, f) in [
        ("BATCH_APPEND", Features::BATCH_APPEND),
        (
            "PERSISTENT_SUBSCRIPITON_TO_ALL",
            Features::PERSISTENT_SUBSCRIPITON_TO_ALL,
        ),
        (
            "PERSISTENT_SUBSCRIPTION_LIST",
            Features::PERSISTENT_SUBSCRIPTION_LIST,
        ),
        (
            "PERSISTENT_SUBSCRIPTION_GET_INFO",
            Features::PERSISTENT_SUBSCRIPTION_GET_INFO,
        ),
        (
            "PERSISTENT_SUBSCRIPTION_REPLAY",
            Features::PERSISTENT_SUBSCRIPTION_REPLAY,
        ),
        (
            "PERSISTENT_SUBSCRIPTION_RESTART_SUBSYSTEM",
            Features::PERSISTENT_SUBSCRIPTION_RESTART_SUBSYSTEM,
        ),
    ] {
        if !info.contains_features(f) {
            missing.push(name);
        }
    }
    ensure!(
        missing.is_empty(),
        "features the client did not find in GetSupportedMethods: {missing:?}"
    );
    Ok(())
}

/// `kurrentdb+discover://` with nodePreference=leader: the client reads
/// Gossip at the seed, picks the leader member's endpoint and works there.
async fn discover_gossip(ctx: Arc<Ctx>) -> Outcome {
    let url =
        ctx.url.replacen("kurrentdb://", "kurrentdb+discover://", 1) + "&nodePreference=leader";
    let c = ctx.client_for(&url)?;
    let s = ctx.uniq("discover");
    let (events, want) = json_events(&s, 0, 2, "Discovered");
    ensure_eq!(
        append(&c, &s, StreamState::NoStream, events).await?.0,
        1,
        "revision after 2 events"
    );
    ensure_read!(&c, &s, want, "read back over the discovered node");
    Ok(())
}

/// Every StreamState form, and the conflicts KurrentDB reports for them.
async fn append_expected_states(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("states");
    let mut want = Vec::new();
    let (e0, w0) = json_event(&s, 0, "E0", json!({"n": 0}));
    want.push(w0);
    let (r0, p0) = append(c, &s, StreamState::NoStream, vec![e0]).await?;
    ensure_eq!(r0, 0, "NoStream on a new stream: next expected version");
    ensure!(
        p0.commit > 0,
        "the first append's position {p0:?} is KurrentDB's start (0), not an event's"
    );

    ensure_eq!(
        refused_append(c, &s, StreamState::NoStream).await?,
        (StreamState::NoStream, CurrentRevision::Current(0)),
        "NoStream on an existing stream"
    );

    let (e1, w1) = json_event(&s, 1, "E1", json!({"n": 1}));
    want.push(w1);
    let (r1, p1) = append(c, &s, StreamState::StreamExists, vec![e1]).await?;
    ensure_eq!(r1, 1, "StreamExists: next expected version");
    ensure!(p1 > p0, "positions go up: {p0:?} then {p1:?}");

    let (many, wmany) = json_events(&s, 2, 3, "Many");
    want.extend(wmany);
    let (r2, p2) = append(c, &s, StreamState::StreamRevision(1), many).await?;
    ensure_eq!(
        r2,
        4,
        "StreamRevision(1) with 3 events: next expected version"
    );
    ensure!(p2 > p1, "positions go up: {p1:?} then {p2:?}");

    ensure_eq!(
        refused_append(c, &s, StreamState::StreamRevision(1)).await?,
        (StreamState::StreamRevision(1), CurrentRevision::Current(4)),
        "stale StreamRevision(1)"
    );

    ensure_eq!(
        refused_append(c, &s, StreamState::StreamRevision(9)).await?,
        (StreamState::StreamRevision(9), CurrentRevision::Current(4)),
        "future StreamRevision(9)"
    );

    let (e5, w5) = json_event(&s, 5, "E5", json!({"n": 5}));
    want.push(w5);
    ensure_eq!(
        append(c, &s, StreamState::Any, vec![e5]).await?.0,
        5,
        "Any: next expected version"
    );

    let missing = ctx.uniq("states-missing");
    ensure_eq!(
        refused_append(c, &missing, StreamState::StreamExists).await?,
        (StreamState::StreamExists, CurrentRevision::NoStream),
        "StreamExists on a missing stream"
    );
    ensure_eq!(
        refused_append(c, &missing, StreamState::StreamRevision(0)).await?,
        (StreamState::StreamRevision(0), CurrentRevision::NoStream),
        "StreamRevision(0) on a missing stream"
    );
    match read_stream_result(c, &missing).await? {
        Err(Error::ResourceNotFound) => {}
        other => {
            return Err(format!(
                "the refused appends created {missing:?}: read gave {other:?}"
            ));
        }
    }

    ensure_read!(c, &s, want, "the stream after the appends and conflicts");
    Ok(())
}

/// An append of one event to `stream` with `state` that KurrentDB refuses:
/// the expected state and current revision its WrongExpectedVersion gives.
async fn refused_append(
    c: &Client,
    stream: &str,
    state: StreamState,
) -> Result<(StreamState, CurrentRevision), String> {
    let (x, _) = json_event(stream, 0, "Never", json!({}));
    match attempt("append", c.append_to_stream(stream, &opts(state), x)).await? {
        Err(Error::WrongExpectedVersion { expected, current }) => Ok((expected, current)),
        other => Err(format!(
            "expected Error::WrongExpectedVersion, got {other:?}"
        )),
    }
}

/// A retry of an append (same events, same ids, same expected state)
/// writes nothing twice and succeeds with the same revision.
async fn append_idempotent(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("idem");
    let (events, want) = json_events(&s, 0, 2, "Idem");
    let first = append(c, &s, StreamState::NoStream, events.clone()).await?;
    ensure_eq!(first.0, 1, "first append: next expected version");
    let again = append(c, &s, StreamState::NoStream, events.clone()).await?;
    ensure_eq!(again.0, 1, "retry with NoStream: next expected version");
    let any = append(c, &s, StreamState::Any, events.clone()).await?;
    ensure_eq!(any.0, 1, "retry with Any: next expected version");
    ensure_read!(c, &s, want.clone(), "the stream after two retries");
    let (e2, w2) = json_event(&s, 2, "After", json!({"after": true}));
    ensure_eq!(
        append(c, &s, StreamState::StreamRevision(1), vec![e2])
            .await?
            .0,
        2,
        "the next append"
    );
    let mut all = want;
    all.push(w2);
    ensure_read!(c, &s, all, "the stream after the next append");
    Ok(())
}

/// The position an append returns is the event's position in $all: a read
/// from it starts with that event, a subscription from it starts after it.
async fn append_position_usable(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("pos");
    let (events, want) = json_events(&s, 0, 3, "Pos");
    let ps = append_each(c, &s, events).await?;
    ensure!(
        ps[0] < ps[1] && ps[1] < ps[2],
        "positions not increasing: {ps:?}"
    );
    for (i, p) in ps.iter().enumerate() {
        let got = read_all(
            c,
            ReadAllOptions::default()
                .position(StreamPosition::Position(*p))
                .forwards()
                .max_count(1),
        )
        .await?;
        ensure_eq!(
            got,
            vec![(want[i].clone(), *p)],
            "read_all forwards from append {i}'s position, max_count 1"
        );
    }
    let mut sub = c
        .subscribe_to_all(
            &SubscribeToAllOptions::default().position(StreamPosition::Position(ps[0])),
        )
        .await;
    let log = sub_until(&mut sub, CALL, |l| count_events(l) >= 2).await?;
    ensure_eq!(
        events_in(&log),
        vec![want[1].clone(), want[2].clone()],
        "subscribe_to_all from append 0's position"
    );
    Ok(())
}

async fn read_stream_ranges(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("ranges");
    let (events, want) = json_events(&s, 0, 10, "Range");
    ensure_eq!(
        append(c, &s, StreamState::NoStream, events).await?.0,
        9,
        "10 events: next expected version"
    );
    let r = |o: ReadStreamOptions| read_stream(c, &s, o);
    ensure_eq!(r(fwd()).await?, want.clone(), "forwards from the start");
    ensure_eq!(
        r(fwd().max_count(3)).await?,
        want[0..3].to_vec(),
        "forwards, max_count 3"
    );
    ensure_eq!(
        r(fwd().position(StreamPosition::Position(3)).max_count(4)).await?,
        want[3..7].to_vec(),
        "forwards from revision 3, max_count 4"
    );
    ensure_eq!(
        r(fwd().position(StreamPosition::Position(8)).max_count(5)).await?,
        want[8..10].to_vec(),
        "forwards from revision 8, max_count 5"
    );
    ensure_eq!(
        r(fwd().position(StreamPosition::Position(10))).await?,
        vec![],
        "forwards from past the end"
    );
    let back = |v: &[Ev]| v.iter().rev().cloned().collect::<Vec<_>>();
    ensure_eq!(
        r(ReadStreamOptions::default()
            .position(StreamPosition::End)
            .max_count(2))
        .await?,
        back(&want[8..10]),
        "backwards from the end, max_count 2"
    );
    ensure_eq!(
        r(ReadStreamOptions::default()
            .position(StreamPosition::Position(6))
            .backwards()
            .max_count(3))
        .await?,
        back(&want[4..7]),
        "backwards from revision 6, max_count 3"
    );
    ensure_eq!(
        r(ReadStreamOptions::default().position(StreamPosition::End)).await?,
        back(&want),
        "backwards from the end"
    );
    // What the client exposes besides: content type, custom metadata, created.
    let s2 = ctx.uniq("ranges-meta");
    let before = chrono_now_secs();
    let e = EventData::json("WithMeta", &json!({"a": 1}))
        .unwrap()
        .metadata_as_json(&json!({"m": "x"}))
        .unwrap();
    append(c, &s2, StreamState::NoStream, vec![e]).await?;
    let what = format!("read_stream({s2:?})");
    let got = within(&what, CALL, async {
        let mut rs = c
            .read_stream(s2.as_str(), &ReadStreamOptions::default())
            .await?;
        rs.next().await
    })
    .await?
    .map_err(|e| format!("{what}: {e:?}"))?
    .ok_or(format!("{what}: no event"))?;
    let e = event_of(&got)?;
    ensure_eq!(e.is_json, true, "is_json of a JSON event");
    ensure_eq!(
        e.metadata.get("content-type").map(String::as_str),
        Some("application/json"),
        "content-type"
    );
    ensure_eq!(
        e.custom_metadata.to_vec(),
        serde_json::to_vec(&json!({"m": "x"})).unwrap(),
        "custom metadata"
    );
    let created = e.created.timestamp();
    ensure!(
        created >= before - 5 && created <= chrono_now_secs() + 5,
        "created is {created} s since the epoch, the append was at {before}"
    );
    Ok(())
}

fn chrono_now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// What `ReadStream::next_read_event` gives besides events: a stream read
/// (the client asks for compatibility level 1) ends with the stream's last
/// revision, whatever max_count (the crate's own test_read_stream_events_with_position).
async fn read_stream_last_position(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("lastpos");
    let (events, want) = json_events(&s, 0, 10, "LastPos");
    append(c, &s, StreamState::NoStream, events).await?;
    #[derive(Debug, PartialEq)]
    enum R {
        Event(u64),
        First(u64),
        Last(u64),
        LastAll(Position),
    }
    let s = s.as_str();
    let read = |o: ReadStreamOptions| async move {
        within("read_stream", CALL, async {
            let mut rs = c.read_stream(s, &o).await?;
            let mut out = Vec::new();
            while let Some(r) = rs.next_read_event().await? {
                out.push(match r {
                    ReadEvent::Event(e) => {
                        R::Event(e.event.map(|e| e.revision).unwrap_or(u64::MAX))
                    }
                    ReadEvent::FirstStreamPosition(n) => R::First(n),
                    ReadEvent::LastStreamPosition(n) => R::Last(n),
                    ReadEvent::LastAllStreamPosition(p) => R::LastAll(p),
                });
            }
            Ok::<_, Error>(out)
        })
        .await?
        .map_err(|e| format!("read_stream: {e:?}"))
    };
    let mut all: Vec<R> = want.iter().map(|e| R::Event(e.rev)).collect();
    all.push(R::Last(9));
    ensure_eq!(read(fwd()).await?, all, "forwards from the start");
    ensure_eq!(
        read(fwd().max_count(3)).await?,
        vec![R::Event(0), R::Event(1), R::Event(2), R::Last(9)],
        "forwards, max_count 3"
    );
    ensure_eq!(
        read(
            ReadStreamOptions::default()
                .position(StreamPosition::End)
                .max_count(2)
        )
        .await?,
        vec![R::Event(9), R::Event(8), R::Last(9)],
        "backwards from the end, max_count 2"
    );
    Ok(())
}

async fn read_missing_stream(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("missing");
    expect_err!(
        read_stream_result(c, &s).await?,
        ResourceNotFound,
        "forwards"
    );
    let what = "read_stream backwards";
    expect_err!(
        collect(
            what,
            c.read_stream(
                s.as_str(),
                &ReadStreamOptions::default().position(StreamPosition::End),
            ),
        )
        .await?,
        ResourceNotFound,
        "backwards"
    );
    Ok(())
}

async fn read_all_ranges(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("all");
    let (events, want) = json_events(&s, 0, 5, "All");
    let ps = append_each(c, &s, events).await?;
    let at = |i: usize| (want[i].clone(), ps[i]);
    let pos = |p: Position| StreamPosition::Position(p);
    ensure_eq!(
        read_all(
            c,
            ReadAllOptions::default()
                .position(pos(ps[1]))
                .forwards()
                .max_count(3)
        )
        .await?,
        vec![at(1), at(2), at(3)],
        "read_all forwards from event 1's position, max_count 3"
    );
    ensure_eq!(
        read_all(
            c,
            ReadAllOptions::default()
                .position(pos(ps[4]))
                .backwards()
                .max_count(3)
        )
        .await?,
        vec![at(3), at(2), at(1)],
        "read_all backwards from event 4's position (excluded), max_count 3"
    );
    let mine = read_all(
        c,
        ReadAllOptions::default()
            .position(StreamPosition::Start)
            .max_count(100_000),
    )
    .await?;
    let mine: Vec<_> = mine.into_iter().filter(|(e, _)| e.stream == s).collect();
    ensure_eq!(
        mine,
        (0..5).map(at).collect::<Vec<_>>(),
        "this stream's events in read_all from the start"
    );
    let back = read_all(
        c,
        ReadAllOptions::default()
            .position(StreamPosition::End)
            .max_count(1),
    )
    .await?;
    ensure_eq!(
        back,
        vec![at(4)],
        "read_all backwards from the end, max_count 1"
    );
    Ok(())
}

/// Filters on read_all: stream-name prefixes, event-type prefixes, regular
/// expressions on both, forwards and backwards, with max_count.
async fn filtered_read_all(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let p = ctx.uniq("flt");
    let ta = format!("FltA{}", ctx.run);
    let tb = format!("FltB{}", ctx.run);
    let (sa, sb, so) = (format!("{p}-a"), format!("{p}-b"), ctx.uniq("nof"));
    let plan = [
        (&sa, &ta),
        (&so, &ta),
        (&sb, &tb),
        (&sa, &"Other".to_string()),
        (&sb, &ta),
    ];
    let mut want = Vec::new();
    let mut revs = std::collections::HashMap::new();
    for (s, t) in plan {
        let rev = revs.entry(s.clone()).or_insert(0u64);
        let (e, w) = json_event(s, *rev, t, json!({"s": s, "t": t}));
        *rev += 1;
        append(c, s, StreamState::Any, vec![e]).await?;
        want.push(w);
    }
    let pick = |ix: &[usize]| ix.iter().map(|&i| want[i].clone()).collect::<Vec<_>>();
    let run = |f: SubscriptionFilter, o: ReadAllOptions| async move {
        let got = read_all(c, o.filter(f)).await?;
        Ok::<_, String>(got.into_iter().map(|(e, _)| e).collect::<Vec<_>>())
    };
    let start = || ReadAllOptions::default().position(StreamPosition::Start);
    ensure_eq!(
        run(SubscriptionFilter::on_stream_name().add_prefix(&p), start()).await?,
        pick(&[0, 2, 3, 4]),
        "stream prefix {p:?}"
    );
    ensure_eq!(
        run(SubscriptionFilter::on_event_type().add_prefix(&ta), start()).await?,
        pick(&[0, 1, 4]),
        "event-type prefix {ta:?}"
    );
    ensure_eq!(
        run(
            SubscriptionFilter::on_stream_name()
                .add_prefix(&sb)
                .add_prefix(&so),
            start()
        )
        .await?,
        pick(&[1, 2, 4]),
        "two stream prefixes"
    );
    ensure_eq!(
        run(
            SubscriptionFilter::on_stream_name().regex(format!("^{p}-(a|c)$")),
            start()
        )
        .await?,
        pick(&[0, 3]),
        "stream-name regex"
    );
    ensure_eq!(
        run(
            SubscriptionFilter::on_event_type().regex(format!("^{tb}$")),
            start()
        )
        .await?,
        pick(&[2]),
        "event-type regex"
    );
    ensure_eq!(
        run(
            SubscriptionFilter::on_stream_name().add_prefix(&p),
            start().max_count(2)
        )
        .await?,
        pick(&[0, 2]),
        "stream prefix, max_count 2"
    );
    ensure_eq!(
        run(
            SubscriptionFilter::on_event_type().add_prefix(&ta),
            ReadAllOptions::default()
                .position(StreamPosition::End)
                .max_count(2)
        )
        .await?,
        pick(&[4, 1]),
        "event-type prefix, backwards from the end, max_count 2"
    );
    // exclude_system_events() is the regex ^[^\$].* on event types.
    let got = run(
        SubscriptionFilter::on_event_type().exclude_system_events(),
        start(),
    )
    .await?;
    ensure!(
        got.iter().all(|e| !e.ty.starts_with('$')),
        "exclude_system_events gave a $-type event"
    );
    let mine: Vec<_> = got
        .into_iter()
        .filter(|e| e.stream.starts_with(&p) || e.stream == so)
        .collect();
    ensure_eq!(
        mine,
        pick(&[0, 1, 2, 3, 4]),
        "exclude_system_events keeps this check's events"
    );
    Ok(())
}

/// subscribe_to_stream: catch-up then live; from a revision (after it); from
/// the end; a stream that does not exist yet.
async fn subscribe_stream_catchup_live(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("substream");
    let (events, want) = json_events(&s, 0, 7, "Sub");
    let mut events = events.into_iter();
    append_next(c, &s, StreamState::NoStream, &mut events, 3).await?;
    let ev = |i: usize, p: &Position| Msg::Event(want[i].clone(), *p);

    let mut sub = subscribe_from(c, &s, StreamPosition::Start).await;
    let log = sub_until(&mut sub, CALL, |l| has(l, &Msg::CaughtUp)).await?;
    ensure_eq!(log.first(), Some(&Msg::Confirmed), "first message");
    ensure_eq!(events_in(&log), want[0..3].to_vec(), "catch-up events");
    ensure_eq!(
        log.last(),
        Some(&Msg::CaughtUp),
        "caught up after the stored events"
    );
    let ps = append_each(c, &s, events.by_ref().take(2).collect()).await?;
    let live = sub_until(&mut sub, CALL, |l| count_events(l) >= 2).await?;
    ensure_eq!(live, vec![ev(3, &ps[0]), ev(4, &ps[1])], "live events");

    let mut from2 = subscribe_from(c, &s, StreamPosition::Position(2)).await;
    let log = sub_until(&mut from2, CALL, |l| has(l, &Msg::CaughtUp)).await?;
    ensure_eq!(
        events_in(&log),
        want[3..5].to_vec(),
        "from revision 2: catch-up (after 2)"
    );
    let mut from_end = subscribe_from(c, &s, StreamPosition::End).await;
    let log = sub_until(&mut from_end, CALL, |l| has(l, &Msg::CaughtUp)).await?;
    ensure_eq!(events_in(&log), vec![], "from the end: catch-up");

    let p5 = append_each(c, &s, events.by_ref().take(1).collect()).await?;
    let got = sub_until(&mut from2, CALL, |l| count_events(l) >= 1).await?;
    ensure_eq!(
        got,
        vec![ev(5, &p5[0])],
        "from revision 2: the next live event"
    );
    let got = sub_until(&mut from_end, CALL, |l| count_events(l) >= 1).await?;
    ensure_eq!(
        got,
        vec![ev(5, &p5[0])],
        "from the end: the first live event"
    );
    let got = sub_until(&mut sub, CALL, |l| count_events(l) >= 1).await?;
    ensure_eq!(
        got,
        vec![ev(5, &p5[0])],
        "from the start: the next live event"
    );

    // A stream that does not exist yet.
    let s2 = ctx.uniq("substream-later");
    let mut later = subscribe_from(c, &s2, StreamPosition::Start).await;
    let log = sub_until(&mut later, CALL, |l| has(l, &Msg::Confirmed)).await?;
    ensure_eq!(
        log,
        vec![Msg::Confirmed],
        "subscription to a missing stream: first message"
    );
    let (e, w) = json_event(&s2, 0, "First", json!({"first": true}));
    let p = append(c, &s2, StreamState::NoStream, vec![e]).await?.1;
    let got = sub_until(&mut later, CALL, |l| count_events(l) >= 1).await?;
    let got: Vec<_> = got.into_iter().filter(|m| *m != Msg::CaughtUp).collect();
    ensure_eq!(
        got,
        vec![Msg::Event(w, p)],
        "subscription to a missing stream: its first event"
    );
    Ok(())
}

/// subscribe_to_all from a position: catch-up then live, then a resume
/// from a live event's position: no gap, no duplicate.
async fn subscribe_all_catchup_live(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("suball");
    let (events, want) = json_events(&s, 0, 5, "SubAll");
    let mut events = events.into_iter();
    let mut ps = append_each(c, &s, events.by_ref().take(2).collect()).await?;
    let mut sub = c
        .subscribe_to_all(
            &SubscribeToAllOptions::default().position(StreamPosition::Position(ps[0])),
        )
        .await;
    let log = sub_until(&mut sub, CALL, |l| has(l, &Msg::CaughtUp)).await?;
    ensure_eq!(log.first(), Some(&Msg::Confirmed), "first message");
    ensure_eq!(
        events_in(&log),
        vec![want[1].clone()],
        "catch-up from event 0's position (events of other than $-streams)"
    );
    ps.extend(append_each(c, &s, events.by_ref().take(2).collect()).await?);
    let live = sub_until(&mut sub, CALL, |l| count_events(l) >= 2).await?;
    let live: Vec<_> = live
        .into_iter()
        .filter(|m| matches!(m, Msg::Event(..)))
        .collect();
    ensure_eq!(
        live,
        vec![
            Msg::Event(want[2].clone(), ps[2]),
            Msg::Event(want[3].clone(), ps[3])
        ],
        "live events"
    );
    let mut resumed = c
        .subscribe_to_all(
            &SubscribeToAllOptions::default().position(StreamPosition::Position(ps[2])),
        )
        .await;
    ps.extend(append_each(c, &s, events.by_ref().take(1).collect()).await?);
    let got = sub_until(&mut resumed, CALL, |l| {
        events_in(l).iter().any(|e| e.id == want[4].id)
    })
    .await?;
    ensure_eq!(
        events_in(&got),
        want[3..5].to_vec(),
        "resumed from event 2's position"
    );
    Ok(())
}

/// A filtered subscribe_to_all: only matching events, checkpoints between
/// them (SubscriptionFilter::max(4): a checkpoint at least every 4 scanned
/// events), caught-up, live; a resume from a checkpoint loses and repeats
/// nothing.
async fn subscribe_all_filtered_checkpoints(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let p = ctx.uniq("chk");
    let filter = || SubscriptionFilter::on_stream_name().add_prefix(&p).max(4);
    let (sa, sb) = (format!("{p}-a"), format!("{p}-b"));
    let noise = ctx.uniq("noise");
    let (m1, w1) = json_event(&sa, 0, "M", json!({"m": 1}));
    let p1 = append(c, &sa, StreamState::NoStream, vec![m1]).await?.1;
    let (n, _) = json_events(&noise, 0, 40, "Noise");
    append(c, &noise, StreamState::NoStream, n).await?;
    let (m2, w2) = json_event(&sb, 0, "M", json!({"m": 2}));
    let p2 = append(c, &sb, StreamState::NoStream, vec![m2]).await?.1;

    let mut sub = c
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Start)
                .filter(filter()),
        )
        .await;
    let mut log = sub_until(&mut sub, Duration::from_secs(30), |l| {
        count_events(l) >= 2 && has(l, &Msg::CaughtUp)
    })
    .await?;
    let (m3, w3) = json_event(&sa, 1, "M", json!({"m": 3}));
    let p3 = append(c, &sa, StreamState::StreamRevision(0), vec![m3])
        .await?
        .1;
    // Then m3, live, and at least one checkpoint overall.
    let had_checkpoint = log.iter().any(|m| matches!(m, Msg::Checkpoint(_)));
    log.extend(
        sub_until(&mut sub, Duration::from_secs(30), |l| {
            count_events(l) >= 1
                && (had_checkpoint || l.iter().any(|m| matches!(m, Msg::Checkpoint(_))))
        })
        .await?,
    );
    let wanted = vec![(w1.clone(), p1), (w2.clone(), p2), (w3.clone(), p3)];
    let got: Vec<_> = log
        .iter()
        .filter_map(|m| match m {
            Msg::Event(e, p) => Some((e.clone(), *p)),
            _ => None,
        })
        .collect();
    ensure_eq!(got, wanted.clone(), "matching events");
    ensure_eq!(log.first(), Some(&Msg::Confirmed), "first message");
    let cu = log.iter().position(|m| *m == Msg::CaughtUp).unwrap();
    let i2 = log
        .iter()
        .position(|m| matches!(m, Msg::Event(e, _) if e.id == w2.id))
        .unwrap();
    let i3 = log
        .iter()
        .position(|m| matches!(m, Msg::Event(e, _) if e.id == w3.id))
        .unwrap();
    ensure!(
        i2 < cu && cu < i3,
        "caught-up not between the stored and the live events: {log:?}"
    );
    // Checkpoints: in order, consistent with the events around them.
    let mut last = Position::start();
    let mut checkpoints = Vec::new();
    for m in &log {
        match m {
            Msg::Event(_, p) => {
                ensure!(
                    *p > last,
                    "an event at {p:?} after a checkpoint or event at {last:?}: {log:?}"
                );
                last = *p;
            }
            Msg::Checkpoint(p) => {
                ensure!(
                    *p >= last,
                    "a checkpoint at {p:?} after an event or checkpoint at {last:?}: {log:?}"
                );
                last = *p;
                checkpoints.push(*p);
            }
            _ => {}
        }
    }
    ensure!(!checkpoints.is_empty(), "no checkpoint: {log:?}");
    // Resume from the first checkpoint.
    let cp = checkpoints[0];
    let mut resumed = c
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(StreamPosition::Position(cp))
                .filter(filter()),
        )
        .await;
    let (m4, w4) = json_event(&sb, 1, "M", json!({"m": 4}));
    append(c, &sb, StreamState::StreamRevision(0), vec![m4]).await?;
    let got = sub_until(&mut resumed, Duration::from_secs(30), |l| {
        events_in(l).iter().any(|e| e.id == w4.id)
    })
    .await?;
    let mut expect: Vec<Ev> = wanted
        .iter()
        .filter(|(_, p)| *p > cp)
        .map(|(e, _)| e.clone())
        .collect();
    expect.push(w4);
    ensure_eq!(
        events_in(&got),
        expect,
        "resumed from the checkpoint at {cp:?}"
    );
    Ok(())
}

/// A filtered subscribe_to_all by event-type prefix, by stream-name and
/// event-type regular expressions, and with exclude_system_events (the
/// regex ^[^\$].* on event types): exactly the matching events, in order.
async fn subscribe_all_filter_kinds(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let p = ctx.uniq("subflt");
    let (ta, tb) = (format!("SfA{}", ctx.run), format!("SfB{}", ctx.run));
    let (sa, sb) = (format!("{p}-a"), format!("{p}-b"));
    let plan = [(&sa, &ta), (&sb, &tb), (&sa, &tb), (&sb, &ta)];
    let mut want = Vec::new();
    let mut first = None;
    let mut revs = std::collections::HashMap::new();
    for (s, ty) in plan {
        let rev = revs.entry(s.clone()).or_insert(0u64);
        let (e, w) = json_event(s, *rev, ty, json!({"s": s}));
        *rev += 1;
        let pos = append(c, s, StreamState::Any, vec![e]).await?.1;
        first.get_or_insert(pos);
        want.push(w);
    }
    let (sentinel, ws) = json_event(&sa, 2, &ta, json!({"sentinel": true}));
    let pick = |ix: &[usize]| ix.iter().map(|&i| want[i].clone()).collect::<Vec<_>>();
    // From just before the first event: a read of one event backwards from it.
    let before = read_all(
        c,
        ReadAllOptions::default()
            .position(StreamPosition::Position(first.unwrap()))
            .backwards()
            .max_count(1),
    )
    .await?;
    let from = before
        .first()
        .map(|(_, p)| StreamPosition::Position(*p))
        .unwrap_or(StreamPosition::Start);
    let cases: Vec<(&str, SubscriptionFilter, Vec<Ev>)> = vec![
        (
            "event-type prefix",
            SubscriptionFilter::on_event_type().add_prefix(&ta),
            pick(&[0, 3]),
        ),
        (
            "stream-name regex",
            SubscriptionFilter::on_stream_name().regex(format!("^{p}-b$")),
            pick(&[1, 3]),
        ),
        (
            "event-type regex",
            SubscriptionFilter::on_event_type().regex(format!("^{tb}$")),
            pick(&[1, 2]),
        ),
    ];
    let mut subs = Vec::new();
    for (what, f, w) in cases {
        let sub = c
            .subscribe_to_all(&SubscribeToAllOptions::default().position(from).filter(f))
            .await;
        subs.push((what, sub, w));
    }
    let mut excl = c
        .subscribe_to_all(
            &SubscribeToAllOptions::default()
                .position(from)
                .filter(SubscriptionFilter::on_event_type().exclude_system_events()),
        )
        .await;
    for (what, sub, w) in subs.iter_mut() {
        let log = sub_until(sub, CALL, |l| count_events(l) >= w.len())
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        ensure_eq!(events_in(&log), w.clone(), "{what}");
    }
    append(c, &sa, StreamState::StreamRevision(1), vec![sentinel]).await?;
    let (_, sub, _) = &mut subs[0];
    let log = sub_until(sub, CALL, |l| count_events(l) >= 1)
        .await
        .map_err(|e| format!("event-type prefix, live: {e}"))?;
    ensure_eq!(
        events_in(&log),
        vec![ws.clone()],
        "event-type prefix: the next (live) event"
    );
    let log = sub_until(&mut excl, CALL, |l| {
        events_in(l).iter().any(|e| e.id == ws.id)
    })
    .await?;
    let got = events_in(&log);
    ensure!(
        got.iter().all(|e| !e.ty.starts_with('$')),
        "exclude_system_events delivered a $-type event: {got:?}"
    );
    let mut all = pick(&[0, 1, 2, 3]);
    all.push(ws);
    ensure_eq!(
        got,
        all,
        "exclude_system_events: every event from the start position"
    );
    Ok(())
}

fn del(state: StreamState) -> DeleteStreamOptions {
    DeleteStreamOptions::default().stream_state(state)
}

fn tomb(state: StreamState) -> TombstoneStreamOptions {
    TombstoneStreamOptions::default().stream_state(state)
}

/// Soft delete: a conflict is FAILED_PRECONDITION (the client's Error::Grpc);
/// afterwards a read is ResourceNotFound; an append re-creates the stream,
/// revisions continuing, only new events visible, $tb in its metadata.
async fn delete_stream(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("del");
    let (events, _) = json_events(&s, 0, 3, "Del");
    append(c, &s, StreamState::NoStream, events).await?;
    expect_code!(
        attempt(
            "delete_stream",
            c.delete_stream(s.as_str(), &del(StreamState::StreamRevision(1)))
        )
        .await?,
        "FailedPrecondition",
        "delete with a stale revision"
    );
    ensure_eq!(
        read_stream(c, &s, fwd()).await?.len(),
        3,
        "events after the refused delete"
    );
    let pos = call(
        "delete_stream",
        c.delete_stream(s.as_str(), &del(StreamState::StreamRevision(2))),
    )
    .await?;
    ensure!(
        pos.is_some(),
        "delete_stream of an existing stream answered no position"
    );
    expect_err!(
        read_stream_result(c, &s).await?,
        ResourceNotFound,
        "read after delete"
    );
    let (e3, w3) = json_event(&s, 3, "Again", json!({"again": true}));
    ensure_eq!(
        append(c, &s, StreamState::NoStream, vec![e3]).await?.0,
        3,
        "append with NoStream after delete"
    );
    ensure_read!(c, &s, vec![w3], "the stream after delete and append");
    // KurrentDB's SoftUndeleteStream: the re-created stream's metadata holds
    // $tb = its first new revision. (Read newest first, so this does not
    // depend on how many metadata versions $$s shows.)
    let latest = ReadStreamOptions::default()
        .position(StreamPosition::End)
        .max_count(1);
    let what = "metadata of the re-created stream";
    let v = expect!(
        call("get_stream_metadata", c.get_stream_metadata(s.as_str(), &latest)).await?,
        StreamMetadataResult::Success(v) => v,
        "Success",
        "{what}"
    );
    ensure_eq!(
        v.metadata(),
        &StreamMetadata::builder().truncate_before(3).build(),
        "{what}"
    );
    // Deleting a stream that never existed: KurrentDB's StorageWriterService
    // refuses it as a wrong expected version, whatever the expected state.
    let missing = ctx.uniq("del-missing");
    for state in [StreamState::Any, StreamState::NoStream] {
        expect_code!(
            attempt(
                "delete_stream",
                c.delete_stream(missing.as_str(), &del(state))
            )
            .await?,
            "FailedPrecondition",
            "delete ({state:?}) of a stream that never existed"
        );
    }
    Ok(())
}

/// Tombstone: final. Read, subscribe, append, delete and tombstone of the
/// stream fail with ResourceDeleted; a missing name can be tombstoned.
async fn tombstone_stream(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("tomb");
    let (events, _) = json_events(&s, 0, 2, "Tomb");
    append(c, &s, StreamState::NoStream, events).await?;
    expect_code!(
        attempt(
            "tombstone_stream",
            c.tombstone_stream(s.as_str(), &tomb(StreamState::StreamRevision(0)))
        )
        .await?,
        "FailedPrecondition",
        "tombstone with a stale revision"
    );
    let pos = call(
        "tombstone_stream",
        c.tombstone_stream(s.as_str(), &tomb(StreamState::StreamRevision(1))),
    )
    .await?;
    ensure!(
        pos.is_some(),
        "tombstone of an existing stream answered no position"
    );
    expect_err!(
        read_stream_result(c, &s).await?,
        ResourceDeleted,
        "read after tombstone"
    );
    let (e, _) = json_event(&s, 2, "Never", json!({}));
    expect_err!(
        attempt(
            "append",
            c.append_to_stream(s.as_str(), &opts(StreamState::Any), e)
        )
        .await?,
        ResourceDeleted,
        "append after tombstone"
    );
    expect_err!(
        attempt(
            "delete_stream",
            c.delete_stream(s.as_str(), &del(StreamState::Any))
        )
        .await?,
        ResourceDeleted,
        "delete after tombstone"
    );
    expect_err!(
        attempt(
            "tombstone_stream",
            c.tombstone_stream(s.as_str(), &tomb(StreamState::Any))
        )
        .await?,
        ResourceDeleted,
        "tombstone after tombstone"
    );
    let mut sub = subscribe_from(c, &s, StreamPosition::Start).await;
    let got = within("subscribe_to_stream", WAIT, async {
        loop {
            match sub.next_subscription_event().await {
                Ok(SubscriptionEvent::Confirmed(_)) => continue,
                other => return other,
            }
        }
    })
    .await?;
    expect_err!(got, ResourceDeleted, "subscribe after tombstone");
    let missing = ctx.uniq("tomb-missing");
    call(
        "tombstone_stream of a missing stream",
        c.tombstone_stream(missing.as_str(), &tomb(StreamState::NoStream)),
    )
    .await?;
    let (e, _) = json_event(&missing, 0, "Never", json!({}));
    expect_err!(
        attempt(
            "append",
            c.append_to_stream(missing.as_str(), &opts(StreamState::Any), e)
        )
        .await?,
        ResourceDeleted,
        "append to a tombstoned missing name"
    );
    Ok(())
}

/// KurrentDB fails the read of a tombstoned stream before any message, so
/// the client's read_stream call itself is Err(ResourceDeleted) (the crate's
/// own test_tombstone_stream), while a missing stream is answered in-band
/// (Ok, then Err(ResourceNotFound) from next()).
async fn tombstoned_read_fails_at_call(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("tomb-call");
    let (events, _) = json_events(&s, 0, 1, "Tomb");
    append(c, &s, StreamState::NoStream, events).await?;
    call(
        "tombstone_stream",
        c.tombstone_stream(s.as_str(), &tomb(StreamState::Any)),
    )
    .await?;
    match attempt(
        "read_stream",
        c.read_stream(s.as_str(), &ReadStreamOptions::default()),
    )
    .await?
    {
        Err(Error::ResourceDeleted) => {}
        Err(e) => {
            return Err(format!(
                "read_stream of a tombstoned stream: expected Err(ResourceDeleted), got Err({e:?})"
            ));
        }
        Ok(mut rs) => {
            let next = attempt("next", rs.next()).await?;
            return Err(format!(
                "read_stream of a tombstoned stream: the call answered Ok (a response stream), and its first next() {next:?}; KurrentDB answers the error before any message"
            ));
        }
    }
    let missing = ctx.uniq("tomb-call-missing");
    match attempt(
        "read_stream",
        c.read_stream(missing.as_str(), &ReadStreamOptions::default()),
    )
    .await?
    {
        Ok(mut rs) => expect_err!(
            attempt("next", rs.next()).await?,
            ResourceNotFound,
            "a missing stream's first next()"
        ),
        Err(e) => {
            return Err(format!(
                "read_stream of a missing stream: the call failed ({e:?}); KurrentDB answers stream_not_found in-band"
            ));
        }
    }
    Ok(())
}

async fn set_meta(
    c: &Client,
    s: &str,
    state: StreamState,
    m: &StreamMetadata,
) -> Result<kurrentdb::Result<u64>, String> {
    Ok(attempt(
        "set_stream_metadata",
        c.set_stream_metadata(s, &opts(state), m),
    )
    .await?
    .map(|r| r.next_expected_version))
}

/// set_stream_metadata, failing the check if it fails: the version.
async fn set_meta_ok(
    c: &Client,
    s: &str,
    state: StreamState,
    m: &StreamMetadata,
) -> Result<u64, String> {
    expect_ok(set_meta(c, s, state, m).await?, "set_stream_metadata")
}

/// get_stream_metadata, which must find metadata.
async fn meta_success(c: &Client, s: &str) -> Result<Box<VersionedMetadata>, String> {
    Ok(expect!(
        get_meta(c, s).await?,
        StreamMetadataResult::Success(v) => v,
        "Success",
        "get_stream_metadata"
    ))
}

async fn get_meta(c: &Client, s: &str) -> Result<StreamMetadataResult, String> {
    call(
        "get_stream_metadata",
        c.get_stream_metadata(s, &ReadStreamOptions::default()),
    )
    .await
}

/// set_stream_metadata / get_stream_metadata: versions, conflicts, every
/// property the client writes coming back; $tb's effect. The client's
/// get_stream_metadata reads `$$s` with the options given (here the default:
/// forwards from the start) and takes the first event: on KurrentDB that is
/// the latest version, because metastreams keep only their last event
/// (ESConsts.MetaStreamMaxCount = 1).
async fn metadata_roundtrip(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("meta");
    expect!(
        get_meta(c, &s).await?,
        StreamMetadataResult::NotFound => {},
        "NotFound",
        "metadata of a missing stream"
    );
    let (events, want) = json_events(&s, 0, 3, "Meta");
    append(c, &s, StreamState::NoStream, events).await?;
    expect!(
        get_meta(c, &s).await?,
        StreamMetadataResult::NotFound => {},
        "NotFound",
        "metadata of a stream without any"
    );
    let m1 = StreamMetadata::builder()
        .max_count(50)
        .truncate_before(1)
        .cache_control(Duration::from_secs(15))
        .insert_custom_property("owner", "team-a")
        .insert_custom_property("nested", json!({"k": [1, 2]}))
        .build();
    ensure_eq!(
        set_meta(c, &s, StreamState::NoStream, &m1)
            .await?
            .map_err(|e| format!("{e:?}"))?,
        0,
        "first metadata: version"
    );
    let v = meta_success(c, &s).await?;
    ensure_eq!(v.stream_name(), format!("$${s}"), "metadata stream");
    ensure_eq!(v.version(), 0, "metadata version");
    ensure_eq!(v.metadata(), &m1, "metadata read back");
    ensure_read!(c, &s, want[1..3].to_vec(), "read with $tb 1");
    let m2 = StreamMetadata::builder().max_count(1).build();
    expect!(
        set_meta(c, &s, StreamState::StreamRevision(1), &m2).await?,
        Err(Error::WrongExpectedVersion { expected, current }) => ensure_eq!(
            (expected, current),
            (StreamState::StreamRevision(1), CurrentRevision::Current(0)),
            "metadata conflict"
        ),
        "WrongExpectedVersion",
        "metadata with a wrong revision"
    );
    ensure_eq!(
        set_meta(c, &s, StreamState::StreamRevision(0), &m2)
            .await?
            .map_err(|e| format!("{e:?}"))?,
        1,
        "second metadata: version"
    );
    let v = meta_success(c, &s).await?;
    ensure_eq!(
        (v.version(), v.metadata()),
        (1, &m2),
        "second metadata read back"
    );
    ensure_read!(c, &s, want[2..3].to_vec(), "read with max_count 1 (no $tb)");
    Ok(())
}

/// max_count 2: reads (both ways) and a catch-up subscription see the last 2.
async fn metadata_max_count(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("maxcount");
    let (events, want) = json_events(&s, 0, 7, "MaxCount");
    let mut events = events.into_iter();
    append_next(c, &s, StreamState::NoStream, &mut events, 5).await?;
    set_meta_ok(
        c,
        &s,
        StreamState::Any,
        &StreamMetadata::builder().max_count(2).build(),
    )
    .await?;
    ensure_read!(c, &s, want[3..5].to_vec(), "forwards with max_count 2");
    ensure_eq!(
        read_stream(
            c,
            &s,
            ReadStreamOptions::default().position(StreamPosition::End)
        )
        .await?,
        vec![want[4].clone(), want[3].clone()],
        "backwards with max_count 2"
    );
    let mut sub = subscribe_from(c, &s, StreamPosition::Start).await;
    let log = sub_until(&mut sub, CALL, |l| has(l, &Msg::CaughtUp)).await?;
    ensure_eq!(
        events_in(&log),
        want[3..5].to_vec(),
        "catch-up subscription with max_count 2"
    );
    append(c, &s, StreamState::StreamRevision(4), events.collect()).await?;
    ensure_read!(c, &s, want[5..7].to_vec(), "forwards after 2 more appends");
    Ok(())
}

/// max_age. Note: this client writes `$maxAge` in milliseconds
/// (Duration::as_millis) while KurrentDB reads it in seconds, so
/// `Duration::from_millis(n)` is n seconds on the server.
async fn metadata_max_age(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("maxage");
    let (events, want) = json_events(&s, 0, 3, "MaxAge");
    let mut events = events.into_iter();
    append_next(c, &s, StreamState::NoStream, &mut events, 2).await?;
    let long = StreamMetadata::builder()
        .max_age(Duration::from_millis(3600))
        .build();
    set_meta_ok(c, &s, StreamState::Any, &long).await?;
    let v = meta_success(c, &s).await?;
    ensure_eq!(v.metadata(), &long, "max_age read back");
    ensure_read!(c, &s, want[0..2].to_vec(), "read with $maxAge 3600 (s)");
    let short = StreamMetadata::builder()
        .max_age(Duration::from_millis(1))
        .build();
    set_meta_ok(c, &s, StreamState::Any, &short).await?;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    ensure_read!(c, &s, vec![], "read 2.5 s after $maxAge 1 (s)");
    append(c, &s, StreamState::StreamRevision(1), events.collect()).await?;
    ensure_read!(
        c,
        &s,
        want[2..3].to_vec(),
        "a fresh event under $maxAge 1 (s)"
    );
    Ok(())
}

/// The ACL round-trips; with authentication (the TLS target) it takes
/// effect: only the listed user (and admins) may read and write, an
/// anonymous caller may do nothing. Without authentication (KurrentDB's
/// insecure mode) everything is allowed. The users are made with the native
/// CLI, so this does not depend on the Users service (checked by `users`).
async fn metadata_acl(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("acl");
    let (u1, u2) = (ctx.uniq("ann"), ctx.uniq("bob"));
    let pw = format!("pw-{}", ctx.run);
    let acl = StreamAclBuilder::new()
        .add_read_roles(&u1)
        .add_read_roles("$admins")
        .add_write_roles(&u1)
        .add_meta_read_roles("$admins")
        .add_meta_write_roles("$admins")
        .build();
    let (events, want) = json_events(&s, 0, 4, "Acl");
    let mut events = events.into_iter();
    append_next(c, &s, StreamState::NoStream, &mut events, 1).await?;
    let m = StreamMetadata::builder().acl(Acl::Stream(acl)).build();
    set_meta_ok(c, &s, StreamState::Any, &m).await?;
    let v = meta_success(c, &s).await?;
    ensure_eq!(v.metadata(), &m, "ACL read back");
    let anon = ctx.client_for(&ctx.anonymous_url())?;
    if !ctx.tls {
        append_next(&anon, &s, StreamState::StreamRevision(0), &mut events, 1).await?;
        ensure_read!(&anon, &s, want[0..2].to_vec(), "insecure: anyone reads");
        return Ok(());
    }
    for u in [&u1, &u2] {
        ctx.strata(&[
            "user",
            "create",
            u,
            "--new-password",
            &pw,
            "--role",
            "reader",
        ])
        .await?;
    }
    let as_user = |u: &str| Credentials::new(u.to_string(), pw.clone());
    let s = s.as_str();
    let read_as = |u: &str| {
        let o = ReadStreamOptions::default().authenticated(as_user(u));
        async move { collect("read_stream", c.read_stream(s, &o)).await }
    };
    let append_as = |u: &str, e: EventData| {
        let o = AppendToStreamOptions::default().authenticated(as_user(u));
        async move { attempt("append", c.append_to_stream(s, &o, e)).await }
    };
    expect_err!(
        read_as(&u2).await?,
        AccessDenied,
        "read by {u2} (not in $r)"
    );
    let (x, _) = json_event(s, 9, "Never", json!({}));
    expect_err!(
        append_as(&u2, x).await?,
        AccessDenied,
        "append by {u2} (not in $w)"
    );
    expect_ok(
        append_as(&u1, events.next().unwrap()).await?,
        &format!("append by {u1} (in $w)"),
    )?;
    ensure_eq!(
        events_only(expect_ok(
            read_as(&u1).await?,
            &format!("read by {u1} (in $r)")
        )?),
        want[0..2].to_vec(),
        "read by {u1} (in $r)"
    );
    ensure_read!(c, s, want[0..2].to_vec(), "read by admin");
    expect_err!(
        collect(
            "read_stream",
            anon.read_stream(s, &ReadStreamOptions::default()),
        )
        .await?,
        AccessDenied,
        "anonymous read"
    );
    Ok(())
}

/// The crate's BatchAppendClient (Streams.BatchAppend). A conflict is
/// KurrentDB's google.rpc.Status WrongExpectedVersion, code ALREADY_EXISTS
/// (Error::Grpc here); after an error the client's batch session ends, so a
/// new one is opened.
async fn batch_append(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("batch");
    let (events, want) = json_events(&s, 0, 5, "Batch");
    let mut events: Vec<_> = events;
    let batch = call(
        "batch_append",
        c.batch_append(&BatchAppendOptions::default()),
    )
    .await?;
    let r = batch_to(&batch, &s, StreamState::NoStream, events[0..2].to_vec()).await?;
    ensure_eq!(
        (r.stream_name(), r.current_revision()),
        (s.as_str(), Some(1)),
        "first batch"
    );
    let p = r.current_position().ok_or("first batch: no position")?;
    let got = read_all(
        c,
        ReadAllOptions::default()
            .position(StreamPosition::Position(p))
            .forwards()
            .max_count(1),
    )
    .await?;
    ensure_eq!(
        got.into_iter().map(|(e, _)| e).collect::<Vec<_>>(),
        vec![want[1].clone()],
        "read_all from the batch's position"
    );
    let r = batch_to(
        &batch,
        &s,
        StreamState::StreamRevision(1),
        events[2..3].to_vec(),
    )
    .await?;
    ensure_eq!(
        r.current_revision(),
        Some(2),
        "second batch, StreamRevision(1)"
    );
    let other = ctx.uniq("batch-other");
    let (oe, ow) = json_events(&other, 0, 2, "BatchOther");
    let r = batch_to(&batch, &other, StreamState::Any, oe).await?;
    ensure_eq!(
        (r.stream_name(), r.current_revision()),
        (other.as_str(), Some(1)),
        "a batch to another stream"
    );
    // An idempotent retry of the first batch.
    let r = batch_to(&batch, &s, StreamState::NoStream, events[0..2].to_vec()).await?;
    ensure_eq!(r.current_revision(), Some(1), "retry of the first batch");
    expect_code!(
        attempt(
            "BatchAppendClient::append_to_stream",
            batch.append_to_stream(&s, StreamState::NoStream, events[3..4].to_vec())
        )
        .await?,
        "AlreadyExists",
        more " (KurrentDB's WrongExpectedVersion status)",
        "a batch with NoStream on an existing stream"
    );
    let batch = call(
        "batch_append",
        c.batch_append(&BatchAppendOptions::default()),
    )
    .await?;
    let r = batch_to(
        &batch,
        &s,
        StreamState::StreamExists,
        events.drain(3..5).collect(),
    )
    .await?;
    ensure_eq!(
        r.current_revision(),
        Some(4),
        "a batch with StreamExists on a new session"
    );
    ensure_read!(c, &s, want, "the stream after the batches");
    ensure_eq!(read_stream(c, &other, fwd()).await?, ow, "the other stream");
    Ok(())
}

/// One append of a batch session.
async fn batch_to(
    batch: &BatchAppendClient,
    stream: &str,
    state: StreamState,
    events: Vec<EventData>,
) -> Result<BatchWriteResult, String> {
    call(
        "BatchAppendClient::append_to_stream",
        batch.append_to_stream(stream, state, events),
    )
    .await
}

/// Two consumers of a group share a stream's events: each holds at most its
/// buffer_size unacknowledged, none twice; acknowledged events do not come
/// back; live events flow to them.
async fn persistent_share_ack(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("ps-share");
    let g = ctx.uniq("group");
    ps_create(c, &s, &g, &ps_from_start()).await?;
    expect_err!(
        attempt(
            "create_persistent_subscription",
            c.create_persistent_subscription(s.as_str(), &g, &ps_from_start())
        )
        .await?,
        ResourceAlreadyExists,
        "creating the group twice"
    );
    let (events, want) = json_events(&s, 0, 8, "Share");
    let mut events = events.into_iter();
    append_next(c, &s, StreamState::NoStream, &mut events, 6).await?;
    let mut a = ps_connect(c, &s, &g, 3).await?;
    let mut got_a = Vec::new();
    for _ in 0..3 {
        got_a.push(ps_next(&mut a, WAIT).await?);
    }
    ps_quiet(&mut a, "consumer A (buffer_size 3, 3 unacknowledged)").await?;
    let mut b = ps_connect(c, &s, &g, 3).await?;
    let mut got_b = Vec::new();
    for _ in 0..3 {
        got_b.push(ps_next(&mut b, WAIT).await?);
    }
    ps_quiet(&mut b, "consumer B (buffer_size 3, 3 unacknowledged)").await?;
    let evs = |v: &[(ResolvedEvent, usize)]| -> Result<Vec<(Ev, usize)>, String> {
        v.iter().map(|(r, n)| Ok((of(event_of(r)?), *n))).collect()
    };
    let (ea, eb) = (evs(&got_a)?, evs(&got_b)?);
    let mut all: Vec<_> = ea.iter().chain(eb.iter()).cloned().collect();
    all.sort_by_key(|(e, _)| e.rev);
    ensure_eq!(
        all,
        want[0..6]
            .iter()
            .map(|e| (e.clone(), 0))
            .collect::<Vec<_>>(),
        "the 6 events over both consumers (with retry counts)"
    );
    ps_ack(&mut a, &got_a.iter().map(|(r, _)| r).collect::<Vec<_>>()).await?;
    ps_ack(&mut b, &got_b.iter().map(|(r, _)| r).collect::<Vec<_>>()).await?;
    append(c, &s, StreamState::StreamRevision(5), events.collect()).await?;
    let mut live = Vec::new();
    for _ in 0..2 {
        let (who, (r, n)) = tokio::select! {
            x = ps_next(&mut a, WAIT) => ("A", x?),
            x = ps_next(&mut b, WAIT) => ("B", x?),
        };
        live.push((of(event_of(&r)?), n));
        if who == "A" {
            ps_ack(&mut a, &[&r]).await?;
        } else {
            ps_ack(&mut b, &[&r]).await?;
        }
    }
    live.sort_by_key(|(e, _)| e.rev);
    ensure_eq!(
        live,
        want[6..8]
            .iter()
            .map(|e| (e.clone(), 0))
            .collect::<Vec<_>>(),
        "the live events"
    );
    ps_quiet(&mut a, "consumer A after acknowledging everything").await?;
    ps_quiet(&mut b, "consumer B after acknowledging everything").await?;
    Ok(())
}

/// nack Retry redelivers at once with retry_count 1; nack Park parks it:
/// not delivered again, the next events flow.
async fn persistent_nack_retry_park(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("ps-nack");
    let g = ctx.uniq("group");
    ps_create(c, &s, &g, &ps_from_start().max_retry_count(5)).await?;
    let (events, want) = json_events(&s, 0, 2, "Nack");
    let mut events = events.into_iter();
    append_next(c, &s, StreamState::NoStream, &mut events, 1).await?;
    let mut a = ps_connect(c, &s, &g, 10).await?;
    let (r, n) = ps_next(&mut a, WAIT).await?;
    ensure_eq!(
        (of(event_of(&r)?), n),
        (want[0].clone(), 0),
        "first delivery"
    );
    call("nack Retry", a.nack(&r, NakAction::Retry, "try again")).await?;
    let (r, n) = ps_next(&mut a, WAIT).await?;
    ensure_eq!(
        (of(event_of(&r)?), n),
        (want[0].clone(), 1),
        "redelivery after nack Retry"
    );
    call("nack Park", a.nack(&r, NakAction::Park, "poison")).await?;
    ps_quiet(&mut a, "the consumer after parking its only event").await?;
    append(c, &s, StreamState::StreamRevision(0), events.collect()).await?;
    let (r, n) = ps_next(&mut a, WAIT).await?;
    ensure_eq!(
        (of(event_of(&r)?), n),
        (want[1].clone(), 0),
        "the next event after the park"
    );
    ps_ack(&mut a, &[&r]).await?;
    ps_quiet(&mut a, "the consumer after acknowledging").await?;
    Ok(())
}

/// replay_parked_messages redelivers the parked event.
async fn persistent_replay_parked(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("ps-replay");
    let g = ctx.uniq("group");
    ps_create(c, &s, &g, &ps_from_start()).await?;
    let (events, want) = json_events(&s, 0, 2, "Replay");
    append(c, &s, StreamState::NoStream, events).await?;
    let mut a = ps_connect(c, &s, &g, 10).await?;
    let (r0, _) = ps_next(&mut a, WAIT).await?;
    let (r1, _) = ps_next(&mut a, WAIT).await?;
    ensure_eq!(
        (of(event_of(&r0)?), of(event_of(&r1)?)),
        (want[0].clone(), want[1].clone()),
        "deliveries"
    );
    call("nack Park", a.nack(&r0, NakAction::Park, "poison")).await?;
    ps_ack(&mut a, &[&r1]).await?;
    ps_quiet(&mut a, "the consumer after park and ack").await?;
    // KurrentDB writes the parked event asynchronously (the crate's own test
    // waits before replaying); leave it a moment.
    tokio::time::sleep(Duration::from_secs(1)).await;
    call(
        "replay_parked_messages",
        c.replay_parked_messages(&s, &g, &ReplayParkedMessagesOptions::default()),
    )
    .await?;
    let (r, _) = ps_next(&mut a, WAIT).await?;
    ensure_eq!(
        of(event_of(&r)?),
        want[0].clone(),
        "the replayed parked event"
    );
    ps_ack(&mut a, &[&r]).await?;
    ps_quiet(
        &mut a,
        "the consumer after acknowledging the replayed event",
    )
    .await?;
    Ok(())
}

/// get_persistent_subscription_info: the group's source, name, settings as
/// created, its connections, status Live.
async fn persistent_info(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("ps-info");
    let g = ctx.uniq("group");
    let o = ps_from_start()
        .max_retry_count(7)
        .message_timeout(Duration::from_secs(12))
        .max_subscriber_count(5)
        .checkpoint_after(Duration::from_secs(3))
        .consumer_strategy_name(SystemConsumerStrategy::RoundRobin);
    ps_create(c, &s, &g, &o).await?;
    let (events, _) = json_events(&s, 0, 2, "Info");
    append(c, &s, StreamState::NoStream, events).await?;
    let mut a = ps_connect(c, &s, &g, 10).await?;
    let mut b = ps_connect(c, &s, &g, 10).await?;
    for _ in 0..2 {
        let (who, (r, _)) = tokio::select! {
            x = ps_next(&mut a, WAIT) => ("A", x?),
            x = ps_next(&mut b, WAIT) => ("B", x?),
        };
        if who == "A" {
            ps_ack(&mut a, &[&r]).await?
        } else {
            ps_ack(&mut b, &[&r]).await?
        }
    }
    let info = call(
        "get_persistent_subscription_info",
        c.get_persistent_subscription_info(
            &s,
            &g,
            &GetPersistentSubscriptionInfoOptions::default(),
        ),
    )
    .await?;
    ensure_eq!(
        (info.event_source.as_str(), info.group_name.as_str()),
        (s.as_str(), g.as_str()),
        "source and group"
    );
    ensure_eq!(info.status.as_str(), "Live", "status");
    ensure_eq!(info.connections.len(), 2, "connections");
    let st = info.settings.as_ref().ok_or("no settings")?;
    ensure_eq!(
        (
            st.start_from,
            st.max_retry_count,
            st.message_timeout,
            st.max_subscriber_count,
            st.checkpoint_after,
            st.consumer_strategy_name.clone()
        ),
        (
            StreamPosition::Start,
            7,
            Duration::from_secs(12),
            5,
            Duration::from_secs(3),
            SystemConsumerStrategy::RoundRobin
        ),
        "settings"
    );
    expect_err!(
        attempt(
            "get_persistent_subscription_info",
            c.get_persistent_subscription_info(
                &s,
                ctx.uniq("nogroup"),
                &GetPersistentSubscriptionInfoOptions::default(),
            )
        )
        .await?,
        ResourceNotFound,
        "info of a missing group"
    );
    Ok(())
}

/// list_persistent_subscriptions_for_stream, _to_all, list_all.
async fn persistent_list(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("ps-list");
    let (g1, g2, g3) = (ctx.uniq("group"), ctx.uniq("group"), ctx.uniq("group"));
    for g in [&g1, &g2] {
        ps_create(c, &s, g, &ps_from_start()).await?;
    }
    call(
        "create_persistent_subscription_to_all",
        c.create_persistent_subscription_to_all(
            &g3,
            &PersistentSubscriptionToAllOptions::default(),
        ),
    )
    .await?;
    let lo = ListPersistentSubscriptionsOptions::default();
    let for_stream = call(
        "list_persistent_subscriptions_for_stream",
        c.list_persistent_subscriptions_for_stream(&s, &lo),
    )
    .await?;
    let names: BTreeSet<_> = for_stream
        .iter()
        .map(|i| (i.event_source.clone(), i.group_name.clone()))
        .collect();
    ensure_eq!(
        names,
        BTreeSet::from([(s.clone(), g1.clone()), (s.clone(), g2.clone())]),
        "groups of the stream"
    );
    let to_all = call(
        "list_persistent_subscriptions_to_all",
        c.list_persistent_subscriptions_to_all(&lo),
    )
    .await?;
    ensure!(
        to_all
            .iter()
            .any(|i| i.event_source == "$all" && i.group_name == g3),
        "list_persistent_subscriptions_to_all lacks {g3}: {:?}",
        to_all
            .iter()
            .map(|i| (&i.event_source, &i.group_name))
            .collect::<Vec<_>>()
    );
    ensure!(
        to_all.iter().all(|i| i.event_source == "$all"),
        "a stream group in the $all list"
    );
    let every = call(
        "list_all_persistent_subscriptions",
        c.list_all_persistent_subscriptions(&lo),
    )
    .await?;
    let every: BTreeSet<_> = every
        .iter()
        .map(|i| (i.event_source.clone(), i.group_name.clone()))
        .collect();
    for k in [
        (s.clone(), g1.clone()),
        (s.clone(), g2.clone()),
        ("$all".to_string(), g3.clone()),
    ] {
        ensure!(
            every.contains(&k),
            "list_all_persistent_subscriptions lacks {k:?}"
        );
    }
    call(
        "delete_persistent_subscription_to_all",
        c.delete_persistent_subscription_to_all(
            &g3,
            &DeletePersistentSubscriptionOptions::default(),
        ),
    )
    .await?;
    Ok(())
}

/// delete_persistent_subscription: its consumer's call ends (NOT_FOUND, as
/// KurrentDB's PersistentSubscriptionDoesNotExist); the group is gone for
/// info, delete and connect.
async fn persistent_delete(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("ps-del");
    let g = ctx.uniq("group");
    ps_create(c, &s, &g, &ps_from_start()).await?;
    let (events, _) = json_events(&s, 0, 1, "Del");
    append(c, &s, StreamState::NoStream, events).await?;
    let mut a = ps_connect(c, &s, &g, 10).await?;
    let (r, _) = ps_next(&mut a, WAIT).await?;
    ps_ack(&mut a, &[&r]).await?;
    let dopts = DeletePersistentSubscriptionOptions::default();
    call(
        "delete_persistent_subscription",
        c.delete_persistent_subscription(s.as_str(), &g, &dopts),
    )
    .await?;
    // KurrentDB ends it with PersistentSubscriptionDoesNotExist (NOT_FOUND).
    expect_err!(
        within(
            "the consumer of a deleted group",
            WAIT,
            a.next_subscription_event(),
        )
        .await?,
        ResourceNotFound,
        "the consumer of a deleted group"
    );
    expect_err!(
        attempt(
            "delete_persistent_subscription",
            c.delete_persistent_subscription(s.as_str(), &g, &dopts)
        )
        .await?,
        ResourceNotFound,
        "deleting a deleted group"
    );
    let o = SubscribeToPersistentSubscriptionOptions::default();
    let got = within("subscribe_to_persistent_subscription", CALL, async {
        let mut sub = c
            .subscribe_to_persistent_subscription(s.as_str(), &g, &o)
            .await?;
        loop {
            match sub.next_subscription_event().await? {
                PersistentSubscriptionEvent::Confirmed(_) => continue,
                other => return Ok(other),
            }
        }
    })
    .await?;
    expect_err!(got, ResourceNotFound, "connecting to a deleted group");
    expect_err!(
        attempt(
            "get_persistent_subscription_info",
            c.get_persistent_subscription_info(
                &s,
                &g,
                &GetPersistentSubscriptionInfoOptions::default(),
            )
        )
        .await?,
        ResourceNotFound,
        "info of a deleted group"
    );
    Ok(())
}

/// A group on $all with a stream-prefix filter, from the start and from a
/// position (inclusive), its info, its deletion.
async fn persistent_all(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let p = ctx.uniq("psall");
    let (sa, sb, noise) = (format!("{p}-a"), format!("{p}-b"), ctx.uniq("ps-noise"));
    let (g, g2) = (ctx.uniq("group"), ctx.uniq("group"));
    let filter = SubscriptionFilter::on_stream_name().add_prefix(&p);
    let o = PersistentSubscriptionToAllOptions::default()
        .start_from(StreamPosition::Start)
        .filter(filter.clone());
    call(
        "create_persistent_subscription_to_all",
        c.create_persistent_subscription_to_all(&g, &o),
    )
    .await?;
    let mut want = Vec::new();
    let mut ps = Vec::new();
    for (s, rev) in [(&sa, 0), (&noise, 0), (&sb, 0), (&sa, 1)] {
        let (e, w) = json_event(s, rev, "PsAll", json!({"s": s}));
        ps.push(append(c, s, StreamState::Any, vec![e]).await?.1);
        if s != &noise {
            want.push(w);
        }
    }
    let so = SubscribeToPersistentSubscriptionOptions::default().buffer_size(10);
    let mut a = call(
        "subscribe_to_persistent_subscription_to_all",
        c.subscribe_to_persistent_subscription_to_all(&g, &so),
    )
    .await?;
    let got = ps_take_acked(&mut a, 3).await?;
    ensure_eq!(got, want.clone(), "the group's events, in order");
    ps_quiet(&mut a, "the $all consumer after its 3 events").await?;
    let o2 = PersistentSubscriptionToAllOptions::default()
        .start_from(StreamPosition::Position(ps[2]))
        .filter(filter);
    call(
        "create_persistent_subscription_to_all",
        c.create_persistent_subscription_to_all(&g2, &o2),
    )
    .await?;
    let mut b = call(
        "subscribe_to_persistent_subscription_to_all",
        c.subscribe_to_persistent_subscription_to_all(&g2, &so),
    )
    .await?;
    let got = ps_take_acked(&mut b, 2).await?;
    ensure_eq!(
        got,
        want[1..3].to_vec(),
        "a group from the third event's position (inclusive)"
    );
    ps_quiet(&mut b, "the second $all consumer after its 2 events").await?;
    let info = call(
        "get_persistent_subscription_info_to_all",
        c.get_persistent_subscription_info_to_all(
            &g,
            &GetPersistentSubscriptionInfoOptions::default(),
        ),
    )
    .await;
    let dopts = DeletePersistentSubscriptionOptions::default();
    call(
        "delete_persistent_subscription_to_all",
        c.delete_persistent_subscription_to_all(&g, &dopts),
    )
    .await?;
    call(
        "delete_persistent_subscription_to_all",
        c.delete_persistent_subscription_to_all(&g2, &dopts),
    )
    .await?;
    let info = info?;
    ensure_eq!(
        (info.event_source.as_str(), info.group_name.as_str()),
        ("$all", g.as_str()),
        "info of the $all group"
    );
    Ok(())
}

/// restart_persistent_subscription_subsystem: KurrentDB answers success
/// (and its groups go on).
async fn persistent_restart_subsystem(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    call(
        "restart_persistent_subscription_subsystem",
        c.restart_persistent_subscription_subsystem(
            &RestartPersistentSubscriptionSubsystem::default(),
        ),
    )
    .await
}

/// User management with the crate's operations::Client (the Users
/// service), as admin over the authenticated target: create, details,
/// update, change and reset the password, disable and enable, delete; and
/// what each does to the user's own calls. A new user, in no group, may
/// read and write ordinary streams (KurrentDB's default $userStreamAcl
/// grants $all, every authenticated user). KurrentDB's insecure mode has no
/// authentication, so this applies to the TLS target only.
async fn users(ctx: Arc<Ctx>) -> Outcome {
    if !ctx.tls {
        return Err(format!("{SKIP}no authentication on this target"));
    }
    let c = &ctx.client;
    let ops = operations::Client::from(c.clone());
    let o = OperationalOptions::default();
    let login = ctx.uniq("kdbuser");
    let (pw1, pw2, pw3) = (
        format!("first-{}", ctx.run),
        format!("second-{}", ctx.run),
        format!("third-{}", ctx.run),
    );
    let details = |login: String| {
        let ops = ops.clone();
        async move {
            within("user_details", CALL, async {
                let mut st = ops
                    .user_details(&login, &OperationalOptions::default())
                    .await?;
                let mut out = Vec::new();
                while let Some(d) = st.next().await? {
                    out.push((d.login, d.full_name, d.groups, d.disabled));
                }
                Ok::<_, Error>(out)
            })
            .await
        }
    };
    let mut later: Vec<String> = Vec::new();
    call(
        "create_user",
        ops.create_user(&login, &pw1, "Ann Example", vec![], &o),
    )
    .await?;
    let got = expect_ok(details(login.clone()).await?, "user_details")?;
    check_user(
        &got,
        &login,
        Vec::<String>::new(),
        "create_user",
        "Ann Example",
        &mut later,
    )?;
    let s = ctx.uniq("users");
    let (events, want) = json_events(&s, 0, 3, "ByUser");
    let mut events = events.into_iter();
    let as_user = |pw: &str| Credentials::new(login.clone(), pw.to_string());
    let s_ref = s.as_str();
    let append_as = |pw: &str, e: EventData| {
        let o = AppendToStreamOptions::default().authenticated(as_user(pw));
        async move { attempt("append", c.append_to_stream(s_ref, &o, e)).await }
    };
    let read_as = |pw: &str| {
        let o = ReadStreamOptions::default().authenticated(as_user(pw));
        async move { collect("read_stream", c.read_stream(s_ref, &o)).await }
    };
    expect_ok(
        append_as(&pw1, events.next().unwrap()).await?,
        "append as the new user",
    )?;
    ensure_eq!(
        events_only(expect_ok(read_as(&pw1).await?, "read as the new user")?),
        want[0..1].to_vec(),
        "read as the new user"
    );
    call(
        "update_user",
        ops.update_user(&login, &pw1, "Ann Updated", vec!["$ops".to_string()], &o),
    )
    .await?;
    let got = expect_ok(details(login.clone()).await?, "user_details")?;
    check_user(
        &got,
        &login,
        vec!["$ops".to_string()],
        "update_user",
        "Ann Updated",
        &mut later,
    )?;
    call(
        "change_user_password",
        ops.change_user_password(&login, &pw1, &pw2, &o),
    )
    .await?;
    expect_err!(
        read_as(&pw1).await?,
        AccessDenied,
        "read with the old password"
    );
    expect_ok(
        append_as(&pw2, events.next().unwrap()).await?,
        "append with the changed password",
    )?;
    call(
        "reset_user_password",
        ops.reset_user_password(&login, &pw3, &o),
    )
    .await?;
    expect_err!(
        read_as(&pw2).await?,
        AccessDenied,
        "read with the password before the reset"
    );
    ensure_eq!(
        events_only(expect_ok(
            read_as(&pw3).await?,
            "read with the reset password"
        )?),
        want[0..2].to_vec(),
        "read with the reset password"
    );
    call("disable_user", ops.disable_user(&login, &o)).await?;
    let got = expect_ok(details(login.clone()).await?, "user_details")?;
    ensure_eq!(
        got.first().map(|d| d.3),
        Some(true),
        "disabled in user_details after disable_user"
    );
    expect_err!(
        read_as(&pw3).await?,
        AccessDenied,
        "read as a disabled user"
    );
    call("enable_user", ops.enable_user(&login, &o)).await?;
    expect_ok(
        append_as(&pw3, events.next().unwrap()).await?,
        "append after enable_user",
    )?;
    call("delete_user", ops.delete_user(&login, &o)).await?;
    expect_err!(
        details(login.clone()).await?,
        ResourceNotFound,
        "user_details of a deleted user"
    );
    expect_err!(read_as(&pw3).await?, AccessDenied, "read as a deleted user");
    ensure_read!(c, &s, want, "the stream the user wrote");
    ensure!(later.is_empty(), "{}", later.join("; "));
    Ok(())
}

/// `got` (user_details of `login` after `after`) is one user with those
/// groups, not disabled. Its full name is compared at the end (a mismatch
/// there, noted in `later`, should not hide what the rest of the check finds).
fn check_user(
    got: &[(String, String, Vec<String>, bool)],
    login: &str,
    groups: Vec<String>,
    after: &str,
    full: &str,
    later: &mut Vec<String>,
) -> Outcome {
    ensure_eq!(
        got.iter()
            .map(|d| (d.0.clone(), d.2.clone(), d.3))
            .collect::<Vec<_>>(),
        vec![(login.to_string(), groups, false)],
        "user_details after {after} (login, groups, disabled)"
    );
    if got.first().map(|d| d.1.as_str()) != Some(full) {
        later.push(format!(
            "user_details after {after}: full name expected {:?}, got {:?}",
            full,
            got.first().map(|d| d.1.clone())
        ));
    }
    Ok(())
}

/// Events appended with the native CLI (strata.v1) read through the crate:
/// same order, ids, types, data, metadata; a Strata position p is commit
/// position p + 1 (docs/KURRENTDB.md, Positions). Live too.
async fn native_to_kurrentdb(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("native-in");
    let mut sent = Vec::new();
    for (i, expected) in ["no-stream", "0", "1"].into_iter().enumerate() {
        let id = Uuid::new_v4();
        let data = json!({"i": i, "text": format!("native-{i}")});
        let meta = json!({"by": "strata-cli", "i": i});
        let out = ctx
            .strata(&[
                "append",
                &s,
                "--type",
                &format!("N{i}"),
                "--data",
                &data.to_string(),
                "--metadata",
                &meta.to_string(),
                "--id",
                &id.to_string(),
                "--expected",
                expected,
            ])
            .await?;
        let o = out.first().ok_or("strata append printed nothing")?;
        let ids = id.to_string();
        ensure_eq!(
            (
                o["stream"].as_str(),
                o["revision"].as_u64(),
                o["id"].as_str()
            ),
            (Some(s.as_str()), Some(i as u64), Some(ids.as_str())),
            "strata append {i}"
        );
        sent.push((id, data, meta, o["position"].as_u64().ok_or("no position")?));
    }
    let what = format!("read_stream({s:?})");
    let read = within(&what, CALL, async {
        let mut rs = c
            .read_stream(s.as_str(), &ReadStreamOptions::default())
            .await?;
        let mut v = Vec::new();
        while let Some(r) = rs.next().await? {
            v.push(r.event.expect("event"));
        }
        Ok::<_, Error>(v)
    })
    .await?;
    let got = expect_ok(read, &what)?;
    ensure_eq!(got.len(), 3, "events read");
    for (i, (e, (id, data, meta, pos))) in got.iter().zip(&sent).enumerate() {
        let d: Value = serde_json::from_slice(&e.data).map_err(|x| format!("data of {i}: {x}"))?;
        let m: Value = serde_json::from_slice(&e.custom_metadata)
            .map_err(|x| format!("metadata of {i}: {x}"))?;
        ensure_eq!(
            (
                e.id,
                e.event_type.clone(),
                e.revision,
                e.stream_id().to_string(),
                e.is_json,
                d,
                m,
                e.position.commit
            ),
            (
                *id,
                format!("N{i}"),
                i as u64,
                s.clone(),
                true,
                data.clone(),
                meta.clone(),
                pos + 1
            ),
            "event {i} appended natively"
        );
    }
    let from = Position {
        commit: sent[0].3 + 1,
        prepare: sent[0].3 + 1,
    };
    let all = read_all(
        c,
        ReadAllOptions::default()
            .position(StreamPosition::Position(from))
            .forwards()
            .max_count(3),
    )
    .await?;
    ensure_eq!(
        all.iter().map(|(e, _)| e.id).collect::<Vec<_>>(),
        sent.iter().map(|x| x.0).collect::<Vec<_>>(),
        "the same events in read_all"
    );
    let mut sub = subscribe_from(c, &s, StreamPosition::Position(2)).await;
    sub_until(&mut sub, CALL, |l| has(l, &Msg::CaughtUp)).await?;
    let id = Uuid::new_v4();
    let out = ctx
        .strata(&[
            "append",
            &s,
            "--type",
            "NLive",
            "--data",
            r#"{"live":true}"#,
            "--id",
            &id.to_string(),
            "--expected",
            "2",
        ])
        .await?;
    let pos = out
        .first()
        .and_then(|o| o["position"].as_u64())
        .ok_or("strata append: no position")?;
    let live = sub_until(&mut sub, CALL, |l| count_events(l) >= 1).await?;
    let want = Ev {
        stream: s.clone(),
        rev: 3,
        id,
        ty: "NLive".into(),
        data: br#"{"live":true}"#.to_vec(),
    };
    ensure_eq!(events_in(&live), vec![want], "a native append seen live");
    match &live[..] {
        [Msg::Event(_, p)] => ensure_eq!(p.commit, pos + 1, "its commit position"),
        other => return Err(format!("live: {other:?}")),
    }
    Ok(())
}

/// Events appended through the crate read with the native CLI.
async fn kurrentdb_to_native(ctx: Arc<Ctx>) -> Outcome {
    let c = &ctx.client;
    let s = ctx.uniq("kdb-out");
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let events = vec![
        EventData::json("J1", &json!({"a": [1, 2], "b": "x"}))
            .unwrap()
            .metadata_as_json(&json!({"m": 1}))
            .unwrap()
            .id(ids[0]),
        EventData::binary("Bin", b"\xff\x00\x01binary".to_vec().into()).id(ids[1]),
        EventData::json("J2", &json!({}))
            .unwrap()
            .metadata_as_json(&json!({"m": 2}))
            .unwrap()
            .id(ids[2]),
    ];
    let ps = append_each(c, &s, events).await?;
    let rows = ctx.strata(&["read", &s]).await?;
    ensure_eq!(rows.len(), 3, "events read natively");
    let types = ["J1", "Bin", "J2"];
    let ctypes = [
        "application/json",
        "application/octet-stream",
        "application/json",
    ];
    for (i, row) in rows.iter().enumerate() {
        let id = ids[i].to_string();
        ensure_eq!(
            (
                row["id"].as_str(),
                row["type"].as_str(),
                row["stream"].as_str(),
                row["revision"].as_u64(),
                row["position"].as_u64(),
                row["content_type"].as_str()
            ),
            (
                Some(id.as_str()),
                Some(types[i]),
                Some(s.as_str()),
                Some(i as u64),
                Some(ps[i].commit - 1),
                Some(ctypes[i])
            ),
            "native view of event {i}"
        );
    }
    ensure_eq!(
        (&rows[0]["data"], &rows[0]["metadata"]),
        (&json!({"a": [1, 2], "b": "x"}), &json!({"m": 1})),
        "event 0's data and metadata"
    );
    ensure_eq!(
        (&rows[2]["data"], &rows[2]["metadata"]),
        (&json!({}), &json!({"m": 2})),
        "event 2's data and metadata"
    );
    let bin = native_bytes(&rows[1], "data")?;
    ensure_eq!(bin, b"\xff\x00\x01binary".to_vec(), "event 1's binary data");
    let from = (ps[0].commit - 1).to_string();
    let all = ctx
        .strata(&["read", "$all", "--from", &from, "--limit", "3"])
        .await?;
    ensure_eq!(
        all.iter()
            .map(|r| r["id"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>(),
        ids.iter().map(Uuid::to_string).collect::<Vec<_>>(),
        "the same events in native $all"
    );
    Ok(())
}

/// `key` of a `strata read --json` row as bytes (its `<key>_encoding`).
fn native_bytes(row: &Value, key: &str) -> Result<Vec<u8>, String> {
    let v = row[key]
        .as_str()
        .ok_or(format!("{key} is not text: {row}"))?;
    match row[format!("{key}_encoding")].as_str() {
        Some("utf-8") => Ok(v.as_bytes().to_vec()),
        Some("hex") => (0..v.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&v[i..i + 2], 16).map_err(|e| e.to_string()))
            .collect(),
        Some("base64") => base64_decode(v),
        other => Err(format!("unknown {key}_encoding {other:?}: {row}")),
    }
}

fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for ch in s.bytes().filter(|&b| b != b'=') {
        let v = alphabet
            .iter()
            .position(|&a| a == ch)
            .ok_or(format!("not base64: {s}"))? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- main

fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set (run tests/kurrentdb/run.sh)"))
}

fn context(target: &str, run: &str) -> Result<Ctx, String> {
    let url = env(&format!("KDB_URL_{target}"))?;
    let native_url = env(&format!("KDB_NATIVE_{target}"))?;
    let tls = native_url.starts_with("https://");
    let host_port = native_url
        .split_once("://")
        .map(|(_, h)| h.trim_end_matches('/').to_string())
        .ok_or(format!("KDB_NATIVE_{target}: not a URL: {native_url}"))?;
    let settings: ClientSettings = url
        .parse()
        .map_err(|e| format!("KDB_URL_{target} {url:?}: {e}"))?;
    let client = Client::new(settings).map_err(|e| format!("Client::new: {e}"))?;
    Ok(Ctx {
        target: target.to_string(),
        url,
        client,
        tls,
        host_port,
        native_url,
        ca: env("KDB_CA")?,
        admin_password: env("KDB_ADMIN_PASSWORD")?,
        strata: env("KDB_STRATA")?,
        run: run.to_string(),
        counter: AtomicU32::new(0),
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let targets: Vec<String> = std::env::args().skip(1).collect();
    if targets.is_empty() {
        eprintln!("usage: strata-kurrentdb-rust-check TARGET... (see tests/kurrentdb/run.sh)");
        std::process::exit(2);
    }
    let only: Option<BTreeSet<String>> = std::env::var("KDB_ONLY")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split_whitespace().map(str::to_string).collect());
    // One line per panic, not the default hook's report; the check fails.
    std::panic::set_hook(Box::new(|info| {
        eprintln!("panic: {info}");
    }));
    let run = Uuid::new_v4().simple().to_string()[..12].to_string();
    let (mut passed, mut skipped, mut failed) = (0, 0, Vec::new());
    for target in &targets {
        let ctx = match context(target, &run) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                println!("FAIL {target} setup: {e}");
                failed.push(format!("{target} setup"));
                continue;
            }
        };
        for (name, check) in CHECKS {
            if only.as_ref().is_some_and(|o| !o.contains(*name)) {
                continue;
            }
            let started = Instant::now();
            let task = tokio::spawn(check(ctx.clone()));
            let abort = task.abort_handle();
            let outcome = match tokio::time::timeout(CHECK, task).await {
                Err(_) => {
                    abort.abort();
                    Err(format!("did not finish within {CHECK:?}"))
                }
                Ok(Err(e)) if e.is_panic() => {
                    let p = e.into_panic();
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    Err(format!("the client panicked: {msg}"))
                }
                Ok(Err(e)) => Err(format!("the check's task failed: {e}")),
                Ok(Ok(r)) => r,
            };
            let took = started.elapsed().as_secs_f32();
            match outcome {
                Ok(()) => {
                    passed += 1;
                    println!("ok {} {name} ({took:.1} s)", ctx.target);
                }
                Err(why) if why.starts_with(SKIP) => {
                    skipped += 1;
                    println!("skip {} {name}: {}", ctx.target, &why[SKIP.len()..]);
                }
                Err(why) => {
                    failed.push(format!("{} {name}", ctx.target));
                    println!("FAIL {} {name}: {why}", ctx.target);
                }
            }
        }
    }
    println!(
        "tests/kurrentdb/rust: {passed} ok, {skipped} not applicable, {} failed{}",
        failed.len(),
        if failed.is_empty() {
            String::new()
        } else {
            format!(": {}", failed.join(", "))
        }
    );
    std::process::exit(if failed.is_empty() { 0 } else { 1 });
}
