//! The verified-token cache: what an entry costs in memory, what a lookup costs, and what a
//! cached Check costs over gRPC beside a public-route Check (no token work at all) and a Check
//! with the cache off, all in one run.
//!
//! Memory is counted by a global allocator that tracks live heap bytes: a full default cache
//! (10,000 entries of the same realistic claims under distinct digests) minus the empty heap.
//! Then, for tokens of three sizes (2 scopes; 200 RBAC permissions, about 5 KB; 3,850 short
//! scopes, about 15.6 KB), the heap one entry really takes beside the estimate the cache weighs
//! it by (`token_cache::entry_bytes`), which must not be below it.
//!
//! Run: `cargo bench --bench token_cache`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use scopegate::auth::token_cache::TokenCache;

mod support;
use support::{check, concurrent, runtime, start};

/// Live heap bytes, as requested.
static LIVE: AtomicUsize = AtomicUsize::new(0);
/// Live heap bytes, each allocation rounded as the cache's estimate assumes the allocator
/// rounds it (`heap::allocation_bytes`): what the estimate's counting of allocations is
/// checked against.
static ROUNDED: AtomicUsize = AtomicUsize::new(0);

fn rounded(size: usize) -> usize {
    scopegate::auth::heap::allocation_bytes(size)
}

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        ROUNDED.fetch_add(rounded(layout.size()), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        ROUNDED.fetch_sub(rounded(layout.size()), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        ROUNDED.fetch_add(rounded(new_size), Ordering::Relaxed);
        ROUNDED.fetch_sub(rounded(layout.size()), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const IN_FLIGHT: u64 = 32;
const ENTRIES: usize = 10_000;

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let (cached_client, token) = rt.block_on(start(""));
    let (uncached_client, uncached_token) = rt.block_on(start("token_cache_size = 0"));
    let bearer = |t: &str| format!("Bearer {t}");

    // Memory: the claims a real Check verified, cached under ENTRIES distinct digests.
    let claims = {
        let keys = rt.block_on(async {
            let jwks = reqwest::get(support::jwks_uri_of(&token))
                .await
                .expect("jwks")
                .bytes()
                .await
                .expect("body");
            scopegate::auth::keys::KeySet::parse(
                &jwks,
                &[scopegate::auth::verify::Algorithm::RS256],
                100,
            )
            .expect("keys")
            .0
        });
        support::verified(&token, &keys)
    };
    let before = LIVE.load(Ordering::Relaxed);
    let cache = TokenCache::new(ENTRIES, 32 * 1024 * 1024);
    for i in 0..ENTRIES {
        cache.insert(TokenCache::digest(&format!("{token}{i}")), 0, &claims);
    }
    let after = LIVE.load(Ordering::Relaxed);
    println!(
        "token cache memory: {} entries, {} bytes live, {} bytes per entry",
        cache.len(),
        after - before,
        (after - before) / cache.len().max(1)
    );

    entry_sizes();

    let digest = TokenCache::digest(&format!("{token}0"));
    c.bench_function("token cache: digest of a token", |b| {
        b.iter(|| TokenCache::digest(black_box(&token)))
    });
    c.bench_function("token cache: lookup of a present entry", |b| {
        b.iter(|| cache.get(black_box(&digest)).expect("present"))
    });

    for (name, client, request) in [
        (
            "public route, no token work",
            &cached_client,
            check("/public", None),
        ),
        (
            "valid token, cache hit",
            &cached_client,
            check("/restricted_resource", Some(&bearer(&token))),
        ),
        (
            "valid token, cache off",
            &uncached_client,
            check("/restricted_resource", Some(&bearer(&uncached_token))),
        ),
    ] {
        c.bench_function(&format!("grpc Check, {IN_FLIGHT} in flight: {name}"), |b| {
            b.iter_custom(|iters| concurrent(&rt, client, &request, 0, IN_FLIGHT, iters))
        });
    }
}

/// Per-entry heap, counted and estimated, for small, RBAC-sized and large tokens, each verified
/// for real (an RS256 key made here, its JWKS parsed by `KeySet::parse`).
fn entry_sizes() {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use scopegate::auth::verify::{Algorithm, Expectations};

    let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("key");
    let modulus = {
        use aws_lc_rs::signature::KeyPair as _;
        key.public_key()
            .modulus()
            .big_endian_without_leading_zero()
            .to_vec()
    };
    let jwks = serde_json::json!({"keys": [{"kty": "RSA", "kid": "bench",
        "n": URL_SAFE_NO_PAD.encode(modulus), "e": "AQAB"}]});
    let (keys, _) =
        scopegate::auth::keys::KeySet::parse(jwks.to_string().as_bytes(), &[Algorithm::RS256], 1)
            .expect("keys");
    let expect = Expectations {
        issuer: "https://issuer.bench/".into(),
        audiences: vec![support::AUDIENCE.into()],
        leeway_seconds: 60,
        algorithms: vec![Algorithm::RS256],
        token_types: None,
        scope_claims: vec!["scope".into(), "scp".into()],
        forward_claims: Vec::new(),
        retain_claims: Vec::new(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let verified = |scope: &str| {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"bench"}"#);
        let payload = URL_SAFE_NO_PAD.encode(
            serde_json::json!({"iss": expect.issuer, "aud": support::AUDIENCE,
                "sub": "auth0|5f7c8ec7c33c6c004bbafe82", "exp": now + 3600, "iat": now,
                "azp": "bench-client", "scope": scope})
            .to_string(),
        );
        let input = format!("{header}.{payload}");
        let mut signature = vec![0; key.public_modulus_len()];
        key.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut signature,
        )
        .expect("sign");
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
        let claims = scopegate::auth::verify::verify(&token, &keys, &expect, now).expect("valid");
        (token.len(), claims)
    };
    let rbac: Vec<String> = (0..200).map(|i| format!("read:resource-{i:05}")).collect();
    // Two-character scopes, as short as they come: 3,850 of them make a 15.6 KB token.
    let alphabet: Vec<char> = ('a'..='z')
        .chain('A'..='Z')
        .chain('0'..='9')
        .chain(['-', '_'])
        .collect();
    let large: Vec<String> = (0..3850)
        .map(|i| {
            [alphabet[i / alphabet.len()], alphabet[i % alphabet.len()]]
                .iter()
                .collect()
        })
        .collect();
    for (name, scope, entries) in [
        (
            "small (2 scopes)",
            "openid read:messages".to_string(),
            10_000,
        ),
        ("RBAC (200 permissions)", rbac.join(" "), 2_000),
        ("large (3,850 scopes)", large.join(" "), 200),
    ] {
        let (token_len, claims) = verified(&scope);
        // A budget far above what is inserted, so nothing is evicted and nothing refused.
        let digests: Vec<_> = (0..entries)
            .map(|i| TokenCache::digest(&format!("{name}{i}")))
            .collect();
        let (live, rounded) = (
            LIVE.load(Ordering::Relaxed),
            ROUNDED.load(Ordering::Relaxed),
        );
        let cache = TokenCache::new(entries * 4, 16 * 1024 * 1024 * 1024);
        for digest in digests {
            assert!(cache.insert(digest, 0, &claims));
        }
        let held = cache.len().max(1);
        let counted = (LIVE.load(Ordering::Relaxed) - live) / held;
        let counted_rounded = (ROUNDED.load(Ordering::Relaxed) - rounded) / held;
        let estimated = scopegate::auth::token_cache::entry_bytes(&claims);
        println!(
            "token cache entry, {name}: token {token_len} bytes, {} entries, per entry \
             {counted} bytes requested, {counted_rounded} rounded, {estimated} estimated",
            cache.len()
        );
        assert!(
            estimated >= counted_rounded as u64,
            "{name}: the estimate ({estimated}) is below the heap counted ({counted_rounded})"
        );
        drop(cache);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
