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
/// prefix (over `server.max_request_bytes`, 128 KiB by default), before it is buffered or parsed (it used to cost ~65 ms of CPU each). It can only be a
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
/// One HTTP/2 frame as read off the wire: type, flags, stream id, payload.
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    payload: Vec<u8>,
}

/// The next frame on `socket`, or `None` once the peer has closed it.
async fn read_frame(socket: &mut TcpStream) -> Option<Frame> {
    let mut header = [0u8; 9];
    socket.read_exact(&mut header).await.ok()?;
    let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; len];
    socket.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: header[3],
        flags: header[4],
        stream: u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// A frame of `kind` with `flags` on `stream`, as bytes to write.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len())
        .expect("small frame")
        .to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

const PING: u8 = 0x6;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
/// RST_STREAM's code for a stream the server would not take (RFC 9113 §7).
const REFUSED_STREAM: u32 = 0x7;

/// The HEADERS of a Check on `stream` whose request never ends (no END_STREAM, no body): HPACK
/// literals without indexing, so no encoder state is needed.
fn check_headers(stream: u32) -> Vec<u8> {
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "scopegate"),
        (":path", "/envoy.service.auth.v3.Authorization/Check"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        block.push(0);
        block.push(u8::try_from(name.len()).expect("short name"));
        block.extend_from_slice(name.as_bytes());
        block.push(u8::try_from(value.len()).expect("short value"));
        block.extend_from_slice(value.as_bytes());
    }
    // END_HEADERS only.
    frame(0x1, 0x4, stream, &block)
}

/// Reads frames until the ACK of a PING carrying `payload` (sent after everything it must
/// follow): the server has then read every frame sent before it. Returns the RST_STREAMs seen
/// on the way, as (stream, error code).
async fn until_pong(socket: &mut TcpStream, payload: [u8; 8]) -> Vec<(u32, u32)> {
    socket
        .write_all(&frame(PING, 0, 0, &payload))
        .await
        .expect("ping");
    let mut resets = Vec::new();
    let read = async {
        loop {
            let frame = read_frame(socket).await.expect("the connection stays open");
            match frame.kind {
                PING if frame.flags & 1 == 1 && frame.payload == payload => return,
                RST_STREAM => {
                    let code: [u8; 4] = frame.payload[..4].try_into().expect("4-byte code");
                    resets.push((frame.stream, u32::from_be_bytes(code)));
                }
                GOAWAY => panic!("GOAWAY: {:?}", frame.payload),
                _ => {}
            }
        }
    };
    // Only a guard against a hang: the answer normally takes milliseconds.
    tokio::time::timeout(Duration::from_secs(20), read)
        .await
        .expect("PING answered");
    resets
}

/// A connection holds at most `max_concurrent_streams` streams (100 by default) at once,
/// counted on the wire: the server announces 100 in its SETTINGS, takes 100 Checks whose
/// requests never end, and refuses the 101st (RST_STREAM REFUSED_STREAM), which a client that
/// ignored the announcement opened anyway. Once the client ends one, the next is taken. The
/// raw frames show the server's own count: an HTTP/2 client library would hold the 101st back.
#[tokio::test]
async fn a_connection_holds_100_streams_and_the_101st_is_refused() {
    let served = Served::start("stream-cap", "", None).await;
    let mut socket = TcpStream::connect(&served.addr).await.expect("connect");
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    socket
        .write_all(&frame(SETTINGS, 0, 0, &[]))
        .await
        .expect("settings");
    let settings = tokio::time::timeout(Duration::from_secs(20), read_frame(&mut socket))
        .await
        .expect("server settings")
        .expect("server settings");
    assert_eq!(settings.kind, SETTINGS);
    let announced = settings
        .payload
        .chunks(6)
        .find(|s| s[..2] == [0, 3])
        .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]));
    assert_eq!(announced, Some(100), "SETTINGS_MAX_CONCURRENT_STREAMS");
    socket
        .write_all(&frame(SETTINGS, 1, 0, &[]))
        .await
        .expect("settings ack");

    // Streams 1, 3, …, 201: one more than the cap, all at once.
    let mut flood = Vec::new();
    for n in 0..101 {
        flood.extend(check_headers(1 + 2 * n));
    }
    socket.write_all(&flood).await.expect("headers");
    let mut resets = until_pong(&mut socket, *b"streams1").await;
    resets.extend(until_pong(&mut socket, *b"streams2").await);
    assert_eq!(resets, [(201, REFUSED_STREAM)], "only the 101st is refused");

    // The client ends stream 1: the next stream is taken.
    let cancel = 0x8u32.to_be_bytes();
    socket
        .write_all(&frame(RST_STREAM, 0, 1, &cancel))
        .await
        .expect("reset");
    socket
        .write_all(&check_headers(203))
        .await
        .expect("headers");
    let mut resets = until_pong(&mut socket, *b"streams3").await;
    resets.extend(until_pong(&mut socket, *b"streams4").await);
    assert_eq!(resets, [], "a freed stream is taken again");
    // Connected clients are served meanwhile.
    let mut legit = served.client().await;
    served.legitimate(&mut legit).await;
}

/// A peer that stops answering keepalive PINGs is closed by the keepalive, not by anything
/// else: connection age and idle time are an hour here. A second connection that answers
/// every PING is still open when the silent one is closed, so the close is the missed answer,
/// not the time the connection had been open.
#[tokio::test]
async fn a_peer_that_stops_answering_pings_is_closed_and_one_that_answers_is_not() {
    let served = Served::start(
        "dead-peer",
        // A timeout of 5 s, so that the live peer, however slowly a loaded machine runs it,
        // answers in time.
        "[server]\nkeepalive_interval_seconds = 1\nkeepalive_timeout_seconds = 5\n\
         max_connection_age_seconds = 3600\nidle_timeout_seconds = 3600\n",
        None,
    )
    .await;
    let mut silent = preface_only(&served.addr).await;
    let mut live = preface_only(&served.addr).await;
    // The live peer answers every PING (and the settings), in the background.
    let (pings_tx, mut pings_rx) = tokio::sync::watch::channel(0u32);
    let live_task = tokio::spawn(async move {
        while let Some(frame) = read_frame(&mut live).await {
            match frame.kind {
                SETTINGS if frame.flags & 1 == 0 => {
                    let _ = live.write_all(&frame_ack(SETTINGS, &[])).await;
                }
                PING if frame.flags & 1 == 0 => {
                    let _ = live.write_all(&frame_ack(PING, &frame.payload)).await;
                    pings_tx.send_modify(|n| *n += 1);
                }
                GOAWAY => break,
                _ => {}
            }
        }
        // Closed by the server.
        drop(pings_tx);
    });
    // The silent peer acknowledges the settings, then never answers a PING.
    let mut silent_pings = 0;
    let read = async {
        while let Some(frame) = read_frame(&mut silent).await {
            match frame.kind {
                SETTINGS if frame.flags & 1 == 0 => {
                    silent
                        .write_all(&frame_ack(SETTINGS, &[]))
                        .await
                        .expect("settings ack");
                }
                PING if frame.flags & 1 == 0 => silent_pings += 1,
                _ => {}
            }
        }
    };
    // Only a guard against a hang: with the keepalive working this ends within seconds.
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the silent peer's connection is closed");
    assert!(silent_pings >= 1, "closed without a PING first");
    assert!(
        !live_task.is_finished(),
        "the peer that answers PINGs was closed too"
    );
    // And it goes on being pinged and kept: two more answered PINGs after the close.
    let seen = *pings_rx.borrow_and_update();
    tokio::time::timeout(
        Duration::from_secs(60),
        pings_rx.wait_for(|n| *n >= seen + 2),
    )
    .await
    .expect("still pinged")
    .expect("the answering peer's connection stays open");
    live_task.abort();
}

/// The ACK of a frame of `kind` (SETTINGS or PING) with `payload`.
fn frame_ack(kind: u8, payload: &[u8]) -> Vec<u8> {
    frame(kind, 1, 0, payload)
}

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
                // A PING that is not an ACK: answer it, as a live client would. Only one before
                // the GOAWAY is a keepalive: the graceful GOAWAY sends a PING of its own.
                0x6 if header[4] & 1 == 0 => {
                    ping |= !goaway;
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

/// scopegate's Authorization service served by the listener in-process, with timers in
/// milliseconds (the configuration counts them in seconds): its address, the sender that
/// shuts it down, and its task, which ends once every connection has closed. Checks go to a public route, which needs no keys.
async fn serve_with_timers(
    idle_timeout: Duration,
    max_connection_age: Option<Duration>,
) -> (
    std::net::SocketAddr,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let config = scopegate::config::RawConfig::from_toml(
        &format!(
            "issuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
             jwks_uri = \"http://127.0.0.1:9/jwks\"\n\
             [[rules]]\npath = \"/public\"\npublic = true\n"
        ),
        "<test>",
    )
    .expect("parses")
    .compile()
    .expect("compiles");
    let key_sets = config
        .issuers()
        .iter()
        .map(|issuer| scopegate::auth::jwks::Jwks::new(issuer.jwks.clone()))
        .collect();
    let service = scopegate::serve::service::AuthorizationService::new(
        std::sync::Arc::new(config),
        key_sets,
        scopegate::telemetry::metrics::Metrics::new(),
    );
    let routes = tonic::service::Routes::new(
        envoy_types::pb::envoy::service::auth::v3::authorization_server::AuthorizationServer::new(
            service,
        ),
    )
    .prepare();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let limits = scopegate::net::listener::Limits {
        max_connections: 16,
        handshake_timeout: Duration::from_secs(5),
        idle_timeout,
        max_concurrent_streams: 100,
        max_header_list_bytes: 16 * 1024,
        keepalive: None,
        max_connection_age,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(scopegate::net::listener::serve(
        listener,
        limits,
        None,
        None,
        routes,
        async {
            let _ = stopped.await;
        },
    ));
    (addr, stop, task)
}

/// A tonic client whose connections to `addr` are counted in `opened`.
async fn counting_client(
    addr: std::net::SocketAddr,
    opened: std::sync::Arc<std::sync::atomic::AtomicUsize>,
) -> AuthorizationClient<Channel> {
    let connector = tower::service_fn(move |_: tonic::transport::Uri| {
        opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            TcpStream::connect(addr)
                .await
                .map(hyper_util::rt::TokioIo::new)
        }
    });
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect_with_connector(connector)
        .await
        .expect("connect");
    AuthorizationClient::new(channel)
}

/// One Check on `client`, which must be allowed. A Check the server provably never took is
/// sent again, as gRPC's transparent retry (and Envoy) does: one hyper's client canceled unsent
/// ("connection closed"), or one h2 refused to open because the connection's GOAWAY had arrived.
/// Any other failure fails the test. Returns how many times it had to be sent again.
async fn check_retrying_unsent(client: &mut AuthorizationClient<Channel>, what: &str) -> u32 {
    let mut resent = 0;
    loop {
        match client.check(request("GET", "/public", &[])).await {
            Ok(answer) => {
                Answer::of(&answer.into_inner()).assert_allowed();
                return resent;
            }
            Err(status) if never_taken(&status) && resent < 3 => resent += 1,
            Err(status) => panic!("{what}: a Check failed: {status:?}"),
        }
    }
}

/// Whether a failed call never reached the server's service: hyper canceled it before sending
/// it, or the server's graceful GOAWAY (NO_ERROR) had arrived, after which h2 opens no stream
/// (and any stream opened before it, the server takes: its first GOAWAY names no last stream).
fn never_taken(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(error) = source {
        if let Some(hyper) = error.downcast_ref::<hyper::Error>()
            && hyper.is_canceled()
        {
            return true;
        }
        if let Some(h2) = error.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR);
        }
        source = error.source();
    }
    false
}

/// Checks sent at about the moment the idle timeout (`server.idle_timeout_seconds`, here 60 ms
/// through `listener::Limits`) closes their connection, again
/// and again: every one is answered. The idle close is a GOAWAY, sent only while no stream is in
/// flight, and a Check the client sent before it saw the GOAWAY is still served; the client
/// opens its next stream on a new connection. Before, the idle timer ended the read side as if
/// the client had closed, and a Check caught in that moment failed (Envoy then answers its
/// `status_on_error`). Only a Check the client never sent is sent again (see
/// `check_retrying_unsent`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_racing_the_idle_close_are_all_answered() {
    let idle = Duration::from_millis(60);
    let (addr, _stop, _task) = serve_with_timers(idle, None).await;
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut client = counting_client(addr, std::sync::Arc::clone(&opened)).await;
    let rounds: u32 = 150;
    let mut resent = 0;
    for round in 0..rounds {
        // 50 to 70 ms after the last answer: either side of the idle deadline, and on it.
        let wait = idle - Duration::from_millis(10) + Duration::from_millis(u64::from(round % 21));
        tokio::time::sleep(wait).await;
        resent += check_retrying_unsent(&mut client, &format!("round {round}")).await;
    }
    eprintln!("{resent} Checks canceled unsent by the client and sent again");
    // The race was run: connections were closed for idleness and reopened along the way.
    let opened = opened.load(std::sync::atomic::Ordering::SeqCst);
    assert!(opened > 10, "only {opened} connections in {rounds} rounds");
}

/// The same race against the connection age (`server.max_connection_age_seconds`, here 100 ms),
/// with Checks back to back: each
/// aged connection is told to go away and every Check is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_racing_the_connection_age_are_all_answered() {
    let (addr, _stop, _task) =
        serve_with_timers(Duration::from_secs(60), Some(Duration::from_millis(100))).await;
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut client = counting_client(addr, std::sync::Arc::clone(&opened)).await;
    let started = tokio::time::Instant::now();
    let mut answered = 0;
    while started.elapsed() < Duration::from_secs(2) {
        check_retrying_unsent(&mut client, &format!("Check {answered}")).await;
        answered += 1;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let opened = opened.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        opened > 5,
        "only {opened} connections for {answered} Checks over 2 s"
    );
}

/// An idle connection is closed the HTTP/2 way, seen frame by frame: a GOAWAY with NO_ERROR
/// (last stream id 2^31-1) and a PING; once the PING is answered, a second GOAWAY naming the
/// last stream taken (none: 0), and the close.
#[tokio::test]
async fn an_idle_connection_gets_a_goaway_before_it_is_closed() {
    let served = Served::start("goaway", "[server]\nidle_timeout_seconds = 1\n", None).await;
    let mut socket = preface_only(&served.addr).await;
    // (last stream id, error code) of each GOAWAY, in order.
    let mut goaways: Vec<(u32, u32)> = Vec::new();
    let mut closed = false;
    let read_frames = async {
        let mut header = [0u8; 9];
        loop {
            if socket.read_exact(&mut header).await.is_err() {
                closed = true;
                return;
            }
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            if socket.read_exact(&mut payload).await.is_err() {
                closed = true;
                return;
            }
            match header[3] {
                0x6 if header[4] & 1 == 0 => {
                    let mut ack = vec![0, 0, 8, 6, 1, 0, 0, 0, 0];
                    ack.extend_from_slice(&payload);
                    let _ = socket.write_all(&ack).await;
                }
                0x7 if payload.len() >= 8 => goaways.push((
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff,
                    u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]),
                )),
                _ => {}
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(8), read_frames).await;
    assert_eq!(
        goaways,
        [(0x7fff_ffff, 0), (0, 0)],
        "GOAWAY (NO_ERROR) before the close of an idle connection"
    );
    assert!(closed, "closed after the GOAWAY");
}

/// A Check stream opened on a raw HTTP/2 connection to `addr`, its request body half sent: the
/// stream is in flight until `finish` sends the rest.
struct HalfSentCheck {
    response: h2::client::ResponseFuture,
    body: h2::SendStream<bytes::Bytes>,
    rest: bytes::Bytes,
}

impl HalfSentCheck {
    async fn open(addr: std::net::SocketAddr) -> HalfSentCheck {
        use prost::Message as _;
        let socket = TcpStream::connect(addr).await.expect("connect");
        let (client, connection) = h2::client::handshake(socket).await.expect("h2 handshake");
        tokio::spawn(connection);
        let mut ready = client.ready().await.expect("ready");
        let head = http::Request::builder()
            .method("POST")
            .uri(format!(
                "http://{addr}/envoy.service.auth.v3.Authorization/Check"
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(())
            .expect("request");
        let (response, mut body) = ready.send_request(head, false).expect("stream opened");
        let message = request("GET", "/public", &[]).encode_to_vec();
        let mut framed = vec![0u8];
        framed.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
        framed.extend_from_slice(&message);
        let mut first = bytes::Bytes::from(framed);
        let rest = first.split_off(first.len() / 2);
        body.send_data(first, false).expect("first half");
        HalfSentCheck {
            response,
            body,
            rest,
        }
    }

    /// Sends the rest of the body and asserts an OK gRPC answer.
    async fn finish(mut self) {
        self.body
            .send_data(self.rest, true)
            .expect("second half: the stream is still open");
        let response = tokio::time::timeout(Duration::from_secs(5), self.response)
            .await
            .expect("answered in time")
            .expect("answered");
        assert_eq!(response.status(), 200);
        let mut body = response.into_body();
        while let Some(chunk) = body.data().await {
            chunk.expect("body");
        }
        let trailers = body.trailers().await.expect("trailers").expect("some");
        assert_eq!(
            trailers.get("grpc-status").and_then(|v| v.to_str().ok()),
            Some("0"),
            "{trailers:?}"
        );
    }
}

/// A stream in flight keeps its connection from counting as idle: a Check whose request body
/// arrives in two halves, 300 ms apart on a connection with a 60 ms idle timeout
/// (`server.idle_timeout_seconds`, shortened), is answered.
/// (A request frame only every 300 ms would have let the old idle timer close it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_in_flight_is_never_cut_by_the_idle_timeout() {
    let (addr, _stop, _task) = serve_with_timers(Duration::from_millis(60), None).await;
    let check = HalfSentCheck::open(addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    check.finish().await;
}

/// At shutdown the listening socket closes at once, while a Check in flight on an open
/// connection is still answered (the connection got its GOAWAY); the server stops once it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_in_flight_at_shutdown_is_answered() {
    let (addr, stop, task) = serve_with_timers(Duration::from_secs(60), None).await;
    let check = HalfSentCheck::open(addr).await;
    // Let the server take the stream before it is told to stop.
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).expect("server running");
    eventually(
        "the listening socket closed",
        Duration::from_secs(5),
        || async { TcpStream::connect(addr).await.is_err() },
    )
    .await;
    assert!(
        !task.is_finished(),
        "the server waits for the stream in flight"
    );
    check.finish().await;
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the server stops once its last connection has closed")
        .expect("no panic");
}

/// A request header list over 16 KiB (the server's `SETTINGS_MAX_HEADER_LIST_SIZE`) is refused
/// with HTTP 431 before the Check is read; under the limit, the same Check is answered.
#[tokio::test]
async fn a_header_list_over_16_kib_is_refused() {
    let served = Served::start("headers", "", None).await;
    let send = |padding: usize| {
        let addr = served.addr.clone();
        async move {
            let socket = TcpStream::connect(&addr).await.expect("connect");
            let (client, connection) = h2::client::handshake(socket).await.expect("h2 handshake");
            tokio::spawn(connection);
            let mut ready = client.ready().await.expect("ready");
            let head = http::Request::builder()
                .method("POST")
                .uri(format!(
                    "http://{addr}/envoy.service.auth.v3.Authorization/Check"
                ))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .header("x-padding", "p".repeat(padding))
                .body(())
                .expect("request");
            let (response, mut body) = ready.send_request(head, false)?;
            let _ = body.send_data(bytes::Bytes::from_static(&[0, 0, 0, 0, 0]), true);
            tokio::time::timeout(Duration::from_secs(5), response)
                .await
                .expect("answered in time")
        }
    };
    let response = send(20 * 1024).await.expect("answered by the server");
    assert_eq!(response.status(), 431, "{response:?}");
    let response = send(8 * 1024).await.expect("an 8 KiB header is taken");
    assert_eq!(response.status(), 200, "{response:?}");
}

/// A client's `grpc-timeout` is honoured as tonic's server honoured it: a Check still waiting
/// when it passes (here on an unknown-kid refetch from an issuer that does not answer, with
/// `check_timeout_ms` longer still) is answered CANCELLED at the client's deadline.
#[tokio::test]
async fn a_clients_grpc_timeout_is_answered_cancelled() {
    use prost::Message as _;
    let key = TestKey::generate("key-1");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&key]))).await;
    let gate = Scopegate::start_ready(
        &jwks.url(),
        "unknown_kid_wait_ms = 5000\n[server]\ncheck_timeout_ms = 4000\n\
         [[rules]]\npath = \"/r\"\nscopes = [\"read:messages\"]\n",
    )
    .await;
    jwks.set(Reply::Stall);
    let token = TestKey::generate("rotated").mint(&claims("read:messages"));
    let message = request("GET", "/r", &[("authorization", &bearer(&token))]).encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&u32::try_from(message.len()).expect("small").to_be_bytes());
    framed.extend_from_slice(&message);

    let socket = TcpStream::connect(gate.addr).await.expect("connect");
    let (client, connection) = h2::client::handshake(socket).await.expect("h2 handshake");
    tokio::spawn(connection);
    let mut ready = client.ready().await.expect("ready");
    let head = http::Request::builder()
        .method("POST")
        .uri(format!(
            "http://{}/envoy.service.auth.v3.Authorization/Check",
            gate.addr
        ))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", "200m")
        .body(())
        .expect("request");
    let (response, mut body) = ready.send_request(head, false).expect("stream opened");
    body.send_data(framed.into(), true).expect("message");
    let response = tokio::time::timeout(Duration::from_secs(2), response)
        .await
        .expect("answered near the client's 200 ms, not after check_timeout_ms (4 s)")
        .expect("answered");
    // CANCELLED, in the headers of a trailers-only answer or in the trailers.
    let status = match response.headers().get("grpc-status") {
        Some(status) => status.to_str().expect("ascii").to_string(),
        None => {
            let mut body = response.into_body();
            while let Some(chunk) = body.data().await {
                chunk.expect("body");
            }
            let trailers = body.trailers().await.expect("trailers").expect("some");
            trailers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        }
    };
    assert_eq!(status, "1", "CANCELLED");
    gate.stop().await;
}

/// A peer that stops answering keepalive PINGs is closed once `keepalive_timeout_seconds` has
/// passed, long before the idle timeout would close it.
#[tokio::test]
async fn a_peer_that_never_answers_keepalive_pings_is_closed() {
    let served = Served::start(
        "dead-peer",
        "[server]\nkeepalive_interval_seconds = 1\nkeepalive_timeout_seconds = 1\n\
         idle_timeout_seconds = 60\n",
        None,
    )
    .await;
    let mut socket = preface_only(&served.addr).await;
    assert!(
        closed_within(&mut socket, Duration::from_secs(10)).await,
        "a peer that never answers a PING must be closed after the keepalive timeout"
    );
}

/// The server announces its stream and header limits in its first SETTINGS frame:
/// `SETTINGS_MAX_CONCURRENT_STREAMS` from `server.max_concurrent_streams`, and
/// `SETTINGS_MAX_HEADER_LIST_SIZE` of 16 KiB.
#[tokio::test]
async fn the_servers_settings_carry_its_limits() {
    let served = Served::start("settings", "[server]\nmax_concurrent_streams = 3\n", None).await;
    let mut socket = preface_only(&served.addr).await;
    let settings = tokio::time::timeout(Duration::from_secs(5), async {
        let mut header = [0u8; 9];
        loop {
            socket.read_exact(&mut header).await.expect("a frame");
            let len = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
            let mut payload = vec![0u8; len];
            socket.read_exact(&mut payload).await.expect("its payload");
            // SETTINGS, not its ACK.
            if header[3] == 0x4 && header[4] & 1 == 0 {
                return payload
                    .chunks_exact(6)
                    .map(|s| {
                        (
                            u16::from_be_bytes([s[0], s[1]]),
                            u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
                        )
                    })
                    .collect::<std::collections::HashMap<u16, u32>>();
            }
        }
    })
    .await
    .expect("SETTINGS in time");
    assert_eq!(
        settings.get(&0x3),
        Some(&3),
        "MAX_CONCURRENT_STREAMS: {settings:?}"
    );
    assert_eq!(
        settings.get(&0x6),
        Some(&16_384),
        "MAX_HEADER_LIST_SIZE: {settings:?}"
    );
}
