//! nginx (`auth_request`) with the shipped `proxies/nginx/scopegate.conf`, scopegate's
//! `/nginx-auth` dialect.

use std::path::{Path, PathBuf};

use crate::checks::{
    self, SPOOFED, assert_503_reaches_the_client, assert_a_long_challenge_reaches_the_client,
    assert_decisions_reach_the_client, assert_keeps_connections_to_scopegate_alive,
    assert_spoofed_identity_never_reaches_the_upstream,
};
use crate::common::stack::substitute;
use crate::harness::{
    Keys, ProxyKind, ProxyStack, SHIPPED_LISTEN_PORT, SHIPPED_SCOPEGATE, SHIPPED_UPSTREAM, Targets,
    proxy_binary,
};

/// The shipped server configuration.
const SHIPPED: &str = "proxies/nginx/scopegate.conf";

/// nginx as a single foreground process (no daemon, no worker processes: killing it stops
/// everything), its main configuration a wrapper that includes the shipped file in `http {}`,
/// as users do, with every path in the scratch directory.
pub struct Nginx;

impl Nginx {
    /// The wrapper `nginx.conf` around the server configuration in `dir`.
    fn main_config(dir: &Path) -> String {
        let dir = dir.display();
        format!(
            "daemon off;\n\
             master_process off;\n\
             pid {dir}/nginx.pid;\n\
             error_log stderr notice;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
             \x20   access_log /dev/stderr;\n\
             \x20   client_body_temp_path {dir}/client_body;\n\
             \x20   proxy_temp_path {dir}/proxy;\n\
             \x20   fastcgi_temp_path {dir}/fastcgi;\n\
             \x20   uwsgi_temp_path {dir}/uwsgi;\n\
             \x20   scgi_temp_path {dir}/scgi;\n\
             \x20   include {dir}/scopegate.conf;\n\
             }}\n"
        )
    }
}

impl ProxyKind for Nginx {
    fn name(&self) -> &'static str {
        "nginx"
    }

    fn binary(&self) -> PathBuf {
        proxy_binary(
            "SCOPEGATE_NGINX_BIN",
            &[PathBuf::from("/usr/sbin/nginx")],
            "scripts/install-nginx",
        )
    }

    fn files(&self, dir: &Path, to: &Targets) -> Vec<(String, String)> {
        let shipped = read(SHIPPED);
        let server = substitute(
            &shipped,
            &format!("server {SHIPPED_SCOPEGATE};"),
            &format!("server {};", to.scopegate),
            1,
        );
        let server = substitute(
            &server,
            &format!("server {SHIPPED_UPSTREAM};"),
            &format!("server {};", to.upstream),
            1,
        );
        let server = substitute(
            &server,
            &format!("listen {SHIPPED_LISTEN_PORT};"),
            &format!("listen 127.0.0.1:{};", to.listen_port),
            1,
        );
        vec![
            ("nginx.conf".to_string(), Nginx::main_config(dir)),
            ("scopegate.conf".to_string(), server),
        ]
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        let dir = dir.display();
        vec![
            "-p".into(),
            format!("{dir}/"),
            "-e".into(),
            "stderr".into(),
            "-c".into(),
            format!("{dir}/nginx.conf"),
        ]
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The shipped file as it stands (its addresses unchanged) passes `nginx -t` inside a wrapper
/// `http {}`, with the pinned nginx.
#[test]
fn the_shipped_nginx_configuration_passes_nginx_t() {
    crate::common::watchdog::arm();
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("scopegate.conf"), read(SHIPPED)).expect("write");
    std::fs::write(
        dir.path().join("nginx.conf"),
        Nginx::main_config(dir.path()),
    )
    .expect("write");
    let out = std::process::Command::new(Nginx.binary())
        .arg("-t")
        .args(Nginx.args(dir.path()))
        .output()
        .expect("nginx -t");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("test is successful"), "{text}");
}

/// 401, 403 and 400 reach the client through nginx with scopegate's real status, JSON body and
/// challenge (nginx itself only takes 401 or 403 from the subrequest), and once only; the
/// X-Scopegate-* carrier headers stay between scopegate and nginx; an allow reaches the upstream
/// with the identity; a request body never goes to scopegate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_scopegates_decisions_with_real_status_body_and_challenge() {
    let stack = ProxyStack::start(&Nginx, Keys::Served).await;
    assert_decisions_reach_the_client(&stack).await;
    let weak = format!("Bearer {}", stack.token("openid"));
    for (path, authorization) in [
        ("/restricted_resource", None),
        ("/restricted_resource", Some(weak.as_str())),
        ("/restricted_resource%2e", Some(weak.as_str())),
    ] {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        let answer = stack.get(path, &headers).await;
        for carrier in ["x-scopegate-status", "x-scopegate-body"] {
            assert_eq!(answer.header(carrier), None, "{path}: {answer:?}");
        }
        // A file-like path does not turn the JSON denial into another type.
        let answer = stack.get(&format!("{path}.html"), &headers).await;
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "{path}.html: {answer:?}"
        );
    }
}

/// Without keys, scopegate's 503 reaches the client as it is, JSON body and Retry-After
/// included; a request without a token is still 401, and the public route still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_scopegates_503_with_body_and_retry_after() {
    let stack = ProxyStack::start(&Nginx, Keys::Unreachable).await;
    assert_503_reaches_the_client(&stack).await;
}

/// With scopegate gone, nginx refuses every request that needs a decision with 503 and a JSON
/// body (the shipped configuration's answer to its own 500), never lets one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_fails_closed_with_503_when_scopegate_is_unreachable() {
    for answer in checks::assert_fails_closed_without_scopegate(&Nginx).await {
        answer.assert_denial(503, "temporarily_unavailable", None);
    }
}

/// Identity headers a client sends never reach the upstream through nginx: proxy_set_header
/// replaces them with scopegate's, and an empty value (a claim the token lacks) sends none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream_through_nginx() {
    let stack = ProxyStack::start(&Nginx, Keys::Served).await;
    assert_spoofed_identity_never_reaches_the_upstream(&stack, &SPOOFED).await;
}

/// The original request reaches scopegate in X-Original-Method and X-Original-URI, which nginx
/// sets itself: a client sending its own cannot change what is decided.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_choose_the_request_nginx_asks_scopegate_about() {
    let stack = ProxyStack::start(&Nginx, Keys::Served).await;
    checks::assert_a_client_cannot_choose_the_request_decided(&stack).await;
}

/// nginx keeps one connection to scopegate for its authorization requests (`keepalive` in the
/// upstream block, HTTP/1.1, no `Connection: close`), not one per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_keeps_its_connection_to_scopegate_alive() {
    let stack = ProxyStack::start(&Nginx, Keys::Served).await;
    // One nginx process (master_process off) with one connection at a time.
    assert_keeps_connections_to_scopegate_alive(&stack, 1).await;
}

/// Under 32 clients at once, round after round, nginx reuses its connections to scopegate: the
/// upstream block's `keepalive` holds at least as many idle connections as authorization
/// requests in flight, so none is closed after its answer and dialled again for the next round
/// (with `keepalive 16`, half of them were).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_reuses_its_connections_to_scopegate_under_concurrent_clients() {
    const CLIENTS: usize = 32;
    const ROUNDS: usize = 5;
    let stack = ProxyStack::start(&Nginx, Keys::Served).await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let before = stack.connections_to_scopegate();
    for _ in 0..ROUNDS {
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..CLIENTS {
            let request = stack
                .http
                .get(format!("{}/restricted_resource", stack.url))
                .header("authorization", &good);
            requests.spawn(async move { request.send().await.map(|answer| answer.status()) });
        }
        while let Some(done) = requests.join_next().await {
            let status = done.expect("request task").expect("request through nginx");
            assert_eq!(status, 200);
        }
    }
    // Connections opened during the rounds, those closed since (TIME_WAIT) included.
    let new = stack.connections_to_scopegate().difference(&before).count();
    assert!(
        new <= CLIENTS,
        "{new} new connections to scopegate for {} requests from {CLIENTS} clients at once, at \
         most {CLIENTS} expected:\n{}",
        ROUNDS * CLIENTS,
        stack.proxy_log()
    );
}

/// A denial whose challenge is long (a rule naming many scopes: 6 KiB of them, past nginx's
/// default 4 KiB for a response's headers, and carried twice, in the challenge and in the
/// body's header) still reaches the client as scopegate's 403, not as a failed subrequest's 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_passes_a_denial_with_a_long_challenge() {
    assert_a_long_challenge_reaches_the_client(&Nginx).await;
}
