//! Randomness, SHA-256, and generated machine secrets.
//!
//! Machine secrets are 256 random bits behind a recognisable prefix (`pcadm_`, `pcenv_`), shown
//! once and stored only as their SHA-256 digest: with that much entropy a fast hash is safe, and it
//! lets the store find a key by digest without a per-row salt.

use aws_lc_rs::rand::SecureRandom;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::{Random, Secret};

/// The operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRandom;

impl Random for SystemRandom {
    fn fill(&self, buf: &mut [u8]) {
        // aws-lc's RNG only fails if the OS has no entropy source at all; an all-zero buffer would
        // be a silent catastrophe, so abort instead.
        if aws_lc_rs::rand::SystemRandom::new().fill(buf).is_err() {
            std::process::abort();
        }
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

pub fn sha512(data: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, data)
        .as_ref()
        .to_vec()
}

pub fn sha256_hex(data: &[u8]) -> String {
    to_hex(&sha256(data))
}

pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `prefix` + 43 characters of base64url (256 bits).
pub fn generate_secret(random: &dyn Random, prefix: &str) -> Secret {
    let mut b = [0u8; 32];
    random.fill(&mut b);
    Secret::new(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(b)))
}

/// The stored form of a machine secret.
pub fn secret_digest(secret: &Secret) -> String {
    sha256_hex(secret.expose().as_bytes())
}

/// Compares two byte strings in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_random_and_digest_stably() {
        let a = generate_secret(&SystemRandom, "pcadm_");
        let b = generate_secret(&SystemRandom, "pcadm_");
        assert!(a.expose().starts_with("pcadm_"));
        assert_eq!(a.expose().len(), 6 + 43);
        assert_ne!(a, b);
        assert_eq!(secret_digest(&a), secret_digest(&a.clone()));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
