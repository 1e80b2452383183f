//! The HTTP authorization listener (`http_listen`) of the real binary, over real sockets:
//! reqwest for what a proxy sends, a raw `TcpStream` for what no ordinary client sends. Each
//! dialect (`/envoy/`, `/forward-auth`, `/nginx-auth`) allows with identity headers and denies
//! with the real answer; unreadable forwarded values are 400, counted and logged; other paths
//! are 404; bodies past the bound are 413; each `[http_server]` limit holds.

use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::binary::Binary;
use crate::common::*;
use crate::observability::{sample, scrape};

/// A configuration with the gRPC, metrics and HTTP listeners on ports the OS picks, one
/// protected and one public route, and `extra` (before the rules).
fn config(jwks_uri: &str, extra: &str) -> String {
    format!(
        "listen = \"127.0.0.1:0\"\nmetrics_listen = \"127.0.0.1:0\"\nhttp_listen = \"127.0.0.1:0\"\n\
         issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{jwks_uri}\"\n\
         decision_log = \"all\"\n{extra}\n\
         [[rules]]\nname = \"messages read\"\npath = \"/restricted_resource\"\nscopes = [\"read:messages\"]\n\
         [[rules]]\npath = \"/public\"\npublic = true\n"
    )
}

/// The binary with its HTTP listener, keys loaded (when `jwks` serves them), and its HTTP and
/// metrics addresses.
struct Gate {
    binary: Binary,
    http: String,
    metrics: String,
    client: reqwest::Client,
}

impl Gate {
    async fn start(name: &str, config: &str, keys: bool) -> Gate {
        let binary = Binary::start(name, config, "info", None).await;
        if keys {
            binary.keys_loaded().await;
        }
        let http = binary.http_addr().await;
        let metrics = binary.metrics_addr().await;
        let client = reqwest::Client::builder()
            .no_proxy()
            .build()
            .expect("client");
        Gate {
            binary,
            http,
            metrics,
            client,
        }
    }

    /// `method target` with `headers`, as a proxy would send it.
    async fn send(&self, method: &str, target: &str, headers: &[(&str, &[u8])]) -> HttpReply {
        let mut request = self.client.request(
            method.parse().expect("method"),
            format!("http://{}{target}", self.http),
        );
        for (name, value) in headers {
            request = request.header(
                *name,
                reqwest::header::HeaderValue::from_bytes(value).expect("value"),
            );
        }
        HttpReply::of(request.send().await.expect("an answer")).await
    }

    /// Asks about `method path` (with `authorization`, if any) in `dialect`, as its proxy
    /// would.
    async fn ask(
        &self,
        dialect: &str,
        method: &str,
        path: &str,
        authorization: Option<&str>,
    ) -> HttpReply {
        let mut headers: Vec<(&str, &[u8])> = Vec::new();
        if let Some(authorization) = authorization {
            headers.push(("authorization", authorization.as_bytes()));
        }
        match dialect {
            "envoy" => {
                headers.push(("host", b"app.example"));
                self.send(method, &format!("/envoy{path}"), &headers).await
            }
            "forward-auth" => {
                headers.push(("x-forwarded-method", method.as_bytes()));
                headers.push(("x-forwarded-uri", path.as_bytes()));
                headers.push(("x-forwarded-host", b"app.example"));
                headers.push(("x-forwarded-proto", b"https"));
                self.send("GET", "/forward-auth", &headers).await
            }
            "nginx" => {
                headers.push(("x-original-method", method.as_bytes()));
                headers.push(("x-original-uri", path.as_bytes()));
                headers.push(("host", b"app.example"));
                self.send("GET", "/nginx-auth", &headers).await
            }
            other => panic!("no dialect {other}"),
        }
    }
}

/// An answer: status, headers by lower-case name, body.
#[derive(Debug)]
struct HttpReply {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl HttpReply {
    async fn of(response: reqwest::Response) -> HttpReply {
        HttpReply {
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().expect("text"))
    }

    /// The real status and `error` of a denial, however the dialect carries them: for nginx
    /// the status in `x-scopegate-status`, the body in `x-scopegate-body` too (checked equal).
    fn denial(&self, dialect: &str) -> (u16, String) {
        let body: Value = serde_json::from_str(&self.body).expect("a JSON body");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        if dialect != "nginx" {
            return (
                self.status,
                body["error"].as_str().expect("error").to_owned(),
            );
        }
        let real: u16 = self
            .header("x-scopegate-status")
            .expect("x-scopegate-status")
            .parse()
            .expect("a status");
        let wire = if real == 401 { 401 } else { 403 };
        assert_eq!(self.status, wire, "nginx gets only 401 or 403: {self:?}");
        let carried: Value =
            serde_json::from_str(self.header("x-scopegate-body").expect("x-scopegate-body"))
                .expect("x-scopegate-body is JSON once un-escaped");
        assert_eq!(carried, body, "the header carries the body");
        (real, body["error"].as_str().expect("error").to_owned())
    }
}

const DIALECTS: [&str; 3] = ["envoy", "forward-auth", "nginx"];

#[tokio::test]
async fn each_dialect_allows_with_identity_headers_and_denies_with_the_real_answer() {
    let key = TestKey::generate("http-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Gate::start("http-dialects", &config(&jwks.url(), ""), true).await;
    let good = bearer(&key.mint(&claims("read:messages")));
    let weak = bearer(&key.mint(&claims("openid")));
    let forged = bearer(&TestKey::generate("http-kid").mint(&claims("read:messages")));
    for dialect in DIALECTS {
        let allowed = gate
            .ask(dialect, "GET", "/restricted_resource?x=1", Some(&good))
            .await;
        assert_eq!(allowed.status, 200, "{dialect}: {allowed:?}");
        assert_eq!(
            allowed.header("x-auth-subject"),
            Some("auth0|user-1"),
            "{dialect}"
        );
        assert_eq!(
            allowed.header("x-auth-scopes"),
            Some("read:messages"),
            "{dialect}"
        );
        assert_eq!(allowed.body, "", "{dialect}");

        let public = gate.ask(dialect, "GET", "/public", None).await;
        assert_eq!(public.status, 200, "{dialect}: {public:?}");
        assert_eq!(public.header("x-auth-subject"), None, "{dialect}");
        // Envoy removes the client's copies of the identity headers on an anonymous allow.
        let removed = public.header("x-envoy-auth-headers-to-remove");
        if dialect == "envoy" {
            assert_eq!(removed, Some("x-auth-subject,x-auth-scopes"));
        } else {
            assert_eq!(removed, None, "{dialect}");
        }

        for (what, method, path, authorization, want) in [
            (
                "no token",
                "GET",
                "/restricted_resource",
                None,
                (401, "unauthorized"),
            ),
            (
                "bad token",
                "GET",
                "/restricted_resource",
                Some(forged.as_str()),
                (401, "invalid_token"),
            ),
            (
                "missing scope",
                "GET",
                "/restricted_resource",
                Some(weak.as_str()),
                (403, "insufficient_scope"),
            ),
            (
                "refused reading",
                "GET",
                "/public/..%2frestricted_resource",
                None,
                (400, "invalid_request"),
            ),
            (
                "malformed credentials",
                "GET",
                "/restricted_resource",
                Some("Bearer a b"),
                (400, "invalid_request"),
            ),
        ] {
            let denied = gate.ask(dialect, method, path, authorization).await;
            let (status, error) = denied.denial(dialect);
            assert_eq!(
                (status, error.as_str()),
                want,
                "{dialect}, {what}: {denied:?}"
            );
            if status == 401 || status == 403 {
                let challenge = denied.header("www-authenticate").expect("a challenge");
                assert!(
                    challenge.starts_with("Bearer realm="),
                    "{dialect}, {what}: {challenge}"
                );
            }
            assert_eq!(denied.header("x-auth-subject"), None, "{dialect}, {what}");
        }
    }
    let scrape = scrape(&gate.metrics).await;
    for (reason, count) in [("authorized", 3.0), ("public", 3.0), ("missing_token", 3.0)] {
        assert_eq!(
            sample(
                &scrape,
                "scopegate_checks_total",
                &[("transport", "http"), ("reason", reason)]
            ),
            count,
            "{reason}"
        );
    }
    assert_eq!(
        sample(
            &scrape,
            "scopegate_checks_total",
            &[("transport", "grpc"), ("reason", "authorized")]
        ),
        0.0
    );
    assert!(gate.binary.log_text().contains("transport=http"));
}

#[tokio::test]
async fn no_keys_is_503_in_every_dialect_with_retry_after() {
    // Nothing listens on port 9: the key set never loads.
    let gate = Gate::start(
        "http-no-keys",
        &config("http://127.0.0.1:9/keys", ""),
        false,
    )
    .await;
    let token = bearer(&TestKey::generate("k").mint(&claims("read:messages")));
    for dialect in DIALECTS {
        let denied = gate
            .ask(dialect, "GET", "/restricted_resource", Some(&token))
            .await;
        let (status, error) = denied.denial(dialect);
        assert_eq!(
            (status, error.as_str()),
            (503, "temporarily_unavailable"),
            "{dialect}: {denied:?}"
        );
        assert_eq!(denied.header("retry-after"), Some("5"), "{dialect}");
        // A public route needs no keys.
        let public = gate.ask(dialect, "GET", "/public", None).await;
        assert_eq!(public.status, 200, "{dialect}: {public:?}");
    }
}

#[tokio::test]
async fn unreadable_forwarded_values_are_400_counted_and_logged() {
    let key = TestKey::generate("http-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Gate::start("http-unreadable", &config(&jwks.url(), ""), true).await;
    let token = bearer(&key.mint(&claims("read:messages")));
    let auth: (&str, &[u8]) = ("authorization", token.as_bytes());
    // (what, target, headers)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, &'a [u8])>);
    let cases: Vec<Case> = vec![
        (
            "no method",
            "/forward-auth",
            vec![auth, ("x-forwarded-uri", b"/restricted_resource")],
        ),
        (
            "no uri",
            "/forward-auth",
            vec![auth, ("x-forwarded-method", b"GET")],
        ),
        (
            "two methods",
            "/forward-auth",
            vec![
                auth,
                ("x-forwarded-method", b"GET"),
                ("x-forwarded-method", b"DELETE"),
                ("x-forwarded-uri", b"/restricted_resource"),
            ],
        ),
        (
            "two uris",
            "/forward-auth",
            vec![
                auth,
                ("x-forwarded-method", b"GET"),
                ("x-forwarded-uri", b"/public"),
                ("x-forwarded-uri", b"/restricted_resource"),
            ],
        ),
        (
            "schemeful uri",
            "/forward-auth",
            vec![
                auth,
                ("x-forwarded-method", b"GET"),
                ("x-forwarded-uri", b"http://app.example/public"),
            ],
        ),
        (
            "uri not UTF-8",
            "/forward-auth",
            vec![
                auth,
                ("x-forwarded-method", b"GET"),
                ("x-forwarded-uri", b"/public/\xff"),
            ],
        ),
        (
            "star",
            "/forward-auth",
            vec![
                auth,
                ("x-forwarded-method", b"OPTIONS"),
                ("x-forwarded-uri", b"*"),
            ],
        ),
        (
            "nginx, no uri",
            "/nginx-auth",
            vec![auth, ("x-original-method", b"GET")],
        ),
        (
            "nginx, two methods",
            "/nginx-auth",
            vec![
                auth,
                ("x-original-method", b"GET"),
                ("x-original-method", b"POST"),
                ("x-original-uri", b"/public"),
            ],
        ),
        (
            "nginx, absolute uri",
            "/nginx-auth",
            vec![
                auth,
                ("x-original-method", b"GET"),
                ("x-original-uri", b"https://app.example/public"),
            ],
        ),
    ];
    for (what, target, headers) in &cases {
        let denied = gate.send("GET", target, headers).await;
        let dialect = if target.starts_with("/nginx") {
            "nginx"
        } else {
            "forward-auth"
        };
        let (status, error) = denied.denial(dialect);
        assert_eq!(
            (status, error.as_str()),
            (400, "invalid_request"),
            "{what}: {denied:?}"
        );
        assert_eq!(denied.header("x-auth-subject"), None, "{what}");
        let challenge = denied.header("www-authenticate").expect("a challenge");
        assert!(
            challenge.contains("error=\"invalid_request\""),
            "{what}: {challenge}"
        );
    }
    let scrape = scrape(&gate.metrics).await;
    assert_eq!(
        sample(
            &scrape,
            "scopegate_checks_total",
            &[
                ("transport", "http"),
                ("reason", "invalid_request"),
                ("rule", "none")
            ]
        ),
        cases.len() as f64
    );
    let log = gate.binary.log_text();
    let refused = log
        .lines()
        .filter(|l| l.contains("reason=invalid_request") && l.contains("transport=http"))
        .count();
    assert_eq!(refused, cases.len(), "{log}");
    assert!(!log.contains(&token), "the token is never logged");
}

#[tokio::test]
async fn other_paths_are_404_and_never_decided() {
    let key = TestKey::generate("http-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Gate::start("http-not-found", &config(&jwks.url(), ""), true).await;
    let token = bearer(&key.mint(&claims("read:messages")));
    for target in [
        "/",
        "/envoy",
        "/envoy?x=/public",
        "/envoyX/public",
        "/forward-auth/x",
        "/nginx-auth/x",
        "/public",
    ] {
        let answer = gate
            .send(
                "GET",
                target,
                &[
                    ("authorization", token.as_bytes()),
                    ("x-forwarded-method", b"GET"),
                    ("x-forwarded-uri", b"/public"),
                ],
            )
            .await;
        assert_eq!(answer.status, 404, "{target}: {answer:?}");
        let body: Value = serde_json::from_str(&answer.body).expect("JSON");
        assert_eq!(body["error"], "not_found", "{target}");
        assert_eq!(answer.header("x-auth-subject"), None, "{target}");
    }
    let scrape = scrape(&gate.metrics).await;
    for decision in ["allow", "deny"] {
        assert_eq!(
            sample(
                &scrape,
                "scopegate_checks_total",
                &[
                    ("transport", "http"),
                    ("decision", decision),
                    ("rule", "rules[1]")
                ]
            ),
            0.0,
            "nothing decided"
        );
    }
}

/// Sends `bytes` on a new connection and reads until the server closes it.
async fn raw(addr: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    read_until_closed(&mut stream).await
}

/// Everything the server sends until it closes the connection (a reset counts as closed).
async fn read_until_closed(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One request on `stream`, kept alive, and its whole answer (by `content-length`).
async fn exchange(stream: &mut TcpStream, request: &str) -> String {
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.expect("read");
        assert!(
            n > 0,
            "closed before answering: {}",
            String::from_utf8_lossy(&out)
        );
        out.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&out);
        if let Some(end) = text.find("\r\n\r\n") {
            let length: usize = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_owned)
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if out.len() >= end + 4 + length {
                return text.into_owned();
            }
        }
    }
}

#[tokio::test]
async fn bodies_past_the_bound_are_413_and_close_the_connection() {
    let gate = Gate::start("http-bodies", &config("http://127.0.0.1:9/keys", ""), false).await;
    let asked = "x-forwarded-method: GET\r\nx-forwarded-uri: /public\r\n";
    // A small body is read and dropped: the request is decided, the connection kept.
    let mut stream = TcpStream::connect(&gate.http).await.expect("connect");
    let small = exchange(
        &mut stream,
        &format!("POST /forward-auth HTTP/1.1\r\nhost: g\r\n{asked}content-length: 5\r\n\r\nhello"),
    )
    .await;
    assert!(small.starts_with("HTTP/1.1 200"), "{small}");
    let again = exchange(
        &mut stream,
        &format!("GET /forward-auth HTTP/1.1\r\nhost: g\r\n{asked}\r\n"),
    )
    .await;
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");

    // Declared too large: answered at once, nothing more read, the connection closed.
    let declared = raw(
        &gate.http,
        format!("POST /forward-auth HTTP/1.1\r\nhost: g\r\n{asked}content-length: 100000\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert!(declared.starts_with("HTTP/1.1 413"), "{declared}");
    // Chunked, going over the bound: 413 once it does, the rest never read.
    let chunk = "a".repeat(5000);
    let chunked = raw(
        &gate.http,
        format!(
            "POST /forward-auth HTTP/1.1\r\nhost: g\r\n{asked}transfer-encoding: chunked\r\n\r\n\
             {:x}\r\n{chunk}\r\n",
            chunk.len()
        )
        .as_bytes(),
    )
    .await;
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
}

#[tokio::test]
async fn absolute_form_targets_are_400() {
    let gate = Gate::start(
        "http-absolute-form",
        &config("http://127.0.0.1:9/keys", ""),
        false,
    )
    .await;
    for target in [
        "http://app.example/envoy/public",
        "http://app.example/forward-auth",
    ] {
        let answer = raw(
            &gate.http,
            format!(
                "GET {target} HTTP/1.1\r\nhost: app.example\r\nx-forwarded-method: GET\r\n\
                 x-forwarded-uri: /public\r\nconnection: close\r\n\r\n"
            )
            .as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{target}: {answer}");
        assert!(answer.contains("invalid_request"), "{target}: {answer}");
    }
}

#[tokio::test]
async fn connections_past_the_cap_are_closed_at_once() {
    let gate = Gate::start(
        "http-cap",
        &config(
            "http://127.0.0.1:9/keys",
            "[http_server]\nmax_connections = 1",
        ),
        false,
    )
    .await;
    let ask = "GET /envoy/public HTTP/1.1\r\nhost: app.example\r\n\r\n";
    let mut first = TcpStream::connect(&gate.http).await.expect("connect");
    assert!(exchange(&mut first, ask).await.starts_with("HTTP/1.1 200"));
    // The second is accepted by the kernel and closed by scopegate, unanswered.
    let second = raw(&gate.http, ask.as_bytes()).await;
    assert_eq!(second, "", "closed without an answer");
    // The first keeps its place.
    assert!(exchange(&mut first, ask).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn heads_are_bounded_in_size_and_time_and_idle_connections_close() {
    let gate = Gate::start(
        "http-heads",
        &config(
            "http://127.0.0.1:9/keys",
            "[http_server]\nmax_header_bytes = 1024\nheader_timeout_seconds = 1\n\
             idle_timeout_seconds = 5",
        ),
        false,
    )
    .await;
    // A head past max_header_bytes: 431, then closed; one under it is answered.
    let big = raw(
        &gate.http,
        format!(
            "GET /envoy/public HTTP/1.1\r\nhost: a\r\nx-filler: {}\r\n\r\n",
            "f".repeat(1100)
        )
        .as_bytes(),
    )
    .await;
    assert!(big.starts_with("HTTP/1.1 431"), "{big}");
    let fits = raw(
        &gate.http,
        format!(
            "GET /envoy/public HTTP/1.1\r\nhost: a\r\nconnection: close\r\nx-filler: {}\r\n\r\n",
            "f".repeat(700)
        )
        .as_bytes(),
    )
    .await;
    assert!(fits.starts_with("HTTP/1.1 200"), "{fits}");

    // A head that never ends: closed, unanswered, once header_timeout_seconds pass.
    let slow = raw(&gate.http, b"GET /envoy/public HTTP/1.1\r\nhost: a\r\n").await;
    assert_eq!(slow, "", "closed without an answer");

    // Between requests a kept-alive connection waits idle_timeout_seconds, not the head
    // deadline: a second request 2.5 s after the first answer (past the 1 s head deadline) is
    // still answered on the same connection.
    let ask = "GET /envoy/public HTTP/1.1\r\nhost: app.example\r\n\r\n";
    let mut kept = TcpStream::connect(&gate.http).await.expect("connect");
    assert!(exchange(&mut kept, ask).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert!(exchange(&mut kept, ask).await.starts_with("HTTP/1.1 200"));
    // Then, with nothing more sent, it is closed after the idle timeout.
    assert_eq!(
        read_until_closed(&mut kept).await,
        "",
        "closed without a word"
    );
}
