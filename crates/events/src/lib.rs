//! Events that survive the gap: the event catalogue, Standard Webhooks signing, the retry
//! schedule, the outbox dispatcher, and the signed offline export.
//!
//! The outbox rows themselves are written by the store, in the event's transaction; this crate
//! delivers them. It knows no HTTP server: the dispatcher reaches the network only through the
//! egress gate, and takes its time, storage and keys from a [`dispatcher::Deps`].

pub mod catalogue;
pub mod dispatcher;
pub mod export;
mod lanes;
pub mod schedule;
pub mod signing;

pub use dispatcher::{Deps, Dispatcher, DispatcherConfig, PassReport};
pub use schedule::RetrySchedule;

use portcullis_core::event::Event;
use serde_json::{Value, json};

/// The event object as the Events API, webhooks and export files carry it.
pub fn event_object(e: &Event) -> Value {
    json!({
        "id": e.id, "object": "event", "event": e.event, "sequence": e.seq,
        "environment_id": e.env_id, "organization_id": e.organization_id, "data": e.data,
        "created_at": e.created_at.to_rfc3339(),
    })
}
