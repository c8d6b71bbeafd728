//! The OAuth 2 / OpenID Connect authorization server of one environment, knowing no HTTP.
//!
//! Handlers in the server crate parse requests into the types here, call one function with the
//! environment's context ([`Ctx`]) and `now`, and render its result or its [`OAuthError`].
//!
//! - [`authorize`]: RFC 6749 §4.1.1 with OAuth 2.1 rules (code only, PKCE S256), OIDC Core §3.1.2.
//! - [`token`]: RFC 6749 §4.1.3, §6, §4.4; RFC 8693 token exchange; errors per RFC 6749 §5.2.
//! - [`client_auth`]: RFC 6749 §2.3, RFC 7523 (`private_key_jwt`).
//! - [`jwt`]: RFC 9068 access tokens, OIDC Core §2 ID tokens, verification of our own tokens.
//! - [`introspect`]: RFC 7662 introspection, RFC 7009 revocation, OIDC userinfo.

pub mod authorize;
pub mod client_auth;
pub mod discovery;
pub mod error;
pub mod introspect;
pub mod jwt;
pub mod password;
pub mod ratelimit;
pub mod token;
pub mod upstream;

use portcullis_core::Timestamp;
use portcullis_core::model::{Environment, SigningKeyInfo};
use portcullis_crypto::SigningKey;
use portcullis_store::Store;

pub use error::{ErrorCode, OAuthError};

/// Everything an operation of one environment needs.
pub struct Ctx<'a> {
    pub store: &'a Store,
    pub env: &'a Environment,
    /// The key that signs now.
    pub signer: &'a SigningKey,
    /// Every key of the environment (verification accepts only the published ones).
    pub keys: &'a [SigningKeyInfo],
    pub now: Timestamp,
}

impl Ctx<'_> {
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.env.issuer)
    }
}

/// Space-separated scope string to a list, without duplicates, in order.
pub fn scopes(s: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for x in s.split(' ').filter(|x| !x.is_empty()) {
        if !out.iter().any(|y| y == x) {
            out.push(x.to_owned());
        }
    }
    out
}
