//! Tracing: a Check as a `scopegate.check` span exported over OTLP/gRPC to a receiver the test
//! runs (`common::otlp`, the collector's `TraceService` from the OTLP protos). Its parent is
//! the trace context in the gRPC metadata (as Envoy's ext_authz client sends it); the client's
//! own `traceparent` counts only with `trust_client_trace_context`; a malformed one is
//! ignored; no token, path or subject reaches an exported value; an unknown-`kid` wait shows
//! the fetch it waited for; a collector that never answers delays no Check, and what cannot be
//! exported is dropped and counted, in flat memory.

use std::sync::Arc;
use std::time::Instant;

use envoy_types::ext_authz::v3::pb::CheckRequest;
use serde_json::json;

use crate::common::binary::Binary;
use crate::common::otlp::{OtlpReceiver, ReceivedSpan};
use crate::common::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const CHECK: &str = "scopegate.check";

const RULES: &str = "[[rules]]\nname = \"messages read\"\npath = \"/restricted_resource\"\n\
                     scopes = [\"read:messages\"]\n";

fn traceparent(trace: &str, parent: &str, flags: &str) -> String {
    format!("00-{trace}-{parent}-{flags}")
}

/// Scopegate with `RULES`, keys loaded, exporting to `receiver` with `tracing` (more keys of
/// the `[tracing]` table).
async fn start(receiver: &OtlpReceiver, tracing: &str) -> Env {
    Env::start(&format!(
        "{RULES}[tracing]\notlp_endpoint = \"{}\"\n{tracing}\n",
        receiver.endpoint()
    ))
    .await
}

/// A Check sent with `metadata` (gRPC request metadata, as Envoy adds `traceparent`).
async fn check_with(gate: &Scopegate, request: CheckRequest, metadata: &[(&str, &str)]) -> Answer {
    let mut request = tonic::Request::new(request);
    for (name, value) in metadata {
        request.metadata_mut().append(
            tonic::metadata::AsciiMetadataKey::from_bytes(name.as_bytes()).expect("name"),
            value.parse().expect("value"),
        );
    }
    let response = gate
        .client
        .clone()
        .check(request)
        .await
        .expect("an in-band answer")
        .into_inner();
    Answer::of(&response)
}

fn get(path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> CheckRequest {
    let authorization = token.map(bearer);
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(a) = &authorization {
        all.push(("authorization", a));
    }
    request("GET", path, &all)
}

/// Stops `env`'s scopegate, which flushes its spans, and returns what the receiver got.
async fn flushed(env: Env, receiver: &OtlpReceiver) -> Vec<ReceivedSpan> {
    env.gate.stop().await;
    receiver.spans()
}

#[tokio::test]
async fn a_check_is_a_child_of_the_trace_context_in_the_grpc_metadata() {
    let receiver = OtlpReceiver::start().await;
    let env = start(&receiver, "headers = { x-api-key = \"collector-key-1\" }").await;
    let token = env.key.mint(&claims("read:messages"));
    let first_parent = traceparent(TRACE, PARENT, "01");
    let second_parent = traceparent(TRACE, "00f067aa0ba902b8", "01");
    let not_sampled = traceparent("5bf92f3577b34da6a3ce929d0e0e4736", PARENT, "00");

    let path = "/restricted_resource";
    let traced = [
        ("traceparent", first_parent.as_str()),
        ("tracestate", "v=1"),
    ];
    check_with(&env.gate, get(path, Some(&token), &[]), &traced)
        .await
        .assert_allowed();
    // The same token again: from the token cache.
    let traced = [("traceparent", second_parent.as_str())];
    check_with(&env.gate, get(path, Some(&token), &[]), &traced)
        .await
        .assert_allowed();
    // An unsampled parent is followed: no span.
    let unsampled = [("traceparent", not_sampled.as_str())];
    check_with(&env.gate, get(path, Some(&token), &[]), &unsampled)
        .await
        .assert_allowed();
    // No parent, and sample_ratio is 0: no span.
    check_with(&env.gate, get(path, None, &[]), &[])
        .await
        .assert_denied(401, "unauthorized");

    let spans = flushed(env, &receiver).await;
    let checks: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == CHECK).collect();
    assert_eq!(checks.len(), 2, "{spans:#?}");
    for (span, parent, hit) in [
        (checks[0], PARENT, "false"),
        (checks[1], "00f067aa0ba902b8", "true"),
    ] {
        assert_eq!(span.trace_id, TRACE);
        assert_eq!(span.parent_span_id, parent);
        assert_eq!(span.kind, 2, "a server span");
        assert_eq!(span.service, "scopegate");
        for (name, value) in [
            ("scopegate.decision", "allow"),
            ("http.response.status_code", "200"),
            ("scopegate.reason", "authorized"),
            ("scopegate.rule", "messages read"),
            ("scopegate.issuer", ISSUER),
            ("scopegate.transport", "grpc"),
            ("scopegate.token_cache.hit", hit),
            ("http.request.method", "GET"),
        ] {
            assert_eq!(span.attribute(name), Some(value), "{name} of {span:#?}");
        }
        assert_eq!(span.attribute("enduser.id"), None, "no subject by default");
    }
    // The refresher's own fetches are roots, exported only when sample_ratio > 0.
    assert!(
        spans.iter().all(|s| s.name == CHECK),
        "only Checks with a sampled parent: {spans:#?}"
    );
    let metadata = receiver.metadata();
    assert!(
        metadata
            .iter()
            .all(|m| m.get("x-api-key").map(String::as_str) == Some("collector-key-1")),
        "every export carries the configured header: {metadata:?}"
    );
}

#[tokio::test]
async fn the_clients_own_traceparent_counts_only_when_trusted() {
    let client_parent = traceparent(TRACE, PARENT, "01");
    let envoy_parent = traceparent("6bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7", "01");
    let from_client = [("traceparent", client_parent.as_str())];

    let receiver = OtlpReceiver::start().await;
    let env = start(&receiver, "").await;
    let token = env.key.mint(&claims("read:messages"));
    // The client's header alone: ignored, and with sample_ratio 0 nothing is traced.
    check_with(
        &env.gate,
        get("/restricted_resource", Some(&token), &from_client),
        &[],
    )
    .await
    .assert_allowed();
    // Beside Envoy's metadata, the metadata is the parent.
    check_with(
        &env.gate,
        get("/restricted_resource", Some(&token), &from_client),
        &[("traceparent", envoy_parent.as_str())],
    )
    .await
    .assert_allowed();
    let spans = flushed(env, &receiver).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].trace_id, "6bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(spans[0].parent_span_id, "10f067aa0ba902b7");

    let receiver = OtlpReceiver::start().await;
    let env = start(&receiver, "trust_client_trace_context = true").await;
    let token = env.key.mint(&claims("read:messages"));
    check_with(
        &env.gate,
        get("/restricted_resource", Some(&token), &from_client),
        &[],
    )
    .await
    .assert_allowed();
    let spans = flushed(env, &receiver).await;
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].trace_id, TRACE);
    assert_eq!(spans[0].parent_span_id, PARENT);
}

#[tokio::test]
async fn a_malformed_traceparent_is_ignored_never_an_error() {
    let receiver = OtlpReceiver::start().await;
    let env = start(&receiver, "sample_ratio = 1.0").await;
    let token = env.key.mint(&claims("read:messages"));
    let good = traceparent(TRACE, PARENT, "01");
    let malformed: [&[&str]; 6] = [
        &["garbage"],
        &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"],
        &["00-00000000000000000000000000000000-00f067aa0ba902b7-01"],
        &["00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"],
        &["00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"],
        // Two: which one is meant cannot be told.
        &[good.as_str(), good.as_str()],
    ];
    for values in malformed {
        let metadata: Vec<(&str, &str)> = values.iter().map(|v| ("traceparent", *v)).collect();
        check_with(
            &env.gate,
            get("/restricted_resource", Some(&token), &[]),
            &metadata,
        )
        .await
        .assert_allowed();
    }
    let spans = flushed(env, &receiver).await;
    let checks: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == CHECK).collect();
    assert_eq!(checks.len(), malformed.len(), "{spans:#?}");
    for span in checks {
        assert_eq!(span.parent_span_id, "", "a root: {span:#?}");
        assert_ne!(span.trace_id, TRACE);
    }
}

#[tokio::test]
async fn no_token_path_or_subject_reaches_an_exported_value() {
    const SUBJECT: &str = "user-5d1e-never-in-a-trace";
    let receiver = OtlpReceiver::start().await;
    let env = start(&receiver, "sample_ratio = 1.0").await;
    let mut good_claims = claims("read:messages");
    good_claims["sub"] = json!(SUBJECT);
    let good = env.key.mint(&good_claims);
    let mut weak_claims = claims("openid");
    weak_claims["sub"] = json!(SUBJECT);
    let weak = env.key.mint(&weak_claims);
    let forged = TestKey::generate("key-1").mint(&good_claims);
    let paths = [
        "/restricted_resource?access_token=query-secret-value",
        "/restricted_resource",
        "/unlisted-path-value",
        "/restricted_resource/../unlisted-path-value",
    ];
    for path in paths {
        for token in [Some(&good), Some(&weak), Some(&forged), None] {
            check_with(&env.gate, get(path, token.map(String::as_str), &[]), &[]).await;
        }
    }
    check_with(
        &env.gate,
        request("X-SECRET-METHOD", "/restricted_resource", &[]),
        &[],
    )
    .await;
    let spans = flushed(env, &receiver).await;
    assert!(
        spans.iter().filter(|s| s.name == CHECK).count() >= paths.len() * 4,
        "{spans:#?}"
    );
    let mut needles: Vec<&str> = vec![
        "query-secret-value",
        "restricted_resource",
        "unlisted-path-value",
        SUBJECT,
        "X-SECRET-METHOD",
    ];
    for token in [&good, &weak, &forged] {
        needles.extend(token.split('.'));
    }
    for span in &spans {
        for value in &span.every_value {
            for needle in &needles {
                assert!(
                    !value.contains(needle),
                    "{needle:?} exported in {value:?} of {span:#?}"
                );
            }
        }
    }
    let methods: Vec<_> = spans
        .iter()
        .filter_map(|s| s.attribute("http.request.method"))
        .collect();
    assert!(methods.contains(&"_OTHER"), "{methods:?}");

    // With trace_subject, an allow's subject is on its span, and only there.
    let receiver = OtlpReceiver::start().await;
    let env = start(&receiver, "sample_ratio = 1.0\ntrace_subject = true").await;
    let good = env.key.mint(&good_claims);
    let weak = env.key.mint(&weak_claims);
    check_with(
        &env.gate,
        get("/restricted_resource", Some(&good), &[]),
        &[],
    )
    .await
    .assert_allowed();
    check_with(
        &env.gate,
        get("/restricted_resource", Some(&weak), &[]),
        &[],
    )
    .await
    .assert_denied(403, "insufficient_scope");
    let spans = flushed(env, &receiver).await;
    let subjects: Vec<Option<&str>> = spans
        .iter()
        .filter(|s| s.name == CHECK)
        .map(|s| s.attribute("enduser.id"))
        .collect();
    assert_eq!(subjects, [Some(SUBJECT), None], "{spans:#?}");
}

#[tokio::test]
async fn an_unknown_kid_wait_is_a_child_of_the_check_linked_to_the_fetch() {
    let receiver = OtlpReceiver::start().await;
    let old = TestKey::generate("old-kid");
    let new = TestKey::generate("new-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&old]))).await;
    let gate = Scopegate::start_ready(
        &jwks.url(),
        &format!(
            "jwks_refetch_cooldown_seconds = 1\nunknown_kid_wait_ms = 3000\n{RULES}\
             [tracing]\notlp_endpoint = \"{}\"\n",
            receiver.endpoint()
        ),
    )
    .await;
    // The issuer rotates: the next token names a key scopegate has not seen yet.
    jwks.set(Reply::json(&jwks_of(&[&old, &new])));
    let token = new.mint(&claims("read:messages"));
    let parent = traceparent(TRACE, PARENT, "01");
    check_with(
        &gate,
        get("/restricted_resource", Some(&token), &[]),
        &[("traceparent", parent.as_str())],
    )
    .await
    .assert_allowed();
    gate.stop().await;

    let spans = receiver.spans();
    let named =
        |name: &str| -> Vec<&ReceivedSpan> { spans.iter().filter(|s| s.name == name).collect() };
    let (check, wait, fetch) = (
        named(CHECK),
        named("scopegate.jwks.unknown_kid_wait"),
        named("scopegate.jwks.fetch"),
    );
    assert_eq!(
        (check.len(), wait.len(), fetch.len()),
        (1, 1, 1),
        "{spans:#?}"
    );
    let (check, wait, fetch) = (check[0], wait[0], fetch[0]);
    assert_eq!(check.parent_span_id, PARENT);
    assert_eq!(wait.trace_id, TRACE);
    assert_eq!(
        wait.parent_span_id, check.span_id,
        "the wait is the Check's child"
    );
    assert_eq!(wait.attribute("scopegate.jwks.refetch"), Some("completed"));
    assert_eq!(
        wait.links,
        [(fetch.trace_id.clone(), fetch.span_id.clone())],
        "the wait is linked to the fetch"
    );
    assert_eq!(
        fetch.trace_id, TRACE,
        "the fetch it asked for is in its trace"
    );
    assert_eq!(fetch.parent_span_id, wait.span_id);
    assert_eq!(
        fetch.attribute("scopegate.jwks.trigger"),
        Some("unknown_kid")
    );
    assert_eq!(fetch.attribute("scopegate.jwks.result"), Some("success"));
}

#[tokio::test]
async fn the_refreshers_own_fetches_are_roots_when_sample_ratio_is_set() {
    let receiver = OtlpReceiver::start().await;
    let env = start(&receiver, "sample_ratio = 1.0").await;
    let spans = flushed(env, &receiver).await;
    let fetches: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == "scopegate.jwks.fetch")
        .collect();
    assert!(!fetches.is_empty(), "{spans:#?}");
    for fetch in fetches {
        assert_eq!(fetch.parent_span_id, "", "a root");
        assert_eq!(fetch.attribute("scopegate.jwks.trigger"), Some("startup"));
        assert_eq!(fetch.kind, 3, "a client span");
    }
}

/// This process's resident set in KiB, from `/proc`; a reading that cannot be taken fails.
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_delays_no_check_and_drops_are_counted() {
    use scopegate::decide::{self, Generation, Request};
    use scopegate::telemetry::metrics::{Metrics, Transport};
    use scopegate::telemetry::traces::{QUEUE_SPANS, Tracer};

    const CHECKS: u64 = 100_000;
    const WARM_UP: u64 = 20_000;
    // A collector that accepts connections at the kernel and never reads a byte: every
    // export hangs until its timeout.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let config = scopegate::config::RawConfig::from_toml(
        &format!(
            "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{}\"\n{RULES}\
             [tracing]\notlp_endpoint = \"http://{}\"\nsample_ratio = 1.0\n",
            jwks.url(),
            silent.local_addr().expect("addr")
        ),
        "<test>",
    )
    .expect("parses")
    .compile()
    .expect("compiles");
    let config = Arc::new(config);
    let settings = config.issuers()[0].jwks.clone();
    let (keys, _) = scopegate::auth::jwks::fetch_once(&settings)
        .await
        .expect("keys");
    let set = scopegate::auth::jwks::Jwks::new(settings);
    set.install(keys);
    let metrics = Metrics::new();
    let dropped = metrics.trace_spans_dropped();
    let tracer = Tracer::start(
        config.tracing().expect("[tracing]").export(),
        dropped.clone(),
    )
    .expect("exporter");
    let generation = Generation::new(Arc::clone(&config), vec![set]).traced(Some(tracer.clone()));

    let authorization = bearer(&key.mint(&claims("read:messages")));
    let mut view = Request::new("GET", "/restricted_resource");
    view.push_header("authorization", &authorization);
    let mut before = 0;
    for i in 0..CHECKS {
        if i == WARM_UP {
            before = rss_kib();
        }
        let decided = decide::check(
            &generation,
            &view,
            now(),
            Transport::grpc,
            &metrics,
            Instant::now(),
        )
        .await;
        assert_eq!(decided.labels.status, 200, "Check {i}");
    }
    let after = rss_kib();
    // The queue holds QUEUE_SPANS (2048); the exporter took at most a few batches (512 each)
    // out of it before hanging on the first export (its 10 s timeout); everything else was
    // dropped, and counted.
    let dropped = dropped.get();
    assert!(
        dropped >= CHECKS - QUEUE_SPANS as u64 - 4 * 512,
        "{dropped} of {CHECKS} spans counted as dropped"
    );
    assert!(dropped <= CHECKS, "{dropped}");
    // Flat: 80,000 spans of a few hundred bytes each kept would be tens of MiB.
    assert!(
        after.saturating_sub(before) < 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB over {} Checks",
        CHECKS - WARM_UP
    );
    // Shutdown is bounded even though the collector never answers.
    tokio::task::spawn_blocking(move || tracer.shutdown(std::time::Duration::from_millis(200)))
        .await
        .expect("shutdown");
    drop(silent);
}

#[tokio::test]
async fn a_reload_that_changes_tracing_is_refused_as_needing_a_restart() {
    let receiver = OtlpReceiver::start().await;
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let text = |ratio: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             jwks_uri = \"{}\"\n{RULES}[tracing]\notlp_endpoint = \"{}\"\nsample_ratio = {ratio}\n",
            jwks.url(),
            receiver.endpoint()
        )
    };
    let binary = Binary::start("tracing-reload", &text("0.0"), "info", None).await;
    binary.keys_loaded().await;
    std::fs::write(binary.config_path(), text("1.0")).expect("write");
    binary.sighup();
    binary
        .wait_for_log(
            "tracing settings take effect only after a restart",
            std::time::Duration::from_secs(30),
        )
        .await;
    // The old settings stay: no parent and ratio 0, so no span.
    let mut client = binary.client().await;
    let token = key.mint(&claims("read:messages"));
    let answer = Answer::of(
        &client
            .check(get("/restricted_resource", Some(&token), &[]))
            .await
            .expect("in-band")
            .into_inner(),
    );
    answer.assert_allowed();
}
