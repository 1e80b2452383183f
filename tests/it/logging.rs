//! Observability invariants of the real binary: every decision is logged (with `decision_log =
//! "all"`, at info with decision, reason and rule), no token ever appears in the logs, and a JWKS full of unusable
//! entries costs one log line per load, not one per entry.

use std::time::Duration;

use crate::common::binary::Binary;
use crate::common::*;
use serde_json::json;

#[tokio::test]
async fn decisions_are_logged_and_tokens_never_are() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let config = format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"{}\"\ndecision_log = \"all\"\n\
         [[rules]]\npath = \"/restricted_resource\"\nscopes = [\"read:messages\"]\n",
        jwks.url()
    );
    let mut binary = Binary::start("decisions", &config, "debug", None).await;
    binary.keys_loaded().await;
    let mut client = binary.client().await;

    let good = key.mint(&claims("read:messages"));
    let mut expired_claims = claims("read:messages");
    expired_claims["exp"] = json!(now() - 3600);
    let expired = key.mint(&expired_claims);
    let forged = TestKey::generate("key-1").mint(&claims("read:messages"));
    let weak = key.mint(&claims("openid"));
    let huge_path = format!("/{}", "x".repeat(100_000));
    let cases = [
        ("/restricted_resource", good.clone()),
        (
            &*format!("/restricted_resource?access_token={good}"),
            good.clone(),
        ),
        ("/restricted_resource", expired.clone()),
        ("/restricted_resource", forged.clone()),
        ("/restricted_resource", weak.clone()),
        (&*huge_path, good.clone()),
    ];
    for (path, token) in &cases {
        let request = request("GET", path, &[("authorization", &bearer(token))]);
        client.check(request).await.expect("in-band answer");
    }
    // A 1000-byte method and a 5000-byte x-request-id: each is logged as its first 32 and 128
    // bytes with its length, so neither can make a line grow with what a client sends.
    let huge_method = "M".repeat(1000);
    let huge_request_id = "r".repeat(5000);
    let request = request(
        &huge_method,
        "/restricted_resource",
        &[
            ("authorization", &bearer(&good)),
            ("x-request-id", &huge_request_id),
        ],
    );
    client.check(request).await.expect("in-band answer");
    drop(client);
    binary.terminate().await;
    let text = binary.log_text();
    for token in [&good, &expired, &forged, &weak] {
        for part in token.split('.') {
            assert!(
                !text.contains(part),
                "a token segment leaked into the logs:\n{text}"
            );
        }
    }
    assert!(
        text.lines().any(|l| l.contains("INFO")
            && l.contains("decision=deny")
            && l.contains("reason=invalid_token")
            && l.contains("detail=token has expired")
            && l.contains("rule=rules[0]")),
        "denials are logged at info with reason and rule:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("decision=deny")
            && l.contains("reason=insufficient_scope")
            && l.contains("sub=\"auth0|user-1\"")),
        "scope denials name the subject:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("INFO")
            && l.contains("decision=allow")
            && l.contains("rule=rules[0]")),
        "allows are logged with decision_log = \"all\":\n{text}"
    );
    // A 100 KB path is logged as a bounded prefix with its length, not copied whole: its
    // first 256 bytes, the slash and 255 `x`.
    let cut_path = format!("path=\"/{}…(100001 bytes)\"", "x".repeat(256 - 1));
    assert!(
        text.lines()
            .any(|l| l.contains("decision=deny") && l.contains(&cut_path)),
        "the huge path's denial is logged, cut:\n{text:.2000}"
    );
    let cut_method = format!("method=\"{}…(1000 bytes)\"", "M".repeat(32));
    let cut_request_id = format!("request_id=\"{}…(5000 bytes)\"", "r".repeat(128));
    assert!(
        text.lines()
            .any(|l| l.contains(&cut_method) && l.contains(&cut_request_id)),
        "the huge method and request_id are logged as 32 and 128 bytes, cut:\n{text:.4000}"
    );
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2048, "a log line of {longest} bytes");
}

/// A direct gRPC caller puts CR/LF in the method and the path to write whole lines of its own
/// into a text log (`... INFO scopegate::decision: decision=allow sub="root"`). The text format
/// quotes and escapes both, so every line is one of scopegate's; and the method, not an HTTP
/// token, is refused (400) even though no rule restricts methods on `/public`.
#[tokio::test]
async fn crlf_in_method_or_path_cannot_forge_log_lines() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let config = format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"{}\"\ndecision_log = \"all\"\n\
         [[rules]]\npath = \"/public\"\npublic = true\n",
        jwks.url()
    );
    let mut binary = Binary::start("forged-lines", &config, "info", None).await;
    binary.keys_loaded().await;
    let mut client = binary.client().await;
    let forged =
        "2026-01-01T00:00:00.000000Z  INFO scopegate::decision: decision=allow sub=\"root\"";
    let cases = [
        (format!("GET\r\n{forged}"), "/public".to_string()),
        ("GET".to_string(), format!("/public\r\n{forged}")),
        (format!("GET\n{forged}"), format!("/x\"\\\n{forged}")),
    ];
    for (method, path) in &cases {
        let answer = client
            .check(request(method, path, &[]))
            .await
            .expect("in-band answer")
            .into_inner();
        Answer::of(&answer).assert_denied(400, "invalid_request");
    }
    // A clean request still passes, and is logged as before, quoted.
    let answer = client
        .check(request("GET", "/public", &[]))
        .await
        .expect("in-band answer")
        .into_inner();
    Answer::of(&answer).assert_allowed();
    drop(client);
    binary.terminate().await;
    let text = binary.log_text();
    for line in text.lines() {
        assert!(
            !line.contains("sub=\"root\"") || line.contains(r#"\"root\""#),
            "a forged line:\n{text}"
        );
        assert!(!line.starts_with("2026-01-01"), "a forged line:\n{text}");
    }
    assert!(
        text.lines().any(|l| l.contains("decision=deny")
            && l.contains("reason=bad_path")
            && l.contains(r#"method="GET\r\n2026-01-01T"#)),
        "the forged method is logged escaped:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(r#"path="/public\r\n2026-01-01T"#)),
        "the forged path is logged escaped:\n{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains("decision=allow") && l.contains(r#"method="GET" path="/public""#)),
        "{text}"
    );
}

/// A JWKS of 99 junk entries beside one good key: the skipped entries are one warning (counts by
/// reason, the first few kids), not 99 lines, at every load.
#[tokio::test]
async fn skipped_jwks_entries_are_one_summary_line() {
    let key = TestKey::generate("key-1");
    let mut keys = vec![key.jwk()];
    for i in 0..99 {
        keys.push(match i % 3 {
            0 => json!({"kty": "EC", "kid": format!("ec-{i}")}),
            1 => json!({"kty": "RSA", "kid": format!("small-{i}"), "n": "AQAB", "e": "AQAB"}),
            _ => json!(i),
        });
    }
    let jwks = JwksServer::start(Reply::json(&json!({ "keys": keys }))).await;
    let config = format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"{}\"\n",
        jwks.url()
    );
    let binary = Binary::start("skipped", &config, "debug", None).await;
    binary.keys_loaded().await;
    let text = binary.log_text();
    let log: Vec<&str> = text.lines().collect();
    let skipped: Vec<&&str> = log.iter().filter(|l| l.contains("skipped")).collect();
    assert_eq!(skipped.len(), 1, "one summary line:\n{text}");
    let line = skipped[0];
    assert!(
        line.contains("WARN")
            && line.contains("skipped=99")
            && line.contains("malformed JWK: 33")
            && line.contains("curve not P-256, P-384 or Ed25519: 33")
            && line.contains("modulus not 2048..=8192 bits: 33")
            && line.contains(r#"first_kids=["ec-0", "small-1", "ec-3", "small-4", "ec-6"]"#),
        "{line}"
    );
    assert!(text.contains("keys=1"), "{text}");
}

/// A fetch cut short by the timeout says so in the log ("timed out"), where reqwest alone would
/// say "error decoding response body".
#[tokio::test]
async fn a_fetch_cut_by_the_timeout_is_logged_as_a_timeout() {
    let jwks = JwksServer::start(Reply::StallBody {
        announced: 1000,
        sent: b"{\"keys\": [".to_vec(),
    })
    .await;
    let config = format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"{}\"\njwks_fetch_timeout_seconds = 1\n",
        jwks.url()
    );
    let binary = Binary::start("timeout", &config, "info", None).await;
    let line = binary
        .wait_for_log("JWKS refresh failed", Duration::from_secs(20))
        .await;
    assert!(
        line.contains("timed out after 1s") && !line.contains("decoding"),
        "{line}"
    );
}
