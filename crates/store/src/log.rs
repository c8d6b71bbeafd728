//! The two append-only records: the per-environment event log and the hash-chained audit trail.
//!
//! Both are appended inside the caller's transaction, so a change and its record commit together.
//! Numbering takes a row lock (`UPDATE … RETURNING`) on the environment's counter or the chain
//! head, which on PostgreSQL also makes commit order equal number order within an environment:
//! a reader paging by number never skips an event that commits later with a smaller number.
//!
//! The webhook outbox is written here too: [`append_event`] inserts, in the same transaction, one
//! delivery row per enabled webhook endpoint of the environment whose filter takes the event
//! (`outbox::enqueue_deliveries`). Every caller therefore gets the outbox for free, and an event
//! can never commit without its deliveries, nor a delivery without its event.

use portcullis_core::Timestamp;
use portcullis_core::audit::{AuditRecord, ChainHead, GENESIS, NewAudit, Outcome};
use portcullis_core::event::{Event, NewEvent};
use portcullis_core::ids::{EnvId, EventId, OrgId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Conn, Result, Store, StoreError};

/// The `previous_attributes` of an `*.updated` event: every top-level field of `after` whose
/// value differs in `before`, with its value before the change.
pub fn previous_attributes(
    before: &serde_json::Value,
    after: &serde_json::Value,
) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    if let (Some(b), Some(a)) = (before.as_object(), after.as_object()) {
        for (k, v) in b {
            if a.get(k) != Some(v) {
                out.insert(k.clone(), v.clone());
            }
        }
    }
    serde_json::Value::Object(out)
}

/// Appends an event to `env`'s log and returns it with its number.
pub async fn append_event(
    conn: &mut Conn,
    env: &EnvId,
    now: Timestamp,
    e: NewEvent,
) -> Result<Event> {
    let seq: i64 = sqlx::query_scalar(
        "UPDATE environments SET event_seq = event_seq + 1 WHERE id = $1 RETURNING event_seq",
    )
    .bind(env.as_str())
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("environment {env}")))?;
    sqlx::query(
        "INSERT INTO events (env_id, seq, id, type, org_id, data, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(env.as_str())
    .bind(seq)
    .bind(e.id.as_str())
    .bind(e.kind.as_str())
    .bind(e.org_id.as_ref().map(|o| o.as_str().to_owned()))
    .bind(e.data.to_string())
    .bind(now.millis())
    .execute(&mut *conn)
    .await?;
    let event = Event {
        id: e.id,
        env_id: env.clone(),
        seq,
        event: e.kind.as_str().to_owned(),
        organization_id: e.org_id,
        data: e.data,
        created_at: now,
    };
    // Invariant (outbox): the deliveries commit with the event or not at all.
    crate::outbox::enqueue_deliveries(conn, &event, now).await?;
    Ok(event)
}

impl Store {
    /// A change users can see: its event in `env`'s log and its audit record in `env`'s chain,
    /// of the same data, in the caller's transaction.
    pub(crate) async fn record_change(
        &self,
        conn: &mut Conn,
        env: &EnvId,
        now: Timestamp,
        (kind, org_id): (portcullis_core::event::EventType, Option<OrgId>),
        (actor, action, target): (&str, &str, &str),
        data: serde_json::Value,
    ) -> Result<()> {
        let event = NewEvent {
            id: self.new_id(now),
            kind,
            org_id,
            data: data.clone(),
        };
        append_event(conn, env, now, event).await?;
        append_audit(
            conn,
            env.as_str(),
            now,
            NewAudit::success(actor, action, target, data),
        )
        .await?;
        Ok(())
    }
}

/// Links a new record into `chain` and returns it.
pub async fn append_audit(
    conn: &mut Conn,
    chain: &str,
    now: Timestamp,
    a: NewAudit,
) -> Result<AuditRecord> {
    sqlx::query("INSERT INTO audit_heads (chain, seq, hash) VALUES ($1, 0, $2) ON CONFLICT (chain) DO NOTHING")
        .bind(chain)
        .bind(GENESIS)
        .execute(&mut *conn)
        .await?;
    let row =
        sqlx::query("UPDATE audit_heads SET seq = seq + 1 WHERE chain = $1 RETURNING seq, hash")
            .bind(chain)
            .fetch_one(&mut *conn)
            .await?;
    let mut rec = AuditRecord {
        chain: chain.to_owned(),
        seq: row.try_get("seq")?,
        at: now,
        actor: a.actor,
        action: a.action,
        target: a.target,
        outcome: a.outcome,
        detail: a.detail.to_string(),
        prev_hash: row.try_get("hash")?,
        hash: String::new(),
    };
    rec.hash = portcullis_crypto::sha256_hex(&rec.canonical_bytes());
    sqlx::query(
        "INSERT INTO audit_records (chain, seq, at, actor, action, target, outcome, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&rec.chain)
    .bind(rec.seq)
    .bind(rec.at.millis())
    .bind(&rec.actor)
    .bind(&rec.action)
    .bind(&rec.target)
    .bind(rec.outcome.as_str())
    .bind(&rec.detail)
    .bind(&rec.prev_hash)
    .bind(&rec.hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_heads SET hash = $2 WHERE chain = $1")
        .bind(chain)
        .bind(&rec.hash)
        .execute(&mut *conn)
        .await?;
    Ok(rec)
}

/// One page of an environment's events.
#[derive(Debug, Clone)]
pub struct EventPage {
    pub events: Vec<Event>,
    pub has_more: bool,
}

pub(crate) fn event_from_row(r: &AnyRow) -> Result<Event> {
    let data: String = r.try_get("data")?;
    Ok(Event {
        id: EventId::from_stored(r.try_get("id")?),
        env_id: EnvId::from_stored(r.try_get("env_id")?),
        seq: r.try_get("seq")?,
        event: r.try_get("type")?,
        organization_id: r
            .try_get::<Option<String>, _>("org_id")?
            .map(OrgId::from_stored),
        data: serde_json::from_str(&data).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: Timestamp(r.try_get("created_at")?),
    })
}

fn audit_from_row(r: &AnyRow) -> Result<AuditRecord> {
    let outcome: String = r.try_get("outcome")?;
    Ok(AuditRecord {
        chain: r.try_get("chain")?,
        seq: r.try_get("seq")?,
        at: Timestamp(r.try_get("at")?),
        actor: r.try_get("actor")?,
        action: r.try_get("action")?,
        target: r.try_get("target")?,
        // An unknown outcome is kept verifiable: it fails the hash check instead of the decode.
        outcome: Outcome::parse(&outcome).unwrap_or(Outcome::Failure),
        detail: r.try_get("detail")?,
        prev_hash: r.try_get("prev_hash")?,
        hash: r.try_get("hash")?,
    })
}

impl Store {
    /// Events of `env` numbered after `after_seq`, oldest first, at most `limit`.
    pub async fn list_events(&self, env: &EnvId, after_seq: i64, limit: u32) -> Result<EventPage> {
        let rows = sqlx::query(
            "SELECT env_id, seq, id, type, org_id, data, created_at FROM events \
             WHERE env_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(env.as_str())
        .bind(after_seq)
        .bind(i64::from(limit) + 1)
        .fetch_all(self.reader())
        .await?;
        let mut events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        let has_more = events.len() > limit as usize;
        events.truncate(limit as usize);
        Ok(EventPage { events, has_more })
    }

    /// Appends a record outside of any other change (e.g. a refused action).
    pub async fn record_audit(
        &self,
        chain: &str,
        now: Timestamp,
        a: NewAudit,
    ) -> Result<AuditRecord> {
        let mut tx = self.begin().await?;
        let rec = append_audit(&mut tx, chain, now, a).await?;
        tx.commit().await?;
        Ok(rec)
    }

    /// Every record of `chain` in number order.
    pub async fn audit_records(
        &self,
        chain: &str,
        after_seq: i64,
        limit: Option<u32>,
    ) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(
            "SELECT chain, seq, at, actor, action, target, outcome, detail, prev_hash, hash \
             FROM audit_records WHERE chain = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(chain)
        .bind(after_seq)
        .bind(limit.map_or(i64::MAX, i64::from))
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(audit_from_row).collect()
    }

    pub async fn audit_head(&self, chain: &str) -> Result<Option<ChainHead>> {
        let row = sqlx::query("SELECT seq, hash FROM audit_heads WHERE chain = $1")
            .bind(chain)
            .fetch_optional(self.reader())
            .await?;
        row.map(|r| {
            Ok(ChainHead {
                seq: r.try_get("seq")?,
                hash: r.try_get("hash")?,
            })
        })
        .transpose()
    }

    /// Every chain that has a head or a record.
    pub async fn audit_chains(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT chain FROM audit_heads UNION SELECT DISTINCT chain FROM audit_records ORDER BY 1",
        )
        .fetch_all(self.reader())
        .await?)
    }
}

impl Store {
    /// Appends an event (if any) and an audit record about something that changed no other row
    /// (a sign-in, a refused token request, a detected reuse), in one transaction.
    pub async fn record(
        &self,
        env: &EnvId,
        now: Timestamp,
        kind: Option<(
            portcullis_core::event::EventType,
            Option<OrgId>,
            serde_json::Value,
        )>,
        audit: NewAudit,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        if let Some((kind, org_id, data)) = kind {
            append_event(
                &mut tx,
                env,
                now,
                NewEvent {
                    id: self.new_id(now),
                    kind,
                    org_id,
                    data,
                },
            )
            .await?;
        }
        append_audit(&mut tx, env.as_str(), now, audit).await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Which events to list (Events API): a window of sequence numbers, types, organization, time.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub after_seq: Option<i64>,
    pub before_seq: Option<i64>,
    pub types: Vec<String>,
    pub org: Option<String>,
    pub start: Option<Timestamp>,
    pub end: Option<Timestamp>,
    pub limit: u32,
}

impl Store {
    /// The sequence number of event `id` in `env`, if it exists there.
    pub async fn event_seq(&self, env: &EnvId, id: &str) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT seq FROM events WHERE env_id = $1 AND id = $2")
                .bind(env.as_str())
                .bind(id)
                .fetch_optional(self.reader())
                .await?,
        )
    }

    /// Events matching `f`, oldest first. With `before_seq` and no `after_seq`, the page is the
    /// one just before that event (still returned oldest first).
    pub async fn query_events(&self, env: &EnvId, f: &EventFilter) -> Result<EventPage> {
        let mut sql = String::from(
            "SELECT env_id, seq, id, type, org_id, data, created_at FROM events WHERE env_id = $1",
        );
        let mut n = 1;
        let mut next = |sql: &mut String, cond: &str| {
            n += 1;
            sql.push_str(&cond.replace('?', &format!("${n}")));
        };
        if f.after_seq.is_some() {
            next(&mut sql, " AND seq > ?");
        }
        if f.before_seq.is_some() {
            next(&mut sql, " AND seq < ?");
        }
        if f.org.is_some() {
            next(&mut sql, " AND org_id = ?");
        }
        if f.start.is_some() {
            next(&mut sql, " AND created_at >= ?");
        }
        if f.end.is_some() {
            next(&mut sql, " AND created_at < ?");
        }
        if !f.types.is_empty() {
            let first = n + 1;
            let list: Vec<String> = (0..f.types.len())
                .map(|i| format!("${}", first + i))
                .collect();
            n += f.types.len();
            sql.push_str(&format!(" AND type IN ({})", list.join(", ")));
        }
        let backwards = f.before_seq.is_some() && f.after_seq.is_none();
        sql.push_str(if backwards {
            " ORDER BY seq DESC"
        } else {
            " ORDER BY seq"
        });
        sql.push_str(&format!(" LIMIT ${}", n + 1));
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(env.as_str());
        if let Some(a) = f.after_seq {
            q = q.bind(a);
        }
        if let Some(b) = f.before_seq {
            q = q.bind(b);
        }
        if let Some(o) = &f.org {
            q = q.bind(o.clone());
        }
        if let Some(s) = f.start {
            q = q.bind(s.millis());
        }
        if let Some(e) = f.end {
            q = q.bind(e.millis());
        }
        for t in &f.types {
            q = q.bind(t.clone());
        }
        let rows = q
            .bind(i64::from(f.limit) + 1)
            .fetch_all(self.reader())
            .await?;
        let mut events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        let has_more = events.len() > f.limit as usize;
        events.truncate(f.limit as usize);
        if backwards {
            events.reverse();
        }
        Ok(EventPage { events, has_more })
    }
}
