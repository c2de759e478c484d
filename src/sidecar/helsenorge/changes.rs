//! `kim-cm helsenorge changes`: which local patients' "digitalt aktiv" status
//! may have changed since the last run, so that only those are asked for again
//! (with HelsenorgeAktivSjekken, at most 1000 a call).
//!
//! The order is what makes a crash harmless: the answer is read, the patients
//! to re-check are written out, and only then is the server's offset stored. A
//! run that dies in between gets the same changes again next time.
//!
//! The service keeps changes for three months. An offset older than that has
//! lost changes for good, so every local patient is printed to be re-checked,
//! with a sentence that says why.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::client::{ChangesClient, FeedError};
use super::nin::{self, NinError, Rules};
use super::offset;
use crate::sidecar::clock::Clock;
use crate::sidecar::cursor;
use crate::store::{Store, StoreError};

/// The service's name among the cursors.
pub const SERVICE: &str = "helsenorge";
/// The cursor that holds the server's offset.
pub const OFFSET_CURSOR: &str = "offset";
/// A stored offset this close to the end of the window already counts as
/// outside it: the clocks of kim-cm and Helsenorge may differ.
pub const WINDOW_SAFETY: Duration = Duration::from_secs(24 * 3600);
/// The largest patients file read.
pub const MAX_PATIENTS_FILE: u64 = 256 * 1024 * 1024;
/// How many refused server entries are described one by one in the log.
const MAX_DESCRIBED: usize = 5;

/// The local patients: valid numbers in file order without repeats, and the
/// lines that were not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Patients {
    pub numbers: Vec<String>,
    /// (line number from 1, why)
    pub invalid: Vec<(usize, NinError)>,
}

impl Patients {
    /// One number a line; blank lines and lines starting with `#` are skipped.
    pub fn parse(text: &str, rules: Rules) -> Patients {
        let mut p = Patients::default();
        let mut seen = HashSet::new();
        for (i, line) in text.lines().enumerate() {
            let n = line.trim();
            if n.is_empty() || n.starts_with('#') {
                continue;
            }
            match nin::validate(n, rules) {
                Ok(_) => {
                    if seen.insert(n.to_string()) {
                        p.numbers.push(n.to_string());
                    }
                }
                Err(e) => p.invalid.push((i + 1, e)),
            }
        }
        p
    }

    /// Reads the patients file at `path`.
    pub fn read(path: &Path, rules: Rules) -> Result<Patients, String> {
        let size = std::fs::metadata(path)
            .map_err(|e| format!("cannot read the patients file {}: {e}", path.display()))?
            .len();
        if size > MAX_PATIENTS_FILE {
            return Err(format!(
                "the patients file {} has {size} bytes, more than the {MAX_PATIENTS_FILE} read",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the patients file {}: {e}", path.display()))?;
        Ok(Patients::parse(&text, rules))
    }
}

/// Why every local patient is to be re-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum All {
    /// The stored offset is older than the service's window.
    Lapsed { stored: String },
    /// The offset was dropped on request.
    Reset,
}

/// What a run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The patients printed, to be re-checked.
    pub recheck: Vec<String>,
    /// Why all patients were printed, if they were.
    pub all: Option<All>,
    /// Whether there was no offset before (a first run).
    pub first_run: bool,
    /// Numbers in the answer.
    pub changed: usize,
    /// Numbers in the answer that are no valid identity number (kept all the same).
    pub invalid_from_server: usize,
    /// The offset stored, as the server sent it.
    pub offset: String,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Feed(#[from] FeedError),
    #[error("{0}; the offset was not stored, the next run asks for the same changes")]
    Store(#[from] StoreError),
    #[error("cannot write the patients to re-check ({0}); the offset was not stored, the next run asks for the same changes")]
    Output(std::io::Error),
}

/// Whether `stored` (set at `updated`) is older than the window at `now`.
pub fn lapsed(stored: &str, updated: OffsetDateTime, now: OffsetDateTime) -> bool {
    let at = offset::parse(stored).unwrap_or(updated);
    at < offset::window_start(now) + WINDOW_SAFETY
}

/// Asks for the changes since the stored offset, writes the patients to
/// re-check to `out` one a line, then stores the new offset.
pub async fn run(
    client: &ChangesClient,
    store: &Store,
    patients: &Patients,
    rules: Rules,
    clock: &Arc<dyn Clock>,
    reset: bool,
    out: &mut dyn Write,
) -> Result<Outcome, RunError> {
    let stored = if reset {
        None
    } else {
        cursor::get(store, SERVICE, OFFSET_CURSOR)?
    };
    let now = clock.now();
    let mut all = reset.then_some(All::Reset);
    if let Some(c) = &stored {
        if lapsed(&c.value, c.updated, now) {
            all = Some(All::Lapsed {
                stored: c.value.clone(),
            });
        }
    }
    let changes = client
        .changes(stored.as_ref().map(|c| c.value.as_str()))
        .await?;
    if changes.offset.is_empty() {
        return Err(FeedError::Answer("its offset is empty".into()).into());
    }
    // never refused: the server knows its numbers; a warning is enough
    let mut invalid = 0;
    for (i, n) in changes.fnr.iter().enumerate() {
        if let Err(e) = nin::validate(
            n,
            Rules {
                synthetic: true,
                ..rules
            },
        ) {
            invalid += 1;
            if invalid <= MAX_DESCRIBED {
                tracing::warn!(
                    entry = i + 1,
                    "Helsenorge sent an entry that is no valid identity number ({e}); it is kept"
                );
            }
        }
    }
    if invalid > MAX_DESCRIBED {
        tracing::warn!(
            "Helsenorge sent {invalid} entries that are no valid identity number; all are kept"
        );
    }
    let recheck: Vec<String> = if all.is_some() {
        patients.numbers.clone()
    } else {
        let changed: HashSet<&str> = changes.fnr.iter().map(String::as_str).collect();
        patients
            .numbers
            .iter()
            .filter(|n| changed.contains(n.as_str()))
            .cloned()
            .collect()
    };
    let written = (|| {
        for n in &recheck {
            writeln!(out, "{n}")?;
        }
        out.flush()
    })();
    written.map_err(RunError::Output)?;
    cursor::set(store, SERVICE, OFFSET_CURSOR, &changes.offset, clock.now())?;
    Ok(Outcome {
        recheck,
        all,
        first_run: stored.is_none() && !reset,
        changed: changes.fnr.len(),
        invalid_from_server: invalid,
        offset: changes.offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn patients_with_line_numbers_for_the_invalid_ones() {
        let text = "# practice list\n31129956715\n\n3112995671x\n31129956715\n 31129956716 \n";
        let p = Patients::parse(text, Rules::default());
        assert_eq!(p.numbers, vec!["31129956715"]);
        assert_eq!(
            p.invalid,
            vec![(4, NinError::NotDigits), (6, NinError::CheckDigit2)]
        );
    }

    #[test]
    fn the_window_is_three_months_less_a_day() {
        let now = datetime!(2026-12-02 10:00 UTC);
        let long_ago = datetime!(2020-01-01 0:00 UTC);
        assert!(!lapsed("2026-11-01T00:00:00.00000Z", long_ago, now));
        assert!(!lapsed("2026-09-04T00:00:00.00000Z", long_ago, now));
        assert!(lapsed("2026-09-02T12:00:00.00000Z", long_ago, now));
        // an offset that is no time: when it was stored counts
        assert!(lapsed("opaque", long_ago, now));
        assert!(!lapsed("opaque", datetime!(2026-12-01 0:00 UTC), now));
    }
}
