//! `strata health`: asks a running server's `grpc.health.v1.Health` service
//! whether it is serving (exit 0) or not (exit 1). The container image's
//! health check uses it.

use std::time::Duration;

use clap::Args;
use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use super::{print_line, CliError, Connection};

/// Arguments of `strata health`.
#[derive(Clone, Debug, Args)]
pub struct HealthArgs {
    /// The service to ask about; empty means the whole server.
    #[arg(long, default_value = "")]
    pub service: String,

    /// Give up after this many milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,

    #[command(flatten)]
    pub connection: Connection,
}

/// Runs `strata health`. It sends no credentials (the health service needs
/// none), but uses the connection's TLS settings.
pub async fn run(args: HealthArgs) -> Result<(), CliError> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let options = args.connection.tls_options()?.connect_timeout(timeout);
    let client = args
        .connection
        .connect_with(options)
        .await
        .map_err(|e| match e {
            CliError::Client(e) => CliError::Unhealthy(e.to_string()),
            other => other,
        })?;
    let mut health = HealthClient::new(client.channel());
    let check = health.check(HealthCheckRequest {
        service: args.service.clone(),
    });
    let answer = tokio::time::timeout(timeout, check)
        .await
        .map_err(|_| CliError::Unhealthy(format!("no answer within {timeout:?}")))?
        .map_err(|s| CliError::Unhealthy(format!("health check failed: {}", s.message())))?
        .into_inner();
    let status = ServingStatus::try_from(answer.status).unwrap_or(ServingStatus::Unknown);
    let name = status.as_str_name();
    if args.connection.json {
        print_line(&json!({ "service": args.service, "status": name }).to_string())?;
    } else {
        print_line(name)?;
    }
    if status == ServingStatus::Serving {
        Ok(())
    } else {
        Err(CliError::Unhealthy(format!("status {name}")))
    }
}
