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

/// The OS-seeded CSPRNG drawn in batches: each thread keeps a small pool filled from
/// [`SystemRandom`] and hands it out in pieces, so a caller that needs a few bytes per request (an
/// access token's `jti`) pays one generator call per [`POOL_BYTES`] instead of one per value. The
/// output is the generator's own, so it is as unpredictable and as unique; only its timing
/// differs. Bytes are wiped from the pool once handed out. For values that are published
/// (identifiers); secrets and keys come straight from [`SystemRandom`].
#[derive(Debug, Default, Clone, Copy)]
pub struct PooledRandom;

const POOL_BYTES: usize = 1024;

struct Pool {
    bytes: [u8; POOL_BYTES],
    /// Bytes before `used` have been handed out (and wiped).
    used: usize,
}

thread_local! {
    static POOL: std::cell::RefCell<Pool> = const {
        std::cell::RefCell::new(Pool { bytes: [0; POOL_BYTES], used: POOL_BYTES })
    };
}

impl Random for PooledRandom {
    fn fill(&self, buf: &mut [u8]) {
        if buf.len() > POOL_BYTES / 4 {
            SystemRandom.fill(buf);
            return;
        }
        POOL.with_borrow_mut(|pool| {
            if POOL_BYTES - pool.used < buf.len() {
                SystemRandom.fill(&mut pool.bytes);
                pool.used = 0;
            }
            let end = pool.used + buf.len();
            if let Some(src) = pool.bytes.get_mut(pool.used..end) {
                buf.copy_from_slice(src);
                src.fill(0);
                pool.used = end;
            } else {
                SystemRandom.fill(buf);
            }
        });
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

/// Lower-case hex. A table lookup rather than `write!` per byte: the token endpoint digests the
/// presented client secret on every request, and the formatter was a visible share of it.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    s
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

    #[test]
    fn pooled_random_values_are_distinct_across_refills() {
        let mut seen = std::collections::HashSet::new();
        // Several pool refills' worth, in sizes that do not divide the pool evenly.
        for _ in 0..(3 * POOL_BYTES / 12) {
            let mut b = [0u8; 12];
            PooledRandom.fill(&mut b);
            assert!(seen.insert(b), "a pooled value repeated");
        }
        let mut big = [0u8; POOL_BYTES];
        PooledRandom.fill(&mut big);
        assert!(big.iter().any(|b| *b != 0));
    }
}
