//! The `strata.v1.PersistentSubscriptions` service over the server's
//! consumer groups (`crate::groups`): wire ↔ domain conversions, the error
//! mapping, and the `Read` call (run by `consumer_call`).

use std::sync::Arc;
use std::time::Duration;

use strata_proto::v1;
use strata_proto::v1::persistent_read_request::Kind as ReadKind;
use strata_proto::v1::persistent_read_response::Kind as Answer;
use strata_proto::v1::persistent_subscriptions_server::PersistentSubscriptions;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::consumer_call::{self, ConsumerRequest};
use super::convert::{duration_from_wire as convert_duration, event_to_wire, filter_from_wire};
use super::status::{status_from_append, status_from_read};
use crate::auth::{denied, Caller, Role, StreamOp};
use crate::groups::{
    Delivery, GroupError, GroupInfo, Groups, NackAction, Settings, Start, Strategy, Target,
};

/// Largest `buffer_size` of a consumer.
pub const MAX_BUFFER_SIZE: u32 = 10_000;
/// `buffer_size` when the consumer gives none.
pub const DEFAULT_BUFFER_SIZE: u32 = 10;

/// The PersistentSubscriptions service.
#[derive(Clone)]
pub struct PersistentService {
    groups: Arc<Groups>,
    shutdown: watch::Receiver<bool>,
}

impl PersistentService {
    /// A service over `groups`; consumers' calls end (UNAVAILABLE) when
    /// `shutdown` turns true.
    pub fn new(groups: Arc<Groups>, shutdown: watch::Receiver<bool>) -> Self {
        PersistentService { groups, shutdown }
    }
}

fn status(e: GroupError) -> Status {
    match e {
        GroupError::NotFound { .. } => Status::not_found(e.to_string()),
        GroupError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        GroupError::Invalid(why) => Status::invalid_argument(why),
        GroupError::Full(_) => Status::failed_precondition(e.to_string()),
        GroupError::Append(e) => status_from_append(e),
        GroupError::Read(e) => status_from_read(e),
        GroupError::ShuttingDown => Status::unavailable(e.to_string()),
    }
}

fn target_from_wire(t: Option<v1::PersistentTarget>) -> Result<Target, Status> {
    use v1::persistent_target::Kind;
    match t.and_then(|t| t.kind) {
        Some(Kind::Stream(s)) => Ok(Target::Stream(s)),
        Some(Kind::All(())) => Ok(Target::All),
        None => Err(Status::invalid_argument(
            "target is required: a stream or all",
        )),
    }
}

fn target_to_wire(t: &Target) -> v1::PersistentTarget {
    match t {
        Target::Stream(s) => v1::PersistentTarget::stream(s.clone()),
        Target::All => v1::PersistentTarget::all(),
    }
}

/// A settings duration: at least 1 ms; `default` when unset.
fn duration_from_wire(
    d: Option<prost_types::Duration>,
    what: &str,
    default: Duration,
) -> Result<Duration, Status> {
    let Some(d) = d else { return Ok(default) };
    let field = format!("settings.{what}");
    let d = convert_duration(d, &field)?;
    if d < Duration::from_millis(1) {
        return Err(Status::invalid_argument(format!(
            "{field} must be at least 1 ms"
        )));
    }
    Ok(d)
}

fn settings_from_wire(
    s: Option<v1::PersistentSettings>,
    target: &Target,
) -> Result<Settings, Status> {
    use v1::persistent_from::Kind;
    let d = Settings::default();
    let Some(s) = s else { return Ok(d) };
    let from = match (s.from.and_then(|f| f.kind), target) {
        (None | Some(Kind::Start(())), _) => Start::Start,
        (Some(Kind::End(())), _) => Start::End,
        (Some(Kind::Revision(r)), Target::Stream(_)) => Start::Revision(r),
        (Some(Kind::Position(p)), Target::All) => Start::Position(p),
        (Some(Kind::Revision(_)), Target::All) => {
            return Err(Status::invalid_argument(
                "settings.from.revision is for a stream target; use position for $all",
            ))
        }
        (Some(Kind::Position(_)), Target::Stream(_)) => {
            return Err(Status::invalid_argument(
                "settings.from.position is for $all; use revision for a stream",
            ))
        }
    };
    let filter = match (s.filter, target) {
        (Some(f), Target::All) => filter_from_wire(f),
        (Some(f), Target::Stream(_))
            if !f.stream_prefix.is_empty() || !f.event_type_prefix.is_empty() =>
        {
            return Err(Status::invalid_argument(
                "settings.filter is for $all targets only",
            ))
        }
        _ => Default::default(),
    };
    let strategy = match v1::ConsumerStrategy::try_from(s.consumer_strategy) {
        Ok(v1::ConsumerStrategy::RoundRobin) => Strategy::RoundRobin,
        Ok(v1::ConsumerStrategy::DispatchToSingle) => Strategy::DispatchToSingle,
        Ok(v1::ConsumerStrategy::Pinned) => Strategy::Pinned,
        Err(_) => {
            return Err(Status::invalid_argument(format!(
                "settings.consumer_strategy {} is not a strategy",
                s.consumer_strategy
            )))
        }
    };
    Ok(Settings {
        from,
        filter,
        pattern: None,
        strategy,
        message_timeout: duration_from_wire(
            s.message_timeout,
            "message_timeout",
            d.message_timeout,
        )?,
        max_retry_count: s.max_retry_count.unwrap_or(d.max_retry_count),
        max_subscriber_count: s.max_subscriber_count,
        checkpoint_count: if s.checkpoint_count == 0 {
            d.checkpoint_count
        } else {
            s.checkpoint_count
        },
        checkpoint_after: duration_from_wire(
            s.checkpoint_after,
            "checkpoint_after",
            d.checkpoint_after,
        )?,
        extra: Default::default(),
    })
}

fn settings_to_wire(s: &Settings) -> v1::PersistentSettings {
    use v1::persistent_from::Kind;
    v1::PersistentSettings {
        from: Some(v1::PersistentFrom {
            kind: Some(match s.from {
                Start::Start => Kind::Start(()),
                Start::End => Kind::End(()),
                Start::Revision(r) => Kind::Revision(r),
                Start::Position(p) => Kind::Position(p),
            }),
        }),
        filter: Some(v1::Filter {
            stream_prefix: s.filter.stream_prefixes.clone(),
            event_type_prefix: s.filter.event_type_prefixes.clone(),
        }),
        consumer_strategy: match s.strategy {
            Strategy::RoundRobin => v1::ConsumerStrategy::RoundRobin,
            Strategy::DispatchToSingle => v1::ConsumerStrategy::DispatchToSingle,
            Strategy::Pinned => v1::ConsumerStrategy::Pinned,
        } as i32,
        message_timeout: Some(v1::duration(s.message_timeout)),
        max_retry_count: Some(s.max_retry_count),
        max_subscriber_count: s.max_subscriber_count,
        checkpoint_count: s.checkpoint_count,
        checkpoint_after: Some(v1::duration(s.checkpoint_after)),
    }
}

fn info_to_wire(i: GroupInfo) -> v1::PersistentSubscriptionInfo {
    v1::PersistentSubscriptionInfo {
        target: Some(target_to_wire(&i.target)),
        group: i.group,
        settings: Some(settings_to_wire(&i.settings)),
        status: i.status.into(),
        consumers: i
            .consumers
            .into_iter()
            .map(|c| v1::PersistentConsumerInfo {
                name: c.name,
                in_flight: c.in_flight,
                delivered: c.delivered,
                acked: c.acked,
                buffer_size: c.buffer_size,
            })
            .collect(),
        checkpoint_position: i.checkpoint_position,
        last_position: i.last_position,
        parked_count: i.parked_count,
        delivered_total: i.delivered_total,
        acked_total: i.acked_total,
        nacked_total: i.nacked_total,
        timeouts_total: i.timeouts_total,
        parked_stream: i.parked_stream,
        lag: i.lag,
        parked_total: i.parked_total,
    }
}

fn nack_action(a: i32) -> Result<NackAction, Status> {
    match v1::NackAction::try_from(a) {
        Ok(v1::NackAction::Retry) => Ok(NackAction::Retry),
        Ok(v1::NackAction::Park) => Ok(NackAction::Park),
        Ok(v1::NackAction::Skip) => Ok(NackAction::Skip),
        Ok(v1::NackAction::Stop) => Ok(NackAction::Stop),
        Err(_) => Err(Status::invalid_argument(format!(
            "nack.action {a} is not an action"
        ))),
    }
}

#[tonic::async_trait]
impl PersistentSubscriptions for PersistentService {
    type ReadStream = ReceiverStream<Result<v1::PersistentReadResponse, Status>>;

    async fn create(
        &self,
        request: Request<v1::CreatePersistentSubscriptionRequest>,
    ) -> Result<Response<v1::CreatePersistentSubscriptionResponse>, Status> {
        let r = request.into_inner();
        let target = target_from_wire(r.target)?;
        let settings = settings_from_wire(r.settings, &target)?;
        self.groups
            .create(target, r.group, settings)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::CreatePersistentSubscriptionResponse {}))
    }

    async fn update(
        &self,
        request: Request<v1::UpdatePersistentSubscriptionRequest>,
    ) -> Result<Response<v1::UpdatePersistentSubscriptionResponse>, Status> {
        let r = request.into_inner();
        let target = target_from_wire(r.target)?;
        let settings = settings_from_wire(r.settings, &target)?;
        self.groups
            .update(target, r.group, settings)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::UpdatePersistentSubscriptionResponse {}))
    }

    async fn delete(
        &self,
        request: Request<v1::DeletePersistentSubscriptionRequest>,
    ) -> Result<Response<v1::DeletePersistentSubscriptionResponse>, Status> {
        let r = request.into_inner();
        let target = target_from_wire(r.target)?;
        self.groups.delete(target, r.group).await.map_err(status)?;
        Ok(Response::new(v1::DeletePersistentSubscriptionResponse {}))
    }

    async fn list(
        &self,
        request: Request<v1::ListPersistentSubscriptionsRequest>,
    ) -> Result<Response<v1::ListPersistentSubscriptionsResponse>, Status> {
        let r = request.into_inner();
        let target = r.target.map(|t| target_from_wire(Some(t))).transpose()?;
        let groups = self
            .groups
            .list(target.as_ref())
            .await
            .map_err(status)?
            .into_iter()
            .map(info_to_wire)
            .collect();
        Ok(Response::new(v1::ListPersistentSubscriptionsResponse {
            groups,
        }))
    }

    async fn get_info(
        &self,
        request: Request<v1::GetPersistentSubscriptionInfoRequest>,
    ) -> Result<Response<v1::PersistentSubscriptionInfo>, Status> {
        let r = request.into_inner();
        let target = target_from_wire(r.target)?;
        let info = self.groups.info(&target, &r.group).await.map_err(status)?;
        Ok(Response::new(info_to_wire(info)))
    }

    async fn read(
        &self,
        request: Request<Streaming<v1::PersistentReadRequest>>,
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
        let Some(ReadKind::Options(o)) = first.kind else {
            return Err(Status::invalid_argument(
                "the first request of Read must be options",
            ));
        };
        let target = target_from_wire(o.target)?;
        match &target {
            Target::Stream(stream) => {
                caller.check_in(self.groups.store(), StreamOp::Read, stream)?
            }
            // A group shares every stream's events out among its consumers;
            // it cannot skip, for one of them, what that one may not read.
            Target::All if !caller.has(Role::Ops) => {
                return Err(denied(
                    "reading a consumer group of $all needs the ops role",
                ));
            }
            Target::All => {}
        }
        let buffer_size = match o.buffer_size {
            0 => DEFAULT_BUFFER_SIZE,
            n if n > MAX_BUFFER_SIZE => {
                return Err(Status::invalid_argument(format!(
                    "options.buffer_size {n} is over the maximum of {MAX_BUFFER_SIZE}"
                )))
            }
            n => n,
        };
        let name = if o.consumer_name.is_empty() {
            peer
        } else {
            o.consumer_name
        };
        let (joined, consumer) = self
            .groups
            .join(&target, &o.group, name, buffer_size)
            .await
            .map_err(status)?;
        let (out, rx) = mpsc::channel(16);
        let confirmation = v1::PersistentReadResponse {
            kind: Some(Answer::Confirmation(v1::PersistentConfirmation {
                subscription_id: format!("{}::{}", o.group, joined.id),
            })),
        };
        let _ = out.send(Ok(confirmation)).await;
        let deliver = |Delivery { event, retry_count }| v1::PersistentReadResponse {
            kind: Some(Answer::Event(v1::PersistentEvent {
                event: Some(event_to_wire(&event)),
                retry_count,
            })),
        };
        let parse = |m: v1::PersistentReadRequest| match m.kind {
            Some(ReadKind::Ack(a)) => Ok(ConsumerRequest::Ack(a.positions)),
            Some(ReadKind::Nack(n)) => Ok(ConsumerRequest::Nack(
                n.positions,
                nack_action(n.action)?,
                n.reason,
            )),
            Some(ReadKind::Options(_)) | None => Err(Status::invalid_argument(
                "after options, a Read request is an ack or a nack",
            )),
        };
        consumer_call::serve(
            (joined, consumer),
            inbound,
            out,
            self.shutdown.clone(),
            "the consumer group was deleted",
            deliver,
            parse,
        );
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn replay_parked(
        &self,
        request: Request<v1::ReplayParkedRequest>,
    ) -> Result<Response<v1::ReplayParkedResponse>, Status> {
        let r = request.into_inner();
        let target = target_from_wire(r.target)?;
        let replaying = self
            .groups
            .replay_parked(&target, &r.group, r.stop_at)
            .await
            .map_err(status)?;
        Ok(Response::new(v1::ReplayParkedResponse { replaying }))
    }
}
