//! One `Check` over gRPC on loopback, as Envoy makes it: a tonic client calls the real scopegate
//! server (started in-process, keys from the development issuer's JWKS). This is the hop that
//! scopegate owns: HTTP/2 framing, protobuf decoding and encoding, and the decision. The client's
//! own cost is included, so read the numbers as an upper bound for the server.
//!
//! Run: `cargo bench --bench grpc_check`

use std::collections::HashMap;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use scopegate::config::RawConfig;
use scopegate::dev::issuer::{DevIssuer, Mint};
use tokio::net::TcpListener;
use tonic::transport::Channel;

const AUDIENCE: &str = "https://api.example";

fn check(path: &str, authorization: Option<&str>) -> CheckRequest {
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

/// Starts the issuer and scopegate; returns a connected client and a valid token.
async fn start() -> (AuthorizationClient<Channel>, String) {
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
    tokio::spawn(scopegate::server::serve(
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

/// Requests in flight in the concurrent runs, as Envoy multiplexes Checks on one connection.
const IN_FLIGHT: u64 = 32;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let (client, token) = rt.block_on(start());
    let bearer = format!("Bearer {token}");
    for (name, request, want) in [
        (
            "valid RS256 token, scoped route (allow)",
            check("/restricted_resource", Some(&bearer)),
            0,
        ),
        (
            "public route, no verification (allow)",
            check("/public", None),
            0,
        ),
        (
            "no token, scoped route (401 denial)",
            check("/restricted_resource", None),
            16,
        ),
    ] {
        // One at a time: the latency of a round trip (mostly thread wake-ups on loopback).
        c.bench_function(&format!("grpc Check, one at a time: {name}"), |b| {
            b.iter(|| {
                let answer = rt
                    .block_on(client.clone().check(request.clone()))
                    .expect("in-band")
                    .into_inner();
                assert_eq!(answer.status.as_ref().map(|s| s.code), Some(want), "{name}");
                answer
            })
        });
        // Many in flight: time per Check when the machine is busy with them, which is what
        // bounds throughput (client and server share the same cores here).
        c.bench_function(&format!("grpc Check, {IN_FLIGHT} in flight: {name}"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let started = std::time::Instant::now();
                    let mut tasks = tokio::task::JoinSet::new();
                    for worker in 0..IN_FLIGHT {
                        let (client, request) = (client.clone(), request.clone());
                        let share = iters / IN_FLIGHT + u64::from(worker < iters % IN_FLIGHT);
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
            })
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
