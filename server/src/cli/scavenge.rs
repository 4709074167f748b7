//! `strata scavenge [--wait] [--status] [--stop]`: starts reclaiming the
//! space of hidden events on a running server (or resumes a stopped
//! scavenge), shows its progress, or stops it. With `--wait` the command
//! follows the scavenge to its end and exits 0 only if it went through
//! every sealed segment.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use strata_proto::v1;
use strata_proto::v1::scavenge_status::State;

use super::{call_failed, print_line, CliError, Connection};

/// How often `--wait` asks for progress.
const POLL: Duration = Duration::from_millis(200);

/// Arguments of `strata scavenge`.
#[derive(Clone, Debug, Args)]
pub struct ScavengeArgs {
    /// Follow the scavenge, printing its progress, until it ends; exit 1
    /// unless it went through every sealed segment.
    #[arg(long)]
    pub wait: bool,

    /// Only show the running or last scavenge.
    #[arg(long, conflicts_with = "stop")]
    pub status: bool,

    /// Stop the running scavenge after the segment it is on (the next
    /// `strata scavenge` resumes it).
    #[arg(long)]
    pub stop: bool,

    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `strata scavenge`.
pub async fn run(args: ScavengeArgs) -> Result<(), CliError> {
    let mut client = args.connection.operations().await?;
    let failed = call_failed("scavenge");
    let mut status = if args.status {
        client.get_scavenge(v1::GetScavengeRequest {}).await
    } else if args.stop {
        client.stop_scavenge(v1::StopScavengeRequest {}).await
    } else {
        client.start_scavenge(v1::StartScavengeRequest {}).await
    }
    .map_err(failed)?
    .into_inner();
    print_line(&describe(&status, args.connection.json))?;
    if !args.wait {
        return Ok(());
    }
    while status.state() == State::Running {
        tokio::time::sleep(POLL).await;
        let next = client
            .get_scavenge(v1::GetScavengeRequest {})
            .await
            .map_err(failed)?
            .into_inner();
        if next != status {
            print_line(&describe(&next, args.connection.json))?;
        }
        status = next;
    }
    match status.state() {
        State::Done => Ok(()),
        _ if args.stop && status.state() == State::Stopped => Ok(()),
        State::Failed => Err(CliError::Failed(format!(
            "the scavenge failed: {}",
            status.error
        ))),
        other => Err(CliError::Failed(format!(
            "the scavenge ended {}",
            state_name(other)
        ))),
    }
}

fn state_name(s: State) -> &'static str {
    match s {
        State::Idle => "idle",
        State::Running => "running",
        State::Done => "done",
        State::Stopped => "stopped",
        State::Failed => "failed",
    }
}

/// `scavenge running: 3/12 segments, 1.2 MiB reclaimed, 4100 events
/// removed`, or the same as one JSON object.
fn describe(s: &v1::ScavengeStatus, as_json: bool) -> String {
    let state = state_name(s.state());
    if as_json {
        return json!({
            "state": state,
            "segments_done": s.segments_done,
            "segments_total": s.segments_total,
            "bytes_reclaimed": s.bytes_reclaimed,
            "events_removed": s.events_removed,
            "error": s.error,
        })
        .to_string();
    }
    let mut line = format!(
        "scavenge {state}: {}/{} segments, {:.1} MiB reclaimed, {} events removed",
        s.segments_done,
        s.segments_total,
        s.bytes_reclaimed as f64 / (1 << 20) as f64,
        s.events_removed
    );
    if !s.error.is_empty() {
        line.push_str(&format!(" ({})", s.error));
    }
    line
}
