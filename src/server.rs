//! The gRPC server: Authorization, `grpc.health.v1` and server reflection on one port, the JWKS
//! refresher beside it, and graceful shutdown when the future passed in resolves.
//!
//! Health: both the overall status (`""`) and `envoy.service.auth.v3.Authorization` report
//! NOT_SERVING until a key set has loaded, then SERVING. Envoy's gRPC health checks therefore keep
//! traffic away from an instance that could only deny.

use std::net::SocketAddr;
use std::sync::Arc;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::server::NamedService;
use tonic_health::ServingStatus;

use crate::config::Config;
use crate::jwks::{self, Jwks};
use crate::service::AuthorizationService;

/// Encoded `FileDescriptorSet` of `envoy/service/auth/v3/external_auth.proto` and its imports,
/// compiled by `build.rs` from the protos shipped in the `envoy-types` crate in use.
pub const EXT_AUTHZ_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ext_authz_descriptor.bin"));

/// The gRPC name of the Authorization service.
pub const AUTHORIZATION_SERVICE: &str =
    <AuthorizationServer<AuthorizationService> as NamedService>::NAME;

/// How long shutdown waits for open connections to finish before closing them.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The configured address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The HTTP client for JWKS fetches could not be built.
    #[error("cannot build the JWKS HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The reflection service could not load its descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The gRPC transport failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Binds `config.listen` and serves until `shutdown` resolves.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), ServerError> {
    let addr = config.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })?;
    serve(config, listener, shutdown).await
}

/// Serves on an already-bound listener until `shutdown` resolves; in-flight calls finish first.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let local = listener.local_addr().ok();
    let config = Arc::new(config);
    let jwks = Jwks::new(config.jwks.clone());
    let client = jwks::http_client(&config.jwks)?;

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    set_health(&health_reporter, ServingStatus::NotServing).await;

    // Both reflection versions describe the same services (grpcurl and other tools differ in
    // which one they ask).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(EXT_AUTHZ_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    // Background tasks stop when this sender is dropped or set.
    let (stop_tx, stop_rx) = watch::channel(false);
    let stopped = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let refresher = tokio::spawn(jwks.clone().run_refresher(client, stopped(stop_rx.clone())));
    let health_task = tokio::spawn(track_health(
        jwks.clone(),
        health_reporter,
        stopped(stop_rx),
    ));

    tracing::info!(
        listen = ?local,
        issuer = %config.expectations.issuer,
        jwks_uri = %config.jwks.uri,
        rules = config.policy.rules.len(),
        "scopegate serving"
    );
    let service = AuthorizationService::new(Arc::clone(&config), jwks);
    // Once shutdown starts, connections get GOAWAY and in-flight calls may finish; a client that
    // keeps its connection open anyway must not hold the process forever.
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = draining_tx.send(());
    };
    let server = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(AuthorizationServer::new(service))
        .serve_with_incoming_shutdown(incoming(listener), shutdown);
    let drain_deadline = async move {
        if draining_rx.await.is_ok() {
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let result = tokio::select! {
        result = server => result,
        () = drain_deadline => {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "connections still open after the drain timeout; closing");
            Ok(())
        }
    };

    let _ = stop_tx.send(true);
    let _ = refresher.await;
    let _ = health_task.await;
    tracing::info!("scopegate stopped");
    Ok(result?)
}

/// Accepted connections, with Nagle's algorithm off: a Check answer is a few small HTTP/2
/// frames that Envoy is waiting for, and holding them back for an ACK only adds latency.
fn incoming(listener: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// Keeps health in step with the key set: SERVING while protected requests can be verified,
/// NOT_SERVING before the first load and after the last good set has gone stale.
async fn track_health(
    jwks: Jwks,
    reporter: tonic_health::server::HealthReporter,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut serving = false;
    // Woken by each fetch, so SERVING follows the first load at once: an instance that already
    // verifies tokens must not tell Envoy's health check NOT_SERVING and be taken out of service.
    // The timer is for the other change, a key set going stale with time.
    let mut fetched = jwks.fetch_attempts();
    loop {
        let usable = jwks.is_usable();
        if usable != serving {
            serving = usable;
            let status = if usable {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            };
            set_health(&reporter, status).await;
            if usable {
                tracing::info!("health: SERVING");
            } else {
                tracing::warn!("health: NOT_SERVING (signing keys are stale)");
            }
        }
        tokio::select! {
            Ok(()) = fetched.changed() => {}
            () = tokio::time::sleep(HEALTH_POLL) => {}
            () = &mut stop => return,
        }
    }
}

/// Sets both health entries Envoy may ask about: the overall status (`""`) and the
/// Authorization service's.
async fn set_health(reporter: &tonic_health::server::HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status(AUTHORIZATION_SERVICE, status)
        .await;
}

/// How often health re-evaluates whether the key set is usable.
const HEALTH_POLL: std::time::Duration = std::time::Duration::from_millis(250);

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: the signals an orchestrator or a terminal sends.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutdown signal received; draining");
}
