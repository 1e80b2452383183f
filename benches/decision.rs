//! The decision path with a cached key and a valid token: Bearer extraction, path
//! canonicalisation, route lookup, RS256 verification and the scope decision, all in-process.
//!
//! Run: `cargo bench --bench decision`

use std::hint::black_box;

use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use scopegate::auth::keys::KeySet;
use scopegate::auth::{token, verify};
use scopegate::config::RawConfig;
use scopegate::policy::{self, Decision};
use serde_json::json;

fn setup() -> (String, KeySet, scopegate::config::Config, u64) {
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("key");
    let public = pair.public_key();
    let jwks = json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "bench",
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    }]});
    let (keys, _) = KeySet::parse(
        jwks.to_string().as_bytes(),
        &[verify::Algorithm::RS256],
        100,
    )
    .expect("jwks");
    let now = 1_800_000_000;
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "bench"});
    let claims = json!({
        "iss": "https://tenant.example/", "sub": "auth0|bench",
        "aud": ["https://api.example", "https://tenant.example/userinfo"],
        "iat": now, "exp": now + 3600, "azp": "client",
        "scope": "openid profile email read:messages write:messages",
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; pair.public_modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let config = RawConfig::from_toml(
        r#"
        issuer = "https://tenant.example/"
        audience = "https://api.example"
        [[rules]]
        path = "/health"
        public = true
        [[rules]]
        prefix = "/admin/"
        all_scopes = ["admin"]
        [[rules]]
        path = "/restricted_resource"
        scopes = ["read:messages"]
        "#,
        "<bench>",
    )
    .expect("toml")
    .compile()
    .expect("config");
    (format!("Bearer {token}"), keys, config, now)
}

fn bench(c: &mut Criterion) {
    let (authorization, keys, config, now) = setup();
    c.bench_function("decision: valid RS256 token, cached key", |b| {
        b.iter(|| {
            let header = [black_box(authorization.as_str())];
            let path = policy::normalize(black_box("/restricted_resource?x=1")).expect("path");
            let route = config.policy().route("GET", &path).expect("route");
            let token = token::bearer_token(&header).expect("bearer");
            let claims = verify::verify(token, &keys, &config.issuers()[0].expectations, now);
            let decision = policy::decide(route.requirement, Some(claims.map_err(Into::into)));
            assert!(matches!(decision, Decision::Allow(Some(_))));
            decision
        })
    });
    // Route lookup alone: a path that is no rule's own, so every reading an upstream might apply
    // (letter case, trailing slash, dots and spaces) is looked up too.
    c.bench_function("route only: canonical path, unlisted", |b| {
        b.iter(|| {
            let path = policy::normalize(black_box("/api/v1/orders/12345?x=1")).expect("path");
            config.policy().route("GET", &path).expect("route").name
        })
    });
    c.bench_function("route only: canonical path, a rule's own", |b| {
        b.iter(|| {
            let path = policy::normalize(black_box("/restricted_resource")).expect("path");
            config.policy().route("GET", &path).expect("route").name
        })
    });
    let token = authorization.trim_start_matches("Bearer ");
    c.bench_function("verify only: RS256 signature + claims", |b| {
        b.iter(|| {
            verify::verify(
                black_box(token),
                &keys,
                &config.issuers()[0].expectations,
                now,
            )
            .expect("valid")
        })
    });
    c.bench_function("reject: bad signature", |b| {
        let mut forged = token.to_string();
        forged.replace_range(forged.len() - 4.., "AAAA");
        b.iter(|| {
            verify::verify(
                black_box(&forged),
                &keys,
                &config.issuers()[0].expectations,
                now,
            )
            .expect_err("forged")
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
