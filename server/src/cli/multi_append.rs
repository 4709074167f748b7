//! `strata multi-append [--file PATH|-]`: appends to several streams in one
//! atomic write, described by a JSON document:
//!
//! ```json
//! {"appends": [{"stream": "order-1", "expected": "no-stream",
//!               "events": [{"type": "OrderPlaced", "data": {"total": 3}}]},
//!              {"stream": "customer-7", "expected": 4,
//!               "events": [{"type": "OrderAdded", "data": {"order": "order-1"}}]}],
//!  "checks": [{"stream": "catalog", "expected": "exists"}]}
//! ```
//!
//! `expected` is `"any"`, `"no-stream"`, `"exists"` or a revision number
//! (default `"any"`); an event has a `type`, and optionally `data` and
//! `metadata` (any JSON) and an `id` (a UUID). Either everything is
//! written or nothing; a failed condition exits with 3 and lists every
//! stream whose condition failed.

use std::io::Read as _;

use clap::Args;
use serde_json::{json, Value};
use strata_client::{EventData, ExpectedVersion, MultiAppend, Uuid};

use super::append::parse_expected;
use super::{print_line, CliError, Connection};

/// The document's shape, for `--help`.
pub const DOCUMENT_HELP: &str = r#"The document (JSON):
  {"appends": [{"stream": "order-1", "expected": "no-stream",
                "events": [{"type": "OrderPlaced", "data": {"total": 3}}]},
               {"stream": "customer-7", "expected": 4,
                "events": [{"type": "OrderAdded", "metadata": {"by": "cli"},
                            "id": "0193c8a2-7d4e-7c4d-9b1e-3f2a5c6d7e8f"}]}],
   "checks":  [{"stream": "catalog", "expected": "exists"}]}
expected: "any" (default), "no-stream", "exists" or a revision number.
Everything is written or nothing. Exit codes: 0 written, 2 bad document,
3 a condition failed (every failed one is listed), 1 other errors."#;

/// Arguments of `strata multi-append`.
#[derive(Clone, Debug, Args)]
pub struct MultiAppendArgs {
    /// The JSON document describing the appends and checks, or - for
    /// stdin (the default).
    #[arg(long, value_name = "PATH|-", default_value = "-")]
    pub file: String,

    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `strata multi-append`.
pub async fn run(args: MultiAppendArgs) -> Result<(), CliError> {
    let text = read_input(&args.file)?;
    let multi = parse(&text)?;
    let client = args.connection.connect().await?;
    let written = client.multi_append(multi).await?;
    if args.connection.json {
        let results: Vec<Value> = written
            .results
            .iter()
            .map(|r| {
                json!({
                    "stream": r.stream,
                    "revision": r.next_expected_revision,
                    "position": r.position,
                })
            })
            .collect();
        print_line(&json!({ "results": results, "position": written.position }).to_string())
    } else {
        for r in &written.results {
            print_line(&format!(
                "appended to {}: revision {}, position {}",
                r.stream, r.next_expected_revision, r.position
            ))?;
        }
        Ok(())
    }
}

fn read_input(file: &str) -> Result<String, CliError> {
    let mut text = String::new();
    let read = if file == "-" {
        std::io::stdin().read_to_string(&mut text).map(|_| ())
    } else {
        std::fs::read_to_string(file).map(|t| text = t)
    };
    read.map_err(|source| CliError::Io {
        context: "reading the multi-append document",
        source,
    })?;
    Ok(text)
}

fn usage(message: impl Into<String>) -> CliError {
    CliError::Usage(message.into())
}

/// The multi-append a JSON document describes.
fn parse(text: &str) -> Result<MultiAppend, CliError> {
    let doc: Value = serde_json::from_str(text)
        .map_err(|e| usage(format!("the multi-append document is not valid JSON: {e}")))?;
    let appends = doc
        .get("appends")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| usage("the document needs a non-empty \"appends\" list"))?;
    let mut multi = MultiAppend::new();
    for (i, a) in appends.iter().enumerate() {
        let at = format!("appends[{i}]");
        let stream = stream_of(a, &at)?;
        let expected = expected_of(a, &at)?;
        let events = a
            .get("events")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
            .ok_or_else(|| usage(format!("{at} needs a non-empty \"events\" list")))?
            .iter()
            .enumerate()
            .map(|(j, e)| event_of(e, &format!("{at}.events[{j}]")))
            .collect::<Result<Vec<_>, _>>()?;
        multi = multi.append(stream, expected, events);
    }
    let checks = match doc.get("checks") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(c)) => &c[..],
        Some(_) => return Err(usage("\"checks\" must be a list")),
    };
    for (i, c) in checks.iter().enumerate() {
        let at = format!("checks[{i}]");
        multi = multi.check(stream_of(c, &at)?, expected_of(c, &at)?);
    }
    Ok(multi)
}

fn stream_of(v: &Value, at: &str) -> Result<String, CliError> {
    v.get("stream")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| usage(format!("{at} needs a \"stream\" string")))
}

fn expected_of(v: &Value, at: &str) -> Result<ExpectedVersion, CliError> {
    match v.get("expected") {
        None | Some(Value::Null) => Ok(ExpectedVersion::Any),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(ExpectedVersion::Exact)
            .ok_or_else(|| usage(format!("{at}.expected: {n} is not a revision number"))),
        Some(Value::String(s)) => {
            parse_expected(s).map_err(|e| usage(format!("{at}.expected: {e}")))
        }
        Some(other) => Err(usage(format!(
            "{at}.expected: {other} is not an expected version"
        ))),
    }
}

fn event_of(v: &Value, at: &str) -> Result<EventData, CliError> {
    let event_type = v
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| usage(format!("{at} needs a \"type\" string")))?;
    let mut event = match v.get("data") {
        None => EventData::binary(event_type, Vec::new()),
        Some(data) => EventData::binary(event_type, data.to_string().into_bytes())
            .with_content_type(strata_client::JSON_CONTENT_TYPE),
    };
    if let Some(metadata) = v.get("metadata") {
        event = event.with_metadata(metadata.to_string().into_bytes());
    }
    match v.get("id") {
        None => {}
        Some(Value::String(s)) => {
            let id = s
                .parse::<Uuid>()
                .map_err(|e| usage(format!("{at}.id: {s:?} is not a UUID: {e}")))?;
            event = event.with_id(id);
        }
        Some(other) => return Err(usage(format!("{at}.id: {other} is not a UUID string"))),
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage_message(text: &str) -> String {
        match parse(text) {
            Err(CliError::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn documents_parse_into_appends_and_checks() {
        let multi = parse(
            r#"{"appends": [{"stream": "a", "expected": "no-stream",
                             "events": [{"type": "T", "data": {"x": 1}}, {"type": "U"}]},
                            {"stream": "b", "expected": 4, "events": [{"type": "T"}]}],
                "checks": [{"stream": "c", "expected": "exists"}]}"#,
        )
        .expect("parses");
        assert_eq!(multi.len(), 2);
    }

    #[test]
    fn bad_documents_say_what_is_wrong() {
        assert!(usage_message("{").contains("not valid JSON"));
        assert!(usage_message(r#"{"appends": []}"#).contains("non-empty \"appends\""));
        assert!(
            usage_message(r#"{"appends": [{"events": [{"type": "T"}]}]}"#)
                .contains("appends[0] needs a \"stream\"")
        );
        assert!(
            usage_message(r#"{"appends": [{"stream": "a", "events": []}]}"#)
                .contains("appends[0] needs a non-empty \"events\"")
        );
        assert!(
            usage_message(r#"{"appends": [{"stream": "a", "events": [{"data": 1}]}]}"#)
                .contains("appends[0].events[0] needs a \"type\"")
        );
        assert!(usage_message(
            r#"{"appends": [{"stream": "a", "expected": -1, "events": [{"type": "T"}]}]}"#
        )
        .contains("not a revision number"));
        assert!(usage_message(
            r#"{"appends": [{"stream": "a", "events": [{"type": "T", "id": "nope"}]}]}"#
        )
        .contains("is not a UUID"));
        assert!(usage_message(
            r#"{"appends": [{"stream": "a", "events": [{"type": "T"}]}], "checks": {}}"#
        )
        .contains("\"checks\" must be a list"));
    }
}
