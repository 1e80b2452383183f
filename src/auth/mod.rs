//! Authentication: from a request's credentials to verified claims, pure where it decides.
//!
//! - [`certificate`]: the client certificate a request came with (the transport's peer
//!   certificate, or a trusted `x-forwarded-client-cert`), as the thumbprint a certificate-bound
//!   token names.
//! - [`token`]: the Bearer credential out of the `Authorization` header(s) (RFC 6750/7235).
//! - [`sources`]: the one credential out of the configured token sources (headers, cookies,
//!   query parameters), or why there is none.
//! - [`heap`] (a leaf): what an allocation takes from the allocator, for the byte budgets.
//! - [`keys`] (a leaf): signature algorithms, and JWKS documents parsed once into verifying keys.
//! - [`jwks`]: an issuer's key set over time: the snapshot readers take, the refresher, the
//!   unknown-`kid` refetch gate.
//! - [`verify`]: a compact JWS checked against a key-set snapshot; the only place that builds
//!   [`verify::VerifiedClaims`]. Its private `parse` module turns the token's bytes into a
//!   header and claims, deciding nothing.
//! - [`binding`]: what a verified token is bound to (`cnf`: a DPoP key or a client
//!   certificate), and why a request fails to prove it.
//! - [`dpop`]: DPoP proofs (RFC 9449) checked against the request and the bound token, pure;
//!   the parsed proof keys' cache.
//! - [`replay`]: proofs remembered until they expire, so none is accepted twice.
//! - [`token_cache`]: verified tokens remembered by digest, bounded in entries and bytes,
//!   re-checked on each use.
//! - [`introspect`]: opaque tokens (RFC 7662): which tokens are JWTs, an issuer's introspection
//!   settings, the call to its endpoint (the answer is read by [`verify::introspected`]).
//! - [`introspect_cache`]: the introspections' caches (positive and negative, bounded in
//!   bytes), single-flight per token, the in-flight cap and the calls-per-second bucket.

pub mod binding;
pub mod certificate;
pub mod dpop;
pub mod heap;
pub mod introspect;
pub mod introspect_cache;
pub mod jwks;
pub mod keys;
pub mod replay;
pub mod sources;
pub mod token;
pub mod token_cache;
pub mod verify;
