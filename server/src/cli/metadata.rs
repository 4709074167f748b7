//! `strata metadata get STREAM` and `strata metadata set STREAM [...]`: a
//! stream's metadata (retention, access lists, custom data), printed as
//! JSON and replaced as a whole from flags. Durations are written as a whole
//! number and a unit (`30s`, `15m`, `2h`, `7d`; also `ms`, `us`, `ns`), the
//! same way in both directions.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};
use strata_client::{ExpectedVersion, StreamAcl, StreamMetadata};

use super::append::parse_expected;
use super::format::insert_payload;
use super::{print_json, print_line, CliError, Connection};

/// What `strata metadata get` prints, for `--help`.
pub const GET_HELP: &str = r#"Output (JSON, keys sorted, indented; one line with --json):
  {"acl": {"delete": [], "metadata_read": [], "metadata_write": [],
           "read": ["$role:auditor"], "write": []},
   "custom": "owner=billing", "custom_encoding": "utf-8",
   "max_age": "7d", "max_count": 100, "metadata_revision": 0,
   "stream": "log-1", "truncate_before": null}
metadata_revision is null when the metadata was never set (then every field
is empty). max_age is a whole number and a unit (ns, us, ms, s, m, h, d).
custom is null when empty, a JSON value when it holds JSON, and otherwise a
string with custom_encoding "utf-8" (text) or "hex" (binary)."#;

/// `strata metadata get|set`.
#[derive(Clone, Debug, Subcommand)]
pub enum MetadataCommand {
    /// Print a stream's metadata and its revision as JSON.
    #[command(after_help = GET_HELP)]
    Get(GetArgs),
    /// Replace a stream's metadata with the one the flags describe.
    ///
    /// The whole metadata is replaced: a flag not given is cleared, and no
    /// flags at all clear it. Allowed before the stream exists.
    // Boxed: its flags make it far larger than `Get`.
    Set(Box<SetArgs>),
}

/// Arguments of `strata metadata get`.
#[derive(Clone, Debug, Args)]
pub struct GetArgs {
    /// The stream.
    pub stream: String,

    #[command(flatten)]
    pub connection: Connection,
}

/// Arguments of `strata metadata set`.
#[derive(Clone, Debug, Args)]
pub struct SetArgs {
    /// The stream (it need not exist yet).
    pub stream: String,

    /// The state the metadata must be in: any, no-stream (never set),
    /// exists (set before), or its current revision. On a mismatch nothing is
    /// written and the exit code is 3.
    #[arg(long, default_value = "any", value_parser = parse_expected)]
    pub expected: ExpectedVersion,

    /// Keep only the newest N events visible.
    #[arg(long, value_name = "N")]
    pub max_count: Option<u64>,

    /// Hide events recorded longer ago than this: a whole number and a unit,
    /// e.g. 30s, 15m, 2h, 7d (also ms, us, ns).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_age: Option<Duration>,

    /// Hide the events below this revision.
    #[arg(long, value_name = "N")]
    pub truncate_before: Option<u64>,

    /// May read the stream: a user name or $role:NAME (repeatable).
    #[arg(long, value_name = "USER", value_parser = non_empty)]
    pub acl_read: Vec<String>,

    /// May append to the stream (repeatable).
    #[arg(long, value_name = "USER", value_parser = non_empty)]
    pub acl_write: Vec<String>,

    /// May delete the stream (repeatable).
    #[arg(long, value_name = "USER", value_parser = non_empty)]
    pub acl_delete: Vec<String>,

    /// May read the stream's metadata (repeatable).
    #[arg(long, value_name = "USER", value_parser = non_empty)]
    pub acl_metadata_read: Vec<String>,

    /// May change the stream's metadata (repeatable).
    #[arg(long, value_name = "USER", value_parser = non_empty)]
    pub acl_metadata_write: Vec<String>,

    /// Application data, opaque to the server, stored as the text's UTF-8
    /// bytes.
    #[arg(long, value_name = "TEXT")]
    pub custom: Option<String>,

    #[command(flatten)]
    pub connection: Connection,
}

impl SetArgs {
    /// The metadata the flags describe.
    fn metadata(&self) -> StreamMetadata {
        let mut acl = StreamAcl::new();
        acl.read.clone_from(&self.acl_read);
        acl.write.clone_from(&self.acl_write);
        acl.delete.clone_from(&self.acl_delete);
        acl.metadata_read.clone_from(&self.acl_metadata_read);
        acl.metadata_write.clone_from(&self.acl_metadata_write);
        let mut metadata = StreamMetadata::new().with_acl(acl);
        metadata.max_count = self.max_count;
        metadata.max_age = self.max_age;
        metadata.truncate_before = self.truncate_before;
        if let Some(custom) = &self.custom {
            metadata = metadata.with_custom(custom.clone());
        }
        metadata
    }
}

/// Runs `strata metadata get`.
pub async fn get(args: GetArgs) -> Result<(), CliError> {
    let client = args.connection.connect().await?;
    let got = client.stream_metadata(&args.stream).await?;
    let value = metadata_json(&args.stream, got.revision, &got.metadata);
    print_json(&value, args.connection.json)
}

/// Runs `strata metadata set`.
pub async fn set(args: SetArgs) -> Result<(), CliError> {
    let metadata = args.metadata();
    let client = args.connection.connect().await?;
    let set = client
        .set_stream_metadata(&args.stream, args.expected, metadata)
        .await?;
    let line = if args.connection.json {
        json!({
            "stream": args.stream,
            "metadata_revision": set.metadata_revision,
            "position": set.position,
        })
        .to_string()
    } else {
        format!(
            "set the metadata of {}: revision {}, position {}",
            args.stream, set.metadata_revision, set.position
        )
    };
    print_line(&line)
}

/// The JSON document [`GET_HELP`] describes.
fn metadata_json(stream: &str, revision: Option<u64>, m: &StreamMetadata) -> Value {
    let mut o = Map::new();
    o.insert("stream".into(), json!(stream));
    o.insert("metadata_revision".into(), json!(revision));
    o.insert("max_count".into(), json!(m.max_count));
    o.insert("max_age".into(), json!(m.max_age.map(format_duration)));
    o.insert("truncate_before".into(), json!(m.truncate_before));
    o.insert(
        "acl".into(),
        json!({
            "read": m.acl.read,
            "write": m.acl.write,
            "delete": m.acl.delete,
            "metadata_read": m.acl.metadata_read,
            "metadata_write": m.acl.metadata_write,
        }),
    );
    if m.custom.is_empty() {
        o.insert("custom".into(), Value::Null);
    } else {
        insert_payload(&mut o, "custom", &m.custom);
    }
    Value::Object(o)
}

/// The units of a duration, largest first, in nanoseconds.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// `30s`, `15m`, `2h`, `7d`, `250ms`, `10us`, `5ns`: a whole number and a
/// unit.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = s.split_at(digits);
    let per = UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, per)| *per);
    let per = match per {
        Some(per) if !number.is_empty() => per,
        _ if !number.is_empty() && unit.is_empty() => {
            return Err(format!(
                "'{s}' needs a unit: e.g. {s}s (ns, us, ms, s, m, h, d)"
            ))
        }
        _ => {
            return Err(format!(
                "'{s}' is not a duration: use a whole number and a unit (ns, us, ms, s, m, h, d), \
                 e.g. 30s, 15m, 2h, 7d"
            ))
        }
    };
    let too_large = || format!("'{s}' is too large a duration");
    // Only digits: the parse fails on overflow alone.
    let n: u128 = number.parse().map_err(|_| too_large())?;
    let nanos = n.checked_mul(per).ok_or_else(too_large)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

/// A duration in the largest unit that states it exactly, as
/// [`parse_duration`] reads it back.
pub fn format_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".into();
    }
    let (name, per) = UNITS
        .iter()
        .find(|(_, per)| nanos.is_multiple_of(*per))
        .copied()
        .unwrap_or(("ns", 1));
    format!("{}{name}", nanos / per)
}

/// An ACL entry: a user name or `$role:NAME`, never empty.
fn non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        Err("an access-list entry must name a user or $role:NAME, not be empty".into())
    } else {
        Ok(s.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_every_unit() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("15m", Duration::from_secs(15 * 60)),
            ("2h", Duration::from_secs(2 * 3600)),
            ("7d", Duration::from_secs(7 * 86_400)),
            ("250ms", Duration::from_millis(250)),
            ("10us", Duration::from_micros(10)),
            ("5ns", Duration::from_nanos(5)),
            ("0s", Duration::ZERO),
            ("007m", Duration::from_secs(7 * 60)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_what_is_wrong() {
        let error = |s: &str| parse_duration(s).expect_err(s);
        for bad in [
            "", "s", "-5s", " 5s", "+5s", "1.5h", "5w", "1h30m", "5S", "5 s", "5s ",
        ] {
            let e = error(bad);
            assert!(
                e.starts_with(&format!(
                    "'{bad}' is not a duration: use a whole number and a unit"
                )),
                "{bad:?}: {e}"
            );
        }
        assert_eq!(
            error("30"),
            "'30' needs a unit: e.g. 30s (ns, us, ms, s, m, h, d)"
        );
        assert!(error("99999999999999999999999999999999999999999d").contains("too large"));
        assert!(error("999999999999999999d").contains("too large"));
    }

    #[test]
    fn durations_print_in_the_largest_exact_unit_and_read_back() {
        let cases = [
            (Duration::from_secs(7 * 86_400), "7d"),
            (Duration::from_secs(36 * 3600), "36h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_secs(120), "2m"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::new(1, 1), "1000000001ns"),
            (Duration::ZERO, "0s"),
        ];
        for (d, text) in cases {
            assert_eq!(format_duration(d), text);
            assert_eq!(parse_duration(text), Ok(d), "{text}");
        }
    }

    #[test]
    fn metadata_prints_every_field() {
        let mut acl = StreamAcl::new().allow_read("ann");
        acl.metadata_write.push("$role:ops".into());
        let m = StreamMetadata::new()
            .with_max_count(2)
            .with_max_age(Duration::from_secs(3600))
            .with_acl(acl)
            .with_custom("owner=billing");
        let v = metadata_json("s", Some(3), &m);
        assert_eq!(v["stream"], "s");
        assert_eq!(v["metadata_revision"], 3);
        assert_eq!(v["max_count"], 2);
        assert_eq!(v["max_age"], "1h");
        assert_eq!(v["truncate_before"], Value::Null);
        assert_eq!(v["acl"]["read"], json!(["ann"]));
        assert_eq!(v["acl"]["metadata_write"], json!(["$role:ops"]));
        assert_eq!(v["acl"]["delete"], json!([]));
        assert_eq!(
            (&v["custom"], &v["custom_encoding"]),
            (&json!("owner=billing"), &json!("utf-8"))
        );

        let v = metadata_json("s", None, &StreamMetadata::new());
        assert_eq!(v["metadata_revision"], Value::Null);
        assert_eq!(v["custom"], Value::Null);
        assert!(v.get("custom_encoding").is_none());
        let json_custom = StreamMetadata::new().with_custom(r#"{"a": 1}"#);
        assert_eq!(metadata_json("s", None, &json_custom)["custom"]["a"], 1);
    }
}
