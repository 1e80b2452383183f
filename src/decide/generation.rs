//! [`Generation`]: what live requests are decided with.

use std::sync::Arc;
use std::time::Duration;

use crate::auth::dpop::KeyCache;
use crate::auth::introspect;
use crate::auth::introspect_cache::Introspector;
use crate::auth::jwks::{Jwks, Refetch};
use crate::auth::replay::{MemoryReplayCache, RedisReplayStore, Replay};
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
    /// forgot them would let every proof of the last minute be replayed. In this process, or
    /// in the Redis store the replicas share (`dpop_replay_store`).
    replay: Replay,
    /// One per issuer that introspects (`None` for the others), in the order of
    /// `config.issuers`; kept across a reload that changes nothing it depends on.
    introspectors: Vec<Option<Arc<Introspector>>>,
    /// The issuer that introspects opaque tokens, if any (at most one, by the configuration).
    opaque_issuer: Option<usize>,
    /// Where decisions' spans go (`[tracing]`); `None`: no spans are made. Set once per
    /// process and carried across reloads, which cannot change `[tracing]`.
    tracer: Option<Tracer>,
}

impl Generation {
    /// `config` with the keys in `key_sets`, one per issuer of `config`, in the same order.
    pub fn new(config: Arc<Config>, key_sets: Vec<Jwks>) -> Generation {
        let replay = replay_for(&config);
        Generation::with_replay(config, key_sets, replay, None)
    }

    /// `config` with `key_sets`, as [`Generation::new`], taking over `previous`'s DPoP replay
    /// store when it is configured the same: the in-process cache with an unchanged byte budget
    /// (a changed one starts afresh, which lets the proofs of the last window be replayed once:
    /// the one cost of changing it), or the Redis store with unchanged settings, whose
    /// connection is kept (changed ones connect anew; the proofs stay in Redis); and each of its
    /// introspectors (caches included) whose issuer, endpoint, client, secret, expectations and
    /// cache budgets are unchanged (any change starts that issuer's caches afresh).
    pub fn succeeding(
        config: Arc<Config>,
        key_sets: Vec<Jwks>,
        previous: &Generation,
    ) -> Generation {
        let (old, new) = (previous.config.dpop(), config.dpop());
        let same = match (&previous.replay, new.replay_store()) {
            (Replay::Memory(_), None) => old.replay_cache_bytes() == new.replay_cache_bytes(),
            (Replay::Redis(store), Some(settings)) => store.settings() == settings,
            _ => false,
        };
        let replay = if same {
            previous.replay.clone()
        } else {
            replay_for(&config)
        };
        Generation::with_replay(config, key_sets, replay, Some(previous))
            .traced(previous.tracer.clone())
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
        replay: Replay,
        previous: Option<&Generation>,
    ) -> Generation {
        assert_eq!(
            key_sets.len(),
            config.issuers().len(),
            "one key set per configured issuer"
        );
        let forwarded_headers = config.forwarded_headers().into();
        let cache = TokenCache::new(config.token_cache_size(), config.token_cache_max_bytes());
        let budgets = (config.token_cache_size(), config.token_cache_max_bytes());
        let introspectors = config
            .issuers()
            .iter()
            .map(|issuer| {
                let settings = issuer.introspection.as_ref()?;
                let name = &issuer.expectations.issuer;
                let kept = previous.into_iter().flat_map(|p| p.introspectors.iter());
                let kept = kept
                    .flatten()
                    .find(|old| old.serves(name, settings, &issuer.expectations, budgets));
                Some(match kept {
                    Some(old) => Arc::clone(old),
                    None => Arc::new(Introspector::new(
                        name,
                        settings.clone(),
                        issuer.expectations.clone(),
                        budgets.0,
                        budgets.1,
                    )),
                })
            })
            .collect();
        let opaque_issuer = config
            .issuers()
            .iter()
            .position(|issuer| issuer.takes_opaque_tokens());
        Generation {
            config,
            key_sets,
            forwarded_headers,
            cache,
            proof_keys: KeyCache::default(),
            replay,
            introspectors,
            opaque_issuer,
            tracer: None,
        }
    }

    /// Whether any issuer's tokens can be decided now (what health reports): its key set is
    /// usable, or it introspects and its recent calls did not all fail.
    pub fn is_usable(&self) -> bool {
        self.config
            .issuers()
            .iter()
            .zip(&self.key_sets)
            .zip(&self.introspectors)
            .any(|((issuer, jwks), introspector)| {
                (!issuer.introspects_jwts() && jwks.is_usable())
                    || introspector.as_ref().is_some_and(|i| i.is_usable())
            })
    }

    /// Asks issuer `index`'s introspection endpoint about `token` (through its caches).
    async fn introspect(
        &self,
        index: usize,
        token: &str,
        now: u64,
        metrics: &Metrics,
    ) -> Authentication {
        let Some(introspector) = &self.introspectors[index] else {
            // The configuration routes here only issuers that introspect.
            return Err(AuthError::IntrospectionUnavailable(
                crate::auth::introspect_cache::Unavailable::Failed,
            ));
        };
        introspector
            .introspect(token, now, metrics)
            .await
            .map_err(AuthError::from)
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

/// The replay store `config` asks for, new.
fn replay_for(config: &Config) -> Replay {
    match config.dpop().replay_store() {
        Some(settings) => Replay::Redis(Arc::new(RedisReplayStore::new(settings.clone()))),
        None => Replay::Memory(Arc::new(MemoryReplayCache::new(
            config.dpop().replay_cache_bytes(),
        ))),
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

    fn replay(&self) -> Option<&Replay> {
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
        // An opaque token (only looked for when an issuer introspects, so that nothing else
        // pays for reading the header) goes to the issuer that introspects them.
        if let Some(index) = self.opaque_issuer
            && !introspect::is_jwt(token)
        {
            *issuer = Some(index);
            return self.introspect(index, token, now, metrics).await;
        }
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
        // An issuer whose JWTs are introspected too (`introspection = "always"`): its keys are
        // never fetched. Such claims never enter the token cache above.
        if self.config.issuers()[index].introspects_jwts() {
            return self.introspect(index, token, now, metrics).await;
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A generation for `text` (keys never fetched: nothing here asks for them).
    fn generation(text: &str, previous: Option<&Generation>) -> Generation {
        let config = Arc::new(
            crate::config::RawConfig::from_toml(text, "<test>")
                .and_then(crate::config::RawConfig::compile)
                .expect("compiles"),
        );
        let key_sets = config
            .issuers()
            .iter()
            .map(|issuer| Jwks::new(issuer.jwks.clone()))
            .collect();
        match previous {
            Some(previous) => Generation::succeeding(config, key_sets, previous),
            None => Generation::new(config, key_sets),
        }
    }

    /// A reload keeps an issuer's introspector, caches and all, unless the endpoint, client,
    /// secret file content, expectations or cache settings change.
    #[test]
    fn a_reload_keeps_the_introspection_caches_only_when_nothing_they_depend_on_changed() {
        let dir = tempfile::tempdir().expect("dir");
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "first").expect("write");
        let text = |extra: &str| {
            let audience = if extra.starts_with("audience") {
                ""
            } else {
                "audience = \"api\"\n"
            };
            format!(
                "issuer = \"https://idp.example/\"\n{audience}\
                 jwks_uri = \"https://idp.example/keys\"\nintrospection = \"opaque\"\n\
                 introspection_endpoint = \"https://idp.example/introspect\"\n\
                 client_id = \"gate\"\nclient_secret_file = {:?}\n{extra}\n",
                secret.display().to_string()
            )
        };
        let first = generation(&text(""), None);
        let introspector = |g: &Generation| Arc::clone(g.introspectors[0].as_ref().expect("one"));
        let kept = generation(
            &text("[[rules]]\npath = \"/new\"\npublic = true"),
            Some(&first),
        );
        assert!(Arc::ptr_eq(&introspector(&first), &introspector(&kept)));
        for changed in [
            "introspection_cache_seconds = 5",
            "client_auth = \"client_secret_post\"",
            "leeway_seconds = 5",
            "audience = \"other\"",
        ] {
            let next = generation(&text(changed), Some(&first));
            assert!(
                !Arc::ptr_eq(&introspector(&first), &introspector(&next)),
                "{changed}"
            );
        }
        std::fs::write(&secret, "second").expect("rewrite");
        let next = generation(&text(""), Some(&first));
        assert!(
            !Arc::ptr_eq(&introspector(&first), &introspector(&next)),
            "a new secret"
        );
        assert_eq!(next.opaque_issuer, Some(0));
        assert!(
            next.is_usable(),
            "an introspecting issuer is usable before any call"
        );
    }
}
