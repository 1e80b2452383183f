//! Dynamic metadata over gRPC: what an allow's `CheckResponse.dynamic_metadata` carries (the
//! fixed keys, forwarded claims by header name, `metadata_claims`), what it leaves out, and
//! that denials carry none.

use crate::common::*;
use envoy_types::pb::google::protobuf::{Struct, Value as Protobuf, value::Kind};
use serde_json::{Value, json};

const CONFIG: &str = r#"
metadata_claims = ["tenant", "/org/id"]

[forward_claims]
"x-auth-email" = "email"
"x-auth-groups" = "groups"

[[rules]]
name = "orders"
prefix = "/orders/"
scopes = ["orders:read"]

[[rules]]
name = "public pages"
prefix = "/public/"
public = true
"#;

/// The metadata as JSON, read independently of scopegate's own mapping.
fn json_of(metadata: &Struct) -> Value {
    fn value(v: &Protobuf) -> Value {
        match v.kind.as_ref().expect("a kind") {
            Kind::NullValue(_) => Value::Null,
            Kind::NumberValue(n) => json!(n),
            Kind::StringValue(s) => json!(s),
            Kind::BoolValue(b) => json!(b),
            Kind::StructValue(s) => json_of(s),
            Kind::ListValue(l) => Value::Array(l.values.iter().map(value).collect()),
        }
    }
    Value::Object(
        metadata
            .fields
            .iter()
            .map(|(k, v)| (k.clone(), value(v)))
            .collect(),
    )
}

/// An allow's metadata: every key the token has a value for, arrays as lists, and the same
/// again when the token comes back (from the token cache, which keeps what the metadata reads).
#[tokio::test]
async fn an_allow_carries_who_and_which_rule_with_arrays_as_lists() {
    let env = Env::start(CONFIG).await;
    let mut full = claims("orders:read openid");
    full["client_id"] = json!("client-a");
    full["azp"] = json!("party-b");
    full["email"] = json!("zoë@example.com");
    full["groups"] = json!(["eng", "ops"]);
    full["tenant"] = json!("acme");
    full["org"] = json!({ "id": 42, "name": "Acme" });
    let token = env.key.mint(&full);
    let authorization = bearer(&token);
    for attempt in ["first", "cached"] {
        let response = env
            .gate
            .check(request(
                "GET",
                "/orders/7",
                &[("authorization", &authorization)],
            ))
            .await;
        Answer::of(&response).assert_allowed();
        let metadata = response.dynamic_metadata.as_ref().expect("metadata");
        assert_eq!(
            json_of(metadata),
            json!({
                "sub": "auth0|user-1",
                "iss": ISSUER,
                "client_id": "client-a",
                "scopes": ["openid", "orders:read"],
                "rule": "orders",
                "x-auth-email": "zoë@example.com",
                "x-auth-groups": ["eng", "ops"],
                "tenant": "acme",
                "/org/id": 42.0,
            }),
            "{attempt}"
        );
    }
    env.gate.stop().await;
}

/// A claim the token lacks is a key left out, never an empty value; without `client_id`, `azp`
/// names the client; a public route's allow says only which rule let it through; a denial
/// carries no metadata at all.
#[tokio::test]
async fn absent_claims_are_absent_keys_and_denials_carry_none() {
    let env = Env::start(CONFIG).await;
    let mut lean = claims("orders:read");
    lean["azp"] = json!("party-b");
    lean["tenant"] = json!(null);
    let authorization = bearer(&env.key.mint(&lean));
    let response = env
        .gate
        .check(request(
            "GET",
            "/orders/7",
            &[("authorization", &authorization)],
        ))
        .await;
    Answer::of(&response).assert_allowed();
    assert_eq!(
        json_of(response.dynamic_metadata.as_ref().expect("metadata")),
        json!({
            "sub": "auth0|user-1",
            "iss": ISSUER,
            "client_id": "party-b",
            "scopes": ["orders:read"],
            "rule": "orders",
        })
    );

    let mut bare = claims("orders:read");
    bare.as_object_mut().expect("claims").remove("sub");
    let authorization = bearer(&env.key.mint(&bare));
    let response = env
        .gate
        .check(request(
            "GET",
            "/orders/7",
            &[("authorization", &authorization)],
        ))
        .await;
    Answer::of(&response).assert_allowed();
    assert_eq!(
        json_of(response.dynamic_metadata.as_ref().expect("metadata")),
        json!({ "iss": ISSUER, "scopes": ["orders:read"], "rule": "orders" })
    );

    // A public route: no identity, even with a valid token and a client's headers beside it.
    let mut full = claims("orders:read");
    full["client_id"] = json!("client-a");
    let authorization = bearer(&env.key.mint(&full));
    let response = env
        .gate
        .check(request(
            "GET",
            "/public/page",
            &[("authorization", &authorization), ("x-auth-email", "spoof")],
        ))
        .await;
    Answer::of(&response).assert_allowed();
    assert_eq!(
        json_of(response.dynamic_metadata.as_ref().expect("metadata")),
        json!({ "rule": "public pages" })
    );

    // Denials: no token, a token without the scope, a bad token.
    let weak = bearer(&env.key.mint(&claims("openid")));
    for headers in [
        vec![],
        vec![("authorization", weak.as_str())],
        vec![("authorization", "Bearer a.b.c")],
    ] {
        let response = env.gate.check(request("GET", "/orders/7", &headers)).await;
        assert_ne!(Answer::of(&response).code, OK, "{headers:?}");
        assert_eq!(response.dynamic_metadata, None, "{headers:?}");
    }
    env.gate.stop().await;
}
