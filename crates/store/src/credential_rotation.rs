//! Rotation of each kind of machine credential, with its overlap window, and the
//! `credential.rotated` event every rotation writes in its own transaction.
//!
//! - client secret: the new secret works at once; the replaced one until `overlap_until`;
//! - webhook secret: deliveries carry both signatures until `overlap_until`;
//! - API key: the new key is shown once; the replaced key keeps working until `overlap_until`,
//!   then the expiry sweep revokes it (overlap 0 revokes it in this transaction);
//! - `private_key_jwt`: the client registers the new public key beside the old one (both verify),
//!   then removes the old one; adding a key to a client that has keys is the rotation.
//!
//! The event never carries a secret: only references (`client_…/secret/<8 hex>`, `key_…`, …).

use portcullis_core::Timestamp;
use portcullis_core::audit::NewAudit;
use portcullis_core::credential::{
    CredentialKind, client_jwk_reference, client_secret_reference, jwks_kids,
};
use portcullis_core::event::{EventType, NewEvent};
use portcullis_core::ids::{ApiKeyId, EnvId};
use portcullis_core::model::{ApiKey, ApiKeyKind};
use portcullis_core::oauth::Client;
use portcullis_core::webhook::WebhookEndpoint;
use serde_json::{Value, json};
use sqlx::Row;

use crate::api_keys::{NewApiKey, chain_of, insert_api_key};
use crate::log::{append_audit, append_event};
use crate::{Backend, Conn, Result, Store, StoreError};

/// What a rotation put in place and what it replaced.
#[derive(Debug, Clone)]
pub struct Rotated {
    pub kind: CredentialKind,
    pub reference: String,
    /// The credential it replaces, when there is exactly one.
    pub previous: Option<String>,
    pub env_id: Option<EnvId>,
    pub owner_id: String,
    pub owner_name: String,
    /// Until then the replaced credential is still accepted; `None`: until it is removed.
    pub overlap_until: Option<Timestamp>,
    pub expires_at: Option<Timestamp>,
}

pub fn rotated_json(r: &Rotated) -> Value {
    json!({
        "kind": r.kind.as_str(), "id": r.reference, "previous": r.previous,
        "owner_type": r.kind.owner_type(), "owner_id": r.owner_id, "owner_name": r.owner_name,
        "overlap_until": r.overlap_until.map(Timestamp::to_rfc3339),
        "expires_at": r.expires_at.map(Timestamp::to_rfc3339),
    })
}

impl Store {
    /// Writes `credential.rotated` (environment credentials only: a global admin key has no
    /// event log, its rotation is in the global audit chain).
    async fn append_rotated(&self, conn: &mut Conn, now: Timestamp, r: &Rotated) -> Result<()> {
        if let Some(env) = &r.env_id {
            append_event(
                conn,
                env,
                now,
                NewEvent {
                    id: self.new_id(now),
                    kind: EventType::CredentialRotated,
                    org_id: None,
                    data: rotated_json(r),
                },
            )
            .await?;
        }
        Ok(())
    }

    /// Stores a client whose secret [`rotate`d](crate) into `after` (new digest, the old one as
    /// previous until its overlap ends): `client.secret_rotated`, `credential.rotated`, audit.
    pub async fn rotate_client_secret(
        &self,
        actor: &str,
        now: Timestamp,
        before: &Client,
        after: Client,
    ) -> Result<Client> {
        let mut tx = self.begin().await?;
        let after = self
            .update_client_in(&mut tx, actor, now, before, after, "client.rotate_secret")
            .await?;
        let previous_kept = after.previous_secret_digest.is_some();
        sqlx::query(
            "UPDATE clients SET previous_secret_created_at = $3 WHERE id = $1 AND env_id = $2",
        )
        .bind(after.id.as_str())
        .bind(after.env_id.as_str())
        .bind(
            before
                .secret_created_at
                .filter(|_| previous_kept)
                .map(Timestamp::millis),
        )
        .execute(&mut *tx)
        .await?;
        let reference = |d: &Option<String>| {
            d.as_deref()
                .map(|d| client_secret_reference(after.id.as_str(), d))
        };
        let rotated = Rotated {
            kind: CredentialKind::ClientSecret,
            reference: reference(&after.secret_digest).unwrap_or_default(),
            previous: reference(&before.secret_digest),
            env_id: Some(after.env_id.clone()),
            owner_id: after.id.to_string(),
            owner_name: after.name.clone(),
            overlap_until: Some(after.previous_secret_expires_at.unwrap_or(now)),
            expires_at: after.secret_expires_at,
        };
        self.append_rotated(&mut tx, now, &rotated).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Updates a client (as `update_client`) and keeps its `private_key_jwt` keys' first-seen
    /// times; a key added to a client that already had keys is a rotation (`credential.rotated`,
    /// its overlap lasting until the old key is removed).
    pub async fn update_client_keys(
        &self,
        actor: &str,
        now: Timestamp,
        before: &Client,
        after: Client,
    ) -> Result<Client> {
        let mut tx = self.begin().await?;
        let after = self
            .update_client_in(&mut tx, actor, now, before, after, "client.update")
            .await?;
        note_client_keys(&mut tx, &after, now).await?;
        let old = jwks_kids(before.jwks.as_ref());
        let new = jwks_kids(after.jwks.as_ref());
        let all_old_gone = old.iter().all(|k| !new.contains(k));
        if !old.is_empty() {
            for kid in new.iter().filter(|k| !old.contains(k)) {
                let rotated = Rotated {
                    kind: CredentialKind::PrivateKeyJwt,
                    reference: client_jwk_reference(after.id.as_str(), kid),
                    previous: match old.as_slice() {
                        [one] => Some(client_jwk_reference(after.id.as_str(), one)),
                        _ => None,
                    },
                    env_id: Some(after.env_id.clone()),
                    owner_id: after.id.to_string(),
                    owner_name: after.name.clone(),
                    overlap_until: all_old_gone.then_some(now),
                    expires_at: None,
                };
                self.append_rotated(&mut tx, now, &rotated).await?;
            }
        }
        tx.commit().await?;
        Ok(after)
    }

    /// Records when each `private_key_jwt` key of a client was first seen (now, for a key not
    /// seen before) and forgets removed keys.
    pub async fn note_client_keys(&self, client: &Client, now: Timestamp) -> Result<()> {
        let mut tx = self.begin().await?;
        note_client_keys(&mut tx, client, now).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores an endpoint whose secret was replaced (`after`: new sealed secret, the old one as
    /// previous until `previous_secret_expires_at`): `webhook_endpoint.secret_rotated`,
    /// `credential.rotated`, audit.
    pub async fn rotate_webhook_secret(
        &self,
        actor: &str,
        now: Timestamp,
        before: &WebhookEndpoint,
        after: WebhookEndpoint,
    ) -> Result<WebhookEndpoint> {
        let mut tx = self.begin().await?;
        let old_created: Option<i64> = sqlx::query_scalar(
            "SELECT COALESCE(secret_created_at, created_at) FROM webhook_endpoints WHERE env_id = $1 AND id = $2",
        )
        .bind(before.env_id.as_str())
        .bind(before.id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let after = self
            .update_webhook_endpoint_in(
                &mut tx,
                actor,
                now,
                before,
                after,
                EventType::WebhookEndpointSecretRotated,
            )
            .await?;
        let previous_kept = after.sealed_previous_secret.is_some();
        sqlx::query(
            "UPDATE webhook_endpoints SET secret_created_at = $3, previous_secret_created_at = $4 \
             WHERE env_id = $1 AND id = $2",
        )
        .bind(after.env_id.as_str())
        .bind(after.id.as_str())
        .bind(now.millis())
        .bind(old_created.filter(|_| previous_kept))
        .execute(&mut *tx)
        .await?;
        let rotated = Rotated {
            kind: CredentialKind::WebhookSecret,
            reference: format!("{}/secret", after.id),
            previous: previous_kept.then(|| format!("{}/secret/previous", after.id)),
            env_id: Some(after.env_id.clone()),
            owner_id: after.id.to_string(),
            owner_name: after.url.clone(),
            overlap_until: Some(after.previous_secret_expires_at.unwrap_or(now)),
            expires_at: None,
        };
        self.append_rotated(&mut tx, now, &rotated).await?;
        tx.commit().await?;
        Ok(after)
    }

    /// Replaces API key `old` by a new key of the same kind, environment and name (`id`,
    /// `digest`, `expires_at`). The old key works until `now + overlap_seconds` (never past its
    /// own expiry); with 0 it is revoked now. Returns the new key and the old one as it is now.
    pub async fn rotate_api_key(
        &self,
        actor: &str,
        now: Timestamp,
        old: &ApiKeyId,
        successor: (ApiKeyId, String, Option<Timestamp>),
        overlap_seconds: i64,
    ) -> Result<(ApiKey, ApiKey)> {
        let mut tx = self.begin().await?;
        let lock = if self.backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM api_keys WHERE id = $1{lock}",
            crate::api_keys::COLUMNS
        )))
        .bind(old.as_str())
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("API key {old}")))?;
        let key = crate::api_keys::key_from_row(&row)?;
        if key.revoked_at.is_some() {
            return Err(StoreError::conflict(
                "api_key_revoked",
                format!("API key {old} is revoked; create a new key instead"),
            ));
        }
        if key.is_expired(now) {
            return Err(StoreError::conflict(
                "api_key_expired",
                format!("API key {old} has expired; create a new key instead"),
            ));
        }
        if let Some(next) = &key.replaced_by {
            return Err(StoreError::conflict(
                "api_key_rotated",
                format!("API key {old} was already rotated to {next}; rotate that key instead"),
            ));
        }
        let (id, digest, expires_at) = successor;
        let until = match overlap_seconds {
            0 => now,
            s => key
                .expires_at
                .map_or(now.plus_seconds(s), |e| e.min(now.plus_seconds(s))),
        };
        let revoked = (overlap_seconds == 0).then_some(now);
        sqlx::query(
            "UPDATE api_keys SET replaced_by = $2, expires_at = $3, revoked_at = $4 WHERE id = $1",
        )
        .bind(old.as_str())
        .bind(id.as_str())
        .bind(until.millis())
        .bind(revoked.map(Timestamp::millis))
        .execute(&mut *tx)
        .await?;
        let new = insert_api_key(
            &mut tx,
            now,
            NewApiKey {
                id,
                kind: key.kind,
                env_id: key.env_id.clone(),
                name: key.name.clone(),
                digest,
                expires_at,
            },
        )
        .await?;
        let rotated = Rotated {
            kind: match key.kind {
                ApiKeyKind::Admin => CredentialKind::AdminApiKey,
                ApiKeyKind::Environment => CredentialKind::EnvironmentApiKey,
            },
            reference: new.id.to_string(),
            previous: Some(key.id.to_string()),
            env_id: key.env_id.clone(),
            owner_id: new.id.to_string(),
            owner_name: new.name.clone(),
            overlap_until: Some(until),
            expires_at: new.expires_at,
        };
        append_audit(
            &mut tx,
            chain_of(key.env_id.as_ref()),
            now,
            NewAudit::success(
                actor,
                "api_key.rotate",
                key.id.as_str(),
                rotated_json(&rotated),
            ),
        )
        .await?;
        self.append_rotated(&mut tx, now, &rotated).await?;
        tx.commit().await?;
        let old = ApiKey {
            replaced_by: Some(new.id.clone()),
            expires_at: Some(until),
            revoked_at: revoked,
            ..key
        };
        Ok((new, old))
    }
}

/// See [`Store::note_client_keys`]: keys not recorded yet get `seen_at`; a recorded key keeps
/// its time. Writes nothing when the key set did not change.
pub(crate) async fn note_client_keys(
    conn: &mut Conn,
    c: &Client,
    seen_at: Timestamp,
) -> Result<()> {
    let kids = jwks_kids(c.jwks.as_ref());
    let wanted: Vec<String> = kids
        .iter()
        .map(|k| client_jwk_reference(c.id.as_str(), k))
        .collect();
    let prefix = client_jwk_reference(c.id.as_str(), "");
    let rows =
        sqlx::query("SELECT reference, created_at FROM credential_usage WHERE owner_id = $1")
            .bind(c.id.as_str())
            .fetch_all(&mut *conn)
            .await?;
    let mut dated = Vec::new();
    for r in &rows {
        let reference: String = r.try_get("reference")?;
        if !reference.starts_with(&prefix) {
            continue;
        }
        if !wanted.contains(&reference) {
            sqlx::query("DELETE FROM credential_usage WHERE reference = $1")
                .bind(&reference)
                .execute(&mut *conn)
                .await?;
        } else if r.try_get::<Option<i64>, _>("created_at")?.is_some() {
            dated.push(reference);
        }
    }
    for reference in wanted.iter().filter(|w| !dated.contains(w)) {
        sqlx::query(
            "INSERT INTO credential_usage (reference, env_id, owner_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (reference) DO UPDATE SET created_at = COALESCE(credential_usage.created_at, excluded.created_at)",
        )
        .bind(reference)
        .bind(c.env_id.as_str())
        .bind(c.id.as_str())
        .bind(seen_at.millis())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
