//! The Events API: `GET /e/{env}/events` for environment API keys (and the admin equivalent),
//! filtered by type, organization and time, paged by event-ID cursors in log order.
//!
//! Events are numbered per environment in commit order (see the store's log module), so a
//! consumer that pages forward from the start with `after` sees every event exactly once, in
//! order, even while new events are written.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use portcullis_core::event::EventType;
use portcullis_core::model::{ApiKeyKind, Environment};
use portcullis_core::{Timestamp, ids::OrgId, ids::PrefixedId};
use portcullis_store::EventFilter;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::App;
use crate::admin::views::{EventView, List};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiQuery;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    /// Events after this event ID (or sequence number), oldest first.
    pub after: Option<String>,
    /// Events before this event ID (or sequence number): the page just before it.
    pub before: Option<String>,
    /// Comma-separated event types, e.g. `organization.created,connection.activated`.
    pub events: Option<String>,
    pub organization_id: Option<String>,
    /// RFC 3339; inclusive.
    pub range_start: Option<String>,
    /// RFC 3339; exclusive.
    pub range_end: Option<String>,
    /// 1–100, default 10.
    pub limit: Option<u32>,
}

async fn cursor(
    app: &App,
    env: &Environment,
    name: &str,
    v: Option<&str>,
) -> ApiResult<Option<i64>> {
    let Some(v) = v.filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if let Ok(n) = v.parse::<i64>() {
        return if n >= 0 {
            Ok(Some(n))
        } else {
            Err(ApiError::invalid(format!("{name} must not be negative")))
        };
    }
    if v.len() > 64 || !v.starts_with("evt_") {
        return Err(ApiError::invalid(format!(
            "{name} must be an event ID (evt_…)"
        )));
    }
    app.store
        .event_seq(&env.id, v)
        .await?
        .map(Some)
        .ok_or_else(|| {
            ApiError::invalid(format!("{name}: no event {v} exists in this environment"))
        })
}

fn time(name: &str, v: Option<&str>) -> ApiResult<Option<Timestamp>> {
    v.map(|s| {
        Timestamp::parse_rfc3339(s)
            .ok_or_else(|| ApiError::invalid(format!("{name} must be an RFC 3339 time, not {s:?}")))
    })
    .transpose()
}

/// Validates a query into a filter and runs it.
pub async fn list(app: &App, env: &Environment, q: &EventsQuery) -> ApiResult<List<EventView>> {
    let limit = match q.limit {
        None => 10,
        Some(n @ 1..=100) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "limit must be 1 to 100, not {n}"
            )));
        }
    };
    let types: Vec<String> = q
        .events
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect();
    if types.len() > 50 {
        return Err(ApiError::invalid("at most 50 event types per filter"));
    }
    if let Some(bad) = types.iter().find(|t| EventType::parse(t).is_none()) {
        return Err(ApiError::invalid(format!("unknown event type {bad:?}")));
    }
    let org = match q.organization_id.as_deref() {
        None => None,
        Some(o) => Some(
            OrgId::parse(o)
                .ok_or_else(|| {
                    ApiError::invalid(format!("organization_id {o:?} is not an organization ID"))
                })?
                .to_string(),
        ),
    };
    let filter = EventFilter {
        after_seq: cursor(app, env, "after", q.after.as_deref()).await?,
        before_seq: cursor(app, env, "before", q.before.as_deref()).await?,
        types,
        org,
        start: time("range_start", q.range_start.as_deref())?,
        end: time("range_end", q.range_end.as_deref())?,
        limit,
    };
    let page = app.store.query_events(&env.id, &filter).await?;
    let after = page
        .has_more
        .then(|| page.events.last().map(|e| e.id.to_string()))
        .flatten();
    let data = page
        .events
        .into_iter()
        .map(|e| EventView {
            id: e.id.to_string(),
            object: "event".into(),
            event: e.event,
            sequence: e.seq,
            environment_id: e.env_id.to_string(),
            organization_id: e.organization_id.map(|o| o.to_string()),
            data: e.data,
            created_at: e.created_at.to_rfc3339(),
        })
        .collect();
    Ok(List::new(data, after))
}

/// An environment API key of this environment, or an admin key that may see it.
async fn authorize(app: &App, parts: &Parts, env: &Environment) -> ApiResult<()> {
    let secret = crate::extract::bearer(parts).ok_or_else(|| {
        ApiError::unauthorized("send an environment API key as Authorization: Bearer")
    })?;
    let now = app.now();
    let key = app
        .store
        .api_key_by_digest(&portcullis_crypto::secret_digest(&secret), now)
        .await?
        .filter(|k| k.revoked_at.is_none())
        .ok_or_else(|| ApiError::unauthorized("the API key is not valid"))?;
    if key.is_expired(now) {
        return Err(ApiError::unauthorized("the API key has expired"));
    }
    match key.kind {
        ApiKeyKind::Environment | ApiKeyKind::Admin if key.can_access(&env.id) => Ok(()),
        // A key of another environment learns nothing about this one.
        _ => Err(ApiError::not_found("environment")),
    }
}

/// `GET /e/{env}/events`.
#[utoipa::path(get, path = "/e/{env}/events", tag = "events",
    params(("env" = String, Path, description = "Environment slug"), EventsQuery),
    responses((status = 200, body = List<EventView>), (status = 401, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)))]
pub async fn events_get(
    State(app): State<App>,
    Path(env): Path<String>,
    parts: Parts,
) -> ApiResult<Json<List<EventView>>> {
    let env = crate::extract::find_environment(&app, &env).await?;
    authorize(&app, &parts, &env).await?;
    let mut parts = parts;
    let ApiQuery(q) =
        <ApiQuery<EventsQuery> as axum::extract::FromRequestParts<App>>::from_request_parts(
            &mut parts, &app,
        )
        .await?;
    Ok(Json(list(&app, &env, &q).await?))
}
