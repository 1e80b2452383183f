//! The issuer's key set over time: fetching, the shared snapshot, and the background refresher.
//!
//! Invariants:
//! - Keys are parsed once, when a JWKS document is loaded (by [`crate::auth::keys`]), into ready-to-use
//!   verifying keys (one per allowed algorithm). `Check` never parses key material.
//! - Readers take an `Arc` snapshot from an [`ArcSwapOption`]: no lock is held while verifying, and
//!   none across an `.await`.
//! - All network I/O happens in [`Jwks::run_refresher`], a background task, and key parsing on a
//!   blocking thread it starts, never on the async runtime's workers. `Check` at most waits
//!   (bounded by `unknown_kid_wait`) for a refetch that an unknown `kid` asked for, and such
//!   refetches are single-flight and happen at most once per cooldown, so a flood of random `kid`s
//!   cannot hammer the issuer.
//! - The end of a fetch attempt (the gate back to idle, the attempt counted) happens under the
//!   gate's lock, and a waiter reads the attempt count under the same lock: it waits for the end
//!   of the fetch it joined or started, never takes an earlier one for its own.
//! - A failed or unusable refresh never replaces the last good key set. The refresher never sleeps
//!   past the moment the set in force goes stale.
//! - If the refresher task ends while serving, its supervisor calls [`Jwks::refresher_stopped`]:
//!   waiters are released, and [`Jwks::is_usable`] (health) is false until a restarted refresher
//!   installs a key set.
//! - Only the configured `jwks_uri` is fetched (or the one the issuer's own discovery document
//!   names); redirects are not followed; the body size, the number of entries and the fetch time
//!   are bounded. Every fetch goes through an [`outbound::Client`], so keys come over https (or
//!   from a loopback host) and TLS servers are verified against the issuer's trusted roots.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::auth::keys::{Algorithm, KeySet, ParseError, SkipSummary, SkippedKey};
use crate::net::outbound::{self, FetchPolicy, GetError};
use crate::telemetry::metrics::{FetchResult, IssuerMetrics, Trigger};
use crate::telemetry::traces::{self, Tracer};
use opentelemetry::trace::{SpanContext, TraceContextExt as _};
use opentelemetry::{Context, KeyValue};

/// Settings for fetching and caching the key set; compiled from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JwksSettings {
    /// The only URL keys are ever fetched from; with `discovery_issuer`, the only URL the
    /// discovery document is fetched from (the keys then come from its `jwks_uri`, or from
    /// `fallback_uri` when it answers 404).
    pub uri: reqwest::Url,
    /// With OIDC discovery: the issuer the discovery document at `uri` must name exactly.
    pub discovery_issuer: Option<String>,
    /// With OIDC discovery: where the keys are fetched from when the discovery document answers
    /// 404 (the one-issuer shorthand's `issuer + /.well-known/jwks.json`, Auth0's layout, kept so
    /// that a configuration that worked before discovery keeps working).
    pub fallback_uri: Option<reqwest::Url>,
    /// Which URLs may be fetched and which roots TLS servers are verified against.
    pub fetch_policy: FetchPolicy,
    /// Algorithms keys are prepared for (the token allow-list).
    pub algorithms: Vec<Algorithm>,
    /// Refresh interval when the response has no usable `Cache-Control: max-age`.
    pub refresh: Duration,
    /// Lower bound on the refresh interval, whatever `max-age` says.
    pub min_refresh: Duration,
    /// Upper bound on the refresh interval, whatever `max-age` says.
    pub max_refresh: Duration,
    /// Minimum time between two refetches triggered by unknown `kid`s.
    pub refetch_cooldown: Duration,
    /// Time limit for one fetch, connection included.
    pub fetch_timeout: Duration,
    /// Largest JWKS body accepted, in bytes.
    pub max_bytes: usize,
    /// How long the last good key set stays usable without a successful refresh; after that,
    /// protected requests are denied (503) and health says NOT_SERVING until a fetch succeeds.
    pub max_stale: Duration,
    /// Most entries a JWKS document may list; a longer document is refused whole.
    pub max_keys: usize,
    /// How long a Check with an unknown `kid` waits for the refetch it joined or started; the
    /// fetch itself goes on after that.
    pub unknown_kid_wait: Duration,
}

/// Upper bound of the retry backoff after a failed fetch.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(10);

/// Why a JWKS document could not be used at all (the previous key set, if any, stays in force).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Transport failure, timeout, a refused redirect, a TLS server no trusted root vouches
    /// for, or a URL the issuer's [`FetchPolicy`] refuses (nothing sent).
    #[error("fetching {uri} failed: {reason}")]
    Fetch {
        /// The configured URI.
        uri: String,
        /// What went wrong.
        reason: String,
    },
    /// The server answered with a non-success status.
    #[error("{uri} answered HTTP {status}")]
    Status {
        /// The configured URI.
        uri: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The body was larger than the configured maximum.
    #[error("{uri} sent more than {limit} bytes")]
    TooLarge {
        /// The configured URI.
        uri: String,
        /// The configured limit.
        limit: usize,
    },
    /// The body is not a usable JWKS document.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// The discovery document is unusable: not one, another issuer's, or no usable `jwks_uri`.
    #[error("discovery document {uri} {reason}")]
    Discovery {
        /// The discovery document's URL.
        uri: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Parsing ended without an answer (the parser panicked): a bug, reported rather than
    /// allowed to take the refresher down.
    #[error("JWKS parsing failed: {0}")]
    Internal(String),
}

impl JwksError {
    /// The metrics' `result` for this failure.
    pub fn result(&self) -> FetchResult {
        match self {
            JwksError::Fetch { .. } => FetchResult::network_error,
            JwksError::Status { .. } => FetchResult::http_error,
            JwksError::TooLarge { .. } => FetchResult::too_large,
            JwksError::Parse(_) => FetchResult::invalid,
            JwksError::Discovery { .. } => FetchResult::discovery_error,
            JwksError::Internal(_) => FetchResult::internal_error,
        }
    }
}

/// Reads `Cache-Control: max-age=N` (ignoring `no-cache`/`no-store`, which would otherwise force
/// a refetch per request; the configured minimum applies instead).
pub fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        if name.trim().eq_ignore_ascii_case("max-age") {
            value
                .trim()
                .trim_matches('"')
                .parse::<u64>()
                .ok()
                .map(Duration::from_secs)
        } else {
            None
        }
    })
}

/// What an unknown-`kid` refetch request led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refetch {
    /// The fetch this caller joined or started has finished (successfully or not); look the key
    /// up again.
    Completed,
    /// A refetch happened recently; nothing was fetched, the key is unknown.
    CoolingDown,
    /// The fetch did not finish within `unknown_kid_wait`; it goes on without this caller.
    TimedOut,
}

/// The single-flight gate shared by unknown-`kid` refetches and stale-set requests, as a small
/// state machine. Pure: it is told the time and the cooldown, and says what a caller should do;
/// [`Jwks`] holds it under a lock together with the attempt count.
///
/// ```text
///            ask (outside cooldown) → Started        begin (refresher)
///   Idle ─────────────────────────────────────▶ Fetching ◀──────── Idle
///    ▲  ask (inside cooldown) → CoolingDown        │  ask → Join
///    └──────────────────── finish ─────────────────┘
/// ```
#[derive(Debug, Default)]
struct RefetchGate {
    state: GateState,
    /// When a Check last started a refetch (for the cooldown). Fetches the refresher starts on
    /// its own schedule do not count.
    last_trigger: Option<Instant>,
    /// Why the fetch a Check started was asked for, until the refresher takes it (for the
    /// metrics' `trigger`).
    asked_for: Option<Trigger>,
    /// The traced wait of the Check that started the fetch, until the refresher takes it: the
    /// fetch's span is its child.
    asked_by: Option<Context>,
    /// The span of the latest fetch, with the attempt count its end reaches: what a traced
    /// wait for that attempt links to.
    fetch_span: Option<(u64, SpanContext)>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum GateState {
    /// No fetch under way.
    #[default]
    Idle,
    /// A fetch is under way, or has been asked for and the refresher is about to start it.
    Fetching,
}

/// What the gate tells a caller that asks for a fetch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateAnswer {
    /// A fetch is under way: wait for its end.
    Join,
    /// This caller started a fetch: wake the refresher, then wait for its end.
    Started,
    /// A Check started a fetch less than a cooldown ago: do not wait.
    CoolingDown,
}

impl RefetchGate {
    /// A caller asks for a fetch at `now`, because of `why` (an unknown `kid`, a stale set).
    fn ask(&mut self, now: Instant, cooldown: Duration, why: Trigger) -> GateAnswer {
        if self.state == GateState::Fetching {
            return GateAnswer::Join;
        }
        if self
            .last_trigger
            .is_some_and(|t| now.duration_since(t) < cooldown)
        {
            return GateAnswer::CoolingDown;
        }
        // Fetching from now on, so callers arriving before the refresher starts it wait for it
        // instead of being told to cool down.
        self.state = GateState::Fetching;
        self.last_trigger = Some(now);
        self.asked_for = Some(why);
        GateAnswer::Started
    }

    /// The refresher starts a fetch (asked for, or on its schedule); returns why it was asked
    /// for, if a caller asked.
    fn begin(&mut self) -> Option<Trigger> {
        self.state = GateState::Fetching;
        self.asked_for.take()
    }

    /// The refresher's fetch has ended, installed or not.
    fn finish(&mut self) {
        self.state = GateState::Idle;
    }

    #[cfg(test)]
    fn is_fetching(&self) -> bool {
        self.state == GateState::Fetching
    }
}

/// What [`Jwks::join_or_trigger`] did.
enum Joined {
    /// Wait until this many attempts have finished: the end of the fetch joined or started.
    Until(u64),
    /// Inside the cooldown: nothing to wait for.
    CoolingDown,
}

/// A key set in force, and since when (for staleness).
struct Installed {
    keys: Arc<KeySet>,
    at: Instant,
}

struct Shared {
    current: ArcSwapOption<Installed>,
    settings: JwksSettings,
    /// The number of finished fetch attempts, successful or not. Changed only while holding
    /// `gate`, together with the gate's state.
    attempts: watch::Sender<u64>,
    gate: Mutex<RefetchGate>,
    wake: Notify,
    /// Set when the refresher task ended while serving; cleared by the next install.
    refresher_down: AtomicBool,
    /// Woken (one stored permit) after every attempt, and when the refresher stops: health,
    /// which may watch several key sets, listens here.
    observer: Arc<Notify>,
    /// Where fetches and suppressed refetches are counted.
    metrics: IssuerMetrics,
    /// Where fetch spans go, when tracing is on (set once, before the refresher starts).
    tracer: OnceLock<Tracer>,
    /// Set once the discovery fallback has been logged, so the warning is not repeated at
    /// every refresh.
    fallback_logged: AtomicBool,
}

/// Handle on the shared key set. Cheap to clone; all clones see the same snapshot.
#[derive(Clone)]
pub struct Jwks {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks")
            .field("uri", &self.shared.settings.uri.as_str())
            .finish_non_exhaustive()
    }
}

impl Jwks {
    /// A handle with no key set loaded yet.
    pub fn new(settings: JwksSettings) -> Self {
        Jwks::with_observer(settings, Arc::new(Notify::new()), IssuerMetrics::detached())
    }

    /// A handle with no key set loaded yet, that wakes `observer` after every fetch attempt
    /// (and when its refresher stops): the moments [`Jwks::is_usable`] may change, besides a set
    /// going stale with time. Several key sets may share one observer. Fetches are counted in
    /// `metrics`.
    pub fn with_observer(
        settings: JwksSettings,
        observer: Arc<Notify>,
        metrics: IssuerMetrics,
    ) -> Self {
        Jwks {
            shared: Arc::new(Shared {
                current: ArcSwapOption::empty(),
                settings,
                attempts: watch::channel(0).0,
                gate: Mutex::new(RefetchGate::default()),
                wake: Notify::new(),
                refresher_down: AtomicBool::new(false),
                observer,
                metrics,
                tracer: OnceLock::new(),
                fallback_logged: AtomicBool::new(false),
            }),
        }
    }

    /// Makes a span of every fetch with `tracer`: a child of the wait of the Check that asked
    /// for it, or a root (sampled at `sample_ratio`) for the refresher's own. Only the first
    /// call counts; tracing settings never change while the process runs.
    pub fn trace_with(&self, tracer: Tracer) {
        let _ = self.shared.tracer.set(tracer);
    }

    /// The key set in force, or `None` while none has loaded or while the last successful load
    /// is older than `max_stale` (so that an issuer outage cannot keep withdrawn keys valid for
    /// ever). Lock-free.
    pub fn snapshot(&self) -> Option<Arc<KeySet>> {
        let installed = self.shared.current.load();
        let installed = installed.as_ref()?;
        (installed.at.elapsed() <= self.shared.settings.max_stale)
            .then(|| Arc::clone(&installed.keys))
    }

    /// Whether this instance should be sent traffic (drives health): a key set is in force and
    /// the refresher that keeps it current is running (after a refresher restart, from the
    /// moment the new one installs a set).
    pub fn is_usable(&self) -> bool {
        !self.shared.refresher_down.load(Ordering::Acquire) && self.snapshot().is_some()
    }

    /// How this key set is fetched.
    pub fn settings(&self) -> &JwksSettings {
        &self.shared.settings
    }

    /// Waits at most `within` for the refresher's first fetch attempt to end (successful or
    /// not); whether it has. A reload waits on this for new issuers, so that their tokens are
    /// not answered 503 for want of a fetch that has not had time to happen.
    pub async fn first_attempt(&self, within: Duration) -> bool {
        let mut attempts = self.shared.attempts.subscribe();
        tokio::time::timeout(within, attempts.wait_for(|done| *done >= 1))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Puts a key set in force (the refresher calls this; tests and benchmarks may too).
    pub fn install(&self, keys: KeySet) {
        self.shared.current.store(Some(Arc::new(Installed {
            keys: Arc::new(keys),
            at: Instant::now(),
        })));
        self.shared.refresher_down.store(false, Ordering::Release);
    }

    /// Asks the refresher for a refetch because a token named an unknown `kid`, and waits, at
    /// most `unknown_kid_wait`, for that fetch to finish.
    ///
    /// Single-flight: callers arriving while a fetch is under way wait for that same fetch. At most
    /// one refetch is triggered per cooldown; within it, callers return [`Refetch::CoolingDown`]
    /// at once. A caller that stops waiting leaves the fetch running: its result serves the
    /// requests that come after.
    pub async fn refetch_for_unknown_kid(&self) -> Refetch {
        // A child of the Check's span when it is traced, linked to the fetch it waited for.
        let span = traces::child_of_current(traces::WAIT_SPAN);
        let target = match self.join_or_trigger(Trigger::unknown_kid, span.as_ref()) {
            Joined::Until(target) => target,
            Joined::CoolingDown => {
                end_wait(span.as_ref(), Refetch::CoolingDown, None);
                return Refetch::CoolingDown;
            }
        };
        let mut attempts = self.shared.attempts.subscribe();
        let wait = self.shared.settings.unknown_kid_wait;
        let refetch =
            match tokio::time::timeout(wait, attempts.wait_for(|done| *done >= target)).await {
                Ok(_) => Refetch::Completed,
                Err(_) => Refetch::TimedOut,
            };
        if span.is_some() {
            let fetch = self
                .lock_gate()
                .fetch_span
                .clone()
                .filter(|(attempt, _)| *attempt == target)
                .map(|(_, fetch)| fetch);
            end_wait(span.as_ref(), refetch, fetch);
        }
        refetch
    }

    /// Asks the refresher for a fetch without waiting for it (a Check that found the key set
    /// stale or absent: that caller is answered 503 now, the ones after it may be served).
    /// Shares the single-flight gate and the cooldown with unknown-`kid` refetches.
    pub fn request_refetch(&self) {
        let _ = self.join_or_trigger(Trigger::stale, None);
    }

    /// Joins the fetch under way, or starts one unless inside the cooldown. The attempt count is
    /// read under the gate's lock, where [`Jwks::finish_attempt`] changes it together with the
    /// gate's state, so the count to wait for is exactly the end of the fetch joined or started.
    fn join_or_trigger(&self, why: Trigger, asking: Option<&Context>) -> Joined {
        let mut gate = self.lock_gate();
        let finished = *self.shared.attempts.borrow();
        match gate.ask(Instant::now(), self.shared.settings.refetch_cooldown, why) {
            GateAnswer::Join => Joined::Until(finished + 1),
            GateAnswer::CoolingDown => {
                drop(gate);
                self.shared.metrics.refetch_suppressed();
                Joined::CoolingDown
            }
            GateAnswer::Started => {
                gate.asked_by = asking.cloned();
                drop(gate);
                self.shared.wake.notify_one();
                Joined::Until(finished + 1)
            }
        }
    }

    /// The refresher starts a fetch; returns why a Check asked for it, if one did, and the
    /// fetch's span when traced (remembered in the gate for the waits to link to).
    fn begin_attempt(&self) -> (Option<Trigger>, Option<Context>) {
        let mut gate = self.lock_gate();
        let why = gate.begin();
        let asked_by = gate.asked_by.take();
        let span = self.shared.tracer.get().and_then(|tracer| {
            tracer.start_fetch(asked_by.as_ref(), self.shared.settings.uri.as_str())
        });
        gate.fetch_span = span.as_ref().map(|cx| {
            let attempt = *self.shared.attempts.borrow() + 1;
            (attempt, cx.span().span_context().clone())
        });
        (why, span)
    }

    /// The refresher has finished a fetch (installed or not): return the gate to idle and count
    /// the attempt in one step under the gate's lock, so that no caller can see the fetch as over
    /// and yet be woken by its count, nor see it under way and miss its end.
    fn finish_attempt(&self) {
        let mut gate = self.lock_gate();
        gate.finish();
        self.shared.attempts.send_modify(|n| *n += 1);
        drop(gate);
        self.shared.observer.notify_one();
    }

    /// Called by the refresher's supervisor when the refresher task has ended while serving
    /// (it panicked, or returned when it should not have). Releases every waiter (their fetch
    /// will not finish), and makes [`Jwks::is_usable`] false until a restarted refresher
    /// installs a key set. Checks keep using the set in force, within `max_stale`.
    pub fn refresher_stopped(&self) {
        self.shared.refresher_down.store(true, Ordering::Release);
        self.finish_attempt();
    }

    fn lock_gate(&self) -> std::sync::MutexGuard<'_, RefetchGate> {
        // Every gate transition is a single assignment or two that cannot panic between them, so
        // a poisoned lock (a panic elsewhere while held) leaves nothing half-updated: recover it.
        self.shared
            .gate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How long until the set in force goes stale, if one is installed and still fresh.
    fn until_stale(&self) -> Option<Duration> {
        let installed = self.shared.current.load().as_ref()?.at;
        (installed + self.shared.settings.max_stale).checked_duration_since(Instant::now())
    }

    /// Fetches the key set now, then on schedule, until `shutdown` resolves.
    ///
    /// Success: the set is installed and the next fetch is `max-age` (clamped to the configured
    /// bounds) or the configured refresh interval later. Failure: the last good set stays, and the
    /// fetch is retried with exponential backoff from 1 s up to [`MAX_RETRY_BACKOFF`]. Either way
    /// the task never sleeps past the moment the set in force would go stale. A Check that needs
    /// a fetch (unknown `kid`, stale set) wakes the task early.
    pub async fn run_refresher(self, client: outbound::Client, shutdown: impl Future<Output = ()>) {
        let settings = self.shared.settings.clone();
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        let mut first = true;
        loop {
            let (asked_for, span) = self.begin_attempt();
            let trigger = match asked_for {
                _ if first => Trigger::startup,
                Some(why) => why,
                None if failures > 0 => Trigger::retry,
                None => Trigger::scheduled,
            };
            first = false;
            let outcome = tokio::select! {
                outcome = fetch(&client, &settings) => outcome,
                () = &mut shutdown => return,
            };
            let next = match outcome {
                Ok(Fetched {
                    keys,
                    skipped,
                    max_age,
                    fell_back,
                    ..
                }) => {
                    failures = 0;
                    if let Some(fallback) = fell_back
                        && !self.shared.fallback_logged.swap(true, Ordering::Relaxed)
                    {
                        log_fallback(&settings.uri, &fallback);
                    }
                    if !skipped.is_empty() {
                        let summary = SkipSummary::of(&skipped);
                        tracing::warn!(
                            uri = %settings.uri,
                            skipped = summary.count,
                            reasons = %summary.reasons,
                            first_kids = ?summary.first_kids,
                            "JWKS entries skipped"
                        );
                    }
                    tracing::info!(
                        uri = %settings.uri,
                        keys = keys.len(),
                        kids = ?keys.kids(),
                        "JWKS loaded"
                    );
                    let count = keys.len();
                    self.install(keys);
                    self.shared
                        .metrics
                        .fetched(trigger, FetchResult::success, Some(count));
                    end_fetch(span.as_ref(), trigger, FetchResult::success);
                    max_age
                        .unwrap_or(settings.refresh)
                        .clamp(settings.min_refresh, settings.max_refresh)
                }
                Err(error) => {
                    self.shared.metrics.fetched(trigger, error.result(), None);
                    end_fetch(span.as_ref(), trigger, error.result());
                    failures = failures.saturating_add(1);
                    let backoff = jittered(retry_backoff(failures));
                    let have_keys = self.snapshot().is_some();
                    tracing::warn!(
                        %error,
                        retry_in = ?backoff,
                        keeping_previous_keys = have_keys,
                        max_stale = ?settings.max_stale,
                        "JWKS refresh failed"
                    );
                    backoff
                }
            };
            self.finish_attempt();
            let next = next_wait(next, self.until_stale());

            tokio::select! {
                () = tokio::time::sleep(next) => {}
                () = self.shared.wake.notified() => {}
                () = &mut shutdown => return,
            }
        }
    }
}

/// Ends a traced fetch's span with what triggered it and how it ended (fixed label values).
fn end_fetch(span: Option<&Context>, trigger: Trigger, result: FetchResult) {
    if let Some(cx) = span {
        cx.span().set_attributes([
            KeyValue::new("scopegate.jwks.trigger", format!("{trigger:?}")),
            KeyValue::new("scopegate.jwks.result", format!("{result:?}")),
        ]);
        traces::end(
            cx,
            (result != FetchResult::success).then_some("fetch failed"),
        );
    }
}

/// Ends a traced unknown-`kid` wait, linked to the fetch it waited for when known.
fn end_wait(span: Option<&Context>, refetch: Refetch, fetch: Option<SpanContext>) {
    if let Some(cx) = span {
        if let Some(fetch) = fetch {
            traces::link(cx, fetch);
        }
        let outcome = match refetch {
            Refetch::Completed => "completed",
            Refetch::CoolingDown => "cooling_down",
            Refetch::TimedOut => "timed_out",
        };
        cx.span()
            .set_attribute(KeyValue::new("scopegate.jwks.refetch", outcome));
        traces::end(cx, None);
    }
}

/// How long the refresher sleeps: `planned`, but never past the moment the set in force goes
/// stale (`until_stale`), so a last attempt is made before Checks would start getting 503.
pub fn next_wait(planned: Duration, until_stale: Option<Duration>) -> Duration {
    match until_stale {
        Some(until_stale) => planned.min(until_stale),
        None => planned,
    }
}

/// `delay` shortened by a random 0–25 %, so that replicas that failed together do not retry the
/// issuer in lockstep.
fn jittered(delay: Duration) -> Duration {
    use std::hash::{BuildHasher as _, Hasher as _};
    // A fresh RandomState is seeded randomly; its hash of nothing is a random number.
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let fraction = (random % 1000) as f64 / 4000.0;
    delay.mul_f64(1.0 - fraction)
}

/// 1 s, 2 s, 4 s, 8 s, then [`MAX_RETRY_BACKOFF`].
pub fn retry_backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_RETRY_BACKOFF)
}

/// Builds the HTTP client for one issuer's fetches: its own roots and pool, the fetch timeout,
/// no redirects, and its [`FetchPolicy`] on every URL.
pub fn http_client(settings: &JwksSettings) -> Result<outbound::Client, reqwest::Error> {
    settings.fetch_policy.client(settings.fetch_timeout)
}

/// What one fetch brought.
struct Fetched {
    keys: KeySet,
    skipped: Vec<SkippedKey>,
    max_age: Option<Duration>,
    /// The URL the key set was read from.
    from: reqwest::Url,
    /// The discovery document answered 404 and the keys came from this fallback URL.
    fell_back: Option<reqwest::Url>,
}

/// The warning for an issuer whose discovery document is missing: its keys still load, from
/// the shorthand's old default location.
fn log_fallback(discovery: &reqwest::Url, fallback: &reqwest::Url) {
    tracing::warn!(
        %discovery,
        %fallback,
        "the issuer has no OIDC discovery document (404); its keys are fetched from the \
         issuer's /.well-known/jwks.json instead. Set jwks_uri to say where they are"
    );
}

/// Fetches the key set once, as the refresher's first fetch would (discovery included, same
/// limits), for one-off uses such as `scopegate explain`; with the URL the keys came from, which
/// for an issuer found by discovery is the `jwks_uri` its document named (or the fallback).
pub async fn fetch_once(settings: &JwksSettings) -> Result<(KeySet, reqwest::Url), JwksError> {
    let client = http_client(settings).map_err(|e| JwksError::Fetch {
        uri: settings.uri.to_string(),
        reason: e.to_string(),
    })?;
    let fetched = fetch(&client, settings).await?;
    if let Some(fallback) = &fetched.fell_back {
        log_fallback(&settings.uri, fallback);
    }
    Ok((fetched.keys, fetched.from))
}

async fn fetch(client: &outbound::Client, settings: &JwksSettings) -> Result<Fetched, JwksError> {
    let (jwks_uri, fell_back) = match &settings.discovery_issuer {
        None => (settings.uri.clone(), None),
        Some(issuer) => match (
            discover(client, settings, issuer).await,
            &settings.fallback_uri,
        ) {
            (Ok(uri), _) => (uri, None),
            // Only "there is no such document": any other failure (another issuer named, a
            // 5xx, a timeout) stays a failure, so a broken provider is never papered over.
            (Err(JwksError::Status { status: 404, .. }), Some(fallback)) => {
                (fallback.clone(), Some(fallback.clone()))
            }
            (Err(e), _) => return Err(e),
        },
    };
    let (body, max_age) = get_bounded(client, &jwks_uri, settings).await?;
    let (keys, skipped) = parse_off_runtime(body, settings).await?;
    Ok(Fetched {
        keys,
        skipped,
        max_age,
        from: jwks_uri,
        fell_back,
    })
}

/// Reads the OpenID Provider Configuration at `settings.uri` (OIDC Discovery 1.0 §4) and returns
/// its `jwks_uri`, once its `issuer` has proved exactly equal to the configured one (§4.3): a
/// document that names another issuer could otherwise point this issuer's tokens at another
/// issuer's keys. Same rules as the JWKS fetch: no redirects, bounded size and time, and the
/// `jwks_uri` it names must satisfy the issuer's [`FetchPolicy`] (https unless loopback or
/// allowed), or the document is refused.
async fn discover(
    client: &outbound::Client,
    settings: &JwksSettings,
    issuer: &str,
) -> Result<reqwest::Url, JwksError> {
    #[derive(Deserialize)]
    struct Metadata {
        issuer: String,
        jwks_uri: String,
    }
    let uri = settings.uri.as_str().to_owned();
    let (body, _) = get_bounded(client, &settings.uri, settings).await?;
    let metadata: Metadata = serde_json::from_slice(&body).map_err(|e| JwksError::Discovery {
        uri: uri.clone(),
        reason: format!("not a provider configuration with issuer and jwks_uri: {e}"),
    })?;
    if metadata.issuer != issuer {
        return Err(JwksError::Discovery {
            uri,
            reason: format!(
                "names issuer {:?}, not the configured {issuer:?}; its keys are not used",
                metadata.issuer
            ),
        });
    }
    match reqwest::Url::parse(&metadata.jwks_uri) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host_str().is_some() => {
            client
                .policy()
                .permits(&url)
                .map_err(|e| JwksError::Discovery {
                    uri,
                    reason: format!("names a jwks_uri that is refused: {e}"),
                })?;
            Ok(url)
        }
        _ => Err(JwksError::Discovery {
            uri,
            reason: format!("jwks_uri {:?} is not an http(s) URL", metadata.jwks_uri),
        }),
    }
}

/// GETs `url` as JSON within the fetch timeout, refusing redirects (the client follows none),
/// error statuses and bodies over `max_bytes` (without reading them whole); the body and the
/// response's `Cache-Control: max-age`.
async fn get_bounded(
    client: &outbound::Client,
    url: &reqwest::Url,
    settings: &JwksSettings,
) -> Result<(Vec<u8>, Option<Duration>), JwksError> {
    let uri = url.as_str().to_owned();
    let fetch_error = |e: reqwest::Error| JwksError::Fetch {
        uri: uri.clone(),
        reason: describe(&e, settings.fetch_timeout),
    };
    let mut response = client.get(url).await.map_err(|e| match e {
        GetError::Http(e) => fetch_error(e),
        GetError::Refused(e) => JwksError::Fetch {
            uri: uri.clone(),
            reason: e.to_string(),
        },
    })?;
    if !response.status().is_success() {
        return Err(JwksError::Status {
            uri,
            status: response.status().as_u16(),
        });
    }
    let max_age = response
        .headers()
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    if response
        .content_length()
        .is_some_and(|len| len > settings.max_bytes as u64)
    {
        return Err(JwksError::TooLarge {
            uri,
            limit: settings.max_bytes,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(fetch_error)? {
        if body.len() + chunk.len() > settings.max_bytes {
            return Err(JwksError::TooLarge {
                uri,
                limit: settings.max_bytes,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, max_age))
}

/// What went wrong with a fetch, in words an operator can act on. reqwest describes a timeout
/// that cuts the body short as "error decoding response body"; say that it timed out, and name
/// the underlying cause of anything else.
fn describe(error: &reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!(
            "timed out after {}s (jwks_fetch_timeout_seconds)",
            timeout.as_secs()
        );
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// [`KeySet::parse`] on a blocking thread: thousands of entries, each an RSA key parse per
/// allowed algorithm, must not stall the runtime threads that answer Checks. A panic in the
/// parser becomes an error (the refresh fails, the previous set stays).
pub async fn parse_off_runtime(
    body: Vec<u8>,
    settings: &JwksSettings,
) -> Result<(KeySet, Vec<SkippedKey>), JwksError> {
    let algorithms = settings.algorithms.clone();
    let max_keys = settings.max_keys;
    let parsed = tokio::task::spawn_blocking(move || KeySet::parse(&body, &algorithms, max_keys))
        .await
        .map_err(|e| JwksError::Internal(e.to_string()))?;
    Ok(parsed?)
}

#[cfg(test)]
pub(crate) mod tests;
