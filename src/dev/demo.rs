//! The demo upstream: a tiny HTTP API standing behind Envoy in the demo, the Docker stack and the
//! end-to-end tests. It reproduces the sample's endpoints and reports the identity headers it
//! received, so that what scopegate passed on is visible.
//!
//! - `GET /restricted_resource` → `{"message": "Access Granted", "allowed_scopes": [...]}` built
//!   from `x-auth-scopes` (the sample's answer);
//! - `GET /public` → a public greeting;
//! - anything else → an echo of the path and the query (`null` when there is none).
//!
//! Every answer also carries `"subject"` and `"scopes_header"`: the `x-auth-subject` and
//! `x-auth-scopes` values as the upstream saw them (`null` when absent), and `"auth_headers"`:
//! every header that arrived whose name reads as `x-auth-*` once `_` and `.` are read as `-`.

use axum::Router;
use axum::http::{HeaderMap, Uri};
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::decide::{SCOPES_HEADER, SUBJECT_HEADER};

/// Serves the demo API on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    tracing::info!(addr = ?listener.local_addr().ok(), "demo upstream serving");
    let app = Router::new()
        .route("/restricted_resource", get(restricted))
        .route("/public", get(public))
        .fallback(other);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A header's value as text. scopegate forwards claims as UTF-8 bytes, which `to_str` (visible
/// ASCII only) would refuse; bytes that are not UTF-8 show as U+FFFD.
fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn with_identity(mut body: Value, headers: &HeaderMap) -> axum::Json<Value> {
    body["subject"] = json!(header(headers, SUBJECT_HEADER));
    body["scopes_header"] = json!(header(headers, SCOPES_HEADER));
    // Every x-auth-* header that arrived, so the demo shows forwarded claims as well; also the
    // spellings CGI, WSGI, Rack and PHP read as one (`x_auth_subject`, `x.auth.subject`), so
    // that a test sees when a proxy lets such a spoof through.
    let auth_headers: serde_json::Map<String, Value> = headers
        .keys()
        .filter(|name| {
            name.as_str()
                .replace(['_', '.'], "-")
                .starts_with("x-auth-")
        })
        .filter_map(|name| Some((name.to_string(), json!(header(headers, name.as_str())?))))
        .collect();
    body["auth_headers"] = Value::Object(auth_headers);
    axum::Json(body)
}

async fn restricted(headers: HeaderMap) -> axum::Json<Value> {
    let scopes: Vec<String> = header(&headers, SCOPES_HEADER)
        .map(|s| {
            s.split(' ')
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    with_identity(
        json!({"message": "Access Granted", "allowed_scopes": scopes}),
        &headers,
    )
}

async fn public(headers: HeaderMap) -> axum::Json<Value> {
    with_identity(json!({"message": "Public: no token needed"}), &headers)
}

/// The body is read, never used: a server that answers and closes a connection with request
/// bytes still unread makes the kernel reset it, and a proxy still sending them may then lose
/// the answer and report 502.
async fn other(uri: Uri, headers: HeaderMap, _body: axum::body::Bytes) -> axum::Json<Value> {
    with_identity(
        json!({"message": "Hello from the demo upstream", "path": uri.path(), "query": uri.query()}),
        &headers,
    )
}
