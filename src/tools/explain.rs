//! `scopegate explain`: decides one request offline, the way `serve` decides a Check, and says
//! why: the canonical path, the rule that decides it (and the shadow rules that match it), what
//! the rule requires, what the credentials grant, and the answer with its status and reason.
//!
//! The steps are the service's: [`crate::policy::Policy::resolve_request`] (the canonical path,
//! the route, method overrides, CORS preflights), [`verify::verify`], [`crate::policy::decide`],
//! and [`service::denial_answer`] for the status. With a
//! token, the issuer's keys are fetched once (no cache, no refresh). With `--claims`, no
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

use crate::auth::jwks;
use crate::auth::keys::{Algorithm, KeySet};
use crate::auth::token::{self, CredentialsError};
use crate::auth::verify::{self, VerifyError};
use crate::config::{Config, CorsPreflight};
use crate::policy::{AuthError, AuthOutcome, Authentication, Decision, Requirement, Rule};
use crate::serve::service;

/// What the request carries.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// No `Authorization` header.
    None,
    /// `Authorization: Bearer <token>`.
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
    /// The answer.
    pub answer: Answer,
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
    // The route checked against method overrides, and whether a CORS preflight is let through
    // (`cors_preflight = "allow"`): the Check's own step.
    let (resolved, preflight) = config.policy().resolve_request(
        &request.method,
        &request.path,
        config.cors_preflight() == CorsPreflight::Allow,
        |name| {
            let mut values: Vec<&str> = request
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            if name == "authorization" && !matches!(request.credentials, Credentials::None) {
                values.push("Bearer");
            }
            values
        },
    );
    let Authenticated {
        auth,
        issuer,
        credentials,
        signed,
    } = if resolved.needs_token(preflight) {
        authenticate(config, &request.credentials, now).await?
    } else {
        Authenticated {
            auth: None,
            issuer: None,
            credentials: if preflight {
                "not read: a CORS preflight, let through by cors_preflight = \"allow\"".to_string()
            } else {
                "not read: nothing here needs a token".to_string()
            },
            signed: false,
        }
    };
    let grants = match (&auth, &issuer) {
        (Some(Ok(claims)), Some(issuer)) => Some(Grants {
            issuer: issuer.clone(),
            subject: claims.subject().map(str::to_owned),
            scopes: claims.scopes().iter().cloned().collect(),
            kid: claims.kid().filter(|_| signed).map(str::to_owned),
        }),
        _ => None,
    };
    let auth = auth.map_or(AuthOutcome::NotAttempted, AuthOutcome::Done);
    let (decision, would) = resolved.decide(preflight, auth);
    let shadow_rules = resolved
        .shadows
        .iter()
        .zip(&would)
        .map(|(rule, would)| ShadowView {
            rule: view(Some(rule), rule.requirement(), rule.name()),
            would: answer(would, false),
        })
        .collect();
    let rule = resolved
        .route
        .as_ref()
        .ok()
        .map(|route| view(route.rule, route.requirement, route.name));
    Ok(Explanation {
        method: request.method.clone(),
        path: request
            .path
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
        answer: answer(&decision, preflight),
    })
}

/// The outcome of authenticating, the issuer it was for, and how the credentials were taken.
struct Authenticated {
    auth: Option<Authentication>,
    issuer: Option<String>,
    credentials: String,
    /// False for `--claims`, whose key (and `kid`) was made here.
    signed: bool,
}

impl Authenticated {
    fn new(auth: Authentication, issuer: Option<&str>, credentials: String) -> Authenticated {
        Authenticated {
            auth: Some(auth),
            issuer: issuer.map(str::to_owned),
            credentials,
            signed: true,
        }
    }
}

/// Authenticates the credentials as a Check would, and says how.
async fn authenticate(
    config: &Config,
    credentials: &Credentials,
    now: u64,
) -> Result<Authenticated, ExplainError> {
    let token = match credentials {
        Credentials::None => {
            return Ok(Authenticated::new(
                Err(CredentialsError::Missing.into()),
                None,
                "none".to_string(),
            ));
        }
        Credentials::Claims(json) => return claims_only(config, json, now),
        Credentials::Token(token) => token,
    };
    // The token alone, or the whole header value as copied from a request.
    let token = match token
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
    {
        Some(_) => token.to_owned(),
        None => format!("Bearer {token}"),
    };
    let token = match token::bearer_token(&[&token]) {
        Ok(token) => token.to_owned(),
        Err(e) => {
            return Ok(Authenticated::new(
                Err(e.into()),
                None,
                "malformed token".into(),
            ));
        }
    };
    let Some(index) = config
        .issuer_for(|| verify::peek_issuer(&token))
        .ok()
        .flatten()
    else {
        return Ok(Authenticated::new(
            Err(VerifyError::WrongIssuer.into()),
            None,
            "a token naming no configured issuer (no keys fetched)".into(),
        ));
    };
    let issuer = &config.issuers()[index];
    let name = issuer.expectations.issuer.as_str();
    Ok(match jwks::fetch_once(&issuer.jwks).await {
        Err(e) => Authenticated::new(
            Err(AuthError::KeysUnavailable),
            Some(name),
            format!("a token for {name}, whose keys could not be fetched: {e}"),
        ),
        Ok((keys, from)) => Authenticated::new(
            verify::verify(&token, &keys, &issuer.expectations, now).map_err(AuthError::from),
            Some(name),
            format!(
                "a token for {name}, checked against the {} key(s) fetched once from {from}",
                keys.len(),
            ),
        ),
    })
}

/// `--claims`: the claims signed by a key made for this call, verified with that key and the
/// issuer's expectations.
fn claims_only(config: &Config, json: &str, now: u64) -> Result<Authenticated, ExplainError> {
    let claims: serde_json::Value =
        serde_json::from_str(json).map_err(|e| ExplainError::BadClaims(e.to_string()))?;
    let Some(object) = claims.as_object() else {
        return Err(ExplainError::BadClaims("not an object".into()));
    };
    let iss = object.get("iss").and_then(|v| v.as_str());
    let Ok(index) = config.issuer_for(|| Ok::<_, std::convert::Infallible>(iss.map(str::to_owned)));
    let Some(index) = index else {
        return Ok(Authenticated::new(
            Err(VerifyError::WrongIssuer.into()),
            None,
            "claims naming no configured issuer".into(),
        ));
    };
    let issuer = &config.issuers()[index];
    let (token, keys) = self_signed(&claims, issuer.expectations.token_types.as_deref())?;
    let mut expect = issuer.expectations.clone();
    expect.algorithms = vec![Algorithm::EdDSA];
    let name = expect.issuer.as_str();
    Ok(Authenticated {
        signed: false,
        ..Authenticated::new(
            verify::verify(&token, &keys, &expect, now).map_err(AuthError::from),
            Some(name),
            format!(
                "claims given with --claims, checked against {name}'s expectations \
                 (exp, nbf, iss, aud, scopes); the signature is NOT checked"
            ),
        )
    })
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
            requires: requirement.to_string(),
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
fn answer(decision: &Decision, preflight: bool) -> Answer {
    let outcome = service::outcome_of(decision, preflight);
    let (error, message) = match decision {
        Decision::Allow(_) => (None, None),
        Decision::Deny(denial) => (
            Some(service::denial_answer(denial).2),
            Some(denial.to_string()),
        ),
    };
    Answer {
        decision: label(outcome.decision),
        status: outcome.status,
        reason: label(outcome.reason),
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
        writeln!(f)
    }
}

/// A metrics label value as text (the enums' variant names are the label values).
fn label(value: impl std::fmt::Debug) -> String {
    format!("{value:?}")
}
