//! What metrics and decision logging cost per Check.
//!
//! - Counting one Check in the metrics (`Metrics::check`: the counter and the histogram), alone.
//! - The same Checks over gRPC against two scopegate servers started side by side in this
//!   process, one with `decision_log = "off"` and one with `"all"`, with a JSON log subscriber
//!   (fields flattened, as `--log-format json` writes them) that discards its output: the
//!   difference is the cost of building and formatting one decision line per Check.
//!
//! Run: `cargo bench --bench observability`

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use scopegate::telemetry::metrics::{Decision, Metrics, Reason, Transport};

mod support;
use support::{check, concurrent, runtime, start};

const IN_FLIGHT: u64 = 32;

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new();
    let rule: Arc<str> = "messages read".into();
    c.bench_function("metrics: count one Check", |b| {
        b.iter(|| {
            metrics.check(
                Transport::grpc,
                Decision::allow,
                200,
                Reason::authorized,
                &rule,
                Duration::from_micros(40),
            )
        })
    });

    tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_writer(std::io::sink)
        .with_env_filter("info")
        .init();
    let rt = runtime();
    for mode in ["off", "all"] {
        let (client, token) = rt.block_on(start(&format!("decision_log = \"{mode}\"")));
        let request = check("/restricted_resource", Some(&format!("Bearer {token}")));
        c.bench_function(
            &format!("grpc Check, {IN_FLIGHT} in flight, valid token: decision_log = {mode}"),
            |b| b.iter_custom(|iters| concurrent(&rt, &client, &request, 0, IN_FLIGHT, iters)),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
