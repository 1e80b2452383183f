//! The HTTP authorization listener (`http_listen`) of the real binary, over real sockets:
//! reqwest for what a proxy sends, a raw `TcpStream` for what no ordinary client sends. Each
//! dialect (`/envoy/`, `/forward-auth`, `/nginx-auth`) allows with identity headers and denies
//! with the real answer; unreadable forwarded values are 400, counted and logged; other paths
//! are 404; bodies past the bound are 413; each `[http_server]` limit holds.

use serde_json::Value;

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
