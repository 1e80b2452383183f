//! The Unix socket listener of the real binary: Checks and the health probe through it, the
//! socket's mode, a stale socket file replaced, and any other file in the way left alone.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::time::Duration;

use crate::common::binary::Binary;
use crate::common::*;

fn config(socket: &std::path::Path, jwks_uri: &str) -> String {
    format!(
        "listen = \"unix:{}\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"{jwks_uri}\"\n[[rules]]\npath = \"/r\"\nscopes = [\"read\"]\n",
        socket.display()
    )
}

#[tokio::test]
async fn checks_and_health_over_a_unix_socket_with_a_stale_socket_replaced() {
    let dir = tempfile::tempdir().expect("dir");
    let socket = dir.path().join("authz.sock");
    // A socket file left by an earlier run, with nobody listening.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("stale socket"));
    assert!(socket.exists());
    let key = TestKey::generate("uds-kid");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let binary = Binary::start("uds", &config(&socket, &jwks.url()), "info", None).await;
    binary.keys_loaded().await;
    assert_eq!(binary.addr, format!("unix:{}", socket.display()));
    let meta = std::fs::symlink_metadata(&socket).expect("socket");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
    assert!(binary.log_text().contains("removed a stale socket file"));

    let channel = scopegate::tools::probe::unix_channel(socket.clone(), Duration::from_secs(5))
        .await
        .expect("connect over the socket");
    let mut client =
        envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient::new(
            channel,
        );
    let answer = client
        .check(request(
            "GET",
            "/r",
            &[("authorization", &bearer(&key.mint(&claims("read"))))],
        ))
        .await
        .expect("in-band")
        .into_inner();
    Answer::of(&answer).assert_allowed();
    let probe = crate::common::scopegate_command()
        .args(["health", "--grpc", &binary.addr])
        .output()
        .expect("probe");
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );

    // A second instance on the same socket refuses to take it over.
    let out = crate::common::scopegate_command()
        .args([
            "serve",
            "--config",
            binary.config_path().to_str().expect("utf8"),
        ])
        .env_remove("SCOPEGATE_LISTEN")
        .output()
        .expect("second instance");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another process is listening on it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Shutdown removes the socket file.
    let mut binary = binary;
    binary.terminate().await;
    eventually("the socket file gone", Duration::from_secs(5), || async {
        !socket.exists()
    })
    .await;
}

#[test]
fn a_file_that_is_not_a_socket_is_never_removed() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("authz.sock");
    std::fs::write(&path, "precious").expect("write");
    let config = dir.path().join("config.toml");
    std::fs::write(&config, self::config(&path, "http://127.0.0.1:9/jwks.json")).expect("write");
    let out = crate::common::scopegate_command()
        .args(["serve", "--config", config.to_str().expect("utf8")])
        .env_remove("SCOPEGATE_LISTEN")
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a socket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&path).expect("still there"),
        "precious"
    );
}
