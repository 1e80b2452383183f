//! Soak: mixed valid, invalid and expired traffic through a real Envoy in front of the real
//! scopegate binary for `SOAK_SECONDS` (default 600), with a key rotation in the middle.
//!
//! Not part of the default test run (`test = false` in Cargo.toml): `scripts/soak` runs it in
//! release mode and prints the summary that BENCHMARKS.md records. It fails if any answer differs
//! from the one expected for its kind of request, or if scopegate's resident memory at the end
//! is well above what it was once warmed up.
//!
//! The rotation follows what hosted issuers do: the next key is published first (here at one
//! third of the run), and tokens are signed with it from half-way. The JWKS answers with
//! `Cache-Control: max-age=60`, so scopegate refreshes about once a minute throughout. Tokens with
//! random unknown `kid`s are part of the mix, so the unknown-`kid` refetch path is exercised (and
//! rate-limited) for the whole run.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::stack::{Stack, demo_claims};
use common::*;
use serde_json::{Value, json};

const WORKERS: usize = 16;
const SAMPLE_EVERY: Duration = Duration::from_secs(10);

/// What a request carries, and what the answer must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// Token of the key currently signing, with the route's scope: 200.
    Valid,
    /// Token of the first key, still published after the rotation: 200.
    ValidOldKey,
    /// Valid token without the route's scope: 403.
    MissingScope,
    /// No Authorization header: 401.
    NoToken,
    /// Expired beyond the leeway: 401.
    Expired,
    /// Signed by a key nobody published, under a published `kid`: 401.
    ForgedSignature,
    /// A `kid` never published (fresh per request): 401, at most one refetch per cooldown.
    UnknownKid,
    /// The public route, no token: 200.
    Public,
}

const KINDS: [Kind; 8] = [
    Kind::Valid,
    Kind::ValidOldKey,
    Kind::MissingScope,
    Kind::NoToken,
    Kind::Expired,
    Kind::ForgedSignature,
    Kind::UnknownKid,
    Kind::Public,
];

impl Kind {
    fn expected(self) -> u16 {
        match self {
            Kind::Valid | Kind::ValidOldKey | Kind::Public => 200,
            Kind::MissingScope => 403,
            Kind::NoToken | Kind::Expired | Kind::ForgedSignature | Kind::UnknownKid => 401,
        }
    }
}

/// Claims for the demo configuration, expiring at `exp`.
fn soak_claims(scope: &str, exp: u64) -> Value {
    let mut c = demo_claims(scope);
    c["exp"] = json!(exp);
    c
}

/// Pre-minted tokens; only `UnknownKid` is minted per request.
struct Tokens {
    old: String,
    new: String,
    old_without_scope: String,
    new_without_scope: String,
    expired: String,
    forged: String,
    stranger: TestKey,
}

fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .map(|s| s.parse().expect("SOAK_SECONDS is a number of seconds"))
        .unwrap_or(600);
    assert!(seconds >= 30, "SOAK_SECONDS must be at least 30");
    let run = Duration::from_secs(seconds);
    // Its length is its purpose: bounded by the run plus the start-up and report, not by the
    // bound of the other tests.
    common::watchdog::arm_for(run + common::watchdog::bound());

    let old = TestKey::generate("key-1");
    let new = TestKey::generate("key-2");
    let publish = |keys: &[&TestKey]| {
        let mut reply = Reply::json(&jwks_of(keys));
        if let Reply::Respond(_, headers, _) = &mut reply {
            headers.push(("cache-control".into(), "public, max-age=60".into()));
        }
        reply
    };
    let jwks = JwksServer::start(publish(&[&old])).await;
    // SOAK_WORKER_THREADS=N runs scopegate with `server.worker_threads = N`.
    let threads = std::env::var("SOAK_WORKER_THREADS")
        .map(|n| format!("server = {{ worker_threads = {n} }}"))
        .unwrap_or_default();
    let stack = Stack::start_with_issuer_and(ISSUER, &jwks.url(), &threads).await;

    let exp = now() + seconds + 3600;
    let forger = TestKey::generate("key-1");
    let tokens = Arc::new(Tokens {
        old: old.mint(&soak_claims("read:messages", exp)),
        new: new.mint(&soak_claims("read:messages", exp)),
        old_without_scope: old.mint(&soak_claims("openid", exp)),
        new_without_scope: new.mint(&soak_claims("openid", exp)),
        expired: old.mint(&soak_claims("read:messages", now() - 3600)),
        forged: forger.mint(&soak_claims("read:messages", exp)),
        stranger: TestKey::generate("unused"),
    });

    let rotated = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new([(); KINDS.len()].map(|()| AtomicU64::new(0)));
    let wrong_counts = Arc::new([(); KINDS.len()].map(|()| AtomicU64::new(0)));
    let wrong = Arc::new(Mutex::new(Vec::<String>::new()));
    let unknown_kids = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let (http, url) = (stack.http.clone(), stack.url.clone());
        let (tokens, rotated, stop) = (tokens.clone(), rotated.clone(), stop.clone());
        let (counts, wrong_counts, wrong) = (counts.clone(), wrong_counts.clone(), wrong.clone());
        let unknown_kids = unknown_kids.clone();
        workers.push(tokio::spawn(async move {
            let mut n = worker;
            while !stop.load(Ordering::Relaxed) {
                let index = n % KINDS.len();
                let kind = KINDS[index];
                n += 1;
                let after_rotation = rotated.load(Ordering::SeqCst);
                let minted;
                let token = match kind {
                    Kind::Valid if after_rotation => Some(tokens.new.as_str()),
                    Kind::Valid | Kind::ValidOldKey => Some(tokens.old.as_str()),
                    Kind::MissingScope if after_rotation => Some(tokens.new_without_scope.as_str()),
                    Kind::MissingScope => Some(tokens.old_without_scope.as_str()),
                    Kind::NoToken | Kind::Public => None,
                    Kind::Expired => Some(tokens.expired.as_str()),
                    Kind::ForgedSignature => Some(tokens.forged.as_str()),
                    Kind::UnknownKid => {
                        let kid =
                            format!("random-{}", unknown_kids.fetch_add(1, Ordering::Relaxed));
                        minted = tokens.stranger.mint_raw(
                            &json!({"alg": "RS256", "kid": kid}),
                            &soak_claims("read:messages", exp),
                        );
                        Some(minted.as_str())
                    }
                };
                let path = if kind == Kind::Public {
                    "/public"
                } else {
                    "/restricted_resource"
                };
                let mut request = http.get(format!("{url}{path}"));
                if let Some(token) = token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let outcome = match request.send().await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // Read the body so the connection is reused.
                        let body = response.bytes().await.map(|b| b.len());
                        match body {
                            Ok(_) if status == kind.expected() => None,
                            Ok(_) => Some(format!("{kind:?}: {status}")),
                            Err(e) => Some(format!("{kind:?}: body: {e}")),
                        }
                    }
                    Err(e) => Some(format!("{kind:?}: transport: {e}")),
                };
                counts[index].fetch_add(1, Ordering::Relaxed);
                if let Some(what) = outcome {
                    wrong_counts[index].fetch_add(1, Ordering::Relaxed);
                    let mut wrong = wrong.lock().expect("lock");
                    if wrong.len() < 20 {
                        wrong.push(what);
                    }
                }
            }
        }));
    }

    let pid = stack.scopegate_pid();
    let started = Instant::now();
    let mut samples: Vec<(u64, u64, u64)> = Vec::new(); // (second, requests so far, RSS KiB)
    let mut published = false;
    while started.elapsed() < run {
        tokio::time::sleep(SAMPLE_EVERY.min(run.saturating_sub(started.elapsed()))).await;
        let elapsed = started.elapsed();
        if !published && elapsed >= run / 3 {
            jwks.set(publish(&[&old, &new]));
            published = true;
        }
        if published && !rotated.load(Ordering::SeqCst) && elapsed >= run / 2 {
            rotated.store(true, Ordering::SeqCst);
        }
        let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        samples.push((elapsed.as_secs(), total, resident_kib(pid)));
    }
    stop.store(true, Ordering::SeqCst);
    for worker in workers {
        worker.await.expect("worker");
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = stack.stats("ext_authz").await;

    // The report, ready for BENCHMARKS.md.
    let total: u64 = counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    let unexpected: u64 = wrong_counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
    println!("\n#### Soak: {seconds} s, {WORKERS} concurrent clients through Envoy");
    println!(
        "\n{total} requests ({:.0}/s), {unexpected} unexpected answers; JWKS fetches: {}\n",
        total as f64 / elapsed,
        jwks.hits()
    );
    println!("| kind | expected | requests | unexpected |\n|---|---|---|---|");
    for (i, kind) in KINDS.iter().enumerate() {
        println!(
            "| {kind:?} | {} | {} | {} |",
            kind.expected(),
            counts[i].load(Ordering::Relaxed),
            wrong_counts[i].load(Ordering::Relaxed)
        );
    }
    println!("\n| second | requests so far | scopegate RSS (MiB) |\n|---|---|---|");
    for (second, requests, rss) in &samples {
        println!("| {second} | {requests} | {:.1} |", *rss as f64 / 1024.0);
    }
    println!("\nEnvoy ext_authz counters:\n```");
    for line in stats
        .lines()
        .filter(|l| l.starts_with("http.ingress_http.ext_authz"))
    {
        println!("{line}");
    }
    println!("```");

    let wrong = wrong.lock().expect("lock");
    assert_eq!(unexpected, 0, "unexpected answers, first ones: {wrong:?}");
    // Memory: compare the end with the first sample after a minute of warm-up (or a sixth of a
    // short run). Caches and allocator pools settle early; steady growth after that is a leak.
    let warm = samples
        .iter()
        .find(|(second, _, _)| *second >= (seconds / 6).min(60))
        .expect("a sample after warm-up");
    let end = samples.last().expect("samples");
    assert!(
        end.2 <= warm.2 + warm.2 / 4 + 4 * 1024,
        "resident memory grew from {} KiB at {} s to {} KiB at {} s",
        warm.2,
        warm.0,
        end.2,
        end.0
    );
}
