//! The verified-token cache on the real binary, its hits and misses read from `/metrics`: a hit
//! only for the same token bytes while the token and its key still hold and the key set is
//! fresh, never across a reload,
//! nothing at all with `token_cache_size = 0`, and never more memory than its byte budget,
//! however large the tokens (the budget read from `/metrics`, the memory from `/proc`).

use std::time::Duration;

use crate::common::binary::Binary;
use crate::common::*;
use crate::observability::{sample, scrape, token_cache_lookups};
use serde_json::json;

fn config(jwks_uri: &str, audience: &str, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\n\
         audience = \"{audience}\"\njwks_uri = \"{jwks_uri}\"\njwks_refetch_cooldown_seconds = 1\n\
         {extra}\n[[rules]]\npath = \"/r\"\nscopes = [\"read\"]\n"
    )
}

/// The HTTP status for GET /r with `token` (200 for an allow) and the denial's message.
async fn ask(binary: &Binary, token: &str) -> (i32, String) {
    let answer = Answer::of(
        &binary
            .client()
            .await
            .check(request("GET", "/r", &[("authorization", &bearer(token))]))
            .await
            .expect("in-band answer")
            .into_inner(),
    );
    let message = if answer.code == 0 {
        String::new()
    } else {
        answer.message().to_string()
    };
    (answer.status(), message)
}

async fn started(name: &str, text: &str) -> (Binary, String) {
    let binary = Binary::start(name, text, "info", None).await;
    binary.keys_loaded().await;
    let metrics = binary.metrics_addr().await;
    (binary, metrics)
}

#[tokio::test]
async fn a_cached_token_stops_at_exp_and_a_changed_signature_never_hits() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let (binary, metrics) = started(
        "cache-exp",
        &config(&jwks.url(), AUDIENCE, "leeway_seconds = 0"),
    )
    .await;
    let mut short = claims("read");
    short["exp"] = json!(now() + 2);
    let token = key.mint(&short);
    assert_eq!(ask(&binary, &token).await.0, 200);
    assert_eq!(ask(&binary, &token).await.0, 200);
    assert_eq!(
        token_cache_lookups(&metrics).await,
        (1.0, 1.0),
        "the second Check hit"
    );

    // One bit of the signature changed: its own digest, never the cached entry.
    let mut bytes = token.clone().into_bytes();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(bytes).expect("ascii");
    assert_eq!(
        ask(&binary, &forged).await,
        (401, "token signature is invalid".to_string())
    );
    assert_eq!(token_cache_lookups(&metrics).await, (1.0, 2.0));

    // At exp (no leeway), the cached entry no longer serves: the token is refused as expired.
    eventually("the token to expire", Duration::from_secs(10), || async {
        ask(&binary, &token).await == (401, "token has expired".to_string())
    })
    .await;
}

#[tokio::test]
async fn a_cached_token_stops_when_its_key_leaves_the_jwks() {
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&old]))).await;
    let (binary, metrics) = started("cache-rotation", &config(&jwks.url(), AUDIENCE, "")).await;
    let token = old.mint(&claims("read"));
    assert_eq!(ask(&binary, &token).await.0, 200);
    assert_eq!(ask(&binary, &token).await.0, 200);
    assert_eq!(token_cache_lookups(&metrics).await.0, 1.0);

    // The issuer rotates `old` out; a token under the new kid makes scopegate refetch.
    jwks.set(Reply::json(&jwks_of(&[&new])));
    assert_eq!(ask(&binary, &new.mint(&claims("read"))).await.0, 200);
    let (status, message) = ask(&binary, &token).await;
    assert_eq!(status, 401, "{message}");
    assert_eq!(
        token_cache_lookups(&metrics).await.0,
        1.0,
        "no hit for a key that left"
    );
}

#[tokio::test]
async fn a_reload_empties_the_cache() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let (binary, metrics) = started("cache-reload", &config(&jwks.url(), AUDIENCE, "")).await;
    let token = key.mint(&claims("read"));
    assert_eq!(ask(&binary, &token).await.0, 200);
    assert_eq!(ask(&binary, &token).await.0, 200);
    assert_eq!(token_cache_lookups(&metrics).await.0, 1.0);

    // The audience changes: the token no longer matches, whatever was cached.
    std::fs::write(
        binary.config_path(),
        config(&jwks.url(), "https://other.example", ""),
    )
    .expect("write");
    binary.sighup();
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .await;
    assert_eq!(
        ask(&binary, &token).await,
        (401, "token audience is not accepted".to_string())
    );
    assert_eq!(
        token_cache_lookups(&metrics).await.0,
        1.0,
        "no hit after the reload"
    );
}

#[tokio::test]
async fn a_cache_of_size_zero_caches_nothing() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let (binary, metrics) = started(
        "cache-off",
        &config(&jwks.url(), AUDIENCE, "token_cache_size = 0"),
    )
    .await;
    let token = key.mint(&claims("read"));
    for _ in 0..3 {
        assert_eq!(ask(&binary, &token).await.0, 200);
    }
    assert_eq!(
        token_cache_lookups(&metrics).await,
        (0.0, 0.0),
        "no lookups at all"
    );
}

/// The cache never extends the life of a key set: several distinct tokens, each cached (a hit
/// on its second Check), all get 503 once the issuer has failed for `jwks_max_stale_seconds`,
/// and none of them is answered from the cache after that.
#[tokio::test]
async fn cached_tokens_get_503_once_the_keys_are_stale_and_none_is_served_from_the_cache() {
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let short_stale = "jwks_refresh_seconds = 1\njwks_min_refresh_seconds = 1\n\
        jwks_max_refresh_seconds = 1\njwks_fetch_timeout_seconds = 1\njwks_max_stale_seconds = 12";
    let (binary, metrics) =
        started("cache-stale", &config(&jwks.url(), AUDIENCE, short_stale)).await;
    let tokens: Vec<String> = (0..5)
        .map(|i| {
            let mut c = claims("read");
            c["sub"] = json!(format!("user-{i}"));
            key.mint(&c)
        })
        .collect();
    for token in &tokens {
        assert_eq!(ask(&binary, token).await.0, 200);
        assert_eq!(ask(&binary, token).await.0, 200);
    }
    assert_eq!(
        token_cache_lookups(&metrics).await,
        (5.0, 5.0),
        "each token cached"
    );

    // The issuer fails from now on. A token never seen before shows when the set is stale.
    jwks.set(Reply::Respond(500, vec![], vec![]));
    let mut fresh = 0;
    eventually("the key set to go stale", Duration::from_secs(30), || {
        fresh += 1;
        let mut c = claims("read");
        c["jti"] = json!(format!("probe-{fresh}"));
        let probe = key.mint(&c);
        let binary = &binary;
        async move { ask(binary, &probe).await.0 == 503 }
    })
    .await;
    let (hits, _) = token_cache_lookups(&metrics).await;
    for token in &tokens {
        for _ in 0..2 {
            assert_eq!(
                ask(&binary, token).await,
                (503, "signing keys are not available".to_string())
            );
        }
    }
    assert_eq!(
        token_cache_lookups(&metrics).await.0,
        hits,
        "no Check past staleness is answered from the cache"
    );
}

/// Distinct valid tokens of 3,850 two-character scopes (15.6 KB each, about 220 KiB of heap
/// once verified): 3,000 of them took the binary from 26 to 678 MiB when the cache counted only
/// entries. Weighed by their bytes, 1,500 of them (twelve times what the budget holds) leave
/// the cache within the default budget (32 MiB), and the process too, but for a fixed margin
/// (transient allocations, allocator slack; 31 MiB of growth in all was seen). The defaults
/// are in force: `token_cache_size` 10,000 entries, `token_cache_max_bytes` 32 MiB.
#[tokio::test]
async fn large_tokens_stay_within_the_byte_budget() {
    const TOKENS: usize = 1_500;
    const BUDGET_MIB: u64 = 32;
    const MARGIN_MIB: u64 = 24;
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let (binary, metrics) = started("cache-bytes", &config(&jwks.url(), AUDIENCE, "")).await;
    let alphabet: Vec<char> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .chain(['-', '_'])
        .collect();
    let mut scopes: Vec<String> = (0..3_849)
        .map(|i| {
            [alphabet[i / alphabet.len()], alphabet[i % alphabet.len()]]
                .iter()
                .collect()
        })
        .collect();
    scopes.push("read".into());
    let scope = scopes.join(" ");
    let large = |i: usize| {
        let mut c = claims(&scope);
        c["jti"] = json!(format!("large-{i}"));
        key.mint(&c)
    };
    assert!(large(0).len() > 15_000, "{}", large(0).len());
    assert_eq!(ask(&binary, &large(0)).await.0, 200);
    let before = binary.rss_mib();

    let mut tasks = tokio::task::JoinSet::new();
    let workers = 4;
    for worker in 0..workers {
        let client = binary.client().await;
        let tokens: Vec<String> = (0..TOKENS)
            .filter(|i| i % workers == worker)
            .map(large)
            .collect();
        tasks.spawn(async move {
            for token in tokens {
                let answer = client
                    .clone()
                    .check(request("GET", "/r", &[("authorization", &bearer(&token))]))
                    .await
                    .expect("in-band answer")
                    .into_inner();
                assert_eq!(answer.status.map(|s| s.code), Some(0), "allowed");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("worker");
    }

    let scrape = scrape(&metrics).await;
    let held = sample(&scrape, "scopegate_token_cache_bytes", &[]);
    let after = binary.rss_mib();
    assert!(
        held <= (BUDGET_MIB * 1024 * 1024) as f64,
        "the cache weighs {held} bytes, over its budget"
    );
    assert!(
        held >= (BUDGET_MIB * 1024 * 1024 / 2) as f64,
        "the cache weighs only {held} bytes: large tokens are cached up to the budget"
    );
    assert!(
        after <= before + BUDGET_MIB + MARGIN_MIB,
        "RSS went from {before} MiB to {after} MiB with {TOKENS} large tokens"
    );
}

/// The choice the cache documents for ECDSA: the key is the exact token bytes, not normalised.
/// A token's twin with `s` replaced by `n - s` verifies too (no low-`s` rule), and is an entry
/// of its own for the same claims; each hits only itself afterwards.
#[tokio::test]
async fn an_ecdsa_high_s_twin_verifies_and_is_an_entry_of_its_own() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    // The order of P-256, big-endian.
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63,
        0x25, 0x51,
    ];
    let key = CurveKey::ec("p256", "P-256");
    let jwks = JwksServer::start(Reply::json(&json!({ "keys": [key.jwk] }))).await;
    let (binary, metrics) = started(
        "cache-high-s",
        &config(&jwks.url(), AUDIENCE, "algorithms = [\"ES256\"]"),
    )
    .await;
    let token = key.mint(jsonwebtoken::Algorithm::ES256, &claims("read"));
    let (input, signature) = token.rsplit_once('.').expect("three segments");
    let signature = URL_SAFE_NO_PAD.decode(signature).expect("base64url");
    // s' = n - s, big-endian, with borrow.
    let mut twin = signature[..32].to_vec();
    let mut borrow = 0i16;
    let mut s_twin = [0u8; 32];
    for i in (0..32).rev() {
        let digit = i16::from(N[i]) - i16::from(signature[32 + i]) - borrow;
        (s_twin[i], borrow) = if digit < 0 {
            ((digit + 256) as u8, 1)
        } else {
            (digit as u8, 0)
        };
    }
    twin.extend_from_slice(&s_twin);
    let twin = format!("{input}.{}", URL_SAFE_NO_PAD.encode(twin));
    assert_ne!(twin, token);

    assert_eq!(ask(&binary, &token).await.0, 200);
    assert_eq!(
        ask(&binary, &twin).await,
        (200, String::new()),
        "the twin verifies"
    );
    assert_eq!(
        token_cache_lookups(&metrics).await,
        (0.0, 2.0),
        "two entries, no shared one"
    );
    assert_eq!(ask(&binary, &token).await.0, 200);
    assert_eq!(ask(&binary, &twin).await.0, 200);
    assert_eq!(
        token_cache_lookups(&metrics).await,
        (2.0, 2.0),
        "each hits its own entry"
    );
}
