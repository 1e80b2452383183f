//! The `envoy.service.auth.v3.Authorization` gRPC service: the only module that knows Envoy and
//! tonic types.
//!
//! A thin adapter around [`crate::decide`]: `Check` turns the `CheckRequest` into a
//! [`decide::Request`] view ([`request_view`]), lets [`decide::check`] decide, count and log it,
//! and maps the [`Verdict`] to a `CheckResponse` ([`response`]). Every authentication or authorization
//! failure is answered in-band, as `Ok(CheckResponse)` with a denied status and an HTTP response
//! for Envoy to send; `Err(Status)` is kept for real faults, because Envoy's `failure_mode_allow`
//! lets requests through on those.
//!
//! | denial | HTTP | `error` | gRPC status in the response |
//! |---|---|---|---|
//! | no `Authorization`, or another scheme | 401 | `unauthorized` (no code in the challenge) | UNAUTHENTICATED |
//! | malformed Bearer credentials | 400 | `invalid_request` | UNAUTHENTICATED |
//! | token fails verification | 401 | `invalid_token` | UNAUTHENTICATED |
//! | token from an issuer, or for no audience, the rule's `issuers` / `audiences` take | 401 | `invalid_token` | UNAUTHENTICATED |
//! | scopes missing, or route denied to all | 403 | `insufficient_scope` | PERMISSION_DENIED |
//! | ambiguous request path, or a method override or form POST that could run another rule's handler | 400 | `invalid_request` | PERMISSION_DENIED |
//! | no key set loaded yet | 503 | `temporarily_unavailable` | UNAVAILABLE |
//! | the Check ran past `check_timeout_ms` | 503 | `temporarily_unavailable` | UNAVAILABLE |

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;

use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, HeaderAppendAction, HttpStatusCode,
};
use envoy_types::ext_authz::v3::{
    CheckResponseExt, DeniedHttpResponseBuilder, OkHttpResponseBuilder,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::protobuf::{self, ListValue, Struct, value::Kind};
use tonic::{Response, Status};

use crate::auth::jwks::Jwks;
use crate::config::Config;
use crate::decide::{self, Generation, Labels, Metadata, Verdict};
use crate::telemetry::metrics::{Metrics, Reason, Transport};

/// The Authorization service. Cheap to clone.
#[derive(Clone, Debug)]
pub struct AuthorizationService {
    live: Arc<ArcSwap<Generation>>,
    metrics: Metrics,
}

impl AuthorizationService {
    /// A service deciding with `config` against the keys in `key_sets`, one per issuer of
    /// `config`, in the same order, counting its answers in `metrics`.
    pub fn new(config: Arc<Config>, key_sets: Vec<Jwks>, metrics: Metrics) -> Self {
        let live = Arc::new(ArcSwap::from_pointee(Generation::new(config, key_sets)));
        AuthorizationService::with_live(live, metrics)
    }

    /// A service deciding with whatever generation `live` holds when each Check starts: the
    /// handle through which a reload replaces it.
    pub fn with_live(live: Arc<ArcSwap<Generation>>, metrics: Metrics) -> Self {
        AuthorizationService { live, metrics }
    }
}

#[tonic::async_trait]
impl Authorization for AuthorizationService {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let started = Instant::now();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_err(|_| Status::internal("system clock is before the Unix epoch"))?
            .as_secs();
        // The generation in force now decides this Check, whatever a reload does meanwhile.
        let live = self.live.load_full();
        let (metadata, _, check) = request.into_parts();
        let attributes = check.attributes.unwrap_or_default();
        let certificate = attributes.source.map(|peer| peer.certificate);
        let http = attributes.request.and_then(|r| r.http).unwrap_or_default();
        let mut view = request_view(&http, certificate.as_deref());
        // The trace context Envoy's ext_authz client sends when Envoy traces: read only when
        // tracing is on, so a Check pays nothing for it otherwise.
        if live.tracer().is_some() {
            let values = |name| {
                metadata
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or(""))
                    .collect::<Vec<_>>()
            };
            view = view.with_trace_context(values("traceparent"), values("tracestate"));
        }
        let decided =
            decide::check(&live, &view, now, Transport::grpc, &self.metrics, started).await;
        Ok(Response::new(response(decided.verdict, &decided.labels)))
    }
}

/// The request view of Envoy's `HttpRequest` (and the client certificate Envoy passes, URL-encoded
/// PEM, when the downstream connection had one). Envoy fills `headers`, or `header_map` with
/// `encode_raw_headers`, whose values may be bytes that are not UTF-8. Should a caller fill both,
/// a header whose values are identical in both counts once, and one whose values differ keeps
/// them all (so that two different `Authorization` lists are refused as several credentials).
pub fn request_view<'a>(
    http: &'a HttpRequest,
    certificate: Option<&'a str>,
) -> decide::Request<'a> {
    let mut view = decide::Request::new(&http.method, &http.path)
        .with_scheme(&http.scheme)
        .with_host(&http.host);
    if let Some(certificate) = certificate {
        view = view.with_peer_certificate(certificate);
    }
    for (name, value) in &http.headers {
        view.push_header(name, value);
    }
    let Some(map) = &http.header_map else {
        return view;
    };
    let value_of = |h: &'a envoy_types::pb::envoy::config::core::v3::HeaderValue| {
        if h.raw_value.is_empty() {
            (std::borrow::Cow::Borrowed(h.value.as_str()), true)
        } else {
            (
                String::from_utf8_lossy(&h.raw_value),
                std::str::from_utf8(&h.raw_value).is_ok(),
            )
        }
    };
    for (i, header) in map.headers.iter().enumerate() {
        let first = !map.headers[..i]
            .iter()
            .any(|h| h.key.eq_ignore_ascii_case(&header.key));
        if !first {
            continue;
        }
        let same_name = || {
            map.headers[i..]
                .iter()
                .filter(|h| h.key.eq_ignore_ascii_case(&header.key))
        };
        let values: Vec<_> = same_name().map(value_of).collect();
        let name = header.key.to_ascii_lowercase();
        if view.same_values(&name, values.iter().map(|(v, utf8)| (v.as_ref(), *utf8))) {
            continue;
        }
        for h in same_name() {
            if h.raw_value.is_empty() {
                view.push_header(&h.key, &h.value);
            } else {
                view.push_header_bytes(&h.key, &h.raw_value);
            }
        }
    }
    view
}

/// The `CheckResponse` for `verdict`: an OK response with the headers to set (overwriting any
/// copy the client sent) and to remove, or a denied one with the HTTP answer and the gRPC status
/// for its reason (the table in this module's documentation).
pub fn response(verdict: Verdict<'_>, labels: &Labels<'_>) -> CheckResponse {
    let overwrite = Some(HeaderAppendAction::OverwriteIfExistsOrAdd);
    match verdict {
        Verdict::Allow {
            set,
            remove,
            metadata,
            remove_query,
        } => {
            let mut ok = OkHttpResponseBuilder::new();
            for (name, value) in set {
                ok.add_header(name, value, overwrite, false);
            }
            for name in remove {
                ok.remove_header(name);
            }
            for name in remove_query {
                ok.remove_query_parameter(name);
            }
            let mut response = CheckResponse::with_status(Status::ok(""));
            response.set_http_response(ok);
            // Envoy keeps it under the ext_authz filter's namespace for the access log,
            // rate limits and later filters.
            response.set_dynamic_metadata(Some(metadata_struct(metadata)));
            response
        }
        Verdict::Deny(denied) => {
            let grpc = match labels.reason {
                Reason::keys_unavailable
                | Reason::timed_out
                | Reason::introspection_unavailable => Status::unavailable(&denied.message),
                // A full replay cache: the proof could not be checked, not refused.
                Reason::dpop_proof if denied.status == 503 => Status::unavailable(&denied.message),
                Reason::missing_token
                | Reason::dpop_proof
                | Reason::binding
                | Reason::invalid_request
                | Reason::invalid_token
                | Reason::issuer_not_accepted
                | Reason::audience_not_accepted => Status::unauthenticated(&denied.message),
                _ => Status::permission_denied(&denied.message),
            };
            let http = match denied.status {
                400 => HttpStatusCode::BadRequest,
                401 => HttpStatusCode::Unauthorized,
                403 => HttpStatusCode::Forbidden,
                _ => HttpStatusCode::ServiceUnavailable,
            };
            let mut answer = DeniedHttpResponseBuilder::new();
            answer.set_http_status(http).set_body(denied.body);
            for (name, value) in denied.headers {
                answer.add_header(name, value, overwrite, false);
            }
            let mut response = CheckResponse::with_status(grpc);
            response.set_http_response(answer);
            response
        }
    }
}

/// An allow's metadata as the protobuf `Struct` of `CheckResponse.dynamic_metadata`: JSON
/// values as their protobuf kinds (arrays as lists, objects as structs).
pub fn metadata_struct(metadata: Metadata) -> Struct {
    Struct {
        fields: metadata
            .into_iter()
            .map(|(key, value)| (key, protobuf_value(value)))
            .collect(),
    }
}

/// A JSON value as a protobuf `Value`. Numbers become doubles, as protobuf's JSON mapping has
/// them (an integer beyond 2^53 loses precision there, as in any JSON reader that uses doubles).
fn protobuf_value(value: serde_json::Value) -> protobuf::Value {
    use serde_json::Value;
    let kind = match value {
        Value::Null => Kind::NullValue(protobuf::NullValue::NullValue as i32),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(ListValue {
            values: items.into_iter().map(protobuf_value).collect(),
        }),
        Value::Object(map) => Kind::StructValue(metadata_struct(map)),
    };
    protobuf::Value { kind: Some(kind) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn string(s: &str) -> protobuf::Value {
        protobuf::Value {
            kind: Some(Kind::StringValue(s.to_owned())),
        }
    }

    /// Each JSON value becomes the protobuf kind Envoy reads back as the same value: strings,
    /// lists (the scopes), numbers as doubles, booleans, null and nested structs.
    #[test]
    fn metadata_becomes_a_struct_of_the_same_values() {
        let serde_json::Value::Object(metadata) = json!({
            "sub": "user-1",
            "scopes": ["read", "write"],
            "level": 3,
            "admin": true,
            "gone": null,
            "org": { "id": "acme" },
        }) else {
            unreachable!("an object")
        };
        let fields = metadata_struct(metadata).fields;
        assert_eq!(fields.len(), 6, "{fields:?}");
        assert_eq!(fields["sub"], string("user-1"));
        assert_eq!(
            fields["scopes"].kind,
            Some(Kind::ListValue(ListValue {
                values: vec![string("read"), string("write")],
            }))
        );
        assert_eq!(fields["level"].kind, Some(Kind::NumberValue(3.0)));
        assert_eq!(fields["admin"].kind, Some(Kind::BoolValue(true)));
        assert_eq!(fields["gone"].kind, Some(Kind::NullValue(0)));
        let Some(Kind::StructValue(org)) = &fields["org"].kind else {
            panic!("a struct: {:?}", fields["org"]);
        };
        assert_eq!(org.fields["id"], string("acme"));
    }

    /// An allow carries its metadata in `CheckResponse.dynamic_metadata` (not in the
    /// deprecated `OkHttpResponse` field); a denial carries none.
    #[test]
    fn an_allow_carries_its_metadata_and_a_denial_none() {
        let rule: Arc<str> = "orders".into();
        let labels = |decision, status, reason| Labels {
            decision,
            status,
            reason,
            rule: &rule,
            issuer: None,
        };
        let mut metadata = Metadata::new();
        metadata.insert("rule".into(), "orders".into());
        let allowed = response(
            Verdict::Allow {
                set: vec![],
                remove: vec![],
                remove_query: vec![],
                metadata,
            },
            &labels(
                crate::telemetry::metrics::Decision::allow,
                200,
                Reason::authorized,
            ),
        );
        let fields = allowed.dynamic_metadata.expect("metadata").fields;
        assert_eq!(fields["rule"], string("orders"));
        let denied = response(
            Verdict::Deny(decide::Denied {
                status: 403,
                error: "insufficient_scope",
                message: "Insufficient scope".into(),
                body: "{}".into(),
                headers: vec![],
            }),
            &labels(
                crate::telemetry::metrics::Decision::deny,
                403,
                Reason::insufficient_scope,
            ),
        );
        assert_eq!(denied.dynamic_metadata, None);
    }
}
