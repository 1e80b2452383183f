//! [`Generation`]: what live requests are decided with.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::dpop::KeyCache;
use crate::auth::jwks::{Jwks, Refetch};
use crate::auth::replay::MemoryReplayCache;
use crate::auth::token::CredentialsError;
use crate::auth::token_cache::TokenCache;
use crate::auth::verify::{self, VerifyError};
use crate::config::Config;
use crate::policy::{AuthError, Authentication};
use crate::telemetry::metrics::{CacheResult, Metrics};
use crate::telemetry::traces::{self, Tracer};

use super::Authenticate;

/// What requests are decided with: one configuration and its issuers' key sets, replaced whole
/// when the configuration is reloaded. A request takes the generation in force when it starts
/// and finishes with it.
#[derive(Debug)]
pub struct Generation {
    config: Arc<Config>,
    /// One key set per issuer, in the order of `config.issuers`.
    key_sets: Vec<Jwks>,
    /// Every header any issuer forwards a claim in.
    forwarded_headers: Arc<[String]>,
    /// Tokens verified under this configuration (a reload starts afresh).
    cache: TokenCache,
    /// Parsed DPoP proof keys by thumbprint (a reload starts afresh: nothing depends on them).
    proof_keys: KeyCache,
    /// DPoP proofs seen, kept across reloads ([`Generation::succeeding`]): a reload that
    /// forgot them would let every proof of the last minute be replayed.
    replay: Arc<MemoryReplayCache>,
    /// Where decisions' spans go (`[tracing]`); `None`: no spans are made. Set once per
    /// process and carried across reloads, which cannot change `[tracing]`.
    tracer: Option<Tracer>,
}

impl Generation {
    /// `config` with the keys in `key_sets`, one per issuer of `config`, in the same order.
    pub fn new(config: Arc<Config>, key_sets: Vec<Jwks>) -> Generation {
        let replay = Arc::new(MemoryReplayCache::new(config.dpop().replay_cache_bytes()));
        Generation::with_replay(config, key_sets, replay)
    }

    /// `config` with `key_sets`, as [`Generation::new`], taking over `previous`'s DPoP replay
    /// cache when its byte budget is unchanged (a changed one starts afresh, which lets the
    /// proofs of the last window be replayed once: the one cost of changing it).
    pub fn succeeding(
        config: Arc<Config>,
        key_sets: Vec<Jwks>,
        previous: &Generation,
    ) -> Generation {
        let next =
            if previous.config.dpop().replay_cache_bytes() == config.dpop().replay_cache_bytes() {
                let replay = Arc::clone(&previous.replay);
                Generation::with_replay(config, key_sets, replay)
            } else {
                Generation::new(config, key_sets)
            };
        next.traced(previous.tracer.clone())
    }

    /// This generation, making its decisions' spans with `tracer` (none: no spans).
    pub fn traced(mut self, tracer: Option<Tracer>) -> Generation {
        self.tracer = tracer;
        self
    }

    /// Sets the token cache's answer on the decision's span, when tracing is on (without it,
    /// not even the current context is looked at).
    fn note_cache(&self, hit: bool) {
        if self.tracer.is_some() {
            traces::annotate_current(|| vec![cache_hit(hit)]);
        }
    }

    /// Where decisions' spans go, when tracing is on.
    pub fn tracer(&self) -> Option<&Tracer> {
        self.tracer.as_ref()
    }

    fn with_replay(
        config: Arc<Config>,
        key_sets: Vec<Jwks>,
        replay: Arc<MemoryReplayCache>,
    ) -> Generation {
        assert_eq!(
            key_sets.len(),
            config.issuers().len(),
            "one key set per configured issuer"
        );
        let forwarded_headers = config.forwarded_headers().into();
        let cache = TokenCache::new(config.token_cache_size(), config.token_cache_max_bytes());
        Generation {
            config,
            key_sets,
            forwarded_headers,
            cache,
            proof_keys: KeyCache::default(),
            replay,
            tracer: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The key sets, one per issuer of the configuration, in its order.
    pub fn key_sets(&self) -> &[Jwks] {
        &self.key_sets
    }

    /// The issuer (by index) whose keys verify `token`: the only one when there is one,
    /// otherwise the one its `iss` names. A token naming no configured issuer is refused
    /// before any key is looked at, so it never causes a fetch; a key of one issuer never
    /// verifies a token that names another, even under the same `kid`.
    fn issuer_of(&self, token: &str) -> Result<usize, VerifyError> {
        self.config
            .issuer_for(|| verify::peek_issuer(token))?
            .ok_or(VerifyError::WrongIssuer)
    }
}

impl Authenticate for Generation {
    fn config(&self) -> &Config {
        &self.config
    }

    fn forwarded_headers(&self) -> &[String] {
        &self.forwarded_headers
    }

    fn deadline(&self) -> Option<Duration> {
        Some(self.config.server().check_timeout)
    }

    fn proof_keys(&self) -> &KeyCache {
        &self.proof_keys
    }

    fn replay(&self) -> Option<&MemoryReplayCache> {
        Some(&self.replay)
    }

    /// Verifies the extracted token. An unknown `kid` asks the JWKS refresher for one
    /// (single-flight, rate-limited) refetch, waits for it at most `unknown_kid_wait_ms`, and
    /// tries once more with the new snapshot.
    async fn authenticate(
        &self,
        token: Result<&str, CredentialsError>,
        now: u64,
        issuer: &mut Option<usize>,
        metrics: &Metrics,
    ) -> Authentication {
        let token = token.map_err(AuthError::Credentials)?;
        // A token verified before: used only while its time claims hold and its key is still
        // in the issuer's fresh key set; anything else is verified in full, which also gives
        // the right error.
        let digest = self.cache.is_enabled().then(|| TokenCache::digest(token));
        if let Some(digest) = &digest {
            if let Some(entry) = self.cache.get(digest) {
                let index = entry.issuer;
                *issuer = Some(index);
                let jwks = &self.key_sets[index];
                let Some(keys) = jwks.snapshot() else {
                    jwks.request_refetch();
                    return Err(AuthError::KeysUnavailable);
                };
                let leeway = self.config.issuers()[index].expectations.leeway_seconds;
                if entry.claims.still_valid(&keys, leeway, now).is_ok() {
                    metrics.token_cache(CacheResult::hit);
                    self.note_cache(true);
                    return Ok(entry.claims.clone());
                }
                self.cache.remove(digest);
                metrics.token_cache_bytes(self.cache.bytes());
            }
            metrics.token_cache(CacheResult::miss);
            self.note_cache(false);
        }
        let index = self.issuer_of(token)?;
        *issuer = Some(index);
        let (expect, jwks) = (
            &self.config.issuers()[index].expectations,
            &self.key_sets[index],
        );
        let Some(keys) = jwks.snapshot() else {
            // No set, or a stale one: this request gets 503, but it asks for a fetch
            // (single-flight, once per cooldown) rather than leaving recovery to the
            // refresher's backoff.
            jwks.request_refetch();
            return Err(AuthError::KeysUnavailable);
        };
        let verified = match verify::verify(token, &keys, expect, now) {
            Err(VerifyError::UnknownKey) => {
                drop(keys);
                match jwks.refetch_for_unknown_kid().await {
                    Refetch::Completed => {
                        let keys = jwks.snapshot().ok_or(AuthError::KeysUnavailable)?;
                        verify::verify(token, &keys, expect, now)?
                    }
                    Refetch::CoolingDown | Refetch::TimedOut => {
                        return Err(VerifyError::UnknownKey.into());
                    }
                }
            }
            other => other?,
        };
        if let Some(digest) = digest
            && self.cache.insert(digest, index, &verified)
        {
            metrics.token_cache_bytes(self.cache.bytes());
        }
        Ok(verified)
    }
}

/// The span attribute saying whether the token cache answered.
fn cache_hit(hit: bool) -> opentelemetry::KeyValue {
    opentelemetry::KeyValue::new("scopegate.token_cache.hit", hit)
}
