//! The tests' own environment does not leak into what they start: every scopegate they run
//! (in-process configurations aside) runs without the `SCOPEGATE_*` variables of the environment
//! `cargo test` was started in.

use std::process::Command;

/// Tests that start the binary in each of the fixtures' ways: `Binary` (serve, with keys and
/// decisions) and `scopegate_command` (check-config).
const SAMPLE: [&str; 3] = [
    "cli::serve_shuts_down_gracefully_on_sigterm",
    "logging::decisions_are_logged_and_tokens_never_are",
    "cli::check_config_prints_the_compiled_rules_and_exits_0",
];

/// Run in a child process with every override scopegate reads set to a value that would break
/// them, the sample still passes.
#[test]
fn scopegate_variables_of_the_test_environment_never_reach_the_binary() {
    crate::common::watchdog::arm();
    let mut child = Command::new(std::env::current_exe().expect("test binary"));
    child.args(SAMPLE).arg("--exact");
    for (variable, _) in scopegate::config::ENV_OVERRIDES {
        child.env(variable, "not-what-the-test-configured");
    }
    child
        .env("SCOPEGATE_ISSUER", "https://issuer.invalid/")
        .env("SCOPEGATE_LISTEN", "192.0.2.1:1")
        .env("SCOPEGATE_CONFIG", "/nonexistent/scopegate.toml")
        .env("SCOPEGATE_LOG_FORMAT", "json");
    let out = child.output().expect("run the sample");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("3 passed"), "{stdout}");
}
