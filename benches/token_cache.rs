//! The verified-token cache: what an entry costs in memory, what a lookup costs, and what a
//! cached Check costs over gRPC beside a public-route Check (no token work at all) and a Check
//! with the cache off, all in one run.
//!
//! Memory is counted by a global allocator that tracks live heap bytes: a full default cache
//! (10,000 entries of the same realistic claims under distinct digests) minus the empty heap.
//!
//! Run: `cargo bench --bench token_cache`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{Criterion, criterion_group, criterion_main};
use scopegate::token_cache::TokenCache;

mod support;
use support::{check, concurrent, runtime, start};

/// Live heap bytes.
static LIVE: AtomicUsize = AtomicUsize::new(0);

struct Counting;

// SAFETY: every call is forwarded to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
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
            scopegate::keys::KeySet::parse(&jwks, &[scopegate::verify::Algorithm::RS256], 100)
                .expect("keys")
                .0
        });
        support::verified(&token, &keys)
    };
    let before = LIVE.load(Ordering::Relaxed);
    let cache = TokenCache::new(ENTRIES);
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

criterion_group!(benches, bench);
criterion_main!(benches);
