//! Progress of a long sidecar run: a bar on a terminal (indicatif), and on
//! anything else (a service's journal) a log line every tenth of the way, so
//! that an unattended run still shows how far it got.

use std::io::IsTerminal;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};

/// One run's progress.
pub struct Progress {
    bar: Option<ProgressBar>,
    what: &'static str,
    total: Mutex<(u64, u64, u64)>,
}

impl Progress {
    /// Progress of `what` (e.g. "ZSR details") over `total` steps; a bar only
    /// when standard error is a terminal and `show_bar` is set.
    pub fn new(what: &'static str, total: u64, show_bar: bool) -> Progress {
        let bar = (show_bar && std::io::stderr().is_terminal()).then(|| {
            let b = ProgressBar::new(total);
            if let Ok(style) =
                ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({eta} left)")
            {
                b.set_style(style.progress_chars("=> "));
            }
            b.set_message(what);
            b
        });
        Progress {
            bar,
            what,
            total: Mutex::new((0, total, 0)),
        }
    }

    /// `n` more steps done.
    pub fn advance(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
            return;
        }
        let mut t = self.total.lock().unwrap_or_else(|p| p.into_inner());
        t.0 += n;
        let tenth = (t.0 * 10).checked_div(t.1).unwrap_or(10);
        if tenth > t.2 {
            t.2 = tenth;
            tracing::info!("{}: {} of {} done", self.what, t.0, t.1);
        }
    }

    /// The bar is removed; the caller prints the summary.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
