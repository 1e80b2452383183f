//! The shared DPoP replay store (`dpop_replay_store`) against a real `redis-server` (Debian's
//! package, `scripts/install-redis`), started here on a free loopback port without persistence:
//! two scopegate processes share it, so a proof used at one is refused at the other; with Redis
//! gone every DPoP request is refused 503 while Bearer requests pass; with Redis back DPoP
//! works again; each proof's key lives as long as the proof's window.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::binary::Binary;
use crate::common::*;
use crate::dpop::{HOST, ProofKey, bound, check_request};

/// `dpop_proof_window_seconds` here: the longest, so that a key's time to live read back is
/// far from any other number it could be.
const WINDOW_SECONDS: u64 = 600;

/// Where the Redis binary is: `SCOPEGATE_REDIS_BIN` (what `scripts/test` exports), else
/// Debian's path. Never skipped: a missing binary fails the test, naming the script.
fn redis_binary() -> PathBuf {
    let path = std::env::var_os("SCOPEGATE_REDIS_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/redis-server"), PathBuf::from);
    assert!(
        path.is_file(),
        "no redis-server at {}: run scripts/install-redis (or set SCOPEGATE_REDIS_BIN)",
        path.display()
    );
    path
}

/// A `redis-server` of this test's own on `127.0.0.1:port`, nothing saved; killed on drop.
struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    /// What `--requirepass` asks for, if anything.
    password: Option<String>,
}

impl Redis {
    async fn start() -> Redis {
        Redis::start_with(&[]).await
    }

    /// [`Redis::start`] with more `redis-server` arguments.
    async fn start_with(args: &[&str]) -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let dir = tempfile::Builder::new()
            .prefix("scopegate-redis-")
            .tempdir()
            .expect("scratch dir");
        let mut redis = Redis {
            child: None,
            port,
            dir,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            password: args
                .iter()
                .position(|a| *a == "--requirepass")
                .and_then(|i| args.get(i + 1))
                .map(|p| (*p).to_owned()),
        };
        redis.run().await;
        redis
    }

    /// Starts the server (again, on the same port) and waits until it answers.
    async fn run(&mut self) {
        let child = Command::new(redis_binary())
            .args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("start redis-server");
        watchdog::child_started(child.id(), "redis-server");
        self.child = Some(child);
        let url = self.admin_url();
        eventually("redis-server to answer", Duration::from_secs(20), || {
            let url = url.clone();
            async move { ping(&url).await }
        })
        .await;
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            watchdog::child_ended(child.id());
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) the server: frozen, the kernel still accepts its
    /// connections and takes in what is sent, and nothing answers.
    fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("running");
        let status = Command::new("kill")
            .args([&format!("-{name}"), &child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The URL with the password, for the test's own connections only (scopegate's
    /// configuration refuses one).
    fn admin_url(&self) -> String {
        match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => self.url(),
        }
    }

    /// A connection of the test's own, to look at what scopegate stored.
    async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.admin_url())
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to redis")
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn ping(url: &str) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    match client.get_multiplexed_async_connection().await {
        Ok(mut connection) => redis::cmd("PING")
            .query_async::<String>(&mut connection)
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// The configuration of a replica deciding with the shared store at `redis` (`extra` after it).
fn replica_config(jwks: &JwksServer, redis: &str, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\n\
         audience = \"{AUDIENCE}\"\njwks_uri = \"{}\"\nleeway_seconds = 0\n\
         dpop_proof_window_seconds = {WINDOW_SECONDS}\ndpop_replay_store = \"{redis}\"\n{extra}\n\
         [[rules]]\npath = \"/orders\"\nscopes = [\"read\"]\n",
        jwks.url()
    )
}

/// A scopegate process deciding with the shared store at `redis`.
async fn replica(name: &str, jwks: &JwksServer, redis: &str) -> Binary {
    let config = replica_config(jwks, redis, "");
    let binary = Binary::start(name, &config, "info", None).await;
    binary.keys_loaded().await;
    binary
}

async fn ask(binary: &Binary, headers: &[(&str, &str)]) -> Answer {
    let response = binary
        .client()
        .await
        .check(check_request("GET", "/orders", headers))
        .await
        .expect("an in-band answer")
        .into_inner();
    Answer::of(&response)
}

/// What `grpc.health.v1` says of `service`.
async fn health(binary: &Binary, service: &str) -> i32 {
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", binary.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .expect("health check")
        .into_inner()
        .status
}

/// The `scopegate_dpop_replay_store_failures_total` samples, summed.
async fn store_failures(binary: &Binary) -> f64 {
    store_failures_of(binary, "").await
}

/// The `scopegate_dpop_replay_store_failures_total` samples whose labels hold `label`, summed.
async fn store_failures_of(binary: &Binary, label: &str) -> f64 {
    let url = format!("http://{}/metrics", binary.metrics_addr().await);
    let text = reqwest::get(url)
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|line| line.starts_with("scopegate_dpop_replay_store_failures_total{"))
        .filter(|line| line.contains(label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn replicas_sharing_redis_accept_each_proof_once_and_refuse_dpop_while_it_is_down() {
    let mut redis = Redis::start().await;
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let (a, b) = (
        replica("redis-a", &jwks, &redis.url()).await,
        replica("redis-b", &jwks, &redis.url()).await,
    );
    let client = ProofKey::es256();
    let token = key.mint(&bound("read", &client.jkt()));
    let authorization = format!("DPoP {token}");
    let url = format!("https://{HOST}/orders");
    let bearer_token = bearer(&key.mint(&claims("read")));
    let bearer_headers = [("authorization", bearer_token.as_str())];

    // One proof: let through by A, a replay at B.
    let proof = client.proof("GET", &url, &token);
    let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
    ask(&a, &headers).await.assert_allowed();
    let replayed = ask(&b, &headers).await;
    replayed.assert_denied(401, "invalid_token");
    assert!(
        replayed
            .challenge()
            .contains(r#"error="invalid_dpop_proof""#)
            && replayed.message().contains("already used"),
        "{replayed:?}"
    );
    // And the other way round, with a fresh proof.
    let proof = client.proof("GET", &url, &token);
    let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
    ask(&b, &headers).await.assert_allowed();
    ask(&a, &headers).await.assert_denied(401, "invalid_token");

    // Each proof is one key, kept for the proof's window: iat + window (the leeway is 0),
    // through its last second, so its time to live is the window and at most a second more.
    let mut connection = redis.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("scopegate:dpop:*")
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in &keys {
        let id = key.strip_prefix("scopegate:dpop:").expect("the prefix");
        assert!(
            id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{key}"
        );
        let ttl_ms: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .expect("PTTL");
        let window_ms = i64::try_from(WINDOW_SECONDS * 1000).expect("small");
        assert!(
            ttl_ms > window_ms - 30_000 && ttl_ms <= window_ms + 1000,
            "PTTL {ttl_ms} ms for a {WINDOW_SECONDS} s window"
        );
    }
    drop(connection);

    // Redis gone (both replicas name it in dpop_replay_store): every DPoP request is refused
    // 503 (never let through unchecked); Bearer requests are unaffected.
    redis.stop();
    for replica in [&a, &b] {
        for _ in 0..3 {
            let proof = client.proof("GET", &url, &token);
            let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
            let answer = ask(replica, &headers).await;
            answer.assert_denied(503, "temporarily_unavailable");
            assert_eq!(answer.code, UNAVAILABLE, "{answer:?}");
            assert_eq!(
                answer.headers.get("retry-after").map(String::as_str),
                Some("1"),
                "{answer:?}"
            );
            ask(replica, &bearer_headers).await.assert_allowed();
        }
        assert!(store_failures(replica).await >= 3.0);
        // Readiness stays SERVING: Bearer traffic still works, and taking every replica out
        // of service for a store only DPoP needs would refuse it too.
        assert_eq!(
            health(replica, "envoy.service.auth.v3.Authorization").await,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        let log = replica.log_text();
        assert!(log.contains("DPoP replay store failed"), "{log}");
        assert!(!log.contains("scopegate:dpop:"), "no key in the log: {log}");
    }

    // Redis back (empty: it saved nothing): DPoP requests pass again, each proof once.
    redis.run().await;
    for replica in [&a, &b] {
        eventually(
            "a DPoP request let through with Redis back",
            Duration::from_secs(20),
            || {
                let proof = client.proof("GET", &url, &token);
                let authorization = authorization.clone();
                async move {
                    let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
                    ask(replica, &headers).await.code == OK
                }
            },
        )
        .await;
    }
    let proof = client.proof("GET", &url, &token);
    let headers = [("authorization", authorization.as_str()), ("dpop", &proof)];
    ask(&a, &headers).await.assert_allowed();
    ask(&b, &headers).await.assert_denied(401, "invalid_token");
}

/// The ids of the clients connected to `redis` but the test's own.
async fn scopegate_clients(redis: &Redis) -> Vec<String> {
    let mut connection = redis.connection().await;
    let me: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut connection)
        .await
        .expect("CLIENT ID");
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut connection)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
        .filter(|id| *id != me.to_string())
        .map(str::to_owned)
        .collect()
}

/// Writes `config` as the replica's configuration, reloads, and waits for the reload.
async fn reload(binary: &Binary, config: &str) {
    let reloads = binary.count_in_log("configuration reloaded");
    let path = binary.config_path();
    let staged = path.with_extension("staged");
    std::fs::write(&staged, config).expect("write");
    std::fs::rename(&staged, &path).expect("rename");
    binary.sighup();
    eventually("the reload", Duration::from_secs(10), || async {
        binary.count_in_log("configuration reloaded") > reloads
    })
    .await;
}

#[tokio::test]
async fn a_reload_keeps_an_unchanged_store_connection_and_rereads_the_password_file() {
    let first = Redis::start_with(&["--requirepass", "first-redis-password"]).await;
    let second = Redis::start().await;
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let scratch = tempfile::tempdir().expect("scratch dir");
    let password_file = scratch.path().join("redis-password");
    std::fs::write(&password_file, "first-redis-password\n").expect("write");
    let with_password = format!("dpop_replay_store_password_file = {password_file:?}");
    let config = replica_config(&jwks, &first.url(), &with_password);
    let binary = Binary::start("redis-reload", &config, "info", None).await;
    binary.keys_loaded().await;
    let client = ProofKey::es256();
    let token = key.mint(&bound("read", &client.jkt()));
    let authorization = format!("DPoP {token}");
    let url = format!("https://{HOST}/orders");
    let fresh = || client.proof("GET", &url, &token);
    let ask_fresh = |proof: String| {
        let (binary, authorization) = (&binary, authorization.clone());
        async move {
            ask(
                binary,
                &[("authorization", &authorization), ("dpop", &proof)],
            )
            .await
        }
    };

    ask_fresh(fresh()).await.assert_allowed();
    let connected = scopegate_clients(&first).await;
    assert_eq!(connected.len(), 1, "{connected:?}");
    assert!(!binary.log_text().contains("first-redis-password"));

    // The same configuration: the same connection goes on.
    reload(&binary, &config).await;
    ask_fresh(fresh()).await.assert_allowed();
    assert_eq!(scopegate_clients(&first).await, connected);

    // The password file changed (to a wrong one): read at the reload, so Redis refuses the
    // new connection and DPoP requests fail closed; the right one again, and they pass.
    std::fs::write(&password_file, "a-wrong-password\n").expect("write");
    reload(&binary, &config).await;
    ask_fresh(fresh())
        .await
        .assert_denied(503, "temporarily_unavailable");
    std::fs::write(&password_file, "first-redis-password\n").expect("write");
    reload(&binary, &config).await;
    ask_fresh(fresh()).await.assert_allowed();
    assert!(!binary.log_text().contains("password\n"));

    // Another store: proofs are remembered there from the next request on.
    reload(&binary, &replica_config(&jwks, &second.url(), "")).await;
    let proof = fresh();
    ask_fresh(proof.clone()).await.assert_allowed();
    ask_fresh(proof).await.assert_denied(401, "invalid_token");
    let mut connection = second.connection().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("scopegate:dpop:*")
        .query_async(&mut connection)
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 1, "{keys:?}");
}

#[tokio::test]
async fn a_store_that_stops_answering_costs_a_dpop_check_its_timeout_and_calls_in_flight_are_capped()
 {
    let redis = Redis::start().await;
    let key = TestKey::generate("k1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    // One call in flight at a time, each waiting at most 200 ms.
    let config = replica_config(
        &jwks,
        &redis.url(),
        "dpop_replay_store_timeout_ms = 200\ndpop_replay_store_max_in_flight = 1",
    );
    let binary = Binary::start("redis-frozen", &config, "info", None).await;
    binary.keys_loaded().await;
    let client = ProofKey::es256();
    let token = key.mint(&bound("read", &client.jkt()));
    let authorization = format!("DPoP {token}");
    let url = format!("https://{HOST}/orders");
    let bearer_token = bearer(&key.mint(&claims("read")));
    let ask_fresh = || {
        let proof = client.proof("GET", &url, &token);
        let (binary, authorization) = (&binary, authorization.clone());
        async move {
            ask(
                binary,
                &[("authorization", &authorization), ("dpop", &proof)],
            )
            .await
        }
    };
    ask_fresh().await.assert_allowed();

    // Frozen: the connection stays open and nothing answers. Each DPoP Check is answered 503
    // once dpop_replay_store_timeout_ms has passed; the calls that find the one in flight
    // already taken (dpop_replay_store_max_in_flight) are refused at once; Bearer passes.
    redis.signal("STOP");
    let grpc = binary.client().await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let proof = client.proof("GET", &url, &token);
        let request = check_request(
            "GET",
            "/orders",
            &[("authorization", &authorization), ("dpop", &proof)],
        );
        let mut grpc = grpc.clone();
        calls.spawn(async move {
            Answer::of(&grpc.check(request).await.expect("in-band").into_inner())
        });
    }
    while let Some(answer) = calls.join_next().await {
        answer
            .expect("a call")
            .assert_denied(503, "temporarily_unavailable");
    }
    ask(&binary, &[("authorization", &bearer_token)])
        .await
        .assert_allowed();
    let (timeouts, busy) = (
        store_failures_of(&binary, "failure=\"timeout\"").await,
        store_failures_of(&binary, "failure=\"busy\"").await,
    );
    assert!(timeouts >= 1.0, "timeouts {timeouts}");
    assert!(busy >= 1.0, "refused for the cap {busy}");
    assert_eq!(timeouts + busy, 6.0);

    // Thawed: DPoP Checks pass again.
    redis.signal("CONT");
    eventually(
        "a DPoP request let through once Redis answers again",
        Duration::from_secs(20),
        || async { ask_fresh().await.code == OK },
    )
    .await;
}
