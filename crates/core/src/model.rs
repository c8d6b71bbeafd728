//! The aggregates of the foundation: environments, organizations, API keys and signing keys, and
//! the pure rules that govern them (key rotation timeline).

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::{ApiKeyId, EnvId, OrgId, SigningKeyId};

/// Whether an environment may reach outside its network at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvMode {
    Connected,
    Isolated,
}

impl EnvMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "connected",
            Self::Isolated => "isolated",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "connected" => Some(Self::Connected),
            "isolated" => Some(Self::Isolated),
            _ => None,
        }
    }
}

/// JWS algorithm of an environment's signing keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SigningAlg {
    ES256,
    EdDSA,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
            Self::RS256 => "RS256",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "ES256" => Some(Self::ES256),
            "EdDSA" => Some(Self::EdDSA),
            "RS256" => Some(Self::RS256),
            _ => None,
        }
    }
}

/// How long keys live and how long a retired key stays published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyPolicy {
    /// An active key older than this is rotated by the scheduler.
    pub lifetime_seconds: i64,
    /// A retired key stays in the JWKS this long, so tokens it signed still verify.
    pub grace_seconds: i64,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        Self {
            lifetime_seconds: 90 * 86_400,
            grace_seconds: 7 * 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Environment {
    pub id: EnvId,
    pub slug: String,
    pub name: String,
    pub mode: EnvMode,
    pub issuer: String,
    pub signing_alg: SigningAlg,
    pub key_policy: KeyPolicy,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The issuer of an environment unless one is configured: `{public_url}/e/{slug}`.
pub fn default_issuer(public_url: &str, slug: &str) -> String {
    format!("{}/e/{slug}", public_url.trim_end_matches('/'))
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Organization {
    pub id: OrgId,
    pub env_id: EnvId,
    pub name: String,
    pub domains: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Admin keys administer (all environments, or one); environment keys are machine access to one
/// environment's APIs (events pull and later others) and never reach `/admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApiKeyKind {
    Admin,
    Environment,
}

impl ApiKeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Environment => "environment",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "admin" => Some(Self::Admin),
            "environment" => Some(Self::Environment),
            _ => None,
        }
    }
    /// The recognisable prefix of the secret, so a leaked key is identifiable by scanners.
    pub fn secret_prefix(self) -> &'static str {
        match self {
            Self::Admin => "pcadm_",
            Self::Environment => "pcenv_",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub kind: ApiKeyKind,
    /// `None` only for a global admin key.
    pub env_id: Option<EnvId>,
    pub name: String,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Refused from then on (set at creation, or by a rotation's overlap).
    pub expires_at: Option<Timestamp>,
    /// The key that replaced this one in a rotation.
    pub replaced_by: Option<ApiKeyId>,
}

impl ApiKey {
    /// Whether this key may act on `env`. A global admin key may act everywhere.
    pub fn can_access(&self, env: &EnvId) -> bool {
        self.env_id.as_ref().is_none_or(|e| e == env)
    }

    /// Whether the key has passed its expiry at `now` (it is refused from that instant).
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|t| now >= t)
    }
}

/// Where a signing key stands in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published in the JWKS, not yet signing: relying parties learn it before they meet it.
    Next,
    /// The one key that signs.
    Active,
    /// No longer signs; published until its grace period ends, so earlier tokens verify.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "next" => Some(Self::Next),
            "active" => Some(Self::Active),
            "retired" => Some(Self::Retired),
            _ => None,
        }
    }
}

/// A signing key's public facts (the private half stays sealed in the crypto/store layers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyInfo {
    pub id: SigningKeyId,
    pub env_id: EnvId,
    pub alg: SigningAlg,
    pub state: KeyState,
    pub created_at: Timestamp,
    pub activated_at: Option<Timestamp>,
    pub retired_at: Option<Timestamp>,
    /// The public JWK as published.
    pub public_jwk: serde_json::Value,
}

impl SigningKeyInfo {
    /// Published keys: next, active, and retired ones still inside their grace period.
    pub fn is_published(&self, now: Timestamp, policy: &KeyPolicy) -> bool {
        match (self.state, self.retired_at) {
            (KeyState::Retired, Some(r)) => now < r.plus_seconds(policy.grace_seconds),
            (KeyState::Retired, None) => false,
            _ => true,
        }
    }
}

/// Whether the scheduler must rotate now.
///
/// Invariants the rotation keeps (see `Store::rotate_signing_keys`):
/// 1. exactly one `active` key signs, and one `next` key is published beside it;
/// 2. a key signs only after it was published as `next` (it was created in an earlier rotation);
/// 3. a retired key stays published for `grace_seconds`, then disappears from the JWKS.
pub fn rotation_due(keys: &[SigningKeyInfo], now: Timestamp, policy: &KeyPolicy) -> bool {
    let active = keys.iter().find(|k| k.state == KeyState::Active);
    let has_next = keys.iter().any(|k| k.state == KeyState::Next);
    match active.and_then(|k| k.activated_at) {
        None => true,
        Some(at) => !has_next || now >= at.plus_seconds(policy.lifetime_seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::PrefixedId;

    fn key(state: KeyState, activated: Option<i64>, retired: Option<i64>) -> SigningKeyInfo {
        SigningKeyInfo {
            id: SigningKeyId::from_parts("01J00000000000000000000000"),
            env_id: EnvId::from_parts("01J00000000000000000000000"),
            alg: SigningAlg::ES256,
            state,
            created_at: Timestamp(0),
            activated_at: activated.map(Timestamp::from_millis),
            retired_at: retired.map(Timestamp::from_millis),
            public_jwk: serde_json::Value::Null,
        }
    }

    #[test]
    fn rotation_due_after_lifetime() {
        let p = KeyPolicy {
            lifetime_seconds: 10,
            grace_seconds: 5,
        };
        let keys = [
            key(KeyState::Active, Some(0), None),
            key(KeyState::Next, None, None),
        ];
        assert!(!rotation_due(&keys, Timestamp(9_999), &p));
        assert!(rotation_due(&keys, Timestamp(10_000), &p));
        assert!(
            rotation_due(&keys[..1], Timestamp(0), &p),
            "a missing next key is repaired"
        );
    }

    #[test]
    fn retired_published_only_during_grace() {
        let p = KeyPolicy {
            lifetime_seconds: 10,
            grace_seconds: 5,
        };
        let k = key(KeyState::Retired, Some(0), Some(1_000));
        assert!(k.is_published(Timestamp(5_999), &p));
        assert!(!k.is_published(Timestamp(6_000), &p));
    }
}
