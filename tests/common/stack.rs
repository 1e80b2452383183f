//! The whole path as users run it: a real Envoy binary with the repository's `envoy/envoy.yaml`,
//! scopegate with `demo/scopegate.toml` (both with addresses and ports substituted), the demo
//! upstream and the two development issuers (RS256 and EdDSA), all on loopback.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scopegate::dev::issuer::{DevAlgorithm, DevIssuer, Mint};
use tokio::net::TcpListener;

use super::{clear_scopegate_env, eventually, watchdog};

/// The audience of `demo/scopegate.toml`.
pub const DEMO_AUDIENCE: &str = "https://api.example.com";

/// Valid claims from the test issuer for the demo configuration's audience, for a stack started
/// with [`Stack::start_with_issuer`]`(ISSUER, …)`.
pub fn demo_claims(scope: &str) -> serde_json::Value {
    let mut c = super::claims(scope);
    c["aud"] = serde_json::json!(DEMO_AUDIENCE);
    c
}

/// A token from `issuer` for the demo audience, subject `e2e-user`, valid for ten minutes, with
/// `scope` and the claims of `extra` (which override the usual ones; `"sub": null` for a token
/// without a subject).
pub fn demo_token(
    issuer: &DevIssuer,
    scope: &str,
    extra: serde_json::Map<String, serde_json::Value>,
) -> String {
    issuer
        .mint(&Mint {
            subject: "e2e-user".into(),
            audience: DEMO_AUDIENCE.into(),
            scope: scope.into(),
            expires_in: 600,
            extra,
        })
        .expect("mint")
}

/// Where the Envoy binary is: `SCOPEGATE_ENVOY_BIN`, else `.venv/bin/envoy` (what
/// `scripts/install-envoy` installs), else `envoy` on `PATH`. Missing Envoy fails the test.
pub fn envoy_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SCOPEGATE_ENVOY_BIN") {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/envoy");
    if venv.is_file() {
        return venv;
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("envoy"))
            .find(|candidate| candidate.is_file())
    });
    on_path.unwrap_or_else(|| {
        panic!(
            "no Envoy binary found: run scripts/install-envoy (or set SCOPEGATE_ENVOY_BIN). \
             End-to-end tests never skip."
        )
    })
}

/// A fresh directory for one stack's configuration, keys and logs; removed when the stack is
/// dropped, unless a test failed (then the path is printed and the logs stay).
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("scopegate-e2e-")
        .tempdir()
        .expect("scratch dir")
}

/// How Envoy reaches scopegate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hop {
    /// Plaintext TCP (`envoy/envoy.yaml`).
    Tcp,
    /// Mutual TLS over TCP (`envoy/envoy-tls.yaml`).
    Mtls,
    /// A Unix socket (`envoy/envoy-uds.yaml`).
    Unix,
    /// Plaintext TCP to scopegate, and clients that must present a certificate to Envoy, which
    /// passes it on in each Check (`envoy/envoy-client-mtls.yaml`).
    ClientMtls,
}

/// Where `demo/scopegate.toml` expects the development issuers.
const DEMO_RS256_ISSUER: &str = "http://127.0.0.1:8081/";
const DEMO_RS256_JWKS: &str = "http://127.0.0.1:8081/.well-known/jwks.json";
pub const DEMO_EDDSA_ISSUER: &str = "http://127.0.0.1:8082/";

/// A development issuer serving on loopback, and a copy of it for minting.
pub async fn dev_issuer(dir: &Path, alg: DevAlgorithm) -> (DevIssuer, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind issuer");
    let url = format!("http://{}/", listener.local_addr().expect("addr"));
    let key_file = dir.join(format!("{}-key.der", alg.name()));
    let serving = DevIssuer::load_or_create_for(&key_file, &url, alg).expect("issuer key");
    tokio::spawn(serving.serve(listener, false, std::future::pending()));
    let minting = DevIssuer::load_or_create_for(&key_file, &url, alg).expect("same key");
    (minting, url)
}

/// Marks a `gate_extra` that is a whole configuration, used as it stands.
const FULL: &str = "# whole configuration\n";

/// Replaces `from` with `to`, insisting that `from` occurs exactly `count` times, so that a
/// change to envoy/envoy.yaml or demo/scopegate.toml that the tests would silently stop
/// exercising fails loudly.
pub fn substitute(text: &str, from: &str, to: &str, count: usize) -> String {
    let found = text.matches(from).count();
    assert_eq!(
        found, count,
        "the repository's file should contain {from:?} {count} time(s)"
    );
    text.replace(from, to)
}

/// `yaml` (the shipped `envoy/envoy.yaml` or `envoy-http.yaml`) with a second access log
/// after the shipped one: a file at `path`, one line per request in Envoy's text `format` (a
/// command such as `%RESPONSE_CODE%` and text; the line's end is added).
pub fn with_access_log(yaml: &str, path: &Path, format: &str) -> String {
    let shipped = "                      \"@type\": \
                   type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog\n";
    let format = format.replace('\\', "\\\\").replace('"', "\\\"");
    let added = format!(
        "{shipped}                  - name: envoy.access_loggers.file\n\
         \x20                   typed_config:\n\
         \x20                     \"@type\": \
         type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n\
         \x20                     path: {}\n\
         \x20                     log_format:\n\
         \x20                       text_format_source:\n\
         \x20                         inline_string: \"{format}\\n\"\n",
        path.display()
    );
    substitute(yaml, shipped, &added, 1)
}

/// The scopegate binary as users run it (`serve --config FILE`), on a fixed loopback address so
/// that it can be killed and started again where Envoy expects it. Killed on drop.
struct Gate {
    child: Child,
}

impl Gate {
    /// Starts the binary with `config`, without any of the issuer environment overrides.
    fn start(listen: &str, config: &Path, log: &Path) -> Gate {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("scopegate log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_scopegate"));
        clear_scopegate_env(&mut command);
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("SCOPEGATE_LISTEN", listen)
            // The demo file's fixed metrics port would collide between stacks run side by side.
            .env("SCOPEGATE_METRICS_LISTEN", "127.0.0.1:0");
        let child = command
            // Decision lines too: the e2e tests join them to Envoy's access log. The start-up
            // line (scopegate::serve::server) gives the address the OS chose.
            .env(
                "RUST_LOG",
                "warn,scopegate::decision=info,scopegate::serve::server=info",
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("start scopegate");
        watchdog::child_started(child.id(), "scopegate");
        Gate { child }
    }

    /// The address it listens on, from its start-up line in `log` (the last one: a restarted
    /// process appends to the same log).
    async fn bound_address(&mut self, log: &Path) -> String {
        let serving = || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .lines()
                .rev()
                .filter(|line| line.contains("scopegate serving"))
                .find_map(super::binary::listen_address)
        };
        eventually("scopegate's start-up line", Duration::from_secs(20), || {
            if let Ok(Some(exit)) = self.child.try_wait() {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("scopegate exited ({exit}) before serving:\n{log}");
            }
            std::future::ready(serving().is_some())
        })
        .await;
        serving().expect("the start-up line")
    }

    /// SIGKILL: no drain, no goodbye; the kernel closes every connection at once.
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        watchdog::child_ended(self.child.id());
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The running stack. Envoy is killed on drop.
pub struct Stack {
    /// Envoy's HTTP listener.
    pub url: String,
    /// Envoy's admin interface.
    pub admin: String,
    issuer: Option<DevIssuer>,
    /// The demo's second issuer, signing EdDSA.
    eddsa_issuer: DevIssuer,
    gate: Gate,
    /// Where scopegate listens: `IP:PORT` or `unix:PATH`.
    gate_listen: String,
    gate_config: PathBuf,
    gate_log: PathBuf,
    envoy: Child,
    envoy_log: PathBuf,
    /// HTTP client without proxies.
    pub http: reqwest::Client,
    /// Configuration, keys and logs; `None` once kept for a failed test.
    dir: Option<tempfile::TempDir>,
}

impl Stack {
    /// The stack with the development issuer (in-process) as the token issuer.
    pub async fn start() -> Stack {
        Stack::start_with_gate_config("").await
    }

    /// [`Stack::start`], with `extra` top-level TOML keys put before scopegate's demo
    /// configuration (for tests that need other limits: `server = { idle_timeout_seconds = 1 }`).
    pub async fn start_with_gate_config(extra: &str) -> Stack {
        let dir = scratch_dir();
        let (issuer, issuer_url) = dev_issuer(dir.path(), DevAlgorithm::Rs256).await;
        let jwks_uri = format!("{issuer_url}.well-known/jwks.json");
        let config = format!("{extra}\n{}", demo_config(&issuer_url, &jwks_uri));
        Stack::launch(dir, Some(issuer), config, Hop::Tcp).await
    }

    /// [`Stack::start`] with `rules` (`[[rules]]` entries, given the RS256 issuer's URL)
    /// appended to the demo configuration, after its own rules.
    pub async fn start_with_rules(rules: impl FnOnce(&str) -> String) -> Stack {
        let dir = scratch_dir();
        let (issuer, issuer_url) = dev_issuer(dir.path(), DevAlgorithm::Rs256).await;
        let jwks_uri = format!("{issuer_url}.well-known/jwks.json");
        let config = format!(
            "{}
{}",
            demo_config(&issuer_url, &jwks_uri),
            rules(&issuer_url)
        );
        Stack::launch(dir, Some(issuer), config, Hop::Tcp).await
    }

    /// [`Stack::start`] with Envoy reaching scopegate through a Unix socket:
    /// `envoy/envoy-uds.yaml`, and scopegate listening on `unix:PATH`.
    pub async fn start_uds() -> Stack {
        let dir = scratch_dir();
        let (issuer, issuer_url) = dev_issuer(dir.path(), DevAlgorithm::Rs256).await;
        let jwks_uri = format!("{issuer_url}.well-known/jwks.json");
        let config = demo_config(&issuer_url, &jwks_uri);
        Stack::launch(dir, Some(issuer), config, Hop::Unix).await
    }

    /// [`Stack::start`] with Envoy talking to scopegate over mutual TLS: `envoy/envoy-tls.yaml`,
    /// and the demo configuration with a `[tls]` table requiring client certificates, all from
    /// a throw-away CA.
    pub async fn start_mtls() -> Stack {
        let dir = scratch_dir();
        let (issuer, issuer_url) = dev_issuer(dir.path(), DevAlgorithm::Rs256).await;
        let jwks_uri = format!("{issuer_url}.well-known/jwks.json");
        let hosts: Vec<String> = scopegate::dev::certs::DEFAULT_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect();
        let certs = scopegate::dev::certs::generate(&dir.path().join("certs"), &hosts)
            .expect("certificates");
        let config = format!(
            "{}\n[tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\n",
            demo_config(&issuer_url, &jwks_uri),
            certs.server_cert.display().to_string(),
            certs.server_key.display().to_string(),
            certs.ca_cert.display().to_string(),
        );
        Stack::launch(dir, Some(issuer), config, Hop::Mtls).await
    }

    /// [`Stack::start`] with Envoy requiring a client certificate from every client and passing
    /// it to scopegate: `envoy/envoy-client-mtls.yaml`, with a throw-away CA, Envoy's server
    /// certificate and one client certificate (`certs/client.crt`, which [`Stack::http`]
    /// presents; [`Stack::certificate_der`] reads it), and `extra` top-level keys before
    /// the demo configuration.
    pub async fn start_client_mtls(extra: &str) -> Stack {
        let dir = scratch_dir();
        let (issuer, issuer_url) = dev_issuer(dir.path(), DevAlgorithm::Rs256).await;
        let jwks_uri = format!("{issuer_url}.well-known/jwks.json");
        let hosts: Vec<String> = scopegate::dev::certs::DEFAULT_HOSTS
            .iter()
            .map(|h| h.to_string())
            .collect();
        scopegate::dev::certs::generate(&dir.path().join("certs"), &hosts).expect("certificates");
        let config = format!("{extra}\n{}", demo_config(&issuer_url, &jwks_uri));
        Stack::launch(dir, Some(issuer), config, Hop::ClientMtls).await
    }

    /// The DER of the certificate in `certs/{file}` of a [`Stack::start_client_mtls`] stack:
    /// `client.crt` (the one [`Stack::http`] presents), `server.crt` (Envoy's).
    pub fn certificate_der(&self, file: &str) -> Vec<u8> {
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let dir = self.dir.as_ref().expect("the stack's directory");
        CertificateDer::from_pem_file(dir.path().join("certs").join(file))
            .expect("a PEM certificate")
            .to_vec()
    }

    /// The stack trusting tokens of `issuer` with keys from `jwks_uri` (for tests that control
    /// the key set themselves) in place of the demo's RS256 issuer; [`Stack::token`] is then
    /// unavailable.
    pub async fn start_with_issuer(issuer: &str, jwks_uri: &str) -> Stack {
        Stack::start_with_issuer_and(issuer, jwks_uri, "").await
    }

    /// [`Stack::start_with_issuer`], with `extra` top-level TOML keys put before the demo
    /// configuration (`server = { worker_threads = 1 }`).
    pub async fn start_with_issuer_and(issuer: &str, jwks_uri: &str, extra: &str) -> Stack {
        let config = format!("{extra}\n{}", demo_config(issuer, jwks_uri));
        Stack::launch(scratch_dir(), None, config, Hop::Tcp).await
    }

    /// The stack with the development issuer available for tokens, but scopegate running
    /// `config` as it stands (no demo file): for configurations that list their own
    /// `[[issuers]]`. `config` is given the development issuer's URL and JWKS URL.
    pub async fn start_with_config(config: impl FnOnce(&str, &str) -> String) -> Stack {
        let dir = scratch_dir();
        let (issuer, issuer_url) = dev_issuer(dir.path(), DevAlgorithm::Rs256).await;
        let jwks_uri = format!("{issuer_url}.well-known/jwks.json");
        let text = config(&issuer_url, &jwks_uri);
        Stack::launch(dir, Some(issuer), format!("{FULL}{text}"), Hop::Tcp).await
    }

    /// [`Stack::start_with_config`], with Envoy running the repository's `envoy/envoy.yaml` as
    /// `envoy` changes it (after the addresses are substituted): for tests that need what the
    /// shipped file leaves out, such as an access log of their own.
    pub async fn start_with_config_and_envoy(
        config: impl FnOnce(&str, &str) -> String,
        envoy: impl FnOnce(String) -> String,
    ) -> Stack {
        let dir = scratch_dir();
        let (issuer, issuer_url) = dev_issuer(dir.path(), DevAlgorithm::Rs256).await;
        let jwks_uri = format!("{issuer_url}.well-known/jwks.json");
        let text = config(&issuer_url, &jwks_uri);
        let config = format!("{FULL}{text}");
        Stack::launch_edited(dir, Some(issuer), config, Hop::Tcp, envoy).await
    }

    /// [`Stack::start_with_gate_config`], with Envoy's configuration (the repository's, its
    /// addresses already substituted) changed by `envoy` before Envoy starts: for tests of
    /// what a user adds to it (`allowed_headers` lines).
    pub async fn start_with_gate_config_and_envoy(
        extra: &str,
        envoy: impl FnOnce(String) -> String,
    ) -> Stack {
        let dir = scratch_dir();
        let (issuer, issuer_url) = dev_issuer(dir.path(), DevAlgorithm::Rs256).await;
        let jwks_uri = format!("{issuer_url}.well-known/jwks.json");
        let config = format!("{extra}\n{}", demo_config(&issuer_url, &jwks_uri));
        Stack::launch_edited(dir, Some(issuer), config, Hop::Tcp, envoy).await
    }

    async fn launch(
        dir: tempfile::TempDir,
        issuer: Option<DevIssuer>,
        gate_config: String,
        hop: Hop,
    ) -> Stack {
        Stack::launch_edited(dir, issuer, gate_config, hop, |yaml| yaml).await
    }

    async fn launch_edited(
        dir: tempfile::TempDir,
        issuer: Option<DevIssuer>,
        gate_config: String,
        hop: Hop,
        envoy_edit: impl FnOnce(String) -> String,
    ) -> Stack {
        watchdog::arm();
        // The demo's second issuer (EdDSA, found by discovery) runs in every stack.
        let (eddsa_issuer, eddsa_url) = dev_issuer(dir.path(), DevAlgorithm::EdDsa).await;
        let gate_config = match gate_config.strip_prefix(FULL) {
            Some(full) => full.to_string(),
            None => substitute(&gate_config, DEMO_EDDSA_ISSUER, &eddsa_url, 1),
        };

        // Demo upstream.
        let upstream_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let upstream_port = upstream_listener.local_addr().expect("addr").port();
        tokio::spawn(scopegate::dev::demo::serve(
            upstream_listener,
            std::future::pending(),
        ));

        // scopegate, on a port the OS chooses at bind time (read back from its start-up line);
        // it keeps that address when restarted.
        let socket = dir.path().join("authz.sock");
        let gate_listen = match hop {
            Hop::Unix => format!("unix:{}", socket.display()),
            Hop::Tcp | Hop::Mtls | Hop::ClientMtls => "127.0.0.1:0".to_string(),
        };
        let gate_log = dir.path().join("scopegate.log");
        let gate_config_path = dir.path().join("scopegate.toml");
        std::fs::write(&gate_config_path, gate_config).expect("write gate config");
        let mut gate = Gate::start(&gate_listen, &gate_config_path, &gate_log);
        let bound = gate.bound_address(&gate_log).await;
        let (gate_listen, gate_port) = match hop {
            Hop::Unix => (gate_listen, 0),
            Hop::Tcp | Hop::Mtls | Hop::ClientMtls => {
                let addr: std::net::SocketAddr = bound.parse().expect("scopegate address");
                (bound, addr.port())
            }
        };

        // Envoy with the repository's configuration, its listener and admin on ports the OS
        // chooses at bind time: the admin address is written to a file, the listener's port is
        // read from the admin interface.
        let envoy_config = match hop {
            Hop::Tcp => "envoy/envoy.yaml",
            Hop::Mtls => "envoy/envoy-tls.yaml",
            Hop::Unix => "envoy/envoy-uds.yaml",
            Hop::ClientMtls => "envoy/envoy-client-mtls.yaml",
        };
        let yaml =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(envoy_config))
                .expect("read the Envoy configuration");
        let yaml = if matches!(hop, Hop::Mtls | Hop::ClientMtls) {
            let certs = format!("filename: {}/", dir.path().join("certs").display());
            substitute(&yaml, "filename: /etc/envoy/certs/", &certs, 3)
        } else {
            yaml
        };
        let yaml = match hop {
            Hop::Unix => substitute(
                &yaml,
                "path: /run/scopegate/authz.sock\n",
                &format!("path: {}\n", socket.display()),
                1,
            ),
            Hop::Tcp | Hop::Mtls | Hop::ClientMtls => {
                let yaml = substitute(&yaml, "address: scopegate\n", "address: 127.0.0.1\n", 1);
                substitute(
                    &yaml,
                    "port_value: 9191\n",
                    &format!("port_value: {gate_port}\n"),
                    1,
                )
            }
        };
        let yaml = substitute(&yaml, "address: 0.0.0.0\n", "address: 127.0.0.1\n", 2);
        let yaml = substitute(&yaml, "port_value: 9901\n", "port_value: 0\n", 1);
        let public_port = match hop {
            Hop::ClientMtls => "port_value: 8443\n",
            Hop::Tcp | Hop::Mtls | Hop::Unix => "port_value: 8080\n",
        };
        let yaml = substitute(&yaml, public_port, "port_value: 0\n", 1);
        let yaml = substitute(&yaml, "address: upstream\n", "address: 127.0.0.1\n", 1);
        let yaml = substitute(
            &yaml,
            "port_value: 8000\n",
            &format!("port_value: {upstream_port}\n"),
            1,
        );
        let yaml = envoy_edit(yaml);
        let config_path = dir.path().join("envoy.yaml");
        std::fs::write(&config_path, yaml).expect("write envoy config");
        let envoy_log = dir.path().join("envoy.log");
        let log = std::fs::File::create(&envoy_log).expect("log file");
        let admin_address_path = dir.path().join("envoy-admin-address");
        let envoy = Command::new(envoy_binary())
            .arg("-c")
            .arg(&config_path)
            .arg("--admin-address-path")
            .arg(&admin_address_path)
            .args(["--disable-hot-restart", "--log-level", "warn"])
            // Access log lines within a tenth of a second, not the default ten.
            .args(["--file-flush-interval-msec", "100"])
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start Envoy");
        watchdog::child_started(envoy.id(), "Envoy");
        let mut http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(5));
        if hop == Hop::ClientMtls {
            // Envoy's listener is HTTPS and asks for a certificate: trust the throw-away CA
            // only, and present the client certificate it signed.
            let certs = dir.path().join("certs");
            let read = |name: &str| std::fs::read(certs.join(name)).expect("certificate file");
            let mut identity = read("client.crt");
            identity.extend(read("client.key"));
            http = http
                .tls_certs_only([reqwest::Certificate::from_pem(&read("ca.crt")).expect("CA")])
                .identity(reqwest::Identity::from_pem(&identity).expect("client identity"));
        }
        let http = http.build().expect("http client");
        let (admin, url) = envoy_addresses(&http, &admin_address_path, &envoy_log).await;
        let url = match hop {
            Hop::ClientMtls => url.replacen("http://", "https://", 1),
            Hop::Tcp | Hop::Mtls | Hop::Unix => url,
        };

        let stack = Stack {
            url,
            admin,
            issuer,
            eddsa_issuer,
            gate,
            gate_listen,
            gate_config: gate_config_path,
            gate_log,
            envoy,
            envoy_log,
            http,
            dir: Some(dir),
        };
        let ready = format!("{}/public", stack.url);
        let http = stack.http.clone();
        let log_path = stack.envoy_log.clone();
        eventually(
            "Envoy routing through a healthy scopegate",
            Duration::from_secs(60),
            || {
                let http = http.clone();
                let ready = ready.clone();
                let log_path = log_path.clone();
                async move {
                    match http.get(&ready).send().await {
                        Ok(r) => r.status() == 200,
                        Err(_) => {
                            // Envoy not listening yet; surface its log if it died.
                            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                            assert!(!log.contains("critical"), "Envoy failed:\n{log}");
                            false
                        }
                    }
                }
            },
        )
        .await;
        // Health is SERVING once any issuer's keys are in; wait until every issuer the stack
        // mints for has its keys too (its tokens are decided, not answered 503).
        let mut tokens = vec![stack.eddsa_token("")];
        if stack.issuer.is_some() {
            tokens.push(stack.token(""));
        }
        for token in tokens {
            let authorization = format!("Bearer {token}");
            eventually(
                "scopegate holding every issuer's keys",
                Duration::from_secs(30),
                || async {
                    stack
                        .get("/restricted_resource", &[("authorization", &authorization)])
                        .await
                        .status()
                        != 503
                },
            )
            .await;
        }
        stack
    }

    /// Envoy's statistics whose names match `filter` (a regular expression), as the admin
    /// interface prints them: `name: value` lines.
    pub async fn stats(&self, filter: &str) -> String {
        self.http
            .get(format!("{}/stats?filter={filter}", self.admin))
            .send()
            .await
            .expect("admin")
            .text()
            .await
            .expect("stats")
    }

    /// One counter or gauge of Envoy's statistics.
    pub async fn stat(&self, name: &str) -> u64 {
        let stats = self.stats(&format!("^{name}$")).await;
        stats
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}: ")))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or_else(|| panic!("no statistic {name} in {stats:?}"))
    }

    /// A token from the development issuer for the demo audience.
    pub fn token(&self, scope: &str) -> String {
        self.token_with(scope, serde_json::Map::new())
    }

    /// [`Stack::token`] with extra claims.
    pub fn token_with(
        &self,
        scope: &str,
        extra: serde_json::Map<String, serde_json::Value>,
    ) -> String {
        demo_token(
            self.issuer
                .as_ref()
                .expect("stack started with the development issuer"),
            scope,
            extra,
        )
    }

    /// An opaque token from the development issuer for the demo audience (subject `e2e-user`,
    /// ten minutes), which only its introspection endpoint can read.
    pub fn opaque_token(&self, scope: &str) -> String {
        self.issuer
            .as_ref()
            .expect("stack started with the development issuer")
            .mint_opaque(&Mint {
                subject: "e2e-user".into(),
                audience: DEMO_AUDIENCE.into(),
                scope: scope.into(),
                expires_in: 600,
                extra: serde_json::Map::new(),
            })
            .expect("mint")
    }

    /// A token from the demo's second issuer (EdDSA) for the demo audience.
    pub fn eddsa_token(&self, scope: &str) -> String {
        self.eddsa_issuer
            .mint(&Mint {
                subject: "e2e-eddsa-user".into(),
                audience: DEMO_AUDIENCE.into(),
                scope: scope.into(),
                expires_in: 600,
                extra: serde_json::Map::from_iter([("azp".to_string(), "e2e-client".into())]),
            })
            .expect("mint")
    }

    /// GET through Envoy with extra headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
        self.send(reqwest::Method::GET, path, headers).await
    }

    /// A request with `method` through Envoy, with extra headers.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        request.send().await.expect("Envoy answers")
    }

    /// Kills scopegate with SIGKILL (Envoy keeps running).
    pub fn kill_scopegate(&mut self) {
        self.gate.kill();
    }

    /// Starts scopegate again on the same port (Envoy is left alone).
    pub fn restart_scopegate(&mut self) {
        self.gate = Gate::start(&self.gate_listen, &self.gate_config, &self.gate_log);
    }

    /// The scopegate process (for resource measurements).
    pub fn scopegate_pid(&self) -> u32 {
        self.gate.child.id()
    }

    /// scopegate's log so far (for assertion messages).
    pub fn scopegate_log(&self) -> String {
        std::fs::read_to_string(&self.gate_log).unwrap_or_default()
    }

    /// Envoy's log so far (for assertion messages).
    pub fn envoy_log(&self) -> String {
        std::fs::read_to_string(&self.envoy_log).unwrap_or_default()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = self.envoy.kill();
        let _ = self.envoy.wait();
        watchdog::child_ended(self.envoy.id());
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("stack logs kept in {}", dir.keep().display());
        }
    }
}

/// Envoy's admin URL and its HTTP listener's URL, once it has bound both: the admin address from
/// the file `--admin-address-path` names, the listener's from the admin's `/listeners`.
pub async fn envoy_addresses(
    http: &reqwest::Client,
    admin_address_path: &Path,
    envoy_log: &Path,
) -> (String, String) {
    let envoy_failed = || {
        let log = std::fs::read_to_string(envoy_log).unwrap_or_default();
        assert!(!log.contains("critical"), "Envoy failed:\n{log}");
    };
    let admin_address = || {
        std::fs::read_to_string(admin_address_path)
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    eventually("Envoy's admin address", Duration::from_secs(60), || async {
        envoy_failed();
        !admin_address().is_empty()
    })
    .await;
    let admin = format!("http://{}", admin_address());
    // `/listeners` lists `NAME::ADDRESS` lines; the port is 0 until the listener is bound.
    let listener = || async {
        let text = http
            .get(format!("{admin}/listeners"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        text.lines()
            .find_map(|line| line.strip_prefix("ingress_http::"))
            .map(str::to_string)
            .filter(|addr| !addr.ends_with(":0"))
    };
    eventually(
        "Envoy's listener bound",
        Duration::from_secs(60),
        || async {
            envoy_failed();
            listener().await.is_some()
        },
    )
    .await;
    let url = format!("http://{}", listener().await.expect("listener address"));
    (admin, url)
}

/// `demo/scopegate.toml` with its RS256 issuer at `issuer` (keys at `jwks_uri`); the EdDSA
/// issuer is substituted at launch.
pub fn demo_config(issuer: &str, jwks_uri: &str) -> String {
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/scopegate.toml"))
            .expect("read demo/scopegate.toml");
    let text = substitute(&text, DEMO_RS256_JWKS, jwks_uri, 1);
    substitute(&text, DEMO_RS256_ISSUER, issuer, 1)
}
