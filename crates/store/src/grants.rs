//! The state of sign-ins and grants: browser sessions, pending authorization requests,
//! authorization codes, refresh-token families, revoked access tokens, used client assertions.
//!
//! Invariants:
//! - a code is redeemed at most once: `UPDATE … SET redeemed_at … WHERE redeemed_at IS NULL`
//!   decides between two racing redemptions inside the database, and the loser learns the family
//!   to revoke;
//! - a refresh token is rotated at most once the same way; presenting a rotated token again
//!   revokes its whole family;
//! - only digests of codes, refresh tokens and session cookies are stored.

use portcullis_core::Timestamp;
use portcullis_core::ids::EnvId;
use portcullis_core::oauth::GrantData;
use sqlx::Row;

use crate::{Result, Store, StoreError};

/// The result of presenting a code or a refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeem {
    /// First use: the grant and its family.
    Ok {
        grant: Box<GrantData>,
        family_id: String,
        expires_at: Timestamp,
    },
    /// Already used: the family that must now be revoked.
    Reused {
        family_id: String,
    },
    NotFound,
}

/// An authorization code and the grant family it opens.
#[derive(Debug, Clone, Copy)]
pub struct NewCode<'a> {
    pub family_id: &'a str,
    pub code_digest: &'a str,
    pub grant: &'a GrantData,
    pub code_expires_at: Timestamp,
    /// The end of every refresh token of the family, however it is used.
    pub absolute_expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct SessionRow {
    pub user_id: String,
    pub auth_time: Timestamp,
    pub amr: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Family {
    pub client_id: String,
    pub user_id: String,
    pub absolute_expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

fn grant_of(s: &str) -> Result<GrantData> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("grant data: {e}")))
}

fn grant_text(g: &GrantData) -> String {
    serde_json::to_string(g).unwrap_or_default()
}

impl Store {
    pub async fn create_session(
        &self,
        env: &EnvId,
        digest: &str,
        user_id: &str,
        auth_time: Timestamp,
        amr: &[String],
        expires_at: Timestamp,
    ) -> Result<()> {
        sqlx::query("INSERT INTO sessions (digest, env_id, user_id, auth_time, amr, expires_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(digest)
            .bind(env.as_str())
            .bind(user_id)
            .bind(auth_time.millis())
            .bind(amr.join(" "))
            .bind(expires_at.millis())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// A live session of `env` with this cookie digest.
    pub async fn session(
        &self,
        env: &EnvId,
        digest: &str,
        now: Timestamp,
    ) -> Result<Option<SessionRow>> {
        let row = sqlx::query("SELECT user_id, auth_time, amr FROM sessions WHERE digest = $1 AND env_id = $2 AND revoked_at IS NULL AND expires_at > $3")
            .bind(digest)
            .bind(env.as_str())
            .bind(now.millis())
            .fetch_optional(self.reader())
            .await?;
        row.map(|r| {
            let amr: String = r.try_get("amr")?;
            Ok(SessionRow {
                user_id: r.try_get("user_id")?,
                auth_time: Timestamp(r.try_get("auth_time")?),
                amr: amr.split_whitespace().map(str::to_owned).collect(),
            })
        })
        .transpose()
    }

    pub async fn end_session(&self, env: &EnvId, digest: &str, now: Timestamp) -> Result<()> {
        sqlx::query("UPDATE sessions SET revoked_at = $3 WHERE digest = $1 AND env_id = $2 AND revoked_at IS NULL")
            .bind(digest)
            .bind(env.as_str())
            .bind(now.millis())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn create_auth_request(
        &self,
        env: &EnvId,
        id: &str,
        browser_digest: &str,
        params: &serde_json::Value,
        expires_at: Timestamp,
    ) -> Result<()> {
        sqlx::query("INSERT INTO auth_requests (id, env_id, browser, params, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(env.as_str())
            .bind(browser_digest)
            .bind(params.to_string())
            .bind(expires_at.millis())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// A pending (not completed, not expired) authorization request: (browser digest, params).
    pub async fn auth_request(
        &self,
        env: &EnvId,
        id: &str,
        now: Timestamp,
    ) -> Result<Option<(String, serde_json::Value)>> {
        let row = sqlx::query("SELECT browser, params FROM auth_requests WHERE id = $1 AND env_id = $2 AND completed_at IS NULL AND expires_at > $3")
            .bind(id)
            .bind(env.as_str())
            .bind(now.millis())
            .fetch_optional(self.reader())
            .await?;
        row.map(|r| {
            let p: String = r.try_get("params")?;
            Ok((
                r.try_get("browser")?,
                serde_json::from_str(&p).map_err(|e| StoreError::Corrupt(e.to_string()))?,
            ))
        })
        .transpose()
    }

    /// Marks a pending request completed; false if it was completed meanwhile.
    pub async fn complete_auth_request(
        &self,
        env: &EnvId,
        id: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let n = sqlx::query("UPDATE auth_requests SET completed_at = $3 WHERE id = $1 AND env_id = $2 AND completed_at IS NULL")
            .bind(id)
            .bind(env.as_str())
            .bind(now.millis())
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Creates a grant family and its authorization code in one transaction.
    pub async fn create_code(&self, env: &EnvId, code: NewCode<'_>, now: Timestamp) -> Result<()> {
        let NewCode {
            family_id,
            code_digest,
            grant,
            code_expires_at,
            absolute_expires_at,
        } = code;
        let mut tx = self.begin().await?;
        sqlx::query("INSERT INTO token_families (id, env_id, client_id, user_id, absolute_expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(family_id)
            .bind(env.as_str())
            .bind(&grant.client_id)
            .bind(&grant.user_id)
            .bind(absolute_expires_at.millis())
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO auth_codes (digest, env_id, family_id, grant_data, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(code_digest)
            .bind(env.as_str())
            .bind(family_id)
            .bind(grant_text(grant))
            .bind(code_expires_at.millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Redeems a code exactly once (see the module invariants).
    pub async fn redeem_code(&self, env: &EnvId, digest: &str, now: Timestamp) -> Result<Redeem> {
        let won = sqlx::query("UPDATE auth_codes SET redeemed_at = $3 WHERE digest = $1 AND env_id = $2 AND redeemed_at IS NULL RETURNING family_id, grant_data, expires_at")
            .bind(digest)
            .bind(env.as_str())
            .bind(now.millis())
            .fetch_optional(&self.write)
            .await?;
        if let Some(r) = won {
            let g: String = r.try_get("grant_data")?;
            return Ok(Redeem::Ok {
                grant: Box::new(grant_of(&g)?),
                family_id: r.try_get("family_id")?,
                expires_at: Timestamp(r.try_get("expires_at")?),
            });
        }
        let used: Option<String> = sqlx::query_scalar(
            "SELECT family_id FROM auth_codes WHERE digest = $1 AND env_id = $2",
        )
        .bind(digest)
        .bind(env.as_str())
        .fetch_optional(self.reader())
        .await?;
        Ok(used.map_or(Redeem::NotFound, |family_id| Redeem::Reused { family_id }))
    }

    /// Reads a code without spending it: (grant, family, expiry, already redeemed).
    pub async fn peek_code(
        &self,
        env: &EnvId,
        digest: &str,
    ) -> Result<Option<(GrantData, String, Timestamp, bool)>> {
        let r = sqlx::query("SELECT family_id, grant_data, expires_at, redeemed_at FROM auth_codes WHERE digest = $1 AND env_id = $2")
            .bind(digest)
            .bind(env.as_str())
            .fetch_optional(self.reader())
            .await?;
        r.map(|r| {
            let g: String = r.try_get("grant_data")?;
            Ok((
                grant_of(&g)?,
                r.try_get("family_id")?,
                Timestamp(r.try_get("expires_at")?),
                r.try_get::<Option<i64>, _>("redeemed_at")?.is_some(),
            ))
        })
        .transpose()
    }

    pub async fn family(&self, env: &EnvId, id: &str) -> Result<Option<Family>> {
        let r = sqlx::query("SELECT client_id, user_id, absolute_expires_at, revoked_at FROM token_families WHERE id = $1 AND env_id = $2")
            .bind(id)
            .bind(env.as_str())
            .fetch_optional(self.reader())
            .await?;
        r.map(|r| {
            Ok(Family {
                client_id: r.try_get("client_id")?,
                user_id: r.try_get("user_id")?,
                absolute_expires_at: Timestamp(r.try_get("absolute_expires_at")?),
                revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(Timestamp),
            })
        })
        .transpose()
    }

    /// Revokes a family: its refresh tokens stop working and its access tokens introspect inactive.
    pub async fn revoke_family(
        &self,
        env: &EnvId,
        id: &str,
        reason: &str,
        now: Timestamp,
    ) -> Result<bool> {
        let n = sqlx::query("UPDATE token_families SET revoked_at = $3, revoked_reason = $4 WHERE id = $1 AND env_id = $2 AND revoked_at IS NULL")
            .bind(id)
            .bind(env.as_str())
            .bind(now.millis())
            .bind(reason)
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    pub async fn insert_refresh(
        &self,
        env: &EnvId,
        digest: &str,
        family_id: &str,
        grant: &GrantData,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<()> {
        sqlx::query("INSERT INTO refresh_tokens (digest, env_id, family_id, grant_data, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(digest)
            .bind(env.as_str())
            .bind(family_id)
            .bind(grant_text(grant))
            .bind(expires_at.millis())
            .bind(now.millis())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    /// Marks a refresh token used exactly once and, in the same transaction, stores its
    /// successor. Returns `Reused` when it had been used before.
    pub async fn rotate_refresh(
        &self,
        env: &EnvId,
        digest: &str,
        next_digest: &str,
        next_expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<Redeem> {
        let mut tx = self.begin().await?;
        let won = sqlx::query("UPDATE refresh_tokens SET rotated_at = $3 WHERE digest = $1 AND env_id = $2 AND rotated_at IS NULL RETURNING family_id, grant_data, expires_at")
            .bind(digest)
            .bind(env.as_str())
            .bind(now.millis())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(r) = won else {
            drop(tx);
            let used: Option<String> = sqlx::query_scalar(
                "SELECT family_id FROM refresh_tokens WHERE digest = $1 AND env_id = $2",
            )
            .bind(digest)
            .bind(env.as_str())
            .fetch_optional(self.reader())
            .await?;
            return Ok(used.map_or(Redeem::NotFound, |family_id| Redeem::Reused { family_id }));
        };
        let family_id: String = r.try_get("family_id")?;
        let g: String = r.try_get("grant_data")?;
        let expires_at = Timestamp(r.try_get("expires_at")?);
        if expires_at > now {
            sqlx::query("INSERT INTO refresh_tokens (digest, env_id, family_id, grant_data, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
                .bind(next_digest)
                .bind(env.as_str())
                .bind(&family_id)
                .bind(&g)
                .bind(next_expires_at.millis())
                .bind(now.millis())
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        // An expired token is reported with its expiry and nothing is written.
        Ok(Redeem::Ok {
            grant: Box::new(grant_of(&g)?),
            family_id,
            expires_at,
        })
    }

    /// The family and grant of a refresh token that is still current (for introspection).
    pub async fn refresh_token(
        &self,
        env: &EnvId,
        digest: &str,
    ) -> Result<Option<(String, GrantData, Timestamp, bool)>> {
        let r = sqlx::query("SELECT family_id, grant_data, expires_at, rotated_at FROM refresh_tokens WHERE digest = $1 AND env_id = $2")
            .bind(digest)
            .bind(env.as_str())
            .fetch_optional(self.reader())
            .await?;
        r.map(|r| {
            let g: String = r.try_get("grant_data")?;
            Ok((
                r.try_get("family_id")?,
                grant_of(&g)?,
                Timestamp(r.try_get("expires_at")?),
                r.try_get::<Option<i64>, _>("rotated_at")?.is_some(),
            ))
        })
        .transpose()
    }

    pub async fn revoke_jti(&self, env: &EnvId, jti: &str, expires_at: Timestamp) -> Result<()> {
        sqlx::query("INSERT INTO revoked_jtis (env_id, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT (env_id, jti) DO NOTHING")
            .bind(env.as_str())
            .bind(jti)
            .bind(expires_at.millis())
            .execute(&self.write)
            .await?;
        Ok(())
    }

    pub async fn jti_revoked(&self, env: &EnvId, jti: &str) -> Result<bool> {
        let r: Option<i64> = sqlx::query_scalar(
            "SELECT expires_at FROM revoked_jtis WHERE env_id = $1 AND jti = $2",
        )
        .bind(env.as_str())
        .bind(jti)
        .fetch_optional(self.reader())
        .await?;
        Ok(r.is_some())
    }

    /// Records a client assertion's `jti`; false if it was seen before (a replay).
    pub async fn use_assertion_jti(
        &self,
        env: &EnvId,
        client_id: &str,
        jti: &str,
        expires_at: Timestamp,
    ) -> Result<bool> {
        let n = sqlx::query("INSERT INTO client_assertion_jtis (env_id, client_id, jti, expires_at) VALUES ($1, $2, $3, $4) ON CONFLICT (env_id, client_id, jti) DO NOTHING")
            .bind(env.as_str())
            .bind(client_id)
            .bind(jti)
            .bind(expires_at.millis())
            .execute(&self.write)
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    /// Removes expired rows of the short-lived tables.
    pub async fn purge_expired(&self, now: Timestamp) -> Result<()> {
        for sql in [
            "DELETE FROM client_assertion_jtis WHERE expires_at < $1",
            "DELETE FROM revoked_jtis WHERE expires_at < $1",
            "DELETE FROM auth_requests WHERE expires_at < $1",
            // An assertion ID is kept until the assertion itself has expired (plus skew).
            "DELETE FROM saml_replay WHERE expires_at < $1",
            "DELETE FROM sso_requests WHERE expires_at < $1",
        ] {
            sqlx::query(sql)
                .bind(now.millis())
                .execute(&self.write)
                .await?;
        }
        Ok(())
    }
}
