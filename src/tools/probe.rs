//! Health probes for container healthchecks (`scopegate health`), which run inside images that
//! have no shell or curl: a `grpc.health.v1` check against scopegate, or an HTTP GET.

use std::path::PathBuf;
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

/// How a gRPC probe speaks TLS to a listener that requires it.
#[derive(Debug, Clone, Default)]
pub struct ProbeTls {
    /// PEM CA certificate(s) the server's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM client certificate and key, for a listener that requires one.
    pub client: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must hold; default: the host of the address.
    pub server_name: Option<String>,
}

/// Asks `addr` (`HOST:PORT`, or `unix:PATH` for a Unix socket) for the overall `grpc.health.v1`
/// status, over TLS with `tls` (TCP only); Ok only for SERVING.
pub async fn grpc(addr: &str, timeout: Duration, tls: Option<&ProbeTls>) -> Result<(), ProbeError> {
    let target = match (addr.starts_with("unix:"), tls.is_some()) {
        (true, _) => addr.to_string(),
        (false, true) => format!("https://{addr}"),
        (false, false) => format!("grpc://{addr}"),
    };
    let channel = connect(addr, timeout, tls)
        .await
        .map_err(|reason| ProbeError::Unreachable {
            target: target.clone(),
            reason,
        })?;
    check_health(target, channel).await
}

/// A channel to `addr` (`HOST:PORT` or `unix:PATH`), over TLS with `tls`; or why not.
async fn connect(
    addr: &str,
    timeout: Duration,
    tls: Option<&ProbeTls>,
) -> Result<tonic::transport::Channel, String> {
    if let Some(path) = addr.strip_prefix("unix:") {
        if tls.is_some() {
            return Err("a Unix socket listener does not speak TLS".into());
        }
        return unix_channel(path.into(), timeout)
            .await
            .map_err(|e| e.to_string());
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = tonic::transport::Endpoint::from_shared(format!("{scheme}://{addr}"))
        .map_err(|e| e.to_string())?;
    if let Some(tls) = tls {
        let read =
            |path: &PathBuf| std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()));
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(read(&tls.ca_file)?));
        if let Some((cert, key)) = &tls.client {
            config = config.identity(tonic::transport::Identity::from_pem(
                read(cert)?,
                read(key)?,
            ));
        }
        let server_name = tls.server_name.clone().unwrap_or_else(|| {
            addr.rsplit_once(':')
                .map_or(addr, |(host, _)| host)
                .trim_matches(['[', ']'])
                .to_string()
        });
        endpoint = endpoint
            .tls_config(config.domain_name(server_name))
            .map_err(|e| e.to_string())?;
    }
    endpoint
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| e.to_string())
}

/// A gRPC channel to the Unix socket at `path` (scopegate's `listen = "unix:PATH"`).
pub async fn unix_channel(
    path: PathBuf,
    timeout: Duration,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    tonic::transport::Endpoint::from_static("http://localhost")
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                tokio::net::UnixStream::connect(path)
                    .await
                    .map(hyper_util::rt::TokioIo::new)
            }
        }))
        .await
}

async fn check_health(
    target: String,
    channel: tonic::transport::Channel,
) -> Result<(), ProbeError> {
    let unreachable = |reason: String| ProbeError::Unreachable {
        target: target.clone(),
        reason,
    };
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
