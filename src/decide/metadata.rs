//! The dynamic metadata of an allow: who was let through and by which rule, for what the proxy
//! does after the decision (Envoy's access log, rate-limit descriptors, later filters), which
//! read metadata rather than the headers sent upstream. Envoy's ext_authz filter keeps it under
//! its own namespace, `envoy.filters.http.ext_authz`.
//!
//! Values come from the verified claims only, never from the request. A claim the token lacks
//! is a key left out, never an empty value; an anonymous allow (a public route, a preflight let
//! through) carries only `rule`.

use serde_json::{Map, Value};

use crate::auth::verify::VerifiedClaims;
use crate::config::{
    METADATA_CLIENT_ID, METADATA_ISSUER, METADATA_RULE, METADATA_SCOPES, METADATA_SUBJECT,
    RESERVED_METADATA_KEYS,
};

/// An allow's metadata: key → JSON value (strings, lists of them, and what claims hold).
/// Transport-neutral; the gRPC adapter writes it as a protobuf `Struct`, the `/envoy/` HTTP
/// dialect as answer headers.
pub type Metadata = Map<String, Value>;

/// The metadata of an allow decided by `rule`, for `claims` verified with the keys of `issuer`
/// (both `None` for an anonymous allow): `rule`, and what the token has of `sub`, `iss`,
/// `client_id` (the `client_id` claim, else `azp`), `scopes` (a list) and the forwarded claims,
/// each under its header's name. The fixed keys win over a forwarded header of the same name.
pub(super) fn of(claims: Option<&VerifiedClaims>, issuer: Option<&str>, rule: &str) -> Metadata {
    let mut out = Map::new();
    if let Some(claims) = claims {
        // Keyed by header name: one name whichever issuer's claim (or JSON Pointer) fills it,
        // so one access-log format or rate-limit descriptor serves every issuer.
        for (header, value) in claims.forwarded() {
            if !RESERVED_METADATA_KEYS.contains(&header.as_str()) {
                out.insert(header.clone(), Value::String(value.clone()));
            }
        }
        if let Some(sub) = claims.subject() {
            out.insert(METADATA_SUBJECT.into(), sub.into());
        }
        if let Some(issuer) = issuer {
            out.insert(METADATA_ISSUER.into(), issuer.into());
        }
        if let Some(client) = claims.client_id().or(claims.azp()) {
            out.insert(METADATA_CLIENT_ID.into(), client.into());
        }
        if !claims.scopes().is_empty() {
            let scopes = claims.scopes().iter().map(|s| Value::from(s.as_str()));
            out.insert(METADATA_SCOPES.into(), Value::Array(scopes.collect()));
        }
    }
    out.insert(METADATA_RULE.into(), rule.into());
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Each key comes from its claim and is left out when the token lacks it; an anonymous
    /// allow says only which rule let it through; the fixed keys win over a forwarded header
    /// that happens to share a name.
    #[test]
    fn metadata_holds_what_the_token_has_and_leaves_out_what_it_lacks() {
        let full = VerifiedClaims::for_tests(Some("user-1"), &["write", "read"])
            .with_client_for_tests(
                Some("client-a"),
                Some("party-b"),
                &[("x-auth-email", "u@example.com"), ("rule", "forged")],
            );
        let azp_only =
            VerifiedClaims::for_tests(None, &[]).with_client_for_tests(None, Some("party-b"), &[]);
        let bare = VerifiedClaims::for_tests(None, &[]);
        let cases: [(Option<&VerifiedClaims>, Option<&str>, serde_json::Value); 4] = [
            (
                Some(&full),
                Some("https://issuer.example/"),
                json!({
                    "sub": "user-1",
                    "iss": "https://issuer.example/",
                    "client_id": "client-a",
                    "scopes": ["read", "write"],
                    "rule": "orders",
                    "x-auth-email": "u@example.com",
                }),
            ),
            (
                Some(&azp_only),
                Some("https://issuer.example/"),
                json!({ "iss": "https://issuer.example/", "client_id": "party-b", "rule": "orders" }),
            ),
            (
                Some(&bare),
                Some("https://issuer.example/"),
                json!({ "iss": "https://issuer.example/", "rule": "orders" }),
            ),
            (None, None, json!({ "rule": "orders" })),
        ];
        for (claims, issuer, want) in cases {
            assert_eq!(
                Value::Object(of(claims, issuer, "orders")),
                want,
                "{claims:?}"
            );
        }
    }
}
