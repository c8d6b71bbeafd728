//! Cryptography for Portcullis, all on aws-lc-rs: randomness, digests, generated secrets, the
//! master-key envelope that seals private keys at rest, and JWS signing keys (ES256, EdDSA, RS256)
//! with their public JWKs.

pub mod envelope;
pub mod jws;
pub mod secrets;

pub use envelope::{MasterKey, MasterKeyError};
pub use jws::{KeyError, SigningKey};
pub use secrets::{PooledRandom, SystemRandom, generate_secret, secret_digest, sha256_hex};
