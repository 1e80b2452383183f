//! Metrics and decision logs of the real binary: `/metrics` fetched over HTTP and parsed as
//! Prometheus text, JSON decision log lines parsed, both after real Checks; neither ever carries
//! a token, a subject, a path or a query string where it must not.

use std::collections::HashMap;
use std::time::Duration;

use crate::common::binary::Binary;
use crate::common::*;
use serde_json::{Value, json};

/// A subject that must never become a metric label.
const SECRET_SUBJECT: &str = "user-7f3a-never-a-label";

/// `/metrics` as text.
pub async fn metrics_text(addr: &str) -> String {
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client")
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    response.text().await.expect("body")
}

/// `/metrics` as a parsed scrape.
pub async fn scrape(addr: &str) -> prometheus_parse::Scrape {
    let text = metrics_text(addr).await;
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text")
}

/// The token cache's (hits, misses) so far, from `/metrics` at `addr`.
pub async fn token_cache_lookups(addr: &str) -> (f64, f64) {
    let scrape = scrape(addr).await;
    let count = |result| {
        sample(
            &scrape,
            "scopegate_token_cache_requests_total",
            &[("result", result)],
        )
    };
    (count("hit"), count("miss"))
}

/// The value of the sample named `metric` whose labels include every pair of `labels`.
pub fn sample(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| {
            labels
                .iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|l| l == *v))
        })
        .map(|s| match &s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => *v,
            prometheus_parse::Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
        .collect();
    assert!(
        found.len() <= 1,
        "{metric} {labels:?} matches several samples"
    );
    found.first().copied().unwrap_or(0.0)
}

fn config(jwks_uri: &str, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\n\
         audience = \"{AUDIENCE}\"\njwks_uri = \"{jwks_uri}\"\n{extra}\n\
         [[rules]]\nname = \"messages read\"\npath = \"/restricted_resource\"\nscopes = [\"read:messages\"]\n\
         [[rules]]\npath = \"/public\"\npublic = true\n"
    )
}

#[tokio::test]
async fn metrics_count_real_checks_and_carry_no_request_values() {
    let key = TestKey::generate("metrics-kid-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start("metrics", &config(&jwks.url(), ""), "info", None).await;
    binary.keys_loaded().await;
    let metrics = binary.metrics_addr().await;
    let mut client = binary.client().await;

    let mut claims = claims("read:messages");
    claims["sub"] = json!(SECRET_SUBJECT);
    let good = key.mint(&claims);
    let weak = key.mint(&{
        let mut c = claims.clone();
        c["scope"] = json!("openid");
        c
    });
    let forged = TestKey::generate("metrics-kid-1").mint(&claims);
    let secret_path = "/restricted_resource?access_token=query-secret";
    let cases: [(&str, Option<&str>, u32); 6] = [
        (secret_path, Some(&good), 3),
        ("/restricted_resource", Some(&weak), 1),
        ("/restricted_resource", Some(&forged), 1),
        ("/restricted_resource", None, 2),
        ("/public", None, 1),
        ("/a/../b", None, 1),
    ];
    for (path, token, times) in cases {
        for _ in 0..times {
            let header = token.map(bearer);
            let headers: Vec<(&str, &str)> = header
                .iter()
                .map(|h| ("authorization", h.as_str()))
                .collect();
            client
                .check(request("GET", path, &headers))
                .await
                .expect("in-band answer");
        }
    }

    let scrape = scrape(&metrics).await;
    let checks = |decision, status, reason, rule| {
        sample(
            &scrape,
            "scopegate_checks_total",
            &[
                ("transport", "grpc"),
                ("decision", decision),
                ("status", status),
                ("reason", reason),
                ("rule", rule),
            ],
        )
    };
    assert_eq!(checks("allow", "200", "authorized", "messages read"), 3.0);
    assert_eq!(
        checks("deny", "403", "insufficient_scope", "messages read"),
        1.0
    );
    assert_eq!(checks("deny", "401", "invalid_token", "messages read"), 1.0);
    assert_eq!(checks("deny", "401", "missing_token", "messages read"), 2.0);
    assert_eq!(checks("allow", "200", "public", "rules[1]"), 1.0);
    assert_eq!(checks("deny", "400", "bad_path", "none"), 1.0);
    assert_eq!(
        sample(
            &scrape,
            "scopegate_check_duration_seconds",
            &[("transport", "grpc"), ("decision", "allow")]
        ),
        4.0,
        "every allowed Check observed once"
    );
    // The transport label has a fixed set: the one without a listener counts nothing.
    assert_eq!(
        sample(
            &scrape,
            "scopegate_check_duration_seconds",
            &[("transport", "http"), ("decision", "allow")]
        ),
        0.0
    );
    assert_eq!(
        sample(
            &scrape,
            "scopegate_jwks_fetches_total",
            &[
                ("issuer", ISSUER),
                ("trigger", "startup"),
                ("result", "success")
            ]
        ),
        1.0
    );
    assert_eq!(
        sample(&scrape, "scopegate_jwks_keys", &[("issuer", ISSUER)]),
        1.0
    );
    let last_success = sample(
        &scrape,
        "scopegate_jwks_last_success_timestamp_seconds",
        &[("issuer", ISSUER)],
    );
    assert!(
        (last_success - now() as f64).abs() < 120.0,
        "{last_success}"
    );
    assert!(
        scrape
            .samples
            .iter()
            .any(|s| s.metric == "scopegate_build_info"
                && s.labels
                    .get("version")
                    .is_some_and(|l| l == env!("CARGO_PKG_VERSION"))),
        "scopegate_build_info{{version}}"
    );

    // Labels are bounded: no subject, path, kid, query or token anywhere in the exposition.
    let text = metrics_text(&metrics).await;
    for leak in [
        SECRET_SUBJECT,
        "/restricted_resource",
        "query-secret",
        "metrics-kid-1",
    ]
    .into_iter()
    .chain(good.split('.'))
    {
        assert!(!text.contains(leak), "{leak:?} in /metrics:\n{text}");
    }
    // Nothing else is served.
    let other = reqwest::get(format!("http://{metrics}/"))
        .await
        .expect("GET /");
    assert_eq!(other.status(), 404);
}

/// A running binary (refetch cooldown an hour) after one allowed Check and two with a kid its
/// issuer does not publish: the first refetches, the second is suppressed. Returns it, with its
/// metrics address.
async fn after_an_unknown_kid(name: &str) -> (Binary, String, JwksServer) {
    let key = TestKey::generate("known");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start(
        name,
        &config(&jwks.url(), "jwks_refetch_cooldown_seconds = 3600"),
        "info",
        None,
    )
    .await;
    binary.keys_loaded().await;
    let metrics = binary.metrics_addr().await;
    let mut client = binary.client().await;
    let stranger = TestKey::generate("unknown").mint(&claims("read:messages"));
    for token in [
        key.mint(&claims("read:messages")),
        stranger.clone(),
        stranger,
    ] {
        client
            .check(request(
                "GET",
                "/restricted_resource",
                &[("authorization", &bearer(&token))],
            ))
            .await
            .expect("in-band answer");
    }
    (binary, metrics, jwks)
}

#[tokio::test]
async fn an_unknown_kid_refetch_and_its_suppression_are_counted() {
    let (_binary, metrics, _jwks) = after_an_unknown_kid("refetch-metrics").await;
    let scrape = scrape(&metrics).await;
    assert_eq!(
        sample(
            &scrape,
            "scopegate_jwks_fetches_total",
            &[("trigger", "unknown_kid"), ("result", "success")]
        ),
        1.0,
        "one refetch for the first unknown kid"
    );
    assert_eq!(
        sample(
            &scrape,
            "scopegate_jwks_refetch_suppressed_total",
            &[("issuer", ISSUER)]
        ),
        1.0,
        "the next one falls inside the cooldown"
    );
}

/// The decision log lines (JSON objects whose message is `decision`) in `log`.
fn decisions(log: &str) -> Vec<Value> {
    log.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|line| line["message"] == "decision")
        .collect()
}

#[tokio::test]
async fn decision_logs_are_json_objects_that_join_envoys_access_log() {
    let key = TestKey::generate("log-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    for (mode, expected) in [("all", 3), ("deny", 2), ("off", 0)] {
        let binary = Binary::start_json(
            &format!("decision-log-{mode}"),
            &config(&jwks.url(), &format!("decision_log = \"{mode}\"")),
            "info",
        )
        .await;
        binary.keys_loaded().await;
        let mut client = binary.client().await;
        let mut good_claims = claims("read:messages");
        good_claims["azp"] = json!("client-app");
        let good = key.mint(&good_claims);
        let weak = key.mint(&claims("openid"));
        for (request_id, token, path) in [
            (
                "req-allow",
                Some(&good),
                "/restricted_resource?access_token=query-secret",
            ),
            ("req-forbidden", Some(&weak), "/restricted_resource"),
            ("req-anonymous", None, "/restricted_resource"),
        ] {
            let authorization = token.map(|t| bearer(t));
            let mut headers = vec![("x-request-id", request_id)];
            if let Some(a) = &authorization {
                headers.push(("authorization", a));
            }
            client
                .check(request("GET", path, &headers))
                .await
                .expect("in-band answer");
        }
        // Lines are written as decisions are made; wait for the last one expected.
        if expected > 0 {
            binary
                .wait_for_log("req-anonymous", Duration::from_secs(10))
                .await;
        }
        let log = binary.log_text();
        let lines = decisions(&log);
        assert_eq!(lines.len(), expected, "{mode}: {log}");
        for token in [&good, &weak] {
            for part in token.split('.') {
                assert!(
                    !log.contains(part),
                    "{mode}: a token segment leaked:\n{log}"
                );
            }
        }
        assert!(
            !log.contains("query-secret"),
            "{mode}: the query string leaked"
        );
        let by_id: HashMap<&str, &Value> = lines
            .iter()
            .map(|l| (l["request_id"].as_str().expect("request_id"), l))
            .collect();
        if mode == "all" {
            let allow = by_id["req-allow"];
            assert_eq!(allow["decision"], "allow", "{allow}");
            assert_eq!(allow["transport"], "grpc", "{allow}");
            assert_eq!(allow["status"], 200);
            assert_eq!(allow["reason"], "authorized");
            assert_eq!(allow["rule"], "messages read");
            assert_eq!(allow["method"], "GET");
            assert_eq!(allow["path"], "/restricted_resource", "no query string");
            assert_eq!(allow["iss"], ISSUER);
            assert_eq!(allow["sub"], "auth0|user-1");
            assert_eq!(allow["kid"], "log-kid");
            assert_eq!(allow["azp"], "client-app");
            assert!(allow["duration_us"].is_u64(), "{allow}");
            assert_eq!(allow["level"], "INFO");
        }
        if mode != "off" {
            let forbidden = by_id["req-forbidden"];
            assert_eq!(
                (forbidden["status"].as_u64(), forbidden["reason"].as_str()),
                (Some(403), Some("insufficient_scope")),
                "{forbidden}"
            );
            assert_eq!(forbidden["sub"], "auth0|user-1", "who was refused");
            let anonymous = by_id["req-anonymous"];
            assert_eq!(
                (anonymous["status"].as_u64(), anonymous["reason"].as_str()),
                (Some(401), Some("missing_token")),
                "{anonymous}"
            );
            assert!(anonymous.get("sub").is_none(), "{anonymous}");
        }
    }
}

/// Every `scopegate_*` metric name in `text`'s PromQL expressions.
fn metric_names(exprs: &[String]) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for expr in exprs {
        let mut rest = expr.as_str();
        while let Some(at) = rest.find("scopegate_") {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

/// The Grafana dashboard and the README's alert rules query only metrics that `/metrics`
/// exposes, checked against a real scrape after Checks, refetches and a reload.
#[tokio::test]
async fn the_dashboard_and_the_alerts_use_only_exposed_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deploy/grafana/scopegate.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs: Vec<String> = Vec::new();
    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "query", Value::String(e)) => out.push(e.clone()),
                        _ => collect(v, out),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| collect(i, out)),
            _ => {}
        }
    }
    collect(&dashboard, &mut exprs);
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    let alerts: Vec<String> = readme
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:").map(str::to_owned))
        .collect();
    assert!(alerts.len() >= 2, "the README's alert rules");
    exprs.extend(alerts);
    let used = metric_names(&exprs);
    for panel_metric in [
        "scopegate_checks_total",
        "scopegate_check_duration_seconds_bucket",
        "scopegate_jwks_last_success_timestamp_seconds",
        "scopegate_jwks_fetches_total",
        "scopegate_config_reloads_total",
    ] {
        assert!(
            used.contains(panel_metric),
            "the dashboard shows {panel_metric}"
        );
    }

    // Make every family show samples: Checks, an unknown kid (refetch, then suppressed), and a
    // reload.
    let (binary, metrics, _jwks) = after_an_unknown_kid("dashboard").await;
    binary.sighup();
    binary
        .wait_for_log("configuration reloaded", Duration::from_secs(10))
        .await;
    let text = metrics_text(&metrics).await;
    let exposed: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    for name in &used {
        assert!(
            exposed.contains(name.as_str()),
            "{name} is queried but /metrics exposes no such sample:\n{text}"
        );
    }
}

/// What one client can make the metrics listener hold is bounded: at most
/// `METRICS_MAX_CONNECTIONS` connections (a further one is closed at once), each closed when it
/// sends no complete request head within `METRICS_HEADER_TIMEOUT`, and a request head over
/// `METRICS_MAX_REQUEST_HEAD` is refused. Once the idle connections are gone, scrapes work.
#[tokio::test]
async fn the_metrics_listener_bounds_connections_idle_time_and_request_heads() {
    use scopegate::telemetry::metrics::{METRICS_HEADER_TIMEOUT, METRICS_MAX_CONNECTIONS};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let jwks = JwksServer::start(Reply::Stall).await;
    let binary = Binary::start("metrics-limits", &config(&jwks.url(), ""), "info", None).await;
    let addr = binary.metrics_addr().await;
    // A new connection for every scrape, so that each one meets the cap.
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let scrape = || client.get(format!("http://{addr}/metrics")).send();
    assert_eq!(scrape().await.expect("scrape").status(), 200);

    // Fill the listener with connections that never send a request.
    let mut idle = Vec::new();
    for _ in 0..METRICS_MAX_CONNECTIONS {
        idle.push(
            tokio::net::TcpStream::connect(&addr)
                .await
                .expect("connect"),
        );
    }
    // The next one is accepted and closed at once: the scrape fails.
    eventually(
        "a scrape refused at the connection cap",
        Duration::from_secs(5),
        || async { scrape().await.is_err() },
    )
    .await;
    // The idle ones are closed by the server once the header timeout passes (EOF on read).
    for stream in &mut idle {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(METRICS_HEADER_TIMEOUT * 3, stream.read(&mut byte))
            .await
            .expect("the server closes an idle metrics connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    eventually("a scrape served again", Duration::from_secs(5), || async {
        scrape().await.is_ok_and(|r| r.status() == 200)
    })
    .await;

    // A request head of 16 KiB and more is refused and the connection closed, before the
    // header deadline. The witness, opened first and silent, is closed by that deadline: the
    // refused connection must be gone while the witness is still open, so a server that only
    // held the big head until the deadline fails here. A head just under the cap is served.
    use scopegate::telemetry::metrics::METRICS_MAX_REQUEST_HEAD;
    let witness = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = |filler: usize| {
        format!(
            "GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\nx-filler: {}\r\n\r\n",
            "a".repeat(filler)
        )
    };
    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    stream
        .write_all(head(METRICS_MAX_REQUEST_HEAD - 1024).as_bytes())
        .await
        .expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("answered")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:.200}");

    let mut stream = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    // The server may close before it has read everything: a failed write is an answer too.
    let _ = stream
        .write_all(head(METRICS_MAX_REQUEST_HEAD).as_bytes())
        .await;
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(METRICS_HEADER_TIMEOUT * 3, stream.read_to_end(&mut answer))
        .await
        .expect("the server closes a connection whose request head is too large");
    let mut byte = [0u8; 1];
    assert!(
        matches!(witness.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the oversized head was refused only at the header deadline ({closed:?})"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer:.200}"
    );
}

/// The family names a scrape declares (`# TYPE` lines), spelt as the README's metrics table
/// spells them: counters with `_total`, the info metric with `_info`, the others as declared.
fn exposed_families(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .map(|rest| {
            let mut fields = rest.split_whitespace();
            let name = fields.next().expect("a family name");
            match fields.next() {
                Some("counter") => format!("{name}_total"),
                Some("info") => format!("{name}_info"),
                _ => name.to_string(),
            }
        })
        .collect()
}

/// The first column of the README's table under "### Metrics".
fn readme_metrics_table() -> std::collections::BTreeSet<String> {
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .expect("README");
    let section = readme
        .split("\n### Metrics\n")
        .nth(1)
        .expect("a Metrics section")
        .split("\n#")
        .next()
        .unwrap_or_default();
    section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(str::to_string)
        .collect()
}

/// A shadow rule, for `config`'s `extra`.
const SHADOW_RULE: &str =
    "[[rules]]\nname = \"trial\"\npath = \"/trial\"\nscopes = [\"t\"]\nshadow = true\n";

/// The README's metrics table lists exactly the families a running server declares, both
/// ways, so that neither can change without the other. A family is declared once it has a
/// series (the encoder leaves empty ones out), so the server has loaded keys, has a shadow
/// rule, introspects (its introspection series exported at zero) and has answered a Check.
#[tokio::test]
async fn the_readme_metrics_table_lists_exactly_the_exposed_families() {
    let key = TestKey::generate("table-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let secrets = tempfile::tempdir().expect("dir");
    let secret = secrets.path().join("secret");
    std::fs::write(&secret, "table-secret").expect("write");
    let introspecting = format!(
        "introspection = \"opaque\"\nintrospection_endpoint = \"{}\"\n\
         client_id = \"scopegate\"\nclient_secret_file = \"{}\"\n",
        jwks.url_of("/introspect"),
        secret.display()
    );
    let binary = Binary::start(
        "metrics-table",
        &config(&jwks.url(), &format!("{introspecting}{SHADOW_RULE}")),
        "info",
        None,
    )
    .await;
    binary.keys_loaded().await;
    binary
        .client()
        .await
        .check(request("GET", "/public", &[]))
        .await
        .expect("in-band answer");
    let text = metrics_text(&binary.metrics_addr().await).await;
    let exposed = exposed_families(&text);
    let documented = readme_metrics_table();
    let undocumented: Vec<_> = exposed.difference(&documented).collect();
    let missing: Vec<_> = documented.difference(&exposed).collect();
    assert!(
        undocumented.is_empty() && missing.is_empty(),
        "exposed but not in the README's metrics table: {undocumented:?}; \
         in the table but not exposed: {missing:?}"
    );
}

/// Whether the scrape has a sample named `metric` with exactly `labels`, whatever its value.
fn has_series(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> bool {
    scrape.samples.iter().any(|s| {
        s.metric == metric
            && s.labels.len() == labels.len()
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|l| l == *v))
    })
}

/// Before any reload, fetch failure or shadow decision, the counters whose label values are
/// known are there at zero, so that `increase()` sees their first event; the checks counter,
/// whose rule and reason are not known in advance together, is not.
#[tokio::test]
async fn counters_with_known_label_values_are_exported_at_zero_from_the_start() {
    let key = TestKey::generate("zero-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start(
        "metrics-zero",
        &config(&jwks.url(), SHADOW_RULE),
        "info",
        None,
    )
    .await;
    binary.keys_loaded().await;
    let scrape = scrape(&binary.metrics_addr().await).await;
    let zero = |metric: &str, labels: &[(&str, &str)]| {
        assert!(
            has_series(&scrape, metric, labels),
            "{metric} {labels:?} is exported"
        );
        assert_eq!(sample(&scrape, metric, labels), 0.0, "{metric} {labels:?}");
    };
    for result in ["success", "failure"] {
        zero("scopegate_config_reloads_total", &[("result", result)]);
    }
    for trigger in ["startup", "scheduled", "retry", "unknown_kid", "stale"] {
        for result in [
            "network_error",
            "http_error",
            "too_large",
            "invalid",
            "discovery_error",
            "internal_error",
        ] {
            zero(
                "scopegate_jwks_fetches_total",
                &[("issuer", ISSUER), ("trigger", trigger), ("result", result)],
            );
        }
    }
    zero(
        "scopegate_jwks_refetch_suppressed_total",
        &[("issuer", ISSUER)],
    );
    for decision in ["allow", "deny"] {
        zero(
            "scopegate_shadow_decisions_total",
            &[("rule", "trial"), ("decision", decision)],
        );
        for transport in ["grpc", "http"] {
            zero(
                "scopegate_check_duration_seconds",
                &[("transport", transport), ("decision", decision)],
            );
        }
    }
    for result in ["hit", "miss"] {
        zero(
            "scopegate_token_cache_requests_total",
            &[("result", result)],
        );
    }
    zero("scopegate_connections", &[]);
    // The one startup fetch that happened is counted, beside its zeros.
    assert_eq!(
        sample(
            &scrape,
            "scopegate_jwks_fetches_total",
            &[
                ("issuer", ISSUER),
                ("trigger", "startup"),
                ("result", "success")
            ]
        ),
        1.0
    );
    assert!(
        !scrape
            .samples
            .iter()
            .any(|s| s.metric == "scopegate_checks_total"),
        "no Check yet, no checks series"
    );
}

/// `scopegate_connections` follows the connections open on the gRPC listener: it counts each
/// client's connection while it is open, not the health-only listener's, and falls back once
/// they close.
#[tokio::test]
async fn the_connection_gauge_follows_open_grpc_connections() {
    let jwks = JwksServer::start(Reply::Stall).await;
    let binary = Binary::start(
        "metrics-connections",
        &config(&jwks.url(), "health_listen = \"127.0.0.1:0\""),
        "info",
        None,
    )
    .await;
    let metrics = binary.metrics_addr().await;
    let health = binary
        .wait_for_log("health (plaintext", Duration::from_secs(20))
        .await;
    let health = crate::common::binary::listen_address(&health).expect("health address");
    let open = || async { sample(&scrape(&metrics).await, "scopegate_connections", &[]) };
    assert_eq!(open().await, 0.0);
    let first = binary.client().await;
    let second = binary.client().await;
    let _probe = tonic::transport::Channel::from_shared(format!("http://{health}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the health listener");
    eventually("two open connections", Duration::from_secs(10), || async {
        open().await == 2.0
    })
    .await;
    drop((first, second));
    eventually("no open connection", Duration::from_secs(10), || async {
        open().await == 0.0
    })
    .await;
}
