//! `strata append STREAM --type T [--expected ...] [--data JSON | -]`:
//! appends one event.

use std::io::Read as _;

use clap::Args;
use serde_json::json;
use strata_client::{EventData, ExpectedVersion, Uuid};

use super::{print_line, CliError, Connection};

/// Arguments of `strata append`.
#[derive(Clone, Debug, Args)]
pub struct AppendArgs {
    /// The stream to append to (created by its first event).
    pub stream: String,

    /// The event's type, e.g. OrderPlaced.
    #[arg(long = "type", value_name = "TYPE")]
    pub event_type: String,

    /// The state the stream must be in: any, no-stream, exists, or the
    /// revision of its last event. On a mismatch nothing is written and the
    /// exit code is 3.
    #[arg(long, default_value = "any", value_parser = parse_expected)]
    pub expected: ExpectedVersion,

    /// The event's payload as JSON, or - to read it from stdin. Without it
    /// the payload is empty.
    #[arg(long, value_name = "JSON|-")]
    pub data: Option<String>,

    /// The event's metadata as JSON.
    #[arg(long, value_name = "JSON")]
    pub metadata: Option<String>,

    /// The event's id (a UUID); random when not given. Re-running with the
    /// same id appends nothing new.
    #[arg(long)]
    pub id: Option<Uuid>,

    #[command(flatten)]
    pub connection: Connection,
}

/// `any`, `no-stream`, `exists` or a revision number.
pub fn parse_expected(s: &str) -> Result<ExpectedVersion, String> {
    match s {
        "any" => Ok(ExpectedVersion::Any),
        "no-stream" | "no_stream" => Ok(ExpectedVersion::NoStream),
        "exists" | "stream-exists" | "stream_exists" => Ok(ExpectedVersion::StreamExists),
        n => n
            .parse()
            .map(ExpectedVersion::Exact)
            .map_err(|_| format!("'{n}' is not any, no-stream, exists or a revision number")),
    }
}

/// Runs `strata append`.
pub async fn run(args: AppendArgs) -> Result<(), CliError> {
    let mut event = match &args.data {
        None => EventData::binary(args.event_type, Vec::new()),
        Some(data) => {
            let bytes = if data == "-" {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|source| CliError::Io {
                        context: "reading --data from stdin",
                        source,
                    })?;
                buf
            } else {
                data.as_bytes().to_vec()
            };
            EventData::binary(args.event_type, json_bytes("--data", &bytes)?)
                .with_content_type(strata_client::JSON_CONTENT_TYPE)
        }
    };
    if let Some(metadata) = &args.metadata {
        event = event.with_metadata(json_bytes("--metadata", metadata.as_bytes())?);
    }
    if let Some(id) = args.id {
        event = event.with_id(id);
    }
    let id = event.id();
    let client = args.connection.connect().await?;
    let written = client.append(&args.stream, args.expected, [event]).await?;
    let line = if args.connection.json {
        json!({
            "stream": args.stream,
            "id": id.to_string(),
            "revision": written.next_expected_revision,
            "position": written.position,
        })
        .to_string()
    } else {
        format!(
            "appended to {}: revision {}, position {}, id {id}",
            args.stream, written.next_expected_revision, written.position
        )
    };
    print_line(&line)
}

/// Checks that `bytes` are one JSON document and returns them trimmed.
fn json_bytes(flag: &str, bytes: &[u8]) -> Result<Vec<u8>, CliError> {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(_) => Ok(bytes.trim_ascii().to_vec()),
        Err(e) => Err(CliError::Usage(format!("{flag} is not valid JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_versions_parse() {
        assert_eq!(parse_expected("any"), Ok(ExpectedVersion::Any));
        assert_eq!(parse_expected("no-stream"), Ok(ExpectedVersion::NoStream));
        assert_eq!(parse_expected("exists"), Ok(ExpectedVersion::StreamExists));
        assert_eq!(parse_expected("12"), Ok(ExpectedVersion::Exact(12)));
        assert!(parse_expected("-1").is_err());
        assert!(parse_expected("latest").is_err());
    }

    #[test]
    fn data_must_be_json() {
        assert_eq!(
            json_bytes("--data", b" {\"a\":1}\n").ok(),
            Some(b"{\"a\":1}".to_vec())
        );
        let err = json_bytes("--data", b"{oops").expect_err("not JSON");
        assert!(matches!(err, CliError::Usage(m) if m.starts_with("--data is not valid JSON")));
    }
}
