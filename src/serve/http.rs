//! The HTTP authorization listener (`http_listen`): a thin adapter around [`crate::decide`] for
//! proxies that ask an HTTP server whether to let a request through (nginx `auth_request`, Caddy
//! `forward_auth`, Traefik `ForwardAuth`, Envoy's `http_service`).
//!
//! Each request is read by [`request_view`] into a [`decide::Request`] view of the *original*
//! request the proxy asks about, decided, counted and logged by [`decide::check`], and its
//! [`Verdict`] mapped to the dialect's wire form by [`response`]. The dialect is chosen by the
//! path the proxy is configured to call, never guessed from headers a client could send:
//!
//! | path | original request read from | allow | deny |
//! |---|---|---|---|
//! | `/envoy/<path>` | the request itself: its method, its target without `/envoy`, `Host`, `X-Forwarded-Proto` | 200, identity headers, `x-envoy-auth-headers-to-remove` listing the headers to remove, the metadata in `x-scopegate-meta-*` headers ([`metadata_headers`]) | the real status (400, 401, 403, 503), JSON body, `WWW-Authenticate`, `Retry-After` |
//! | `/forward-auth` (query ignored) | `X-Forwarded-Method`, `-Uri` (both required), `-Proto`, `-Host` | 200, identity headers | as `/envoy/` |
//! | `/nginx-auth` | `X-Original-Method`, `X-Original-URI` (both required), `Host`, `X-Forwarded-Proto` | 200, identity headers | 401 when the real status is 401, else 403; the real status in `X-Scopegate-Status`, the JSON body in `X-Scopegate-Body` (non-ASCII escaped), `WWW-Authenticate`, `Retry-After`, and the body |
//! | anything else | — | never | 404 `not_found`, not decided |
//!
//! A forwarded method or URI that is missing, repeated, not UTF-8, or (the URI) not a path
//! starting with `/` — an absolute-form or schemeful URI, `*`, empty — is refused 400
//! `invalid_request`, as is an absolute-form request target; those refusals go through
//! [`decide::refuse_unreadable`], so they are counted and logged like every other denial.
//! Every header of the request goes into the view, bytes kept, so `Authorization`, method
//! overrides and `content-type` reach the core as the proxy sent them; the original path goes
//! through the same canonicalisation, readings and refusals as a gRPC Check's.
//!
//! Request bodies are never decided on: one declared or found larger than [`MAX_BODY_BYTES`] is
//! answered 413 and the connection closed, without reading further; a smaller one is read and
//! dropped (so the connection can carry the next request), and one not whole within the head
//! deadline (`header_timeout_seconds`) after its head is answered 408 and the connection closed.
//!
//! Trust: whoever reaches this listener can claim any original request, so `http_listen` must be
//! reachable only by the proxy.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use tokio::net::TcpListener;

use crate::config::HttpServerLimits;
use crate::decide::{self, Generation, Verdict};
use crate::net::http1;
use crate::telemetry::metrics::{Metrics, Transport};

/// Largest request body read (and dropped) from an authorization request, in bytes; a larger
/// one is answered 413 and its connection closed. Proxies send none.
pub const MAX_BODY_BYTES: usize = 4 * 1024;

/// The header an `/nginx-auth` denial carries its real status in.
pub const STATUS_HEADER: &str = "x-scopegate-status";
/// The header an `/nginx-auth` denial carries its JSON body in (non-ASCII escaped as `\uXXXX`).
pub const BODY_HEADER: &str = "x-scopegate-body";
/// The header an `/envoy/` allow lists the headers to remove upstream in (comma-separated), for
/// Envoy's `x-envoy-auth-headers-to-remove`.
pub const ENVOY_REMOVE_HEADER: &str = "x-envoy-auth-headers-to-remove";

/// The prefix of the `/envoy/` allow's headers that carry its metadata
/// ([`metadata_headers`]); `x-scopegate-` is never a forwarded claim's header.
pub const METADATA_HEADER_PREFIX: &str = "x-scopegate-meta-";

/// Which proxy's protocol a request speaks, by the path it was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/envoy/<path>`: Envoy's `http_service` with `path_prefix: /envoy`.
    Envoy,
    /// `/forward-auth`: Caddy's `forward_auth`, Traefik's `ForwardAuth`.
    ForwardAuth,
    /// `/nginx-auth`: nginx `auth_request`.
    Nginx,
}

/// Why a request to the listener is not decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unread {
    /// No dialect's path: 404, never decided.
    NotFound,
    /// The original request cannot be read (the message says why): 400 `invalid_request`,
    /// counted and logged by the core. The dialect, when the path named one.
    Unreadable(Option<Dialect>, &'static str),
}

/// The dialect of `request` and the view of the original request it asks about: a pure
/// function of the request's method, target and headers (the body is never read).
pub fn request_view<B>(
    request: &http::Request<B>,
) -> Result<(Dialect, decide::Request<'_>), Unread> {
    let uri = request.uri();
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(Unread::Unreadable(
            None,
            "the request target is in absolute form; expected a path",
        ));
    }
    let target = uri.path_and_query().map_or("", |pq| pq.as_str());
    let headers = request.headers();
    let host = |name: &str| single(headers, name).map(Option::unwrap_or_default);
    let (dialect, method, path, host, scheme) = if let Some(path) = target.strip_prefix("/envoy")
        && path.starts_with('/')
    {
        let unreadable = |why| Unread::Unreadable(Some(Dialect::Envoy), why);
        (
            Dialect::Envoy,
            request.method().as_str(),
            path,
            host("host").map_err(|_| unreadable(SEVERAL_HOSTS))?,
            host("x-forwarded-proto").map_err(|_| unreadable(BAD_PROTO))?,
        )
    } else if uri.path() == "/forward-auth" {
        let unreadable = |why| Unread::Unreadable(Some(Dialect::ForwardAuth), why);
        let method = single(headers, "x-forwarded-method")
            .ok()
            .flatten()
            .filter(|m| !m.is_empty())
            .ok_or(unreadable(
                "X-Forwarded-Method must be present once, as text",
            ))?;
        let path = single(headers, "x-forwarded-uri")
            .ok()
            .flatten()
            .ok_or(unreadable("X-Forwarded-Uri must be present once, as text"))?;
        (
            Dialect::ForwardAuth,
            method,
            origin_form(path).ok_or(unreadable(NOT_A_PATH))?,
            host("x-forwarded-host").map_err(|_| unreadable(SEVERAL_HOSTS))?,
            host("x-forwarded-proto").map_err(|_| unreadable(BAD_PROTO))?,
        )
    } else if uri.path() == "/nginx-auth" {
        let unreadable = |why| Unread::Unreadable(Some(Dialect::Nginx), why);
        let method = single(headers, "x-original-method")
            .ok()
            .flatten()
            .filter(|m| !m.is_empty())
            .ok_or(unreadable(
                "X-Original-Method must be present once, as text",
            ))?;
        let path = single(headers, "x-original-uri")
            .ok()
            .flatten()
            .ok_or(unreadable("X-Original-URI must be present once, as text"))?;
        (
            Dialect::Nginx,
            method,
            origin_form(path).ok_or(unreadable(NOT_A_PATH))?,
            host("host").map_err(|_| unreadable(SEVERAL_HOSTS))?,
            host("x-forwarded-proto").map_err(|_| unreadable(BAD_PROTO))?,
        )
    } else {
        return Err(Unread::NotFound);
    };
    let mut view = decide::Request::new(method, path)
        .with_host(host)
        .with_scheme(scheme);
    for (name, value) in headers {
        view.push_header_bytes(name.as_str(), value.as_bytes());
    }
    Ok((dialect, view))
}

const SEVERAL_HOSTS: &str = "the original host must be given once, as text";
const BAD_PROTO: &str = "X-Forwarded-Proto must be given at most once, as text";
const NOT_A_PATH: &str = "the original request URI must be a path starting with /";

/// The one value of header `name` as text: `Ok(None)` when absent, `Err` when repeated or not
/// UTF-8.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, ()> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(());
    }
    std::str::from_utf8(value.as_bytes())
        .map(Some)
        .map_err(|_| ())
}

/// `uri` when it is origin-form (a path starting with `/`, with its query); an absolute-form or
/// schemeful URI, `*` or an empty one is not, and is never read as a path. `//host/x`
/// starts with `/` and is left to the path readings (an empty segment, refused).
fn origin_form(uri: &str) -> Option<&str> {
    uri.starts_with('/').then_some(uri)
}

/// The answer for `verdict` in `dialect`'s wire form (the table in this module's
/// documentation). Pure.
pub fn response(dialect: Dialect, verdict: &Verdict<'_>) -> http::Response<Full<Bytes>> {
    match verdict {
        Verdict::Allow {
            set,
            remove,
            metadata,
            remove_query,
        } => {
            // No dialect can make its proxy remove a query parameter, and the configuration
            // refuses query token sources beside http_listen; were one to reach here, the
            // token would go upstream, so the answer fails closed.
            if !remove_query.is_empty() {
                return fail_closed();
            }
            let mut answer = http::Response::new(Full::default());
            for (name, value) in set {
                // `verify` keeps control characters out of every identity value, so each is
                // a header value (non-ASCII as obs-text); were one not, the answer fails
                // closed rather than allow without it.
                let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.as_bytes()),
                    HeaderValue::from_bytes(value.as_bytes()),
                ) else {
                    return fail_closed();
                };
                answer.headers_mut().insert(name, value);
            }
            if dialect == Dialect::Envoy && !remove.is_empty() {
                let Ok(list) = HeaderValue::from_str(&remove.join(",")) else {
                    return fail_closed();
                };
                answer
                    .headers_mut()
                    .insert(HeaderName::from_static(ENVOY_REMOVE_HEADER), list);
            }
            if dialect == Dialect::Envoy {
                for (name, value) in metadata_headers(metadata) {
                    // A value no header can carry (a control character in a claim) fails
                    // closed, as an identity header does: never an allow without it.
                    let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) else {
                        return fail_closed();
                    };
                    answer.headers_mut().insert(name, value);
                }
            }
            answer
        }
        Verdict::Deny(denied) => {
            let status = match dialect {
                // nginx takes only 401 and 403 from the subrequest; the real status travels
                // in a header for the shipped configuration's error pages.
                Dialect::Nginx if denied.status == 401 => StatusCode::UNAUTHORIZED,
                Dialect::Nginx => StatusCode::FORBIDDEN,
                _ => StatusCode::from_u16(denied.status).unwrap_or(StatusCode::FORBIDDEN),
            };
            let mut answer = http::Response::new(Full::new(Bytes::from(denied.body.clone())));
            *answer.status_mut() = status;
            let headers = answer.headers_mut();
            for (name, value) in &denied.headers {
                // Challenges are quoted with control characters replaced (`decide`), so
                // every one is a header value.
                if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
                    headers.insert(*name, value);
                }
            }
            if dialect == Dialect::Nginx {
                headers.insert(STATUS_HEADER, HeaderValue::from(denied.status));
                if let Ok(body) = HeaderValue::from_str(&ascii_json(&denied.body)) {
                    headers.insert(BODY_HEADER, body);
                }
            }
            answer
        }
    }
}

/// The answer headers of an `/envoy/` allow that carry its metadata, for Envoy's
/// `dynamic_metadata_from_headers` (which makes each matched header a metadata entry named as
/// the header, with its value as a string): `x-scopegate-meta-<key>` for each key that is a
/// header name as written (a lower-case RFC 9110 token; Envoy lower-cases names, so a key with
/// upper-case letters or a JSON Pointer's `/` has no header), with strings as they are and
/// every other value (the `scopes` list, numbers, objects) as compact JSON text.
pub fn metadata_headers(metadata: &decide::Metadata) -> Vec<(HeaderName, String)> {
    metadata
        .iter()
        .filter_map(|(key, value)| {
            let name = format!("{METADATA_HEADER_PREFIX}{key}");
            let lower_case = !key.bytes().any(|b| b.is_ascii_uppercase());
            let name = HeaderName::from_bytes(name.as_bytes())
                .ok()
                .filter(|_| lower_case && !key.is_empty())?;
            let text = match value {
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            Some((name, text))
        })
        .collect()
}

/// `json` with every non-ASCII character written as a `\uXXXX` escape (UTF-16, so characters
/// beyond the BMP become surrogate pairs): the same JSON value, and a valid header value
/// (control characters are already escaped by the serializer).
pub fn ascii_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

/// A JSON answer of the listener's own (not a decision): `status`, `{"error","message"}`.
fn own_answer(status: StatusCode, error: &str, message: &str) -> http::Response<Full<Bytes>> {
    let body = serde_json::json!({ "error": error, "message": message }).to_string();
    let mut answer = http::Response::new(Full::new(Bytes::from(body)));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    answer
}

/// A 500 for an allow whose identity headers cannot be written: never a 2xx without them.
fn fail_closed() -> http::Response<Full<Bytes>> {
    own_answer(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "identity headers cannot be written",
    )
}

/// The 413 for a body past [`MAX_BODY_BYTES`], closing the connection (the rest of the body is
/// never read).
fn too_large() -> http::Response<Full<Bytes>> {
    let mut answer = own_answer(
        StatusCode::PAYLOAD_TOO_LARGE,
        "invalid_request",
        "authorization requests carry no body",
    );
    answer
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    answer
}

/// The listener's service: decides with whatever generation `live` holds when each request
/// starts, counting in `metrics`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct HttpAuthorization {
    live: Arc<ArcSwap<Generation>>,
    metrics: Metrics,
    /// How long a request's body may take to arrive whole, after its head.
    body_timeout: Duration,
}

impl HttpAuthorization {
    /// A service deciding with the generation in `live` (which reloads replace); a request
    /// body must arrive whole within `body_timeout` of its head.
    pub fn new(live: Arc<ArcSwap<Generation>>, metrics: Metrics, body_timeout: Duration) -> Self {
        HttpAuthorization {
            live,
            metrics,
            body_timeout,
        }
    }

    /// Answers one request.
    pub async fn answer<B>(&self, request: http::Request<B>) -> http::Response<Full<Bytes>>
    where
        B: http_body::Body,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let started = Instant::now();
        let Ok(now) = SystemTime::now().duration_since(UNIX_EPOCH) else {
            return own_answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "system clock is before the Unix epoch",
            );
        };
        let (parts, body) = request.into_parts();
        // The body is read (and dropped) first, within its bound, so the connection can carry
        // the next request; past the bound the connection closes unread.
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return too_large();
        }
        // The connection is busy while the body arrives, so no head or idle deadline runs:
        // this one keeps a body sent a byte at a time from holding it.
        match tokio::time::timeout(
            self.body_timeout,
            Limited::new(body, MAX_BODY_BYTES).collect(),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return too_large(),
            Err(_) => {
                let mut answer = own_answer(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request",
                    "the request body did not arrive in time",
                );
                answer
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return answer;
            }
        }
        let request = http::Request::from_parts(parts, ());
        // The generation in force now decides this request, whatever a reload does meanwhile.
        let live = self.live.load_full();
        match request_view(&request) {
            Ok((dialect, view)) => {
                let decided = decide::check(
                    &live,
                    &view,
                    now.as_secs(),
                    Transport::http,
                    &self.metrics,
                    started,
                )
                .await;
                response(dialect, &decided.verdict)
            }
            Err(Unread::NotFound) => own_answer(
                StatusCode::NOT_FOUND,
                "not_found",
                "not an authorization path: /envoy/<path>, /forward-auth or /nginx-auth",
            ),
            Err(Unread::Unreadable(dialect, why)) => {
                // What was read is the request sent here, as the decision log shows it.
                let target = request.uri().path_and_query().map_or("", |pq| pq.as_str());
                let mut view = decide::Request::new(request.method().as_str(), target);
                for (name, value) in request.headers() {
                    view.push_header_bytes(name.as_str(), value.as_bytes());
                }
                let decided = decide::refuse_unreadable(
                    &live,
                    &view,
                    why,
                    Transport::http,
                    &self.metrics,
                    started,
                );
                // A refusal is answered as the dialect answers denials (403 + the real status
                // for nginx); with no dialect, as is.
                response(dialect.unwrap_or(Dialect::ForwardAuth), &decided.verdict)
            }
        }
    }
}

impl hyper::service::Service<http::Request<Incoming>> for HttpAuthorization {
    type Response = http::Response<Full<Bytes>>;
    type Error = Infallible;
    type Future =
        std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.answer(request).await) })
    }
}

/// Serves the HTTP authorization listener on `listener` (bound by the caller, before anything
/// is served) under `limits`, deciding with `live` and counting in `metrics`, until `shutdown`
/// resolves; then drains as [`http1::serve`] does. Logs `http authorization serving` with the
/// bound address first.
pub async fn serve(
    listener: TcpListener,
    limits: &HttpServerLimits,
    live: Arc<ArcSwap<Generation>>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a: SocketAddr| a.to_string());
    tracing::info!(listen = %addr, "http authorization serving");
    let service = HttpAuthorization::new(live, metrics, limits.header_timeout);
    let limits = http1::Limits {
        max_connections: limits.max_connections,
        max_header_bytes: limits.max_header_bytes,
        header_timeout: limits.header_timeout,
        idle_timeout: limits.idle_timeout,
    };
    http1::serve(listener, limits, None, service, shutdown).await;
}

/// [`serve`] when there is a listener (`http_listen` is set), else nothing.
pub async fn serve_if(
    listener: Option<TcpListener>,
    limits: &HttpServerLimits,
    live: Arc<ArcSwap<Generation>>,
    metrics: Metrics,
    shutdown: impl Future<Output = ()>,
) {
    if let Some(listener) = listener {
        serve(listener, limits, live, metrics, shutdown).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_become_ascii_header_values_that_read_back_the_same() {
        for body in [
            r#"{"error":"a","message":"plain"}"#,
            r#"{"error":"a","message":"caf\u00e9 ✓ 😀"}"#,
            "{\"error\":\"a\",\"message\":\"café ✓ 😀\"}",
        ] {
            let escaped = ascii_json(body);
            assert!(escaped.is_ascii(), "{escaped}");
            assert!(HeaderValue::from_str(&escaped).is_ok(), "{escaped}");
            let back: serde_json::Value = serde_json::from_str(&escaped).expect("still JSON");
            let want: serde_json::Value = serde_json::from_str(body).expect("JSON");
            assert_eq!(back, want);
        }
    }

    /// Each dialect's wire form of a denial: Envoy and forward-auth keep the real status; nginx
    /// gets 401 for a 401 and 403 for everything else, with the real status and body in headers.
    #[test]
    fn denials_keep_their_status_but_for_nginx_which_gets_401_or_403() {
        for real in [400u16, 401, 403, 503] {
            let denied = decide::Denied {
                status: real,
                error: "e",
                message: "m".into(),
                body: r#"{"error":"e","message":"é"}"#.into(),
                headers: vec![
                    ("content-type", "application/json".into()),
                    ("www-authenticate", "Bearer realm=\"r\"".into()),
                ],
            };
            let verdict = Verdict::Deny(denied);
            for dialect in [Dialect::Envoy, Dialect::ForwardAuth, Dialect::Nginx] {
                let answer = response(dialect, &verdict);
                let headers = answer.headers();
                let wire = match (dialect, real) {
                    (Dialect::Nginx, 401) => 401,
                    (Dialect::Nginx, _) => 403,
                    _ => real,
                };
                assert_eq!(answer.status().as_u16(), wire, "{dialect:?} {real}");
                assert_eq!(headers["www-authenticate"], "Bearer realm=\"r\"");
                assert_eq!(headers["content-type"], "application/json");
                if dialect == Dialect::Nginx {
                    assert_eq!(headers[STATUS_HEADER], real.to_string().as_str());
                    assert_eq!(headers[BODY_HEADER], r#"{"error":"e","message":"\u00e9"}"#);
                } else {
                    assert!(headers.get(STATUS_HEADER).is_none());
                    assert!(headers.get(BODY_HEADER).is_none());
                }
            }
        }
        let allow = Verdict::Allow {
            set: vec![("x-auth-subject", "zoë".into())],
            remove: vec!["x-auth-scopes", "x-auth-email"],
            metadata: Default::default(),
            remove_query: vec![],
        };
        for dialect in [Dialect::Envoy, Dialect::ForwardAuth, Dialect::Nginx] {
            let answer = response(dialect, &allow);
            assert_eq!(answer.status(), StatusCode::OK);
            assert_eq!(
                answer.headers()["x-auth-subject"].as_bytes(),
                "zoë".as_bytes()
            );
            let removed = answer.headers().get(ENVOY_REMOVE_HEADER);
            if dialect == Dialect::Envoy {
                assert_eq!(removed.expect("listed"), "x-auth-scopes,x-auth-email");
            } else {
                assert!(removed.is_none(), "{dialect:?}");
            }
        }
    }

    /// The `/envoy/` allow carries its metadata in `x-scopegate-meta-<key>` headers (strings
    /// as they are, anything else as JSON text); keys no lower-case header name can spell are
    /// left out; the other dialects send none; a value no header can carry fails closed.
    #[test]
    fn envoy_allows_carry_metadata_headers_and_fail_closed_on_unwritable_values() {
        let serde_json::Value::Object(metadata) = serde_json::json!({
            "client_id": "client-a",
            "scopes": ["read", "write"],
            "x-auth-email": "u@example.com",
            "level": 3,
            "orgId": "acme",
            "/org/id": "acme",
        }) else {
            unreachable!("an object")
        };
        let allow = |metadata| Verdict::Allow {
            set: vec![],
            remove: vec![],
            remove_query: vec![],
            metadata,
        };
        let answer = response(Dialect::Envoy, &allow(metadata.clone()));
        assert_eq!(answer.status(), StatusCode::OK);
        let meta: Vec<(&str, &[u8])> = answer
            .headers()
            .iter()
            .filter(|(name, _)| name.as_str().starts_with(METADATA_HEADER_PREFIX))
            .map(|(name, value)| (name.as_str(), value.as_bytes()))
            .collect();
        let mut want: Vec<(&str, &[u8])> = vec![
            ("x-scopegate-meta-client_id", b"client-a"),
            ("x-scopegate-meta-scopes", br#"["read","write"]"#),
            ("x-scopegate-meta-x-auth-email", b"u@example.com"),
            ("x-scopegate-meta-level", b"3"),
        ];
        let mut meta_sorted = meta.clone();
        meta_sorted.sort();
        want.sort();
        assert_eq!(meta_sorted, want);
        for dialect in [Dialect::ForwardAuth, Dialect::Nginx] {
            let answer = response(dialect, &allow(metadata.clone()));
            assert!(
                !answer
                    .headers()
                    .keys()
                    .any(|name| name.as_str().starts_with(METADATA_HEADER_PREFIX)),
                "{dialect:?}: {answer:?}"
            );
        }
        let mut unwritable = decide::Metadata::new();
        unwritable.insert("client_id".into(), "a\nb".into());
        let answer = response(Dialect::Envoy, &allow(unwritable));
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn dialects_are_chosen_by_path_and_forwarded_values_are_checked() {
        let build = |method: &str, target: &str, headers: &[(&str, &[u8])]| {
            let mut request = http::Request::builder().method(method).uri(target);
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            request.body(()).expect("request")
        };
        let ok = |request: &http::Request<()>| {
            request_view(request).map(|(dialect, view)| {
                (
                    dialect,
                    view.method().to_owned(),
                    view.path().to_owned(),
                    view.host().to_owned(),
                    view.scheme().to_owned(),
                )
            })
        };
        let read = |d, m: &str, p: &str, h: &str, s: &str| {
            Ok((d, m.to_owned(), p.to_owned(), h.to_owned(), s.to_owned()))
        };
        let unreadable = |d| Err(Unread::Unreadable(d, ""));
        let fwd: &[(&str, &[u8])] = &[
            ("x-forwarded-method", b"POST"),
            ("x-forwarded-uri", b"/a?b=1"),
            ("x-forwarded-host", b"app.example"),
            ("x-forwarded-proto", b"https"),
        ];
        let cases: Vec<(&str, http::Request<()>, Result<_, Unread>)> = vec![
            (
                "envoy",
                build(
                    "DELETE",
                    "/envoy/a/b?c",
                    &[("host", b"h"), ("x-forwarded-proto", b"http")],
                ),
                read(Dialect::Envoy, "DELETE", "/a/b?c", "h", "http"),
            ),
            (
                "envoy root",
                build("GET", "/envoy/", &[]),
                read(Dialect::Envoy, "GET", "/", "", ""),
            ),
            (
                "envoy alone",
                build("GET", "/envoy", &[]),
                Err(Unread::NotFound),
            ),
            (
                "envoy query",
                build("GET", "/envoy?x", &[]),
                Err(Unread::NotFound),
            ),
            (
                "envoyX",
                build("GET", "/envoyX/a", &[]),
                Err(Unread::NotFound),
            ),
            ("root", build("GET", "/", &[]), Err(Unread::NotFound)),
            (
                "forward-auth",
                build("GET", "/forward-auth?ignored", fwd),
                read(
                    Dialect::ForwardAuth,
                    "POST",
                    "/a?b=1",
                    "app.example",
                    "https",
                ),
            ),
            (
                "forward-auth, no method",
                build("GET", "/forward-auth", &fwd[1..]),
                unreadable(Some(Dialect::ForwardAuth)),
            ),
            (
                "forward-auth, no uri",
                build("GET", "/forward-auth", &[fwd[0]]),
                unreadable(Some(Dialect::ForwardAuth)),
            ),
            (
                "forward-auth, two uris",
                build(
                    "GET",
                    "/forward-auth",
                    &[fwd[0], fwd[1], ("x-forwarded-uri", b"/b")],
                ),
                unreadable(Some(Dialect::ForwardAuth)),
            ),
            (
                "forward-auth, schemeful uri",
                build(
                    "GET",
                    "/forward-auth",
                    &[fwd[0], ("x-forwarded-uri", b"http://h/x")],
                ),
                unreadable(Some(Dialect::ForwardAuth)),
            ),
            (
                "forward-auth, star",
                build("GET", "/forward-auth", &[fwd[0], ("x-forwarded-uri", b"*")]),
                unreadable(Some(Dialect::ForwardAuth)),
            ),
            (
                "forward-auth, empty uri",
                build("GET", "/forward-auth", &[fwd[0], ("x-forwarded-uri", b"")]),
                unreadable(Some(Dialect::ForwardAuth)),
            ),
            (
                "forward-auth, uri not UTF-8",
                build(
                    "GET",
                    "/forward-auth",
                    &[fwd[0], ("x-forwarded-uri", b"/\xff")],
                ),
                unreadable(Some(Dialect::ForwardAuth)),
            ),
            (
                "nginx",
                build(
                    "GET",
                    "/nginx-auth",
                    &[
                        ("x-original-method", b"PUT"),
                        ("x-original-uri", b"/x/y"),
                        ("host", b"app"),
                    ],
                ),
                read(Dialect::Nginx, "PUT", "/x/y", "app", ""),
            ),
            (
                "nginx, no method",
                build("GET", "/nginx-auth", &[("x-original-uri", b"/x")]),
                unreadable(Some(Dialect::Nginx)),
            ),
            (
                "absolute form",
                build("GET", "http://h/envoy/x", &[]),
                unreadable(None),
            ),
        ];
        for (name, request, want) in cases {
            let got = ok(&request).map_err(|e| match e {
                Unread::Unreadable(d, _) => Unread::Unreadable(d, ""),
                other => other,
            });
            assert_eq!(got, want, "{name}");
        }
    }
}
