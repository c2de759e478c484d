//! Durable cursors of the sidecars: where a feed or a sync left off (the
//! Helsenorge offset, the ZSR sync's cut-off date, the NSP serial number), kept
//! in `state.sqlite`. A cursor is advanced only in the same transaction that
//! stores what was read up to it, or after that was stored, never before: a
//! crash in between repeats work instead of losing it.

use rusqlite::{params, Connection, OptionalExtension};
use time::OffsetDateTime;

use crate::store::{Store, StoreError};

/// A cursor's value and when it was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub value: String,
    pub updated: OffsetDateTime,
}

/// Reads `service`/`name` inside a transaction or with a connection.
pub fn get_in(conn: &Connection, service: &str, name: &str) -> rusqlite::Result<Option<Cursor>> {
    conn.query_row(
        "SELECT value, updated FROM sidecar_cursor WHERE service = ?1 AND name = ?2",
        params![service, name],
        |r| {
            let updated: i64 = r.get(1)?;
            Ok(Cursor {
                value: r.get(0)?,
                updated: OffsetDateTime::from_unix_timestamp(updated)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            })
        },
    )
    .optional()
}

/// Sets `service`/`name` inside a transaction (with what it covers).
pub fn set_in(
    conn: &Connection,
    service: &str,
    name: &str,
    value: &str,
    now: OffsetDateTime,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO sidecar_cursor (service, name, value, updated) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (service, name) DO UPDATE SET value = ?3, updated = ?4",
        params![service, name, value, now.unix_timestamp()],
    )
    .map(drop)
}

/// Every cursor: (service, name, cursor).
pub fn all(store: &Store) -> Result<Vec<(String, String, Cursor)>, StoreError> {
    store.read(|c| {
        let mut st = c.prepare(
            "SELECT service, name, value, updated FROM sidecar_cursor ORDER BY service, name",
        )?;
        let rows = st.query_map([], |r| {
            let updated: i64 = r.get(3)?;
            Ok((
                r.get(0)?,
                r.get(1)?,
                Cursor {
                    value: r.get(2)?,
                    updated: OffsetDateTime::from_unix_timestamp(updated)
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                },
            ))
        })?;
        rows.collect()
    })
}

/// The cursor `service`/`name`, if set.
pub fn get(store: &Store, service: &str, name: &str) -> Result<Option<Cursor>, StoreError> {
    store.read(|c| get_in(c, service, name))
}

/// Sets the cursor `service`/`name` on its own.
pub fn set(
    store: &Store,
    service: &str,
    name: &str,
    value: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    store.transaction(|tx| set_in(tx, service, name, value, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_survives_a_reopen_and_a_failed_transaction_leaves_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let now = time::macros::datetime!(2026-12-02 10:00 UTC);
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(get(&s, "helsenorge", "offset").unwrap(), None);
            set(
                &s,
                "helsenorge",
                "offset",
                "2026-12-01T10:00:00.00000Z",
                now,
            )
            .unwrap();
            let failed = s.transaction(|tx| {
                set_in(tx, "helsenorge", "offset", "later", now)?;
                Err::<(), _>(rusqlite::Error::InvalidQuery)
            });
            assert!(failed.is_err());
        }
        let s = Store::open(&path).unwrap();
        let c = get(&s, "helsenorge", "offset").unwrap().unwrap();
        assert_eq!(c.value, "2026-12-01T10:00:00.00000Z");
        assert_eq!(c.updated, now);
    }
}
