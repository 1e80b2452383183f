//! What asks for a configuration reload: SIGHUP, and (with `reload_on_change`) a change in the
//! configuration file's directory, such as the `..data` symlink swap by which Kubernetes updates
//! a mounted ConfigMap. Requests are coalesced: however many arrive while a reload runs, one
//! more follows it, and a signal among them is never lost to a file change. The reload itself
//! is [`crate::serve::server`]'s.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use notify::EventKind;
use notify::event::{AccessKind, AccessMode, ModifyKind};

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

/// The requests not yet taken, one flag per kind: a file change can never stand in for a
/// signal, which rereads more (the TLS files too, and the file even when its bytes look
/// unchanged).
#[derive(Debug, Default)]
struct Pending {
    signal: AtomicBool,
    file: AtomicBool,
    wake: tokio::sync::Notify,
}

/// A handle that asks for reloads. Cheap to clone; a request never waits and is never lost,
/// only coalesced with one of its kind still waiting.
#[derive(Clone, Debug)]
pub struct Sender(Arc<Pending>);

impl Sender {
    /// Asks for a reload for `trigger`.
    pub fn send(&self, trigger: Trigger) {
        let flag = match trigger {
            Trigger::Signal => &self.0.signal,
            Trigger::FileChanged => &self.0.file,
        };
        flag.store(true, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

/// The reload requests of one server. Dropping it stops the signal listener and the watcher.
pub struct Requests {
    pending: Arc<Pending>,
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

/// The name beside the configuration file through which Kubernetes updates a mounted ConfigMap:
/// the file is a symlink into `..data`, itself a symlink that the kubelet swaps by rename.
const CONFIGMAP_DATA: &str = "..data";

/// Whether a directory event can change the configuration file's content: an event of a kind
/// that can ([`can_change_content`]) on the file itself or on `..data`, or one that names no
/// file (a rescan after lost events). Events on other files are not: whoever writes beside
/// the configuration (a log, renewed TLS files, which a SIGHUP takes up) would otherwise make
/// every write a reread.
fn concerns(event: &notify::Event, file: &std::ffi::OsStr) -> bool {
    can_change_content(&event.kind)
        && (event.paths.is_empty()
            || event.paths.iter().any(|path| {
                path.file_name()
                    .is_some_and(|name| name == file || name == CONFIGMAP_DATA)
            }))
}

/// Whether a directory event of this kind can mean that a file's content changed: a file
/// created, written and closed, renamed (the `..data` swap of a ConfigMap mount, an editor's
/// rename over the file), removed, or written to. Opening, reading, closing without writing and
/// metadata changes cannot, and the reload's own reads of the configuration file cause exactly
/// those: reacting to them would make every read ask for the next. Kinds a backend reports
/// without detail, and a rescan after lost events, count as changes.
fn can_change_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Remove(_)
        | EventKind::Any
        | EventKind::Other => true,
    }
}

impl Requests {
    /// No source yet: see [`Requests::on_sighup`] and [`Requests::watch`].
    pub fn new() -> Requests {
        Requests {
            pending: Arc::default(),
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
        let tx = self.sender();
        self.signal_task = Some(tokio::spawn(async move {
            while hangups.recv().await.is_some() {
                tx.send(Trigger::Signal);
            }
        }));
        Ok(())
    }

    /// Watches the directory of `path` (not the file: Kubernetes swaps a symlink beside it, and
    /// editors replace files by renaming), turning each burst of events that can change the
    /// file's content into one request: events on the file itself or on the `..data` symlink
    /// beside it, never reads, and never other files in the directory.
    pub fn watch(&mut self, path: &Path) -> Result<(), notify::Error> {
        use notify::Watcher as _;
        let dir: PathBuf = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file = path.file_name().unwrap_or_default().to_os_string();
        let tx = self.sender();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                // A request is only a reason to look: the reload compares the file's bytes.
                if let Ok(event) = event
                    && concerns(&event, &file)
                {
                    tx.send(Trigger::FileChanged);
                }
            })?;
        watcher.watch(&dir, notify::RecursiveMode::NonRecursive)?;
        self.watcher = Some(watcher);
        Ok(())
    }

    /// A sender for other sources (tests, an admin endpoint).
    pub fn sender(&self) -> Sender {
        Sender(Arc::clone(&self.pending))
    }

    /// The next request. A signal is taken at once and covers the file changes waiting with
    /// it; file events are let settle for [`SETTLE`] first, and a signal that arrives
    /// meanwhile wins.
    pub async fn next(&mut self) -> Trigger {
        let pending = &self.pending;
        loop {
            if pending.signal.swap(false, Ordering::SeqCst) {
                // The signal's reload reads everything from here on, so the file changes seen
                // so far are covered; any later one sets the flag again.
                pending.file.store(false, Ordering::SeqCst);
                return Trigger::Signal;
            }
            if pending.file.load(Ordering::SeqCst) {
                tokio::time::sleep(SETTLE).await;
                pending.file.store(false, Ordering::SeqCst);
                if pending.signal.swap(false, Ordering::SeqCst) {
                    return Trigger::Signal;
                }
                return Trigger::FileChanged;
            }
            // A request made between the checks above and this wait leaves a permit behind, so
            // it is not missed.
            pending.wake.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, MetadataKind, RemoveKind, RenameMode};

    #[tokio::test(start_paused = true)]
    async fn requests_coalesce_and_a_signal_is_never_lost_to_a_file_change() {
        let mut requests = Requests::new();
        let tx = requests.sender();
        // A file change waiting, then a signal: the signal is what is taken, once.
        tx.send(Trigger::FileChanged);
        tx.send(Trigger::Signal);
        assert_eq!(requests.next().await, Trigger::Signal);
        // Several of one kind: one request.
        tx.send(Trigger::FileChanged);
        tx.send(Trigger::FileChanged);
        assert_eq!(requests.next().await, Trigger::FileChanged);
        tx.send(Trigger::Signal);
        tx.send(Trigger::Signal);
        assert_eq!(requests.next().await, Trigger::Signal);
        // Nothing more is waiting.
        let idle = tokio::time::timeout(Duration::from_secs(60), requests.next()).await;
        assert!(idle.is_err(), "{idle:?}");
    }

    /// A signal arriving while file events settle wins over them.
    #[tokio::test(start_paused = true)]
    async fn a_signal_during_the_settle_wins() {
        let mut requests = Requests::new();
        let tx = requests.sender();
        tx.send(Trigger::FileChanged);
        let next = tokio::spawn(async move { requests.next().await });
        tokio::time::sleep(SETTLE / 2).await;
        tx.send(Trigger::Signal);
        assert_eq!(next.await.expect("task"), Trigger::Signal);
    }

    /// With `reload_on_change`, only events that can change the file's content (on the file,
    /// or on `..data` when a ConfigMap swaps it) ask for a reload.
    #[test]
    fn only_events_that_can_change_content_ask_for_a_reload() {
        for (kind, want) in [
            (EventKind::Access(AccessKind::Open(AccessMode::Any)), false),
            (EventKind::Access(AccessKind::Read), false),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Read)),
                false,
            ),
            (
                EventKind::Modify(ModifyKind::Metadata(MetadataKind::Any)),
                false,
            ),
            (
                EventKind::Access(AccessKind::Close(AccessMode::Write)),
                true,
            ),
            (EventKind::Create(CreateKind::File), true),
            (EventKind::Modify(ModifyKind::Name(RenameMode::To)), true),
            (EventKind::Modify(ModifyKind::Name(RenameMode::From)), true),
            (
                EventKind::Modify(ModifyKind::Data(notify::event::DataChange::Any)),
                true,
            ),
            (EventKind::Remove(RemoveKind::File), true),
            (EventKind::Other, true),
        ] {
            assert_eq!(can_change_content(&kind), want, "{kind:?}");
        }
        let written = EventKind::Access(AccessKind::Close(AccessMode::Write));
        let renamed = EventKind::Modify(ModifyKind::Name(RenameMode::Both));
        for (event, want) in [
            (
                notify::Event::new(written).add_path("/etc/sg/config.toml".into()),
                true,
            ),
            (
                notify::Event::new(written).add_path("/etc/sg/scopegate.log".into()),
                false,
            ),
            (
                notify::Event::new(written).add_path("/etc/sg/tls.crt".into()),
                false,
            ),
            (
                notify::Event::new(renamed)
                    .add_path("/etc/sg/..data_tmp".into())
                    .add_path("/etc/sg/..data".into()),
                true,
            ),
            (
                notify::Event::new(EventKind::Access(AccessKind::Open(AccessMode::Any)))
                    .add_path("/etc/sg/config.toml".into()),
                false,
            ),
            (notify::Event::new(EventKind::Other), true),
        ] {
            assert_eq!(concerns(&event, "config.toml".as_ref()), want, "{event:?}");
        }
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
        assert_eq!(next.expect("a request within 10 s"), Trigger::FileChanged);
    }
}
