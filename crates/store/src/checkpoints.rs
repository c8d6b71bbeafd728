//! Audit checkpoints: signed heads of an audit chain, kept beside it
//! (`portcullis_core::checkpoint`). Written outside any audit record's transaction, and never
//! changed: a checkpoint for a number that already has one is left alone.

use portcullis_core::Timestamp;
use portcullis_core::checkpoint::Checkpoint;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store};

fn checkpoint_from_row(r: &AnyRow) -> Result<Checkpoint> {
    Ok(Checkpoint {
        chain: r.try_get("chain")?,
        seq: r.try_get("seq")?,
        hash: r.try_get("hash")?,
        at: Timestamp(r.try_get("at")?),
        kid: r.try_get("kid")?,
        jws: r.try_get("jws")?,
    })
}

impl Store {
    /// Keeps `c`; `false` when its chain already has a checkpoint at that number (another node
    /// signed the same head first).
    pub async fn insert_checkpoint(&self, c: &Checkpoint) -> Result<bool> {
        let n = sqlx::query(
            "INSERT INTO audit_checkpoints (chain, seq, hash, at, kid, jws) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (chain, seq) DO NOTHING",
        )
        .bind(&c.chain)
        .bind(c.seq)
        .bind(&c.hash)
        .bind(c.at.millis())
        .bind(&c.kid)
        .bind(&c.jws)
        .execute(&self.write)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// The checkpoint of `chain` with the highest number, or the highest at or below `max_seq`.
    pub async fn latest_checkpoint(
        &self,
        chain: &str,
        max_seq: Option<i64>,
    ) -> Result<Option<Checkpoint>> {
        sqlx::query(
            "SELECT chain, seq, hash, at, kid, jws FROM audit_checkpoints \
             WHERE chain = $1 AND seq <= $2 ORDER BY seq DESC LIMIT 1",
        )
        .bind(chain)
        .bind(max_seq.unwrap_or(i64::MAX))
        .fetch_optional(self.reader())
        .await?
        .as_ref()
        .map(checkpoint_from_row)
        .transpose()
    }

    /// Checkpoints of `chain` numbered after `after_seq`, oldest first, at most `limit`.
    pub async fn checkpoints(
        &self,
        chain: &str,
        after_seq: i64,
        limit: Option<u32>,
    ) -> Result<Vec<Checkpoint>> {
        let rows = sqlx::query(
            "SELECT chain, seq, hash, at, kid, jws FROM audit_checkpoints \
             WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(chain)
        .bind(after_seq)
        .bind(limit.map_or(i64::MAX, i64::from))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(checkpoint_from_row).collect()
    }
}
