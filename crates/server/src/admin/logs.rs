//! The event log and the audit chain, read-only.

use axum::Json;
use axum::extract::{Path, State};
use portcullis_core::audit::{AuditRecord, GLOBAL_CHAIN, verify_chain};
use portcullis_crypto::sha256_hex;

use super::views::{AuditView, ChainReportView, EventView, List, Page};
use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiQuery};

fn seq_cursor(after: Option<&str>) -> ApiResult<i64> {
    after.map_or(Ok(0), |a| {
        a.parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::invalid(format!("after must be a sequence number, not {a:?}")))
    })
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/events", tag = "events",
    params(("env" = String, Path, description = "Environment ID or slug"), crate::events_api::EventsQuery),
    responses((status = 200, body = List<EventView>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn events_list(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiQuery(q): ApiQuery<crate::events_api::EventsQuery>,
) -> ApiResult<Json<List<EventView>>> {
    let env = admin.environment(&app, &env).await?;
    Ok(Json(crate::events_api::list(&app, &env, &q).await?))
}

fn audit_view(r: AuditRecord) -> AuditView {
    AuditView {
        detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::String(r.detail)),
        chain: r.chain,
        seq: r.seq,
        at: r.at.to_rfc3339(),
        actor: r.actor,
        action: r.action,
        target: r.target,
        outcome: r.outcome.as_str().into(),
        prev_hash: r.prev_hash,
        hash: r.hash,
    }
}

async fn audit_page(app: &App, chain: &str, page: &Page) -> ApiResult<List<AuditView>> {
    let limit = page.limit()?;
    let records = app
        .store
        .audit_records(chain, seq_cursor(page.after.as_deref())?, Some(limit))
        .await?;
    let after = (records.len() == limit as usize)
        .then(|| records.last().map(|r| r.seq.to_string()))
        .flatten();
    Ok(List::new(
        records.into_iter().map(audit_view).collect(),
        after,
    ))
}

/// Recomputes a whole chain from storage.
pub async fn verify(app: &App, chain: &str) -> ApiResult<ChainReportView> {
    let records = app.store.audit_records(chain, 0, None).await?;
    let head = app.store.audit_head(chain).await?;
    let r = verify_chain(chain, &records, head.as_ref(), &|b| sha256_hex(b));
    Ok(ChainReportView {
        chain: r.chain,
        records: r.records,
        head_hash: r.head_hash,
        ok: r.broken.is_none(),
        broken_at: r.broken.as_ref().map(|b| b.seq),
        reason: r.broken.map(|b| b.reason),
    })
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/audit", tag = "audit",
    params(("env" = String, Path, description = "Environment ID or slug"), Page),
    responses((status = 200, body = List<AuditView>), (status = 404, body = ErrorBody)))]
pub async fn env_audit_list(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<List<AuditView>>> {
    let env = admin.environment(&app, &env).await?;
    Ok(Json(audit_page(&app, env.id.as_str(), &page).await?))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/audit/verify", tag = "audit",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, body = ChainReportView), (status = 404, body = ErrorBody)))]
pub async fn env_audit_verify(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<ChainReportView>> {
    let env = admin.environment(&app, &env).await?;
    Ok(Json(verify(&app, env.id.as_str()).await?))
}

#[utoipa::path(get, path = "/admin/v1/audit", tag = "audit", params(Page),
    responses((status = 200, body = List<AuditView>), (status = 403, body = ErrorBody)))]
pub async fn global_audit_list(
    State(app): State<App>,
    admin: Admin,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<List<AuditView>>> {
    admin.require_global()?;
    Ok(Json(audit_page(&app, GLOBAL_CHAIN, &page).await?))
}

#[utoipa::path(get, path = "/admin/v1/audit/verify", tag = "audit",
    responses((status = 200, body = ChainReportView), (status = 403, body = ErrorBody)))]
pub async fn global_audit_verify(
    State(app): State<App>,
    admin: Admin,
) -> ApiResult<Json<ChainReportView>> {
    admin.require_global()?;
    Ok(Json(verify(&app, GLOBAL_CHAIN).await?))
}
