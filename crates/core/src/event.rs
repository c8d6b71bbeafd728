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
}

impl EventType {
    pub const ALL: &'static [EventType] = &[
        Self::EnvironmentCreated,
        Self::EnvironmentUpdated,
        Self::OrganizationCreated,
        Self::OrganizationUpdated,
        Self::OrganizationDeleted,
        Self::SigningKeyRotated,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EnvironmentCreated => "environment.created",
            Self::EnvironmentUpdated => "environment.updated",
            Self::OrganizationCreated => "organization.created",
            Self::OrganizationUpdated => "organization.updated",
            Self::OrganizationDeleted => "organization.deleted",
            Self::SigningKeyRotated => "signing_key.rotated",
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
