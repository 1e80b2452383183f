//! The `scopegate` binary: `check-config` exit codes and messages, `serve` refusing a bad config
//! before binding, environment overrides, graceful shutdown on SIGTERM (a held stream drained,
//! or cut at the drain deadline, exit status 0 either way), and `mint-token` bounds.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::binary::Binary;

/// `text` in a scratch file named after `name`, removed when the returned path is dropped.
fn write_config(name: &str, text: &str) -> tempfile::TempPath {
    let file = tempfile::Builder::new()
        .prefix(&format!("scopegate-cli-{name}-"))
        .tempfile()
        .expect("scratch file");
    std::fs::write(file.path(), text).expect("write config");
    file.into_temp_path()
}

fn scopegate(args: &[&str]) -> Command {
    let mut cmd = crate::common::scopegate_command();
    cmd.args(args);
    for (var, _) in scopegate::config::ENV_OVERRIDES {
        cmd.env_remove(var);
    }
    cmd.env_remove("SCOPEGATE_CONFIG");
    cmd
}

const VALID: &str = r#"
listen = "127.0.0.1:0"
issuer = "https://tenant.example/"
audience = "https://api.example"

[[rules]]
path = "/restricted_resource"
methods = ["GET"]
scopes = ["read:messages"]
"#;

/// [`VALID`] for `serve`: its issuer would be discovered at tenant.example, off this machine;
/// here the keys are at a loopback port where nothing listens (refused at once), and no test
/// reaches a name it does not control.
fn served() -> String {
    format!("jwks_uri = \"http://127.0.0.1:9/keys\"\n{VALID}")
}

#[test]
fn check_config_prints_the_compiled_rules_and_exits_0() {
    let path = write_config("valid.toml", VALID);
    let out = scopegate(&["check-config", "--config", path.to_str().expect("utf8")])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(
            "jwks_uri          by OIDC discovery, \
             https://tenant.example/.well-known/openid-configuration \
             (if it answers 404: https://tenant.example/.well-known/jwks.json)"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("rules[0]") && stdout.contains("any of scopes [read:messages]"),
        "{stdout}"
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
}

/// A key wait as long as the Check deadline would turn a new key's 401 or 200 into a 503: the
/// file is accepted (exit 0), with a warning naming both keys.
#[test]
fn check_config_warns_of_an_unknown_kid_wait_past_the_check_deadline() {
    let path = write_config(
        "long-wait.toml",
        &format!("unknown_kid_wait_ms = 500\n{VALID}\n[server]\ncheck_timeout_ms = 400\n"),
    );
    let out = scopegate(&["check-config", "--config", path.to_str().expect("utf8")])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(
            "warning: unknown_kid_wait_ms, server.check_timeout_ms: unknown_kid_wait_ms (500) \
             is not below server.check_timeout_ms (400)"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("configuration OK"), "{stdout}");
}

#[test]
fn check_config_names_the_bad_key_and_exits_1() {
    let cases = [
        (
            "unknown.toml",
            format!("{VALID}\ncolour = \"blue\"\n"),
            "colour",
        ),
        (
            "type.toml",
            VALID.replace("\"127.0.0.1:0\"", "9191"),
            "listen",
        ),
        (
            "rule.toml",
            format!("{VALID}\n[[rules]]\nprefix = \"/x\"\npublic = true\nscopes = [\"a\"]\n"),
            "rules[1].scopes",
        ),
        (
            "empty.toml",
            format!("{VALID}\n[[rules]]\npath = \"/y\"\nscopes = []\n"),
            "rules[1].scopes",
        ),
        (
            "both.toml",
            format!("{VALID}\n[[rules]]\npath = \"/y\"\nprefix = \"/y\"\n"),
            "rules[1]",
        ),
        (
            "neither.toml",
            format!("{VALID}\n[[rules]]\nmethods = [\"GET\"]\n"),
            "rules[1].path",
        ),
        (
            "override.toml",
            format!("{VALID}\n[forward_claims]\n\"X-HTTP-Method-Override\" = \"m\"\n"),
            "forward_claims.\"X-HTTP-Method-Override\"",
        ),
        (
            "request-id.toml",
            format!("{VALID}\n[forward_claims]\n\"x-request-id\" = \"rid\"\n"),
            "forward_claims.\"x-request-id\"",
        ),
    ];
    for (name, text, key) in cases {
        let path = write_config(name, &text);
        let out = scopegate(&["check-config", "--config", path.to_str().expect("utf8")])
            .output()
            .expect("run");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        assert!(
            stderr.contains(key),
            "{name}: error should name {key}: {stderr}"
        );
    }
    let missing = scopegate(&["check-config", "--config", "/nonexistent/scopegate.toml"])
        .output()
        .expect("run");
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/scopegate.toml"));
}

/// Keys over plain http from a host that is not loopback are refused before anything starts,
/// naming the key; allowed on purpose, they are a warning. A CA file that cannot be read is
/// refused naming the key and the path.
#[test]
fn check_config_refuses_plain_http_keys_off_loopback_and_unreadable_ca_files() {
    // Top-level keys go before VALID, which ends in a [[rules]] table.
    let insecure = format!("jwks_uri = \"http://idp.example.com/keys\"\n{VALID}");
    let run = |name: &str, text: &str| {
        let path = write_config(name, text);
        scopegate(&["check-config", "--config", path.to_str().expect("utf8")])
            .output()
            .expect("run")
    };
    let out = run("insecure.toml", &insecure);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`jwks_uri` = \"http://idp.example.com/keys\""),
        "{stderr}"
    );

    let out = run(
        "allowed.toml",
        &format!("allow_insecure_http = true\n{insecure}"),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("warning: allow_insecure_http: keys of https://tenant.example/"),
        "{stdout}"
    );

    let out = run(
        "ca.toml",
        &format!("ca_file = \"/nonexistent/idp-ca.pem\"\n{VALID}"),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("`ca_file` = \"/nonexistent/idp-ca.pem\""),
        "{stderr}"
    );
}

#[test]
fn environment_overrides_the_file_and_scopegate_config_names_it() {
    let path = write_config("env.toml", VALID);
    let out = scopegate(&["check-config"])
        .env("SCOPEGATE_CONFIG", &path)
        .env("SCOPEGATE_ISSUER", "https://other.example/")
        .env("SCOPEGATE_AUDIENCE", "a,b")
        .env("SCOPEGATE_JWKS_URI", "http://127.0.0.1:8080/jwks.json")
        .env("SCOPEGATE_LISTEN", "127.0.0.1:7000")
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    for line in [
        "listen            127.0.0.1:7000",
        "issuer            https://other.example/",
        "audience          a, b",
        "jwks_uri          http://127.0.0.1:8080/jwks.json",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in {stdout}");
    }
}

#[test]
fn serve_refuses_a_bad_config_before_binding() {
    // Occupy a port; a server that bound before validating would fail with "address in use"
    // instead of the configuration error.
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = held.local_addr().expect("addr");
    let text = format!(
        "listen = \"{addr}\"\nissuer = \"https://t/\"\naudience = \"a\"\nleeway_seconds = 9999\n"
    );
    let path = write_config("bad-serve.toml", &text);
    let out = scopegate(&["serve", "--config", path.to_str().expect("utf8")])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("leeway_seconds"), "{stderr}");
    assert!(!stderr.contains("cannot listen"), "{stderr}");
}

#[tokio::test]
async fn serve_shuts_down_gracefully_on_sigterm() {
    let mut binary = Binary::start("sigterm", &served(), "info", None).await;
    let exit = binary.terminate().await;
    let log = binary.log_text();
    assert!(exit.success(), "exit status {exit:?}; log: {log}");
    assert!(log.contains("scopegate stopped"), "{log}");
}

/// A SIGTERM that arrives while scopegate is still starting is not lost and does not kill it:
/// the process drains and exits 0. Start-up is held at a known point before anything is served:
/// the TLS certificate file is a FIFO, which scopegate's read blocks on until this test writes
/// it. The signal is sent while that read waits (nothing logged as serving yet), then the
/// certificate is written and start-up goes on to find the signal already there.
#[test]
fn sigterm_while_still_starting_drains_and_exits_0() {
    let dir = tempfile::tempdir().expect("scratch dir");
    let certs =
        scopegate::dev::certs::generate(dir.path(), &["localhost".to_string()]).expect("certs");
    let fifo = dir.path().join("tls.crt");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success(), "mkfifo: {made:?}");
    let config = write_config(
        "sigterm-starting.toml",
        &format!(
            "{VALID}\n[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            fifo.display().to_string(),
            certs.server_key.display().to_string()
        ),
    );
    let log = dir.path().join("scopegate.log");
    let mut child = scopegate(&["serve", "--config", config.to_str().expect("utf8")])
        .env("RUST_LOG", "info")
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("spawn");
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();

    // Opening a FIFO for writing blocks until a reader opens it: scopegate, starting up.
    let (opened_tx, opened_rx) = std::sync::mpsc::channel();
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || {
            let file = std::fs::OpenOptions::new().write(true).open(fifo);
            let _ = opened_tx.send(());
            file
        }
    });
    let mut waited = Duration::ZERO;
    while opened_rx.recv_timeout(Duration::from_millis(100)).is_err() {
        waited += Duration::from_millis(100);
        if waited > Duration::from_secs(20) || child.try_wait().expect("wait").is_some() {
            // Release the writer thread (a reader of our own), then fail.
            let _ = std::fs::File::open(&fifo);
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "scopegate never read its certificate file; log:\n{}",
                log_text()
            );
        }
    }
    let mut file = writer.join().expect("writer").expect("open the FIFO");
    assert!(
        !log_text().contains("scopegate serving"),
        "start-up must be held on the certificate file:\n{}",
        log_text()
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let pem = std::fs::read(&certs.server_cert).expect("certificate");
    // A process the signal killed has no reader left: the exit status below says so.
    let _ = std::io::Write::write_all(&mut file, &pem);
    drop(file);

    let mut waited = Duration::ZERO;
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        if waited > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no exit after SIGTERM; log:\n{}", log_text());
        }
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    };
    let text = log_text();
    assert!(exit.success(), "exit status {exit:?}; log:\n{text}");
    assert!(
        text.contains("shutdown signal received") && text.contains("scopegate stopped"),
        "{text}"
    );
}

#[test]
fn json_log_format_writes_json_lines() {
    let path = write_config("json.toml", &served());
    let mut child = scopegate(&[
        "serve",
        "--config",
        path.to_str().expect("utf8"),
        "--log-format",
        "json",
    ])
    .env("RUST_LOG", "info")
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let first = BufReader::new(stderr)
        .lines()
        .next()
        .expect("a log line")
        .expect("utf8");
    let _ = child.kill();
    let _ = child.wait();
    let line: serde_json::Value = serde_json::from_str(&first).expect("a JSON log line");
    assert!(
        line["level"].is_string() && line["message"].is_string(),
        "{line}"
    );
}

/// `mint-token --expires-in` is bounded: a lifetime past 366 days is refused with the flag named
/// (it used to overflow `now + expires_in`, a panic in debug builds and a wrapped `exp` in release),
/// and the largest accepted one gives an `exp` exactly that far ahead.
#[test]
fn mint_token_lifetime_is_bounded() {
    let key_file = write_config("mint.key", "");
    std::fs::remove_file(&key_file).expect("start without a key");
    let key = key_file.to_str().expect("utf8");
    let mint = |expires_in: &str| {
        scopegate(&[
            "mint-token",
            "--key-file",
            key,
            "--audience",
            "a",
            "--expires-in",
            expires_in,
        ])
        .output()
        .expect("run")
    };
    for too_long in ["18446744073709551615", "31622401", "0"] {
        let out = mint(too_long);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{too_long}: {stderr}");
        assert!(stderr.contains("--expires-in"), "{too_long}: {stderr}");
    }
    let out = mint("31622400");
    assert!(out.status.success(), "{out:?}");
    let token = String::from_utf8(out.stdout).expect("utf8");
    let payload = token.trim().split('.').nth(1).expect("payload");
    use base64::Engine as _;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .expect("base64url"),
    )
    .expect("json");
    let (iat, exp) = (claims["iat"].as_u64(), claims["exp"].as_u64());
    assert_eq!(
        exp.zip(iat).map(|(e, i)| e - i),
        Some(31_622_400),
        "{claims}"
    );
}

/// A second SIGTERM during the drain exits at once, instead of waiting out the drain deadline
/// (10 s) for a client that keeps a stream open.
#[tokio::test]
async fn a_second_signal_during_the_drain_exits_at_once() {
    let mut binary = Binary::start("second-signal", &served(), "info", None).await;
    // A health Watch stream stays open, so the drain has something to wait for.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", binary.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut stream = client
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    stream.message().await.expect("first status");

    binary.sigterm();
    binary
        .wait_for_log("shutdown signal received", Duration::from_secs(5))
        .await;
    binary.sigterm();
    let exit = binary
        .exited_within(Duration::from_secs(5))
        .await
        .expect("exited within 5 s of the second signal (the drain deadline is 10 s)");
    assert_eq!(exit.code(), Some(130), "{exit:?}");
    assert!(binary.log_text().contains("second shutdown signal"));
    drop(stream);
}

/// One SIGTERM while a client holds a stream open: the process drains and exits 0. A Check in
/// flight (waiting 2 s for an unknown-kid refetch) is answered after the signal, and the process
/// exits as soon as it is, without waiting for the drain deadline; a health Watch that never
/// ends holds the process only until the drain deadline (10 s), which is logged, and the exit
/// status is still 0.
#[tokio::test]
async fn one_sigterm_with_a_stream_held_open_exits_0_when_it_ends_or_at_the_drain_deadline() {
    use crate::common::*;
    let old = TestKey::generate("old");
    let new = TestKey::generate("new");
    let jwks = JwksServer::start(Reply::json(&jwks_of(&[&old]))).await;
    let config = format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"{ISSUER}\"\naudience = \"{AUDIENCE}\"\n\
         jwks_uri = \"{}\"\nunknown_kid_wait_ms = 5000\nserver = {{ check_timeout_ms = 8000 }}\n\
         [[rules]]\npath = \"/r\"\nscopes = [\"read\"]\n",
        jwks.url()
    );
    let drain_timeout = "connections still open after the drain timeout";
    let mut finishing = Binary::start("drain-finishes", &config, "info", None).await;
    let mut held = Binary::start("drain-deadline", &config, "info", None).await;
    finishing.keys_loaded().await;
    held.keys_loaded().await;

    // A Check that will wait for a 2 s refetch, under way when the signal comes.
    jwks.set(Reply::Delayed(
        Duration::from_secs(2),
        Box::new(Reply::json(&jwks_of(&[&old, &new]))),
    ));
    let hits = jwks.hits();
    let mut client = finishing.client().await;
    let token = new.mint(&claims("read"));
    let in_flight = tokio::spawn(async move {
        client
            .check(request("GET", "/r", &[("authorization", &bearer(&token))]))
            .await
            .map(|response| Answer::of(&response.into_inner()).status())
    });
    eventually("the Check's refetch", Duration::from_secs(10), || async {
        jwks.hits() > hits
    })
    .await;

    // A health Watch that nobody ends.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", held.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut stream = tonic_health::pb::health_client::HealthClient::new(channel)
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    stream.message().await.expect("first status");

    finishing.sigterm();
    held.sigterm();
    for binary in [&finishing, &held] {
        binary
            .wait_for_log("shutdown signal received", Duration::from_secs(5))
            .await;
    }
    assert_eq!(
        in_flight.await.expect("task").expect("answered in-band"),
        200,
        "the Check in flight is answered during the drain"
    );
    let exit = finishing
        .exited_within(Duration::from_secs(20))
        .await
        .expect("exits once its last stream has ended");
    let log = finishing.log_text();
    assert!(exit.success(), "{exit:?}: {log}");
    assert!(!log.contains(drain_timeout), "{log}");
    assert!(log.contains("scopegate stopped"), "{log}");

    let exit = held
        .exited_within(Duration::from_secs(30))
        .await
        .expect("exits at the drain deadline (10 s), whatever the client holds");
    let log = held.log_text();
    assert!(exit.success(), "{exit:?}: {log}");
    assert!(log.contains(drain_timeout), "{log}");
    assert!(log.contains("scopegate stopped"), "{log}");
    drop(stream);
}

/// The drain at shutdown waits for a stream that stays open, but no longer than its deadline
/// (10 s, `server::DRAIN_TIMEOUT`): the process is still there while the stream is held, then
/// closes it, says so, and exits 0. The only time compared is a lower bound (it did not exit
/// before the deadline), never an upper one closer than the test's own patience.
#[tokio::test]
async fn the_drain_waits_for_a_held_stream_until_its_10_s_deadline_then_exits_0() {
    use scopegate::serve::server::DRAIN_TIMEOUT;
    assert_eq!(DRAIN_TIMEOUT, Duration::from_secs(10));
    let mut binary = Binary::start("drain-deadline", VALID, "info", None).await;
    // A health Watch stream never ends on its own: the drain has something to wait for.
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", binary.addr))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let mut stream = client
        .watch(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("watch")
        .into_inner();
    stream.message().await.expect("first status");

    let signalled = std::time::Instant::now();
    binary.sigterm();
    binary
        .wait_for_log("shutdown signal received", Duration::from_secs(5))
        .await;
    let exit = binary
        .exited_within(DRAIN_TIMEOUT * 3)
        .await
        .expect("exited after the drain deadline");
    let drained_for = signalled.elapsed();
    assert!(
        drained_for >= DRAIN_TIMEOUT,
        "exited {drained_for:?} after SIGTERM, before the drain deadline, with a stream held open"
    );
    assert!(exit.success(), "{exit:?}");
    let log = binary.log_text();
    assert!(
        log.contains("connections still open after the drain timeout; closing")
            && log.contains("scopegate stopped"),
        "{log}"
    );
    // The held stream ends with the process, however it ends.
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(_)) = stream.message().await {}
    })
    .await;
    assert!(ended.is_ok(), "the held stream outlived the process");
}
