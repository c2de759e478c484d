//! The local mirror of the ZSR register in `state.sqlite`: each number with its
//! whole record as the service delivered it (unknown fields and every validity
//! period kept, placeholder dates 0001-01-01 and 9999-12-31 included), whether
//! it is still active, and when it changed.
//!
//! The FAQ's mutation rules: a record replaces the previous one whole, so an
//! element missing from a later answer is gone (storno; counted as deleted); a
//! number missing from a full number list while still active locally is ended
//! (kept, marked ended). Each detail batch is stored in one transaction, and
//! ending numbers happens in the transaction that also records the sync as
//! done: a crash leaves whole batches and no half-applied one.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, OptionalExtension};
use serde_json::Value;
use time::OffsetDateTime;

use super::number::Kind;
use crate::sidecar::cursor;
use crate::store::{Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS zsr_number (
    number   TEXT PRIMARY KEY,
    kind     TEXT NOT NULL,
    record   TEXT NOT NULL,
    active   INTEGER NOT NULL,
    ended_at INTEGER,
    updated  INTEGER NOT NULL
);";

/// The cursor service name and the cursor holding the last finished sync's
/// cut-off date.
pub const CURSOR_SERVICE: &str = "zsr";
pub const CURSOR_LAST_SYNC: &str = "last_sync";

/// One mirrored number.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub number: String,
    pub kind: String,
    pub record: Value,
    pub active: bool,
    pub ended_at: Option<OffsetDateTime>,
    pub updated: OffsetDateTime,
}

/// What one batch changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    pub new: u64,
    pub changed: u64,
    pub unchanged: u64,
    /// Elements (objects with an `id`) gone from a record.
    pub deleted: u64,
}

impl std::ops::AddAssign for Applied {
    fn add_assign(&mut self, o: Applied) {
        self.new += o.new;
        self.changed += o.changed;
        self.unchanged += o.unchanged;
        self.deleted += o.deleted;
    }
}

/// Creates the tables if needed.
pub fn init(store: &Store) -> Result<(), StoreError> {
    store.transaction(|tx| tx.execute_batch(SCHEMA))
}

/// Every element of a record, named by the field that holds it and its id.
fn elements(v: &Value, field: &str, out: &mut HashSet<String>) {
    match v {
        Value::Object(o) => {
            if let Some(id) = o.get("id").filter(|i| !i.is_null()) {
                out.insert(format!("{field}#{id}"));
            }
            for (k, x) in o {
                elements(x, k, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                elements(x, field, out);
            }
        }
        _ => {}
    }
}

/// How many elements of `old` are not in `new`.
pub fn deleted_elements(old: &Value, new: &Value) -> u64 {
    let (mut a, mut b) = (HashSet::new(), HashSet::new());
    elements(old, "", &mut a);
    elements(new, "", &mut b);
    a.difference(&b).count() as u64
}

/// The numbers held, and whether each is active.
pub fn numbers(store: &Store) -> Result<HashMap<String, bool>, StoreError> {
    store.read(|c| {
        let mut st = c.prepare("SELECT number, active FROM zsr_number")?;
        let rows = st.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? != 0))
        })?;
        rows.collect()
    })
}

/// Stores a batch of records in one transaction.
pub fn apply(
    store: &Store,
    kind: Kind,
    records: &[(String, Value)],
    now: OffsetDateTime,
) -> Result<Applied, StoreError> {
    store.transaction(|tx| {
        let mut done = Applied::default();
        for (number, record) in records {
            let old: Option<(String, i64)> = tx
                .query_row(
                    "SELECT record, active FROM zsr_number WHERE number = ?1",
                    params![number],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let text = record.to_string();
            match old {
                None => done.new += 1,
                Some((old_text, active)) => {
                    let old_value: Value = serde_json::from_str(&old_text).unwrap_or(Value::Null);
                    if old_value == *record && active != 0 {
                        done.unchanged += 1;
                        continue;
                    }
                    done.changed += 1;
                    done.deleted += deleted_elements(&old_value, record);
                }
            }
            tx.execute(
                "INSERT INTO zsr_number (number, kind, record, active, ended_at, updated)
                 VALUES (?1, ?2, ?3, 1, NULL, ?4)
                 ON CONFLICT (number) DO UPDATE SET kind = ?2, record = ?3, active = 1,
                   ended_at = NULL, updated = ?4",
                params![number, kind.as_str(), text, now.unix_timestamp()],
            )?;
        }
        Ok(done)
    })
}

/// Ends the active numbers not in `listed` (a complete number list) and
/// records the sync as done with `cut_off` for the next one, in one
/// transaction; how many were ended.
pub fn finish(
    store: &Store,
    listed: &HashSet<String>,
    cut_off: &str,
    now: OffsetDateTime,
) -> Result<u64, StoreError> {
    store.transaction(|tx| {
        let active: Vec<String> = {
            let mut st = tx.prepare("SELECT number FROM zsr_number WHERE active = 1")?;
            let rows = st.query_map([], |r| r.get(0))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut ended = 0;
        for n in active.iter().filter(|n| !listed.contains(*n)) {
            tx.execute(
                "UPDATE zsr_number SET active = 0, ended_at = ?2, updated = ?2 WHERE number = ?1",
                params![n, now.unix_timestamp()],
            )?;
            ended += 1;
        }
        cursor::set_in(tx, CURSOR_SERVICE, CURSOR_LAST_SYNC, cut_off, now)?;
        Ok(ended)
    })
}

/// One number of the mirror.
pub fn get(store: &Store, number: &str) -> Result<Option<Stored>, StoreError> {
    store.read(|c| {
        c.query_row(
            "SELECT number, kind, record, active, ended_at, updated FROM zsr_number WHERE number = ?1",
            params![number],
            |r| {
                let record: String = r.get(2)?;
                let ended: Option<i64> = r.get(4)?;
                let updated: i64 = r.get(5)?;
                Ok(Stored {
                    number: r.get(0)?,
                    kind: r.get(1)?,
                    record: serde_json::from_str(&record).unwrap_or(Value::Null),
                    active: r.get::<_, i64>(3)? != 0,
                    ended_at: ended.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
                    updated: OffsetDateTime::from_unix_timestamp(updated)
                        .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                })
            },
        )
        .optional()
    })
}

/// Every active number and its record (for comparisons in tests and checks).
pub fn active_records(store: &Store) -> Result<HashMap<String, Value>, StoreError> {
    store.read(|c| {
        let mut st = c.prepare("SELECT number, record FROM zsr_number WHERE active = 1")?;
        let rows = st.query_map([], |r| {
            let text: String = r.get(1)?;
            Ok((
                r.get::<_, String>(0)?,
                serde_json::from_str(&text).unwrap_or(Value::Null),
            ))
        })?;
        rows.collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_deletions_and_endings_are_counted_and_a_batch_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
        init(&store).unwrap();
        let now = time::macros::datetime!(2026-12-02 10:00 UTC);
        let a = json!({"number": "L248519", "q": [{"id": 1}, {"id": 2}], "x": {"id": 3}});
        let b = json!({"number": "123456K", "v": []});
        let got = apply(&store, Kind::Zsr, &[("L248519".into(), a.clone())], now).unwrap();
        assert_eq!(got.new, 1);
        apply(&store, Kind::K, &[("123456K".into(), b)], now).unwrap();
        // one element of q gone and x replaced: two deleted elements
        let a2 = json!({"number": "L248519", "q": [{"id": 1}], "x": {"id": 4}, "new": true});
        let got = apply(&store, Kind::Zsr, &[("L248519".into(), a2.clone())], now).unwrap();
        assert_eq!((got.changed, got.deleted), (1, 2));
        let got = apply(&store, Kind::Zsr, &[("L248519".into(), a2.clone())], now).unwrap();
        assert_eq!(got.unchanged, 1);
        // the K number is not listed any more: ended, kept
        let listed: HashSet<String> = ["L248519".to_string()].into();
        assert_eq!(finish(&store, &listed, "2026-12-02", now).unwrap(), 1);
        let k = get(&store, "123456K").unwrap().unwrap();
        assert!(!k.active && k.ended_at == Some(now));
        assert_eq!(active_records(&store).unwrap().len(), 1);
        assert_eq!(get(&store, "L248519").unwrap().unwrap().record, a2);
        let c = cursor::get(&store, CURSOR_SERVICE, CURSOR_LAST_SYNC)
            .unwrap()
            .unwrap();
        assert_eq!(c.value, "2026-12-02");
    }
}
