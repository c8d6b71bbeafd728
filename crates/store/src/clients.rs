//! OAuth clients. Secrets are stored as SHA-256 digests; a rotated secret keeps working until
//! the end of its overlap window.

use portcullis_core::Timestamp;
use portcullis_core::event::EventType;
use portcullis_core::ids::{ClientId, EnvId};
use portcullis_core::oauth::{
    AuthMethod, Client, ClientKind, ExchangePolicy, GrantType, TokenLifetimes,
};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Conn, Result, Store, StoreError};

const COLUMNS: &str = "id, env_id, name, kind, auth_method, redirect_uris, post_logout_redirect_uris, grant_types, \
    scopes, jwks, exchange_audiences, exchange_scopes, access_token_ttl_seconds, id_token_ttl_seconds, \
    refresh_idle_ttl_seconds, refresh_absolute_ttl_seconds, secret_digest, secret_created_at, \
    previous_secret_digest, previous_secret_expires_at, created_at, updated_at, secret_expires_at";

fn json_col<T: serde::de::DeserializeOwned>(r: &AnyRow, col: &str) -> Result<T> {
    let s: String = r.try_get(col)?;
    serde_json::from_str(&s).map_err(|e| StoreError::Corrupt(format!("{col}: {e}")))
}

fn client_from_row(r: &AnyRow) -> Result<Client> {
    let kind: String = r.try_get("kind")?;
    let method: String = r.try_get("auth_method")?;
    let jwks: Option<String> = r.try_get("jwks")?;
    Ok(Client {
        id: ClientId::from_stored(r.try_get("id")?),
        env_id: EnvId::from_stored(r.try_get("env_id")?),
        name: r.try_get("name")?,
        kind: if kind == "public" {
            ClientKind::Public
        } else {
            ClientKind::Confidential
        },
        auth_method: AuthMethod::parse(&method)
            .ok_or_else(|| StoreError::Corrupt(format!("auth method {method:?}")))?,
        redirect_uris: json_col(r, "redirect_uris")?,
        post_logout_redirect_uris: json_col(r, "post_logout_redirect_uris")?,
        grant_types: json_col(r, "grant_types")?,
        scopes: json_col(r, "scopes")?,
        jwks: jwks
            .map(|j| serde_json::from_str(&j))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        exchange: ExchangePolicy {
            audiences: json_col(r, "exchange_audiences")?,
            scopes: json_col(r, "exchange_scopes")?,
        },
        lifetimes: TokenLifetimes {
            access_token: r.try_get("access_token_ttl_seconds")?,
            id_token: r.try_get("id_token_ttl_seconds")?,
            refresh_idle: r.try_get("refresh_idle_ttl_seconds")?,
            refresh_absolute: r.try_get("refresh_absolute_ttl_seconds")?,
        },
        secret_digest: r.try_get("secret_digest")?,
        secret_created_at: r
            .try_get::<Option<i64>, _>("secret_created_at")?
            .map(Timestamp),
        secret_expires_at: r
            .try_get::<Option<i64>, _>("secret_expires_at")?
            .map(Timestamp),
        previous_secret_digest: r.try_get("previous_secret_digest")?,
        previous_secret_expires_at: r
            .try_get::<Option<i64>, _>("previous_secret_expires_at")?
            .map(Timestamp),
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

/// The public description of a client for events and audit: never a secret digest.
pub fn client_json(c: &Client) -> serde_json::Value {
    json!({
        "id": c.id, "object": "client", "name": c.name, "kind": c.kind, "token_endpoint_auth_method": c.auth_method,
        "redirect_uris": c.redirect_uris, "post_logout_redirect_uris": c.post_logout_redirect_uris,
        "grant_types": c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>(), "scopes": c.scopes,
        "token_exchange": c.exchange, "lifetimes": c.lifetimes, "has_jwks": c.jwks.is_some(),
    })
}

async fn write_client(conn: &mut Conn, c: &Client, insert: bool) -> Result<u64> {
    let j = |v: &dyn erased::Json| v.json();
    let sql = if insert {
        format!(
            "INSERT INTO clients ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)"
        )
    } else {
        "UPDATE clients SET name = $3, kind = $4, auth_method = $5, redirect_uris = $6, post_logout_redirect_uris = $7, \
         grant_types = $8, scopes = $9, jwks = $10, exchange_audiences = $11, exchange_scopes = $12, \
         access_token_ttl_seconds = $13, id_token_ttl_seconds = $14, refresh_idle_ttl_seconds = $15, \
         refresh_absolute_ttl_seconds = $16, secret_digest = $17, secret_created_at = $18, previous_secret_digest = $19, \
         previous_secret_expires_at = $20, created_at = $21, updated_at = $22, secret_expires_at = $23 \
         WHERE id = $1 AND env_id = $2"
            .to_owned()
    };
    let grants: Vec<&str> = c.grant_types.iter().map(|g| g.as_str()).collect();
    Ok(sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(c.id.as_str())
        .bind(c.env_id.as_str())
        .bind(&c.name)
        .bind(if c.kind == ClientKind::Public {
            "public"
        } else {
            "confidential"
        })
        .bind(c.auth_method.as_str())
        .bind(j(&c.redirect_uris))
        .bind(j(&c.post_logout_redirect_uris))
        .bind(j(&grants))
        .bind(j(&c.scopes))
        .bind(c.jwks.as_ref().map(|v| v.to_string()))
        .bind(j(&c.exchange.audiences))
        .bind(j(&c.exchange.scopes))
        .bind(c.lifetimes.access_token)
        .bind(c.lifetimes.id_token)
        .bind(c.lifetimes.refresh_idle)
        .bind(c.lifetimes.refresh_absolute)
        .bind(c.secret_digest.clone())
        .bind(c.secret_created_at.map(Timestamp::millis))
        .bind(c.previous_secret_digest.clone())
        .bind(c.previous_secret_expires_at.map(Timestamp::millis))
        .bind(c.created_at.millis())
        .bind(c.updated_at.millis())
        .bind(c.secret_expires_at.map(Timestamp::millis))
        .execute(&mut *conn)
        .await?
        .rows_affected())
}

mod erased {
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "[]".into())
        }
    }
}

/// How long a cached client is trusted. A change made through this node is seen at once (the
/// cache entry is dropped); one made through another node within this time.
const CLIENT_CACHE_MS: i64 = 5_000;

pub type ClientCache = std::sync::Arc<
    std::sync::RwLock<std::collections::HashMap<String, (std::sync::Arc<Client>, i64)>>,
>;

impl Store {
    /// The cache is keyed by client ID alone (IDs are unique across environments, and the
    /// environment is checked on every hit), so `_env` only names the call.
    fn forget_client(&self, _env: &EnvId, id: &ClientId) {
        if let Ok(mut c) = self.client_cache.write() {
            c.remove(id.as_str());
        }
    }

    /// `get_client` through a short-lived cache: client authentication at the token endpoint
    /// then reads no row per request.
    pub async fn get_client_cached(
        &self,
        env: &EnvId,
        id: &ClientId,
        now: Timestamp,
    ) -> Result<std::sync::Arc<Client>> {
        // Looked up by `&str`, so a hit allocates no key; a client of another environment is a miss
        // and goes to `get_client`, which refuses it.
        if let Some((c, at)) = self
            .client_cache
            .read()
            .ok()
            .and_then(|m| m.get(id.as_str()).cloned())
            && c.env_id == *env
            && (0..CLIENT_CACHE_MS).contains(&(now.millis() - at))
        {
            return Ok(c);
        }
        let c = std::sync::Arc::new(self.get_client(env, id).await?);
        if let Ok(mut m) = self.client_cache.write() {
            if m.len() > 10_000 {
                m.clear();
            }
            m.insert(id.as_str().to_owned(), (c.clone(), now.millis()));
        }
        Ok(c)
    }

    pub async fn create_client(&self, actor: &str, now: Timestamp, c: Client) -> Result<Client> {
        let mut tx = self.begin().await?;
        let r = self.create_client_in(&mut tx, actor, now, c).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// [`Self::create_client`] inside the caller's transaction (`apply` runs many in one).
    pub async fn create_client_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        c: Client,
    ) -> Result<Client> {
        write_client(&mut *tx, &c, true).await?;
        let data = client_json(&c);
        self.record_change(
            &mut *tx,
            &c.env_id,
            now,
            (EventType::ClientCreated, None),
            (actor, "client.create", c.id.as_str()),
            data,
        )
        .await?;
        Ok(c)
    }

    pub async fn get_client(&self, env: &EnvId, id: &ClientId) -> Result<Client> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients WHERE env_id = $1 AND id = $2"
        )))
        .bind(env.as_str())
        .bind(id.as_str())
        .fetch_optional(self.reader())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("client {id}")))?;
        client_from_row(&row)
    }

    pub async fn list_clients(&self, env: &EnvId) -> Result<Vec<Client>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients WHERE env_id = $1 ORDER BY id"
        )))
        .bind(env.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// Every client of every environment (isolation checks).
    pub async fn all_clients(&self) -> Result<Vec<Client>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM clients ORDER BY id"
        )))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(client_from_row).collect()
    }

    /// Replaces a client with `after` (same ID); `action` names the change in the audit chain.
    pub async fn update_client(
        &self,
        actor: &str,
        now: Timestamp,
        before: &Client,
        after: Client,
        action: &str,
    ) -> Result<Client> {
        let mut tx = self.begin().await?;
        let r = self
            .update_client_in(&mut tx, actor, now, before, after, action)
            .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// [`Self::update_client`] inside the caller's transaction (`apply` runs many in one).
    pub async fn update_client_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        before: &Client,
        after: Client,
        action: &str,
    ) -> Result<Client> {
        let n = sqlx::query("SELECT updated_at FROM clients WHERE id = $1 AND env_id = $2")
            .bind(before.id.as_str())
            .bind(before.env_id.as_str())
            .fetch_optional(&mut *tx)
            .await?
            .map(|r| r.try_get::<i64, _>("updated_at"))
            .transpose()?;
        if n != Some(before.updated_at.millis()) {
            return Err(StoreError::conflict(
                "concurrent_update",
                "the client changed meanwhile; retry",
            ));
        }
        write_client(&mut *tx, &after, false).await?;
        self.forget_client(&after.env_id, &after.id);
        let kind = if action == "client.rotate_secret" {
            EventType::ClientSecretRotated
        } else {
            EventType::ClientUpdated
        };
        let mut data = client_json(&after);
        data["previous_attributes"] = crate::log::previous_attributes(&client_json(before), &data);
        self.record_change(
            &mut *tx,
            &after.env_id,
            now,
            (kind, None),
            (actor, action, after.id.as_str()),
            data,
        )
        .await?;
        Ok(after)
    }

    pub async fn delete_client(
        &self,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        id: &ClientId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        self.delete_client_in(&mut tx, actor, now, env, id).await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Self::delete_client`] inside the caller's transaction (`apply` runs many in one).
    pub async fn delete_client_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        id: &ClientId,
    ) -> Result<()> {
        let c = self.get_client(env, id).await?;
        self.forget_client(env, id);
        sqlx::query("DELETE FROM clients WHERE env_id = $1 AND id = $2")
            .bind(env.as_str())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await?;
        // Every grant of the client ends with it.
        sqlx::query("UPDATE token_families SET revoked_at = $3, revoked_reason = 'client_deleted' WHERE env_id = $1 AND client_id = $2 AND revoked_at IS NULL")
            .bind(env.as_str())
            .bind(id.as_str())
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        let data = client_json(&c);
        self.record_change(
            &mut *tx,
            env,
            now,
            (EventType::ClientDeleted, None),
            (actor, "client.delete", id.as_str()),
            data,
        )
        .await?;
        Ok(())
    }
}

/// Parses stored grant type names (used by callers validating input too).
pub fn parse_grants(names: &[String]) -> std::result::Result<Vec<GrantType>, String> {
    names
        .iter()
        .map(|n| GrantType::parse(n).ok_or_else(|| format!("unknown grant type {n:?}")))
        .collect()
}
