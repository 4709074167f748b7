//! `strata api-key create|revoke USER NAME`: the API keys of a running
//! server's users (admin only). `create` prints the key alone on stdout
//! (`KEY=$(strata api-key create billing worker-1)`): it is shown this once.

use clap::{Args, Subcommand};
use serde_json::json;

use super::{print_line, CliError, Connection};

/// `strata api-key …`.
#[derive(Clone, Debug, Subcommand)]
pub enum ApiKeyCommand {
    /// Create an API key for a user and print it (shown this once).
    Create(KeyArgs),
    /// Revoke a user's API key; it stops working at once.
    Revoke(KeyArgs),
}

/// Arguments naming one key.
#[derive(Clone, Debug, Args)]
pub struct KeyArgs {
    /// The user the key authenticates as.
    // Not `user`: that is the connection's `--user`.
    #[arg(id = "owner", value_name = "USER")]
    pub owner: String,
    /// The key's name, unique per user.
    #[arg(value_name = "NAME")]
    pub name: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `strata api-key …`.
pub async fn run(command: ApiKeyCommand) -> Result<(), CliError> {
    match command {
        ApiKeyCommand::Create(a) => {
            let client = a.connection.connect().await?;
            let key = client.users().create_api_key(&a.owner, &a.name).await?;
            let line = if a.connection.json {
                json!({ "user": a.owner, "name": a.name, "key": key }).to_string()
            } else {
                key
            };
            print_line(&line)
        }
        ApiKeyCommand::Revoke(a) => {
            let client = a.connection.connect().await?;
            client.users().revoke_api_key(&a.owner, &a.name).await?;
            let line = if a.connection.json {
                json!({ "user": a.owner, "name": a.name, "revoked": true }).to_string()
            } else {
                format!("revoked API key {} of user {}", a.name, a.owner)
            };
            print_line(&line)
        }
    }
}
