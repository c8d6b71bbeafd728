//! Envelope encryption of private keys under the master key.
//!
//! Invariants:
//! - a sealed blob is `version (1) || nonce (12) || AES-256-GCM ciphertext+tag`;
//! - every seal uses a fresh random nonce (96 bits; far below the birthday bound at our volumes);
//! - the associated data binds a blob to the row it belongs to (key ID and environment), so a
//!   blob copied onto another row fails to open instead of becoming that row's key;
//! - the master key file holds 32 random bytes as base64url, mode 0600; a file of any other shape
//!   is refused with a message that says so, never silently replaced.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::Random;

const VERSION: u8 = 1;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MasterKeyError {
    #[error("the master key must be 32 bytes of base64url (43 characters); {0}")]
    Malformed(String),
    #[error("a sealed key could not be opened: wrong master key, or the data was altered")]
    Open,
    #[error("sealing failed")]
    Seal,
}

/// The key that seals every private key at rest.
pub struct MasterKey {
    key: LessSafeKey,
    /// SHA-256 of the key bytes, first 8 bytes hex: lets an operator tell two keys apart safely.
    fingerprint: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterKey({})", self.fingerprint)
    }
}

impl MasterKey {
    pub fn generate(random: &dyn Random) -> (Self, String) {
        let mut b = [0u8; 32];
        random.fill(&mut b);
        let text = URL_SAFE_NO_PAD.encode(b);
        match Self::from_bytes(&b) {
            Ok(k) => (k, text),
            Err(_) => std::process::abort(), // 32 bytes always make an AES-256 key
        }
    }

    /// Parses the text form kept in the key file (surrounding whitespace ignored).
    pub fn from_text(text: &str) -> Result<Self, MasterKeyError> {
        let t = text.trim();
        let bytes = URL_SAFE_NO_PAD
            .decode(t)
            .map_err(|_| MasterKeyError::Malformed("the file is not base64url".into()))?;
        if bytes.len() != 32 {
            return Err(MasterKeyError::Malformed(format!(
                "found {} bytes",
                bytes.len()
            )));
        }
        Self::from_bytes(&bytes)
    }

    fn from_bytes(b: &[u8]) -> Result<Self, MasterKeyError> {
        let unbound = UnboundKey::new(&AES_256_GCM, b)
            .map_err(|_| MasterKeyError::Malformed("not a valid AES-256 key".into()))?;
        let fingerprint = crate::secrets::to_hex(&crate::secrets::sha256(b)[..8]);
        Ok(Self {
            key: LessSafeKey::new(unbound),
            fingerprint,
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn seal(
        &self,
        random: &dyn Random,
        aad: &str,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, MasterKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        random.fill(&mut nonce);
        let mut buf = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad.as_bytes()),
                &mut buf,
            )
            .map_err(|_| MasterKeyError::Seal)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + buf.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        Ok(out)
    }

    pub fn open(&self, aad: &str, sealed: &[u8]) -> Result<Vec<u8>, MasterKeyError> {
        let (&version, rest) = sealed.split_first().ok_or(MasterKeyError::Open)?;
        if version != VERSION || rest.len() < NONCE_LEN + 16 {
            return Err(MasterKeyError::Open);
        }
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| MasterKeyError::Open)?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .map_err(|_| MasterKeyError::Open)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SystemRandom;

    #[test]
    fn seal_open_and_refuse_tampering() {
        let (k, text) = MasterKey::generate(&SystemRandom);
        let k2 = MasterKey::from_text(&format!("{text}\n")).unwrap();
        assert_eq!(k.fingerprint(), k2.fingerprint());
        let sealed = k.seal(&SystemRandom, "sk_1|env_1", b"private").unwrap();
        assert_eq!(k2.open("sk_1|env_1", &sealed).unwrap(), b"private");
        assert_eq!(
            k.open("sk_2|env_1", &sealed),
            Err(MasterKeyError::Open),
            "bound to its row"
        );
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(k.open("sk_1|env_1", &flipped), Err(MasterKeyError::Open));
        let (other, _) = MasterKey::generate(&SystemRandom);
        assert_eq!(other.open("sk_1|env_1", &sealed), Err(MasterKeyError::Open));
    }

    #[test]
    fn malformed_key_files_are_refused() {
        assert!(MasterKey::from_text("").is_err());
        assert!(MasterKey::from_text("not base64!").is_err());
        assert!(MasterKey::from_text("AAAA").is_err());
    }
}
