//! A development token issuer. **Not for production.**
//!
//! It exists so that the demo, the Docker stack and the end-to-end tests can show real tokens
//! without an Auth0 account. It keeps one key in a file (created on first use): RSA for RS256
//! (the default), P-256 for ES256 or Ed25519 for EdDSA. It serves the public key as a JWKS with an
//! OpenID discovery document, and mints access tokens the way Auth0's
//! client-credentials flow does (`POST /oauth/token` with `audience` and `scope`). It checks no
//! client secret: anyone who can reach it gets any scope, which is why it listens on loopback
//! only unless explicitly forced.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
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
    /// The key file does not hold a PKCS#8 private key of the kind the algorithm needs.
    #[error(
        "key file {path} is not a PKCS#8 DER {kind} private key ({reason}); \
         each algorithm needs a key file of its own"
    )]
    BadKey {
        /// The path.
        path: String,
        /// The kind of key expected (`RSA`, `P-256`, `Ed25519`).
        kind: &'static str,
        /// Why.
        reason: String,
    },
    /// An algorithm the development issuer does not sign with.
    #[error("the development issuer signs with RS256, ES256 or EdDSA, not {0:?}")]
    UnknownAlgorithm(String),
    /// Key generation or signing failed.
    #[error("key generation or signing failed")]
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

/// The algorithm the development issuer signs with; each has its own kind of key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DevAlgorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 on a 2048-bit RSA key (Auth0's default).
    #[default]
    Rs256,
    /// ECDSA on P-256 with SHA-256.
    Es256,
    /// Ed25519.
    EdDsa,
}

impl DevAlgorithm {
    /// The JOSE `alg` name.
    pub fn name(self) -> &'static str {
        match self {
            DevAlgorithm::Rs256 => "RS256",
            DevAlgorithm::Es256 => "ES256",
            DevAlgorithm::EdDsa => "EdDSA",
        }
    }

    fn key_kind(self) -> &'static str {
        match self {
            DevAlgorithm::Rs256 => "RSA",
            DevAlgorithm::Es256 => "P-256",
            DevAlgorithm::EdDsa => "Ed25519",
        }
    }
}

impl std::str::FromStr for DevAlgorithm {
    type Err = DevIssuerError;

    fn from_str(s: &str) -> Result<DevAlgorithm, DevIssuerError> {
        [
            DevAlgorithm::Rs256,
            DevAlgorithm::Es256,
            DevAlgorithm::EdDsa,
        ]
        .into_iter()
        .find(|alg| alg.name() == s)
        .ok_or_else(|| DevIssuerError::UnknownAlgorithm(s.to_string()))
    }
}

impl std::fmt::Display for DevAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A private key of one of the kinds [`DevAlgorithm`] names.
enum SigningKey {
    Rsa(KeyPair),
    P256(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

impl SigningKey {
    fn generate(alg: DevAlgorithm) -> Result<Vec<u8>, DevIssuerError> {
        let rng = SystemRandom::new();
        let der = match alg {
            DevAlgorithm::Rs256 => {
                let key =
                    KeyPair::generate(KeySize::Rsa2048).map_err(|_| DevIssuerError::Crypto)?;
                AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&key)
                    .map_err(|_| DevIssuerError::Crypto)?
                    .as_ref()
                    .to_vec()
            }
            DevAlgorithm::Es256 => {
                EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| DevIssuerError::Crypto)?
                    .as_ref()
                    .to_vec()
            }
            DevAlgorithm::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| DevIssuerError::Crypto)?
                .as_ref()
                .to_vec(),
        };
        Ok(der)
    }

    fn parse(alg: DevAlgorithm, der: &[u8]) -> Result<SigningKey, String> {
        match alg {
            DevAlgorithm::Rs256 => KeyPair::from_pkcs8(der)
                .map(SigningKey::Rsa)
                .map_err(|e| e.to_string()),
            DevAlgorithm::Es256 => EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                .map(SigningKey::P256)
                .map_err(|e| e.to_string()),
            DevAlgorithm::EdDsa => Ed25519KeyPair::from_pkcs8(der)
                .map(SigningKey::Ed25519)
                .map_err(|e| e.to_string()),
        }
    }

    /// The public JWK's members, in the lexicographic order RFC 7638 hashes them in, without
    /// `kid`, `alg` and `use`.
    fn public_members(&self) -> Vec<(&'static str, String)> {
        match self {
            SigningKey::Rsa(key) => {
                let public = key.public_key();
                vec![
                    (
                        "e",
                        URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
                    ),
                    ("kty", "RSA".into()),
                    (
                        "n",
                        URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                    ),
                ]
            }
            SigningKey::P256(key) => {
                // Uncompressed point: 0x04 ‖ x ‖ y, 32 bytes each.
                let point = key.public_key().as_ref();
                vec![
                    ("crv", "P-256".into()),
                    ("kty", "EC".into()),
                    ("x", URL_SAFE_NO_PAD.encode(&point[1..33])),
                    ("y", URL_SAFE_NO_PAD.encode(&point[33..65])),
                ]
            }
            SigningKey::Ed25519(key) => vec![
                ("crv", "Ed25519".into()),
                ("kty", "OKP".into()),
                ("x", URL_SAFE_NO_PAD.encode(key.public_key().as_ref())),
            ],
        }
    }

    fn sign(&self, input: &[u8]) -> Result<Vec<u8>, DevIssuerError> {
        let rng = SystemRandom::new();
        match self {
            SigningKey::Rsa(key) => {
                let mut signature = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, input, &mut signature)
                    .map_err(|_| DevIssuerError::Crypto)?;
                Ok(signature)
            }
            // FIXED signing gives JOSE's r ‖ s form (RFC 7518 §3.4), not DER.
            SigningKey::P256(key) => Ok(key
                .sign(&rng, input)
                .map_err(|_| DevIssuerError::Crypto)?
                .as_ref()
                .to_vec()),
            SigningKey::Ed25519(key) => Ok(key.sign(input).as_ref().to_vec()),
        }
    }
}

/// The development issuer's key and identity.
pub struct DevIssuer {
    key: SigningKey,
    alg: DevAlgorithm,
    kid: String,
    issuer: String,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("alg", &self.alg)
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
    /// Loads the PKCS#8 RSA key at `key_file` for RS256, creating it (mode 0600) if it does not
    /// exist.
    pub fn load_or_create(key_file: &Path, issuer: &str) -> Result<DevIssuer, DevIssuerError> {
        DevIssuer::load_or_create_for(key_file, issuer, DevAlgorithm::Rs256)
    }

    /// Loads the PKCS#8 key for `alg` at `key_file`, creating it (mode 0600) if it does not
    /// exist. A file holding another kind of key is an error, never replaced.
    pub fn load_or_create_for(
        key_file: &Path,
        issuer: &str,
        alg: DevAlgorithm,
    ) -> Result<DevIssuer, DevIssuerError> {
        let path = key_file.display().to_string();
        let io = |source| DevIssuerError::KeyFile {
            path: path.clone(),
            source,
        };
        let der = match std::fs::read(key_file) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let der = SigningKey::generate(alg)?;
                if let Some(dir) = key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(io)?;
                }
                write_private(key_file, &der).map_err(io)?;
                der
            }
            Err(e) => return Err(io(e)),
        };
        let key = SigningKey::parse(alg, &der).map_err(|reason| DevIssuerError::BadKey {
            path: path.clone(),
            kind: alg.key_kind(),
            reason,
        })?;
        // RFC 7638 thumbprint: a kid that changes exactly when the key does.
        let members = key.public_members();
        let canonical = serde_json::Map::from_iter(
            members
                .iter()
                .map(|(name, value)| (name.to_string(), json!(value))),
        );
        let digest = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            Value::Object(canonical).to_string().as_bytes(),
        );
        Ok(DevIssuer {
            kid: URL_SAFE_NO_PAD.encode(digest.as_ref()),
            key,
            alg,
            issuer: issuer.to_string(),
        })
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm tokens are signed with.
    pub fn algorithm(&self) -> DevAlgorithm {
        self.alg
    }

    /// The public key set.
    pub fn jwks(&self) -> Value {
        let mut jwk = serde_json::Map::from_iter(
            self.key
                .public_members()
                .into_iter()
                .map(|(name, value)| (name.to_string(), json!(value))),
        );
        jwk.insert("use".into(), json!("sig"));
        jwk.insert("alg".into(), json!(self.alg.name()));
        jwk.insert("kid".into(), json!(self.kid));
        json!({"keys": [jwk]})
    }

    /// Mints an access token signed with the issuer's algorithm. Its lifetime is `expires_in` clamped to [`MAX_EXPIRES_IN`].
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
        let header = json!({"alg": self.alg.name(), "typ": "at+jwt", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(input.as_bytes())?;
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
            alg = %self.alg,
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
        "id_token_signing_alg_values_supported": [issuer.alg.name()],
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
