//! A folder as the directory: `<address>.pem` holds the encryption certificates of
//! that KIM address (one or more PEM certificates; the address in lower case).

use std::path::PathBuf;

use openssl::x509::X509;

use super::{Directory, DirectoryError, Entry};

/// Certificates from a folder.
#[derive(Debug, Clone)]
pub struct FolderDirectory {
    dir: PathBuf,
}

impl FolderDirectory {
    pub fn new(dir: impl Into<PathBuf>) -> FolderDirectory {
        FolderDirectory { dir: dir.into() }
    }

    fn path_for(&self, address: &str) -> Option<PathBuf> {
        let a = address.trim().to_ascii_lowercase();
        // an address is a file name here: nothing that could leave the folder
        let safe = !a.is_empty()
            && a.contains('@')
            && !a.starts_with('.')
            && a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "@._-+".contains(c));
        safe.then(|| self.dir.join(format!("{a}.pem")))
    }
}

impl Directory for FolderDirectory {
    async fn lookup(&self, address: &str) -> Result<Entry, DirectoryError> {
        Ok(Entry {
            certs: self.certs(address).await?,
            kim_version: None,
        })
    }
}

impl FolderDirectory {
    async fn certs(&self, address: &str) -> Result<Vec<X509>, DirectoryError> {
        let Some(path) = self.path_for(address) else {
            return Ok(Vec::new());
        };
        match tokio::fs::read(&path).await {
            Ok(pem) => {
                let bad = |reason: String| DirectoryError::BadEntry {
                    address: address.to_string(),
                    reason: format!("{}: {reason}", path.display()),
                };
                let certs = X509::stack_from_pem(&pem).map_err(|e| bad(e.to_string()))?;
                if certs.is_empty() {
                    return Err(bad("no PEM certificate in the file".into()));
                }
                Ok(certs)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DirectoryError::Unavailable(format!(
                "{}: {e}",
                path.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn certificates_by_address() {
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::testbed::pki::make(dir.path(), &["a@x.de"]).unwrap();
        let d = FolderDirectory::new(&pki.directory);
        assert_eq!(d.lookup("A@X.de").await.unwrap().certs.len(), 1);
        assert!(d.lookup("b@x.de").await.unwrap().certs.is_empty());
        assert!(d.lookup("a@x.de").await.unwrap().kim_version.is_none());
        assert!(d
            .lookup("../../etc/passwd@x")
            .await
            .unwrap()
            .certs
            .is_empty());
        std::fs::write(pki.directory.join("broken@x.de.pem"), b"not a certificate").unwrap();
        assert!(matches!(
            d.lookup("broken@x.de").await,
            Err(DirectoryError::BadEntry { .. })
        ));
    }
}
