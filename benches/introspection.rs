//! A cached opaque-token Check (introspected once, then answered from the introspection cache)
//! beside a cached JWT Check (verified once, then answered from the token cache), over gRPC,
//! through the same scopegate in the same run: the issue's budget is 1.2× the JWT's cost.
//! Both tokens come from the development issuer, whose introspection endpoint the opaque one
//! is asked about once.
//!
//! Run: `cargo bench --bench introspection`

use criterion::{Criterion, criterion_group, criterion_main};
use scopegate::config::RawConfig;
use scopegate::dev::introspection::{DEFAULT_CLIENT_ID, DEMO_CLIENT_SECRET};
use scopegate::dev::issuer::{DevIssuer, Mint};
use tokio::net::TcpListener;

mod support;
use support::{AUDIENCE, check, concurrent, runtime};

const IN_FLIGHT: u64 = 32;

/// The issuer and scopegate introspecting its opaque tokens (endpoint found by discovery);
/// a connected client, a JWT and an opaque token with the same claims, each checked once so
/// that both are cached.
async fn start(
    dir: &std::path::Path,
) -> (
    envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient<
        tonic::transport::Channel,
    >,
    String,
    String,
) {
    let key_file = dir.join("issuer-key.der");
    let issuer_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind issuer");
    let issuer = format!("http://{}/", issuer_listener.local_addr().expect("addr"));
    let serving = DevIssuer::load_or_create(&key_file, &issuer).expect("issuer key");
    tokio::spawn(serving.serve(issuer_listener, false, std::future::pending()));
    let minting = DevIssuer::load_or_create(&key_file, &issuer).expect("same key");
    let mint = Mint {
        subject: "bench".into(),
        audience: AUDIENCE.into(),
        scope: "openid read:messages".into(),
        expires_in: 86_400,
        extra: Default::default(),
    };
    let jwt = minting.mint(&mint).expect("mint");
    let opaque = minting.mint_opaque(&mint).expect("mint opaque");
    let secret = dir.join("secret");
    std::fs::write(&secret, DEMO_CLIENT_SECRET).expect("secret");
    let config = RawConfig::from_toml(
        &format!(
            r#"
            issuer = "{issuer}"
            audience = "{AUDIENCE}"
            jwks_uri = "{issuer}.well-known/jwks.json"
            introspection = "opaque"
            client_id = "{DEFAULT_CLIENT_ID}"
            client_secret_file = "{}"
            introspection_cache_seconds = 3600
            [[rules]]
            path = "/restricted_resource"
            scopes = ["read:messages"]
            "#,
            secret.display()
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
    let mut client = envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    for token in [&jwt, &opaque] {
        let ready = check("/restricted_resource", Some(&format!("Bearer {token}")));
        let mut allowed = false;
        for _ in 0..200 {
            let answer = client.check(ready.clone()).await.expect("in-band");
            if answer.into_inner().status.is_some_and(|s| s.code == 0) {
                allowed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        assert!(allowed, "scopegate did not allow the bench's token");
    }
    (client, jwt, opaque)
}

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("scratch dir");
    let (client, jwt, opaque) = rt.block_on(start(dir.path()));
    for (name, token) in [("cached JWT", &jwt), ("cached opaque token", &opaque)] {
        let request = check("/restricted_resource", Some(&format!("Bearer {token}")));
        c.bench_function(&format!("grpc Check, {IN_FLIGHT} in flight: {name}"), |b| {
            b.iter_custom(|iters| concurrent(&rt, &client, &request, 0, IN_FLIGHT, iters))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
