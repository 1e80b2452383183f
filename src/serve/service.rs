//! The `envoy.service.auth.v3.Authorization` gRPC service: the only module that knows Envoy and
//! tonic types.
//!
//! `Check` reads extract → verify → decide → respond. Every authentication or authorization
//! failure is answered in-band, as `Ok(CheckResponse)` with a denied status and an HTTP response
//! for Envoy to send; `Err(Status)` is kept for real faults, because Envoy's `failure_mode_allow`
//! lets requests through on those.
//!
//! | denial | HTTP | `error` | gRPC status in the response |
//! |---|---|---|---|
//! | no `Authorization`, or another scheme | 401 | `unauthorized` (no code in the challenge) | UNAUTHENTICATED |
//! | malformed Bearer credentials | 400 | `invalid_request` | UNAUTHENTICATED |
//! | token fails verification | 401 | `invalid_token` | UNAUTHENTICATED |
//! | scopes missing, or route denied to all | 403 | `insufficient_scope` | PERMISSION_DENIED |
//! | ambiguous request path, or a method override or form POST that could run another rule's handler | 400 | `invalid_request` | PERMISSION_DENIED |
//! | no key set loaded yet | 503 | `temporarily_unavailable` | UNAVAILABLE |
//! | the Check ran past `check_timeout_ms` | 503 | `temporarily_unavailable` | UNAVAILABLE |

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, HeaderAppendAction, HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use envoy_types::pb::envoy::config::core::v3::HeaderMap;
use tonic::{Request, Response, Status};

use crate::auth::jwks::{Jwks, Refetch};
use crate::auth::token::{self, CredentialsError};
use crate::auth::token_cache::TokenCache;
use crate::auth::verify::{self, VerifiedClaims, VerifyError};
use crate::config::{Config, CorsPreflight};
use crate::policy::{AuthError, AuthOutcome, Authentication, Decision, Denial, Rule};
use crate::telemetry::metrics::{self, CacheResult, Metrics, Reason};

/// Header carrying the token's `sub` to the upstream.
pub const SUBJECT_HEADER: &str = "x-auth-subject";
/// Header carrying the granted scopes (space-separated) to the upstream.
pub const SCOPES_HEADER: &str = "x-auth-scopes";

/// The request header whose value the decision log records as `request_id`: the id Envoy
/// generates (or passes on) and writes to its access log, so the two logs join.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Longest `request_id` written to a log line, in bytes (a UUID is 36).
pub const MAX_LOGGED_REQUEST_ID: usize = 128;

/// The `rule` label and log field of a request refused before any rule was chosen.
static NO_RULE: LazyLock<Arc<str>> = LazyLock::new(|| "none".into());

/// What Checks are decided with: one configuration and its issuers' key sets, replaced whole
/// when the configuration is reloaded. A Check takes the generation in force when it starts and
/// finishes with it.
#[derive(Debug)]
pub struct Generation {
    config: Arc<Config>,
    /// One key set per issuer, in the order of `config.issuers`.
    key_sets: Vec<Jwks>,
    /// Every header any issuer forwards a claim in.
    forwarded_headers: Arc<[String]>,
    /// Tokens verified under this configuration (a reload starts afresh).
    cache: TokenCache,
}

impl Generation {
    /// `config` with the keys in `key_sets`, one per issuer of `config`, in the same order.
    pub fn new(config: Arc<Config>, key_sets: Vec<Jwks>) -> Generation {
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

    /// Extracts and verifies the Bearer token. An unknown `kid` asks the JWKS refresher for one
    /// (single-flight, rate-limited) refetch, waits for it at most `unknown_kid_wait_ms`, and
    /// tries once more with the new snapshot. Sets `issuer` to the index of the issuer whose
    /// keys were tried.
    async fn authenticate(
        &self,
        authorization: &Result<Vec<String>, CredentialsError>,
        now: u64,
        issuer: &mut Option<usize>,
        metrics: &Metrics,
    ) -> Authentication {
        let values: Vec<&str> = match authorization {
            Ok(values) => values.iter().map(String::as_str).collect(),
            Err(e) => return Err(AuthError::Credentials(*e)),
        };
        let token = token::bearer_token(&values)?;
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
                    return Ok(entry.claims.clone());
                }
                self.cache.remove(digest);
                metrics.token_cache_bytes(self.cache.bytes());
            }
            metrics.token_cache(CacheResult::miss);
        }
        let index = self.issuer_of(token)?;
        *issuer = Some(index);
        let (expect, jwks) = (
            &self.config.issuers()[index].expectations,
            &self.key_sets[index],
        );
        let Some(keys) = jwks.snapshot() else {
            // No set, or a stale one: this Check gets 503, but it asks for a fetch (single-flight,
            // once per cooldown) rather than leaving recovery to the refresher's backoff.
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

/// The Authorization service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuthorizationService {
    live: Arc<ArcSwap<Generation>>,
    metrics: Metrics,
}

impl AuthorizationService {
    /// A service deciding with `config` against the keys in `key_sets`, one per issuer of
    /// `config`, in the same order, counting its answers in `metrics`.
    pub fn new(config: Arc<Config>, key_sets: Vec<Jwks>, metrics: Metrics) -> Self {
        let live = Arc::new(ArcSwap::from_pointee(Generation::new(config, key_sets)));
        AuthorizationService::with_live(live, metrics)
    }

    /// A service deciding with whatever generation `live` holds when each Check starts: the
    /// handle through which a reload replaces it.
    pub fn with_live(live: Arc<ArcSwap<Generation>>, metrics: Metrics) -> Self {
        AuthorizationService { live, metrics }
    }
}

impl AuthorizationService {
    /// Counts and (as `decision_log` says) logs what the shadow rule `shadow` would have
    /// decided, at target `scopegate::shadow`.
    fn report_shadow(
        &self,
        config: &Config,
        shadow: &Rule,
        would: &Decision,
        http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
    ) {
        let outcome = outcome_of(would, false);
        self.metrics.shadow(shadow.name(), outcome.decision);
        if config
            .decision_log()
            .logs(outcome.decision == metrics::Decision::allow)
        {
            let request_id = request_id(http).map(|id| truncated(id, MAX_LOGGED_REQUEST_ID));
            tracing::info!(
                target: "scopegate::shadow",
                request_id = request_id.as_deref(),
                rule = %shadow.name(),
                decision = ?outcome.decision,
                status = outcome.status,
                reason = ?outcome.reason,
                // As `&str`, not `%`: text logs then quote and escape them (see `log_decision`).
                method = &*truncated(&http.method, MAX_LOGGED_METHOD),
                path = &*truncated(
                    http.path.split(['?', '#']).next().unwrap_or_default(),
                    MAX_LOGGED_PATH,
                ),
                "shadow rule decision (not enforced)"
            );
        }
    }
}

#[tonic::async_trait]
impl Authorization for AuthorizationService {
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Status::internal("system clock is before the Unix epoch"))?
            .as_secs();
        // The generation in force now decides this Check, whatever a reload does meanwhile.
        let live = self.live.load_full();
        let config = &live.config;
        let check = request.into_inner();
        let http = check
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .unwrap_or_default();

        let mut issuer = None;
        // The route, checked against the request's method overrides; and whether it is a
        // browser's CORS preflight to let through without reading a token (`cors_preflight =
        // "allow"`, where the request it announces could pass).
        let header_map = header_map_values(http.header_map.as_ref());
        let (resolved, preflight) = config.policy().resolve_request(
            &http.method,
            &http.path,
            config.cors_preflight() == CorsPreflight::Allow,
            |name| header_values(&http.headers, &header_map, name),
        );
        let rule = resolved
            .route
            .as_ref()
            .map_or(&*NO_RULE, |route| route.name);
        // verify (only where the route, or a shadow rule, needs a token), within the Check's
        // deadline: authentication is the only step that can wait (on an unknown-kid refetch),
        // and past the deadline Envoy would answer (or, failing open, allow) without us.
        let auth = if resolved.needs_token(preflight) {
            // extract: only where a token is needed (a public route never reads one).
            let authorization = authorization_values(&http.headers, http.header_map.as_ref());
            let deadline = config.server().check_timeout;
            tokio::time::timeout(
                deadline,
                live.authenticate(&authorization, now, &mut issuer, &self.metrics),
            )
            .await
            .map_or(AuthOutcome::TimedOut, AuthOutcome::Done)
        } else {
            AuthOutcome::NotAttempted
        };
        // Who was denied, for the decision log of a denial after verification (a missing scope);
        // a token verified only for a shadow rule plays no part in the answer, nor here.
        let identity = match &auth {
            AuthOutcome::Done(Ok(claims))
                if resolved.route_needs_token(preflight) && config.decision_log().logs(false) =>
            {
                Some(Identity::of(claims))
            }
            _ => None,
        };
        // decide
        let (decision, would) = resolved.decide(preflight, auth);
        for (shadow, would) in resolved.shadows.iter().zip(&would) {
            self.report_shadow(config, shadow, would, &http);
        }

        // respond
        let response = match &decision {
            Decision::Allow(claims) => allow(claims.as_ref(), &live.forwarded_headers),
            Decision::Deny(denial) => deny(denial, config.realm()),
        };
        let outcome = outcome_of(&decision, preflight);
        let took = started.elapsed();
        self.metrics
            .check(outcome.decision, outcome.status, outcome.reason, rule, took);
        let allowed = matches!(decision, Decision::Allow(_));
        if config.decision_log().logs(allowed) {
            let (who, denial) = match &decision {
                Decision::Allow(claims) => (claims.as_ref().map(Identity::of), None),
                Decision::Deny(denial) => (identity, Some(denial)),
            };
            log_decision(&DecisionRecord {
                http: &http,
                outcome: &outcome,
                denial,
                rule,
                issuer: issuer.map(|i| config.issuers()[i].expectations.issuer.as_str()),
                who: who.filter(|_| issuer.is_some()),
                took,
            });
        }
        Ok(Response::new(response))
    }
}

/// Every header in Envoy's `header_map` (filled in place of `headers` with
/// `encode_raw_headers`), a value that is not UTF-8 read with U+FFFD for its invalid bytes (so
/// it is never a method name or a form's media type by accident, but still present).
fn header_map_values(header_map: Option<&HeaderMap>) -> Vec<(&str, Cow<'_, str>)> {
    header_map
        .into_iter()
        .flat_map(|m| &m.headers)
        .map(|h| {
            let value = if h.raw_value.is_empty() {
                Cow::Borrowed(h.value.as_str())
            } else {
                String::from_utf8_lossy(&h.raw_value)
            };
            (h.key.as_str(), value)
        })
        .collect()
}

/// The values of the header `name` (any case), for the policy: from Envoy's `headers` map or
/// its `header_map` (read by [`header_map_values`]). Should a caller fill both, identical lists
/// count once and differing ones are all kept, as for `Authorization`.
fn header_values<'a>(
    headers: &'a HashMap<String, String>,
    header_map: &'a [(&'a str, Cow<'a, str>)],
    name: &str,
) -> Vec<&'a str> {
    let from_headers: Vec<&str> = headers_named(headers, name).collect();
    let from_map: Vec<&str> = header_map
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_ref())
        .collect();
    if from_map.is_empty() || from_map == from_headers {
        from_headers
    } else if from_headers.is_empty() {
        from_map
    } else {
        from_headers.into_iter().chain(from_map).collect()
    }
}

/// How `decision` is (or, for a shadow rule, would be) answered, as metrics and logs label it;
/// `preflight`: the request is a CORS preflight let through by `cors_preflight = "allow"`.
/// Pure, so `explain` labels its answers the same.
pub fn outcome_of(decision: &Decision, preflight: bool) -> Outcome {
    match decision {
        Decision::Allow(claims) => Outcome {
            decision: metrics::Decision::allow,
            status: 200,
            reason: if preflight {
                Reason::cors_preflight
            } else if claims.is_some() {
                Reason::authorized
            } else {
                Reason::public
            },
        },
        Decision::Deny(denial) => {
            let (status, reason, _) = denial_answer(denial);
            Outcome {
                decision: metrics::Decision::deny,
                status,
                reason,
            }
        }
    }
}

/// How a Check was answered, as metrics and the decision log label it.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// `allow` or `deny`.
    pub decision: metrics::Decision,
    /// The HTTP status the client gets (200 for an allow).
    pub status: u16,
    /// Why.
    pub reason: Reason,
}

/// The identity fields of a verified token that the decision log records.
#[derive(Debug)]
struct Identity {
    sub: Option<String>,
    kid: Option<String>,
    azp: Option<String>,
    client_id: Option<String>,
}

impl Identity {
    fn of(claims: &VerifiedClaims) -> Identity {
        Identity {
            sub: claims.subject().map(str::to_owned),
            kid: claims.kid().map(str::to_owned),
            azp: claims.azp().map(str::to_owned),
            client_id: claims.client_id().map(str::to_owned),
        }
    }
}

/// Everything one decision log line says.
struct DecisionRecord<'a> {
    http: &'a envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
    outcome: &'a Outcome,
    denial: Option<&'a Denial>,
    rule: &'a Arc<str>,
    /// The issuer whose keys the token was checked with (its `iss` routed it there).
    issuer: Option<&'a str>,
    /// The verified token's identity, when it passed verification.
    who: Option<Identity>,
    took: std::time::Duration,
}

/// Writes one decision log line (target `scopegate::decision`, at info): with `--log-format
/// json`, one JSON object whose fields join Envoy's access log by `request_id`. The query
/// string and the token are never written; client-controlled text is bounded, and quoted and
/// escaped in the text format. Identity fields
/// (`sub`, `kid`, `azp`, `client_id`) come from verified tokens only; `iss` is the issuer the
/// token was routed to.
fn log_decision(record: &DecisionRecord<'_>) {
    let http = record.http;
    let request_id = request_id(http).map(|id| truncated(id, MAX_LOGGED_REQUEST_ID));
    let path = truncated(
        http.path.split(['?', '#']).next().unwrap_or_default(),
        MAX_LOGGED_PATH,
    );
    let method = truncated(&http.method, MAX_LOGGED_METHOD);
    let who = record.who.as_ref();
    tracing::info!(
        target: "scopegate::decision",
        request_id = request_id.as_deref(),
        decision = ?record.outcome.decision,
        status = record.outcome.status,
        reason = ?record.outcome.reason,
        detail = record.denial.map(tracing::field::display),
        rule = %record.rule,
        // Recorded as strings, never `%` (Display): the text format then writes them quoted,
        // with `"`, `\` and control characters escaped, so a CR/LF a direct caller puts in
        // them cannot start a forged log line; JSON escapes strings in any case.
        method = &*method,
        path = &*path,
        iss = record.issuer,
        sub = who.and_then(|w| w.sub.as_deref()),
        kid = who.and_then(|w| w.kid.as_deref()),
        azp = who.and_then(|w| w.azp.as_deref()),
        client_id = who.and_then(|w| w.client_id.as_deref()),
        duration_us = u64::try_from(record.took.as_micros()).unwrap_or(u64::MAX),
        "decision"
    );
}

/// The request's `x-request-id`, from the `headers` map or `header_map`.
fn request_id(
    http: &envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest,
) -> Option<&str> {
    headers_named(&http.headers, REQUEST_ID_HEADER)
        .next()
        .or_else(|| {
            header_map_named(http.header_map.as_ref(), REQUEST_ID_HEADER)
                .next()
                .and_then(Result::ok)
        })
}

/// The values of the headers called `name` (any case) in Envoy's `headers` map.
fn headers_named<'a, 'n>(
    headers: &'a HashMap<String, String>,
    name: &'n str,
) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
    headers
        .iter()
        .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// The values of the headers called `name` (any case) in Envoy's `header_map`, where a value
/// travels as text or, with `encode_raw_headers`, as bytes that may not be UTF-8.
fn header_map_named<'a, 'n>(
    header_map: Option<&'a HeaderMap>,
    name: &'n str,
) -> impl Iterator<Item = Result<&'a str, std::str::Utf8Error>> + use<'a, 'n> {
    header_map
        .into_iter()
        .flat_map(|m| &m.headers)
        .filter(move |h| h.key.eq_ignore_ascii_case(name))
        .map(|h| {
            if h.raw_value.is_empty() {
                Ok(h.value.as_str())
            } else {
                std::str::from_utf8(&h.raw_value)
            }
        })
}

/// Longest path prefix written to a log line, in bytes.
pub const MAX_LOGGED_PATH: usize = 256;
/// Longest method prefix written to a log line, in bytes.
pub const MAX_LOGGED_METHOD: usize = 32;

/// `text`, or its first `max` bytes (cut at a character boundary) followed by `…` and the full
/// length, so a log line never grows with what a client sends.
fn truncated(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes)", &text[..end], text.len()).into()
}

/// Every `Authorization` value the request carried, from the `headers` map or `header_map`
/// (Envoy fills one or the other, depending on `encode_raw_headers`). Should a caller fill both,
/// identical lists count once and differing ones are all kept (and so refused as several
/// credentials). A value that is not UTF-8 makes the credentials malformed.
fn authorization_values(
    headers: &HashMap<String, String>,
    header_map: Option<&HeaderMap>,
) -> Result<Vec<String>, CredentialsError> {
    let from_headers: Vec<String> = headers_named(headers, "authorization")
        .map(str::to_owned)
        .collect();
    let from_map = header_map_named(header_map, "authorization")
        .map(|value| {
            value
                .map(str::to_owned)
                .map_err(|_| CredentialsError::Malformed)
        })
        .collect::<Result<Vec<String>, _>>()?;
    Ok(if from_map.is_empty() || from_map == from_headers {
        from_headers
    } else if from_headers.is_empty() {
        from_map
    } else {
        from_headers.into_iter().chain(from_map).collect()
    })
}

/// An OK response carrying the identity headers, overwriting any the client sent; an anonymous
/// (public-route) allow removes them, so a client can never inject an identity.
///
/// Every configured forwarded header is set from the token's claim, or removed when the token
/// lacks it (or the route is public), so a client's own copy never reaches the upstream.
fn allow(claims: Option<&VerifiedClaims>, forwarded_headers: &[String]) -> CheckResponse {
    let mut ok = OkHttpResponseBuilder::new();
    let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
    match claims.and_then(VerifiedClaims::subject) {
        Some(sub) => ok.add_header(SUBJECT_HEADER, sub, overwrite, false),
        None => ok.remove_header(SUBJECT_HEADER),
    };
    let scopes: Vec<&str> = claims
        .map(|c| c.scopes().iter().map(String::as_str).collect())
        .unwrap_or_default();
    if scopes.is_empty() {
        ok.remove_header(SCOPES_HEADER);
    } else {
        ok.add_header(SCOPES_HEADER, scopes.join(" "), overwrite, false);
    }
    let forwarded = claims.map(VerifiedClaims::forwarded).unwrap_or_default();
    for name in forwarded_headers {
        match forwarded.iter().find(|(header, _)| header == name) {
            Some((header, value)) => ok.add_header(header, value, overwrite, false),
            None => ok.remove_header(name),
        };
    }
    let mut response = CheckResponse::with_status(Status::ok(""));
    response.set_http_response(ok);
    response
}

/// The HTTP status, the metrics `reason` and the RFC 6750 `error` code a denial is answered
/// with (the table in this module's documentation). Pure, so `explain` answers the same.
pub fn denial_answer(denial: &Denial) -> (u16, Reason, &'static str) {
    match denial {
        Denial::Unauthenticated(AuthError::Credentials(e)) if e.is_absent() => {
            (401, Reason::missing_token, "unauthorized")
        }
        Denial::Unauthenticated(AuthError::Credentials(_)) => {
            (400, Reason::invalid_request, "invalid_request")
        }
        Denial::Unauthenticated(AuthError::Token(_)) => {
            (401, Reason::invalid_token, "invalid_token")
        }
        Denial::Unauthenticated(AuthError::KeysUnavailable) => {
            (503, Reason::keys_unavailable, "temporarily_unavailable")
        }
        Denial::InsufficientScope { .. } => (403, Reason::insufficient_scope, "insufficient_scope"),
        Denial::RouteDenied => (403, Reason::route_denied, "insufficient_scope"),
        Denial::BadPath(_) => (400, Reason::bad_path, "invalid_request"),
        Denial::TimedOut => (503, Reason::timed_out, "temporarily_unavailable"),
    }
}

/// The denied response for `denial`: status, JSON body, challenge and `Retry-After`.
fn deny(denial: &Denial, realm: &str) -> CheckResponse {
    let message = denial.to_string();
    let (status, _, code) = denial_answer(denial);
    let grpc = match denial {
        Denial::Unauthenticated(AuthError::KeysUnavailable) | Denial::TimedOut => {
            Status::unavailable(&message)
        }
        Denial::Unauthenticated(_) => Status::unauthenticated(&message),
        Denial::InsufficientScope { .. } | Denial::RouteDenied | Denial::BadPath(_) => {
            Status::permission_denied(&message)
        }
    };
    let challenge = match denial {
        // No credentials: the challenge names the scheme only (RFC 6750 §3.1).
        Denial::Unauthenticated(AuthError::Credentials(e)) if e.is_absent() => {
            Some(format!("Bearer realm=\"{realm}\""))
        }
        Denial::InsufficientScope { required } => {
            Some(challenge(realm, code, &message, Some(&required.join(" "))))
        }
        Denial::Unauthenticated(AuthError::KeysUnavailable)
        | Denial::TimedOut
        | Denial::BadPath(_) => None,
        Denial::Unauthenticated(_) | Denial::RouteDenied => {
            Some(challenge(realm, code, &message, None))
        }
    };
    let http = match status {
        400 => HttpStatusCode::BadRequest,
        401 => HttpStatusCode::Unauthorized,
        403 => HttpStatusCode::Forbidden,
        _ => HttpStatusCode::ServiceUnavailable,
    };
    let body = serde_json::json!({ "error": code, "message": message }).to_string();
    let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
    let mut denied = DeniedHttpResponseBuilder::new();
    denied
        .set_http_status(http)
        .add_header("content-type", "application/json", overwrite, false)
        .set_body(body);
    if let Some(challenge) = challenge {
        denied.add_header("www-authenticate", challenge, overwrite, false);
    }
    match denial {
        Denial::Unauthenticated(AuthError::KeysUnavailable) => {
            denied.add_header("retry-after", "5", overwrite, false);
        }
        Denial::TimedOut => {
            denied.add_header("retry-after", "1", overwrite, false);
        }
        _ => {}
    }
    let mut response = CheckResponse::with_status(grpc);
    response.set_http_response(denied);
    response
}

/// An RFC 6750 §3 challenge. Every value is written as an RFC 9110 quoted-string, escaped
/// ([`quoted`]): today they are fixed messages and configured realms and scopes, which the
/// configuration already keeps free of `"` and `\`, but a header built by interpolation must
/// not depend on every caller remembering that.
fn challenge(realm: &str, error: &str, description: &str, scope: Option<&str>) -> String {
    let mut out = format!(
        "Bearer realm={}, error={}, error_description={}",
        quoted(realm),
        quoted(error),
        quoted(description)
    );
    if let Some(scope) = scope.filter(|s| !s.is_empty()) {
        out.push_str(&format!(", scope={}", quoted(scope)));
    }
    out
}

/// `text` as an RFC 9110 quoted-string: in double quotes, with `"` and `\` escaped by a
/// backslash, and control characters (which a header value cannot carry) replaced by spaces.
fn quoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenge_values_are_quoted_strings() {
        assert_eq!(
            challenge("scopegate", "invalid_token", "token has expired", None),
            r#"Bearer realm="scopegate", error="invalid_token", error_description="token has expired""#
        );
        assert_eq!(
            challenge("a\"b\\c", "e", "line\nbreak", Some("x y")),
            r#"Bearer realm="a\"b\\c", error="e", error_description="line break", scope="x y""#
        );
    }

    #[test]
    fn logged_fields_are_bounded() {
        assert_eq!(truncated("/short", 256), "/short");
        let long = format!("/{}", "a".repeat(3_000_000));
        let cut = truncated(&long, MAX_LOGGED_PATH);
        assert!(cut.len() < MAX_LOGGED_PATH + 32, "{}", cut.len());
        assert!(cut.ends_with("…(3000001 bytes)"), "{cut}");
        // Never cut inside a character.
        assert_eq!(truncated("ééé", 3), "é…(6 bytes)");
        // README's Limits table: a method is cut at 32 bytes, a request_id at 128.
        assert_eq!((MAX_LOGGED_METHOD, MAX_LOGGED_REQUEST_ID), (32, 128));
        let long_method = "M".repeat(33);
        let method = truncated(&long_method, MAX_LOGGED_METHOD);
        assert_eq!(method, format!("{}…(33 bytes)", "M".repeat(32)));
        let long_id = "r".repeat(129);
        let id = truncated(&long_id, MAX_LOGGED_REQUEST_ID);
        assert_eq!(id, format!("{}…(129 bytes)", "r".repeat(128)));
    }
}
