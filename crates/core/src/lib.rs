//! Portcullis domain types and rules.
//!
//! This crate does no I/O and owns no runtime: time comes in through [`Clock`], randomness through
//! [`Random`], and everything else is plain data with the rules that keep it valid (slugs, domains,
//! prefixed IDs, redacted secrets, typed events and audit records). Storage, crypto and HTTP crates
//! depend on it; it depends on none of them.

pub mod audit;
pub mod checkpoint;
pub mod clock;
pub mod credential;
pub mod event;
pub mod ids;
pub mod model;
pub mod oauth;
pub mod secret;
pub mod sso;
pub mod validate;
pub mod webhook;

pub use clock::{Clock, FakeClock, SystemClock, Timestamp};
pub use ids::{IdGen, Random};
pub use secret::Secret;
