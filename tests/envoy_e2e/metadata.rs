//! Dynamic metadata end to end: a real Envoy running the repository's `envoy/envoy.yaml`, with
//! an access log of the test's own added, writes what scopegate's allow put in the ext_authz
//! filter's metadata (`%DYNAMIC_METADATA(envoy.filters.http.ext_authz:KEY)%`). Envoy must be
//! installed (`scripts/install-envoy`); these tests fail, never skip, without it.

use std::time::Duration;

use crate::common::eventually;
use crate::common::stack::{DEMO_AUDIENCE, Stack, with_access_log};

/// The keys the access log writes, in order.
const KEYS: [&str; 7] = [
    "client_id",
    "sub",
    "iss",
    "scopes",
    "rule",
    "x-auth-groups",
    "tenant",
];

/// The access-log format writing the request's path, the status and each of [`KEYS`] from the
/// ext_authz filter's metadata.
fn metadata_format() -> String {
    let fields: Vec<String> = KEYS
        .iter()
        .map(|key| format!("{key}=%DYNAMIC_METADATA(envoy.filters.http.ext_authz:{key})%"))
        .collect();
    format!(
        "path=%REQ(:PATH)% code=%RESPONSE_CODE% {}",
        fields.join(" ")
    )
}

/// Through Envoy, an allow's metadata reaches Envoy's access log: `client_id`, `sub`, `iss`,
/// `scopes` (a list), `rule`, a forwarded array (a list) and a `metadata_claims` claim; a
/// public route's allow logs only its rule; a denial logs none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoys_access_log_reads_who_called_from_the_dynamic_metadata() {
    let logs = tempfile::tempdir().expect("log dir");
    let access_log = logs.path().join("metadata-access.log");
    let mut issuer_url = String::new();
    let stack = Stack::start_with_config_and_envoy(
        |issuer, jwks_uri| {
            issuer_url = issuer.to_string();
            format!(
                r#"issuer = "{issuer}"
jwks_uri = "{jwks_uri}"
audience = "{DEMO_AUDIENCE}"
forward_claims = {{ "x-auth-groups" = "groups" }}
metadata_claims = ["tenant"]
[[rules]]
name = "restricted"
path = "/restricted_resource"
scopes = ["read:messages"]
[[rules]]
name = "public"
path = "/public"
public = true
"#
            )
        },
        |yaml| with_access_log(&yaml, &access_log, &metadata_format()),
    )
    .await;
    let mut extra = serde_json::Map::new();
    extra.insert("client_id".into(), "e2e-client".into());
    extra.insert("groups".into(), serde_json::json!(["eng", "ops"]));
    extra.insert("tenant".into(), "acme".into());
    let full = format!("Bearer {}", stack.token_with("read:messages openid", extra));
    let weak = format!("Bearer {}", stack.token("openid"));
    let cases = [
        (
            "/restricted_resource?who=full",
            Some(&full),
            200,
            format!(
                "client_id=e2e-client sub=e2e-user iss={issuer_url} \
                 scopes=[\"openid\",\"read:messages\"] rule=restricted \
                 x-auth-groups=[\"eng\",\"ops\"] tenant=acme"
            ),
        ),
        (
            "/public?who=anyone",
            None,
            200,
            "client_id=- sub=- iss=- scopes=- rule=public x-auth-groups=- tenant=-".to_string(),
        ),
        (
            "/restricted_resource?who=weak",
            Some(&weak),
            403,
            "client_id=- sub=- iss=- scopes=- rule=- x-auth-groups=- tenant=-".to_string(),
        ),
    ];
    for (path, authorization, status, _) in &cases {
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("authorization", a.as_str()))
            .collect();
        let response = stack.get(path, &headers).await;
        assert_eq!(response.status().as_u16(), *status, "{path}");
    }
    let read = || std::fs::read_to_string(&access_log).unwrap_or_default();
    eventually(
        "Envoy's access log lines for every request",
        Duration::from_secs(20),
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
