//! Tracing end to end: a real Envoy running the repository's `envoy/envoy.yaml` with its
//! OpenTelemetry tracer added, and the scopegate binary with `[tracing]`, both exporting over
//! OTLP/gRPC to the receiver the test runs (`common::otlp`, built on the OTLP protos). One
//! client request is one trace in which scopegate's `scopegate.check` is the child of Envoy's
//! span for the ext_authz call; a token signed by a key scopegate has not seen shows the
//! refetch it waited for. Envoy must be installed (`scripts/install-envoy`); these tests fail,
//! never skip, without it.

use crate::common::otlp::{OtlpReceiver, ReceivedSpan};
use crate::common::stack::{Stack, substitute};
use crate::common::{AUDIENCE, ISSUER, JwksServer, Reply, TestKey, claims, jwks_of};

/// `yaml` (the shipped `envoy/envoy.yaml`) with Envoy's OpenTelemetry tracer on every request,
/// exporting to `collector` (`127.0.0.1:PORT`) over a cluster of its own.
fn with_tracer(yaml: &str, collector: std::net::SocketAddr) -> String {
    let prefix = "                stat_prefix: ingress_http\n";
    let tracer = format!(
        "{prefix}\
         \x20               tracing:\n\
         \x20                 random_sampling:\n\
         \x20                   value: 100\n\
         \x20                 provider:\n\
         \x20                   name: envoy.tracers.opentelemetry\n\
         \x20                   typed_config:\n\
         \x20                     \"@type\": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig\n\
         \x20                     service_name: envoy\n\
         \x20                     grpc_service:\n\
         \x20                       envoy_grpc:\n\
         \x20                         cluster_name: otel_collector\n\
         \x20                       timeout: 1s\n"
    );
    let yaml = substitute(yaml, prefix, &tracer, 1);
    let clusters = "  clusters:\n";
    let cluster = format!(
        "{clusters}\
         \x20   - name: otel_collector\n\
         \x20     type: STATIC\n\
         \x20     connect_timeout: 0.25s\n\
         \x20     typed_extension_protocol_options:\n\
         \x20       envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n\
         \x20         \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n\
         \x20         explicit_http_config:\n\
         \x20           http2_protocol_options: {{}}\n\
         \x20     load_assignment:\n\
         \x20       cluster_name: otel_collector\n\
         \x20       endpoints:\n\
         \x20         - lb_endpoints:\n\
         \x20             - endpoint:\n\
         \x20                 address:\n\
         \x20                   socket_address:\n\
         \x20                     address: {}\n\
         \x20                     port_value: {}\n",
        collector.ip(),
        collector.port()
    );
    substitute(&yaml, clusters, &cluster, 1)
}

/// The spans of trace `trace` received so far.
fn of_trace<'s>(spans: &'s [ReceivedSpan], trace: &str) -> Vec<&'s ReceivedSpan> {
    spans.iter().filter(|s| s.trace_id == trace).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_is_a_child_of_envoys_ext_authz_span_and_shows_the_refetch() {
    let receiver = OtlpReceiver::start().await;
    let old = TestKey::generate("old-kid");
    let new = TestKey::generate("new-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&old]))).await;
    let endpoint = receiver.endpoint();
    let stack = Stack::start_with_config_and_envoy(
        |_, _| {
            format!(
                r#"issuer = "{ISSUER}"
audience = "{AUDIENCE}"
jwks_uri = "{}"
jwks_refetch_cooldown_seconds = 1
[[rules]]
name = "messages read"
path = "/restricted_resource"
scopes = ["read:messages"]
[[rules]]
name = "public"
path = "/public"
public = true
[tracing]
otlp_endpoint = "{endpoint}"
"#,
                jwks.url()
            )
        },
        |yaml| with_tracer(&yaml, receiver.addr),
    )
    .await;

    // One request, in a trace the client started.
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let client_span = "b7ad6b7169203331";
    let authorization = format!("Bearer {}", old.mint(&claims("read:messages")));
    let traceparent = format!("00-{trace}-{client_span}-01");
    let response = stack
        .get(
            "/restricted_resource",
            &[
                ("authorization", authorization.as_str()),
                ("traceparent", traceparent.as_str()),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    receiver
        .wait_for("Envoy's and scopegate's spans of the trace", |spans| {
            let spans = of_trace(spans, trace);
            spans.iter().any(|s| s.name == "scopegate.check")
                && spans.iter().filter(|s| s.service == "envoy").count() >= 2
        })
        .await;
    let spans = receiver.spans();
    let spans = of_trace(&spans, trace);
    let check: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "scopegate.check")
        .collect();
    assert_eq!(check.len(), 1, "{spans:#?}");
    let check = check[0];
    assert_eq!(check.service, "scopegate");
    let parent = spans
        .iter()
        .find(|s| s.span_id == check.parent_span_id)
        .unwrap_or_else(|| panic!("scopegate.check's parent is in the trace: {spans:#?}"));
    assert_eq!(parent.service, "envoy", "{parent:#?}");
    assert!(
        parent.name.contains("scopegate") || parent.name.contains("Authorization"),
        "the parent is Envoy's span for the ext_authz call: {parent:#?}"
    );
    let ingress = spans
        .iter()
        .find(|s| s.span_id == parent.parent_span_id)
        .unwrap_or_else(|| panic!("the ext_authz span's parent is in the trace: {spans:#?}"));
    assert_eq!(ingress.service, "envoy");
    assert_eq!(ingress.parent_span_id, client_span, "{ingress:#?}");
    for (name, value) in [
        ("scopegate.decision", "allow"),
        ("http.response.status_code", "200"),
        ("scopegate.reason", "authorized"),
        ("scopegate.rule", "messages read"),
        ("scopegate.issuer", ISSUER),
        ("scopegate.transport", "grpc"),
        ("scopegate.token_cache.hit", "false"),
        ("http.request.method", "GET"),
    ] {
        assert_eq!(check.attribute(name), Some(value), "{name} of {check:#?}");
    }

    // The issuer rotates: a token signed by the new key makes scopegate refetch, and the
    // fetch is in the request's trace.
    jwks.set(Reply::json(&jwks_of(&[&old, &new])));
    let trace = "1af7651916cd43dd8448eb211c80319c";
    let authorization = format!("Bearer {}", new.mint(&claims("read:messages")));
    let traceparent = format!("00-{trace}-{client_span}-01");
    let response = stack
        .get(
            "/restricted_resource",
            &[
                ("authorization", authorization.as_str()),
                ("traceparent", traceparent.as_str()),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    receiver
        .wait_for("the refetch's spans", |spans| {
            let spans = of_trace(spans, trace);
            [
                "scopegate.check",
                "scopegate.jwks.unknown_kid_wait",
                "scopegate.jwks.fetch",
            ]
            .iter()
            .all(|name| spans.iter().any(|s| s.name == *name))
        })
        .await;
    let spans = receiver.spans();
    let spans = of_trace(&spans, trace);
    let named = |name: &str| {
        *spans
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("{name} in {spans:#?}"))
    };
    let (check, wait, fetch) = (
        named("scopegate.check"),
        named("scopegate.jwks.unknown_kid_wait"),
        named("scopegate.jwks.fetch"),
    );
    assert_eq!(wait.parent_span_id, check.span_id);
    assert_eq!(fetch.parent_span_id, wait.span_id);
    assert_eq!(
        wait.links,
        [(fetch.trace_id.clone(), fetch.span_id.clone())]
    );
    assert_eq!(
        fetch.attribute("scopegate.jwks.trigger"),
        Some("unknown_kid")
    );
    assert_eq!(fetch.attribute("scopegate.jwks.result"), Some("success"));
}
