//! Where recipients' encryption certificates come from. In the TI that is the
//! directory service (VZD) over LDAP; for the sandbox and small setups, a folder.
//! Both answer the same question: which encryption certificates does this KIM
//! address have?

pub mod folder;

use std::future::Future;

use openssl::x509::X509;

/// Why the directory could not answer.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("the directory is unavailable: {0}")]
    Unavailable(String),
    #[error("the directory entry of {address} is unreadable: {reason}")]
    BadEntry { address: String, reason: String },
}

/// A source of encryption certificates.
pub trait Directory: Send + Sync + 'static {
    /// Every encryption certificate of `address`; empty when it has none.
    fn encryption_certs(
        &self,
        address: &str,
    ) -> impl Future<Output = Result<Vec<X509>, DirectoryError>> + Send;
}
