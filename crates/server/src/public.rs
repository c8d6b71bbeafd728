//! Per-environment public endpoints under the issuer path `/e/{env}`.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::App;
use crate::error::{ApiError, ApiResult};

pub fn routes() -> Router<App> {
    Router::new()
        .route("/e/{env}/jwks.json", get(jwks_get))
        .route("/e/{env}/events", get(crate::events_api::events_get))
}

/// The environment's published keys: `next`, `active`, and `retired` within grace (RFC 7517).
async fn jwks_get(State(app): State<App>, Path(env): Path<String>) -> ApiResult<impl IntoResponse> {
    let now = app.now();
    let env = app
        .environment_cached(&env, now)
        .await
        .map_err(|e| match e {
            portcullis_store::StoreError::NotFound(_) => {
                ApiError::not_found(format!("environment {env}"))
            }
            other => other.into(),
        })?;
    let jwks = app.keys.jwks(&env, now).await.map_err(|e| match e {
        crate::keys::KeyRingError::Store(s) => ApiError::from(s),
        other => ApiError::internal("jwks", other),
    })?;
    Ok((
        [
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::CONTENT_TYPE, "application/jwk-set+json"),
        ],
        jwks.to_string(),
    ))
}
