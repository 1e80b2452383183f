//! The module's request view against the gRPC service's: the same requests, as Envoy hands them
//! to the filter and as it sends them in a `CheckRequest` (`encode_raw_headers`), decided by the
//! same core with the same keys, must get the same verdicts and labels.

use std::sync::Arc;

use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use scopegate::auth::jwks::Jwks;
use scopegate::auth::keys::KeySet;
use scopegate::auth::verify::Algorithm;
use scopegate::decide::{self, Generation};
use scopegate::serve::service;
use scopegate::telemetry::metrics::Metrics;
use serde_json::json;

use super::*;

const NOW: u64 = 1_800_000_000;

const CONFIG: &str = r#"
issuer = "https://tenant.example/"
audience = "https://api.example"
jwks_uri = "https://tenant.example/jwks.json"
[forward_claims]
"x-auth-client" = "azp"
[[rules]]
path = "/public"
public = true
[[rules]]
path = "/restricted_resource"
scopes = ["read:messages"]
[[rules]]
prefix = "/admin/"
methods = ["DELETE"]
scopes = ["admin"]
"#;

/// A generation of [`CONFIG`] with one RSA key installed, and a function minting its tokens
/// (with a scope, issued at a time).
fn generation() -> (Generation, impl Fn(&str, u64) -> String) {
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("key");
    let public = pair.public_key();
    let jwks = json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1",
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    }]});
    let (keys, _) =
        KeySet::parse(jwks.to_string().as_bytes(), &[Algorithm::RS256], 10).expect("jwks");
    let config = compile_module_config(CONFIG, "<test>").expect("config");
    let set = Jwks::new(config.issuers()[0].jwks.clone());
    set.install(keys);
    let generation = Generation::new(Arc::new(config), vec![set]);
    let mint = move |scope: &str, at: u64| {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": "k1"});
        let claims = json!({
            "iss": "https://tenant.example/", "sub": "user-1", "aud": "https://api.example",
            "iat": at, "exp": at + 3600, "azp": "client-7", "scope": scope,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0; pair.public_modulus_len()];
        pair.sign(
            &RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            input.as_bytes(),
            &mut sig,
        )
        .expect("sign");
        format!("Bearer {input}.{}", URL_SAFE_NO_PAD.encode(sig))
    };
    (generation, mint)
}

/// One request: method, path, headers (names in lower case, as Envoy's map has them), and the
/// status both front doors must answer.
struct Row {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, Vec<u8>)>,
    status: u16,
}

/// The request as Envoy's header map holds it for the filter: pseudo-headers first.
fn envoy_headers(row: &Row) -> OwnedHeaders {
    let mut headers = OwnedHeaders::default();
    headers.push(b":authority", b"api.example");
    headers.push(b":path", row.path.as_bytes());
    headers.push(b":method", row.method.as_bytes());
    headers.push(b":scheme", b"https");
    for (name, value) in &row.headers {
        headers.push(name.as_bytes(), value);
    }
    headers
}

/// The request as Envoy's ext_authz sends it to the service with `encode_raw_headers`: the
/// attributes, and every header (pseudo-headers included) in the header map.
fn check_request(row: &Row) -> HttpRequest {
    let mut map = vec![
        (":authority", b"api.example".to_vec()),
        (":path", row.path.as_bytes().to_vec()),
        (":method", row.method.as_bytes().to_vec()),
        (":scheme", b"https".to_vec()),
    ];
    map.extend(row.headers.iter().cloned());
    HttpRequest {
        method: row.method.into(),
        path: row.path.into(),
        host: "api.example".into(),
        scheme: "https".into(),
        header_map: Some(HeaderMap {
            headers: map
                .into_iter()
                .map(|(key, raw_value)| HeaderValue {
                    key: key.into(),
                    raw_value,
                    ..HeaderValue::default()
                })
                .collect(),
        }),
        ..HttpRequest::default()
    }
}

/// Polls `future` once, as the filter does on a worker: inside a runtime's context (the Check
/// deadline's timer is the key runtime's) but not on it.
fn poll_now<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _context = runtime.enter();
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("a decision with its keys installed never waits"),
    }
}

#[test]
fn the_module_and_the_grpc_service_read_requests_alike() {
    let (generation, mint) = generation();
    let read = mint("read:messages", NOW).into_bytes();
    let admin = mint("admin", NOW).into_bytes();
    let other = mint("other", NOW).into_bytes();
    let auth = |value: &[u8]| ("authorization", value.to_vec());
    let rows = [
        Row {
            method: "GET",
            path: "/public",
            headers: vec![],
            status: 200,
        },
        Row {
            method: "GET",
            path: "/restricted_resource",
            headers: vec![],
            status: 401,
        },
        Row {
            method: "GET",
            path: "/restricted_resource",
            headers: vec![auth(&read)],
            status: 200,
        },
        Row {
            method: "GET",
            path: "/restricted_resource?x=1",
            headers: vec![auth(&read), ("x-auth-subject", b"admin".to_vec())],
            status: 200,
        },
        Row {
            method: "GET",
            path: "/restricted_resource",
            headers: vec![auth(&other)],
            status: 403,
        },
        Row {
            method: "GET",
            path: "/restricted_resource",
            headers: vec![auth(&read), auth(&read)],
            status: 400,
        },
        Row {
            method: "GET",
            path: "/restricted_resource",
            headers: vec![auth(b"Bearer \xff\xfe")],
            status: 400,
        },
        Row {
            method: "GET",
            path: "/restricted_resource",
            headers: vec![auth(b"Bearer not.a.token")],
            status: 401,
        },
        Row {
            method: "DELETE",
            path: "/admin/users/1",
            headers: vec![auth(&read)],
            status: 403,
        },
        Row {
            method: "DELETE",
            path: "/admin/users/1",
            headers: vec![auth(&admin)],
            status: 200,
        },
        // A POST that asks the upstream to run a DELETE handler, which a rule decides differently.
        Row {
            method: "POST",
            path: "/admin/users/1",
            headers: vec![auth(&read), ("x-http-method-override", b"DELETE".to_vec())],
            status: 400,
        },
        Row {
            method: "GET",
            path: "/public/%2e%2e/admin/users/1",
            headers: vec![auth(&admin)],
            status: 400,
        },
    ];
    for row in &rows {
        let context = format!("{} {} {:?}", row.method, row.path, row.headers.len());
        let envoy = envoy_headers(row);
        let pairs = envoy.pairs();
        let module_view = view::request_view(&pairs).expect("readable");
        let http = check_request(row);
        let service_view = service::request_view(&http, None);
        let metrics = Metrics::new();
        let by_module = poll_now(decide::decide(&generation, &module_view, NOW, &metrics));
        let by_service = poll_now(decide::decide(&generation, &service_view, NOW, &metrics));
        assert_eq!(by_module.verdict, by_service.verdict, "{context}");
        assert_eq!(by_module.labels, by_service.labels, "{context}");
        assert_eq!(
            by_module.labels.status, row.status,
            "{context}: {:?}",
            by_module.verdict
        );
    }
}

#[test]
fn a_request_without_one_method_or_path_is_unreadable() {
    /// Envoy's header list.
    type Headers<'a> = &'a [(&'a [u8], &'a [u8])];
    let cases: [(Headers<'_>, &str); 5] = [
        (&[(b":path", b"/x")], ":method"),
        (&[(b":method", b"GET")], ":path"),
        (
            &[
                (b":method", b"GET"),
                (b":method", b"POST"),
                (b":path", b"/x"),
            ],
            ":method",
        ),
        (&[(b":method", b"GET"), (b":path", b"/\xff")], ":path"),
        (
            &[(b":method", b"GET"), (b":path", b"/x"), (b"\xffname", b"v")],
            "name",
        ),
    ];
    for (headers, named) in cases {
        let why = view::request_view(headers).expect_err(named);
        assert!(why.contains(named), "{why}");
    }
}

#[test]
fn an_allow_and_a_denial_become_owned_answers() {
    let (generation, mint) = generation();
    let metrics = Metrics::new();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let token = mint("read:messages", now);
    let mut allowed = OwnedHeaders::default();
    for (name, value) in [
        (":method", "GET"),
        (":path", "/restricted_resource"),
        ("authorization", token.as_str()),
    ] {
        allowed.push(name.as_bytes(), value.as_bytes());
    }
    let generation = Arc::new(generation);
    let outcome = poll_now(decide_owned(
        Arc::clone(&generation),
        metrics.clone(),
        allowed,
        Instant::now(),
    ));
    let Answer::Allow { set, remove } = outcome.answer else {
        panic!("allowed: {outcome:?}");
    };
    assert!(
        set.contains(&("x-auth-subject".to_owned(), "user-1".to_owned())),
        "{set:?}"
    );
    assert!(
        set.contains(&("x-auth-client".to_owned(), "client-7".to_owned())),
        "{set:?}"
    );
    assert!(remove.is_empty(), "{remove:?}");
    assert_eq!(outcome.labels, ["allow", "200", "authorized", "rules[1]"]);
    let mut unreadable = OwnedHeaders::default();
    unreadable.push(b":path", b"/restricted_resource");
    let outcome = poll_now(decide_owned(
        generation,
        metrics,
        unreadable,
        Instant::now(),
    ));
    assert_eq!(outcome.labels[1], "400");
    assert!(
        matches!(&outcome.answer, Answer::Deny { status: 400, body, .. } if body.contains("invalid_request")),
        "{outcome:?}"
    );
}

#[test]
fn a_failure_inside_the_module_answers_503_with_retry_after() {
    let outcome = unavailable("why");
    let Answer::Deny {
        status,
        headers,
        body,
    } = outcome.answer
    else {
        panic!("a denial");
    };
    assert_eq!(status, 503);
    assert!(headers.contains(&("retry-after".to_owned(), "1".to_owned())));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).expect("JSON"),
        json!({"error": "temporarily_unavailable", "message": "why"})
    );
}
