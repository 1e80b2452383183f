//! A development token issuer. **Not for production.**
//!
//! It exists so that the demo, the Docker stack and the end-to-end tests can show real RS256
//! tokens without an Auth0 account. It keeps one RSA key in a file (created on first use), serves
//! it as a JWKS with an OpenID discovery document, and mints access tokens the way Auth0's
//! client-credentials flow does (`POST /oauth/token` with `audience` and `scope`). It checks no
//! client secret: anyone who can reach it gets any scope, which is why it listens on loopback
//! only unless explicitly forced.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

/// Default lifetime of minted tokens, in seconds (Auth0's default is a day; an hour is plenty for
/// a demo and keeps leaked demo tokens short-lived).
pub const DEFAULT_EXPIRES_IN: u64 = 3600;

/// Longest lifetime a minted token can have, in seconds (366 days). `mint-token` refuses more;
/// [`DevIssuer::mint`] clamps to it, so `iat + lifetime` can never overflow.
pub const MAX_EXPIRES_IN: u64 = 366 * 86_400;

/// Errors of the development issuer.
#[derive(Debug, thiserror::Error)]
pub enum DevIssuerError {
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file does not hold a PKCS#8 RSA private key.
    #[error("key file {path} is not a PKCS#8 DER RSA private key: {reason}")]
    BadKey {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// Key generation or signing failed.
    #[error("RSA operation failed")]
    Crypto,
    /// Refused to listen beyond loopback without `--allow-non-loopback`.
    #[error(
        "refusing to listen on {0}: the development issuer hands out tokens to anyone; \
         use a loopback address, or --allow-non-loopback inside an isolated network"
    )]
    NotLoopback(SocketAddr),
    /// The listener failed.
    #[error("dev issuer I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// The development issuer's key and identity.
pub struct DevIssuer {
    key: KeyPair,
    kid: String,
    issuer: String,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// What to put in a minted token.
#[derive(Debug, Clone, Default)]
pub struct Mint {
    /// `sub`.
    pub subject: String,
    /// `aud`.
    pub audience: String,
    /// Space-separated `scope`; empty means no `scope` claim.
    pub scope: String,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// Further claims, which override the ones above (for scripts that need odd tokens).
    pub extra: serde_json::Map<String, Value>,
}

impl DevIssuer {
    /// Loads the PKCS#8 key at `key_file`, creating it (mode 0600) if it does not exist.
    pub fn load_or_create(key_file: &Path, issuer: &str) -> Result<DevIssuer, DevIssuerError> {
        let path = key_file.display().to_string();
        let io = |source| DevIssuerError::KeyFile {
            path: path.clone(),
            source,
        };
        let key = match std::fs::read(key_file) {
            Ok(der) => KeyPair::from_pkcs8(&der).map_err(|e| DevIssuerError::BadKey {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key =
                    KeyPair::generate(KeySize::Rsa2048).map_err(|_| DevIssuerError::Crypto)?;
                let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
                    .map_err(|_| DevIssuerError::Crypto)?;
                if let Some(dir) = key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(key_file, der.as_ref()).map_err(io)?;
                key
            }
            Err(e) => return Err(io(e)),
        };
        Ok(DevIssuer::from_key(key, issuer))
    }

    fn from_key(key: KeyPair, issuer: &str) -> DevIssuer {
        let public = key.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        // RFC 7638 thumbprint: a kid that changes exactly when the key does.
        let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        DevIssuer {
            kid: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            key,
            issuer: issuer.to_string(),
        }
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key set.
    pub fn jwks(&self) -> Value {
        let public = self.key.public_key();
        json!({"keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        }]})
    }

    /// Mints an RS256 access token. Its lifetime is `expires_in` clamped to [`MAX_EXPIRES_IN`].
    pub fn mint(&self, m: &Mint) -> Result<String, DevIssuerError> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| DevIssuerError::Crypto)?
            .as_secs();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": m.subject,
            "aud": m.audience,
            "iat": now,
            "exp": now.saturating_add(m.expires_in.min(MAX_EXPIRES_IN)),
        });
        if !m.scope.is_empty() {
            claims["scope"] = json!(m.scope);
        }
        if let Value::Object(map) = &mut claims {
            map.extend(m.extra.clone());
        }
        let header = json!({"alg": "RS256", "typ": "at+jwt", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| DevIssuerError::Crypto)?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// Serves the discovery document, the JWKS and the token endpoint until `shutdown`.
    ///
    /// Refuses a non-loopback listener unless `allow_non_loopback` is set.
    pub async fn serve(
        self,
        listener: TcpListener,
        allow_non_loopback: bool,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), DevIssuerError> {
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() && !allow_non_loopback {
            return Err(DevIssuerError::NotLoopback(addr));
        }
        tracing::warn!(
            %addr,
            issuer = %self.issuer,
            kid = %self.kid,
            "DEVELOPMENT ISSUER: mints tokens for anyone who asks; never use it in production"
        );
        let app = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/oauth/token", post(token))
            .with_state(Arc::new(self));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

async fn jwks(State(issuer): State<Arc<DevIssuer>>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(issuer.jwks()),
    )
        .into_response()
}

async fn discovery(State(issuer): State<Arc<DevIssuer>>) -> axum::Json<Value> {
    let base = issuer.issuer.trim_end_matches('/');
    axum::Json(json!({
        "issuer": issuer.issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/oauth/token"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "none"],
        "id_token_signing_alg_values_supported": ["RS256"],
    }))
}

/// A client-credentials token request, as JSON or as a form.
#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    audience: Option<String>,
    scope: Option<String>,
    expires_in: Option<u64>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

async fn token(State(issuer): State<Arc<DevIssuer>>, headers: HeaderMap, body: Bytes) -> Response {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let parsed: Result<TokenRequest, String> = if form {
        serde_urlencoded::from_bytes(&body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    let request = match parsed {
        Ok(r) => r,
        Err(e) => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", &e),
    };
    if request.grant_type.as_deref() != Some("client_credentials") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "only grant_type=client_credentials is supported",
        );
    }
    let Some(audience) = request.audience.filter(|a| !a.is_empty()) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "audience is required",
        );
    };
    let client_id = request
        .client_id
        .unwrap_or_else(|| "dev-client".to_string());
    let expires_in = request
        .expires_in
        .unwrap_or(DEFAULT_EXPIRES_IN)
        .clamp(1, 86_400);
    let scope = request.scope.unwrap_or_default();
    let mint = Mint {
        subject: format!("{client_id}@clients"),
        audience,
        scope: scope.clone(),
        expires_in,
        extra: serde_json::Map::from_iter([("azp".to_string(), json!(client_id))]),
    };
    match issuer.mint(&mint) {
        Ok(access_token) => {
            let mut body = json!({
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": expires_in,
            });
            if !scope.is_empty() {
                body["scope"] = json!(scope);
            }
            ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
        }
        Err(e) => oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            &e.to_string(),
        ),
    }
}
