//! Stopping and reloading without losing a mail (issue 9): on SIGTERM kim-cm
//! stops accepting, tells every session waiting for its next command that it
//! is going (SMTP `421 4.3.2`, POP3 `-ERR [SYS/TEMP]` without the UPDATE
//! state, so nothing is deleted), lets a session in the middle of a mail finish
//! it, and waits at most [`SHUTDOWN_GRACE`] for them; what is left then is cut,
//! and the spool folder is emptied. On SIGHUP the listeners are replaced by
//! ones from the re-read config while the sessions in flight go on with the
//! old settings.
//!
//! The state is process-wide: one `kim-cm serve` per process.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::watch;

/// How long sessions in flight get to finish after SIGTERM.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

struct State {
    going: watch::Sender<bool>,
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
}

fn state() -> &'static State {
    static S: OnceLock<State> = OnceLock::new();
    S.get_or_init(|| State {
        going: watch::Sender::new(false),
        in_flight: AtomicUsize::new(0),
        idle: tokio::sync::Notify::new(),
    })
}

/// Starts the shutdown: listeners stop, waiting sessions are told.
pub fn begin() {
    state().going.send_replace(true);
}

pub fn is_shutting_down() -> bool {
    *state().going.borrow()
}

/// Resolves once the shutdown has begun (at once if it has).
pub async fn requested() {
    let mut rx = state().going.subscribe();
    let _ = rx.wait_for(|v| *v).await;
}

/// Counts a session while it lives.
pub struct SessionGuard(());

impl SessionGuard {
    pub fn new() -> SessionGuard {
        state().in_flight.fetch_add(1, Ordering::SeqCst);
        SessionGuard(())
    }
}

impl Default for SessionGuard {
    fn default() -> Self {
        SessionGuard::new()
    }
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if state().in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            state().idle.notify_waiters();
        }
    }
}

/// Sessions running now.
pub fn in_flight() -> usize {
    state().in_flight.load(Ordering::SeqCst)
}

/// Waits until no session runs, at most `bound`; the sessions still running.
pub async fn drain(bound: Duration) -> usize {
    let s = state();
    let wait = async {
        loop {
            let idle = s.idle.notified();
            if s.in_flight.load(Ordering::SeqCst) == 0 {
                return;
            }
            idle.await;
        }
    };
    let _ = tokio::time::timeout(bound, wait).await;
    in_flight()
}

/// Removes what cut sessions left in the spool folder; how many files.
pub fn clear_spool(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}
