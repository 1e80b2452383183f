//! What a verified token is bound to (its `cnf` claim, RFC 7800), and why a request fails to
//! prove it holds the binding.
//!
//! A token whose `cnf` holds `jkt` is DPoP-bound (RFC 9449 §6): each request must carry a proof
//! signed by the key of that thumbprint. One whose `cnf` holds `x5t#S256` is certificate-bound
//! (RFC 8705 §3): the request must come with the client certificate of that thumbprint. The
//! verifier reads `cnf` into [`Binding`] ([`Binding::from_cnf`]); the decision core checks the
//! binding on every request after verification and before policy, cache hit or not, so a stolen
//! bound token alone is never enough.
//!
//! A token bound both ways is refused as malformed. Neither RFC forbids it, but no deployed
//! issuer mints one, each proof would have to be checked and which one failing means what is
//! not specified anywhere: accepting it would leave a choice of which binding to enforce to
//! whoever built the token, so refusing is the safe choice.

use crate::auth::certificate::{CertificateError, Thumbprint};
use crate::auth::heap::allocation_bytes;

/// The length of an unpadded base64url SHA-256 digest: what `cnf.jkt` and `cnf["x5t#S256"]` are.
pub const THUMBPRINT_B64_LEN: usize = 43;

/// The DPoP proof algorithms accepted, as the `algs` of a `DPoP` challenge lists them
/// (RFC 9449 §7.1): asymmetric only.
pub const PROOF_ALGORITHMS: &str = "ES256 ES384 EdDSA RS256 PS256";

/// What a verified token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Binding {
    /// A plain bearer token: whoever holds it may use it.
    #[default]
    None,
    /// DPoP-bound: `jkt` is the base64url RFC 7638 SHA-256 thumbprint of the client's key.
    Dpop {
        /// `cnf.jkt`, 43 base64url characters.
        jkt: String,
    },
    /// Certificate-bound: `x5t_s256` is the base64url SHA-256 of the client certificate's DER.
    Certificate {
        /// `cnf["x5t#S256"]`, 43 base64url characters.
        x5t_s256: String,
    },
}

/// Why a token's `cnf` claim cannot be read as a binding (the token is then malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CnfError {
    /// `cnf` is not a JSON object.
    #[error("token confirmation claim is not an object")]
    NotObject,
    /// `jkt` or `x5t#S256` is not a string of 43 base64url characters.
    #[error("token confirmation thumbprint is malformed")]
    BadThumbprint,
    /// `cnf` holds both `jkt` and `x5t#S256`.
    #[error("token is bound both to a DPoP key and to a certificate")]
    BoundTwice,
}

impl Binding {
    /// The binding a token's `cnf` claim names: `None` for no `cnf` (or one holding neither
    /// member this gate enforces, such as `jwk` or `kid`, which it does not read). A `cnf` that
    /// is not an object, a thumbprint that is not 43 base64url characters, and both bindings
    /// at once make the token malformed.
    pub fn from_cnf(cnf: Option<&serde_json::Value>) -> Result<Binding, CnfError> {
        let Some(cnf) = cnf else {
            return Ok(Binding::None);
        };
        let members = cnf.as_object().ok_or(CnfError::NotObject)?;
        let thumbprint = |name: &str| -> Result<Option<String>, CnfError> {
            match members.get(name) {
                None => Ok(None),
                Some(serde_json::Value::String(text)) if is_thumbprint(text) => {
                    Ok(Some(text.clone()))
                }
                Some(_) => Err(CnfError::BadThumbprint),
            }
        };
        match (thumbprint("jkt")?, thumbprint("x5t#S256")?) {
            (None, None) => Ok(Binding::None),
            (Some(jkt), None) => Ok(Binding::Dpop { jkt }),
            (None, Some(x5t_s256)) => Ok(Binding::Certificate { x5t_s256 }),
            (Some(_), Some(_)) => Err(CnfError::BoundTwice),
        }
    }

    /// Whether the token is bound at all (DPoP or certificate).
    pub fn is_bound(&self) -> bool {
        !matches!(self, Binding::None)
    }

    /// The heap this binding holds, from above (see
    /// [`VerifiedClaims::heap_bytes`](crate::auth::verify::VerifiedClaims::heap_bytes)).
    pub fn heap_bytes(&self) -> usize {
        match self {
            Binding::None => 0,
            Binding::Dpop { jkt } => allocation_bytes(jkt.capacity()),
            Binding::Certificate { x5t_s256 } => allocation_bytes(x5t_s256.capacity()),
        }
    }
}

/// Whether `text` reads as an unpadded base64url SHA-256 digest: 43 characters of the URL-safe
/// alphabet, the last one carrying no stray bits (so one digest has one spelling).
fn is_thumbprint(text: &str) -> bool {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    text.len() == THUMBPRINT_B64_LEN
        && URL_SAFE_NO_PAD
            .decode(text)
            .is_ok_and(|digest| digest.len() == 32)
}

/// Why a request does not prove the binding of its token, or could not be checked. The decision
/// core answers each: a bad DPoP proof 401 `invalid_token` with a `DPoP` challenge
/// (`invalid_dpop_proof`), reason `dpop_proof`; a binding mismatch 401 `invalid_token`, reason
/// `binding`; a full replay cache or a failing replay store 503.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindingError {
    /// The DPoP proof is missing, malformed, or does not prove what it must.
    #[error("DPoP proof is invalid: {0}")]
    DpopProof(&'static str),
    /// The proof's `jti` was seen before within the proof window.
    #[error("DPoP proof was already used")]
    DpopReplay,
    /// The replay cache is full of unexpired proofs, so a new one cannot be remembered.
    #[error("DPoP proofs cannot be checked for replay now")]
    ReplayCacheFull,
    /// The shared replay store (`dpop_replay_store`) did not say whether the proof was seen
    /// (unreachable, too slow, an error, too many calls waiting): refused, never let through.
    #[error("DPoP proofs cannot be checked for replay now")]
    ReplayStoreFailed,
    /// A DPoP-bound token sent with the `Bearer` scheme (RFC 9449 §7.2): a downgrade.
    #[error("DPoP-bound token sent as a Bearer token")]
    Downgrade,
    /// A token sent with the `DPoP` scheme that is not DPoP-bound.
    #[error("token sent with the DPoP scheme is not DPoP-bound")]
    NotDpopBound,
    /// The rule takes only sender-constrained tokens (`sender_constrained = true`), and this
    /// one is a plain bearer token.
    #[error("token is not sender-constrained")]
    NotBound,
    /// A certificate-bound token without a client certificate.
    #[error("token is bound to a client certificate and none was presented")]
    NoCertificate,
    /// The client certificate is not the one the token is bound to.
    #[error("client certificate does not match the token")]
    CertificateMismatch,
    /// A certificate-bound token, and the client certificate cannot be read: not URL-encoded
    /// PEM, too long, or a trusted `x-forwarded-client-cert` that is not exactly one
    /// well-formed element.
    #[error("client certificate cannot be read: {0}")]
    UnreadableCertificate(CertificateError),
}

impl BindingError {
    /// Whether the failure is the DPoP proof's (reason `dpop_proof`, challenge
    /// `invalid_dpop_proof`) rather than the token's binding (reason `binding`).
    pub fn is_proof(&self) -> bool {
        matches!(
            self,
            BindingError::DpopProof(_)
                | BindingError::DpopReplay
                | BindingError::ReplayCacheFull
                | BindingError::ReplayStoreFailed
        )
    }
}

/// What a request presents to prove a binding: the auth-scheme its token came under, its `DPoP`
/// header values, and the client certificate the transport saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Presented<'a> {
    /// The auth-scheme the token was sent under, when it came from the `Authorization`
    /// source (`Bearer`, `DPoP`, any case); `None` for a cookie, another header or a query.
    pub scheme: Option<&'a str>,
    /// Every `DPoP` header value, in order (exactly one is accepted).
    pub dpop: &'a [&'a str],
    /// The client certificate (URL-encoded PEM, as Envoy passes it), when there is one.
    pub certificate: Option<&'a str>,
    /// Every `x-forwarded-client-cert` value, when the configuration trusts that header
    /// (`trust_forwarded_client_cert`); empty otherwise, so a client's copy is never read.
    pub forwarded_certificate: &'a [&'a str],
}

/// Checks what a request presents against the token's `binding`, apart from the DPoP proof
/// itself (which the caller checks when this returns `Ok(true)`): the scheme (a DPoP-bound
/// token under `Bearer` is a downgrade, an unbound one under `DPoP` is refused),
/// `sender_constrained`, and the certificate. `Ok(true)`: a DPoP proof must be checked.
pub fn check(
    binding: &Binding,
    presented: &Presented<'_>,
    sender_constrained: bool,
) -> Result<bool, BindingError> {
    let dpop_scheme = presented
        .scheme
        .is_some_and(|s| s.eq_ignore_ascii_case("dpop"));
    match binding {
        Binding::None if sender_constrained => Err(BindingError::NotBound),
        Binding::None if dpop_scheme => Err(BindingError::NotDpopBound),
        Binding::None => Ok(false),
        Binding::Dpop { .. } if !dpop_scheme => Err(BindingError::Downgrade),
        Binding::Dpop { .. } => Ok(true),
        Binding::Certificate { x5t_s256 } => check_certificate(x5t_s256, presented).map(|()| false),
    }
}

/// The certificate check of a certificate-bound token (RFC 8705 §3): the request's client
/// certificate ([`Thumbprint::of_request`]: a trusted forwarded one when sent, else the
/// transport's) must be the one `x5t_s256` names, compared in constant time.
fn check_certificate(x5t_s256: &str, presented: &Presented<'_>) -> Result<(), BindingError> {
    let trusted = !presented.forwarded_certificate.is_empty();
    match Thumbprint::of_request(
        presented.certificate,
        presented.forwarded_certificate,
        trusted,
    ) {
        Ok(thumbprint) if thumbprint.matches(x5t_s256) => Ok(()),
        Ok(_) => Err(BindingError::CertificateMismatch),
        Err(CertificateError::Absent) => Err(BindingError::NoCertificate),
        Err(e) => Err(BindingError::UnreadableCertificate(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const JKT: &str = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";

    #[test]
    fn cnf_reads_as_a_binding_or_makes_the_token_malformed() {
        let cases: &[(Option<serde_json::Value>, Result<Binding, CnfError>)] = &[
            (None, Ok(Binding::None)),
            (Some(json!({})), Ok(Binding::None)),
            (Some(json!({"kid": "k"})), Ok(Binding::None)),
            (
                Some(json!({ "jkt": JKT })),
                Ok(Binding::Dpop {
                    jkt: JKT.to_owned(),
                }),
            ),
            (
                Some(json!({ "x5t#S256": JKT })),
                Ok(Binding::Certificate {
                    x5t_s256: JKT.to_owned(),
                }),
            ),
            (
                Some(json!({ "jkt": JKT, "x5t#S256": JKT })),
                Err(CnfError::BoundTwice),
            ),
            (Some(json!("jkt")), Err(CnfError::NotObject)),
            (Some(json!(null)), Err(CnfError::NotObject)),
            (Some(json!([JKT])), Err(CnfError::NotObject)),
            (Some(json!({ "jkt": 1 })), Err(CnfError::BadThumbprint)),
            (Some(json!({ "jkt": "" })), Err(CnfError::BadThumbprint)),
            (
                Some(json!({ "jkt": &JKT[1..] })),
                Err(CnfError::BadThumbprint),
            ),
            (
                Some(json!({ "jkt": format!("{JKT}=") })),
                Err(CnfError::BadThumbprint),
            ),
            (
                // Standard, not URL-safe, alphabet.
                Some(json!({ "jkt": JKT.replace('-', "+") })),
                Err(CnfError::BadThumbprint),
            ),
            (
                // The last character carries bits beyond the 256.
                Some(json!({ "jkt": format!("{}J", &JKT[..42]) })),
                Err(CnfError::BadThumbprint),
            ),
            (
                Some(json!({ "x5t#S256": ["x"] })),
                Err(CnfError::BadThumbprint),
            ),
        ];
        for (cnf, want) in cases {
            assert_eq!(&Binding::from_cnf(cnf.as_ref()), want, "cnf {cnf:?}");
        }
    }

    #[test]
    // The case tuple reads best written out where it is used.
    #[allow(clippy::type_complexity)]
    fn scheme_and_sender_constraint_are_checked_against_the_binding() {
        let dpop = Binding::Dpop {
            jkt: JKT.to_owned(),
        };
        let cert = Binding::Certificate {
            x5t_s256: JKT.to_owned(),
        };
        let with = |scheme: Option<&'static str>| Presented {
            scheme,
            ..Presented::default()
        };
        // (binding, scheme, sender_constrained, what check says)
        type Case<'a> = (
            &'a Binding,
            Option<&'static str>,
            bool,
            Result<bool, BindingError>,
        );
        let cases: &[Case] = &[
            (&Binding::None, Some("Bearer"), false, Ok(false)),
            (&Binding::None, None, false, Ok(false)),
            (
                &Binding::None,
                Some("Bearer"),
                true,
                Err(BindingError::NotBound),
            ),
            (
                &Binding::None,
                Some("DPoP"),
                false,
                Err(BindingError::NotDpopBound),
            ),
            (
                &Binding::None,
                Some("dpop"),
                true,
                Err(BindingError::NotBound),
            ),
            (&dpop, Some("DPoP"), false, Ok(true)),
            (&dpop, Some("dpop"), true, Ok(true)),
            (&dpop, Some("Bearer"), false, Err(BindingError::Downgrade)),
            (&dpop, None, false, Err(BindingError::Downgrade)),
            (
                &cert,
                Some("Bearer"),
                false,
                Err(BindingError::NoCertificate),
            ),
        ];
        for (binding, scheme, constrained, want) in cases {
            assert_eq!(
                &check(binding, &with(*scheme), *constrained),
                want,
                "{binding:?} under {scheme:?}, sender_constrained {constrained}"
            );
        }
    }
}
