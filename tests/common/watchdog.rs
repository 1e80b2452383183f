//! A per-test time bound: a test that hangs (a Check that never answers, a drain that never ends,
//! a child process that never exits) fails the run with a message naming it, instead of blocking
//! CI until its own time limit.
//!
//! The shared fixtures arm it (`Env`, `Scopegate`, `JwksServer`, `Binary`, `Stack`,
//! [`scopegate_command`](super::scopegate_command), [`eventually`](super::eventually)), so no
//! test has to. Arming is per test thread (libtest runs each test on a thread named after it) and
//! lasts until that thread exits: the bound counts from the first fixture the test starts, and a
//! fixture left behind after the test cannot fire it. A test past its bound cannot be stopped
//! from outside its thread, so the watchdog kills the processes the fixtures started and ends the
//! whole test binary with exit status 101 (what libtest uses for a failure), after printing the
//! test's name.
//!
//! It needs libtest's default of a thread per test: with `--test-threads=1` libtest runs every
//! test on the main thread, which names no test and never exits between them, so nothing is
//! armed there.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How long a test may run, unless `TEST_BOUND_SECONDS` says otherwise: well above the slowest
/// test's own waits (an Envoy stack start allows 60 s, a process start 20 s) on a loaded machine.
const DEFAULT_BOUND: Duration = Duration::from_secs(180);

/// The bound every armed test gets: `TEST_BOUND_SECONDS`, else [`DEFAULT_BOUND`].
pub fn bound() -> Duration {
    static BOUND: OnceLock<Duration> = OnceLock::new();
    *BOUND.get_or_init(|| {
        std::env::var("TEST_BOUND_SECONDS")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .filter(|&s| s > 0)
            .map_or(DEFAULT_BOUND, Duration::from_secs)
    })
}

/// What the watchdog thread watches: armed tests and the processes started for them.
#[derive(Default)]
struct Watched {
    /// Armed test threads: an id per thread, to its test name and deadline.
    tests: HashMap<u64, (String, Instant)>,
    /// Processes to kill before the run is ended.
    children: HashMap<u32, String>,
}

fn watched() -> &'static Mutex<Watched> {
    static WATCHED: OnceLock<Mutex<Watched>> = OnceLock::new();
    WATCHED.get_or_init(|| {
        std::thread::Builder::new()
            .name("test-watchdog".into())
            .spawn(watch)
            .expect("start the test watchdog");
        Mutex::new(Watched::default())
    })
}

/// The watchdog thread: ends the run once an armed test is past its deadline.
fn watch() {
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = Instant::now();
        let (late, children) = {
            let watched = watched().lock().unwrap_or_else(|e| e.into_inner());
            let late: Vec<String> = watched
                .tests
                .values()
                .filter(|(_, deadline)| *deadline <= now)
                .map(|(name, _)| name.clone())
                .collect();
            (late, watched.children.clone())
        };
        if late.is_empty() {
            continue;
        }
        for name in &late {
            eprintln!(
                "test {name} has not finished within its bound of {} s: failing the run \
                 (TEST_BOUND_SECONDS sets the bound)",
                bound().as_secs()
            );
        }
        // The fixtures' Drop cannot run now: stop their processes, or they would outlive us;
        // and any other child of ours (a command a test spawned itself).
        let mut children = children;
        for pid in direct_children() {
            children
                .entry(pid)
                .or_insert_with(|| "a child process".to_string());
        }
        for (pid, what) in children {
            eprintln!("killing {what} (pid {pid}), started for the test");
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        std::process::exit(101);
    }
}

/// The processes whose parent is this one, from `/proc` (empty where there is none).
fn direct_children() -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // The parent is the second field after the command name, which is in parentheses
            // and may hold spaces.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit_once(") ")?.1.to_string();
                    rest.split(' ').nth(1)?.parse::<u32>().ok()
                })
                == Some(me)
        })
        .collect()
}

/// Disarms its thread's test when the thread exits (the test is over, pass or fail).
struct Armed(u64);

impl Drop for Armed {
    fn drop(&mut self) {
        let mut watched = watched().lock().unwrap_or_else(|e| e.into_inner());
        watched.tests.remove(&self.0);
    }
}

thread_local! {
    static ARMED: RefCell<Option<Armed>> = const { RefCell::new(None) };
}

/// Arms the bound for the test running on this thread, from now; does nothing if it is already
/// armed, or if this is not a test's thread (a runtime worker, the main thread).
pub fn arm() {
    arm_with(bound());
}

/// [`arm`] with a bound of `within` (for a test whose length is its purpose, the soak), replacing
/// any bound armed before.
pub fn arm_for(within: Duration) {
    disarm();
    arm_with(within);
}

fn arm_with(within: Duration) {
    let current = std::thread::current();
    let Some(name) = current.name() else { return };
    // libtest names each test's thread after the test; other threads are not tests.
    if name == "main" || name.starts_with("tokio-") || name == "test-watchdog" {
        return;
    }
    ARMED.with(|armed| {
        let mut armed = armed.borrow_mut();
        if armed.is_some() {
            return;
        }
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        watched()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .tests
            .insert(id, (name.to_string(), Instant::now() + within));
        *armed = Some(Armed(id));
    });
}

fn disarm() {
    let armed = ARMED.with(|armed| armed.borrow_mut().take());
    drop(armed);
}

/// Registers a process started for a test, to be killed if the run is ended.
pub fn child_started(pid: u32, what: &str) {
    watched()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .children
        .insert(pid, what.to_string());
}

/// The process has been waited for: nothing to kill any more.
pub fn child_ended(pid: u32) {
    watched()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .children
        .remove(&pid);
}
