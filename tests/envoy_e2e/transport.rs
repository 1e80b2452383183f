//! The hop from Envoy to scopegate over mutual TLS (`envoy/envoy-tls.yaml`) and a Unix socket
//! (`envoy/envoy-uds.yaml`): health checks and Checks travel over it, decisions as over plaintext.

use crate::common::stack::Stack;
use crate::support::{json, scopegates_denial};

/// Envoy → scopegate over mutual TLS with the shipped `envoy/envoy-tls.yaml`: health checks and
/// Checks both travel over TLS with Envoy's client certificate, and every decision comes
/// through as over plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_talks_to_scopegate_over_mutual_tls() {
    let stack = Stack::start_mtls().await;
    scopegates_denial(
        stack.get("/restricted_resource", &[]).await,
        401,
        "unauthorized",
        "no token",
    )
    .await;
    let weak = format!("Bearer {}", stack.token("openid"));
    scopegates_denial(
        stack
            .get("/restricted_resource", &[("authorization", &weak)])
            .await,
        403,
        "insufficient_scope",
        "without the scope",
    )
    .await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let (status, _, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", &good)])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Access Granted");
    assert!(
        stack.stat("cluster.scopegate.ssl.handshake").await > 0,
        "the Checks went over TLS"
    );
    assert_eq!(
        stack.stat("cluster.scopegate.ssl.connection_error").await,
        0
    );
}

/// Envoy → scopegate over a Unix socket with the shipped `envoy/envoy-uds.yaml` (a `pipe`
/// address): health checks and Checks both go through the socket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_talks_to_scopegate_over_a_unix_socket() {
    let stack = Stack::start_uds().await;
    scopegates_denial(
        stack.get("/restricted_resource", &[]).await,
        401,
        "unauthorized",
        "no token",
    )
    .await;
    let good = format!("Bearer {}", stack.token("read:messages"));
    let (status, _, body) = json(
        stack
            .get("/restricted_resource", &[("authorization", &good)])
            .await,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(stack.stat("cluster.scopegate.upstream_rq_completed").await > 0);
    assert!(
        stack.stat("cluster.scopegate.health_check.success").await > 0,
        "gRPC health checks over the socket"
    );
}
