//! One `Check` over gRPC on loopback, as Envoy makes it: a tonic client calls the real scopegate
//! server (started in-process, keys from the development issuer's JWKS). This is the hop that
//! scopegate owns: HTTP/2 framing, protobuf decoding and encoding, and the decision. The client's
//! own cost is included, so read the numbers as an upper bound for the server.
//!
//! Run: `cargo bench --bench grpc_check`

use criterion::{Criterion, criterion_group, criterion_main};

mod support;
use support::{check, concurrent, runtime, start};

/// Requests in flight in the concurrent runs, as Envoy multiplexes Checks on one connection.
const IN_FLIGHT: u64 = 32;

fn bench(c: &mut Criterion) {
    let rt = runtime();
    let (client, token) = rt.block_on(start(""));
    let bearer = format!("Bearer {token}");
    for (name, request, want) in [
        (
            "valid RS256 token, scoped route (allow)",
            check("/restricted_resource", Some(&bearer)),
            0,
        ),
        (
            "public route, no verification (allow)",
            check("/public", None),
            0,
        ),
        (
            "no token, scoped route (401 denial)",
            check("/restricted_resource", None),
            16,
        ),
    ] {
        // One at a time: the latency of a round trip (mostly thread wake-ups on loopback).
        c.bench_function(&format!("grpc Check, one at a time: {name}"), |b| {
            b.iter(|| {
                let answer = rt
                    .block_on(client.clone().check(request.clone()))
                    .expect("in-band")
                    .into_inner();
                assert_eq!(answer.status.as_ref().map(|s| s.code), Some(want), "{name}");
                answer
            })
        });
        // Many in flight: time per Check when the machine is busy with them, which is what
        // bounds throughput (client and server share the same cores here).
        c.bench_function(&format!("grpc Check, {IN_FLIGHT} in flight: {name}"), |b| {
            b.iter_custom(|iters| concurrent(&rt, &client, &request, want, IN_FLIGHT, iters))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
