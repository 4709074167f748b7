//! `strata group create|update|list|info|delete|replay-parked`: consumer
//! groups (persistent subscriptions) of a running server. A group's target
//! is a stream (`--stream NAME`) or `$all` (`--all`). `info` and `list`
//! print JSON; the others print one line (or a JSON object with `--json`).

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use strata_client::{ConsumerStrategy, Filter, GroupFrom, GroupInfo, GroupSettings, GroupTarget};

use super::metadata::{format_duration, parse_duration};
use super::{print_json, print_line, CliError, Connection};

/// `strata group …`.
#[derive(Clone, Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a consumer group.
    Create(Box<SettingsArgs>),
    /// Replace a group's settings (its start point stays).
    Update(Box<SettingsArgs>),
    /// Print every group (of one target, with --stream or --all) as JSON.
    List(ListArgs),
    /// Print one group's settings, consumers and counters as JSON.
    Info(GroupArgs),
    /// Delete a group; its consumers' calls end.
    Delete(GroupArgs),
    /// Deliver the group's parked events again, before newer ones.
    ReplayParked(ReplayArgs),
}

/// Which group.
#[derive(Clone, Debug, Args)]
pub struct TargetArgs {
    /// The group follows this stream.
    #[arg(long, conflicts_with = "all", required_unless_present = "all")]
    pub stream: Option<String>,
    /// The group follows `$all`.
    #[arg(long)]
    pub all: bool,
}

impl TargetArgs {
    fn target(&self) -> GroupTarget {
        match &self.stream {
            Some(s) => GroupTarget::Stream(s.clone()),
            None => GroupTarget::All,
        }
    }
}

/// Arguments naming one group.
#[derive(Clone, Debug, Args)]
pub struct GroupArgs {
    /// The group's name.
    pub group: String,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub connection: Connection,
}

/// Arguments of `strata group list`.
#[derive(Clone, Debug, Args)]
pub struct ListArgs {
    /// Only the groups of this stream.
    #[arg(long, conflicts_with = "all")]
    pub stream: Option<String>,
    /// Only the groups of `$all`.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// Arguments of `strata group replay-parked`.
#[derive(Clone, Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub group: GroupArgs,
    /// Replay at most this many (the oldest).
    #[arg(long)]
    pub stop_at: Option<u64>,
}

/// Arguments of `strata group create` and `update`.
#[derive(Clone, Debug, Args)]
pub struct SettingsArgs {
    #[command(flatten)]
    pub group: GroupArgs,
    /// Where a new group starts: start, end, or a revision (a position for
    /// --all), inclusive.
    #[arg(long, default_value = "start")]
    pub from: String,
    /// --all only: keep events whose stream name starts with P (repeatable).
    #[arg(long = "filter-stream", value_name = "P")]
    pub filter_stream: Vec<String>,
    /// --all only: keep events whose type starts with P (repeatable).
    #[arg(long = "filter-type", value_name = "P")]
    pub filter_type: Vec<String>,
    /// round-robin, dispatch-to-single or pinned.
    #[arg(long, default_value = "round-robin", value_parser = parse_strategy)]
    pub strategy: ConsumerStrategy,
    /// How long a consumer may hold an event (e.g. 30s).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub message_timeout: Duration,
    /// Deliveries after the first before an event is parked.
    #[arg(long, default_value_t = 10)]
    pub max_retry_count: u32,
    /// Consumers at once (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_subscribers: u32,
    /// Save the group's position after this many events are done…
    #[arg(long, default_value_t = 1000)]
    pub checkpoint_count: u32,
    /// …or this long after the last save.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub checkpoint_after: Duration,
}

fn parse_strategy(s: &str) -> Result<ConsumerStrategy, String> {
    match s {
        "round-robin" => Ok(ConsumerStrategy::RoundRobin),
        "dispatch-to-single" => Ok(ConsumerStrategy::DispatchToSingle),
        "pinned" => Ok(ConsumerStrategy::Pinned),
        other => Err(format!(
            "'{other}': expected round-robin, dispatch-to-single or pinned"
        )),
    }
}

fn strategy_name(s: ConsumerStrategy) -> &'static str {
    match s {
        ConsumerStrategy::RoundRobin => "round-robin",
        ConsumerStrategy::DispatchToSingle => "dispatch-to-single",
        ConsumerStrategy::Pinned => "pinned",
    }
}

impl SettingsArgs {
    fn settings(&self) -> Result<GroupSettings, CliError> {
        let all = self.group.target.stream.is_none();
        let from = match (self.from.as_str(), all) {
            ("start", _) => GroupFrom::Start,
            ("end", _) => GroupFrom::End,
            (n, all) => {
                let n: u64 = n.parse().map_err(|_| {
                    CliError::Usage(format!("--from {n}: expected start, end or a number"))
                })?;
                if all {
                    GroupFrom::Position(n)
                } else {
                    GroupFrom::Revision(n)
                }
            }
        };
        let mut filter = Filter::new();
        for p in &self.filter_stream {
            filter = filter.stream_prefix(p);
        }
        for p in &self.filter_type {
            filter = filter.event_type_prefix(p);
        }
        Ok(GroupSettings {
            from,
            filter,
            strategy: self.strategy,
            message_timeout: self.message_timeout,
            max_retry_count: self.max_retry_count,
            max_subscriber_count: self.max_subscribers,
            checkpoint_count: self.checkpoint_count,
            checkpoint_after: self.checkpoint_after,
        })
    }
}

fn done(args: &GroupArgs, what: &str) -> Result<(), CliError> {
    let line = if args.connection.json {
        json!({ "group": args.group, "target": target_name(&args.target.target()), what: true })
            .to_string()
    } else {
        format!(
            "{what} group {} of {}",
            args.group,
            target_name(&args.target.target())
        )
    };
    print_line(&line)
}

fn target_name(t: &GroupTarget) -> String {
    match t {
        GroupTarget::Stream(s) => s.clone(),
        GroupTarget::All => "$all".into(),
    }
}

fn info_json(i: &GroupInfo) -> Value {
    let s = &i.settings;
    let from = match s.from {
        GroupFrom::Start => json!("start"),
        GroupFrom::End => json!("end"),
        GroupFrom::Revision(r) => json!({ "revision": r }),
        GroupFrom::Position(p) => json!({ "position": p }),
    };
    json!({
        "group": i.group,
        "target": target_name(&i.target),
        "status": i.status,
        "settings": {
            "from": from,
            "filter_stream": s.filter.stream_prefixes(),
            "filter_type": s.filter.event_type_prefixes(),
            "strategy": strategy_name(s.strategy),
            "message_timeout": format_duration(s.message_timeout),
            "max_retry_count": s.max_retry_count,
            "max_subscribers": s.max_subscriber_count,
            "checkpoint_count": s.checkpoint_count,
            "checkpoint_after": format_duration(s.checkpoint_after),
        },
        "consumers": i.consumers.iter().map(|c| json!({
            "name": c.name,
            "in_flight": c.in_flight,
            "delivered": c.delivered,
            "acked": c.acked,
            "buffer_size": c.buffer_size,
        })).collect::<Vec<_>>(),
        "checkpoint_position": i.checkpoint_position,
        "last_position": i.last_position,
        "lag": i.lag,
        "parked_count": i.parked_count,
        "parked_stream": i.parked_stream,
        "delivered_total": i.delivered_total,
        "acked_total": i.acked_total,
        "nacked_total": i.nacked_total,
        "timeouts_total": i.timeouts_total,
        "parked_total": i.parked_total,
    })
}

/// Runs `strata group …`.
pub async fn run(command: GroupCommand) -> Result<(), CliError> {
    match command {
        GroupCommand::Create(a) => {
            let client = a.group.connection.connect().await?;
            client
                .create_group(a.group.target.target(), &a.group.group, a.settings()?)
                .await?;
            done(&a.group, "created")
        }
        GroupCommand::Update(a) => {
            let client = a.group.connection.connect().await?;
            client
                .update_group(a.group.target.target(), &a.group.group, a.settings()?)
                .await?;
            done(&a.group, "updated")
        }
        GroupCommand::Delete(a) => {
            let client = a.connection.connect().await?;
            client.delete_group(a.target.target(), &a.group).await?;
            done(&a, "deleted")
        }
        GroupCommand::Info(a) => {
            let client = a.connection.connect().await?;
            let info = client.group_info(a.target.target(), &a.group).await?;
            print_json(&info_json(&info), a.connection.json)
        }
        GroupCommand::List(a) => {
            let client = a.connection.connect().await?;
            let target = match (&a.stream, a.all) {
                (Some(s), _) => Some(GroupTarget::Stream(s.clone())),
                (None, true) => Some(GroupTarget::All),
                (None, false) => None,
            };
            let groups = client.list_groups(target).await?;
            let list = Value::Array(groups.iter().map(info_json).collect());
            print_json(&list, a.connection.json)
        }
        GroupCommand::ReplayParked(a) => {
            let client = a.group.connection.connect().await?;
            let n = client
                .replay_parked(a.group.target.target(), &a.group.group, a.stop_at)
                .await?;
            let line = if a.group.connection.json {
                json!({ "group": a.group.group, "replaying": n }).to_string()
            } else {
                format!("replaying {n} parked events of group {}", a.group.group)
            };
            print_line(&line)
        }
    }
}
