//! Polling the notification service: from the stored serial number on, 100
//! a page, until a page has fewer, each page stored in `state.sqlite`.
//!
//! The guide: the service answers the first 100 notifications with a serial
//! number at or above the one asked for, sorted; without a remembered offset
//! the same alarms come again, and the service deletes them after a while.
//! So the cursor is the next serial number to ask for (the page's highest
//! plus one), and it is advanced **in the same transaction** that stores the
//! page: a crash anywhere leaves either the page and the new cursor, or
//! neither, and the next run asks again from the old cursor. Storing is
//! idempotent on the serial number besides, so a page that comes twice
//! stores nothing twice.

use rusqlite::params;
use time::OffsetDateTime;

use super::client::{Notification, NspClient, NspError, PAGE_SIZE};
use crate::sidecar::cursor;
use crate::store::{Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS brs_notification (
    serial         INTEGER PRIMARY KEY,
    type           TEXT NOT NULL,
    external_ref   TEXT NOT NULL,
    queryable_cvr  TEXT NOT NULL,
    unique_id      TEXT NOT NULL,
    organisation   TEXT NOT NULL,
    patient_cpr    TEXT NOT NULL,
    professional   TEXT NOT NULL,
    time_limit     TEXT NOT NULL,
    actual         TEXT NOT NULL,
    xml            TEXT NOT NULL,
    received       INTEGER NOT NULL
);";

pub const CURSOR_SERVICE: &str = "brs";
/// The next serial number to ask for.
pub const CURSOR_SERIAL: &str = "notification_serial";
/// A run stops after this many pages (100 000 notifications); the next run
/// goes on where it stopped.
pub const MAX_PAGES: usize = 1000;
/// Set in tests only: abort the process inside the transaction of the page
/// with this number (1-based), after its notifications were written and
/// before the cursor is, to show that nothing of it is kept.
pub const ABORT_HOOK: &str = "KIM_CM_TEST_ABORT_IN_BRS_PAGE";

/// Why polling stopped.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("{0}")]
    Nsp(#[from] NspError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the notification service sent serial number {got}, below {asked} which was asked for; nothing of this page was stored: check [brs] notification_url")]
    Backwards { asked: i64, got: i64 },
    #[error("the notification service sent {0} notifications in one answer, more than its documented {PAGE_SIZE}; nothing of this page was stored")]
    TooMany(usize),
}

/// Creates the table if needed.
pub fn init(store: &Store) -> Result<(), StoreError> {
    store.transaction(|tx| tx.execute_batch(SCHEMA))
}

/// The next serial number to ask for (0 at first).
pub fn next_serial(store: &Store) -> Result<i64, StoreError> {
    Ok(cursor::get(store, CURSOR_SERVICE, CURSOR_SERIAL)?
        .and_then(|c| c.value.parse().ok())
        .unwrap_or(0))
}

/// Stores `page` and sets the cursor to `next`, in one transaction; the
/// notifications that were new.
pub fn store_page(
    store: &Store,
    page: &[Notification],
    next: i64,
    page_number: usize,
    now: OffsetDateTime,
) -> Result<Vec<Notification>, StoreError> {
    store.transaction(|tx| {
        let mut new = Vec::new();
        for n in page {
            let added = tx.execute(
                "INSERT OR IGNORE INTO brs_notification (serial, type, external_ref, queryable_cvr,
                   unique_id, organisation, patient_cpr, professional, time_limit, actual, xml, received)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                params![
                    n.serial,
                    n.kind,
                    n.external_reference_id,
                    n.queryable_cvr,
                    n.unique_id,
                    n.organisation,
                    n.patient_cpr,
                    n.professional_cpr,
                    n.time_limit,
                    n.actual_relations.join(","),
                    n.xml,
                    now.unix_timestamp()
                ],
            )?;
            if added == 1 {
                new.push(n.clone());
            }
        }
        if std::env::var(ABORT_HOOK).ok().and_then(|v| v.parse::<usize>().ok()) == Some(page_number) {
            eprintln!("kim-cm: test hook {ABORT_HOOK}: aborting inside the transaction of page {page_number}");
            std::process::abort();
        }
        cursor::set_in(tx, CURSOR_SERVICE, CURSOR_SERIAL, &next.to_string(), now)?;
        Ok(new)
    })
}

/// Every stored notification's serial number, in order.
pub fn stored_serials(store: &Store) -> Result<Vec<i64>, StoreError> {
    store.read(|c| {
        let mut st = c.prepare("SELECT serial FROM brs_notification ORDER BY serial")?;
        let rows = st.query_map([], |r| r.get(0))?;
        rows.collect()
    })
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Polled {
    pub pages: usize,
    pub new: Vec<Notification>,
    pub next_serial: i64,
    /// Stopped at [`MAX_PAGES`] with more to come.
    pub more: bool,
}

/// Polls until the service has no more; `each` sees every new notification
/// after its page was stored.
pub async fn poll(
    client: &NspClient,
    store: &Store,
    each: &mut dyn FnMut(&Notification),
) -> Result<Polled, PollError> {
    init(store)?;
    let mut out = Polled {
        next_serial: next_serial(store)?,
        ..Polled::default()
    };
    loop {
        if out.pages == MAX_PAGES {
            out.more = true;
            return Ok(out);
        }
        let asked = out.next_serial;
        let page = client.notifications(asked).await?;
        if page.len() > PAGE_SIZE {
            return Err(PollError::TooMany(page.len()));
        }
        if let Some(low) = page.iter().map(|n| n.serial).min().filter(|m| *m < asked) {
            return Err(PollError::Backwards { asked, got: low });
        }
        out.pages += 1;
        let next = page.iter().map(|n| n.serial + 1).max().unwrap_or(asked);
        let new = store_page(store, &page, next, out.pages, client.http.clock.now())?;
        tracing::info!(
            page = out.pages,
            received = page.len(),
            new = new.len(),
            next_serial = next,
            "notification page stored"
        );
        for n in &new {
            each(n);
        }
        out.new.extend(new);
        out.next_serial = next;
        if page.len() < PAGE_SIZE {
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(serial: i64) -> Notification {
        Notification {
            serial,
            kind: "BRS".into(),
            external_reference_id: format!("ext-{serial}"),
            queryable_cvr: "31908574".into(),
            unique_id: String::new(),
            organisation: String::new(),
            patient_cpr: String::new(),
            professional_cpr: String::new(),
            time_limit: String::new(),
            actual_relations: vec!["C".into()],
            xml: String::new(),
        }
    }

    #[test]
    fn a_page_and_its_cursor_go_together_and_a_repeat_stores_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
        init(&store).unwrap();
        let now = time::macros::datetime!(2026-12-02 10:00 UTC);
        let new = store_page(&store, &[n(5), n(6)], 7, 1, now).unwrap();
        assert_eq!(new.len(), 2);
        assert_eq!(next_serial(&store).unwrap(), 7);
        // the same page again (a cursor set back): nothing new
        let new = store_page(&store, &[n(6), n(7)], 8, 1, now).unwrap();
        assert_eq!(new.iter().map(|n| n.serial).collect::<Vec<_>>(), [7]);
        assert_eq!(stored_serials(&store).unwrap(), [5, 6, 7]);
    }
}
