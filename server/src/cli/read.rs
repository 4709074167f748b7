//! `strata read STREAM|'$all' [--backwards] [--from X] [--limit N]`:
//! prints stored events and exits.

use clap::Args;
use strata_client::{ReadFrom, ReadOptions, TryStreamExt};

use super::format::{event_json, event_line};
use super::{print_line, CliError, Connection, FilterArgs, FromArg, ALL};

/// Arguments of `strata read`.
#[derive(Clone, Debug, Args)]
pub struct ReadArgs {
    /// The stream to read, or '$all' for the global log (quote it in the shell).
    pub stream: String,

    /// Newest first.
    #[arg(long)]
    pub backwards: bool,

    /// Where to start, inclusive: start, end, or a revision (a position for
    /// '$all'). Default: start, or end with --backwards.
    #[arg(long, value_name = "start|end|N")]
    pub from: Option<FromArg>,

    /// Print at most N events; 0 means all.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub limit: u64,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `strata read`.
pub async fn run(args: ReadArgs) -> Result<(), CliError> {
    let all = args.stream == ALL;
    let filter = args.filters.to_filter(&args.stream)?;
    let mut options = if args.backwards {
        ReadOptions::backwards()
    } else {
        ReadOptions::forwards()
    };
    options = options.max_count(args.limit);
    options = match args.from {
        None => options,
        Some(FromArg::Start) => options.start_at(ReadFrom::Start),
        Some(FromArg::End) => options.start_at(ReadFrom::End),
        Some(FromArg::At(n)) if all => options.from_position(n),
        Some(FromArg::At(n)) => options.from_revision(n),
    };
    let client = args.connection.connect().await?;
    let mut events = if all {
        client.read_all(options, filter).await?
    } else {
        client.read_stream(&args.stream, options).await?
    };
    while let Some(event) = events.try_next().await? {
        let line = if args.connection.json {
            event_json(&event)
        } else {
            event_line(&event)
        };
        print_line(&line)?;
    }
    Ok(())
}
