//! Request and response bodies of the admin API (the OpenAPI schemas come from these types).

use portcullis_core::model::{ApiKey, Environment, Organization, SigningKeyInfo};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct KeyPolicyView {
    /// An active signing key older than this is rotated.
    pub lifetime_seconds: i64,
    /// A retired key stays published this long.
    pub grace_seconds: i64,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentView {
    pub id: String,
    pub object: String,
    pub slug: String,
    pub name: String,
    /// `connected` or `isolated`.
    pub mode: String,
    pub issuer: String,
    pub jwks_uri: String,
    /// `ES256`, `EdDSA` or `RS256`.
    pub signing_alg: String,
    pub key_policy: KeyPolicyView,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Environment> for EnvironmentView {
    fn from(e: &Environment) -> Self {
        Self {
            id: e.id.to_string(),
            object: "environment".into(),
            slug: e.slug.clone(),
            name: e.name.clone(),
            mode: e.mode.as_str().into(),
            issuer: e.issuer.clone(),
            jwks_uri: format!("{}/jwks.json", e.issuer),
            signing_alg: e.signing_alg.as_str().into(),
            key_policy: KeyPolicyView {
                lifetime_seconds: e.key_policy.lifetime_seconds,
                grace_seconds: e.key_policy.grace_seconds,
            },
            created_at: e.created_at.to_rfc3339(),
            updated_at: e.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEnvironment {
    /// 1–63 of `a-z`, `0-9`, `-`; unique; part of the default issuer `{public_url}/e/{slug}`.
    pub slug: String,
    /// Display name; defaults to the slug.
    pub name: Option<String>,
    /// `connected` or `isolated` (the default: no egress until a rule allows it).
    pub mode: Option<String>,
    /// Overrides the default issuer URL.
    pub issuer: Option<String>,
    /// `ES256` (default), `EdDSA` or `RS256`.
    pub signing_alg: Option<String>,
    pub key_lifetime_days: Option<i64>,
    pub key_grace_days: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateEnvironment {
    pub name: Option<String>,
    pub mode: Option<String>,
    pub key_lifetime_days: Option<i64>,
    pub key_grace_days: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct OrganizationView {
    pub id: String,
    pub object: String,
    pub environment_id: String,
    pub name: String,
    pub domains: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Organization> for OrganizationView {
    fn from(o: &Organization) -> Self {
        Self {
            id: o.id.to_string(),
            object: "organization".into(),
            environment_id: o.env_id.to_string(),
            name: o.name.clone(),
            domains: o.domains.clone(),
            created_at: o.created_at.to_rfc3339(),
            updated_at: o.updated_at.to_rfc3339(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrganization {
    pub name: String,
    /// Domains this organization owns; each belongs to at most one organization per environment.
    #[serde(default)]
    pub domains: Vec<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrganization {
    pub name: Option<String>,
    /// Replaces the whole set.
    pub domains: Option<Vec<String>>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ListMetadata {
    /// Pass as `after` to get the next page; absent on the last page.
    pub after: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ApiKeyView {
    pub id: String,
    pub object: String,
    /// `admin` or `environment`.
    pub kind: String,
    /// Absent for a global admin key.
    pub environment_id: Option<String>,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            object: "api_key".into(),
            kind: k.kind.as_str().into(),
            environment_id: k.env_id.as_ref().map(ToString::to_string),
            name: k.name.clone(),
            created_at: k.created_at.to_rfc3339(),
            last_used_at: k.last_used_at.map(|t| t.to_rfc3339()),
            revoked_at: k.revoked_at.map(|t| t.to_rfc3339()),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The key itself. Shown once: only its SHA-256 digest is stored.
    pub secret: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    /// `environment` (default: machine access to this environment's APIs) or `admin` (an admin
    /// key scoped to this environment).
    pub kind: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGlobalApiKey {
    pub name: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct SigningKeyView {
    pub id: String,
    pub alg: String,
    /// `next` (published, not yet signing), `active` or `retired`.
    pub state: String,
    /// Whether the key is in the JWKS now.
    pub published: bool,
    pub created_at: String,
    pub activated_at: Option<String>,
    pub retired_at: Option<String>,
    #[schema(value_type = Object)]
    pub public_jwk: serde_json::Value,
}

impl SigningKeyView {
    pub fn new(k: &SigningKeyInfo, published: bool) -> Self {
        Self {
            id: k.id.to_string(),
            alg: k.alg.as_str().into(),
            state: k.state.as_str().into(),
            published,
            created_at: k.created_at.to_rfc3339(),
            activated_at: k.activated_at.map(|t| t.to_rfc3339()),
            retired_at: k.retired_at.map(|t| t.to_rfc3339()),
            public_jwk: k.public_jwk.clone(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EventView {
    pub id: String,
    pub object: String,
    /// The event type, e.g. `organization.created`.
    pub event: String,
    /// Position in the environment's log (1, 2, 3 …).
    pub sequence: i64,
    pub environment_id: String,
    pub organization_id: Option<String>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditView {
    pub chain: String,
    pub seq: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ChainReportView {
    pub chain: String,
    pub records: usize,
    pub head_hash: String,
    pub ok: bool,
    /// The first broken link: its sequence number and why.
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct List<T> {
    pub object: String,
    pub data: Vec<T>,
    pub list_metadata: ListMetadata,
}

impl<T> List<T> {
    pub fn new(data: Vec<T>, after: Option<String>) -> Self {
        Self {
            object: "list".into(),
            data,
            list_metadata: ListMetadata { after },
        }
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// Cursor from `list_metadata.after` of the previous page.
    pub after: Option<String>,
    /// 1–100, default 10.
    pub limit: Option<u32>,
}

impl Page {
    pub fn limit(&self) -> Result<u32, crate::error::ApiError> {
        match self.limit {
            None => Ok(10),
            Some(n @ 1..=100) => Ok(n),
            Some(n) => Err(crate::error::ApiError::invalid(format!(
                "limit must be 1 to 100, not {n}"
            ))),
        }
    }
}
