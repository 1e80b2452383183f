//! Signing keys, a leaf module: the algorithms scopegate verifies, JWKS documents parsed into
//! ready-to-use verifying keys, and the reasons an entry is left out.
//!
//! Both `jwks` (which fetches and refreshes key sets) and `verify` (which uses one) depend on
//! this module, and it on neither: keys are parsed once, here, when a document is loaded, into
//! aws-lc-rs `ParsedPublicKey`s (one per allowed algorithm), so verifying a token never parses
//! key material. The one exception is a DPoP proof's own `jwk` ([`parse_jwk`]), which comes with
//! the request; `dpop` keeps those parsed in a small cache by thumbprint.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaParameters, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

/// A JWS signature algorithm scopegate can verify.
///
/// Only asymmetric algorithms exist here (RSA, ECDSA on P-256 and P-384, Ed25519): `none` and the
/// HMAC family cannot be represented, so no configuration can enable them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// RSASSA-PKCS1-v1_5 with SHA-256 (the Auth0 default).
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256 (fixed-length `r‖s` signatures, RFC 7518 §3.4).
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// EdDSA (RFC 8037), of which scopegate verifies Ed25519 only.
    EdDSA,
    /// Ed25519 named fully (RFC 9864).
    Ed25519,
}

/// The kind of key an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl Algorithm {
    /// Every supported algorithm, for help texts.
    pub const ALL: [Algorithm; 10] = [
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
        Algorithm::Ed25519,
    ];

    /// The JOSE name (`"RS256"`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
            Algorithm::Ed25519 => "Ed25519",
        }
    }

    /// The kind of key that can verify this algorithm.
    fn key_kind(self) -> KeyKind {
        match self {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => KeyKind::Rsa,
            Algorithm::ES256 => KeyKind::P256,
            Algorithm::ES384 => KeyKind::P384,
            Algorithm::EdDSA | Algorithm::Ed25519 => KeyKind::Ed25519,
        }
    }

    /// The RSA verification parameters (the 2048–8192-bit modulus range is enforced by them
    /// too), for the RSA algorithms.
    fn rsa_parameters(self) -> Option<&'static RsaParameters> {
        Some(match self {
            Algorithm::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
            _ => return None,
        })
    }

    /// The verification algorithm for a key given as raw public bytes (EC points, Ed25519).
    fn raw_key_algorithm(self) -> Option<&'static dyn signature::VerificationAlgorithm> {
        Some(match self {
            Algorithm::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA | Algorithm::Ed25519 => &signature::ED25519,
            _ => return None,
        })
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = ();

    /// Exact, case-sensitive JOSE names only (RFC 7515 §4.1.1: `alg` is case-sensitive).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or(())
    }
}

/// One usable signing key, ready to verify.
pub struct Key {
    kid: Option<String>,
    algorithm: Option<Algorithm>,
    verifiers: Vec<(Algorithm, ParsedPublicKey)>,
    /// SHA-256 over the key material and the algorithms it serves: equal exactly when two
    /// loads of a key set hold the same key for the same uses.
    fingerprint: [u8; 32],
}

impl Key {
    /// The `kid` the key was published with.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// Identifies the key across loads of its set: the same material for the same algorithms
    /// gives the same fingerprint, anything else another. A verified-token cache checks that
    /// the key a token was verified with is still in the set by this.
    pub fn fingerprint(&self) -> &[u8; 32] {
        &self.fingerprint
    }

    /// The `alg` the key was published for, if the JWK named one.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.algorithm
    }

    /// The parsed public key for `alg`, if this key may be used with it.
    pub(crate) fn verifier(&self, alg: Algorithm) -> Option<&ParsedPublicKey> {
        self.verifiers
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, key)| key)
    }
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
}

/// A parsed key set. Immutable once built; replaced wholesale on refresh.
#[derive(Debug, Default)]
pub struct KeySet {
    by_kid: HashMap<String, Key>,
    without_kid: Vec<Key>,
}

/// A JWKS entry that was left out of the key set, and why. Not fatal: counted in one log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    /// The entry's `kid`, if it had a readable one.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: SkipReason,
}

/// Why a JWKS entry was skipped: a small fixed set, so that skipped entries can be counted by
/// reason in one log line however many a document holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// Not a JSON object, or a member of the wrong JSON type.
    Malformed,
    /// `kty` absent or not one scopegate verifies with (`RSA`, `EC`, `OKP`).
    UnsupportedKeyType,
    /// An `EC` or `OKP` key on a curve scopegate does not verify with (only P-256, P-384 and
    /// Ed25519 are).
    UnsupportedCurve,
    /// `use` present and not `sig`.
    NotForSignature,
    /// `key_ops` present without `verify`.
    NoVerifyOperation,
    /// `alg` names a supported algorithm that is not on the allow-list, or (without `alg`) no
    /// allowed algorithm fits the key.
    AlgorithmNotAllowed,
    /// `alg` names no supported signature algorithm.
    UnsupportedAlgorithm,
    /// `alg` names an algorithm for another kind of key or curve (`ES384` on a P-256 key).
    AlgorithmMismatch,
    /// `n`/`e` or `x`/`y` absent, not base64url, or (EC, Ed25519) of the wrong length.
    BadEncoding,
    /// Modulus outside 2048..=8192 bits (an empty or all-zero one included).
    ModulusSize,
    /// Exponent even, 1, empty, or wider than 32 bits.
    Exponent,
    /// An Ed25519 key that is a point of small order (any of the 14 ways to write one of the 8),
    /// or whose `y` is not below the field prime. A small-order key verifies a signature made
    /// without any private key (`R` the identity, `s` = 0) for a fraction of all messages, and
    /// the crypto library does not refuse one.
    SmallOrder,
    /// The crypto library refused the key.
    Rejected,
    /// A `kid` that an earlier entry already has (the first entry is kept).
    DuplicateKid,
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SkipReason::Malformed => "malformed JWK",
            SkipReason::UnsupportedKeyType => "kty not RSA, EC or OKP",
            SkipReason::UnsupportedCurve => "curve not P-256, P-384 or Ed25519",
            SkipReason::NotForSignature => "use is not sig",
            SkipReason::NoVerifyOperation => "key_ops lacks verify",
            SkipReason::AlgorithmNotAllowed => "alg not on the allow-list",
            SkipReason::UnsupportedAlgorithm => "alg not a supported signature algorithm",
            SkipReason::AlgorithmMismatch => "alg does not fit the key",
            SkipReason::BadEncoding => "key member missing, not base64url or of the wrong length",
            SkipReason::ModulusSize => "modulus not 2048..=8192 bits",
            SkipReason::Exponent => "exponent not an odd integer in 3..2^32",
            SkipReason::SmallOrder => "Ed25519 key of small order or not canonically encoded",
            SkipReason::Rejected => "key rejected by the crypto library",
            SkipReason::DuplicateKid => "duplicate kid (first kept)",
        })
    }
}

/// How many `kid`s a skip summary names.
pub const SUMMARY_KIDS: usize = 5;
/// How many characters of each such `kid` it shows (a `kid` is publisher-controlled text).
pub const SUMMARY_KID_CHARS: usize = 64;

/// One line's worth of skipped entries: counts by reason, then the first few `kid`s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkipSummary {
    /// How many entries were skipped.
    pub count: usize,
    /// `reason: count, ...`, in a fixed order.
    pub reasons: String,
    /// The first [`SUMMARY_KIDS`] skipped `kid`s, each cut to [`SUMMARY_KID_CHARS`] characters.
    pub first_kids: Vec<String>,
}

impl SkipSummary {
    /// Summarises `skipped`.
    pub fn of(skipped: &[SkippedKey]) -> SkipSummary {
        let mut counts: BTreeMap<SkipReason, usize> = BTreeMap::new();
        for skip in skipped {
            *counts.entry(skip.reason).or_default() += 1;
        }
        let reasons = counts
            .iter()
            .map(|(reason, n)| format!("{reason}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let first_kids = skipped
            .iter()
            .filter_map(|s| s.kid.as_deref())
            .take(SUMMARY_KIDS)
            .map(|kid| kid.chars().take(SUMMARY_KID_CHARS).collect())
            .collect();
        SkipSummary {
            count: skipped.len(),
            reasons,
            first_kids,
        }
    }
}

impl fmt::Display for SkipSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} skipped ({})", self.count, self.reasons)
    }
}

/// Why a JWKS document yields no key set at all.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The body is not a JSON object with a `keys` array.
    #[error("JWKS document is malformed: {0}")]
    Malformed(String),
    /// The `keys` array lists more entries than `jwks_max_keys`.
    #[error("JWKS document lists more than {limit} keys")]
    TooManyKeys {
        /// The configured limit.
        limit: usize,
    },
    /// The document parsed but no entry is a usable signing key.
    #[error("JWKS document has no usable signing key ({skipped})")]
    NoUsableKeys {
        /// What was skipped, and why.
        skipped: SkipSummary,
    },
}

impl KeySet {
    /// Parses a JWKS document, keeping RSA signing keys usable with at least one of `algorithms`.
    ///
    /// A document listing more than `max_keys` entries is refused whole, before any entry is
    /// parsed or even held in memory. Entries that are not usable (other key types, `use` other
    /// than `sig`, `key_ops` without `verify`, a disallowed `alg`, malformed or wrongly sized
    /// moduli, Ed25519 keys of small order, duplicate `kid`s) are returned in the skip list
    /// rather than failing the document.
    ///
    /// CPU-bound (one RSA key parse per entry and algorithm): the refresher runs it on a blocking
    /// thread (`jwks::parse_off_runtime`).
    pub fn parse(
        json: &[u8],
        algorithms: &[Algorithm],
        max_keys: usize,
    ) -> Result<(KeySet, Vec<SkippedKey>), ParseError> {
        let malformed = |e: serde_json::Error| {
            ParseError::Malformed(format!("expected {{\"keys\": [...]}}: {e}"))
        };
        // First pass: the shape and the number of entries, without keeping any (IgnoredAny is
        // zero-sized), so a document of a million junk entries costs no memory.
        #[derive(Deserialize)]
        struct Shape {
            keys: Vec<serde::de::IgnoredAny>,
        }
        let shape: Shape = serde_json::from_slice(json).map_err(malformed)?;
        if shape.keys.len() > max_keys {
            return Err(ParseError::TooManyKeys { limit: max_keys });
        }
        #[derive(Deserialize)]
        struct Document {
            keys: Vec<serde_json::Value>,
        }
        let document: Document = serde_json::from_slice(json).map_err(malformed)?;

        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for entry in document.keys {
            match parse_key(&entry, algorithms) {
                Ok(key) => match key.kid.clone() {
                    Some(kid) if set.by_kid.contains_key(&kid) => skipped.push(SkippedKey {
                        kid: Some(kid),
                        reason: SkipReason::DuplicateKid,
                    }),
                    Some(kid) => {
                        set.by_kid.insert(kid, key);
                    }
                    None => set.without_kid.push(key),
                },
                Err(reason) => skipped.push(SkippedKey {
                    kid: entry.get("kid").and_then(|k| k.as_str()).map(str::to_owned),
                    reason,
                }),
            }
        }
        if set.is_empty() {
            return Err(ParseError::NoUsableKeys {
                skipped: SkipSummary::of(&skipped),
            });
        }
        Ok((set, skipped))
    }

    /// The key for a token's `kid`. A token without `kid` is matched only when the set holds
    /// exactly one key, so that the choice is never ambiguous.
    pub fn find(&self, kid: Option<&str>) -> Option<&Key> {
        match kid {
            Some(kid) => self.by_kid.get(kid),
            None if self.len() == 1 => self.by_kid.values().chain(&self.without_kid).next(),
            None => None,
        }
    }

    /// Number of usable keys.
    pub fn len(&self) -> usize {
        self.by_kid.len() + self.without_kid.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `kid`s in the set, sorted, for logs.
    pub fn kids(&self) -> Vec<&str> {
        let mut kids: Vec<&str> = self.by_kid.keys().map(String::as_str).collect();
        kids.sort_unstable();
        kids
    }
}

/// The members of a JWK that decide whether and how it can verify.
#[derive(Deserialize)]
struct JwkFields {
    kty: Option<String>,
    kid: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
    alg: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

/// One JWK parsed into a key for those of `algorithms` its kind serves (its own `alg`, when it
/// names one, must be among them), with the checks a key set's entries get: what a DPoP proof's
/// `jwk` header is parsed with.
pub fn parse_jwk(entry: &serde_json::Value, algorithms: &[Algorithm]) -> Result<Key, SkipReason> {
    parse_key(entry, algorithms)
}

/// Smallest RSA modulus accepted, in bits (RFC 7518 §3.3 requires at least 2048).
const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted, in bits.
const MAX_RSA_BITS: usize = 8192;

fn parse_key(entry: &serde_json::Value, algorithms: &[Algorithm]) -> Result<Key, SkipReason> {
    let jwk = JwkFields::deserialize(entry).map_err(|_| SkipReason::Malformed)?;
    let kind = match (jwk.kty.as_deref(), jwk.crv.as_deref()) {
        (Some("RSA"), _) => KeyKind::Rsa,
        (Some("EC"), Some("P-256")) => KeyKind::P256,
        (Some("EC"), Some("P-384")) => KeyKind::P384,
        (Some("OKP"), Some("Ed25519")) => KeyKind::Ed25519,
        (Some("EC" | "OKP"), _) => return Err(SkipReason::UnsupportedCurve),
        _ => return Err(SkipReason::UnsupportedKeyType),
    };
    if jwk.use_.as_deref().is_some_and(|use_| use_ != "sig") {
        return Err(SkipReason::NotForSignature);
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Err(SkipReason::NoVerifyOperation);
    }
    // A published `alg` must be supported, fit the key, and be allowed; without one, the key
    // serves every allowed algorithm of its kind (RS* and PS* for RSA; one each for the curves).
    let algorithm = match jwk.alg.as_deref() {
        None => None,
        Some(name) => match name.parse::<Algorithm>() {
            Ok(alg) if alg.key_kind() != kind => return Err(SkipReason::AlgorithmMismatch),
            Ok(alg) if algorithms.contains(&alg) => Some(alg),
            Ok(_) => return Err(SkipReason::AlgorithmNotAllowed),
            Err(()) => return Err(SkipReason::UnsupportedAlgorithm),
        },
    };
    let usable: Vec<Algorithm> = match algorithm {
        Some(alg) => vec![alg],
        None => algorithms
            .iter()
            .copied()
            .filter(|alg| alg.key_kind() == kind)
            .collect(),
    };
    if usable.is_empty() {
        return Err(SkipReason::AlgorithmNotAllowed);
    }

    let decode = |value: Option<&String>| -> Result<Vec<u8>, SkipReason> {
        URL_SAFE_NO_PAD
            .decode(value.ok_or(SkipReason::BadEncoding)?)
            .map_err(|_| SkipReason::BadEncoding)
    };
    let mut verifiers = Vec::with_capacity(usable.len());
    let mut fingerprint = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for alg in &usable {
        fingerprint.update(alg.as_str().as_bytes());
        fingerprint.update(b",");
    }
    if kind == KeyKind::Rsa {
        // RFC 7518 forbids leading zero octets, but some publishers add one; strip them so the
        // size check below measures the real modulus.
        let strip = |bytes: Vec<u8>| {
            let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
            bytes[start..].to_vec()
        };
        let n = strip(decode(jwk.n.as_ref())?);
        let e = strip(decode(jwk.e.as_ref())?);
        if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bit_length(&n)) {
            return Err(SkipReason::ModulusSize);
        }
        if e.is_empty() || e.len() > 4 || e.last().is_some_and(|b| b % 2 == 0) || e == [1] {
            return Err(SkipReason::Exponent);
        }
        for part in [&n, &e] {
            fingerprint.update(&(part.len() as u64).to_be_bytes());
            fingerprint.update(part);
        }
        let components = RsaPublicKeyComponents { n: &n, e: &e };
        for alg in usable {
            let parameters = alg.rsa_parameters().ok_or(SkipReason::AlgorithmMismatch)?;
            let parsed = components
                .to_parsed_public_key(parameters)
                .map_err(|_| SkipReason::Rejected)?;
            verifiers.push((alg, parsed));
        }
    } else {
        // EC: the uncompressed point 04 ‖ x ‖ y, each coordinate exactly the curve's size (no
        // compressed or shortened forms); Ed25519: the 32-byte public key. The crypto library
        // checks that a point is on its curve.
        let bytes = match kind {
            KeyKind::P256 | KeyKind::P384 => {
                let size = if kind == KeyKind::P256 { 32 } else { 48 };
                let (x, y) = (decode(jwk.x.as_ref())?, decode(jwk.y.as_ref())?);
                if x.len() != size || y.len() != size {
                    return Err(SkipReason::BadEncoding);
                }
                [&[0x04][..], &x, &y].concat()
            }
            _ => {
                let x = decode(jwk.x.as_ref())?;
                if x.len() != 32 || jwk.y.is_some() {
                    return Err(SkipReason::BadEncoding);
                }
                if ed25519_small_order_or_non_canonical(&x) {
                    return Err(SkipReason::SmallOrder);
                }
                x
            }
        };
        fingerprint.update(&bytes);
        for alg in usable {
            let verification = alg
                .raw_key_algorithm()
                .ok_or(SkipReason::AlgorithmMismatch)?;
            let parsed =
                ParsedPublicKey::new(verification, &bytes).map_err(|_| SkipReason::Rejected)?;
            verifiers.push((alg, parsed));
        }
    }
    let mut digest = [0u8; 32];
    digest.copy_from_slice(fingerprint.finish().as_ref());
    Ok(Key {
        kid: jwk.kid,
        algorithm,
        verifiers,
        fingerprint: digest,
    })
}

/// The `y` coordinates (little-endian, sign bit clear) of the 8 Ed25519 points of small order,
/// and the two of them that also fit above the field prime p = 2^255 - 19: 0 (two points, x =
/// ±sqrt(-1), order 4), 1 (the identity), the two order-8 values, p - 1 (order 2), p (0 again)
/// and p + 1 (1 again). With either sign bit that is 14 encodings, the "negative zero" ones
/// (x = 0 with the sign bit set) included, which RFC 8032 decoding refuses but a lax decoder
/// does not.
const ED25519_SMALL_ORDER_Y: [[u8; 32]; 7] = [
    [0; 32],
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
    ed25519_prime_plus(-1),
    ed25519_prime_plus(0),
    ed25519_prime_plus(1),
];

/// p + `delta` (for small `delta`) as 32 little-endian bytes: p is 0xed followed by 30 bytes of
/// 0xff and a final 0x7f.
const fn ed25519_prime_plus(delta: i16) -> [u8; 32] {
    let mut bytes = [0xff; 32];
    bytes[0] = (0xed + delta) as u8;
    bytes[31] = 0x7f;
    bytes
}

/// Whether a 32-byte Ed25519 public key is of small order or not canonical (`y` >= p). Such a
/// key is no one's key: the refusal does not depend on the crypto library's decoder. Keys of
/// mixed order (a real key plus a small-order part) are not looked for here: they cannot sign
/// without their private key, and verification is cofactorless.
fn ed25519_small_order_or_non_canonical(key: &[u8]) -> bool {
    let Ok(mut y) = <[u8; 32]>::try_from(key) else {
        return false;
    };
    y[31] &= 0x7f;
    if ED25519_SMALL_ORDER_Y.contains(&y) {
        return true;
    }
    // y >= p: the top 254 bits all set but for p's low byte, compared as a number.
    y[31] == 0x7f && y[1..31].iter().all(|b| *b == 0xff) && y[0] >= 0xed
}

/// Bit length of a big-endian unsigned integer whose leading zero bytes are already stripped;
/// 0 for an empty one (`"n": ""` or an all-zero modulus), never an underflow.
fn bit_length(stripped: &[u8]) -> usize {
    match stripped.first() {
        None => 0,
        Some(first) => stripped.len() * 8 - first.leading_zeros() as usize,
    }
}

#[cfg(test)]
pub(crate) mod tests;
