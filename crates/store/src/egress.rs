//! Egress policy documents. The store keeps the document as text and its version; the egress
//! crate owns its meaning.

use portcullis_core::Timestamp;
use portcullis_core::event::EventType;
use portcullis_core::ids::EnvId;
use sqlx::Row;

use crate::{Conn, Result, Store, StoreError};

/// A stored policy: version 0 and an empty document when none was ever set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    pub version: i64,
    pub document: String,
    pub ca_bundle: Option<String>,
    pub updated_at: Option<Timestamp>,
}

/// A replacement of an environment's policy document.
#[derive(Debug, Clone)]
pub struct PolicyChange<'a> {
    /// The version being replaced (0 when none was set): a concurrent change makes this fail.
    pub expected_version: i64,
    pub document: &'a str,
    pub ca_bundle: Option<&'a str>,
    /// What changed, for the audit record.
    pub diff: serde_json::Value,
}

impl Store {
    pub async fn egress_policy(&self, env: &EnvId) -> Result<StoredPolicy> {
        let row = sqlx::query("SELECT version, document, ca_bundle, updated_at FROM egress_policies WHERE env_id = $1")
            .bind(env.as_str())
            .fetch_optional(self.reader())
            .await?;
        Ok(match row {
            Some(r) => StoredPolicy {
                version: r.try_get("version")?,
                document: r.try_get("document")?,
                ca_bundle: r.try_get("ca_bundle")?,
                updated_at: Some(Timestamp(r.try_get("updated_at")?)),
            },
            None => StoredPolicy {
                version: 0,
                document: r#"{"rules":[],"waivers":[]}"#.into(),
                ca_bundle: None,
                updated_at: None,
            },
        })
    }

    /// Replaces the policy if it is still at `expected_version`; the audit record carries `diff`.
    pub async fn replace_egress_policy(
        &self,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        change: PolicyChange<'_>,
    ) -> Result<i64> {
        let mut tx = self.begin().await?;
        let r = self
            .replace_egress_policy_in(&mut tx, actor, now, env, change)
            .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// [`Self::replace_egress_policy`] inside the caller's transaction (`apply` runs many in one).
    pub async fn replace_egress_policy_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        change: PolicyChange<'_>,
    ) -> Result<i64> {
        let PolicyChange {
            expected_version,
            document,
            ca_bundle,
            diff,
        } = change;
        let current: Option<i64> =
            sqlx::query_scalar("SELECT version FROM egress_policies WHERE env_id = $1")
                .bind(env.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        if current.unwrap_or(0) != expected_version {
            return Err(StoreError::conflict(
                "version_conflict",
                format!(
                    "the policy is at version {}, not {expected_version}: fetch it again and reapply your change",
                    current.unwrap_or(0)
                ),
            ));
        }
        let version = expected_version + 1;
        sqlx::query(
            "INSERT INTO egress_policies (env_id, version, document, ca_bundle, updated_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (env_id) DO UPDATE SET version = excluded.version, document = excluded.document, \
             ca_bundle = excluded.ca_bundle, updated_at = excluded.updated_at",
        )
        .bind(env.as_str())
        .bind(version)
        .bind(document)
        .bind(ca_bundle.map(str::to_owned))
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        let data = serde_json::json!({ "version": version, "diff": diff });
        self.record_change(
            &mut *tx,
            env,
            now,
            (EventType::EgressPolicyUpdated, None),
            (actor, "egress_policy.replace", env.as_str()),
            data,
        )
        .await?;
        Ok(version)
    }
}
