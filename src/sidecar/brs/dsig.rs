//! XML-DSig as SOSI uses it for the ID card: one enveloped signature over
//! `URI="#IDCard"`, transforms enveloped-signature then exclusive C14N,
//! SignedInfo canonicalized with exclusive C14N, RSA with SHA-1 (what Seal
//! and the SOSI STS use; RSA-SHA256 on request), and the signer's certificate
//! in `KeyInfo/X509Data/X509Certificate` (DGWS 1.0.1, SOSI ID card profile).
//!
//! [`sign_enveloped`] signs XML kim-cm builds ([`El`]); [`verify_enveloped`]
//! checks a signature over any XML (the simulator checks cards with it, the
//! client checks what the STS returns) and names the signer, whose trust is
//! the caller's decision.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::hash::{hash, MessageDigest};
use openssl::pkey::{PKey, Private};
use openssl::sign::{Signer, Verifier};
use openssl::x509::X509;

use super::c14n::{exclusive, El};

pub const DS: &str = "http://www.w3.org/2000/09/xmldsig#";
pub const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";
pub const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";

/// The signature algorithm (and with it the digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// SOSI's and Seal's choice.
    #[default]
    RsaSha1,
    RsaSha256,
}

impl Algorithm {
    fn signature_uri(self) -> &'static str {
        match self {
            Algorithm::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
            Algorithm::RsaSha256 => "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        }
    }
    fn digest_uri(self) -> &'static str {
        match self {
            Algorithm::RsaSha1 => "http://www.w3.org/2000/09/xmldsig#sha1",
            Algorithm::RsaSha256 => "http://www.w3.org/2001/04/xmlenc#sha256",
        }
    }
    fn digest(self) -> MessageDigest {
        match self {
            Algorithm::RsaSha1 => MessageDigest::sha1(),
            Algorithm::RsaSha256 => MessageDigest::sha256(),
        }
    }
    fn by_signature_uri(uri: &str) -> Option<Algorithm> {
        [Algorithm::RsaSha1, Algorithm::RsaSha256]
            .into_iter()
            .find(|a| a.signature_uri() == uri)
    }
    fn by_digest_uri(uri: &str) -> Option<Algorithm> {
        [Algorithm::RsaSha1, Algorithm::RsaSha256]
            .into_iter()
            .find(|a| a.digest_uri() == uri)
    }
}

/// An organisation's (or the STS's) certificate and private key. Its `Debug`
/// shows the certificate's subject only: the key never reaches a log.
pub struct SigningKey {
    key: PKey<Private>,
    pub cert: X509,
    pub algorithm: Algorithm,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKey({}, private key withheld)",
            subject_text(&self.cert)
        )
    }
}

/// `CN=…, O=…` of a certificate, for messages.
pub fn subject_text(cert: &X509) -> String {
    cert.subject_name()
        .entries()
        .map(|e| {
            format!(
                "{}={}",
                e.object().nid().short_name().unwrap_or("?"),
                e.data().to_string().unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl SigningKey {
    /// A key and its certificate; refused when they do not belong together.
    pub fn new(key: PKey<Private>, cert: X509, algorithm: Algorithm) -> Result<SigningKey, String> {
        let public = cert.public_key().map_err(|e| e.to_string())?;
        if !public.public_eq(&key) {
            return Err("the private key does not belong to the certificate".into());
        }
        if key.rsa().is_err() {
            return Err("the key is not an RSA key (SOSI signs with RSA)".into());
        }
        Ok(SigningKey {
            key,
            cert,
            algorithm,
        })
    }

    /// Reads a PEM certificate and a PEM private key (unencrypted).
    pub fn load(
        cert_file: &std::path::Path,
        key_file: &std::path::Path,
        algorithm: Algorithm,
    ) -> Result<SigningKey, String> {
        let cert = std::fs::read(cert_file)
            .map_err(|e| format!("cannot read {}: {e}", cert_file.display()))
            .and_then(|b| {
                X509::from_pem(&b)
                    .map_err(|_| format!("{} is not a PEM certificate", cert_file.display()))
            })?;
        crate::keyfiles::check(key_file, "[brs] key_file")?;
        let key = std::fs::read(key_file)
            .map_err(|e| format!("cannot read {}: {e}", key_file.display()))
            .and_then(|b| {
                // the key's bytes are not quoted in any message
                PKey::private_key_from_pem(&b).map_err(|_| {
                    format!(
                        "{} is not an unencrypted PEM private key",
                        key_file.display()
                    )
                })
            })?;
        SigningKey::new(key, cert, algorithm)
            .map_err(|e| format!("{} and {}: {e}", cert_file.display(), key_file.display()))
    }

    /// The certificate, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.to_der().unwrap_or_default()
    }

    fn sign(&self, data: &[u8]) -> Result<Vec<u8>, String> {
        let mut s = Signer::new(self.algorithm.digest(), &self.key).map_err(|e| e.to_string())?;
        s.update(data).map_err(|e| e.to_string())?;
        s.sign_to_vec().map_err(|e| e.to_string())
    }
}

fn ds(name: &str) -> El {
    El::new("ds", DS, name)
}

/// Signs `target` (which carries `id="{id}"`) with an enveloped signature
/// `id="{signature_id}"` appended as its last child.
pub fn sign_enveloped(
    target: &mut El,
    id: &str,
    signature_id: &str,
    key: &SigningKey,
) -> Result<(), String> {
    let alg = key.algorithm;
    let digest = hash(alg.digest(), target.canonical().as_bytes()).map_err(|e| e.to_string())?;
    let signed_info = ds("SignedInfo")
        .child(ds("CanonicalizationMethod").attr("Algorithm", EXC_C14N))
        .child(ds("SignatureMethod").attr("Algorithm", alg.signature_uri()))
        .child(
            ds("Reference")
                .attr("URI", &format!("#{id}"))
                .child(
                    ds("Transforms")
                        .child(ds("Transform").attr("Algorithm", ENVELOPED))
                        .child(ds("Transform").attr("Algorithm", EXC_C14N)),
                )
                .child(ds("DigestMethod").attr("Algorithm", alg.digest_uri()))
                .child(ds("DigestValue").text(&B64.encode(digest))),
        );
    let value = key.sign(signed_info.canonical().as_bytes())?;
    let signature =
        ds("Signature")
            .attr("id", signature_id)
            .child(signed_info)
            .child(ds("SignatureValue").text(&B64.encode(value)))
            .child(ds("KeyInfo").child(
                ds("X509Data").child(ds("X509Certificate").text(&B64.encode(key.cert_der()))),
            ));
    target.push(signature);
    Ok(())
}

/// Why a signature does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadSignature(pub String);

fn bad(s: impl Into<String>) -> BadSignature {
    BadSignature(s.into())
}

fn alg_of<'a>(n: Option<roxmltree::Node<'a, '_>>) -> Option<&'a str> {
    n.and_then(|n| n.attribute("Algorithm"))
}

fn ds_child<'a, 'i>(n: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| {
        c.is_element() && c.tag_name().namespace() == Some(DS) && c.tag_name().name() == name
    })
}

/// Checks the enveloped signature of the one element with `id="{id}"` in
/// `doc`; the signer's certificate when it holds.
pub fn verify_enveloped(doc: &roxmltree::Document<'_>, id: &str) -> Result<X509, BadSignature> {
    let mut with_id = doc
        .descendants()
        .filter(|n| n.is_element() && n.attribute("id") == Some(id));
    let target = with_id
        .next()
        .ok_or_else(|| bad(format!("no element with id \"{id}\"")))?;
    if with_id.next().is_some() {
        return Err(bad(format!("more than one element with id \"{id}\"")));
    }
    let sig = ds_child(target, "Signature").ok_or_else(|| bad("the element is not signed"))?;
    let si = ds_child(sig, "SignedInfo").ok_or_else(|| bad("no SignedInfo"))?;
    if alg_of(ds_child(si, "CanonicalizationMethod")) != Some(EXC_C14N) {
        return Err(bad("SignedInfo is not canonicalized with exclusive C14N"));
    }
    let alg = alg_of(ds_child(si, "SignatureMethod"))
        .and_then(Algorithm::by_signature_uri)
        .ok_or_else(|| bad("unsupported signature method"))?;
    let refs: Vec<_> = si
        .children()
        .filter(|c| c.is_element() && c.tag_name().name() == "Reference")
        .collect();
    let [reference] = refs.as_slice() else {
        return Err(bad("SignedInfo must hold exactly one Reference"));
    };
    if reference.attribute("URI") != Some(&format!("#{id}")) {
        return Err(bad(format!("the Reference is not to #{id}")));
    }
    let transforms: Vec<&str> = ds_child(*reference, "Transforms")
        .map(|t| {
            t.children()
                .filter(|c| c.is_element())
                .filter_map(|c| c.attribute("Algorithm"))
                .collect()
        })
        .unwrap_or_default();
    if transforms != [ENVELOPED, EXC_C14N] {
        return Err(bad(
            "the transforms are not enveloped-signature and exclusive C14N",
        ));
    }
    let digest_alg = alg_of(ds_child(*reference, "DigestMethod"))
        .and_then(Algorithm::by_digest_uri)
        .ok_or_else(|| bad("unsupported digest method"))?;
    let claimed = ds_child(*reference, "DigestValue")
        .and_then(|n| n.text())
        .and_then(|t| B64.decode(t.split_whitespace().collect::<String>()).ok())
        .ok_or_else(|| bad("no readable DigestValue"))?;
    let actual = hash(
        digest_alg.digest(),
        exclusive(target, Some(sig.id())).as_bytes(),
    )
    .map_err(|e| bad(e.to_string()))?;
    if actual.as_ref() != claimed.as_slice() {
        return Err(bad(
            "the digest does not match: the element was changed after signing",
        ));
    }
    let cert = ds_child(sig, "KeyInfo")
        .and_then(|k| ds_child(k, "X509Data"))
        .and_then(|x| ds_child(x, "X509Certificate"))
        .and_then(|c| c.text())
        .and_then(|t| B64.decode(t.split_whitespace().collect::<String>()).ok())
        .and_then(|der| X509::from_der(&der).ok())
        .ok_or_else(|| bad("no readable X509Certificate in KeyInfo"))?;
    let value = ds_child(sig, "SignatureValue")
        .and_then(|n| n.text())
        .and_then(|t| B64.decode(t.split_whitespace().collect::<String>()).ok())
        .ok_or_else(|| bad("no readable SignatureValue"))?;
    let public = cert.public_key().map_err(|e| bad(e.to_string()))?;
    let mut v = Verifier::new(alg.digest(), &public).map_err(|e| bad(e.to_string()))?;
    v.update(exclusive(si, None).as_bytes())
        .map_err(|e| bad(e.to_string()))?;
    if !v.verify(&value).unwrap_or(false) {
        return Err(bad("the signature value does not match SignedInfo"));
    }
    Ok(cert)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn test_key(alg: Algorithm) -> SigningKey {
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        let mut name = openssl::x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "test").unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(openssl::asn1::Asn1Time::days_from_now(0).unwrap().as_ref())
            .unwrap();
        b.set_not_after(openssl::asn1::Asn1Time::days_from_now(1).unwrap().as_ref())
            .unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        SigningKey::new(key, b.build(), alg).unwrap()
    }

    #[test]
    fn a_signature_holds_and_any_change_breaks_it() {
        for alg in [Algorithm::RsaSha1, Algorithm::RsaSha256] {
            let key = test_key(alg);
            let mut card = El::new("saml", "urn:oasis:names:tc:SAML:2.0:assertion", "Assertion")
                .attr("id", "IDCard")
                .child(
                    El::new("saml", "urn:oasis:names:tc:SAML:2.0:assertion", "Issuer").text("me"),
                );
            sign_enveloped(&mut card, "IDCard", "OCESSignature", &key).unwrap();
            let text = card.canonical();
            let doc = roxmltree::Document::parse(&text).unwrap();
            let signer = verify_enveloped(&doc, "IDCard").unwrap();
            assert_eq!(signer.to_der().unwrap(), key.cert_der());
            let changed = text.replace(">me<", ">you<");
            let doc = roxmltree::Document::parse(&changed).unwrap();
            let e = verify_enveloped(&doc, "IDCard").unwrap_err();
            assert!(e.0.contains("digest"), "{e}");
        }
        assert!(format!("{:?}", test_key(Algorithm::RsaSha1)).contains("withheld"));
    }
}
