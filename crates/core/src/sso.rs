//! Enterprise SSO: connections of organizations to their identity providers, and the normalised
//! profile a connection yields.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::{ConnectionId, EnvId, OrgId, ProfileId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionType {
    Saml,
    Oidc,
}

impl ConnectionType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Saml => "saml",
            Self::Oidc => "oidc",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "saml" => Some(Self::Saml),
            "oidc" => Some(Self::Oidc),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Draft,
    Active,
    Inactive,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Active => "active",
            Self::Inactive => "inactive",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "draft" => Some(Self::Draft),
            "active" => Some(Self::Active),
            "inactive" => Some(Self::Inactive),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Connection {
    pub id: ConnectionId,
    pub env_id: EnvId,
    pub org_id: OrgId,
    pub kind: ConnectionType,
    pub name: String,
    pub state: ConnectionState,
    /// Type-specific, non-secret configuration (IdP entity ID, certificates, endpoints, pinned keys).
    pub config: serde_json::Value,
    /// Secrets (SP private keys, upstream client secret), sealed under the master key.
    pub sealed_secrets: Option<Vec<u8>>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The normalised identity a connection yields. It is bound to its connection and organization:
/// the same email from another connection is another profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub id: ProfileId,
    pub env_id: EnvId,
    pub org_id: OrgId,
    pub connection_id: ConnectionId,
    pub idp_id: String,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub groups: Vec<String>,
    pub raw_attributes: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}
