//! The inventory of machine credentials, their last use, and the expiry sweep.
//!
//! - **Inventory** ([`Store::credential_inventory`]): one row per client secret (and the previous
//!   one during its overlap), per `private_key_jwt` key (`kid`), per API key, per webhook secret
//!   (and the previous one during its overlap). Read-only: it reads the owning tables as they are.
//! - **Last use**: API keys carry `last_used_at` (written at most once a minute); a client secret
//!   or JWT key is recorded by [`Store::note_credential_use`] on successful client authentication,
//!   at most once a minute per credential and node (an in-memory map keeps the token endpoint a
//!   read); a webhook secret was last used by the latest successful delivery.
//! - **Expiry** ([`Store::sweep_credentials`]): each credential past its expiry gets one
//!   `credential.expired` event and audit record, exactly once — a row in
//!   `credential_expiry_notices` (primary key: reference and expiry) is written in the same
//!   transaction, so a second node or a second pass finds it and does nothing. A rotated API key
//!   whose overlap ended is revoked in that transaction.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};

use portcullis_core::Timestamp;
use portcullis_core::audit::NewAudit;
use portcullis_core::credential::{
    Credential, CredentialKind, client_jwk_reference, client_secret_reference, jwks_kids,
};
use portcullis_core::event::{EventType, NewEvent};
use portcullis_core::ids::EnvId;
use portcullis_core::model::ApiKeyKind;
use portcullis_core::oauth::AuthMethod;
use serde_json::{Value, json};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::api_keys::chain_of;
use crate::log::{append_audit, append_event};
use crate::{Result, Store};

/// A credential's use is written at most this often per node.
const USE_RESOLUTION_MS: i64 = 60_000;

/// Credential reference → the last use this node wrote.
pub type UsageMemo = Arc<RwLock<HashMap<String, i64>>>;

fn opt_ts(r: &AnyRow, col: &str) -> Result<Option<Timestamp>> {
    Ok(r.try_get::<Option<i64>, _>(col)?.map(Timestamp))
}

/// `$1` is an environment ID, or empty for every environment.
const ENV_FILTER: &str = "($1 = '' OR env_id = $1)";

struct Usage {
    created_at: Option<Timestamp>,
    last_used_at: Option<Timestamp>,
}

/// A credential past its expiry, before it is announced.
struct Expiring {
    credential: Credential,
    expires_at: Timestamp,
    /// `expired` (its own expiry) or `overlap_ended` (replaced by a rotation).
    reason: &'static str,
}

impl Store {
    /// Records a successful use of a client's credential (`reference` names the secret or key).
    pub async fn note_credential_use(
        &self,
        env: &EnvId,
        owner: &str,
        reference: &str,
        now: Timestamp,
    ) -> Result<()> {
        let recent = |m: &HashMap<String, i64>| {
            m.get(reference)
                .is_some_and(|t| (0..USE_RESOLUTION_MS).contains(&(now.millis() - t)))
        };
        // The common case takes only the shared lock.
        if self.usage_memo.read().is_ok_and(|m| recent(&m)) {
            return Ok(());
        }
        if let Ok(mut m) = self.usage_memo.write() {
            if recent(&m) {
                return Ok(());
            }
            if m.len() > 100_000 {
                m.clear();
            }
            m.insert(reference.to_owned(), now.millis());
        }
        sqlx::query(
            "INSERT INTO credential_usage (reference, env_id, owner_id, last_used_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (reference) DO UPDATE SET last_used_at = CASE \
               WHEN credential_usage.last_used_at IS NULL OR credential_usage.last_used_at < excluded.last_used_at \
               THEN excluded.last_used_at ELSE credential_usage.last_used_at END",
        )
        .bind(reference)
        .bind(env.as_str())
        .bind(owner)
        .bind(now.millis())
        .execute(&self.write)
        .await?;
        Ok(())
    }

    /// Every machine credential of `env`, or of every environment and the global admin keys
    /// (`None`). Replaced secrets are listed only until their overlap ends (they are gone then).
    pub async fn credential_inventory(
        &self,
        env: Option<&EnvId>,
        now: Timestamp,
    ) -> Result<Vec<Credential>> {
        self.inventory(env.map_or("", |e| e.as_str()), Some(now))
            .await
    }

    /// The inventory; with `now = None` replaced secrets are kept past their overlap and webhook
    /// last uses are not looked up (what the sweep needs).
    async fn inventory(&self, filter: &str, now: Option<Timestamp>) -> Result<Vec<Credential>> {
        let usage: HashMap<String, Usage> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT reference, created_at, last_used_at FROM credential_usage WHERE {ENV_FILTER}"
        )))
        .bind(filter)
        .fetch_all(self.reader())
        .await?
        .iter()
        .map(|r| {
            Ok((
                r.try_get::<String, _>("reference")?,
                Usage {
                    created_at: opt_ts(r, "created_at")?,
                    last_used_at: opt_ts(r, "last_used_at")?,
                },
            ))
        })
        .collect::<Result<_>>()?;
        let mut out = self.client_credentials(filter, &usage, now).await?;
        out.extend(self.api_key_credentials(filter).await?);
        out.extend(self.webhook_credentials(filter, now).await?);
        let order = |k: CredentialKind| CredentialKind::ALL.iter().position(|x| *x == k);
        out.sort_by(|a, b| {
            (&a.env_id, order(a.kind), &a.owner_name, &a.reference).cmp(&(
                &b.env_id,
                order(b.kind),
                &b.owner_name,
                &b.reference,
            ))
        });
        Ok(out)
    }

    async fn client_credentials(
        &self,
        filter: &str,
        usage: &HashMap<String, Usage>,
        now: Option<Timestamp>,
    ) -> Result<Vec<Credential>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, env_id, name, auth_method, jwks, secret_digest, secret_created_at, secret_expires_at, \
             previous_secret_digest, previous_secret_created_at, previous_secret_expires_at, updated_at \
             FROM clients WHERE {ENV_FILTER} ORDER BY id"
        )))
        .bind(filter)
        .fetch_all(self.reader())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let id: String = r.try_get("id")?;
            let env_id = EnvId::from_stored(r.try_get("env_id")?);
            let name: String = r.try_get("name")?;
            let base = |kind, reference: String| Credential {
                reference,
                kind,
                env_id: Some(env_id.clone()),
                owner_id: id.clone(),
                owner_name: name.clone(),
                created_at: None,
                last_used_at: None,
                expires_at: None,
                revoked_at: None,
                superseded: false,
            };
            let last_used = |reference: &str| usage.get(reference).and_then(|u| u.last_used_at);
            if let Some(d) = r.try_get::<Option<String>, _>("secret_digest")? {
                let reference = client_secret_reference(&id, &d);
                out.push(Credential {
                    created_at: opt_ts(r, "secret_created_at")?,
                    last_used_at: last_used(&reference),
                    expires_at: opt_ts(r, "secret_expires_at")?,
                    ..base(CredentialKind::ClientSecret, reference)
                });
            }
            let previous_until = opt_ts(r, "previous_secret_expires_at")?;
            if let (Some(d), Some(until)) = (
                r.try_get::<Option<String>, _>("previous_secret_digest")?,
                previous_until,
            ) && now.is_none_or(|n| n < until)
            {
                let reference = client_secret_reference(&id, &d);
                out.push(Credential {
                    created_at: opt_ts(r, "previous_secret_created_at")?,
                    last_used_at: last_used(&reference),
                    expires_at: Some(until),
                    ..base(CredentialKind::ClientSecretPrevious, reference)
                });
            }
            let method: String = r.try_get("auth_method")?;
            if AuthMethod::parse(&method) == Some(AuthMethod::PrivateKeyJwt) {
                let jwks = r
                    .try_get::<Option<String>, _>("jwks")?
                    .and_then(|j| serde_json::from_str::<Value>(&j).ok());
                // A key not recorded yet (added by a path that does not record keys) counts from
                // the client's last change, when it was at the latest added.
                let fallback = Timestamp(r.try_get("updated_at")?);
                for kid in jwks_kids(jwks.as_ref()) {
                    let reference = client_jwk_reference(&id, &kid);
                    let u = usage.get(&reference);
                    out.push(Credential {
                        created_at: u.and_then(|u| u.created_at).or(Some(fallback)),
                        last_used_at: u.and_then(|u| u.last_used_at),
                        ..base(CredentialKind::PrivateKeyJwt, reference)
                    });
                }
            }
        }
        Ok(out)
    }

    async fn api_key_credentials(&self, filter: &str) -> Result<Vec<Credential>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM api_keys WHERE {ENV_FILTER} ORDER BY id",
            crate::api_keys::COLUMNS
        )))
        .bind(filter)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                let k = crate::api_keys::key_from_row(r)?;
                Ok(Credential {
                    reference: k.id.to_string(),
                    kind: match k.kind {
                        ApiKeyKind::Admin => CredentialKind::AdminApiKey,
                        ApiKeyKind::Environment => CredentialKind::EnvironmentApiKey,
                    },
                    env_id: k.env_id,
                    owner_id: k.id.to_string(),
                    owner_name: k.name,
                    created_at: Some(k.created_at),
                    last_used_at: k.last_used_at,
                    expires_at: k.expires_at,
                    revoked_at: k.revoked_at,
                    superseded: k.replaced_by.is_some(),
                })
            })
            .collect()
    }

    async fn webhook_credentials(
        &self,
        filter: &str,
        now: Option<Timestamp>,
    ) -> Result<Vec<Credential>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id, env_id, url, COALESCE(secret_created_at, created_at) AS secret_created_at, \
             previous_secret_created_at, \
             CASE WHEN previous_secret IS NULL THEN NULL ELSE previous_secret_expires_at END AS previous_until \
             FROM webhook_endpoints WHERE {ENV_FILTER} ORDER BY id"
        )))
        .bind(filter)
        .fetch_all(self.reader())
        .await?;
        let mut out = Vec::new();
        for r in &rows {
            let id: String = r.try_get("id")?;
            // Signing is the secret's use: the latest delivery the receiver accepted. The
            // (endpoint, sequence) index finds it from the newest end.
            let last_used: Option<i64> = match now {
                None => None,
                Some(_) => sqlx::query_scalar(
                    "SELECT completed_at FROM webhook_deliveries WHERE endpoint_id = $1 AND state = 'succeeded' \
                     ORDER BY event_seq DESC LIMIT 1",
                )
                .bind(&id)
                .fetch_optional(self.reader())
                .await?
                .flatten(),
            };
            let current = Credential {
                reference: format!("{id}/secret"),
                kind: CredentialKind::WebhookSecret,
                env_id: Some(EnvId::from_stored(r.try_get("env_id")?)),
                owner_id: id.clone(),
                owner_name: r.try_get("url")?,
                created_at: opt_ts(r, "secret_created_at")?,
                last_used_at: last_used.map(Timestamp),
                expires_at: None,
                revoked_at: None,
                superseded: false,
            };
            if let Some(until) = opt_ts(r, "previous_until")?.filter(|u| now.is_none_or(|n| n < *u))
            {
                out.push(Credential {
                    reference: format!("{id}/secret/previous"),
                    kind: CredentialKind::WebhookSecretPrevious,
                    created_at: opt_ts(r, "previous_secret_created_at")?,
                    expires_at: Some(until),
                    ..current.clone()
                });
            }
            out.push(current);
        }
        Ok(out)
    }

    /// One pass of the expiry sweep at `now`: records first-seen times of `private_key_jwt` keys
    /// added without being recorded, then announces every credential past its expiry that was
    /// not announced yet. Returns the references announced by this pass.
    pub async fn sweep_credentials(&self, actor: &str, now: Timestamp) -> Result<Vec<String>> {
        self.record_unseen_keys().await?;
        let noticed: HashSet<(String, i64)> =
            sqlx::query("SELECT reference, expires_at FROM credential_expiry_notices")
                .fetch_all(self.reader())
                .await?
                .iter()
                .map(|r| Ok((r.try_get("reference")?, r.try_get("expires_at")?)))
                .collect::<Result<_>>()?;
        let mut announced = Vec::new();
        for e in self.expiring(now).await? {
            if noticed.contains(&(e.credential.reference.clone(), e.expires_at.millis())) {
                continue;
            }
            if self.announce_expiry(actor, now, &e).await? {
                announced.push(e.credential.reference);
            }
        }
        Ok(announced)
    }

    async fn record_unseen_keys(&self) -> Result<()> {
        let dated: HashSet<String> = sqlx::query_scalar(
            "SELECT reference FROM credential_usage WHERE created_at IS NOT NULL",
        )
        .fetch_all(self.reader())
        .await?
        .into_iter()
        .collect();
        for c in self.all_clients().await? {
            if c.auth_method != AuthMethod::PrivateKeyJwt {
                continue;
            }
            let unseen = jwks_kids(c.jwks.as_ref())
                .iter()
                .any(|k| !dated.contains(&client_jwk_reference(c.id.as_str(), k)));
            if unseen {
                let mut tx = self.begin().await?;
                crate::credential_rotation::note_client_keys(&mut tx, &c, c.updated_at).await?;
                tx.commit().await?;
            }
        }
        Ok(())
    }

    /// Every credential whose expiry is at or before `now` and that is still configured.
    async fn expiring(&self, now: Timestamp) -> Result<Vec<Expiring>> {
        let mut out = Vec::new();
        let all = self.inventory("", None).await?;
        for c in all {
            let Some(at) = c.expires_at.filter(|t| *t <= now) else {
                continue;
            };
            if c.revoked_at.is_some_and(|r| r <= at) {
                continue;
            }
            let replaced = c.superseded
                || matches!(
                    c.kind,
                    CredentialKind::ClientSecretPrevious | CredentialKind::WebhookSecretPrevious
                );
            out.push(Expiring {
                credential: c,
                expires_at: at,
                reason: if replaced { "overlap_ended" } else { "expired" },
            });
        }
        Ok(out)
    }

    /// Writes the notice, the event and the audit record of one expiry in one transaction;
    /// `false` when another pass got there first.
    async fn announce_expiry(&self, actor: &str, now: Timestamp, e: &Expiring) -> Result<bool> {
        let c = &e.credential;
        let mut tx = self.begin().await?;
        let n = sqlx::query(
            "INSERT INTO credential_expiry_notices (reference, expires_at, env_id, noticed_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (reference, expires_at) DO NOTHING",
        )
        .bind(&c.reference)
        .bind(e.expires_at.millis())
        .bind(c.env_id.as_ref().map(|x| x.as_str().to_owned()))
        .bind(now.millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        if c.superseded {
            // The rotated API key's overlap is over: it is done for good.
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(&c.reference)
                .bind(e.expires_at.millis())
                .execute(&mut *tx)
                .await?;
        }
        let data = json!({
            "kind": c.kind.as_str(), "id": c.reference, "owner_type": c.kind.owner_type(),
            "owner_id": c.owner_id, "owner_name": c.owner_name,
            "expires_at": e.expires_at.to_rfc3339(), "reason": e.reason,
        });
        if let Some(env) = &c.env_id {
            append_event(
                &mut tx,
                env,
                now,
                NewEvent {
                    id: self.new_id(now),
                    kind: EventType::CredentialExpired,
                    org_id: None,
                    data: data.clone(),
                },
            )
            .await?;
        }
        append_audit(
            &mut tx,
            chain_of(c.env_id.as_ref()),
            now,
            NewAudit::success(actor, "credential.expire", &c.reference, data),
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }
}
