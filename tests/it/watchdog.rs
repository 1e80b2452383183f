//! The per-test bound (`common::watchdog`): a test that hangs fails the run, naming itself, and
//! the processes started for it do not outlive it.

use std::process::{Command, Stdio};

use crate::common::binary::Binary;
use crate::common::watchdog;
use crate::common::{JwksServer, Reply};

/// Set in the environment of the child run below: only there does the test below hang.
const HANG: &str = "WATCHDOG_HANG_ON_PURPOSE";

/// The hanging test that [`a_hung_test_fails_the_run_naming_itself`] runs in a child process:
/// with [`HANG`] set it starts a fixture (which arms the bound) and a scopegate process, prints the
/// process id and then waits for ever. Without it, there is nothing to do.
#[tokio::test]
async fn hangs_when_asked() {
    if std::env::var_os(HANG).is_none() {
        return;
    }
    let jwks = JwksServer::start(Reply::Stall).await;
    let config = format!(
        "listen = \"127.0.0.1:0\"\nissuer = \"https://issuer.test/\"\n\
         audience = \"https://api.test\"\njwks_uri = \"{}\"\n",
        jwks.url()
    );
    let binary = Binary::start("watchdog", &config, "info", None).await;
    println!("scopegate pid {}", binary.pid());
    // A process no fixture knows of; never waited for, as the test never gets past its bound.
    #[expect(
        clippy::zombie_processes,
        reason = "the watchdog kills it and ends the run"
    )]
    let sleeper = Command::new("sleep")
        .arg("600")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start sleep");
    println!("sleep pid {}", sleeper.id());
    std::future::pending::<()>().await;
}

#[test]
fn a_hung_test_fails_the_run_naming_itself() {
    // If the bound did not work the child would hang too: this test's own bound then fails it.
    watchdog::arm();
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "watchdog::hangs_when_asked", "--nocapture"])
        .env(HANG, "1")
        .env("TEST_BOUND_SECONDS", "2")
        .output()
        .expect("run the hanging test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(101), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("test watchdog::hangs_when_asked has not finished within its bound of 2 s"),
        "{stderr}"
    );
    // The processes it started, the fixture's and its own, were killed before the run ended.
    for (what, killed) in [("scopegate", "scopegate"), ("sleep", "a child process")] {
        let pid = stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{what} pid ")))
            .unwrap_or_else(|| panic!("no {what} pid in {stdout}"));
        assert!(
            stderr.contains(&format!("killing {killed} (pid {pid})")),
            "{stderr}"
        );
        let state = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let running = state
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .is_some_and(|s| !s.trim_start().starts_with('Z') && !s.trim_start().starts_with('X'));
        assert!(!running, "{what} (pid {pid}) still runs: {state}");
    }
}
