//! Request and response bodies of the admin API (the OpenAPI schemas come from these types).

use portcullis_core::model::{ApiKey, Environment, Organization, SigningKeyInfo};
use portcullis_core::oauth::{Client, User};
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
    /// Refused from then on (its own expiry, or the end of a rotation's overlap).
    pub expires_at: Option<String>,
    /// The key that replaced this one in a rotation.
    pub replaced_by: Option<String>,
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
            expires_at: k.expires_at.map(|t| t.to_rfc3339()),
            replaced_by: k.replaced_by.as_ref().map(ToString::to_string),
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
    /// The key is refused this many seconds from now (60 to 10 years); absent: no expiry.
    pub expires_in_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKey {
    /// How long the current key keeps working beside the new one: 0–2592000 (30 days), default
    /// 86400. 0 revokes it now. Never beyond the current key's own expiry.
    pub overlap_seconds: Option<i64>,
    /// The new key expires this many seconds from now (60 to 10 years); absent: it gets the
    /// lifetime the current key had, if it had one.
    pub expires_in_seconds: Option<i64>,
}

/// The new key with its secret (shown once), and the key it replaced as it is now.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RotatedApiKey {
    #[serde(flatten)]
    pub key: ApiKeyView,
    /// The new key itself. Shown once: only its SHA-256 digest is stored.
    pub secret: String,
    /// The replaced key: `expires_at` is the end of the overlap, `replaced_by` the new key.
    pub replaced: ApiKeyView,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGlobalApiKey {
    pub name: String,
    /// The key is refused this many seconds from now (60 to 10 years); absent: no expiry.
    pub expires_in_seconds: Option<i64>,
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
    /// Stored checkpoints that verified (environment chains only; the global chain has none).
    #[serde(default)]
    pub checkpoints: usize,
    /// The latest stored checkpoint, verified or not.
    #[serde(default)]
    pub latest_checkpoint: Option<CheckpointView>,
}

/// A signed checkpoint of an audit chain's head.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CheckpointView {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    pub at: String,
    /// The signing key (its `kid` in the environment's JWKS).
    pub kid: String,
    /// Compact JWS, `typ` `audit-checkpoint+jwt`, over `{iss, environment, chain, seq, hash, at}`
    /// (`at` in milliseconds since the Unix epoch).
    pub jws: String,
}

impl From<portcullis_core::checkpoint::Checkpoint> for CheckpointView {
    fn from(c: portcullis_core::checkpoint::Checkpoint) -> Self {
        Self {
            at: c.at.to_rfc3339(),
            chain: c.chain,
            seq: c.seq,
            hash: c.hash,
            kid: c.kid,
            jws: c.jws,
        }
    }
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

/// Which audiences and scopes a client may obtain through token exchange (RFC 8693).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenExchangeView {
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ClientView {
    pub id: String,
    pub object: String,
    pub environment_id: String,
    pub name: String,
    /// `confidential` or `public`.
    pub kind: String,
    /// `client_secret_basic`, `client_secret_post`, `private_key_jwt` or `none`.
    pub token_endpoint_auth_method: String,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    /// The public keys of a `private_key_jwt` client.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    pub token_exchange: TokenExchangeView,
    pub access_token_ttl_seconds: i64,
    pub id_token_ttl_seconds: i64,
    pub refresh_idle_ttl_seconds: i64,
    pub refresh_absolute_ttl_seconds: i64,
    /// Whether the client has a secret (only its digest is stored; it is never shown again).
    pub has_secret: bool,
    pub secret_created_at: Option<String>,
    /// The secret is refused from then on (absent: it does not expire).
    pub secret_expires_at: Option<String>,
    /// Until then the secret replaced at the last rotation still works.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        Self {
            id: c.id.to_string(),
            object: "client".into(),
            environment_id: c.env_id.to_string(),
            name: c.name.clone(),
            kind: super::client_rules::kind_str(c.kind).into(),
            token_endpoint_auth_method: c.auth_method.as_str().into(),
            redirect_uris: c.redirect_uris.clone(),
            post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
            grant_types: c
                .grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
            scopes: c.scopes.clone(),
            jwks: c.jwks.clone(),
            token_exchange: TokenExchangeView {
                audiences: c.exchange.audiences.clone(),
                scopes: c.exchange.scopes.clone(),
            },
            access_token_ttl_seconds: c.lifetimes.access_token,
            id_token_ttl_seconds: c.lifetimes.id_token,
            refresh_idle_ttl_seconds: c.lifetimes.refresh_idle,
            refresh_absolute_ttl_seconds: c.lifetimes.refresh_absolute,
            has_secret: c.secret_digest.is_some(),
            secret_created_at: c.secret_created_at.map(|t| t.to_rfc3339()),
            secret_expires_at: c.secret_expires_at.map(|t| t.to_rfc3339()),
            previous_secret_expires_at: c
                .previous_secret_digest
                .as_ref()
                .and(c.previous_secret_expires_at)
                .map(|t| t.to_rfc3339()),
            created_at: c.created_at.to_rfc3339(),
            updated_at: c.updated_at.to_rfc3339(),
        }
    }
}

/// A client, with its new secret when this answer created one.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedClient {
    #[serde(flatten)]
    pub client: ClientView,
    /// The client secret (`pcsec_…`). Shown once, in the answer that generated it: only its
    /// SHA-256 digest is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateClient {
    pub name: String,
    /// Allow redirect or logout URIs that another environment also registers. Refused by
    /// default: a callback shared by two deployment boundaries lets one receive the other's codes.
    #[serde(default)]
    pub allow_cross_environment_uris: bool,
    /// `confidential` (default) or `public`.
    pub kind: Option<String>,
    /// `client_secret_basic` (default for confidential clients), `client_secret_post`,
    /// `private_key_jwt` (needs `jwks`) or `none` (public clients, with PKCE).
    pub token_endpoint_auth_method: Option<String>,
    /// Exact URIs (no wildcards); `http` only on loopback; at most 20.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
    /// Default `["authorization_code", "refresh_token"]`; also `client_credentials` and
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    pub grant_types: Option<Vec<String>>,
    /// Default `["openid", "email", "profile", "offline_access"]`.
    pub scopes: Option<Vec<String>>,
    /// `{"keys": [...]}`: public EC P-256, Ed25519 or RSA (2048+ bit) keys with a `kid`;
    /// required for, and only for, `private_key_jwt`.
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    pub token_exchange: Option<TokenExchangeView>,
    /// 60–86400, default 900.
    pub access_token_ttl_seconds: Option<i64>,
    /// 60–86400, default 3600.
    pub id_token_ttl_seconds: Option<i64>,
    /// Default 14 days; at most the absolute lifetime.
    pub refresh_idle_ttl_seconds: Option<i64>,
    /// Default 90 days.
    pub refresh_absolute_ttl_seconds: Option<i64>,
    /// The generated secret expires this many seconds from now (60 to 10 years) and is refused
    /// from then on; absent: it does not expire (it is still due for rotation, see
    /// `credentials report`).
    pub secret_expires_in_seconds: Option<i64>,
}

/// Each present field replaces the client's; the resulting client is checked as a whole.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateClient {
    pub name: Option<String>,
    /// Allow redirect or logout URIs that another environment also registers. Refused by
    /// default: a callback shared by two deployment boundaries lets one receive the other's codes.
    #[serde(default)]
    pub allow_cross_environment_uris: bool,
    /// Changing the kind without a method picks the kind's default method.
    pub kind: Option<String>,
    /// A change to `client_secret_basic`/`client_secret_post` from a method without a secret
    /// generates one (returned once); a change away from them discards the secret.
    pub token_endpoint_auth_method: Option<String>,
    pub redirect_uris: Option<Vec<String>>,
    pub post_logout_redirect_uris: Option<Vec<String>>,
    pub grant_types: Option<Vec<String>>,
    pub scopes: Option<Vec<String>>,
    /// Replaces the key set (`private_key_jwt` only; dropped when the method changes away).
    #[schema(value_type = Option<Object>)]
    pub jwks: Option<serde_json::Value>,
    pub token_exchange: Option<TokenExchangeView>,
    pub access_token_ttl_seconds: Option<i64>,
    pub id_token_ttl_seconds: Option<i64>,
    pub refresh_idle_ttl_seconds: Option<i64>,
    pub refresh_absolute_ttl_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateClientSecret {
    /// How long the current secret keeps working beside the new one: 0–2592000 (30 days),
    /// default 86400. 0 ends it now. Never beyond the current secret's own expiry.
    pub overlap_seconds: Option<i64>,
    /// The new secret expires this many seconds from now (60 to 10 years); absent: it gets the
    /// lifetime the current secret had, if it had one.
    pub expires_in_seconds: Option<i64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub object: String,
    pub environment_id: String,
    pub organization_id: String,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub disabled: bool,
    pub disabled_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&User> for UserView {
    fn from(u: &User) -> Self {
        Self {
            id: u.id.to_string(),
            object: "user".into(),
            environment_id: u.env_id.to_string(),
            organization_id: u.org_id.to_string(),
            email: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            disabled: u.disabled_at.is_some(),
            disabled_at: u.disabled_at.map(|t| t.to_rfc3339()),
            created_at: u.created_at.to_rfc3339(),
            updated_at: u.updated_at.to_rfc3339(),
        }
    }
}

/// A new user, with the generated password when the request gave none.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedUser {
    #[serde(flatten)]
    pub user: UserView,
    /// Shown once, only when generated: only an Argon2id hash is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// In one of the organization's domains (sign-in is routed by domain).
    pub email: String,
    /// At least 12 characters; generated and returned once when absent.
    pub password: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// `null` clears the name.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub first_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub last_name: Option<Option<String>>,
    /// Disabling ends the user's sessions and grants.
    pub disabled: Option<bool>,
    /// Sets a new password (at least 12 characters) and ends the user's sessions and grants.
    pub password: Option<String>,
}

/// Tells an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
