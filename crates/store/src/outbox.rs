//! The webhook outbox's hot path: deliveries written with their event, due endpoints found,
//! deliveries leased, attempts recorded in batches, and this process's dispatchers woken when a
//! write commits (docs/decisions/0007-webhook-outbox-and-leases.md).
//!
//! Invariants:
//! - **outbox**: a delivery row is written by [`enqueue_deliveries`] inside `append_event`, in the
//!   event's own transaction, for every enabled endpoint of the environment whose filter takes
//!   the event: the event and its deliveries commit together or not at all, so a crash can lose
//!   neither;
//! - **leases**: a delivery is attempted only under a lease (`lease_owner` = one token per
//!   lease, `lease_expires_at`). Taking leases is one `UPDATE … WHERE id IN (SELECT … LIMIT n)
//!   RETURNING`; on PostgreSQL the inner select is `FOR UPDATE SKIP LOCKED` and the outer `WHERE`
//!   repeats the due conditions, so two nodes never hold one delivery at once (the re-check runs
//!   on the row as committed by the other node); on SQLite the single writer serialises it;
//! - an expired lease is taken again (by another node, or by this one after a restart), so a node
//!   that dies mid-delivery delays its deliveries by at most the lease time and loses none;
//! - an attempt's outcome changes the delivery only while its lease is still held: a node whose
//!   lease expired logs its attempt but leaves the delivery to the node that holds it now;
//! - **batches**: [`Store::record_attempts`] logs a batch of attempts and applies each outcome
//!   under its own lease in one transaction. A batch that does not commit changes nothing; its
//!   leases expire and its deliveries are attempted again (at least once, never lost);
//! - **wake-up**: every committed write transaction ([`crate::Tx::commit`]) bumps the store's
//!   commit counter, which this process's dispatchers watch ([`Store::watch_commits`]): a delivery
//!   enqueued here is looked for as soon as its event commits. The signal says "something
//!   committed", not what: a dispatcher that finds nothing due has lost one cheap query. Other
//!   nodes do not see it and find the delivery at their next poll.

use std::collections::HashMap;
use std::sync::Arc;

use portcullis_core::Timestamp;
use portcullis_core::event::{Event, EventType};
use portcullis_core::ids::{DeliveryId, EnvId, EventId, IdGen, WebhookId};
use portcullis_core::webhook::{Attempt, Delivery, WebhookEndpoint, filter_matches};
use serde_json::{Value, json};
use sqlx::Row;
use tokio::sync::watch;

use crate::log::event_from_row;
use crate::webhooks::{
    DELIVERY_COLUMNS, ENDPOINT_COLUMNS, corrupt, delivery_from_row, endpoint_from_row,
};
use crate::{Backend, Conn, Result, Store};

/// Rows per multi-row statement: far below SQLite's and PostgreSQL's bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 200;

/// Counts committed write transactions, for the dispatchers of this process (see the module
/// invariants). Clones share the counter.
#[derive(Clone)]
pub(crate) struct CommitSignal(Arc<watch::Sender<u64>>);

impl CommitSignal {
    pub(crate) fn new() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }

    pub(crate) fn committed(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Writes the outbox rows of a just-appended event: one pending delivery, due now, per enabled
/// endpoint of `env` whose filter takes the event, in one statement. Runs inside the event's
/// transaction (see the module invariants).
///
/// `egress.denied` events about webhook deliveries get no deliveries: a refused delivery would
/// otherwise write an event whose delivery is refused in turn, without end. They remain in the
/// Events API, the audit chain and the metrics.
pub(crate) async fn enqueue_deliveries(
    conn: &mut Conn,
    event: &Event,
    now: Timestamp,
) -> Result<()> {
    if event.event == EventType::EgressDenied.as_str()
        && event.data.get("purpose").and_then(Value::as_str) == Some("webhook")
    {
        return Ok(());
    }
    let rows = sqlx::query(
        "SELECT id, event_types FROM webhook_endpoints WHERE env_id = $1 AND disabled_at IS NULL",
    )
    .bind(event.env_id.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut endpoints = Vec::with_capacity(rows.len());
    for r in rows {
        let types: String = r.try_get("event_types")?;
        let types: Vec<String> = serde_json::from_str(&types).map_err(corrupt)?;
        if filter_matches(&types, &event.event) {
            endpoints.push(r.try_get::<String, _>("id")?);
        }
    }
    let ids = IdGen {
        random: &portcullis_crypto::SystemRandom,
    };
    for chunk in endpoints.chunks(ROWS_PER_STATEMENT) {
        // $1…$5 are the event's; each row adds its delivery ID and endpoint.
        let values: Vec<String> = (0..chunk.len())
            .map(|i| {
                let (id, endpoint) = (6 + 2 * i, 7 + 2 * i);
                format!("(${id}, $1, ${endpoint}, $2, $3, $4, 'pending', 0, $5, $5, $5)")
            })
            .collect();
        let sql = format!(
            "INSERT INTO webhook_deliveries (id, env_id, endpoint_id, event_id, event_seq, \
             event_type, state, attempts, next_attempt_at, created_at, updated_at) VALUES {}",
            values.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(event.env_id.as_str())
            .bind(event.id.as_str())
            .bind(event.seq)
            .bind(&event.event)
            .bind(now.millis());
        for endpoint in chunk {
            let id: DeliveryId = ids.new_id(now);
            q = q.bind(id.as_str().to_owned()).bind(endpoint.as_str());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// How an attempt ended, as the dispatcher decided from the answer and the retry schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Succeeded,
    /// Try again at this time.
    RetryAt(Timestamp),
    /// The schedule is exhausted: the delivery fails and the endpoint is marked failing.
    GaveUp,
}

/// An ended attempt of a delivery held under `lease`, to be recorded.
#[derive(Debug, Clone)]
pub struct LeasedAttempt {
    pub lease: String,
    pub endpoint_id: WebhookId,
    pub attempt: Attempt,
    pub outcome: AttemptOutcome,
}

/// What recording a batch of attempts changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Deliveries whose lease had expired: the attempt is logged, the delivery left to whoever
    /// holds it now.
    pub lease_lost: Vec<DeliveryId>,
    /// Endpoints that went from active to failing (a `webhook_endpoint.failing` event was
    /// written).
    pub endpoints_failing: Vec<WebhookId>,
    /// Endpoints that went from failing to active (`webhook_endpoint.recovered`).
    pub endpoints_recovered: Vec<WebhookId>,
}

/// Who takes leases, when, and until when.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// The lease token: one per pass of one node.
    pub owner: &'a str,
    pub now: Timestamp,
    pub until: Timestamp,
}

impl Store {
    /// A receiver that changes after every committed write transaction of this store (and its
    /// clones): the dispatcher's wake-up (see the module invariants).
    pub fn watch_commits(&self) -> watch::Receiver<u64> {
        self.commits.0.subscribe()
    }

    /// Endpoints (enabled) that have deliveries due at `now` and not under a live lease: one
    /// probe of the pending index per endpoint.
    pub async fn due_webhook_endpoints(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<WebhookEndpoint>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints e WHERE disabled_at IS NULL AND EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.state = 'pending' \
              AND d.next_attempt_at <= $1 AND (d.lease_expires_at IS NULL OR d.lease_expires_at <= $1)) \
             ORDER BY id LIMIT $2"
        )))
        .bind(now.millis())
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(endpoint_from_row).collect()
    }

    /// Leases up to `n` due deliveries of `endpoint` to `owner` until `until`, oldest first.
    pub async fn lease_deliveries(
        &self,
        endpoint: &WebhookId,
        owner: &str,
        now: Timestamp,
        until: Timestamp,
        n: u32,
    ) -> Result<Vec<Delivery>> {
        let lease = Lease { owner, now, until };
        let (_, leased) = self.record_and_lease(&[], &[(endpoint, n)], &lease).await?;
        Ok(leased)
    }

    /// Records a batch of attempts (see [`Store::record_and_lease`]).
    pub async fn record_attempts(
        &self,
        batch: &[LeasedAttempt],
        now: Timestamp,
    ) -> Result<Recorded> {
        let lease = Lease {
            owner: "",
            now,
            until: now,
        };
        let (rec, _) = self.record_and_lease(batch, &[], &lease).await?;
        Ok(rec)
    }

    /// A dispatcher pass's bookkeeping in one transaction: logs the attempts of `ended` and,
    /// for each one whose lease is still held, applies its outcome (success, the next attempt
    /// time, or failure, which marks the endpoint failing and writes `webhook_endpoint.failing`
    /// on the transition; a success on a failing endpoint makes it active again with
    /// `webhook_endpoint.recovered`); then leases up to `n` due deliveries of each endpoint of
    /// `wants`, oldest first. Returns what recording changed and the leased deliveries, by
    /// endpoint in the order of `wants`.
    pub async fn record_and_lease(
        &self,
        ended: &[LeasedAttempt],
        wants: &[(&WebhookId, u32)],
        lease: &Lease<'_>,
    ) -> Result<(Recorded, Vec<Delivery>)> {
        let mut tx = self.begin().await?;
        let rec = self.record_in(&mut tx, ended, lease.now).await?;
        let mut leased = Vec::new();
        for (endpoint, n) in wants {
            leased.extend(self.lease_in(&mut tx, endpoint, *n, lease).await?);
        }
        if ended.is_empty() && leased.is_empty() {
            // Nothing changed: no commit, so no wake-up of the dispatchers for nothing.
            tx.rollback().await?;
        } else {
            tx.commit().await?;
        }
        Ok((rec, leased))
    }

    async fn lease_in(
        &self,
        tx: &mut Conn,
        endpoint: &WebhookId,
        n: u32,
        lease: &Lease<'_>,
    ) -> Result<Vec<Delivery>> {
        let due = "state = 'pending' AND next_attempt_at <= $3 \
                   AND (lease_expires_at IS NULL OR lease_expires_at <= $3)";
        // In the order of the pending index: its first rows, not a sort of the backlog.
        let pick = format!(
            "SELECT id FROM webhook_deliveries WHERE endpoint_id = $4 AND {due} \
             ORDER BY next_attempt_at, event_seq LIMIT $5"
        );
        let set = "UPDATE webhook_deliveries SET lease_owner = $1, lease_expires_at = $2, updated_at = $3";
        // PostgreSQL: the pick runs exactly once (a materialised CTE; a plain `IN (subquery)` may
        // be rescanned, taking more than `n` rows) and skips rows another node is leasing; the
        // outer `WHERE` re-checks the due conditions on each row as last committed.
        let sql = match self.backend() {
            Backend::Postgres => format!(
                "WITH picked AS MATERIALIZED ({pick} FOR UPDATE SKIP LOCKED) \
                 {set} WHERE id IN (SELECT id FROM picked) AND {due} RETURNING {DELIVERY_COLUMNS}"
            ),
            Backend::Sqlite => {
                format!("{set} WHERE id IN ({pick}) AND {due} RETURNING {DELIVERY_COLUMNS}")
            }
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease.owner)
            .bind(lease.until.millis())
            .bind(lease.now.millis())
            .bind(endpoint.as_str())
            .bind(i64::from(n))
            .fetch_all(&mut *tx)
            .await?;
        let mut out = rows
            .iter()
            .map(delivery_from_row)
            .collect::<Result<Vec<_>>>()?;
        out.sort_by_key(|d| d.event_seq);
        Ok(out)
    }

    /// Gives back leases that were not used (a stopping dispatcher's queued deliveries): each
    /// delivery still under the given lease is due again at once, for any node.
    pub async fn release_leases(&self, held: &[(&str, &DeliveryId)]) -> Result<()> {
        if held.is_empty() {
            return Ok(());
        }
        let mut by_lease: HashMap<&str, Vec<&DeliveryId>> = HashMap::new();
        for (lease, id) in held {
            by_lease.entry(*lease).or_default().push(*id);
        }
        let mut tx = self.begin().await?;
        for (lease, ids) in &by_lease {
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", 2 + i)).collect();
                let sql = format!(
                    "UPDATE webhook_deliveries SET lease_owner = NULL, lease_expires_at = NULL \
                     WHERE lease_owner = $1 AND id IN ({})",
                    list.join(", ")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(*lease);
                for id in chunk {
                    q = q.bind(id.as_str());
                }
                q.execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// The events with these IDs (of any environment), for building delivery bodies.
    pub async fn events_by_id(&self, ids: &[&EventId]) -> Result<Vec<Event>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(ROWS_PER_STATEMENT) {
            let list: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT env_id, seq, id, type, org_id, data, created_at FROM events WHERE id IN ({})",
                list.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in chunk {
                q = q.bind(id.as_str());
            }
            for r in q.fetch_all(self.reader()).await? {
                out.push(event_from_row(&r)?);
            }
        }
        Ok(out)
    }

    /// The recording half of [`Store::record_and_lease`]: every attempt in one multi-row insert,
    /// the successes of one lease in one update.
    async fn record_in(
        &self,
        tx: &mut Conn,
        batch: &[LeasedAttempt],
        now: Timestamp,
    ) -> Result<Recorded> {
        let mut rec = Recorded::default();
        if batch.is_empty() {
            return Ok(rec);
        }
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            insert_attempts(tx, chunk).await?;
        }
        // The delivery each held lease belongs to: its environment.
        let mut held: HashMap<DeliveryId, EnvId> = HashMap::new();
        let mut successes: HashMap<(&str, Option<u16>), Vec<&DeliveryId>> = HashMap::new();
        for a in batch {
            let (state, next, completed) = match a.outcome {
                AttemptOutcome::Succeeded => {
                    successes
                        .entry((a.lease.as_str(), a.attempt.status))
                        .or_default()
                        .push(&a.attempt.delivery_id);
                    continue;
                }
                AttemptOutcome::RetryAt(t) => ("pending", Some(t.millis()), None),
                AttemptOutcome::GaveUp => ("failed", None, Some(now.millis())),
            };
            let row = sqlx::query(
                "UPDATE webhook_deliveries SET state = $3, attempts = attempts + 1, next_attempt_at = $4, \
                 completed_at = $5, last_status = $6, last_error = $7, lease_owner = NULL, \
                 lease_expires_at = NULL, updated_at = $8 WHERE id = $1 AND lease_owner = $2 \
                 RETURNING env_id",
            )
            .bind(a.attempt.delivery_id.as_str())
            .bind(&a.lease)
            .bind(state)
            .bind(next)
            .bind(completed)
            .bind(a.attempt.status.map(i64::from))
            .bind(a.attempt.error.clone())
            .bind(now.millis())
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(r) = row {
                held.insert(
                    a.attempt.delivery_id.clone(),
                    EnvId::from_stored(r.try_get("env_id")?),
                );
            }
        }
        for ((lease, status), ids) in &successes {
            for chunk in ids.chunks(ROWS_PER_STATEMENT) {
                let list: Vec<String> = (0..chunk.len()).map(|i| format!("${}", 4 + i)).collect();
                let sql = format!(
                    "UPDATE webhook_deliveries SET state = 'succeeded', attempts = attempts + 1, \
                     next_attempt_at = NULL, completed_at = $1, last_status = $3, last_error = NULL, \
                     lease_owner = NULL, lease_expires_at = NULL, updated_at = $1 \
                     WHERE lease_owner = $2 AND id IN ({}) RETURNING id, env_id",
                    list.join(", ")
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(now.millis())
                    .bind(*lease)
                    .bind(status.map(i64::from));
                for id in chunk {
                    q = q.bind(id.as_str());
                }
                for r in q.fetch_all(&mut *tx).await? {
                    held.insert(
                        DeliveryId::from_stored(r.try_get("id")?),
                        EnvId::from_stored(r.try_get("env_id")?),
                    );
                }
            }
        }
        // Endpoint state transitions, in batch order; each endpoint's state is asked at most
        // once per direction.
        let mut known: HashMap<&WebhookId, &str> = HashMap::new();
        for a in batch {
            let Some(env) = held.get(&a.attempt.delivery_id) else {
                rec.lease_lost.push(a.attempt.delivery_id.clone());
                continue;
            };
            let (from, to, kind) = match a.outcome {
                AttemptOutcome::GaveUp => ("active", "failing", EventType::WebhookEndpointFailing),
                AttemptOutcome::Succeeded => {
                    ("failing", "active", EventType::WebhookEndpointRecovered)
                }
                AttemptOutcome::RetryAt(_) => continue,
            };
            if known.get(&a.endpoint_id) == Some(&to) {
                continue;
            }
            known.insert(&a.endpoint_id, to);
            if self
                .flip_endpoint(tx, env, &a.endpoint_id, (from, to, kind), &a.attempt, now)
                .await?
            {
                if to == "failing" {
                    rec.endpoints_failing.push(a.endpoint_id.clone());
                } else {
                    rec.endpoints_recovered.push(a.endpoint_id.clone());
                }
            }
        }
        Ok(rec)
    }

    /// Moves `endpoint` from state `from` to `to`, writing `kind` and its audit record if it was
    /// in `from`. Returns whether it moved.
    async fn flip_endpoint(
        &self,
        tx: &mut Conn,
        env: &EnvId,
        endpoint: &WebhookId,
        (from, to, kind): (&str, &str, EventType),
        attempt: &Attempt,
        now: Timestamp,
    ) -> Result<bool> {
        let changed =
            sqlx::query("UPDATE webhook_endpoints SET state = $3 WHERE id = $1 AND state = $2")
                .bind(endpoint.as_str())
                .bind(from)
                .bind(to)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if !changed {
            return Ok(false);
        }
        let data = json!({
            "id": endpoint, "object": "webhook_endpoint", "state": to,
            "delivery_id": attempt.delivery_id, "status": attempt.status,
            "error": attempt.error,
        });
        self.record_change(
            tx,
            env,
            now,
            (kind, None),
            (
                "system:webhook-dispatcher",
                kind.as_str(),
                endpoint.as_str(),
            ),
            data,
        )
        .await?;
        Ok(true)
    }
}

/// The attempt log rows of `batch`, in one statement.
async fn insert_attempts(conn: &mut Conn, batch: &[LeasedAttempt]) -> Result<()> {
    const COLUMNS: usize = 8;
    let values: Vec<String> = (0..batch.len())
        .map(|i| {
            let p: Vec<String> = (1..=COLUMNS)
                .map(|c| format!("${}", i * COLUMNS + c))
                .collect();
            format!("({})", p.join(", "))
        })
        .collect();
    let sql = format!(
        "INSERT INTO webhook_attempts (delivery_id, attempted_at, node, status, latency_ms, \
         response, error, succeeded) VALUES {}",
        values.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for LeasedAttempt { attempt: a, .. } in batch {
        q = q
            .bind(a.delivery_id.as_str())
            .bind(a.attempted_at.millis())
            .bind(a.node.as_str())
            .bind(a.status.map(i64::from))
            .bind(a.latency_ms)
            .bind(a.response.as_deref())
            .bind(a.error.as_deref())
            .bind(i64::from(a.succeeded));
    }
    q.execute(&mut *conn).await?;
    Ok(())
}
