//! Faults and recovery through Envoy: scopegate killed under load (Envoy fails closed, traffic
//! returns on restart) and connections closed for idleness (nothing is lost).

use std::time::Duration;

use crate::common::eventually;
use crate::common::stack::Stack;
use crate::support::scopegates_denial;
use serde_json::Value;

/// Phases of the kill test, as seen by the load workers. A phase starts before the action that
/// names it, so that an answer caused by the action can never be counted in the phase before.
const UP: usize = 0;
const KILLING: usize = 1;
const KILLED: usize = 2;
const RESTARTING: usize = 3;
const SERVING_AGAIN: usize = 4;

/// One request of the kill test's load: which kind, and the phase when it was sent and answered.
#[derive(Debug)]
struct Observed {
    kind: usize,
    sent: usize,
    answered: usize,
    status: u16,
    /// Whether the body is scopegate's JSON denial (an `error` code), not Envoy's own answer.
    scopegates: bool,
    /// The start of the body, for failure messages.
    body: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_fails_closed_while_scopegate_is_killed_under_load_and_recovers() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    let mut stack = Stack::start().await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let weak = format!("Bearer {}", stack.token("openid"));
    // (path, Authorization, status while scopegate runs). Whatever the kind, while it is down
    // the answer must be Envoy's status_on_error, 503: public routes are not waved through.
    let kinds: Arc<Vec<(&str, Option<String>, u16)>> = Arc::new(vec![
        ("/restricted_resource", Some(good.clone()), 200),
        ("/restricted_resource", None, 401),
        ("/restricted_resource", Some(weak), 403),
        ("/restricted_resource", Some("Bearer a.b.c".into()), 401),
        ("/public", None, 200),
    ]);

    let phase = Arc::new(AtomicUsize::new(UP));
    let answered_in = Arc::new([(); 5].map(|()| AtomicUsize::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..8 {
        let (http, url, kinds) = (stack.http.clone(), stack.url.clone(), kinds.clone());
        let (phase, answered_in, stop) = (phase.clone(), answered_in.clone(), stop.clone());
        workers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut n = worker;
            while !stop.load(Ordering::SeqCst) {
                let kind = n % kinds.len();
                n += 1;
                let (path, authorization, _) = &kinds[kind];
                let mut request = http.get(format!("{url}{path}"));
                if let Some(value) = authorization {
                    request = request.header("authorization", value);
                }
                let sent = phase.load(Ordering::SeqCst);
                let response = request.send().await.expect("Envoy answers");
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                let scopegates =
                    serde_json::from_str::<Value>(&body).is_ok_and(|v| v["error"].is_string());
                let body: String = body.chars().take(120).collect();
                let answered = phase.load(Ordering::SeqCst);
                if sent == answered {
                    answered_in[sent].fetch_add(1, Ordering::SeqCst);
                }
                seen.push(Observed {
                    kind,
                    sent,
                    answered,
                    status: status.as_u16(),
                    scopegates,
                    body,
                });
            }
            seen
        }));
    }
    let settle = |p: usize, n: usize| {
        let answered_in = answered_in.clone();
        eventually("load in this phase", Duration::from_secs(60), move || {
            let answered_in = answered_in.clone();
            async move { answered_in[p].load(Ordering::SeqCst) >= n }
        })
    };

    settle(UP, 200).await;
    phase.store(KILLING, Ordering::SeqCst);
    stack.kill_scopegate();
    phase.store(KILLED, Ordering::SeqCst);
    settle(KILLED, 300).await;

    // scopegate comes back on the same address: Envoy resumes without a restart.
    phase.store(RESTARTING, Ordering::SeqCst);
    stack.restart_scopegate();
    eventually("traffic served again", Duration::from_secs(30), || async {
        stack
            .get("/restricted_resource", &[("authorization", &good)])
            .await
            .status()
            == 200
    })
    .await;
    phase.store(SERVING_AGAIN, Ordering::SeqCst);
    settle(SERVING_AGAIN, 200).await;
    stop.store(true, Ordering::SeqCst);

    let mut wrong = Vec::new();
    let mut total = 0;
    for worker in workers {
        for seen in worker.await.expect("worker") {
            total += 1;
            let (path, authorization, expected) = &kinds[seen.kind];
            // A denial while scopegate runs is its JSON answer; the 503 while it is down is
            // Envoy's status_on_error, with no answer of scopegate's.
            let its_own = seen.status == *expected && (*expected == 200 || seen.scopegates);
            let envoys = seen.status == 503 && !seen.scopegates;
            // A restarted scopegate answers before its first key set has loaded: its own 503
            // (fail closed, in-band) until the keys are in.
            let keys_loading = seen.status == 503
                && seen.scopegates
                && seen.body.contains("temporarily_unavailable");
            let ok = match (seen.sent, seen.answered) {
                // Sent and answered once scopegate was dead: the configured status, always.
                (KILLED, KILLED) => envoys,
                // Entirely while it ran: its own answer.
                (UP, UP) | (SERVING_AGAIN, SERVING_AGAIN) => its_own,
                // Around the restart: either, or the restarted scopegate's 503 while its keys
                // load; never anything else.
                (RESTARTING, _) | (_, RESTARTING) => its_own || envoys || keys_loading,
                // Around the kill: either, never anything else.
                _ => its_own || envoys,
            };
            if !ok {
                wrong.push(format!(
                    "{path} {} in phases {}..{}: {} {:?}",
                    authorization
                        .as_deref()
                        .map_or("no token", |_| "with token"),
                    seen.sent,
                    seen.answered,
                    seen.status,
                    seen.body
                ));
            }
        }
    }
    let stats = if wrong.is_empty() {
        String::new()
    } else {
        stack.stats("ext_authz|cluster.scopegate").await
    };
    assert!(
        wrong.is_empty(),
        "{} of {total} answers were wrong: {:?}\nscopegate log:\n{}\nEnvoy stats:\n{stats}",
        wrong.len(),
        &wrong[..wrong.len().min(20)],
        stack.scopegate_log()
    );
}

/// scopegate closes connections that carry no request for `idle_timeout_seconds` (2 s here, so
/// that Envoy's pooled connection is closed under it between two bursts, while the health-check
/// connection, probed every second, never idles). Envoy reconnects:
/// nothing is lost, every request of the next burst gets scopegate's answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_reconnects_after_an_idle_close_and_loses_nothing() {
    let stack = Stack::start_with_gate_config("server = { idle_timeout_seconds = 2 }").await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let connections = || stack.stat("cluster.scopegate.upstream_cx_total");
    let burst = || async {
        for i in 0..20 {
            let (authorization, want) = if i % 2 == 0 {
                (Some(good.as_str()), 200)
            } else {
                (None, 401)
            };
            let headers: Vec<(&str, &str)> = authorization
                .map(|a| vec![("authorization", a)])
                .unwrap_or_default();
            let response = stack.get("/restricted_resource", &headers).await;
            let context = format!("request {i} of a burst");
            if want == 200 {
                assert_eq!(response.status(), want, "{context}");
            } else {
                scopegates_denial(response, want, "unauthorized", &context).await;
            }
        }
    };
    burst().await;
    let before = connections().await;
    let closed = stack.stat("cluster.scopegate.upstream_cx_destroy").await;
    // After the idle timeout scopegate closes the pooled connection (health checks use a
    // connection of their own, which stays busy): wait until Envoy has seen it go.
    eventually(
        "the pooled connection closed for idleness",
        Duration::from_secs(30),
        || async { stack.stat("cluster.scopegate.upstream_cx_destroy").await > closed },
    )
    .await;
    burst().await;
    let after = connections().await;
    assert!(
        after > before,
        "Envoy should have opened a new connection after the idle close ({before} then {after})"
    );
}

/// Requests timed to reach scopegate as its idle timeout (1 s) closes Envoy's pooled connection,
/// round after round: every one gets scopegate's answer, never Envoy's `status_on_error` 503.
/// scopegate sends GOAWAY and waits for streams in flight; Envoy sends its next request on a new
/// connection. Before, the idle timer cut the connection's read side, and a request caught in
/// that moment got 503. (The shipped Envoy files close idle connections first, after 60 s;
/// Istio's pools keep them for an hour.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_racing_scopegates_idle_close_are_all_answered() {
    let stack = Stack::start_with_gate_config("server = { idle_timeout_seconds = 1 }").await;
    let connections = || stack.stat("cluster.scopegate.upstream_cx_total");
    let before = connections().await;
    for round in 0..24u64 {
        // From 6 ms before the idle deadline to 5 ms after it, counted from the last answer.
        tokio::time::sleep(Duration::from_millis(994 + round % 12)).await;
        let response = stack.get("/restricted_resource", &[]).await;
        assert_eq!(
            response.status(),
            401,
            "round {round}: scopegate's answer, not Envoy's status_on_error"
        );
    }
    let after = connections().await;
    assert!(
        after > before + 10,
        "the idle close should have raced most rounds ({before} then {after} connections)"
    );
}
