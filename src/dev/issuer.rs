//! A development token issuer. **Not for production.**
//!
//! It exists so that the demo, the Docker stack and the end-to-end tests can show real tokens
//! without an Auth0 account. It keeps one key in a file (created on first use): RSA for RS256
//! (the default), P-256 for ES256 or Ed25519 for EdDSA. It serves the public key as a JWKS with an
//! OpenID discovery document, and mints access tokens the way Auth0's
//! client-credentials flow does (`POST /oauth/token` with `audience` and `scope`). It checks no
//! client secret: anyone who can reach it gets any scope, which is why it listens on loopback
//! only unless explicitly forced.
//!
//! It also hands out opaque tokens (`"token_format": "opaque"`), which only it can read, and
//! answers for them, and for its JWTs, at an RFC 7662 introspection endpoint and an RFC 7009
//! revocation endpoint ([`crate::dev::introspection`]), so the demo and the tests can make real
//! introspection round trips.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::hmac;
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, EcdsaKeyPair,
    Ed25519KeyPair, KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, UnparsedPublicKey,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::auth::dpop::{KeyCache, ProofLimits, verify_token_request};
use crate::auth::replay::MemoryReplayCache;
use crate::dev::introspection::{self, IntrospectionClient, Revoked};

/// Default lifetime of minted tokens, in seconds (Auth0's default is a day; an hour is plenty for
/// a demo and keeps leaked demo tokens short-lived).
pub const DEFAULT_EXPIRES_IN: u64 = 3600;

/// Longest lifetime a minted token can have, in seconds (366 days). `mint-token` refuses more;
/// [`DevIssuer::mint`] clamps to it, so `iat + lifetime` can never overflow.
pub const MAX_EXPIRES_IN: u64 = 366 * 86_400;

/// The prefix of the issuer's opaque tokens: `sgo_<base64url claims>_<base64url MAC>`, which is
/// never three dot-separated segments, so nothing mistakes it for a JWT.
pub const OPAQUE_PREFIX: &str = "sgo_";

/// Length of an opaque token's MAC: HMAC-SHA256, 32 bytes, in unpadded base64url.
const OPAQUE_MAC_CHARS: usize = 43;

/// Longest token the issuer reads when asked to introspect or revoke one; its own tokens are far
/// shorter, so anything longer is not one of them and is not parsed.
const MAX_READ_TOKEN_BYTES: usize = 16 * 1024;

/// What the MAC key of opaque tokens is derived under, from the signing key: the same key file
/// gives the same MAC key, so `mint-token --opaque` mints tokens the running issuer accepts.
const OPAQUE_MAC_LABEL: &[u8] = b"scopegate dev-issuer opaque access tokens v1";

/// Largest request body the issuer reads.
const MAX_BODY_BYTES: usize = 64 * 1024;

/// The memory the token endpoint's DPoP replay cache may take.
const REPLAY_CACHE_BYTES: u64 = 1024 * 1024;

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
    /// The introspection client's id or secret is empty.
    #[error("the introspection client needs a non-empty client id and secret")]
    EmptyClient,
    /// The introspection client's secret file could not be read.
    #[error("introspection client secret file {path}: {source}")]
    SecretFile {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
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

    /// Whether `signature` over `input` was made by this key.
    fn verifies(&self, input: &[u8], signature: &[u8]) -> bool {
        let verified = match self {
            SigningKey::Rsa(key) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key().as_ref())
                    .verify(input, signature)
            }
            SigningKey::P256(key) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_key().as_ref())
                    .verify(input, signature)
            }
            SigningKey::Ed25519(key) => {
                UnparsedPublicKey::new(&ED25519, key.public_key().as_ref()).verify(input, signature)
            }
        };
        verified.is_ok()
    }
}

/// The development issuer's key and identity.
pub struct DevIssuer {
    key: SigningKey,
    alg: DevAlgorithm,
    kid: String,
    issuer: String,
    /// Signs and checks opaque tokens; derived from the signing key.
    mac_key: hmac::Key,
    /// Who may call the introspection and revocation endpoints.
    client: IntrospectionClient,
    /// Tokens revoked at `/oauth/revoke`, remembered until they expire.
    revoked: Mutex<Revoked>,
    /// The token endpoint's DPoP proof keys, as the gate keeps them.
    proof_keys: KeyCache,
    /// The token endpoint's DPoP proofs seen, so none is used twice.
    replay: MemoryReplayCache,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .field("introspection_client_id", &self.client.id())
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
        let der = read_or_create_key(key_file, || SigningKey::generate(alg))?;
        let key = SigningKey::parse(alg, &der).map_err(|reason| DevIssuerError::BadKey {
            path: path.clone(),
            kind: alg.key_kind(),
            reason,
        })?;
        // RFC 7638 thumbprint: a kid that changes exactly when the key does.
        let kid = thumbprint(&key.public_members());
        let derived = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &der), OPAQUE_MAC_LABEL);
        Ok(DevIssuer {
            kid,
            key,
            alg,
            issuer: issuer.to_string(),
            mac_key: hmac::Key::new(hmac::HMAC_SHA256, derived.as_ref()),
            client: IntrospectionClient::default(),
            revoked: Mutex::new(Revoked::default()),
            proof_keys: KeyCache::default(),
            replay: MemoryReplayCache::new(REPLAY_CACHE_BYTES),
        })
    }

    /// The issuer with `client` as the one client allowed to introspect and revoke tokens
    /// (default: [`IntrospectionClient::default`], a demo secret).
    pub fn with_introspection_client(mut self, client: IntrospectionClient) -> DevIssuer {
        self.client = client;
        self
    }

    /// The client allowed to introspect and revoke tokens.
    pub fn introspection_client(&self) -> &IntrospectionClient {
        &self.client
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
        let claims = self.claims(m)?;
        let header = json!({"alg": self.alg.name(), "typ": "at+jwt", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(input.as_bytes())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// Mints an opaque access token, `sgo_<base64url claims>_<base64url MAC>`: the same claims
    /// as [`DevIssuer::mint`] plus a random `jti` (unless `extra` sets one), so that revoking one
    /// token never revokes another minted in the same second. Only an issuer with the same key
    /// file can read it, through [`DevIssuer::introspect`].
    pub fn mint_opaque(&self, m: &Mint) -> Result<String, DevIssuerError> {
        let mut claims = self.claims(m)?;
        if claims.get("jti").is_none() {
            let mut jti = [0u8; 16];
            SystemRandom::new()
                .fill(&mut jti)
                .map_err(|_| DevIssuerError::Crypto)?;
            claims["jti"] = json!(URL_SAFE_NO_PAD.encode(jti));
        }
        let signed = format!(
            "{OPAQUE_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mac = hmac::sign(&self.mac_key, signed.as_bytes());
        Ok(format!("{signed}_{}", URL_SAFE_NO_PAD.encode(mac.as_ref())))
    }

    /// The claims of `token` if this issuer minted it (an opaque token whose MAC verifies, or a
    /// JWT signed by this key), whatever its times say; `None` for anything else. Nothing in
    /// the token is read before its MAC or signature has verified.
    pub fn read_token(&self, token: &str) -> Option<serde_json::Map<String, Value>> {
        if token.len() > MAX_READ_TOKEN_BYTES {
            return None;
        }
        let payload = match token.strip_prefix(OPAQUE_PREFIX) {
            Some(rest) => {
                let split = rest.len().checked_sub(OPAQUE_MAC_CHARS + 1)?;
                let (claims, mac) = (rest.get(..split)?, rest.get(split..)?);
                let mac = URL_SAFE_NO_PAD.decode(mac.strip_prefix('_')?).ok()?;
                let signed = &token[..OPAQUE_PREFIX.len() + split];
                hmac::verify(&self.mac_key, signed.as_bytes(), &mac).ok()?;
                URL_SAFE_NO_PAD.decode(claims).ok()?
            }
            None => {
                let mut parts = token.split('.');
                let (header, claims, signature) = (parts.next()?, parts.next()?, parts.next()?);
                if parts.next().is_some() {
                    return None;
                }
                let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
                let input = &token[..header.len() + 1 + claims.len()];
                if !self.key.verifies(input.as_bytes(), &signature) {
                    return None;
                }
                // The key signs nothing else, but a JWT names its algorithm and key: both must
                // be this issuer's.
                let header: Value =
                    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).ok()?).ok()?;
                if header["alg"] != self.alg.name() || header["kid"] != self.kid.as_str() {
                    return None;
                }
                URL_SAFE_NO_PAD.decode(claims).ok()?
            }
        };
        match serde_json::from_slice(&payload).ok()? {
            Value::Object(claims) => Some(claims),
            _ => None,
        }
    }

    /// The RFC 7662 answer for `token` at time `now` (Unix seconds): `{"active": true, …its
    /// claims, "token_type"}` for a token this issuer minted that has not expired, is already
    /// valid (`nbf`) and was not revoked; `{"active": false}` for anything else.
    pub fn introspect(&self, token: &str, now: u64) -> Value {
        match self.active_claims(token, now) {
            Some(claims) if !self.is_revoked(token) => introspection::active_answer(claims),
            _ => json!({"active": false}),
        }
    }

    /// The claims of `token` if this issuer minted it and it is valid at `now`.
    pub(crate) fn active_claims(
        &self,
        token: &str,
        now: u64,
    ) -> Option<serde_json::Map<String, Value>> {
        let claims = self.read_token(token)?;
        let exp = claims.get("exp")?.as_u64()?;
        let not_before = match claims.get("nbf") {
            None => 0,
            Some(nbf) => nbf.as_u64()?,
        };
        (now < exp && not_before <= now).then_some(claims)
    }

    fn is_revoked(&self, token: &str) -> bool {
        self.revoked
            .lock()
            .is_ok_and(|revoked| revoked.contains(token))
    }

    /// Remembers `token` as revoked until its `exp`, if this issuer minted it and it is still
    /// valid at `now` (anything else needs no remembering: it is inactive anyway). `false` when
    /// the revoked set is full of unexpired tokens, so the revocation did not happen.
    pub fn revoke(&self, token: &str, now: u64) -> bool {
        let Some(claims) = self.active_claims(token, now) else {
            return true;
        };
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(now);
        match self.revoked.lock() {
            Ok(mut revoked) => revoked.insert(token, exp, now),
            Err(_) => false,
        }
    }

    /// The claims of a token minted from `m`, without `jti` unless `extra` has one.
    fn claims(&self, m: &Mint) -> Result<Value, DevIssuerError> {
        let now = now()?;
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
        Ok(claims)
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
            .route("/oauth/introspect", post(introspection::introspect))
            .route("/oauth/revoke", post(introspection::revoke))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(Arc::new(self));
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        Ok(())
    }
}

impl DevIssuer {
    /// The thumbprint a token request's DPoP proof binds the token to; `None` without a `DPoP`
    /// header. The proof is checked by the gate's own code (`htm` POST, `htu` this token
    /// endpoint, `iat` within the default window) and used once; a bad one is 400
    /// `invalid_dpop_proof`.
    fn dpop_binding(&self, headers: &HeaderMap) -> Result<Option<String>, Box<Response>> {
        let values: Vec<&str> = headers
            .get_all("dpop")
            .iter()
            .map(|v| v.to_str().unwrap_or("\u{fffd}"))
            .collect();
        if values.is_empty() {
            return Ok(None);
        }
        let invalid = |description: &str| {
            Box::new(oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_dpop_proof",
                description,
            ))
        };
        let now = now().map_err(|e| invalid(&e.to_string()))?;
        let url = format!("{}/oauth/token", self.issuer.trim_end_matches('/'));
        let limits = ProofLimits::default();
        let (proof, jkt) =
            verify_token_request(&values, "POST", &url, &limits, &self.proof_keys, now)
                .map_err(invalid)?;
        self.replay
            .remember_now(proof.replay_key, proof.expires_at, now)
            .map_err(|e| invalid(&e.to_string()))?;
        Ok(Some(jkt))
    }
}

/// The current time in Unix seconds.
pub(crate) fn now() -> Result<u64, DevIssuerError> {
    Ok(SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|_| DevIssuerError::Crypto)?
        .as_secs())
}

/// The bytes of `key_file`, which `generate` makes and writes (mode 0600, its directory created)
/// if the file does not exist.
pub(crate) fn read_or_create_key(
    key_file: &Path,
    generate: impl FnOnce() -> Result<Vec<u8>, DevIssuerError>,
) -> Result<Vec<u8>, DevIssuerError> {
    let io = |source| DevIssuerError::KeyFile {
        path: key_file.display().to_string(),
        source,
    };
    match std::fs::read(key_file) {
        Ok(der) => Ok(der),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let der = generate()?;
            if let Some(dir) = key_file.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            write_private(key_file, &der).map_err(io)?;
            Ok(der)
        }
        Err(e) => Err(io(e)),
    }
}

/// The RFC 7638 SHA-256 thumbprint of a public key's required JWK `members` (a JSON object of
/// them, members in lexicographic order, no whitespace), base64url.
pub(crate) fn thumbprint(members: &[(&'static str, String)]) -> String {
    // serde_json's map keeps its keys sorted, and its compact form has no whitespace.
    let canonical = serde_json::Map::from_iter(
        members
            .iter()
            .map(|(name, value)| (name.to_string(), json!(value))),
    );
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        Value::Object(canonical).to_string().as_bytes(),
    );
    URL_SAFE_NO_PAD.encode(digest.as_ref())
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
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "none"],
        "introspection_endpoint_auth_methods_supported": introspection::AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": introspection::AUTH_METHODS,
        "id_token_signing_alg_values_supported": [issuer.alg.name()],
        "dpop_signing_alg_values_supported": crate::auth::dpop::ALGORITHMS
            .iter()
            .map(|alg| alg.to_string())
            .collect::<Vec<_>>(),
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
    /// `"jwt"` (the default) or `"opaque"`.
    token_format: Option<String>,
}

pub(crate) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
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
    let opaque = match request.token_format.as_deref() {
        None | Some("jwt") => false,
        Some("opaque") => true,
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "token_format is \"jwt\" or \"opaque\"",
            );
        }
    };
    let client_id = request
        .client_id
        .unwrap_or_else(|| "dev-client".to_string());
    let expires_in = request
        .expires_in
        .unwrap_or(DEFAULT_EXPIRES_IN)
        .clamp(1, 86_400);
    let scope = request.scope.unwrap_or_default();
    let mut extra = serde_json::Map::from_iter([("azp".to_string(), json!(client_id))]);
    // RFC 9449 §5: a token requested with a DPoP proof is bound to the proof's key.
    let dpop = match issuer.dpop_binding(&headers) {
        Ok(binding) => binding,
        Err(refusal) => return *refusal,
    };
    if let Some(jkt) = &dpop {
        extra.insert("cnf".into(), json!({ "jkt": jkt }));
    }
    let mint = Mint {
        subject: format!("{client_id}@clients"),
        audience,
        scope: scope.clone(),
        expires_in,
        extra,
    };
    let minted = if opaque {
        issuer.mint_opaque(&mint)
    } else {
        issuer.mint(&mint)
    };
    match minted {
        Ok(access_token) => {
            let mut body = json!({
                "access_token": access_token,
                "token_type": if dpop.is_some() { "DPoP" } else { "Bearer" },
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
