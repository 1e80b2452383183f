//! What tracing costs per Check, in one run: the live decision (`decide::check`, the step every
//! transport calls) of a cached token, with tracing off, on but unsampled (no parent and
//! `sample_ratio` 0; an unsampled parent in the metadata, as Envoy sends when it traces but did
//! not sample), and on and sampled (a sampled parent: the `scopegate.check` span made, its
//! attributes set, ended and queued for export).
//!
//! Spans go to an OTLP receiver in this process (a `TraceService` that discards what it gets),
//! so the exporter really encodes and sends them; its work runs on the SDK's export thread, not
//! on the Check's, and is reported apart: that thread's CPU time (from `/proc`) per span
//! exported.
//!
//! Also, alone, what an unsampled Check adds: the `traceparent` read and the decision not to
//! sample.
//!
//! Run: `cargo bench --bench tracing`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use scopegate::auth::jwks::Jwks;
use scopegate::auth::keys::KeySet;
use scopegate::auth::verify;
use scopegate::config::RawConfig;
use scopegate::decide::{self, Generation, Request};
use scopegate::telemetry::metrics::{Metrics, Transport};
use scopegate::telemetry::traces::Tracer;
use serde_json::json;

const NOW: u64 = 1_800_000_000;

/// A receiver that takes every export and keeps nothing.
struct Discard;

#[tonic::async_trait]
impl TraceService for Discard {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        black_box(request);
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// A token, its key set and a configuration, as `benches/decision.rs` makes them.
fn setup(tracing: &str) -> (String, KeySet, scopegate::config::Config) {
    let pair = KeyPair::generate(KeySize::Rsa2048).expect("key");
    let public = pair.public_key();
    let jwks = json!({"keys": [{
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "bench",
        "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
        "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
    }]});
    let (keys, _) = KeySet::parse(
        jwks.to_string().as_bytes(),
        &[verify::Algorithm::RS256],
        100,
    )
    .expect("jwks");
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "bench"});
    let claims = json!({
        "iss": "https://tenant.example/", "sub": "auth0|bench",
        "aud": ["https://api.example", "https://tenant.example/userinfo"],
        "iat": NOW, "exp": NOW + 3600, "azp": "client",
        "scope": "openid profile email read:messages write:messages",
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
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
    let config = RawConfig::from_toml(
        &format!(
            r#"
            issuer = "https://tenant.example/"
            audience = "https://api.example"
            [[rules]]
            name = "messages read"
            path = "/restricted_resource"
            scopes = ["read:messages"]
            {tracing}
            "#
        ),
        "<bench>",
    )
    .expect("toml")
    .compile()
    .expect("config");
    (format!("Bearer {token}"), keys, config)
}

/// A generation deciding with `config` and `keys`, tracing with `tracer`.
fn generation(
    config: scopegate::config::Config,
    keys: KeySet,
    tracer: Option<Tracer>,
) -> Generation {
    let config = Arc::new(config);
    let jwks = Jwks::new(config.issuers()[0].jwks.clone());
    jwks.install(keys);
    Generation::new(config, vec![jwks]).traced(tracer)
}

/// CPU ticks (user + system) of this process's thread named `name`, from `/proc`.
fn thread_ticks(name: &str) -> Option<u64> {
    // A thread may end while the list is read: skip what cannot be read.
    for task in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let dir = task.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        if comm.trim_end() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        let utime: u64 = fields.get(11)?.parse().ok()?;
        let stime: u64 = fields.get(12)?.parse().ok()?;
        return Some(utime + stime);
    }
    None
}

fn bench(c: &mut Criterion) {
    // The receiver and the exporter's connection run here; the Checks on a thread of their own.
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = background
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let collector = listener.local_addr().expect("addr");
    background.spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Discard))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let tracing = format!("[tracing]\notlp_endpoint = \"http://{collector}\"\n");

    let (authorization, keys, config) = setup("");
    let off = generation(config, keys, None);
    let (traced_authorization, keys, config) = setup(&tracing);
    let metrics = Metrics::new();
    let dropped = metrics.trace_spans_dropped();
    let tracer = {
        let _entered = background.enter();
        Tracer::start(
            config.tracing().expect("[tracing]").export(),
            dropped.clone(),
        )
        .expect("exporter")
    };
    let on = generation(config, keys, Some(tracer.clone()));

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    // What an unsampled Check adds, alone: reading the metadata's traceparent (or finding
    // none) and deciding that no span is made.
    c.bench_function("tracing alone: no parent, sample_ratio 0", |b| {
        b.iter(|| tracer.start_check(black_box(None), black_box("GET")))
    });
    c.bench_function(
        "tracing alone: an unsampled traceparent read and followed",
        |b| {
            b.iter(|| {
                let parent = tracer.parent(black_box(&[unsampled]), black_box(&[]));
                tracer.start_check(parent.as_ref(), black_box("GET"))
            })
        },
    );
    // The full W3C parse, which a sampled parent (or any, with sample_ratio > 0) gets.
    c.bench_function("tracing alone: a traceparent parsed in full", |b| {
        b.iter(|| {
            scopegate::telemetry::traces::parent_context(black_box(&[sampled]), black_box(&[]))
        })
    });
    let mut sampled_checks = 0u64;
    let export_ticks_before = thread_ticks("OpenTelemetry.T");
    for (name, generation, authorization, parent) in [
        ("tracing off", &off, &authorization, None),
        (
            "tracing on, no parent, sample_ratio 0",
            &on,
            &traced_authorization,
            None,
        ),
        (
            "tracing on, unsampled parent",
            &on,
            &traced_authorization,
            Some(unsampled),
        ),
        (
            "tracing on, sampled parent",
            &on,
            &traced_authorization,
            Some(sampled),
        ),
    ] {
        let mut view = Request::new("GET", "/restricted_resource");
        view.push_header("authorization", authorization);
        if let Some(parent) = parent {
            view = view.with_trace_context(vec![parent], Vec::new());
        }
        c.bench_function(&format!("cached Check: {name}"), |b| {
            b.iter_custom(|iters| {
                let started = Instant::now();
                rt.block_on(async {
                    for _ in 0..iters {
                        let decided = decide::check(
                            generation,
                            &view,
                            NOW,
                            Transport::grpc,
                            &metrics,
                            Instant::now(),
                        )
                        .await;
                        assert_eq!(decided.labels.status, 200);
                    }
                });
                if parent == Some(sampled) {
                    sampled_checks += iters;
                }
                started.elapsed()
            })
        });
    }
    // Read before the shutdown ends the export thread; what is still queued (at most
    // QUEUE_SPANS) is left out of the count.
    let export_ticks_after = thread_ticks("OpenTelemetry.T");
    let dropped = dropped.get();
    let exported = sampled_checks
        .saturating_sub(dropped)
        .saturating_sub(scopegate::telemetry::traces::QUEUE_SPANS as u64);
    tracer.shutdown(std::time::Duration::from_secs(10));
    match (export_ticks_before, export_ticks_after) {
        (Some(before), Some(after)) if exported > 0 => {
            // Ticks are 10 ms (USER_HZ 100).
            let nanos = (after - before) as f64 * 10_000_000.0 / exported as f64;
            println!(
                "export thread: {:.0} ns CPU per span exported ({exported} exported, {dropped} dropped)",
                nanos
            );
        }
        _ => println!("export thread: not found in /proc ({exported} exported, {dropped} dropped)"),
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
