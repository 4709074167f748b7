//! `strata user create|list|delete|passwd|roles`: the users of a running
//! server and their roles (admin only, except `passwd` of one's own user).
//! `roles NAME` alone prints the roles; `roles NAME R...` or `--none` sets
//! them.
//! The caller authenticates with the connection's `--user`/`--password` or
//! `--api-key`, so the user's new password is `--new-password` (or `-`: the
//! first line of stdin, kept out of the process list and shell history).

use std::io::BufRead as _;

use clap::{Args, Subcommand};
use serde_json::json;
use strata_client::UserInfo;

use super::{print_line, CliError, Connection, Secret};

/// `strata user …`.
#[derive(Clone, Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user with a password and roles.
    Create(CreateArgs),
    /// Print every user with its roles and API key names.
    List(ListArgs),
    /// Delete a user and revoke its API keys.
    Delete(NameArgs),
    /// Replace a user's password (any user may change their own).
    Passwd(PasswdArgs),
    /// Replace a user's roles (--none: no roles), or print them.
    Roles(RolesArgs),
}

/// Arguments of `strata user create`.
#[derive(Clone, Debug, Args)]
pub struct CreateArgs {
    /// The user's name: letters, digits, '.', '_', '-', '@'.
    pub name: String,
    /// The user's password (8 to 1024 bytes), or - to read it from stdin.
    #[arg(long, value_name = "PASSWORD|-")]
    pub new_password: Secret,
    /// A role: reader, writer, ops or admin (repeatable; each includes the
    /// ones before it). None: the user may do what stream ACLs grant it.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

/// Arguments of `strata user list`.
#[derive(Clone, Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub connection: Connection,
}

/// Arguments naming one user.
#[derive(Clone, Debug, Args)]
pub struct NameArgs {
    /// The user's name.
    pub name: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// Arguments of `strata user passwd`.
#[derive(Clone, Debug, Args)]
pub struct PasswdArgs {
    /// The user's name.
    pub name: String,
    /// The new password (8 to 1024 bytes), or - to read it from stdin.
    #[arg(long, value_name = "PASSWORD|-")]
    pub new_password: Secret,
    #[command(flatten)]
    pub connection: Connection,
}

/// Arguments of `strata user roles`.
#[derive(Clone, Debug, Args)]
pub struct RolesArgs {
    /// The user's name.
    pub name: String,
    /// Its new roles: reader, writer, ops, admin. None given: print its
    /// roles.
    #[arg(value_name = "ROLE")]
    pub roles: Vec<String>,
    /// Take every role away (the user may still do what stream ACLs grant
    /// it by name).
    #[arg(long, conflicts_with = "roles")]
    pub none: bool,
    #[command(flatten)]
    pub connection: Connection,
}

/// The password of `--new-password`: as given, or the first line of stdin
/// for `-` (without its line ending).
fn password(given: &Secret) -> Result<String, CliError> {
    if given.expose() != "-" {
        return Ok(given.expose().to_owned());
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|source| CliError::Io {
            context: "reading the password from stdin",
            source,
        })?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(CliError::Usage(
            "--new-password -: stdin holds no password".into(),
        ));
    }
    Ok(password.to_owned())
}

/// `created user alice`, or `{"user": "alice", "created": true}`.
fn done(connection: &Connection, name: &str, what: &str) -> Result<(), CliError> {
    let line = if connection.json {
        json!({ "user": name, what: true }).to_string()
    } else {
        format!("{what} user {name}")
    };
    print_line(&line)
}

/// The rows of `strata user list`: a header, then one user a line, in
/// columns as wide as their longest value.
fn table(users: &[UserInfo]) -> Vec<String> {
    let joined = |items: &[String]| {
        if items.is_empty() {
            "-".to_owned()
        } else {
            items.join(",")
        }
    };
    let rows: Vec<[String; 3]> = users
        .iter()
        .map(|u| [u.user.clone(), joined(&u.roles), joined(&u.api_keys)])
        .collect();
    let header = ["USER".to_owned(), "ROLES".to_owned(), "API KEYS".to_owned()];
    let width = |i: usize| {
        rows.iter()
            .chain(std::iter::once(&header))
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1) = (width(0), width(1));
    std::iter::once(&header)
        .chain(&rows)
        .map(|[user, roles, keys]| format!("{user:<w0$}  {roles:<w1$}  {keys}"))
        .collect()
}

/// Runs `strata user …`.
pub async fn run(command: UserCommand) -> Result<(), CliError> {
    match command {
        UserCommand::Create(a) => {
            let password = password(&a.new_password)?;
            let client = a.connection.connect().await?;
            client.users().create(&a.name, password, &a.roles).await?;
            done(&a.connection, &a.name, "created")
        }
        UserCommand::List(a) => {
            let client = a.connection.connect().await?;
            let users = client.users().list().await?;
            if a.connection.json {
                for u in &users {
                    print_line(
                        &json!({ "user": u.user, "roles": u.roles, "api_keys": u.api_keys })
                            .to_string(),
                    )?;
                }
                return Ok(());
            }
            for line in table(&users) {
                print_line(line.trim_end())?;
            }
            Ok(())
        }
        UserCommand::Delete(a) => {
            let client = a.connection.connect().await?;
            client.users().delete(&a.name).await?;
            done(&a.connection, &a.name, "deleted")
        }
        UserCommand::Passwd(a) => {
            let password = password(&a.new_password)?;
            let client = a.connection.connect().await?;
            client.users().set_password(&a.name, password).await?;
            done(&a.connection, &a.name, "changed the password of")
        }
        UserCommand::Roles(a) => {
            let client = a.connection.connect().await?;
            let roles = if a.roles.is_empty() && !a.none {
                // Only asked: a typo must not take a user's roles away.
                let users = client.users().list().await?;
                let Some(user) = users.into_iter().find(|u| u.user == a.name) else {
                    return Err(CliError::Failed(format!("no user '{}'", a.name)));
                };
                user.roles
            } else {
                client.users().set_roles(&a.name, &a.roles).await?;
                a.roles
            };
            let line = if a.connection.json {
                json!({ "user": a.name, "roles": roles }).to_string()
            } else if roles.is_empty() {
                format!("user {} has no roles", a.name)
            } else {
                format!("user {} has roles {}", a.name, roles.join(","))
            };
            print_line(&line)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, roles: &[&str], keys: &[&str]) -> UserInfo {
        let mut u = UserInfo::default();
        u.user = name.into();
        u.roles = roles.iter().map(|r| r.to_string()).collect();
        u.api_keys = keys.iter().map(|k| k.to_string()).collect();
        u
    }

    #[test]
    fn the_table_lines_up() {
        let lines = table(&[
            user("admin", &["admin"], &[]),
            user(
                "billing-service",
                &["writer", "ops"],
                &["worker-1", "worker-2"],
            ),
        ]);
        assert_eq!(
            lines,
            [
                "USER             ROLES       API KEYS",
                "admin            admin       -",
                "billing-service  writer,ops  worker-1,worker-2",
            ]
        );
    }
}
