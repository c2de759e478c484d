//! kim-cm's embedded state (SQLite in the data directory): what must survive a
//! restart. The accounts' limits (getLimits, cached 24 hours, A_22416), and the
//! outcome of opening each received mail per account and UIDL,
//! so that the same RETR always yields the same bytes and LIST/STAT can report the
//! size the client will receive. Opened mails themselves are not stored: opening is
//! deterministic, so no plaintext has to sit on disk between two RETRs.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

/// How long SQLite waits for a lock held by another connection.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
#[error("the state database {path} failed: {source}")]
pub struct StoreError {
    path: String,
    source: rusqlite::Error,
}

/// The outcome of opening one received mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenResult {
    /// Size in bytes of the mail the client gets.
    pub size: u64,
    /// X-KIM-DecryptionResult codes.
    pub decryption: String,
    /// X-KIM-IntegrityCheckResult codes (empty when not checked).
    pub integrity: String,
}

pub struct Store {
    conn: Mutex<Connection>,
    path: String,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS pop3_result (
    account    TEXT NOT NULL,
    uidl       TEXT NOT NULL,
    size       INTEGER NOT NULL,
    decryption TEXT NOT NULL,
    integrity  TEXT NOT NULL,
    created    INTEGER NOT NULL,
    PRIMARY KEY (account, uidl)
);
CREATE TABLE IF NOT EXISTS account_limit (
    account TEXT PRIMARY KEY,
    json    TEXT NOT NULL,
    fetched INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sidecar_cursor (
    service TEXT NOT NULL,
    name    TEXT NOT NULL,
    value   TEXT NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (service, name)
);";

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let p = path.display().to_string();
        let err = |source| StoreError {
            path: p.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.execute_batch(SCHEMA).map_err(err)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path: p,
        })
    }

    fn err(&self, source: rusqlite::Error) -> StoreError {
        StoreError {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // a panic while holding the lock leaves SQLite consistent; go on with it
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn open_result(&self, account: &str, uidl: &str) -> Result<Option<OpenResult>, StoreError> {
        self.lock()
            .query_row(
                "SELECT size, decryption, integrity FROM pop3_result WHERE account = ?1 AND uidl = ?2",
                params![account.to_ascii_lowercase(), uidl],
                |r| {
                    Ok(OpenResult {
                        size: r.get::<_, i64>(0)? as u64,
                        decryption: r.get(1)?,
                        integrity: r.get(2)?,
                    })
                },
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn put_open_result(
        &self,
        account: &str,
        uidl: &str,
        r: &OpenResult,
    ) -> Result<(), StoreError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        self.lock()
            .execute(
                "INSERT INTO pop3_result (account, uidl, size, decryption, integrity, created)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (account, uidl) DO UPDATE SET size = ?3, decryption = ?4, integrity = ?5",
                params![account.to_ascii_lowercase(), uidl, r.size as i64, r.decryption, r.integrity, now],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

impl Store {
    /// Runs `work` in one transaction: all of it is stored, or none (a crash
    /// in between leaves the state before). For the sidecars' own tables.
    pub fn transaction<T>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let mut conn = self.lock();
        let tx = conn.transaction().map_err(|e| self.err(e))?;
        let value = work(&tx).map_err(|e| self.err(e))?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(value)
    }

    /// Reads with the connection (no transaction of its own).
    pub fn read<T>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        work(&self.lock()).map_err(|e| self.err(e))
    }

    /// The cached getLimits answer of `account` (JSON) and when it was fetched (Unix
    /// seconds).
    pub fn account_limit(&self, account: &str) -> Result<Option<(String, i64)>, StoreError> {
        self.lock()
            .query_row(
                "SELECT json, fetched FROM account_limit WHERE account = ?1",
                params![account.to_ascii_lowercase()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))
    }

    pub fn put_account_limit(
        &self,
        account: &str,
        json: &str,
        fetched: i64,
    ) -> Result<(), StoreError> {
        self.lock()
            .execute(
                "INSERT INTO account_limit (account, json, fetched) VALUES (?1, ?2, ?3)
                 ON CONFLICT (account) DO UPDATE SET json = ?2, fetched = ?3",
                params![account.to_ascii_lowercase(), json, fetched],
            )
            .map(drop)
            .map_err(|e| self.err(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.sqlite");
        let r = OpenResult {
            size: 1234,
            decryption: "00".into(),
            integrity: "01".into(),
        };
        {
            let s = Store::open(&path).unwrap();
            assert_eq!(s.open_result("a@x.de", "u1").unwrap(), None);
            s.put_open_result("A@x.de", "u1", &r).unwrap();
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.open_result("a@x.de", "u1").unwrap(), Some(r));
        assert_eq!(s.open_result("b@x.de", "u1").unwrap(), None);
    }
}
