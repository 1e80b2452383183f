//! Health probes for container healthchecks (`scopegate health`), which run inside images that
//! have no shell or curl: a `grpc.health.v1` check against scopegate, or an HTTP GET.

use std::time::Duration;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Could not connect or the call failed.
    #[error("{target}: {reason}")]
    Unreachable {
        /// What was probed.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// Reachable but not healthy.
    #[error("{target}: {status}")]
    Unhealthy {
        /// What was probed.
        target: String,
        /// The reported status.
        status: String,
    },
}

/// Asks `addr` (`HOST:PORT`) for the overall `grpc.health.v1` status; Ok only for SERVING.
pub async fn grpc(addr: &str, timeout: Duration) -> Result<(), ProbeError> {
    let target = format!("grpc://{addr}");
    let unreachable = |reason: String| ProbeError::Unreachable {
        target: target.clone(),
        reason,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let status = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|e| unreachable(e.to_string()))?
        .into_inner()
        .status();
    match status {
        tonic_health::pb::health_check_response::ServingStatus::Serving => Ok(()),
        other => Err(ProbeError::Unhealthy {
            target,
            status: other.as_str_name().to_string(),
        }),
    }
}

/// GETs `url`; Ok for a 2xx answer.
pub async fn http(url: &str, timeout: Duration) -> Result<(), ProbeError> {
    let unreachable = |reason: String| ProbeError::Unreachable {
        target: url.to_string(),
        reason,
    };
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| unreachable(e.to_string()))?;
    let response = client
        .get(url)
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if response.status().is_success() {
        Ok(())
    } else {
        Err(ProbeError::Unhealthy {
            target: url.to_string(),
            status: response.status().to_string(),
        })
    }
}
