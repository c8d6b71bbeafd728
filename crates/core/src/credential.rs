//! Machine credentials: the inventory vocabulary (kind, state, owner, dates) and the pure rules of
//! `credentials report` — when a credential is due for rotation, expired, or stale.
//!
//! A credential is one secret or key a machine presents (or, for webhooks, one we sign with):
//! a client secret, a `private_key_jwt` public key (one per `kid`), an environment or admin API
//! key, a webhook signing secret. During a rotation's overlap window the replaced credential is
//! listed beside its successor in state `overlap`.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::EnvId;

const DAY_MS: i64 = 86_400_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    ClientSecret,
    /// The secret replaced by the last rotation, valid until its overlap ends.
    ClientSecretPrevious,
    /// One public key (by `kid`) of a `private_key_jwt` client's inline JWKS.
    PrivateKeyJwt,
    EnvironmentApiKey,
    AdminApiKey,
    WebhookSecret,
    /// The signing secret replaced by the last rotation, still signing until its overlap ends.
    WebhookSecretPrevious,
}

impl CredentialKind {
    pub const ALL: &'static [CredentialKind] = &[
        Self::ClientSecret,
        Self::ClientSecretPrevious,
        Self::PrivateKeyJwt,
        Self::EnvironmentApiKey,
        Self::AdminApiKey,
        Self::WebhookSecret,
        Self::WebhookSecretPrevious,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client_secret",
            Self::ClientSecretPrevious => "client_secret_previous",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::EnvironmentApiKey => "environment_api_key",
            Self::AdminApiKey => "admin_api_key",
            Self::WebhookSecret => "webhook_secret",
            Self::WebhookSecretPrevious => "webhook_secret_previous",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// What kind of record owns a credential of this kind.
    pub fn owner_type(self) -> &'static str {
        match self {
            Self::ClientSecret | Self::ClientSecretPrevious | Self::PrivateKeyJwt => "client",
            Self::EnvironmentApiKey | Self::AdminApiKey => "api_key",
            Self::WebhookSecret | Self::WebhookSecretPrevious => "webhook_endpoint",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialState {
    Active,
    /// Replaced by a rotation and still accepted until `expires_at`.
    Overlap,
    Expired,
    Revoked,
}

impl CredentialState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Overlap => "overlap",
            Self::Expired => "expired",
            Self::Revoked => "revoked",
        }
    }
}

/// What `credentials report` flags (each one makes it exit 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// Active, and older than its kind's rotation period (or at its expiry).
    RotationOverdue,
    /// Past its own expiry and still configured: nobody revoked or replaced it.
    Expired,
    /// Active and unused (never, or not since) for longer than the report's `--stale` days.
    Stale,
}

impl Problem {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RotationOverdue => "rotation_overdue",
            Self::Expired => "expired",
            Self::Stale => "stale",
        }
    }
}

/// Days after its creation a credential of each kind is due for rotation; 0: never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationPolicy {
    pub client_secret_days: u32,
    pub private_key_jwt_days: u32,
    pub environment_api_key_days: u32,
    pub admin_api_key_days: u32,
    pub webhook_secret_days: u32,
}

impl Default for RotationPolicy {
    fn default() -> Self {
        Self {
            client_secret_days: 90,
            private_key_jwt_days: 365,
            environment_api_key_days: 90,
            admin_api_key_days: 90,
            webhook_secret_days: 90,
        }
    }
}

impl RotationPolicy {
    /// The rotation period of `kind`; `None` for credentials already replaced, or when 0.
    pub fn period_days(&self, kind: CredentialKind) -> Option<u32> {
        let d = match kind {
            CredentialKind::ClientSecret => self.client_secret_days,
            CredentialKind::PrivateKeyJwt => self.private_key_jwt_days,
            CredentialKind::EnvironmentApiKey => self.environment_api_key_days,
            CredentialKind::AdminApiKey => self.admin_api_key_days,
            CredentialKind::WebhookSecret => self.webhook_secret_days,
            CredentialKind::ClientSecretPrevious | CredentialKind::WebhookSecretPrevious => 0,
        };
        (d > 0).then_some(d)
    }
}

/// One row of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Stable, non-secret name: `key_…` for API keys, `client_…/secret/<8 hex of the digest>`,
    /// `client_…/jwk/<kid>`, `whk_…/secret` and `whk_…/secret/previous`.
    pub reference: String,
    pub kind: CredentialKind,
    /// `None` only for a global admin key.
    pub env_id: Option<EnvId>,
    /// The client, webhook endpoint or API key it belongs to.
    pub owner_id: String,
    /// The client's name, the endpoint's URL, the key's name.
    pub owner_name: String,
    /// `None` when not recorded (a secret replaced before this was tracked).
    pub created_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    /// Replaced by a rotation: accepted until `expires_at`, then done.
    pub superseded: bool,
}

impl Credential {
    pub fn state(&self, now: Timestamp) -> CredentialState {
        if self.revoked_at.is_some_and(|t| t <= now) {
            CredentialState::Revoked
        } else if self.expires_at.is_some_and(|t| t <= now) {
            CredentialState::Expired
        } else if self.superseded
            || matches!(
                self.kind,
                CredentialKind::ClientSecretPrevious | CredentialKind::WebhookSecretPrevious
            )
        {
            CredentialState::Overlap
        } else {
            CredentialState::Active
        }
    }

    /// Creation plus the kind's rotation period, or the expiry if that comes first. Only an
    /// active credential is due: a replaced one is already rotated.
    pub fn rotation_due_at(&self, policy: &RotationPolicy) -> Option<Timestamp> {
        if self.superseded || self.revoked_at.is_some() {
            return None;
        }
        let by_age = policy
            .period_days(self.kind)
            .zip(self.created_at)
            .map(|(d, c)| Timestamp(c.millis().saturating_add(i64::from(d) * DAY_MS)));
        match (by_age, self.expires_at) {
            (Some(a), Some(e)) => Some(a.min(e)),
            (a, e) if policy.period_days(self.kind).is_some() => a.or(e),
            _ => None,
        }
    }

    /// What the report flags for this credential at `now`; `stale_days` enables the staleness
    /// check (never used counts from creation).
    pub fn problems(
        &self,
        now: Timestamp,
        policy: &RotationPolicy,
        stale_days: Option<u32>,
    ) -> Vec<Problem> {
        let mut out = Vec::new();
        match self.state(now) {
            CredentialState::Expired if !self.superseded && !self.is_previous() => {
                out.push(Problem::Expired);
            }
            CredentialState::Active => {
                if self.rotation_due_at(policy).is_some_and(|d| d <= now) {
                    out.push(Problem::RotationOverdue);
                }
                let since = self.last_used_at.or(self.created_at);
                if let (Some(days), Some(t)) = (stale_days, since)
                    && now.millis() - t.millis() > i64::from(days) * DAY_MS
                {
                    out.push(Problem::Stale);
                }
            }
            _ => {}
        }
        out
    }

    fn is_previous(&self) -> bool {
        matches!(
            self.kind,
            CredentialKind::ClientSecretPrevious | CredentialKind::WebhookSecretPrevious
        )
    }
}

/// Shortest and longest lifetime a credential may be given at creation or rotation.
pub const EXPIRES_IN_SECONDS: std::ops::RangeInclusive<i64> = 60..=3650 * 86_400;

/// Checks a requested lifetime (`expires_in_seconds`).
pub fn check_expires_in(field: &str, seconds: i64) -> Result<(), String> {
    if EXPIRES_IN_SECONDS.contains(&seconds) {
        Ok(())
    } else {
        Err(format!(
            "{field} must be {} to {} (10 years), not {seconds}",
            EXPIRES_IN_SECONDS.start(),
            EXPIRES_IN_SECONDS.end()
        ))
    }
}

/// The expiry of a rotation's new credential: `requested` seconds from `now` when given; else
/// the lifetime of the credential it replaces, if that one had an expiry (a rotation keeps the
/// policy the operator chose); else none.
pub fn successor_expiry(
    now: Timestamp,
    requested: Option<i64>,
    replaced_created: Option<Timestamp>,
    replaced_expires: Option<Timestamp>,
) -> Option<Timestamp> {
    match (requested, replaced_created, replaced_expires) {
        (Some(s), _, _) => Some(now.plus_seconds(s)),
        (None, Some(c), Some(e)) if e > c => {
            Some(Timestamp(now.millis() + (e.millis() - c.millis())))
        }
        _ => None,
    }
}

/// The reference of a client secret: the client and the first 8 hex digits of the secret's
/// SHA-256 digest (of a 256-bit random secret: it names the secret without weakening it).
pub fn client_secret_reference(client_id: &str, digest: &str) -> String {
    let short = digest.get(..8).unwrap_or(digest);
    // Built on every client-secret authentication at the token endpoint: concatenated rather
    // than formatted.
    [client_id, "/secret/", short].concat()
}

/// The reference of one `private_key_jwt` key of a client.
pub fn client_jwk_reference(client_id: &str, kid: &str) -> String {
    format!("{client_id}/jwk/{kid}")
}

/// The `kid`s of an inline JWKS, in order.
pub fn jwks_kids(jwks: Option<&serde_json::Value>) -> Vec<String> {
    jwks.and_then(|j| j.get("keys"))
        .and_then(serde_json::Value::as_array)
        .map(|keys| {
            keys.iter()
                .filter_map(|k| k.get("kid").and_then(serde_json::Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_800_000_000_000;

    fn cred(kind: CredentialKind) -> Credential {
        Credential {
            reference: "r".into(),
            kind,
            env_id: None,
            owner_id: "o".into(),
            owner_name: "n".into(),
            created_at: Some(Timestamp(T0)),
            last_used_at: None,
            expires_at: None,
            revoked_at: None,
            superseded: false,
        }
    }

    fn at_day(d: i64) -> Timestamp {
        Timestamp(T0 + d * DAY_MS)
    }

    #[test]
    fn rotation_is_due_after_the_period_of_the_kind() {
        let p = RotationPolicy::default();
        let c = cred(CredentialKind::ClientSecret);
        assert_eq!(c.rotation_due_at(&p), Some(at_day(90)));
        assert!(c.problems(at_day(89), &p, None).is_empty());
        assert_eq!(
            c.problems(at_day(90), &p, None),
            vec![Problem::RotationOverdue]
        );
        let k = cred(CredentialKind::PrivateKeyJwt);
        assert_eq!(k.rotation_due_at(&p), Some(at_day(365)));
        let never = RotationPolicy {
            client_secret_days: 0,
            ..p
        };
        assert_eq!(c.rotation_due_at(&never), None);
    }

    #[test]
    fn an_earlier_expiry_brings_rotation_forward_and_expired_is_flagged() {
        let p = RotationPolicy::default();
        let c = Credential {
            expires_at: Some(at_day(30)),
            ..cred(CredentialKind::EnvironmentApiKey)
        };
        assert_eq!(c.rotation_due_at(&p), Some(at_day(30)));
        assert_eq!(c.state(at_day(30)), CredentialState::Expired);
        assert_eq!(c.problems(at_day(31), &p, Some(1)), vec![Problem::Expired]);
        let revoked = Credential {
            revoked_at: Some(at_day(31)),
            ..c.clone()
        };
        assert!(revoked.problems(at_day(32), &p, Some(1)).is_empty());
    }

    #[test]
    fn replaced_credentials_are_in_overlap_and_never_flagged() {
        let p = RotationPolicy::default();
        let prev = Credential {
            expires_at: Some(at_day(100)),
            ..cred(CredentialKind::ClientSecretPrevious)
        };
        assert_eq!(prev.state(at_day(99)), CredentialState::Overlap);
        assert!(prev.problems(at_day(99), &p, Some(1)).is_empty());
        assert!(prev.problems(at_day(101), &p, Some(1)).is_empty());
        let key = Credential {
            superseded: true,
            expires_at: Some(at_day(100)),
            ..cred(CredentialKind::AdminApiKey)
        };
        assert_eq!(key.state(at_day(1)), CredentialState::Overlap);
        assert_eq!(key.rotation_due_at(&p), None);
        assert!(key.problems(at_day(101), &p, None).is_empty());
    }

    #[test]
    fn stale_counts_from_last_use_or_creation() {
        let p = RotationPolicy::default();
        let c = cred(CredentialKind::WebhookSecret);
        assert!(c.problems(at_day(10), &p, Some(10)).is_empty());
        assert_eq!(c.problems(at_day(11), &p, Some(10)), vec![Problem::Stale]);
        let used = Credential {
            last_used_at: Some(at_day(5)),
            ..c
        };
        assert!(used.problems(at_day(11), &p, Some(10)).is_empty());
        assert!(used.problems(at_day(11), &p, None).is_empty());
    }

    #[test]
    fn a_successor_keeps_the_lifetime_unless_told_otherwise() {
        let now = at_day(10);
        assert_eq!(
            successor_expiry(now, None, Some(at_day(0)), Some(at_day(30))),
            Some(at_day(40))
        );
        assert_eq!(
            successor_expiry(now, Some(86_400), None, None),
            Some(at_day(11))
        );
        assert_eq!(successor_expiry(now, None, Some(at_day(0)), None), None);
        assert!(check_expires_in("x", 59).is_err() && check_expires_in("x", 60).is_ok());
    }

    #[test]
    fn references_never_carry_the_secret() {
        assert_eq!(
            client_secret_reference("client_1", "0123456789abcdef"),
            "client_1/secret/01234567"
        );
        let jwks = serde_json::json!({ "keys": [{ "kid": "a" }, { "kty": "EC" }, { "kid": "b" }] });
        assert_eq!(jwks_kids(Some(&jwks)), vec!["a", "b"]);
    }
}
