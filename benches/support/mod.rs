// Each bench uses part of this module; the rest is dead code in that bench binary.
#![allow(dead_code)]

//! What the gRPC benches share: a Check request, and scopegate started in-process against the
//! development issuer's keys.

use std::collections::HashMap;
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use scopegate::config::RawConfig;
use scopegate::dev::issuer::{DevIssuer, Mint};
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub const AUDIENCE: &str = "https://api.example";

/// The runtime every gRPC bench runs server and client on: two worker threads, as on the
/// two-core machines the figures come from.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

pub fn check(path: &str, authorization: Option<&str>) -> CheckRequest {
    let headers: HashMap<String, String> = authorization
        .map(|a| ("authorization".to_string(), a.to_string()))
        .into_iter()
        .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    path: path.into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// Starts the issuer and scopegate, with `extra` top-level keys in its configuration; returns a
/// connected client and a valid token.
pub async fn start(extra: &str) -> (AuthorizationClient<Channel>, String) {
    // Both issuers hold the key in memory once loaded, so the directory may go when this returns.
    let dir = tempfile::tempdir().expect("scratch dir");
    let key_file = dir.path().join("issuer-key.der");
    let issuer_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind issuer");
    let issuer = format!("http://{}/", issuer_listener.local_addr().expect("addr"));
    let serving = DevIssuer::load_or_create(&key_file, &issuer).expect("issuer key");
    tokio::spawn(serving.serve(issuer_listener, false, std::future::pending()));
    let minting = DevIssuer::load_or_create(&key_file, &issuer).expect("same key");
    let token = minting
        .mint(&Mint {
            subject: "bench".into(),
            audience: AUDIENCE.into(),
            scope: "openid read:messages".into(),
            expires_in: 86_400,
            extra: Default::default(),
        })
        .expect("mint");

    let config = RawConfig::from_toml(
        &format!(
            r#"
            {extra}
            issuer = "{issuer}"
            audience = "{AUDIENCE}"
            jwks_uri = "{issuer}.well-known/jwks.json"
            [[rules]]
            path = "/public"
            public = true
            [[rules]]
            path = "/restricted_resource"
            scopes = ["read:messages"]
            "#
        ),
        "<bench>",
    )
    .expect("toml")
    .compile()
    .expect("config");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind scopegate");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(scopegate::serve::server::serve(
        config,
        listener,
        std::future::pending(),
    ));
    let mut client = AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    // Wait for the first key-set load: until then protected routes answer 503.
    let ready = check("/restricted_resource", Some(&format!("Bearer {token}")));
    for _ in 0..200 {
        let answer = client.check(ready.clone()).await.expect("in-band");
        if answer.into_inner().status.is_some_and(|s| s.code == 0) {
            return (client, token);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("scopegate did not load the issuer's keys");
}

/// Runs `iters` Checks of `request` with `in_flight` callers at once and returns the wall time;
/// each answer must have gRPC status code `want`.
pub fn concurrent(
    rt: &tokio::runtime::Runtime,
    client: &AuthorizationClient<Channel>,
    request: &CheckRequest,
    want: i32,
    in_flight: u64,
    iters: u64,
) -> Duration {
    rt.block_on(async {
        let started = std::time::Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..in_flight {
            let (client, request) = (client.clone(), request.clone());
            let share = iters / in_flight + u64::from(worker < iters % in_flight);
            tasks.spawn(async move {
                for _ in 0..share {
                    let answer = client
                        .clone()
                        .check(request.clone())
                        .await
                        .expect("in-band")
                        .into_inner();
                    assert_eq!(answer.status.map(|s| s.code), Some(want));
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("worker");
        }
        started.elapsed()
    })
}

/// The JWKS URL of the development issuer that minted `token` (its `iss` + the well-known path).
pub fn jwks_uri_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("payload");
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("JSON claims");
    format!(
        "{}.well-known/jwks.json",
        claims["iss"].as_str().expect("iss")
    )
}

/// `token`'s claims, verified against `keys` as the bench configuration expects them.
pub fn verified(
    token: &str,
    keys: &scopegate::auth::keys::KeySet,
) -> scopegate::auth::verify::VerifiedClaims {
    let payload_iss = jwks_uri_of(token).replace(".well-known/jwks.json", "");
    let expect = scopegate::auth::verify::Expectations {
        issuer: payload_iss,
        audiences: vec![AUDIENCE.to_string()],
        leeway_seconds: 60,
        algorithms: vec![scopegate::auth::verify::Algorithm::RS256],
        token_types: None,
        scope_claims: vec!["scope".into(), "scp".into()],
        forward_claims: Vec::new(),
        retain_claims: Vec::new(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    scopegate::auth::verify::verify(token, keys, &expect, now).expect("a valid token")
}
