//! `/admin/v1/environments/{env}/organizations/{org}/users`: local users of the `password`
//! connection, for break-glass access and small sites.
//!
//! Passwords are hashed with Argon2id and never returned, except a generated one, once. Disabling
//! a user or resetting a password ends every session and grant of that user (the store does it in
//! the same transaction).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portcullis_core::ids::{EnvId, OrgId, PrefixedId, UserId};
use portcullis_core::model::Organization;
use portcullis_core::oauth::User;
use portcullis_core::{Random, Secret, Timestamp, validate};
use portcullis_crypto::{SystemRandom, generate_secret};
use portcullis_oidc::password::check_policy;
use portcullis_store::UserPatch;

use super::views::{CreateUser, CreatedUser, List, UpdateUser, UserView};
use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson};

/// Length of a generated password: 24 base64url characters, 144 random bits.
const GENERATED_PASSWORD_LEN: usize = 24;

/// An email address as a sign-in name, lower-cased: one `@`; a local part of 1–64 printable
/// ASCII characters without spaces, quotes or brackets (no quoted strings, no comments); a domain
/// as organizations claim them; at most 254 characters (RFC 5321 §4.5.3.1).
pub fn normalize_email(s: &str) -> Result<String, String> {
    let email = s.trim().to_ascii_lowercase();
    if email.is_empty() || email.len() > 254 {
        return Err(format!("email {s:?} must have 1 to 254 characters"));
    }
    let (local, domain) = match email.split_once('@') {
        Some((l, d)) if !d.contains('@') => (l, d),
        _ => return Err(format!("email {s:?} must have exactly one '@'")),
    };
    let special = |b: u8| b"\"(),:;<>@[\\]".contains(&b);
    if local.is_empty()
        || local.len() > 64
        || local.starts_with('.')
        || local.ends_with('.')
        || !local.bytes().all(|b| b.is_ascii_graphic() && !special(b))
    {
        return Err(format!(
            "email {s:?} has an invalid local part (1 to 64 printable ASCII characters without \
             spaces, quotes or brackets)"
        ));
    }
    validate::domain(domain).map_err(|e| format!("email {s:?}: {e}"))?;
    Ok(email)
}

fn check_name(field: &str, n: &str) -> Result<(), String> {
    validate::name(n).map_err(|e| format!("{field}: {e}"))
}

/// A random password of [`GENERATED_PASSWORD_LEN`] characters.
pub fn generate_password(random: &dyn Random) -> Secret {
    let s = generate_secret(random, "");
    Secret::new(
        s.expose()
            .chars()
            .take(GENERATED_PASSWORD_LEN)
            .collect::<String>(),
    )
}

/// A new user of `org` from a create request, and the password to set: the request's, or a
/// generated one (`true`: show it once).
pub fn new_user(
    req: CreateUser,
    org: &Organization,
    id: UserId,
    random: &dyn Random,
    now: Timestamp,
) -> Result<(User, Secret, bool), String> {
    let email = normalize_email(&req.email)?;
    // Sign-in routes an email to its organization by domain: an address outside the
    // organization's domains could never sign in here (or would land in another organization).
    let domain = email.rsplit_once('@').map_or("", |(_, d)| d);
    if !org.domains.iter().any(|d| d == domain) {
        return Err(format!(
            "the domain of {email} is not one of the organization's domains ({}); users sign in \
             routed by domain",
            if org.domains.is_empty() {
                "it has none".to_owned()
            } else {
                org.domains.join(", ")
            }
        ));
    }
    for (field, n) in [
        ("first_name", &req.first_name),
        ("last_name", &req.last_name),
    ] {
        n.as_deref().map(|n| check_name(field, n)).transpose()?;
    }
    let (password, generated) = match req.password {
        Some(p) => {
            check_policy(&p)?;
            (Secret::new(p), false)
        }
        None => (generate_password(random), true),
    };
    let user = User {
        id,
        env_id: org.env_id.clone(),
        org_id: org.id.clone(),
        email,
        first_name: req.first_name,
        last_name: req.last_name,
        disabled_at: None,
        created_at: now,
        updated_at: now,
    };
    Ok((user, password, generated))
}

/// Checks a change to a user; the new password, if any, is hashed by the caller.
pub fn check_update(req: &UpdateUser) -> Result<(), String> {
    for (field, n) in [
        ("first_name", &req.first_name),
        ("last_name", &req.last_name),
    ] {
        if let Some(Some(n)) = n {
            check_name(field, n)?;
        }
    }
    req.password.as_deref().map(check_policy).transpose()?;
    Ok(())
}

fn org_id(s: &str) -> ApiResult<OrgId> {
    OrgId::parse(s).ok_or_else(|| ApiError::not_found(format!("organization {s}")))
}

async fn hash(app: &App, password: &Secret) -> ApiResult<String> {
    app.passwords
        .hash(password.expose())
        .await
        .map_err(|e| ApiError::internal("password hashing", e))
}

/// The user `id` if it belongs to organization `org` of `env`; any other is "not found".
async fn visible_user(app: &App, env: &EnvId, org: &str, id: &str) -> ApiResult<User> {
    let not_found = || ApiError::not_found(format!("user {id}"));
    let org = org_id(org)?;
    let id = UserId::parse(id).ok_or_else(not_found)?;
    let user = app.store.get_user(env, &id).await?;
    if user.org_id == org {
        Ok(user)
    } else {
        Err(not_found())
    }
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/organizations/{org}/users", tag = "users",
    request_body = CreateUser,
    params(("env" = String, Path, description = "Environment ID or slug"), ("org" = String, Path)),
    responses((status = 201, body = CreatedUser), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn user_create(
    State(app): State<App>,
    admin: Admin,
    Path((env, org)): Path<(String, String)>,
    ApiJson(req): ApiJson<CreateUser>,
) -> ApiResult<(StatusCode, Json<CreatedUser>)> {
    let env = admin.environment(&app, &env).await?;
    let org = app.store.get_organization(&env.id, &org_id(&org)?).await?;
    let now = app.now();
    let (user, password, generated) =
        new_user(req, &org, app.store.new_id(now), &SystemRandom, now)
            .map_err(ApiError::invalid)?;
    let hashed = hash(&app, &password).await?;
    let user = app
        .store
        .create_user(&admin.actor(), now, user, &hashed)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: UserView::from(&user),
            password: generated.then(|| password.expose().to_owned()),
        }),
    ))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/organizations/{org}/users", tag = "users",
    params(("env" = String, Path, description = "Environment ID or slug"), ("org" = String, Path)),
    responses((status = 200, body = List<UserView>), (status = 404, body = ErrorBody)))]
pub async fn users_list(
    State(app): State<App>,
    admin: Admin,
    Path((env, org)): Path<(String, String)>,
) -> ApiResult<Json<List<UserView>>> {
    let env = admin.environment(&app, &env).await?;
    let org = app.store.get_organization(&env.id, &org_id(&org)?).await?;
    let users = app.store.list_users(&env.id, &org.id).await?;
    Ok(Json(List::new(
        users.iter().map(UserView::from).collect(),
        None,
    )))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/organizations/{org}/users/{user}", tag = "users",
    params(("env" = String, Path, description = "Environment ID or slug"), ("org" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody)))]
pub async fn user_get(
    State(app): State<App>,
    admin: Admin,
    Path((env, org, user)): Path<(String, String, String)>,
) -> ApiResult<Json<UserView>> {
    let env = admin.environment(&app, &env).await?;
    let user = visible_user(&app, &env.id, &org, &user).await?;
    Ok(Json(UserView::from(&user)))
}

#[utoipa::path(patch, path = "/admin/v1/environments/{env}/organizations/{org}/users/{user}", tag = "users",
    request_body = UpdateUser,
    params(("env" = String, Path, description = "Environment ID or slug"), ("org" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn user_update(
    State(app): State<App>,
    admin: Admin,
    Path((env, org, user)): Path<(String, String, String)>,
    ApiJson(req): ApiJson<UpdateUser>,
) -> ApiResult<Json<UserView>> {
    let env = admin.environment(&app, &env).await?;
    let user = visible_user(&app, &env.id, &org, &user).await?;
    check_update(&req).map_err(ApiError::invalid)?;
    let password_hash = match req.password {
        Some(p) => Some(hash(&app, &Secret::new(p)).await?),
        None => None,
    };
    let patch = UserPatch {
        first_name: req.first_name,
        last_name: req.last_name,
        disabled: req.disabled,
        password_hash,
    };
    let user = app
        .store
        .update_user(&admin.actor(), app.now(), &env.id, &user.id, patch)
        .await?;
    Ok(Json(UserView::from(&user)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email(" Ann.Lee+x@Example.COM ").unwrap(),
            "ann.lee+x@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "a@b@example.com",
            "a b@example.com",
            "\"a\"@example.com",
            ".a@example.com",
            "a@localhost",
            "a@1.2.3.4",
            &format!("{}@example.com", "a".repeat(65)),
        ] {
            assert!(normalize_email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn generated_passwords_pass_the_policy() {
        let p = generate_password(&SystemRandom);
        assert_eq!(p.expose().len(), GENERATED_PASSWORD_LEN);
        assert!(check_policy(p.expose()).is_ok());
    }
}
