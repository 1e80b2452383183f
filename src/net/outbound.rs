//! Every request scopegate makes to another server (OIDC discovery, JWKS, token introspection,
//! `scopegate explain`'s one-off fetch) goes through a [`Client`] built here, so one rule decides what may be fetched
//! and which certificate authorities are trusted for it.
//!
//! Invariants:
//! - Keys travel over https, or over plain http to a loopback host only (`127.0.0.0/8`, `::1`,
//!   `localhost`), unless the issuer's configuration says `allow_insecure_http = true`: anyone
//!   on the path of a plain-http fetch could substitute their own keys. The configuration
//!   refuses such a URL at start-up, and [`Client::get`] refuses it again, so a URL learnt at run
//!   time (a discovery document's `jwks_uri`) obeys the same rule.
//! - TLS is verified against the platform's roots, the platform's roots plus a PEM bundle
//!   (`ca_file`), or that bundle alone (`ca_file_only`): [`Trust`]. The bundle is read and
//!   checked when the configuration is compiled, so an unusable file is a configuration error,
//!   and its contents are part of [`FetchPolicy`]'s equality, so a reload that changes them
//!   counts as a changed issuer.
//! - Redirects are never followed, and every fetch is bounded in time (connection included).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

/// The certificates of a `ca_file`, read and checked once. Equal when read from the same path
/// with the same certificates, so a renewed file makes a different bundle.
#[derive(Clone, PartialEq, Eq)]
pub struct CaBundle {
    path: PathBuf,
    certificates: Vec<CertificateDer<'static>>,
}

impl std::fmt::Debug for CaBundle {
    /// The path and the count: the certificates' bytes would only bury the configuration's
    /// debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle")
            .field("path", &self.path)
            .field("certificates", &self.certificates.len())
            .finish()
    }
}

/// Why a `ca_file` cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct CaFileError {
    /// The file.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl CaBundle {
    /// Reads the PEM certificates in `path`: at least one, each usable as a trust anchor.
    pub fn read(path: &Path) -> Result<CaBundle, CaFileError> {
        let error = |reason: String| CaFileError {
            path: path.display().to_string(),
            reason,
        };
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(e.to_string()))?;
        if certificates.is_empty() {
            return Err(error("no PEM certificate in it".into()));
        }
        // The same check the TLS handshake's verifier makes of its roots, made now so that a
        // certificate that could never anchor a chain fails the configuration, not every fetch.
        let mut roots = rustls::RootCertStore::empty();
        for (i, certificate) in certificates.iter().enumerate() {
            roots
                .add(certificate.clone())
                .map_err(|e| error(format!("certificate {} is not usable as a CA: {e}", i + 1)))?;
        }
        Ok(CaBundle {
            path: path.to_path_buf(),
            certificates,
        })
    }

    /// The file it was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many certificates it holds.
    pub fn len(&self) -> usize {
        self.certificates.len()
    }

    /// Whether it holds none (never true of a bundle [`CaBundle::read`] returned).
    pub fn is_empty(&self) -> bool {
        self.certificates.is_empty()
    }

    fn reqwest_certificates(&self) -> Result<Vec<reqwest::Certificate>, reqwest::Error> {
        self.certificates
            .iter()
            .map(|der| reqwest::Certificate::from_der(der))
            .collect()
    }
}

/// Which certificate authorities a fetch's TLS server may chain to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Trust {
    /// The platform's roots (and `SSL_CERT_FILE`, where the platform reads it).
    #[default]
    Platform,
    /// The platform's roots and a `ca_file`'s.
    PlatformAnd(CaBundle),
    /// A `ca_file`'s roots alone (`ca_file_only = true`).
    Only(CaBundle),
}

impl Trust {
    /// The `ca_file`, if any.
    pub fn ca_file(&self) -> Option<&CaBundle> {
        match self {
            Trust::Platform => None,
            Trust::PlatformAnd(ca) | Trust::Only(ca) => Some(ca),
        }
    }
}

impl std::fmt::Display for Trust {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Trust::Platform => write!(f, "platform roots"),
            Trust::PlatformAnd(ca) => write!(
                f,
                "platform roots and {} CA(s) from {}",
                ca.len(),
                ca.path.display()
            ),
            Trust::Only(ca) => write!(f, "only the {} CA(s) from {}", ca.len(), ca.path.display()),
        }
    }
}

/// What one issuer's fetches may reach and whom they trust.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchPolicy {
    /// Plain http to hosts that are not loopback is allowed.
    pub allow_insecure_http: bool,
    /// The roots TLS servers are verified against.
    pub trust: Trust,
}

/// A URL the [`FetchPolicy`] refuses to fetch.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "{url} is plain http to a host that is not loopback, where anyone on the path could \
     substitute the keys; use https, or set allow_insecure_http = true for this issuer"
)]
pub struct InsecureUrl {
    /// The refused URL.
    pub url: String,
}

/// Whether `url` names a loopback host: an address in `127.0.0.0/8`, `::1`, or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    // The URL parser has already normalised addresses (`127.1` is `127.0.0.1`, IPv6 in
    // brackets and compressed), so what parses as an address is one.
    match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        // 127.0.0.0/8, and ::1 alone (not an IPv4-mapped loopback address).
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

impl FetchPolicy {
    /// Whether `url` may be fetched: https, or http to a loopback host, or http anywhere when
    /// `allow_insecure_http` is set. Nothing else (no other scheme) is ever fetched.
    pub fn permits(&self, url: &Url) -> Result<(), InsecureUrl> {
        let permitted = match url.scheme() {
            "https" => true,
            "http" => self.allow_insecure_http || is_loopback(url),
            _ => false,
        };
        if permitted {
            Ok(())
        } else {
            Err(InsecureUrl {
                url: url.to_string(),
            })
        }
    }

    /// A client that fetches under this policy: its own connection pool and roots, at most
    /// `timeout` per request (connection included), no redirects.
    pub fn client(&self, timeout: Duration) -> Result<Client, reqwest::Error> {
        let builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("scopegate/", env!("CARGO_PKG_VERSION")));
        let builder = match &self.trust {
            Trust::Platform => builder,
            Trust::PlatformAnd(ca) => builder.tls_certs_merge(ca.reqwest_certificates()?),
            Trust::Only(ca) => builder.tls_certs_only(ca.reqwest_certificates()?),
        };
        Ok(Client {
            http: builder.build()?,
            policy: self.clone(),
        })
    }
}

/// Why [`Client::get`] got no response.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// The policy refuses the URL; nothing was sent.
    #[error(transparent)]
    Refused(#[from] InsecureUrl),
    /// Transport failure, timeout, or a TLS server no trusted root vouches for.
    #[error(transparent)]
    Http(#[from] reqwest::Error),
}

/// The only way scopegate sends a request to another server: every URL is checked against the
/// [`FetchPolicy`] the client was built for. Cheap to clone (one shared pool).
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    policy: FetchPolicy,
}

impl Client {
    /// The policy this client fetches under.
    pub fn policy(&self) -> &FetchPolicy {
        &self.policy
    }

    /// GETs `url` asking for JSON, if the policy permits it. The response is returned whatever
    /// its status; redirects come back as responses, never followed.
    pub async fn get(&self, url: &Url) -> Result<reqwest::Response, GetError> {
        self.policy.permits(url)?;
        Ok(self
            .http
            .get(url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .send()
            .await?)
    }

    /// POSTs `body` (already `application/x-www-form-urlencoded`) to `url` asking for JSON, if
    /// the policy permits it, with `authorization` as the `Authorization` header when given
    /// (marked sensitive, so no HTTP layer logs it). The response is returned whatever its
    /// status; redirects come back as responses, never followed.
    pub async fn post_form(
        &self,
        url: &Url,
        body: String,
        authorization: Option<String>,
    ) -> Result<reqwest::Response, GetError> {
        self.policy.permits(url)?;
        let mut request = self
            .http
            .post(url.clone())
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        if let Some(value) = authorization
            && let Ok(mut value) = HeaderValue::from_str(&value)
        {
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        Ok(request.body(body).send().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key source passes this policy (a `jwks_uri`, configured or named by a discovery
    /// document, and the issuer discovery reads): plain http only to a loopback host, or to
    /// any with `allow_insecure_http`.
    #[test]
    fn plain_http_is_refused_but_for_loopback_hosts_or_when_allowed() {
        let strict = FetchPolicy::default();
        let lax = FetchPolicy {
            allow_insecure_http: true,
            ..FetchPolicy::default()
        };
        for (url, strictly, laxly) in [
            ("https://idp.example.com/keys", true, true),
            ("https://127.0.0.1/keys", true, true),
            ("http://127.0.0.1:8081/keys", true, true),
            ("http://127.8.9.10/keys", true, true),
            ("http://[::1]:8081/keys", true, true),
            ("http://localhost:8081/keys", true, true),
            ("http://LOCALHOST/keys", true, true),
            ("http://idp.example.com/keys", false, true),
            ("http://issuer:8081/keys", false, true),
            ("http://10.0.0.1/keys", false, true),
            ("http://[::2]/keys", false, true),
            ("http://[::ffff:127.0.0.1]/keys", false, true),
            ("http://localhost.example.com/keys", false, true),
            ("http://128.0.0.1/keys", false, true),
            ("ftp://127.0.0.1/keys", false, false),
            ("file:///etc/keys", false, false),
        ] {
            let url: Url = url.parse().expect("url");
            assert_eq!(strict.permits(&url).is_ok(), strictly, "{url}");
            assert_eq!(lax.permits(&url).is_ok(), laxly, "{url} allowed");
        }
    }

    // Its certificates come from the development generator (feature `dev`).
    #[cfg(feature = "dev")]
    #[test]
    fn ca_files_are_checked_when_read() {
        let dir = tempfile::tempdir().expect("dir");
        let certs = crate::dev::certs::generate(dir.path(), &["localhost".into()]).expect("certs");
        let ca = CaBundle::read(&certs.ca_cert).expect("a CA bundle");
        assert_eq!(ca.len(), 1);
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "no certificates here\n").expect("write");
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        for (path, reason) in [
            (dir.path().join("missing.pem"), "No such file"),
            (empty, "no PEM certificate"),
            (garbage, "not usable as a CA"),
        ] {
            let error = CaBundle::read(&path).expect_err("refused").to_string();
            assert!(
                error.contains(&path.display().to_string()) && error.contains(reason),
                "{error}"
            );
        }
    }
}
