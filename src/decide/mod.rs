//! The decision core: one request, whatever transport brought it, decided into a [`Verdict`]
//! and its [`Labels`].
//!
//! A transport fills a [`Request`] view (method, scheme, host, path with query, headers by
//! lower-case name with every value kept, the peer certificate when it has one) and calls
//! [`check`] with the [`Generation`] in force; [`check`] runs [`decide`] (extract → verify →
//! decide → respond) and then [`record`] (count → log), so no transport repeats a step. The
//! transport only maps the verdict to its wire form. `explain` calls [`decide`] alone, with keys
//! of its own ([`Authenticate`]): it is offline, so it counts nowhere and writes no decision log.
//!
//! | denial | HTTP | `error` |
//! |---|---|---|
//! | no credentials in any token source (`Authorization` of another scheme counts as none) | 401 | `unauthorized` (no code in the challenge) |
//! | malformed credentials, or credentials in more than one place | 400 | `invalid_request` |
//! | token fails verification | 401 | `invalid_token` |
//! | token from an issuer, or for no audience, the rule's `issuers` / `audiences` take | 401 | `invalid_token` |
//! | a certificate-bound token (`cnf["x5t#S256"]`) without the client certificate it names (none, another, unreadable; a forwarded one only with `trust_forwarded_client_cert`) | 401 | `invalid_token` |
//! | scopes missing, or route denied to all | 403 | `insufficient_scope` |
//! | a rule's claim conditions not met | 403 | `insufficient_claims` |
//! | ambiguous request path, or a method override or form POST that could run another rule's handler | 400 | `invalid_request` |
//! | no key set loaded yet | 503 | `temporarily_unavailable` |
//! | the Check ran past `check_timeout_ms` | 503 | `temporarily_unavailable` |
//! | a request the transport could not read ([`refuse_unreadable`]) | 400 | `invalid_request` |
//!
//! The token is read from the configured token sources ([`crate::auth::sources`]); a denial
//! carries an RFC 6750 challenge (`WWW-Authenticate`) only when the credential came (or, when
//! none or several did, would come) from the `Authorization` source: a client of a cookie,
//! another header or a query parameter gets the JSON body alone.

mod decision_log;
mod generation;
mod metadata;
mod request;

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

pub use generation::Generation;
pub use metadata::Metadata;
pub use request::Request;

use crate::auth::binding::{self, Binding, BindingError};
use crate::auth::certificate::XFCC_HEADER;
use crate::auth::dpop::{self, KeyCache};
use crate::auth::replay::{MemoryReplayCache, ReplayError, ReplayStore as _};
use crate::auth::sources::{Extracted, TokenSources};
use crate::auth::token::CredentialsError;
use crate::auth::verify::VerifiedClaims;
use crate::config::{Config, CorsPreflight};
use crate::policy::{
    AuthError, AuthOutcome, Authentication, Decision, Denial, PathError, Resolved, Rule,
};
use crate::telemetry::metrics::{self, Metrics, Reason, Transport};

/// Header carrying the token's `sub` to the upstream.
pub const SUBJECT_HEADER: &str = "x-auth-subject";
/// Header carrying the granted scopes (space-separated) to the upstream.
pub const SCOPES_HEADER: &str = "x-auth-scopes";

/// The `rule` label and log field of a request refused before any rule was chosen.
static NO_RULE: LazyLock<Arc<str>> = LazyLock::new(|| "none".into());

/// Where a decision gets its configuration and verifies credentials: the live [`Generation`]
/// (token cache, key sets kept fresh by their refreshers), or `explain`'s keys fetched once.
/// Everything else in the flow is [`decide`]'s, the same for both.
pub trait Authenticate {
    /// The configuration deciding the request.
    fn config(&self) -> &Config;

    /// Every header any issuer forwards a claim in.
    fn forwarded_headers(&self) -> &[String];

    /// How long authentication may take before the request is answered 503 `timed_out`;
    /// `None`: as long as it takes.
    fn deadline(&self) -> Option<Duration>;

    /// The cache of parsed DPoP proof keys.
    fn proof_keys(&self) -> &KeyCache;

    /// Where DPoP proofs are remembered against replay; `None`: replay is not checked (only
    /// offline, where no request is let through).
    fn replay(&self) -> Option<&MemoryReplayCache>;

    /// Verifies `token`, the one credential the token sources found (or why there is none),
    /// counting in `metrics` what it counts. Sets `issuer` to the index of the issuer whose
    /// keys were tried.
    fn authenticate(
        &self,
        token: Result<&str, CredentialsError>,
        now: u64,
        issuer: &mut Option<usize>,
        metrics: &Metrics,
    ) -> impl Future<Output = Authentication> + Send;
}

/// What the request gets: through, with headers set and removed upstream, or an answer of its
/// own. Transport-neutral: each transport maps it to its wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict<'g> {
    /// Let through.
    Allow {
        /// Headers to set upstream, overwriting any copy the client sent: `(name, value)`.
        set: Vec<(&'g str, String)>,
        /// Headers to remove before the request goes upstream.
        remove: Vec<&'g str>,
        /// What the proxy may record of the allow: who, by which rule (Envoy's dynamic
        /// metadata).
        metadata: Metadata,
        /// Query parameters to remove before the request goes upstream: every `query` token
        /// source's, on every allow, so a token in the URL never reaches the upstream.
        remove_query: Vec<&'g str>,
    },
    /// Answered here.
    Deny(Denied),
}

/// A denial as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denied {
    /// The HTTP status: 400, 401, 403 or 503.
    pub status: u16,
    /// The RFC 6750 `error` code.
    pub error: &'static str,
    /// The human-readable `message` of the body.
    pub message: String,
    /// The JSON body, `{"error","message"}`.
    pub body: String,
    /// The response headers: `content-type`, and `www-authenticate` and `retry-after` where the
    /// denial has them.
    pub headers: Vec<(&'static str, String)>,
}

/// How a request was answered, as metrics and the decision log label it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels<'g> {
    /// `allow` or `deny`.
    pub decision: metrics::Decision,
    /// The HTTP status the client gets (200 for an allow).
    pub status: u16,
    /// Why.
    pub reason: Reason,
    /// The deciding rule's name (or `default`), or `none` for a request refused before any.
    pub rule: &'g Arc<str>,
    /// The issuer whose keys the token was checked with (its `iss` routed it there).
    pub issuer: Option<&'g str>,
}

/// A decided request: its verdict and labels, and how they were reached.
#[derive(Debug)]
pub struct Decided<'g> {
    /// What the request gets.
    pub verdict: Verdict<'g>,
    /// How it is labelled.
    pub labels: Labels<'g>,
    /// The decision the verdict was made from.
    pub decision: Decision,
    /// The canonical path, the deciding route and the shadow rules matching the request.
    pub resolved: Resolved<'g>,
    /// Whether the request is a CORS preflight let through by `cors_preflight = "allow"`.
    pub preflight: bool,
    /// What each of `resolved.shadows` would have decided, in order.
    pub shadows: Vec<Decision>,
    /// Who was denied after verification, for the decision log (only when it logs denials).
    denied_identity: Option<decision_log::Identity>,
}

/// Decides `request` with the configuration and credentials of `with`, at `now` (Unix seconds):
/// extract → verify → decide → respond. Counts only what authentication counts (the token
/// cache); [`record`] counts and logs the answer.
pub async fn decide<'g, A: Authenticate>(
    with: &'g A,
    request: &Request<'_>,
    now: u64,
    metrics: &Metrics,
) -> Decided<'g> {
    let config = with.config();
    // The route, checked against the request's method overrides; and whether it is a browser's
    // CORS preflight to let through without reading a token (`cors_preflight = "allow"`, where
    // the request it announces could pass).
    let (resolved, preflight) = config.policy().resolve_request(
        request.method(),
        request.path(),
        config.cors_preflight() == CorsPreflight::Allow,
        |name| request.text_values(name),
    );
    let mut issuer = None;
    let sources = config.token_sources();
    // extract: only where a token is needed (a public route never reads one).
    let extracted = resolved
        .needs_token(preflight)
        .then(|| sources.extract(&request));
    // Whether a denial challenges: only for the Authorization source (or where none was read).
    let challenges = sources.challenges(extracted.as_ref().and_then(|e| e.source));
    // verify (only where the route, or a shadow rule, needs a token), within the deadline:
    // authentication is the only step that can wait (on an unknown-kid refetch), and past the
    // deadline Envoy would answer (or, failing open, allow) without us.
    let auth = if let Some(extracted) = &extracted {
        let token = extracted.token.as_deref().map_err(|e| *e);
        let authentication = with.authenticate(token, now, &mut issuer, metrics);
        match with.deadline() {
            Some(deadline) => tokio::time::timeout(deadline, authentication)
                .await
                .map_or(AuthOutcome::TimedOut, AuthOutcome::Done),
            None => AuthOutcome::Done(authentication.await),
        }
    } else {
        AuthOutcome::NotAttempted
    };
    // prove the binding: on every request, whether the claims came from the token cache or
    // not, since a proof or a certificate belongs to the request and not to the token.
    let auth = match (auth, &extracted) {
        (AuthOutcome::Done(Ok(claims)), Some(extracted)) => {
            let leeway = issuer.map_or(0, |i| config.issuers()[i].expectations.leeway_seconds);
            AuthOutcome::Done(prove_binding(with, claims, request, extracted, leeway, now).await)
        }
        (auth, _) => auth,
    };
    // Who was denied, for the decision log of a denial after verification (a missing scope);
    // a token verified only for a shadow rule plays no part in the answer, nor here.
    let denied_identity = match &auth {
        AuthOutcome::Done(Ok(claims))
            if resolved.route_needs_token(preflight) && config.decision_log().logs(false) =>
        {
            Some(decision_log::Identity::of(claims))
        }
        _ => None,
    };
    // decide
    let (decision, shadows) = resolved.decide(preflight, auth);
    // respond
    let rule = resolved
        .route
        .as_ref()
        .map_or(&*NO_RULE, |route| route.name);
    let issuer = issuer.map(|i| &config.issuers()[i]);
    let verdict = match &decision {
        Decision::Allow(claims) => allow(
            claims.as_ref(),
            with.forwarded_headers(),
            sources,
            metadata::of(claims.as_ref(), issuer, rule),
        ),
        Decision::Deny(denial) => Verdict::Deny(deny(denial, config.realm(), challenges)),
    };
    let (decision_label, status, reason) = outcome_of(&decision, preflight);
    let labels = Labels {
        decision: decision_label,
        status,
        reason,
        rule,
        issuer: issuer.map(|i| i.expectations.issuer.as_str()),
    };
    Decided {
        verdict,
        labels,
        decision,
        resolved,
        preflight,
        shadows,
        denied_identity,
    }
}

/// The verified `claims`, if `request` proves what their token is bound to
/// ([`binding::check`]): the scheme it came under, the DPoP proof (not seen before), the
/// client certificate.
async fn prove_binding<A: Authenticate>(
    with: &A,
    claims: VerifiedClaims,
    request: &Request<'_>,
    extracted: &Extracted<'_>,
    leeway_seconds: u64,
    now: u64,
) -> Authentication {
    let config = with.config();
    let dpop = request.text_values("dpop");
    // A forwarded certificate is read only where the configuration says a proxy in front
    // replaces the header; otherwise any client could name any certificate in it.
    let forwarded = if config.trust_forwarded_client_cert() {
        request.text_values(XFCC_HEADER)
    } else {
        Vec::new()
    };
    let presented = binding::Presented {
        scheme: scheme_of(request, config.token_sources(), extracted),
        dpop: &dpop,
        certificate: request.peer_certificate(),
        forwarded_certificate: &forwarded,
    };
    if !binding::check(claims.binding(), &presented, false)? {
        return Ok(claims);
    }
    let (Binding::Dpop { jkt }, Ok(token)) = (claims.binding(), extracted.token.as_deref()) else {
        // check asks for a proof only of a DPoP-bound token that was extracted.
        return Err(BindingError::DpopProof("no DPoP-bound token").into());
    };
    let settings = config.dpop();
    let url = request_url(request, settings.public_base_url());
    let expected = dpop::Expected {
        method: request.method(),
        url: &url,
        token,
        jkt,
    };
    let limits = dpop::ProofLimits {
        max_bytes: settings.max_proof_bytes(),
        window_seconds: settings.window_seconds(),
        leeway_seconds,
    };
    let proof = dpop::verify(&dpop, &expected, &limits, with.proof_keys(), now)
        .map_err(BindingError::DpopProof)?;
    if let Some(replay) = with.replay() {
        replay
            .remember(proof.replay_key, proof.expires_at, now)
            .await
            .map_err(|e| match e {
                ReplayError::Replayed => BindingError::DpopReplay,
                ReplayError::Unavailable => BindingError::ReplayCacheFull,
            })?;
    }
    Ok(claims)
}

/// The URL a DPoP proof's `htu` must name: the request's scheme and host (or
/// `dpop_public_base_url`'s) and the request's own path. Query and fragment are dropped when
/// compared.
///
/// The path is the one the transport names, never `x-envoy-original-path`: Envoy's ext_authz
/// filter runs before the router, so a Check carries the path the client sent even on a route
/// that rewrites it (the router sets that header only afterwards), and a header of that name in
/// a Check can only be the client's own, passed on unchanged wherever a proxy forwards it
/// (`allowed_headers` naming it, nginx's `auth_request`, forward-auth): reading it would let a
/// proof made for one path pass on another.
fn request_url(request: &Request<'_>, public_base_url: Option<&str>) -> String {
    let path = request.path();
    match public_base_url {
        Some(base) => format!("{base}{path}"),
        None => format!("{}://{}{path}", request.scheme(), request.host()),
    }
}

/// The auth-scheme the extracted token was sent under, when it came from a header source with
/// schemes (the `Authorization` source): the scheme of the one value carrying it.
fn scheme_of<'s>(
    request: &'s Request<'_>,
    sources: &TokenSources,
    extracted: &Extracted<'_>,
) -> Option<&'s str> {
    let source = sources.iter().nth(extracted.source?)?;
    source.schemes()?;
    let token = extracted.token.as_deref().ok()?;
    request
        .text_values(source.name())
        .into_iter()
        .filter_map(|value| value.trim().split_once([' ', '\t']))
        .find(|(_, rest)| rest.trim() == token)
        .map(|(scheme, _)| scheme)
}

/// One request as a live transport takes it: [`decide`] with the generation in force, then
/// [`record`]. `started` is when the transport received it (its duration counts from there).
pub async fn check<'g>(
    generation: &'g Generation,
    request: &Request<'_>,
    now: u64,
    transport: Transport,
    metrics: &Metrics,
    started: Instant,
) -> Decided<'g> {
    let decided = decide(generation, request, now, metrics).await;
    record(
        generation.config(),
        request,
        &decided,
        transport,
        metrics,
        started.elapsed(),
    );
    decided
}

/// A request the transport could not read into a full [`Request`] view (an HTTP front door's
/// forwarded method or URI missing, repeated, not UTF-8, or not a path): refused 400
/// `invalid_request` (`why` is the message) before any rule is looked at, and counted and
/// logged by [`record`] like every other denial. `view` holds what the transport did read (the
/// request it was sent), for the decision log.
pub fn refuse_unreadable<'g>(
    generation: &'g Generation,
    view: &Request<'_>,
    why: &'static str,
    transport: Transport,
    metrics: &Metrics,
    started: Instant,
) -> Decided<'g> {
    let config = generation.config();
    let denial = Denial::Unreadable(why);
    let challenges = config.token_sources().challenges(None);
    let verdict = Verdict::Deny(deny(&denial, config.realm(), challenges));
    let (decision, status, reason) = outcome_of(&Decision::Deny(denial.clone()), false);
    let decided = Decided {
        verdict,
        labels: Labels {
            decision,
            status,
            reason,
            rule: &NO_RULE,
            issuer: None,
        },
        decision: Decision::Deny(denial),
        // No path was read, so none was resolved and no rule (shadow or not) matched.
        resolved: Resolved {
            path: Err(PathError::NotAbsolute),
            route: Err(PathError::NotAbsolute),
            shadows: Vec::new(),
        },
        preflight: false,
        shadows: Vec::new(),
        denied_identity: None,
    };
    record(
        config,
        view,
        &decided,
        transport,
        metrics,
        started.elapsed(),
    );
    decided
}

/// Counts the answer (and what each shadow rule would have decided) in `metrics` and writes
/// the decision log lines `config.decision_log` asks for: the one step after the decision, the
/// same for every transport.
pub fn record(
    config: &Config,
    request: &Request<'_>,
    decided: &Decided<'_>,
    transport: Transport,
    metrics: &Metrics,
    took: Duration,
) {
    for (shadow, would) in decided.resolved.shadows.iter().zip(&decided.shadows) {
        report_shadow(config, shadow, would, request, transport, metrics);
    }
    let labels = &decided.labels;
    metrics.check(
        transport,
        labels.decision,
        labels.status,
        labels.reason,
        labels.rule,
        took,
    );
    let allowed = labels.decision == metrics::Decision::allow;
    if config.decision_log().logs(allowed) {
        let (who, denial) = match &decided.decision {
            Decision::Allow(claims) => (claims.as_ref().map(decision_log::Identity::of), None),
            Decision::Deny(denial) => (decided.denied_identity.clone(), Some(denial)),
        };
        decision_log::decision(&decision_log::DecisionRecord {
            request,
            transport,
            labels,
            denial,
            who: who.filter(|_| labels.issuer.is_some()),
            took,
        });
    }
}

/// Counts and (as `decision_log` says) logs what the shadow rule `shadow` would have decided.
fn report_shadow(
    config: &Config,
    shadow: &Rule,
    would: &Decision,
    request: &Request<'_>,
    transport: Transport,
    metrics: &Metrics,
) {
    let (decision, status, reason) = outcome_of(would, false);
    metrics.shadow(shadow.name(), decision);
    if config
        .decision_log()
        .logs(decision == metrics::Decision::allow)
    {
        decision_log::shadow(request, transport, shadow, decision, status, reason);
    }
}

/// How `decision` is (or, for a shadow rule, would be) answered, as metrics and logs label it:
/// decision, status and reason. `preflight`: the request is a CORS preflight let through by
/// `cors_preflight = "allow"`.
pub fn outcome_of(decision: &Decision, preflight: bool) -> (metrics::Decision, u16, Reason) {
    match decision {
        Decision::Allow(claims) => (
            metrics::Decision::allow,
            200,
            if preflight {
                Reason::cors_preflight
            } else if claims.is_some() {
                Reason::authorized
            } else {
                Reason::public
            },
        ),
        Decision::Deny(denial) => {
            let (status, reason, _) = denial_answer(denial);
            (metrics::Decision::deny, status, reason)
        }
    }
}

/// The HTTP status, the metrics `reason` and the RFC 6750 `error` code a denial is answered
/// with (the table in this module's documentation).
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
        Denial::Unauthenticated(AuthError::Binding(BindingError::ReplayCacheFull)) => {
            (503, Reason::dpop_proof, "temporarily_unavailable")
        }
        Denial::Unauthenticated(AuthError::Binding(e)) if e.is_proof() => {
            (401, Reason::dpop_proof, "invalid_token")
        }
        Denial::Unauthenticated(AuthError::Binding(_)) => (401, Reason::binding, "invalid_token"),
        Denial::IssuerNotAccepted => (401, Reason::issuer_not_accepted, "invalid_token"),
        Denial::AudienceNotAccepted => (401, Reason::audience_not_accepted, "invalid_token"),
        Denial::InsufficientScope { .. } => (403, Reason::insufficient_scope, "insufficient_scope"),
        Denial::InsufficientClaims(_) => (403, Reason::claims, "insufficient_claims"),
        Denial::RouteDenied => (403, Reason::route_denied, "insufficient_scope"),
        Denial::BadPath(_) => (400, Reason::bad_path, "invalid_request"),
        Denial::TimedOut => (503, Reason::timed_out, "temporarily_unavailable"),
        Denial::Unreadable(_) => (400, Reason::invalid_request, "invalid_request"),
    }
}

/// An allow carrying the identity headers, overwriting any the client sent; an anonymous
/// (public-route) allow removes them, so a client can never inject an identity.
///
/// Every configured forwarded header is set from the token's claim, or removed when the token
/// lacks it (or the route is public), so a client's own copy never reaches the upstream.
/// `metadata` goes with the allow as it is. Every `query` token source's parameter is removed,
/// whatever the route: a token in the URL never reaches the upstream (nor its logs).
fn allow<'g>(
    claims: Option<&VerifiedClaims>,
    forwarded_headers: &'g [String],
    sources: &'g TokenSources,
    metadata: Metadata,
) -> Verdict<'g> {
    let mut set = Vec::new();
    let mut remove = Vec::new();
    match claims.and_then(VerifiedClaims::subject) {
        Some(sub) => set.push((SUBJECT_HEADER, sub.to_owned())),
        None => remove.push(SUBJECT_HEADER),
    }
    match claims.map(VerifiedClaims::scopes).filter(|s| !s.is_empty()) {
        Some(scopes) => {
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            set.push((SCOPES_HEADER, scopes.join(" ")));
        }
        None => remove.push(SCOPES_HEADER),
    }
    let forwarded = claims.map(VerifiedClaims::forwarded).unwrap_or_default();
    for name in forwarded_headers {
        match forwarded.iter().find(|(header, _)| header == name) {
            Some((_, value)) => set.push((name.as_str(), value.clone())),
            None => remove.push(name.as_str()),
        }
    }
    let remove_query = sources.query_names().collect();
    Verdict::Allow {
        set,
        remove,
        remove_query,
        metadata,
    }
}

/// The denial's answer: status, JSON body, challenge (only when `challenges`: the credential
/// came, or would come, from the `Authorization` source) and `Retry-After`.
fn deny(denial: &Denial, realm: &str, challenges: bool) -> Denied {
    let message = denial.to_string();
    let (status, _, error) = denial_answer(denial);
    let challenge = match denial {
        // No credentials: the challenge names the scheme only (RFC 6750 §3.1).
        Denial::Unauthenticated(AuthError::Credentials(e)) if e.is_absent() => {
            Some(format!("Bearer realm={}", quoted(realm)))
        }
        Denial::InsufficientScope { required } => {
            Some(challenge(realm, error, &message, Some(&required.join(" "))))
        }
        // A bad DPoP proof: the DPoP scheme's own error code and the algorithms a proof may
        // use (RFC 9449 §7.1); a full replay cache answers 503 without one.
        Denial::Unauthenticated(AuthError::Binding(BindingError::ReplayCacheFull)) => None,
        Denial::Unauthenticated(AuthError::Binding(e)) if e.is_proof() => Some(format!(
            "DPoP realm={}, error=\"invalid_dpop_proof\", error_description={}, algs={}",
            quoted(realm),
            quoted(&message),
            quoted(binding::PROOF_ALGORITHMS)
        )),
        Denial::Unauthenticated(AuthError::KeysUnavailable)
        | Denial::TimedOut
        | Denial::BadPath(_) => None,
        Denial::Unauthenticated(_)
        | Denial::InsufficientClaims(_)
        | Denial::IssuerNotAccepted
        | Denial::AudienceNotAccepted
        | Denial::RouteDenied
        | Denial::Unreadable(_) => Some(challenge(realm, error, &message, None)),
    };
    let body = serde_json::json!({ "error": error, "message": message }).to_string();
    let mut headers = vec![("content-type", "application/json".to_owned())];
    if let Some(challenge) = challenge.filter(|_| challenges) {
        headers.push(("www-authenticate", challenge));
    }
    match denial {
        Denial::Unauthenticated(AuthError::KeysUnavailable) => {
            headers.push(("retry-after", "5".to_owned()));
        }
        Denial::TimedOut => headers.push(("retry-after", "1".to_owned())),
        Denial::Unauthenticated(AuthError::Binding(BindingError::ReplayCacheFull)) => {
            headers.push(("retry-after", "1".to_owned()));
        }
        _ => {}
    }
    Denied {
        status,
        error,
        message,
        body,
        headers,
    }
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
mod tests;
