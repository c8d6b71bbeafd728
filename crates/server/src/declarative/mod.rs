//! Declarative configuration and signed bundles over the admin API (issue 7):
//! `GET …/config` (export), `POST …/config/plan`, `POST …/config/apply`, the bundle-publisher
//! trust list, and `POST …/bundles/verify|apply`. The file format and bundle checks live in
//! `portcullis-bundle`; [`diff`] compares a file with the environment and [`apply`] makes the
//! difference in one transaction.

pub mod apply;
pub mod diff;
pub mod state;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use portcullis_bundle::bundle::{self, Expect};
use portcullis_bundle::{BundleError, EnvConfig};
use portcullis_core::audit::{NewAudit, Outcome};
use portcullis_core::model::Environment;
use serde_json::{Value, json};

use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::Admin;

fn text_of(body: &Bytes) -> ApiResult<&str> {
    std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("invalid_config", "the file is not UTF-8"))
}

fn parse(text: &str) -> ApiResult<EnvConfig> {
    EnvConfig::parse(text).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_config",
            e.to_string(),
        )
    })
}

/// Plans `cfg` against `env`: the plan and the checked intents.
async fn plan_for(
    app: &App,
    env: &Environment,
    cfg: &EnvConfig,
) -> ApiResult<(portcullis_bundle::Plan, Vec<diff::Intent>)> {
    let cur = state::load(app, env).await?;
    diff::diff(app, env, &cur, cfg).await
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/config", tag = "config",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, description = "The environment's declarative configuration (TOML, no secrets)", content_type = "application/toml", body = String), (status = 404, body = ErrorBody)))]
pub async fn config_get(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<impl IntoResponse> {
    let env = admin.environment(&app, &env).await?;
    let cur = state::load(&app, &env).await?;
    let text = state::export(&cur)
        .render()
        .map_err(|e| ApiError::internal("export", e))?;
    Ok((
        [(header::CONTENT_TYPE, "application/toml; charset=utf-8")],
        text,
    ))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/config/plan", tag = "config",
    params(("env" = String, Path, description = "Environment ID or slug")),
    request_body(content = String, content_type = "application/toml", description = "A declarative configuration file"),
    responses((status = 200, description = "What apply would change", body = Object), (status = 422, description = "`invalid_config`, naming the key", body = ErrorBody)))]
pub async fn config_plan_post(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    let cfg = parse(text_of(&body)?)?;
    let (plan, _) = plan_for(&app, &env, &cfg).await?;
    Ok(Json(json!({ "text": plan.render_text(), "plan": plan })))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/config/apply", tag = "config",
    params(("env" = String, Path, description = "Environment ID or slug")),
    request_body(content = String, content_type = "application/toml", description = "A declarative configuration file"),
    responses((status = 200, description = "The plan applied, and what was created (new secrets shown once)", body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn config_apply_post(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    let cfg = parse(text_of(&body)?)?;
    let (plan, intents) = plan_for(&app, &env, &cfg).await?;
    let digest = portcullis_crypto::sha256_hex(&body);
    let done = apply::apply(&app, &env, &admin.actor(), plan, intents, &digest, None).await?;
    Ok(Json(
        json!({ "text": done.plan.render_text(), "plan": done.plan, "created": done.created }),
    ))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/bundle-publishers", tag = "config",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, description = "The publisher keys whose bundles this environment accepts", body = Object)))]
pub async fn publishers_get(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    let keys = app.store.bundle_publishers(&env.id).await?;
    let last = app.store.last_bundle_sequence(&env.id).await?;
    Ok(Json(json!({
        "object": "list", "last_sequence": last,
        "data": keys.iter().map(|(id, jwk)| json!({ "key_id": id, "jwk": jwk })).collect::<Vec<_>>(),
    })))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/bundle-publishers", tag = "config",
    params(("env" = String, Path, description = "Environment ID or slug")),
    request_body(content = Object, description = "A publisher's public JWK (Ed25519 or P-256)"),
    responses((status = 201, body = Object), (status = 422, body = ErrorBody)))]
pub async fn publisher_add(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let env = admin.environment(&app, &env).await?;
    let jwk: Value = serde_json::from_slice(&body)
        .map_err(|_| ApiError::invalid("the body must be a public JWK (JSON)"))?;
    let id = portcullis_bundle::publisher::key_id(&jwk).ok_or_else(|| {
        ApiError::invalid("not an Ed25519 or P-256 public JWK (private members are refused)")
    })?;
    let mut keys = app.store.bundle_publishers(&env.id).await?;
    if !keys.iter().any(|(k, _)| *k == id) {
        keys.push((id.clone(), jwk.clone()));
    }
    app.store
        .set_bundle_publishers(&admin.actor(), app.now(), &env.id, &keys)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "key_id": id, "jwk": jwk })),
    ))
}

#[utoipa::path(delete, path = "/admin/v1/environments/{env}/bundle-publishers/{key}", tag = "config",
    params(("env" = String, Path, description = "Environment ID or slug"), ("key" = String, Path, description = "The key's thumbprint")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn publisher_remove(
    State(app): State<App>,
    admin: Admin,
    Path((env, key)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let env = admin.environment(&app, &env).await?;
    let mut keys = app.store.bundle_publishers(&env.id).await?;
    let n = keys.len();
    keys.retain(|(k, _)| *k != key);
    if keys.len() == n {
        return Err(ApiError::not_found(format!("publisher key {key}")));
    }
    app.store
        .set_bundle_publishers(&admin.actor(), app.now(), &env.id, &keys)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn refused(e: &BundleError) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string())
}

/// Every check of [`bundle::verify`] against this environment's trust list and history.
async fn verify_here(
    app: &App,
    env: &Environment,
    bytes: &[u8],
) -> ApiResult<Result<bundle::Verified, BundleError>> {
    let trusted: Vec<Value> = app
        .store
        .bundle_publishers(&env.id)
        .await?
        .into_iter()
        .map(|(_, j)| j)
        .collect();
    let last = app.store.last_bundle_sequence(&env.id).await?;
    Ok(bundle::verify(
        bytes,
        &Expect {
            trusted: &trusted,
            environment: Some(env.id.as_str()),
            last_sequence: Some(last),
            now: app.now(),
        },
    ))
}

fn verified_json(v: &bundle::Verified) -> Value {
    json!({ "sha256": v.digest, "publisher": v.key_id, "manifest": v.manifest })
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/bundles/verify", tag = "config",
    params(("env" = String, Path, description = "Environment ID or slug")),
    request_body(content = String, content_type = "application/octet-stream", description = "A bundle file"),
    responses((status = 200, description = "Every check passed: the manifest and the plan", body = Object), (status = 422, description = "Refused: the code names the check (`bundle_signature_invalid`, `bundle_sequence_not_newer`, …)", body = ErrorBody)))]
pub async fn bundle_verify_post(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    let v = verify_here(&app, &env, &body)
        .await?
        .map_err(|e| refused(&e))?;
    let (plan, _) = plan_for(&app, &env, &v.config).await?;
    Ok(Json(
        json!({ "bundle": verified_json(&v), "text": plan.render_text(), "plan": plan }),
    ))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/bundles/apply", tag = "config",
    params(("env" = String, Path, description = "Environment ID or slug")),
    request_body(content = String, content_type = "application/octet-stream", description = "A bundle file"),
    responses((status = 200, description = "Applied in one transaction", body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn bundle_apply_post(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    let digest = bundle::digest(&body);
    let result = async {
        let v = verify_here(&app, &env, &body).await?.map_err(|e| refused(&e))?;
        let (plan, intents) = plan_for(&app, &env, &v.config).await?;
        let import = apply::BundleImport { sequence: v.manifest.sequence, digest: digest.clone(), key_id: v.key_id.clone() };
        let file = portcullis_crypto::sha256_hex(v.config_text.as_bytes());
        let done = apply::apply(&app, &env, &admin.actor(), plan, intents, &file, Some(&import)).await?;
        Ok::<_, ApiError>(json!({ "bundle": verified_json(&v), "text": done.plan.render_text(), "plan": done.plan, "created": done.created }))
    }
    .await;
    match result {
        Ok(v) => Ok(Json(v)),
        Err(e) => {
            // Every refused import is audited with the file's digest; nothing else is written.
            let a = NewAudit {
                outcome: Outcome::Failure,
                ..NewAudit::success(
                    &admin.actor(),
                    "bundle.apply",
                    &digest,
                    json!({ "code": e.code, "reason": e.message }),
                )
            };
            app.store.record(&env.id, app.now(), None, a).await?;
            Err(e)
        }
    }
}

/// Files carrying a thousand organizations exceed the admin API's default body limit; these
/// routes take up to the bundle size limit (the admin key is checked before the body is read).
const FILE_LIMIT: usize = bundle::MAX_FILE;

pub fn routes() -> axum::Router<App> {
    use axum::routing::{delete, get, post};
    let file = |h: axum::routing::MethodRouter<App>| {
        h.layer(axum::extract::DefaultBodyLimit::max(FILE_LIMIT))
    };
    axum::Router::new()
        .route("/environments/{env}/config", get(config_get))
        .route(
            "/environments/{env}/config/plan",
            file(post(config_plan_post)),
        )
        .route(
            "/environments/{env}/config/apply",
            file(post(config_apply_post)),
        )
        .route(
            "/environments/{env}/bundle-publishers",
            get(publishers_get).post(publisher_add),
        )
        .route(
            "/environments/{env}/bundle-publishers/{key}",
            delete(publisher_remove),
        )
        .route(
            "/environments/{env}/bundles/verify",
            file(post(bundle_verify_post)),
        )
        .route(
            "/environments/{env}/bundles/apply",
            file(post(bundle_apply_post)),
        )
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    config_get,
    config_plan_post,
    config_apply_post,
    publishers_get,
    publisher_add,
    publisher_remove,
    bundle_verify_post,
    bundle_apply_post
))]
pub struct ConfigApi;
