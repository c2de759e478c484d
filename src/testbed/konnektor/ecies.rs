//! The simulated card's ECIES for ECC encryption keys (C.ENC_ECC): how the
//! simulator wraps a CMS content key for an ECC encryption certificate in
//! EncryptDocument, and unwraps it in DecryptDocument with Crypt ECC.
//!
//! In the TI's CMS the wrapped key sits in a KeyTransRecipientInfo whose
//! keyEncryptionAlgorithm is the TI's ECIES OID ([`oid::TI_ECIES`],
//! 1.2.276.0.76.4.222, taken from third-party code citing gemSpec_OID and not
//! verified in a gematik document), and the card unwraps it (gemSpec_COS, PSO
//! Decipher with an ELC key; per the project's reference notes an (PO, C, T)
//! tuple: ephemeral point, AES-256-CBC ciphertext and CMAC, keys from an X9.63 KDF
//! with SHA-256, none of it checked against gemSpec_COS here). This module plays
//! that role, not that encoding:
//! kim-cm never unwraps ECC keys itself and never reads `encryptedKey`, so the
//! bytes only need to round-trip within the simulator. Here:
//!
//! ```asn1
//! SimEciesKey ::= SEQUENCE {
//!     ephemeralPoint OCTET STRING,  -- uncompressed point on brainpoolP256r1
//!     ciphertext     OCTET STRING,  -- AES-256-GCM of the content key
//!     tag            OCTET STRING } -- its 16-byte GCM tag
//! ```
//!
//! with ECDH between the ephemeral key and the recipient's key on
//! brainpoolP256r1, and ANSI X9.63 KDF with SHA-256 over the shared secret (the
//! ephemeral point as SharedInfo): block 1 is the AES-256 key, the first 12 bytes
//! of block 2 the GCM nonce. A real Konnektor's ktri will not open here, nor ours
//! on a real card.

use openssl::bn::BigNumContext;
use openssl::derive::Deriver;
use openssl::ec::{EcGroup, EcKey, EcPoint, PointConversionForm};
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
use openssl::x509::X509Ref;
use zeroize::Zeroizing;

use crate::cms::ber::{self, Tlv};
use crate::cms::decrypt::{GCM_NONCE_LEN, GCM_TAG_LEN};
use crate::cms::{alg, der, oid, KeyTransport, OpenError, SealError};
use crate::crypto::crypt::{Crypt, ECC_CURVE};

/// Length of an uncompressed point on brainpoolP256r1 (04 || x || y).
const POINT_LEN: usize = 65;
/// Length of the content keys wrapped (AES-256).
const CEK_LEN: usize = 32;

fn crypto(e: openssl::error::ErrorStack) -> SealError {
    SealError::Crypto(e.to_string())
}

/// ANSI X9.63 KDF with SHA-256: two blocks, the AES key and the GCM nonce.
fn kdf(shared: &[u8], point: &[u8]) -> (Zeroizing<[u8; 32]>, [u8; GCM_NONCE_LEN]) {
    let block = |counter: u32| {
        let mut h = openssl::sha::Sha256::new();
        h.update(shared);
        h.update(&counter.to_be_bytes());
        h.update(point);
        h.finish()
    };
    let key = Zeroizing::new(block(1));
    let mut nonce = [0u8; GCM_NONCE_LEN];
    nonce.copy_from_slice(&block(2)[..GCM_NONCE_LEN]);
    (key, nonce)
}

fn ecdh(
    ours: &PKeyRef<Private>,
    peer: &PKey<openssl::pkey::Public>,
) -> Result<Zeroizing<Vec<u8>>, openssl::error::ErrorStack> {
    let mut d = Deriver::new(ours)?;
    d.set_peer(peer)?;
    Ok(Zeroizing::new(d.derive_to_vec()?))
}

/// Wraps the content key `cek` for the ECC certificate `cert`; any other key is
/// [`SealError::UnusableCertificate`].
pub fn wrap(cek: &[u8], cert: &X509Ref) -> Result<KeyTransport, SealError> {
    let name = || format!("{:?}", cert.subject_name());
    if Crypt::of(cert) != Some(Crypt::Ecc) {
        return Err(SealError::UnusableCertificate(name()));
    }
    let peer = cert
        .public_key()
        .map_err(|_| SealError::UnusableCertificate(name()))?;
    let group = EcGroup::from_curve_name(ECC_CURVE).map_err(crypto)?;
    let ephemeral = EcKey::generate(&group).map_err(crypto)?;
    let mut ctx = BigNumContext::new().map_err(crypto)?;
    let point = ephemeral
        .public_key()
        .to_bytes(&group, PointConversionForm::UNCOMPRESSED, &mut ctx)
        .map_err(crypto)?;
    let ephemeral = PKey::from_ec_key(ephemeral).map_err(crypto)?;
    let shared = ecdh(&ephemeral, &peer).map_err(crypto)?;
    let (key, nonce) = kdf(&shared, &point);
    let mut tag = [0u8; GCM_TAG_LEN];
    let ciphertext = encrypt_aead(
        Cipher::aes_256_gcm(),
        key.as_slice(),
        Some(&nonce),
        &[],
        cek,
        &mut tag,
    )
    .map_err(crypto)?;
    Ok(KeyTransport {
        algorithm: alg::ti_ecies(),
        encrypted_key: der::seq(&[
            &der::octets(&point),
            &der::octets(&ciphertext),
            &der::octets(&tag),
        ]),
    })
}

/// Unwraps the content key of a RecipientInfo with `alg` and `encrypted_key` with
/// the card's ECC key `key`. Another algorithm is [`OpenError::Unsupported`]; a
/// wrong key or altered bytes [`OpenError::Corrupted`].
pub fn unwrap(
    alg: &Tlv<'_>,
    encrypted_key: &[u8],
    key: &PKeyRef<Private>,
) -> Result<Zeroizing<Vec<u8>>, OpenError> {
    let f = ber::expect(alg, 0x30, "keyEncryptionAlgorithm is not a SEQUENCE")?;
    if f.first()
        .is_none_or(|o| o.tag != 0x06 || o.content != oid::TI_ECIES)
    {
        return Err(OpenError::Unsupported(
            "an ECC key unwraps the TI's ECIES only".into(),
        ));
    }
    let corrupted = |_| OpenError::Corrupted;
    let (seq, rest) = ber::read(encrypted_key).map_err(corrupted)?;
    let parts = ber::expect(&seq, 0x30, "ECIES key is not a SEQUENCE").map_err(corrupted)?;
    let (Some(p), Some(c), Some(t), true) =
        (parts.first(), parts.get(1), parts.get(2), rest.is_empty())
    else {
        return Err(OpenError::Corrupted);
    };
    let (point, ciphertext, tag) = (
        p.octets().map_err(corrupted)?,
        c.octets().map_err(corrupted)?,
        t.octets().map_err(corrupted)?,
    );
    if point.len() != POINT_LEN || ciphertext.len() != CEK_LEN || tag.len() != GCM_TAG_LEN {
        return Err(OpenError::Corrupted);
    }
    let run = || -> Result<Zeroizing<Vec<u8>>, openssl::error::ErrorStack> {
        let group = EcGroup::from_curve_name(ECC_CURVE)?;
        let mut ctx = BigNumContext::new()?;
        let peer = EcPoint::from_bytes(&group, &point, &mut ctx)?;
        let peer = PKey::from_ec_key(EcKey::from_public_key(&group, &peer)?)?;
        let shared = ecdh(key, &peer)?;
        let (k, nonce) = kdf(&shared, &point);
        Ok(Zeroizing::new(decrypt_aead(
            Cipher::aes_256_gcm(),
            k.as_slice(),
            Some(&nonce),
            &[],
            &ciphertext,
            &tag,
        )?))
    };
    // any failure is "corrupted", never told apart by its text
    run().map_err(|_| OpenError::Corrupted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::hash::MessageDigest;
    use openssl::x509::X509;

    fn ecc_pair() -> (PKey<Private>, X509) {
        let group = EcGroup::from_curve_name(ECC_CURVE).unwrap();
        let key = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
        let mut b = X509::builder().unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        (key, b.build())
    }

    fn alg_of(kt: &KeyTransport) -> Tlv<'_> {
        ber::read(&kt.algorithm).unwrap().0
    }

    #[test]
    fn a_wrapped_key_opens_with_the_card_key_only() {
        let (key, cert) = ecc_pair();
        let cek = [7u8; CEK_LEN];
        let kt = wrap(&cek, &cert).unwrap();
        assert_eq!(kt.algorithm, alg::ti_ecies());
        let got = unwrap(&alg_of(&kt), &kt.encrypted_key, &key).unwrap();
        assert_eq!(got.as_slice(), &cek);
        // a fresh ephemeral key each time
        assert_ne!(wrap(&cek, &cert).unwrap().encrypted_key, kt.encrypted_key);
        // another card's key, an altered byte, another algorithm
        let (other, _) = ecc_pair();
        assert_eq!(
            unwrap(&alg_of(&kt), &kt.encrypted_key, &other).unwrap_err(),
            OpenError::Corrupted
        );
        let mut bent = kt.encrypted_key.clone();
        let last = bent.len() - 1;
        bent[last] ^= 1;
        assert_eq!(
            unwrap(&alg_of(&kt), &bent, &key).unwrap_err(),
            OpenError::Corrupted
        );
        let oaep = alg::rsaes_oaep();
        let oaep = ber::read(&oaep).unwrap().0;
        assert!(matches!(
            unwrap(&oaep, &kt.encrypted_key, &key),
            Err(OpenError::Unsupported(_))
        ));
    }

    #[test]
    fn an_rsa_certificate_is_not_wrapped_with_ecies() {
        let key = PKey::from_rsa(openssl::rsa::Rsa::generate(1024).unwrap()).unwrap();
        let mut b = X509::builder().unwrap();
        b.set_pubkey(&key).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        assert!(matches!(
            wrap(&[0; CEK_LEN], &b.build()),
            Err(SealError::UnusableCertificate(_))
        ));
    }
}
