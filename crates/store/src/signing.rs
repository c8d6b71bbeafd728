//! Signing keys per environment: public JWK in the clear, private key sealed under the master key.

use portcullis_core::Timestamp;
use portcullis_core::audit::{GLOBAL_CHAIN, NewAudit};
use portcullis_core::event::EventType;
use portcullis_core::ids::{EnvId, SigningKeyId};
use portcullis_core::model::{KeyState, SigningAlg, SigningKeyInfo};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::log::append_audit;
use crate::{Conn, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct NewSigningKey {
    pub id: SigningKeyId,
    pub alg: SigningAlg,
    pub state: KeyState,
    pub public_jwk: serde_json::Value,
    pub sealed_private: Vec<u8>,
}

/// What a value sealed under the master key is: each kind is sealed under associated data of
/// its own, which the caller of a master-key rotation builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    SigningKey,
    WebhookSecret,
    ConnectionSecrets,
}

/// Re-seals one value: (its kind, its owner's ID, environment ID, sealed bytes) to new sealed
/// bytes.
pub type Reseal<'a> =
    dyn Fn(Sealed, &str, &str, &[u8]) -> std::result::Result<Vec<u8>, String> + Sync + 'a;

#[derive(Debug, Clone)]
pub struct StoredSigningKey {
    pub info: SigningKeyInfo,
    pub sealed_private: Vec<u8>,
}

pub(crate) async fn insert_signing_key(
    conn: &mut Conn,
    env: &EnvId,
    now: Timestamp,
    k: NewSigningKey,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO signing_keys (id, env_id, alg, state, public_jwk, sealed_private, created_at, activated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(k.id.as_str())
    .bind(env.as_str())
    .bind(k.alg.as_str())
    .bind(k.state.as_str())
    .bind(k.public_jwk.to_string())
    .bind(k.sealed_private)
    .bind(now.millis())
    .bind((k.state == KeyState::Active).then_some(now.millis()))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn key_from_row(r: &AnyRow) -> Result<StoredSigningKey> {
    let corrupt = |m: String| StoreError::Corrupt(m);
    let alg: String = r.try_get("alg")?;
    let state: String = r.try_get("state")?;
    let jwk: String = r.try_get("public_jwk")?;
    Ok(StoredSigningKey {
        info: SigningKeyInfo {
            id: SigningKeyId::from_stored(r.try_get("id")?),
            env_id: EnvId::from_stored(r.try_get("env_id")?),
            alg: SigningAlg::parse(&alg)
                .ok_or_else(|| corrupt(format!("unknown algorithm {alg:?}")))?,
            state: KeyState::parse(&state)
                .ok_or_else(|| corrupt(format!("unknown key state {state:?}")))?,
            created_at: Timestamp(r.try_get("created_at")?),
            activated_at: r.try_get::<Option<i64>, _>("activated_at")?.map(Timestamp),
            retired_at: r.try_get::<Option<i64>, _>("retired_at")?.map(Timestamp),
            public_jwk: serde_json::from_str(&jwk).map_err(|e| corrupt(e.to_string()))?,
        },
        sealed_private: r.try_get("sealed_private")?,
    })
}

impl Store {
    /// Every key of `env`, newest first.
    pub async fn signing_keys(&self, env: &EnvId) -> Result<Vec<StoredSigningKey>> {
        let rows = sqlx::query(
            "SELECT id, env_id, alg, state, public_jwk, sealed_private, created_at, activated_at, retired_at \
             FROM signing_keys WHERE env_id = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(env.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    /// Rotates `env`'s keys: the published `next` key starts signing, the `active` one retires
    /// (published for the grace period), and `new_next` is published to sign at the following
    /// rotation. If no `next` key exists (repair), `new_next` is only published and the active key
    /// keeps signing: a key never signs before it was published.
    pub async fn rotate_signing_keys(
        &self,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        new_next: NewSigningKey,
    ) -> Result<Vec<SigningKeyInfo>> {
        let mut tx = self.begin().await?;
        self.rotate_signing_keys_in(&mut tx, actor, now, env, new_next)
            .await?;
        tx.commit().await?;
        Ok(self
            .signing_keys(env)
            .await?
            .into_iter()
            .map(|k| k.info)
            .collect())
    }

    /// [`Self::rotate_signing_keys`] inside the caller's transaction (`apply` runs many in one).
    pub async fn rotate_signing_keys_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        new_next: NewSigningKey,
    ) -> Result<()> {
        // Lock the environment row first: two rotations of one environment run one after the other.
        sqlx::query("UPDATE environments SET updated_at = updated_at WHERE id = $1")
            .bind(env.as_str())
            .execute(&mut *tx)
            .await?;
        let next: Option<String> =
            sqlx::query_scalar("SELECT id FROM signing_keys WHERE env_id = $1 AND state = 'next'")
                .bind(env.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let mut promoted = None;
        let mut retired = None;
        if let Some(next) = next {
            retired = sqlx::query_scalar::<_, String>(
                "UPDATE signing_keys SET state = 'retired', retired_at = $2 WHERE env_id = $1 AND state = 'active' RETURNING id",
            )
            .bind(env.as_str())
            .bind(now.millis())
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE signing_keys SET state = 'active', activated_at = $2 WHERE id = $1",
            )
            .bind(&next)
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
            promoted = Some(next);
        }
        let new_id = new_next.id.clone();
        insert_signing_key(
            &mut *tx,
            env,
            now,
            NewSigningKey {
                state: KeyState::Next,
                ..new_next
            },
        )
        .await?;
        let data = json!({ "activated": promoted, "retired": retired, "published": new_id });
        self.record_change(
            &mut *tx,
            env,
            now,
            (EventType::SigningKeyRotated, None),
            (actor, "signing_key.rotate", env.as_str()),
            data,
        )
        .await?;
        Ok(())
    }

    /// Re-seals every private key (master-key rotation) in one transaction: `reseal` gets each
    /// key's ID, environment and sealed bytes and returns the new sealed bytes, or an error that
    /// aborts the whole rotation. `check` is the new master key's canary value. Webhook signing
    /// secrets and connection secrets are re-sealed in the same transaction, through the same
    /// `reseal`, so that nothing stays sealed under the old key. Returns the number of signing keys.
    pub async fn reseal_signing_keys(
        &self,
        actor: &str,
        now: Timestamp,
        reseal: &Reseal<'_>,
        check: (&str, &str),
        new_fingerprint: &str,
    ) -> Result<usize> {
        let mut tx = self.begin().await?;
        if self.backend == crate::Backend::Postgres {
            // Nothing may be sealed under the old master key while the rotation runs (SQLite
            // already serialises writers).
            sqlx::query(
                "LOCK TABLE signing_keys, webhook_endpoints, connections IN SHARE ROW EXCLUSIVE MODE",
            )
                .execute(&mut *tx)
                .await?;
        }
        let rows = sqlx::query("SELECT id, env_id, sealed_private FROM signing_keys ORDER BY id")
            .fetch_all(&mut *tx)
            .await?;
        let mut n = 0;
        for r in &rows {
            let id: String = r.try_get("id")?;
            let env: String = r.try_get("env_id")?;
            let sealed: Vec<u8> = r.try_get("sealed_private")?;
            let resealed = reseal(Sealed::SigningKey, &id, &env, &sealed)
                .map_err(|e| StoreError::Corrupt(format!("key {id}: {e}")))?;
            sqlx::query("UPDATE signing_keys SET sealed_private = $2 WHERE id = $1")
                .bind(&id)
                .bind(resealed)
                .execute(&mut *tx)
                .await?;
            n += 1;
        }
        let webhook_secrets = crate::webhooks::reseal_webhook_secrets(&mut tx, reseal).await?;
        let connection_secrets =
            crate::connections::reseal_connection_secrets(&mut tx, reseal).await?;
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
            .bind(check.0)
            .bind(check.1)
            .execute(&mut *tx)
            .await?;
        append_audit(
            &mut tx,
            GLOBAL_CHAIN,
            now,
            NewAudit::success(
                actor,
                "master_key.rotate",
                "master_key",
                json!({ "keys_resealed": n, "webhook_secrets_resealed": webhook_secrets, "connection_secrets_resealed": connection_secrets, "fingerprint": new_fingerprint }),
            ),
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }
}
