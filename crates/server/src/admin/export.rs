//! `GET /admin/v1/environments/{env}/events/export`: a signed, self-describing file of events
//! that can leave an isolated network and be verified offline (`portcullis events verify`).
//! The format is `portcullis_events::export`'s.

use axum::Json;
use axum::extract::{Path, State};
use portcullis_events::export::{ExportInput, build};
use portcullis_store::EventFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::IntoParams;

use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiQuery};

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// Events after this event ID or sequence number (absent: from the first event). Resume with
    /// the previous file's `cursor.last`.
    pub after: Option<String>,
    /// 1–10000, default 1000; `cursor.has_more` says whether more follow.
    pub limit: Option<u32>,
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/events/export", tag = "events",
    params(("env" = String, Path, description = "Environment ID or slug"), ExportQuery),
    responses((status = 200, description = "The signed export document", body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn events_export(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    let limit = match q.limit {
        None => 1000,
        Some(n @ 1..=10_000) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "limit must be 1 to 10000, not {n}"
            )));
        }
    };
    let after = q.after.as_deref().filter(|a| !a.is_empty());
    let after_seq = match after {
        None => 0,
        Some(a) => match a.parse::<i64>() {
            Ok(n) if n >= 0 => n,
            Ok(_) => return Err(ApiError::invalid("after must not be negative")),
            Err(_) => app.store.event_seq(&env.id, a).await?.ok_or_else(|| {
                ApiError::invalid(format!("after: no event {a} exists in this environment"))
            })?,
        },
    };
    let f = EventFilter {
        after_seq: Some(after_seq),
        limit,
        ..EventFilter::default()
    };
    let page = app.store.query_events(&env.id, &f).await?;
    let now = app.now();
    let last = page.events.last();
    let cursor = json!({
        "after": after.filter(|a| a.starts_with("evt_")), "after_sequence": after_seq,
        "last": last.map(|e| e.id.to_string()), "last_sequence": last.map_or(after_seq, |e| e.seq),
        "has_more": page.has_more,
    });
    let keys_err = |e: crate::keys::KeyRingError| ApiError::internal("signing key", e);
    let input = ExportInput {
        environment: json!({ "id": env.id, "slug": env.slug, "issuer": env.issuer }),
        exported_at: now.to_rfc3339(),
        cursor,
        events: page
            .events
            .iter()
            .map(portcullis_events::event_object)
            .collect(),
        jwks: app.keys.jwks(&env, now).await.map_err(keys_err)?,
    };
    let signer = app.keys.signer(&env.id, now).await.map_err(keys_err)?;
    let doc = build(input, &signer).map_err(|e| ApiError::internal("export signature", e))?;
    Ok(Json(doc))
}

pub fn routes() -> axum::Router<App> {
    axum::Router::new().route(
        "/environments/{env}/events/export",
        axum::routing::get(events_export),
    )
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(events_export))]
pub struct ExportApi;
