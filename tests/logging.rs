//! Observability invariants of the real binary: every decision is logged (deny at info with reason
//! and route, allow at debug), no token ever appears in the logs, and a JWKS full of unusable
//! entries costs one log line per load, not one per entry.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use serde_json::json;

#[tokio::test]
async fn decisions_are_logged_and_tokens_never_are() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let dir = std::env::temp_dir().join(format!("scopegate-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             jwks_uri = \"{}\"\n[[rules]]\npath = \"/restricted_resource\"\nscopes = [\"read:messages\"]\n",
            jwks.url()
        ),
    )
    .expect("write config");

    let mut child = Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .args(["serve", "--config", config.to_str().expect("utf8")])
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scopegate");
    let (line_tx, mut line_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let stderr = child.stderr.take().expect("stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = line_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), line_rx.recv())
            .await
            .expect("start-up log in time")
            .expect("log line");
        log.push(line.clone());
        if let Some(rest) = line.split("listen=Some(").nth(1) {
            break rest.split(')').next().expect("addr").to_string();
        }
    };
    let mut client = AuthorizationClient::connect(format!("http://{addr}"))
        .await
        .expect("connect");
    // Wait for the key set, reading the log as it comes.
    while !log.iter().any(|l| l.contains("JWKS loaded")) {
        let line = tokio::time::timeout(Duration::from_secs(20), line_rx.recv())
            .await
            .expect("JWKS loaded in time")
            .expect("log line");
        log.push(line);
    }

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
    drop(client);
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    tokio::task::spawn_blocking(move || child.wait().expect("wait"))
        .await
        .expect("join");
    while let Some(line) = line_rx.recv().await {
        log.push(line);
    }

    let text = log.join("\n");
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
            && l.contains("deny")
            && l.contains("reason=token has expired")
            && l.contains("route=\"rules[0]\"")),
        "denials are logged at info with reason and route:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("deny")
            && l.contains("reason=Insufficient scope")
            && l.contains("sub=\"auth0|user-1\"")),
        "scope denials name the subject:\n{text}"
    );
    assert!(
        text.lines().any(|l| l.contains("DEBUG")
            && l.contains("allow")
            && l.contains("route=\"rules[0]\"")),
        "allows are logged at debug:\n{text}"
    );
    // A 100 KB path is logged as a bounded prefix with its length, not copied whole.
    assert!(
        text.lines()
            .any(|l| l.contains("deny") && l.contains("…(100001 bytes)")),
        "the huge path's denial is logged, cut:\n{text:.2000}"
    );
    let longest = text.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2048, "a log line of {longest} bytes");
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
    let dir = std::env::temp_dir().join(format!("scopegate-skip-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             jwks_uri = \"{}\"\n",
            jwks.url()
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .args(["serve", "--config", config.to_str().expect("utf8")])
        .env("RUST_LOG", "debug")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scopegate");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut log = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let done = line.contains("JWKS loaded");
            log.push(line);
            if done {
                break;
            }
        }
        log
    });
    let log = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || reader.join().expect("reader")),
    )
    .await
    .expect("JWKS loaded in time")
    .expect("join");
    let _ = child.kill();
    let _ = child.wait();

    let text = log.join("\n");
    let skipped: Vec<&String> = log.iter().filter(|l| l.contains("skipped")).collect();
    assert_eq!(skipped.len(), 1, "one summary line:\n{text}");
    let line = skipped[0];
    assert!(
        line.contains("WARN")
            && line.contains("skipped=99")
            && line.contains("malformed JWK: 33")
            && line.contains("kty is not RSA: 33")
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
    let dir = std::env::temp_dir().join(format!("scopegate-timeout-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             jwks_uri = \"{}\"\njwks_fetch_timeout_seconds = 1\n",
            jwks.url()
        ),
    )
    .expect("write config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .args(["serve", "--config", config.to_str().expect("utf8")])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn scopegate");
    let stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|line| line.contains("JWKS refresh failed"))
    });
    let line = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || reader.join().expect("reader")),
    )
    .await
    .expect("a failed refresh in time")
    .expect("join");
    let _ = child.kill();
    let _ = child.wait();
    let line = line.expect("a refresh failure line");
    assert!(
        line.contains("timed out after 1s") && !line.contains("decoding"),
        "{line}"
    );
}
