//! Throw-away certificates for the TLS demo and tests. **Not for production.**
//!
//! One run makes a fresh CA and, signed by it, a server certificate for the given host names
//! and addresses and a client certificate (for Envoy, when scopegate requires one). The CA's
//! private key is never written: nothing more can be signed with it, so the set cannot be
//! extended or reused by mistake.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The host names and addresses the server certificate names by default: loopback, and the
/// service name of the Docker stack.
pub const DEFAULT_HOSTS: [&str; 4] = ["localhost", "127.0.0.1", "::1", "scopegate"];

/// The files one run writes into its directory.
#[derive(Debug, Clone)]
pub struct DevCerts {
    /// The CA certificate: give it to clients (Envoy) to trust the server, and to scopegate as
    /// `client_ca_file`.
    pub ca_cert: PathBuf,
    /// The server's certificate chain and key: scopegate's `cert_file` and `key_file`.
    pub server_cert: PathBuf,
    /// See `server_cert`.
    pub server_key: PathBuf,
    /// A client certificate and key signed by the same CA (Envoy's, for mTLS).
    pub client_cert: PathBuf,
    /// See `client_cert`.
    pub client_key: PathBuf,
}

/// Why the certificates could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DevCertsError {
    /// Key generation or signing failed, or a host name is not valid in a certificate.
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    /// A file could not be written.
    #[error("{path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

fn leaf(
    names: Vec<String>,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> Result<(String, String), DevCertsError> {
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Makes a CA, a server certificate for `hosts`, and a client certificate, and writes them into
/// `dir` (created if missing; keys with mode 0600).
pub fn generate(dir: &Path, hosts: &[String]) -> Result<DevCerts, DevCertsError> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "scopegate development CA (throw-away)");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca, ca_key);
    let (server_cert, server_key) = leaf(
        hosts.to_vec(),
        "scopegate",
        ExtendedKeyUsagePurpose::ServerAuth,
        &issuer,
    )?;
    let (client_cert, client_key) = leaf(
        vec!["envoy".to_string()],
        "envoy",
        ExtendedKeyUsagePurpose::ClientAuth,
        &issuer,
    )?;

    let write = |name: &str, text: &str, private: bool| -> Result<PathBuf, DevCertsError> {
        let path = dir.join(name);
        let io = |source| DevCertsError::Write {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        std::fs::write(&path, text).map_err(io)?;
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        #[cfg(not(unix))]
        let _ = private;
        Ok(path)
    };
    Ok(DevCerts {
        ca_cert: write("ca.crt", &ca_cert.pem(), false)?,
        server_cert: write("server.crt", &server_cert, false)?,
        server_key: write("server.key", &server_key, true)?,
        client_cert: write("client.crt", &client_cert, false)?,
        client_key: write("client.key", &client_key, true)?,
    })
}
