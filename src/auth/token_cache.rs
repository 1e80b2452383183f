//! The verified-token cache: authentication only, never decisions.
//!
//! A token that verified is remembered under the SHA-256 of its exact bytes, with its verified
//! claims, the issuer it was routed to and the fingerprint of the key that verified it. Before
//! an entry is used it is checked again ([`VerifiedClaims::still_valid`]): `exp`/`nbf` with
//! leeway at the moment of use, and the key still in its issuer's key set in force, unchanged.
//! The caller consults the cache only once it holds a fresh key set, so the cache never extends
//! staleness. A cache belongs to one configuration generation: a reload starts an empty one, so
//! a changed issuer, audience or rule can never meet an entry verified under the old one.
//! Denials are never cached; rules are always evaluated afresh.
//!
//! Bounded in memory and in entries (`quick_cache`, CLOCK-Pro eviction, sharded locks): each
//! entry weighs its estimated bytes ([`entry_bytes`]: the claims' heap, the entry and the cache's
//! own slot), but never less than `max_bytes / size`, and the cache's one weight capacity is
//! `max_bytes`. So the weights of the entries held never pass `max_bytes`, and there are never
//! more than about `size` of them (a few more at most, from rounding the capacity over shards).
//! An entry heavier than `max_bytes / 64` is not cached at all: a handful of such tokens would
//! otherwise push out every ordinary one. `size` or `max_bytes` 0 turns the cache off.
//!
//! The key is the token's exact bytes, with no normalising: an ECDSA token and its twin with
//! `s` replaced by `n - s` (which verifies as well, RFC 7518 asks for no low-`s` rule) are two
//! entries for the same claims. Holding one valid token, a client can make at most one more
//! entry from it, which it could as well do with a second token; reading the signature before
//! the lookup would cost every hit, and refusing high-`s` signatures would refuse issuers whose
//! signers do not normalise.

use std::sync::Arc;

use crate::auth::heap::allocation_bytes;
use crate::auth::verify::VerifiedClaims;

/// The SHA-256 of a token's bytes: the cache key. Keeping the digest rather than the token
/// means the cache holds no credential.
pub type TokenDigest = [u8; 32];

/// The largest entry is `max_bytes / MAX_ENTRY_SHARE`.
pub const MAX_ENTRY_SHARE: u64 = 64;

/// Shards of the cache (fewer when `size` is small): each holds `max_bytes / SHARDS`, which
/// must stay well above the largest entry, or `quick_cache` would refuse it in a shard however
/// empty the rest of the cache is.
const SHARDS: usize = 16;

/// What `quick_cache` holds for one entry beside the value: the digest and the `Arc` in its
/// slab, its index, and the ghost record an evicted key leaves behind (from above; the bench
/// `token_cache` counts the whole).
const SLOT_BYTES: usize = 128;

/// What the cache remembers of one verified token.
#[derive(Debug)]
pub struct Entry {
    /// Index of the issuer (in the configuration) whose keys verified it.
    pub issuer: usize,
    /// The verified claims.
    pub claims: VerifiedClaims,
    /// Its weight in the cache, worked out once when it is inserted: the weigher runs during
    /// eviction and must be cheap.
    weight: u64,
}

/// The estimated bytes one cache entry holding `claims` takes: the claims' heap, the `Arc`'d
/// entry and the cache's slot.
pub fn entry_bytes(claims: &VerifiedClaims) -> u64 {
    let arc = allocation_bytes(2 * size_of::<usize>() + size_of::<Entry>());
    (claims.heap_bytes() + arc + SLOT_BYTES) as u64
}

/// Weighs an entry by the weight it was given when inserted.
#[derive(Clone, Debug)]
struct ByWeight;

impl quick_cache::Weighter<TokenDigest, Arc<Entry>> for ByWeight {
    fn weight(&self, _digest: &TokenDigest, entry: &Arc<Entry>) -> u64 {
        entry.weight
    }
}

type Entries = quick_cache::sync::Cache<TokenDigest, Arc<Entry>, ByWeight>;

/// A bounded cache of verified tokens, or none (size or byte budget 0).
#[derive(Debug)]
pub struct TokenCache {
    entries: Option<Entries>,
    /// The least an entry weighs: `max_bytes / size`, so that weight bounds the count too.
    floor: u64,
    /// The most an entry may weigh to be cached at all.
    ceiling: u64,
}

impl TokenCache {
    /// A cache of at most about `size` entries weighing at most `max_bytes` in all; either `0`
    /// caches nothing.
    pub fn new(size: usize, max_bytes: u64) -> TokenCache {
        if size == 0 || max_bytes == 0 {
            return TokenCache {
                entries: None,
                floor: 0,
                ceiling: 0,
            };
        }
        let options = quick_cache::OptionsBuilder::new()
            .estimated_items_capacity(size)
            .weight_capacity(max_bytes)
            .shards(SHARDS)
            .build()
            .unwrap_or_else(|_| unreachable!("capacity and weight are both set"));
        TokenCache {
            entries: Some(Entries::with_options(
                options,
                ByWeight,
                Default::default(),
                Default::default(),
            )),
            floor: (max_bytes / size as u64).max(1),
            ceiling: max_bytes / MAX_ENTRY_SHARE,
        }
    }

    /// Whether the cache is on.
    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The cache key of `token`.
    pub fn digest(token: &str) -> TokenDigest {
        let mut out = [0u8; 32];
        out.copy_from_slice(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref(),
        );
        out
    }

    /// The entry for `digest`, if any: to be checked with [`VerifiedClaims::still_valid`]
    /// before use.
    pub fn get(&self, digest: &TokenDigest) -> Option<Arc<Entry>> {
        self.entries.as_ref()?.get(digest)
    }

    /// Remembers a verified token, unless its entry alone would weigh more than
    /// `max_bytes / 64`. Whether it was cached.
    pub fn insert(&self, digest: TokenDigest, issuer: usize, claims: &VerifiedClaims) -> bool {
        let Some(entries) = &self.entries else {
            return false;
        };
        let bytes = entry_bytes(claims);
        if bytes > self.ceiling {
            return false;
        }
        entries.insert(
            digest,
            Arc::new(Entry {
                issuer,
                claims: claims.clone(),
                weight: bytes.max(self.floor),
            }),
        );
        true
    }

    /// Forgets `digest` (an entry that no longer holds).
    pub fn remove(&self, digest: &TokenDigest) {
        if let Some(entries) = &self.entries {
            entries.remove(digest);
        }
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, |e| e.len())
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The weight of the entries held now, in (estimated) bytes: at most `max_bytes`.
    pub fn bytes(&self) -> u64 {
        self.entries.as_ref().map_or(0, |e| e.weight())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// Claims with `count` scopes of `width` characters each.
    fn claims(count: usize, width: usize) -> VerifiedClaims {
        let scopes: Vec<String> = (0..count).map(|i| format!("{i:0width$}")).collect();
        let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
        VerifiedClaims::for_tests(Some("auth0|user-1"), &scopes)
    }

    fn digest(i: usize) -> TokenDigest {
        TokenCache::digest(&i.to_string())
    }

    /// The estimate counts every scope's buffer and the set's nodes, so it grows with them, and
    /// never falls below the bytes of the scope text itself.
    #[test]
    fn an_entry_weighs_at_least_what_its_claims_hold() {
        for (count, width) in [(0, 1), (2, 8), (200, 20), (3_850, 2)] {
            let claims = claims(count, width);
            let text: usize = claims.scopes().iter().map(String::len).sum();
            let bytes = entry_bytes(&claims) as usize;
            // Each scope: its own allocation (at least 32 bytes) and its place in a node.
            assert!(
                bytes >= text + count * (32 + size_of::<String>()),
                "{count} scopes of {width}: {bytes}"
            );
        }
        assert!(entry_bytes(&claims(3_850, 2)) > entry_bytes(&claims(200, 20)));
    }

    /// Whatever is inserted, the weight held stays within the budget (`max_bytes`, from
    /// `token_cache_max_bytes`), the entries within `size` (`token_cache_size`; but for one per
    /// shard, from rounding the budget over the shards), and an entry over `max_bytes / 64` is
    /// not cached at all.
    #[test]
    fn entries_are_bounded_by_bytes_and_by_count() {
        // (size, budget, scopes and width of every token, tokens inserted)
        let cases: [(usize, u64, (usize, usize), usize); 6] = [
            // Small tokens: the entry count binds (each weighs budget / size).
            (100, MIB, (2, 8), 1_000),
            (10_000, 32 * MIB, (2, 8), 12_000),
            // Large tokens (about 20 KiB each, under this budget's ceiling of 64 KiB): bytes bind.
            (10_000, 4 * MIB, (250, 8), 2_000),
            // The default budget with RBAC-sized tokens (about 15 KiB each).
            (10_000, 32 * MIB, (200, 20), 4_000),
            // 3,850 short scopes (about 270 KiB): over 1/64 of 1 MiB, never cached; under 1/64
            // of the default budget, cached up to it.
            (10_000, MIB, (3_850, 2), 10),
            (10_000, 32 * MIB, (3_850, 2), 500),
        ];
        for (size, budget, (count, width), inserted) in cases {
            let name = format!("size {size}, budget {budget}, {count} scopes");
            let cache = TokenCache::new(size, budget);
            let claims = claims(count, width);
            let bytes = entry_bytes(&claims);
            let fits = bytes <= budget / MAX_ENTRY_SHARE;
            for i in 0..inserted {
                assert_eq!(cache.insert(digest(i), 0, &claims), fits, "{name}");
                assert!(cache.bytes() <= budget, "{name}: {}", cache.bytes());
            }
            if !fits {
                assert!(cache.is_empty(), "{name}");
                assert_eq!(cache.bytes(), 0, "{name}");
                continue;
            }
            let weight = bytes.max(budget / size as u64);
            let most = (budget / weight) as usize;
            assert!(
                cache.len() <= most + SHARDS,
                "{name}: {} entries",
                cache.len()
            );
            assert!(
                cache.len() >= (most * 3 / 4).min(inserted),
                "{name}: only {} entries",
                cache.len()
            );
            assert_eq!(cache.bytes(), weight * cache.len() as u64, "{name}");
        }
    }

    #[test]
    fn size_zero_caches_nothing() {
        let cache = TokenCache::new(0, 32 * MIB);
        assert!(!cache.is_enabled());
        assert!(!cache.insert(digest(0), 0, &claims(1, 1)));
        assert!(cache.get(&digest(0)).is_none());
        assert_eq!((cache.len(), cache.bytes()), (0, 0));
    }
}
