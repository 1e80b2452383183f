//! Helpers the modules share: reading a response, and telling scopegate's denials from Envoy's
//! own answers.

use serde_json::Value;

/// The status, headers and JSON body of a response; panics naming the body when it is not JSON.
pub(crate) async fn json(response: reqwest::Response) -> (u16, reqwest::header::HeaderMap, Value) {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.text().await.expect("body");
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|_| panic!("JSON body expected, got {status}: {body:?}"));
    (status, headers, value)
}

/// Asserts that a denial is scopegate's, not Envoy's: the status, and scopegate's JSON body with
/// the `error` code wanted and a `message`. A status alone would also pass on an answer Envoy
/// made itself (a 400 for a request it refuses, a 403 or 503 from ext_authz with no response
/// from scopegate).
pub(crate) fn assert_scopegates_denial(
    status: u16,
    body: &str,
    want: u16,
    error: &str,
    context: &str,
) {
    assert_eq!(status, want, "{context}: {body}");
    let value: Value = serde_json::from_str(body).unwrap_or_else(|_| {
        panic!("{context}: scopegate's JSON denial expected, got {status}: {body:?}")
    });
    assert_eq!(value["error"].as_str(), Some(error), "{context}: {body}");
    assert!(
        value["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{context}: scopegate's denial has a message: {body}"
    );
}

/// [`assert_scopegates_denial`] on a response.
pub(crate) async fn scopegates_denial(
    response: reqwest::Response,
    want: u16,
    error: &str,
    context: &str,
) {
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    assert_scopegates_denial(status, &body, want, error, context);
}

/// Asserts that Envoy answered `want` itself, before asking scopegate: no JSON denial of
/// scopegate's in the body.
pub(crate) async fn envoys_own_answer(response: reqwest::Response, want: u16, context: &str) {
    let status = response.status().as_u16();
    let body = response.text().await.expect("body");
    assert_eq!(status, want, "{context}: {body}");
    let scopegates = serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string());
    assert!(
        !scopegates,
        "{context}: Envoy's own answer expected: {body}"
    );
}

/// The `error` code scopegate answers a denial status with, when the request carried a token
/// or not (a 401 without one is `unauthorized`, with one `invalid_token`).
pub(crate) fn error_for(status: u16, with_token: bool) -> &'static str {
    match (status, with_token) {
        (400, _) => "invalid_request",
        (401, false) => "unauthorized",
        (401, true) => "invalid_token",
        (403, _) => "insufficient_scope",
        (503, _) => "temporarily_unavailable",
        _ => panic!("{status} is not a status scopegate denies with"),
    }
}

/// A response header's value, or `""` when it is missing or not visible ASCII.
pub(crate) fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
