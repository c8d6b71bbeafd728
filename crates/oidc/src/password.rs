//! Password hashing with Argon2id (RFC 9106), on blocking threads behind a semaphore so that a
//! burst of sign-ins cannot starve the async runtime.
//!
//! Unknown users are checked against a dummy hash of the same parameters, so that the answer and
//! its timing are the same as for a wrong password.

use std::sync::{Arc, OnceLock};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use portcullis_core::Random;

pub struct Passwords {
    permits: Arc<tokio::sync::Semaphore>,
}

fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| hash_blocking("portcullis-dummy-password").unwrap_or_default())
}

fn hash_blocking(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    portcullis_crypto::SystemRandom.fill(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn verify_blocking(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Password rules: 12 to 1024 characters.
pub fn check_policy(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < 12 {
        return Err("a password has at least 12 characters".into());
    }
    if password.len() > 1024 {
        return Err("a password has at most 1024 bytes".into());
    }
    Ok(())
}

impl Passwords {
    pub fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency.max(1))),
        }
    }

    pub async fn hash(&self, password: &str) -> Result<String, String> {
        let _permit = self.permits.acquire().await.map_err(|e| e.to_string())?;
        let p = password.to_owned();
        tokio::task::spawn_blocking(move || hash_blocking(&p))
            .await
            .map_err(|e| e.to_string())?
    }

    /// Verifies `password` against `hash`, or against the dummy hash when there is no user.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> bool {
        let Ok(_permit) = self.permits.acquire().await else {
            return false;
        };
        let p = password.to_owned();
        let (h, real) = match hash {
            Some(h) => (h.to_owned(), true),
            None => (dummy_hash().to_owned(), false),
        };
        let ok = tokio::task::spawn_blocking(move || verify_blocking(&p, &h))
            .await
            .unwrap_or(false);
        ok && real
    }

    /// Computes the dummy hash ahead of the first sign-in.
    pub fn warm_up() {
        let _ = dummy_hash();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hash_verify_and_dummy() {
        let p = Passwords::new(2);
        let h = p.hash("correct horse battery").await.unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(p.verify("correct horse battery", Some(&h)).await);
        assert!(!p.verify("wrong horse battery", Some(&h)).await);
        assert!(
            !p.verify("portcullis-dummy-password", None).await,
            "no user never verifies"
        );
    }
}
