//! Prometheus metrics: what scopegate counts, and the `/metrics` endpoint that exposes it.
//!
//! Every label value comes from a fixed set or from the configuration (issuer URLs, rule
//! names), never from a request: no subject, path, `kid`, token or client value can become a
//! label, so a client cannot grow the exposition. The text is encoded by `prometheus-client`
//! (OpenMetrics text, which Prometheus reads natively); nothing here formats it by hand.
//!
//! Exposed samples (`prometheus-client` appends `_total` to counters and `_info` to the info
//! metric):
//!
//! | sample | labels |
//! |---|---|
//! | `scopegate_checks_total` | `transport` ([`Transport`]), `decision`, `status`, `reason` ([`Reason`]), `rule` |
//! | `scopegate_check_duration_seconds` (histogram) | `transport`, `decision` |
//! | `scopegate_jwks_fetches_total` | `issuer`, `trigger` ([`Trigger`]), `result` ([`FetchResult`]) |
//! | `scopegate_jwks_keys` | `issuer` |
//! | `scopegate_jwks_last_success_timestamp_seconds` | `issuer` |
//! | `scopegate_jwks_refetch_suppressed_total` | `issuer` |
//! | `scopegate_config_reloads_total` | `result` (`success`, `failure`) |
//! | `scopegate_token_cache_requests_total` | `result` (`hit`, `miss`) |
//! | `scopegate_token_cache_bytes` | none |
//! | `scopegate_shadow_decisions_total` | `rule` (a shadow rule), `decision` (what it would have decided) |
//! | `scopegate_connections` (gauge) | none: open connections on the gRPC listener |
//! | `scopegate_dpop_replay_store_failures_total` | `failure` ([`StoreFailure`]) |
//! | `scopegate_build_info` | `version` |
//!
//! A counter (or histogram) whose label values are all known in advance is exported at zero
//! from the start, so that `increase()` and `rate()` see its first event: a series that appears
//! with its first count has no earlier sample to count from. That is every family but
//! `scopegate_checks_total`, whose `rule` and `reason` combine into many series most rules can
//! never produce; per-issuer families start when the issuer's key set does, shadow rules' and
//! the token cache's when a configuration with them takes effect. The timestamp of a last
//! successful fetch has no value before one, so it stays absent until then.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Why a Check was answered the way it was: the `reason` label. A fixed set, so that the label
/// stays bounded; the README lists every value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Reason {
    /// Allowed: a verified token with what the route requires.
    authorized,
    /// Allowed: a public route, no token needed.
    public,
    /// Allowed: a browser's CORS preflight, with `cors_preflight = "allow"`.
    cors_preflight,
    /// 401: no `Authorization` header, or another scheme.
    missing_token,
    /// 400: malformed Bearer credentials (RFC 6750 `invalid_request`).
    invalid_request,
    /// 401: the token failed verification (RFC 6750 `invalid_token`).
    invalid_token,
    /// 401: the token verified, but the rule's `issuers` do not include its issuer.
    issuer_not_accepted,
    /// 401: the token verified, but its `aud` holds none of the rule's `audiences`.
    audience_not_accepted,
    /// 403: the token lacks the route's scopes (RFC 6750 `insufficient_scope`).
    insufficient_scope,
    /// 403: the token's claims do not meet the route's claim conditions (`insufficient_claims`).
    claims,
    /// 403: the route is denied to everyone (`default = "deny"`).
    route_denied,
    /// 400: an ambiguous or refused request path or method (method overrides included).
    bad_path,
    /// 503: the issuer's keys are not available (not loaded yet, or stale).
    keys_unavailable,
    /// 503: the Check ran past `check_timeout_ms`.
    timed_out,
    /// 401: the DPoP proof is missing, malformed, replayed or does not match the request or
    /// the token (`invalid_dpop_proof`); 503 when the replay cache is full.
    dpop_proof,
    /// 503: the token must be introspected, and the introspection endpoint failed (down,
    /// timeout, 5xx, malformed or oversized answer) or its caps were reached.
    introspection_unavailable,
    /// 401: the token's binding is not proven: a DPoP-bound token under `Bearer`, an unbound
    /// one under `DPoP` or on a `sender_constrained` rule, a certificate missing or not the
    /// bound one.
    binding,
}

/// The `decision` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Decision {
    /// Let through.
    allow,
    /// Refused.
    deny,
}

/// Which front door a request came in by: the `transport` label of the Check metrics and the
/// `transport` field of decision logs. A fixed set.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Transport {
    /// Envoy's ext_authz gRPC `Check`.
    grpc,
    /// An HTTP authorization request (`http_listen`: nginx, Caddy, Traefik, Envoy's
    /// `http_service`).
    http,
    /// In-proxy: the Envoy dynamic module (`envoy-module/`), which counts in Envoy's stats
    /// rather than in a registry of its own, so the service never exports it.
    module,
}

impl Transport {
    /// Every value the service exports, in the order they are exported.
    pub const ALL: [Transport; 2] = [Transport::grpc, Transport::http];
}

/// What made the refresher fetch an issuer's keys: the `trigger` label.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Trigger {
    /// The first fetch after start (or after the refresher was restarted).
    startup,
    /// The refresh interval (`max-age` or `jwks_refresh_seconds`) ran out.
    scheduled,
    /// The backoff after a failed fetch ran out.
    retry,
    /// A Check met a `kid` the key set does not have.
    unknown_kid,
    /// A Check found the key set stale or absent.
    stale,
}

impl Trigger {
    /// Every value, for exporting their series at zero.
    pub const ALL: [Trigger; 5] = [
        Trigger::startup,
        Trigger::scheduled,
        Trigger::retry,
        Trigger::unknown_kid,
        Trigger::stale,
    ];
}

/// How a fetch ended: the `result` label. A fixed set; the README lists every value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FetchResult {
    /// A usable key set was installed.
    success,
    /// Connection, TLS or timeout failure, or a refused redirect.
    network_error,
    /// The server answered with a non-2xx status.
    http_error,
    /// The body was larger than `jwks_max_bytes`.
    too_large,
    /// The body was not a usable JWKS (malformed, too many entries, no usable key).
    invalid,
    /// The OIDC discovery document was unusable or named another issuer.
    discovery_error,
    /// Parsing failed unexpectedly (a bug, reported rather than fatal).
    internal_error,
}

impl FetchResult {
    /// Every value, for exporting their series at zero.
    pub const ALL: [FetchResult; 7] = [
        FetchResult::success,
        FetchResult::network_error,
        FetchResult::http_error,
        FetchResult::too_large,
        FetchResult::invalid,
        FetchResult::discovery_error,
        FetchResult::internal_error,
    ];
}

/// The `failure` label of the DPoP replay store's failures (`dpop_replay_store`): each one
/// refused a DPoP request 503.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum StoreFailure {
    /// The store could not be reached (refused, reset, closed).
    unreachable,
    /// No answer within `dpop_replay_store_timeout_ms` (connecting included).
    timeout,
    /// The store answered with an error (or an answer `SET` never gives).
    error,
    /// `dpop_replay_store_max_in_flight` calls were already waiting for it.
    busy,
}

impl StoreFailure {
    /// Every value, for exporting at zero.
    pub const ALL: [StoreFailure; 4] = [
        StoreFailure::unreachable,
        StoreFailure::timeout,
        StoreFailure::error,
        StoreFailure::busy,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreFailureLabels {
    failure: StoreFailure,
}

/// How one introspection ended (RFC 7662), or why none was made: the `result` label of
/// `scopegate_introspection_requests_total`. A fixed set; the README lists every value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum IntrospectionResult {
    /// The server said `active: true` and the answer met the issuer's expectations.
    active,
    /// The server said `active: false` (or anything but `true`).
    inactive,
    /// `active: true`, but the answer was refused (no `exp`, expired, another `iss`, no
    /// accepted `aud`, a scope that is not a scope-token...).
    refused,
    /// Connection or TLS failure, or a refused redirect.
    network_error,
    /// No answer within `jwks_fetch_timeout_seconds`.
    timeout,
    /// The server answered with a non-2xx status.
    http_error,
    /// The answer was not a JSON object.
    malformed,
    /// The answer was larger than the bound on introspection answers.
    too_large,
    /// The endpoint could not be found by OIDC discovery.
    discovery_error,
    /// No call was made: `introspection_max_in_flight` or `introspection_max_calls_per_second`
    /// was reached, and the Check was answered 503.
    throttled,
}

impl IntrospectionResult {
    /// Every value, for exporting their series at zero.
    pub const ALL: [IntrospectionResult; 10] = [
        IntrospectionResult::active,
        IntrospectionResult::inactive,
        IntrospectionResult::refused,
        IntrospectionResult::network_error,
        IntrospectionResult::timeout,
        IntrospectionResult::http_error,
        IntrospectionResult::malformed,
        IntrospectionResult::too_large,
        IntrospectionResult::discovery_error,
        IntrospectionResult::throttled,
    ];

    /// Whether the endpoint failed to give a usable answer (what health counts).
    pub fn is_failure(self) -> bool {
        !matches!(
            self,
            IntrospectionResult::active
                | IntrospectionResult::inactive
                | IntrospectionResult::refused
                | IntrospectionResult::throttled
        )
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IntrospectionLabels {
    issuer: Arc<str>,
    result: IntrospectionResult,
}

/// The `result` label of verified-token cache lookups.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum CacheResult {
    /// A token verified before, still valid: no signature check.
    hit,
    /// Not in the cache, or no longer valid: verified in full.
    miss,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    result: CacheResult,
}

/// The `result` label of configuration reloads.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ReloadResult {
    /// The new configuration is in force.
    success,
    /// The new configuration was refused; the old one stays in force.
    failure,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    transport: Transport,
    decision: Decision,
    status: u16,
    reason: Reason,
    rule: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ShadowLabels {
    rule: Arc<str>,
    decision: Decision,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    transport: Transport,
    decision: Decision,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IssuerLabels {
    issuer: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    issuer: Arc<str>,
    trigger: Trigger,
    result: FetchResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: ReloadResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

/// Upper bounds of the Check latency buckets, in seconds: 25 µs to 1 s, dense below a
/// millisecond where a healthy Check lands.
const CHECK_BUCKETS: [f64; 14] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.25, 1.0,
];

fn check_histogram() -> Histogram {
    Histogram::new(CHECK_BUCKETS)
}

/// Creates the series of `labels` in `family` at zero, if it has none yet (an existing series
/// keeps its value).
fn start_at_zero<S, M, C>(family: &Family<S, M, C>, labels: &S)
where
    S: Clone + std::hash::Hash + Eq,
    C: prometheus_client::metrics::family::MetricConstructor<M>,
{
    // Only the creation matters; the guard it returns is released at once.
    drop(family.get_or_create(labels));
}

/// Every metric scopegate keeps, and the registry that exposes them. Cheap to clone (the
/// metrics are shared handles); one per process.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    checks: Family<CheckLabels, Counter>,
    check_duration: Family<DecisionLabels, Histogram, fn() -> Histogram>,
    jwks_fetches: Family<FetchLabels, Counter>,
    jwks_keys: Family<IssuerLabels, Gauge>,
    jwks_last_success: Family<IssuerLabels, Gauge<f64, AtomicU64>>,
    jwks_refetch_suppressed: Family<IssuerLabels, Counter>,
    config_reloads: Family<ReloadLabels, Counter>,
    token_cache: Family<CacheLabels, Counter>,
    token_cache_bytes: Gauge,
    shadow_decisions: Family<ShadowLabels, Counter>,
    introspections: Family<IntrospectionLabels, Counter>,
    connections: Gauge,
    replay_store_failures: Family<StoreFailureLabels, Counter>,
    trace_spans_dropped: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered (and `scopegate_build_info` set).
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("scopegate");
        let checks = Family::<CheckLabels, Counter>::default();
        registry.register(
            "checks",
            "Check calls answered, by decision, HTTP status, reason and deciding rule",
            checks.clone(),
        );
        let check_duration =
            Family::<DecisionLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                check_histogram,
            );
        registry.register(
            "check_duration_seconds",
            "Time from receiving a Check to answering it, by decision",
            check_duration.clone(),
        );
        let jwks_fetches = Family::<FetchLabels, Counter>::default();
        registry.register(
            "jwks_fetches",
            "JWKS fetch attempts per issuer, by what triggered them and how they ended",
            jwks_fetches.clone(),
        );
        let jwks_keys = Family::<IssuerLabels, Gauge>::default();
        registry.register(
            "jwks_keys",
            "Usable keys in the issuer's key set in force",
            jwks_keys.clone(),
        );
        let jwks_last_success = Family::<IssuerLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "jwks_last_success_timestamp_seconds",
            "Unix time of the issuer's last successful JWKS fetch",
            jwks_last_success.clone(),
        );
        let jwks_refetch_suppressed = Family::<IssuerLabels, Counter>::default();
        registry.register(
            "jwks_refetch_suppressed",
            "Refetches a Check asked for inside the cooldown, so not made",
            jwks_refetch_suppressed.clone(),
        );
        let config_reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "config_reloads",
            "Configuration reloads, by result",
            config_reloads.clone(),
        );
        let token_cache = Family::<CacheLabels, Counter>::default();
        registry.register(
            "token_cache_requests",
            "Verified-token cache lookups, by result (only while the cache is on)",
            token_cache.clone(),
        );
        let token_cache_bytes = Gauge::default();
        registry.register(
            "token_cache_bytes",
            "Estimated bytes the verified-token cache of the configuration in force holds \
             (each entry weighs at least token_cache_max_bytes / token_cache_size)",
            token_cache_bytes.clone(),
        );
        let shadow_decisions = Family::<ShadowLabels, Counter>::default();
        registry.register(
            "shadow_decisions",
            "What each shadow rule would have decided for the requests it matched (not enforced)",
            shadow_decisions.clone(),
        );
        let introspections = Family::<IntrospectionLabels, Counter>::default();
        registry.register(
            "introspection_requests",
            "Token introspections (RFC 7662) per issuer, by how they ended; throttled counts \
             Checks refused by the caps without a call",
            introspections.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open connections on the gRPC listener, TLS and HTTP/2 handshakes included \
             (each holds one of server.max_connections)",
            connections.clone(),
        );
        let replay_store_failures = Family::<StoreFailureLabels, Counter>::default();
        registry.register(
            "dpop_replay_store_failures",
            "Calls to the shared DPoP replay store (dpop_replay_store) that failed, by failure; \
             each refused a DPoP request 503",
            replay_store_failures.clone(),
        );
        let trace_spans_dropped = Counter::default();
        registry.register(
            "trace_spans_dropped",
            "Finished spans not exported: the export queue was full, or the collector refused \
             or did not answer their batch (always 0 without [tracing])",
            trace_spans_dropped.clone(),
        );
        registry.register(
            "build",
            "The running scopegate's version",
            Info::new(BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            }),
        );
        // The label sets known now start at zero (see the module's documentation).
        for transport in Transport::ALL {
            for decision in [Decision::allow, Decision::deny] {
                start_at_zero(
                    &check_duration,
                    &DecisionLabels {
                        transport,
                        decision,
                    },
                );
            }
        }
        for result in [ReloadResult::success, ReloadResult::failure] {
            start_at_zero(&config_reloads, &ReloadLabels { result });
        }
        for failure in StoreFailure::ALL {
            start_at_zero(&replay_store_failures, &StoreFailureLabels { failure });
        }
        Metrics {
            registry: Arc::new(registry),
            checks,
            check_duration,
            jwks_fetches,
            jwks_keys,
            jwks_last_success,
            jwks_refetch_suppressed,
            config_reloads,
            token_cache,
            token_cache_bytes,
            shadow_decisions,
            introspections,
            connections,
            replay_store_failures,
            trace_spans_dropped,
        }
    }

    /// Exports at zero every `result` of `issuer`'s introspections (an issuer that
    /// introspects); existing series keep their counts.
    pub fn introspection_issuer(&self, issuer: &str) {
        let issuer: Arc<str> = issuer.into();
        for result in IntrospectionResult::ALL {
            start_at_zero(
                &self.introspections,
                &IntrospectionLabels {
                    issuer: Arc::clone(&issuer),
                    result,
                },
            );
        }
    }

    /// Counts one introspection of `issuer`'s (or one Check refused by its caps).
    pub fn introspection(&self, issuer: &Arc<str>, result: IntrospectionResult) {
        self.introspections
            .get_or_create(&IntrospectionLabels {
                issuer: Arc::clone(issuer),
                result,
            })
            .inc();
    }

    /// The counter of spans dropped instead of exported, for the trace exporter to keep.
    pub fn trace_spans_dropped(&self) -> Counter {
        self.trace_spans_dropped.clone()
    }

    /// Exports at zero the series a configuration makes known: both decisions of each of its
    /// `shadow_rules` (by name), and the token cache's results while its cache is on
    /// (`token_cache`). Called for the configuration at start-up and for each one a reload
    /// applies; series already there keep their counts. It takes the names rather than the
    /// configuration so that metrics, which every layer counts in, depends on none of them.
    pub fn configured<'a>(
        &self,
        shadow_rules: impl IntoIterator<Item = &'a Arc<str>>,
        token_cache: bool,
    ) {
        for rule in shadow_rules {
            for decision in [Decision::allow, Decision::deny] {
                start_at_zero(
                    &self.shadow_decisions,
                    &ShadowLabels {
                        rule: Arc::clone(rule),
                        decision,
                    },
                );
            }
        }
        if token_cache {
            for result in [CacheResult::hit, CacheResult::miss] {
                start_at_zero(&self.token_cache, &CacheLabels { result });
            }
        }
    }

    /// The gauge of open connections on the gRPC listener, for the listener to keep.
    pub fn connections(&self) -> Gauge {
        self.connections.clone()
    }

    /// Counts what the shadow rule `rule` would have decided for one request.
    pub fn shadow(&self, rule: &Arc<str>, decision: Decision) {
        self.shadow_decisions
            .get_or_create(&ShadowLabels {
                rule: Arc::clone(rule),
                decision,
            })
            .inc();
    }

    /// Counts one failed call to the shared DPoP replay store.
    pub fn replay_store_failure(&self, failure: StoreFailure) {
        self.replay_store_failures
            .get_or_create(&StoreFailureLabels { failure })
            .inc();
    }

    /// Counts one verified-token cache lookup.
    pub fn token_cache(&self, result: CacheResult) {
        self.token_cache
            .get_or_create(&CacheLabels { result })
            .inc();
    }

    /// Sets the verified-token cache's weight (its entries' estimated bytes).
    pub fn token_cache_bytes(&self, bytes: u64) {
        self.token_cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// Counts one answered Check (or HTTP decision) and its duration.
    pub fn check(
        &self,
        transport: Transport,
        decision: Decision,
        status: u16,
        reason: Reason,
        rule: &Arc<str>,
        took: Duration,
    ) {
        self.checks
            .get_or_create(&CheckLabels {
                transport,
                decision,
                status,
                reason,
                rule: Arc::clone(rule),
            })
            .inc();
        self.check_duration
            .get_or_create(&DecisionLabels {
                transport,
                decision,
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one configuration reload.
    pub fn reload(&self, result: ReloadResult) {
        self.config_reloads
            .get_or_create(&ReloadLabels { result })
            .inc();
    }

    /// The handle through which one issuer's key set reports its fetches. The issuer's
    /// counters (every trigger with every result) and its key count start at zero if they have
    /// no series yet; existing ones are left as they are.
    pub fn issuer(&self, issuer: &str) -> IssuerMetrics {
        let handle = IssuerMetrics {
            issuer: issuer.into(),
            metrics: Some(self.clone()),
        };
        for trigger in Trigger::ALL {
            for result in FetchResult::ALL {
                start_at_zero(
                    &self.jwks_fetches,
                    &FetchLabels {
                        issuer: Arc::clone(&handle.issuer),
                        trigger,
                        result,
                    },
                );
            }
        }
        start_at_zero(&self.jwks_refetch_suppressed, &handle.labels());
        start_at_zero(&self.jwks_keys, &handle.labels());
        handle
    }

    /// The exposition, as `GET /metrics` answers it.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a metric.
        if prometheus_client::encoding::text::encode(&mut text, &self.registry).is_err() {
            tracing::error!("metrics could not be encoded");
        }
        text
    }
}

/// One issuer's JWKS metrics. A detached handle (from [`IssuerMetrics::detached`]) records
/// nothing, for key sets built outside a server (tests, tools).
#[derive(Clone, Debug)]
pub struct IssuerMetrics {
    issuer: Arc<str>,
    metrics: Option<Metrics>,
}

impl IssuerMetrics {
    /// A handle that records nothing.
    pub fn detached() -> IssuerMetrics {
        IssuerMetrics {
            issuer: "".into(),
            metrics: None,
        }
    }

    fn labels(&self) -> IssuerLabels {
        IssuerLabels {
            issuer: Arc::clone(&self.issuer),
        }
    }

    /// Counts one fetch; on success, also the number of keys now in force and the time.
    pub fn fetched(&self, trigger: Trigger, result: FetchResult, keys: Option<usize>) {
        let Some(metrics) = &self.metrics else { return };
        metrics
            .jwks_fetches
            .get_or_create(&FetchLabels {
                issuer: Arc::clone(&self.issuer),
                trigger,
                result,
            })
            .inc();
        if let Some(keys) = keys {
            metrics
                .jwks_keys
                .get_or_create(&self.labels())
                .set(i64::try_from(keys).unwrap_or(i64::MAX));
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            metrics
                .jwks_last_success
                .get_or_create(&self.labels())
                .set(now);
        }
    }

    /// Counts one refetch a Check asked for inside the cooldown.
    pub fn refetch_suppressed(&self) {
        if let Some(metrics) = &self.metrics {
            metrics
                .jwks_refetch_suppressed
                .get_or_create(&self.labels())
                .inc();
        }
    }
}

/// Most `/metrics` requests served at once; more wait. A scraper asks once per interval.
pub const METRICS_MAX_CONCURRENT: usize = 4;

/// Most connections the metrics listener holds open at once; beyond it a new connection is
/// closed as soon as it is accepted. A scraper needs one; the rest is headroom for a second
/// scraper and `curl`, and the cap keeps a client that opens connections from spending the
/// file descriptors the gRPC listener needs.
pub const METRICS_MAX_CONNECTIONS: usize = 16;

/// How long a metrics connection has to send a request's headers, counted from when it opens
/// or finishes its previous answer: so also how long it may sit idle. A scraper sends its
/// request at once and may reconnect for the next scrape.
pub const METRICS_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest request head (request line and headers) a metrics connection buffers, in bytes.
pub const METRICS_MAX_REQUEST_HEAD: usize = 16 * 1024;

/// Serves `GET /metrics` (and nothing else: 404) on `listener` until `shutdown`. Plain HTTP/1.1
/// for Prometheus scrapers; bind it where only they can reach it. Bounded by
/// [`METRICS_MAX_CONNECTIONS`], [`METRICS_HEADER_TIMEOUT`], [`METRICS_MAX_REQUEST_HEAD`] and
/// [`METRICS_MAX_CONCURRENT`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;
    let permits = Arc::new(tokio::sync::Semaphore::new(METRICS_MAX_CONCURRENT));
    let exposition = move || {
        let (metrics, permits) = (metrics.clone(), Arc::clone(&permits));
        async move {
            let Ok(_permit) = permits.acquire().await else {
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            };
            (
                [(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )],
                metrics.encode(),
            )
                .into_response()
        }
    };
    let app = axum::Router::new().route("/metrics", axum::routing::get(exposition));
    let connections = Arc::new(tokio::sync::Semaphore::new(METRICS_MAX_CONNECTIONS));
    // Connections still open when shutdown starts are asked to finish their answer and close.
    let (stopping, stop) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Not a reason to stop serving. Out of file descriptors or memory, retrying at
                // once would spin; a connection reset before it was accepted is just skipped.
                tracing::debug!(%error, "metrics listener: accept failed");
                if crate::net::listener::out_of_resources(&error) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            tracing::debug!("metrics listener: connection limit reached; closing a new one");
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(METRICS_HEADER_TIMEOUT)
                .max_buf_size(METRICS_MAX_REQUEST_HEAD);
            let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = stop.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let _ = stopping.send(true);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_match_the_documented_samples() {
        let metrics = Metrics::new();
        let rule: Arc<str> = "rules[0]".into();
        metrics.check(
            Transport::grpc,
            Decision::deny,
            401,
            Reason::invalid_token,
            &rule,
            Duration::from_micros(80),
        );
        metrics.reload(ReloadResult::failure);
        let issuer = metrics.issuer("https://issuer.example/");
        issuer.fetched(Trigger::startup, FetchResult::success, Some(2));
        issuer.refetch_suppressed();
        let text = metrics.encode();
        for sample in [
            r#"scopegate_checks_total{transport="grpc",decision="deny",status="401",reason="invalid_token",rule="rules[0]"} 1"#,
            r#"scopegate_check_duration_seconds_bucket{le="0.0001",transport="grpc",decision="deny"} 1"#,
            r#"scopegate_jwks_fetches_total{issuer="https://issuer.example/",trigger="startup",result="success"} 1"#,
            r#"scopegate_jwks_keys{issuer="https://issuer.example/"} 2"#,
            r#"scopegate_jwks_refetch_suppressed_total{issuer="https://issuer.example/"} 1"#,
            r#"scopegate_config_reloads_total{result="failure"} 1"#,
            r#"scopegate_build_info{version=""#,
            "scopegate_jwks_last_success_timestamp_seconds{",
        ] {
            assert!(text.contains(sample), "{sample} in\n{text}");
        }
    }

    /// A detached handle (key sets built outside a server) holds no registry, so whatever it
    /// is told to count lands nowhere; a server's registry is untouched by it.
    #[test]
    fn a_detached_handle_records_nothing() {
        let metrics = Metrics::new();
        let attached = metrics.issuer("https://issuer.example/");
        let before = metrics.encode();
        let detached = IssuerMetrics::detached();
        assert!(detached.metrics.is_none(), "{detached:?}");
        detached.fetched(Trigger::scheduled, FetchResult::success, Some(1));
        detached.fetched(Trigger::retry, FetchResult::network_error, None);
        detached.refetch_suppressed();
        assert_eq!(metrics.encode(), before);
        // The same calls on an attached handle do show, so the comparison can see a count.
        attached.refetch_suppressed();
        assert_ne!(metrics.encode(), before);
    }

    /// Series whose label values are known before anything happens are exported at zero, so
    /// that `increase()` sees their first event; known ones keep their counts when made known
    /// again (a reload).
    #[test]
    fn label_sets_known_in_advance_start_at_zero() {
        let metrics = Metrics::new();
        let text = metrics.encode();
        for sample in [
            r#"scopegate_config_reloads_total{result="success"} 0"#,
            r#"scopegate_config_reloads_total{result="failure"} 0"#,
            r#"scopegate_check_duration_seconds_count{transport="grpc",decision="allow"} 0"#,
            r#"scopegate_check_duration_seconds_count{transport="grpc",decision="deny"} 0"#,
            r#"scopegate_check_duration_seconds_count{transport="http",decision="allow"} 0"#,
            r#"scopegate_check_duration_seconds_count{transport="http",decision="deny"} 0"#,
            "scopegate_connections 0",
        ] {
            assert!(text.contains(sample), "{sample} in\n{text}");
        }
        assert!(
            !text.contains("scopegate_token_cache_requests_total{"),
            "{text}"
        );

        let issuer = metrics.issuer("https://issuer.example/");
        let trial: Arc<str> = "trial".into();
        metrics.configured([&trial], true);
        let text = metrics.encode();
        for trigger in Trigger::ALL {
            for result in FetchResult::ALL {
                let labels = format!(
                    r#"{{issuer="https://issuer.example/",trigger="{trigger:?}",result="{result:?}"}} 0"#
                );
                assert!(
                    text.contains(&format!("scopegate_jwks_fetches_total{labels}")),
                    "{labels} in\n{text}"
                );
            }
        }
        for sample in [
            r#"scopegate_jwks_refetch_suppressed_total{issuer="https://issuer.example/"} 0"#,
            r#"scopegate_jwks_keys{issuer="https://issuer.example/"} 0"#,
            r#"scopegate_shadow_decisions_total{rule="trial",decision="allow"} 0"#,
            r#"scopegate_shadow_decisions_total{rule="trial",decision="deny"} 0"#,
            r#"scopegate_token_cache_requests_total{result="hit"} 0"#,
            r#"scopegate_token_cache_requests_total{result="miss"} 0"#,
        ] {
            assert!(text.contains(sample), "{sample} in\n{text}");
        }
        // No last-success time before a success.
        assert!(
            !text.contains("scopegate_jwks_last_success_timestamp_seconds{"),
            "{text}"
        );

        // Made known again (a kept issuer, a reload): the counts stay.
        issuer.fetched(Trigger::startup, FetchResult::success, Some(3));
        metrics.reload(ReloadResult::failure);
        metrics.shadow(&"trial".into(), Decision::deny);
        let _ = metrics.issuer("https://issuer.example/");
        metrics.configured([&trial], true);
        let text = metrics.encode();
        for sample in [
            r#"scopegate_jwks_fetches_total{issuer="https://issuer.example/",trigger="startup",result="success"} 1"#,
            r#"scopegate_jwks_keys{issuer="https://issuer.example/"} 3"#,
            r#"scopegate_config_reloads_total{result="failure"} 1"#,
            r#"scopegate_shadow_decisions_total{rule="trial",decision="deny"} 1"#,
        ] {
            assert!(text.contains(sample), "{sample} in\n{text}");
        }

        // The cache's series only while it is on.
        let off = Metrics::new();
        off.configured([&trial], false);
        assert!(
            !off.encode()
                .contains("scopegate_token_cache_requests_total{")
        );
    }

    /// The connection gauge handed to the listener is the exported one.
    #[test]
    fn the_connection_gauge_is_exported() {
        let metrics = Metrics::new();
        let open = metrics.connections();
        open.inc();
        open.inc();
        open.dec();
        assert!(metrics.encode().contains("scopegate_connections 1"));
    }
}
