//! Each token source through Envoy, and what reaches the upstream.

use crate::common;
use crate::common::stack::Stack;
use serde_json::Value;

/// Every kind of source, the default one first (inline, since the demo configuration's
/// top-level keys follow).
const SOURCES: &str = "allow_query_tokens = true\n\
    token_sources = [{ header = \"authorization\", scheme = \"Bearer\" }, \
    { header = \"x-api-token\" }, { cookie = \"at\" }, { query = \"access_token\" }]\n";

/// The README's `allowed_headers` lines for a header and a cookie source, beside the shipped
/// `authorization` line.
fn allow_source_headers(yaml: String) -> String {
    let line = "                          - exact: authorization\n";
    common::stack::substitute(
        &yaml,
        line,
        &format!(
            "{line}                          - exact: x-api-token\n\
             \x20                         - exact: cookie\n"
        ),
        1,
    )
}

async fn body(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|_| panic!("JSON body expected, got {status}: {text:?}"));
    (status, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_sources_through_envoy() {
    let stack = Stack::start_with_gate_config_and_envoy(SOURCES, allow_source_headers).await;
    let good = stack.token("read:messages");
    let forged = {
        // The same token with its signature's first character changed: fails verification.
        let (head, signature) = good.rsplit_once('.').expect("a JWS");
        let first = if signature.starts_with('A') { 'B' } else { 'A' };
        format!("{head}.{first}{}", &signature[1..])
    };

    // A header source and a cookie source (among other cookies) each let the request through,
    // with the identity the token carries.
    let cookie = format!("theme=dark; at={good}");
    let only = format!("at={good}");
    for (what, headers) in [
        ("x-api-token", vec![("x-api-token", good.as_str())]),
        ("cookie", vec![("cookie", cookie.as_str())]),
        // Two Cookie headers, which Envoy joins into one value before asking.
        (
            "second cookie header",
            vec![("cookie", "theme=dark"), ("cookie", only.as_str())],
        ),
    ] {
        let (status, echoed) = body(stack.get("/restricted_resource", &headers).await).await;
        assert_eq!(status, 200, "{what}: {echoed}");
        assert_eq!(echoed["subject"], "e2e-user", "{what}: {echoed}");
    }

    // A query token: allowed, and the upstream gets the query without it.
    let path = format!("/echo?x=1&access_token={good}&y=2");
    let (status, echoed) = body(stack.get(&path, &[]).await).await;
    assert_eq!(status, 200, "{echoed}");
    assert_eq!(echoed["path"], "/echo", "{echoed}");
    assert_eq!(
        echoed["query"], "x=1&y=2",
        "the token reached the upstream: {echoed}"
    );
    assert_eq!(echoed["subject"], "e2e-user", "{echoed}");
    // On a public route too.
    let (status, echoed) = body(
        stack
            .get(&format!("/public?access_token={good}"), &[])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{echoed}");
    assert!(
        !echoed.to_string().contains(&good),
        "the token reached the upstream: {echoed}"
    );

    // Two places at once: scopegate's 400, through Envoy.
    let response = stack
        .get(
            &format!("/restricted_resource?access_token={good}"),
            &[("x-api-token", &good)],
        )
        .await;
    let challenge = response.headers().get("www-authenticate").cloned();
    let (status, denial) = body(response).await;
    assert_eq!(
        (status, denial["error"].as_str()),
        (400, Some("invalid_request")),
        "{denial}"
    );
    assert!(challenge.is_some(), "Authorization is a source: challenged");

    // A cookie token that fails verification: 401 with the JSON body and no challenge.
    let cookie = format!("at={forged}");
    let response = stack
        .get("/restricted_resource", &[("cookie", &cookie)])
        .await;
    let challenge = response.headers().get("www-authenticate").cloned();
    let (status, denial) = body(response).await;
    assert_eq!(
        (status, denial["error"].as_str()),
        (401, Some("invalid_token")),
        "{denial}"
    );
    assert_eq!(challenge, None, "no challenge for a cookie token");

    // Envoy's own access log (the shipped default format) records the path as the request
    // left the filter chain: without the token once allowed, with it when denied (the README
    // says so).
    common::eventually(
        "Envoy's access log line for the denied request",
        std::time::Duration::from_secs(10),
        || std::future::ready(stack.envoy_log().contains("\" 400 UAEX")),
    )
    .await;
    let access_log = stack.envoy_log();
    assert!(
        access_log.contains("\"GET /echo?x=1&y=2 HTTP/1.1\" 200"),
        "the allowed request is logged without its token:\n{access_log}"
    );
    for line in access_log.lines().filter(|l| l.contains(&good)) {
        assert!(
            line.contains("\" 400 UAEX"),
            "a token in an allowed request's line: {line}"
        );
    }
    // No decision log line holds the query token.
    let log = stack.scopegate_log();
    for segment in good.split('.') {
        assert!(
            !log.contains(segment),
            "a token segment in scopegate's log:\n{log}"
        );
    }
}
