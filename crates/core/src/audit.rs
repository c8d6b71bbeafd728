//! The audit chain: one append-only, hash-linked record per administrative or security-relevant
//! action, per environment (plus one `global` chain for actions above environments).
//!
//! Each record carries the SHA-256 of its predecessor; its own hash covers its canonical bytes and
//! that link. Editing, deleting or reordering any stored record therefore breaks the chain at that
//! record, and [`verify_chain`] names the first broken link. Deleting the tail is caught against
//! the chain head, which the store keeps beside the records.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// The chain key of actions that belong to no environment.
pub const GLOBAL_CHAIN: &str = "global";
/// The predecessor hash of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Success,
    Failure,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            _ => None,
        }
    }
}

/// Who did it: `admin_key:key_…`, `cli`, `system`, `bootstrap`.
pub type Actor = String;

/// An audit entry before it is linked into a chain.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAudit {
    pub actor: Actor,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    /// Serialized JSON object with the action's details; never a secret.
    pub detail: serde_json::Value,
}

impl NewAudit {
    pub fn success(actor: &str, action: &str, target: &str, detail: serde_json::Value) -> Self {
        Self {
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.to_owned(),
            outcome: Outcome::Success,
            detail,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub chain: String,
    pub seq: i64,
    pub at: Timestamp,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub outcome: Outcome,
    /// The detail JSON exactly as hashed.
    pub detail: String,
    pub prev_hash: String,
    pub hash: String,
}

impl AuditRecord {
    /// The bytes the hash covers: every field but the hash, in a fixed order, length-prefixed so
    /// that no two different records share an encoding.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let fields: [&[u8]; 8] = [
            self.chain.as_bytes(),
            &self.seq.to_be_bytes(),
            &self.at.millis().to_be_bytes(),
            self.actor.as_bytes(),
            self.action.as_bytes(),
            self.target.as_bytes(),
            self.outcome.as_str().as_bytes(),
            self.detail.as_bytes(),
        ];
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"portcullis-audit-v1\n");
        out.extend_from_slice(self.prev_hash.as_bytes());
        for f in fields {
            out.extend_from_slice(&(f.len() as u64).to_be_bytes());
            out.extend_from_slice(f);
        }
        out
    }
}

/// Where a chain first breaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BrokenLink {
    /// The sequence number expected at the break.
    pub seq: i64,
    pub reason: String,
}

/// The outcome of verifying one chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainReport {
    pub chain: String,
    pub records: usize,
    pub head_hash: String,
    pub broken: Option<BrokenLink>,
}

/// The stored head of a chain: the last sequence number and hash written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
}

/// Recomputes a chain. `records` are in storage order (by seq); `hash_hex` is SHA-256 as hex.
/// Checks, in order, for each record: its number follows its predecessor's, it points at its
/// predecessor's hash, and its own hash matches its content. Finally the last record must be the
/// stored head, or the tail was removed.
pub fn verify_chain(
    chain: &str,
    records: &[AuditRecord],
    head: Option<&ChainHead>,
    hash_hex: &dyn Fn(&[u8]) -> String,
) -> ChainReport {
    verify_segment(
        chain,
        records,
        &ChainHead {
            seq: 0,
            hash: GENESIS.to_owned(),
        },
        head,
        hash_hex,
    )
}

/// Verifies the part of a chain after `start` (the record before the segment, or seq 0 and
/// [`GENESIS`] for a whole chain): an exported tail is checked from the link it continues.
pub fn verify_segment(
    chain: &str,
    records: &[AuditRecord],
    start: &ChainHead,
    head: Option<&ChainHead>,
    hash_hex: &dyn Fn(&[u8]) -> String,
) -> ChainReport {
    let mut prev_hash = start.hash.clone();
    let mut expected = start.seq + 1;
    let broken = |seq: i64, reason: String| Some(BrokenLink { seq, reason });
    for r in records {
        let problem = if r.chain != chain {
            broken(
                expected,
                format!("record {} belongs to chain {:?}", r.seq, r.chain),
            )
        } else if r.seq != expected {
            broken(
                expected,
                format!("expected record {expected}, found record {}", r.seq),
            )
        } else if r.prev_hash != prev_hash {
            broken(
                expected,
                format!("record {expected} does not point at its predecessor's hash"),
            )
        } else if hash_hex(&r.canonical_bytes()) != r.hash {
            broken(
                expected,
                format!("record {expected} was altered: its hash does not match"),
            )
        } else {
            None
        };
        if problem.is_some() {
            return report(chain, records.len(), &prev_hash, problem);
        }
        prev_hash.clone_from(&r.hash);
        expected += 1;
    }
    let tail = match head {
        Some(h) if h.seq != expected - 1 || h.hash != prev_hash => broken(
            expected.min(h.seq + 1).max(1),
            format!(
                "the chain head is record {} but the stored records end at {}: the tail was removed or replaced",
                h.seq,
                expected - 1
            ),
        ),
        _ => None,
    };
    report(chain, records.len(), &prev_hash, tail)
}

fn report(chain: &str, n: usize, head: &str, broken: Option<BrokenLink>) -> ChainReport {
    ChainReport {
        chain: chain.to_owned(),
        records: n,
        head_hash: head.to_owned(),
        broken,
    }
}
