//! `strata tail STREAM|'$all' [--from start|end|X] [--filter-stream P]
//! [--filter-type P]`: prints events as they are committed, until
//! interrupted. Survives server restarts (the subscription resumes).

use clap::Args;
use strata_client::{SubscribeFrom, SubscriptionMessage, TryStreamExt};

use super::format::{event_json, event_line};
use super::{print_line, CliError, Connection, FilterArgs, FromArg, ALL};

/// Arguments of `strata tail`.
#[derive(Clone, Debug, Args)]
pub struct TailArgs {
    /// The stream to follow, or '$all' for the global log (quote it in the shell).
    pub stream: String,

    /// Where to start: start (everything stored, then live), end (only new
    /// events), or a revision (a position for '$all'), inclusive.
    #[arg(long, value_name = "start|end|N", default_value = "end")]
    pub from: FromArg,

    #[command(flatten)]
    pub filters: FilterArgs,

    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `strata tail`; returns only on an error.
pub async fn run(args: TailArgs) -> Result<(), CliError> {
    let all = args.stream == ALL;
    let filter = args.filters.to_filter(&args.stream)?;
    // --from is inclusive, a subscription starts after its point.
    let from = match args.from {
        FromArg::Start | FromArg::At(0) => SubscribeFrom::Start,
        FromArg::End => SubscribeFrom::End,
        FromArg::At(n) if all => SubscribeFrom::AfterPosition(n - 1),
        FromArg::At(n) => SubscribeFrom::AfterRevision(n - 1),
    };
    let client = args.connection.connect().await?;
    let mut subscription = if all {
        client.subscribe_to_all(from, filter)
    } else {
        client.subscribe_to_stream(&args.stream, from)
    };
    while let Some(message) = subscription.try_next().await? {
        match message {
            SubscriptionMessage::Event(event) => print_line(&if args.connection.json {
                event_json(&event)
            } else {
                event_line(&event)
            })?,
            SubscriptionMessage::CaughtUp { position, revision } => {
                let at = match (position, revision) {
                    (Some(p), _) => format!(" after position {p}"),
                    (None, Some(r)) => format!(" after revision {r}"),
                    (None, None) => String::new(),
                };
                eprintln!("strata tail: caught up{at}; following live events (Ctrl-C to stop)")
            }
            _ => {}
        }
    }
    Ok(())
}
