//! What a consumer group is: its target, its name and its settings, and how
//! a definition is written in the log (JSON data of `$groups` events).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::pattern::Pattern;
use crate::store::Filter;

/// What a group follows.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// One stream.
    Stream(String),
    /// `$all`.
    All,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Stream(s) => write!(f, "stream '{s}'"),
            Target::All => write!(f, "$all"),
        }
    }
}

/// Where a new group starts (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// The first event.
    Start,
    /// After what is committed when the group is created (resolved to a
    /// revision or position at creation, so that a restart does not skip).
    End,
    /// This revision of a stream target.
    Revision(u64),
    /// This position of `$all`.
    Position(u64),
}

/// How events are handed out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// The next consumer in turn with room.
    RoundRobin,
    /// The first consumer (in joining order) with room.
    DispatchToSingle,
    /// A stream's events to one consumer (a hash of the name).
    Pinned,
}

/// A group's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// Where it starts.
    pub from: Start,
    /// For `$all`: which events (prefixes, and the compiled `pattern`).
    pub filter: Filter,
    /// For `$all`: a regular expression the events must match too (no
    /// native RPC sets it yet; the KurrentDB layer's groups do).
    pub pattern: Option<Pattern>,
    /// How events are handed out.
    pub strategy: Strategy,
    /// How long a consumer may hold an event unacknowledged.
    pub message_timeout: Duration,
    /// Deliveries after the first before an event is parked.
    pub max_retry_count: u32,
    /// Consumers at once (0: no limit).
    pub max_subscriber_count: u32,
    /// The checkpoint is written after this many events are done…
    pub checkpoint_count: u32,
    /// …or this long after the last write.
    pub checkpoint_after: Duration,
    /// Settings another protocol gave that Strata does not use, kept with
    /// the definition and shown back (KurrentDB's buffer sizes, say).
    pub extra: BTreeMap<String, String>,
}

impl Settings {
    /// These settings with `pattern` compiled into the filter's gate (the
    /// prefixes stay); the error says why an expression is refused.
    pub fn with_pattern(mut self, pattern: Option<Pattern>) -> Result<Settings, String> {
        self.filter.gate = match &pattern {
            Some(p) => p.filter()?.0.gate,
            None => None,
        };
        if let Some(p) = &pattern {
            if p.on_streams {
                // A stream-name expression is asked about `$`-streams too,
                // unless prefixes narrow it.
                if self.filter.stream_prefixes.is_empty() {
                    self.filter.stream_prefixes = Filter::every_stream().stream_prefixes;
                }
            }
        }
        self.pattern = pattern;
        Ok(self)
    }

    /// Whether `other` selects the same events (its compiled gate aside).
    pub fn same_filter(&self, other: &Settings) -> bool {
        self.filter.stream_prefixes == other.filter.stream_prefixes
            && self.filter.event_type_prefixes == other.filter.event_type_prefixes
            && self.pattern == other.pattern
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            from: Start::Start,
            filter: Filter::default(),
            pattern: None,
            strategy: Strategy::RoundRobin,
            message_timeout: Duration::from_secs(30),
            max_retry_count: 10,
            max_subscriber_count: 0,
            checkpoint_count: 1000,
            checkpoint_after: Duration::from_secs(1),
            extra: BTreeMap::new(),
        }
    }
}

/// Longest group name, in bytes.
pub const MAX_GROUP_BYTES: usize = 128;

/// Checks a group name.
pub fn check_group(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_GROUP_BYTES {
        return Err(format!(
            "group name must be 1..={MAX_GROUP_BYTES} bytes, not {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("group name contains a control character".into());
    }
    Ok(())
}

fn duration_ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

/// A definition as the JSON of a `$groups` event.
pub fn definition_json(target: &Target, group: &str, s: &Settings) -> Vec<u8> {
    let mut o = Map::new();
    match target {
        Target::Stream(name) => o.insert("stream".into(), json!(name)),
        Target::All => o.insert("all".into(), json!(true)),
    };
    o.insert("group".into(), json!(group));
    let from = match s.from {
        Start::Start | Start::End => json!("start"),
        Start::Revision(r) => json!({ "revision": r }),
        Start::Position(p) => json!({ "position": p }),
    };
    o.insert("from".into(), from);
    o.insert(
        "filter".into(),
        json!({
            "stream_prefixes": s.filter.stream_prefixes,
            "event_type_prefixes": s.filter.event_type_prefixes,
        }),
    );
    if let Some(p) = &s.pattern {
        let on = if p.on_streams { "stream" } else { "event_type" };
        o.insert("regex".into(), json!({ "on": on, "pattern": p.source }));
    }
    let strategy = match s.strategy {
        Strategy::RoundRobin => "round_robin",
        Strategy::DispatchToSingle => "dispatch_to_single",
        Strategy::Pinned => "pinned",
    };
    o.insert("strategy".into(), json!(strategy));
    o.insert(
        "message_timeout_ms".into(),
        json!(duration_ms(s.message_timeout)),
    );
    o.insert("max_retry_count".into(), json!(s.max_retry_count));
    o.insert("max_subscriber_count".into(), json!(s.max_subscriber_count));
    o.insert("checkpoint_count".into(), json!(s.checkpoint_count));
    o.insert(
        "checkpoint_after_ms".into(),
        json!(duration_ms(s.checkpoint_after)),
    );
    if !s.extra.is_empty() {
        o.insert("extra".into(), json!(s.extra));
    }
    Value::Object(o).to_string().into_bytes()
}

/// Reads a definition back (the target and group only, for a deletion).
pub fn parse_definition(data: &[u8]) -> Result<(Target, String, Settings), String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let target = match (v.get("stream"), v.get("all")) {
        (Some(Value::String(s)), None) => Target::Stream(s.clone()),
        (None, Some(Value::Bool(true))) => Target::All,
        _ => return Err("no target".into()),
    };
    let group = v
        .get("group")
        .and_then(Value::as_str)
        .ok_or("no group")?
        .to_owned();
    let d = Settings::default();
    let num = |k: &str, default: u64| v.get(k).and_then(Value::as_u64).unwrap_or(default);
    let strings = |k: &str| -> Vec<String> {
        v.get("filter")
            .and_then(|f| f.get(k))
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let from = match v.get("from") {
        Some(Value::Object(o)) if o.contains_key("revision") => {
            Start::Revision(o["revision"].as_u64().ok_or("bad revision")?)
        }
        Some(Value::Object(o)) if o.contains_key("position") => {
            Start::Position(o["position"].as_u64().ok_or("bad position")?)
        }
        _ => Start::Start,
    };
    let strategy = match v.get("strategy").and_then(Value::as_str) {
        Some("dispatch_to_single") => Strategy::DispatchToSingle,
        Some("pinned") => Strategy::Pinned,
        _ => Strategy::RoundRobin,
    };
    let settings = Settings {
        from,
        filter: Filter {
            stream_prefixes: strings("stream_prefixes"),
            event_type_prefixes: strings("event_type_prefixes"),
            gate: None,
        },
        pattern: None,
        strategy,
        message_timeout: Duration::from_millis(num(
            "message_timeout_ms",
            duration_ms(d.message_timeout),
        )),
        max_retry_count: num("max_retry_count", u64::from(d.max_retry_count)) as u32,
        max_subscriber_count: num("max_subscriber_count", 0) as u32,
        checkpoint_count: num("checkpoint_count", u64::from(d.checkpoint_count)) as u32,
        checkpoint_after: Duration::from_millis(num(
            "checkpoint_after_ms",
            duration_ms(d.checkpoint_after),
        )),
        extra: v
            .get("extra")
            .and_then(Value::as_object)
            .map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default(),
    };
    let pattern = match v.get("regex") {
        None => None,
        Some(r) => Some(Pattern {
            on_streams: r.get("on").and_then(Value::as_str) == Some("stream"),
            source: r
                .get("pattern")
                .and_then(Value::as_str)
                .ok_or("a regex without a pattern")?
                .to_owned(),
        }),
    };
    let settings = settings.with_pattern(pattern)?;
    Ok((target, group, settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_round_trip() {
        let s = Settings {
            from: Start::Position(42),
            filter: Filter {
                stream_prefixes: vec!["order-".into()],
                event_type_prefixes: vec!["Placed".into(), "Paid".into()],
                gate: None,
            },
            pattern: None,
            strategy: Strategy::Pinned,
            message_timeout: Duration::from_millis(1500),
            max_retry_count: 3,
            max_subscriber_count: 4,
            checkpoint_count: 10,
            checkpoint_after: Duration::from_millis(250),
            extra: BTreeMap::from([("live_buffer_size".to_owned(), "300".to_owned())]),
        };
        for t in [Target::All, Target::Stream("s".into())] {
            let json = definition_json(&t, "g", &s);
            assert_eq!(
                parse_definition(&json).expect("parses"),
                (t, "g".into(), s.clone())
            );
        }
        let with_regex = Settings::default()
            .with_pattern(Some(Pattern {
                on_streams: false,
                source: r"^(?!\$)".into(),
            }))
            .expect("valid");
        let json = definition_json(&Target::All, "g", &with_regex);
        let (_, _, back) = parse_definition(&json).expect("parses");
        assert!(back.same_filter(&with_regex));
        let gate = back.filter.gate.as_ref().expect("compiled");
        assert!(gate.admits_event("s", "Placed"));
        assert!(!gate.admits_event("s", "$metadata"));
        assert!(parse_definition(b"{}").is_err());
        assert!(check_group("").is_err());
        assert!(check_group(&"x".repeat(129)).is_err());
        assert!(check_group("a\nb").is_err());
    }
}
