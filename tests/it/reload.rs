//! Configuration reload on the real binary: SIGHUP with a valid file (the new rules decide the
//! next Check; the issuer's keys are not fetched again), with an invalid one (refused, counted,
//! the old rules stay, the process keeps serving), `reload_on_change` with a file replaced
//! the way Kubernetes replaces a mounted ConfigMap, a new Check deadline, and a new issuer whose
//! key server stalls.

use std::time::Duration;

use crate::common::binary::Binary;
use crate::common::*;
use crate::observability::{sample, scrape};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tonic::transport::Channel;

fn config(jwks_uri: &str, scope: &str, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\n\
         audience = \"{AUDIENCE}\"\njwks_uri = \"{jwks_uri}\"\n{extra}\n\
         [[rules]]\nname = \"messages\"\npath = \"/messages\"\nscopes = [\"{scope}\"]\n"
    )
}

/// The HTTP status scopegate answers for GET /messages with `token` (200 for an allow).
async fn status(client: &mut AuthorizationClient<Channel>, token: &str) -> i32 {
    let response = client
        .check(request(
            "GET",
            "/messages",
            &[("authorization", &bearer(token))],
        ))
        .await
        .expect("in-band answer")
        .into_inner();
    Answer::of(&response).status()
}

/// Replaces the file at `path` the way editors and Kubernetes do: a new file renamed over it.
fn replace(path: &std::path::Path, text: &str) {
    let staged = path.with_extension("staged");
    std::fs::write(&staged, text).expect("write");
    std::fs::rename(&staged, path).expect("rename");
}

#[tokio::test]
async fn sighup_applies_a_valid_file_and_refuses_an_invalid_one() {
    let key = TestKey::generate("reload-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start("reload", &config(&jwks.url(), "read", ""), "info", None).await;
    binary.keys_loaded().await;
    let metrics = binary.metrics_addr().await;
    let mut client = binary.client().await;
    let reader = key.mint(&claims("read"));
    let writer = key.mint(&claims("write"));
    assert_eq!(status(&mut client, &reader).await, 200);
    assert_eq!(status(&mut client, &writer).await, 403);
    let fetches = jwks.hits();

    // A valid file: the next Check is decided by the new rule, on the same connection.
    replace(&binary.config_path(), &config(&jwks.url(), "write", ""));
    binary.sighup();
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .await;
    assert_eq!(status(&mut client, &writer).await, 200);
    assert_eq!(status(&mut client, &reader).await, 403);
    assert_eq!(jwks.hits(), fetches, "an unchanged issuer's keys are kept");

    // An invalid file: refused with the key named, the old rules stay, still serving.
    replace(
        &binary.config_path(),
        &config(&jwks.url(), "write", "leeway_seconds = 9999"),
    );
    binary.sighup();
    let refused = binary
        .wait_for_log("reload refused", Duration::from_secs(10))
        .await;
    assert!(refused.contains("leeway_seconds"), "{refused}");
    assert!(refused.contains("ERROR"), "{refused}");
    assert_eq!(status(&mut client, &writer).await, 200);
    assert_eq!(status(&mut client, &reader).await, 403);

    // A file that moves the listener: applied but for `listen`, which needs a restart.
    replace(
        &binary.config_path(),
        &config(&jwks.url(), "read", "").replace(
            "listen = \"127.0.0.1:0\"\nmetrics",
            "listen = \"127.0.0.1:1\"\nmetrics",
        ),
    );
    binary.sighup();
    let warning = binary
        .wait_for_log("takes effect only after a restart", Duration::from_secs(10))
        .await;
    assert!(warning.contains("`listen`"), "{warning}");
    eventually(
        "the third reload applied",
        Duration::from_secs(10),
        || async { binary.count_in_log("configuration reloaded") == 2 },
    )
    .await;
    assert_eq!(status(&mut client, &reader).await, 200);

    let scrape = scrape(&metrics).await;
    assert_eq!(
        sample(
            &scrape,
            "scopegate_config_reloads_total",
            &[("result", "success")]
        ),
        2.0
    );
    assert_eq!(
        sample(
            &scrape,
            "scopegate_config_reloads_total",
            &[("result", "failure")]
        ),
        1.0
    );
}

/// A Check that started before a reload finishes with the configuration it started with: here
/// one waiting for an unknown-kid refetch (the issuer answers slowly) while the rules change.
#[tokio::test]
async fn a_check_in_flight_finishes_on_the_configuration_it_started_with() {
    let old_key = TestKey::generate("k1");
    let new_key = TestKey::generate("k2");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&old_key]))).await;
    let timing = "unknown_kid_wait_ms = 5000\nserver = { check_timeout_ms = 8000 }";
    let binary = Binary::start(
        "reload-in-flight",
        &config(&jwks.url(), "read", timing),
        "info",
        None,
    )
    .await;
    binary.keys_loaded().await;
    let reader = new_key.mint(&claims("read"));
    // The refetch that the new kid asks for takes 2 s.
    jwks.set(Reply::Delayed(
        Duration::from_secs(2),
        Box::new(Reply::json(&jwks_of(&[&old_key, &new_key]))),
    ));
    let addr = binary.addr.clone();
    let fetches = jwks.hits();
    let in_flight = tokio::spawn({
        let reader = reader.clone();
        async move {
            let mut client = AuthorizationClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            status(&mut client, &reader).await
        }
    });
    // While it waits (the refetch has reached the JWKS server), the rule changes to need
    // "write".
    eventually(
        "the Check's refetch at the JWKS server",
        Duration::from_secs(10),
        || async { jwks.hits() > fetches },
    )
    .await;
    replace(&binary.config_path(), &config(&jwks.url(), "write", timing));
    binary.sighup();
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .await;
    assert!(
        !in_flight.is_finished(),
        "the Check is still waiting for the refetch"
    );
    assert_eq!(
        in_flight.await.expect("task"),
        200,
        "decided by the rule in force when it started"
    );
    let mut client = binary.client().await;
    assert_eq!(
        status(&mut client, &reader).await,
        403,
        "the next Check: the new rule"
    );
}

#[tokio::test]
async fn reload_on_change_applies_a_configmap_update_and_ignores_unrelated_changes() {
    let key = TestKey::generate("watch-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start(
        "reload-watch",
        &config(&jwks.url(), "read", "reload_on_change = true"),
        "info",
        None,
    )
    .await;
    binary.keys_loaded().await;
    let mut client = binary.client().await;
    let writer = key.mint(&claims("write"));
    assert_eq!(status(&mut client, &writer).await, 403);

    // Another file in the directory changes: the configuration's bytes did not, no reload.
    let dir = binary.config_path().parent().expect("dir").to_path_buf();
    std::fs::write(dir.join("unrelated"), "x").expect("write");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(binary.count_in_log("configuration reloaded"), 0);

    // Kubernetes' layout: the file is a symlink into `..data`, itself a symlink to a
    // timestamped directory; an update writes a new directory and swaps `..data` by rename.
    let path = binary.config_path();
    let v1 = dir.join("..2026_11_27_v1");
    std::fs::create_dir(&v1).expect("dir");
    std::fs::copy(&path, v1.join("config.toml")).expect("copy");
    std::os::unix::fs::symlink("..2026_11_27_v1", dir.join("..data")).expect("symlink");
    std::os::unix::fs::symlink("..data/config.toml", dir.join("config.tmp")).expect("symlink");
    std::fs::rename(dir.join("config.tmp"), &path).expect("rename");
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        binary.count_in_log("configuration reloaded"),
        0,
        "same bytes"
    );
    let v2 = dir.join("..2026_11_27_v2");
    std::fs::create_dir(&v2).expect("dir");
    std::fs::write(
        v2.join("config.toml"),
        config(&jwks.url(), "write", "reload_on_change = true"),
    )
    .expect("write");
    std::os::unix::fs::symlink("..2026_11_27_v2", dir.join("..data_tmp")).expect("symlink");
    std::fs::rename(dir.join("..data_tmp"), dir.join("..data")).expect("swap ..data");
    let line = binary
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .await;
    assert!(line.contains("FileChanged"), "{line}");
    assert_eq!(status(&mut client, &writer).await, 200);
}

/// A reload that moves an issuer's keys to another `jwks_uri` fetches them from there before
/// the new configuration decides anything, and stops the old key set's refresher.
#[tokio::test]
async fn a_reload_that_changes_an_issuers_keys_fetches_them_and_stops_the_old_refresher() {
    let old_key = TestKey::generate("old");
    let new_key = TestKey::generate("new");
    let old_jwks = JwksServer::start(Reply::json(&jwks_of(&[&old_key]))).await;
    let new_jwks = JwksServer::start(Reply::json(&jwks_of(&[&new_key]))).await;
    let binary = Binary::start(
        "reload-issuer",
        &config(&old_jwks.url(), "read", ""),
        "info",
        None,
    )
    .await;
    binary.keys_loaded().await;
    let mut client = binary.client().await;
    assert_eq!(
        status(&mut client, &old_key.mint(&claims("read"))).await,
        200
    );
    assert_eq!(new_jwks.hits(), 0);

    replace(&binary.config_path(), &config(&new_jwks.url(), "read", ""));
    binary.sighup();
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .await;
    binary
        .wait_for_log("its key refresher stops", Duration::from_secs(5))
        .await;
    // Applied only once the new key set's first fetch has ended: no 503 window.
    assert_eq!(
        status(&mut client, &new_key.mint(&claims("read"))).await,
        200
    );
    assert_eq!(
        status(&mut client, &old_key.mint(&claims("read"))).await,
        401,
        "the old key set is gone"
    );
    assert!(new_jwks.hits() >= 1);
}

/// With `reload_on_change`, nothing is read while nothing is written, and a bad version of the
/// file is refused, counted and logged once, however long it stays and whatever else changes in
/// the directory; the same bad bytes written again are not a new failure, but a SIGHUP always
/// rereads and counts, and a good version is applied.
#[tokio::test]
async fn a_watched_file_is_read_only_when_it_changes_and_a_bad_version_counts_once() {
    let key = TestKey::generate("idle-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let good = config(&jwks.url(), "read", "reload_on_change = true");
    let bad = config(
        &jwks.url(),
        "read",
        "reload_on_change = true\nleeway_seconds = 9999",
    );
    // Each request the reload loop takes is logged at debug.
    let binary = Binary::start(
        "reload-idle",
        &good,
        "info,scopegate::serve::server=debug",
        None,
    )
    .await;
    binary.keys_loaded().await;
    let metrics = binary.metrics_addr().await;
    let failures = || async {
        sample(
            &scrape(&metrics).await,
            "scopegate_config_reloads_total",
            &[("result", "failure")],
        )
    };
    // A quiet period: the loop's own first read must not ask for another.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(binary.count_in_log("reload requested"), 0, "idle, unread");

    replace(&binary.config_path(), &bad);
    binary
        .wait_for_log("reload refused", Duration::from_secs(10))
        .await;
    let requests = binary.count_in_log("reload requested");
    // Another quiet period, the bad file in place: no more reads, refusals or counts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(binary.count_in_log("reload requested"), requests);
    assert_eq!(binary.count_in_log("reload refused"), 1);
    assert_eq!(failures().await, 1.0, "one bad write, one failure");

    // The same bad bytes again (as a directory event with the file unchanged would read
    // them): read, but not a new failure.
    replace(&binary.config_path(), &bad);
    binary
        .wait_for_log("not counted again", Duration::from_secs(10))
        .await;
    assert_eq!(binary.count_in_log("reload refused"), 1);
    assert_eq!(failures().await, 1.0);

    // A signal always rereads, and its refusal always counts.
    binary.sighup();
    eventually("a second refusal", Duration::from_secs(10), || async {
        binary.count_in_log("reload refused") == 2
    })
    .await;
    assert_eq!(failures().await, 2.0);

    replace(
        &binary.config_path(),
        &config(&jwks.url(), "write", "reload_on_change = true"),
    );
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .await;
    let mut client = binary.client().await;
    assert_eq!(status(&mut client, &key.mint(&claims("write"))).await, 200);
    assert_eq!(failures().await, 2.0);
}

/// `server.check_timeout_ms` is the one `[server]` limit a reload changes: the Checks after the
/// reload run under the new deadline. The same Check (a token with a kid the issuer does not
/// list, whose refetch takes 2 s) is answered 401 after that refetch under a 10 s deadline, and
/// 503 "timed out" under a 200 ms one once the file says so.
#[tokio::test]
async fn a_reload_that_changes_check_timeout_ms_sets_the_deadline_of_the_next_checks() {
    let key = TestKey::generate("k1");
    let stranger = TestKey::generate("unlisted");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let timing = |deadline: u64| {
        format!(
            "unknown_kid_wait_ms = 5000\njwks_refetch_cooldown_seconds = 1\n\
             server = {{ check_timeout_ms = {deadline} }}"
        )
    };
    let binary = Binary::start(
        "reload-deadline",
        &config(&jwks.url(), "read", &timing(10_000)),
        "info",
        None,
    )
    .await;
    binary.keys_loaded().await;
    // Every refetch from now on takes 2 s and still does not list the stranger's kid.
    jwks.set(Reply::Delayed(
        Duration::from_secs(2),
        Box::new(Reply::json(&jwks_of(&[&key]))),
    ));
    let token = stranger.mint(&claims("read"));
    let answer = |binary: &Binary| {
        let token = token.clone();
        let addr = binary.addr.clone();
        async move {
            let mut client = AuthorizationClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            let response = client
                .check(request(
                    "GET",
                    "/messages",
                    &[("authorization", &bearer(&token))],
                ))
                .await
                .expect("in-band answer")
                .into_inner();
            Answer::of(&response)
        }
    };
    let hits = jwks.hits();
    let before = answer(&binary).await;
    before.assert_denied(401, "invalid_token");
    assert_eq!(
        jwks.hits(),
        hits + 1,
        "answered after the refetch it waited for"
    );

    replace(
        &binary.config_path(),
        &config(&jwks.url(), "read", &timing(200)),
    );
    binary.sighup();
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .await;
    assert!(
        !binary.log_text().contains("only after a restart"),
        "check_timeout_ms needs no restart"
    );
    let after = answer(&binary).await;
    after.assert_denied(503, "temporarily_unavailable");
    assert_eq!(after.message(), "authorization check timed out");
}

/// A reload that adds an issuer whose key server takes the connection and never answers: the
/// reload waits for that first fetch only until its timeout, Checks meanwhile are decided by
/// the configuration in force, the old issuer's tokens are served before, during and after it
/// (its keys kept, not fetched again), and the new issuer's tokens get 503 until its keys
/// arrive, then 200.
#[tokio::test]
async fn a_reload_whose_new_issuer_stalls_completes_and_the_old_issuers_keep_working() {
    const SECOND: &str = "https://second.test/";
    let first_key = TestKey::generate("first");
    let second_key = TestKey::generate("second");
    let first = JwksServer::start(Reply::json(&jwks_of(&[&first_key]))).await;
    let second = JwksServer::start(Reply::Stall).await;
    let issuers = |with_second: bool| {
        let mut text = format!(
            "listen = \"127.0.0.1:0\"\njwks_fetch_timeout_seconds = 5\n\
             jwks_refetch_cooldown_seconds = 1\n\
             [[issuers]]\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{}\"\n",
            first.url()
        );
        if with_second {
            text.push_str(&format!(
                "[[issuers]]\nissuer = \"{SECOND}\"\naudience = \"{AUDIENCE}\"\n\
                 jwks_uri = \"{}\"\n",
                second.url()
            ));
        }
        text + "[[rules]]\npath = \"/messages\"\nscopes = [\"read\"]\n"
    };
    let binary = Binary::start("reload-stalled-issuer", &issuers(false), "info", None).await;
    binary.keys_loaded().await;
    let mut client = binary.client().await;
    let old_token = first_key.mint(&claims("read"));
    let mut second_claims = claims("read");
    second_claims["iss"] = serde_json::json!(SECOND);
    let new_token = second_key.mint(&second_claims);
    assert_eq!(status(&mut client, &old_token).await, 200);
    let first_fetches = first.hits();

    replace(&binary.config_path(), &issuers(true));
    binary.sighup();
    // The new issuer's first fetch is under way (and will never be answered).
    eventually(
        "the new issuer's first fetch",
        Duration::from_secs(10),
        || async { second.hits() >= 1 },
    )
    .await;
    assert_eq!(
        status(&mut client, &old_token).await,
        200,
        "during the reload"
    );
    assert_eq!(
        binary.count_in_log("configuration reloaded"),
        0,
        "the reload waits for the first fetch"
    );
    // The reload completes when that fetch times out, saying the new keys are not there yet.
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(20))
        .await;
    assert!(
        binary
            .log_text()
            .contains("a reloaded issuer's keys are not available yet"),
        "{}",
        binary.log_text()
    );
    assert_eq!(
        status(&mut client, &old_token).await,
        200,
        "after the reload"
    );
    let answer = Answer::of(
        &client
            .check(request(
                "GET",
                "/messages",
                &[("authorization", &bearer(&new_token))],
            ))
            .await
            .expect("in-band answer")
            .into_inner(),
    );
    answer.assert_denied(503, "temporarily_unavailable");
    assert_eq!(
        first.hits(),
        first_fetches,
        "the old issuer's keys are kept"
    );

    // The new issuer's server recovers: its tokens are served from then on.
    second.set(Reply::json(&jwks_of(&[&second_key])));
    eventually("the new issuer's keys", Duration::from_secs(30), || {
        let (mut client, token) = (client.clone(), new_token.clone());
        async move { status(&mut client, &token).await == 200 }
    })
    .await;
    assert_eq!(status(&mut client, &old_token).await, 200);
}
