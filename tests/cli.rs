//! The `scopegate` binary: `check-config` exit codes and messages, `serve` refusing a bad config
//! before binding, environment overrides, and graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_scopegate");

fn write_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scopegate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

fn scopegate(args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
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

#[test]
fn check_config_prints_the_compiled_rules_and_exits_0() {
    let path = write_config("valid.toml", VALID);
    let out = scopegate(&["check-config", "--config", path.to_str().expect("utf8")])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains("jwks_uri          https://tenant.example/.well-known/jwks.json"),
        "{stdout}"
    );
    assert!(
        stdout.contains("rules[0]") && stdout.contains("any of scopes [read:messages]"),
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

#[test]
fn serve_shuts_down_gracefully_on_sigterm() {
    let path = write_config("sigterm.toml", VALID);
    let mut child = scopegate(&["serve", "--config", path.to_str().expect("utf8")])
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let line = lines.next().expect("log line").expect("utf8 log");
        if line.contains("scopegate serving") {
            break;
        }
        assert!(Instant::now() < deadline, "no start-up line");
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "exit status {exit:?}; log: {rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("scopegate stopped")),
        "{rest:?}"
    );
}

#[test]
fn json_log_format_writes_json_lines() {
    let path = write_config("json.toml", VALID);
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
        line["level"].is_string() && line["fields"].is_object(),
        "{line}"
    );
}
