//! [`Introspector`]: one issuer's introspections over time, so that the identity provider is
//! asked as rarely as the answers allow and never more than it was promised.
//!
//! - **Caches**, by SHA-256 of the token (never the token): an active answer is remembered until
//!   the earlier of its `exp` and `introspection_cache_seconds` (a token revoked at the server
//!   is honoured within that time: the documented trade-off); an inactive or refused one for
//!   `introspection_negative_cache_seconds`, so a junk token costs at most one call per window.
//!   Both are bounded in bytes like the verified-token cache (`quick_cache`, each entry weighing
//!   its estimated heap bytes); failures (the server's fault) are never remembered.
//! - **Single-flight**: Checks of one token while a call for it is in flight wait for that call.
//!   The call runs in a task of its own, so a Check that times out (or whose client goes away)
//!   neither cancels it for the others nor loses its answer for the cache.
//! - **Caps**: at most `introspection_max_in_flight` calls at once, and at most
//!   `introspection_max_calls_per_second` started per second (a token bucket one second deep):
//!   distinct junk tokens miss every cache, and would otherwise be amplified onto the identity
//!   provider. Past either, a Check for an uncached token is answered 503 with `Retry-After`
//!   at once, counted as `throttled`.
//! - **Health**: usable unless its last [`UNHEALTHY_AFTER`] calls all failed and the last of
//!   them is less than [`UNHEALTHY_FOR`] old (so an idle issuer comes back and is tried again).
//!
//! An `Introspector` belongs to the live generation; a reload that changes nothing it depends
//! on (endpoint, client, secret, expectations, cache budgets) hands it to the next generation,
//! caches and all, and any other reload starts a new one, empty.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

use crate::auth::heap::allocation_bytes;
use crate::auth::introspect::{self, CallFailure, IntrospectionSettings};
use crate::auth::token_cache::{MAX_ENTRY_SHARE, TokenCache, TokenDigest, entry_bytes};
use crate::auth::verify::{self, AnswerError, Expectations, VerifiedClaims, VerifyError};
use crate::net::outbound;
use crate::telemetry::metrics::{IntrospectionResult, Metrics};

/// Consecutive failed calls after which the issuer counts as unusable for health.
pub const UNHEALTHY_AFTER: u32 = 5;
/// How long after its last failed call an unusable issuer counts as unusable.
pub const UNHEALTHY_FOR: Duration = Duration::from_secs(30);

/// What a negative cache entry weighs: its slot, digest and reason, from above.
const NEGATIVE_ENTRY_BYTES: u64 = 256;

/// Why introspection gave no answer to use: the Check gets 503, never 401 and never an allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    /// The in-flight cap or the calls-per-second bucket is exhausted.
    #[error("token introspection is at capacity; retry shortly")]
    Busy,
    /// The endpoint failed (down, timeout, 5xx, malformed or oversized answer).
    #[error("token introspection is unavailable")]
    Failed,
}

/// How introspecting a token ended, when it did not give claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IntrospectError {
    /// The token is refused (401): inactive, or an answer that does not meet expectations.
    #[error(transparent)]
    Refused(#[from] VerifyError),
    /// No usable answer (503).
    #[error(transparent)]
    Unavailable(#[from] Unavailable),
}

type Outcome = Result<Arc<VerifiedClaims>, IntrospectError>;

/// An active answer remembered.
#[derive(Debug)]
struct Positive {
    claims: VerifiedClaims,
    /// Unix seconds until which it is used: the earlier of `exp` and the cache time.
    until: u64,
    weight: u64,
}

/// A refusal remembered.
#[derive(Debug, Clone)]
struct Negative {
    error: VerifyError,
    until: u64,
}

#[derive(Clone, Debug)]
struct PositiveWeight;

impl quick_cache::Weighter<TokenDigest, Arc<Positive>> for PositiveWeight {
    fn weight(&self, _: &TokenDigest, entry: &Arc<Positive>) -> u64 {
        entry.weight
    }
}

#[derive(Clone, Debug)]
struct NegativeWeight;

impl quick_cache::Weighter<TokenDigest, Negative> for NegativeWeight {
    fn weight(&self, _: &TokenDigest, _: &Negative) -> u64 {
        NEGATIVE_ENTRY_BYTES
    }
}

/// A token bucket: `rate` tokens a second, at most `rate` held.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    rate: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32) -> Bucket {
        Bucket {
            tokens: f64::from(rate),
            rate: f64::from(rate),
            last: Instant::now(),
        }
    }

    /// Takes one token if there is one.
    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One issuer's introspections: its client, caches, calls in flight and caps.
pub struct Introspector {
    issuer: Arc<str>,
    settings: IntrospectionSettings,
    expectations: Expectations,
    /// `None` when the HTTP client could not be built (every call then fails, logged).
    client: Option<outbound::Client>,
    /// The endpoint, once known (discovery is asked until it answers).
    endpoint: ArcSwapOption<reqwest::Url>,
    positive: Option<quick_cache::sync::Cache<TokenDigest, Arc<Positive>, PositiveWeight>>,
    positive_ceiling: u64,
    positive_floor: u64,
    negative: Option<quick_cache::sync::Cache<TokenDigest, Negative, NegativeWeight>>,
    /// Calls in flight by token digest: Checks of the same token wait for the same answer.
    flights: Mutex<HashMap<TokenDigest, watch::Receiver<Option<Outcome>>>>,
    permits: Arc<Semaphore>,
    bucket: Mutex<Bucket>,
    failures: AtomicU32,
    last_failure: Mutex<Option<Instant>>,
    /// The budgets it was built with, to tell whether a reload may keep it.
    budgets: (usize, u64),
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("issuer", &self.issuer)
            .field("endpoint", &self.settings.endpoint)
            .finish_non_exhaustive()
    }
}

/// Locks `mutex`, whose data stays consistent even if a holder panicked (each critical section
/// is one update).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Introspector {
    /// `issuer`'s introspector: `settings` and the `expectations` answers are held to, caches of
    /// at most about `cache_size` entries and `cache_max_bytes` bytes each (the verified-token
    /// cache's budgets; either 0: nothing is cached).
    pub fn new(
        issuer: &str,
        settings: IntrospectionSettings,
        expectations: Expectations,
        cache_size: usize,
        cache_max_bytes: u64,
    ) -> Introspector {
        let client = match introspect::http_client(&settings) {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::error!(%issuer, %error, "the introspection HTTP client cannot be built; this issuer's introspected tokens get 503");
                None
            }
        };
        let endpoint = match &settings.endpoint {
            introspect::Endpoint::Configured(url) => Some(Arc::new(url.clone())),
            introspect::Endpoint::Discovered { .. } => None,
        };
        let on = cache_size > 0 && cache_max_bytes > 0;
        let positive = (on && settings.cache_seconds > 0).then(|| {
            quick_cache::sync::Cache::with_weighter(cache_size, cache_max_bytes, PositiveWeight)
        });
        let negative = (on && settings.negative_cache_seconds > 0).then(|| {
            let bytes = (cache_max_bytes / 4).max(NEGATIVE_ENTRY_BYTES);
            quick_cache::sync::Cache::with_weighter(
                (bytes / NEGATIVE_ENTRY_BYTES) as usize,
                bytes,
                NegativeWeight,
            )
        });
        Introspector {
            issuer: issuer.into(),
            permits: Arc::new(Semaphore::new(settings.max_in_flight)),
            bucket: Mutex::new(Bucket::new(settings.max_calls_per_second)),
            positive,
            positive_ceiling: cache_max_bytes / MAX_ENTRY_SHARE,
            positive_floor: (cache_max_bytes / cache_size.max(1) as u64).max(1),
            negative,
            settings,
            expectations,
            client,
            endpoint: ArcSwapOption::new(endpoint),
            flights: Mutex::new(HashMap::new()),
            failures: AtomicU32::new(0),
            last_failure: Mutex::new(None),
            budgets: (cache_size, cache_max_bytes),
        }
    }

    /// Whether a generation for `issuer` with these settings, expectations and budgets may keep
    /// this introspector (and its caches): only when none of them changed.
    pub fn serves(
        &self,
        issuer: &str,
        settings: &IntrospectionSettings,
        expectations: &Expectations,
        budgets: (usize, u64),
    ) -> bool {
        *self.issuer == *issuer
            && self.settings == *settings
            && self.expectations == *expectations
            && self.budgets == budgets
    }

    /// Its settings.
    pub fn settings(&self) -> &IntrospectionSettings {
        &self.settings
    }

    /// Whether the issuer's introspection counts as usable: unless its last
    /// [`UNHEALTHY_AFTER`] calls all failed, the last less than [`UNHEALTHY_FOR`] ago.
    pub fn is_usable(&self) -> bool {
        self.failures.load(Ordering::Relaxed) < UNHEALTHY_AFTER
            || lock(&self.last_failure).is_none_or(|at| at.elapsed() >= UNHEALTHY_FOR)
    }

    /// Estimated bytes the two caches hold.
    pub fn bytes(&self) -> u64 {
        self.positive.as_ref().map_or(0, |c| c.weight())
            + self.negative.as_ref().map_or(0, |c| c.weight())
    }

    /// The claims of `token` at `now` (Unix seconds): remembered, or from a call (one per token
    /// at a time, within the caps), counted in `metrics`.
    pub async fn introspect(
        self: &Arc<Self>,
        token: &str,
        now: u64,
        metrics: &Metrics,
    ) -> Result<VerifiedClaims, IntrospectError> {
        let digest = TokenCache::digest(token);
        if let Some(positive) = &self.positive
            && let Some(entry) = positive.get(&digest)
        {
            if now < entry.until {
                return Ok(entry.claims.clone());
            }
            positive.remove(&digest);
        }
        if let Some(negative) = &self.negative
            && let Some(entry) = negative.get(&digest)
        {
            if now < entry.until {
                return Err(entry.error.into());
            }
            negative.remove(&digest);
        }
        let mut answer = {
            let mut flights = lock(&self.flights);
            match flights.get(&digest) {
                Some(answer) => answer.clone(),
                None => {
                    let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
                        metrics.introspection(&self.issuer, IntrospectionResult::throttled);
                        return Err(Unavailable::Busy.into());
                    };
                    if !lock(&self.bucket).take(Instant::now()) {
                        metrics.introspection(&self.issuer, IntrospectionResult::throttled);
                        return Err(Unavailable::Busy.into());
                    }
                    let (tell, answer) = watch::channel(None);
                    flights.insert(digest, answer.clone());
                    let (this, token, metrics) =
                        (Arc::clone(self), token.to_owned(), metrics.clone());
                    tokio::spawn(async move {
                        let outcome = this.call(&token, digest, now, &metrics).await;
                        // Cached (by `call`) before the flight ends, so a Check that comes
                        // later finds one or the other.
                        lock(&this.flights).remove(&digest);
                        drop(permit);
                        let _ = tell.send(Some(outcome));
                    });
                    answer
                }
            }
        };
        let outcome = match answer.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone(),
            // The call's task ended without an answer (a panic): fail closed.
            Err(_) => None,
        };
        match outcome {
            Some(Ok(claims)) => Ok((*claims).clone()),
            Some(Err(e)) => Err(e),
            None => Err(Unavailable::Failed.into()),
        }
    }

    /// One call and what its answer means, remembered as the caches keep answers.
    async fn call(&self, token: &str, digest: TokenDigest, now: u64, metrics: &Metrics) -> Outcome {
        let answer = self.answer(token).await;
        let meaning = answer.map(|body| {
            verify::introspected(
                &body,
                &self.expectations,
                self.settings.require_audience,
                now,
            )
        });
        let (result, outcome) = match meaning {
            Err(failure) => (failure.result(), Err(failure.to_string())),
            Ok(Err(AnswerError::Malformed)) => (
                IntrospectionResult::malformed,
                Err(CallFailure::Malformed.to_string()),
            ),
            Ok(Ok(claims)) => {
                let claims = Arc::new(claims);
                self.remember(digest, &claims, now);
                (IntrospectionResult::active, Ok(Ok(claims)))
            }
            Ok(Err(AnswerError::Refused(error))) => {
                if let Some(negative) = &self.negative {
                    negative.insert(
                        digest,
                        Negative {
                            error: error.clone(),
                            until: now.saturating_add(self.settings.negative_cache_seconds),
                        },
                    );
                }
                let result = if error == VerifyError::Inactive {
                    IntrospectionResult::inactive
                } else {
                    IntrospectionResult::refused
                };
                (result, Ok(Err(IntrospectError::Refused(error))))
            }
        };
        metrics.introspection(&self.issuer, result);
        match outcome {
            Ok(outcome) => {
                self.failures.store(0, Ordering::Relaxed);
                outcome
            }
            Err(reason) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                *lock(&self.last_failure) = Some(Instant::now());
                // The reason names the endpoint and the failure, never the token or secret.
                tracing::warn!(issuer = %self.issuer, error = %reason, "token introspection failed; the Check gets 503");
                Err(Unavailable::Failed.into())
            }
        }
    }

    /// Remembers active `claims` until the earlier of their `exp` and the cache time, unless
    /// the entry would weigh more than a 64th of the budget.
    fn remember(&self, digest: TokenDigest, claims: &Arc<VerifiedClaims>, now: u64) {
        let Some(positive) = &self.positive else {
            return;
        };
        let until = claims
            .expires_at()
            .min(now.saturating_add(self.settings.cache_seconds));
        let bytes = entry_bytes(claims) + allocation_bytes(size_of::<Positive>()) as u64;
        if until <= now || bytes > self.positive_ceiling {
            return;
        }
        positive.insert(
            digest,
            Arc::new(Positive {
                claims: (**claims).clone(),
                until,
                weight: bytes.max(self.positive_floor),
            }),
        );
    }

    /// The answer's bytes from the endpoint (found by discovery first, when it has to be).
    async fn answer(&self, token: &str) -> Result<Vec<u8>, CallFailure> {
        let Some(client) = &self.client else {
            return Err(CallFailure::Network(
                "the HTTP client could not be built".into(),
            ));
        };
        let endpoint = match self.endpoint.load_full() {
            Some(url) => url,
            None => {
                let url = Arc::new(introspect::resolve(client, &self.settings).await?);
                self.endpoint.store(Some(Arc::clone(&url)));
                url
            }
        };
        introspect::call(client, &endpoint, &self.settings, token).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bucket gives a second's calls at once, then one per 1/rate seconds.
    #[tokio::test(start_paused = true)]
    async fn the_bucket_allows_a_seconds_calls_then_the_rate() {
        let mut bucket = Bucket::new(10);
        let start = Instant::now();
        let burst = (0..20).filter(|_| bucket.take(start)).count();
        assert_eq!(burst, 10);
        tokio::time::advance(Duration::from_millis(250)).await;
        let later = (0..20).filter(|_| bucket.take(Instant::now())).count();
        assert_eq!(later, 2);
        tokio::time::advance(Duration::from_secs(60)).await;
        let refilled = (0..20).filter(|_| bucket.take(Instant::now())).count();
        assert_eq!(refilled, 10, "never more than a second's worth");
    }
}
