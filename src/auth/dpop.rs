//! DPoP proofs (RFC 9449): one `DPoP` header checked against the request and the DPoP-bound
//! token it comes with. Pure: the caller supplies the time, the proof-key cache and, after an
//! `Ok`, checks the proof's `jti` for replay ([`crate::auth::replay`]).
//!
//! Order matters: the proof's size is checked before it is parsed, and its signature (with the
//! public key in its own header) before anything else in it is trusted, compared or stored.

use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use crate::auth::keys::{self, Algorithm, Key};

/// Default `dpop_max_proof_bytes`: a proof with an RSA-4096 key in its header is under 2 KiB.
pub const DEFAULT_MAX_PROOF_BYTES: usize = 8 * 1024;
/// Default `dpop_proof_window_seconds`: how old a proof's `iat` may be.
pub const DEFAULT_PROOF_WINDOW_SECONDS: u64 = 60;
/// The algorithms a proof may be signed with (RFC 9449 §5: asymmetric only).
pub const ALGORITHMS: [Algorithm; 5] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
    Algorithm::RS256,
    Algorithm::PS256,
];
/// Parsed proof keys kept, by thumbprint.
const KEY_CACHE_ENTRIES: usize = 1024;

/// JWK members that only a private (or symmetric) key has: any of them in a proof's `jwk`
/// refuses the proof, since a client that publishes its private key has no key to prove.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// How proofs are checked: `dpop_max_proof_bytes`, `dpop_proof_window_seconds` and the
/// issuer's leeway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofLimits {
    /// Largest proof accepted, in bytes, checked before parsing.
    pub max_bytes: usize,
    /// How old a proof's `iat` may be, in seconds (plus `leeway`).
    pub window_seconds: u64,
    /// Clock skew allowed either way, in seconds.
    pub leeway_seconds: u64,
}

impl Default for ProofLimits {
    fn default() -> Self {
        ProofLimits {
            max_bytes: DEFAULT_MAX_PROOF_BYTES,
            window_seconds: DEFAULT_PROOF_WINDOW_SECONDS,
            leeway_seconds: 0,
        }
    }
}

/// What a proof must match: the request and the token.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request method, compared exactly with `htm`.
    pub method: &'a str,
    /// The request URL (`scheme://host/path`, any query or fragment is ignored), compared with
    /// `htu` after both are normalised ([`normalise_url`]).
    pub url: &'a str,
    /// The access token, whose SHA-256 `ath` must be.
    pub token: &'a str,
    /// `cnf.jkt`: the thumbprint the proof's key must have.
    pub jkt: &'a str,
}

/// A proof that verified: what the replay check needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// SHA-256 over the key thumbprint and the `jti`: the proof's identity for replay.
    pub replay_key: [u8; 32],
    /// When (Unix seconds) the proof stops being accepted anyway: its `iat` plus the window
    /// and the leeway. A replay cache need not remember it after that.
    pub expires_at: u64,
}

/// Parsed proof keys by RFC 7638 thumbprint, bounded in entries, so a client's repeated
/// proofs do not parse its key again. A key enters only after it verified a proof's signature.
pub struct KeyCache {
    keys: quick_cache::sync::Cache<String, Arc<Key>>,
}

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache {
            keys: quick_cache::sync::Cache::new(KEY_CACHE_ENTRIES),
        }
    }
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyCache")
            .field("len", &self.keys.len())
            .finish()
    }
}

impl KeyCache {
    /// How many keys are kept.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is kept.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The proof header members read; serde refuses a duplicate of any of them.
#[derive(Deserialize)]
struct ProofHeader {
    typ: Option<serde_json::Value>,
    alg: Option<serde_json::Value>,
    jwk: Option<serde_json::Value>,
    crit: Option<serde_json::Value>,
}

/// The proof claims read; serde refuses a duplicate of any of them.
#[derive(Deserialize)]
struct ProofClaims {
    htm: Option<serde_json::Value>,
    htu: Option<serde_json::Value>,
    iat: Option<serde_json::Value>,
    ath: Option<serde_json::Value>,
    jti: Option<serde_json::Value>,
}

/// Checks the request's `DPoP` header values against `expected` at `now` (Unix seconds).
/// `Err` names what is wrong, for the 401's message (it never echoes the proof).
pub fn verify(
    values: &[&str],
    expected: &Expected<'_>,
    limits: &ProofLimits,
    keys: &KeyCache,
    now: u64,
) -> Result<Proof, &'static str> {
    let bound = Bound {
        token: expected.token,
        jkt: expected.jkt,
    };
    check(
        values,
        expected.method,
        expected.url,
        Some(bound),
        limits,
        keys,
        now,
    )
    .map(|(proof, _)| proof)
}

/// Checks the `DPoP` header values of a token request (RFC 9449 §5) for `method` on `url`, as
/// [`verify`] checks a resource request's, but with no token yet: no `ath` is required and any
/// key may sign. On success, the proof and its key's RFC 7638 thumbprint, which the token to be
/// issued is bound to (`cnf.jkt`).
pub fn verify_token_request(
    values: &[&str],
    method: &str,
    url: &str,
    limits: &ProofLimits,
    keys: &KeyCache,
    now: u64,
) -> Result<(Proof, String), &'static str> {
    check(values, method, url, None, limits, keys, now)
}

/// The access token a proof comes with, and the thumbprint it is bound to.
struct Bound<'a> {
    token: &'a str,
    jkt: &'a str,
}

/// [`verify`] and [`verify_token_request`]: `bound` is `None` for a token request.
fn check(
    values: &[&str],
    method: &str,
    url: &str,
    bound: Option<Bound<'_>>,
    limits: &ProofLimits,
    keys: &KeyCache,
    now: u64,
) -> Result<(Proof, String), &'static str> {
    let proof = match values {
        [] => return Err("no DPoP header"),
        [one] => one.trim(),
        _ => return Err("more than one DPoP header"),
    };
    if proof.len() > limits.max_bytes {
        return Err("proof is too large");
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS");
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| "not base64url");
    let header: ProofHeader = object(&decode(header_b64)?).ok_or("header is malformed")?;
    match &header.typ {
        Some(serde_json::Value::String(typ)) if typ.eq_ignore_ascii_case("dpop+jwt") => {}
        _ => return Err("typ is not dpop+jwt"),
    }
    if header.crit.is_some() {
        return Err("crit is not understood");
    }
    let alg = match &header.alg {
        Some(serde_json::Value::String(name)) => name
            .parse::<Algorithm>()
            .ok()
            .filter(|alg| ALGORITHMS.contains(alg))
            .ok_or("alg is not accepted")?,
        _ => return Err("alg is not accepted"),
    };
    let jwk = header.jwk.as_ref().ok_or("no jwk")?;
    let members = jwk.as_object().ok_or("jwk is not an object")?;
    if PRIVATE_MEMBERS.iter().any(|m| members.contains_key(*m)) {
        return Err("jwk holds a private key");
    }
    let thumbprint = thumbprint(members).ok_or("jwk is malformed")?;

    // The signature, with the proof's own key, before anything else in the proof is used.
    let cached = keys.keys.get(&thumbprint);
    let key = match &cached {
        Some(key) => Arc::clone(key),
        None => Arc::new(keys::parse_jwk(jwk, &ALGORITHMS).map_err(|_| "jwk is not a usable key")?),
    };
    let verifier = key.verifier(alg).ok_or("alg does not fit the jwk")?;
    let signature = decode(signature_b64)?;
    let signed = &proof[..header_b64.len() + 1 + claims_b64.len()];
    verifier
        .verify_sig(signed.as_bytes(), &signature)
        .map_err(|_| "signature does not verify")?;
    if cached.is_none() {
        keys.keys.insert(thumbprint.clone(), key);
    }

    if bound.as_ref().is_some_and(|bound| thumbprint != bound.jkt) {
        return Err("jwk is not the key the token is bound to");
    }
    let claims: ProofClaims = object(&decode(claims_b64)?).ok_or("claims are malformed")?;
    let string = |value: &Option<serde_json::Value>| match value {
        Some(serde_json::Value::String(text)) => Some(text.clone()),
        _ => None,
    };
    if string(&claims.htm).as_deref() != Some(method) {
        return Err("htm is not the request method");
    }
    let htu = string(&claims.htu).ok_or("htu is not the request URL")?;
    match (normalise_url(&htu), normalise_url(url)) {
        (Some(proof), Some(request)) if proof == request => {}
        _ => return Err("htu is not the request URL"),
    }
    let iat = match &claims.iat {
        Some(serde_json::Value::Number(n)) => n.as_f64().filter(|f| f.is_finite()),
        _ => None,
    }
    .ok_or("iat is missing or not a number")?;
    let (now_f, window, leeway) = (
        now as f64,
        limits.window_seconds as f64,
        limits.leeway_seconds as f64,
    );
    if iat > now_f + leeway {
        return Err("iat is in the future");
    }
    if iat + window + leeway < now_f {
        return Err("iat is too old");
    }
    if let Some(bound) = &bound {
        let ath = URL_SAFE_NO_PAD.encode(digest(&SHA256, bound.token.as_bytes()));
        if string(&claims.ath).as_deref() != Some(ath.as_str()) {
            return Err("ath is not the token's hash");
        }
    }
    let jti = string(&claims.jti)
        .filter(|jti| !jti.is_empty())
        .ok_or("jti is missing")?;

    let mut replay = aws_lc_rs::digest::Context::new(&SHA256);
    replay.update(thumbprint.as_bytes());
    replay.update(b"\0");
    replay.update(jti.as_bytes());
    let mut replay_key = [0u8; 32];
    replay_key.copy_from_slice(replay.finish().as_ref());
    let proof = Proof {
        replay_key,
        // iat is within [now - window - leeway, now + leeway] here, so this is finite and
        // positive enough; the cast saturates.
        expires_at: (iat + window + leeway).max(0.0).ceil() as u64,
    };
    Ok((proof, thumbprint))
}

/// Parses `json` as a JSON object into `T` (serde would also take an array for a struct).
fn object<T: for<'de> Deserialize<'de>>(json: &[u8]) -> Option<T> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace())?;
    (*first == b'{').then(|| serde_json::from_slice(json).ok())?
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, base64url: the hash of the JSON object of
/// its required members only, in lexicographic order, without whitespace. `None` when a
/// required member is missing or not a string, or the key type is not one a proof may use.
pub fn thumbprint(jwk: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let text = |name: &str| jwk.get(name)?.as_str();
    let required: &[&str] = match text("kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "OKP" => &["crv", "kty", "x"],
        "RSA" => &["e", "kty", "n"],
        _ => return None,
    };
    let mut json = String::from("{");
    for (i, name) in required.iter().enumerate() {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&serde_json::to_string(name).ok()?);
        json.push(':');
        json.push_str(&serde_json::to_string(text(name)?).ok()?);
    }
    json.push('}');
    Some(URL_SAFE_NO_PAD.encode(digest(&SHA256, json.as_bytes())))
}

/// An absolute `http`/`https` URL normalised for comparison (RFC 3986 §6.2.2-6.2.3, as RFC 9449
/// §4.3 asks): scheme and host in lower case, the scheme's default port dropped, percent-escapes
/// in upper case and those of unreserved characters decoded, dot segments removed, an empty
/// path as `/`; query and fragment dropped. `None` for anything else (no scheme, another
/// scheme, userinfo, no host, a malformed escape).
pub fn normalise_url(url: &str) -> Option<String> {
    let url = url.split(['?', '#']).next().unwrap_or_default();
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    let mut host = authority.to_ascii_lowercase();
    if host.ends_with(default_port) {
        host.truncate(host.len() - default_port.len());
    }
    if host.ends_with(':') {
        host.pop();
    }
    let path = normalise_escapes(path)?;
    let path = remove_dot_segments(&path);
    let path = if path.is_empty() { "/" } else { path.as_str() };
    Some(format!("{scheme}://{host}{path}"))
}

/// Percent-escapes in upper case, and those of unreserved characters decoded.
fn normalise_escapes(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            let byte = u8::from_str_radix(hex, 16).ok()?;
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                out.push(byte as char);
            } else {
                out.push('%');
                out.push_str(&hex.to_ascii_uppercase());
            }
            i += 3;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    // Only ASCII was pushed byte by byte when the input was ASCII; refuse anything else rather
    // than compare mangled text.
    text.is_ascii().then_some(out)
}

/// RFC 3986 §5.2.4's remove_dot_segments.
fn remove_dot_segments(path: &str) -> String {
    let mut output: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let last = segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, segment) in segments.iter().enumerate() {
        match *segment {
            "." => trailing_slash = i == last,
            ".." => {
                output.pop();
                trailing_slash = i == last;
            }
            other => {
                output.push(other);
                trailing_slash = false;
            }
        }
    }
    if segments.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    for segment in &output {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests;
