//! `strata delete STREAM [--expected ...]` (soft: an append re-creates the
//! stream) and `strata tombstone STREAM [--expected ...]` (for good: the
//! name can never be used again).

use clap::Args;
use serde_json::json;
use strata_client::ExpectedVersion;

use super::append::parse_expected;
use super::{print_line, CliError, Connection};

/// Arguments of `strata delete` and `strata tombstone`.
#[derive(Clone, Debug, Args)]
pub struct DeleteArgs {
    /// The stream.
    pub stream: String,

    /// The state the stream must be in: any, no-stream, exists, or the
    /// revision of its last event. On a mismatch nothing is written and the
    /// exit code is 3.
    #[arg(long, default_value = "any", value_parser = parse_expected)]
    pub expected: ExpectedVersion,

    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `strata delete`.
pub async fn delete(args: DeleteArgs) -> Result<(), CliError> {
    let client = args.connection.connect().await?;
    let deleted = client.delete(&args.stream, args.expected).await?;
    report(&args, "deleted", deleted.position)
}

/// Runs `strata tombstone`.
pub async fn tombstone(args: DeleteArgs) -> Result<(), CliError> {
    let client = args.connection.connect().await?;
    let tombstoned = client.tombstone(&args.stream, args.expected).await?;
    report(&args, "tombstoned", tombstoned.position)
}

/// `deleted order-1 at position 7`, or `{"stream": .., "position": ..}`.
fn report(args: &DeleteArgs, done: &str, position: u64) -> Result<(), CliError> {
    let line = if args.connection.json {
        json!({ "stream": args.stream, "position": position }).to_string()
    } else {
        format!("{done} {} at position {position}", args.stream)
    };
    print_line(&line)
}
