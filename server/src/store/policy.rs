//! Stream lifecycle: soft deletes, tombstones and stream metadata
//! (retention, ACLs, custom bytes).
//!
//! Everything is recorded in the log as events of `$`-streams, written by
//! the writer like any append: a stream's metadata history is the stream
//! `$$<name>` (events of type `$metadata`), and deletes and tombstones are
//! events of `$lifecycle` (types `$deleted` and `$tombstoned`). Their data is
//! JSON (see `docs/FORMAT.md`). From those events the store keeps, in
//! memory, one [`StreamPolicy`] per stream that has any; every read path
//! decides what is hidden from it, with no disk read.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Map, Value};

/// The stream that records deletes and tombstones.
pub const LIFECYCLE_STREAM: &str = "$lifecycle";
/// Event type of a metadata change (in `$$<stream>`).
pub const METADATA_TYPE: &str = "$metadata";
/// Event type of a soft delete (in `$lifecycle`).
pub const DELETED_TYPE: &str = "$deleted";
/// Event type of a tombstone (in `$lifecycle`).
pub const TOMBSTONED_TYPE: &str = "$tombstoned";
/// Content type of the lifecycle events' data.
pub const JSON: &str = "application/json";

/// What a stream's name is prefixed with to name its metadata history.
pub const METADATA_PREFIX: &str = "$$";

/// The stream holding the metadata history of `stream`.
pub fn metadata_stream(stream: &str) -> String {
    format!("{METADATA_PREFIX}{stream}")
}

/// Who may do what to a stream (stored now; enforced by the security
/// layer). Each list holds user names or `$role:NAME`; an empty list keeps
/// the role default.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamAcl {
    /// May read the stream.
    pub read: Vec<String>,
    /// May append.
    pub write: Vec<String>,
    /// May delete.
    pub delete: Vec<String>,
    /// May read the metadata.
    pub metadata_read: Vec<String>,
    /// May change the metadata.
    pub metadata_write: Vec<String>,
}

/// A stream's metadata.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamMetadata {
    /// Only the newest `max_count` events are visible.
    pub max_count: Option<u64>,
    /// Events recorded longer ago than this are hidden.
    pub max_age: Option<Duration>,
    /// Events below this revision are hidden.
    pub truncate_before: Option<u64>,
    /// Access lists.
    pub acl: StreamAcl,
    /// Opaque to the server.
    pub custom: Bytes,
}

impl StreamMetadata {
    /// The event data recording this metadata.
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut o = Map::new();
        if let Some(n) = self.max_count {
            o.insert("max_count".into(), json!(n));
        }
        if let Some(d) = self.max_age {
            // Nanoseconds fit a u64 for 584 years; longer ages saturate.
            let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            o.insert("max_age_ns".into(), json!(ns));
        }
        if let Some(r) = self.truncate_before {
            o.insert("truncate_before".into(), json!(r));
        }
        let acl = &self.acl;
        let lists = [
            ("read", &acl.read),
            ("write", &acl.write),
            ("delete", &acl.delete),
            ("metadata_read", &acl.metadata_read),
            ("metadata_write", &acl.metadata_write),
        ];
        let mut a = Map::new();
        for (name, list) in lists {
            if !list.is_empty() {
                a.insert(name.into(), json!(list));
            }
        }
        if !a.is_empty() {
            o.insert("acl".into(), Value::Object(a));
        }
        if !self.custom.is_empty() {
            o.insert("custom".into(), json!(base64::encode(&self.custom)));
        }
        serde_json::to_vec(&Value::Object(o)).unwrap_or_default()
    }

    /// Metadata from the data of a `$metadata` event.
    pub(crate) fn from_json(data: &[u8]) -> Result<StreamMetadata, String> {
        let v: Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
        let o = v.as_object().ok_or("metadata is not a JSON object")?;
        let number = |k: &str| -> Result<Option<u64>, String> {
            match o.get(k) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .map(Some)
                    .ok_or_else(|| format!("{k} is not an unsigned integer")),
            }
        };
        let mut acl = StreamAcl::default();
        if let Some(a) = o.get("acl") {
            let a = a.as_object().ok_or("acl is not an object")?;
            let list = |k: &str| -> Result<Vec<String>, String> {
                match a.get(k) {
                    None => Ok(Vec::new()),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|i| {
                            i.as_str()
                                .map(str::to_owned)
                                .ok_or_else(|| format!("acl.{k} holds a non-string"))
                        })
                        .collect(),
                    Some(_) => Err(format!("acl.{k} is not a list")),
                }
            };
            acl = StreamAcl {
                read: list("read")?,
                write: list("write")?,
                delete: list("delete")?,
                metadata_read: list("metadata_read")?,
                metadata_write: list("metadata_write")?,
            };
        }
        let custom = match o.get("custom") {
            None => Bytes::new(),
            Some(Value::String(s)) => Bytes::from(base64::decode(s)?),
            Some(_) => return Err("custom is not a string".into()),
        };
        Ok(StreamMetadata {
            max_count: number("max_count")?,
            max_age: number("max_age_ns")?.map(Duration::from_nanos),
            truncate_before: number("truncate_before")?,
            acl,
            custom,
        })
    }
}

/// The data of a `$deleted` or `$tombstoned` event.
pub(crate) fn marker_json(stream: &str, deleted_before: u64) -> Vec<u8> {
    serde_json::to_vec(&json!({ "stream": stream, "deleted_before": deleted_before }))
        .unwrap_or_default()
}

/// The stream and revision of a `$deleted` or `$tombstoned` event.
pub(crate) fn marker_from_json(data: &[u8]) -> Result<(String, u64), String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| e.to_string())?;
    let stream = v["stream"].as_str().ok_or("marker without a stream")?;
    let before = v["deleted_before"]
        .as_u64()
        .ok_or("marker without deleted_before")?;
    Ok((stream.to_owned(), before))
}

/// What the store remembers of one stream's lifecycle.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamPolicy {
    /// The current metadata, if any was ever set.
    pub metadata: Option<Arc<StreamMetadata>>,
    /// Revision of the current metadata in `$$<stream>`.
    pub metadata_revision: Option<u64>,
    /// Revisions below this were soft-deleted (0: never deleted).
    pub deleted_before: u64,
    /// The stream was tombstoned: final.
    pub tombstoned: bool,
}

impl StreamPolicy {
    /// Whether a stream whose last revision is `last` counts as deleted
    /// (nothing appended since its last soft delete).
    pub fn is_deleted(&self, last: Option<u64>) -> bool {
        self.tombstoned || (self.deleted_before > 0 && last.is_none_or(|l| l < self.deleted_before))
    }

    /// The lowest revision that is visible when the stream's last revision
    /// is `last` (ignoring age).
    pub fn floor(&self, last: Option<u64>) -> u64 {
        let mut floor = self.deleted_before;
        if let Some(md) = &self.metadata {
            floor = floor.max(md.truncate_before.unwrap_or(0));
            if let (Some(max), Some(last)) = (md.max_count, last) {
                floor = floor.max((last + 1).saturating_sub(max));
            }
        }
        floor
    }

    /// Events recorded before this (µs since the epoch) are hidden.
    pub fn oldest_visible_micros(&self, now_micros: i64) -> Option<i64> {
        let age = self.metadata.as_ref()?.max_age?;
        let age = i64::try_from(age.as_micros()).unwrap_or(i64::MAX);
        Some(now_micros.saturating_sub(age))
    }
}

/// Every stream's policy, shared by the writer (which changes it after each
/// durable batch) and readers.
#[derive(Default)]
pub(crate) struct Policies {
    map: RwLock<HashMap<Arc<str>, StreamPolicy>>,
    /// Whether any stream has a policy: when not, reads skip every lookup.
    any: AtomicBool,
}

impl Policies {
    /// Whether no stream has a policy.
    pub(crate) fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// The policy of `stream`, if it has one.
    pub(crate) fn get(&self, stream: &str) -> Option<StreamPolicy> {
        if self.is_empty() {
            return None;
        }
        self.map
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(stream)
            .cloned()
    }

    /// Sets the policies of the given streams.
    pub(crate) fn set(&self, changed: impl IntoIterator<Item = (Arc<str>, StreamPolicy)>) {
        let mut map = self.map.write().unwrap_or_else(|e| e.into_inner());
        map.extend(changed);
        self.any.store(!map.is_empty(), Ordering::Release);
    }

    /// A copy of every policy (the writer's own, at start).
    pub(crate) fn snapshot(&self) -> HashMap<Arc<str>, StreamPolicy> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Every stream's policy, from the log: the last `$metadata` event of each
/// `$$<stream>` among `streams`, and every event of `$lifecycle`.
pub(crate) fn load<'a>(
    shared: &Arc<super::state::Shared>,
    streams: impl Iterator<Item = &'a String>,
) -> Result<HashMap<Arc<str>, StreamPolicy>, super::error::StorageError> {
    use super::error::ReadError;
    use super::reader::ReadBatches;
    use super::types::{Direction, ReadFrom, RecordedEvent};

    let read = |stream: &str, direction, from, max| -> Result<Vec<RecordedEvent>, ReadError> {
        let mut out = Vec::new();
        for batch in
            ReadBatches::<Vec<RecordedEvent>>::stream(shared.clone(), stream, direction, from, max)?
        {
            out.extend(batch?);
        }
        Ok(out)
    };
    let storage = |e: ReadError| match e {
        ReadError::Storage(e) => e,
        other => super::error::StorageError::IndexMismatch(other.to_string()),
    };
    let mut policies: HashMap<Arc<str>, StreamPolicy> = HashMap::new();
    let metadata_streams: Vec<&String> =
        streams.filter(|s| s.starts_with(METADATA_PREFIX)).collect();
    for md_stream in metadata_streams {
        let last = read(md_stream, Direction::Backwards, ReadFrom::End, 1).map_err(storage)?;
        let Some(e) = last.into_iter().next() else {
            continue;
        };
        match StreamMetadata::from_json(&e.data) {
            Ok(md) => {
                let p = policies
                    .entry(Arc::from(&md_stream[METADATA_PREFIX.len()..]))
                    .or_default();
                p.metadata = Some(Arc::new(md));
                p.metadata_revision = Some(e.revision);
            }
            Err(why) => tracing::warn!(stream = %md_stream, %why, "unreadable stream metadata"),
        }
    }
    let markers = match read(LIFECYCLE_STREAM, Direction::Forwards, ReadFrom::Start, 0) {
        Ok(m) => m,
        Err(ReadError::StreamNotFound(_)) => Vec::new(),
        Err(e) => return Err(storage(e)),
    };
    for e in markers {
        match marker_from_json(&e.data) {
            Ok((stream, before)) => {
                let p = policies.entry(Arc::from(stream.as_str())).or_default();
                p.deleted_before = p.deleted_before.max(before);
                p.tombstoned |= e.event_type == TOMBSTONED_TYPE;
            }
            Err(why) => tracing::warn!(position = e.position, %why, "unreadable lifecycle record"),
        }
    }
    Ok(policies)
}

/// Standard base64 with padding, for `custom` in the metadata's JSON.
mod base64 {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub(super) fn decode(text: &str) -> Result<Vec<u8>, String> {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return Err("custom is not base64 (length)".into());
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        for (q, quad) in bytes.chunks(4).enumerate() {
            let last = q + 1 == bytes.len() / 4;
            let mut n = 0u32;
            let mut pad = 0;
            for &c in quad {
                let v = match c {
                    b'A'..=b'Z' => c - b'A',
                    b'a'..=b'z' => c - b'a' + 26,
                    b'0'..=b'9' => c - b'0' + 52,
                    b'+' => 62,
                    b'/' => 63,
                    b'=' if last => {
                        pad += 1;
                        0
                    }
                    _ => return Err("custom is not base64".into()),
                };
                if pad > 0 && c != b'=' {
                    return Err("custom is not base64 (padding)".into());
                }
                n = (n << 6) | u32::from(v);
            }
            if pad > 2 {
                return Err("custom is not base64 (padding)".into());
            }
            let three = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&three[..3 - pad]);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_through_its_json() {
        let empty = StreamMetadata::default();
        assert_eq!(empty.to_json(), b"{}");
        assert_eq!(StreamMetadata::from_json(b"{}"), Ok(empty));
        for custom in [
            &b""[..],
            b"a",
            b"ab",
            b"abc",
            b"abcd",
            &[0, 255, 128, 7, 9][..],
        ] {
            let md = StreamMetadata {
                max_count: Some(3),
                max_age: Some(Duration::from_millis(1500)),
                truncate_before: Some(0),
                acl: StreamAcl {
                    read: vec!["ann".into(), "$role:reader".into()],
                    metadata_write: vec!["bob".into()],
                    ..StreamAcl::default()
                },
                custom: Bytes::copy_from_slice(custom),
            };
            assert_eq!(StreamMetadata::from_json(&md.to_json()), Ok(md));
        }
        assert!(StreamMetadata::from_json(b"[]").is_err());
        assert!(StreamMetadata::from_json(br#"{"max_count":-1}"#).is_err());
        assert!(StreamMetadata::from_json(br#"{"custom":"a"}"#).is_err());
        assert!(StreamMetadata::from_json(br#"{"acl":{"read":[1]}}"#).is_err());
    }

    #[test]
    fn base64_matches_the_standard_alphabet() {
        assert_eq!(base64::encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64::encode(b"fo"), "Zm8=");
        assert_eq!(base64::encode(b"f"), "Zg==");
        assert_eq!(base64::decode("Zm9vYg==").as_deref(), Ok(&b"foob"[..]));
        assert!(base64::decode("Zm=v").is_err());
    }

    #[test]
    fn the_floor_combines_delete_truncate_and_count() {
        let mut p = StreamPolicy {
            deleted_before: 4,
            ..StreamPolicy::default()
        };
        assert!(p.is_deleted(Some(3)));
        assert!(!p.is_deleted(Some(4)));
        assert_eq!(p.floor(Some(9)), 4);
        p.metadata = Some(Arc::new(StreamMetadata {
            max_count: Some(2),
            truncate_before: Some(6),
            ..StreamMetadata::default()
        }));
        assert_eq!(p.floor(Some(9)), 8);
        assert_eq!(p.floor(Some(6)), 6);
        p.metadata = Some(Arc::new(StreamMetadata {
            max_count: Some(0),
            ..StreamMetadata::default()
        }));
        assert_eq!(p.floor(Some(9)), 10);
        assert!(StreamPolicy::default().oldest_visible_micros(5).is_none());
    }
}
