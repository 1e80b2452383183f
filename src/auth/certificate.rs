//! Certificate-bound tokens (RFC 8705 §3): which client certificate a request came with, as the
//! SHA-256 thumbprint a token's `cnf["x5t#S256"]` names. Pure: it reads strings the transport
//! passed and decides nothing but "this certificate" or why there is none.
//!
//! The certificate comes from one of two places:
//! - the transport's peer certificate: Envoy's `attributes.source.certificate`
//!   (`include_peer_certificate: true`), the leaf as URL-encoded PEM;
//! - only when the configuration trusts it (`trust_forwarded_client_cert`), Envoy's
//!   `x-forwarded-client-cert` header (XFCC), written by a proxy in front that ended the client's
//!   TLS: exactly one header holding exactly one element, whose `Hash=` (hex SHA-256 of the
//!   leaf's DER) or `Cert=` (the leaf as URL-encoded PEM) names the certificate.
//!
//! Everything is bounded before it is decoded, and anything that is not exactly one readable
//! certificate is an error, never a guess at which one was meant.

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// The header a trusted proxy forwards the client certificate in.
pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

/// Longest URL-encoded PEM certificate read, in bytes. A leaf with a 4096-bit RSA key and the
/// usual extensions is about 2 KiB of DER, 4 KiB once PEM and percent-encoded; anything much
/// longer is refused before it is decoded.
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// Longest `x-forwarded-client-cert` value read, in bytes: one element with a `Cert=` and the
/// descriptive fields (`Subject`, `URI`, `DNS`, `By`) Envoy may add beside it.
pub const MAX_XFCC_BYTES: usize = 32 * 1024;

/// Why a request has no client certificate to check a binding against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CertificateError {
    /// No peer certificate and no (trusted) forwarded one.
    #[error("no client certificate")]
    Absent,
    /// The certificate or the forwarded header is longer than its limit.
    #[error("client certificate is too long")]
    TooLong,
    /// The URL-encoded PEM holds no certificate (bad percent-encoding, no PEM block, bad
    /// base64 inside it).
    #[error("client certificate is not URL-encoded PEM")]
    NotPem,
    /// More than one `x-forwarded-client-cert` header, or one with more than one element:
    /// several proxies' certificates, and nothing says which is the client's.
    #[error("more than one forwarded client certificate")]
    Several,
    /// The forwarded header does not follow its grammar (pairs `key=value` separated by `;`,
    /// values quoted where they hold a delimiter), holds `Hash` or `Cert` twice, a `Hash` that is
    /// not 64 hex digits, or a `Hash` and a `Cert` that name different certificates.
    #[error("forwarded client certificate is malformed")]
    MalformedForwarded,
}

/// The SHA-256 digest of a certificate's DER, the value `cnf["x5t#S256"]` carries
/// base64url-encoded (RFC 8705 §3.1).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Thumbprint([u8; 32]);

impl std::fmt::Debug for Thumbprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Thumbprint({})", self.encoded())
    }
}

impl Thumbprint {
    /// The thumbprint of the certificate whose DER is `der`.
    pub fn of_der(der: &[u8]) -> Thumbprint {
        let mut bytes = [0; 32];
        bytes.copy_from_slice(digest(&SHA256, der).as_ref());
        Thumbprint(bytes)
    }

    /// The thumbprint of the first certificate in `value`, URL-encoded PEM as Envoy writes a
    /// peer certificate and an XFCC `Cert=`. Other PEM sections before it (a key, say) are
    /// skipped; certificates after it (a chain) are not read.
    pub fn from_url_encoded_pem(value: &str) -> Result<Thumbprint, CertificateError> {
        if value.len() > MAX_CERTIFICATE_BYTES {
            return Err(CertificateError::TooLong);
        }
        if !well_formed_percent(value) {
            return Err(CertificateError::NotPem);
        }
        // Plain percent-decoding, not form decoding: a `+` of the base64 inside stays a `+`.
        let pem: Vec<u8> = percent_encoding::percent_decode_str(value).collect();
        let der = CertificateDer::from_pem_slice(&pem).map_err(|_| CertificateError::NotPem)?;
        Ok(Thumbprint::of_der(&der))
    }

    /// The thumbprint from an XFCC `Hash=` value: 64 hex digits, either case.
    fn from_hex(value: &str) -> Result<Thumbprint, CertificateError> {
        let digits = value.as_bytes();
        if digits.len() != 64 {
            return Err(CertificateError::MalformedForwarded);
        }
        let mut bytes = [0; 32];
        for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
            let high = hex_digit(pair[0]).ok_or(CertificateError::MalformedForwarded)?;
            let low = hex_digit(pair[1]).ok_or(CertificateError::MalformedForwarded)?;
            *byte = high << 4 | low;
        }
        Ok(Thumbprint(bytes))
    }

    /// The one certificate an `x-forwarded-client-cert` header names; `values` are every value
    /// of that header the request carried, in order. Exactly one value with exactly one
    /// element, and in it a `Hash` or a `Cert` (both: they must agree).
    pub fn from_forwarded(values: &[&str]) -> Result<Thumbprint, CertificateError> {
        let value = match values {
            [] => return Err(CertificateError::Absent),
            [one] => *one,
            _ => return Err(CertificateError::Several),
        };
        if value.len() > MAX_XFCC_BYTES {
            return Err(CertificateError::TooLong);
        }
        let mut hash = None;
        let mut cert = None;
        let mut pairs = Pairs::new(value);
        while let Some((key, field)) = pairs.next_pair()? {
            let slot = if key.eq_ignore_ascii_case("hash") {
                &mut hash
            } else if key.eq_ignore_ascii_case("cert") {
                &mut cert
            } else {
                continue;
            };
            if slot.replace(field).is_some() {
                return Err(CertificateError::MalformedForwarded);
            }
        }
        let from_hash = hash.as_deref().map(Thumbprint::from_hex).transpose()?;
        let from_cert = match cert.as_deref() {
            Some(cert) => Some(
                Thumbprint::from_url_encoded_pem(cert)
                    .map_err(|_| CertificateError::MalformedForwarded)?,
            ),
            None => None,
        };
        match (from_hash, from_cert) {
            (Some(a), Some(b)) if a != b => Err(CertificateError::MalformedForwarded),
            (Some(t), _) | (None, Some(t)) => Ok(t),
            (None, None) => Err(CertificateError::Absent),
        }
    }

    /// The client certificate of a request: from `x-forwarded-client-cert` (`forwarded`, every
    /// value of it) when `trust_forwarded` and the request carries that header, else from the
    /// transport's `peer` certificate. An untrusted forwarded header is never read: a client
    /// could write it.
    pub fn of_request(
        peer: Option<&str>,
        forwarded: &[&str],
        trust_forwarded: bool,
    ) -> Result<Thumbprint, CertificateError> {
        if trust_forwarded && !forwarded.is_empty() {
            return Thumbprint::from_forwarded(forwarded);
        }
        match peer {
            Some(peer) if !peer.is_empty() => Thumbprint::from_url_encoded_pem(peer),
            _ => Err(CertificateError::Absent),
        }
    }

    /// base64url without padding, as `cnf["x5t#S256"]` writes it.
    pub fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Whether `x5t_s256`, a token's `cnf["x5t#S256"]`, names this certificate: its base64url
    /// encoding, compared in constant time (a client learns nothing from how long a wrong
    /// thumbprint took to refuse).
    pub fn matches(&self, x5t_s256: &str) -> bool {
        verify_slices_are_equal(self.encoded().as_bytes(), x5t_s256.as_bytes()).is_ok()
    }
}

/// Whether every `%` in `value` starts a `%XX` escape: `percent_decode` passes a lone `%`
/// through, which would hide a truncated or mangled encoding.
fn well_formed_percent(value: &str) -> bool {
    let bytes = value.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let escape = bytes.get(i + 1..i + 3);
            if !escape.is_some_and(|e| e.iter().all(|&b| hex_digit(b).is_some())) {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// The `key=value` pairs of one XFCC value, read in order. The grammar Envoy writes: elements
/// separated by `,`, pairs by `;`, a value in double quotes when it holds `,`, `;` or `=`
/// (inside, `\"` and `\\` escape), otherwise bare. A `,` outside quotes starts a second element,
/// which is [`CertificateError::Several`].
struct Pairs<'a> {
    rest: &'a str,
    done: bool,
}

impl<'a> Pairs<'a> {
    fn new(value: &'a str) -> Self {
        Pairs {
            rest: value,
            done: false,
        }
    }

    /// The next pair, `None` after the last; any departure from the grammar is an error.
    fn next_pair(&mut self) -> Result<Option<(&'a str, String)>, CertificateError> {
        if self.done {
            return Ok(None);
        }
        let malformed = CertificateError::MalformedForwarded;
        let (key, after) = self.rest.split_once('=').ok_or(malformed)?;
        if !crate::auth::token::is_http_token(key) {
            return Err(malformed);
        }
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            unquote(quoted)?
        } else {
            let end = after.find([';', ',', '"', '=']).unwrap_or(after.len());
            (after[..end].to_owned(), &after[end..])
        };
        if value.is_empty() || value.chars().any(char::is_control) {
            return Err(malformed);
        }
        match after.as_bytes().first() {
            None => self.done = true,
            Some(b';') if after.len() > 1 => self.rest = &after[1..],
            Some(b',') => return Err(CertificateError::Several),
            Some(_) => return Err(malformed),
        }
        Ok(Some((key, value)))
    }
}

/// A quoted value's content up to its closing quote (`s` starts after the opening one), with
/// its escapes undone, and what follows the closing quote.
fn unquote(s: &str) -> Result<(String, &str), CertificateError> {
    let mut value = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &s[i + 1..])),
            '\\' => match chars.next() {
                Some((_, escaped @ ('"' | '\\'))) => value.push(escaped),
                _ => return Err(CertificateError::MalformedForwarded),
            },
            c => value.push(c),
        }
    }
    Err(CertificateError::MalformedForwarded)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A throw-away certificate: its PEM and its DER.
    fn certificate(name: &str) -> (String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .expect("params")
            .self_signed(&key)
            .expect("certificate");
        (cert.pem(), cert.der().to_vec())
    }

    /// Percent-encodes every byte but unreserved ones, as Envoy's URL-encoding does.
    fn url_encode(s: &str) -> String {
        const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
            .remove(b'-')
            .remove(b'.')
            .remove(b'_')
            .remove(b'~');
        percent_encoding::utf8_percent_encode(s, SET).to_string()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn thumbprint_is_base64url_sha256_of_the_der() {
        // RFC 4648 test vector style check: SHA-256 of the empty input.
        let empty = Thumbprint::of_der(b"");
        assert_eq!(
            empty.encoded(),
            "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU"
        );
        let (_, der) = certificate("a.test");
        let t = Thumbprint::of_der(&der);
        assert_eq!(t.encoded().len(), 43);
        assert!(!t.encoded().contains(['+', '/', '=']));
    }

    #[test]
    fn url_encoded_pem_decodes_to_the_first_certificate() {
        let (pem, der) = certificate("a.test");
        let (other_pem, _) = certificate("b.test");
        let want = Thumbprint::of_der(&der);
        let key_first =
            format!("-----BEGIN PRIVATE KEY-----\nMAA=\n-----END PRIVATE KEY-----\n{pem}");
        let cases: Vec<(&str, String, Result<Thumbprint, CertificateError>)> = vec![
            ("url-encoded", url_encode(&pem), Ok(want)),
            ("plain PEM reads as itself", pem.clone(), Ok(want)),
            (
                "chain: the leaf counts",
                url_encode(&format!("{pem}{other_pem}")),
                Ok(want),
            ),
            (
                "another section first is skipped",
                url_encode(&key_first),
                Ok(want),
            ),
            (
                "not PEM",
                url_encode("hello"),
                Err(CertificateError::NotPem),
            ),
            ("empty", String::new(), Err(CertificateError::NotPem)),
            (
                "bad base64 inside",
                url_encode("-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n"),
                Err(CertificateError::NotPem),
            ),
            (
                "lone percent",
                format!("{}%", url_encode(&pem)),
                Err(CertificateError::NotPem),
            ),
            (
                "bad escape",
                format!("%zz{}", url_encode(&pem)),
                Err(CertificateError::NotPem),
            ),
            // Over MAX_CERTIFICATE_BYTES (16 KiB): refused before anything is decoded.
            (
                "too long",
                "A".repeat(MAX_CERTIFICATE_BYTES + 1),
                Err(CertificateError::TooLong),
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(Thumbprint::from_url_encoded_pem(&input), want, "{name}");
        }
    }

    #[test]
    fn forwarded_header_grammar() {
        // What a trusted header (trust_forwarded_client_cert) must look like to be read.
        let (pem, der) = certificate("a.test");
        let (other_pem, other_der) = certificate("b.test");
        let want = Thumbprint::of_der(&der);
        let hash = hex(&der_digest(&der));
        let other_hash = hex(&der_digest(&other_der));
        let cert = url_encode(&pem);
        let other_cert = url_encode(&other_pem);
        let subject = r#"Subject="/C=US/ST=CA/O=a\"b;c,d=e/CN=Test Client""#;
        let malformed = Err(CertificateError::MalformedForwarded);
        let cases: Vec<(&str, String, Result<Thumbprint, CertificateError>)> = vec![
            ("hash", format!("Hash={hash}"), Ok(want)),
            (
                "hash in upper case",
                format!("Hash={}", hash.to_uppercase()),
                Ok(want),
            ),
            ("cert", format!("Cert={cert}"), Ok(want)),
            ("quoted cert", format!("Cert=\"{cert}\""), Ok(want)),
            ("key case", format!("hash={hash}"), Ok(want)),
            (
                "Envoy's fields around it, quoted subject with delimiters",
                format!(
                    "By=spiffe://a/b;Hash={hash};{subject};URI=spiffe://c;DNS=x.test;DNS=y.test"
                ),
                Ok(want),
            ),
            (
                "hash and cert agree",
                format!("Hash={hash};Cert={cert}"),
                Ok(want),
            ),
            (
                "hash and cert disagree",
                format!("Hash={other_hash};Cert={cert}"),
                malformed,
            ),
            (
                "two elements",
                format!("Hash={hash},Hash={other_hash}"),
                Err(CertificateError::Several),
            ),
            (
                "second element after a quoted value",
                format!("{subject};Hash={hash},Cert={other_cert}"),
                Err(CertificateError::Several),
            ),
            ("hash twice", format!("Hash={hash};Hash={hash}"), malformed),
            ("cert twice", format!("Cert={cert};Cert={cert}"), malformed),
            ("short hash", format!("Hash={}", &hash[..62]), malformed),
            ("hash not hex", format!("Hash={}xx", &hash[..62]), malformed),
            ("cert not PEM", "Cert=abc".into(), malformed),
            (
                "neither hash nor cert",
                "By=spiffe://a;URI=spiffe://c".into(),
                Err(CertificateError::Absent),
            ),
            ("empty", String::new(), malformed),
            ("no equals", "Hash".into(), malformed),
            ("empty value", "Hash=".into(), malformed),
            ("empty key", format!("={hash}"), malformed),
            ("trailing semicolon", format!("Hash={hash};"), malformed),
            ("empty pair", format!("By=a;;Hash={hash}"), malformed),
            (
                "unterminated quote",
                format!("Subject=\"abc;Hash={hash}"),
                malformed,
            ),
            (
                "bad escape in quotes",
                format!("Subject=\"a\\nb\";Hash={hash}"),
                malformed,
            ),
            (
                "text after a quoted value",
                format!("Subject=\"a\"b;Hash={hash}"),
                malformed,
            ),
            (
                "quote inside a bare value",
                format!("By=a\"b;Hash={hash}"),
                malformed,
            ),
            (
                "space before a pair",
                format!("By=a; Hash={hash}"),
                malformed,
            ),
            (
                "control character",
                format!("By=a\tb;Hash={hash}"),
                malformed,
            ),
            // Over MAX_XFCC_BYTES (32 KiB): refused before it is parsed.
            (
                "too long",
                format!("Hash={hash};By={}", "a".repeat(MAX_XFCC_BYTES)),
                Err(CertificateError::TooLong),
            ),
        ];
        for (name, input, want) in cases {
            assert_eq!(
                Thumbprint::from_forwarded(&[&input]),
                want,
                "{name}: {input}"
            );
        }
        let one = format!("Hash={hash}");
        assert_eq!(
            Thumbprint::from_forwarded(&[&one, &one]),
            Err(CertificateError::Several),
            "two headers"
        );
        assert_eq!(
            Thumbprint::from_forwarded(&[]),
            Err(CertificateError::Absent)
        );
    }

    fn der_digest(der: &[u8]) -> Vec<u8> {
        digest(&SHA256, der).as_ref().to_vec()
    }

    #[test]
    fn the_request_certificate_comes_from_one_place() {
        let (pem, der) = certificate("peer.test");
        let (_, forwarded_der) = certificate("forwarded.test");
        let peer = url_encode(&pem);
        let xfcc = format!("Hash={}", hex(&der_digest(&forwarded_der)));
        let from_peer = Ok(Thumbprint::of_der(&der));
        let from_xfcc = Ok(Thumbprint::of_der(&forwarded_der));
        let absent = Err(CertificateError::Absent);
        type Case<'a> = (
            &'a str,
            Option<&'a str>,
            Vec<&'a str>,
            bool,
            Result<Thumbprint, CertificateError>,
        );
        let cases: Vec<Case> = vec![
            ("peer only", Some(&peer), vec![], false, from_peer),
            (
                "peer, forwarded untrusted: ignored",
                Some(&peer),
                vec![&xfcc],
                false,
                from_peer,
            ),
            (
                "forwarded only, untrusted",
                None,
                vec![&xfcc],
                false,
                absent,
            ),
            (
                "forwarded only, trusted",
                None,
                vec![&xfcc],
                true,
                from_xfcc,
            ),
            (
                "both, trusted: the forwarded one",
                Some(&peer),
                vec![&xfcc],
                true,
                from_xfcc,
            ),
            ("peer only, trusted", Some(&peer), vec![], true, from_peer),
            (
                "trusted, two headers",
                Some(&peer),
                vec![&xfcc, &xfcc],
                true,
                Err(CertificateError::Several),
            ),
            ("nothing", None, vec![], true, absent),
            ("empty peer", Some(""), vec![], false, absent),
        ];
        for (name, peer, forwarded, trust, want) in cases {
            assert_eq!(
                Thumbprint::of_request(peer, &forwarded, trust),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn matches_only_the_exact_encoding() {
        let (_, der) = certificate("a.test");
        let t = Thumbprint::of_der(&der);
        let encoded = t.encoded();
        let (_, other) = certificate("b.test");
        let padded = format!("{encoded}=");
        let standard = base64::engine::general_purpose::STANDARD_NO_PAD.encode(der_digest(&der));
        let other = Thumbprint::of_der(&other).encoded();
        let in_hex = hex(&der_digest(&der));
        let cases: Vec<(&str, &str, bool)> = vec![
            ("equal", &encoded, true),
            ("another certificate", &other, false),
            ("padded", &padded, false),
            ("prefix", &encoded[..42], false),
            ("empty", "", false),
            ("hex", &in_hex, false),
        ];
        for (name, x5t, want) in cases {
            assert_eq!(t.matches(x5t), want, "{name}");
        }
        // Standard base64 differs from base64url only where `+` or `/` appear.
        if standard != encoded {
            assert!(!t.matches(&standard), "standard alphabet");
        }
    }
}
