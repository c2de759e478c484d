//! The trust anchors signatures are checked against: the CA certificates of the
//! TI's component PKI that signers' certificates must chain to (one PEM file).

use std::path::Path;

use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::X509;

/// The store of the CA certificates in `file`; an empty store without one, against
/// which every certificate path fails (X-KIM-IntegrityCheckResult 05).
pub fn load(file: Option<&Path>) -> Result<X509Store, String> {
    let mut store = X509StoreBuilder::new().map_err(|e| e.to_string())?;
    if let Some(t) = file {
        let pem = std::fs::read(t).map_err(|e| format!("cannot read {}: {e}", t.display()))?;
        let certs = X509::stack_from_pem(&pem)
            .map_err(|e| format!("{}: not PEM certificates: {e}", t.display()))?;
        if certs.is_empty() {
            return Err(format!("{}: no certificate in the file", t.display()));
        }
        for c in certs {
            store.add_cert(c).map_err(|e| e.to_string())?;
        }
    }
    Ok(store.build())
}
