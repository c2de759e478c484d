//! Which kind of key an encryption certificate holds, in the Konnektor's words
//! (`Crypt` RSA or ECC: the spec's C.ENC_RSA and C.ENC_ECC), and which of a
//! party's certificates a mail may be encrypted for.
//!
//! The directory lists RSA and ECC encryption certificates side by side while the
//! TI migrates to ECC. KOM-LE-A_2022 asks for every one of them; A_17472 forbids
//! the ECC ones when the Konnektor does not support ECC (A_17464), and kim-cm's
//! software backend has no ECIES at all. The choice is made once per mail, before
//! recipient-emails is written, so that the attribute names exactly the
//! certificates the mail is encrypted for.

use openssl::nid::Nid;
use openssl::x509::{X509Ref, X509};

/// The curve of the TI's ECC encryption keys (gemSpec_Krypt: brainpoolP256r1).
pub const ECC_CURVE: Nid = Nid::BRAINPOOL_P256R1;

/// The key of an encryption certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Crypt {
    Rsa,
    Ecc,
}

impl Crypt {
    /// Of `cert`'s public key; None for a key kim-cm cannot encrypt for (another
    /// curve, DSA, ...).
    pub fn of(cert: &X509Ref) -> Option<Crypt> {
        let key = cert.public_key().ok()?;
        if key.rsa().is_ok() {
            return Some(Crypt::Rsa);
        }
        let ec = key.ec_key().ok()?;
        (ec.group().curve_name() == Some(ECC_CURVE)).then_some(Crypt::Ecc)
    }

    /// The value of `Crypt` in ReadCardCertificate and DecryptDocument.
    pub fn konnektor_name(self) -> &'static str {
        match self {
            Crypt::Rsa => "RSA",
            Crypt::Ecc => "ECC",
        }
    }
}

/// `certs` without those the mail cannot be encrypted for: ECC ones unless `ecc`
/// (A_17472), and keys of neither kind. Returns the kept ones and how many were
/// left out.
pub fn encryptable(certs: Vec<X509>, ecc: bool) -> (Vec<X509>, usize) {
    let before = certs.len();
    let kept: Vec<X509> = certs
        .into_iter()
        .filter(|c| match Crypt::of(c) {
            Some(Crypt::Rsa) => true,
            Some(Crypt::Ecc) => ecc,
            None => false,
        })
        .collect();
    let left_out = before - kept.len();
    (kept, left_out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::ec::{EcGroup, EcKey};
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};

    fn cert(key: &PKey<Private>) -> X509 {
        let mut b = X509::builder().unwrap();
        b.set_pubkey(key).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        b.build()
    }

    fn ec(nid: Nid) -> PKey<Private> {
        let group = EcGroup::from_curve_name(nid).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }

    #[test]
    fn ecc_certificates_only_when_the_konnektor_supports_ecc() {
        let rsa = cert(&PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap());
        let brainpool = cert(&ec(ECC_CURVE));
        let p256 = cert(&ec(Nid::X9_62_PRIME256V1));
        assert_eq!(Crypt::of(&rsa), Some(Crypt::Rsa));
        assert_eq!(Crypt::of(&brainpool), Some(Crypt::Ecc));
        assert_eq!(Crypt::of(&p256), None, "not a TI curve");
        assert_eq!(Crypt::Ecc.konnektor_name(), "ECC");

        let all = vec![rsa.clone(), brainpool.clone(), p256.clone()];
        let (kept, left_out) = encryptable(all.clone(), true);
        assert_eq!(kept.len(), 2);
        assert_eq!(left_out, 1);
        // A_17472
        let (kept, left_out) = encryptable(all, false);
        assert_eq!(kept.len(), 1);
        assert_eq!(Crypt::of(&kept[0]), Some(Crypt::Rsa));
        assert_eq!(left_out, 2);
        // only ECC, no ECC support: nothing left, the recipient is unreachable
        let (kept, _) = encryptable(vec![brainpool], false);
        assert!(kept.is_empty());
    }
}
