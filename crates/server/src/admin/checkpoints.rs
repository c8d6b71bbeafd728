//! `/admin/v1/environments/{env}/audit/checkpoints`: sign the head of an environment's audit
//! chain now (`POST`), and list the stored checkpoints (`GET`). The periodic task does the same
//! as `POST` every `audit_checkpoint_interval_seconds` (`crate::checkpoints`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::views::{CheckpointView, List, Page};
use crate::App;
use crate::checkpoints::{Written, checkpoint_environment};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{Admin, ApiQuery};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CheckpointWritten {
    /// False when the head has not moved since the latest checkpoint (returned instead).
    pub created: bool,
    /// The new checkpoint, or the latest one (none: the chain is empty).
    pub checkpoint: Option<CheckpointView>,
}

/// Not audited: a checkpoint attests the chain and stays outside it, or writing one would move
/// the head it signs (docs/decisions/0009-audit-checkpoints.md).
#[utoipa::path(post, path = "/admin/v1/environments/{env}/audit/checkpoints", tag = "audit",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 201, description = "A checkpoint of the current head", body = CheckpointWritten),
        (status = 200, description = "The head has not moved: the latest checkpoint", body = CheckpointWritten),
        (status = 404, body = ErrorBody),
        (status = 409, description = "The chain since the latest checkpoint does not verify (`audit_chain_broken`); nothing was signed", body = ErrorBody)))]
pub async fn checkpoint_post(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<(StatusCode, Json<CheckpointWritten>)> {
    let env = admin.environment(&app, &env).await?;
    let written = checkpoint_environment(&app.store, &app.keys, &env, app.now()).await?;
    Ok(match written {
        Written::Created(c) => (
            StatusCode::CREATED,
            Json(CheckpointWritten {
                created: true,
                checkpoint: Some(c.into()),
            }),
        ),
        Written::Unchanged(c) => (
            StatusCode::OK,
            Json(CheckpointWritten {
                created: false,
                checkpoint: c.map(Into::into),
            }),
        ),
    })
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/audit/checkpoints", tag = "audit",
    params(("env" = String, Path, description = "Environment ID or slug"), Page),
    responses((status = 200, body = List<CheckpointView>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn checkpoints_list(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<List<CheckpointView>>> {
    let env = admin.environment(&app, &env).await?;
    let limit = page.limit()?;
    let after = super::logs::seq_cursor(page.after.as_deref())?;
    let found = app
        .store
        .checkpoints(env.id.as_str(), after, Some(limit))
        .await?;
    let next = (found.len() == limit as usize)
        .then(|| found.last().map(|c| c.seq.to_string()))
        .flatten();
    Ok(Json(List::new(
        found.into_iter().map(Into::into).collect(),
        next,
    )))
}

pub fn routes() -> axum::Router<App> {
    axum::Router::new().route(
        "/environments/{env}/audit/checkpoints",
        axum::routing::get(checkpoints_list).post(checkpoint_post),
    )
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(checkpoint_post, checkpoints_list))]
pub struct CheckpointsApi;
