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
    Issuer, METADATA_CLIENT_ID, METADATA_ISSUER, METADATA_RULE, METADATA_SCOPES, METADATA_SUBJECT,
    RESERVED_METADATA_KEYS,
};

/// An allow's metadata: key → JSON value (strings, lists of them, and what claims hold).
/// Transport-neutral; the gRPC adapter writes it as a protobuf `Struct`, the `/envoy/` HTTP
/// dialect as answer headers.
pub type Metadata = Map<String, Value>;

/// The metadata of an allow decided by `rule`, for `claims` verified by `issuer` (both `None`
/// for an anonymous allow): `rule`, and what the token has of `sub`, `iss`, `client_id` (the
/// `client_id` claim, else `azp`), `scopes` (a list), the forwarded claims (each under its
/// header's name, as the claim's JSON value: an array is a list) and the issuer's
/// `metadata_claims` (under the name or pointer as written). A claim that is absent or `null`
/// is a key left out. The fixed keys win over a forwarded header of the same name.
pub(super) fn of(claims: Option<&VerifiedClaims>, issuer: Option<&Issuer>, rule: &str) -> Metadata {
    let mut out = Map::new();
    if let Some(claims) = claims {
        // Keyed by header name: one name whichever issuer's claim (or JSON Pointer) fills it,
        // so one access-log format or rate-limit descriptor serves every issuer.
        for (header, text) in claims.forwarded() {
            if RESERVED_METADATA_KEYS.contains(&header.as_str()) {
                continue;
            }
            let value = issuer
                .and_then(|i| i.forwarded_metadata.iter().find(|m| m.key() == header))
                .and_then(|forwarded| claims.claim(forwarded.spec()).cloned())
                .unwrap_or_else(|| Value::String(text.clone()));
            out.insert(header.clone(), value);
        }
        for wanted in issuer.map_or(&[][..], |i| &i.metadata_claims) {
            if let Some(value) = claims.claim(wanted.spec()).filter(|v| !v.is_null()) {
                out.insert(wanted.key().to_owned(), value.clone());
            }
        }
        if let Some(sub) = claims.subject() {
            out.insert(METADATA_SUBJECT.into(), sub.into());
        }
        if let Some(issuer) = issuer {
            out.insert(
                METADATA_ISSUER.into(),
                issuer.expectations.issuer.as_str().into(),
            );
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
    use crate::config::{Config, RawConfig};

    fn config() -> Config {
        RawConfig::from_toml(
            r#"
            issuer = "https://issuer.example/"
            audience = "api"
            jwks_uri = "http://127.0.0.1:1/jwks.json"
            metadata_claims = ["tenant", "/org/id", "aud"]
            [forward_claims]
            "x-auth-email" = "email"
            "x-auth-groups" = "groups"
            "rule" = "forged"
            "#,
            "test",
        )
        .and_then(RawConfig::compile)
        .expect("valid")
    }

    /// Each key comes from its claim and is left out when the token lacks it (or holds
    /// `null`); forwarded arrays are lists; an anonymous allow says only which rule let it
    /// through; the fixed keys win over a forwarded header that happens to share a name.
    #[test]
    fn metadata_holds_what_the_token_has_and_leaves_out_what_it_lacks() {
        let config = config();
        let issuer = &config.issuers()[0];
        let full = VerifiedClaims::for_tests(Some("user-1"), &["write", "read"])
            .with_client_for_tests(
                Some("client-a"),
                Some("party-b"),
                &[
                    ("x-auth-email", "u@example.com"),
                    ("x-auth-groups", "eng,ops"),
                    ("rule", "forged"),
                ],
            )
            .with_claim_for_tests("email", json!("u@example.com"))
            .with_claim_for_tests("groups", json!(["eng", "ops"]))
            .with_claim_for_tests("forged", json!("forged"))
            .with_claim_for_tests("tenant", json!(null))
            .with_claim_for_tests("/org/id", json!(42))
            .with_claim_for_tests("aud", json!(["api", "other"]));
        let azp_only =
            VerifiedClaims::for_tests(None, &[]).with_client_for_tests(None, Some("party-b"), &[]);
        let bare = VerifiedClaims::for_tests(None, &[]);
        let cases: [(Option<&VerifiedClaims>, Option<&Issuer>, serde_json::Value); 4] = [
            (
                Some(&full),
                Some(issuer),
                json!({
                    "sub": "user-1",
                    "iss": "https://issuer.example/",
                    "client_id": "client-a",
                    "scopes": ["read", "write"],
                    "rule": "orders",
                    "x-auth-email": "u@example.com",
                    "x-auth-groups": ["eng", "ops"],
                    "/org/id": 42,
                    "aud": ["api", "other"],
                }),
            ),
            (
                Some(&azp_only),
                Some(issuer),
                json!({ "iss": "https://issuer.example/", "client_id": "party-b", "rule": "orders" }),
            ),
            (
                Some(&bare),
                Some(issuer),
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
