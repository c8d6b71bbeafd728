//! The event log and the audit chain, read-only.

use axum::Json;
use axum::extract::{Path, State};
use portcullis_core::audit::{AuditRecord, GLOBAL_CHAIN, verify_chain};
use portcullis_core::model::Environment;
use portcullis_crypto::sha256_hex;

use super::views::{AuditView, ChainReportView, EventView, List, Page};
use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiQuery};

pub(super) fn seq_cursor(after: Option<&str>) -> ApiResult<i64> {
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

/// Recomputes a whole chain from storage and, for an environment's chain, checks it against its
/// signed checkpoints: a chain that ends below one lost its tail. A broken link is named before a
/// checkpoint problem.
pub async fn verify(
    app: &App,
    chain: &str,
    env: Option<&Environment>,
) -> ApiResult<ChainReportView> {
    let records = app.store.audit_records(chain, 0, None).await?;
    let head = app.store.audit_head(chain).await?;
    let r = verify_chain(chain, &records, head.as_ref(), &|b| sha256_hex(b));
    let checkpoints = match env {
        Some(env) => Some(
            crate::checkpoints::check_stored(
                &app.store,
                &app.keys,
                env,
                &records,
                head.as_ref(),
                app.now(),
            )
            .await?,
        ),
        None => None,
    };
    let broken = r
        .broken
        .or_else(|| checkpoints.as_ref().and_then(|c| c.broken.clone()));
    Ok(ChainReportView {
        chain: r.chain,
        records: r.records,
        head_hash: r.head_hash,
        ok: broken.is_none(),
        broken_at: broken.as_ref().map(|b| b.seq),
        reason: broken.map(|b| b.reason),
        checkpoints: checkpoints.as_ref().map_or(0, |c| c.verified),
        latest_checkpoint: checkpoints.and_then(|c| c.latest).map(Into::into),
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
    Ok(Json(verify(&app, env.id.as_str(), Some(&env)).await?))
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
    Ok(Json(verify(&app, GLOBAL_CHAIN, None).await?))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Export the records after this sequence number (0: the whole chain).
    pub after: Option<i64>,
}

/// `GET /admin/v1/environments/{env}/audit/export`: the chain (or its tail) as JSON Lines, for
/// carrying out of the network. The first line describes the export and carries a checkpoint:
/// the chain head signed with the environment's signing key (a compact JWS), so that an auditor
/// outside can detect an edited line, a removed tail or a forged head with
/// `portcullis audit verify --file`. It also carries the latest stored checkpoint of the range
/// and any beyond the head (`checkpoints`, covered by the export's signature): a chain truncated
/// in the database before the export shows in the file.
#[utoipa::path(get, path = "/admin/v1/environments/{env}/audit/export", tag = "audit",
    params(("env" = String, Path, description = "Environment ID or slug"), ExportQuery),
    responses((status = 200, description = "JSON Lines", content_type = "application/x-ndjson", body = String), (status = 404, body = ErrorBody)))]
pub async fn env_audit_export(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let env = admin.environment(&app, &env).await?;
    let after = q.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after must not be negative"));
    }
    let now = app.now();
    let chain = env.id.as_str();
    let records = app.store.audit_records(chain, after, None).await?;
    let head = app
        .store
        .audit_head(chain)
        .await?
        .unwrap_or(portcullis_core::audit::ChainHead {
            seq: 0,
            hash: portcullis_core::audit::GENESIS.into(),
        });
    if after > head.seq {
        return Err(ApiError::invalid(format!(
            "after {after} is beyond the chain head {}",
            head.seq
        )));
    }
    let start = if after == 0 {
        portcullis_core::audit::ChainHead {
            seq: 0,
            hash: portcullis_core::audit::GENESIS.into(),
        }
    } else {
        let prev = app.store.audit_records(chain, after - 1, Some(1)).await?;
        let p = prev
            .first()
            .ok_or_else(|| ApiError::invalid(format!("record {after} does not exist")))?;
        portcullis_core::audit::ChainHead {
            seq: p.seq,
            hash: p.hash.clone(),
        }
    };
    let signer = app
        .keys
        .signer(&env.id, now)
        .await
        .map_err(|e| ApiError::internal("signer", e))?;
    let (stored, jwks) =
        crate::checkpoints::for_export(&app.store, &app.keys, &env, start.seq, head.seq, now)
            .await?;
    let carried: Vec<&str> = stored.iter().map(|c| c.jws.as_str()).collect();
    let checkpoint = signer
        .sign_compact(Some("portcullis-audit-checkpoint"), &serde_json::json!({
            "chain": chain, "environment": env.slug, "issuer": env.issuer, "start": start, "head": head, "exported_at": now.to_rfc3339(),
            "checkpoints": carried,
        }))
        .map_err(|e| ApiError::internal("checkpoint", e))?;
    let header = serde_json::json!({
        "format": "portcullis-audit-export/1", "chain": chain,
        "environment": { "id": env.id, "slug": env.slug, "issuer": env.issuer },
        "start": start, "head": head, "exported_at": now.to_rfc3339(), "checkpoint": checkpoint, "jwks": jwks,
        "checkpoints": carried,
    });
    let mut out = header.to_string();
    out.push('\n');
    for r in &records {
        out.push_str(&serde_json::to_string(r).map_err(|e| ApiError::internal("export", e))?);
        out.push('\n');
    }
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        out,
    )
        .into_response())
}
