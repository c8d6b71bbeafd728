//! Audit checkpoints in the server: signing the head of an environment's audit chain with the
//! environment's active key (every `audit_checkpoint_interval_seconds`, and on demand), and
//! checking the stored checkpoints when a chain is verified. The rules are
//! `portcullis_core::checkpoint`'s; this module brings the store and the key ring to them.
//!
//! Only environment chains are checkpointed: the global chain has no signing key of its own, and
//! signing it with some environment's key would make that environment's key attest actions above
//! it (docs/decisions/0009-audit-checkpoints.md).

use std::collections::HashMap;
use std::time::Duration;

use portcullis_core::Timestamp;
use portcullis_core::audit::{AuditRecord, BrokenLink, ChainHead, GENESIS};
use portcullis_core::checkpoint::{
    CHECKPOINT_TYP, Checkpoint, CheckpointClaims, check_against_checkpoint, open_checkpoint,
    plan_checkpoint,
};
use portcullis_core::model::Environment;
use portcullis_crypto::jws::verify_with_key;
use portcullis_crypto::sha256_hex;
use portcullis_store::{Store, StoreError};
use serde_json::Value;

use crate::App;
use crate::keys::{KeyRing, KeyRingError};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyRingError),
    /// The chain since the latest checkpoint does not verify: signing its head would launder it.
    #[error("the chain is broken at record {}: {} (no checkpoint written)", .0.seq, .0.reason)]
    Broken(BrokenLink),
    #[error("signing the checkpoint failed: {0}")]
    Sign(String),
}

/// What a checkpoint request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// The head moved: this checkpoint is new.
    Created(Checkpoint),
    /// The head has not moved since this checkpoint (none: the chain is empty).
    Unchanged(Option<Checkpoint>),
}

/// Signs the head of `env`'s chain at `now` if it moved since the latest checkpoint and the
/// records since that checkpoint verify.
pub async fn checkpoint_environment(
    store: &Store,
    keys: &KeyRing,
    env: &Environment,
    now: Timestamp,
) -> Result<Written, CheckpointError> {
    let chain = env.id.as_str();
    let latest = store.latest_checkpoint(chain, None).await?;
    let head = store.audit_head(chain).await?;
    let since = latest.as_ref().map_or(0, |c| c.seq);
    let records = store.audit_records(chain, since, None).await?;
    let plan = plan_checkpoint(chain, latest.as_ref(), head.as_ref(), &records, &|b| {
        sha256_hex(b)
    });
    let head = match plan {
        Ok(Some(head)) => head,
        Ok(None) => return Ok(Written::Unchanged(latest)),
        Err(broken) => return Err(CheckpointError::Broken(broken)),
    };
    let claims = CheckpointClaims {
        iss: env.issuer.clone(),
        environment: env.id.to_string(),
        chain: chain.to_owned(),
        seq: head.seq,
        hash: head.hash,
        at: now,
    };
    let signer = keys.signer(&env.id, now).await?;
    let payload =
        serde_json::to_value(&claims).map_err(|e| CheckpointError::Sign(e.to_string()))?;
    let jws = signer
        .sign_compact(Some(CHECKPOINT_TYP), &payload)
        .map_err(|e| CheckpointError::Sign(e.to_string()))?;
    let c = Checkpoint {
        chain: claims.chain,
        seq: claims.seq,
        hash: claims.hash,
        at: now,
        kid: signer.kid().to_owned(),
        jws,
    };
    if store.insert_checkpoint(&c).await? {
        // The log is a second copy outside the database: deleting the row does not erase it.
        tracing::info!(chain, seq = c.seq, hash = %c.hash, kid = %c.kid, jws = %c.jws, "audit checkpoint written");
        Ok(Written::Created(c))
    } else {
        // Another node signed this head first.
        Ok(Written::Unchanged(
            store.latest_checkpoint(chain, Some(c.seq)).await?,
        ))
    }
}

/// One pass of the periodic task: checkpoints every environment whose head moved. A broken
/// chain does not stop the others; each outcome is returned with its environment's slug.
pub async fn checkpoint_all(
    store: &Store,
    keys: &KeyRing,
    now: Timestamp,
) -> Result<Vec<(String, Result<Written, CheckpointError>)>, StoreError> {
    let mut out = Vec::new();
    for env in store.list_environments().await? {
        let r = checkpoint_environment(store, keys, &env, now).await;
        out.push((env.slug, r));
    }
    Ok(out)
}

/// Runs the checkpoint task: a pass at start, then every `interval`, until `stop` changes.
pub async fn run_checkpointer(
    app: App,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match checkpoint_all(&app.store, &app.keys, app.now()).await {
            Ok(outcomes) => {
                for (env, r) in outcomes {
                    if let Err(e) = r {
                        tracing::warn!(env, error = %e, "audit checkpoint refused; run `portcullis audit verify --env {env}`");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "audit checkpoint pass failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Opens a compact JWS with the key of `keys` its header names (`kid`): the header and payload
/// when the signature verifies. The algorithm comes from the key, never from the header.
pub fn open_with_keys(keys: &[Value], jws: &str) -> Option<(Value, Value)> {
    keys.iter().find_map(|k| {
        let (header, payload) = verify_with_key(k, jws)?;
        (header.get("kid").is_some() && header.get("kid") == k.get("kid"))
            .then_some((header, payload))
    })
}

/// The stored checkpoints of a chain, checked against its records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointReport {
    /// How many checkpoints verified before the first problem (all of them without one).
    pub verified: usize,
    pub latest: Option<Checkpoint>,
    pub broken: Option<BrokenLink>,
}

/// Checks every stored checkpoint of `env`'s chain, oldest first: (1) its signature verifies
/// with one of the environment's keys (any state: a retired key signed earlier checkpoints),
/// (2) it is a checkpoint of this chain and its row is a faithful copy of its payload, (3) the
/// record at its number exists and has its hash. `records` are the chain's records as stored and
/// `head` its stored head.
pub async fn check_stored(
    store: &Store,
    keys: &KeyRing,
    env: &Environment,
    records: &[AuditRecord],
    head: Option<&ChainHead>,
    now: Timestamp,
) -> Result<CheckpointReport, CheckpointError> {
    let chain = env.id.as_str();
    let stored = store.checkpoints(chain, 0, None).await?;
    let jwks: Vec<Value> = keys
        .env_keys(&env.id, now)
        .await?
        .infos
        .iter()
        .map(|k| k.public_jwk.clone())
        .collect();
    let by_seq: HashMap<i64, &str> = records.iter().map(|r| (r.seq, r.hash.as_str())).collect();
    let genesis = ChainHead {
        seq: 0,
        hash: GENESIS.to_owned(),
    };
    let head = head.unwrap_or(&genesis);
    let check = |c: &Checkpoint| -> Result<CheckpointClaims, BrokenLink> {
        let named = |reason: String| BrokenLink { seq: c.seq, reason };
        let claims = open_checkpoint(&c.jws, chain, &|j| open_with_keys(&jwks, j))
            .map_err(|e| named(format!("checkpoint {}: {e}", c.seq)))?;
        if claims.environment != env.id.as_str() {
            return Err(named(format!(
                "checkpoint {}: signed for environment {}, not this one",
                c.seq, claims.environment
            )));
        }
        if claims.seq != c.seq || claims.hash != c.hash || claims.at != c.at {
            return Err(named(format!(
                "checkpoint {}: the stored row does not match its signed payload (record {} with hash {})",
                c.seq, claims.seq, claims.hash
            )));
        }
        Ok(claims)
    };
    let mut verified = 0;
    let mut truncated = None;
    for c in &stored {
        let claims = match check(c) {
            Ok(claims) => claims,
            Err(b) => return Ok(report(verified, &stored, Some(b))),
        };
        let found =
            check_against_checkpoint(&claims, head, &|n| by_seq.get(&n).map(|h| (*h).to_owned()));
        match found {
            Ok(()) => verified += 1,
            // Beyond the head: keep looking, so that the report names the latest checkpoint
            // and the whole range known to be missing.
            Err(b) if claims.seq > head.seq => truncated = Some(b),
            Err(b) => return Ok(report(verified, &stored, Some(b))),
        }
    }
    Ok(report(verified, &stored, truncated))
}

fn report(verified: usize, stored: &[Checkpoint], broken: Option<BrokenLink>) -> CheckpointReport {
    CheckpointReport {
        verified,
        latest: stored.last().cloned(),
        broken,
    }
}

/// The checkpoints an export of records `(start, head]` carries: the latest one within that
/// range, and any beyond the head (there are none unless the tail was truncated: carried out, they
/// show it). And the JWKS the export carries: the published keys, plus any key that signed one of
/// those checkpoints and is no longer published (retired long ago).
pub async fn for_export(
    store: &Store,
    keys: &KeyRing,
    env: &Environment,
    start: i64,
    head: i64,
    now: Timestamp,
) -> Result<(Vec<Checkpoint>, Value), CheckpointError> {
    let chain = env.id.as_str();
    let mut carried: Vec<Checkpoint> = store
        .latest_checkpoint(chain, Some(head))
        .await?
        .filter(|c| c.seq > start)
        .into_iter()
        .collect();
    carried.extend(store.checkpoints(chain, head, None).await?);
    let mut jwks = keys.jwks(env, now).await?;
    let signers: Vec<Value> = keys
        .env_keys(&env.id, now)
        .await?
        .infos
        .iter()
        .filter(|k| carried.iter().any(|c| c.kid == k.id.as_str()))
        .map(|k| k.public_jwk.clone())
        .collect();
    if let Some(published) = jwks["keys"].as_array_mut() {
        for k in signers {
            if !published.iter().any(|p| p["kid"] == k["kid"]) {
                published.push(k);
            }
        }
    }
    Ok((carried, jwks))
}
