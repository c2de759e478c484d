//! Where recipients' encryption certificates come from. In the TI that is the
//! directory service (VZD) over LDAP ([`ldap`], through the Konnektor's LDAP proxy);
//! for the sandbox and small setups, a folder ([`folder`]). Both answer the same
//! question: which encryption certificates does this KIM address have, and (the VZD
//! only) which KIM version does its Clientmodul speak (`komLeData`)?

pub mod cache;
pub mod folder;
pub mod ldap;
pub mod version;

use std::collections::HashMap;
use std::future::Future;

use openssl::x509::X509;

pub use version::KimVersion;

/// Why the directory could not answer.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("the directory is unavailable: {0}")]
    Unavailable(String),
    #[error("the directory entry of {address} is unreadable: {reason}")]
    BadEntry { address: String, reason: String },
}

/// What the directory holds for one KIM address.
#[derive(Debug, Clone, Default)]
pub struct Entry {
    /// Every encryption certificate of the address; empty when it has none.
    pub certs: Vec<X509>,
    /// The KIM version from `komLeData`; `None` when this directory does not keep
    /// versions (a folder). The VZD answers 1.0 for an address without one
    /// (A_19356-06).
    pub kim_version: Option<KimVersion>,
}

/// A source of encryption certificates and KIM versions.
pub trait Directory: Send + Sync + 'static {
    /// The entry of `address`.
    fn lookup(&self, address: &str) -> impl Future<Output = Result<Entry, DirectoryError>> + Send;

    /// The entries of several addresses (keys in lower case); one connection where
    /// the directory is remote.
    fn lookup_all(
        &self,
        addresses: &[String],
    ) -> impl Future<Output = Result<HashMap<String, Entry>, DirectoryError>> + Send {
        async move {
            let mut out = HashMap::new();
            for a in addresses {
                if let std::collections::hash_map::Entry::Vacant(v) =
                    out.entry(a.to_ascii_lowercase())
                {
                    v.insert(self.lookup(a).await?);
                }
            }
            Ok(out)
        }
    }
}

/// The directory a configuration names.
pub enum Source {
    Folder(folder::FolderDirectory),
    /// The VZD, its answers cached for TTL_ENC_CERT.
    Ldap(cache::Cached<ldap::LdapDirectory>),
}

impl Directory for Source {
    async fn lookup(&self, address: &str) -> Result<Entry, DirectoryError> {
        match self {
            Source::Folder(d) => d.lookup(address).await,
            Source::Ldap(d) => d.lookup(address).await,
        }
    }

    async fn lookup_all(
        &self,
        addresses: &[String],
    ) -> Result<HashMap<String, Entry>, DirectoryError> {
        match self {
            Source::Folder(d) => d.lookup_all(addresses).await,
            Source::Ldap(d) => d.lookup_all(addresses).await,
        }
    }
}
