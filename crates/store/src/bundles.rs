//! Bundle trust and history: the publisher keys an environment trusts, and the bundles applied
//! to it. A bundle's import row commits in the same transaction as its changes, and the highest
//! sequence applied is the floor below which every bundle is refused (rollback, replay).

use portcullis_core::Timestamp;
use portcullis_core::audit::NewAudit;
use portcullis_core::ids::EnvId;
use serde_json::{Value, json};
use sqlx::Row;

use crate::log::append_audit;
use crate::{Conn, Result, Store, StoreError};

impl Store {
    /// The trusted publisher keys of `env` as (key ID, public JWK), by key ID.
    pub async fn bundle_publishers(&self, env: &EnvId) -> Result<Vec<(String, Value)>> {
        let rows = sqlx::query(
            "SELECT key_id, jwk FROM bundle_publishers WHERE env_id = $1 ORDER BY key_id",
        )
        .bind(env.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let jwk: String = r.try_get("jwk")?;
                Ok((
                    r.try_get("key_id")?,
                    serde_json::from_str(&jwk).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                ))
            })
            .collect()
    }

    /// Replaces the trusted set with `keys` (key ID, JWK), audited with what was added and
    /// removed. No-op when the set is unchanged.
    pub async fn set_bundle_publishers_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        keys: &[(String, Value)],
    ) -> Result<()> {
        let before: Vec<String> = sqlx::query_scalar(
            "SELECT key_id FROM bundle_publishers WHERE env_id = $1 ORDER BY key_id",
        )
        .bind(env.as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut after: Vec<String> = keys.iter().map(|(k, _)| k.clone()).collect();
        after.sort();
        if before == after {
            return Ok(());
        }
        sqlx::query("DELETE FROM bundle_publishers WHERE env_id = $1")
            .bind(env.as_str())
            .execute(&mut *tx)
            .await?;
        for (id, jwk) in keys {
            sqlx::query(
                "INSERT INTO bundle_publishers (env_id, key_id, jwk, added_at) VALUES ($1, $2, $3, $4)",
            )
            .bind(env.as_str())
            .bind(id)
            .bind(jwk.to_string())
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        }
        let added: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
        let removed: Vec<&String> = before.iter().filter(|k| !after.contains(k)).collect();
        append_audit(
            tx,
            env.as_str(),
            now,
            NewAudit::success(
                actor,
                "bundle_publishers.replace",
                env.as_str(),
                json!({ "added": added, "removed": removed }),
            ),
        )
        .await?;
        Ok(())
    }

    pub async fn set_bundle_publishers(
        &self,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        keys: &[(String, Value)],
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        self.set_bundle_publishers_in(&mut tx, actor, now, env, keys)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The highest sequence applied to `env` (0 when none).
    pub async fn last_bundle_sequence(&self, env: &EnvId) -> Result<u64> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT MAX(sequence) FROM bundle_imports WHERE env_id = $1")
                .bind(env.as_str())
                .fetch_one(self.reader())
                .await?;
        Ok(u64::try_from(n.unwrap_or(0)).unwrap_or(0))
    }

    /// Records an applied bundle inside the applying transaction. The environment row is locked
    /// first, then the floor is read again: of two bundles applied at once, the second sees the
    /// first and is refused if it is not newer.
    pub async fn record_bundle_import_in(
        &self,
        tx: &mut Conn,
        env: &EnvId,
        sequence: u64,
        digest: &str,
        key_id: &str,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query("UPDATE environments SET updated_at = updated_at WHERE id = $1")
            .bind(env.as_str())
            .execute(&mut *tx)
            .await?;
        let last: Option<i64> =
            sqlx::query_scalar("SELECT MAX(sequence) FROM bundle_imports WHERE env_id = $1")
                .bind(env.as_str())
                .fetch_one(&mut *tx)
                .await?;
        let seq = i64::try_from(sequence)
            .map_err(|_| StoreError::conflict("bundle_sequence", "the sequence is too large"))?;
        if let Some(last) = last.filter(|l| *l >= seq) {
            return Err(StoreError::conflict(
                "bundle_sequence_not_newer",
                format!("sequence {sequence} is not above the last applied sequence {last}"),
            ));
        }
        sqlx::query(
            "INSERT INTO bundle_imports (env_id, sequence, digest, key_id, applied_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(env.as_str())
        .bind(seq)
        .bind(digest)
        .bind(key_id)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Revokes an environment API key inside the caller's transaction (a bundle's
    /// `revoke_api_keys`); a key already revoked stays as it was.
    pub async fn revoke_env_api_key_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        id: &str,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE api_keys SET revoked_at = $3 WHERE id = $1 AND env_id = $2 AND kind = 'environment' AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(env.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 1 {
            append_audit(
                tx,
                env.as_str(),
                now,
                NewAudit::success(actor, "api_key.revoke", id, json!({ "by": "config" })),
            )
            .await?;
        }
        Ok(n == 1)
    }

    /// Links one audit record into `env`'s chain inside the caller's transaction.
    pub async fn audit_in(
        &self,
        tx: &mut Conn,
        env: &EnvId,
        now: Timestamp,
        a: NewAudit,
    ) -> Result<()> {
        append_audit(tx, env.as_str(), now, a).await?;
        Ok(())
    }
}
