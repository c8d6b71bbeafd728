//! Signed checkpoints of an audit chain's head: what truncating the tail cannot hide.
//!
//! The hash chain ([`crate::audit`]) names an edited, deleted or reordered record, and a tail
//! removed behind the stored head's back. Someone who can write to the database can still delete
//! the last records *and* rewind the head to the last record kept: what remains is a consistent
//! chain. A checkpoint closes that gap. Every so often the head (number and hash) is signed with
//! the environment's signing key as a compact JWS (RFC 7515 §7.1) and kept beside the chain; a
//! chain whose records end below a checkpoint lost its tail, and a chain whose record at a
//! checkpoint's number has another hash was rewritten after it.
//!
//! Limits, by design (docs/decisions/0009-audit-checkpoints.md): records written after the latest
//! checkpoint are covered by the next one only; a checkpoint deleted together with the tail proves
//! nothing, which is why exports carry the latest checkpoints out of the network; and a checkpoint
//! is not itself an audit record, since writing one would move the head it attests.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::{AuditRecord, BrokenLink, ChainHead, GENESIS, verify_segment};
use crate::clock::Timestamp;

/// The JWS `typ` of a checkpoint: no other token we sign is accepted as one.
pub const CHECKPOINT_TYP: &str = "audit-checkpoint+jwt";

/// The signed statement: "chain `chain` of environment `environment` (issuer `iss`) had the
/// head `seq`/`hash` at `at`".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    pub iss: String,
    pub environment: String,
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    /// Milliseconds since the Unix epoch.
    pub at: Timestamp,
}

/// A stored checkpoint: the JWS, and a copy of its payload for lookups. Only the JWS is trusted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub chain: String,
    pub seq: i64,
    pub hash: String,
    pub at: Timestamp,
    pub kid: String,
    pub jws: String,
}

/// What to sign now: `Ok(None)` when the head has not moved since the latest checkpoint (or the
/// chain is empty), `Ok(Some(head))` to sign that head, `Err` when the chain since the latest
/// checkpoint does not verify, in which case nothing may be signed: a checkpoint over a truncated
/// or rewritten chain would launder it.
///
/// `records_since` are the records after the latest checkpoint (the whole chain without one).
pub fn plan_checkpoint(
    chain: &str,
    latest: Option<&Checkpoint>,
    head: Option<&ChainHead>,
    records_since: &[AuditRecord],
    hash_hex: &dyn Fn(&[u8]) -> String,
) -> Result<Option<ChainHead>, BrokenLink> {
    let start = latest.map_or_else(
        || ChainHead {
            seq: 0,
            hash: GENESIS.to_owned(),
        },
        |c| ChainHead {
            seq: c.seq,
            hash: c.hash.clone(),
        },
    );
    let Some(head) = head else {
        return match latest {
            Some(c) => Err(truncated(c, 0)),
            None => Ok(None),
        };
    };
    if let Some(c) = latest {
        if head.seq < c.seq {
            return Err(truncated(c, head.seq));
        }
        if head.seq == c.seq {
            return if head.hash == c.hash {
                Ok(None)
            } else {
                Err(rewritten(c))
            };
        }
    }
    if head.seq == 0 {
        return Ok(None);
    }
    // The record after the checkpoint must point at the checkpointed hash, or the chain was
    // rewritten from the checkpoint down.
    if let (Some(c), Some(first)) = (latest, records_since.first())
        && first.seq == c.seq + 1
        && first.prev_hash != c.hash
    {
        return Err(rewritten(c));
    }
    match verify_segment(chain, records_since, &start, Some(head), hash_hex).broken {
        Some(b) => Err(b),
        None => Ok(Some(head.clone())),
    }
}

/// Why a checkpoint's JWS is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointInvalid {
    #[error(
        "its signature does not verify with the environment's keys (forged, or signed by another key)"
    )]
    Signature,
    #[error("it is not an audit checkpoint (typ {0:?})")]
    Type(String),
    #[error("its payload is not a checkpoint: {0}")]
    Payload(String),
    #[error("it was signed for chain {0:?}, not this one")]
    OtherChain(String),
}

/// Opens a checkpoint's JWS with `open` (which returns the protected header and payload when the
/// signature verifies with one of the trusted keys) and checks that it attests `chain`.
pub fn open_checkpoint(
    jws: &str,
    chain: &str,
    open: &dyn Fn(&str) -> Option<(Value, Value)>,
) -> Result<CheckpointClaims, CheckpointInvalid> {
    let (header, payload) = open(jws).ok_or(CheckpointInvalid::Signature)?;
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
    if typ != CHECKPOINT_TYP {
        return Err(CheckpointInvalid::Type(typ.to_owned()));
    }
    let claims: CheckpointClaims =
        serde_json::from_value(payload).map_err(|e| CheckpointInvalid::Payload(e.to_string()))?;
    if claims.chain != chain {
        return Err(CheckpointInvalid::OtherChain(claims.chain));
    }
    Ok(claims)
}

/// Checks a chain against the checkpoints signed over it. `head` is where the chain's records
/// end (verified separately), `record_hash(n)` the hash of record n as stored (or as exported),
/// `None` when it is absent. The first problem is returned; the number is the first record
/// missing or rewritten.
pub fn check_against_checkpoint(
    c: &CheckpointClaims,
    head: &ChainHead,
    record_hash: &dyn Fn(i64) -> Option<String>,
) -> Result<(), BrokenLink> {
    let at = c.at.to_rfc3339();
    if c.seq > head.seq {
        let missing = if c.seq == head.seq + 1 {
            format!("record {} is missing", c.seq)
        } else {
            format!("records {} to {} are missing", head.seq + 1, c.seq)
        };
        return Err(BrokenLink {
            seq: head.seq + 1,
            reason: format!(
                "checkpoint {} (signed {at}) covers record {}, but the chain ends at record {}: {missing} (the tail was truncated)",
                c.seq, c.seq, head.seq
            ),
        });
    }
    match record_hash(c.seq) {
        Some(h) if h == c.hash => Ok(()),
        _ => Err(BrokenLink {
            seq: c.seq,
            reason: format!(
                "record {} does not match checkpoint {} (signed {at}): the chain was rewritten after the checkpoint",
                c.seq, c.seq
            ),
        }),
    }
}

fn truncated(c: &Checkpoint, head: i64) -> BrokenLink {
    BrokenLink {
        seq: head + 1,
        reason: format!(
            "the chain head is record {head}, below checkpoint {} (signed {}): the tail was truncated",
            c.seq,
            c.at.to_rfc3339()
        ),
    }
}

fn rewritten(c: &Checkpoint) -> BrokenLink {
    BrokenLink {
        seq: c.seq,
        reason: format!(
            "record {} does not match checkpoint {} (signed {}): the chain was rewritten after the checkpoint",
            c.seq,
            c.seq,
            c.at.to_rfc3339()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Outcome;

    /// Not SHA-256, but a function of every byte: enough to link records in a test.
    fn hash(b: &[u8]) -> String {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for x in b {
            h = (h ^ u64::from(*x)).wrapping_mul(0x100_0000_01b3);
        }
        format!("{h:016x}")
    }

    fn chain(n: i64) -> Vec<AuditRecord> {
        chain_with(n, |_| "{}".into())
    }

    /// A well-linked chain of `n` records whose details come from `detail(seq)`.
    fn chain_with(n: i64, detail: impl Fn(i64) -> String) -> Vec<AuditRecord> {
        let mut prev = GENESIS.to_owned();
        (1..=n)
            .map(|seq| {
                let mut r = AuditRecord {
                    chain: "env_1".into(),
                    seq,
                    at: Timestamp(seq),
                    actor: "t".into(),
                    action: "a".into(),
                    target: "x".into(),
                    outcome: Outcome::Success,
                    detail: detail(seq),
                    prev_hash: prev.clone(),
                    hash: String::new(),
                };
                r.hash = hash(&r.canonical_bytes());
                prev.clone_from(&r.hash);
                r
            })
            .collect()
    }

    fn head_of(r: &[AuditRecord]) -> ChainHead {
        r.last().map_or(
            ChainHead {
                seq: 0,
                hash: GENESIS.into(),
            },
            |r| ChainHead {
                seq: r.seq,
                hash: r.hash.clone(),
            },
        )
    }

    fn checkpoint_at(r: &AuditRecord) -> Checkpoint {
        Checkpoint {
            chain: r.chain.clone(),
            seq: r.seq,
            hash: r.hash.clone(),
            at: Timestamp(0),
            kid: "k".into(),
            jws: String::new(),
        }
    }

    #[test]
    fn signs_only_a_head_that_moved_and_verifies() {
        let records = chain(5);
        let head = head_of(&records);
        assert_eq!(
            plan_checkpoint("env_1", None, Some(&head), &records, &hash),
            Ok(Some(head.clone()))
        );
        let cp = checkpoint_at(&records[4]);
        assert_eq!(
            plan_checkpoint("env_1", Some(&cp), Some(&head), &[], &hash),
            Ok(None)
        );
        let cp3 = checkpoint_at(&records[2]);
        assert_eq!(
            plan_checkpoint("env_1", Some(&cp3), Some(&head), &records[3..], &hash),
            Ok(Some(head))
        );
        assert_eq!(plan_checkpoint("env_1", None, None, &[], &hash), Ok(None));
    }

    #[test]
    fn refuses_to_sign_a_rewound_or_rewritten_head() {
        let records = chain(5);
        let cp = checkpoint_at(&records[4]);
        let rewound = head_of(&records[..3]);
        let e = plan_checkpoint("env_1", Some(&cp), Some(&rewound), &[], &hash).unwrap_err();
        assert_eq!(e.seq, 4);
        assert!(e.reason.contains("below checkpoint 5"), "{}", e.reason);
        // Truncated to 3, then two new records appended: the head is back at 5 with another hash.
        let other = chain_with(5, |seq| {
            if seq > 3 {
                "{\"new\":1}".into()
            } else {
                "{}".into()
            }
        });
        let e = plan_checkpoint("env_1", Some(&cp), Some(&head_of(&other)), &[], &hash);
        assert_eq!(e.unwrap_err().seq, 5);
        // Truncated to 2 below a checkpoint at 3, then grown past it: the first record after the
        // checkpoint does not point at the checkpointed hash.
        let cp3 = checkpoint_at(&records[2]);
        let grown = chain_with(6, |seq| {
            if seq > 2 {
                "{\"new\":1}".into()
            } else {
                "{}".into()
            }
        });
        let e = plan_checkpoint(
            "env_1",
            Some(&cp3),
            Some(&head_of(&grown)),
            &grown[3..],
            &hash,
        );
        let e = e.unwrap_err();
        assert_eq!(e.seq, 3);
        assert!(e.reason.contains("rewritten"), "{}", e.reason);
        let mut edited = records.clone();
        edited[3].detail = "{\"x\":1}".into();
        let e = plan_checkpoint(
            "env_1",
            Some(&cp3),
            Some(&head_of(&records)),
            &edited[3..],
            &hash,
        );
        assert_eq!(e.unwrap_err().seq, 4);
    }

    #[test]
    fn a_chain_ending_below_a_checkpoint_names_the_missing_records() {
        let records = chain(7);
        let c = CheckpointClaims {
            iss: "i".into(),
            environment: "env_1".into(),
            chain: "env_1".into(),
            seq: 7,
            hash: records[6].hash.clone(),
            at: Timestamp(1_800_000_000_000),
        };
        let lookup = |n: i64| records.get(n as usize - 1).map(|r| r.hash.clone());
        assert_eq!(
            check_against_checkpoint(&c, &head_of(&records), &lookup),
            Ok(())
        );
        let e = check_against_checkpoint(&c, &head_of(&records[..4]), &lookup).unwrap_err();
        assert_eq!(e.seq, 5);
        assert_eq!(
            e.reason,
            "checkpoint 7 (signed 2027-01-15T08:00:00.000Z) covers record 7, but the chain ends at record 4: records 5 to 7 are missing (the tail was truncated)"
        );
        let e = check_against_checkpoint(&c, &head_of(&records[..6]), &lookup).unwrap_err();
        assert!(e.reason.contains(": record 7 is missing"), "{}", e.reason);
        let e = check_against_checkpoint(&c, &head_of(&records), &|_| Some("x".into()));
        assert_eq!(e.unwrap_err().seq, 7);
    }
}
