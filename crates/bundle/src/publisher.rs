//! Bundle-publisher keys: Ed25519 (default) or ECDSA P-256, kept by the publisher as a PKCS#8
//! PEM file; the environment trusts the public JWK, named by its RFC 7638 thumbprint.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis_core::model::SigningAlg;
use portcullis_crypto::SigningKey;
use portcullis_crypto::jws::{generate_pkcs8, jwk_alg, jwk_thumbprint};
use serde_json::Value;

const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const END: &str = "-----END PRIVATE KEY-----";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyFileError {
    #[error("not a PEM \"PRIVATE KEY\" (PKCS#8) document")]
    NotPem,
    #[error("the key is neither Ed25519 nor ECDSA P-256")]
    Algorithm,
    #[error("{0}")]
    Crypto(String),
}

/// A publisher's private key, ready to sign manifests.
#[derive(Debug)]
pub struct PublisherKey {
    key: SigningKey,
    jwk: Value,
}

/// The RFC 7638 thumbprint that names a public JWK in signatures and trust lists; `None` when it
/// is not an Ed25519 or P-256 public key (private members refused).
pub fn key_id(jwk: &Value) -> Option<String> {
    let alg = jwk_alg(jwk)?;
    if !matches!(alg, "EdDSA" | "ES256")
        || ["d", "p", "q", "k"].iter().any(|m| jwk.get(m).is_some())
    {
        return None;
    }
    jwk_thumbprint(jwk)
}

impl PublisherKey {
    /// A new key and its PEM text (write it with mode 0600).
    pub fn generate(alg: SigningAlg) -> Result<(Self, String), KeyFileError> {
        if alg == SigningAlg::RS256 {
            return Err(KeyFileError::Algorithm);
        }
        let der = generate_pkcs8(alg).map_err(|e| KeyFileError::Crypto(e.to_string()))?;
        let pem = to_pem(&der);
        Ok((Self::from_der(&der)?, pem))
    }

    pub fn from_pem(text: &str) -> Result<Self, KeyFileError> {
        let body: String = text
            .trim()
            .strip_prefix(BEGIN)
            .and_then(|t| t.strip_suffix(END))
            .ok_or(KeyFileError::NotPem)?
            .split_whitespace()
            .collect();
        let der = STANDARD.decode(body).map_err(|_| KeyFileError::NotPem)?;
        Self::from_der(&der)
    }

    fn from_der(der: &[u8]) -> Result<Self, KeyFileError> {
        let alg = [SigningAlg::EdDSA, SigningAlg::ES256]
            .into_iter()
            .find(|a| SigningKey::from_pkcs8("", *a, der).is_ok())
            .ok_or(KeyFileError::Algorithm)?;
        let probe = SigningKey::from_pkcs8("", alg, der)
            .map_err(|e| KeyFileError::Crypto(e.to_string()))?;
        let mut jwk = probe.public_jwk();
        if let Some(o) = jwk.as_object_mut() {
            o.remove("kid");
            o.remove("use");
        }
        let kid = key_id(&jwk).ok_or(KeyFileError::Algorithm)?;
        jwk["kid"] = Value::String(kid.clone());
        let key = SigningKey::from_pkcs8(&kid, alg, der)
            .map_err(|e| KeyFileError::Crypto(e.to_string()))?;
        Ok(Self { key, jwk })
    }

    pub fn key_id(&self) -> &str {
        self.key.kid()
    }

    /// The public JWK (with `kid` = thumbprint and `alg`) to give the environment.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    pub fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, KeyFileError> {
        self.key
            .sign(msg)
            .map_err(|e| KeyFileError::Crypto(e.to_string()))
    }
}

fn to_pem(der: &[u8]) -> String {
    let b = STANDARD.encode(der);
    let mut out = format!("{BEGIN}\n");
    for chunk in b.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(END);
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_keeps_the_key_id_for_both_algorithms() {
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256] {
            let (k, pem) = PublisherKey::generate(alg).unwrap();
            let again = PublisherKey::from_pem(&pem).unwrap();
            assert_eq!(k.key_id(), again.key_id());
            assert_eq!(key_id(k.public_jwk()).as_deref(), Some(k.key_id()));
            let sig = k.sign(b"m").unwrap();
            assert!(portcullis_crypto::jws::verify_raw(
                again.public_jwk(),
                b"m",
                &sig
            ));
            assert!(!portcullis_crypto::jws::verify_raw(
                again.public_jwk(),
                b"n",
                &sig
            ));
        }
        assert_eq!(
            PublisherKey::from_pem("junk").unwrap_err(),
            KeyFileError::NotPem
        );
        assert!(PublisherKey::generate(SigningAlg::RS256).is_err());
    }
}
