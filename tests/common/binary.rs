//! The scopegate binary as users run it, `serve --config FILE`, for tests that need a separate
//! process: its log, its exit status, its memory, descriptors and CPU time in `/proc`.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use tonic::transport::Channel;

use super::{clear_scopegate_env, eventually, watchdog};

/// A running `scopegate serve`, its standard error in a file. Killed on drop.
pub struct Binary {
    child: Child,
    log: PathBuf,
    /// The configuration and log; `None` once kept for a failed test.
    dir: Option<tempfile::TempDir>,
    /// The gRPC address it listens on, as its start-up line reports it.
    pub addr: String,
}

impl Binary {
    /// Writes `config` (whose `listen` should be `127.0.0.1:0`) to a file of its own and starts
    /// `scopegate serve` with `RUST_LOG=log_level` (at least `info`: the start-up line gives the
    /// address), through `sh` so that `ulimit -n` can be set first. Returns once it serves.
    pub async fn start(name: &str, config: &str, log_level: &str, max_fds: Option<u32>) -> Binary {
        Binary::start_with(name, config, log_level, max_fds, &[]).await
    }

    /// [`Binary::start`] with JSON log lines (`--log-format json`).
    pub async fn start_json(name: &str, config: &str, log_level: &str) -> Binary {
        Binary::start_with(
            name,
            config,
            log_level,
            None,
            &[("SCOPEGATE_LOG_FORMAT", "json")],
        )
        .await
    }

    async fn start_with(
        name: &str,
        config: &str,
        log_level: &str,
        max_fds: Option<u32>,
        env: &[(&str, &str)],
    ) -> Binary {
        watchdog::arm();
        let dir = tempfile::Builder::new()
            .prefix(&format!("scopegate-binary-{name}-"))
            .tempdir()
            .expect("scratch dir");
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, config).expect("write config");
        let log = dir.path().join("scopegate.log");
        let ulimit = max_fds.map_or(String::new(), |n| format!("ulimit -n {n} && "));
        let mut command = Command::new("sh");
        // Only what the test sets: a SCOPEGATE_* variable of the environment would override the
        // configuration under test.
        clear_scopegate_env(&mut command);
        let child = command
            .arg("-c")
            .arg(format!(
                "{ulimit}exec \"$0\" serve --config \"$1\" 2> \"$2\""
            ))
            .arg(env!("CARGO_BIN_EXE_scopegate"))
            .arg(&config_path)
            .arg(&log)
            .env("RUST_LOG", log_level)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .spawn()
            .expect("start scopegate");
        watchdog::child_started(child.id(), "scopegate");
        let mut binary = Binary {
            child,
            log,
            dir: Some(dir),
            addr: String::new(),
        };
        let serving = binary
            .wait_for_log("scopegate serving", Duration::from_secs(20))
            .await;
        binary.addr = listen_address(&serving).expect("listen address in the start-up line");
        binary
    }

    /// Waits until the first key set has loaded.
    pub async fn keys_loaded(&self) {
        self.wait_for_log("JWKS loaded", Duration::from_secs(20))
            .await;
    }

    /// A plaintext gRPC client of its Authorization service.
    pub async fn client(&self) -> AuthorizationClient<Channel> {
        AuthorizationClient::connect(format!("http://{}", self.addr))
            .await
            .expect("connect")
    }

    /// The address the HTTP authorization listener (`http_listen`) reports in its start-up
    /// line, `IP:PORT`.
    pub async fn http_addr(&self) -> String {
        let line = self
            .wait_for_log("http authorization serving", Duration::from_secs(20))
            .await;
        listen_address(&line).expect("listen address in the http listener's line")
    }

    /// The address the metrics listener reports in its start-up line.
    pub async fn metrics_addr(&self) -> String {
        let line = self
            .wait_for_log("metrics serving", Duration::from_secs(20))
            .await;
        listen_address(&line).expect("listen address in the metrics line")
    }

    /// Everything logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The first log line holding `needle`, waiting for it at most `within`.
    pub async fn wait_for_log(&self, needle: &str, within: Duration) -> String {
        eventually(&format!("a log line with {needle:?}"), within, || async {
            self.log_text().contains(needle)
        })
        .await;
        self.log_text()
            .lines()
            .find(|line| line.contains(needle))
            .unwrap_or_default()
            .to_string()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends SIGHUP (reload the configuration).
    pub fn sighup(&self) {
        self.signal("HUP");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
    }

    /// The configuration file it was started with (tests rewrite it, then reload).
    pub fn config_path(&self) -> PathBuf {
        self.dir
            .as_ref()
            .expect("scratch dir")
            .path()
            .join("config.toml")
    }

    /// How many log lines so far hold `needle`.
    pub fn count_in_log(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// The exit status, once the process has exited within `within`; `None` if it still runs.
    pub async fn exited_within(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                return Some(exit);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the process to exit (at most 20 s).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.sigterm();
        let pid = self.child.id();
        self.exited_within(Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("scopegate (pid {pid}) still running 20 s after SIGTERM"))
    }

    /// `/proc/PID/file` of the process. Panics when it cannot be read: a limit checked against
    /// a reading that silently became 0 would pass whatever the process did.
    fn proc(&self, file: &str) -> String {
        let path = format!("/proc/{}/{file}", self.child.id());
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {path} to measure scopegate: {e}"))
    }

    /// Resident memory, in MiB. Panics when `/proc/PID/status` cannot be read or holds no
    /// `VmRSS` line.
    pub fn rss_mib(&self) -> u64 {
        let status = self.proc("status");
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no VmRSS in /proc/{}/status to measure scopegate: {status:?}",
                    self.child.id()
                )
            });
        kb / 1024
    }

    /// Open file descriptors. Panics when `/proc/PID/fd` cannot be listed.
    pub fn fds(&self) -> usize {
        let path = format!("/proc/{}/fd", self.child.id());
        std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("cannot list {path} to measure scopegate: {e}"))
            .count()
    }

    /// User plus system CPU time so far, in clock ticks (1/100 s on Linux). Panics when
    /// `/proc/PID/stat` cannot be read or parsed.
    pub fn cpu_ticks(&self) -> u64 {
        let stat = self.proc("stat");
        // The fields after the command name (in parentheses, and it may hold spaces); utime and
        // stime are fields 14 and 15 of the whole line, so 12 and 13 of these.
        let rest = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split(' ').collect();
        let tick = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .unwrap_or_else(|| {
                    panic!(
                        "no CPU time in /proc/{}/stat to measure scopegate: {stat:?}",
                        self.child.id()
                    )
                })
        };
        tick(11) + tick(12)
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        watchdog::child_ended(self.child.id());
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("scopegate's log kept in {}", dir.keep().display());
        }
    }
}

/// The `listen` field of a log line, as text (`listen=ADDR`) or JSON (`"listen":"ADDR"`) writes
/// it.
pub fn listen_address(line: &str) -> Option<String> {
    if let Some(at) = line.find("\"listen\":\"") {
        let rest = &line[at + "\"listen\":\"".len()..];
        return Some(rest.split('"').next()?.to_string());
    }
    let rest = &line[line.find("listen=")? + "listen=".len()..];
    Some(rest.split_whitespace().next()?.to_string())
}
