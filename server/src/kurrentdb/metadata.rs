//! KurrentDB's metadata streams: `$$<stream>` holds `<stream>`'s metadata,
//! one `$metadata` event of JSON per version, with the system keys
//! `$maxAge` (seconds), `$maxCount`, `$tb` (truncate before) and `$acl`
//! (`$r`, `$w`, `$d`, `$mr`, `$mw`: a name or a list of names). Strata keeps
//! the same history in the same stream, as its own JSON; this module maps
//! one onto the other.
//!
//! - An append to `$$S` is a `SetMetadata` of `S` (the last event's JSON
//!   wins; its expected revision is the metadata's revision); keys that are
//!   not system keys, `$cacheControl` included, are kept as one JSON object
//!   in the metadata's opaque `custom` bytes and come back on read.
//! - A read of `$$S` reads the history, each event's data rewritten into
//!   KurrentDB's form.
//! - ACL names: `$admins` is Strata's `$role:admin`, `$ops` `$role:ops`,
//!   `$all` `$role:reader` (every user with a role); other names are user
//!   names; the mapping is undone on read.

use serde_json::{json, Map, Value};
use tonic::Status;

use crate::store::{StreamAcl, StreamMetadata};

/// The stream whose metadata stream `stream` is, if it is one.
pub(super) fn target(stream: &str) -> Option<&str> {
    stream.strip_prefix("$$").filter(|s| !s.is_empty())
}

/// The event type of a metadata version.
pub(super) const EVENT_TYPE: &str = "$metadata";

const MAX_AGE: &str = "$maxAge";
const MAX_COUNT: &str = "$maxCount";
const TRUNCATE_BEFORE: &str = "$tb";
const ACL: &str = "$acl";

/// (KurrentDB's ACL key, Strata's list).
fn lists(acl: &StreamAcl) -> [(&'static str, &Vec<String>); 5] {
    [
        ("$r", &acl.read),
        ("$w", &acl.write),
        ("$d", &acl.delete),
        ("$mr", &acl.metadata_read),
        ("$mw", &acl.metadata_write),
    ]
}

const ROLES: [(&str, &str); 3] = [
    ("$admins", "$role:admin"),
    ("$ops", "$role:ops"),
    ("$all", "$role:reader"),
];

fn name_in(entry: &str) -> String {
    ROLES
        .iter()
        .find(|(k, _)| *k == entry)
        .map_or_else(|| entry.to_owned(), |(_, s)| (*s).to_owned())
}

fn name_out(entry: &str) -> String {
    ROLES
        .iter()
        .find(|(_, s)| *s == entry)
        .map_or_else(|| entry.to_owned(), |(k, _)| (*k).to_owned())
}

fn invalid(why: String) -> Status {
    Status::invalid_argument(format!("stream metadata: {why}"))
}

/// Strata's metadata of KurrentDB's JSON.
pub(super) fn from_kurrent_json(data: &[u8]) -> Result<StreamMetadata, Status> {
    let v: Value = serde_json::from_slice(data).map_err(|e| invalid(format!("not JSON: {e}")))?;
    let Value::Object(o) = v else {
        return Err(invalid("not a JSON object".into()));
    };
    let number = |k: &str| -> Result<Option<u64>, Status> {
        match o.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| invalid(format!("{k} must be a non-negative integer, not {v}"))),
        }
    };
    let max_count = number(MAX_COUNT)?;
    let max_age = number(MAX_AGE)?.map(std::time::Duration::from_secs);
    let truncate_before = number(TRUNCATE_BEFORE)?;
    let mut acl = StreamAcl::default();
    match o.get(ACL) {
        None | Some(Value::Null) => {}
        Some(Value::Object(a)) => {
            let read = |k: &str| -> Result<Vec<String>, Status> {
                match a.get(k) {
                    None | Some(Value::Null) => Ok(Vec::new()),
                    Some(Value::String(s)) => Ok(vec![name_in(s)]),
                    Some(Value::Array(items)) => items
                        .iter()
                        .map(|i| {
                            i.as_str().map(name_in).ok_or_else(|| {
                                invalid(format!("{ACL}.{k} must hold names, not {i}"))
                            })
                        })
                        .collect(),
                    Some(other) => Err(invalid(format!(
                        "{ACL}.{k} must be a name or a list of names, not {other}"
                    ))),
                }
            };
            acl.read = read("$r")?;
            acl.write = read("$w")?;
            acl.delete = read("$d")?;
            acl.metadata_read = read("$mr")?;
            acl.metadata_write = read("$mw")?;
        }
        Some(other) => return Err(invalid(format!("{ACL} must be an object, not {other}"))),
    }
    // The JSON is kept as written: a read gives it back verbatim while
    // the metadata it says is still the stream's.
    Ok(StreamMetadata {
        max_count,
        max_age,
        truncate_before,
        acl,
        custom: bytes::Bytes::copy_from_slice(data),
    })
}

/// Whether two metadata say the same of the stream (custom bytes aside).
fn same_policy(a: &StreamMetadata, b: &StreamMetadata) -> bool {
    a.max_count == b.max_count
        && a.max_age.map(|d| d.as_secs()) == b.max_age.map(|d| d.as_secs())
        && a.truncate_before == b.truncate_before
        && a.acl == b.acl
}

/// KurrentDB's JSON of Strata's metadata: as a KurrentDB client wrote it,
/// while it still says what the stream's metadata says; else rebuilt from
/// the metadata, with the other keys of what was written. Custom bytes that
/// are not a JSON object (set through `strata.v1`) are left out.
pub(super) fn to_kurrent_json(m: &StreamMetadata) -> Vec<u8> {
    if let Ok(written) = from_kurrent_json(&m.custom) {
        if same_policy(&written, m) {
            return m.custom.to_vec();
        }
    }
    let mut o = match serde_json::from_slice::<Value>(&m.custom) {
        Ok(Value::Object(o)) => o,
        _ => Map::new(),
    };
    for key in [MAX_AGE, MAX_COUNT, TRUNCATE_BEFORE, ACL] {
        o.remove(key);
    }
    if let Some(n) = m.max_count {
        o.insert(MAX_COUNT.into(), json!(n));
    }
    if let Some(d) = m.max_age {
        o.insert(MAX_AGE.into(), json!(d.as_secs()));
    }
    if let Some(r) = m.truncate_before {
        o.insert(TRUNCATE_BEFORE.into(), json!(r));
    }
    let mut a = Map::new();
    for (key, list) in lists(&m.acl) {
        if !list.is_empty() {
            let names: Vec<String> = list.iter().map(|n| name_out(n)).collect();
            a.insert(key.into(), json!(names));
        }
    }
    if !a.is_empty() {
        o.insert(ACL.into(), Value::Object(a));
    }
    serde_json::to_vec(&Value::Object(o)).unwrap_or_default()
}

/// A metadata version's KurrentDB JSON as KurrentDB shows it while the
/// stream is soft-deleted: `$tb` is the largest revision.
pub(super) fn while_deleted(data: &[u8]) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut o)) = serde_json::from_slice::<Value>(data) else {
        return None;
    };
    o.insert(TRUNCATE_BEFORE.into(), json!(i64::MAX));
    serde_json::to_vec(&Value::Object(o)).ok()
}

/// What a read shows instead of a stored event's data, if anything: a
/// `$$` stream's versions are stored in Strata's JSON and shown in
/// KurrentDB's.
pub(super) fn shown_data(stream: &str, event_type: &str, data: &[u8]) -> Option<Vec<u8>> {
    (target(stream).is_some() && event_type == EVENT_TYPE)
        .then(|| rewrite(data))
        .flatten()
}

/// A stored `$metadata` event's data (Strata's JSON) in KurrentDB's form;
/// data that does not parse is passed on as it is.
pub(super) fn rewrite(data: &[u8]) -> Option<Vec<u8>> {
    StreamMetadata::from_json(data)
        .ok()
        .map(|m| to_kurrent_json(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kurrent_metadata_round_trips_through_strata() {
        let json = br#"{"$maxCount":2,"$maxAge":60,"$tb":3,"$cacheControl":5,
            "$acl":{"$r":"$all","$w":["ann","$admins"],"$mw":"$ops"},"owner":"team-a"}"#;
        let m = from_kurrent_json(json).expect("valid");
        assert_eq!(m.max_count, Some(2));
        assert_eq!(m.max_age, Some(std::time::Duration::from_secs(60)));
        assert_eq!(m.truncate_before, Some(3));
        assert_eq!(m.acl.read, vec!["$role:reader"]);
        assert_eq!(m.acl.write, vec!["ann", "$role:admin"]);
        assert_eq!(m.acl.metadata_write, vec!["$role:ops"]);
        let stored = StreamMetadata::from_json(&m.to_json()).expect("Strata's form");
        let back = rewrite(&stored.to_json()).expect("rewritten");
        assert_eq!(back, json.to_vec(), "verbatim while it still holds");

        // Changed through strata.v1: rebuilt, the other keys kept.
        let mut changed = stored.clone();
        changed.max_count = Some(5);
        let back: Value =
            serde_json::from_slice(&rewrite(&changed.to_json()).expect("rewritten")).expect("json");
        assert_eq!(
            back,
            json!({"$maxCount":5,"$maxAge":60,"$tb":3,"$cacheControl":5,
                "$acl":{"$r":["$all"],"$w":["ann","$admins"],"$mw":["$ops"]},"owner":"team-a"})
        );
        let deleted: Value =
            serde_json::from_slice(&while_deleted(&back.to_string().into_bytes()).expect("json"))
                .expect("json");
        assert_eq!(deleted["$tb"], json!(i64::MAX));
    }

    #[test]
    fn bad_metadata_is_refused() {
        for bad in [
            &b"[1]"[..],
            b"nope",
            br#"{"$maxCount":-1}"#,
            br#"{"$maxAge":"1h"}"#,
            br#"{"$acl":{"$r":5}}"#,
            br#"{"$acl":[]}"#,
        ] {
            let e = from_kurrent_json(bad).expect_err("refused");
            assert_eq!(e.code(), tonic::Code::InvalidArgument);
        }
        assert_eq!(target("$$orders"), Some("orders"));
        assert_eq!(target("$$"), None);
        assert_eq!(target("orders"), None);
    }
}
