//! Organizations and their domains. A domain belongs to at most one organization per
//! environment (the primary key of `organization_domains` enforces it; the check here turns a
//! collision into a message that names the owner).

use portcullis_core::Timestamp;
use portcullis_core::event::EventType;
use portcullis_core::ids::{EnvId, OrgId};
use portcullis_core::model::Organization;
use serde_json::json;
use sqlx::Row;

use crate::{Conn, Result, Store, StoreError};

#[derive(Debug, Clone)]
pub struct NewOrganization {
    pub id: OrgId,
    pub name: String,
    pub domains: Vec<String>,
}

#[derive(Debug, Clone, Default)]
pub struct OrganizationPatch {
    pub name: Option<String>,
    /// Replaces the whole set when given.
    pub domains: Option<Vec<String>>,
}

fn org_json(o: &Organization) -> serde_json::Value {
    json!({ "id": o.id, "object": "organization", "name": o.name, "domains": o.domains })
}

async fn claim_domains(
    conn: &mut Conn,
    env: &EnvId,
    org: &OrgId,
    domains: &[String],
) -> Result<()> {
    for d in domains {
        let owner: Option<String> = sqlx::query_scalar(
            "SELECT org_id FROM organization_domains WHERE env_id = $1 AND domain = $2",
        )
        .bind(env.as_str())
        .bind(d)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(owner) = owner.filter(|o| o != org.as_str()) {
            return Err(StoreError::conflict(
                "domain_taken",
                format!(
                    "the domain {d} already belongs to organization {owner} in this environment"
                ),
            ));
        }
        sqlx::query(
            "INSERT INTO organization_domains (env_id, domain, org_id) VALUES ($1, $2, $3)",
        )
        .bind(env.as_str())
        .bind(d)
        .bind(org.as_str())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

impl Store {
    pub async fn create_organization(
        &self,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        new: NewOrganization,
    ) -> Result<Organization> {
        let mut tx = self.begin().await?;
        let r = self
            .create_organization_in(&mut tx, actor, now, env, new)
            .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// [`Self::create_organization`] inside the caller's transaction (`apply` runs many in one).
    pub async fn create_organization_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        new: NewOrganization,
    ) -> Result<Organization> {
        let mut new = new;
        new.domains.sort();
        new.domains.dedup();
        sqlx::query("INSERT INTO organizations (id, env_id, name, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)")
            .bind(new.id.as_str())
            .bind(env.as_str())
            .bind(&new.name)
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        claim_domains(&mut *tx, env, &new.id, &new.domains).await?;
        let org = Organization {
            id: new.id,
            env_id: env.clone(),
            name: new.name,
            domains: new.domains,
            created_at: now,
            updated_at: now,
        };
        let data = org_json(&org);
        self.record_change(
            &mut *tx,
            env,
            now,
            (EventType::OrganizationCreated, Some(org.id.clone())),
            (actor, "organization.create", org.id.as_str()),
            data,
        )
        .await?;
        Ok(org)
    }

    pub async fn list_organizations(
        &self,
        env: &EnvId,
        after: Option<&OrgId>,
        limit: u32,
    ) -> Result<Vec<Organization>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, updated_at FROM organizations WHERE env_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(env.as_str())
        .bind(after.map_or("", |a| a.as_str()))
        .bind(i64::from(limit))
        .fetch_all(self.reader())
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let id = OrgId::from_stored(r.try_get("id")?);
            let domains = self.org_domains(&id).await?;
            out.push(Organization {
                id,
                env_id: env.clone(),
                name: r.try_get("name")?,
                domains,
                created_at: Timestamp(r.try_get("created_at")?),
                updated_at: Timestamp(r.try_get("updated_at")?),
            });
        }
        Ok(out)
    }

    async fn org_domains(&self, org: &OrgId) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT domain FROM organization_domains WHERE org_id = $1 ORDER BY domain",
        )
        .bind(org.as_str())
        .fetch_all(self.reader())
        .await?)
    }

    /// The organization `org` of `env`; one of another environment is "not found".
    pub async fn get_organization(&self, env: &EnvId, org: &OrgId) -> Result<Organization> {
        let r = sqlx::query(
            "SELECT name, created_at, updated_at FROM organizations WHERE env_id = $1 AND id = $2",
        )
        .bind(env.as_str())
        .bind(org.as_str())
        .fetch_optional(self.reader())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("organization {org}")))?;
        Ok(Organization {
            id: org.clone(),
            env_id: env.clone(),
            name: r.try_get("name")?,
            domains: self.org_domains(org).await?,
            created_at: Timestamp(r.try_get("created_at")?),
            updated_at: Timestamp(r.try_get("updated_at")?),
        })
    }

    /// The organization that owns `domain` in `env`, if any.
    pub async fn organization_by_domain(&self, env: &EnvId, domain: &str) -> Result<Option<OrgId>> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT org_id FROM organization_domains WHERE env_id = $1 AND domain = $2",
        )
        .bind(env.as_str())
        .bind(domain)
        .fetch_optional(self.reader())
        .await?;
        Ok(id.map(OrgId::from_stored))
    }

    pub async fn update_organization(
        &self,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        org: &OrgId,
        patch: OrganizationPatch,
    ) -> Result<Organization> {
        let mut tx = self.begin().await?;
        let r = self
            .update_organization_in(&mut tx, actor, now, env, org, patch)
            .await?;
        tx.commit().await?;
        Ok(r)
    }

    /// [`Self::update_organization`] inside the caller's transaction (`apply` runs many in one).
    pub async fn update_organization_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        org: &OrgId,
        patch: OrganizationPatch,
    ) -> Result<Organization> {
        let before = self.get_organization(env, org).await?;
        let mut after = before.clone();
        if let Some(n) = patch.name {
            after.name = n;
        }
        if let Some(d) = patch.domains {
            after.domains = d;
            after.domains.sort();
            after.domains.dedup();
        }
        if after.name == before.name && after.domains == before.domains {
            return Ok(before);
        }
        after.updated_at = now;
        let n = sqlx::query("UPDATE organizations SET name = $3, updated_at = $4 WHERE env_id = $1 AND id = $2 AND updated_at = $5")
            .bind(env.as_str())
            .bind(org.as_str())
            .bind(&after.name)
            .bind(now.millis())
            .bind(before.updated_at.millis())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n != 1 {
            return Err(StoreError::conflict(
                "concurrent_update",
                "the organization changed meanwhile; retry",
            ));
        }
        if after.domains != before.domains {
            sqlx::query("DELETE FROM organization_domains WHERE org_id = $1")
                .bind(org.as_str())
                .execute(&mut *tx)
                .await?;
            claim_domains(&mut *tx, env, org, &after.domains).await?;
        }
        let mut previous = serde_json::Map::new();
        if before.name != after.name {
            previous.insert("name".into(), json!(before.name));
        }
        if before.domains != after.domains {
            previous.insert("domains".into(), json!(before.domains));
        }
        let mut data = org_json(&after);
        data["previous_attributes"] = serde_json::Value::Object(previous);
        self.record_change(
            &mut *tx,
            env,
            now,
            (EventType::OrganizationUpdated, Some(org.clone())),
            (actor, "organization.update", org.as_str()),
            data,
        )
        .await?;
        Ok(after)
    }

    pub async fn delete_organization(
        &self,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        org: &OrgId,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        self.delete_organization_in(&mut tx, actor, now, env, org)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// [`Self::delete_organization`] inside the caller's transaction (`apply` runs many in one).
    pub async fn delete_organization_in(
        &self,
        tx: &mut Conn,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        org: &OrgId,
    ) -> Result<()> {
        let before = self.get_organization(env, org).await?;
        sqlx::query("DELETE FROM organization_domains WHERE org_id = $1")
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query("DELETE FROM organizations WHERE env_id = $1 AND id = $2")
            .bind(env.as_str())
            .bind(org.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if n != 1 {
            return Err(StoreError::NotFound(format!("organization {org}")));
        }
        let data = org_json(&before);
        self.record_change(
            &mut *tx,
            env,
            now,
            (EventType::OrganizationDeleted, Some(org.clone())),
            (actor, "organization.delete", org.as_str()),
            data,
        )
        .await?;
        Ok(())
    }
}
