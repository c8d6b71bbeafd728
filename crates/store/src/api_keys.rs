//! Admin and environment API keys, stored only as the SHA-256 digest of the secret.

use portcullis_core::Timestamp;
use portcullis_core::audit::{GLOBAL_CHAIN, NewAudit};
use portcullis_core::ids::{ApiKeyId, EnvId};
use portcullis_core::model::{ApiKey, ApiKeyKind};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::log::append_audit;
use crate::{Conn, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub kind: ApiKeyKind,
    pub env_id: Option<EnvId>,
    pub name: String,
    pub digest: String,
    /// Refused from then on; `None`: no expiry.
    pub expires_at: Option<Timestamp>,
}

/// `last_used_at` is written at most this often per key, so that authenticating a request is a
/// read, not a write, on the hot path.
const LAST_USED_RESOLUTION_MS: i64 = 60_000;

pub(crate) const COLUMNS: &str =
    "id, kind, env_id, name, created_at, last_used_at, revoked_at, expires_at, replaced_by";

pub(crate) fn key_from_row(r: &AnyRow) -> Result<ApiKey> {
    let kind: String = r.try_get("kind")?;
    Ok(ApiKey {
        id: ApiKeyId::from_stored(r.try_get("id")?),
        kind: ApiKeyKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown key kind {kind:?}")))?,
        env_id: r
            .try_get::<Option<String>, _>("env_id")?
            .map(EnvId::from_stored),
        name: r.try_get("name")?,
        created_at: Timestamp(r.try_get("created_at")?),
        last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(Timestamp),
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
        expires_at: r.try_get::<Option<i64>, _>("expires_at")?.map(Timestamp),
        replaced_by: r
            .try_get::<Option<String>, _>("replaced_by")?
            .map(ApiKeyId::from_stored),
    })
}

pub(crate) fn chain_of(env: Option<&EnvId>) -> &str {
    env.map_or(GLOBAL_CHAIN, |e| e.as_str())
}

pub(crate) async fn insert_api_key(
    conn: &mut Conn,
    now: Timestamp,
    new: NewApiKey,
) -> Result<ApiKey> {
    sqlx::query(
        "INSERT INTO api_keys (id, kind, env_id, name, digest, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(new.id.as_str())
    .bind(new.kind.as_str())
    .bind(new.env_id.as_ref().map(|e| e.as_str().to_owned()))
    .bind(&new.name)
    .bind(&new.digest)
    .bind(now.millis())
    .bind(new.expires_at.map(Timestamp::millis))
    .execute(&mut *conn)
    .await?;
    Ok(ApiKey {
        id: new.id,
        kind: new.kind,
        env_id: new.env_id,
        name: new.name,
        created_at: now,
        last_used_at: None,
        revoked_at: None,
        expires_at: new.expires_at,
        replaced_by: None,
    })
}

impl Store {
    pub async fn create_api_key(
        &self,
        actor: &str,
        now: Timestamp,
        new: NewApiKey,
    ) -> Result<ApiKey> {
        let mut tx = self.begin().await?;
        let key = insert_api_key(&mut tx, now, new).await?;
        let detail = json!({
            "kind": key.kind, "name": key.name, "environment_id": key.env_id,
            "expires_at": key.expires_at.map(Timestamp::to_rfc3339),
        });
        append_audit(
            &mut tx,
            chain_of(key.env_id.as_ref()),
            now,
            NewAudit::success(actor, "api_key.create", key.id.as_str(), detail),
        )
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Keys visible to a caller: all (`env = None`) or those of one environment.
    pub async fn list_api_keys(&self, env: Option<&EnvId>) -> Result<Vec<ApiKey>> {
        let rows = match env {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM api_keys ORDER BY id"
                )))
                .fetch_all(self.reader())
                .await?
            }
            Some(e) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM api_keys WHERE env_id = $1 ORDER BY id"
                )))
                .bind(e.as_str())
                .fetch_all(self.reader())
                .await?
            }
        };
        rows.iter().map(key_from_row).collect()
    }

    pub async fn get_api_key(&self, id: &ApiKeyId) -> Result<ApiKey> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1"
        )))
        .bind(id.as_str())
        .fetch_optional(self.reader())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("API key {id}")))?;
        key_from_row(&row)
    }

    /// Revokes a key now. Revoking twice is a no-op that keeps the first time.
    pub async fn revoke_api_key(
        &self,
        actor: &str,
        now: Timestamp,
        id: &ApiKeyId,
    ) -> Result<ApiKey> {
        let key = self.get_api_key(id).await?;
        if key.revoked_at.is_some() {
            return Ok(key);
        }
        let mut tx = self.begin().await?;
        if key.kind == ApiKeyKind::Admin && key.env_id.is_none() {
            // The last active global admin key is never revoked: on a site nobody can reach from
            // outside, that would lock every operator out. Counted inside the transaction (rows
            // locked on PostgreSQL; SQLite has one writer) so two concurrent revocations of the
            // last two keys cannot both pass.
            let lock = if self.backend == crate::Backend::Postgres {
                " FOR UPDATE"
            } else {
                ""
            };
            let active: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                "SELECT id FROM api_keys WHERE kind = 'admin' AND env_id IS NULL AND revoked_at IS NULL{lock}"
            )))
            .fetch_all(&mut *tx)
            .await?;
            if active.iter().all(|a| a == key.id.as_str()) {
                return Err(StoreError::conflict(
                    "last_admin_key",
                    "this is the last active global admin key; create another before revoking it",
                ));
            }
        }
        let n =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id.as_str())
                .bind(now.millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if n == 0 {
            // Revoked meanwhile by another request: that revocation stands, and is the one audited.
            drop(tx);
            return self.get_api_key(id).await;
        }
        append_audit(
            &mut tx,
            chain_of(key.env_id.as_ref()),
            now,
            NewAudit::success(
                actor,
                "api_key.revoke",
                id.as_str(),
                json!({ "name": key.name }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(ApiKey {
            revoked_at: Some(now),
            ..key
        })
    }

    /// The key whose secret has this digest (revoked ones included: the caller decides), with its
    /// last-use time refreshed.
    pub async fn api_key_by_digest(&self, digest: &str, now: Timestamp) -> Result<Option<ApiKey>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM api_keys WHERE digest = $1"
        )))
        .bind(digest)
        .fetch_optional(self.reader())
        .await?;
        let Some(mut key) = row.as_ref().map(key_from_row).transpose()? else {
            return Ok(None);
        };
        let stale = key
            .last_used_at
            .is_none_or(|t| now.millis() - t.millis() >= LAST_USED_RESOLUTION_MS);
        if key.revoked_at.is_none() && !key.is_expired(now) && stale {
            sqlx::query("UPDATE api_keys SET last_used_at = $2 WHERE id = $1")
                .bind(key.id.as_str())
                .bind(now.millis())
                .execute(&self.write)
                .await?;
            key.last_used_at = Some(now);
        }
        Ok(Some(key))
    }
}
