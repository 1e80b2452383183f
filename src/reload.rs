//! What asks for a configuration reload: SIGHUP, and (with `reload_on_change`) a change in the
//! configuration file's directory, such as the `..data` symlink swap by which Kubernetes updates
//! a mounted ConfigMap. Requests are coalesced: however many arrive while a reload runs, one
//! more follows it. The reload itself is [`crate::server`]'s.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::mpsc;

/// Why a reload was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP: always re-read, even if the file looks unchanged.
    Signal,
    /// Something changed in the file's directory: re-read, and apply only if the file's bytes
    /// differ from the ones in force.
    FileChanged,
}

/// How long file events are let settle before the file is read: an editor or Kubernetes
/// replaces a file in several steps, and reading between two of them would see half a change.
pub const SETTLE: Duration = Duration::from_millis(250);

/// The reload requests of one server. Dropping it stops the signal listener and the watcher.
pub struct Requests {
    tx: mpsc::Sender<Trigger>,
    rx: mpsc::Receiver<Trigger>,
    watcher: Option<notify::RecommendedWatcher>,
    signal_task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Requests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Requests")
            .field("watching", &self.watcher.is_some())
            .finish_non_exhaustive()
    }
}

impl Drop for Requests {
    fn drop(&mut self) {
        if let Some(task) = self.signal_task.take() {
            task.abort();
        }
    }
}

impl Default for Requests {
    fn default() -> Self {
        Requests::new()
    }
}

impl Requests {
    /// No source yet: see [`Requests::on_sighup`] and [`Requests::watch`].
    pub fn new() -> Requests {
        // One slot: a request that finds it taken is already covered by the one waiting there.
        let (tx, rx) = mpsc::channel(1);
        Requests {
            tx,
            rx,
            watcher: None,
            signal_task: None,
        }
    }

    /// Turns every SIGHUP into a request. The handler is installed now (SIGHUP's default action
    /// would end the process), so call this before serving. Must run inside a Tokio runtime.
    #[cfg(unix)]
    pub fn on_sighup(&mut self) -> std::io::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangups = signal(SignalKind::hangup())?;
        let tx = self.tx.clone();
        self.signal_task = Some(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                let _ = tx.try_send(Trigger::Signal);
            }
        }));
        Ok(())
    }

    /// Watches the directory of `path` (not the file: Kubernetes swaps a symlink beside it, and
    /// editors replace files by renaming), turning each burst of events into one request.
    pub fn watch(&mut self, path: &Path) -> Result<(), notify::Error> {
        use notify::Watcher as _;
        let dir: PathBuf = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let tx = self.tx.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // Which file changed does not matter: the reload compares the config's bytes.
                if event.is_ok() {
                    let _ = tx.try_send(Trigger::FileChanged);
                }
            })?;
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        self.watcher = Some(watcher);
        Ok(())
    }

    /// A sender for other sources (tests, an admin endpoint).
    pub fn sender(&self) -> mpsc::Sender<Trigger> {
        self.tx.clone()
    }

    /// The next request; file events are let settle for [`SETTLE`] first, and a signal among
    /// them wins.
    pub async fn next(&mut self) -> Option<Trigger> {
        let mut trigger = self.rx.recv().await?;
        if trigger == Trigger::FileChanged {
            tokio::time::sleep(SETTLE).await;
        }
        while let Ok(more) = self.rx.try_recv() {
            if more == Trigger::Signal {
                trigger = Trigger::Signal;
            }
        }
        Some(trigger)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn requests_coalesce_and_a_signal_wins() {
        let mut requests = Requests::new();
        let tx = requests.sender();
        tx.try_send(Trigger::FileChanged).expect("room for one");
        assert!(tx.try_send(Trigger::Signal).is_err(), "one slot: covered");
        assert_eq!(requests.next().await, Some(Trigger::FileChanged));
        tx.try_send(Trigger::Signal).expect("room again");
        assert_eq!(requests.next().await, Some(Trigger::Signal));
    }

    #[tokio::test]
    async fn a_change_in_the_directory_is_a_request() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("scopegate.toml");
        std::fs::write(&file, "a").expect("write");
        let mut requests = Requests::new();
        requests.watch(&file).expect("watch");
        // A ConfigMap-style swap: a new file renamed over the old one.
        let staged = dir.path().join("..staged");
        std::fs::write(&staged, "b").expect("write");
        std::fs::rename(&staged, &file).expect("rename");
        let next = tokio::time::timeout(Duration::from_secs(10), requests.next()).await;
        assert_eq!(
            next.expect("a request within 10 s"),
            Some(Trigger::FileChanged)
        );
    }
}
