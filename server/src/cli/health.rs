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

/// Runs `strata health`.
pub async fn run(args: HealthArgs) -> Result<(), CliError> {
    let timeout = Duration::from_millis(args.timeout_ms);
    let endpoint = tonic::transport::Endpoint::from_shared(args.connection.url.clone())
        .map_err(|e| CliError::Usage(format!("--url '{}': {e}", args.connection.url)))?
        .connect_timeout(timeout)
        .timeout(timeout);
    let channel = endpoint.connect().await.map_err(|e| {
        CliError::Unhealthy(format!("cannot connect to {}: {e}", args.connection.url))
    })?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: args.service.clone(),
        })
        .await
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
