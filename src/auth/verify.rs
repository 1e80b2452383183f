//! Token verification: a compact JWS in, [`VerifiedClaims`] or a [`VerifyError`] out.
//!
//! This module is pure and synchronous: it reads a key-set snapshot and the current time that the
//! caller passes in, and never performs I/O. It deliberately does not delegate to a general JWT
//! library's `decode`: it accepts one narrow shape (three base64url segments, an allow-listed RSA
//! algorithm, a known key) and rejects everything else, and it verifies against keys that were
//! parsed once when the key set was loaded, so no key parsing happens per request.
//!
//! Order of checks (each failure is final, the first one wins):
//! 1. syntax: exactly three non-empty, canonical base64url segments; a JSON-object header;
//! 2. header: `alg` is a string on the allow-list, no `crit` (in any form, `null` included), no
//!    nested (`cty: JWT`) token, and `typ` one of the configured token types when those are set;
//! 3. key: chosen by `kid` from the snapshot; its own `alg`, when published, must agree;
//! 4. signature over `header.payload` with that key;
//! 5. claims (only once the signature holds): `exp` required, `nbf` honoured, both with leeway;
//!    `iss` exact; `aud` (string or array) contains a configured audience; every scope in
//!    `scope`/`scp` an RFC 6749 §3.3 scope-token; `sub` and forwarded claims free of control
//!    characters, surrounding whitespace and invisible characters ([`reads_as_written`]).
//!
//! Step 1 and the reading of the header and claims into typed values (each claim at most once)
//! are in the private `parse` module; every decision about them is taken here, and only this file
//! builds a [`VerifiedClaims`].
//!
//! Headers such as `jku`, `x5u`, `jwk` and `x5c` are ignored: keys come only from the configured
//! JWKS, so a token can never point verification at a key of its own choosing.

use std::collections::BTreeSet;
use std::fmt;

use serde::Deserialize;

use crate::auth::binding::{Binding, CnfError};
use crate::auth::heap::allocation_bytes;
pub use crate::auth::keys::Algorithm;
use crate::auth::keys::KeySet;

mod parse;

use parse::{Claims, JoseHeader, OneOrMany, decode_segment, parse_claims, parse_object, segments};

/// What a token must satisfy besides its signature; compiled from the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expectations {
    /// Exact `iss` value.
    pub issuer: String,
    /// The token's `aud` must contain at least one of these.
    pub audiences: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
    /// Algorithms a token may be signed with.
    pub algorithms: Vec<Algorithm>,
    /// Accepted `typ` header values, in the form [`TokenType::new`] gives them; `None` accepts
    /// any `typ` or none.
    pub token_types: Option<Vec<TokenType>>,
    /// The claims whose union is the granted scopes (`scope`, `scp`; Auth0 RBAC adds
    /// `permissions`). Never a registered claim (`iss`, `sub`, `aud`, `exp`, `nbf`, `iat`).
    pub scope_claims: Vec<String>,
    /// Claims forwarded to the upstream, each in a header of its own.
    pub forward_claims: Vec<ForwardClaim>,
    /// Claims kept in [`VerifiedClaims`] as JSON values, readable by [`VerifiedClaims::claim`]:
    /// the ones some configuration names (rules' claim conditions and whatever else registers
    /// them with [`Expectations::retain`]). Nothing else of the payload is kept, so a cached
    /// token holds only what is read again.
    pub retain_claims: Vec<ClaimSpec>,
}

impl Expectations {
    /// Keeps `spec`'s value in every [`VerifiedClaims`] these expectations produce (once, however
    /// often it is named).
    pub fn retain(&mut self, spec: ClaimSpec) {
        if !self.retain_claims.contains(&spec) {
            self.retain_claims.push(spec);
        }
    }
}

/// A claim named by configuration: a top-level claim name, or an RFC 6901 JSON Pointer that
/// starts with `/` and whose first reference token names the claim (`/realm_access/roles`).
/// Two spellings of the same claim (`org_id`, `/org_id`) are the same spec.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClaimSpec {
    /// The top-level claim, unescaped.
    claim: String,
    /// The rest of the pointer, still escaped (`""` for the claim itself).
    pointer: String,
}

impl ClaimSpec {
    /// Reads a claim name, or a JSON Pointer when `spec` starts with `/`. `None` for an empty
    /// name or a malformed pointer (a `~` not followed by `0` or `1`).
    pub fn parse(spec: &str) -> Option<ClaimSpec> {
        let (claim, pointer) = match spec.strip_prefix('/') {
            None => (spec.to_string(), String::new()),
            Some(rest) => {
                let (first, pointer) = match rest.find('/') {
                    Some(at) => (&rest[..at], rest[at..].to_string()),
                    None => (rest, String::new()),
                };
                let tokens_ok = |text: &str| {
                    let mut chars = text.chars();
                    while let Some(c) = chars.next() {
                        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
                            return false;
                        }
                    }
                    true
                };
                if !tokens_ok(rest) {
                    return None;
                }
                (first.replace("~1", "/").replace("~0", "~"), pointer)
            }
        };
        (!claim.is_empty()).then_some(ClaimSpec { claim, pointer })
    }

    /// The top-level claim that holds the value.
    pub fn claim(&self) -> &str {
        &self.claim
    }

    /// The RFC 6901 pointer into that claim (`""` for the claim itself).
    pub fn pointer(&self) -> &str {
        &self.pointer
    }

    /// The value this spec names in `claim_value` (the top-level claim's value).
    fn select<'v>(&self, claim_value: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        claim_value.pointer(&self.pointer)
    }
}

impl fmt::Display for ClaimSpec {
    /// The claim name when that is the whole spec, else the JSON Pointer.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() && !self.claim.starts_with('/') && !self.claim.contains('~') {
            f.write_str(&self.claim)
        } else {
            let escaped = self.claim.replace('~', "~0").replace('/', "~1");
            write!(f, "/{escaped}{}", self.pointer)
        }
    }
}

/// A claim forwarded to the upstream in a header, when the token carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardClaim {
    /// The header's name, lower-case.
    pub header: String,
    /// The top-level claim that holds the value.
    pub claim: String,
    /// An RFC 6901 JSON Pointer into that claim (`""` for the claim itself).
    pub pointer: String,
}

impl ForwardClaim {
    /// Reads a `forward_claims` value: a claim name, or a JSON Pointer (RFC 6901) when it starts
    /// with `/`, whose first token names the claim. `None` for an empty name or a malformed
    /// pointer (a `~` not followed by `0` or `1`).
    pub fn new(header: &str, spec: &str) -> Option<ForwardClaim> {
        let ClaimSpec { claim, pointer } = ClaimSpec::parse(spec)?;
        Some(ForwardClaim {
            header: header.to_ascii_lowercase(),
            claim,
            pointer,
        })
    }
}

/// A `typ` header value a token may carry (RFC 7515 §4.1.9: a media type, compared without
/// regard to case, whose `application/` prefix may be left out). Holds the compared form:
/// lower-case, without the prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenType(String);

impl TokenType {
    /// The comparable form of `media_type`, or `None` if it is not a media type name
    /// (RFC 6838 §4.2 restricted-name characters, with at most the `application/` prefix).
    pub fn new(media_type: &str) -> Option<TokenType> {
        let lower = media_type.to_ascii_lowercase();
        let name = lower.strip_prefix("application/").unwrap_or(&lower);
        let restricted = |b: u8| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b);
        let valid = name.len() <= 127
            && name
                .as_bytes()
                .first()
                .is_some_and(u8::is_ascii_alphanumeric)
            && name.bytes().all(restricted);
        valid.then(|| TokenType(name.to_owned()))
    }

    /// The compared form (`at+jwt`).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `s` is an RFC 6749 §3.3 scope-token: one or more of `%x21 / %x23-5B / %x5D-7E`
/// (printable ASCII without space, `"` and `\`).
///
/// Granted scopes are forwarded to the upstream joined with single spaces, so a scope holding a
/// space (or any other whitespace an upstream might split on) could smuggle in a scope that was
/// never checked. Holding only scope-tokens makes the forwarded list split back into exactly the
/// set that was checked.
pub fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
}

/// Whether `text` reads upstream, in a header, as scopegate checked it: no control character
/// (CR and LF among them), no leading or trailing whitespace (HTTP/1.1 parsers strip it, so
/// `"  alice  "` would arrive as `alice`, another subject), and none of the characters that
/// display as nothing or reorder what surrounds them, so that a log line or an admin screen
/// shows what the upstream acts on: the bidirectional controls U+202A–U+202E and U+2066–U+2069,
/// the zero-width space U+200B, the line and paragraph separators U+2028 and U+2029, and the
/// byte order mark U+FEFF. The zero-width joiner U+200D stays allowed: emoji sequences use it.
pub fn reads_as_written(text: &str) -> bool {
    !text.starts_with(char::is_whitespace)
        && !text.ends_with(char::is_whitespace)
        && !text.chars().any(|c| {
            c.is_control()
                || matches!(
                    c,
                    '\u{202a}'..='\u{202e}'
                        | '\u{2066}'..='\u{2069}'
                        | '\u{200b}'
                        | '\u{2028}'
                        | '\u{2029}'
                        | '\u{feff}'
                )
        })
}

/// Why a token was rejected. Each variant becomes a 401 `invalid_token`; the `Display` text is the
/// short human reason sent to the client and logged, and never contains token material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// Not three dot-separated segments, or an empty segment.
    #[error("token is not a compact JWS (header.payload.signature)")]
    NotCompactJws,
    /// Five segments: an encrypted token, which is never accepted as an access token here.
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    /// A segment is not canonical unpadded base64url.
    #[error("token {0} is not valid base64url")]
    BadEncoding(&'static str),
    /// The header is not a JSON object of the expected shape.
    #[error("token header is malformed")]
    BadHeader,
    /// `alg` is missing from, or not on, the allow-list (this covers `none` and HMAC).
    #[error("token algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The header lists critical extensions, none of which scopegate implements (RFC 7515 §4.1.11).
    #[error("token header has unsupported critical parameters")]
    CriticalHeader,
    /// `cty: JWT`: a nested token, which is never accepted.
    #[error("nested tokens are not accepted")]
    NestedToken,
    /// No key in the current key set has the token's `kid`.
    #[error("token signing key is unknown")]
    UnknownKey,
    /// The key was published for another algorithm than the token's `alg`.
    #[error("token algorithm does not match its key")]
    KeyAlgorithmMismatch,
    /// The signature does not verify.
    #[error("token signature is invalid")]
    BadSignature,
    /// The payload is not a JSON object, or a registered claim has the wrong type.
    #[error("token claims are malformed")]
    BadClaims,
    /// No `exp` claim.
    #[error("token has no expiry")]
    MissingExpiry,
    /// `exp` (plus leeway) has passed.
    #[error("token has expired")]
    Expired,
    /// `nbf` (minus leeway) is still in the future.
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iss` is missing or not exactly the configured issuer.
    #[error("token issuer is not accepted")]
    WrongIssuer,
    /// `aud` is missing or contains none of the configured audiences.
    #[error("token audience is not accepted")]
    WrongAudience,
    /// `cnf` is not an object, a thumbprint in it is malformed, or it binds the token both to a
    /// DPoP key and to a certificate ([`Binding::from_cnf`]).
    #[error(transparent)]
    BadConfirmation(#[from] CnfError),
    /// `sub` would not read upstream as it was checked: a control character (it cannot travel
    /// in the identity headers; Envoy would refuse the whole answer and the client would see a
    /// 503 outage instead), leading or trailing whitespace (HTTP parsers strip it, making
    /// another subject), or an invisible character that [`reads_as_written`] refuses.
    #[error("token subject cannot be forwarded as written")]
    ControlCharacterInClaim,
    /// A granted scope is not an RFC 6749 §3.3 scope-token (it holds a space once split,
    /// non-ASCII, a quote, a backslash or a control character, or an `scp` element is empty),
    /// so it could not be forwarded without changing what the upstream reads.
    #[error("token scopes are not valid scope-tokens")]
    InvalidScope,
    /// `typ` is missing, or not one of the configured `token_types`.
    #[error("token type is not accepted")]
    WrongTokenType,
    /// A claim configured in `forward_claims` would not read upstream as it was checked: a
    /// control character, leading or trailing whitespace or an invisible character (see
    /// [`reads_as_written`]), in the value or in an element of an array, or a `,` in an element
    /// of an array (arrays are forwarded joined with `,`, so `["eng,admin"]` would read as
    /// `["eng", "admin"]`).
    #[error("token claims to forward cannot be forwarded as written")]
    UnforwardableClaim,
    /// The issuer's introspection endpoint says the token is not active (RFC 7662 §2.2:
    /// revoked, expired, unknown, or never issued).
    #[error("token is not active")]
    Inactive,
}

/// How an introspection answer (RFC 7662 §2.2) failed to become [`VerifiedClaims`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    /// Not a JSON object, or `active` given twice: the server's fault, so the token may be
    /// fine (503).
    #[error("introspection answer is not a JSON object")]
    Malformed,
    /// The token is refused (401): inactive, or an active answer that does not meet the
    /// issuer's expectations.
    #[error(transparent)]
    Refused(#[from] VerifyError),
}

/// Claims of a token whose signature, algorithm, issuer, audience and validity window have all been
/// checked. Only [`verify`] constructs this type: its fields are private and it has no setters, so
/// holding one is proof that verification succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedClaims {
    subject: Option<String>,
    scopes: BTreeSet<String>,
    expires_at: u64,
    forwarded: Vec<(String, String)>,
    /// The [`Expectations::retain_claims`] the token carries, with their values.
    retained: Vec<(ClaimSpec, serde_json::Value)>,
    kid: Option<String>,
    azp: Option<String>,
    client_id: Option<String>,
    /// `exp` and `nbf` as the token gave them (finite; as bits, so the claims stay `Eq`), for
    /// checking again later ([`Self::still_valid`]).
    exp: u64,
    nbf: Option<u64>,
    /// The fingerprint of the key that verified the signature.
    key: [u8; 32],
    /// `iss`, equal to the issuer whose expectations verified the token.
    issuer: String,
    /// Every `aud` value (a string `aud` as one element), so that a rule's `audiences` are
    /// checked on every use of cached claims.
    audiences: Vec<String>,
    /// What the token is bound to (its `cnf`), checked on every use by the decision core.
    binding: Binding,
}

impl VerifiedClaims {
    /// Whether claims verified earlier still hold at `now` (seconds since the Unix epoch) with
    /// `leeway`, against the issuer's key set in force: `exp` and `nbf` as [`verify`] checks
    /// them, and the key that verified the signature still in `keys` under the same `kid`,
    /// unchanged. This is everything that can change for the same token bytes within one
    /// configuration, so a cache of verified tokens must check it on every use.
    pub fn still_valid(&self, keys: &KeySet, leeway: u64, now: u64) -> Result<(), VerifyError> {
        in_time(
            f64::from_bits(self.exp),
            self.nbf.map(f64::from_bits),
            now,
            leeway,
        )?;
        match keys.find(self.kid.as_deref()) {
            Some(key) if *key.fingerprint() == self.key => Ok(()),
            Some(_) => Err(VerifyError::BadSignature),
            None => Err(VerifyError::UnknownKey),
        }
    }

    /// The `sub` claim, if the token carried one.
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// Granted scopes: the union of `scope` and `scp`, deduplicated and sorted. Each is a
    /// scope-token ([`is_scope_token`]), so joining them with spaces loses nothing.
    pub fn scopes(&self) -> &BTreeSet<String> {
        &self.scopes
    }

    /// Whether `scope` was granted (exact, case-sensitive comparison, RFC 6749 §3.3).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// `exp` in whole seconds since the Unix epoch (fractions truncated).
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// The configured `forward_claims` the token carries, as (header, value): strings as they
    /// are, numbers and booleans as JSON text, arrays of those joined with `,`, objects and
    /// nested arrays as compact JSON. Each value [`reads_as_written`].
    pub fn forwarded(&self) -> &[(String, String)] {
        &self.forwarded
    }

    /// The value of a claim named in [`Expectations::retain_claims`], if the token carries it
    /// (`null` included: a claim present as `null` is `Some(Null)`). `None` for a claim the token
    /// lacks, and for any spec that was not retained.
    pub fn claim(&self, spec: &ClaimSpec) -> Option<&serde_json::Value> {
        self.retained
            .iter()
            .find(|(kept, _)| kept == spec)
            .map(|(_, value)| value)
    }

    /// Every retained claim the token carries, in the order of [`Expectations::retain_claims`].
    pub fn retained(&self) -> &[(ClaimSpec, serde_json::Value)] {
        &self.retained
    }

    /// The `kid` of the key that verified the token, if the token named one.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The `azp` claim (the OAuth client the token was issued to), when it is a string.
    pub fn azp(&self) -> Option<&str> {
        self.azp.as_deref()
    }

    /// The `client_id` claim (RFC 9068), when it is a string.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }

    /// The `iss` claim: exactly the configured issuer that verified the token.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` values, in token order (a string `aud` is one value). At least one of them is
    /// among the verifying issuer's audiences.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// What the token is bound to (`cnf.jkt` or `cnf["x5t#S256"]`), or [`Binding::None`].
    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// An estimate, from above, of the heap these claims hold (the struct itself not included):
    /// every string's buffer, the scope set's B-tree nodes and the forwarded pairs' vector, each
    /// allocation rounded as a general-purpose allocator rounds it ([`allocation_bytes`]). What a
    /// verified-token cache weighs its entries by, so a few tokens with thousands of scopes
    /// cannot hold more memory than its byte budget.
    pub fn heap_bytes(&self) -> usize {
        let string = |s: &String| allocation_bytes(s.capacity());
        let optional = |s: &Option<String>| s.as_ref().map_or(0, string);
        optional(&self.subject)
            + optional(&self.kid)
            + optional(&self.azp)
            + optional(&self.client_id)
            + string(&self.issuer)
            + self.binding.heap_bytes()
            + allocation_bytes(self.audiences.capacity() * size_of::<String>())
            + self.audiences.iter().map(string).sum::<usize>()
            + self.scopes.iter().map(string).sum::<usize>()
            + btree_set_nodes_bytes::<String>(self.scopes.len())
            + allocation_bytes(self.forwarded.capacity() * size_of::<(String, String)>())
            + self
                .forwarded
                .iter()
                .map(|(header, value)| string(header) + string(value))
                .sum::<usize>()
            + allocation_bytes(
                self.retained.capacity() * size_of::<(ClaimSpec, serde_json::Value)>(),
            )
            + self
                .retained
                .iter()
                .map(|(spec, value)| {
                    string(&spec.claim) + string(&spec.pointer) + json_heap_bytes(value)
                })
                .sum::<usize>()
    }
}

/// An estimate, from above, of the heap a JSON value holds (the value itself not included):
/// string buffers, array buffers, and the object's B-tree nodes with their keys.
fn json_heap_bytes(value: &serde_json::Value) -> usize {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
        Value::String(text) => allocation_bytes(text.capacity()),
        Value::Array(items) => {
            allocation_bytes(items.capacity() * size_of::<Value>())
                + items.iter().map(json_heap_bytes).sum::<usize>()
        }
        Value::Object(members) => {
            // serde_json's map is a B-tree filled by insertion, whose nodes may be only half
            // full (five keys of eleven): counted as twice the members of a collected tree.
            btree_set_nodes_bytes::<(String, Value)>(2 * members.len())
                + members
                    .iter()
                    .map(|(name, value)| allocation_bytes(name.capacity()) + json_heap_bytes(value))
                    .sum::<usize>()
        }
    }
}

/// The nodes of a `BTreeSet<T>` of `len` elements, from above: std's B-tree keeps at most 11
/// keys in a node (12 edges in an internal one). `verify` builds the scope set with `collect`,
/// which fills every node but those on the right edge, and `clone` keeps that shape; counting
/// one node per 10 elements plus two, each at the internal nodes' size, covers the partly
/// filled right edge and the internal levels.
fn btree_set_nodes_bytes<T>(len: usize) -> usize {
    const KEYS: usize = 11;
    if len == 0 {
        return 0;
    }
    // Parent pointer, parent index and length, the keys, and the edges of an internal node.
    let node = size_of::<usize>() + 2 * size_of::<u16>() + KEYS * size_of::<T>();
    let internal = node.next_multiple_of(align_of::<usize>()) + (KEYS + 1) * size_of::<usize>();
    (len / (KEYS - 1) + 2) * allocation_bytes(internal)
}

#[cfg(test)]
impl VerifiedClaims {
    /// Claims for unit tests of code downstream of verification (never compiled into the product).
    pub(crate) fn for_tests(subject: Option<&str>, scopes: &[&str]) -> Self {
        VerifiedClaims {
            subject: subject.map(str::to_owned),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            expires_at: 0,
            forwarded: Vec::new(),
            retained: Vec::new(),
            kid: None,
            azp: None,
            client_id: None,
            exp: 0,
            nbf: None,
            key: [0; 32],
            issuer: String::new(),
            audiences: Vec::new(),
            binding: Binding::None,
        }
    }

    /// These claims as if issued by `issuer` for `audiences`.
    pub(crate) fn issued_by(self, issuer: &str, audiences: &[&str]) -> Self {
        VerifiedClaims {
            issuer: issuer.to_owned(),
            audiences: audiences.iter().map(|a| a.to_string()).collect(),
            ..self
        }
    }

    /// These claims with `spec` retained as `value`, for unit tests.
    pub(crate) fn with_claim_for_tests(mut self, spec: &str, value: serde_json::Value) -> Self {
        let spec = ClaimSpec::parse(spec).expect("a valid claim spec");
        self.retained.push((spec, value));
        self
    }
}

#[cfg(test)]
impl VerifiedClaims {
    /// These claims with `client_id`, `azp` and forwarded `(header, value)` pairs, for unit
    /// tests of what is made of them downstream.
    pub(crate) fn with_client_for_tests(
        mut self,
        client_id: Option<&str>,
        azp: Option<&str>,
        forwarded: &[(&str, &str)],
    ) -> Self {
        self.client_id = client_id.map(str::to_owned);
        self.azp = azp.map(str::to_owned);
        self.forwarded = forwarded
            .iter()
            .map(|(header, value)| (header.to_string(), value.to_string()))
            .collect();
        self
    }
}

/// The registered claims scopegate reads itself; none can be a scope or forwarded claim.
pub const REGISTERED_CLAIMS: [&str; 6] = ["iss", "sub", "aud", "exp", "nbf", "iat"];

/// Verifies `token` (the Bearer credential, already known to be token68) against the key set.
///
/// `now` is seconds since the Unix epoch; the caller supplies it so that this function stays pure.
pub fn verify(
    token: &str,
    keys: &KeySet,
    expect: &Expectations,
    now: u64,
) -> Result<VerifiedClaims, VerifyError> {
    let [header_b64, payload_b64, signature_b64] = segments(token)?;

    let header_json = decode_segment(header_b64, "header")?;
    let header: JoseHeader = parse_object(&header_json).ok_or(VerifyError::BadHeader)?;
    let alg = match header.alg {
        Some(serde_json::Value::String(name)) => name
            .parse::<Algorithm>()
            .ok()
            .filter(|alg| expect.algorithms.contains(alg))
            .ok_or(VerifyError::AlgorithmNotAllowed)?,
        _ => return Err(VerifyError::AlgorithmNotAllowed),
    };
    if header.crit.is_some() {
        return Err(VerifyError::CriticalHeader);
    }
    if let Some(cty) = &header.cty {
        match cty.as_str() {
            Some(c) if c.eq_ignore_ascii_case("JWT") => return Err(VerifyError::NestedToken),
            Some(_) => {}
            None => return Err(VerifyError::BadHeader),
        }
    }
    if let Some(accepted) = &expect.token_types {
        let typ = match &header.typ {
            Some(serde_json::Value::String(typ)) => TokenType::new(typ),
            _ => None,
        };
        if !typ.is_some_and(|typ| accepted.contains(&typ)) {
            return Err(VerifyError::WrongTokenType);
        }
    }
    let kid = match &header.kid {
        None => None,
        Some(serde_json::Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(VerifyError::BadHeader),
    };

    let key = keys.find(kid).ok_or(VerifyError::UnknownKey)?;
    if key.algorithm().is_some_and(|published| published != alg) {
        return Err(VerifyError::KeyAlgorithmMismatch);
    }
    let verifier = key.verifier(alg).ok_or(VerifyError::KeyAlgorithmMismatch)?;
    let signature = decode_segment(signature_b64, "signature")?;
    let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
    verifier
        .verify_sig(signed.as_bytes(), &signature)
        .map_err(|_| VerifyError::BadSignature)?;

    let payload = decode_segment(payload_b64, "payload")?;
    let claims = parse_claims(
        &payload,
        &expect.scope_claims,
        &expect.forward_claims,
        &expect.retain_claims,
    )
    .ok_or(VerifyError::BadClaims)?;
    let mut verified = check_claims(claims, expect, now, Source::Signature)?;
    verified.kid = kid.map(str::to_owned);
    verified.key = *key.fingerprint();
    Ok(verified)
}

/// The claims of an introspected token, from its issuer's introspection answer (RFC 7662
/// §2.2, the bytes its endpoint sent): used only when `active` is `true` and the answer carries
/// `exp`; then `exp`/`nbf` with leeway as for a JWT, `iss` (when present) exactly the issuer,
/// `aud` holding one of the issuer's audiences (an answer without `aud` is refused unless
/// `require_audience` is false), scopes from `scope` (space-delimited) as scope-tokens, `sub`,
/// `client_id`, `cnf`, the forwarded and retained claims read as from a JWT's payload (each
/// member at most once). The claims name no key: [`VerifiedClaims::still_valid`] never holds
/// for them, so they are never taken for a verified JWT's.
pub fn introspected(
    answer: &[u8],
    expect: &Expectations,
    require_audience: bool,
    now: u64,
) -> Result<VerifiedClaims, AnswerError> {
    #[derive(Deserialize)]
    struct Active {
        active: Option<serde_json::Value>,
    }
    // serde refuses a duplicate `active` for this struct; it would read an array as one, so
    // the answer must open an object.
    if answer.trim_ascii_start().first() != Some(&b'{') {
        return Err(AnswerError::Malformed);
    }
    let active: Active = serde_json::from_slice(answer).map_err(|_| AnswerError::Malformed)?;
    if active.active != Some(serde_json::Value::Bool(true)) {
        return Err(VerifyError::Inactive.into());
    }
    let claims = parse_claims(
        answer,
        &INTROSPECTION_SCOPE_CLAIMS[..],
        &expect.forward_claims,
        &expect.retain_claims,
    )
    .ok_or(VerifyError::BadClaims)?;
    Ok(check_claims(
        claims,
        expect,
        now,
        Source::Introspection { require_audience },
    )?)
}

/// Where an introspection answer's scopes are (RFC 7662 §2.2).
static INTROSPECTION_SCOPE_CLAIMS: std::sync::LazyLock<[String; 1]> =
    std::sync::LazyLock::new(|| ["scope".to_owned()]);

/// Where claims come from: a signed JWT's payload, or an introspection answer.
#[derive(Clone, Copy)]
enum Source {
    Signature,
    Introspection { require_audience: bool },
}

/// The `iss` a token names, read before anything is verified, only to choose whose keys to
/// verify it with (verification then checks it like any claim). `Ok(None)` when the payload
/// names none; the structural errors of [`verify`] for a token that is not a compact JWS with a
/// JSON-object payload.
pub fn peek_issuer(token: &str) -> Result<Option<String>, VerifyError> {
    let [_, payload, _] = segments(token)?;
    #[derive(Deserialize)]
    struct Issuer {
        iss: Option<serde_json::Value>,
    }
    let payload = decode_segment(payload, "payload")?;
    let issuer: Issuer = parse_object(&payload).ok_or(VerifyError::BadClaims)?;
    Ok(match issuer.iss {
        Some(serde_json::Value::String(iss)) => Some(iss),
        _ => None,
    })
}

/// Validates the time window, issuer and audience, and collects the scopes.
fn check_claims(
    claims: Claims,
    expect: &Expectations,
    now: u64,
    source: Source,
) -> Result<VerifiedClaims, VerifyError> {
    let exp = claims.exp.ok_or(VerifyError::MissingExpiry)?;
    if !exp.is_finite() || claims.nbf.is_some_and(|nbf| !nbf.is_finite()) {
        return Err(VerifyError::BadClaims);
    }
    in_time(exp, claims.nbf, now, expect.leeway_seconds)?;
    // Borrowed, not moved: the retained claims below read `iss` and `aud` as they were written.
    let issuer = match (&claims.iss, source) {
        (Some(iss), _) if *iss == expect.issuer => iss.clone(),
        // RFC 7662 makes `iss` optional: the endpoint that answered is the issuer's own.
        (None, Source::Introspection { .. }) => expect.issuer.clone(),
        _ => return Err(VerifyError::WrongIssuer),
    };
    let audiences = match &claims.aud {
        Some(OneOrMany::One(aud)) => vec![aud.clone()],
        Some(OneOrMany::Many(auds)) => auds.clone(),
        None => Vec::new(),
    };
    let audience_optional = matches!(
        (source, &claims.aud),
        (
            Source::Introspection {
                require_audience: false
            },
            None
        )
    );
    if !audience_optional && !audiences.iter().any(|aud| expect.audiences.contains(aud)) {
        return Err(VerifyError::WrongAudience);
    }
    let binding = Binding::from_cnf(claims.cnf.as_ref())?;

    // Each scope claim is a space-delimited string (empty pieces from repeated spaces are
    // ignored) or an array holding one scope per element. Every scope must be a scope-token, so
    // the forwarded `x-auth-scopes` splits back into exactly this set.
    fn words(list: &str) -> impl Iterator<Item = &str> {
        list.split(' ').filter(|s| !s.is_empty())
    }
    let mut pieces: Vec<&str> = Vec::new();
    for value in &claims.scopes {
        match value {
            OneOrMany::One(list) => pieces.extend(words(list)),
            OneOrMany::Many(list) => pieces.extend(list.iter().map(String::as_str)),
        }
    }
    if !pieces.iter().all(|s| is_scope_token(s)) {
        return Err(VerifyError::InvalidScope);
    }
    let scopes: BTreeSet<String> = pieces.into_iter().map(str::to_owned).collect();

    // `sub` travels upstream as a header value: non-ASCII text is passed on as UTF-8 bytes,
    // what would read differently there (control characters, surrounding whitespace, invisible
    // characters) never is.
    if claims.sub.as_deref().is_some_and(|s| !reads_as_written(s)) {
        return Err(VerifyError::ControlCharacterInClaim);
    }

    let mut forwarded = Vec::new();
    for spec in &expect.forward_claims {
        let value = claims
            .forward
            .iter()
            .find(|(name, _)| *name == spec.claim)
            .and_then(|(_, value)| value.pointer(&spec.pointer));
        if let Some(value) = value
            && let Some(text) = header_text(value)?
        {
            forwarded.push((spec.header.clone(), text));
        }
    }

    // Retained claims: registered ones from the fields they were read into (only the string
    // claims `iss`, `sub` and `aud`; the times are not compared with anything), the others from
    // their raw values. Only the value the spec points at is kept, not the whole claim.
    let registered = |name: &str| -> Option<serde_json::Value> {
        use serde_json::Value;
        match name {
            "iss" => claims.iss.clone().map(Value::String),
            "sub" => claims.sub.clone().map(Value::String),
            "aud" => claims.aud.as_ref().map(|aud| match aud {
                OneOrMany::One(one) => Value::String(one.clone()),
                OneOrMany::Many(many) => {
                    Value::Array(many.iter().cloned().map(Value::String).collect())
                }
            }),
            _ => None,
        }
    };
    let mut retained = Vec::new();
    for spec in &expect.retain_claims {
        let value = if REGISTERED_CLAIMS.contains(&spec.claim.as_str()) {
            registered(&spec.claim).and_then(|whole| spec.select(&whole).cloned())
        } else {
            claims
                .forward
                .iter()
                .find(|(name, _)| *name == spec.claim)
                .and_then(|(_, whole)| spec.select(whole).cloned())
        };
        if let Some(value) = value {
            retained.push((spec.clone(), value));
        }
    }
    retained.shrink_to_fit();

    Ok(VerifiedClaims {
        subject: claims.sub,
        scopes,
        forwarded,
        retained,
        exp: exp.to_bits(),
        nbf: claims.nbf.map(f64::to_bits),
        key: [0; 32],
        kid: None,
        azp: claims.azp,
        client_id: claims.client_id,
        issuer,
        audiences,
        binding,
        // exp is finite and, having passed the check above, not far below `now`; negative or
        // fractional values truncate toward zero.
        expires_at: exp.max(0.0) as u64,
    })
}

/// Whether finite `exp` and `nbf` hold at `now`, with `leeway` either way (RFC 7519 §4.1.4-5:
/// NumericDate is any JSON number, so fractions count).
fn in_time(exp: f64, nbf: Option<f64>, now: u64, leeway: u64) -> Result<(), VerifyError> {
    let (now, leeway) = (now as f64, leeway as f64);
    if now > exp + leeway {
        return Err(VerifyError::Expired);
    }
    if nbf.is_some_and(|nbf| now + leeway < nbf) {
        return Err(VerifyError::NotYetValid);
    }
    Ok(())
}

/// A claim value as header text: strings as they are, numbers and booleans as JSON text, arrays
/// of those joined with `,`, objects and nested arrays as compact JSON; `None` for `null` (the
/// header is then left out, as for an absent claim). Refused when the text would read
/// differently upstream ([`reads_as_written`]), or when an element of a joined array does, or
/// holds the `,` that joins them (`["eng,admin"]` would read as `["eng", "admin"]`).
fn header_text(value: &serde_json::Value) -> Result<Option<String>, VerifyError> {
    use serde_json::Value;
    let scalar = |value: &Value| match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => Some(value.to_string()),
        _ => None,
    };
    let text = match value {
        Value::Null => return Ok(None),
        Value::Array(items) => match items.iter().map(scalar).collect::<Option<Vec<_>>>() {
            Some(items) => {
                if items
                    .iter()
                    .any(|item| item.contains(',') || !reads_as_written(item))
                {
                    return Err(VerifyError::UnforwardableClaim);
                }
                items.join(",")
            }
            None => value.to_string(),
        },
        Value::Object(_) => value.to_string(),
        scalar_value => scalar(scalar_value).unwrap_or_default(),
    };
    if !reads_as_written(&text) {
        return Err(VerifyError::UnforwardableClaim);
    }
    Ok(Some(text))
}

#[cfg(test)]
mod tests;
