//! The KAS blob (A_19358-01, A_19360-02): the mail data encrypted with a fresh
//! AES-256-GCM key, laid out `IV (12) ‖ ciphertext ‖ tag (16)`; and SHA-256 over
//! the plaintext for the structure's `hash` (A_19372-03 checks it after decryption).
//! Both directions work in chunks, so a 700 MiB mail streams through.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use openssl::sha::Sha256;
use openssl::symm::{Cipher, Crypter, Mode};
use zeroize::Zeroizing;

/// IV and tag lengths of the blob.
pub const IV_LEN: usize = 12;
pub const TAG_LEN: usize = 16;

/// Why a blob did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlobError {
    #[error("the KAS key is not a base64 AES-256 key")]
    BadKey,
    #[error("the KAS data are shorter than IV and tag")]
    Truncated,
    #[error("the KAS data were altered (authentication tag mismatch)")]
    Altered,
    #[error("the KAS data do not match their hash")]
    HashMismatch,
    #[error("cryptography failed: {0}")]
    Crypto(String),
}

fn crypto(e: openssl::error::ErrorStack) -> BlobError {
    BlobError::Crypto(e.to_string())
}

/// The encrypted size of `plain_len` bytes of mail data.
pub fn sealed_len(plain_len: u64) -> u64 {
    IV_LEN as u64 + plain_len + TAG_LEN as u64
}

/// Encrypts mail data chunk by chunk.
pub struct BlobSealer {
    crypter: Crypter,
    sha: Sha256,
    key: Zeroizing<[u8; 32]>,
    started: bool,
    iv: [u8; IV_LEN],
}

/// What the structure needs once the data are sealed: `k` and `hash`, base64.
pub struct SealedBlob {
    pub k: String,
    pub hash: String,
}

impl BlobSealer {
    pub fn new() -> Result<BlobSealer, BlobError> {
        let key = Zeroizing::new(rand::random::<[u8; 32]>());
        let iv: [u8; IV_LEN] = rand::random();
        let crypter = Crypter::new(Cipher::aes_256_gcm(), Mode::Encrypt, &key[..], Some(&iv))
            .map_err(crypto)?;
        Ok(BlobSealer {
            crypter,
            sha: Sha256::new(),
            key,
            started: false,
            iv,
        })
    }

    /// Appends the encryption of `plain` (the IV first, on the first call) to `out`.
    pub fn update(&mut self, plain: &[u8], out: &mut Vec<u8>) -> Result<(), BlobError> {
        if !self.started {
            out.extend_from_slice(&self.iv);
            self.started = true;
        }
        self.sha.update(plain);
        let at = out.len();
        out.resize(at + plain.len() + 16, 0);
        let n = self.crypter.update(plain, &mut out[at..]).map_err(crypto)?;
        out.truncate(at + n);
        Ok(())
    }

    /// Appends the tag to `out`; returns the key and the plaintext hash.
    pub fn finish(mut self, out: &mut Vec<u8>) -> Result<SealedBlob, BlobError> {
        if !self.started {
            out.extend_from_slice(&self.iv);
        }
        let mut rest = [0u8; 16];
        let n = self.crypter.finalize(&mut rest).map_err(crypto)?;
        out.extend_from_slice(&rest[..n]);
        let mut tag = [0u8; TAG_LEN];
        self.crypter.get_tag(&mut tag).map_err(crypto)?;
        out.extend_from_slice(&tag);
        Ok(SealedBlob {
            k: B64.encode(&self.key[..]),
            hash: B64.encode(self.sha.finish()),
        })
    }
}

/// Decrypts a blob chunk by chunk. The plaintext it gives out is not to be trusted
/// (or shown) before [`BlobOpener::finish`] succeeded: the tag comes last.
pub struct BlobOpener {
    key: Zeroizing<Vec<u8>>,
    crypter: Option<Crypter>,
    sha: Sha256,
    /// The IV while it is incomplete, then the last bytes held back as the tag.
    pending: Vec<u8>,
}

impl BlobOpener {
    pub fn new(k: &str) -> Result<BlobOpener, BlobError> {
        let key = Zeroizing::new(B64.decode(k.trim()).map_err(|_| BlobError::BadKey)?);
        if key.len() != 32 {
            return Err(BlobError::BadKey);
        }
        Ok(BlobOpener {
            key,
            crypter: None,
            sha: Sha256::new(),
            pending: Vec::with_capacity(IV_LEN + TAG_LEN),
        })
    }

    /// Appends the plaintext of the next `chunk` of the blob to `out`.
    pub fn update(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), BlobError> {
        self.pending.extend_from_slice(chunk);
        if self.crypter.is_none() {
            if self.pending.len() < IV_LEN {
                return Ok(());
            }
            let iv: Vec<u8> = self.pending.drain(..IV_LEN).collect();
            self.crypter = Some(
                Crypter::new(Cipher::aes_256_gcm(), Mode::Decrypt, &self.key, Some(&iv))
                    .map_err(crypto)?,
            );
        }
        // everything but the last TAG_LEN bytes may be ciphertext
        if self.pending.len() <= TAG_LEN {
            return Ok(());
        }
        let ready = self.pending.len() - TAG_LEN;
        let c = self.crypter.as_mut().ok_or(BlobError::Truncated)?;
        let at = out.len();
        out.resize(at + ready + 16, 0);
        let n = c
            .update(&self.pending[..ready], &mut out[at..])
            .map_err(crypto)?;
        out.truncate(at + n);
        self.sha.update(&out[at..]);
        self.pending.drain(..ready);
        Ok(())
    }

    /// Checks the tag and the plaintext's hash against `hash` (base64).
    pub fn finish(self, hash: &str) -> Result<(), BlobError> {
        let mut c = self.crypter.ok_or(BlobError::Truncated)?;
        if self.pending.len() != TAG_LEN {
            return Err(BlobError::Truncated);
        }
        c.set_tag(&self.pending).map_err(crypto)?;
        let mut rest = [0u8; 16];
        c.finalize(&mut rest).map_err(|_| BlobError::Altered)?;
        if B64.encode(self.sha.finish()) != hash.trim() {
            return Err(BlobError::HashMismatch);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(data: &[u8], chunk: usize) -> (Vec<u8>, SealedBlob) {
        let mut s = BlobSealer::new().unwrap();
        let mut out = Vec::new();
        for c in data.chunks(chunk) {
            s.update(c, &mut out).unwrap();
        }
        let sealed = s.finish(&mut out).unwrap();
        (out, sealed)
    }

    fn open(blob: &[u8], k: &str, hash: &str, chunk: usize) -> Result<Vec<u8>, BlobError> {
        let mut o = BlobOpener::new(k)?;
        let mut out = Vec::new();
        for c in blob.chunks(chunk) {
            o.update(c, &mut out)?;
        }
        o.finish(hash).map(|()| out)
    }

    #[test]
    fn round_trip_in_any_chunking_and_the_layout() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let (blob, s) = seal(&data, 4096);
        assert_eq!(blob.len() as u64, sealed_len(data.len() as u64));
        // SHA-256 over the plaintext, base64 (as gematik's sample writes it)
        let want = B64.encode(openssl::sha::sha256(&data));
        assert_eq!(s.hash, want);
        for chunk in [1, 7, 16, 17, 4096, 1 << 20] {
            assert_eq!(
                open(&blob, &s.k, &s.hash, chunk).unwrap(),
                data,
                "chunk {chunk}"
            );
        }
        // the IV is the first 12 bytes: decrypting by hand with it gives the data
        let key = B64.decode(&s.k).unwrap();
        let (iv, rest) = blob.split_at(IV_LEN);
        let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
        let plain =
            openssl::symm::decrypt_aead(Cipher::aes_256_gcm(), &key, Some(iv), &[], ct, tag)
                .unwrap();
        assert_eq!(plain, data);
        // empty data still make a valid blob
        let (blob, s) = seal(b"", 1);
        assert_eq!(blob.len(), IV_LEN + TAG_LEN);
        assert_eq!(open(&blob, &s.k, &s.hash, 3).unwrap(), b"");
    }

    #[test]
    fn tampering_truncation_and_a_wrong_hash_are_refused() {
        let data = vec![42u8; 5000];
        let (mut blob, s) = seal(&data, 1000);
        let other_hash = B64.encode(openssl::sha::sha256(b"other"));
        assert_eq!(
            open(&blob, &s.k, &other_hash, 512),
            Err(BlobError::HashMismatch)
        );
        assert_eq!(
            open(&blob[..blob.len() - 1], &s.k, &s.hash, 512),
            Err(BlobError::Altered)
        );
        assert_eq!(
            open(&blob[..10], &s.k, &s.hash, 512),
            Err(BlobError::Truncated)
        );
        blob[100] ^= 1;
        assert_eq!(open(&blob, &s.k, &s.hash, 512), Err(BlobError::Altered));
        assert_eq!(
            open(&blob, "not base64!", &s.hash, 512),
            Err(BlobError::BadKey)
        );
    }
}
