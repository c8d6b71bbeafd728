//! Webhook endpoints (their settings, secrets and state), the deliveries and attempt log as the
//! admin API reads them, manual retries and replays.
//!
//! The delivery hot path (the outbox rows written with each event, due endpoints, leases, attempt
//! records) and its invariants live in [`crate::outbox`].

use portcullis_core::Timestamp;
use portcullis_core::audit::NewAudit;
use portcullis_core::event::EventType;
use portcullis_core::ids::{DeliveryId, EnvId, EventId, WebhookId};
use portcullis_core::webhook::{Attempt, Delivery, DeliveryState, EndpointState, WebhookEndpoint};
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::log::append_audit;
use crate::{Conn, Result, Store, StoreError};

pub(crate) const ENDPOINT_COLUMNS: &str = "id, env_id, url, description, event_types, headers, disabled_at, \
     state, secret, previous_secret, previous_secret_expires_at, created_at, updated_at";

pub(crate) const DELIVERY_COLUMNS: &str = "id, env_id, endpoint_id, event_id, event_seq, event_type, state, \
     attempts, next_attempt_at, last_status, last_error, created_at, updated_at, completed_at";

pub(crate) fn corrupt(m: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(m.to_string())
}

pub(crate) fn endpoint_from_row(r: &AnyRow) -> Result<WebhookEndpoint> {
    let types: String = r.try_get("event_types")?;
    let headers: String = r.try_get("headers")?;
    let state: String = r.try_get("state")?;
    Ok(WebhookEndpoint {
        id: WebhookId::from_stored(r.try_get("id")?),
        env_id: EnvId::from_stored(r.try_get("env_id")?),
        url: r.try_get("url")?,
        description: r.try_get("description")?,
        event_types: serde_json::from_str(&types).map_err(corrupt)?,
        headers: serde_json::from_str(&headers).map_err(corrupt)?,
        enabled: r.try_get::<Option<i64>, _>("disabled_at")?.is_none(),
        state: EndpointState::parse(&state)
            .ok_or_else(|| corrupt(format!("endpoint state {state:?}")))?,
        sealed_secret: r.try_get("secret")?,
        sealed_previous_secret: r.try_get("previous_secret")?,
        previous_secret_expires_at: r
            .try_get::<Option<i64>, _>("previous_secret_expires_at")?
            .map(Timestamp),
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

pub(crate) fn delivery_from_row(r: &AnyRow) -> Result<Delivery> {
    let state: String = r.try_get("state")?;
    Ok(Delivery {
        id: DeliveryId::from_stored(r.try_get("id")?),
        env_id: EnvId::from_stored(r.try_get("env_id")?),
        endpoint_id: WebhookId::from_stored(r.try_get("endpoint_id")?),
        event_id: EventId::from_stored(r.try_get("event_id")?),
        event_seq: r.try_get("event_seq")?,
        event_type: r.try_get("event_type")?,
        state: DeliveryState::parse(&state)
            .ok_or_else(|| corrupt(format!("delivery state {state:?}")))?,
        attempts: u32::try_from(r.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        next_attempt_at: r
            .try_get::<Option<i64>, _>("next_attempt_at")?
            .map(Timestamp),
        last_status: r
            .try_get::<Option<i64>, _>("last_status")?
            .and_then(|s| u16::try_from(s).ok()),
        last_error: r.try_get("last_error")?,
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
        completed_at: r.try_get::<Option<i64>, _>("completed_at")?.map(Timestamp),
    })
}

fn attempt_from_row(r: &AnyRow) -> Result<Attempt> {
    Ok(Attempt {
        delivery_id: DeliveryId::from_stored(r.try_get("delivery_id")?),
        attempted_at: Timestamp(r.try_get("attempted_at")?),
        node: r.try_get("node")?,
        status: r
            .try_get::<Option<i64>, _>("status")?
            .and_then(|s| u16::try_from(s).ok()),
        latency_ms: r.try_get("latency_ms")?,
        response: r.try_get("response")?,
        error: r.try_get("error")?,
        succeeded: r.try_get::<i64, _>("succeeded")? != 0,
    })
}

/// The public description of an endpoint for events and audit: never secrets nor header values
/// (a header may carry the receiver's credential).
pub fn webhook_json(e: &WebhookEndpoint) -> Value {
    json!({
        "id": e.id, "object": "webhook_endpoint", "url": e.url, "description": e.description,
        "event_types": e.event_types, "enabled": e.enabled, "state": e.state.as_str(),
        "headers": e.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
    })
}

/// Re-seals every webhook secret (current and previous) with `reseal` (master-key rotation,
/// inside its transaction). Returns how many secrets were re-sealed.
pub(crate) async fn reseal_webhook_secrets(
    conn: &mut Conn,
    reseal: &crate::Reseal<'_>,
) -> Result<usize> {
    let rows = sqlx::query(
        "SELECT id, env_id, secret, previous_secret FROM webhook_endpoints ORDER BY id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let mut n = 0;
    for r in &rows {
        let id: String = r.try_get("id")?;
        let env: String = r.try_get("env_id")?;
        let again = |sealed: &[u8]| {
            reseal(crate::Sealed::WebhookSecret, &id, &env, sealed)
                .map_err(|e| corrupt(format!("webhook secret of {id}: {e}")))
        };
        let secret = again(&r.try_get::<Vec<u8>, _>("secret")?)?;
        let previous = r
            .try_get::<Option<Vec<u8>>, _>("previous_secret")?
            .map(|p| again(&p))
            .transpose()?;
        n += 1 + usize::from(previous.is_some());
        sqlx::query("UPDATE webhook_endpoints SET secret = $2, previous_secret = $3 WHERE id = $1")
            .bind(&id)
            .bind(secret)
            .bind(previous)
            .execute(&mut *conn)
            .await?;
    }
    Ok(n)
}

/// A replay's starting point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayFrom {
    /// Events numbered after this sequence number.
    AfterSeq(i64),
    /// Events created at or after this time.
    Since(Timestamp),
}

/// Which deliveries of an endpoint to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub state: Option<DeliveryState>,
    /// Deliveries of events numbered before this sequence number (the next page, newest first).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

impl Store {
    async fn audit_and_event(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        e: &WebhookEndpoint,
        (kind, action): (EventType, &str),
        data: Value,
    ) -> Result<()> {
        self.record_change(
            tx,
            &e.env_id,
            now,
            (kind, None),
            (actor, action, e.id.as_str()),
            data,
        )
        .await?;
        Ok(())
    }

    pub async fn create_webhook_endpoint(
        &self,
        actor: &str,
        now: Timestamp,
        e: WebhookEndpoint,
    ) -> Result<WebhookEndpoint> {
        let mut tx = self.begin().await?;
        let r = self
            .create_webhook_endpoint_in(&mut tx, actor, now, e)
            .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// [`Self::create_webhook_endpoint`] inside the caller's transaction (`apply` runs many in one).
    pub async fn create_webhook_endpoint_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        e: WebhookEndpoint,
    ) -> Result<WebhookEndpoint> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)"
        )))
        .bind(e.id.as_str())
        .bind(e.env_id.as_str())
        .bind(&e.url)
        .bind(&e.description)
        .bind(json!(e.event_types).to_string())
        .bind(json!(e.headers).to_string())
        .bind((!e.enabled).then_some(now.millis()))
        .bind(e.state.as_str())
        .bind(e.sealed_secret.clone())
        .bind(e.sealed_previous_secret.clone())
        .bind(e.previous_secret_expires_at.map(Timestamp::millis))
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        let e = WebhookEndpoint {
            created_at: now,
            updated_at: now,
            ..e
        };
        self.audit_and_event(
            &mut *tx,
            actor,
            now,
            &e,
            (EventType::WebhookEndpointCreated, "webhook_endpoint.create"),
            webhook_json(&e),
        )
        .await?;
        Ok(e)
    }

    pub async fn get_webhook_endpoint(
        &self,
        env: &EnvId,
        id: &WebhookId,
    ) -> Result<WebhookEndpoint> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE env_id = $1 AND id = $2"
        )))
        .bind(env.as_str())
        .bind(id.as_str())
        .fetch_optional(self.reader())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("webhook endpoint {id}")))?;
        endpoint_from_row(&row)
    }

    pub async fn list_webhook_endpoints(&self, env: &EnvId) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE env_id = $1 ORDER BY id"
        )))
        .bind(env.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    /// Replaces an endpoint's settings (URL, filter, headers, enabled, description, secrets) if it
    /// has not changed since `before` was read; records `webhook_endpoint.updated` with the
    /// previous values of what changed, or `kind` for a secret rotation.
    pub async fn update_webhook_endpoint(
        &self,
        actor: &str,
        now: Timestamp,
        before: &WebhookEndpoint,
        after: WebhookEndpoint,
        kind: EventType,
    ) -> Result<WebhookEndpoint> {
        let mut tx = self.begin().await?;
        let r = self
            .update_webhook_endpoint_in(&mut tx, actor, now, before, after, kind)
            .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// [`Self::update_webhook_endpoint`] inside the caller's transaction (`apply` runs many in one).
    pub async fn update_webhook_endpoint_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        before: &WebhookEndpoint,
        after: WebhookEndpoint,
        kind: EventType,
    ) -> Result<WebhookEndpoint> {
        let n = sqlx::query(
            "UPDATE webhook_endpoints SET url = $3, description = $4, event_types = $5, headers = $6, \
             disabled_at = CASE WHEN $7 = 1 THEN NULL ELSE COALESCE(disabled_at, $11) END, secret = $8, previous_secret = $9, previous_secret_expires_at = $10, \
             updated_at = $11 WHERE env_id = $1 AND id = $2 AND updated_at = $12",
        )
        .bind(after.env_id.as_str())
        .bind(after.id.as_str())
        .bind(&after.url)
        .bind(&after.description)
        .bind(json!(after.event_types).to_string())
        .bind(json!(after.headers).to_string())
        .bind(i64::from(after.enabled))
        .bind(after.sealed_secret.clone())
        .bind(after.sealed_previous_secret.clone())
        .bind(after.previous_secret_expires_at.map(Timestamp::millis))
        .bind(now.millis())
        .bind(before.updated_at.millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n != 1 {
            return Err(StoreError::conflict(
                "concurrent_update",
                "the webhook endpoint changed meanwhile; retry",
            ));
        }
        let after = WebhookEndpoint {
            updated_at: now,
            ..after
        };
        let mut data = webhook_json(&after);
        let old = webhook_json(before);
        let mut previous = serde_json::Map::new();
        if let (Some(o), Some(n)) = (old.as_object(), data.as_object()) {
            for (k, v) in o {
                if n.get(k) != Some(v) {
                    previous.insert(k.clone(), v.clone());
                }
            }
        }
        data["previous_attributes"] = Value::Object(previous);
        let action = if kind == EventType::WebhookEndpointSecretRotated {
            "webhook_endpoint.rotate_secret"
        } else {
            "webhook_endpoint.update"
        };
        self.audit_and_event(&mut *tx, actor, now, &after, (kind, action), data)
            .await?;
        Ok(after)
    }

    /// Deletes an endpoint with its deliveries and their attempt log.
    pub async fn delete_webhook_endpoint(
        &self,
        actor: &str,
        now: Timestamp,
        e: &WebhookEndpoint,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        self.delete_webhook_endpoint_in(&mut tx, actor, now, e)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Self::delete_webhook_endpoint`] inside the caller's transaction (`apply` runs many in one).
    pub async fn delete_webhook_endpoint_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        e: &WebhookEndpoint,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM webhook_attempts WHERE delivery_id IN \
             (SELECT id FROM webhook_deliveries WHERE endpoint_id = $1)",
        )
        .bind(e.id.as_str())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM webhook_deliveries WHERE endpoint_id = $1")
            .bind(e.id.as_str())
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM webhook_endpoints WHERE env_id = $1 AND id = $2")
            .bind(e.env_id.as_str())
            .bind(e.id.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n != 1 {
            return Err(StoreError::NotFound(format!("webhook endpoint {}", e.id)));
        }
        self.audit_and_event(
            &mut *tx,
            actor,
            now,
            e,
            (EventType::WebhookEndpointDeleted, "webhook_endpoint.delete"),
            webhook_json(e),
        )
        .await?;
        Ok(())
    }

    /// Deliveries of an endpoint, newest event first.
    pub async fn list_deliveries(
        &self,
        env: &EnvId,
        endpoint: &WebhookId,
        f: &DeliveryFilter,
    ) -> Result<(Vec<Delivery>, bool)> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE env_id = $1 AND endpoint_id = $2 \
             AND ($3 = '' OR state = $3) AND event_seq < $4 ORDER BY event_seq DESC LIMIT $5"
        )))
        .bind(env.as_str())
        .bind(endpoint.as_str())
        .bind(f.state.map_or("", DeliveryState::as_str))
        .bind(f.before_seq.unwrap_or(i64::MAX))
        .bind(i64::from(f.limit) + 1)
        .fetch_all(self.reader())
        .await?;
        let mut out = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>>>()?;
        let more = out.len() > f.limit as usize;
        out.truncate(f.limit as usize);
        Ok((out, more))
    }

    pub async fn get_delivery(
        &self,
        env: &EnvId,
        endpoint: &WebhookId,
        id: &DeliveryId,
    ) -> Result<Delivery> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE env_id = $1 AND endpoint_id = $2 AND id = $3"
        )))
        .bind(env.as_str())
        .bind(endpoint.as_str())
        .bind(id.as_str())
        .fetch_optional(self.reader())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("delivery {id}")))?;
        delivery_from_row(&row)
    }

    /// The attempt log of a delivery, oldest first.
    pub async fn delivery_attempts(&self, id: &DeliveryId) -> Result<Vec<Attempt>> {
        let rows = sqlx::query(
            "SELECT delivery_id, attempted_at, node, status, latency_ms, response, error, succeeded \
             FROM webhook_attempts WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(id.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }

    /// Puts one delivery back to pending, due now, with a fresh retry schedule.
    pub async fn retry_delivery(
        &self,
        actor: &str,
        now: Timestamp,
        d: &Delivery,
    ) -> Result<Delivery> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = $2, \
             completed_at = NULL, updated_at = $2 WHERE id = $1",
        )
        .bind(d.id.as_str())
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        append_audit(
            &mut tx,
            d.env_id.as_str(),
            now,
            NewAudit::success(
                actor,
                "webhook_delivery.retry",
                d.id.as_str(),
                json!({ "endpoint_id": d.endpoint_id, "event_id": d.event_id, "state_was": d.state.as_str() }),
            ),
        )
        .await?;
        tx.commit().await?;
        self.get_delivery(&d.env_id, &d.endpoint_id, &d.id).await
    }

    /// Re-enqueues every event of the endpoint's environment from `from` that its filter takes:
    /// existing deliveries go back to pending with a fresh schedule, missing ones are created.
    /// Works in batches of one transaction each, so a replay interrupted midway can simply be run
    /// again. Returns how many deliveries were enqueued.
    pub async fn replay_deliveries(
        &self,
        actor: &str,
        now: Timestamp,
        e: &WebhookEndpoint,
        from: ReplayFrom,
    ) -> Result<u64> {
        const BATCH: i64 = 500;
        let (mut after, since) = match from {
            ReplayFrom::AfterSeq(s) => (s, i64::MIN),
            ReplayFrom::Since(t) => (0, t.millis()),
        };
        let mut total = 0u64;
        loop {
            let rows = sqlx::query(
                "SELECT seq, id, type FROM events WHERE env_id = $1 AND seq > $2 AND created_at >= $3 \
                 ORDER BY seq LIMIT $4",
            )
            .bind(e.env_id.as_str())
            .bind(after)
            .bind(since)
            .bind(BATCH)
            .fetch_all(self.reader())
            .await?;
            let Some(last) = rows.last() else { break };
            after = last.try_get("seq")?;
            let mut tx = self.begin().await?;
            for r in &rows {
                let kind: String = r.try_get("type")?;
                if !e.wants(&kind) {
                    continue;
                }
                let id: DeliveryId = self.new_id(now);
                sqlx::query(
                    "INSERT INTO webhook_deliveries (id, env_id, endpoint_id, event_id, event_seq, event_type, \
                     state, attempts, next_attempt_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7, $7) \
                     ON CONFLICT (endpoint_id, event_id) DO UPDATE SET state = 'pending', attempts = 0, \
                     next_attempt_at = excluded.next_attempt_at, completed_at = NULL, updated_at = excluded.updated_at",
                )
                .bind(id.as_str())
                .bind(e.env_id.as_str())
                .bind(e.id.as_str())
                .bind(r.try_get::<String, _>("id")?)
                .bind(r.try_get::<i64, _>("seq")?)
                .bind(kind)
                .bind(now.millis())
                .execute(&mut *tx)
                .await?;
                total += 1;
            }
            tx.commit().await?;
            if rows.len() < BATCH as usize {
                break;
            }
        }
        let detail = json!({ "from": match from {
            ReplayFrom::AfterSeq(s) => json!({ "after_sequence": s }),
            ReplayFrom::Since(t) => json!({ "since": t.to_rfc3339() }),
        }, "enqueued": total });
        self.record_audit(
            e.env_id.as_str(),
            now,
            NewAudit::success(actor, "webhook_endpoint.replay", e.id.as_str(), detail),
        )
        .await?;
        Ok(total)
    }
}
