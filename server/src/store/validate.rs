//! Checks of requests before they reach the writer: a request that fails
//! here changes nothing.

use std::collections::HashSet;

use super::config::Limits;
use super::error::AppendError;
use super::record::encoded_len;
use super::types::{AppendRequest, MultiAppendRequest};

/// Longest stream name, event type or content type, in bytes.
pub const MAX_NAME_BYTES: usize = 255;

/// Longest name of a consumer group's parked stream
/// (`$persistent-<stream>::<group>-parked`).
pub const MAX_PARKED_NAME_BYTES: usize = 512;

/// The longest `name` may be: the metadata history of a stream of the
/// longest name may be read, and a consumer group's parked stream names
/// its target and group.
fn max_name_len(name: &str) -> usize {
    use super::policy::METADATA_PREFIX;
    match name.strip_prefix(METADATA_PREFIX) {
        Some(rest) => max_name_len(rest) + METADATA_PREFIX.len(),
        None if name.starts_with("$persistent-") => MAX_PARKED_NAME_BYTES,
        None => MAX_NAME_BYTES,
    }
}

/// Checks a stream name; `for_append` also rejects reserved (`$`) names.
/// The error is the reason, for the caller's error type.
pub fn stream_name(name: &str, for_append: bool) -> Result<(), String> {
    if name.is_empty() {
        return Err("stream name is empty".into());
    }
    let max = max_name_len(name);
    if name.len() > max {
        return Err(format!(
            "stream name is {} bytes, the maximum is {MAX_NAME_BYTES}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err("stream name contains a control character".into());
    }
    if for_append && name.starts_with('$') {
        return Err(format!(
            "stream name '{name}' starts with '$', which is reserved for the server"
        ));
    }
    Ok(())
}

/// Checks an append against the format and the limits.
pub fn append(req: &AppendRequest, limits: &Limits) -> Result<(), AppendError> {
    checked_len(req, limits).map(|_| ())
}

/// Checks an append of the server's own to a `$`-stream: as [`append`],
/// except that the name must be reserved.
pub fn system_append(req: &AppendRequest, limits: &Limits) -> Result<(), AppendError> {
    if !req.stream.starts_with('$') {
        return Err(AppendError::InvalidArgument(format!(
            "'{}' is not a server stream",
            req.stream
        )));
    }
    stream_name(&req.stream, false).map_err(AppendError::InvalidArgument)?;
    events_len(req, limits).map(|_| ())
}

/// Checks an append as [`append`] does; returns the bytes its records take.
fn checked_len(req: &AppendRequest, limits: &Limits) -> Result<u64, AppendError> {
    stream_name(&req.stream, true).map_err(AppendError::InvalidArgument)?;
    events_len(req, limits)
}

/// The checks of an append's events; their bytes.
fn events_len(req: &AppendRequest, limits: &Limits) -> Result<u64, AppendError> {
    if req.events.is_empty() {
        return Err(AppendError::InvalidArgument("append has no events".into()));
    }
    if req.events.len() > limits.max_append_events {
        return Err(AppendError::TooManyEvents {
            actual: req.events.len(),
            limit: limits.max_append_events,
        });
    }
    // One event cannot repeat an id: no set for the common single append.
    let mut seen = (req.events.len() > 1).then(|| HashSet::with_capacity(req.events.len()));
    let mut total: u64 = 0;
    for (i, e) in req.events.iter().enumerate() {
        if e.event_type.is_empty() {
            return Err(AppendError::InvalidArgument(format!(
                "event {i}: type is empty"
            )));
        }
        if e.event_type.len() > MAX_NAME_BYTES {
            return Err(AppendError::InvalidArgument(format!(
                "event {i}: type is {} bytes, the maximum is {MAX_NAME_BYTES}",
                e.event_type.len()
            )));
        }
        let ct = e.content_type.as_deref().unwrap_or("");
        if ct.len() > MAX_NAME_BYTES {
            return Err(AppendError::InvalidArgument(format!(
                "event {i}: content type is {} bytes, the maximum is {MAX_NAME_BYTES}",
                ct.len()
            )));
        }
        let body = (e.data.len() + e.metadata.len()) as u64;
        if body > limits.max_event_bytes {
            return Err(AppendError::TooLarge {
                what: "event data + metadata",
                actual: body,
                limit: limits.max_event_bytes,
                setting: "max-event-bytes",
            });
        }
        if seen.as_mut().is_some_and(|s| !s.insert(e.id)) {
            return Err(AppendError::InvalidArgument(format!(
                "event id {} appears twice in one append",
                e.id
            )));
        }
        total += encoded_len(
            &req.stream,
            &e.event_type,
            ct,
            e.metadata.len(),
            e.data.len(),
        ) as u64;
    }
    if total > limits.max_append_bytes {
        return Err(AppendError::TooLarge {
            what: "append",
            actual: total,
            limit: limits.max_append_bytes,
            setting: "max-append-bytes",
        });
    }
    Ok(total)
}

/// Checks a multi-append: each append as `append` does, at least one
/// append, every stream at most once across appends and checks, no event id
/// twice, and the whole within the append limits.
pub fn multi_append(req: &MultiAppendRequest, limits: &Limits) -> Result<(), AppendError> {
    if req.appends.is_empty() {
        return Err(AppendError::InvalidArgument(
            "a multi-append needs at least one append".into(),
        ));
    }
    let mut streams = HashSet::new();
    let mut ids = HashSet::new();
    let (mut bytes, mut events) = (0u64, 0usize);
    for a in &req.appends {
        let len = checked_len(a, limits)?;
        if !streams.insert(a.stream.as_str()) {
            return Err(AppendError::InvalidArgument(format!(
                "stream '{}' appears more than once in the multi-append",
                a.stream
            )));
        }
        for e in &a.events {
            if !ids.insert(e.id) {
                return Err(AppendError::InvalidArgument(format!(
                    "event id {} appears twice in the multi-append",
                    e.id
                )));
            }
        }
        events += a.events.len();
        bytes += len;
    }
    for c in &req.checks {
        stream_name(&c.stream, false).map_err(AppendError::InvalidArgument)?;
        if !streams.insert(c.stream.as_str()) {
            return Err(AppendError::InvalidArgument(format!(
                "stream '{}' appears more than once in the multi-append",
                c.stream
            )));
        }
    }
    if events > limits.max_append_events {
        return Err(AppendError::TooManyEvents {
            actual: events,
            limit: limits.max_append_events,
        });
    }
    if bytes > limits.max_append_bytes {
        return Err(AppendError::TooLarge {
            what: "multi-append",
            actual: bytes,
            limit: limits.max_append_bytes,
            setting: "max-append-bytes",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::types::{EventId, ExpectedVersion, NewEvent};
    use bytes::Bytes;

    fn ev(id: u8, ty: &str, data: usize) -> NewEvent {
        NewEvent {
            id: EventId([id; 16]),
            event_type: ty.into(),
            data: Bytes::from(vec![0u8; data]),
            metadata: Bytes::new(),
            content_type: None,
        }
    }

    fn req(stream: &str, events: Vec<NewEvent>) -> AppendRequest {
        AppendRequest {
            stream: stream.into(),
            expected: ExpectedVersion::Any,
            events,
        }
    }

    #[test]
    fn names() {
        assert!(stream_name("a", true).is_ok());
        assert!(stream_name(&"x".repeat(255), true).is_ok());
        assert!(stream_name(&"x".repeat(256), true).is_err());
        assert!(stream_name("", true).is_err());
        assert!(stream_name("a\nb", true).is_err());
        assert!(stream_name("$all", true).is_err());
        assert!(stream_name("$all", false).is_ok());
    }

    #[test]
    fn appends() {
        let l = Limits::default();
        assert!(append(&req("s", vec![ev(1, "T", 10)]), &l).is_ok());
        assert!(append(&req("s", vec![]), &l).is_err());
        assert!(append(&req("s", vec![ev(1, "", 10)]), &l).is_err());
        assert!(append(&req("s", vec![ev(1, "T", 1), ev(1, "T", 1)]), &l).is_err());
        let big = append(&req("s", vec![ev(1, "T", (1 << 20) + 1)]), &l).expect_err("too big");
        assert!(big.to_string().contains("max-event-bytes"), "{big}");
        let many: Vec<NewEvent> = (0..17u32)
            .map(|i| NewEvent {
                id: EventId([i as u8; 16]),
                ..ev(0, "T", 1 << 20)
            })
            .collect();
        let err = append(&req("s", many), &l).expect_err("too many bytes");
        assert!(err.to_string().contains("max-append-bytes"), "{err}");
    }
}
