//! How a compact JWS's bytes become a header and claims, before anything is checked: its three
//! segments, canonical base64url, JSON objects only, and the claims [`verify`](super::verify)
//! reads (registered, scope, forwarded, retained and client claims), each read at most once.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

use super::{ClaimSpec, ForwardClaim, REGISTERED_CLAIMS, VerifyError};

/// The protected header members scopegate reads. Unknown members are ignored; duplicate members
/// are a parse error (serde refuses them for known fields).
#[derive(Deserialize)]
pub(super) struct JoseHeader {
    pub(super) alg: Option<serde_json::Value>,
    pub(super) kid: Option<serde_json::Value>,
    /// `Some` whenever the member is present, `null` included: serde's plain `Option` would read
    /// `"crit": null` as absent, and RFC 8725 wants any `crit` we do not understand refused.
    #[serde(default, deserialize_with = "present")]
    pub(super) crit: Option<serde_json::Value>,
    pub(super) cty: Option<serde_json::Value>,
    pub(super) typ: Option<serde_json::Value>,
}

/// Deserializes a member that is present, whatever its value (`null` included), as `Some`.
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// Registered claims and the scope claims, with JSON types enforced.
#[derive(Default)]
pub(super) struct Claims {
    pub(super) iss: Option<String>,
    pub(super) sub: Option<String>,
    pub(super) aud: Option<OneOrMany>,
    pub(super) exp: Option<f64>,
    pub(super) nbf: Option<f64>,
    /// The values of the configured scope claims that the token carries, in payload order.
    pub(super) scopes: Vec<OneOrMany>,
    /// The claims to forward or retain that the token carries: (name, value).
    pub(super) forward: Vec<(String, serde_json::Value)>,
    /// `azp` and `client_id` when strings: who the token was issued to, for the decision log.
    pub(super) azp: Option<String>,
    pub(super) client_id: Option<String>,
    /// `cnf` (RFC 7800) as written, whatever its type: what the token is bound to, read into a
    /// [`Binding`](crate::auth::binding::Binding) by the checks.
    pub(super) cnf: Option<serde_json::Value>,
}

/// Claims read only to name the client in the decision log; a value that is not a string is
/// ignored rather than refused, since no decision depends on it.
const CLIENT_CLAIMS: [&str; 2] = ["azp", "client_id"];

/// Reads a payload object into [`Claims`], reading as scope claims the names in
/// `scope_claims`. A member read here that appears twice makes the payload malformed (serde
/// would otherwise keep one of the two, and which one a library keeps is how a token smuggles a
/// second value past another reader); members not read are skipped, whatever their number.
struct ClaimsSeed<'a> {
    scope_claims: &'a [String],
    /// Top-level claims whose raw value is kept for forwarding (never a registered claim).
    forward: &'a [ForwardClaim],
    /// Top-level claims whose raw value is kept for
    /// [`VerifiedClaims::claim`](super::VerifiedClaims::claim).
    retain: &'a [ClaimSpec],
}

impl<'de> serde::de::DeserializeSeed<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Claims, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for ClaimsSeed<'_> {
    type Value = Claims;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object of claims")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Claims, A::Error> {
        use serde::de::Error as _;
        /// A member name, borrowed from the payload when it holds no escapes.
        #[derive(Deserialize)]
        struct Name<'a>(#[serde(borrow)] std::borrow::Cow<'a, str>);

        let mut claims = Claims::default();
        let mut seen_registered = [false; REGISTERED_CLAIMS.len()];
        let mut seen_scope = vec![false; self.scope_claims.len()];
        let mut seen_client = [false; CLIENT_CLAIMS.len()];
        let keep_client = |claims: &mut Claims, name: &str, value: &serde_json::Value| {
            let text = value.as_str().map(str::to_owned);
            match name {
                "azp" => claims.azp = text,
                "client_id" => claims.client_id = text,
                "cnf" => claims.cnf = Some(value.clone()),
                _ => {}
            }
        };
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            let scope = self.scope_claims.iter().position(|c| *c == name);
            // Kept as a raw value: forwarded or retained (a registered claim is read into its
            // own field instead, and retained from there).
            let forwarded = !REGISTERED_CLAIMS.contains(&name.as_ref())
                && (self.forward.iter().any(|f| f.claim == name)
                    || self.retain.iter().any(|r| r.claim == name));
            if name == "cnf" && !forwarded {
                // Always read, whatever else the configuration calls it: a binding that went
                // unread would let a bound token pass as a bearer one.
                if claims.cnf.is_some() {
                    return Err(A::Error::custom(format_args!("duplicate claim {name:?}")));
                }
                claims.cnf = Some(map.next_value::<serde_json::Value>()?);
                continue;
            }
            let seen = if let Some(i) = REGISTERED_CLAIMS.iter().position(|r| *r == name) {
                &mut seen_registered[i]
            } else if let Some(i) = scope {
                &mut seen_scope[i]
            } else if forwarded {
                if claims.forward.iter().any(|(n, _)| *n == name) {
                    return Err(A::Error::custom(format_args!("duplicate claim {name:?}")));
                }
                let value = map.next_value::<serde_json::Value>()?;
                keep_client(&mut claims, &name, &value);
                claims.forward.push((name.into_owned(), value));
                continue;
            } else if let Some(i) = CLIENT_CLAIMS.iter().position(|c| *c == name) {
                if std::mem::replace(&mut seen_client[i], true) {
                    return Err(A::Error::custom(format_args!("duplicate claim {name:?}")));
                }
                let value = map.next_value::<serde_json::Value>()?;
                keep_client(&mut claims, &name, &value);
                continue;
            } else {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            };
            if forwarded {
                // A scope claim that is also forwarded: read it once, as a value, then as scopes.
                if std::mem::replace(seen, true) {
                    return Err(A::Error::custom(format_args!("duplicate claim {name:?}")));
                }
                let value = map.next_value::<serde_json::Value>()?;
                keep_client(&mut claims, &name, &value);
                if !value.is_null() {
                    let scopes = OneOrMany::deserialize(&value).map_err(A::Error::custom)?;
                    claims.scopes.push(scopes);
                }
                claims.forward.push((name.into_owned(), value));
                continue;
            }
            if std::mem::replace(seen, true) {
                return Err(A::Error::custom(format_args!("duplicate claim {name:?}")));
            }
            match name.as_ref() {
                "iss" => claims.iss = map.next_value()?,
                "sub" => claims.sub = map.next_value()?,
                "aud" => claims.aud = map.next_value()?,
                "exp" => claims.exp = map.next_value()?,
                "nbf" => claims.nbf = map.next_value()?,
                // Not used for decisions, but type-checked: an `iat` that is not a number makes
                // the token malformed.
                "iat" => {
                    map.next_value::<Option<f64>>()?;
                }
                _ => {
                    if let Some(value) = map.next_value::<Option<OneOrMany>>()? {
                        claims.scopes.push(value);
                    }
                }
            }
        }
        Ok(claims)
    }
}

/// A claim that may be a single string or an array of strings (`aud`, the scope claims).
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The three non-empty segments of a compact JWS, or why `token` is not one (five segments: an
/// encrypted token).
pub(super) fn segments(token: &str) -> Result<[&str; 3], VerifyError> {
    let mut parts = token.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => {
            Ok([h, p, s])
        }
        (Some(_), Some(_), Some(_), Some(_)) if token.split('.').count() == 5 => {
            Err(VerifyError::Encrypted)
        }
        _ => Err(VerifyError::NotCompactJws),
    }
}

/// Decodes one segment as canonical unpadded base64url (padding, `+`/`/` and non-zero trailing
/// bits are all refused by the engine's defaults).
pub(super) fn decode_segment(segment: &str, what: &'static str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| VerifyError::BadEncoding(what))
}

/// Parses a payload as a JSON object of claims, reading `scope_claims` as the scope claims.
pub(super) fn parse_claims(
    json: &[u8],
    scope_claims: &[String],
    forward: &[ForwardClaim],
    retain: &[ClaimSpec],
) -> Option<Claims> {
    use serde::de::DeserializeSeed as _;
    if !is_json_object(json) {
        return None;
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let claims = ClaimsSeed {
        scope_claims,
        forward,
        retain,
    }
    .deserialize(&mut deserializer)
    .ok()?;
    deserializer.end().ok()?;
    Some(claims)
}

/// Parses `json` as a JSON object into `T`. serde would also accept an array for a struct
/// (positionally), so the first significant byte is checked to be `{`.
pub(super) fn parse_object<T: for<'de> Deserialize<'de>>(json: &[u8]) -> Option<T> {
    if !is_json_object(json) {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// Whether the first significant byte of `json` opens an object.
fn is_json_object(json: &[u8]) -> bool {
    json.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}
