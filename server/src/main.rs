//! The `strata` binary: parses the command line, sets up logging and calls
//! into the library. `strata` alone (or `strata serve`) runs the server;
//! `append`, `multi-append`, `read`, `tail`, `delete`, `tombstone`,
//! `metadata`, `health`, `stats`, `backup`, `scavenge`, `group`, `user` and
//! `api-key` are a command-line client of a running server (`cli/`).

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use strata_server::config::ServeArgs;

/// Strata, an event-store database server.
#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
    /// Check a data directory offline: every record's CRC-32, position
    /// continuity, and the index against the log. Exits non-zero on any problem.
    Verify {
        /// The data directory to check (the server must not be running on it).
        #[arg(
            long,
            visible_alias = "data",
            env = "STRATA_DATA_DIR",
            default_value = "./data"
        )]
        data_dir: std::path::PathBuf,
    },
    /// Append one event to a stream on a running server.
    Append(cli::append::AppendArgs),
    /// Append to several streams in one atomic write, described by a JSON
    /// document (see `strata multi-append --help`).
    #[command(after_help = cli::multi_append::DOCUMENT_HELP)]
    MultiAppend(cli::multi_append::MultiAppendArgs),
    /// Print the stored events of a stream or of '$all', then exit.
    Read(cli::read::ReadArgs),
    /// Follow a stream or '$all' live, printing events as they are
    /// committed, until interrupted.
    Tail(cli::tail::TailArgs),
    /// Delete a stream softly: its events are hidden and reading it fails
    /// with "not found"; the next append re-creates it, its revisions
    /// continuing. Prints the position of the delete.
    Delete(cli::delete::DeleteArgs),
    /// Delete a stream for good: every later read, append, delete or
    /// metadata call on it fails, and the name can never be used again.
    /// Prints the position of the tombstone.
    Tombstone(cli::delete::DeleteArgs),
    /// Show or replace a stream's metadata: retention (max count, max age,
    /// truncate before), access lists and custom data.
    #[command(subcommand)]
    Metadata(cli::metadata::MetadataCommand),
    /// Ask a running server whether it is serving (exit 0) or not (exit 1).
    Health(cli::health::HealthArgs),
    /// Show a running server's counters: head position, streams, events,
    /// disk use.
    Stats(cli::stats::StatsArgs),
    /// Copy a running server's store into a data directory (`--to DIR`)
    /// that `strata serve --data-dir DIR` opens: everything acknowledged
    /// before the command started. Again into the same DIR, only what
    /// changed is sent.
    Backup(cli::backup::BackupArgs),
    /// Reclaim the disk space of hidden events (deleted, tombstoned,
    /// truncated, past max-count or max-age) on a running server, online;
    /// `--wait` follows it to the end, `--status` shows it, `--stop` stops
    /// it (the next start resumes).
    Scavenge(cli::scavenge::ScavengeArgs),
    /// Consumer groups (persistent subscriptions): create, update, list,
    /// info, delete, replay-parked.
    #[command(subcommand)]
    Group(cli::group::GroupCommand),
    /// Users and their roles (admin only): create, list, delete, passwd,
    /// roles.
    #[command(subcommand)]
    User(cli::user::UserCommand),
    /// API keys of users (admin only): create (prints the key), revoke.
    #[command(subcommand)]
    ApiKey(cli::api_key::ApiKeyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve),
        Some(Command::Serve(args)) => serve(args),
        Some(Command::Verify { data_dir }) => verify(&data_dir),
        Some(Command::Append(args)) => cli::run("append", cli::append::run(args)),
        Some(Command::MultiAppend(args)) => cli::run("multi-append", cli::multi_append::run(args)),
        Some(Command::Health(args)) => cli::run("health", cli::health::run(args)),
        Some(Command::Read(args)) => cli::run("read", cli::read::run(args)),
        Some(Command::Tail(args)) => cli::run("tail", cli::tail::run(args)),
        Some(Command::Delete(args)) => cli::run("delete", cli::delete::delete(args)),
        Some(Command::Tombstone(args)) => cli::run("tombstone", cli::delete::tombstone(args)),
        Some(Command::Metadata(cli::metadata::MetadataCommand::Get(args))) => {
            cli::run("metadata get", cli::metadata::get(args))
        }
        Some(Command::Metadata(cli::metadata::MetadataCommand::Set(args))) => {
            cli::run("metadata set", cli::metadata::set(*args))
        }
        Some(Command::Stats(args)) => cli::run("stats", cli::stats::run(args)),
        Some(Command::Backup(args)) => cli::run("backup", cli::backup::run(args)),
        Some(Command::Scavenge(args)) => cli::run("scavenge", cli::scavenge::run(args)),
        Some(Command::Group(command)) => cli::run("group", cli::group::run(command)),
        Some(Command::User(command)) => cli::run("user", cli::user::run(command)),
        Some(Command::ApiKey(command)) => cli::run("api-key", cli::api_key::run(command)),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    if let Err(e) = args.validate() {
        eprintln!("strata: {e}");
        return ExitCode::from(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&args.log_filter))
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("strata: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let grpc = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| format!("cannot listen on {} (--listen): {e}", args.listen))?;
        let metrics = tokio::net::TcpListener::bind(args.metrics_listen)
            .await
            .map_err(|e| {
                format!(
                    "cannot listen on {} (--metrics-listen): {e}",
                    args.metrics_listen
                )
            })?;
        strata_server::run(args, grpc, metrics, shutdown_signal())
            .await
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "strata failed");
            eprintln!("strata: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the SIGINT/SIGTERM handlers now (so a signal during recovery
/// is not fatal, only remembered) and returns a future that resolves on the
/// first signal; a second one exits at once (acknowledged appends are
/// already on disk, so nothing acknowledged is lost).
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::error!("cannot install signal handlers; stop the server with SIGKILL");
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            eprintln!("strata: second signal, exiting now");
            std::process::exit(130);
        });
    }
}

fn verify(data_dir: &std::path::Path) -> ExitCode {
    match strata_server::store::verify(data_dir) {
        Ok(report) => {
            println!(
                "{}: {} segments, {} records, {} bytes checked, {} index entries checked",
                data_dir.display(),
                report.segments,
                report.records,
                report.bytes,
                report.index_checked
            );
            for p in &report.problems {
                println!("problem: {p}");
            }
            if report.problems.is_empty() {
                println!("ok");
                ExitCode::SUCCESS
            } else {
                println!("{} problem(s) found", report.problems.len());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("strata verify: {e}");
            ExitCode::FAILURE
        }
    }
}
