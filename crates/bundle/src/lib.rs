//! Carrying configuration across the gap.
//!
//! - [`config`]: the declarative file format (TOML, versioned, unknown keys refused) that
//!   describes an environment's desired state, and its structural checks.
//! - [`plan`]: the vocabulary of a plan (what `plan` shows and `apply` does), shared by the server
//!   that computes it and the CLI that prints it.
//! - [`bundle`]: a signed file (tar + zstd) holding a manifest in a DSSE envelope and the config
//!   payload, bound to one environment and numbered against rollback; created offline, verified
//!   step by step with a named refusal for each way it can be wrong.
//! - [`publisher`]: bundle-publisher key files (PKCS#8 PEM) and their public JWKs.

pub mod bundle;
pub mod config;
pub mod dsse;
pub mod plan;
pub mod publisher;

pub use bundle::{BundleError, Manifest, Verified};
pub use config::{ConfigError, EnvConfig};
pub use plan::{Change, Op, Plan};
