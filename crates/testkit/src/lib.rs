//! Test support for Portcullis: a throwaway PostgreSQL cluster ([`pg`]), and helpers shared by the
//! integration tests of every crate.

pub mod pg;
#[cfg(feature = "server")]
pub mod server;
