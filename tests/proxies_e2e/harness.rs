//! The stack every proxy test runs: the development issuers, the demo upstream, the real
//! scopegate binary serving `demo/scopegate.toml` with its HTTP authorization listener on, and a
//! real proxy started from the repository's shipped configuration with its literal addresses
//! substituted, all on loopback.
//!
//! A proxy is described by a [`ProxyKind`]: its binary, the files it runs from (the shipped
//! configuration with the [`Targets`] put in), its command line, and how its listening port is
//! known (the harness chooses a free one, or the proxy binds port 0 and reports it). The harness
//! starts it, waits until it really listens, restarts it on another port when the chosen one
//! was taken in between, kills it on drop, and prints its log when a test fails.

#![allow(dead_code)] // each proxy's tests use a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use scopegate::dev::issuer::{DevAlgorithm, DevIssuer};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::common::binary::Binary;
use crate::common::stack::{self, DEMO_EDDSA_ISSUER, substitute};
use crate::common::{eventually, watchdog};

/// scopegate's HTTP authorization listener in every shipped proxy configuration.
pub const SHIPPED_SCOPEGATE: &str = "127.0.0.1:9193";
/// The protected upstream in every shipped proxy configuration.
pub const SHIPPED_UPSTREAM: &str = "127.0.0.1:8080";
/// The proxy's own listening port in every shipped proxy configuration.
pub const SHIPPED_LISTEN_PORT: u16 = 10000;

/// How many times a proxy is started on a fresh port when the one chosen was taken meanwhile.
const BIND_ATTEMPTS: usize = 5;

/// The addresses that replace a shipped configuration's literal ones.
#[derive(Debug, Clone)]
pub struct Targets {
    /// scopegate's HTTP authorization listener, `IP:PORT` (for [`SHIPPED_SCOPEGATE`]).
    pub scopegate: String,
    /// The demo upstream, `IP:PORT` (for [`SHIPPED_UPSTREAM`]).
    pub upstream: String,
    /// The proxy's own port on 127.0.0.1 (for [`SHIPPED_LISTEN_PORT`]); 0 for a proxy that
    /// binds port 0 and reports the port it got ([`ProxyKind::reports_its_port`]).
    pub listen_port: u16,
}

impl Targets {
    /// The port of [`Targets::scopegate`].
    pub fn scopegate_port(&self) -> u16 {
        port_of(&self.scopegate)
    }

    /// The port of [`Targets::upstream`].
    pub fn upstream_port(&self) -> u16 {
        port_of(&self.upstream)
    }
}

fn port_of(addr: &str) -> u16 {
    addr.parse::<std::net::SocketAddr>()
        .unwrap_or_else(|e| panic!("{addr:?} is not IP:PORT: {e}"))
        .port()
}

/// One proxy, as the harness starts it.
pub trait ProxyKind {
    /// Its name, in messages and file names (`nginx`).
    fn name(&self) -> &'static str;

    /// Its binary. Panics, naming the install script, when it is missing: the end-to-end tests
    /// fail, never skip.
    fn binary(&self) -> PathBuf;

    /// The files it runs from, as (file name, contents), written into `dir` before it starts:
    /// the shipped configuration with the addresses of `to` substituted (see [`substitute`],
    /// which fails the test when the shipped file no longer holds what the test replaces).
    fn files(&self, dir: &Path, to: &Targets) -> Vec<(String, String)>;

    /// Its command-line arguments, for files in `dir`.
    fn args(&self, dir: &Path) -> Vec<String>;

    /// Whether it binds port 0 and reports the port it got ([`ProxyKind::bound_url`]);
    /// otherwise the harness chooses a free port for it.
    fn reports_its_port(&self) -> bool {
        false
    }

    /// Its base URL (`http://127.0.0.1:PORT`) once it has bound its listener, for a proxy that
    /// [reports its port](ProxyKind::reports_its_port); `log` is its output so far.
    fn bound_url(
        &self,
        dir: &Path,
        log: &Path,
        http: &reqwest::Client,
    ) -> impl Future<Output = String> + Send {
        let _ = (dir, log, http);
        async { panic!("this proxy does not report its port") }
    }
}

/// A binary named by the environment variable `var` (what `scripts/test` exports), else the
/// first of `candidates` that exists. Panics naming `script` when there is none.
pub fn proxy_binary(var: &str, candidates: &[PathBuf], script: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "{var}={} does not exist: run {script}. End-to-end tests never skip.",
            path.display()
        );
        return path;
    }
    candidates
        .iter()
        .find(|candidate| candidate.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no binary found at {candidates:?}: run {script} (or set {var}). End-to-end \
                 tests never skip."
            )
        })
}

/// Whether scopegate can load the issuers' keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keys {
    /// The development issuers serve them: tokens are decided.
    Served,
    /// Every key set's URL is a closed port: scopegate never has keys, and a request with a
    /// token is answered 503.
    Unreachable,
}

/// A running proxy. Killed on drop.
pub struct Proxy {
    child: Child,
    name: &'static str,
    /// Its base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// Its standard output and error.
    pub log: PathBuf,
}

impl Proxy {
    /// Starts `kind` in `dir` against `scopegate` and `upstream` (`IP:PORT` each) and returns
    /// once it listens.
    pub async fn start(
        kind: &impl ProxyKind,
        dir: &Path,
        scopegate: &str,
        upstream: &str,
        http: &reqwest::Client,
    ) -> Proxy {
        watchdog::arm();
        let binary = kind.binary();
        for attempt in 1..=BIND_ATTEMPTS {
            let listen_port = if kind.reports_its_port() {
                0
            } else {
                free_port().await
            };
            let targets = Targets {
                scopegate: scopegate.to_string(),
                upstream: upstream.to_string(),
                listen_port,
            };
            for (name, contents) in kind.files(dir, &targets) {
                std::fs::write(dir.join(&name), contents)
                    .unwrap_or_else(|e| panic!("write {name}: {e}"));
            }
            let log = dir.join(format!("{}.log", kind.name()));
            let out = std::fs::File::create(&log).expect("proxy log file");
            let child = Command::new(&binary)
                .args(kind.args(dir))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log fd"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("start {}: {e}", binary.display()));
            watchdog::child_started(child.id(), kind.name());
            let mut proxy = Proxy {
                child,
                name: kind.name(),
                url: String::new(),
                log,
            };
            if kind.reports_its_port() {
                proxy.url = kind.bound_url(dir, &proxy.log, http).await;
                return proxy;
            }
            match proxy.wait_listening(listen_port).await {
                Listening::Yes => {
                    proxy.url = format!("http://127.0.0.1:{listen_port}");
                    return proxy;
                }
                Listening::PortTaken if attempt < BIND_ATTEMPTS => continue,
                Listening::PortTaken | Listening::Exited => panic!(
                    "{} exited before listening on port {listen_port}:\n{}",
                    proxy.name,
                    proxy.log_text()
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Waits until this process (not another one that took the port) listens on `port`.
    async fn wait_listening(&mut self, port: u16) -> Listening {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                let log = self.log_text().to_ascii_lowercase();
                return if log.contains("address already in use") {
                    Listening::PortTaken
                } else {
                    Listening::Exited
                };
            }
            if listens_on(self.child.id(), port) {
                return Listening::Yes;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} not listening on port {port} after 30 s:\n{}",
                self.name,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Its output so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        watchdog::child_ended(self.child.id());
    }
}

enum Listening {
    Yes,
    PortTaken,
    Exited,
}

/// A port on 127.0.0.1 that was free a moment ago (the proxy is restarted on another one when
/// it was taken in between).
async fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("addr").port()
}

/// Whether process `pid` holds a socket listening on TCP `port`: the socket's inode, from
/// `/proc/net/tcp`, among the process's descriptors. A connection that succeeds proves nothing
/// when another process could hold the port.
fn listens_on(pid: u32, port: u16) -> bool {
    const LISTEN: &str = "0A";
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .skip(1)
                .filter_map(|line| {
                    let fields: Vec<&str> = line.split_whitespace().collect();
                    let local = fields.get(1)?;
                    let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
                    let inode = fields.get(9)?;
                    (local_port == port && fields.get(3) == Some(&LISTEN))
                        .then(|| format!("socket:[{inode}]"))
                })
                .collect::<Vec<_>>()
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| {
            inodes
                .iter()
                .any(|inode| target.as_os_str() == inode.as_str())
        })
    })
}

/// scopegate's side of the stack: the issuers, the demo upstream and the scopegate binary.
pub struct Backend {
    /// The scopegate process (`serve --config`), gRPC and metrics listeners on ports of its
    /// choosing, its log kept when a test fails.
    pub gate: Binary,
    /// Its HTTP authorization listener, `IP:PORT`, from its start-up line.
    pub gate_http: String,
    /// The demo upstream, `IP:PORT`.
    pub upstream: String,
    /// The development issuer (RS256) that `demo/scopegate.toml` trusts, for minting.
    issuer: DevIssuer,
}

impl Backend {
    /// Starts the issuers, the upstream and scopegate (with `extra` top-level TOML keys before
    /// the demo configuration), keys in `dir`.
    pub async fn start(dir: &Path, keys: Keys, extra: &str) -> Backend {
        Backend::start_with(dir, keys, extra, "").await
    }

    /// [`Backend::start`] with `rules` (`[[rules]]` tables) after the demo's own.
    pub async fn start_with(dir: &Path, keys: Keys, extra: &str, rules: &str) -> Backend {
        watchdog::arm();
        let (issuer, issuer_url) = stack::dev_issuer(dir, DevAlgorithm::Rs256).await;
        let (_, eddsa_url) = stack::dev_issuer(dir, DevAlgorithm::EdDsa).await;
        let (jwks_uri, eddsa_url) = match keys {
            Keys::Served => (format!("{issuer_url}.well-known/jwks.json"), eddsa_url),
            Keys::Unreachable => {
                let closed = format!("http://127.0.0.1:{}/", free_port().await);
                (format!("{closed}.well-known/jwks.json"), closed)
            }
        };
        let config = stack::demo_config(&issuer_url, &jwks_uri);
        let config = substitute(&config, DEMO_EDDSA_ISSUER, &eddsa_url, 1);
        // Ports of its choosing, read from its start-up lines.
        let config = substitute(
            &config,
            "listen = \"0.0.0.0:9191\"",
            "listen = \"127.0.0.1:0\"",
            1,
        );
        let config = substitute(
            &config,
            "metrics_listen = \"0.0.0.0:9464\"",
            "metrics_listen = \"127.0.0.1:0\"",
            1,
        );
        let config = format!("http_listen = \"127.0.0.1:0\"\n{extra}\n{config}\n{rules}");

        let upstream = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let upstream_addr = upstream.local_addr().expect("addr").to_string();
        tokio::spawn(scopegate::dev::demo::serve(
            upstream,
            std::future::pending(),
        ));

        // Decision lines too, for the log printed when a test fails.
        let gate = Binary::start("proxies", &config, "info", None).await;
        let gate_http = gate.http_addr().await;
        Backend {
            gate,
            gate_http,
            upstream: upstream_addr,
            issuer,
        }
    }
}

/// An answer through the proxy.
#[derive(Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The body, as text.
    pub body: String,
}

impl Answer {
    /// Every value of the header `name`, as text.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }

    /// The one value of the header `name`; `None` when absent. Fails the test when it is
    /// repeated.
    pub fn header(&self, name: &str) -> Option<String> {
        let all = self.all(name);
        assert!(all.len() <= 1, "{name} repeated: {self:?}");
        all.into_iter().next()
    }

    /// The body as JSON; fails the test when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|_| panic!("JSON body expected: {self:?}"))
    }

    /// Asserts scopegate's denial: this status, scopegate's JSON body with this `error` and a
    /// message, a JSON content type, and the challenge holding `challenge` (`None`: no
    /// challenge at all).
    pub fn assert_denial(&self, status: u16, error: &str, challenge: Option<&str>) {
        assert_eq!(self.status, status, "{self:?}");
        let body = self.json();
        assert_eq!(body["error"].as_str(), Some(error), "{self:?}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "scopegate's denial has a message: {self:?}"
        );
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{self:?}"
        );
        match challenge {
            Some(part) => assert!(
                self.header("www-authenticate")
                    .is_some_and(|c| c.starts_with("Bearer ") && c.contains(part)),
                "a challenge with {part:?}: {self:?}"
            ),
            None => assert_eq!(self.header("www-authenticate"), None, "{self:?}"),
        }
    }

    /// Asserts an allow that the demo upstream answered, and returns the identity it saw:
    /// (`x-auth-subject`, `x-auth-scopes`, every `x-auth-*` header), `None` for an absent one.
    pub fn upstream_saw(&self) -> (Option<String>, Option<String>, Value) {
        assert_eq!(self.status, 200, "{self:?}");
        let body = self.json();
        assert!(
            body["message"].is_string(),
            "the upstream's answer: {self:?}"
        );
        (
            body["subject"].as_str().map(str::to_owned),
            body["scopes_header"].as_str().map(str::to_owned),
            body["auth_headers"].clone(),
        )
    }
}

/// The whole stack through one proxy. Everything is stopped on drop; when a test fails, the
/// logs are printed and kept.
pub struct ProxyStack {
    /// The proxy's base URL, `http://127.0.0.1:PORT`.
    pub url: String,
    /// An HTTP client without proxies, keeping connections alive.
    pub http: reqwest::Client,
    proxy: Proxy,
    backend: Backend,
    /// Keys, the proxy's configuration and log; `None` once kept for a failed test.
    dir: Option<tempfile::TempDir>,
}

impl ProxyStack {
    /// The stack with `kind` in front, scopegate running the demo configuration.
    pub async fn start(kind: &impl ProxyKind, keys: Keys) -> ProxyStack {
        ProxyStack::start_with(kind, keys, "").await
    }

    /// [`ProxyStack::start`] with `extra` top-level TOML keys for scopegate.
    pub async fn start_with(kind: &impl ProxyKind, keys: Keys, extra: &str) -> ProxyStack {
        ProxyStack::launch(kind, keys, extra, "").await
    }

    /// [`ProxyStack::start`] with `rules` (`[[rules]]` tables) after the demo configuration's
    /// own.
    pub async fn start_with_rules(kind: &impl ProxyKind, keys: Keys, rules: &str) -> ProxyStack {
        ProxyStack::launch(kind, keys, "", rules).await
    }

    async fn launch(kind: &impl ProxyKind, keys: Keys, extra: &str, rules: &str) -> ProxyStack {
        watchdog::arm();
        let dir = stack::scratch_dir();
        let backend = Backend::start_with(dir.path(), keys, extra, rules).await;
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client");
        let proxy_dir = dir.path().join(kind.name());
        std::fs::create_dir(&proxy_dir).expect("proxy dir");
        let proxy = Proxy::start(
            kind,
            &proxy_dir,
            &backend.gate_http,
            &backend.upstream,
            &http,
        )
        .await;
        let stack = ProxyStack {
            url: proxy.url.clone(),
            http,
            proxy,
            backend,
            dir: Some(dir),
        };
        // The public route answers through the proxy, keys or none.
        eventually(
            "the public route through the proxy",
            Duration::from_secs(30),
            || async { stack.try_get("/public").await == Some(200) },
        )
        .await;
        if keys == Keys::Served {
            // Tokens are decided, not answered 503 for want of keys.
            let authorization = format!("Bearer {}", stack.token("read:messages"));
            eventually(
                "scopegate holding the issuer's keys",
                Duration::from_secs(30),
                || async {
                    stack
                        .get("/restricted_resource", &[("authorization", &authorization)])
                        .await
                        .status
                        == 200
                },
            )
            .await;
        }
        stack
    }

    async fn try_get(&self, path: &str) -> Option<u16> {
        let response = self.http.get(format!("{}{path}", self.url)).send().await;
        Some(response.ok()?.status().as_u16())
    }

    /// A token from the development issuer for the demo audience, subject `e2e-user`.
    pub fn token(&self, scope: &str) -> String {
        self.token_with(scope, serde_json::Map::new())
    }

    /// [`ProxyStack::token`] with claims that override or add to the usual ones
    /// (`"sub": null` for a token without a subject).
    pub fn token_with(&self, scope: &str, extra: serde_json::Map<String, Value>) -> String {
        stack::demo_token(&self.backend.issuer, scope, extra)
    }

    /// GET `path` through the proxy with extra headers.
    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        self.send(reqwest::Method::GET, path, headers, "").await
    }

    /// A request through the proxy.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if !body.is_empty() {
            request = request.body(body.to_string());
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{} answers {path}: {e}", self.proxy.name));
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Sends `request` as it stands (a request target no client library would send) on a
    /// connection of its own and returns the answer's status line and headers (lower-case names)
    /// and body, read until the proxy closes the connection (`request` should say
    /// `Connection: close`).
    pub async fn raw(&self, request: &str) -> Answer {
        let addr = self.url.trim_start_matches("http://");
        let mut socket = tokio::net::TcpStream::connect(addr)
            .await
            .expect("connect to the proxy");
        socket
            .write_all(request.as_bytes())
            .await
            .expect("send the request");
        let mut bytes = Vec::new();
        socket
            .read_to_end(&mut bytes)
            .await
            .expect("read the answer");
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("a status line: {text:?}"));
        let mut headers = reqwest::header::HeaderMap::new();
        for line in lines {
            if let Some((name, value)) = line.split_once(':')
                && let (Ok(name), Ok(value)) = (
                    reqwest::header::HeaderName::from_bytes(name.trim().as_bytes()),
                    reqwest::header::HeaderValue::from_str(value.trim()),
                )
            {
                headers.append(name, value);
            }
        }
        Answer {
            status,
            headers,
            body: body.to_string(),
        }
    }

    /// Stops scopegate (SIGTERM, and waits for it): the proxy stays, with nothing to ask.
    pub async fn stop_scopegate(&mut self) {
        self.backend.gate.terminate().await;
    }

    /// The TCP connections to scopegate's HTTP listener the machine knows of, open or just
    /// closed (TIME_WAIT): each one by its client-side port, from `/proc/net/tcp`.
    pub fn connections_to_scopegate(&self) -> std::collections::HashSet<u16> {
        let gate = port_of(&self.backend.gate_http);
        let mut clients = std::collections::HashSet::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            let text = std::fs::read_to_string(table).unwrap_or_default();
            for line in text.lines().skip(1) {
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = |i: usize| {
                    fields
                        .get(i)
                        .and_then(|a| a.rsplit(':').next())
                        .and_then(|p| u16::from_str_radix(p, 16).ok())
                };
                match (port(1), port(2)) {
                    (Some(local), Some(remote)) if remote == gate => clients.insert(local),
                    (Some(local), Some(remote)) if local == gate && remote != 0 => {
                        clients.insert(remote)
                    }
                    _ => false,
                };
            }
        }
        clients
    }

    /// scopegate's log so far.
    pub fn gate_log(&self) -> String {
        self.backend.gate.log_text()
    }

    /// The proxy's output so far.
    pub fn proxy_log(&self) -> String {
        self.proxy.log_text()
    }

    /// The scratch directory: the proxy's files are in its subdirectory named after it.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("scratch dir").path()
    }

    /// Whether the proxy still runs.
    pub fn proxy_running(&mut self) -> bool {
        self.proxy.running()
    }
}

impl Drop for ProxyStack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- {} log ----\n{}\n---- scopegate log (last 100 lines) ----\n{}",
                self.proxy.name,
                self.proxy.log_text(),
                tail(&self.backend.gate.log_text(), 100)
            );
            if let Some(dir) = self.dir.take() {
                eprintln!("proxy stack files kept in {}", dir.keep().display());
            }
        }
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
