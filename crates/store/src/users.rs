//! Local users of the `password` connection. The password hash (argon2id, PHC string) never
//! leaves this module except to the verifier.

use portcullis_core::Timestamp;
use portcullis_core::event::EventType;
use portcullis_core::ids::{EnvId, OrgId, UserId};
use portcullis_core::oauth::User;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Result, Store, StoreError};

const COLUMNS: &str =
    "id, env_id, org_id, email, first_name, last_name, disabled_at, created_at, updated_at";

fn user_from_row(r: &AnyRow) -> Result<User> {
    Ok(User {
        id: UserId::from_stored(r.try_get("id")?),
        env_id: EnvId::from_stored(r.try_get("env_id")?),
        org_id: OrgId::from_stored(r.try_get("org_id")?),
        email: r.try_get("email")?,
        first_name: r.try_get("first_name")?,
        last_name: r.try_get("last_name")?,
        disabled_at: r.try_get::<Option<i64>, _>("disabled_at")?.map(Timestamp),
        created_at: Timestamp(r.try_get("created_at")?),
        updated_at: Timestamp(r.try_get("updated_at")?),
    })
}

pub fn user_json(u: &User) -> serde_json::Value {
    json!({
        "id": u.id, "object": "user", "organization_id": u.org_id, "email": u.email,
        "first_name": u.first_name, "last_name": u.last_name, "disabled": u.disabled_at.is_some(),
    })
}

/// A change to a user; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct UserPatch {
    pub first_name: Option<Option<String>>,
    pub last_name: Option<Option<String>>,
    pub disabled: Option<bool>,
    pub password_hash: Option<String>,
}

impl Store {
    pub async fn create_user(
        &self,
        actor: &str,
        now: Timestamp,
        user: User,
        password_hash: &str,
    ) -> Result<User> {
        let mut tx = self.begin().await?;
        let taken: Option<String> =
            sqlx::query_scalar("SELECT id FROM users WHERE env_id = $1 AND email = $2")
                .bind(user.env_id.as_str())
                .bind(&user.email)
                .fetch_optional(&mut *tx)
                .await?;
        if taken.is_some() {
            return Err(StoreError::conflict(
                "user_exists",
                format!(
                    "a user with the email {} already exists in this environment",
                    user.email
                ),
            ));
        }
        sqlx::query(
            "INSERT INTO users (id, env_id, org_id, email, first_name, last_name, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(user.id.as_str())
        .bind(user.env_id.as_str())
        .bind(user.org_id.as_str())
        .bind(&user.email)
        .bind(user.first_name.clone())
        .bind(user.last_name.clone())
        .bind(password_hash)
        .bind(now.millis())
        .execute(&mut *tx)
        .await?;
        let data = user_json(&user);
        self.record_change(
            &mut tx,
            &user.env_id,
            now,
            (EventType::UserCreated, Some(user.org_id.clone())),
            (actor, "user.create", user.id.as_str()),
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(user)
    }

    pub async fn list_users(&self, env: &EnvId, org: &OrgId) -> Result<Vec<User>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE env_id = $1 AND org_id = $2 ORDER BY id"
        )))
        .bind(env.as_str())
        .bind(org.as_str())
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    pub async fn get_user(&self, env: &EnvId, id: &UserId) -> Result<User> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE env_id = $1 AND id = $2"
        )))
        .bind(env.as_str())
        .bind(id.as_str())
        .fetch_optional(self.reader())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user {id}")))?;
        user_from_row(&row)
    }

    /// The user with `email` in `env` and their password hash.
    pub async fn user_for_login(&self, env: &EnvId, email: &str) -> Result<Option<(User, String)>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, password_hash FROM users WHERE env_id = $1 AND email = $2"
        )))
        .bind(env.as_str())
        .bind(email)
        .fetch_optional(self.reader())
        .await?;
        row.map(|r| Ok((user_from_row(&r)?, r.try_get("password_hash")?)))
            .transpose()
    }

    pub async fn update_user(
        &self,
        actor: &str,
        now: Timestamp,
        env: &EnvId,
        id: &UserId,
        patch: UserPatch,
    ) -> Result<User> {
        let before = self.get_user(env, id).await?;
        let mut after = before.clone();
        if let Some(f) = patch.first_name {
            after.first_name = f;
        }
        if let Some(l) = patch.last_name {
            after.last_name = l;
        }
        if let Some(d) = patch.disabled {
            after.disabled_at = if d {
                before.disabled_at.or(Some(now))
            } else {
                None
            };
        }
        after.updated_at = now;
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE users SET first_name = $3, last_name = $4, disabled_at = $5, updated_at = $6, password_hash = COALESCE($7, password_hash) WHERE env_id = $1 AND id = $2")
            .bind(env.as_str())
            .bind(id.as_str())
            .bind(after.first_name.clone())
            .bind(after.last_name.clone())
            .bind(after.disabled_at.map(Timestamp::millis))
            .bind(now.millis())
            .bind(patch.password_hash.clone())
            .execute(&mut *tx)
            .await?;
        if after.disabled_at.is_some() || patch.password_hash.is_some() {
            // A disabled user or a reset password ends every session and grant of that user.
            sqlx::query(
                "UPDATE sessions SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
            )
            .bind(id.as_str())
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
            sqlx::query("UPDATE token_families SET revoked_at = $2, revoked_reason = 'user_changed' WHERE user_id = $1 AND revoked_at IS NULL")
                .bind(id.as_str())
                .bind(now.millis())
                .execute(&mut *tx)
                .await?;
        }
        let mut data = user_json(&after);
        data["previous_attributes"] = crate::log::previous_attributes(&user_json(&before), &data);
        data["password_reset"] = json!(patch.password_hash.is_some());
        self.record_change(
            &mut tx,
            env,
            now,
            (EventType::UserUpdated, Some(after.org_id.clone())),
            (actor, "user.update", id.as_str()),
            data,
        )
        .await?;
        tx.commit().await?;
        Ok(after)
    }
}
