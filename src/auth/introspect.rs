//! OAuth 2.0 token introspection (RFC 7662): which tokens are introspected, how an issuer's
//! endpoint is called, and what its answer may be.
//!
//! - [`is_jwt`] (pure): a token is a JWT when it has three base64url segments and the first
//!   decodes to a JSON object with an `alg` member; anything else is opaque, and only an issuer
//!   with `introspection` set can read it.
//! - [`IntrospectionSettings`]: one issuer's endpoint (configured, or its discovery document's
//!   `introspection_endpoint`), client credentials and caps, compiled by the configuration.
//! - [`call`]: one POST to the endpoint (`token`, `token_type_hint=access_token`, the client's
//!   credentials), under the same outbound rules as key-set fetches (`net::outbound`: https
//!   unless loopback, `ca_file`, no redirects, bounded time) and a bound on the answer's size;
//!   it returns the answer's bytes or a [`CallFailure`]. What the answer means is decided by
//!   [`crate::auth::verify::introspected`], pure, the only place that turns it into
//!   [`crate::auth::verify::VerifiedClaims`].
//!
//! The caches, single-flight and caps around [`call`] are in
//! [`crate::auth::introspect_cache`].

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use base64::Engine as _;
use serde::Deserialize;

use crate::net::outbound::{self, FetchPolicy, GetError};
use crate::telemetry::metrics::IntrospectionResult;

/// Largest introspection answer read, in bytes: an answer is one token's claims, a few hundred
/// bytes; a server sending more is refused (503) without reading it whole.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Whether `token` is a JWT: three segments of base64url characters separated by `.`, the
/// first of which decodes (unpadded base64url) to a JSON object with an `alg` member. Anything
/// else, Ory's `ory_at_….…` and JWTs without `alg` included, is opaque. Reads the header only;
/// decides nothing about the token's validity.
pub fn is_jwt(token: &str) -> bool {
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let base64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if header.is_empty()
        || payload.is_empty()
        || ![header, payload, signature].iter().all(|s| base64url(s))
    {
        return false;
    }
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&bytes)
        .is_ok_and(|object| object.contains_key("alg"))
}

/// Which of an issuer's tokens are introspected (`introspection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Opaque tokens; JWTs are verified by signature as without introspection.
    Opaque,
    /// Opaque tokens, and JWTs whose `iss` names the issuer (Keycloak lightweight tokens,
    /// Okta org-server tokens); the issuer's keys are never fetched.
    Always,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Opaque => "opaque",
            Mode::Always => "always",
        })
    }
}

/// How the client authenticates to the endpoint (`client_auth`, RFC 6749 §2.3.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ClientAuth {
    /// HTTP Basic with the form-encoded client id and secret (the default).
    #[default]
    ClientSecretBasic,
    /// `client_id` and `client_secret` in the form body.
    ClientSecretPost,
}

impl fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClientAuth::ClientSecretBasic => "client_secret_basic",
            ClientAuth::ClientSecretPost => "client_secret_post",
        })
    }
}

/// Where the endpoint is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `introspection_endpoint`, as configured.
    Configured(reqwest::Url),
    /// The `introspection_endpoint` of the OIDC discovery document at `document`, whose
    /// `issuer` must be `issuer` exactly (as for `jwks_uri`).
    Discovered {
        /// The discovery document's URL.
        document: reqwest::Url,
        /// The issuer it must name.
        issuer: String,
    },
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Configured(url) => write!(f, "{url}"),
            Endpoint::Discovered { document, .. } => write!(f, "discovered from {document}"),
        }
    }
}

/// The client secret, read from `client_secret_file`. Never shown: `Debug` and `Display` print
/// a placeholder, so neither a log line nor `check-config` can carry it. Compared by content,
/// so a reload that changes the file counts as a changed client.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// The secret in `text` (a file's content): one trailing line break is not part of it.
    /// `None` when nothing is left.
    pub fn from_file_text(text: &str) -> Option<ClientSecret> {
        let secret = text
            .strip_suffix('\n')
            .map_or(text, |t| t.strip_suffix('\r').unwrap_or(t));
        (!secret.is_empty()).then(|| ClientSecret(secret.to_owned()))
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

/// One issuer's introspection, compiled from its configuration keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IntrospectionSettings {
    /// Which tokens are introspected.
    pub mode: Mode,
    /// Where the endpoint is.
    pub endpoint: Endpoint,
    /// The client id scopegate authenticates with.
    pub client_id: String,
    /// Its secret (the file's content).
    pub client_secret: ClientSecret,
    /// The file the secret was read from (shown; the content never is).
    pub client_secret_file: PathBuf,
    /// How the client authenticates.
    pub client_auth: ClientAuth,
    /// Whether an answer without `aud` is refused (`introspection_require_audience`).
    pub require_audience: bool,
    /// How long an active answer is remembered at most (`introspection_cache_seconds`; also
    /// never past the token's `exp`). Zero: not remembered.
    pub cache_seconds: u64,
    /// How long an inactive (or refused) answer is remembered
    /// (`introspection_negative_cache_seconds`). Zero: not remembered.
    pub negative_cache_seconds: u64,
    /// Most calls in flight at once (`introspection_max_in_flight`).
    pub max_in_flight: usize,
    /// Most calls started per second, a token bucket as deep as one second's calls
    /// (`introspection_max_calls_per_second`).
    pub max_calls_per_second: u32,
    /// What may be fetched and whom TLS trusts (the issuer's, as for its keys).
    pub fetch_policy: FetchPolicy,
    /// Time limit of one call, connection included (`jwks_fetch_timeout_seconds`).
    pub fetch_timeout: Duration,
}

/// Why a call brought no usable answer. Each is a 503 for the Check: the token may be fine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallFailure {
    /// Connection, TLS, a refused URL or redirect.
    #[error("introspection endpoint unreachable: {0}")]
    Network(String),
    /// No answer within the fetch timeout.
    #[error("introspection endpoint did not answer within {0}s")]
    Timeout(u64),
    /// A non-2xx status.
    #[error("introspection endpoint answered HTTP {0}")]
    Status(u16),
    /// Not a JSON object.
    #[error("introspection answer is not a JSON object")]
    Malformed,
    /// Larger than [`MAX_ANSWER_BYTES`].
    #[error("introspection answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    /// The discovery document was unusable.
    #[error("introspection endpoint not found by discovery: {0}")]
    Discovery(String),
}

impl CallFailure {
    /// The metrics' `result` for this failure.
    pub fn result(&self) -> IntrospectionResult {
        match self {
            CallFailure::Network(_) => IntrospectionResult::network_error,
            CallFailure::Timeout(_) => IntrospectionResult::timeout,
            CallFailure::Status(_) => IntrospectionResult::http_error,
            CallFailure::Malformed => IntrospectionResult::malformed,
            CallFailure::TooLarge => IntrospectionResult::too_large,
            CallFailure::Discovery(_) => IntrospectionResult::discovery_error,
        }
    }
}

/// An HTTP client for `settings`' endpoint: the issuer's fetch policy and the fetch timeout.
pub fn http_client(settings: &IntrospectionSettings) -> Result<outbound::Client, reqwest::Error> {
    settings.fetch_policy.client(settings.fetch_timeout)
}

/// The endpoint's URL: the configured one, or the discovery document's `introspection_endpoint`
/// once its `issuer` has proved equal to the configured one and the URL passes the fetch policy.
pub async fn resolve(
    client: &outbound::Client,
    settings: &IntrospectionSettings,
) -> Result<reqwest::Url, CallFailure> {
    let (document, issuer) = match &settings.endpoint {
        Endpoint::Configured(url) => return Ok(url.clone()),
        Endpoint::Discovered { document, issuer } => (document, issuer),
    };
    #[derive(Deserialize)]
    struct Metadata {
        issuer: String,
        introspection_endpoint: Option<String>,
    }
    let fail = |reason: String| CallFailure::Discovery(format!("{document}: {reason}"));
    let response = client.get(document).await.map_err(|e| match e {
        GetError::Refused(e) => fail(e.to_string()),
        GetError::Http(e) => fail(e.to_string()),
    })?;
    if !response.status().is_success() {
        return Err(fail(format!("HTTP {}", response.status().as_u16())));
    }
    let body = read_bounded(response, settings.fetch_timeout)
        .await
        .map_err(|e| fail(e.to_string()))?;
    let metadata: Metadata = serde_json::from_slice(&body)
        .map_err(|_| fail("not a provider configuration with issuer".into()))?;
    if metadata.issuer != *issuer {
        return Err(fail(format!(
            "names issuer {:?}, not the configured {issuer:?}",
            metadata.issuer
        )));
    }
    let Some(endpoint) = metadata.introspection_endpoint else {
        return Err(fail(
            "has no introspection_endpoint; configure introspection_endpoint".into(),
        ));
    };
    match reqwest::Url::parse(&endpoint) {
        Ok(url) if matches!(url.scheme(), "https" | "http") && url.host_str().is_some() => {
            client
                .policy()
                .permits(&url)
                .map_err(|e| fail(format!("names an endpoint that is refused: {e}")))?;
            Ok(url)
        }
        _ => Err(fail(format!(
            "introspection_endpoint {endpoint:?} is not an http(s) URL"
        ))),
    }
}

/// Introspects `token` at `endpoint` (RFC 7662 §2.1): a form POST of `token` and
/// `token_type_hint=access_token`, the client authenticated as `settings` say. The answer's
/// bytes when the status is 2xx and it fits in [`MAX_ANSWER_BYTES`]; what it means is for
/// [`crate::auth::verify::introspected`] to say.
pub async fn call(
    client: &outbound::Client,
    endpoint: &reqwest::Url,
    settings: &IntrospectionSettings,
    token: &str,
) -> Result<Vec<u8>, CallFailure> {
    let mut form: Vec<(&str, &str)> = vec![("token", token), ("token_type_hint", "access_token")];
    let authorization = match settings.client_auth {
        ClientAuth::ClientSecretBasic => {
            // RFC 6749 §2.3.1: each form-encoded before they are joined.
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!(
                "{}:{}",
                encode(&settings.client_id),
                encode(settings.client_secret.expose())
            );
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
        ClientAuth::ClientSecretPost => {
            form.push(("client_id", &settings.client_id));
            form.push(("client_secret", settings.client_secret.expose()));
            None
        }
    };
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let response = client
        .post_form(endpoint, body, authorization)
        .await
        .map_err(|e| failure_of(e, settings.fetch_timeout))?;
    if !response.status().is_success() {
        return Err(CallFailure::Status(response.status().as_u16()));
    }
    read_bounded(response, settings.fetch_timeout).await
}

/// What went wrong with a request, as a [`CallFailure`].
fn failure_of(error: GetError, timeout: Duration) -> CallFailure {
    match error {
        GetError::Refused(e) => CallFailure::Network(e.to_string()),
        GetError::Http(e) if e.is_timeout() => CallFailure::Timeout(timeout.as_secs()),
        GetError::Http(e) => {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            CallFailure::Network(text)
        }
    }
}

/// The body, refused past [`MAX_ANSWER_BYTES`] without reading it whole.
async fn read_bounded(
    mut response: reqwest::Response,
    timeout: Duration,
) -> Result<Vec<u8>, CallFailure> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
    {
        return Err(CallFailure::TooLarge);
    }
    let mut body = Vec::new();
    loop {
        let chunk = response
            .chunk()
            .await
            .map_err(|e| failure_of(GetError::Http(e), timeout))?;
        let Some(chunk) = chunk else { break };
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(CallFailure::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
    }

    /// The issue's definition, case by case: three base64url segments whose first decodes to a
    /// JSON object with `alg`; everything else is opaque.
    #[test]
    fn a_jwt_has_three_base64url_segments_and_a_header_with_alg() {
        let header = b64(r#"{"alg":"RS256","kid":"k"}"#);
        let cases: Vec<(String, bool)> = vec![
            (format!("{header}.{}.c2ln", b64("{}")), true),
            // An unsigned token is still a JWT (its verification refuses it).
            (format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64("{}")), true),
            // alg of any type: the member is what counts.
            (format!("{}.e30.c2ln", b64(r#"{"alg":7}"#)), true),
            // No alg: opaque.
            (format!("{}.e30.c2ln", b64(r#"{"typ":"JWT"}"#)), false),
            // The header is not an object.
            (format!("{}.e30.c2ln", b64("[1]")), false),
            (format!("{}.e30.c2ln", b64("not json")), false),
            // Ory's opaque tokens: two segments.
            ("ory_at_abcDEF123.ghiJKL456".into(), false),
            // Two, four and five segments.
            (format!("{header}.e30"), false),
            (format!("{header}.e30.c2ln.eA"), false),
            (format!("{header}.e30.c2ln.eA.eA"), false),
            // Characters outside base64url (padding, standard alphabet).
            (format!("{header}=.e30.c2ln"), false),
            (format!("{header}.e3+0.c2ln"), false),
            // Empty header or payload.
            (".e30.c2ln".into(), false),
            (format!("{header}..c2ln"), false),
            ("".into(), false),
            ("sgo_payload_mac".into(), false),
            ("2YotnFZFEjr1zCsicMWpAA".into(), false),
        ];
        for (token, want) in cases {
            assert_eq!(is_jwt(&token), want, "{token}");
        }
    }

    /// The secret never shows: not in `Debug`, not in the settings' `Debug`.
    #[test]
    fn the_client_secret_is_never_shown() {
        let secret = ClientSecret::from_file_text("s3cr3t-value\n").expect("a secret");
        assert_eq!(secret.expose(), "s3cr3t-value");
        assert!(!format!("{secret:?}").contains("s3cr3t"));
        assert_eq!(
            ClientSecret::from_file_text("a\r\n").map(|s| s.0),
            Some("a".into())
        );
        assert_eq!(ClientSecret::from_file_text("\n"), None);
        assert_eq!(ClientSecret::from_file_text(""), None);
    }
}
