//! SSO connections, pending upstream requests, the SAML replay cache and profiles.
//!
//! Invariants:
//! - a pending upstream request (SAML AuthnRequest ID, OIDC `state`) is consumed once, atomically;
//! - an assertion ID is accepted once per connection until its expiry (`saml_replay`, in the
//!   database so it survives restarts); the insert is the check, so two racing posts of one
//!   assertion cannot both pass;
//! - a profile is keyed by (connection, IdP subject), never by email.

use portcullis_core::Timestamp;
use portcullis_core::event::EventType;
use portcullis_core::ids::{ConnectionId, EnvId, OrgId, ProfileId};
use portcullis_core::sso::{Connection, ConnectionState, ConnectionType, Profile};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Conn, Result, Store, StoreError};

const COLUMNS: &str =
    "id, env_id, org_id, type, name, state, config, secrets, created_at, updated_at";

fn connection_from_row(r: &AnyRow) -> Result<Connection> {
    let corrupt = |m: String| StoreError::Corrupt(m);
    let kind: String = r.try_get("type")?;
    let state: String = r.try_get("state")?;
    let config: String = r.try_get("config")?;
    Ok(Connection {
        id: ConnectionId::from_stored(r.try_get("id")?),
        env_id: EnvId::from_stored(r.try_get("env_id")?),
        org_id: OrgId::from_stored(r.try_get("org_id")?),
        kind: ConnectionType::parse(&kind)
            .ok_or_else(|| corrupt(format!("connection type {kind:?}")))?,
        name: r.try_get("name")?,
        state: ConnectionState::parse(&state)
            .ok_or_else(|| corrupt(format!("connection state {state:?}")))?,
        config: serde_json::from_str(&config).map_err(|e| corrupt(e.to_string()))?,
        sealed_secrets: r.try_get("secrets")?,
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

/// The public description of a connection for events and audit: configuration, never secrets.
pub fn connection_json(c: &Connection) -> serde_json::Value {
    json!({
        "id": c.id, "object": "connection", "organization_id": c.org_id, "connection_type": c.kind,
        "name": c.name, "state": c.state,
    })
}

/// How a connection update is recorded.
#[derive(Debug, Clone)]
pub struct ConnectionChange {
    /// `connection.updated`, `connection.activated` or `connection.deactivated`.
    pub kind: EventType,
    /// The audit action, e.g. `connection.saml_metadata.replace`.
    pub action: &'static str,
    /// What changed (no secrets).
    pub detail: serde_json::Value,
}

impl Store {
    pub async fn create_connection(
        &self,
        actor: &str,
        now: Timestamp,
        c: Connection,
    ) -> Result<Connection> {
        let mut tx = self.begin().await?;
        let r = self.create_connection_in(&mut tx, actor, now, c).await?;
        tx.commit().await?;
        Ok(r)
    }

    /// [`Self::create_connection`] inside the caller's transaction (`apply` runs many in one).
    pub async fn create_connection_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        c: Connection,
    ) -> Result<Connection> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO connections ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
        )))
        .bind(c.id.as_str())
        .bind(c.env_id.as_str())
        .bind(c.org_id.as_str())
        .bind(c.kind.as_str())
        .bind(&c.name)
        .bind(c.state.as_str())
        .bind(c.config.to_string())
        .bind(c.sealed_secrets.clone())
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        let data = connection_json(&c);
        self.record_change(
            &mut *tx,
            &c.env_id,
            now,
            (EventType::ConnectionCreated, Some(c.org_id.clone())),
            (actor, "connection.create", c.id.as_str()),
            data,
        )
        .await?;
        // The row carries `now`, whatever times the caller set.
        Ok(Connection {
            created_at: now,
            updated_at: now,
            ..c
        })
    }

    pub async fn get_connection(&self, env: &EnvId, id: &ConnectionId) -> Result<Connection> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM connections WHERE env_id = $1 AND id = $2"
        )))
        .bind(env.as_str())
        .bind(id.as_str())
        .fetch_optional(self.reader())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("connection {id}")))?;
        connection_from_row(&row)
    }

    /// Connections of `env`, of one organization when given.
    pub async fn list_connections(
        &self,
        env: &EnvId,
        org: Option<&OrgId>,
    ) -> Result<Vec<Connection>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM connections WHERE env_id = $1 AND ($2 = '' OR org_id = $2) ORDER BY id"
        )))
        .bind(env.as_str())
        .bind(org.map_or("", |o| o.as_str()))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(connection_from_row).collect()
    }

    /// Replaces a connection (same ID); records `kind` (updated, activated, deactivated).
    pub async fn update_connection(
        &self,
        actor: &str,
        now: Timestamp,
        before: &Connection,
        after: Connection,
        change: ConnectionChange,
    ) -> Result<Connection> {
        let mut tx = self.begin().await?;
        let r = self
            .update_connection_in(&mut tx, actor, now, before, after, change)
            .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// [`Self::update_connection`] inside the caller's transaction (`apply` runs many in one).
    pub async fn update_connection_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        before: &Connection,
        after: Connection,
        change: ConnectionChange,
    ) -> Result<Connection> {
        let ConnectionChange {
            kind,
            action,
            detail,
        } = change;
        let n = sqlx::query(
            "UPDATE connections SET name = $3, state = $4, config = $5, secrets = $6, updated_at = $7 \
             WHERE env_id = $1 AND id = $2 AND updated_at = $8",
        )
        .bind(after.env_id.as_str())
        .bind(after.id.as_str())
        .bind(&after.name)
        .bind(after.state.as_str())
        .bind(after.config.to_string())
        .bind(after.sealed_secrets.clone())
        .bind(now.millis())
        .bind(before.updated_at.millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::conflict(
                "concurrent_update",
                "the connection changed meanwhile; retry",
            ));
        }
        let mut data = connection_json(&after);
        data["previous_attributes"] =
            crate::log::previous_attributes(&connection_json(before), &data);
        data["change"] = detail;
        self.record_change(
            &mut *tx,
            &after.env_id,
            now,
            (kind, Some(after.org_id.clone())),
            (actor, action, after.id.as_str()),
            data,
        )
        .await?;
        Ok(Connection {
            updated_at: now,
            ..after
        })
    }

    /// Remembers a pending upstream request (SAML request ID or OIDC state).
    pub async fn create_sso_request(
        &self,
        env: &EnvId,
        id: &str,
        conn: &ConnectionId,
        auth_request_id: &str,
        data: &serde_json::Value,
        expires_at: Timestamp,
    ) -> Result<()> {
        sqlx::query("INSERT INTO sso_requests (id, env_id, connection_id, auth_request_id, data, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(id)
            .bind(env.as_str())
            .bind(conn.as_str())
            .bind(auth_request_id)
            .bind(data.to_string())
            .bind(expires_at.millis())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Consumes a pending upstream request of `conn` exactly once: (our auth request ID, data).
    pub async fn take_sso_request(
        &self,
        env: &EnvId,
        conn: &ConnectionId,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<(String, serde_json::Value)>> {
        let row = sqlx::query(
            "UPDATE sso_requests SET consumed_at = $4 WHERE id = $1 AND env_id = $2 AND connection_id = $3 \
             AND consumed_at IS NULL AND expires_at > $4 RETURNING auth_request_id, data",
        )
        .bind(id)
        .bind(env.as_str())
        .bind(conn.as_str())
        .bind(now.millis())
        .fetch_optional(&self.write)
        .await?;
        row.map(|r| {
            let d: String = r.try_get("data")?;
            Ok((
                r.try_get("auth_request_id")?,
                serde_json::from_str(&d).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ))
        })
        .transpose()
    }

    /// The auth request a pending upstream request belongs to, without consuming it (so that a
    /// request can be checked before anything changes).
    pub async fn peek_sso_request(
        &self,
        env: &EnvId,
        conn: &ConnectionId,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT auth_request_id FROM sso_requests WHERE id = $1 AND env_id = $2 AND connection_id = $3 AND consumed_at IS NULL AND expires_at > $4")
            .bind(id)
            .bind(env.as_str())
            .bind(conn.as_str())
            .bind(now.millis())
            .fetch_optional(self.reader())
            .await?)
    }

    /// Records an assertion ID; false if it was seen before on this connection (a replay).
    pub async fn remember_assertion(
        &self,
        env: &EnvId,
        conn: &ConnectionId,
        assertion_id: &str,
        expires_at: Timestamp,
    ) -> Result<bool> {
        let n = sqlx::query("INSERT INTO saml_replay (env_id, connection_id, assertion_id, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (env_id, connection_id, assertion_id) DO NOTHING")
            .bind(env.as_str())
            .bind(conn.as_str())
            .bind(assertion_id)
            .bind(expires_at.millis())
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Creates or refreshes the profile of (connection, IdP subject).
    pub async fn upsert_profile(&self, now: Timestamp, p: Profile) -> Result<Profile> {
        let groups = serde_json::to_string(&p.groups).unwrap_or_else(|_| "[]".into());
        let id: String = sqlx::query_scalar(
            "INSERT INTO profiles (id, env_id, org_id, connection_id, idp_id, email, first_name, last_name, groups, raw, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
             ON CONFLICT (connection_id, idp_id) DO UPDATE SET email = excluded.email, first_name = excluded.first_name, \
             last_name = excluded.last_name, groups = excluded.groups, raw = excluded.raw, updated_at = excluded.updated_at \
             RETURNING id",
        )
        .bind(p.id.as_str())
        .bind(p.env_id.as_str())
        .bind(p.org_id.as_str())
        .bind(p.connection_id.as_str())
        .bind(&p.idp_id)
        .bind(p.email.clone())
        .bind(p.first_name.clone())
        .bind(p.last_name.clone())
        .bind(groups)
        .bind(p.raw_attributes.to_string())
        .bind(now.millis())
        .fetch_one(&self.write)
        .await?;
        Ok(Profile {
            id: ProfileId::from_stored(id),
            updated_at: now,
            ..p
        })
    }

    pub async fn get_profile(&self, env: &EnvId, id: &ProfileId) -> Result<Profile> {
        let r = sqlx::query("SELECT id, env_id, org_id, connection_id, idp_id, email, first_name, last_name, groups, raw, created_at, updated_at FROM profiles WHERE env_id = $1 AND id = $2")
            .bind(env.as_str())
            .bind(id.as_str())
            .fetch_optional(self.reader())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("profile {id}")))?;
        let groups: String = r.try_get("groups")?;
        let raw: String = r.try_get("raw")?;
        Ok(Profile {
            id: ProfileId::from_stored(r.try_get("id")?),
            env_id: EnvId::from_stored(r.try_get("env_id")?),
            org_id: OrgId::from_stored(r.try_get("org_id")?),
            connection_id: ConnectionId::from_stored(r.try_get("connection_id")?),
            idp_id: r.try_get("idp_id")?,
            email: r.try_get("email")?,
            first_name: r.try_get("first_name")?,
            last_name: r.try_get("last_name")?,
            groups: serde_json::from_str(&groups).unwrap_or_default(),
            raw_attributes: serde_json::from_str(&raw).unwrap_or_default(),
            created_at: Timestamp(r.try_get("created_at")?),
            updated_at: Timestamp(r.try_get("updated_at")?),
        })
    }
}

/// Re-seals every connection's secrets (an OIDC connection's client secret, a SAML connection's
/// SP private keys) with `reseal` (master-key rotation, inside its transaction). Returns how
/// many connections had secrets.
pub(crate) async fn reseal_connection_secrets(
    conn: &mut Conn,
    reseal: &crate::Reseal<'_>,
) -> Result<usize> {
    let rows = sqlx::query(
        "SELECT id, env_id, secrets FROM connections WHERE secrets IS NOT NULL ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for r in &rows {
        let id: String = r.try_get("id")?;
        let env: String = r.try_get("env_id")?;
        let sealed: Vec<u8> = r.try_get("secrets")?;
        let resealed = reseal(crate::Sealed::ConnectionSecrets, &id, &env, &sealed)
            .map_err(|e| StoreError::Corrupt(format!("secrets of connection {id}: {e}")))?;
        sqlx::query("UPDATE connections SET secrets = $2 WHERE id = $1")
            .bind(&id)
            .bind(resealed)
            .execute(&mut *conn)
            .await?;
    }
    Ok(rows.len())
}
