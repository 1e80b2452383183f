//! Shared fixtures for the integration tests: real RSA keys, a real HTTP JWKS server on loopback,
//! the real scopegate server started in-process, and a real tonic client.
#![allow(dead_code)] // each test binary uses a different subset

pub mod binary;
pub mod otlp;
pub mod stack;
pub mod watchdog;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use envoy_types::ext_authz::v3::pb::CheckResponse;
use envoy_types::pb::envoy::config::core::v3::{HeaderMap, HeaderValue};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tonic::transport::Channel;

pub const ISSUER: &str = "https://issuer.test/";
pub const AUDIENCE: &str = "https://api.test";

/// gRPC status codes as they appear in `CheckResponse.status.code`.
pub const OK: i32 = 0;
pub const PERMISSION_DENIED: i32 = 7;
pub const UNAVAILABLE: i32 = 14;
pub const UNAUTHENTICATED: i32 = 16;

/// An RSA signing key generated for the test, with its `kid`.
#[derive(Clone)]
pub struct TestKey {
    pub kid: String,
    pair: Arc<KeyPair>,
    encoding: jsonwebtoken::EncodingKey,
}

impl TestKey {
    /// A fresh 2048-bit key.
    pub fn generate(kid: &str) -> TestKey {
        let pair = KeyPair::generate(KeySize::Rsa2048).expect("RSA key generation");
        let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).expect("pkcs8");
        let pem = pem_encode("PRIVATE KEY", pkcs8.as_ref());
        let encoding = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).expect("pem key");
        TestKey {
            kid: kid.to_string(),
            pair: Arc::new(pair),
            encoding,
        }
    }

    /// The public JWK, as an Auth0 JWKS lists it.
    pub fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    /// A token minted by an independent JWT implementation (jsonwebtoken), RS256 with this `kid`.
    pub fn mint(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("encode token")
    }

    /// A token with an arbitrary header, signed RS256 over exactly the given JSON texts.
    pub fn mint_raw(&self, header: &Value, claims: &Value) -> String {
        self.mint_with(&RSA_PKCS1_SHA256, header, claims)
    }

    /// RS256 signature over exactly `message`.
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(&RSA_PKCS1_SHA256, &rng, message, &mut signature)
            .expect("sign");
        signature
    }

    /// A token with an arbitrary header, signed with `padding` (an RSA signature scheme).
    pub fn mint_with(
        &self,
        padding: &'static dyn aws_lc_rs::signature::RsaEncoding,
        header: &Value,
        claims: &Value,
    ) -> String {
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0; self.pair.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.pair
            .sign(padding, &rng, signing_input.as_bytes(), &mut signature)
            .expect("sign");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after epoch")
        .as_secs()
}

/// Valid claims for the test issuer and audience, expiring in an hour.
pub fn claims(scope: &str) -> Value {
    json!({
        "iss": ISSUER,
        "sub": "auth0|user-1",
        "aud": [AUDIENCE, "https://issuer.test/userinfo"],
        "iat": now(),
        "exp": now() + 3600,
        "scope": scope,
    })
}

/// A JWKS document listing the keys.
pub fn jwks_of(keys: &[&TestKey]) -> Value {
    json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() })
}

/// What the JWKS server answers.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Status, extra headers, body.
    Respond(u16, Vec<(String, String)>, Vec<u8>),
    /// Accept and read the request, then never answer.
    Stall,
    /// Answer with the inner reply after a delay (a slow issuer).
    Delayed(Duration, Box<Reply>),
    /// Send the status line, headers announcing `announced` body bytes and the first of them,
    /// then stall (a body cut short).
    StallBody { announced: usize, sent: Vec<u8> },
    /// 200 with this body and no `content-length`: the body ends when the connection closes,
    /// so only the reader's own count can stop it.
    Unsized(Vec<u8>),
}

impl Reply {
    /// 200 with a JSON body.
    pub fn json(body: &Value) -> Reply {
        Reply::Respond(
            200,
            vec![("content-type".into(), "application/json".into())],
            body.to_string().into_bytes(),
        )
    }
}

/// A minimal, real HTTP/1.1 server on 127.0.0.1 that serves one programmable reply to every
/// request and counts the requests; over plain TCP, or over rustls ([`JwksServer::start_tls`]).
#[derive(Clone)]
pub struct JwksServer {
    pub addr: SocketAddr,
    /// `http` or `https`.
    scheme: &'static str,
    reply: Arc<Mutex<Reply>>,
    /// Replies for particular paths, before the default `reply`.
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    hits: Arc<AtomicUsize>,
    /// Body bytes the client's socket took, over every reply: what it can have read at most,
    /// besides what still sits in the kernel's buffers.
    body_bytes: Arc<AtomicUsize>,
    /// Requests per path.
    path_hits: Arc<Mutex<HashMap<String, usize>>>,
}

impl JwksServer {
    pub async fn start(reply: Reply) -> JwksServer {
        JwksServer::start_with(reply, None).await
    }

    /// The same server speaking TLS (1.2, 1.3) with the certificate chain and key in these PEM
    /// files (a private CA's, from `scopegate::dev::certs::generate`); its URLs are `https://`.
    pub async fn start_tls(reply: Reply, cert_file: &Path, key_file: &Path) -> JwksServer {
        use rustls::pki_types::pem::PemObject as _;
        let chain = rustls::pki_types::CertificateDer::pem_file_iter(cert_file)
            .expect("cert file")
            .collect::<Result<Vec<_>, _>>()
            .expect("certificates");
        let key = rustls::pki_types::PrivateKeyDer::from_pem_file(key_file).expect("key file");
        let config = rustls::ServerConfig::builder_with_provider(scopegate::net::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        JwksServer::start_with(
            reply,
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
        )
        .await
    }

    async fn start_with(reply: Reply, tls: Option<tokio_rustls::TlsAcceptor>) -> JwksServer {
        watchdog::arm();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind jwks");
        let server = JwksServer {
            addr: listener.local_addr().expect("addr"),
            scheme: if tls.is_some() { "https" } else { "http" },
            reply: Arc::new(Mutex::new(reply)),
            routes: Arc::new(Mutex::new(HashMap::new())),
            hits: Arc::new(AtomicUsize::new(0)),
            body_bytes: Arc::new(AtomicUsize::new(0)),
            path_hits: Arc::new(Mutex::new(HashMap::new())),
        };
        let state = server.clone();
        tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    return;
                };
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        None => state.serve(socket).await,
                        // A client that refuses the certificate ends the handshake: no request.
                        Some(tls) => {
                            if let Ok(socket) = tls.accept(socket).await {
                                state.serve(socket).await;
                            }
                        }
                    }
                });
            }
        });
        server
    }

    /// Answers the one request on `socket`.
    async fn serve<S>(&self, mut socket: S)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let state = self;
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        state.hits.fetch_add(1, Ordering::SeqCst);
        let path = String::from_utf8_lossy(&request)
            .split_whitespace()
            .nth(1)
            .unwrap_or("")
            .to_string();
        *state
            .path_hits
            .lock()
            .expect("hits lock")
            .entry(path.clone())
            .or_default() += 1;
        let routed = state
            .routes
            .lock()
            .expect("routes lock")
            .get(&path)
            .cloned();
        let mut reply = routed.unwrap_or_else(|| state.reply.lock().expect("reply lock").clone());
        while let Reply::Delayed(delay, inner) = reply {
            tokio::time::sleep(delay).await;
            reply = *inner;
        }
        match reply {
            Reply::Delayed(..) => unreachable!("unwrapped above"),
            // A stall lasts as long as a test may (the watchdog's bound), not longer: a test that
            // waits on one fails by the bound, whichever ends first.
            Reply::StallBody { announced, sent } => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {announced}\r\n\r\n"
                );
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&sent).await;
                tokio::time::sleep(watchdog::bound()).await;
            }
            Reply::Stall => {
                tokio::time::sleep(watchdog::bound()).await;
            }
            Reply::Respond(status, headers, body) => {
                let mut head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                    body.len()
                );
                for (k, v) in headers {
                    head.push_str(&format!("{k}: {v}\r\n"));
                }
                head.push_str("\r\n");
                let _ = socket.write_all(head.as_bytes()).await;
                state.write_body(&mut socket, &body).await;
                let _ = socket.shutdown().await;
            }
            Reply::Unsized(body) => {
                let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n";
                let _ = socket.write_all(head.as_bytes()).await;
                state.write_body(&mut socket, &body).await;
                let _ = socket.shutdown().await;
            }
        }
    }

    /// Writes `body` in 64 KiB pieces, counting what the socket took, until done or the client
    /// has gone.
    async fn write_body<S>(&self, socket: &mut S, body: &[u8])
    where
        S: tokio::io::AsyncWrite + Unpin,
    {
        for piece in body.chunks(64 << 10) {
            if socket.write_all(piece).await.is_err() {
                return;
            }
            self.body_bytes.fetch_add(piece.len(), Ordering::SeqCst);
        }
    }

    /// Body bytes written to clients so far (see the field).
    pub fn body_bytes(&self) -> usize {
        self.body_bytes.load(Ordering::SeqCst)
    }

    pub fn url(&self) -> String {
        format!("{}://{}/.well-known/jwks.json", self.scheme, self.addr)
    }

    pub fn set(&self, reply: Reply) {
        *self.reply.lock().expect("reply lock") = reply;
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Answers requests for `path` with `reply` (other paths get the default reply).
    pub fn route(&self, path: &str, reply: Reply) {
        self.routes
            .lock()
            .expect("routes lock")
            .insert(path.to_string(), reply);
    }

    /// Requests received for `path`.
    pub fn hits_on(&self, path: &str) -> usize {
        self.path_hits
            .lock()
            .expect("hits lock")
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// `http://ADDR` (or `https://`) followed by `path`.
    pub fn url_of(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }
}

/// scopegate running in-process on a loopback port.
pub struct Scopegate {
    pub addr: SocketAddr,
    pub client: AuthorizationClient<Channel>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), scopegate::serve::server::ServerError>>>,
}

impl Scopegate {
    /// Starts scopegate with the test issuer/audience, `jwks_uri`, and `extra` TOML (rules etc.).
    pub async fn start(jwks_uri: &str, extra: &str) -> Scopegate {
        let text = format!(
            "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\njwks_uri = \"{jwks_uri}\"\n{extra}"
        );
        let config = scopegate::config::RawConfig::from_toml(&text, "<test>")
            .expect("test config parses")
            .compile()
            .expect("test config compiles");
        Scopegate::start_with(config).await
    }

    /// Starts scopegate with a compiled configuration (its `listen` is ignored).
    pub async fn start_with(config: scopegate::config::Config) -> Scopegate {
        watchdog::arm();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind scopegate");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(scopegate::serve::server::serve(config, listener, async {
            let _ = stopped.await;
        }));
        let channel = Channel::from_shared(format!("http://{addr}"))
            .expect("uri")
            .connect()
            .await
            .expect("connect to scopegate");
        Scopegate {
            addr,
            client: AuthorizationClient::new(channel),
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Starts scopegate and waits until it has loaded keys (health SERVING).
    pub async fn start_ready(jwks_uri: &str, extra: &str) -> Scopegate {
        let gate = Scopegate::start(jwks_uri, extra).await;
        gate.wait_serving().await;
        gate
    }

    pub async fn check(&self, request: CheckRequest) -> CheckResponse {
        self.client
            .clone()
            .check(request)
            .await
            .expect("Check must answer in-band, never with a gRPC error")
            .into_inner()
    }

    /// Check with an optional Authorization value.
    pub async fn ask(&self, method: &str, path: &str, authorization: Option<&str>) -> Answer {
        let headers: Vec<(&str, &str)> = authorization
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        Answer::of(&self.check(request(method, path, &headers)).await)
    }

    /// Overall health status (`""`), as a `grpc.health.v1` client sees it.
    pub async fn health(&self, service: &str) -> i32 {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect()
            .await
            .expect("connect");
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        client
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status
    }

    pub async fn wait_serving(&self) {
        let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
        eventually("health SERVING", Duration::from_secs(20), || async {
            self.health("").await == serving
        })
        .await;
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task").expect("server result");
        }
    }
}

/// Polls `condition` until it holds, failing the test at `deadline`.
pub async fn eventually<F, Fut>(what: &str, deadline: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    watchdog::arm();
    let start = tokio::time::Instant::now();
    loop {
        if condition().await {
            return;
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A CheckRequest as Envoy sends it by default (headers in the `headers` map).
pub fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut map = HashMap::new();
    for (k, v) in headers {
        map.insert(k.to_string(), v.to_string());
    }
    http_request(HttpRequest {
        method: method.into(),
        path: path.into(),
        headers: map,
        ..Default::default()
    })
}

/// A CheckRequest as Envoy sends it with `encode_raw_headers: true` (headers in `header_map`).
pub fn raw_request(method: &str, path: &str, headers: &[(&str, &[u8])]) -> CheckRequest {
    let header_map = HeaderMap {
        headers: headers
            .iter()
            .map(|(k, v)| HeaderValue {
                key: k.to_string(),
                value: String::new(),
                raw_value: v.to_vec(),
            })
            .collect(),
    };
    http_request(HttpRequest {
        method: method.into(),
        path: path.into(),
        header_map: Some(header_map),
        ..Default::default()
    })
}

fn http_request(http: HttpRequest) -> CheckRequest {
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(Request {
                http: Some(http),
                ..Default::default()
            }),
            ..Default::default()
        }),
    }
}

pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A readable view of a CheckResponse.
#[derive(Debug)]
pub struct Answer {
    /// gRPC code in `CheckResponse.status`.
    pub code: i32,
    /// HTTP status for denials (0 for OK responses).
    pub http: i32,
    /// Denied response headers, or headers set upstream on OK.
    pub headers: HashMap<String, String>,
    /// Headers removed before the upstream (OK only).
    pub removed: Vec<String>,
    /// Query parameters removed before the upstream (OK only).
    pub removed_query: Vec<String>,
    /// Parsed JSON body (denials).
    pub body: Value,
}

impl Answer {
    pub fn of(response: &CheckResponse) -> Answer {
        let code = response.status.as_ref().map_or(-1, |s| s.code);
        let mut answer = Answer {
            code,
            http: 0,
            headers: HashMap::new(),
            removed: Vec::new(),
            removed_query: Vec::new(),
            body: Value::Null,
        };
        let header_pairs =
            |list: &[envoy_types::pb::envoy::config::core::v3::HeaderValueOption]| {
                list.iter()
                    .filter_map(|h| h.header.as_ref())
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect::<HashMap<_, _>>()
            };
        match &response.http_response {
            Some(HttpResponse::DeniedResponse(denied)) => {
                answer.http = denied.status.as_ref().map_or(-1, |s| s.code);
                answer.headers = header_pairs(&denied.headers);
                answer.body = serde_json::from_str(&denied.body).expect("denial body is JSON");
            }
            Some(HttpResponse::OkResponse(ok)) => {
                answer.headers = header_pairs(&ok.headers);
                answer.removed = ok.headers_to_remove.clone();
                answer.removed_query = ok.query_parameters_to_remove.clone();
            }
            Some(HttpResponse::ErrorResponse(e)) => {
                panic!("scopegate never sends ErrorResponse: {e:?}")
            }
            None => {}
        }
        answer
    }

    /// The HTTP status the client gets: 200 for an allow, else the denial's.
    pub fn status(&self) -> i32 {
        if self.code == 0 { 200 } else { self.http }
    }

    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or_default()
    }

    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or_default()
    }

    pub fn challenge(&self) -> &str {
        self.headers
            .get("www-authenticate")
            .map_or("", String::as_str)
    }

    /// Asserts an allow.
    pub fn assert_allowed(&self) {
        assert_eq!(self.code, OK, "expected allow, got {self:?}");
    }

    /// Asserts a denial with this HTTP status and `error` code, with a JSON content type.
    pub fn assert_denied(&self, http: i32, error: &str) {
        assert_ne!(self.code, OK, "expected a denial, got {self:?}");
        assert_eq!((self.http, self.error()), (http, error), "{self:?}");
        assert_eq!(
            self.headers.get("content-type").map(String::as_str),
            Some("application/json"),
            "{self:?}"
        );
    }
}

/// A test environment: one key, a JWKS server serving it, scopegate ready with `extra` config.
pub struct Env {
    pub key: TestKey,
    pub jwks: JwksServer,
    pub gate: Scopegate,
}

impl Env {
    pub async fn start(extra: &str) -> Env {
        let key = TestKey::generate("key-1");
        let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
        let gate = Scopegate::start_ready(&jwks.url(), extra).await;
        Env { key, jwks, gate }
    }

    /// Check with an optional Authorization value.
    pub async fn ask(&self, method: &str, path: &str, authorization: Option<&str>) -> Answer {
        self.gate.ask(method, path, authorization).await
    }

    /// Check with a token minted with `scope`.
    pub async fn ask_with_scope(&self, method: &str, path: &str, scope: &str) -> Answer {
        let token = self.key.mint(&claims(scope));
        self.ask(method, path, Some(&bearer(&token))).await
    }
}

/// A key of one of the curves, as the JWKS publishes it, with a signer that does not use
/// scopegate's code: jsonwebtoken for ES256/ES384/EdDSA, aws-lc-rs directly for `alg: Ed25519`
/// (RFC 9864), which jsonwebtoken does not name.
pub struct CurveKey {
    /// The public JWK.
    pub jwk: serde_json::Value,
    /// The private half, for jsonwebtoken.
    pub encoding: jsonwebtoken::EncodingKey,
    ed25519: Option<aws_lc_rs::signature::Ed25519KeyPair>,
}

impl CurveKey {
    /// A fresh key on P-256 or P-384 (`crv`).
    pub fn ec(kid: &str, crv: &str) -> CurveKey {
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
            KeyPair as _,
        };
        let alg = if crv == "P-256" {
            &ECDSA_P256_SHA256_FIXED_SIGNING
        } else {
            &ECDSA_P384_SHA384_FIXED_SIGNING
        };
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).expect("EC key");
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref()).expect("pkcs8");
        let point = pair.public_key().as_ref();
        let size = (point.len() - 1) / 2;
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        CurveKey {
            jwk: json!({"kty": "EC", "crv": crv, "kid": kid, "use": "sig",
                "x": b64(&point[1..1 + size]), "y": b64(&point[1 + size..])}),
            encoding: jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref()),
            ed25519: None,
        }
    }

    /// A fresh Ed25519 key.
    pub fn ed25519(kid: &str) -> CurveKey {
        use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&aws_lc_rs::rand::SystemRandom::new())
            .expect("Ed25519 key");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("pkcs8");
        let x = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pair.public_key().as_ref());
        CurveKey {
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": x}),
            encoding: jsonwebtoken::EncodingKey::from_ed_der(pkcs8.as_ref()),
            ed25519: Some(pair),
        }
    }

    /// The key's `kid`.
    pub fn kid(&self) -> &str {
        self.jwk["kid"].as_str().expect("kid")
    }

    /// A token minted by jsonwebtoken with `alg` and this key's kid.
    pub fn mint(&self, alg: jsonwebtoken::Algorithm, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(alg);
        header.kid = Some(self.kid().to_string());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("encode")
    }

    /// A token with `alg: Ed25519`, signed with aws-lc-rs.
    pub fn mint_ed25519(&self, claims: &serde_json::Value) -> String {
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let input = format!(
            "{}.{}",
            b64(json!({"alg": "Ed25519", "kid": self.kid()})
                .to_string()
                .as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let signature = self
            .ed25519
            .as_ref()
            .expect("an Ed25519 key")
            .sign(input.as_bytes());
        format!("{input}.{}", b64(signature.as_ref()))
    }
}

/// A command running the scopegate binary with none of the `SCOPEGATE_*` variables of the
/// environment the tests run in (they would override its configuration), arming the test's
/// [`watchdog`] (a process that never exits fails the test by its bound).
pub fn scopegate_command() -> std::process::Command {
    watchdog::arm();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_scopegate"));
    clear_scopegate_env(&mut command);
    command
}

/// Removes every `SCOPEGATE_*` variable of the tests' environment from `command`'s.
pub fn clear_scopegate_env(command: &mut std::process::Command) -> &mut std::process::Command {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("SCOPEGATE_") {
            command.env_remove(name);
        }
    }
    command
}

/// The host's target triple, as `rustc -vV` names it (for `cargo ... --filter-platform`).
pub fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let info = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV");
    String::from_utf8_lossy(&info.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_owned))
        .expect("host triple")
}
