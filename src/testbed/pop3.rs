//! The simulated Fachdienst's POP3 server: the mail store behind the same POP3
//! session kim-cm's own listeners run (`crate::pop3::server`).
//!
//! It behaves as RFC 1939 describes a maildrop: login with the plain address and
//! password, an exclusive lock per mailbox while a session is open (a second one gets
//! `[IN-USE]`), a snapshot of the mailbox at login, UIDL = the store's uid (stable
//! across sessions), DELE only marks, QUIT removes the marked mails, and a session
//! that ends without QUIT removes nothing.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt};

use super::mailstore::{MailStore, StoredMail};
use super::users::Users;
use crate::pop3::server::{Backend, ClientInfo, LoginRefused, Mailbox, MailboxError};
use crate::spool::{Spool, SpoolSettings};

/// The simulated POP3 server of a Fachdienst.
pub struct TestbedPop3 {
    store: Arc<MailStore>,
    users: Arc<Users>,
    spool: SpoolSettings,
    locks: Arc<Mutex<HashSet<String>>>,
}

impl TestbedPop3 {
    /// Messages are handed to the session through spools in the system's temp folder;
    /// [`with_spool`](Self::with_spool) names another.
    pub fn new(store: Arc<MailStore>, users: Arc<Users>) -> TestbedPop3 {
        TestbedPop3 {
            store,
            users,
            spool: SpoolSettings {
                dir: std::env::temp_dir(),
                memory_limit: 1024 * 1024,
            },
            locks: Arc::default(),
        }
    }

    pub fn with_spool(mut self, spool: SpoolSettings) -> TestbedPop3 {
        self.spool = spool;
        self
    }

    /// True while a session holds the mailbox of `address`.
    pub fn in_use(&self, address: &str) -> bool {
        self.locks
            .lock()
            .map(|l| l.contains(&address.to_ascii_lowercase()))
            .unwrap_or(false)
    }
}

/// The maildrop lock of one session, released when the session's mailbox goes.
struct MaildropLock {
    address: String,
    locks: Arc<Mutex<HashSet<String>>>,
}

impl MaildropLock {
    fn take(locks: &Arc<Mutex<HashSet<String>>>, address: &str) -> Option<MaildropLock> {
        let mut held = locks.lock().ok()?;
        held.insert(address.to_string()).then(|| MaildropLock {
            address: address.to_string(),
            locks: locks.clone(),
        })
    }
}

impl Drop for MaildropLock {
    fn drop(&mut self) {
        if let Ok(mut held) = self.locks.lock() {
            held.remove(&self.address);
        }
    }
}

/// One session's view of a mailbox: the mails as they were at login.
pub struct TestbedMailbox {
    address: String,
    store: Arc<MailStore>,
    mails: Vec<StoredMail>,
    deleted: Vec<bool>,
    spool: SpoolSettings,
    _lock: MaildropLock,
}

impl Backend for TestbedPop3 {
    type Mailbox = TestbedMailbox;

    async fn login(
        &self,
        user: &str,
        password: &str,
        _client: &ClientInfo,
    ) -> Result<TestbedMailbox, LoginRefused> {
        if !self.users.check(user, password) {
            return Err(LoginRefused::new("[AUTH] invalid login"));
        }
        let address = user.to_ascii_lowercase();
        let Some(lock) = MaildropLock::take(&self.locks, &address) else {
            return Err(LoginRefused::new(
                "[IN-USE] the mailbox is in use by another session",
            ));
        };
        let mails = self.store.list(&address).map_err(|e| {
            tracing::error!(%address, "cannot read the mailbox: {e}");
            LoginRefused::new("[SYS/TEMP] cannot open the mailbox")
        })?;
        Ok(TestbedMailbox {
            deleted: vec![false; mails.len()],
            address,
            store: self.store.clone(),
            mails,
            spool: self.spool.clone(),
            _lock: lock,
        })
    }

    fn describe(&self, m: &TestbedMailbox) -> String {
        m.address.clone()
    }
}

impl TestbedMailbox {
    fn get(&self, n: usize) -> Result<&StoredMail, MailboxError> {
        let i = n.checked_sub(1).ok_or(MailboxError::NoSuchMessage)?;
        let mail = self.mails.get(i).ok_or(MailboxError::NoSuchMessage)?;
        if self.deleted[i] {
            return Err(MailboxError::Deleted);
        }
        Ok(mail)
    }

    fn visible(&self) -> impl Iterator<Item = (usize, &StoredMail)> {
        self.mails
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.deleted[*i])
            .map(|(i, m)| (i + 1, m))
    }

    async fn open(&self, n: usize) -> Result<tokio::io::BufReader<tokio::fs::File>, MailboxError> {
        let mail = self.get(n)?;
        let f = tokio::fs::File::open(&mail.path).await.map_err(|e| {
            MailboxError::Refused(format!("[SYS/TEMP] message {n} cannot be read: {e}"))
        })?;
        Ok(tokio::io::BufReader::with_capacity(64 * 1024, f))
    }
}

fn read_err(e: std::io::Error) -> MailboxError {
    MailboxError::Refused(format!("[SYS/TEMP] reading the message failed: {e}"))
}

impl Mailbox for TestbedMailbox {
    async fn stat(&mut self) -> Result<(usize, u64), MailboxError> {
        Ok(self
            .visible()
            .fold((0, 0), |(c, s), (_, m)| (c + 1, s + m.size)))
    }

    async fn list(&mut self, n: Option<usize>) -> Result<Vec<(usize, u64)>, MailboxError> {
        match n {
            Some(n) => Ok(vec![(n, self.get(n)?.size)]),
            None => Ok(self.visible().map(|(n, m)| (n, m.size)).collect()),
        }
    }

    async fn uidl(&mut self, n: Option<usize>) -> Result<Vec<(usize, String)>, MailboxError> {
        match n {
            Some(n) => Ok(vec![(n, self.get(n)?.uid.clone())]),
            None => Ok(self.visible().map(|(n, m)| (n, m.uid.clone())).collect()),
        }
    }

    async fn retr(&mut self, n: usize) -> Result<Spool, MailboxError> {
        let mut f = self.open(n).await?;
        let mut spool = Spool::new(&self.spool);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let got = f.read(&mut buf).await.map_err(read_err)?;
            if got == 0 {
                return Ok(spool);
            }
            spool.write(&buf[..got]).await.map_err(read_err)?;
        }
    }

    async fn top(&mut self, n: usize, lines: usize) -> Result<Spool, MailboxError> {
        let mut f = self.open(n).await?;
        let mut spool = Spool::new(&self.spool);
        let mut line = Vec::new();
        let mut in_body = false;
        let mut body_lines = 0;
        loop {
            if in_body && body_lines >= lines {
                return Ok(spool);
            }
            line.clear();
            if f.read_until(b'\n', &mut line).await.map_err(read_err)? == 0 {
                return Ok(spool);
            }
            spool.write(&line).await.map_err(read_err)?;
            if in_body {
                body_lines += 1;
            } else if line == b"\r\n" || line == b"\n" {
                in_body = true;
            }
        }
    }

    async fn dele(&mut self, n: usize) -> Result<(), MailboxError> {
        self.get(n)?;
        self.deleted[n - 1] = true;
        Ok(())
    }

    async fn rset(&mut self) -> Result<(), MailboxError> {
        self.deleted.iter_mut().for_each(|d| *d = false);
        Ok(())
    }

    async fn noop(&mut self) -> Result<(), MailboxError> {
        Ok(())
    }

    async fn quit(self) -> Result<(), MailboxError> {
        let mut failed = 0;
        for (mail, _) in self.mails.iter().zip(&self.deleted).filter(|(_, d)| **d) {
            if let Err(e) = self.store.delete(&self.address, &mail.uid) {
                tracing::error!(address = %self.address, uid = %mail.uid, "cannot delete a mail: {e}");
                failed += 1;
            }
        }
        if failed > 0 {
            return Err(MailboxError::Refused(format!(
                "{failed} messages could not be deleted"
            )));
        }
        Ok(())
    }

    async fn abort(self) {
        // the session did not reach the UPDATE state: nothing is deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, TestbedPop3, Arc<MailStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(MailStore::new(dir.path().join("mail")).unwrap());
        let mut users = Users::new();
        users.add("alice@kim.test", "pw");
        let pop3 = TestbedPop3::new(store.clone(), Arc::new(users)).with_spool(SpoolSettings {
            dir: dir.path().join("spool"),
            memory_limit: 16,
        });
        (dir, pop3, store)
    }

    fn client() -> ClientInfo {
        ClientInfo {
            peer: "127.0.0.1:1".parse().unwrap(),
            tls: true,
        }
    }

    const MAIL1: &[u8] = b"Subject: one\r\nFrom: a@kim.test\r\n\r\nl1\r\nl2\r\nl3\r\n";
    const MAIL2: &[u8] = b"Subject: two\r\n\r\n.starts with a dot\r\n";

    #[tokio::test]
    async fn login_lock_and_snapshot() {
        let (_d, pop3, store) = setup();
        store.deliver(&["alice@kim.test".into()], MAIL1).unwrap();
        let e = pop3
            .login("alice@kim.test", "wrong", &client())
            .await
            .err()
            .unwrap();
        assert_eq!(e.text, "[AUTH] invalid login");
        assert!(pop3
            .login("alice@kim.test#pop:995#1#CS#7", "pw", &client())
            .await
            .is_err());
        let mut m = pop3.login("Alice@kim.test", "pw", &client()).await.unwrap();
        assert_eq!(pop3.describe(&m), "alice@kim.test");
        assert!(pop3.in_use("alice@kim.test"));
        let e = pop3
            .login("alice@kim.test", "pw", &client())
            .await
            .err()
            .unwrap();
        assert!(e.text.starts_with("[IN-USE]"), "{e:?}");
        // mail arriving during the session is not in its snapshot
        store.deliver(&["alice@kim.test".into()], MAIL2).unwrap();
        assert_eq!(m.stat().await.unwrap(), (1, MAIL1.len() as u64));
        m.abort().await;
        assert!(!pop3.in_use("alice@kim.test"));
        let mut m = pop3.login("alice@kim.test", "pw", &client()).await.unwrap();
        assert_eq!(m.stat().await.unwrap().0, 2);
    }

    #[tokio::test]
    async fn retr_top_uidl_dele_quit() {
        let (_d, pop3, store) = setup();
        store.deliver(&["alice@kim.test".into()], MAIL1).unwrap();
        store.deliver(&["alice@kim.test".into()], MAIL2).unwrap();
        let uids: Vec<String> = store
            .list("alice@kim.test")
            .unwrap()
            .into_iter()
            .map(|m| m.uid)
            .collect();
        let mut m = pop3.login("alice@kim.test", "pw", &client()).await.unwrap();
        assert_eq!(m.retr(1).await.unwrap().to_vec().await.unwrap(), MAIL1);
        assert_eq!(m.retr(2).await.unwrap().to_vec().await.unwrap(), MAIL2);
        assert_eq!(
            m.top(1, 0).await.unwrap().to_vec().await.unwrap(),
            b"Subject: one\r\nFrom: a@kim.test\r\n\r\n"
        );
        assert_eq!(
            m.top(1, 2).await.unwrap().to_vec().await.unwrap(),
            b"Subject: one\r\nFrom: a@kim.test\r\n\r\nl1\r\nl2\r\n"
        );
        assert_eq!(m.top(1, 99).await.unwrap().to_vec().await.unwrap(), MAIL1);
        assert_eq!(
            m.uidl(None).await.unwrap(),
            vec![(1, uids[0].clone()), (2, uids[1].clone())]
        );
        assert_eq!(m.retr(3).await.err(), Some(MailboxError::NoSuchMessage));
        assert_eq!(m.retr(0).await.err(), Some(MailboxError::NoSuchMessage));
        m.dele(1).await.unwrap();
        assert_eq!(m.dele(1).await.err(), Some(MailboxError::Deleted));
        assert_eq!(m.list(None).await.unwrap(), vec![(2, MAIL2.len() as u64)]);
        m.rset().await.unwrap();
        assert_eq!(m.stat().await.unwrap().0, 2);
        m.dele(2).await.unwrap();
        // without QUIT nothing goes
        m.abort().await;
        assert_eq!(store.list("alice@kim.test").unwrap().len(), 2);
        // with QUIT the marked mail goes, and the uid of the other one stays
        let mut m = pop3.login("alice@kim.test", "pw", &client()).await.unwrap();
        m.dele(1).await.unwrap();
        m.quit().await.unwrap();
        let left = store.list("alice@kim.test").unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].uid, uids[1]);
    }
}
