//! Webhook endpoints and their deliveries: the domain side of the transactional outbox.
//!
//! An endpoint is a URL of one environment, the event types it wants (none listed: every type),
//! its signing secrets (sealed at rest; the previous one stays valid until it expires, so that a
//! receiver can roll over — Standard Webhooks, "Signature scheme"), and custom headers. Each event
//! written to the log gets one delivery per matching enabled endpoint, in the same transaction.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::event::EventType;
use crate::ids::{DeliveryId, EnvId, EventId, WebhookId};

/// At most this many event types in one endpoint's filter.
pub const MAX_FILTER_TYPES: usize = 100;
/// At most this many custom headers, each name ≤ 64 and value ≤ 1024 bytes.
pub const MAX_HEADERS: usize = 20;
/// The longest endpoint URL accepted.
pub const MAX_URL_LEN: usize = 2048;
/// The receiver's answer kept in an attempt's log entry.
pub const RESPONSE_SNIPPET_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointState {
    /// Deliveries succeed, or have not yet given up.
    Active,
    /// A delivery exhausted its retry schedule; the endpoint still receives (and retries) new
    /// deliveries and becomes active again at the first success.
    Failing,
}

impl EndpointState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Failing => "failing",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(Self::Active),
            "failing" => Some(Self::Failing),
            _ => None,
        }
    }
}

/// A webhook endpoint as stored (secrets sealed).
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookEndpoint {
    pub id: WebhookId,
    pub env_id: EnvId,
    pub url: String,
    pub description: String,
    /// Event types delivered; empty means every type.
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
    pub state: EndpointState,
    /// The current secret, sealed under the master key.
    pub sealed_secret: Vec<u8>,
    /// The secret before the last rotation, still signing until `previous_secret_expires_at`.
    pub sealed_previous_secret: Option<Vec<u8>>,
    pub previous_secret_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl WebhookEndpoint {
    /// Whether an event of `kind` goes to this endpoint.
    pub fn wants(&self, kind: &str) -> bool {
        filter_matches(&self.event_types, kind)
    }
}

/// An empty filter takes every event type; otherwise the type must be listed.
pub fn filter_matches(types: &[String], kind: &str) -> bool {
    types.is_empty() || types.iter().any(|t| t == kind)
}

/// Checks an event type filter: known types only, no duplicates, at most [`MAX_FILTER_TYPES`].
pub fn check_filter(types: &[String]) -> Result<(), String> {
    if types.len() > MAX_FILTER_TYPES {
        return Err(format!(
            "event_types lists at most {MAX_FILTER_TYPES} types, not {}",
            types.len()
        ));
    }
    for (i, t) in types.iter().enumerate() {
        if EventType::parse(t).is_none() {
            return Err(format!(
                "event_types: unknown event type {t:?} (see docs/events.md)"
            ));
        }
        if types[..i].contains(t) {
            return Err(format!("event_types lists {t:?} twice"));
        }
    }
    Ok(())
}

/// Headers the product sets itself, or that would change how the request is framed or routed.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-type",
    "content-length",
    "transfer-encoding",
    "connection",
    "user-agent",
    "te",
    "upgrade",
    "expect",
];

/// Checks custom headers: HTTP token names, visible-ASCII values, nothing reserved, bounded.
pub fn check_headers(headers: &[(String, String)]) -> Result<(), String> {
    if headers.len() > MAX_HEADERS {
        return Err(format!("at most {MAX_HEADERS} custom headers"));
    }
    for (i, (name, value)) in headers.iter().enumerate() {
        let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
        if name.is_empty() || name.len() > 64 || !name.bytes().all(token) {
            return Err(format!(
                "header name {name:?} is not a valid HTTP token (≤ 64)"
            ));
        }
        let lower = name.to_ascii_lowercase();
        if RESERVED_HEADERS.contains(&lower.as_str()) || lower.starts_with("webhook-") {
            return Err(format!(
                "header {name:?} is set by Portcullis and cannot be overridden"
            ));
        }
        if value.len() > 1024
            || !value
                .bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
        {
            return Err(format!(
                "header {name:?}: the value must be printable ASCII, at most 1024 bytes"
            ));
        }
        if headers[..i]
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return Err(format!("header {name:?} is given twice"));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its next attempt (or being attempted under a lease).
    Pending,
    Succeeded,
    /// The retry schedule is exhausted; a manual retry or a replay puts it back to pending.
    Failed,
}

impl DeliveryState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// One event's delivery to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: DeliveryId,
    pub env_id: EnvId,
    pub endpoint_id: WebhookId,
    pub event_id: EventId,
    pub event_seq: i64,
    pub event_type: String,
    pub state: DeliveryState,
    /// Attempts since the delivery was (re-)enqueued: the retry schedule's input.
    pub attempts: u32,
    pub next_attempt_at: Option<Timestamp>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub completed_at: Option<Timestamp>,
}

/// One attempt to deliver, as logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub delivery_id: DeliveryId,
    pub attempted_at: Timestamp,
    /// The node that made it.
    pub node: String,
    /// The HTTP status, when the receiver answered.
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// The first [`RESPONSE_SNIPPET_BYTES`] of the answer (lossy UTF-8).
    pub response: Option<String>,
    pub error: Option<String>,
    pub succeeded: bool,
}

/// Cuts `body` to the logged snippet, on a character boundary.
pub fn response_snippet(body: &[u8]) -> String {
    let cut = &body[..body.len().min(RESPONSE_SNIPPET_BYTES)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    while s.len() > RESPONSE_SNIPPET_BYTES {
        s.pop();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_headers_are_checked() {
        assert!(filter_matches(&[], "organization.created"));
        assert!(!filter_matches(
            &["user.created".into()],
            "organization.created"
        ));
        assert!(check_filter(&["organization.created".into()]).is_ok());
        assert!(check_filter(&["organization.exploded".into()]).is_err());
        assert!(check_filter(&["user.created".into(), "user.created".into()]).is_err());
        assert!(check_headers(&[("X-Tenant".into(), "a".into())]).is_ok());
        assert!(check_headers(&[("webhook-id".into(), "x".into())]).is_err());
        assert!(check_headers(&[("Bad Name".into(), "x".into())]).is_err());
        assert!(check_headers(&[("X-A".into(), "line\nbreak".into())]).is_err());
        assert_eq!(
            response_snippet(&[b'a'; 5000]).len(),
            RESPONSE_SNIPPET_BYTES
        );
        assert_eq!(response_snippet("é".repeat(600).as_bytes()).len(), 1024);
    }
}
