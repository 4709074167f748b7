//! The client subcommands of the `strata` binary (`append`,
//! `multi-append`, `read`, `tail`, `delete` and `tombstone`, `metadata`,
//! `health`, `stats`, `backup`, `scavenge`, `group`, `user`, `api-key`): one
//! file each, all talking to a running server through `strata-client`, over
//! the one connection [`Connection`] describes (URL, TLS, credentials).
//! They never open a data directory.
//!
//! Output: human-readable lines by default (`metadata get`: indented JSON),
//! one JSON object per line with `--json`; errors go to stderr. Exit codes:
//! 0 success, 1 server or other error (among them "authentication failed"
//! and "permission denied: ..."), 2 usage error, 3 conflict (wrong expected
//! version of an append, delete, tombstone or metadata change).

pub mod api_key;
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
pub mod user;

use std::future::Future;
use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use strata_client::{AuthChannel, Client, ClientOptions, Credentials};
use strata_proto::v1::operations_client::OperationsClient;

/// How to reach the server, who to be and how to print, shared by every
/// client subcommand.
#[derive(Clone, Debug, Args)]
pub struct Connection {
    /// URL of the server's gRPC endpoint; https://... connects with TLS
    /// (and needs --ca).
    #[arg(long, env = "STRATA_URL", default_value = "http://127.0.0.1:2113")]
    pub url: String,

    /// PEM file of the CA that signs the server's certificate (needed for
    /// an https:// URL; no system roots are used).
    #[arg(long, env = "STRATA_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// PEM file of this client's certificate, for a server that requires
    /// client certificates (mTLS; with --key).
    #[arg(
        long,
        env = "STRATA_CLIENT_CERT",
        value_name = "FILE",
        requires = "key"
    )]
    pub cert: Option<PathBuf>,

    /// PEM file of the private key of --cert.
    #[arg(
        long,
        env = "STRATA_CLIENT_KEY",
        value_name = "FILE",
        requires = "cert"
    )]
    pub key: Option<PathBuf>,

    /// The user to authenticate as (with --password).
    #[arg(
        long,
        env = "STRATA_USER",
        requires = "password",
        conflicts_with = "api_key"
    )]
    pub user: Option<String>,

    /// The password of --user.
    #[arg(
        long,
        env = "STRATA_PASSWORD",
        requires = "user",
        hide_env_values = true
    )]
    pub password: Option<Secret>,

    /// An API key to authenticate with (instead of --user and --password).
    #[arg(long, env = "STRATA_API_KEY", hide_env_values = true)]
    pub api_key: Option<Secret>,

    /// Print one JSON object per line instead of human-readable text.
    #[arg(long)]
    pub json: bool,
}

/// A password or key from the command line; `Debug` does not show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, to send it.
    fn expose(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Connection {
    /// The TLS settings of the flags (no credentials): what `health`
    /// connects with.
    fn tls_options(&self) -> Result<ClientOptions, CliError> {
        // The client checks this too; here it is said in flags.
        let https = self
            .url
            .get(..8)
            .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
        if https && self.ca.is_none() {
            return Err(CliError::Usage(format!(
                "--url {} needs --ca FILE (or STRATA_CA): the CA that signs the server's certificate",
                self.url
            )));
        }
        if !https && (self.ca.is_some() || self.cert.is_some()) {
            return Err(CliError::Usage(format!(
                "--ca, --cert and --key are for TLS: use an https:// --url (not {})",
                self.url
            )));
        }
        let mut options = ClientOptions::new();
        if let Some(ca) = &self.ca {
            options = options.tls_ca_file(ca)?;
        }
        if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
            options = options.tls_client_identity_files(cert, key)?;
        }
        Ok(options)
    }

    /// The TLS settings and credentials of the flags.
    fn options(&self) -> Result<ClientOptions, CliError> {
        let options = self.tls_options()?;
        // clap enforces --user with --password, and not with --api-key.
        Ok(match (&self.user, &self.password, &self.api_key) {
            (Some(user), Some(password), None) => {
                options.credentials(Credentials::basic(user, password.expose()))
            }
            (None, None, Some(key)) => options.credentials(Credentials::api_key(key.expose())),
            _ => options,
        })
    }

    async fn connect(&self) -> Result<Client, CliError> {
        self.connect_with(self.options()?).await
    }

    /// Connects with `options`; options that do not fit the URL (--ca
    /// with http://, https:// without --ca) are a usage error.
    async fn connect_with(&self, options: ClientOptions) -> Result<Client, CliError> {
        match Client::connect_with(self.url.as_str(), options).await {
            Ok(client) => Ok(client),
            Err(strata_client::Error::InvalidOptions { message }) => Err(CliError::Usage(message)),
            Err(e) => Err(e.into()),
        }
    }

    /// A client of the `Operations` service (not in the Rust client), over
    /// the Rust client's connection: the same TLS and credentials.
    async fn operations(&self) -> Result<OperationsClient<AuthChannel>, CliError> {
        Ok(OperationsClient::new(self.connect().await?.channel()))
    }
}

/// A failed call of a service outside the Rust client (`Operations`):
/// refused credentials or permissions as the client names them, anything
/// else as `context: <the server's message>`.
fn call_failed(context: &'static str) -> impl Fn(tonic::Status) -> CliError + Copy {
    move |status| {
        let message = status.message().to_owned();
        match strata_client::Error::from(status) {
            e @ (strata_client::Error::Unauthenticated { .. }
            | strata_client::Error::PermissionDenied { .. }) => CliError::Client(e),
            _ => CliError::Failed(format!("{context}: {message}")),
        }
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
        Err(e @ CliError::Client(strata_client::Error::Unauthenticated { .. })) => {
            eprintln!(
                "strata {name}: {e} (credentials: --user and --password, or --api-key; \
                 or STRATA_USER, STRATA_PASSWORD, STRATA_API_KEY)"
            );
            e.exit_code()
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// The connection flags alone (no STRATA_* variables are set in tests).
    #[derive(Debug, Parser)]
    struct Flags {
        #[command(flatten)]
        connection: Connection,
    }

    fn parse(args: &[&str]) -> Result<Connection, clap::Error> {
        Flags::try_parse_from(std::iter::once("strata").chain(args.iter().copied()))
            .map(|f| f.connection)
    }

    #[test]
    fn every_command_line_is_well_formed() {
        // Duplicate ids (a positional `user` beside `--user`), bad
        // `requires`/`conflicts_with` names, ...
        <crate::Cli as clap::CommandFactory>::command().debug_assert();
    }

    #[test]
    fn credentials_flags_that_do_not_fit_are_usage_errors() {
        for args in [
            &["--user", "bob"][..],
            &["--password", "a long password"],
            &["--user", "bob", "--password", "pw", "--api-key", "k"],
            &["--user", "bob", "--api-key", "k"],
            &["--cert", "c.pem"],
            &["--key", "c.key"],
        ] {
            let e = parse(args).expect_err("refused");
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
        }
    }

    #[test]
    fn credentials_flags_become_the_client_credentials() {
        let c = parse(&["--user", "bob", "--password", "a long password"]).expect("flags");
        assert_eq!(
            c.options().expect("options"),
            ClientOptions::new().credentials(Credentials::basic("bob", "a long password"))
        );
        let c = parse(&["--api-key", "sk_123"]).expect("flags");
        assert_eq!(
            c.options().expect("options"),
            ClientOptions::new().credentials(Credentials::api_key("sk_123"))
        );
        let c = parse(&[]).expect("flags");
        assert_eq!(c.options().expect("options"), ClientOptions::new());
        // `health` sends none.
        let c = parse(&["--api-key", "sk_123"]).expect("flags");
        assert_eq!(c.tls_options().expect("options"), ClientOptions::new());
    }

    #[test]
    fn tls_flags_must_fit_the_url() {
        let usage = |args: &[&str]| match parse(args).expect("flags").options() {
            Err(CliError::Usage(message)) => message,
            other => panic!("{args:?}: expected a usage error, got {other:?}"),
        };
        assert!(usage(&["--url", "https://db:2113"]).contains("needs --ca"));
        assert!(usage(&["--url", "HTTPS://db:2113"]).contains("needs --ca"));
        assert!(usage(&["--ca", "ca.pem"]).contains("https://"));
        assert!(usage(&["--cert", "c.pem", "--key", "c.key"]).contains("https://"));
        // A file that is not there is an I/O failure (exit 1), named.
        let c = parse(&["--url", "https://db:2113", "--ca", "/no/such/ca.pem"]).expect("flags");
        match c.options() {
            Err(e @ CliError::Client(strata_client::Error::ReadFile { .. })) => {
                assert!(e.to_string().contains("/no/such/ca.pem"), "{e}");
                assert_eq!(e.exit_code(), ExitCode::FAILURE);
            }
            other => panic!("expected ReadFile, got {other:?}"),
        }
    }

    #[test]
    fn debug_hides_passwords_and_keys() {
        let c = parse(&["--user", "bob", "--password", "hunter2-hunter2"]).expect("flags");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("bob") && !shown.contains("hunter2"),
            "{shown}"
        );
        let c = parse(&["--api-key", "sk_do_not_print"]).expect("flags");
        assert!(!format!("{c:?}").contains("sk_do_not_print"));
    }

    #[test]
    fn refused_calls_say_so_and_exit_1() {
        let failed = call_failed("scavenge");
        let e = failed(tonic::Status::unauthenticated("invalid credentials"));
        assert_eq!(e.to_string(), "authentication failed: invalid credentials");
        assert_eq!(e.exit_code(), ExitCode::FAILURE);
        let e = failed(tonic::Status::permission_denied("ops role required"));
        assert_eq!(e.to_string(), "permission denied: ops role required");
        assert_eq!(e.exit_code(), ExitCode::FAILURE);
        let e = failed(tonic::Status::internal("disk"));
        assert_eq!(e.to_string(), "scavenge: disk");
    }
}
