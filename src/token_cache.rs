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
//! Bounded: at most `token_cache_size` entries (`quick_cache`, CLOCK-Pro eviction, sharded
//! locks); 0 turns the cache off.

use std::sync::Arc;

use crate::verify::VerifiedClaims;

/// The SHA-256 of a token's bytes: the cache key. Keeping the digest rather than the token
/// means the cache holds no credential.
pub type TokenDigest = [u8; 32];

/// What the cache remembers of one verified token.
#[derive(Debug)]
pub struct Entry {
    /// Index of the issuer (in the configuration) whose keys verified it.
    pub issuer: usize,
    /// The verified claims.
    pub claims: VerifiedClaims,
}

/// A bounded cache of verified tokens, or none (size 0).
#[derive(Debug)]
pub struct TokenCache {
    entries: Option<quick_cache::sync::Cache<TokenDigest, Arc<Entry>>>,
}

impl TokenCache {
    /// A cache of at most `size` entries; `0` caches nothing.
    pub fn new(size: usize) -> TokenCache {
        TokenCache {
            entries: (size > 0).then(|| quick_cache::sync::Cache::new(size)),
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

    /// Remembers a verified token.
    pub fn insert(&self, digest: TokenDigest, issuer: usize, claims: &VerifiedClaims) {
        if let Some(entries) = &self.entries {
            entries.insert(
                digest,
                Arc::new(Entry {
                    issuer,
                    claims: claims.clone(),
                }),
            );
        }
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
}
