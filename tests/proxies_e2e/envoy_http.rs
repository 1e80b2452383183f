//! Envoy's ext_authz `http_service` with the shipped `envoy/envoy-http.yaml`, scopegate's
//! `/envoy/` dialect.

use std::path::{Path, PathBuf};

use crate::checks::{
    self, SPOOFED_WITH_FORWARDED_CLAIM, assert_a_long_challenge_reaches_the_client,
    assert_decisions_reach_the_client, assert_keeps_connections_to_scopegate_alive,
    assert_spoofed_identity_never_reaches_the_upstream,
};
use crate::common::eventually;
use crate::common::stack::{envoy_addresses, envoy_binary, substitute, with_access_log};
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

/// The file [`EnvoyHttpWithMetadataLog`] writes its access log to, in the proxy's directory.
const METADATA_LOG: &str = "metadata-access.log";

/// [`EnvoyHttp`] with a second access log, of the test's own: each request's path, status and
/// the `x-scopegate-meta-*` metadata the shipped `dynamic_metadata_from_headers` took from
/// scopegate's answer.
struct EnvoyHttpWithMetadataLog;

/// The metadata keys the access log writes, in order (Envoy names them as the headers).
const LOGGED_KEYS: [&str; 5] = ["client_id", "sub", "scopes", "rule", "tenant"];

impl ProxyKind for EnvoyHttpWithMetadataLog {
    fn name(&self) -> &'static str {
        EnvoyHttp.name()
    }

    fn binary(&self) -> PathBuf {
        EnvoyHttp.binary()
    }

    fn files(&self, dir: &Path, to: &Targets) -> Vec<(String, String)> {
        let fields: Vec<String> = LOGGED_KEYS
            .iter()
            .map(|key| {
                format!(
                    "{key}=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:x-scopegate-meta-{key})%"
                )
            })
            .collect();
        let format = format!(
            "path=%REQ(:PATH)% code=%RESPONSE_CODE% {}",
            fields.join(" ")
        );
        EnvoyHttp
            .files(dir, to)
            .into_iter()
            .map(|(name, yaml)| {
                let yaml = with_access_log(&yaml, &dir.join(METADATA_LOG), &format);
                (name, yaml)
            })
            .collect()
    }

    fn args(&self, dir: &Path) -> Vec<String> {
        EnvoyHttp.args(dir)
    }

    fn reports_its_port(&self) -> bool {
        true
    }

    async fn bound_url(&self, dir: &Path, log: &Path, http: &reqwest::Client) -> String {
        EnvoyHttp.bound_url(dir, log, http).await
    }
}

/// Through Envoy's `http_service`, the shipped `dynamic_metadata_from_headers` turns the
/// `/envoy/` allow's `x-scopegate-meta-*` headers into the ext_authz filter's metadata, which
/// the access log reads (strings as they are, the scopes as JSON text); a public route's allow
/// has only its rule, a denial none; and the client never sees the headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_http_service_puts_scopegates_metadata_headers_in_the_access_log() {
    let stack = ProxyStack::start_with(
        &EnvoyHttpWithMetadataLog,
        Keys::Served,
        "metadata_claims = [\"tenant\"]",
    )
    .await;
    let full = format!(
        "Bearer {}",
        stack.token_with(
            "read:messages openid",
            serde_json::Map::from_iter([
                ("client_id".into(), "e2e-client".into()),
                ("tenant".into(), "acme".into()),
            ])
        )
    );
    let weak = format!("Bearer {}", stack.token("openid"));
    let cases = [
        (
            "/restricted_resource?who=full",
            Some(&full),
            200,
            "client_id=e2e-client sub=e2e-user scopes=[\"openid\",\"read:messages\"] \
             rule=rules[0] tenant=acme",
        ),
        (
            "/public?who=anyone",
            None,
            200,
            "client_id=- sub=- scopes=- rule=rules[2] tenant=-",
        ),
        (
            "/restricted_resource?who=weak",
            Some(&weak),
            403,
            "client_id=- sub=- scopes=- rule=- tenant=-",
        ),
    ];
    for (path, authorization, status, _) in &cases {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let answer = stack.get(path, &headers).await;
        assert_eq!(answer.status, *status, "{path}: {answer:?}");
        assert!(
            answer.header("x-scopegate-meta-rule").is_none(),
            "{path}: the client never sees them: {answer:?}"
        );
    }
    let path = stack.dir().join(EnvoyHttp.name()).join(METADATA_LOG);
    let read = || std::fs::read_to_string(&path).unwrap_or_default();
    eventually(
        "Envoy's access log lines for every request",
        std::time::Duration::from_secs(20),
        || std::future::ready(read().lines().count() >= cases.len()),
    )
    .await;
    let log = read();
    for (path, _, status, fields) in &cases {
        let want = format!("path={path} code={status} {fields}");
        assert!(
            log.lines().any(|line| line == want),
            "no line {want:?} in Envoy's access log:\n{log}"
        );
    }
}
