//! The issuer's signing keys: JWKS parsing, the shared snapshot, and the background refresher.
//!
//! Invariants:
//! - Keys are parsed once, when a JWKS document is loaded, into ready-to-use verifying keys (one
//!   per allowed algorithm). `Check` never parses key material.
//! - Readers take an `Arc` snapshot from an [`ArcSwapOption`]: no lock is held while verifying, and
//!   none across an `.await`.
//! - All network I/O happens in [`Jwks::run_refresher`], a background task. `Check` at most waits
//!   (bounded) for a refetch that an unknown `kid` asked for, and such refetches are single-flight
//!   and happen at most once per cooldown, so a flood of random `kid`s cannot hammer the issuer.
//! - A failed or unusable refresh never replaces the last good key set.
//! - Only the configured `jwks_uri` is fetched; redirects are not followed, the body size and the
//!   fetch time are bounded.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use aws_lc_rs::signature::{ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::verify::Algorithm;

/// Settings for fetching and caching the key set; compiled from the configuration.
#[derive(Clone, Debug)]
pub struct JwksSettings {
    /// The only URL keys are ever fetched from.
    pub uri: reqwest::Url,
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
}

/// Upper bound of the retry backoff after a failed fetch.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(10);

/// One usable signing key, ready to verify.
pub struct Key {
    kid: Option<String>,
    algorithm: Option<Algorithm>,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
}

impl Key {
    /// The `kid` the key was published with.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `alg` the key was published for, if the JWK named one.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.algorithm
    }

    /// The parsed public key for `alg`, if this key may be used with it.
    pub(crate) fn verifier(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, key)| key)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A parsed key set. Immutable once built; replaced wholesale on refresh.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Key>,
    without_kid: Vec<Key>,
    /// When [`Jwks::install`] put this set in force; `None` before that.
    installed_at: Option<Instant>,
}

/// A JWKS entry that was left out of the key set, and why. Not fatal: logged and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The entry's `kid`, if it had a readable one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: String,
}

/// Why a JWKS document could not be used at all (the previous key set, if any, stays in force).
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    /// Transport failure, timeout, or a refused redirect.
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
    /// The body is not a JSON object with a `keys` array.
    #[error("JWKS document is malformed: {0}")]
    Malformed(String),
    /// The document parsed but no entry is a usable signing key.
    #[error("JWKS document has no usable signing key ({skipped} entries skipped)")]
    NoUsableKeys {
        /// How many entries were skipped.
        skipped: usize,
    },
}

impl KeySet {
    /// Parses a JWKS document, keeping RSA signing keys usable with at least one of `algorithms`.
    ///
    /// Entries that are not usable (other key types, `use` other than `sig`, `key_ops` without
    /// `verify`, a disallowed `alg`, malformed or too-short moduli, duplicate `kid`s) are returned
    /// in the skip list rather than failing the whole document.
    pub fn parse(
        json: &[u8],
        algorithms: &[Algorithm],
    ) -> Result<(KeySet, Vec<SkippedKey>), JwksError> {
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_slice(json)
            .map_err(|e| JwksError::Malformed(format!("expected {{\"keys\": [...]}}: {e}")))?;

        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for entry in document.keys {
            match parse_key(&entry, algorithms) {
                Ok(key) => match key.kid.clone() {
                    Some(kid) if set.by_kid.contains_key(&kid) => skipped.push(SkippedKey {
                        kid: Some(kid),
                        reason: "duplicate kid (the first entry is kept)".into(),
                    }),
                    Some(kid) => {
                        set.by_kid.insert(kid, key);
                    }
                    None => set.without_kid.push(key),
                },
                Err(reason) => skipped.push(SkippedKey {
                    kid: entry.get("kid").and_then(|k| k.as_str()).map(str::to_owned),
                    reason,
                }),
            }
        }
        if set.is_empty() {
            return Err(JwksError::NoUsableKeys {
                skipped: skipped.len(),
            });
        }
        Ok((set, skipped))
    }

    /// The key for a token's `kid`. A token without `kid` is matched only when the set holds
    /// exactly one key, so that the choice is never ambiguous.
    pub fn find(&self, kid: Option<&str>) -> Option<&Key> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None if self.len() == 1 => self.by_kid.values().chain(&self.without_kid).next(),
            None => None,
        }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `kid`s in the set, sorted, for logs.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// The members of a JWK that decide whether and how it can verify.
#[derive(Deserialize)]
struct JwkFields {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    key_ops: Option<Vec<String>>,
    n: Option<String>,
    e: Option<String>,
}

/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3 requires at least 2048).
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
const MAX_RSA_BITS: usize = 8192;

fn parse_key(entry: &serde_json::Value, algorithms: &[Algorithm]) -> Result<Key, String> {
    let jwk: JwkFields =
        serde_json::from_value(entry.clone()).map_err(|e| format!("malformed JWK: {e}"))?;
    match jwk.kty.as_deref() {
        Some("RSA") => {}
        Some(other) => return Err(format!("kty {other:?} is not RSA")),
        None => return Err("no kty".into()),
    }
    if let Some(use_) = jwk.use_.as_deref()
        && use_ != "sig"
    {
        return Err(format!("use {use_:?} is not \"sig\""));
    }
    if let Some(ops) = &jwk.key_ops
        && !ops.iter().any(|op| op == "verify")
    {
        return Err("key_ops does not include \"verify\"".into());
    }
    let algorithm = match jwk.alg.as_deref() {
        None => None,
        Some(name) => match name.parse::<Algorithm>() {
            Ok(alg) if algorithms.contains(&alg) => Some(alg),
            Ok(alg) => return Err(format!("alg {alg} is not on the allow-list")),
            Err(()) => {
                return Err(format!(
                    "alg {name:?} is not a supported RSA signature algorithm"
                ));
            }
        },
    };

    let decode = |name: &str, value: Option<&String>| -> Result<Vec<u8>, String> {
        let value = value.ok_or_else(|| format!("no {name}"))?;
        let bytes = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| format!("{name} is not base64url"))?;
        // RFC 7518 forbids leading zero octets, but some publishers add one; strip them so the
        // size check below measures the real modulus.
        let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
        Ok(bytes[start..].to_vec())
    };
    let n = decode("n", jwk.n.as_ref())?;
    let e = decode("e", jwk.e.as_ref())?;
    let bits = n.len() * 8 - n.first().map_or(8, |b| b.leading_zeros() as usize);
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "modulus is {bits} bits (accepted: {MIN_RSA_BITS}..={MAX_RSA_BITS})"
        ));
    }
    if e.is_empty() || e.len() > 4 || e.last().is_some_and(|b| b % 2 == 0) || e == [1] {
        return Err("exponent is not an odd integer between 3 and 2^32".into());
    }

    let components = RsaPublicKeyComponents { n: &n, e: &e };
    let usable: Vec<Algorithm> = match algorithm {
        Some(alg) => vec![alg],
        None => algorithms.to_vec(),
    };
    let mut verifiers = Vec::with_capacity(usable.len());
    for alg in usable {
        let parsed = components
            .to_parsed_public_key(alg.rsa_parameters())
            .map_err(|e| format!("RSA key rejected: {e}"))?;
        verifiers.push((alg, parsed));
    }
    Ok(Key {
        kid: jwk.kid,
        algorithm,
        verifiers,
    })
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
    /// A fetch finished (successfully or not) after the request; look the key up again.
    Completed,
    /// A refetch happened recently; nothing was fetched, the key is unknown.
    CoolingDown,
    /// The fetch did not finish within the wait bound.
    TimedOut,
}

#[derive(Debug)]
struct RefetchGate {
    in_flight: bool,
    last_trigger: Option<Instant>,
}

struct Shared {
    current: ArcSwapOption<KeySet>,
    settings: JwksSettings,
    /// Bumped after every fetch attempt, successful or not.
    attempts: watch::Sender<u64>,
    gate: Mutex<RefetchGate>,
    wake: Notify,
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
        Jwks {
            shared: Arc::new(Shared {
                current: ArcSwapOption::empty(),
                settings,
                attempts: watch::channel(0).0,
                gate: Mutex::new(RefetchGate {
                    in_flight: false,
                    last_trigger: None,
                }),
                wake: Notify::new(),
            }),
        }
    }

    /// The key set in force, or `None` while none has loaded or while the last successful load
    /// is older than `max_stale` (so that an issuer outage cannot keep withdrawn keys valid for
    /// ever). Lock-free.
    pub fn snapshot(&self) -> Option<Arc<KeySet>> {
        let keys = self.shared.current.load_full()?;
        let fresh = keys
            .installed_at
            .is_some_and(|at| at.elapsed() <= self.shared.settings.max_stale);
        fresh.then_some(keys)
    }

    /// Whether protected requests can be verified now (drives health).
    pub fn is_usable(&self) -> bool {
        self.snapshot().is_some()
    }

    /// A receiver that changes after every fetch attempt, successful or not: the moment
    /// [`Jwks::is_usable`] may have changed (besides a set going stale with time).
    pub fn fetch_attempts(&self) -> watch::Receiver<u64> {
        self.shared.attempts.subscribe()
    }

    /// Puts a key set in force (the refresher calls this; tests and benchmarks may too).
    pub fn install(&self, mut keys: KeySet) {
        keys.installed_at = Some(Instant::now());
        self.shared.current.store(Some(Arc::new(keys)));
    }

    /// Asks the refresher for a refetch because a token named an unknown `kid`, and waits (bounded
    /// by the fetch timeout) for the fetch to finish.
    ///
    /// Single-flight: callers arriving while a fetch is under way wait for that same fetch. At most
    /// one refetch is triggered per cooldown; within it, callers return [`Refetch::CoolingDown`]
    /// at once.
    pub async fn refetch_for_unknown_kid(&self) -> Refetch {
        // Subscribe before looking at the gate, so a fetch that completes in between is seen.
        let mut attempts = self.shared.attempts.subscribe();
        let trigger = {
            let mut gate = self.lock_gate();
            let now = Instant::now();
            if gate.in_flight {
                false
            } else if gate
                .last_trigger
                .is_some_and(|t| now.duration_since(t) < self.shared.settings.refetch_cooldown)
            {
                return Refetch::CoolingDown;
            } else {
                // Mark the fetch as under way now, so callers arriving before the refresher
                // starts it wait for it instead of being told to cool down.
                gate.in_flight = true;
                gate.last_trigger = Some(now);
                true
            }
        };
        if trigger {
            self.shared.wake.notify_one();
        }
        let bound = self.shared.settings.fetch_timeout + Duration::from_secs(1);
        match tokio::time::timeout(bound, attempts.changed()).await {
            Ok(_) => Refetch::Completed,
            Err(_) => Refetch::TimedOut,
        }
    }

    fn lock_gate(&self) -> std::sync::MutexGuard<'_, RefetchGate> {
        // The gate holds two plain fields that are always consistent, so a poisoned lock (a panic
        // elsewhere while held) leaves nothing half-updated: recover it.
        self.shared
            .gate
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Fetches the key set now, then on schedule, until `shutdown` resolves.
    ///
    /// Success: the set is installed and the next fetch is `max-age` (clamped to the configured
    /// bounds) or the configured refresh interval later. Failure: the last good set stays, and the
    /// fetch is retried with exponential backoff from 1 s up to [`MAX_RETRY_BACKOFF`].
    /// An unknown-`kid` request wakes the task early.
    pub async fn run_refresher(self, client: reqwest::Client, shutdown: impl Future<Output = ()>) {
        let settings = self.shared.settings.clone();
        tokio::pin!(shutdown);
        let mut failures: u32 = 0;
        loop {
            self.lock_gate().in_flight = true;
            let outcome = tokio::select! {
                outcome = fetch(&client, &settings) => outcome,
                () = &mut shutdown => return,
            };
            let next = match outcome {
                Ok((keys, skipped, max_age)) => {
                    failures = 0;
                    for skip in &skipped {
                        tracing::warn!(kid = ?skip.kid, reason = %skip.reason, "JWKS entry skipped");
                    }
                    tracing::info!(
                        uri = %settings.uri,
                        keys = keys.len(),
                        kids = ?keys.kids(),
                        "JWKS loaded"
                    );
                    self.install(keys);
                    max_age
                        .unwrap_or(settings.refresh)
                        .clamp(settings.min_refresh, settings.max_refresh)
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let backoff = retry_backoff(failures);
                    let have_keys = self.is_usable();
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
            self.lock_gate().in_flight = false;
            self.shared.attempts.send_modify(|n| *n = n.wrapping_add(1));

            tokio::select! {
                () = tokio::time::sleep(next) => {}
                () = self.shared.wake.notified() => {}
                () = &mut shutdown => return,
            }
        }
    }
}

/// 1 s, 2 s, 4 s, 8 s, then [`MAX_RETRY_BACKOFF`].
pub fn retry_backoff(failures: u32) -> Duration {
    let exp = failures.saturating_sub(1).min(16);
    Duration::from_secs(1u64 << exp).min(MAX_RETRY_BACKOFF)
}

/// Builds the HTTP client used for JWKS fetches: rustls, bounded time, no redirects.
pub fn http_client(settings: &JwksSettings) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(settings.fetch_timeout)
        .connect_timeout(settings.fetch_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("scopegate/", env!("CARGO_PKG_VERSION")))
        .build()
}

type Fetched = (KeySet, Vec<SkippedKey>, Option<Duration>);

async fn fetch(client: &reqwest::Client, settings: &JwksSettings) -> Result<Fetched, JwksError> {
    let uri = settings.uri.as_str().to_owned();
    let fetch_error = |e: reqwest::Error| JwksError::Fetch {
        uri: uri.clone(),
        reason: e.to_string(),
    };
    let mut response = client
        .get(settings.uri.clone())
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(fetch_error)?;
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
    let (keys, skipped) = KeySet::parse(&body, &settings.algorithms)?;
    Ok((keys, skipped, max_age))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        for (header, want) in [
            ("max-age=600", Some(600)),
            ("public, max-age=15, stale-while-revalidate=15", Some(15)),
            ("MAX-AGE = 30", Some(30)),
            ("no-store", None),
            ("max-age=-1", None),
            ("max-age=abc", None),
        ] {
            assert_eq!(max_age(header), want.map(Duration::from_secs), "{header}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let secs: Vec<u64> = (1..=6).map(|n| retry_backoff(n).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
        assert_eq!(retry_backoff(u32::MAX), MAX_RETRY_BACKOFF);
    }

    #[test]
    fn malformed_documents_are_errors() {
        for doc in [&b"{}"[..], b"{\"keys\":123}", b"<html>", b"", b"[]"] {
            let err = KeySet::parse(doc, &[Algorithm::RS256]).expect_err("must fail");
            assert!(matches!(err, JwksError::Malformed(_)), "{err}");
        }
        let err = KeySet::parse(br#"{"keys":[]}"#, &[Algorithm::RS256]).expect_err("empty");
        assert!(matches!(err, JwksError::NoUsableKeys { skipped: 0 }));
    }

    #[test]
    fn unusable_entries_are_skipped_with_a_reason() {
        let small_n = URL_SAFE_NO_PAD.encode([0xC5u8; 128]); // 1024 bits
        let doc = serde_json::json!({"keys": [
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": small_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "ops", "key_ops": ["encrypt"], "n": small_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "hs", "alg": "HS256", "n": small_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "small", "n": small_n, "e": "AQAB"},
            {"kty": "RSA", "kid": "nobase64", "n": "!!", "e": "AQAB"},
            {"kty": "RSA", "kid": "noe", "n": small_n},
            "not an object",
        ]});
        let err = KeySet::parse(doc.to_string().as_bytes(), &[Algorithm::RS256])
            .expect_err("nothing usable");
        assert!(
            matches!(err, JwksError::NoUsableKeys { skipped: 9 }),
            "{err}"
        );
    }

    #[test]
    fn duplicate_kids_and_bad_exponents_are_skipped_and_good_keys_kept() {
        use aws_lc_rs::signature::KeyPair as _;
        let pair =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("key");
        let n = URL_SAFE_NO_PAD.encode(
            pair.public_key()
                .modulus()
                .big_endian_without_leading_zero(),
        );
        let doc = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "a", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "a", "n": n, "e": "AQAB"},
            {"kty": "RSA", "kid": "even", "n": n, "e": "AQAA"},
            {"kty": "RSA", "kid": "one", "n": n, "e": "AQ"},
            {"kty": "RSA", "n": n, "e": "AQAB"},
        ]});
        let (set, skipped) = KeySet::parse(
            doc.to_string().as_bytes(),
            &[Algorithm::RS256, Algorithm::PS256],
        )
        .expect("usable");
        assert_eq!(set.len(), 2);
        assert_eq!(set.kids(), ["a"]);
        let reasons: Vec<_> = skipped
            .iter()
            .map(|s| (s.kid.as_deref(), s.reason.as_str()))
            .collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[0].1.contains("duplicate kid"), "{reasons:?}");
        assert!(
            reasons[1].1.contains("exponent") && reasons[2].1.contains("exponent"),
            "{reasons:?}"
        );
        // Without a published alg, the key is prepared for every allowed algorithm.
        let key = set.find(Some("a")).expect("kid a");
        assert!(
            key.verifier(Algorithm::RS256).is_some() && key.verifier(Algorithm::PS256).is_some()
        );
        assert!(
            set.find(None).is_none(),
            "two keys: a kid-less token is ambiguous"
        );
    }
}
