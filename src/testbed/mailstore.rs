//! The simulated Fachdienst's mailboxes on disk: one folder per address, one file per
//! mail, named by its unique id. A mail is written to `tmp/` and renamed into place,
//! so a reader never sees half a mail (the Maildir idea, kept minimal).

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// One stored mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMail {
    /// Stable unique id, used as the POP3 UIDL.
    pub uid: String,
    pub size: u64,
    pub path: PathBuf,
}

/// All mailboxes of the simulated Fachdienst.
#[derive(Debug)]
pub struct MailStore {
    root: PathBuf,
    counter: AtomicU64,
}

impl MailStore {
    pub fn new(root: impl Into<PathBuf>) -> io::Result<MailStore> {
        let root = root.into();
        std::fs::create_dir_all(root.join("tmp"))?;
        Ok(MailStore {
            root,
            counter: AtomicU64::new(0),
        })
    }

    fn mailbox_dir(&self, address: &str) -> PathBuf {
        // addresses are checked before they get here; keep the folder name safe anyway
        let safe: String = address
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "@._-+".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        self.root.join(safe)
    }

    /// A new, unique, sortable id: time, process-wide counter, random part.
    fn new_uid(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!(
            "{:012x}{:06x}{:08x}",
            now.as_millis(),
            n & 0xff_ffff,
            rand::random::<u32>()
        )
    }

    /// Opens a file in `tmp/` for a new mail; [`commit`](Self::commit) moves it into
    /// the mailboxes.
    pub fn begin(&self) -> io::Result<(PathBuf, std::fs::File)> {
        let path = self.root.join("tmp").join(self.new_uid());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, f))
    }

    /// Puts the finished mail at `tmp_path` into every mailbox in `addresses`.
    pub fn commit(&self, tmp_path: &Path, addresses: &[String]) -> io::Result<()> {
        for a in addresses {
            let dir = self.mailbox_dir(a);
            std::fs::create_dir_all(&dir)?;
            let target = dir.join(self.new_uid());
            // one hard link per recipient, then the tmp name goes
            std::fs::hard_link(tmp_path, &target)
                .or_else(|_| std::fs::copy(tmp_path, &target).map(|_| ()))?;
        }
        std::fs::remove_file(tmp_path)
    }

    /// Stores `mail` for each address at once (for tests and the sandbox's setup).
    pub fn deliver(&self, addresses: &[String], mail: &[u8]) -> io::Result<()> {
        let (path, mut f) = self.begin()?;
        f.write_all(mail)?;
        f.sync_all()?;
        drop(f);
        self.commit(&path, addresses)
    }

    /// The mails of `address`, oldest first.
    pub fn list(&self, address: &str) -> io::Result<Vec<StoredMail>> {
        let dir = self.mailbox_dir(address);
        let mut out = Vec::new();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in rd {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            out.push(StoredMail {
                uid: entry.file_name().to_string_lossy().into_owned(),
                size: meta.len(),
                path: entry.path(),
            });
        }
        out.sort_by(|a, b| a.uid.cmp(&b.uid));
        Ok(out)
    }

    /// Removes one mail of `address`.
    pub fn delete(&self, address: &str, uid: &str) -> io::Result<()> {
        if uid.contains('/') || uid.contains("..") {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad uid"));
        }
        match std::fs::remove_file(self.mailbox_dir(address).join(uid)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            r => r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliver_list_delete() {
        let dir = tempfile::tempdir().unwrap();
        let s = MailStore::new(dir.path()).unwrap();
        s.deliver(&["a@x.de".into(), "b@x.de".into()], b"one")
            .unwrap();
        s.deliver(&["a@x.de".into()], b"three").unwrap();
        let a = s.list("A@x.de").unwrap();
        assert_eq!(a.iter().map(|m| m.size).collect::<Vec<_>>(), vec![3, 5]);
        assert_eq!(s.list("b@x.de").unwrap().len(), 1);
        s.delete("a@x.de", &a[0].uid).unwrap();
        assert_eq!(s.list("a@x.de").unwrap().len(), 1);
        assert_eq!(s.list("nobody@x.de").unwrap().len(), 0);
        assert_eq!(
            std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
            0
        );
    }
}
