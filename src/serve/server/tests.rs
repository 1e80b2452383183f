use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::*;
use crate::auth::jwks::Refetch;
use crate::auth::keys::KeySet;

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
    }
}

/// The refresher dies (a panic) while a Check waits on it: the waiter is released, health
/// goes NOT_SERVING, the death is logged at error, and a new refresher is started that
/// brings health back once it installs keys.
#[tokio::test(start_paused = true)]
async fn a_dead_refresher_is_reported_and_restarted() {
    let log = Captured::default();
    let _guard = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer({
                let log = log.clone();
                move || log.clone()
            })
            .with_ansi(false)
            .finish(),
    );
    let jwks = Jwks::new(crate::auth::jwks::tests::settings());
    jwks.install(KeySet::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let (die_tx, die_rx) = tokio::sync::oneshot::channel::<()>();
    let mut die_rx = Some(die_rx);
    let starts = Arc::new(AtomicUsize::new(0));
    let supervisor = tokio::spawn(supervise(
        "JWKS refresher",
        {
            let (jwks, starts) = (jwks.clone(), Arc::clone(&starts));
            move || {
                starts.fetch_add(1, Ordering::SeqCst);
                let (jwks, die) = (jwks.clone(), die_rx.take());
                async move {
                    match die {
                        // The first refresher panics when told to.
                        Some(die) => {
                            let _ = die.await;
                            panic!("modulus arithmetic overflowed");
                        }
                        // Its successor loads keys, then runs until shutdown.
                        None => {
                            jwks.install(KeySet::default());
                            std::future::pending::<()>().await;
                        }
                    }
                }
            }
        },
        {
            let jwks = jwks.clone();
            move || jwks.refresher_stopped()
        },
        stop_rx,
    ));
    settle().await;
    // A Check waits on a refetch that the doomed refresher would have run.
    let waiter = tokio::spawn({
        let jwks = jwks.clone();
        async move { jwks.refetch_for_unknown_kid().await }
    });
    settle().await;
    assert!(!waiter.is_finished());

    die_tx.send(()).expect("refresher alive");
    settle().await;
    assert!(
        waiter.is_finished(),
        "a waiter must not wait on a dead task"
    );
    assert_eq!(waiter.await.expect("task"), Refetch::Completed);
    assert!(!jwks.is_usable(), "NOT_SERVING while no refresher runs");
    assert_eq!(starts.load(Ordering::SeqCst), 1);
    let text = String::from_utf8(log.0.lock().expect("log").clone()).expect("utf-8");
    assert!(
        text.contains("ERROR")
            && text.contains("JWKS refresher")
            && text.contains("modulus arithmetic overflowed"),
        "{text}"
    );

    // Restarted after the first backoff; usable again once it has installed keys.
    tokio::time::advance(Duration::from_secs(1)).await;
    settle().await;
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    assert!(jwks.is_usable());

    stop_tx.send(true).expect("supervisor alive");
    drop(stop_tx);
    settle().await;
    // The running task ends on its own stop signal in the server; here it never does, so the
    // supervisor is still waiting on it: a shutdown is not a death, and nothing restarts.
    assert_eq!(starts.load(Ordering::SeqCst), 2);
    supervisor.abort();
}

/// A task that ends because the server stops is not restarted and not reported.
#[tokio::test(start_paused = true)]
async fn a_task_ending_at_shutdown_is_left_alone() {
    let (stop_tx, stop_rx) = watch::channel(false);
    let exits = Arc::new(AtomicUsize::new(0));
    let supervisor = tokio::spawn(supervise(
        "health tracker",
        {
            let stop_rx = stop_rx.clone();
            move || {
                let mut stop_rx = stop_rx.clone();
                async move {
                    let _ = stop_rx.wait_for(|stop| *stop).await;
                }
            }
        },
        {
            let exits = Arc::clone(&exits);
            move || {
                exits.fetch_add(1, Ordering::SeqCst);
            }
        },
        stop_rx,
    ));
    settle().await;
    stop_tx.send(true).expect("send");
    supervisor.await.expect("supervisor returns");
    assert_eq!(exits.load(Ordering::SeqCst), 0);
}

/// A task that keeps dying is restarted after 1, 2, 4, 8, then 10 s (never more); one that
/// ran for `RESTART_RESET` (60 s) before dying is restarted after 1 s again, and one that ran
/// 59 s goes on backing off from where it was. Paused time: the delays are the runtime's own
/// clock, exact, not a wall-clock measurement.
#[tokio::test(start_paused = true)]
async fn restarts_back_off_from_1_s_to_10_s_and_reset_after_60_s_of_running() {
    // How long each successive task runs before it returns on its own.
    const LIFETIMES: [u64; 10] = [0, 0, 0, 0, 0, 0, 60, 0, 59, 0];
    let (_stop_tx, stop_rx) = watch::channel(false);
    let starts = Arc::new(Mutex::new(Vec::<Instant>::new()));
    let supervisor = tokio::spawn(supervise(
        "health tracker",
        {
            let starts = Arc::clone(&starts);
            move || {
                let lifetime = {
                    let mut starts = starts.lock().expect("starts");
                    starts.push(Instant::now());
                    LIFETIMES.get(starts.len() - 1).copied().unwrap_or(3600)
                };
                async move { tokio::time::sleep(Duration::from_secs(lifetime)).await }
            }
        },
        || {},
        stop_rx,
    ));
    while starts.lock().expect("starts").len() < LIFETIMES.len() + 1 {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let starts = starts.lock().expect("starts").clone();
    // The pause between one task's end and the next one's start.
    let delays: Vec<u64> = starts
        .windows(2)
        .zip(LIFETIMES)
        .map(|(pair, lifetime)| (pair[1] - pair[0]).as_secs() - lifetime)
        .collect();
    assert_eq!(delays, [1, 2, 4, 8, 10, 10, 1, 2, 4, 8]);
    supervisor.abort();
}
