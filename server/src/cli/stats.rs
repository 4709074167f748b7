//! `strata stats`: the server's counters (head position, streams, events,
//! disk use).

use clap::Args;
use serde_json::json;

use super::format::human_bytes;
use super::{print_line, CliError, Connection};

/// Arguments of `strata stats`.
#[derive(Clone, Debug, Args)]
pub struct StatsArgs {
    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `strata stats`.
pub async fn run(args: StatsArgs) -> Result<(), CliError> {
    let client = args.connection.connect().await?;
    let s = client.stats().await?;
    if args.connection.json {
        return print_line(
            &json!({
                "head_position": s.head_position,
                "streams": s.streams,
                "events": s.events,
                "disk_bytes": s.disk_bytes,
                "format_version": s.format_version,
                "indexed_position": s.indexed_position,
            })
            .to_string(),
        );
    }
    let rows = [
        ("server", args.connection.url.clone()),
        ("head position", s.head_position.to_string()),
        ("streams", s.streams.to_string()),
        ("events", s.events.to_string()),
        (
            "disk use",
            format!("{} ({} bytes)", human_bytes(s.disk_bytes), s.disk_bytes),
        ),
        ("indexed up to", s.indexed_position.to_string()),
        ("format version", s.format_version.to_string()),
    ];
    for (name, value) in rows {
        print_line(&format!("{name:<15} {value}"))?;
    }
    Ok(())
}
