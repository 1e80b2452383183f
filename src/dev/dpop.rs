//! A DPoP client key and the proofs it makes (RFC 9449 §4), for the `dpop-proof` command, the
//! demo and the tests. **Not for production**: the key sits in a file, unencrypted.
//!
//! The key is P-256 (ES256 proofs), kept as a PKCS#8 DER file created on first use (mode 0600).
//! Its thumbprint is what a DPoP-bound token's `cnf.jkt` names (`mint-token --dpop-jkt`), and each
//! proof is fresh: a random `jti` and `iat` now.

use std::path::Path;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom as _, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::dev::issuer::{DevIssuerError, now, read_or_create_key, thumbprint};

/// Where `dpop-proof` keeps its key unless told otherwise.
pub const DEFAULT_KEY_FILE: &str = ".demo/dpop-key.der";

/// A client's DPoP key (P-256).
pub struct ProofKey {
    pair: EcdsaKeyPair,
    jwk: Value,
    jkt: String,
}

impl std::fmt::Debug for ProofKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProofKey")
            .field("jkt", &self.jkt)
            .finish_non_exhaustive()
    }
}

impl ProofKey {
    /// A new key, in memory only.
    pub fn generate() -> Result<ProofKey, DevIssuerError> {
        let der =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| DevIssuerError::Crypto)?;
        ProofKey::from_pkcs8(der.as_ref(), "<generated>")
    }

    /// The key in `key_file` (PKCS#8 DER, P-256), created (mode 0600) if it does not exist. A
    /// file holding another kind of key is an error, never replaced.
    pub fn load_or_create(key_file: &Path) -> Result<ProofKey, DevIssuerError> {
        let der =
            read_or_create_key(key_file, || {
                Ok(EcdsaKeyPair::generate_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &SystemRandom::new(),
                )
                .map_err(|_| DevIssuerError::Crypto)?
                .as_ref()
                .to_vec())
            })?;
        ProofKey::from_pkcs8(&der, &key_file.display().to_string())
    }

    fn from_pkcs8(der: &[u8], path: &str) -> Result<ProofKey, DevIssuerError> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|e| {
                DevIssuerError::BadKey {
                    path: path.to_string(),
                    kind: "P-256",
                    reason: e.to_string(),
                }
            })?;
        // Uncompressed point: 0x04 ‖ x ‖ y, 32 bytes each.
        let point = pair.public_key().as_ref();
        let members = [
            ("crv", "P-256".to_string()),
            ("kty", "EC".to_string()),
            ("x", URL_SAFE_NO_PAD.encode(&point[1..33])),
            ("y", URL_SAFE_NO_PAD.encode(&point[33..65])),
        ];
        let jkt = thumbprint(&members);
        let jwk = Value::Object(
            members
                .into_iter()
                .map(|(name, value)| (name.to_string(), json!(value)))
                .collect(),
        );
        Ok(ProofKey { pair, jwk, jkt })
    }

    /// The public key as a JWK (no private member).
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }

    /// Its RFC 7638 SHA-256 thumbprint, base64url: what `cnf.jkt` names.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A fresh proof for `method` on `url` (query and fragment dropped, RFC 9449 §4.2), with
    /// `ath` for `token` when one is given: a random `jti`, `iat` now.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
    ) -> Result<String, DevIssuerError> {
        let mut jti = [0u8; 16];
        SystemRandom::new()
            .fill(&mut jti)
            .map_err(|_| DevIssuerError::Crypto)?;
        let htu = url.split(['?', '#']).next().unwrap_or_default();
        let mut claims = json!({
            "htm": method,
            "htu": htu,
            "iat": now()?,
            "jti": URL_SAFE_NO_PAD.encode(jti),
        });
        if let Some(token) = token {
            claims["ath"] = json!(URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes())));
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // FIXED signing gives JOSE's r ‖ s form (RFC 7518 §3.4), not DER.
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .map_err(|_| DevIssuerError::Crypto)?;
        Ok(format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

/// An RFC 7638 SHA-256 thumbprint as `cnf` holds one (`jkt`, `x5t#S256`): unpadded base64url
/// of 32 bytes. Refuses anything else, such as a hex digest, which no verifier would match.
pub fn parse_thumbprint(text: &str) -> Result<String, String> {
    match URL_SAFE_NO_PAD.decode(text) {
        Ok(bytes) if bytes.len() == 32 => Ok(text.to_string()),
        _ => Err(format!(
            "expected a SHA-256 thumbprint in unpadded base64url (43 characters), got {text:?}"
        )),
    }
}

/// The `cnf` claim binding a token to a DPoP key's thumbprint (`jkt`) or else a client
/// certificate's (`x5t#S256`), as a claim to add to a minted token; `None` for neither.
pub fn cnf_claim(dpop_jkt: Option<String>, cnf_x5t: Option<String>) -> Option<(String, Value)> {
    let cnf = match (dpop_jkt, cnf_x5t) {
        (Some(jkt), _) => json!({ "jkt": jkt }),
        (None, Some(x5t)) => json!({ "x5t#S256": x5t }),
        (None, None) => return None,
    };
    Some(("cnf".to_string(), cnf))
}

/// `scopegate dpop-proof`: with `print_jkt`, the key's thumbprint; otherwise one fresh proof
/// for `method` on `url` (with `ath` for `token`). Either is returned as the line to print.
pub fn command(
    key_file: &Path,
    print_jkt: bool,
    request: Option<(&str, &str)>,
    token: Option<&str>,
) -> Result<String, DevIssuerError> {
    let key = ProofKey::load_or_create(key_file)?;
    match request {
        Some((method, url)) if !print_jkt => key.proof(method, url, token),
        _ => Ok(key.jkt().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_verifies_against_its_own_jwk_and_thumbprint_with_the_gates_code() {
        let key = ProofKey::generate().expect("key");
        let token = "a.b.c";
        let proof = key
            .proof("POST", "https://api.example/orders?x=1#f", Some(token))
            .expect("proof");
        let expected = crate::auth::dpop::Expected {
            method: "POST",
            url: "https://api.example/orders",
            token,
            jkt: key.jkt(),
        };
        let keys = crate::auth::dpop::KeyCache::default();
        let limits = crate::auth::dpop::ProofLimits::default();
        let now = now().expect("clock");
        crate::auth::dpop::verify(&[&proof], &expected, &limits, &keys, now).expect("accepted");
        assert_eq!(
            crate::auth::dpop::thumbprint(key.jwk().as_object().expect("object")).as_deref(),
            Some(key.jkt())
        );
        // Two proofs for the same request differ (jti).
        let again = key
            .proof("POST", "https://api.example/orders", Some(token))
            .expect("proof");
        assert_ne!(proof, again);
    }

    #[test]
    fn the_key_file_is_kept_private_and_reused() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("sub/dpop.der");
        let first = ProofKey::load_or_create(&file).expect("created");
        let second = ProofKey::load_or_create(&file).expect("loaded");
        assert_eq!(first.jkt(), second.jkt());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&file, b"not a key").expect("write");
        assert!(matches!(
            ProofKey::load_or_create(&file),
            Err(DevIssuerError::BadKey { .. })
        ));
    }

    #[test]
    fn thumbprints_are_43_base64url_characters() {
        let good = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        assert_eq!(parse_thumbprint(good).as_deref(), Ok(good));
        for bad in [
            "",
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4",
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I=",
            "d1970e08e45935",
            "0ZcOCORZNYy+DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
        ] {
            assert!(parse_thumbprint(bad).is_err(), "{bad}");
        }
    }
}
