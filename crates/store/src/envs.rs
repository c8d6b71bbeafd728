//! Environments: the deployment boundaries everything else belongs to.

use portcullis_core::Timestamp;
use portcullis_core::event::EventType;
use portcullis_core::ids::{EnvId, PrefixedId};
use portcullis_core::model::{EnvMode, Environment, KeyPolicy, SigningAlg};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::signing::{NewSigningKey, insert_signing_key};
use crate::{Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct NewEnvironment {
    pub id: EnvId,
    pub slug: String,
    pub name: String,
    pub mode: EnvMode,
    pub issuer: String,
    pub signing_alg: SigningAlg,
    pub key_policy: KeyPolicy,
}

const COLUMNS: &str = "id, slug, name, mode, issuer, signing_alg, key_lifetime_seconds, \
                       key_grace_seconds, created_at, updated_at";

fn env_from_row(r: &AnyRow) -> Result<Environment> {
    let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("unknown {what} {v:?}"));
    let mode: String = r.try_get("mode")?;
    let alg: String = r.try_get("signing_alg")?;
    Ok(Environment {
        id: EnvId::from_stored(r.try_get("id")?),
        slug: r.try_get("slug")?,
        name: r.try_get("name")?,
        mode: EnvMode::parse(&mode).ok_or_else(|| corrupt("mode", &mode))?,
        issuer: r.try_get("issuer")?,
        signing_alg: SigningAlg::parse(&alg).ok_or_else(|| corrupt("algorithm", &alg))?,
        key_policy: KeyPolicy {
            lifetime_seconds: r.try_get("key_lifetime_seconds")?,
            grace_seconds: r.try_get("key_grace_seconds")?,
        },
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

pub(crate) fn env_json(e: &Environment) -> serde_json::Value {
    json!({
        "id": e.id, "slug": e.slug, "name": e.name, "mode": e.mode, "issuer": e.issuer,
        "signing_alg": e.signing_alg,
    })
}

impl Store {
    /// Creates an environment with its first `active` and `next` signing keys, its
    /// `environment.created` event and the first record of its audit chain, atomically.
    pub async fn create_environment(
        &self,
        actor: &str,
        now: Timestamp,
        new: NewEnvironment,
        keys: [NewSigningKey; 2],
    ) -> Result<Environment> {
        let mut tx = self.begin().await?;
        let taken: Option<String> =
            sqlx::query_scalar("SELECT id FROM environments WHERE slug = $1 OR issuer = $2")
                .bind(&new.slug)
                .bind(&new.issuer)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(id) = taken {
            return Err(StoreError::conflict(
                "environment_exists",
                format!(
                    "environment {id} already uses the slug {:?} or the issuer {:?}",
                    new.slug, new.issuer
                ),
            ));
        }
        sqlx::query(
            "INSERT INTO environments (id, slug, name, mode, issuer, signing_alg, key_lifetime_seconds, \
             key_grace_seconds, event_seq, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, $9, $9)",
        )
        .bind(new.id.as_str())
        .bind(&new.slug)
        .bind(&new.name)
        .bind(new.mode.as_str())
        .bind(&new.issuer)
        .bind(new.signing_alg.as_str())
        .bind(new.key_policy.lifetime_seconds)
        .bind(new.key_policy.grace_seconds)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        for k in keys {
            insert_signing_key(&mut tx, &new.id, now, k).await?;
        }
        let env = Environment {
            id: new.id.clone(),
            slug: new.slug,
            name: new.name,
            mode: new.mode,
            issuer: new.issuer,
            signing_alg: new.signing_alg,
            key_policy: new.key_policy,
            created_at: now,
            updated_at: now,
        };
        let data = env_json(&env);
        self.record_change(
            &mut tx,
            &env.id,
            now,
            (EventType::EnvironmentCreated, None),
            (actor, "environment.create", env.id.as_str()),
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(env)
    }

    pub async fn list_environments(&self) -> Result<Vec<Environment>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM environments ORDER BY id"
        )))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(env_from_row).collect()
    }

    /// Finds an environment by ID (`env_…`) or by slug.
    pub async fn find_environment(&self, id_or_slug: &str) -> Result<Environment> {
        let column = if EnvId::parse(id_or_slug).is_some() {
            "id"
        } else {
            "slug"
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM environments WHERE {column} = $1"
        )))
        .bind(id_or_slug)
        .fetch_optional(self.reader())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("environment {id_or_slug}")))?;
        env_from_row(&row)
    }

    /// Changes an environment's name, mode or key policy; records `environment.updated` with the
    /// previous values.
    pub async fn update_environment(
        &self,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        name: Option<String>,
        mode: Option<EnvMode>,
        key_policy: Option<KeyPolicy>,
    ) -> Result<Environment> {
        let before = self.find_environment(env.as_str()).await?;
        let mut after = before.clone();
        if let Some(n) = name {
            after.name = n;
        }
        if let Some(m) = mode {
            after.mode = m;
        }
        if let Some(p) = key_policy {
            after.key_policy = p;
        }
        if after == before {
            return Ok(before);
        }
        after.updated_at = now;
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "UPDATE environments SET name = $2, mode = $3, key_lifetime_seconds = $4, key_grace_seconds = $5, \
             updated_at = $6 WHERE id = $1 AND updated_at = $7",
        )
        .bind(env.as_str())
        .bind(&after.name)
        .bind(after.mode.as_str())
        .bind(after.key_policy.lifetime_seconds)
        .bind(after.key_policy.grace_seconds)
        .bind(now.millis())
        .bind(before.updated_at.millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::conflict(
                "concurrent_update",
                "the environment changed meanwhile; retry",
            ));
        }
        let mut previous = serde_json::Map::new();
        if before.name != after.name {
            previous.insert("name".into(), json!(before.name));
        }
        if before.mode != after.mode {
            previous.insert("mode".into(), json!(before.mode));
        }
        if before.key_policy != after.key_policy {
            previous.insert("key_policy".into(), json!(before.key_policy));
        }
        let mut data = env_json(&after);
        data["previous_attributes"] = serde_json::Value::Object(previous);
        self.record_change(
            &mut tx,
            env,
            now,
            (EventType::EnvironmentUpdated, None),
            (actor, "environment.update", env.as_str()),
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }
}
