//! Admin and environment API keys: shown once, stored as a digest, revocable, optionally
//! expiring, and rotated with an overlap window (the replaced key keeps working until it ends).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portcullis_core::credential::{check_expires_in, successor_expiry};
use portcullis_core::ids::{ApiKeyId, EnvId, PrefixedId};
use portcullis_core::model::ApiKeyKind;
use portcullis_core::validate;
use portcullis_crypto::{SystemRandom, generate_secret, secret_digest};
use portcullis_store::NewApiKey;

use super::views::{
    ApiKeyView, CreateApiKey, CreateGlobalApiKey, CreatedApiKey, List, RotateApiKey, RotatedApiKey,
};
use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson};

/// Creates a key and returns it with its secret, the only time the secret is shown.
pub async fn issue_api_key(
    app: &App,
    actor: &str,
    kind: ApiKeyKind,
    env: Option<EnvId>,
    (name, expires_in): (String, Option<i64>),
) -> ApiResult<CreatedApiKey> {
    validate::name(&name).map_err(ApiError::invalid)?;
    if let Some(s) = expires_in {
        check_expires_in("expires_in_seconds", s).map_err(ApiError::invalid)?;
    }
    let now = app.now();
    let secret = generate_secret(&SystemRandom, kind.secret_prefix());
    let new = NewApiKey {
        id: app.store.new_id(now),
        kind,
        env_id: env,
        name,
        digest: secret_digest(&secret),
        expires_at: expires_in.map(|s| now.plus_seconds(s)),
    };
    let key = app.store.create_api_key(actor, now, new).await?;
    Ok(CreatedApiKey {
        key: ApiKeyView::from(&key),
        secret: secret.expose().to_owned(),
    })
}

#[utoipa::path(post, path = "/admin/v1/api-keys", tag = "api-keys", request_body = CreateGlobalApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 403, body = ErrorBody)))]
pub async fn global_api_key_create(
    State(app): State<App>,
    admin: Admin,
    ApiJson(req): ApiJson<CreateGlobalApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    admin.require_global()?;
    let created = issue_api_key(
        &app,
        &admin.actor(),
        ApiKeyKind::Admin,
        None,
        (req.name, req.expires_in_seconds),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/api-keys", tag = "api-keys", request_body = CreateApiKey,
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 201, body = CreatedApiKey), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn env_api_key_create(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiJson(req): ApiJson<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    let env = admin.environment(&app, &env).await?;
    let kind = match req.kind.as_deref() {
        None => ApiKeyKind::Environment,
        Some(k) => ApiKeyKind::parse(k).ok_or_else(|| {
            ApiError::invalid(format!(
                "kind must be \"environment\" or \"admin\", not {k:?}"
            ))
        })?,
    };
    let created = issue_api_key(
        &app,
        &admin.actor(),
        kind,
        Some(env.id),
        (req.name, req.expires_in_seconds),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

#[utoipa::path(get, path = "/admin/v1/api-keys", tag = "api-keys",
    responses((status = 200, body = List<ApiKeyView>)))]
pub async fn api_keys_list(
    State(app): State<App>,
    admin: Admin,
) -> ApiResult<Json<List<ApiKeyView>>> {
    let keys = app.store.list_api_keys(admin.key.env_id.as_ref()).await?;
    Ok(Json(List::new(
        keys.iter().map(ApiKeyView::from).collect(),
        None,
    )))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/api-keys", tag = "api-keys",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, body = List<ApiKeyView>), (status = 404, body = ErrorBody)))]
pub async fn env_api_keys_list(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<List<ApiKeyView>>> {
    let env = admin.environment(&app, &env).await?;
    let keys = app.store.list_api_keys(Some(&env.id)).await?;
    Ok(Json(List::new(
        keys.iter().map(ApiKeyView::from).collect(),
        None,
    )))
}

async fn visible_key(
    app: &App,
    admin: &Admin,
    id: &str,
) -> ApiResult<portcullis_core::model::ApiKey> {
    let not_found = || ApiError::not_found(format!("API key {id}"));
    let id = ApiKeyId::parse(id).ok_or_else(not_found)?;
    let key = app.store.get_api_key(&id).await.map_err(|_| not_found())?;
    // A scoped admin sees only keys of its own environment; a global key is invisible to it.
    match (&admin.key.env_id, &key.env_id) {
        (None, _) => Ok(key),
        (Some(mine), Some(theirs)) if mine == theirs => Ok(key),
        _ => Err(not_found()),
    }
}

#[utoipa::path(get, path = "/admin/v1/api-keys/{key}", tag = "api-keys", params(("key" = String, Path)),
    responses((status = 200, body = ApiKeyView), (status = 404, body = ErrorBody)))]
pub async fn api_key_get(
    State(app): State<App>,
    admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyView>> {
    Ok(Json(ApiKeyView::from(
        &visible_key(&app, &admin, &id).await?,
    )))
}

/// Revokes a key. The last active global admin key cannot be revoked: that would lock every
/// operator out of a network where nobody can help from outside.
#[utoipa::path(delete, path = "/admin/v1/api-keys/{key}", tag = "api-keys", params(("key" = String, Path)),
    responses((status = 200, body = ApiKeyView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn api_key_revoke(
    State(app): State<App>,
    admin: Admin,
    Path(id): Path<String>,
) -> ApiResult<Json<ApiKeyView>> {
    let key = visible_key(&app, &admin, &id).await?;
    let revoked = app
        .store
        .revoke_api_key(&admin.actor(), app.now(), &key.id)
        .await?;
    Ok(Json(ApiKeyView::from(&revoked)))
}

/// 0 to 30 days, as for client and webhook secrets.
const OVERLAP: std::ops::RangeInclusive<i64> = 0..=2_592_000;
const DEFAULT_OVERLAP: i64 = 86_400;

/// Replaces a key by a new one of the same kind, environment and name (its secret shown once);
/// the old key keeps working until the overlap ends, then the credential sweep revokes it.
#[utoipa::path(post, path = "/admin/v1/api-keys/{key}/rotate", tag = "api-keys", params(("key" = String, Path)),
    request_body = RotateApiKey,
    responses((status = 201, body = RotatedApiKey), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn api_key_rotate(
    State(app): State<App>,
    admin: Admin,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RotateApiKey>,
) -> ApiResult<(StatusCode, Json<RotatedApiKey>)> {
    let key = visible_key(&app, &admin, &id).await?;
    let overlap = req.overlap_seconds.unwrap_or(DEFAULT_OVERLAP);
    if !OVERLAP.contains(&overlap) {
        return Err(ApiError::invalid(format!(
            "overlap_seconds must be 0 to 2592000, not {overlap}"
        )));
    }
    if let Some(s) = req.expires_in_seconds {
        check_expires_in("expires_in_seconds", s).map_err(ApiError::invalid)?;
    }
    let now = app.now();
    let secret = generate_secret(&SystemRandom, key.kind.secret_prefix());
    let expires_at = successor_expiry(
        now,
        req.expires_in_seconds,
        Some(key.created_at),
        key.expires_at,
    );
    let (new, old) = app
        .store
        .rotate_api_key(
            &admin.actor(),
            now,
            &key.id,
            (app.store.new_id(now), secret_digest(&secret), expires_at),
            overlap,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(RotatedApiKey {
            key: ApiKeyView::from(&new),
            secret: secret.expose().to_owned(),
            replaced: ApiKeyView::from(&old),
        }),
    ))
}
