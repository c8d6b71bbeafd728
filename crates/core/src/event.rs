//! Typed events, written to an environment's log in the same transaction as the change they
//! describe. Names follow the WorkOS style (`resource.verb`).

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::{EnvId, EventId, OrgId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "environment.created")]
    EnvironmentCreated,
    #[serde(rename = "environment.updated")]
    EnvironmentUpdated,
    #[serde(rename = "organization.created")]
    OrganizationCreated,
    #[serde(rename = "organization.updated")]
    OrganizationUpdated,
    #[serde(rename = "organization.deleted")]
    OrganizationDeleted,
    #[serde(rename = "signing_key.rotated")]
    SigningKeyRotated,
    #[serde(rename = "client.created")]
    ClientCreated,
    #[serde(rename = "client.updated")]
    ClientUpdated,
    #[serde(rename = "client.deleted")]
    ClientDeleted,
    #[serde(rename = "client.secret_rotated")]
    ClientSecretRotated,
    #[serde(rename = "user.created")]
    UserCreated,
    #[serde(rename = "user.updated")]
    UserUpdated,
    #[serde(rename = "authentication.password_succeeded")]
    PasswordSucceeded,
    #[serde(rename = "authentication.password_failed")]
    PasswordFailed,
    #[serde(rename = "token.exchanged")]
    TokenExchanged,
    #[serde(rename = "token.refresh_reuse_detected")]
    RefreshReuseDetected,
    #[serde(rename = "token.code_reuse_detected")]
    CodeReuseDetected,
    #[serde(rename = "egress_policy.updated")]
    EgressPolicyUpdated,
    #[serde(rename = "egress.denied")]
    EgressDenied,
    #[serde(rename = "connection.created")]
    ConnectionCreated,
    #[serde(rename = "connection.updated")]
    ConnectionUpdated,
    #[serde(rename = "connection.activated")]
    ConnectionActivated,
    #[serde(rename = "connection.deactivated")]
    ConnectionDeactivated,
    #[serde(rename = "connection.deleted")]
    ConnectionDeleted,
    #[serde(rename = "authentication.sso_succeeded")]
    SsoSucceeded,
    #[serde(rename = "authentication.sso_failed")]
    SsoFailed,
    #[serde(rename = "webhook_endpoint.created")]
    WebhookEndpointCreated,
    #[serde(rename = "webhook_endpoint.updated")]
    WebhookEndpointUpdated,
    #[serde(rename = "webhook_endpoint.deleted")]
    WebhookEndpointDeleted,
    #[serde(rename = "webhook_endpoint.secret_rotated")]
    WebhookEndpointSecretRotated,
    #[serde(rename = "webhook_endpoint.failing")]
    WebhookEndpointFailing,
    #[serde(rename = "webhook_endpoint.recovered")]
    WebhookEndpointRecovered,
    #[serde(rename = "credential.rotated")]
    CredentialRotated,
    #[serde(rename = "credential.expired")]
    CredentialExpired,
}

impl EventType {
    pub const ALL: &'static [EventType] = &[
        Self::EnvironmentCreated,
        Self::EnvironmentUpdated,
        Self::OrganizationCreated,
        Self::OrganizationUpdated,
        Self::OrganizationDeleted,
        Self::SigningKeyRotated,
        Self::ClientCreated,
        Self::ClientUpdated,
        Self::ClientDeleted,
        Self::ClientSecretRotated,
        Self::UserCreated,
        Self::UserUpdated,
        Self::PasswordSucceeded,
        Self::PasswordFailed,
        Self::TokenExchanged,
        Self::RefreshReuseDetected,
        Self::CodeReuseDetected,
        Self::EgressPolicyUpdated,
        Self::EgressDenied,
        Self::ConnectionCreated,
        Self::ConnectionUpdated,
        Self::ConnectionActivated,
        Self::ConnectionDeactivated,
        Self::ConnectionDeleted,
        Self::SsoSucceeded,
        Self::SsoFailed,
        Self::WebhookEndpointCreated,
        Self::WebhookEndpointUpdated,
        Self::WebhookEndpointDeleted,
        Self::WebhookEndpointSecretRotated,
        Self::WebhookEndpointFailing,
        Self::WebhookEndpointRecovered,
        Self::CredentialRotated,
        Self::CredentialExpired,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EnvironmentCreated => "environment.created",
            Self::EnvironmentUpdated => "environment.updated",
            Self::OrganizationCreated => "organization.created",
            Self::OrganizationUpdated => "organization.updated",
            Self::OrganizationDeleted => "organization.deleted",
            Self::SigningKeyRotated => "signing_key.rotated",
            Self::ClientCreated => "client.created",
            Self::ClientUpdated => "client.updated",
            Self::ClientDeleted => "client.deleted",
            Self::ClientSecretRotated => "client.secret_rotated",
            Self::UserCreated => "user.created",
            Self::UserUpdated => "user.updated",
            Self::PasswordSucceeded => "authentication.password_succeeded",
            Self::PasswordFailed => "authentication.password_failed",
            Self::TokenExchanged => "token.exchanged",
            Self::RefreshReuseDetected => "token.refresh_reuse_detected",
            Self::CodeReuseDetected => "token.code_reuse_detected",
            Self::EgressPolicyUpdated => "egress_policy.updated",
            Self::EgressDenied => "egress.denied",
            Self::ConnectionCreated => "connection.created",
            Self::ConnectionUpdated => "connection.updated",
            Self::ConnectionActivated => "connection.activated",
            Self::ConnectionDeactivated => "connection.deactivated",
            Self::ConnectionDeleted => "connection.deleted",
            Self::SsoSucceeded => "authentication.sso_succeeded",
            Self::SsoFailed => "authentication.sso_failed",
            Self::WebhookEndpointCreated => "webhook_endpoint.created",
            Self::WebhookEndpointUpdated => "webhook_endpoint.updated",
            Self::WebhookEndpointDeleted => "webhook_endpoint.deleted",
            Self::WebhookEndpointSecretRotated => "webhook_endpoint.secret_rotated",
            Self::WebhookEndpointFailing => "webhook_endpoint.failing",
            Self::WebhookEndpointRecovered => "webhook_endpoint.recovered",
            Self::CredentialRotated => "credential.rotated",
            Self::CredentialExpired => "credential.expired",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|e| e.as_str() == s)
    }
}

/// An event about to be appended; the store assigns its number.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub id: EventId,
    pub kind: EventType,
    pub org_id: Option<OrgId>,
    pub data: serde_json::Value,
}

/// An event as stored: numbered per environment, immutable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: EventId,
    pub env_id: EnvId,
    pub seq: i64,
    pub event: String,
    pub organization_id: Option<OrgId>,
    pub data: serde_json::Value,
    pub created_at: Timestamp,
}
