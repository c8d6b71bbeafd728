//! The machine-credential report: every client secret, `private_key_jwt` key, API key and
//! webhook secret with its owner, dates, state, rotation due date and what is wrong with it.
//!
//! `GET /admin/v1/environments/{env}/credentials` covers one environment (its environment API
//! keys and environment-scoped admin keys included); `GET /admin/v1/credentials` covers every
//! environment the caller sees and, for a global admin key, the global admin keys. Both compute
//! the problems on the server, at the server's time, so the CLI only renders and sets the exit
//! code.

use axum::Json;
use axum::extract::{Path, State};
use portcullis_core::Timestamp;
use portcullis_core::credential::{Credential, Problem, RotationPolicy};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiQuery};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReportQuery {
    /// Also flag active credentials unused (never, or not since) for more than this many days.
    pub stale_days: Option<u32>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CredentialView {
    /// The credential's reference: `key_…` for an API key, `client_…/secret/<8 hex of the
    /// secret's digest>`, `client_…/jwk/<kid>`, `whk_…/secret`, `whk_…/secret/previous`.
    pub id: String,
    pub object: String,
    /// `client_secret`, `client_secret_previous`, `private_key_jwt`, `environment_api_key`,
    /// `admin_api_key`, `webhook_secret` or `webhook_secret_previous`.
    pub kind: String,
    /// Absent for a global admin key.
    pub environment_id: Option<String>,
    /// `client`, `api_key` or `webhook_endpoint`.
    pub owner_type: String,
    pub owner_id: String,
    /// The client's name, the key's name, the endpoint's URL.
    pub owner_name: String,
    pub created_at: Option<String>,
    pub last_used_at: Option<String>,
    pub expires_at: Option<String>,
    /// Creation plus the kind's rotation period (server configuration), or the expiry if sooner.
    pub rotation_due_at: Option<String>,
    pub revoked_at: Option<String>,
    /// `active`, `overlap` (replaced by a rotation, accepted until `expires_at`), `expired` or
    /// `revoked`.
    pub state: String,
    /// `rotation_overdue`, `expired`, `stale`; empty when nothing is wrong.
    pub problems: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CredentialSummary {
    pub total: usize,
    /// Credentials with at least one problem.
    pub with_problems: usize,
    pub rotation_overdue: usize,
    pub expired: usize,
    pub stale: usize,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CredentialReport {
    pub object: String,
    /// The server time the report was computed at.
    pub generated_at: String,
    pub stale_days: Option<u32>,
    pub summary: CredentialSummary,
    pub data: Vec<CredentialView>,
}

fn report(
    creds: &[Credential],
    now: Timestamp,
    policy: &RotationPolicy,
    stale_days: Option<u32>,
) -> CredentialReport {
    let ts = |t: Option<Timestamp>| t.map(Timestamp::to_rfc3339);
    let mut summary = CredentialSummary {
        total: creds.len(),
        with_problems: 0,
        rotation_overdue: 0,
        expired: 0,
        stale: 0,
    };
    let data = creds
        .iter()
        .map(|c| {
            let problems = c.problems(now, policy, stale_days);
            summary.with_problems += usize::from(!problems.is_empty());
            for p in &problems {
                match p {
                    Problem::RotationOverdue => summary.rotation_overdue += 1,
                    Problem::Expired => summary.expired += 1,
                    Problem::Stale => summary.stale += 1,
                }
            }
            CredentialView {
                id: c.reference.clone(),
                object: "credential".into(),
                kind: c.kind.as_str().into(),
                environment_id: c.env_id.as_ref().map(ToString::to_string),
                owner_type: c.kind.owner_type().into(),
                owner_id: c.owner_id.clone(),
                owner_name: c.owner_name.clone(),
                created_at: ts(c.created_at),
                last_used_at: ts(c.last_used_at),
                expires_at: ts(c.expires_at),
                rotation_due_at: ts(c.rotation_due_at(policy)),
                revoked_at: ts(c.revoked_at),
                state: c.state(now).as_str().into(),
                problems: problems.iter().map(|p| p.as_str().to_owned()).collect(),
            }
        })
        .collect();
    CredentialReport {
        object: "credential_report".into(),
        generated_at: now.to_rfc3339(),
        stale_days,
        summary,
        data,
    }
}

fn check_stale(q: &ReportQuery) -> ApiResult<()> {
    match q.stale_days {
        Some(0) => Err(ApiError::invalid("stale_days must be at least 1")),
        _ => Ok(()),
    }
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/credentials", tag = "credentials",
    params(("env" = String, Path, description = "Environment ID or slug"), ReportQuery),
    responses((status = 200, body = CredentialReport), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn env_credentials_get(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Json<CredentialReport>> {
    check_stale(&q)?;
    let env = admin.environment(&app, &env).await?;
    let now = app.now();
    let creds = app.store.credential_inventory(Some(&env.id), now).await?;
    Ok(Json(report(
        &creds,
        now,
        &app.credential_policy,
        q.stale_days,
    )))
}

/// Every environment the caller may see; a global admin key also sees the global admin keys.
#[utoipa::path(get, path = "/admin/v1/credentials", tag = "credentials", params(ReportQuery),
    responses((status = 200, body = CredentialReport), (status = 422, body = ErrorBody)))]
pub async fn credentials_get(
    State(app): State<App>,
    admin: Admin,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> ApiResult<Json<CredentialReport>> {
    check_stale(&q)?;
    let now = app.now();
    let creds = app
        .store
        .credential_inventory(admin.key.env_id.as_ref(), now)
        .await?;
    Ok(Json(report(
        &creds,
        now,
        &app.credential_policy,
        q.stale_days,
    )))
}

pub fn routes() -> axum::Router<App> {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/credentials", get(credentials_get))
        .route("/environments/{env}/credentials", get(env_credentials_get))
        .route(
            "/api-keys/{key}/rotate",
            post(super::api_keys::api_key_rotate),
        )
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(credentials_get, env_credentials_get, super::api_keys::api_key_rotate))]
pub struct CredentialsApi;
