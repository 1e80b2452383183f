//! What one client can make the gRPC server hold: streams, bytes, connections, file descriptors,
//! time. Each attack runs against the real binary (so its memory, file descriptors and CPU time
//! can be read from /proc), is bounded in time, and checks that legitimate Checks keep being
//! answered while it runs.

use std::time::Duration;

use crate::common::binary::Binary;
use crate::common::*;
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tonic::transport::Channel;

/// The scopegate binary with a test JWKS server and one protected rule.
struct Served {
    binary: Binary,
    key: TestKey,
    _jwks: JwksServer,
}

impl std::ops::Deref for Served {
    type Target = Binary;

    fn deref(&self) -> &Binary {
        &self.binary
    }
}

impl Served {
    /// Starts it with `extra` configuration, with at most `max_fds` open files if given.
    async fn start(name: &str, extra: &str, max_fds: Option<u32>) -> Served {
        let key = TestKey::generate("key-1");
        let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
        let config = format!(
            "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             jwks_uri = \"{}\"\n{extra}\n[[rules]]\npath = \"/r\"\nscopes = [\"read:messages\"]\n",
            jwks.url()
        );
        let binary = Binary::start(&format!("limits-{name}"), &config, "info", max_fds).await;
        binary.keys_loaded().await;
        Served {
            binary,
            key,
            _jwks: jwks,
        }
    }

    async fn client(&self) -> AuthorizationClient<Channel> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))
            .expect("uri")
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .connect()
            .await
            .expect("connect");
        AuthorizationClient::new(channel)
    }

    /// One legitimate Check on `client`, which must be allowed.
    async fn legitimate(&self, client: &mut AuthorizationClient<Channel>) {
        let token = self.key.mint(&claims("read:messages"));
        let response = client
            .check(request("GET", "/r", &[("authorization", &bearer(&token))]))
            .await
            .expect("a legitimate Check is answered")
            .into_inner();
        Answer::of(&response).assert_allowed();
    }
}

/// Reads from `socket` until the peer closes it (true) or `within` passes (false).
async fn closed_within(socket: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    tokio::time::timeout(within, async {
        loop {
            match socket.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await
    .is_ok()
}

/// A raw connection that has sent the HTTP/2 preface and an empty SETTINGS frame, then nothing.
async fn preface_only(addr: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.expect("connect");
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    socket
        .write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0])
        .await
        .expect("settings");
    socket
}

/// One connection opening many streams, each announcing a 4 MiB message and sending 1 MiB of it,
/// never finishing: before the limits, the server buffered every byte (1 GB in 2.3 s). Now a
/// message over `max_request_bytes` (128 KiB) is refused from its 5-byte prefix, and at most
/// `max_concurrent_streams` are open at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_flood_announcing_huge_messages_stays_bounded() {
    let served = Served::start("streams", "", None).await;
    let mut legit = served.client().await;
    served.legitimate(&mut legit).await;
    let before = served.rss_mib();

    let socket = TcpStream::connect(&served.addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(socket).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut streams = Vec::new();
    let mut refused = 0;
    let chunk = bytes::Bytes::from(vec![0u8; 64 * 1024]);
    for _ in 0..250 {
        let Ok(Ok(mut ready)) =
            tokio::time::timeout(Duration::from_secs(2), client.clone().ready()).await
        else {
            break;
        };
        let request = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://{}/envoy.service.auth.v3.Authorization/Check",
                served.addr
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let Ok((response, mut body)) = ready.send_request(request, false) else {
            refused += 1;
            continue;
        };
        // gRPC message prefix: not compressed, 4 MiB long.
        let mut prefix = vec![0u8];
        prefix.extend_from_slice(&(4u32 * 1024 * 1024).to_be_bytes());
        let _ = body.send_data(prefix.into(), false);
        for _ in 0..16 {
            if body.send_data(chunk.clone(), false).is_err() {
                break;
            }
        }
        streams.push((response, body));
    }
    // Let the server read what it will of the ~250 MB on offer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for _ in 0..10 {
        served.legitimate(&mut legit).await;
    }
    let after = served.rss_mib();
    assert!(
        after < before + 64,
        "RSS grew from {before} MiB to {after} MiB under the stream flood"
    );
    // The streams that got an answer were refused for their size, not served.
    let mut answered = 0;
    for (response, _) in streams.drain(..).take(20) {
        if let Ok(Ok(response)) = tokio::time::timeout(Duration::from_millis(200), response).await {
            answered += 1;
            let status = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            assert_eq!(status, "11", "OUT_OF_RANGE: {response:?}");
        }
    }
    assert!(
        answered > 0,
        "no oversized stream was answered ({refused} refused)"
    );
}

/// A single 3 MB Check (150,000 headers) is refused with OUT_OF_RANGE from its length
/// prefix, before it is buffered or parsed (it used to cost ~65 ms of CPU each). It can only be a
/// gRPC error, which Envoy's `failure_mode_allow: true` would let through: Envoy itself never
/// sends one that large (its own request headers are limited to 60 KiB by default).
#[tokio::test]
async fn a_huge_check_is_refused_before_it_is_read() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Scopegate::start_ready(
        &jwks.url(),
        "[[rules]]\npath = \"/r\"\nscopes = [\"read:messages\"]\n",
    )
    .await;
    let headers: Vec<(String, String)> = (0..150_000)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    let header_refs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let error = gate
        .client
        .clone()
        .check(request("GET", "/r", &header_refs))
        .await
        .expect_err("a 3 MB Check is refused");
    // tonic's answer to a message over the decoding limit is OUT_OF_RANGE.
    assert_eq!(error.code(), tonic::Code::OutOfRange, "{error}");
    // Just under the limit (128 KiB) is still read and decided.
    let token = key.mint(&claims("read:messages"));
    let padding = "p".repeat(120 * 1024);
    gate.ask("GET", "/r", Some(&bearer(&token)))
        .await
        .assert_allowed();
    let answer = Answer::of(
        &gate
            .check(request(
                "GET",
                "/r",
                &[("authorization", &bearer(&token)), ("x-padding", &padding)],
            ))
            .await,
    );
    answer.assert_allowed();
    gate.stop().await;
}

/// Connections that never send the HTTP/2 preface are closed after `handshake_timeout_seconds`,
/// connections that send it but no request after `idle_timeout_seconds`, and beyond
/// `max_connections` a new one is closed at once. Before, 2,000 such connections stayed open for
/// ever. A client already connected, sending Checks, is served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_idle_and_surplus_connections_are_closed() {
    let served = Served::start(
        "connections",
        "[server]\nmax_connections = 40\nhandshake_timeout_seconds = 1\nidle_timeout_seconds = 3\n",
        None,
    )
    .await;
    let mut legit = served.client().await;
    served.legitimate(&mut legit).await;
    let fds_before = served.fds();

    // 20 silent connections, 19 that send the preface and stop: 40 with the legitimate one.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(&served.addr).await.expect("connect"));
    }
    let mut idle = Vec::new();
    for _ in 0..19 {
        idle.push(preface_only(&served.addr).await);
    }
    // The accept loop has taken all 39: a descriptor each in the process.
    eventually(
        "the 39 connections accepted",
        Duration::from_secs(10),
        || async { served.fds() >= fds_before + 39 },
    )
    .await;
    // Over the cap: closed at once.
    let mut surplus = TcpStream::connect(&served.addr).await.expect("connect");
    assert!(
        closed_within(&mut surplus, Duration::from_millis(500)).await,
        "a connection over max_connections must be closed at once"
    );
    // The connected client is still served.
    served.legitimate(&mut legit).await;

    // The silent ones go after the handshake timeout (1 s).
    for socket in &mut silent {
        assert!(
            closed_within(socket, Duration::from_secs(3)).await,
            "a connection without the HTTP/2 preface must be closed after the handshake timeout"
        );
    }
    // Slots are free again: a new client connects and is served.
    let mut second = served.client().await;
    served.legitimate(&mut second).await;
    // The idle ones go after the idle timeout (3 s), while the clients that keep sending Checks
    // stay: they are active.
    let legit_loop = async {
        for _ in 0..30 {
            served.legitimate(&mut legit).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let closes = async {
        for socket in &mut idle {
            assert!(
                closed_within(socket, Duration::from_secs(6)).await,
                "an HTTP/2 connection without requests must be closed after the idle timeout"
            );
        }
    };
    tokio::join!(legit_loop, closes);
    served.legitimate(&mut legit).await;
    drop(second);
    eventually(
        "file descriptors released",
        Duration::from_secs(5),
        || async { served.fds() <= fds_before + 1 },
    )
    .await;
}

/// With its file descriptors exhausted, the accept loop backs off instead of retrying at once
/// (which spun a core, starved Checks and failed the JWKS fetches), and recovers when
/// descriptors are free again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_backs_off_and_recovers() {
    let served = Served::start(
        "fds",
        "[server]\nhandshake_timeout_seconds = 60\n",
        Some(48),
    )
    .await;
    let mut legit = served.client().await;
    served.legitimate(&mut legit).await;
    assert!(
        served
            .log_text()
            .contains("open-file limit is below server.max_connections"),
        "a cap the descriptors cannot reach is warned about at start-up"
    );
    // More silent connections than the process has descriptors left.
    let mut flood = Vec::new();
    for _ in 0..80 {
        if let Ok(Ok(socket)) =
            tokio::time::timeout(Duration::from_secs(1), TcpStream::connect(&served.addr)).await
        {
            flood.push(socket);
        }
    }
    eventually(
        "the accept loop hits EMFILE",
        Duration::from_secs(5),
        || async { served.log_text().contains("backing off") },
    )
    .await;
    // Two seconds at the limit: a spinning accept loop burns ~200 ticks; a backing-off one, a few.
    let ticks = served.cpu_ticks();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = served.cpu_ticks() - ticks;
    assert!(
        used < 40,
        "{used} ticks of CPU in 2 s while out of file descriptors"
    );
    // The connected client is still served.
    served.legitimate(&mut legit).await;
    // Descriptors come back: new connections are accepted again.
    drop(flood);
    let mut fresh = tokio::time::timeout(Duration::from_secs(10), served.client())
        .await
        .expect("a new connection is accepted once descriptors are free");
    served.legitimate(&mut fresh).await;
}

/// HTTP/2 keepalive pings go out every `keepalive_interval_seconds`, and a connection older than
/// `max_connection_age_seconds` is told to go away (GOAWAY).
#[tokio::test]
async fn keepalive_pings_and_connection_age() {
    let served = Served::start(
        "keepalive",
        "[server]\nkeepalive_interval_seconds = 1\nmax_connection_age_seconds = 2\n",
        None,
    )
    .await;
    let mut socket = preface_only(&served.addr).await;
    let (mut ping, mut goaway) = (false, false);
    let read_frames = async {
        let mut header = [0u8; 9];
        while !(ping && goaway) {
            if socket.read_exact(&mut header).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            if socket.read_exact(&mut payload).await.is_err() {
                break;
            }
            match header[3] {
                // A PING that is not an ACK: answer it, as a live client would.
                0x6 if header[4] & 1 == 0 => {
                    ping = true;
                    let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    ack.extend_from_slice(&payload);
                    let _ = socket.write_all(&ack).await;
                }
                0x7 => goaway = true,
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(8), read_frames).await;
    assert!(ping, "no keepalive PING within 8 s (interval 1 s)");
    assert!(goaway, "no GOAWAY within 8 s (maximum age 2 s)");
}

/// A Check that waits past `check_timeout_ms` (here, on an unknown-kid refetch from an issuer
/// that does not answer) is answered in-band with 503, before Envoy's own timeout would turn it
/// into an error (or, failing open, an allow).
#[tokio::test]
async fn a_check_past_its_deadline_is_answered_in_band() {
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Scopegate::start_ready(
        &jwks.url(),
        "unknown_kid_wait_ms = 5000\n[server]\ncheck_timeout_ms = 200\n\
         [[rules]]\npath = \"/r\"\nscopes = [\"read:messages\"]\n",
    )
    .await;
    jwks.set(Reply::Stall);
    let stranger = TestKey::generate("rotated");
    let token = stranger.mint(&claims("read:messages"));
    let answer = tokio::time::timeout(
        Duration::from_secs(2),
        gate.ask("GET", "/r", Some(&bearer(&token))),
    )
    .await
    .expect("answered near the 200 ms deadline, not after the 5 s wait");
    answer.assert_denied(503, "temporarily_unavailable");
    assert_eq!(answer.message(), "authorization check timed out");
    assert_eq!(
        answer.headers.get("retry-after").map(String::as_str),
        Some("1")
    );
    // Tokens of known keys are not held up.
    gate.ask(
        "GET",
        "/r",
        Some(&bearer(&key.mint(&claims("read:messages")))),
    )
    .await
    .assert_allowed();
    gate.stop().await;
}

/// `server.worker_threads` sets how many runtime threads run Checks: 1 for a sidecar that
/// shares its cores with Envoy (the current-thread scheduler: everything on the main thread);
/// by default one per CPU.
#[tokio::test]
async fn worker_threads_sets_the_runtime_threads() {
    // A JWKS that never answers: no key set is parsed, so no blocking-pool thread (tokio
    // names those like its workers) is started beside the workers.
    let jwks = JwksServer::start(Reply::Stall).await;
    // (threads named as tokio's workers, all threads)
    let threads = |pid: u32| {
        let names: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("tasks")
            .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
            .collect();
        let workers = names
            .iter()
            .filter(|n| n.trim() == "tokio-rt-worker")
            .count();
        (workers, names.len())
    };
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    for (setting, want) in [("worker_threads = 1", (0, 1)), ("", (cpus, cpus + 1))] {
        let config = format!(
            "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             jwks_uri = \"{}\"\n[server]\n{setting}\n",
            jwks.url()
        );
        let binary = Binary::start("workers", &config, "info", None).await;
        assert_eq!(threads(binary.pid()), want, "{setting:?}");
    }
}
