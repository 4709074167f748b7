//! `event_store.client.persistent_subscriptions.PersistentSubscriptions`
//! over Strata's consumer groups (`crate::groups`), to streams and to
//! `$all`: the same groups the native service manages, so a group created
//! through one protocol is read, listed and deleted through the other.
//!
//! KurrentDB names events to acknowledge by their ids; Strata's groups by
//! their positions. Each `Read` call remembers, for the events it handed
//! out and that are not yet acknowledged, the position of each id (at most
//! [`MAX_UNACKED`]; an id beyond that, or one never handed out, is
//! ignored, as KurrentDB ignores an unknown id).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use strata_proto::kurrentdb::persistent::persistent_subscriptions_server::PersistentSubscriptions;
use strata_proto::kurrentdb::persistent::read_req::options::{
    uuid_option::Content as UuidChoice, StreamOption as ReadStreamOption,
};
use strata_proto::kurrentdb::persistent::read_req::{nack::Action, Content as ReadContent};
use strata_proto::kurrentdb::persistent::read_resp::read_event::{
    Count, Position as EventPosition, RecordedEvent as WireEvent,
};
use strata_proto::kurrentdb::persistent::read_resp::{
    Content, ReadEvent, SubscriptionConfirmation,
};
use strata_proto::kurrentdb::persistent::subscription_info::ConnectionInfo;
use strata_proto::kurrentdb::persistent::{
    create_req, list_req, replay_parked_req, update_req, CreateReq, CreateResp, DeleteReq,
    DeleteResp, GetInfoReq, GetInfoResp, ListReq, ListResp, ReadReq, ReadResp, ReplayParkedReq,
    ReplayParkedResp, SubscriptionInfo, UpdateReq, UpdateResp,
};
use strata_proto::kurrentdb::shared::{Empty, StreamIdentifier};
use strata_proto::kurrentdb::streams::read_req::options::uuid_option::Content as UuidForm;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::filter::Expression;
use super::{convert, errors, position};
use crate::auth::{denied, Caller, Role, StreamOp};
use crate::groups::{Delivery, GroupInfo, Groups, NackAction, Settings, Start, Strategy, Target};
use crate::service::consumer_call::{self, ConsumerRequest};
use crate::service::{DEFAULT_BUFFER_SIZE, MAX_BUFFER_SIZE};
use crate::store::{Direction, ReadFrom};

/// Ids remembered per `Read` call for acknowledgement, at most.
const MAX_UNACKED: usize = 65_536;

/// What KurrentDB's clients call `$all`.
const ALL: &str = "$all";

/// The service over the server's consumer groups.
#[derive(Clone)]
pub struct KurrentPersistent {
    groups: Arc<Groups>,
    shutdown: watch::Receiver<bool>,
}

impl KurrentPersistent {
    /// The service over `groups`; consumers' calls end (UNAVAILABLE) when
    /// `shutdown` turns true.
    pub fn new(groups: Arc<Groups>, shutdown: watch::Receiver<bool>) -> Self {
        KurrentPersistent { groups, shutdown }
    }
}

fn stream_target(id: Option<StreamIdentifier>) -> Result<Target, Status> {
    let name = convert::stream_name(id)?;
    if name == ALL {
        return Ok(Target::All);
    }
    Ok(Target::Stream(name))
}

/// The group target of a request's `stream_option` oneof (one generated
/// type per request, all of the same shape); returns INVALID_ARGUMENT from
/// the handler when it is unset.
macro_rules! target_of {
    ($option:expr, $O:ident :: $stream:ident) => {
        match $option {
            Some($O::$stream(id)) => stream_target(Some(id))?,
            Some($O::All(_)) => Target::All,
            None => return Err(Status::invalid_argument("a stream or all is required")),
        }
    };
}

fn required<T>(options: Option<T>) -> Result<T, Status> {
    options.ok_or_else(|| Status::invalid_argument("options are required"))
}

/// The settings both `CreateReq` and `UpdateReq` carry, taken out of
/// their two generated types.
struct WireSettings {
    max_retry_count: i32,
    min_checkpoint_count: i32,
    max_checkpoint_count: i32,
    max_subscriber_count: i32,
    named_strategy: i32,
    strategy_name: String,
    message_timeout: Option<Duration>,
    checkpoint_after: Option<Duration>,
    revision: u64,
    /// Kept and shown back, not used: (key, value) of the settings
    /// without a counterpart.
    kept: Vec<(&'static str, String)>,
}

/// The keys of `Settings::extra` this layer keeps.
const MIN_CHECKPOINT: &str = "kurrentdb.min_checkpoint_count";
const LIVE_BUFFER: &str = "kurrentdb.live_buffer_size";
const READ_BATCH: &str = "kurrentdb.read_batch_size";
const HISTORY_BUFFER: &str = "kurrentdb.history_buffer_size";
const EXTRA_STATISTICS: &str = "kurrentdb.extra_statistics";
const RESOLVE_LINKS: &str = "kurrentdb.resolve_links";
/// `end`: the group was created to start at the end (which Strata
/// resolves to a revision or position at creation).
const START: &str = "kurrentdb.start";

/// A duration given in .NET ticks (100 ns) or in milliseconds.
fn duration(ticks: Option<i64>, ms: Option<i32>, what: &str) -> Result<Option<Duration>, Status> {
    let d = match (ticks, ms) {
        (Some(t), _) if t >= 0 => Duration::from_nanos((t as u64).saturating_mul(100)),
        (_, Some(m)) if m >= 0 => Duration::from_millis(m as u64),
        (None, None) => return Ok(None),
        _ => {
            return Err(Status::invalid_argument(format!(
                "settings.{what} must not be negative"
            )))
        }
    };
    if d < Duration::from_millis(1) {
        // KurrentDB's "0" means its default.
        return Ok(None);
    }
    Ok(Some(d))
}

macro_rules! wire_settings {
    ($s:expr, $m:ident, $module:ident, $strategy_name:expr) => {{
        use $module::settings::{CheckpointAfter, MessageTimeout};
        let s = $s;
        let (mt_ticks, mt_ms) = match s.message_timeout {
            Some(MessageTimeout::MessageTimeoutTicks(t)) => (Some(t), None),
            Some(MessageTimeout::MessageTimeoutMs(m)) => (None, Some(m)),
            None => (None, None),
        };
        let (ca_ticks, ca_ms) = match s.checkpoint_after {
            Some(CheckpointAfter::CheckpointAfterTicks(t)) => (Some(t), None),
            Some(CheckpointAfter::CheckpointAfterMs(m)) => (None, Some(m)),
            None => (None, None),
        };
        WireSettings {
            max_retry_count: s.max_retry_count,
            min_checkpoint_count: s.min_checkpoint_count,
            max_checkpoint_count: s.max_checkpoint_count,
            max_subscriber_count: s.max_subscriber_count,
            named_strategy: s.named_consumer_strategy,
            strategy_name: $strategy_name(&s),
            message_timeout: duration(mt_ticks, mt_ms, "message_timeout")?,
            checkpoint_after: duration(ca_ticks, ca_ms, "checkpoint_after")?,
            revision: s.revision,
            kept: vec![
                (MIN_CHECKPOINT, s.min_checkpoint_count.to_string()),
                (LIVE_BUFFER, s.live_buffer_size.to_string()),
                (READ_BATCH, s.read_batch_size.to_string()),
                (HISTORY_BUFFER, s.history_buffer_size.to_string()),
                (EXTRA_STATISTICS, s.extra_statistics.to_string()),
                (RESOLVE_LINKS, s.resolve_links.to_string()),
            ],
        }
    }};
}

fn non_negative(n: i32, what: &str) -> Result<u32, Status> {
    u32::try_from(n)
        .map_err(|_| Status::invalid_argument(format!("settings.{what} must not be negative")))
}

/// Strata's settings of KurrentDB's, `from` and the filter left to the
/// caller. KurrentDB's buffer sizes, read batch size, statistics and link
/// resolution have no counterpart and are ignored.
fn settings_of(w: &WireSettings) -> Result<Settings, Status> {
    let d = Settings::default();
    let strategy = match w.strategy_name.as_str() {
        "RoundRobin" => Strategy::RoundRobin,
        "DispatchToSingle" => Strategy::DispatchToSingle,
        "Pinned" => Strategy::Pinned,
        "" => match w.named_strategy {
            0 => Strategy::DispatchToSingle,
            1 => Strategy::RoundRobin,
            2 => Strategy::Pinned,
            n => {
                return Err(Status::invalid_argument(format!(
                    "named_consumer_strategy {n} is not a strategy"
                )))
            }
        },
        other => {
            return Err(Status::invalid_argument(format!(
                "consumer strategy '{other}' is not served: RoundRobin, DispatchToSingle or Pinned"
            )))
        }
    };
    let checkpoint = match (w.min_checkpoint_count, w.max_checkpoint_count) {
        (_, max) if max > 0 => non_negative(max, "max_checkpoint_count")?,
        (min, _) if min > 0 => non_negative(min, "min_checkpoint_count")?,
        _ => d.checkpoint_count,
    };
    Ok(Settings {
        strategy,
        message_timeout: w.message_timeout.unwrap_or(d.message_timeout),
        max_retry_count: non_negative(w.max_retry_count, "max_retry_count")?,
        max_subscriber_count: non_negative(w.max_subscriber_count, "max_subscriber_count")?,
        checkpoint_count: checkpoint,
        checkpoint_after: w.checkpoint_after.unwrap_or(d.checkpoint_after),
        extra: w
            .kept
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..d
    })
}

/// Where a group of `$all` starts, from a wire position (that event
/// included; 0 is the start).
fn all_start(commit: u64) -> Start {
    match position::read_forwards_from(commit) {
        ReadFrom::At(p) => Start::Position(p),
        ReadFrom::End => Start::End,
        ReadFrom::Start => Start::Start,
    }
}

fn strategy_name(s: Strategy) -> &'static str {
    match s {
        Strategy::RoundRobin => "RoundRobin",
        Strategy::DispatchToSingle => "DispatchToSingle",
        Strategy::Pinned => "Pinned",
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A `$all` position as KurrentDB's info shows it.
fn all_position(p: u64) -> String {
    let c = position::to_wire(p);
    format!("C:{c}/P:{c}")
}

/// The revision of the event at `position` (for a stream group's info).
async fn revision_at(groups: &Groups, position: u64) -> Option<u64> {
    let reader = groups
        .store()
        .read_all(
            Direction::Forwards,
            ReadFrom::At(position),
            1,
            Default::default(),
        )
        .await
        .ok()?;
    let events = reader.collect_all().await.ok()?;
    events
        .into_iter()
        .next()
        .filter(|e| e.position == position)
        .map(|e| e.revision)
}

async fn info_to_wire(groups: &Groups, i: GroupInfo) -> SubscriptionInfo {
    let s = &i.settings;
    let target = &i.target;
    let event_position = |p: Option<u64>| async move {
        match (target, p) {
            (_, None) => String::new(),
            (Target::All, Some(p)) => all_position(p),
            (Target::Stream(_), Some(p)) => revision_at(groups, p)
                .await
                .map(|r| r.to_string())
                .unwrap_or_default(),
        }
    };
    let last_checkpointed = event_position(i.checkpoint_position).await;
    let last_known = event_position(i.last_position).await;
    let start_from = match (&i.target, s.from) {
        (Target::All, Start::Start) => "C:0/P:0".to_owned(),
        (Target::All, Start::End) => "C:-1/P:-1".to_owned(),
        (Target::All, Start::Position(p) | Start::Revision(p)) => all_position(p),
        (Target::Stream(_), Start::Start) => "0".to_owned(),
        (Target::Stream(_), Start::End) => "-1".to_owned(),
        (Target::Stream(_), Start::Revision(r) | Start::Position(r)) => r.to_string(),
    };
    let kept = |key: &str| s.extra.get(key).and_then(|v| v.parse::<i32>().ok());
    let flag = |key: &str| s.extra.get(key).is_some_and(|v| v == "true");
    let start_from = match (&i.target, s.extra.get(START).map(String::as_str)) {
        (Target::All, Some("end")) => "C:-1/P:-1".to_owned(),
        (Target::Stream(_), Some("end")) => "-1".to_owned(),
        _ => start_from,
    };
    let in_flight: u32 = i.consumers.iter().map(|c| c.in_flight).sum();
    let checkpoint = i32::try_from(s.checkpoint_count).unwrap_or(i32::MAX);
    SubscriptionInfo {
        event_source: match &i.target {
            Target::All => ALL.to_owned(),
            Target::Stream(s) => s.clone(),
        },
        group_name: i.group.clone(),
        status: match i.status {
            "replaying-parked" => "ReplayingParkedMessages",
            _ => "Live",
        }
        .to_owned(),
        connections: i
            .consumers
            .iter()
            .map(|c| ConnectionInfo {
                from: c.name.clone(),
                username: String::new(),
                average_items_per_second: 0,
                total_items: clamp(c.delivered),
                count_since_last_measurement: 0,
                observed_measurements: Vec::new(),
                available_slots: i32::try_from(c.buffer_size.saturating_sub(c.in_flight))
                    .unwrap_or(i32::MAX),
                in_flight_messages: i32::try_from(c.in_flight).unwrap_or(i32::MAX),
                connection_name: c.name.clone(),
            })
            .collect(),
        average_per_second: 0,
        total_items: clamp(i.delivered_total),
        count_since_last_measurement: 0,
        last_checkpointed_event_position: last_checkpointed,
        last_known_event_position: last_known,
        resolve_link_tos: flag(RESOLVE_LINKS),
        start_from,
        message_timeout_milliseconds: millis(s.message_timeout),
        extra_statistics: flag(EXTRA_STATISTICS),
        max_retry_count: i32::try_from(s.max_retry_count).unwrap_or(i32::MAX),
        live_buffer_size: kept(LIVE_BUFFER).unwrap_or(0),
        buffer_size: kept(HISTORY_BUFFER).unwrap_or(0),
        read_batch_size: kept(READ_BATCH).unwrap_or(0),
        check_point_after_milliseconds: millis(s.checkpoint_after),
        min_check_point_count: kept(MIN_CHECKPOINT)
            .filter(|n| *n > 0)
            .unwrap_or(checkpoint),
        max_check_point_count: checkpoint,
        read_buffer_count: 0,
        live_buffer_count: 0,
        retry_buffer_count: 0,
        total_in_flight_messages: i32::try_from(in_flight).unwrap_or(i32::MAX),
        outstanding_messages_count: i32::try_from(in_flight).unwrap_or(i32::MAX),
        named_consumer_strategy: strategy_name(s.strategy).to_owned(),
        max_subscriber_count: i32::try_from(s.max_subscriber_count).unwrap_or(i32::MAX),
        parked_message_count: clamp(i.parked_count),
    }
}

/// A group's target and settings from a `CreateReq`'s options, in the
/// current form (`stream` or `all`) or EventStoreDB 20.x's
/// (`stream_identifier` and `settings.revision`).
fn create_of(o: create_req::Options) -> Result<(Target, String, Settings), Status> {
    use create_req::all_options::{AllOption, FilterOption};
    use create_req::options::StreamOption;
    use create_req::stream_options::RevisionOption;
    let s = o.settings.unwrap_or_default();
    let w = wire_settings!(s, Create, create_req, |s: &create_req::Settings| s
        .consumer_strategy
        .clone());
    let settings = settings_of(&w)?;
    let (target, settings) = match o.stream_option {
        Some(StreamOption::Stream(so)) => {
            let target = stream_target(so.stream_identifier)?;
            let from = match so.revision_option {
                Some(RevisionOption::Revision(r)) => Start::Revision(r),
                Some(RevisionOption::End(_)) => Start::End,
                Some(RevisionOption::Start(_)) | None => Start::Start,
            };
            (target, Settings { from, ..settings })
        }
        Some(StreamOption::All(a)) => {
            let from = match a.all_option {
                Some(AllOption::Position(p)) => all_start(p.commit_position),
                Some(AllOption::End(_)) => Start::End,
                Some(AllOption::Start(_)) | None => Start::Start,
            };
            let settings = Settings { from, ..settings };
            let settings = match a.filter_option {
                Some(FilterOption::Filter(f)) => {
                    use create_req::all_options::filter_options::Filter;
                    let e = match f.filter {
                        Some(Filter::StreamIdentifier(e)) => {
                            Expression::new(true, e.regex, e.prefix)
                        }
                        Some(Filter::EventType(e)) => Expression::new(false, e.regex, e.prefix),
                        None => {
                            return Err(Status::invalid_argument("a filter needs an expression"))
                        }
                    };
                    with_expression(settings, e)?
                }
                Some(FilterOption::NoFilter(_)) | None => settings,
            };
            (Target::All, settings)
        }
        None => {
            let target = stream_target(o.stream_identifier)?;
            let from = match w.revision {
                u64::MAX => Start::End,
                r => Start::Revision(r),
            };
            (target, Settings { from, ..settings })
        }
    };
    let mut settings = settings;
    if settings.from == Start::End {
        settings.extra.insert(START.to_owned(), "end".to_owned());
    }
    Ok((target, o.group_name, settings))
}

/// `settings` selecting what `e` selects.
fn with_expression(mut settings: Settings, e: Expression) -> Result<Settings, Status> {
    match e {
        Expression::Prefixes(true, p) => settings.filter.stream_prefixes = p,
        Expression::Prefixes(false, p) => settings.filter.event_type_prefixes = p,
        Expression::Pattern(p) => {
            return settings
                .with_pattern(Some(p))
                .map_err(Status::invalid_argument)
        }
    }
    Ok(settings)
}

fn update_of(o: update_req::Options) -> Result<(Target, String, Settings), Status> {
    use update_req::options::StreamOption;
    let s = o.settings.unwrap_or_default();
    let w = wire_settings!(s, Update, update_req, |_: &update_req::Settings| {
        String::new()
    });
    let settings = settings_of(&w)?;
    let target = match o.stream_option {
        Some(StreamOption::Stream(so)) => stream_target(so.stream_identifier)?,
        Some(StreamOption::All(_)) => Target::All,
        None => stream_target(o.stream_identifier)?,
    };
    Ok((target, o.group_name, settings))
}

/// The positions of the ids one `Read` call handed out.
#[derive(Default)]
struct Unacked {
    positions: HashMap<[u8; 16], u64>,
    order: VecDeque<[u8; 16]>,
}

impl Unacked {
    fn remember(&mut self, id: [u8; 16], position: u64) {
        if self.positions.insert(id, position).is_none() {
            self.order.push_back(id);
        }
        while self.positions.len() > MAX_UNACKED {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.positions.remove(&old);
        }
    }

    /// The positions of `ids` (forgotten), the unknown ones left out.
    fn take(&mut self, ids: Vec<strata_proto::kurrentdb::shared::Uuid>) -> Vec<u64> {
        let taken: Vec<u64> = ids
            .into_iter()
            .filter_map(|u| convert::uuid_from_wire(Some(u)).ok())
            .filter_map(|id| self.positions.remove(&id))
            .collect();
        if self.order.len() > 2 * self.positions.len() + 64 {
            let positions = &self.positions;
            self.order.retain(|id| positions.contains_key(id));
        }
        taken
    }
}

fn nack_action(a: i32) -> NackAction {
    match Action::try_from(a) {
        Ok(Action::Park) => NackAction::Park,
        Ok(Action::Skip) => NackAction::Skip,
        Ok(Action::Stop) => NackAction::Stop,
        // `Unknown` (and anything newer) is KurrentDB's default: retry.
        Ok(Action::Retry | Action::Unknown) | Err(_) => NackAction::Retry,
    }
}

#[tonic::async_trait]
impl PersistentSubscriptions for KurrentPersistent {
    async fn create(&self, request: Request<CreateReq>) -> Result<Response<CreateResp>, Status> {
        let o = required(request.into_inner().options)?;
        let (target, group, settings) = create_of(o)?;
        self.groups
            .create(target, group, settings)
            .await
            .map_err(errors::from_group)?;
        Ok(Response::new(CreateResp {}))
    }

    async fn update(&self, request: Request<UpdateReq>) -> Result<Response<UpdateResp>, Status> {
        let o = required(request.into_inner().options)?;
        let (target, group, settings) = update_of(o)?;
        // KurrentDB's update carries no filter: the group keeps its own.
        let current = self
            .groups
            .info(&target, &group)
            .await
            .map_err(errors::from_group)?
            .settings;
        let mut settings = Settings {
            filter: current.filter,
            pattern: current.pattern,
            ..settings
        };
        if let Some(start) = current.extra.get(START) {
            settings.extra.insert(START.to_owned(), start.clone());
        }
        self.groups
            .update(target, group, settings)
            .await
            .map_err(errors::from_group)?;
        Ok(Response::new(UpdateResp {}))
    }

    async fn delete(&self, request: Request<DeleteReq>) -> Result<Response<DeleteResp>, Status> {
        use strata_proto::kurrentdb::persistent::delete_req::options::StreamOption;
        let o = required(request.into_inner().options)?;
        let target = target_of!(o.stream_option, StreamOption::StreamIdentifier);
        self.groups
            .delete(target, o.group_name)
            .await
            .map_err(errors::from_group)?;
        Ok(Response::new(DeleteResp {}))
    }

    async fn get_info(
        &self,
        request: Request<GetInfoReq>,
    ) -> Result<Response<GetInfoResp>, Status> {
        use strata_proto::kurrentdb::persistent::get_info_req::options::StreamOption;
        let o = required(request.into_inner().options)?;
        let target = target_of!(o.stream_option, StreamOption::StreamIdentifier);
        let info = self
            .groups
            .info(&target, &o.group_name)
            .await
            .map_err(errors::from_group)?;
        Ok(Response::new(GetInfoResp {
            subscription_info: Some(info_to_wire(&self.groups, info).await),
        }))
    }

    async fn list(&self, request: Request<ListReq>) -> Result<Response<ListResp>, Status> {
        use list_req::options::ListOption;
        use list_req::stream_option::StreamOption;
        let o = request.into_inner().options.unwrap_or_default();
        let target = match o.list_option {
            Some(ListOption::ListForStream(s)) => {
                Some(target_of!(s.stream_option, StreamOption::Stream))
            }
            Some(ListOption::ListAllSubscriptions(_)) | None => None,
        };
        let groups = self
            .groups
            .list(target.as_ref())
            .await
            .map_err(errors::from_group)?;
        let mut subscriptions = Vec::with_capacity(groups.len());
        for g in groups {
            subscriptions.push(info_to_wire(&self.groups, g).await);
        }
        Ok(Response::new(ListResp { subscriptions }))
    }

    async fn replay_parked(
        &self,
        request: Request<ReplayParkedReq>,
    ) -> Result<Response<ReplayParkedResp>, Status> {
        use replay_parked_req::options::{StopAtOption, StreamOption};
        let o = required(request.into_inner().options)?;
        let target = target_of!(o.stream_option, StreamOption::StreamIdentifier);
        let stop_at = match o.stop_at_option {
            Some(StopAtOption::StopAt(n)) if n >= 0 => Some(n as u64),
            Some(StopAtOption::StopAt(_)) | Some(StopAtOption::NoLimit(_)) | None => None,
        };
        self.groups
            .replay_parked(&target, &o.group_name, stop_at)
            .await
            .map_err(errors::from_group)?;
        Ok(Response::new(ReplayParkedResp {}))
    }

    /// Strata's groups have no subsystem to restart: each group's task
    /// runs on its own. Answers at once, as a restart that is done.
    async fn restart_subsystem(&self, _request: Request<Empty>) -> Result<Response<Empty>, Status> {
        Ok(Response::new(Empty {}))
    }

    type ReadStream = ReceiverStream<Result<ReadResp, Status>>;

    async fn read(
        &self,
        request: Request<Streaming<ReadReq>>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let caller = Caller::of(&request)?;
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("the call ended before its options"))?;
        let Some(ReadContent::Options(o)) = first.content else {
            return Err(Status::invalid_argument(
                "the first request of Read must be options",
            ));
        };
        let target = target_of!(o.stream_option, ReadStreamOption::StreamIdentifier);
        match &target {
            Target::Stream(stream) => caller
                .check_in(self.groups.store(), StreamOp::Read, stream)
                .map_err(errors::access_denied)?,
            Target::All if !caller.has(Role::Ops) => {
                return Err(errors::access_denied(denied(
                    "reading a persistent subscription of $all needs the ops role",
                )));
            }
            Target::All => {}
        }
        let buffer_size = match u32::try_from(o.buffer_size) {
            Ok(0) => DEFAULT_BUFFER_SIZE,
            Ok(n) if n <= MAX_BUFFER_SIZE => n,
            _ => {
                return Err(Status::invalid_argument(format!(
                    "buffer_size must be 0..={MAX_BUFFER_SIZE}, not {}",
                    o.buffer_size
                )))
            }
        };
        let form = match o.uuid_option.and_then(|u| u.content) {
            Some(UuidChoice::String(_)) => Some(UuidForm::String(Empty {})),
            Some(UuidChoice::Structured(_)) | None => None,
        };
        let name = match caller.user() {
            Some(user) => format!("{user}@{peer}"),
            None => peer,
        };
        let (joined, consumer) = self
            .groups
            .join(&target, &o.group_name, name, buffer_size)
            .await
            .map_err(errors::from_group)?;
        let (out, rx) = mpsc::channel(16);
        let source = match &target {
            Target::All => ALL,
            Target::Stream(s) => s.as_str(),
        };
        let confirmation = ReadResp {
            content: Some(Content::SubscriptionConfirmation(
                SubscriptionConfirmation {
                    subscription_id: format!("{source}::{}", o.group_name),
                },
            )),
        };
        let _ = out.send(Ok(confirmation)).await;
        let unacked = Arc::new(Mutex::new(Unacked::default()));
        let handed_out = unacked.clone();
        let deliver = move |Delivery { event, retry_count }| {
            handed_out
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remember(event.id.0, event.position);
            let wire = convert::read_event(&event, form).event.map(|e| WireEvent {
                id: e.id,
                stream_identifier: e.stream_identifier,
                stream_revision: e.stream_revision,
                prepare_position: e.prepare_position,
                commit_position: e.commit_position,
                metadata: e.metadata,
                custom_metadata: e.custom_metadata,
                data: e.data,
            });
            ReadResp {
                content: Some(Content::Event(ReadEvent {
                    event: wire,
                    link: None,
                    position: Some(EventPosition::CommitPosition(position::to_wire(
                        event.position,
                    ))),
                    count: Some(Count::RetryCount(
                        i32::try_from(retry_count).unwrap_or(i32::MAX),
                    )),
                })),
            }
        };
        let parse = move |m: ReadReq| {
            let take = |ids| unacked.lock().unwrap_or_else(|e| e.into_inner()).take(ids);
            match m.content {
                Some(ReadContent::Ack(a)) => Ok(ConsumerRequest::Ack(take(a.ids))),
                Some(ReadContent::Nack(n)) => Ok(ConsumerRequest::Nack(
                    take(n.ids),
                    nack_action(n.action),
                    n.reason,
                )),
                Some(ReadContent::Options(_)) | None => Err(Status::invalid_argument(
                    "after options, a Read request is an ack or a nack",
                )),
            }
        };
        consumer_call::serve(
            (joined, consumer),
            inbound,
            out,
            self.shutdown.clone(),
            "the persistent subscription was deleted",
            deliver,
            parse,
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_in_ticks_or_milliseconds() {
        assert_eq!(
            duration(Some(30_000 * 10_000), None, "t").expect("ticks"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            duration(None, Some(1500), "t").expect("ms"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(duration(None, Some(0), "t").expect("zero"), None);
        assert!(duration(None, Some(-1), "t").is_err());
    }

    #[test]
    fn acks_find_the_positions_of_ids_handed_out() {
        let mut u = Unacked::default();
        u.remember([1; 16], 10);
        u.remember([2; 16], 11);
        let wire = |b: [u8; 16]| convert::uuid_to_wire(b, None);
        assert_eq!(u.take(vec![wire([2; 16]), wire([3; 16])]), vec![11]);
        assert_eq!(u.take(vec![wire([2; 16])]), Vec::<u64>::new(), "once");
        assert_eq!(u.take(vec![wire([1; 16])]), vec![10]);
        for i in 0..(MAX_UNACKED as u64 + 10) {
            let mut id = [0; 16];
            id[..8].copy_from_slice(&i.to_be_bytes());
            u.remember(id, i);
        }
        assert_eq!(u.positions.len(), MAX_UNACKED);
        assert!(u.order.len() <= MAX_UNACKED);
    }

    #[test]
    fn all_positions_start_at_the_event_given() {
        assert_eq!(all_start(0), Start::Start);
        assert_eq!(all_start(1), Start::Position(0));
        assert_eq!(all_start(43), Start::Position(42));
    }

    #[test]
    fn strategies_by_name_win_over_the_enum() {
        let w = |name: &str, named| WireSettings {
            max_retry_count: 3,
            min_checkpoint_count: 0,
            max_checkpoint_count: 0,
            max_subscriber_count: 0,
            named_strategy: named,
            strategy_name: name.into(),
            message_timeout: None,
            checkpoint_after: None,
            revision: 0,
            kept: Vec::new(),
        };
        assert_eq!(
            settings_of(&w("", 1)).expect("ok").strategy,
            Strategy::RoundRobin
        );
        assert_eq!(
            settings_of(&w("Pinned", 0)).expect("ok").strategy,
            Strategy::Pinned
        );
        assert!(settings_of(&w("PinnedByCorrelation", 1)).is_err());
        assert_eq!(settings_of(&w("", 0)).expect("ok").max_retry_count, 3);
    }
}
