//! The development issuer's introspection (RFC 7662) and revocation (RFC 7009) endpoints.
//! **Not for production.**
//!
//! Both take a form body with `token` (and an optional `token_type_hint`, which changes
//! nothing: the issuer recognises its own tokens) and the one configured client, authenticated
//! by `client_secret_basic` or `client_secret_post`. Revoked tokens are remembered in memory
//! only, in a set of at most [`MAX_REVOKED`] entries.

use std::collections::HashMap;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::dev::issuer::{DevIssuer, DevIssuerError, now, oauth_error};

/// The client id the introspection client has unless told otherwise.
pub const DEFAULT_CLIENT_ID: &str = "scopegate";

/// The built-in secret of the introspection client: for demos only, since it is published
/// here.
pub const DEMO_CLIENT_SECRET: &str = "demo-introspection-secret";

/// How the endpoints authenticate their client, as the discovery document names them.
pub const AUTH_METHODS: [&str; 2] = ["client_secret_basic", "client_secret_post"];

/// Most revoked tokens remembered at once. Each is remembered only until it expires; when the
/// set is full, expired entries are dropped first, and if none has expired the revocation is
/// refused (503) rather than forgetting a revoked token that is still valid.
pub const MAX_REVOKED: usize = 10_000;

/// The one client allowed to call the introspection and revocation endpoints.
#[derive(Clone)]
pub struct IntrospectionClient {
    id: String,
    secret: String,
}

impl IntrospectionClient {
    /// A client with this id and secret; neither may be empty (an empty secret would let a
    /// client in that sends none).
    pub fn new(id: &str, secret: &str) -> Result<IntrospectionClient, DevIssuerError> {
        if id.is_empty() || secret.is_empty() {
            return Err(DevIssuerError::EmptyClient);
        }
        Ok(IntrospectionClient {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// A client with this id and the secret held in `file` (surrounding whitespace, such as
    /// the final newline, is not part of it).
    pub fn from_secret_file(
        id: &str,
        file: &std::path::Path,
    ) -> Result<IntrospectionClient, DevIssuerError> {
        let text = std::fs::read_to_string(file).map_err(|source| DevIssuerError::SecretFile {
            path: file.display().to_string(),
            source,
        })?;
        IntrospectionClient::new(id, text.trim())
    }

    /// The client id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Whether `id` and `secret` are this client's; the secret is compared in constant time.
    fn matches(&self, id: &str, secret: &str) -> bool {
        let secret_ok = aws_lc_rs::constant_time::verify_slices_are_equal(
            secret.as_bytes(),
            self.secret.as_bytes(),
        )
        .is_ok();
        secret_ok && id == self.id
    }
}

impl Default for IntrospectionClient {
    /// [`DEFAULT_CLIENT_ID`] with [`DEMO_CLIENT_SECRET`].
    fn default() -> Self {
        IntrospectionClient {
            id: DEFAULT_CLIENT_ID.to_string(),
            secret: DEMO_CLIENT_SECRET.to_string(),
        }
    }
}

impl std::fmt::Debug for IntrospectionClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionClient")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Revoked tokens by SHA-256, each with its `exp`, at most [`MAX_REVOKED`].
#[derive(Debug, Default)]
pub struct Revoked {
    expiry: HashMap<[u8; 32], u64>,
}

impl Revoked {
    fn key(token: &str) -> [u8; 32] {
        let mut key = [0; 32];
        key.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
        key
    }

    /// Whether `token` was revoked (an expired entry may linger; the token is inactive then
    /// anyway).
    pub fn contains(&self, token: &str) -> bool {
        self.expiry.contains_key(&Revoked::key(token))
    }

    /// Remembers `token` until `exp`; `false` if the set is full of tokens that have not
    /// expired at `now`.
    pub fn insert(&mut self, token: &str, exp: u64, now: u64) -> bool {
        let key = Revoked::key(token);
        if self.expiry.len() >= MAX_REVOKED && !self.expiry.contains_key(&key) {
            self.expiry.retain(|_, exp| *exp > now);
            if self.expiry.len() >= MAX_REVOKED {
                return false;
            }
        }
        self.expiry.insert(key, exp);
        true
    }

    /// How many tokens are remembered.
    pub fn len(&self) -> usize {
        self.expiry.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.expiry.is_empty()
    }
}

/// The active answer for a token's claims: the claims, `active`, `token_type` (`DPoP` for a
/// DPoP-bound token, RFC 9449 §6.2, else `Bearer`) and `client_id` (from `azp` when the token
/// names its client only there).
pub(crate) fn active_answer(mut claims: serde_json::Map<String, Value>) -> Value {
    let dpop = claims.get("cnf").and_then(|cnf| cnf.get("jkt")).is_some();
    if !claims.contains_key("client_id")
        && let Some(azp) = claims.get("azp").cloned()
    {
        claims.insert("client_id".into(), azp);
    }
    claims.insert("active".into(), json!(true));
    claims.insert(
        "token_type".into(),
        json!(if dpop { "DPoP" } else { "Bearer" }),
    );
    Value::Object(claims)
}

/// The form both endpoints read.
#[derive(Deserialize)]
struct TokenForm {
    token: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

/// Why a request is refused before its token is looked at (boxed: the answer is large beside
/// the token of a request that passes).
fn refused(status: StatusCode, error: &str, description: &str) -> Box<Response> {
    let mut response = oauth_error(status, error, description);
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"dev-issuer\""),
        );
    }
    Box::new(response)
}

/// Reads the form and authenticates the client; the token on success.
fn authenticated_token(
    issuer: &DevIssuer,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<String, Box<Response>> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    if !form {
        return Err(refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let request: TokenForm = serde_urlencoded::from_bytes(body)
        .map_err(|e| refused(StatusCode::BAD_REQUEST, "invalid_request", &e.to_string()))?;
    let basic = headers.get(header::AUTHORIZATION);
    let posted = request.client_id.is_some() || request.client_secret.is_some();
    let credentials = match (basic, posted) {
        // RFC 6749 §2.3: a client uses one authentication method per request.
        (Some(_), true) => {
            return Err(refused(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "use client_secret_basic or client_secret_post, not both",
            ));
        }
        (Some(value), false) => basic_credentials(value),
        (None, true) => request.client_id.clone().zip(request.client_secret.clone()),
        (None, false) => None,
    };
    let authenticated =
        credentials.is_some_and(|(id, secret)| issuer.introspection_client().matches(&id, &secret));
    if !authenticated {
        return Err(refused(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        ));
    }
    match request.token.filter(|t| !t.is_empty()) {
        Some(token) => Ok(token),
        None => Err(refused(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "token is required",
        )),
    }
}

/// The id and secret of an `Authorization: Basic` header, each form-urlencoded as RFC 6749
/// §2.3.1 says.
fn basic_credentials(value: &header::HeaderValue) -> Option<(String, String)> {
    let encoded = value.to_str().ok()?;
    let (scheme, encoded) = encoded.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |part: &str| -> Option<String> {
        percent_encoding::percent_decode_str(&part.replace('+', " "))
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

fn no_store(body: Value) -> Response {
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

/// `POST /oauth/introspect` (RFC 7662).
pub(crate) async fn introspect(
    State(issuer): State<Arc<DevIssuer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match authenticated_token(&issuer, &headers, &body) {
        Ok(token) => token,
        Err(refusal) => return *refusal,
    };
    match now() {
        Ok(now) => no_store(issuer.introspect(&token, now)),
        Err(e) => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &e.to_string(),
        ),
    }
}

/// `POST /oauth/revoke` (RFC 7009): 200 for any authenticated, well-formed request, whether or
/// not the token was one to revoke.
pub(crate) async fn revoke(
    State(issuer): State<Arc<DevIssuer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = match authenticated_token(&issuer, &headers, &body) {
        Ok(token) => token,
        Err(refusal) => return *refusal,
    };
    let revoked = match now() {
        Ok(now) => issuer.revoke(&token, now),
        Err(_) => false,
    };
    if revoked {
        StatusCode::OK.into_response()
    } else {
        // RFC 7009 §2.2.1: the server may be unable to revoke for now.
        let mut response = oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "too many revoked tokens are remembered; try again later",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("60"));
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_revoked_set_is_bounded_and_never_forgets_an_unexpired_token() {
        let mut revoked = Revoked::default();
        for i in 0..MAX_REVOKED {
            assert!(revoked.insert(&format!("t{i}"), 100 + (i % 2) as u64, 50));
        }
        // Full of unexpired tokens: refused, nothing forgotten.
        assert!(!revoked.insert("new", 1_000, 99));
        assert_eq!(revoked.len(), MAX_REVOKED);
        assert!(revoked.contains("t0") && !revoked.contains("new"));
        // Once half of them expired, they make room.
        assert!(revoked.insert("new", 1_000, 100));
        assert!(revoked.contains("new") && revoked.contains("t1") && !revoked.contains("t0"));
        assert_eq!(revoked.len(), MAX_REVOKED / 2 + 1);
        // Revoking a remembered token again needs no room.
        assert!(revoked.insert("t1", 101, 100));
    }

    #[test]
    fn basic_credentials_are_read_as_rfc_6749_encodes_them() {
        let header = |raw: &str| {
            header::HeaderValue::from_str(&format!("Basic {}", STANDARD.encode(raw)))
                .expect("header")
        };
        for (raw, expected) in [
            ("scopegate:s3cret", Some(("scopegate", "s3cret"))),
            ("a%3Ab:c+d%25", Some(("a:b", "c d%"))),
            ("a:b:c", Some(("a", "b:c"))),
            ("no-colon", None),
        ] {
            let got = basic_credentials(&header(raw));
            assert_eq!(
                got.as_ref().map(|(a, b)| (a.as_str(), b.as_str())),
                expected,
                "{raw}"
            );
        }
        for other in ["Bearer abc", "Basic !!!", "Basic"] {
            let value = header::HeaderValue::from_static(other);
            assert_eq!(basic_credentials(&value), None, "{other}");
        }
    }

    #[test]
    fn a_client_needs_both_its_id_and_its_secret() {
        let client = IntrospectionClient::new("rs", "pw").expect("client");
        assert!(client.matches("rs", "pw"));
        for (id, secret) in [("rs", "pW"), ("rs", ""), ("other", "pw"), ("rs", "pw ")] {
            assert!(!client.matches(id, secret), "{id}:{secret}");
        }
        assert!(IntrospectionClient::new("rs", "").is_err());
        assert!(IntrospectionClient::new("", "pw").is_err());
        assert!(!format!("{client:?}").contains("pw"));
    }
}
