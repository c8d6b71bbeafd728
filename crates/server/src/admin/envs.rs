//! `/admin/v1/environments`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portcullis_core::ids::EnvId;
use portcullis_core::model::{EnvMode, KeyPolicy, KeyState, SigningAlg, default_issuer};
use portcullis_core::validate;
use portcullis_store::NewEnvironment;

use super::views::{CreateEnvironment, EnvironmentView, List, UpdateEnvironment};
use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson};

fn parse_mode(s: &str) -> ApiResult<EnvMode> {
    EnvMode::parse(s).ok_or_else(|| {
        ApiError::invalid(format!(
            "mode must be \"connected\" or \"isolated\", not {s:?}"
        ))
    })
}

fn key_policy(
    base: KeyPolicy,
    lifetime_days: Option<i64>,
    grace_days: Option<i64>,
) -> ApiResult<KeyPolicy> {
    let check = |name: &str, v: i64, min: i64| {
        if (min..=3650).contains(&v) {
            Ok(v * 86_400)
        } else {
            Err(ApiError::invalid(format!(
                "{name} must be {min} to 3650, not {v}"
            )))
        }
    };
    Ok(KeyPolicy {
        lifetime_seconds: lifetime_days.map_or(Ok(base.lifetime_seconds), |d| {
            check("key_lifetime_days", d, 1)
        })?,
        grace_seconds: grace_days
            .map_or(Ok(base.grace_seconds), |d| check("key_grace_days", d, 0))?,
    })
}

/// Validates a creation request into the environment to insert.
pub fn new_environment(app: &App, id: EnvId, req: CreateEnvironment) -> ApiResult<NewEnvironment> {
    validate::slug(&req.slug)
        .map_err(|e| ApiError::invalid(format!("slug {:?}: {e}", req.slug)))?;
    let name = req.name.unwrap_or_else(|| req.slug.clone());
    validate::name(&name).map_err(ApiError::invalid)?;
    let issuer = req
        .issuer
        .unwrap_or_else(|| default_issuer(&app.public_url, &req.slug));
    validate::base_url(&issuer).map_err(|e| ApiError::invalid(format!("issuer: {e}")))?;
    let signing_alg = match req.signing_alg.as_deref() {
        None => SigningAlg::ES256,
        Some(s) => SigningAlg::parse(s).ok_or_else(|| {
            ApiError::invalid(format!(
                "signing_alg must be ES256, EdDSA or RS256, not {s:?}"
            ))
        })?,
    };
    Ok(NewEnvironment {
        id,
        slug: req.slug,
        name,
        mode: req
            .mode
            .as_deref()
            .map_or(Ok(EnvMode::Isolated), parse_mode)?,
        issuer,
        signing_alg,
        key_policy: key_policy(
            app.key_policy_defaults,
            req.key_lifetime_days,
            req.key_grace_days,
        )?,
    })
}

/// Creates an environment with its first active and next signing keys.
pub async fn create_environment(
    app: &App,
    actor: &str,
    req: CreateEnvironment,
) -> ApiResult<EnvironmentView> {
    let now = app.now();
    let new = new_environment(app, app.store.new_id(now), req)?;
    let make = |state| {
        app.keys
            .generate(&new.id, new.signing_alg, state, now)
            .map_err(|e| ApiError::internal("keygen", e))
    };
    let keys = [make(KeyState::Active)?, make(KeyState::Next)?];
    let env = app.store.create_environment(actor, now, new, keys).await?;
    Ok(EnvironmentView::from(&env))
}

#[utoipa::path(post, path = "/admin/v1/environments", tag = "environments", request_body = CreateEnvironment,
    responses((status = 201, body = EnvironmentView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn environment_create(
    State(app): State<App>,
    admin: Admin,
    ApiJson(req): ApiJson<CreateEnvironment>,
) -> ApiResult<(StatusCode, Json<EnvironmentView>)> {
    admin.require_global()?;
    Ok((
        StatusCode::CREATED,
        Json(create_environment(&app, &admin.actor(), req).await?),
    ))
}

#[utoipa::path(get, path = "/admin/v1/environments", tag = "environments",
    responses((status = 200, body = List<EnvironmentView>)))]
pub async fn environments_list(
    State(app): State<App>,
    admin: Admin,
) -> ApiResult<Json<List<EnvironmentView>>> {
    let envs = app.store.list_environments().await?;
    let data = envs
        .iter()
        .filter(|e| admin.can_access(&e.id))
        .map(EnvironmentView::from)
        .collect();
    Ok(Json(List::new(data, None)))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}", tag = "environments",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, body = EnvironmentView), (status = 404, body = ErrorBody)))]
pub async fn environment_get(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<EnvironmentView>> {
    Ok(Json(EnvironmentView::from(
        &admin.environment(&app, &env).await?,
    )))
}

#[utoipa::path(patch, path = "/admin/v1/environments/{env}", tag = "environments", request_body = UpdateEnvironment,
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, body = EnvironmentView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn environment_update(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiJson(req): ApiJson<UpdateEnvironment>,
) -> ApiResult<Json<EnvironmentView>> {
    let env = admin.environment(&app, &env).await?;
    if let Some(n) = &req.name {
        validate::name(n).map_err(ApiError::invalid)?;
    }
    let mode = req.mode.as_deref().map(parse_mode).transpose()?;
    let policy = (req.key_lifetime_days.is_some() || req.key_grace_days.is_some())
        .then(|| key_policy(env.key_policy, req.key_lifetime_days, req.key_grace_days))
        .transpose()?;
    let updated = app
        .store
        .update_environment(&admin.actor(), app.now(), &env.id, req.name, mode, policy)
        .await?;
    Ok(Json(EnvironmentView::from(&updated)))
}
