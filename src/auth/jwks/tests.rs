use super::*;
use crate::auth::keys::tests::{generated_modulus, rsa};

#[test]
fn max_age_is_read_from_cache_control() {
    for (header, want) in [
        ("max-age=600", Some(600)),
        ("public, max-age=15, stale-while-revalidate=15", Some(15)),
        ("MAX-AGE = 30", Some(30)),
        ("no-store", None),
        ("max-age=-1", None),
        ("max-age=abc", None),
    ] {
        assert_eq!(max_age(header), want.map(Duration::from_secs), "{header}");
    }
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let secs: Vec<u64> = (1..=6).map(|n| retry_backoff(n).as_secs()).collect();
    assert_eq!(secs, [1, 2, 4, 8, 10, 10]);
    assert_eq!(retry_backoff(u32::MAX), MAX_RETRY_BACKOFF);
}

/// The refresher's planned sleep is cut at the moment the set goes stale (its last
/// successful fetch + `jwks_max_stale_seconds`), whatever `max-age` asked for.
#[test]
fn the_wait_is_the_planned_one_or_until_staleness_whichever_is_sooner() {
    let s = Duration::from_secs;
    for (planned, until_stale, want) in [
        (s(600), None, s(600)),
        (s(600), Some(s(3600)), s(600)),
        (s(10), Some(s(3)), s(3)),
        (s(10), Some(Duration::ZERO), Duration::ZERO),
    ] {
        assert_eq!(
            next_wait(planned, until_stale),
            want,
            "{planned:?} {until_stale:?}"
        );
    }
}

pub(crate) fn settings() -> JwksSettings {
    JwksSettings {
        uri: "http://127.0.0.1:1/jwks".parse().expect("url"),
        discovery_issuer: None,
        fallback_uri: None,
        fetch_policy: FetchPolicy::default(),
        algorithms: vec![Algorithm::RS256],
        refresh: Duration::from_secs(600),
        min_refresh: Duration::from_secs(60),
        max_refresh: Duration::from_secs(3600),
        refetch_cooldown: Duration::from_secs(5),
        fetch_timeout: Duration::from_secs(5),
        max_bytes: 1 << 20,
        max_stale: Duration::from_secs(86_400),
        max_keys: 100,
        unknown_kid_wait: Duration::from_millis(300),
    }
}

/// The gate's transitions, one table row per step: what a caller asking at that moment is
/// told, under paused time so the cooldown is exact.
#[tokio::test(start_paused = true)]
async fn the_refetch_gate_joins_starts_and_cools_down() {
    #[derive(Debug)]
    enum Step {
        /// A caller asks, after this much time; expect this answer.
        Ask(u64, GateAnswer),
        /// The refresher starts a fetch on its schedule.
        Begin,
        /// The refresher's fetch ends.
        Finish,
    }
    use GateAnswer::{CoolingDown, Join, Started};
    use Step::{Ask, Begin, Finish};
    let cooldown = Duration::from_secs(5);
    let steps = [
        Ask(0, Started),     // idle, no earlier trigger: start a fetch
        Ask(0, Join),        // the same fetch, not a second one
        Finish,              // back to idle
        Ask(1, CoolingDown), // 1 s after the trigger: inside the cooldown
        Ask(3, CoolingDown), // 4 s: still inside
        Begin,               // a scheduled fetch: callers join it even in the cooldown
        Ask(0, Join),
        Finish,
        Ask(1, Started), // 5 s after the last trigger: the cooldown is over
        Finish,
        Begin, // a scheduled fetch does not restart the cooldown...
        Finish,
        Ask(4, CoolingDown), // ...which still runs from the last caller's trigger (4 s ago)
        Ask(1, Started),
    ];
    let mut gate = RefetchGate::default();
    for (i, step) in steps.into_iter().enumerate() {
        match step {
            Ask(after, expected) => {
                tokio::time::advance(Duration::from_secs(after)).await;
                assert_eq!(
                    gate.ask(Instant::now(), cooldown, Trigger::unknown_kid),
                    expected,
                    "step {i}: {gate:?}"
                );
                assert!(gate.is_fetching() || expected == CoolingDown, "step {i}");
            }
            Begin => {
                gate.begin();
            }
            Finish => gate.finish(),
        }
    }
}

/// Lets every ready task run (time is paused, so nothing else moves).
async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
}

/// A caller must wait for the end of the fetch it joined or started, never be woken by the
/// end of an earlier one. The end of an attempt (gate to idle, count it) is one step
/// under the gate's lock; the refresher used to clear first and count after, so a caller
/// landing in between started a "new" fetch, was woken at once by the old one's count, got
/// a spurious 401, and burnt the cooldown for everyone. A waiter whose fetch never ends
/// gives up after exactly `unknown_kid_wait_ms` (300 ms here), not the fetch timeout.
#[tokio::test(start_paused = true)]
async fn a_waiter_is_woken_by_the_end_of_its_own_fetch_only() {
    let jwks = Jwks::new(settings());
    // A scheduled fetch is under way; a caller joins it.
    jwks.begin_attempt();
    let joined = tokio::spawn({
        let jwks = jwks.clone();
        async move { jwks.refetch_for_unknown_kid().await }
    });
    settle().await;
    assert!(!joined.is_finished(), "waits for the fetch under way");
    jwks.finish_attempt();
    assert_eq!(joined.await.expect("task"), Refetch::Completed);

    // The fetch is over: the next caller starts a new one (the scheduled fetch set no
    // cooldown) and is woken by its end, not by the count of the one before.
    let started = tokio::spawn({
        let jwks = jwks.clone();
        async move { jwks.refetch_for_unknown_kid().await }
    });
    settle().await;
    assert!(!started.is_finished(), "woken by an earlier fetch's count");
    assert!(
        jwks.lock_gate().is_fetching(),
        "the caller asked for a fetch"
    );
    jwks.begin_attempt();
    settle().await;
    assert!(!started.is_finished());
    jwks.finish_attempt();
    assert_eq!(started.await.expect("task"), Refetch::Completed);

    // Within the cooldown nobody waits.
    assert_eq!(jwks.refetch_for_unknown_kid().await, Refetch::CoolingDown);
    tokio::time::advance(Duration::from_secs(5)).await;
    let late = tokio::spawn({
        let jwks = jwks.clone();
        async move { jwks.refetch_for_unknown_kid().await }
    });
    settle().await;
    assert!(
        !late.is_finished(),
        "after the cooldown, a new fetch is asked for"
    );
    // Nobody runs it: the caller gives up after unknown_kid_wait, not the fetch timeout.
    tokio::time::advance(Duration::from_millis(299)).await;
    settle().await;
    assert!(!late.is_finished());
    tokio::time::advance(Duration::from_millis(1)).await;
    assert_eq!(late.await.expect("task"), Refetch::TimedOut);
}

#[tokio::test(start_paused = true)]
async fn a_stopped_refresher_releases_waiters_and_is_unusable_until_an_install() {
    let jwks = Jwks::new(settings());
    jwks.install(KeySet::default());
    assert!(jwks.is_usable());
    let waiter = tokio::spawn({
        let jwks = jwks.clone();
        async move { jwks.refetch_for_unknown_kid().await }
    });
    settle().await;
    assert!(!waiter.is_finished());
    jwks.refresher_stopped();
    assert_eq!(waiter.await.expect("task"), Refetch::Completed);
    assert!(
        !jwks.is_usable(),
        "health must not say SERVING with no refresher"
    );
    assert!(jwks.snapshot().is_some(), "Checks keep the set in force");
    jwks.install(KeySet::default());
    assert!(jwks.is_usable());
}

/// A set older than `jwks_max_stale_seconds` (24 h here) is withdrawn: no snapshot, not
/// usable; a Check that finds it so asks for a fetch.
#[tokio::test(start_paused = true)]
async fn stale_sets_are_withdrawn_and_stale_checks_ask_for_a_fetch() {
    let jwks = Jwks::new(settings());
    jwks.install(KeySet::default());
    assert_eq!(jwks.until_stale(), Some(Duration::from_secs(86_400)));
    tokio::time::advance(Duration::from_secs(86_401)).await;
    assert!(jwks.snapshot().is_none() && !jwks.is_usable());
    assert_eq!(jwks.until_stale(), None);
    jwks.request_refetch();
    assert!(
        jwks.lock_gate().is_fetching(),
        "a stale Check asks for a fetch"
    );
}

/// The refresher loop itself, under paused time: a set is in force and every fetch fails
/// (the URL is plain http off loopback, refused before anything is sent), so the refresher
/// backs off (0.75 to 1 s after the first failure). The set goes stale 500 ms after it was
/// installed (`jwks_max_stale_seconds`, shortened for the test): the second attempt is made at that moment, not at the end of the backoff, so a
/// last try comes before Checks would be answered 503.
#[tokio::test(start_paused = true)]
async fn the_refresher_never_sleeps_past_staleness() {
    let max_stale = Duration::from_millis(500);
    let jwks = Jwks::new(JwksSettings {
        uri: "http://issuer.example/jwks".parse().expect("url"),
        max_stale,
        ..settings()
    });
    let client = http_client(&jwks.shared.settings).expect("client");
    let installed = Instant::now();
    jwks.install(KeySet::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let refresher = tokio::spawn(jwks.clone().run_refresher(client, async {
        let _ = stopped.await;
    }));
    let mut attempts = jwks.shared.attempts.subscribe();
    let mut at = Vec::new();
    for n in 1..=2 {
        attempts
            .wait_for(|done| *done >= n)
            .await
            .expect("the refresher runs");
        at.push(installed.elapsed());
    }
    assert!(
        jwks.snapshot().is_some(),
        "the last attempt comes while the set is still in force"
    );
    let _ = stop.send(());
    refresher.await.expect("refresher");
    assert_eq!(at, [Duration::ZERO, max_stale], "attempts made at");
}

/// Parsing runs on a blocking thread: a task on the same (single-threaded) runtime keeps
/// running, round after round, while a large document is parsed. A parse on the runtime
/// thread would let the other task through once at most (at an await before or after it);
/// parsing a thousand keys takes milliseconds, thousands of the other task's rounds.
#[tokio::test]
async fn parsing_leaves_the_runtime_free() {
    let n = generated_modulus();
    let keys: Vec<_> = (0..1000).map(|i| rsa(&format!("k{i}"), &n)).collect();
    let body = serde_json::json!({ "keys": keys }).to_string().into_bytes();
    let ticks = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ticker = tokio::spawn({
        let ticks = Arc::clone(&ticks);
        async move {
            loop {
                ticks.fetch_add(1, Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        }
    });
    let settings = JwksSettings {
        max_keys: 1000,
        algorithms: Algorithm::ALL.to_vec(),
        ..settings()
    };
    let (set, _) = parse_off_runtime(body, &settings).await.expect("parses");
    let during = ticks.load(Ordering::Relaxed);
    ticker.abort();
    assert_eq!(set.len(), 1000);
    assert!(
        during >= 100,
        "the other task ran {during} times during the parse: the runtime was held up"
    );
}
