//! `/admin/v1/environments/{env}/keys`: list and rotate signing keys.

use axum::Json;
use axum::extract::{Path, State};
use portcullis_core::model::SigningKeyInfo;

use super::views::{List, SigningKeyView};
use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Admin;

fn views(
    infos: &[SigningKeyInfo],
    env: &portcullis_core::model::Environment,
    now: portcullis_core::Timestamp,
) -> Vec<SigningKeyView> {
    infos
        .iter()
        .map(|k| SigningKeyView::new(k, k.is_published(now, &env.key_policy)))
        .collect()
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/keys", tag = "keys",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, body = List<SigningKeyView>), (status = 404, body = ErrorBody)))]
pub async fn signing_keys_list(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<List<SigningKeyView>>> {
    let env = admin.environment(&app, &env).await?;
    let now = app.now();
    let infos: Vec<_> = app
        .store
        .signing_keys(&env.id)
        .await?
        .into_iter()
        .map(|k| k.info)
        .collect();
    Ok(Json(List::new(views(&infos, &env, now), None)))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/keys/rotate", tag = "keys",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, body = List<SigningKeyView>), (status = 404, body = ErrorBody)))]
pub async fn signing_keys_rotate(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<List<SigningKeyView>>> {
    let env = admin.environment(&app, &env).await?;
    let now = app.now();
    let infos = app
        .keys
        .rotate(&admin.actor(), &env, now)
        .await
        .map_err(|e| match e {
            crate::keys::KeyRingError::Store(s) => ApiError::from(s),
            other => ApiError::internal("rotate", other),
        })?;
    Ok(Json(List::new(views(&infos, &env, now), None)))
}
