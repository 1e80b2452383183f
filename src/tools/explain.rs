//! `scopegate explain`: decides one request offline, the way `serve` decides a Check, and says
//! why: the canonical path, the rule that decides it (and the shadow rules that match it), what
//! the rule requires, what the credentials grant, and the answer with its status and reason.
//!
//! The flow is the service's own: [`decide::decide`], the decision core every transport calls,
//! with an [`Authenticate`] of its own for where the keys come from. With a
//! token, the issuer's keys are fetched once (no cache, no refresh, no deadline). It counts
//! nowhere and writes no decision log: it is not serving. With `--claims`, no
//! signature exists to check: the claims are signed here by a key made for this one call and
//! verified against that key alone, so every other check (`exp`, `nbf`, `iss`, `aud`, scopes,
//! forwarded claims) is the real one, and [`verify::VerifiedClaims`] keeps meaning "verified".
//! The token itself is never printed.

use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::auth::dpop::KeyCache;
use crate::auth::introspect;
use crate::auth::introspect_cache::Introspector;
use crate::auth::jwks;
use crate::auth::keys::{Algorithm, KeySet};
use crate::auth::replay::Replay;
use crate::auth::token::CredentialsError;
use crate::auth::verify::{self, VerifiedClaims, VerifyError};
use crate::config::Config;
use crate::decide::{self, Authenticate, Labels, Verdict};
use crate::policy::{AuthError, Authentication, Decision, Denial, Requirement, Rule};
use crate::telemetry::metrics::Metrics;

/// What the request carries.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// No credentials.
    None,
    /// A token, in the first token source's place (`Authorization: Bearer <token>` by default).
    Token(String),
    /// A token with these claims (a JSON object), its signature taken as valid.
    Claims(String),
}

/// The request to decide.
#[derive(Debug, Clone)]
pub struct Request {
    /// HTTP method, as sent.
    pub method: String,
    /// `:path`, as sent (query included or not).
    pub path: String,
    /// Its credentials.
    pub credentials: Credentials,
    /// Other request headers, `(name, value)`: what decides whether it is a CORS preflight.
    pub headers: Vec<(String, String)>,
    /// A DPoP proof sent with the token (`--dpop-proof`): the token then travels under the
    /// `DPoP` scheme, and the proof is checked as a live Check would check it, but for replay
    /// (offline, nothing is remembered). Its `htu` is compared with `dpop_public_base_url`
    /// and the path when the configuration sets one, else with the proof's own scheme and host
    /// and the path: `explain` has no request to read a host from.
    pub dpop_proof: Option<String>,
    /// The client certificate the request came with, PEM (`--client-cert`): what a
    /// certificate-bound token is checked against, as Envoy's `include_peer_certificate` would
    /// pass it.
    pub client_certificate: Option<String>,
}

/// Why `explain` could not decide at all (as opposed to a request being denied).
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// `--claims` is not a JSON object.
    #[error("--claims must be a JSON object: {0}")]
    BadClaims(String),
    /// The system clock is before 1970.
    #[error("the system clock is before the Unix epoch")]
    Clock,
    /// A key for `--claims` could not be made.
    #[error("could not make a signing key for --claims: {0}")]
    Key(String),
}

/// The answer and how it was reached. Serialised as-is by `--json`.
#[derive(Debug, Serialize)]
pub struct Explanation {
    /// The method as sent.
    pub method: String,
    /// The path as sent, without its query.
    pub path: String,
    /// The path the rules are matched against, when it canonicalises.
    pub canonical_path: Option<String>,
    /// Why it does not.
    pub path_error: Option<String>,
    /// The rule (or `default`) that decides, when the path could be matched.
    pub rule: Option<RuleView>,
    /// Shadow rules matching the request: evaluated, not enforced.
    pub shadow_rules: Vec<ShadowView>,
    /// How the credentials were taken.
    pub credentials: String,
    /// What the verified credentials grant, when they verified.
    pub grants: Option<Grants>,
    /// The deciding rule's claim condition that failed: the claim, the values it was to hold
    /// and what the token had (a claim value, never the token).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claim_mismatch: Option<String>,
    /// The answer.
    pub answer: Answer,
    /// What an allow tells the proxy (Envoy's dynamic metadata); `None` for a denial.
    pub metadata: Option<decide::Metadata>,
    /// Whether the deciding rule or a shadow rule names `issuers` or `audiences`, so the token's
    /// issuer and audiences are shown beside its grants.
    #[serde(skip)]
    origin_checked: bool,
}

/// A rule as `explain` shows it.
#[derive(Debug, Serialize)]
pub struct RuleView {
    /// Its name in logs and metrics (`rules[N]` or `default` without one).
    pub name: String,
    /// Its configuration key (`rules[N]`), or `default`.
    pub key: String,
    /// `path /x`, `prefix /x/`, `template /x/{id}`, or `everything else`.
    pub matches: String,
    /// Its methods, or `any`.
    pub methods: String,
    /// What it requires.
    pub requires: String,
}

/// A shadow rule and what it would have decided.
#[derive(Debug, Serialize)]
pub struct ShadowView {
    /// The rule.
    pub rule: RuleView,
    /// What it would have answered, were it enforced.
    pub would: Answer,
}

/// What verified credentials grant.
#[derive(Debug, Serialize)]
pub struct Grants {
    /// The issuer whose expectations (and keys) the token met.
    pub issuer: String,
    /// `sub`.
    pub subject: Option<String>,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// `kid` of the key that verified it (none for `--claims`).
    pub kid: Option<String>,
    /// `aud`, every value (what a rule's `audiences` are checked against).
    pub audiences: Vec<String>,
}

/// An answer, as Envoy's client would see it.
#[derive(Debug, Serialize)]
pub struct Answer {
    /// `allow` or `deny`.
    pub decision: String,
    /// HTTP status (200 for an allow).
    pub status: u16,
    /// The metrics `reason`.
    pub reason: String,
    /// The RFC 6750 `error` of a denial.
    pub error: Option<&'static str>,
    /// The denial's message.
    pub message: Option<String>,
}

impl RuleView {
    /// The name, with the key when the rule has a name of its own.
    fn label(&self) -> String {
        if self.name == self.key {
            self.name.clone()
        } else {
            format!("{:?} ({})", self.name, self.key)
        }
    }
}

impl Explanation {
    /// Whether the request is allowed (exit status 0; else 3).
    pub fn allowed(&self) -> bool {
        self.answer.status == 200
    }
}

/// Decides `request` under `config`, fetching the keys of the token's issuer when a token must
/// be verified.
pub async fn explain(config: &Config, request: &Request) -> Result<Explanation, ExplainError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| ExplainError::Clock)?
        .as_secs();
    let offline = Offline::new(config, &request.credentials);
    let placed = placed(config, &request.credentials);
    let path = match &placed {
        Some(Placed::Query(name, token)) => {
            let joiner = if request.path.contains('?') { '&' } else { '?' };
            format!("{}{joiner}{name}={token}", request.path)
        }
        _ => request.path.clone(),
    };
    // URL-encoded, as Envoy passes a peer certificate.
    let certificate = request.client_certificate.as_deref().map(|pem| {
        percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
    });
    // A token with a DPoP proof travels under the DPoP scheme, where the source takes it.
    let placed = match (placed, &request.dpop_proof) {
        (Some(Placed::Header(name, value)), Some(_)) => {
            let schemes = config
                .token_sources()
                .iter()
                .next()
                .and_then(|source| source.schemes());
            let dpop =
                schemes.and_then(|list| list.iter().find(|s| s.eq_ignore_ascii_case("dpop")));
            match (dpop, value.split_once(' ')) {
                (Some(scheme), Some((_, token))) => {
                    Some(Placed::Header(name, format!("{scheme} {token}")))
                }
                _ => Some(Placed::Header(name, value)),
            }
        }
        (placed, _) => placed,
    };
    let (scheme, host) = match &request.dpop_proof {
        Some(proof) if config.dpop().public_base_url().is_none() => proof_origin(proof),
        _ => (String::new(), String::new()),
    };
    let mut view = decide::Request::new(&request.method, &path)
        .with_scheme(&scheme)
        .with_host(&host);
    if let Some(certificate) = &certificate {
        view = view.with_peer_certificate(certificate);
    }
    for (name, value) in &request.headers {
        view.push_header(name, value);
    }
    if let Some(Placed::Header(name, value)) = &placed {
        view.push_header(name, value);
    }
    if let Some(proof) = &request.dpop_proof {
        view.push_header("dpop", proof);
    }
    explain_view(&offline, &view, now).await
}

/// The scheme and host a DPoP proof's `htu` names, read without verifying anything (the
/// proof is verified by the decision as in a live Check): empty when it names none.
fn proof_origin(proof: &str) -> (String, String) {
    let htu = proof
        .split('.')
        .nth(1)
        .and_then(|claims| URL_SAFE_NO_PAD.decode(claims).ok())
        .and_then(|json| serde_json::from_slice::<serde_json::Value>(&json).ok())
        .and_then(|claims| claims.get("htu")?.as_str().map(str::to_owned))
        .unwrap_or_default();
    match htu.split_once("://") {
        Some((scheme, rest)) => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            (scheme.to_owned(), host.to_owned())
        }
        None => (String::new(), String::new()),
    }
}

/// Decides the request view `request` as `explain` does (its issuer's keys fetched once, no
/// deadline, nothing counted or logged) and hands the core's verdict and labels to `then`: so
/// that a transport's answer can be held beside explain's for the same request. The
/// credentials are the view's own `Authorization` headers.
pub async fn decide_view<T>(
    config: &Config,
    request: &decide::Request<'_>,
    now: u64,
    then: impl FnOnce(&Verdict<'_>, &Labels<'_>) -> T,
) -> Result<T, ExplainError> {
    let credentials = Credentials::None;
    let offline = Offline::new(config, &credentials);
    let decided = decide::decide(&offline, request, now, &Metrics::new()).await;
    if let Some(error) = offline.taken().error {
        return Err(error);
    }
    Ok(then(&decided.verdict, &decided.labels))
}

/// Where a request carries `credentials`: in the first token source's place, so `explain`
/// reads them as `serve` would.
enum Placed {
    /// A header, `(name, value)`.
    Header(String, String),
    /// A query parameter, `(name, token)`.
    Query(String, String),
}

/// `credentials` placed in the first token source: a token as copied from a request (with or
/// without its scheme), or, for `--claims`, a stand-in (what makes the request one that
/// carries credentials; the claims themselves go to [`Offline`]).
fn placed(config: &Config, credentials: &Credentials) -> Option<Placed> {
    let token = match credentials {
        Credentials::None => return None,
        Credentials::Claims(_) => "claims",
        Credentials::Token(token) => token.as_str(),
    };
    let source = config.token_sources().iter().next()?;
    // A token copied with its scheme (`Bearer ...`) is the token after it.
    let bare = match token.split_once(' ') {
        Some((scheme, rest))
            if source
                .schemes()
                .unwrap_or(&["Bearer".to_owned()])
                .iter()
                .any(|s| s.eq_ignore_ascii_case(scheme)) =>
        {
            rest.trim_start()
        }
        _ => token,
    };
    Some(match (source.kind(), source.schemes()) {
        ("header", Some(schemes)) => Placed::Header(
            source.name().to_owned(),
            // Under Bearer where the source takes it (a token without a DPoP proof is sent so),
            // else under its first scheme; `--dpop-proof` moves it to DPoP.
            format!(
                "{} {bare}",
                schemes
                    .iter()
                    .find(|s| s.eq_ignore_ascii_case("bearer"))
                    .or(schemes.first())
                    .map_or("Bearer", String::as_str)
            ),
        ),
        ("header", None) => Placed::Header(source.name().to_owned(), bare.to_owned()),
        ("cookie", _) => Placed::Header("cookie".to_owned(), format!("{}={bare}", source.name())),
        _ => Placed::Query(source.name().to_owned(), bare.to_owned()),
    })
}

/// `explain` of a request view under `offline`'s configuration and credentials.
async fn explain_view(
    offline: &Offline<'_>,
    request: &decide::Request<'_>,
    now: u64,
) -> Result<Explanation, ExplainError> {
    // Offline: nothing is scraped, so nothing is counted where anyone would see it.
    let decided = decide::decide(offline, request, now, &Metrics::new()).await;
    let Taken {
        error,
        issuer,
        credentials,
        signed,
        claims,
    } = offline.taken();
    if let Some(error) = error {
        return Err(error);
    }
    let resolved = &decided.resolved;
    let credentials = credentials.unwrap_or_else(|| {
        if decided.preflight {
            "not read: a CORS preflight, let through by cors_preflight = \"allow\"".to_string()
        } else {
            "not read: nothing here needs a token".to_string()
        }
    });
    let grants = match (claims, issuer) {
        (Some(claims), Some(issuer)) => Some(Grants {
            issuer,
            subject: claims.subject().map(str::to_owned),
            scopes: claims.scopes().iter().cloned().collect(),
            kid: claims.kid().filter(|_| signed).map(str::to_owned),
            audiences: claims.audiences().to_vec(),
        }),
        _ => None,
    };
    let shadow_rules = resolved
        .shadows
        .iter()
        .zip(&decided.shadows)
        .map(|(rule, would)| ShadowView {
            rule: view(Some(rule), rule.requirement(), rule.name()),
            would: answer_of(would, false),
        })
        .collect();
    let origin_checked = resolved
        .route
        .as_ref()
        .ok()
        .and_then(|route| route.rule)
        .into_iter()
        .chain(resolved.shadows.iter().copied())
        .any(|rule| !rule.accepts().is_any());
    let rule = resolved
        .route
        .as_ref()
        .ok()
        .map(|route| view(route.rule, route.requirement, route.name));
    let (error, message, metadata) = match &decided.verdict {
        Verdict::Allow { metadata, .. } => (None, None, Some(metadata.clone())),
        Verdict::Deny(denied) => (Some(denied.error), Some(denied.message.clone()), None),
    };
    let claim_mismatch = match &decided.decision {
        Decision::Deny(Denial::InsufficientClaims(mismatch)) => Some(mismatch.to_string()),
        _ => None,
    };
    Ok(Explanation {
        method: request.method().to_owned(),
        path: request
            .path()
            .split(['?', '#'])
            .next()
            .unwrap_or_default()
            .to_owned(),
        canonical_path: resolved.path.as_ref().ok().map(|p| p.as_str().to_owned()),
        path_error: resolved.path.as_ref().err().map(ToString::to_string),
        rule,
        shadow_rules,
        credentials,
        grants,
        claim_mismatch,
        origin_checked,
        answer: Answer {
            decision: label(decided.labels.decision),
            status: decided.labels.status,
            reason: label(decided.labels.reason),
            error,
            message,
        },
        metadata,
    })
}

/// `explain`'s keys: the token's issuer's fetched once, or for `--claims` one made for the call.
/// Records how the credentials were taken, for the explanation.
struct Offline<'c> {
    config: &'c Config,
    credentials: &'c Credentials,
    forwarded_headers: Vec<String>,
    taken: Mutex<Taken>,
    proof_keys: KeyCache,
}

/// How the credentials were taken, once authentication ran.
#[derive(Default)]
struct Taken {
    /// Why `explain` could not decide at all.
    error: Option<ExplainError>,
    /// The issuer the token was for.
    issuer: Option<String>,
    /// What was done with the credentials; `None` when they were not read.
    credentials: Option<String>,
    /// False for `--claims`, whose key (and `kid`) was made here.
    signed: bool,
    /// The verified claims, when they verified.
    claims: Option<VerifiedClaims>,
}

impl<'c> Offline<'c> {
    fn new(config: &'c Config, credentials: &'c Credentials) -> Offline<'c> {
        Offline {
            config,
            credentials,
            forwarded_headers: config.forwarded_headers(),
            taken: Mutex::default(),
            proof_keys: KeyCache::default(),
        }
    }

    /// What authentication recorded (taken out).
    fn taken(&self) -> Taken {
        std::mem::take(&mut *self.taken.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records `taken` and hands back its outcome.
    fn record(&self, auth: Authentication, mut taken: Taken) -> Authentication {
        taken.claims = auth.as_ref().ok().cloned();
        *self.taken.lock().unwrap_or_else(|e| e.into_inner()) = taken;
        auth
    }
}

impl Authenticate for Offline<'_> {
    fn config(&self) -> &Config {
        self.config
    }

    fn proof_keys(&self) -> &KeyCache {
        &self.proof_keys
    }

    /// Offline: nothing is let through, so replay is not checked.
    fn replay(&self) -> Option<&Replay> {
        None
    }

    fn forwarded_headers(&self) -> &[String] {
        &self.forwarded_headers
    }

    fn deadline(&self) -> Option<Duration> {
        None
    }

    async fn authenticate(
        &self,
        token: Result<&str, CredentialsError>,
        now: u64,
        issuer: &mut Option<usize>,
        metrics: &Metrics,
    ) -> Authentication {
        let described = |text: &str, name: Option<&str>| Taken {
            issuer: name.map(str::to_owned),
            credentials: Some(text.to_owned()),
            signed: true,
            ..Taken::default()
        };
        if let Credentials::Claims(json) = self.credentials {
            return match claims_only(self.config, json, now) {
                Ok((auth, index, taken)) => {
                    *issuer = index;
                    self.record(auth, taken)
                }
                Err(error) => self.record(
                    Err(AuthError::KeysUnavailable),
                    Taken {
                        error: Some(error),
                        ..Taken::default()
                    },
                ),
            };
        }
        let token = match token {
            Ok(token) => token,
            Err(e) => {
                let text = if e.is_absent() {
                    "none"
                } else {
                    "malformed token"
                };
                return self.record(Err(e.into()), described(text, None));
            }
        };
        // As the live service routes it: an opaque token to the issuer that introspects them
        // (when one does), anything else by its `iss`.
        let opaque = self
            .config
            .issuers()
            .iter()
            .position(|issuer| issuer.takes_opaque_tokens())
            .filter(|_| !introspect::is_jwt(token));
        let Some(index) = opaque.or_else(|| {
            self.config
                .issuer_for(|| verify::peek_issuer(token))
                .ok()
                .flatten()
        }) else {
            return self.record(
                Err(VerifyError::WrongIssuer.into()),
                described(
                    "a token naming no configured issuer (no keys fetched)",
                    None,
                ),
            );
        };
        *issuer = Some(index);
        let configured = &self.config.issuers()[index];
        let name = configured.expectations.issuer.as_str();
        if let Some(settings) = &configured.introspection
            && (opaque.is_some() || configured.introspects_jwts())
        {
            // One call to the issuer's endpoint, remembering nothing (budgets of 0), under the
            // caps and expectations the service applies.
            let introspector = Arc::new(Introspector::new(
                name,
                settings.clone(),
                configured.expectations.clone(),
                0,
                0,
            ));
            let auth = introspector
                .introspect(token, now, metrics)
                .await
                .map_err(AuthError::from);
            return self.record(
                auth,
                described(
                    &format!("a token for {name}, introspected once at its endpoint (RFC 7662)"),
                    Some(name),
                ),
            );
        }
        match jwks::fetch_once(&configured.jwks).await {
            Err(e) => self.record(
                Err(AuthError::KeysUnavailable),
                described(
                    &format!("a token for {name}, whose keys could not be fetched: {e}"),
                    Some(name),
                ),
            ),
            Ok((keys, from)) => self.record(
                verify::verify(token, &keys, &configured.expectations, now).map_err(AuthError::from),
                described(
                    &format!(
                        "a token for {name}, checked against the {} key(s) fetched once from {from}",
                        keys.len(),
                    ),
                    Some(name),
                ),
            ),
        }
    }
}

/// `--claims`: the claims signed by a key made for this call, verified with that key and the
/// issuer's expectations; with the index of that issuer and how the claims were taken.
fn claims_only(
    config: &Config,
    json: &str,
    now: u64,
) -> Result<(Authentication, Option<usize>, Taken), ExplainError> {
    let claims: serde_json::Value =
        serde_json::from_str(json).map_err(|e| ExplainError::BadClaims(e.to_string()))?;
    let Some(object) = claims.as_object() else {
        return Err(ExplainError::BadClaims("not an object".into()));
    };
    let iss = object.get("iss").and_then(|v| v.as_str());
    let Ok(index) = config.issuer_for(|| Ok::<_, std::convert::Infallible>(iss.map(str::to_owned)));
    let Some(index) = index else {
        return Ok((
            Err(VerifyError::WrongIssuer.into()),
            None,
            Taken {
                credentials: Some("claims naming no configured issuer".into()),
                signed: true,
                ..Taken::default()
            },
        ));
    };
    let issuer = &config.issuers()[index];
    let (token, keys) = self_signed(&claims, issuer.expectations.token_types.as_deref())?;
    let mut expect = issuer.expectations.clone();
    expect.algorithms = vec![Algorithm::EdDSA];
    let name = expect.issuer.as_str();
    Ok((
        verify::verify(&token, &keys, &expect, now).map_err(AuthError::from),
        Some(index),
        Taken {
            issuer: Some(name.to_owned()),
            credentials: Some(format!(
                "claims given with --claims, checked against {name}'s expectations \
                 (exp, nbf, iss, aud, scopes); the signature is NOT checked"
            )),
            signed: false,
            ..Taken::default()
        },
    ))
}

/// `claims` as a token signed by a key made for this call, and a key set of that key alone.
fn self_signed(
    claims: &serde_json::Value,
    token_types: Option<&[verify::TokenType]>,
) -> Result<(String, KeySet), ExplainError> {
    let key_error = |e: &dyn std::fmt::Display| ExplainError::Key(e.to_string());
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).map_err(|e| key_error(&e))?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|e| key_error(&e))?;
    let x = URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
    let jwks = serde_json::json!({
        "keys": [{ "kty": "OKP", "crv": "Ed25519", "x": x, "kid": "explain" }]
    });
    let (keys, _) = KeySet::parse(jwks.to_string().as_bytes(), &[Algorithm::EdDSA], 1)
        .map_err(|e| key_error(&e))?;
    let mut header = serde_json::json!({ "alg": "EdDSA", "kid": "explain" });
    if let Some(typ) = token_types.and_then(|types| types.first()) {
        header["typ"] = typ.as_str().into();
    }
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signature = pair.sign(signed.as_bytes());
    Ok((
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref())),
        keys,
    ))
}

fn view(rule: Option<&Rule>, requirement: &Requirement, name: &std::sync::Arc<str>) -> RuleView {
    match rule {
        Some(rule) => RuleView {
            name: name.to_string(),
            key: rule.key().to_owned(),
            matches: format!("{} {}", rule.path().key_name(), rule.path().pattern()),
            methods: rule
                .methods()
                .map_or_else(|| "any".to_string(), |m| m.join(",")),
            requires: {
                let requires = format!("{requirement}{}", rule.accepts());
                match rule.claims() {
                    [] => requires,
                    conditions => {
                        let conditions: Vec<String> = conditions
                            .iter()
                            .map(|c| format!("{} in {:?}", c.key(), c.values()))
                            .collect();
                        format!("{requires}, claims {}", conditions.join(" and "))
                    }
                }
            },
        },
        None => RuleView {
            name: name.to_string(),
            key: "default".to_owned(),
            matches: "everything else".to_owned(),
            methods: "any".to_owned(),
            requires: requirement.to_string(),
        },
    }
}

/// `decision` as the client would see it (`preflight`: a CORS preflight let through).
fn answer_of(decision: &Decision, preflight: bool) -> Answer {
    let (verdict, status, reason) = decide::outcome_of(decision, preflight);
    let (error, message) = match decision {
        Decision::Allow(_) => (None, None),
        Decision::Deny(denial) => (
            Some(decide::denial_answer(denial).2),
            Some(denial.to_string()),
        ),
    };
    Answer {
        decision: label(verdict),
        status,
        reason: label(reason),
        error,
        message,
    }
}

impl std::fmt::Display for Explanation {
    /// The explanation as `explain` prints it: one fact per line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "request      {} {}", self.method, self.path)?;
        match (&self.canonical_path, &self.path_error) {
            (Some(path), _) => writeln!(f, "canonical    {path}")?,
            (None, error) => writeln!(
                f,
                "canonical    refused: {}",
                error.as_deref().unwrap_or_default()
            )?,
        }
        match &self.rule {
            Some(rule) => writeln!(
                f,
                "rule         {}: {}, methods {}",
                rule.label(),
                rule.matches,
                rule.methods
            )?,
            None => writeln!(
                f,
                "rule         none: the request is refused before any rule"
            )?,
        }
        if let Some(rule) = &self.rule {
            writeln!(f, "requires     {}", rule.requires)?;
        }
        for shadow in &self.shadow_rules {
            writeln!(
                f,
                "shadow rule  {}: {}, requires {}; would {} ({} {}), not enforced",
                shadow.rule.label(),
                shadow.rule.matches,
                shadow.rule.requires,
                shadow.would.decision,
                shadow.would.status,
                shadow.would.reason
            )?;
        }
        writeln!(f, "credentials  {}", self.credentials)?;
        if let Some(grants) = &self.grants {
            writeln!(
                f,
                "grants       sub {}, scopes [{}]{}",
                grants.subject.as_deref().unwrap_or("(none)"),
                grants.scopes.join(", "),
                grants
                    .kid
                    .as_deref()
                    .map(|kid| format!(", key {kid}"))
                    .unwrap_or_default()
            )?;
            if self.origin_checked {
                writeln!(
                    f,
                    "token        from {}, aud [{}]",
                    grants.issuer,
                    grants.audiences.join(", ")
                )?;
            }
        }
        if let Some(mismatch) = &self.claim_mismatch {
            writeln!(f, "claims       failed: {mismatch}")?;
        }
        let answer = &self.answer;
        write!(
            f,
            "decision     {} {} ({})",
            answer.decision, answer.status, answer.reason
        )?;
        if let (Some(error), Some(message)) = (answer.error, &answer.message) {
            write!(f, ": {error}: {message}")?;
        }
        writeln!(f)?;
        if let Some(metadata) = &self.metadata {
            writeln!(
                f,
                "metadata     {}",
                serde_json::Value::Object(metadata.clone())
            )?;
        }
        Ok(())
    }
}

/// A metrics label value as text (the enums' variant names are the label values).
fn label(value: impl std::fmt::Debug) -> String {
    format!("{value:?}")
}
