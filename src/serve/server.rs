//! The gRPC server: Authorization, `grpc.health.v1` and server reflection on one port, the JWKS
//! refresher beside it, and graceful shutdown when the future passed in resolves.
//!
//! Health: both the overall status (`""`) and `envoy.service.auth.v3.Authorization` report
//! NOT_SERVING until a key set has loaded, then SERVING. Envoy's gRPC health checks therefore keep
//! traffic away from an instance that could only deny. A third entry, [`LIVENESS_SERVICE`], is
//! SERVING from the start and never follows the keys: it answers "is the process alive and
//! serving gRPC?", for a liveness probe that must not restart every instance while the identity
//! provider is down (a restart cannot bring keys back, and drops the last good key set).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use std::time::Duration;

use envoy_types::ext_authz::v3::pb::AuthorizationServer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;
use tonic::server::NamedService;
use tonic_health::ServingStatus;

use crate::auth::jwks::{self, Jwks};
use crate::config::{Config, ConfigError, ListenAddr, RawConfig, ServerLimits};
use crate::decide::Generation;
use crate::net::listener;
use crate::serve::reload;
use crate::serve::service::AuthorizationService;
use crate::telemetry::metrics::{self, Metrics, ReloadResult};
use crate::telemetry::traces::Tracer;

/// Encoded `FileDescriptorSet` of `envoy/service/auth/v3/external_auth.proto` and its imports,
/// compiled by `build.rs` from the protos shipped in the `envoy-types` crate in use.
pub const EXT_AUTHZ_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/ext_authz_descriptor.bin"));

/// The gRPC name of the Authorization service.
pub const AUTHORIZATION_SERVICE: &str =
    <AuthorizationServer<AuthorizationService> as NamedService>::NAME;

/// How long shutdown waits for open connections to finish before closing them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for the last spans to reach the collector.
pub const TRACE_FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The `grpc.health.v1` service name that reports SERVING whenever the server runs, whatever the
/// state of the key sets: the entry for liveness probes (Kubernetes' `livenessProbe.grpc.service`).
/// Readiness belongs on [`AUTHORIZATION_SERVICE`] (or `""`), which follows the keys.
pub const LIVENESS_SERVICE: &str = "scopegate.liveness";

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
    #[error("cannot build an issuer's HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// The reflection service could not load its descriptors.
    #[error("cannot build the reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The TLS files are unusable.
    #[error(transparent)]
    Tls(#[from] crate::net::tls::TlsError),
    /// The Unix socket could not be set up.
    #[error("cannot listen on unix:{path}: {reason}")]
    UnixSocket {
        /// The socket's path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The configuration file's directory cannot be watched (`reload_on_change`).
    #[error("cannot watch the configuration file for changes: {0}")]
    Watch(String),
    /// The trace exporter could not be set up (`[tracing]`).
    #[error("cannot set up tracing: {0}")]
    Tracing(#[from] crate::telemetry::traces::TracingError),
}

/// Binds `config.listen` and serves until `shutdown` resolves. SIGHUP reloads the
/// configuration from `config_path` (the handler is installed before anything is bound, so a
/// hangup during start-up does not end the process); with `reload_on_change`, so does a change
/// in the file's directory.
pub async fn run(
    config: Config,
    config_path: Option<PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let mut requests = reload::Requests::new();
    #[cfg(unix)]
    if let Err(e) = requests.on_sighup() {
        tracing::error!(error = %e, "cannot listen for SIGHUP; reload by signal is unavailable");
    }
    if config.reload_on_change() {
        match &config_path {
            Some(path) => requests
                .watch(path)
                .map_err(|e| ServerError::Watch(e.to_string()))?,
            None => tracing::warn!(
                "reload_on_change is set, but there is no configuration file to watch"
            ),
        }
    }
    let listener = match config.listen() {
        ListenAddr::Tcp(addr) => listener::Bound::Tcp(bind_tcp(*addr).await?),
        ListenAddr::Unix(path) => bind_unix(path).await?,
    };
    let socket = match &listener {
        listener::Bound::Unix(_, path) => Some(path.clone()),
        listener::Bound::Tcp(_) => None,
    };
    let served = serve_with(
        config,
        listener,
        config_path.map(|p| (p, requests)),
        shutdown,
    )
    .await;
    // Leave no socket file behind for the next start to find.
    if let Some(path) = socket {
        let _ = std::fs::remove_file(path);
    }
    served
}

/// Binds a TCP listener, naming the address when it cannot.
async fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind { addr, source })
}

/// The mode of the Unix socket file: its owner and group may connect (Envoy in the same pod
/// shares the group through `fsGroup`), nobody else.
pub const UNIX_SOCKET_MODE: u32 = 0o660;

/// Binds a Unix socket at `path` with [`UNIX_SOCKET_MODE`]. A socket file left by an earlier
/// run is removed first, but only if it is a socket and nothing answers on it; any other file
/// there is an error, never deleted.
async fn bind_unix(path: &std::path::Path) -> Result<listener::Bound, ServerError> {
    use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
    let fail = |reason: String| ServerError::UnixSocket {
        path: path.display().to_string(),
        reason,
    };
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(fail("another process is listening on it".into()));
            }
            std::fs::remove_file(path)
                .map_err(|e| fail(format!("cannot remove the stale socket: {e}")))?;
            tracing::info!(path = %path.display(), "removed a stale socket file");
        }
        Ok(_) => {
            return Err(fail(
                "a file that is not a socket is in the way; not removing it".into(),
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(fail(e.to_string())),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|e| fail(e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(UNIX_SOCKET_MODE))
        .map_err(|e| fail(format!("cannot set its mode: {e}")))?;
    Ok(listener::Bound::Unix(listener, path.to_path_buf()))
}

/// Serves on an already-bound listener until `shutdown` resolves; in-flight calls finish first.
/// No reloads.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    serve_with(config, listener, None, shutdown).await
}

/// [`serve`], reloading the configuration from the file at `reload.0` whenever `reload.1` asks.
pub async fn serve_with(
    config: Config,
    listener: impl Into<listener::Bound>,
    reload: Option<(PathBuf, reload::Requests)>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let listener = listener.into();
    let local = listener.describe();
    let config = Arc::new(config);
    let metrics = Metrics::new();
    export_known_series(&metrics, &config);
    // Set up once for the process: a reload cannot change `[tracing]`.
    let tracer = match config.tracing() {
        Some(settings) => Some(Tracer::start(
            settings.export(),
            metrics.trace_spans_dropped(),
        )?),
        None => None,
    };
    // TLS files are read before anything is served, so an unusable certificate fails start-up.
    let tls: Option<listener::TlsSlot> = match config.tls() {
        Some(files) => Some(Arc::new(ArcSwap::new(crate::net::tls::server_config(
            files,
        )?))),
        None => None,
    };
    let health_listener = match config.health_listen() {
        Some(addr) => Some(bind_tcp(addr).await?),
        None => None,
    };
    // The metrics listener is bound before anything starts, so a taken port fails start-up.
    let metrics_listener = match config.metrics_listen() {
        Some(addr) => Some(bind_tcp(addr).await?),
        None => None,
    };
    let http_listener = match config.http_listen() {
        Some(addr) => Some(bind_tcp(addr).await?),
        None => None,
    };
    // One key set per issuer, all waking the same health observer.
    let fetched = Arc::new(tokio::sync::Notify::new());
    let fetched_for_reload = Arc::clone(&fetched);
    let mut key_sets = KeySets::new(Arc::clone(&fetched), metrics.clone(), tracer.clone());
    let live = Arc::new(ArcSwap::from_pointee(
        Generation::new(Arc::clone(&config), key_sets.update(&config)?.0).traced(tracer.clone()),
    ));

    log_config_warnings(&config);
    let limits = config.server().clone();
    warn_if_descriptors_run_out_first(limits.max_connections);
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    let health_service = health_service.max_decoding_message_size(limits.max_request_bytes);
    set_health(&health_reporter, ServingStatus::NotServing).await;
    // Set once, before anything is served, and never touched by the health tracker: the main
    // and the health-only listener share this health service, so both answer it.
    health_reporter
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;

    // Both reflection versions describe the same services (grpcurl and other tools differ in
    // which one they ask).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(EXT_AUTHZ_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection()
        .build_v1()?
        .max_decoding_message_size(limits.max_request_bytes);
    let reflection_v1alpha = reflection()
        .build_v1alpha()?
        .max_decoding_message_size(limits.max_request_bytes);

    // Background tasks stop when this sender is dropped or set.
    let (stop_tx, stop_rx) = watch::channel(false);
    let health_task = tokio::spawn(supervise(
        "health tracker",
        {
            let (live, stop_rx) = (Arc::clone(&live), stop_rx.clone());
            move || {
                track_health(
                    Arc::clone(&live),
                    Arc::clone(&fetched),
                    health_reporter.clone(),
                    stopped(stop_rx.clone()),
                )
            }
        },
        || {},
        stop_rx.clone(),
    ));
    let metrics_task = metrics_listener.map(|listener| {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(listen = %addr, "metrics serving on /metrics");
        tokio::spawn(metrics::serve(
            listener,
            metrics.clone(),
            stopped(stop_rx.clone()),
        ))
    });
    // The reload loop owns the key sets while it runs and hands them back when it stops.
    let (reload_task, idle_key_sets) = match reload {
        Some((path, requests)) => (
            Some(tokio::spawn(reload_loop(
                Reloader {
                    path,
                    requests,
                    live: Arc::clone(&live),
                    key_sets,
                    metrics: metrics.clone(),
                    fetched: Arc::clone(&fetched_for_reload),
                    tls: tls.clone(),
                },
                stopped(stop_rx.clone()),
            ))),
            None,
        ),
        None => (None, Some(key_sets)),
    };

    let issuers: Vec<&str> = config
        .issuers()
        .iter()
        .map(|issuer| issuer.expectations.issuer.as_str())
        .collect();
    tracing::info!(
        listen = %local,
        issuers = ?issuers,
        rules = config.policy().rules().len(),
        "scopegate serving"
    );
    // The plaintext health-only listener: for kubelet probes, which cannot speak TLS. It serves
    // grpc.health.v1 and nothing else, under the same connection limits.
    let health_only = health_listener.map(|listener| {
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        tracing::info!(listen = %addr, "health (plaintext, grpc.health.v1 only) serving");
        let routes = tonic::service::Routes::new(health_service.clone()).prepare();
        // 4 streams and no keepalive pings, as before; the age limit too, so that a health
        // Watch stream, which keeps its connection from ever being idle, cannot hold it for ever.
        let limits = listener::Limits {
            max_connections: limits.max_connections,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
            max_concurrent_streams: 4,
            max_header_list_bytes: MAX_HEADER_LIST_BYTES,
            keepalive: None,
            max_connection_age: Some(limits.max_connection_age),
        };
        let stop = stopped(stop_rx.clone());
        tokio::spawn(listener::serve(listener, limits, None, None, routes, stop))
    });
    let connections = metrics.connections();
    let (closing_tx, closing_rx) = watch::channel(false);
    // The HTTP authorization listener decides with the same live generation and metrics, and
    // stops and drains with the gRPC listener (under the same drain deadline).
    let http = super::http::serve_if(
        http_listener,
        config.http_server(),
        Arc::clone(&live),
        metrics.clone(),
        stopped(closing_rx),
    );
    let service = AuthorizationService::with_live(Arc::clone(&live), metrics);
    // Once shutdown starts, connections get GOAWAY and in-flight calls may finish; a client that
    // keeps its connection open anyway must not hold the process forever.
    let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        shutdown.await;
        let _ = closing_tx.send(true);
        let _ = draining_tx.send(());
    };
    let routes = tonic::service::Routes::new(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(
            AuthorizationServer::new(service).max_decoding_message_size(limits.max_request_bytes),
        )
        .prepare();
    // Every connection is served by the listener (see `listener`), with HTTP/2's limits from
    // `[server]`. An idle or aged connection gets a graceful GOAWAY; one that ignores it is
    // closed once it has sent no request frame for another idle timeout.
    let server = listener::serve(
        listener,
        listener::Limits {
            max_connections: limits.max_connections,
            handshake_timeout: limits.handshake_timeout,
            idle_timeout: limits.idle_timeout,
            max_concurrent_streams: limits.max_concurrent_streams,
            max_header_list_bytes: MAX_HEADER_LIST_BYTES,
            keepalive: Some((limits.keepalive_interval, limits.keepalive_timeout)),
            max_connection_age: Some(limits.max_connection_age),
        },
        tls,
        Some(connections),
        routes,
        shutdown,
    );
    let drain_deadline = async move {
        if draining_rx.await.is_ok() {
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = async { tokio::join!(server, http) } => {}
        () = drain_deadline => {
            tracing::warn!(timeout = ?DRAIN_TIMEOUT, "connections still open after the drain timeout; closing");
        }
    }

    let _ = stop_tx.send(true);
    // Every refresher is stopped and awaited, the reload loop's included.
    if let Some(key_sets) = idle_key_sets {
        key_sets.stop_all().await;
    }
    if let Some(task) = reload_task
        && let Ok(key_sets) = task.await
    {
        key_sets.stop_all().await;
    }
    let _ = health_task.await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    if let Some(task) = health_only {
        let _ = task.await;
    }
    // The spans of the last Checks are flushed, for a bounded time: a collector that does not
    // answer cannot hold the process.
    if let Some(tracer) = tracer {
        let _ = tokio::task::spawn_blocking(move || tracer.shutdown(TRACE_FLUSH_TIMEOUT)).await;
    }
    tracing::info!("scopegate stopped");
    Ok(())
}

/// Resolves once `stop` is set or its sender is gone.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// One issuer's key set and its supervised refresher.
struct IssuerKeys {
    issuer: String,
    settings: jwks::JwksSettings,
    /// An issuer whose every token is introspected (`introspection = "always"`): its key set
    /// stays empty and no refresher runs for it.
    keyless: bool,
    jwks: Jwks,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// The key sets of the issuers in force. A reload keeps the key set (and its refresher, and
/// its refetch gate) of every issuer whose name and fetch settings are unchanged, so a reload
/// causes no refetch storm; it starts refreshers for new issuers and stops those of removed
/// ones. The fetch settings include the contents of the issuer's `ca_file`, read again by every
/// reload: a renewed CA makes the issuer a changed one, fetched again with a client that trusts
/// it.
struct KeySets {
    entries: Vec<IssuerKeys>,
    fetched: Arc<tokio::sync::Notify>,
    metrics: Metrics,
    /// Where the refreshers' fetch spans go, when tracing is on.
    tracer: Option<Tracer>,
}

impl KeySets {
    fn new(fetched: Arc<tokio::sync::Notify>, metrics: Metrics, tracer: Option<Tracer>) -> KeySets {
        KeySets {
            entries: Vec::new(),
            fetched,
            metrics,
            tracer,
        }
    }

    /// The key sets for `config`'s issuers, in its order: kept where unchanged, new (with a
    /// refresher started) otherwise, and which are new. Refreshers of issuers `config` no
    /// longer has are stopped.
    ///
    /// The HTTP clients of new issuers are built before anything changes, so an error leaves
    /// the key sets in force (and their refreshers) as they were.
    fn update(&mut self, config: &Config) -> Result<(Vec<Jwks>, Vec<Jwks>), ServerError> {
        let unchanged = |issuer: &crate::config::Issuer, e: &IssuerKeys| {
            e.issuer == issuer.expectations.issuer
                && e.settings == issuer.jwks
                && e.keyless == issuer.introspects_jwts()
        };
        let mut clients = config
            .issuers()
            .iter()
            .map(|issuer| {
                if self.entries.iter().any(|e| unchanged(issuer, e)) {
                    Ok(None)
                } else {
                    jwks::http_client(&issuer.jwks).map(Some)
                }
            })
            .collect::<Result<Vec<_>, _>>()?
            .into_iter();
        let mut kept: Vec<IssuerKeys> = Vec::with_capacity(config.issuers().len());
        let mut key_sets = Vec::with_capacity(config.issuers().len());
        let mut started = Vec::new();
        for issuer in config.issuers() {
            let name = &issuer.expectations.issuer;
            let entry = match (
                self.entries.iter().position(|e| unchanged(issuer, e)),
                clients.next().flatten(),
            ) {
                (Some(at), _) => self.entries.swap_remove(at),
                (None, client) => {
                    // Each issuer its own client: its own trusted roots, and no connection
                    // that another issuer's roots vouched for.
                    // Built above for every issuer not kept; built here only should that
                    // ever not hold, rather than start a refresher without a client.
                    let client = match client {
                        Some(client) => client,
                        None => jwks::http_client(&issuer.jwks)?,
                    };
                    let entry = self.start(name, &issuer.jwks, client, issuer.introspects_jwts());
                    if !entry.keyless {
                        started.push(entry.jwks.clone());
                    }
                    entry
                }
            };
            key_sets.push(entry.jwks.clone());
            kept.push(entry);
        }
        for removed in std::mem::replace(&mut self.entries, kept) {
            tracing::info!(issuer = %removed.issuer, "issuer removed or changed; its key refresher stops");
            let _ = removed.stop.send(true);
        }
        Ok((key_sets, started))
    }

    fn start(
        &mut self,
        issuer: &str,
        settings: &jwks::JwksSettings,
        client: crate::net::outbound::Client,
        keyless: bool,
    ) -> IssuerKeys {
        if keyless {
            // Its tokens are all introspected: its keys are never fetched, nor counted.
            let (stop, _) = watch::channel(false);
            return IssuerKeys {
                issuer: issuer.to_string(),
                settings: settings.clone(),
                keyless,
                jwks: Jwks::new(settings.clone()),
                stop,
                task: tokio::spawn(async {}),
            };
        }
        let jwks = Jwks::with_observer(
            settings.clone(),
            Arc::clone(&self.fetched),
            self.metrics.issuer(issuer),
        );
        if let Some(tracer) = &self.tracer {
            jwks.trace_with(tracer.clone());
        }
        let (stop, stop_rx) = watch::channel(false);
        // Supervised: a refresher that ends while serving is logged at error and restarted,
        // never left dead while health and the refetch gate still count on it.
        let task = tokio::spawn(supervise(
            "JWKS refresher",
            {
                let (jwks, stop_rx) = (jwks.clone(), stop_rx.clone());
                move || {
                    jwks.clone()
                        .run_refresher(client.clone(), stopped(stop_rx.clone()))
                }
            },
            {
                let jwks = jwks.clone();
                move || jwks.refresher_stopped()
            },
            stop_rx,
        ));
        IssuerKeys {
            issuer: issuer.to_string(),
            settings: settings.clone(),
            keyless,
            jwks,
            stop,
            task,
        }
    }

    /// Stops every refresher and waits for them.
    async fn stop_all(self) {
        for entry in &self.entries {
            let _ = entry.stop.send(true);
        }
        for entry in self.entries {
            let _ = entry.task.await;
        }
    }
}

/// What the reload loop works with.
struct Reloader {
    path: PathBuf,
    requests: reload::Requests,
    live: Arc<ArcSwap<Generation>>,
    key_sets: KeySets,
    metrics: Metrics,
    /// Woken after a reload, so health looks at the new key sets at once.
    fetched: Arc<tokio::sync::Notify>,
    tls: Option<listener::TlsSlot>,
}

/// How one reload attempt ended.
enum Attempt {
    /// A file change, and the file's bytes are those in force: nothing to do.
    Unchanged,
    /// The new configuration is in force.
    Applied,
    /// Refused; the old configuration stays in force.
    Refused(Refusal),
}

/// What a refusal was about: the file's bytes (none when it could not be read) and why.
#[derive(PartialEq, Eq)]
struct Refusal {
    bytes: Option<Vec<u8>>,
    error: String,
}

/// Reloads the configuration from `path` whenever `requests` asks, until `stop`; returns the key
/// sets so that shutdown can stop their refreshers.
///
/// A valid file replaces the generation in force atomically (Checks already running finish on
/// theirs); an invalid one is refused with an error naming the key, counted, and the old
/// configuration stays. A change detected by the file watch is applied only if the file's bytes
/// differ from those in force, and one that meets the same refusal as the attempt before it (the
/// same bytes, the same error: a bad file left in place while something else in the directory
/// changes) is neither counted nor logged again, so the failure count says how many bad
/// versions were written. A signal always rereads everything, and its refusal always counts.
/// Settings bound at start-up (`listen`, `metrics_listen`, the `[server]` limits but
/// `check_timeout_ms`) keep their old values, with a warning that they need a restart.
async fn reload_loop(mut reloader: Reloader, stop: impl Future<Output = ()>) -> KeySets {
    tokio::pin!(stop);
    let mut in_force = std::fs::read(&reloader.path).ok();
    let mut last_refusal: Option<Refusal> = None;
    loop {
        let trigger = tokio::select! {
            trigger = reloader.requests.next() => trigger,
            () = &mut stop => return reloader.key_sets,
        };
        tracing::debug!(?trigger, "reload requested");
        match reloader.attempt(trigger, &mut in_force).await {
            Attempt::Unchanged | Attempt::Applied => last_refusal = None,
            Attempt::Refused(refusal) => {
                if trigger == reload::Trigger::FileChanged
                    && last_refusal.as_ref() == Some(&refusal)
                {
                    tracing::debug!(
                        ?trigger,
                        "the same content meets the same refusal; not counted again"
                    );
                    continue;
                }
                reloader.metrics.reload(ReloadResult::failure);
                tracing::error!(error = %refusal.error, ?trigger, "reload refused: the old configuration stays in force");
                last_refusal = Some(refusal);
            }
        }
    }
}

impl Reloader {
    /// Reads, compiles and (unless refused) installs the configuration; `in_force` holds the
    /// bytes of the file in force, and is updated when a new one is applied.
    async fn attempt(
        &mut self,
        trigger: reload::Trigger,
        in_force: &mut Option<Vec<u8>>,
    ) -> Attempt {
        let path = &self.path;
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => {
                return Attempt::Refused(Refusal {
                    bytes: None,
                    error: format!("cannot read the configuration file {}: {e}", path.display()),
                });
            }
        };
        if trigger == reload::Trigger::FileChanged && in_force.as_deref() == Some(&bytes[..]) {
            return Attempt::Unchanged;
        }
        let refused = |bytes: Vec<u8>, error: &dyn std::fmt::Display| {
            Attempt::Refused(Refusal {
                bytes: Some(bytes),
                error: error.to_string(),
            })
        };
        let compiled = std::str::from_utf8(&bytes)
            .map_err(|e| ConfigError::Invalid {
                key: "(file)".into(),
                value: path.display().to_string(),
                reason: format!("not UTF-8: {e}"),
            })
            .and_then(|text| RawConfig::from_toml(text, &path.display().to_string()))
            .and_then(|mut raw| {
                raw.apply_env(|name| std::env::var(name).ok());
                raw.compile()
            });
        let new = match compiled {
            Ok(config) => Arc::new(config),
            Err(e) => return refused(bytes, &e),
        };
        let old = self.live.load_full();
        // The exporter, its sampler and whose trace context is trusted are set up once: a
        // reload that changes them would silently not apply, so it is refused instead.
        if old.config().tracing() != new.tracing() {
            return refused(
                bytes,
                &"`[tracing]` changed: tracing settings take effect only after a restart; \
                  restart scopegate to apply them (the old configuration stays in force)",
            );
        }
        warn_about_restart_only_changes(old.config(), &new);
        log_config_warnings(&new);
        // The TLS files are read again too (renewed certificates); unusable ones refuse the
        // whole reload. Turning TLS on or off needs a restart.
        let tls_config = match (&self.tls, new.tls()) {
            (Some(_), Some(files)) => match crate::net::tls::server_config(files) {
                Ok(config) => Some(config),
                Err(e) => return refused(bytes, &e),
            },
            _ => None,
        };
        let (sets, started) = match self.key_sets.update(&new) {
            Ok(updated) => updated,
            Err(e) => return refused(bytes, &e),
        };
        // New or changed issuers: let their first fetch finish (within its timeout) before
        // their tokens are decided by the new configuration, so a reload does not answer them
        // 503 in the meantime.
        for jwks in &started {
            let within = jwks.settings().fetch_timeout + Duration::from_secs(1);
            if !jwks.first_attempt(within).await || !jwks.is_usable() {
                tracing::warn!(
                    uri = %jwks.settings().uri,
                    "a reloaded issuer's keys are not available yet; its tokens get 503 until they are"
                );
            }
        }
        if let (Some(slot), Some(config)) = (&self.tls, tls_config) {
            slot.store(config);
        }
        // The DPoP replay cache carries over: proofs seen before the reload stay refused.
        let next = Generation::succeeding(Arc::clone(&new), sets, &self.live.load());
        self.live.store(Arc::new(next));
        // The new generation's cache starts empty.
        self.metrics.token_cache_bytes(0);
        *in_force = Some(bytes);
        export_known_series(&self.metrics, &new);
        self.metrics.reload(ReloadResult::success);
        self.fetched.notify_one();
        tracing::info!(
            ?trigger,
            issuers = new.issuers().len(),
            rules = new.policy().rules().len(),
            "configuration reloaded"
        );
        Attempt::Applied
    }
}

/// Exports at zero the series `config` makes known (its shadow rules, its token cache), at
/// start-up and for every configuration a reload applies.
fn export_known_series(metrics: &Metrics, config: &Config) {
    let shadow_rules = config
        .policy()
        .rules()
        .iter()
        .filter(|rule| rule.is_shadow());
    metrics.configured(
        shadow_rules.map(|rule| rule.name()),
        config.token_cache_size() > 0,
    );
    for issuer in config.issuers() {
        if issuer.takes_opaque_tokens() {
            metrics.introspection_issuer(&issuer.expectations.issuer);
        }
    }
}

/// Logs each of the configuration's [`Config::warnings`], at start-up and for every configuration
/// a reload compiles.
fn log_config_warnings(config: &Config) {
    for warning in config.warnings() {
        tracing::warn!(key = %warning.key, "{}", warning.message);
    }
}

/// Logs each setting that a reload cannot change, because it was bound or built at start-up.
fn warn_about_restart_only_changes(old: &Config, new: &Config) {
    if old.listen() != new.listen() {
        tracing::warn!(old = %old.listen(), new = %new.listen(), "`listen` changed: it takes effect only after a restart");
    }
    if old.metrics_listen() != new.metrics_listen() {
        tracing::warn!(old = ?old.metrics_listen(), new = ?new.metrics_listen(), "`metrics_listen` changed: it takes effect only after a restart");
    }
    let without_check_timeout = |config: &Config| ServerLimits {
        check_timeout: Duration::ZERO,
        ..config.server().clone()
    };
    if without_check_timeout(old) != without_check_timeout(new) {
        tracing::warn!(
            "`[server]` limits changed: all but check_timeout_ms take effect only after a restart"
        );
    }
    if old.tls().is_some() != new.tls().is_some() {
        tracing::warn!(
            "`[tls]` added or removed: the listener's protocol changes only after a restart"
        );
    }
    if old.health_listen() != new.health_listen() {
        tracing::warn!(old = ?old.health_listen(), new = ?new.health_listen(), "`health_listen` changed: it takes effect only after a restart");
    }
    if old.http_listen() != new.http_listen() || old.http_server() != new.http_server() {
        tracing::warn!(
            "`http_listen` or `[http_server]` changed: it takes effect only after a restart"
        );
    }
    if old.reload_on_change() != new.reload_on_change() {
        tracing::warn!("`reload_on_change` changed: it takes effect only after a restart");
    }
}

/// A background task that ran at least this long before ending is restarted after the shortest
/// backoff again; one that keeps ending sooner backs off up to [`jwks::MAX_RETRY_BACKOFF`].
const RESTART_RESET: Duration = Duration::from_secs(60);

/// Runs the task that `start` makes for as long as the server serves. If it ends before `stop`
/// is set (a panic, or a return it should never make), logs at error, calls `on_exit` and starts
/// a new one after a backoff (1 s, doubling to 10 s while it keeps ending quickly). Returns when
/// `stop` is set or its sender is gone.
pub(crate) async fn supervise<F, Fut>(
    name: &'static str,
    mut start: F,
    on_exit: impl Fn(),
    mut stop: watch::Receiver<bool>,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let stopping = |stop: &watch::Receiver<bool>| *stop.borrow() || stop.has_changed().is_err();
    let mut quick_exits: u32 = 0;
    loop {
        let started = Instant::now();
        let outcome = tokio::spawn(start()).await;
        if stopping(&stop) {
            return;
        }
        let reason = match outcome {
            Ok(()) => "returned".to_string(),
            Err(e) if e.is_panic() => format!("panicked: {}", panic_message(e.into_panic())),
            Err(e) => e.to_string(),
        };
        on_exit();
        quick_exits = if started.elapsed() >= RESTART_RESET {
            1
        } else {
            quick_exits.saturating_add(1)
        };
        let delay = jwks::retry_backoff(quick_exits);
        tracing::error!(
            task = name,
            %reason,
            restart_in = ?delay,
            "background task ended while serving; restarting it"
        );
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// The message of a panic payload, when it has one.
fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(message) => *message,
        Err(payload) => payload
            .downcast_ref::<&str>()
            .map_or_else(|| "(no message)".to_string(), |s| s.to_string()),
    }
}

/// Descriptors the process needs besides client connections (runtime, listener, JWKS fetches,
/// logs), with room to spare.
const FD_HEADROOM: usize = 64;

/// Warns at start-up when the process's soft limit on open files would be reached before
/// `max_connections`: the accept loop then backs off on `EMFILE` instead of closing surplus
/// connections, and JWKS fetches can fail for want of a socket. Linux only (`/proc`).
fn warn_if_descriptors_run_out_first(max_connections: usize) {
    let soft_limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("Max open files"))
                .and_then(|line| line.split_whitespace().nth(3))
                .and_then(|soft| soft.parse::<usize>().ok())
        });
    if let Some(soft_limit) = soft_limit
        && max_connections + FD_HEADROOM > soft_limit
    {
        tracing::warn!(
            max_connections,
            open_file_limit = soft_limit,
            "the open-file limit is below server.max_connections + {FD_HEADROOM}: raise it \
             (ulimit -n) or lower server.max_connections"
        );
    }
}

/// Largest HTTP/2 header list (gRPC metadata) a request may carry. Envoy sends a handful of
/// short headers; the Check's own payload is bounded by `max_request_bytes` instead.
const MAX_HEADER_LIST_BYTES: u32 = 16 * 1024;

/// Keeps health in step with the key sets of the generation in force: SERVING while any
/// issuer's tokens can be verified (one issuer's outage must not take the others' traffic away:
/// its own tokens get 503 in-band), NOT_SERVING before the first load and once every set has
/// gone stale. An issuer that introspects counts as usable unless its recent calls all failed
/// ([`Generation::is_usable`]), so an introspection-only configuration is SERVING at once.
async fn track_health(
    live: Arc<ArcSwap<Generation>>,
    fetched: Arc<tokio::sync::Notify>,
    reporter: tonic_health::server::HealthReporter,
    stop: impl Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut serving = false;
    // Woken by each fetch (and each reload), so SERVING follows the first load at once: an
    // instance that already verifies tokens must not tell Envoy's health check NOT_SERVING and
    // be taken out of service. The timer is for the other change, a key set going stale.
    loop {
        let usable = live.load().is_usable();
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
                tracing::warn!(
                    "health: NOT_SERVING (no fresh signing keys, or the key refresher is restarting)"
                );
            }
        }
        tokio::select! {
            () = fetched.notified() => {}
            () = tokio::time::sleep(HEALTH_POLL) => {}
            () = &mut stop => return,
        }
    }
}

/// Sets both health entries Envoy may ask about: the overall status (`""`) and the
/// Authorization service's. Never [`LIVENESS_SERVICE`], which does not depend on the keys.
async fn set_health(reporter: &tonic_health::server::HealthReporter, status: ServingStatus) {
    reporter.set_service_status("", status).await;
    reporter
        .set_service_status(AUTHORIZATION_SERVICE, status)
        .await;
}

/// How often health re-evaluates whether the key set is usable.
const HEALTH_POLL: Duration = Duration::from_millis(250);

/// A future that resolves on SIGINT (Ctrl-C) or SIGTERM: the signals an orchestrator or a terminal
/// sends. A second such signal while the server drains exits the process at once (status 130):
/// an operator who asks twice does not want to wait for the drain deadline.
///
/// The handlers are installed when this function is called, not when the future is first polled,
/// so a signal that arrives while the server is still starting up is not lost (without a handler
/// the process would die of it, skipping the drain). Must be called inside a Tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        let installed = |kind: SignalKind, name: &'static str| match signal(kind) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::error!(error = %e, signal = name, "cannot listen for the signal");
                None
            }
        };
        (
            installed(SignalKind::interrupt(), "SIGINT"),
            installed(SignalKind::terminate(), "SIGTERM"),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (mut interrupt, mut terminate) = (interrupt, terminate);
            either_signal(&mut interrupt, &mut terminate).await;
            tokio::spawn(async move {
                either_signal(&mut interrupt, &mut terminate).await;
                tracing::warn!(
                    "second shutdown signal: exiting now, without waiting for the drain"
                );
                std::process::exit(130);
            });
        }
        #[cfg(not(unix))]
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
        tracing::info!("shutdown signal received; draining (a second signal exits at once)");
    }
}

/// The next SIGINT or SIGTERM (never, for one whose handler could not be installed).
#[cfg(unix)]
async fn either_signal(
    interrupt: &mut Option<tokio::signal::unix::Signal>,
    terminate: &mut Option<tokio::signal::unix::Signal>,
) {
    async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
        match signal {
            Some(signal) => {
                signal.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    tokio::select! {
        () = next(interrupt) => {}
        () = next(terminate) => {}
    }
}

#[cfg(test)]
mod tests;
