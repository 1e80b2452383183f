//! The keys of the dynamic metadata an allow carries (`decide` builds it): the fixed ones, and
//! the `metadata_claims` an issuer adds.

/// The metadata key of the token's `sub`.
pub const METADATA_SUBJECT: &str = "sub";
/// The metadata key of the issuer that verified the token (its `iss`, exactly).
pub const METADATA_ISSUER: &str = "iss";
/// The metadata key of the OAuth client: the `client_id` claim (RFC 9068), else `azp`.
pub const METADATA_CLIENT_ID: &str = "client_id";
/// The metadata key of the granted scopes, a list.
pub const METADATA_SCOPES: &str = "scopes";
/// The metadata key of the deciding rule's name (`default` when none matched).
pub const METADATA_RULE: &str = "rule";

/// Every key scopegate itself puts in an allow's metadata, and the one Envoy's ext_authz filter
/// adds to it (`ext_authz_duration`): no configured claim may take one of them.
pub const RESERVED_METADATA_KEYS: [&str; 6] = [
    METADATA_SUBJECT,
    METADATA_ISSUER,
    METADATA_CLIENT_ID,
    METADATA_SCOPES,
    METADATA_RULE,
    "ext_authz_duration",
];
