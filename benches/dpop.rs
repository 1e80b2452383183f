//! What a DPoP-bound token costs beside a Bearer token, and what the shared replay store adds.
//!
//! scopegate runs as its own process (the release binary, `serve --config`), twice: one with
//! the in-process replay cache, one with `dpop_replay_store` on a `redis-server` this bench
//! starts on loopback (`SCOPEGATE_REDIS_BIN`, else Debian's path; `scripts/install-redis`).
//! Keys come from the development issuer, in this process; the client is tonic, in this process.
//!
//! - **CPU per Check**: scopegate's own CPU time (`/proc/PID/stat`, utime + stime) over
//!   `CHECKS` Checks with `IN_FLIGHT` in flight, for a cached Bearer token and a cached
//!   DPoP-bound token with a fresh ES256 proof on every Check (the proofs are made before the
//!   run, outside the measurement), in the same run.
//! - **Latency**: one Check at a time, `ROUND_TRIPS` each, p50 and p99 of a DPoP Check with the
//!   memory store and with the Redis store (and a Bearer Check for reference).
//!
//! Run: `cargo bench --bench dpop` (about a minute; the figures are printed as a table).

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use scopegate::dev::issuer::{DevIssuer, Mint};
use serde_json::json;
use tokio::net::TcpListener;
use tonic::transport::Channel;

const AUDIENCE: &str = "https://api.example";
const HOST: &str = "api.example";
const PATH: &str = "/restricted_resource";
/// Checks per CPU measurement.
const CHECKS: usize = 20_000;
/// Checks in flight during a CPU measurement, as Envoy multiplexes them on one connection.
const IN_FLIGHT: usize = 32;
/// Checks per latency measurement, one at a time.
const ROUND_TRIPS: usize = 2_000;

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A child process killed on drop.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Process {
    /// Its CPU time so far (user + system), in clock ticks of 10 ms.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0.id())).expect("stat");
        let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split(' ').collect();
        let tick = |i: usize| fields[i].parse::<u64>().expect("ticks");
        tick(11) + tick(12)
    }
}

fn redis_server(port: u16, dir: &std::path::Path) -> Process {
    let binary = std::env::var_os("SCOPEGATE_REDIS_BIN")
        .map_or_else(|| PathBuf::from("/usr/bin/redis-server"), PathBuf::from);
    let child = Command::new(&binary)
        .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run scripts/install-redis or set SCOPEGATE_REDIS_BIN)",
                binary.display()
            )
        });
    Process(child)
}

/// scopegate serving on `port` with `extra` top-level keys, its log in `dir`.
fn scopegate(dir: &std::path::Path, name: &str, port: u16, issuer: &str, extra: &str) -> Process {
    let config = dir.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nissuer = \"{issuer}\"\naudience = \"{AUDIENCE}\"\n\
             jwks_uri = \"{issuer}.well-known/jwks.json\"\n{extra}\n\
             [[rules]]\npath = \"{PATH}\"\nscopes = [\"read:messages\"]\n"
        ),
    )
    .expect("config");
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_scopegate"))
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start scopegate");
    Process(child)
}

fn check(headers: &[(&str, &str)]) -> CheckRequest {
    let headers: HashMap<String, String> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(HttpRequest {
                    method: "GET".into(),
                    scheme: "https".into(),
                    host: HOST.into(),
                    path: PATH.into(),
                    headers,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

/// A client's ES256 DPoP key and its RFC 7638 thumbprint.
struct Client {
    pair: EcdsaKeyPair,
    jwk: serde_json::Value,
    jkt: String,
}

impl Client {
    fn new() -> Client {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("P-256");
        let point = pair.public_key().as_ref();
        let (x, y) = (
            URL_SAFE_NO_PAD.encode(&point[1..33]),
            URL_SAFE_NO_PAD.encode(&point[33..]),
        );
        let thumbprint = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let jkt = URL_SAFE_NO_PAD.encode(digest(&SHA256, thumbprint.as_bytes()));
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": x, "y": y});
        Client { pair, jwk, jkt }
    }

    /// `count` Check requests for `token`, each with a proof of its own (fresh `jti`).
    fn requests(&self, token: &str, count: usize, tag: &str) -> Vec<CheckRequest> {
        let authorization = format!("DPoP {token}");
        let ath = URL_SAFE_NO_PAD.encode(digest(&SHA256, token.as_bytes()));
        let header = URL_SAFE_NO_PAD
            .encode(json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}).to_string());
        let rng = SystemRandom::new();
        (0..count)
            .map(|i| {
                let claims = json!({"htm": "GET", "htu": format!("https://{HOST}{PATH}"),
                    "iat": now(), "jti": format!("{tag}-{i}"), "ath": ath});
                let signed = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
                let signature = self.pair.sign(&rng, signed.as_bytes()).expect("sign");
                let proof = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
                check(&[("authorization", &authorization), ("dpop", &proof)])
            })
            .collect()
    }
}

async fn connect(port: u16, ready: &CheckRequest) -> AuthorizationClient<Channel> {
    for _ in 0..400 {
        if let Ok(mut client) =
            AuthorizationClient::connect(format!("http://127.0.0.1:{port}")).await
        {
            let answer = client.check(ready.clone()).await.expect("in-band");
            if answer.into_inner().status.is_some_and(|s| s.code == 0) {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("scopegate on port {port} did not become ready");
}

/// Sends every request, `IN_FLIGHT` at a time; each must be allowed.
async fn run_all(client: &AuthorizationClient<Channel>, requests: Vec<CheckRequest>) {
    let mut shares: Vec<Vec<CheckRequest>> = (0..IN_FLIGHT).map(|_| Vec::new()).collect();
    for (i, request) in requests.into_iter().enumerate() {
        shares[i % IN_FLIGHT].push(request);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for share in shares {
        let client = client.clone();
        tasks.spawn(async move {
            for request in share {
                let answer = client.clone().check(request).await.expect("in-band");
                assert_eq!(answer.into_inner().status.map(|s| s.code), Some(0));
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("worker");
    }
}

/// scopegate's CPU µs per Check over `requests`.
async fn cpu_per_check(
    process: &Process,
    client: &AuthorizationClient<Channel>,
    requests: Vec<CheckRequest>,
) -> f64 {
    let count = requests.len() as f64;
    let before = process.cpu_ticks();
    run_all(client, requests).await;
    let ticks = process.cpu_ticks() - before;
    ticks as f64 * 10_000.0 / count
}

/// p50 and p99 round trip, one Check at a time, in µs.
async fn latency(client: &AuthorizationClient<Channel>, requests: Vec<CheckRequest>) -> (f64, f64) {
    let mut times = Vec::with_capacity(requests.len());
    for request in requests {
        let started = Instant::now();
        let answer = client.clone().check(request).await.expect("in-band");
        times.push(started.elapsed());
        assert_eq!(answer.into_inner().status.map(|s| s.code), Some(0));
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q) as usize).min(times.len() - 1)];
    (at(0.50).as_secs_f64() * 1e6, at(0.99).as_secs_f64() * 1e6)
}

fn main() {
    // `cargo bench` passes --bench; a filter would mean nothing here.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("scratch dir");
        let key_file = dir.path().join("issuer-key.der");
        let issuer_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind issuer");
        let issuer = format!("http://{}/", issuer_listener.local_addr().expect("addr"));
        let serving = DevIssuer::load_or_create(&key_file, &issuer).expect("issuer key");
        tokio::spawn(serving.serve(issuer_listener, false, std::future::pending()));
        let minting = DevIssuer::load_or_create(&key_file, &issuer).expect("same key");
        let client_key = Client::new();
        let mint = |extra: serde_json::Map<String, serde_json::Value>| {
            minting
                .mint(&Mint {
                    subject: "bench".into(),
                    audience: AUDIENCE.into(),
                    scope: "openid read:messages".into(),
                    expires_in: 86_400,
                    extra,
                })
                .expect("mint")
        };
        let bearer = mint(Default::default());
        let mut cnf = serde_json::Map::new();
        cnf.insert("cnf".into(), json!({ "jkt": client_key.jkt }));
        let bound = mint(cnf);
        let bearer_check = check(&[("authorization", &format!("Bearer {bearer}"))]);

        let redis_port = free_port();
        let _redis = redis_server(redis_port, dir.path());
        let (memory_port, redis_gate_port) = (free_port(), free_port());
        let memory = scopegate(dir.path(), "memory", memory_port, &issuer, "");
        let shared = scopegate(
            dir.path(),
            "redis",
            redis_gate_port,
            &issuer,
            &format!("dpop_replay_store = \"redis://127.0.0.1:{redis_port}\""),
        );
        let memory_client = connect(memory_port, &bearer_check).await;
        let redis_client = connect(redis_gate_port, &bearer_check).await;
        // Both tokens verified once (cached from then on); the Redis store connected.
        for client in [&memory_client, &redis_client] {
            run_all(client, client_key.requests(&bound, IN_FLIGHT, "warm")).await;
            run_all(client, vec![bearer_check.clone(); IN_FLIGHT]).await;
        }

        println!("scopegate CPU per Check, {CHECKS} Checks, {IN_FLIGHT} in flight:");
        let mut rows = Vec::new();
        for round in 0..2 {
            let bearer_cpu =
                cpu_per_check(&memory, &memory_client, vec![bearer_check.clone(); CHECKS]).await;
            let proofs = client_key.requests(&bound, CHECKS, &format!("memory-{round}"));
            let dpop_cpu = cpu_per_check(&memory, &memory_client, proofs).await;
            let proofs = client_key.requests(&bound, CHECKS, &format!("redis-{round}"));
            let redis_cpu = cpu_per_check(&shared, &redis_client, proofs).await;
            rows.push((bearer_cpu, dpop_cpu, redis_cpu));
            println!(
                "  round {round}: cached Bearer {bearer_cpu:.1} µs, cached DPoP (ES256, memory \
                 store) {dpop_cpu:.1} µs ({:.2}×), cached DPoP (Redis store) {redis_cpu:.1} µs \
                 ({:.2}×)",
                dpop_cpu / bearer_cpu,
                redis_cpu / bearer_cpu
            );
        }

        println!("round trip, one Check at a time, {ROUND_TRIPS} each (p50 / p99):");
        for round in 0..2 {
            let (b50, b99) =
                latency(&memory_client, vec![bearer_check.clone(); ROUND_TRIPS]).await;
            let proofs = client_key.requests(&bound, ROUND_TRIPS, &format!("lat-memory-{round}"));
            let (m50, m99) = latency(&memory_client, proofs).await;
            let proofs = client_key.requests(&bound, ROUND_TRIPS, &format!("lat-redis-{round}"));
            let (r50, r99) = latency(&redis_client, proofs).await;
            println!(
                "  round {round}: Bearer {b50:.0} / {b99:.0} µs, DPoP memory store {m50:.0} / \
                 {m99:.0} µs, DPoP Redis store {r50:.0} / {r99:.0} µs (Redis adds {:.0} / {:.0} µs)",
                r50 - m50,
                r99 - m99
            );
        }
        drop((memory, shared));
    });
}
