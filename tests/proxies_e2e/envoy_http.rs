//! Envoy's ext_authz `http_service` with the shipped `envoy/envoy-http.yaml`, scopegate's
//! `/envoy/` dialect.

use std::path::{Path, PathBuf};

use crate::checks::{
    self, SPOOFED_WITH_FORWARDED_CLAIM, assert_a_long_challenge_reaches_the_client,
    assert_decisions_reach_the_client, assert_keeps_connections_to_scopegate_alive,
    assert_spoofed_identity_never_reaches_the_upstream,
};
use crate::common::stack::{envoy_addresses, envoy_binary, substitute};
use crate::harness::{Keys, ProxyKind, ProxyStack, Targets};

/// The shipped configuration.
const SHIPPED: &str = "envoy/envoy-http.yaml";

/// Envoy from the shipped file, its listener and admin interface on ports it chooses at bind
/// time: the admin address is written to a file, the listener's read from the admin interface.
pub struct EnvoyHttp;

impl ProxyKind for EnvoyHttp {
    fn name(&self) -> &'static str {
        "envoy"
    }

    fn binary(&self) -> PathBuf {
        envoy_binary()
    }

    fn files(&self, _dir: &Path, to: &Targets) -> Vec<(String, String)> {
        let yaml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SHIPPED))
            .expect("read the Envoy configuration");
        let yaml = substitute(&yaml, "address: 0.0.0.0\n", "address: 127.0.0.1\n", 1);
        let yaml = substitute(&yaml, "port_value: 9901\n", "port_value: 0\n", 1);
        let yaml = substitute(&yaml, "port_value: 10000\n", "port_value: 0\n", 1);
        let yaml = substitute(
            &yaml,
            "port_value: 9193\n",
            &format!("port_value: {}\n", to.scopegate_port()),
            1,
        );
        let yaml = substitute(
            &yaml,
            "port_value: 8080\n",
            &format!("port_value: {}\n", to.upstream_port()),
            1,
        );
        vec![("envoy.yaml".to_string(), yaml)]
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        let dir = dir.display();
        vec![
            "-c".into(),
            format!("{dir}/envoy.yaml"),
            "--admin-address-path".into(),
            format!("{dir}/admin-address"),
            "--disable-hot-restart".into(),
            "--log-level".into(),
            "warn".into(),
            // Access log lines within a tenth of a second, not the default ten.
            "--file-flush-interval-msec".into(),
            "100".into(),
        ]
    }

    fn reports_its_port(&self) -> bool {
        true
    }

    async fn bound_url(&self, dir: &Path, log: &Path, http: &reqwest::Client) -> String {
        envoy_addresses(http, &dir.join("admin-address"), log)
            .await
            .1
    }
}

/// 401, 403 and 400 reach the client through Envoy's `http_service` with scopegate's status,
/// JSON body and challenge; an allow reaches the upstream with the identity; a request body
/// never goes to scopegate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_http_service_passes_scopegates_decisions() {
    let stack = ProxyStack::start(&EnvoyHttp, Keys::Served).await;
    assert_decisions_reach_the_client(&stack).await;
}

/// Without keys scopegate answers 503, which Envoy treats as an error of the authorization
/// server: the client gets Envoy's own `status_on_error`, 503, without scopegate's body or
/// Retry-After (what README says of this path); never an allow. A request without a token is
/// still 401 and the public route still served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_http_service_answers_scopegates_503_with_its_status_on_error() {
    let stack = ProxyStack::start(&EnvoyHttp, Keys::Unreachable).await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let answer = stack
        .get("/restricted_resource", &[("authorization", &good)])
        .await;
    assert_eq!(answer.status, 503, "{answer:?}");
    assert!(
        !answer.body.contains("temporarily_unavailable"),
        "Envoy's own answer, not scopegate's body: {answer:?}"
    );
    assert_eq!(answer.header("retry-after"), None, "{answer:?}");
    stack
        .get("/restricted_resource", &[])
        .await
        .assert_denial(401, "unauthorized", Some("realm="));
    assert_eq!(stack.get("/public", &[]).await.status, 200);
}

/// With scopegate gone, Envoy refuses every request with its `status_on_error`, 503
/// (`failure_mode_allow: false`), never lets one through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_http_service_fails_closed_with_503_when_scopegate_is_unreachable() {
    for answer in checks::assert_fails_closed_without_scopegate(&EnvoyHttp).await {
        assert_eq!(answer.status, 503, "{answer:?}");
    }
}

/// Identity headers a client sends never reach the upstream through Envoy's `http_service`:
/// `allowed_upstream_headers` overwrites them with scopegate's, and
/// `x-envoy-auth-headers-to-remove` removes those the token has no claim for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_never_reach_the_upstream_through_envoy_http_service() {
    let stack = ProxyStack::start(&EnvoyHttp, Keys::Served).await;
    assert_spoofed_identity_never_reaches_the_upstream(&stack, &SPOOFED_WITH_FORWARDED_CLAIM).await;
}

/// Envoy pools its HTTP/1.1 connections to scopegate's listener and reuses them, not one per
/// authorization request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_http_service_keeps_its_connections_to_scopegate_alive() {
    let stack = ProxyStack::start(&EnvoyHttp, Keys::Served).await;
    // A pool per worker thread, one worker per CPU: the machines that run this have two, and
    // more would only raise the count by the same few.
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    assert_keeps_connections_to_scopegate_alive(&stack, workers).await;
}

/// A `forward_claims` header (the demo's `x-auth-client`, from `azp`) reaches the upstream only
/// as scopegate set it: `allowed_upstream_headers` takes every `x-auth-*` header of its answer,
/// overwriting a client's copy, and a token without the claim has the client's copy removed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_claim_headers_reach_the_upstream_only_as_scopegate_set_them_through_envoy_http_service()
 {
    let stack = ProxyStack::start(&EnvoyHttp, Keys::Served).await;
    let spoof = ("x-auth-client", "spoofed-client");
    let with_azp = format!(
        "Bearer {}",
        stack.token_with(
            "read:messages",
            serde_json::Map::from_iter([("azp".into(), "e2e-client".into())])
        )
    );
    let without_azp = format!("Bearer {}", stack.token("read:messages"));
    for (authorization, want) in [(&with_azp, Some("e2e-client")), (&without_azp, None)] {
        let answer = stack
            .get(
                "/restricted_resource",
                &[spoof, ("authorization", authorization)],
            )
            .await;
        let (_, _, all) = answer.upstream_saw();
        assert_eq!(all["x-auth-client"].as_str(), want, "{answer:?}");
    }
}

/// A 403 with a long challenge (150 scopes) reaches the client through Envoy whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_http_service_passes_a_denial_with_a_long_challenge() {
    assert_a_long_challenge_reaches_the_client(&EnvoyHttp).await;
}
