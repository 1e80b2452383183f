//! The gRPC surface as tools see it: server reflection (what `grpcurl list`/`describe` use),
//! `grpc.health.v1`, in-band answers to odd requests, and graceful shutdown.

use crate::common::*;
use envoy_types::pb::envoy::service::auth::v3::CheckRequest;
use tonic::transport::Channel;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn reflect(gate: &Scopegate, request: MessageRequest) -> MessageResponse {
    let channel = Channel::from_shared(format!("http://{}", gate.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    reflect_on(channel, request).await
}

/// The services reflection lists on `channel` (plaintext or TLS).
pub async fn reflection_services(channel: Channel) -> Vec<String> {
    let MessageResponse::ListServicesResponse(list) =
        reflect_on(channel, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list");
    };
    list.service.into_iter().map(|s| s.name).collect()
}

async fn reflect_on(channel: Channel, request: MessageRequest) -> MessageResponse {
    let mut client = ServerReflectionClient::new(channel);
    let outbound = tokio_stream::iter(vec![ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    }]);
    let mut inbound = client
        .server_reflection_info(outbound)
        .await
        .expect("reflection call")
        .into_inner();
    inbound
        .message()
        .await
        .expect("reflection stream")
        .expect("one reflection response")
        .message_response
        .expect("a response body")
}

#[tokio::test]
async fn reflection_lists_the_services() {
    let env = Env::start("").await;
    let MessageResponse::ListServicesResponse(list) =
        reflect(&env.gate, MessageRequest::ListServices(String::new())).await
    else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "envoy.service.auth.v3.Authorization",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
        ]
    );
    env.gate.stop().await;
}

#[tokio::test]
async fn reflection_describes_the_authorization_service() {
    let env = Env::start("").await;
    let symbol = "envoy.service.auth.v3.Authorization".to_string();
    let MessageResponse::FileDescriptorResponse(files) =
        reflect(&env.gate, MessageRequest::FileContainingSymbol(symbol)).await
    else {
        panic!("expected file descriptors");
    };
    let all: Vec<u8> = files.file_descriptor_proto.concat();
    let text = String::from_utf8_lossy(&all);
    for needle in [
        "envoy/service/auth/v3/external_auth.proto",
        "CheckRequest",
        "CheckResponse",
        "DeniedHttpResponse",
        "envoy/service/auth/v3/attribute_context.proto",
    ] {
        assert!(text.contains(needle), "descriptor should mention {needle}");
    }
    env.gate.stop().await;
}

#[tokio::test]
async fn health_reports_serving_once_keys_are_loaded() {
    let env = Env::start("").await;
    let serving = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
    assert_eq!(env.gate.health("").await, serving);
    assert_eq!(
        env.gate.health("envoy.service.auth.v3.Authorization").await,
        serving
    );
    env.gate.stop().await;
}

#[tokio::test]
async fn liveness_is_serving_while_the_key_dependent_entries_are_not() {
    use scopegate::serve::server::{AUTHORIZATION_SERVICE, LIVENESS_SERVICE};
    use tonic_health::pb::health_check_response::ServingStatus;
    let (serving, not_serving) = (
        ServingStatus::Serving as i32,
        ServingStatus::NotServing as i32,
    );
    // The identity provider is down: no key set ever loads.
    let key = TestKey::generate("liveness-kid");
    let jwks = JwksServer::start(Reply::Respond(503, vec![], vec![])).await;
    let gate = Scopegate::start(&jwks.url(), "").await;
    for (service, expected) in [
        ("", not_serving),
        (AUTHORIZATION_SERVICE, not_serving),
        (LIVENESS_SERVICE, serving),
    ] {
        assert_eq!(
            gate.health(service).await,
            expected,
            "{service:?}, IdP down"
        );
    }
    // It comes back: readiness follows, liveness never moved.
    jwks.set(Reply::json(&jwks_of(&[&key])));
    gate.wait_serving().await;
    for service in ["", AUTHORIZATION_SERVICE, LIVENESS_SERVICE] {
        assert_eq!(
            gate.health(service).await,
            serving,
            "{service:?}, keys loaded"
        );
    }
    gate.stop().await;
}

#[tokio::test]
async fn a_check_without_http_attributes_is_denied_in_band() {
    let env = Env::start("default = \"allow\"").await;
    let answer = Answer::of(&env.gate.check(CheckRequest::default()).await);
    answer.assert_denied(400, "invalid_request");
    env.gate.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_completes_and_closes_the_port() {
    let env = Env::start("").await;
    let addr = env.gate.addr;
    env.ask_with_scope("GET", "/x", "").await.assert_allowed();
    env.gate.stop().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the port must be closed after shutdown"
    );
}

#[tokio::test]
async fn shutdown_gives_up_on_streams_that_never_end_after_the_drain_timeout() {
    let env = Env::start("").await;
    // A reflection stream whose client never finishes sending keeps one call open forever.
    let channel = Channel::from_shared(format!("http://{}", env.gate.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    tx.send(ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    })
    .await
    .expect("queue request");
    let mut inbound = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream opens")
        .into_inner();
    inbound
        .message()
        .await
        .expect("answer")
        .expect("one message");

    // With the clock paused, the 10 s drain timeout elapses as soon as everything is idle; without
    // the timeout this stop would never return.
    tokio::time::pause();
    env.gate.stop().await;
    drop(tx);
}

/// Runs `scopegate health ARGS` off the async runtime and returns whether it exited 0.
async fn probe(args: Vec<String>) -> bool {
    tokio::task::spawn_blocking(move || {
        crate::common::scopegate_command()
            .arg("health")
            .args(&args)
            .output()
            .expect("run scopegate health")
            .status
            .success()
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probe_subcommand_reports_serving_and_not_serving() {
    let env = Env::start("").await;
    assert!(probe(vec!["--grpc".into(), env.gate.addr.to_string()]).await);
    assert!(probe(vec!["--http".into(), env.jwks.url()]).await);

    let down = JwksServer::start(Reply::Respond(503, vec![], vec![])).await;
    let not_ready = Scopegate::start(&down.url(), "").await;
    assert!(
        !probe(vec!["--grpc".into(), not_ready.addr.to_string()]).await,
        "NOT_SERVING must fail the probe"
    );
    assert!(
        !probe(vec!["--http".into(), down.url()]).await,
        "a 503 must fail the probe"
    );
    not_ready.stop().await;
    let addr = env.gate.addr.to_string();
    env.gate.stop().await;
    assert!(
        !probe(vec!["--grpc".into(), addr]).await,
        "nothing listening"
    );
}
