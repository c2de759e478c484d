//! TLS settings for both directions, built once at start-up.
//!
//! Upstream (towards the Fachdienst) the server certificate is always verified
//! against the configured CA file and the host name; there is no switch to turn that
//! off. The offered groups include the brainpool curves the TI uses (gemSpec_Krypt
//! A_17124, KOM-LE-A_2064-02), which is why this is OpenSSL and not rustls.

use std::path::Path;

use openssl::pkcs12::Pkcs12;
use openssl::ssl::{
    SslAcceptor, SslAcceptorBuilder, SslConnector, SslFiletype, SslMethod, SslVersion,
};

/// Groups offered by kim-cm as a TLS client: NIST and brainpool curves (TLS 1.2),
/// in the order gemSpec_Krypt lists them.
pub const CLIENT_GROUPS: &str = "P-256:P-384:brainpoolP256r1:brainpoolP384r1";

/// Errors that tell the admin which file is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot use TLS file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("cannot set up TLS: {0}")]
    Openssl(#[from] openssl::error::ErrorStack),
}

fn file_err(path: &Path, reason: impl ToString) -> TlsSetupError {
    TlsSetupError::File {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// Server side for client-facing listeners: certificate chain and key from PEM files.
pub fn acceptor(cert_chain: &Path, key: &Path) -> Result<SslAcceptor, TlsSetupError> {
    Ok(acceptor_builder(cert_chain, key)?.build())
}

/// As [`acceptor`], and the client must present a certificate that chains to
/// `client_ca` (for simulators of services that demand mutual TLS).
pub fn acceptor_requiring_client(
    cert_chain: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<SslAcceptor, TlsSetupError> {
    let mut b = acceptor_builder(cert_chain, key)?;
    b.set_ca_file(client_ca)
        .map_err(|e| file_err(client_ca, e))?;
    b.set_verify(
        openssl::ssl::SslVerifyMode::PEER | openssl::ssl::SslVerifyMode::FAIL_IF_NO_PEER_CERT,
    );
    Ok(b.build())
}

fn acceptor_builder(cert_chain: &Path, key: &Path) -> Result<SslAcceptorBuilder, TlsSetupError> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate_chain_file(cert_chain)
        .map_err(|e| file_err(cert_chain, e))?;
    b.set_private_key_file(key, SslFiletype::PEM)
        .map_err(|e| file_err(key, e))?;
    b.check_private_key()
        .map_err(|e| file_err(key, format!("key does not match the certificate: {e}")))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    Ok(b)
}

/// Client certificate for mutual TLS (C.CM.TLS-CS, KOM-LE-A_2182-01) from a PKCS#12 file.
pub struct ClientIdentity<'a> {
    pub pkcs12: &'a Path,
    pub password: &'a str,
}

/// Client side towards the Fachdienst: TLS 1.2 and 1.3, server verified against `ca_file`.
pub fn connector(
    ca_file: &Path,
    identity: Option<ClientIdentity<'_>>,
) -> Result<SslConnector, TlsSetupError> {
    let mut b = SslConnector::builder(SslMethod::tls_client())?;
    b.set_ca_file(ca_file).map_err(|e| file_err(ca_file, e))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))?;
    b.set_groups_list(CLIENT_GROUPS)?;
    if let Some(id) = identity {
        load_legacy_provider();
        let der = std::fs::read(id.pkcs12).map_err(|e| file_err(id.pkcs12, e))?;
        let parsed = Pkcs12::from_der(&der)
            .and_then(|p| p.parse2(id.password))
            .map_err(|e| {
                file_err(
                    id.pkcs12,
                    format!("not a readable PKCS#12 file (wrong password?): {e}"),
                )
            })?;
        let (Some(key), Some(cert)) = (parsed.pkey, parsed.cert) else {
            return Err(file_err(
                id.pkcs12,
                "the PKCS#12 file holds no key and certificate",
            ));
        };
        b.set_private_key(&key)?;
        b.set_certificate(&cert)?;
        for extra in parsed.ca.into_iter().flatten() {
            b.add_extra_chain_cert(extra)?;
        }
        b.check_private_key()?;
    }
    Ok(b.build())
}

/// PKCS#12 files issued in the TI may use RC2/3DES, which OpenSSL 3 only reads with
/// its `legacy` provider loaded. Loading it is best effort and happens once.
pub fn load_legacy_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(p) = openssl::provider::Provider::try_load(None, "legacy", true) {
            // Keep the provider loaded for the life of the process.
            std::mem::forget(p);
        }
    });
}
