//! What was sent to CareFlex, kept in `state.sqlite` for the later feedback
//! check: CareFlex checks a CareFlex ID against the API token only after the
//! import, and its feedback function (not public) is asked by `importId`.
//! Each request's importId with its rows (input line, employee, incident id or
//! error) is stored as soon as the answer is in, before the next request goes
//! out; and each empty report with its month.

use rusqlite::params;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::client::Imported;
use crate::store::{Store, StoreError};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS careflex_import (
    import_id   TEXT PRIMARY KEY,
    careflex_id TEXT NOT NULL,
    sent_at     INTEGER NOT NULL,
    input       TEXT NOT NULL,
    incidents   INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    rows        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS careflex_none (
    careflex_id TEXT NOT NULL,
    month       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    sent_at     INTEGER NOT NULL
);";

/// One row as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRow {
    pub line: usize,
    #[serde(rename = "employeeId")]
    pub employee_id: String,
    #[serde(rename = "externalId", skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(rename = "incidentId", skip_serializing_if = "Option::is_none")]
    pub incident_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One stored import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRecord {
    pub import_id: String,
    pub careflex_id: String,
    pub sent_at: OffsetDateTime,
    pub input: String,
    pub incidents: u64,
    pub failed: u64,
    pub rows: Vec<StoredRow>,
}

/// One stored empty report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoneRecord {
    pub careflex_id: String,
    pub month: String,
    pub created_at: String,
    pub sent_at: OffsetDateTime,
}

/// Creates the tables if needed.
pub fn init(store: &Store) -> Result<(), StoreError> {
    store.transaction(|tx| tx.execute_batch(SCHEMA))
}

/// Keeps one request's answer.
pub fn record_import(
    store: &Store,
    imported: &Imported,
    input: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let rows: Vec<StoredRow> = imported
        .rows
        .iter()
        .map(|r| {
            let (incident_id, code, message) = match &r.result {
                Ok(id) => (Some(id.clone()), None, None),
                Err((c, m)) => (None, Some(c.clone()), Some(m.clone())),
            };
            StoredRow {
                line: r.line,
                employee_id: r.employee_id.clone(),
                external_id: r.external_id.clone(),
                incident_id,
                code,
                message,
            }
        })
        .collect();
    let text = serde_json::to_string(&rows).unwrap_or_else(|_| "[]".into());
    store.transaction(|tx| {
        tx.execute(
            "INSERT OR REPLACE INTO careflex_import
             (import_id, careflex_id, sent_at, input, incidents, failed, rows)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                imported.import_id,
                imported.careflex_id,
                now.unix_timestamp(),
                input,
                imported.rows.len() as i64,
                imported.failed() as i64,
                text
            ],
        )
        .map(drop)
    })
}

/// Keeps an empty report.
pub fn record_none(
    store: &Store,
    careflex_id: &str,
    month: &str,
    created_at: &str,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    store.transaction(|tx| {
        tx.execute(
            "INSERT INTO careflex_none (careflex_id, month, created_at, sent_at) VALUES (?1, ?2, ?3, ?4)",
            params![careflex_id, month, created_at, now.unix_timestamp()],
        )
        .map(drop)
    })
}

fn time_of(t: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(t).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The imports, oldest first; of one CareFlex ID when given.
pub fn imports(store: &Store, careflex_id: Option<&str>) -> Result<Vec<ImportRecord>, StoreError> {
    store.read(|c| {
        let mut st = c.prepare(
            "SELECT import_id, careflex_id, sent_at, input, incidents, failed, rows
             FROM careflex_import WHERE ?1 IS NULL OR careflex_id = ?1
             ORDER BY sent_at, rowid",
        )?;
        let rows = st.query_map(params![careflex_id], |r| {
            let rows: String = r.get(6)?;
            Ok(ImportRecord {
                import_id: r.get(0)?,
                careflex_id: r.get(1)?,
                sent_at: time_of(r.get(2)?),
                input: r.get(3)?,
                incidents: r.get::<_, i64>(4)? as u64,
                failed: r.get::<_, i64>(5)? as u64,
                rows: serde_json::from_str(&rows).unwrap_or_default(),
            })
        })?;
        rows.collect()
    })
}

/// The empty reports, oldest first; of one CareFlex ID when given.
pub fn nones(store: &Store, careflex_id: Option<&str>) -> Result<Vec<NoneRecord>, StoreError> {
    store.read(|c| {
        let mut st = c.prepare(
            "SELECT careflex_id, month, created_at, sent_at FROM careflex_none
             WHERE ?1 IS NULL OR careflex_id = ?1 ORDER BY sent_at, rowid",
        )?;
        let rows = st.query_map(params![careflex_id], |r| {
            Ok(NoneRecord {
                careflex_id: r.get(0)?,
                month: r.get(1)?,
                created_at: r.get(2)?,
                sent_at: time_of(r.get(3)?),
            })
        })?;
        rows.collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sidecar::careflex::client::RowOutcome;

    #[test]
    fn imports_and_empty_reports_are_kept_and_listed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.sqlite")).unwrap();
        init(&store).unwrap();
        init(&store).unwrap();
        let now = time::macros::datetime!(2026-12-02 10:00 UTC);
        let imported = Imported {
            careflex_id: "09ce3580d84bf087".into(),
            import_id: "550a80b5-de70-4078-860e-c03d75b1dc49".into(),
            rows: vec![
                RowOutcome {
                    line: 2,
                    employee_id: "4711".into(),
                    external_id: None,
                    result: Ok("3b2d".into()),
                },
                RowOutcome {
                    line: 3,
                    employee_id: "4811".into(),
                    external_id: Some("x".into()),
                    result: Err(("422".into(), "invalid".into())),
                },
            ],
        };
        record_import(&store, &imported, "in.csv", now).unwrap();
        record_none(&store, "09ce3580d84bf090", "2026-11", "2026-11-30", now).unwrap();
        let got = imports(&store, None).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].incidents, got[0].failed), (2, 1));
        assert_eq!(got[0].rows[1].code.as_deref(), Some("422"));
        assert!(imports(&store, Some("other")).unwrap().is_empty());
        assert_eq!(
            nones(&store, Some("09ce3580d84bf090")).unwrap()[0].month,
            "2026-11"
        );
    }
}
