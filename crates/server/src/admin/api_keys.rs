//! Admin and environment API keys: shown once, stored as a digest, revocable.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portcullis_core::ids::{ApiKeyId, EnvId, PrefixedId};
use portcullis_core::model::ApiKeyKind;
use portcullis_core::validate;
use portcullis_crypto::{SystemRandom, generate_secret, secret_digest};
use portcullis_store::NewApiKey;

use super::views::{ApiKeyView, CreateApiKey, CreateGlobalApiKey, CreatedApiKey, List};
use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson};

/// Creates a key and returns it with its secret, the only time the secret is shown.
pub async fn issue_api_key(
    app: &App,
    actor: &str,
    kind: ApiKeyKind,
    env: Option<EnvId>,
    name: String,
) -> ApiResult<CreatedApiKey> {
    validate::name(&name).map_err(ApiError::invalid)?;
    let now = app.now();
    let secret = generate_secret(&SystemRandom, kind.secret_prefix());
    let new = NewApiKey {
        id: app.store.new_id(now),
        kind,
        env_id: env,
        name,
        digest: secret_digest(&secret),
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
    let created = issue_api_key(&app, &admin.actor(), ApiKeyKind::Admin, None, req.name).await?;
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
    let created = issue_api_key(&app, &admin.actor(), kind, Some(env.id), req.name).await?;
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
