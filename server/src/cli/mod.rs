//! The client subcommands of the `strata` binary (`append`,
//! `multi-append`, `read`, `tail`, `delete` and `tombstone`, `metadata`,
//! `health`, `stats`, `backup`): one file each, all talking to a running server
//! through `strata-client`. They never open a data directory.
//!
//! Output: human-readable lines by default (`metadata get`: indented JSON),
//! one JSON object per line with `--json`; errors go to stderr. Exit codes:
//! 0 success, 1 server or other error, 2 usage error, 3 conflict (wrong
//! expected version of an append, delete, tombstone or metadata change).

pub mod append;
pub mod backup;
pub mod delete;
mod format;
pub mod group;
pub mod health;
pub mod metadata;
pub mod multi_append;
pub mod read;
pub mod scavenge;
pub mod stats;
pub mod tail;

use std::future::Future;
use std::io::{self, Write};
use std::process::ExitCode;

use clap::Args;
use strata_client::Client;

/// How to reach the server and how to print, shared by every client
/// subcommand.
#[derive(Clone, Debug, Args)]
pub struct Connection {
    /// URL of the server's gRPC endpoint.
    #[arg(long, env = "STRATA_URL", default_value = "http://127.0.0.1:2113")]
    pub url: String,

    /// Print one JSON object per line instead of human-readable text.
    #[arg(long)]
    pub json: bool,
}

impl Connection {
    async fn connect(&self) -> Result<Client, CliError> {
        Ok(Client::connect(self.url.as_str()).await?)
    }

    /// A client of the `Operations` service (not in the Rust client).
    async fn operations(
        &self,
    ) -> Result<
        strata_proto::v1::operations_client::OperationsClient<tonic::transport::Channel>,
        CliError,
    > {
        let channel = tonic::transport::Endpoint::from_shared(self.url.clone())
            .map_err(|e| CliError::Usage(format!("--url {}: {e}", self.url)))?
            .connect()
            .await
            .map_err(|e| CliError::Failed(format!("cannot connect to {}: {e}", self.url)))?;
        Ok(strata_proto::v1::operations_client::OperationsClient::new(
            channel,
        ))
    }
}

/// Why a client subcommand failed; decides the exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line is wrong in a way clap cannot see (exit 2).
    #[error("{0}")]
    Usage(String),
    /// The server or the connection failed (exit 1; 3 for a conflict).
    #[error(transparent)]
    Client(#[from] strata_client::Error),
    /// Reading input or writing output failed (exit 1).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The failure.
        #[source]
        source: io::Error,
    },
    /// The server is not serving, or could not be asked (exit 1).
    #[error("{0}")]
    Unhealthy(String),
    /// A call outside the Rust client (the backup) failed (exit 1).
    #[error("{0}")]
    Failed(String),
    /// Whoever reads the output went away (`strata read | head`): not an
    /// error (exit 0).
    #[error("output closed")]
    OutputClosed,
}

impl CliError {
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) => ExitCode::from(2),
            CliError::Client(
                strata_client::Error::WrongExpectedVersion { .. }
                | strata_client::Error::MultiAppendConflict { .. },
            ) => ExitCode::from(3),
            CliError::Client(_)
            | CliError::Io { .. }
            | CliError::Unhealthy(_)
            | CliError::Failed(_) => ExitCode::FAILURE,
            CliError::OutputClosed => ExitCode::SUCCESS,
        }
    }
}

/// Runs one subcommand on a single-threaded runtime and turns its result
/// into an exit code, printing any error as `strata <name>: <error>`.
pub fn run<F>(name: &str, command: F) -> ExitCode
where
    F: Future<Output = Result<(), CliError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("strata {name}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(CliError::OutputClosed) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("strata {name}: {e}");
            e.exit_code()
        }
    }
}

/// Prints a JSON value: indented, or on one line when `compact` (`--json`).
fn print_json(value: &serde_json::Value, compact: bool) -> Result<(), CliError> {
    let text = if compact {
        value.to_string()
    } else {
        // Infallible for a `Value` (its keys are strings).
        serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
    };
    print_line(&text)
}

/// Writes one line to stdout, noticing a closed pipe.
fn print_line(line: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Err(CliError::OutputClosed),
        Err(source) => Err(CliError::Io {
            context: "writing to stdout",
            source,
        }),
    }
}

/// The name under which the CLI addresses the global log.
const ALL: &str = "$all";

/// The `$all` filter flags shared by `read` and `tail`.
#[derive(Clone, Debug, Default, Args)]
pub struct FilterArgs {
    /// '$all' only: keep events whose stream name starts with P (repeatable).
    #[arg(long, value_name = "P")]
    pub filter_stream: Vec<String>,

    /// '$all' only: keep events whose type starts with P (repeatable).
    #[arg(long, value_name = "P")]
    pub filter_type: Vec<String>,
}

impl FilterArgs {
    /// The prefixes as a filter; they apply to `$all` only.
    fn to_filter(&self, target: &str) -> Result<strata_client::Filter, CliError> {
        if target != ALL && !(self.filter_stream.is_empty() && self.filter_type.is_empty()) {
            return Err(CliError::Usage(format!(
                "--filter-stream and --filter-type apply only to '{ALL}', not to stream '{target}'"
            )));
        }
        let filter = self
            .filter_stream
            .iter()
            .fold(strata_client::Filter::new(), |f, p| f.stream_prefix(p));
        Ok(self
            .filter_type
            .iter()
            .fold(filter, |f, p| f.event_type_prefix(p)))
    }
}

/// A `--from` value: `start`, `end`, or a revision (stream) / position
/// (`$all`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FromArg {
    /// The first event.
    Start,
    /// The last event (`read --backwards`) or the live head (`tail`).
    End,
    /// This revision or position, inclusive.
    At(u64),
}

impl std::str::FromStr for FromArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "start" => Ok(FromArg::Start),
            "end" => Ok(FromArg::End),
            n => n
                .parse()
                .map(FromArg::At)
                .map_err(|_| format!("'{n}' is not 'start', 'end' or a revision/position number")),
        }
    }
}
