//! `/admin/v1/environments/{env}/webhook-endpoints`: endpoints, their secrets, their deliveries.
//!
//! An endpoint's URL must pass the environment's egress policy when it is created or changed
//! (the gate decides again at every delivery); a refusal is a 422 naming the rule that is
//! missing, and nothing is written. Signing secrets (`whsec_…`) are shown once, sealed at rest;
//! a rotation keeps the previous secret signing for an overlap, so receivers can roll over.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portcullis_core::event::EventType;
use portcullis_core::ids::{DeliveryId, EnvId, PrefixedId, WebhookId};
use portcullis_core::model::Environment;
use portcullis_core::webhook::{
    Attempt, Delivery, DeliveryState, EndpointState, MAX_URL_LEN, WebhookEndpoint, check_filter,
    check_headers,
};
use portcullis_core::{Secret, Timestamp};
use portcullis_crypto::SystemRandom;
use portcullis_egress::Purpose;
use portcullis_events::dispatcher::secret_aad;
use portcullis_events::signing::generate_secret;
use portcullis_store::{DeliveryFilter, ReplayFrom};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};

use super::views::List;
use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson, ApiQuery};

/// 0 to 30 days.
const OVERLAP: std::ops::RangeInclusive<i64> = 0..=2_592_000;
const DEFAULT_OVERLAP: i64 = 86_400;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookEndpoint {
    /// `https://…` (or `http://…` where a rule allows it); must pass the egress policy.
    pub url: String,
    #[serde(default)]
    pub description: String,
    /// Event types to deliver (see docs/events.md); absent or empty: every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Extra request headers (e.g. the receiver's own credential); values are never shown again.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub headers: Map<String, Value>,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Allow a URL another environment also delivers to. Refused by default: environments share
    /// no callbacks (`isolation check` reports it when allowed).
    #[serde(default)]
    pub allow_cross_environment_url: bool,
}

/// Environment isolation at run time: a webhook URL of another environment is refused unless
/// the request explicitly allows it.
pub(crate) async fn ensure_url_not_elsewhere(
    app: &App,
    env: &EnvId,
    url: &str,
    allow: bool,
) -> ApiResult<()> {
    if allow {
        return Ok(());
    }
    url_not_in(&urls_of_other_environments(app, env).await?, url)
}

/// Every webhook URL of the environments other than `env`, with its environment.
pub(crate) async fn urls_of_other_environments(
    app: &App,
    env: &EnvId,
) -> ApiResult<Vec<(EnvId, String)>> {
    let mut out = Vec::new();
    for other in app
        .store
        .list_environments()
        .await?
        .into_iter()
        .filter(|e| &e.id != env)
    {
        for w in app.store.list_webhook_endpoints(&other.id).await? {
            out.push((other.id.clone(), w.url));
        }
    }
    Ok(out)
}

/// [`ensure_url_not_elsewhere`] against URLs already read, for callers that check many at once.
pub(crate) fn url_not_in(others: &[(EnvId, String)], url: &str) -> ApiResult<()> {
    match others.iter().find(|(_, u)| u == url) {
        Some((other, _)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "url_in_other_environment",
            format!(
                "the URL {url} already receives webhooks of environment {other}: environments share no callbacks \
                 (set allow_cross_environment_url to override, and expect `isolation check` to report it)"
            ),
        )),
        None => Ok(()),
    }
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookEndpoint {
    pub url: Option<String>,
    pub description: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// Replaces every custom header.
    #[schema(value_type = Option<Object>)]
    pub headers: Option<Map<String, Value>>,
    pub enabled: Option<bool>,
    /// As at creation: allow a URL another environment also delivers to.
    #[serde(default)]
    pub allow_cross_environment_url: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateWebhookSecret {
    /// How long the replaced secret keeps signing, 0–2592000 seconds (default 86400).
    pub overlap_seconds: Option<i64>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// An event ID (events after it), a sequence number, or an RFC 3339 time (events at or after).
    pub since: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointView {
    pub id: String,
    pub object: String,
    pub environment_id: String,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    /// `active` or `failing`.
    pub state: String,
    /// Names of the custom headers; their values are not shown.
    pub header_names: Vec<String>,
    /// While a rotation overlaps: when the previous secret stops signing.
    pub previous_secret_expires_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&WebhookEndpoint> for WebhookEndpointView {
    fn from(e: &WebhookEndpoint) -> Self {
        Self {
            id: e.id.to_string(),
            object: "webhook_endpoint".into(),
            environment_id: e.env_id.to_string(),
            url: e.url.clone(),
            description: e.description.clone(),
            event_types: e.event_types.clone(),
            enabled: e.enabled,
            state: e.state.as_str().into(),
            header_names: e.headers.iter().map(|(n, _)| n.clone()).collect(),
            previous_secret_expires_at: e.previous_secret_expires_at.map(|t| t.to_rfc3339()),
            created_at: e.created_at.to_rfc3339(),
            updated_at: e.updated_at.to_rfc3339(),
        }
    }
}

/// An endpoint with its new secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookEndpointWithSecret {
    #[serde(flatten)]
    pub endpoint: WebhookEndpointView,
    /// `whsec_…`: verify deliveries with it (Standard Webhooks).
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub attempted_at: String,
    pub node: String,
    pub status: Option<u16>,
    pub latency_ms: i64,
    /// The first 1 KiB of the receiver's answer.
    pub response: Option<String>,
    pub error: Option<String>,
    pub succeeded: bool,
}

impl From<&Attempt> for AttemptView {
    fn from(a: &Attempt) -> Self {
        Self {
            attempted_at: a.attempted_at.to_rfc3339(),
            node: a.node.clone(),
            status: a.status,
            latency_ms: a.latency_ms,
            response: a.response.clone(),
            error: a.error.clone(),
            succeeded: a.succeeded,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub object: String,
    pub endpoint_id: String,
    /// Also the `webhook-id` header of every attempt.
    pub event_id: String,
    pub event_type: String,
    pub sequence: i64,
    /// `pending`, `succeeded` or `failed`.
    pub state: String,
    /// Attempts since the delivery was last enqueued.
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub completed_at: Option<String>,
    /// Every attempt, oldest first (on the single-delivery view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt_log: Option<Vec<AttemptView>>,
}

impl From<&Delivery> for DeliveryView {
    fn from(d: &Delivery) -> Self {
        Self {
            id: d.id.to_string(),
            object: "webhook_delivery".into(),
            endpoint_id: d.endpoint_id.to_string(),
            event_id: d.event_id.to_string(),
            event_type: d.event_type.clone(),
            sequence: d.event_seq,
            state: d.state.as_str().into(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at.map(|t| t.to_rfc3339()),
            last_status: d.last_status,
            last_error: d.last_error.clone(),
            created_at: d.created_at.to_rfc3339(),
            updated_at: d.updated_at.to_rfc3339(),
            completed_at: d.completed_at.map(|t| t.to_rfc3339()),
            attempt_log: None,
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DeliveriesQuery {
    /// `pending`, `succeeded` or `failed`.
    pub state: Option<String>,
    /// From `list_metadata.after` of the previous page (newest first).
    pub after: Option<String>,
    /// 1–100, default 10.
    pub limit: Option<u32>,
}

fn endpoint_id(s: &str) -> ApiResult<WebhookId> {
    WebhookId::parse(s).ok_or_else(|| ApiError::not_found(format!("webhook endpoint {s}")))
}

async fn load(
    app: &App,
    admin: &Admin,
    env: &str,
    id: &str,
) -> ApiResult<(Environment, WebhookEndpoint)> {
    let env = admin.environment(app, env).await?;
    let e = app
        .store
        .get_webhook_endpoint(&env.id, &endpoint_id(id)?)
        .await?;
    Ok((env, e))
}

/// Refuses a URL the environment's egress policy would refuse: 422 naming the missing rule.
async fn check_url(app: &App, env: &Environment, url: &str) -> ApiResult<()> {
    let ctx = crate::egress::context(&app.store, &env.id)
        .await
        .map_err(|e| ApiError::internal("egress policy", e))?;
    check_url_against(app, &ctx.policy, url).await
}

/// [`check_url`] against a given policy (a configuration file's, before it is applied).
pub(crate) async fn check_url_against(
    app: &App,
    policy: &portcullis_egress::policy::Policy,
    url: &str,
) -> ApiResult<()> {
    if url.len() > MAX_URL_LEN {
        return Err(ApiError::invalid(format!(
            "url is longer than {MAX_URL_LEN} characters"
        )));
    }
    let decision = app
        .egress
        .decide(policy, url, Purpose::Webhook)
        .await
        .map_err(|e| ApiError::invalid(format!("url: {e}")))?;
    if decision.allowed {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "egress_refused",
            format!(
                "the egress policy refuses this URL: {}; add a rule allowing it for purpose webhook first",
                decision.refusal.unwrap_or_default()
            ),
        ))
    }
}

pub(crate) fn headers_of(m: Map<String, Value>) -> ApiResult<Vec<(String, String)>> {
    let h = m
        .into_iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k, s)),
            _ => Err(ApiError::invalid(format!(
                "header {k:?}: the value must be a string"
            ))),
        })
        .collect::<ApiResult<Vec<_>>>()?;
    check_headers(&h).map_err(ApiError::invalid)?;
    Ok(h)
}

pub(crate) fn check_description(d: &str) -> ApiResult<()> {
    if d.len() > 500 || d.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "description: at most 500 characters, no control characters",
        ));
    }
    Ok(())
}

/// What a new endpoint is made of (checked by the caller).
pub(crate) struct NewEndpoint {
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub enabled: bool,
    pub headers: Vec<(String, String)>,
}

/// A new endpoint of `env`, active, with a fresh signing secret (returned, to show once).
pub(crate) fn new_endpoint(
    app: &App,
    env: &EnvId,
    n: NewEndpoint,
    now: Timestamp,
) -> ApiResult<(WebhookEndpoint, Secret)> {
    let id: WebhookId = app.store.new_id(now);
    let (secret, sealed) = new_secret(app, &id, env)?;
    let e = WebhookEndpoint {
        id,
        env_id: env.clone(),
        url: n.url,
        description: n.description,
        event_types: n.event_types,
        enabled: n.enabled,
        headers: n.headers,
        state: EndpointState::Active,
        sealed_secret: sealed,
        sealed_previous_secret: None,
        previous_secret_expires_at: None,
        created_at: now,
        updated_at: now,
    };
    Ok((e, secret))
}

/// A fresh secret and its sealed form for endpoint `id` of `env`.
pub(crate) fn new_secret(app: &App, id: &WebhookId, env: &EnvId) -> ApiResult<(Secret, Vec<u8>)> {
    let secret = generate_secret(&SystemRandom);
    let sealed = app
        .keys
        .master()
        .seal(
            &SystemRandom,
            &secret_aad(id, env),
            secret.expose().as_bytes(),
        )
        .map_err(|e| ApiError::internal("seal", e))?;
    Ok((secret, sealed))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/webhook-endpoints", tag = "webhooks",
    request_body = CreateWebhookEndpoint,
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 201, body = WebhookEndpointWithSecret), (status = 422, description = "Invalid, or refused by the egress policy (`egress_refused`)", body = ErrorBody)))]
pub async fn webhook_endpoint_create(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiJson(req): ApiJson<CreateWebhookEndpoint>,
) -> ApiResult<(StatusCode, Json<WebhookEndpointWithSecret>)> {
    let env = admin.environment(&app, &env).await?;
    check_filter(&req.event_types).map_err(ApiError::invalid)?;
    check_description(&req.description)?;
    let headers = headers_of(req.headers)?;
    check_url(&app, &env, &req.url).await?;
    ensure_url_not_elsewhere(&app, &env.id, &req.url, req.allow_cross_environment_url).await?;
    let now = app.now();
    let (e, secret) = new_endpoint(
        &app,
        &env.id,
        NewEndpoint {
            url: req.url,
            description: req.description,
            event_types: req.event_types,
            enabled: req.enabled,
            headers,
        },
        now,
    )?;
    let e = app
        .store
        .create_webhook_endpoint(&admin.actor(), now, e)
        .await?;
    let endpoint = WebhookEndpointView::from(&e);
    let secret = secret.expose().to_owned();
    Ok((
        StatusCode::CREATED,
        Json(WebhookEndpointWithSecret { endpoint, secret }),
    ))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/webhook-endpoints", tag = "webhooks",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, body = List<WebhookEndpointView>), (status = 404, body = ErrorBody)))]
pub async fn webhook_endpoints_list(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<List<WebhookEndpointView>>> {
    let env = admin.environment(&app, &env).await?;
    let all = app.store.list_webhook_endpoints(&env.id).await?;
    Ok(Json(List::new(
        all.iter().map(WebhookEndpointView::from).collect(),
        None,
    )))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/webhook-endpoints/{whk}", tag = "webhooks",
    params(("env" = String, Path), ("whk" = String, Path)),
    responses((status = 200, body = WebhookEndpointView), (status = 404, body = ErrorBody)))]
pub async fn webhook_endpoint_get(
    State(app): State<App>,
    admin: Admin,
    Path((env, id)): Path<(String, String)>,
) -> ApiResult<Json<WebhookEndpointView>> {
    let (_, e) = load(&app, &admin, &env, &id).await?;
    Ok(Json(WebhookEndpointView::from(&e)))
}

#[utoipa::path(patch, path = "/admin/v1/environments/{env}/webhook-endpoints/{whk}", tag = "webhooks",
    request_body = UpdateWebhookEndpoint, params(("env" = String, Path), ("whk" = String, Path)),
    responses((status = 200, body = WebhookEndpointView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn webhook_endpoint_update(
    State(app): State<App>,
    admin: Admin,
    Path((env, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateWebhookEndpoint>,
) -> ApiResult<Json<WebhookEndpointView>> {
    let (env, before) = load(&app, &admin, &env, &id).await?;
    let mut after = before.clone();
    if let Some(types) = req.event_types {
        check_filter(&types).map_err(ApiError::invalid)?;
        after.event_types = types;
    }
    if let Some(d) = req.description {
        check_description(&d)?;
        after.description = d;
    }
    if let Some(h) = req.headers {
        after.headers = headers_of(h)?;
    }
    if let Some(url) = req.url {
        check_url(&app, &env, &url).await?;
        ensure_url_not_elsewhere(&app, &env.id, &url, req.allow_cross_environment_url).await?;
        after.url = url;
    }
    after.enabled = req.enabled.unwrap_or(before.enabled);
    let e = app
        .store
        .update_webhook_endpoint(
            &admin.actor(),
            app.now(),
            &before,
            after,
            EventType::WebhookEndpointUpdated,
        )
        .await?;
    Ok(Json(WebhookEndpointView::from(&e)))
}

#[utoipa::path(delete, path = "/admin/v1/environments/{env}/webhook-endpoints/{whk}", tag = "webhooks",
    params(("env" = String, Path), ("whk" = String, Path)),
    responses((status = 204, description = "Deleted with its deliveries"), (status = 404, body = ErrorBody)))]
pub async fn webhook_endpoint_delete(
    State(app): State<App>,
    admin: Admin,
    Path((env, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (_, e) = load(&app, &admin, &env, &id).await?;
    app.store
        .delete_webhook_endpoint(&admin.actor(), app.now(), &e)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new secret; the replaced one keeps signing (a second `v1,` signature) for the overlap.
#[utoipa::path(post, path = "/admin/v1/environments/{env}/webhook-endpoints/{whk}/secret", tag = "webhooks",
    request_body = RotateWebhookSecret, params(("env" = String, Path), ("whk" = String, Path)),
    responses((status = 200, body = WebhookEndpointWithSecret), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn webhook_secret_rotate(
    State(app): State<App>,
    admin: Admin,
    Path((env, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<RotateWebhookSecret>,
) -> ApiResult<Json<WebhookEndpointWithSecret>> {
    let (env, before) = load(&app, &admin, &env, &id).await?;
    let overlap = req.overlap_seconds.unwrap_or(DEFAULT_OVERLAP);
    if !OVERLAP.contains(&overlap) {
        return Err(ApiError::invalid("overlap_seconds must be 0 to 2592000"));
    }
    let now = app.now();
    let (secret, sealed) = new_secret(&app, &before.id, &env.id)?;
    let after = WebhookEndpoint {
        sealed_previous_secret: (overlap > 0).then(|| before.sealed_secret.clone()),
        previous_secret_expires_at: (overlap > 0).then(|| now.plus_seconds(overlap)),
        sealed_secret: sealed,
        ..before.clone()
    };
    let e = app
        .store
        .rotate_webhook_secret(&admin.actor(), now, &before, after)
        .await?;
    let endpoint = WebhookEndpointView::from(&e);
    let secret = secret.expose().to_owned();
    Ok(Json(WebhookEndpointWithSecret { endpoint, secret }))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/webhook-endpoints/{whk}/deliveries", tag = "webhooks",
    params(("env" = String, Path), ("whk" = String, Path), DeliveriesQuery),
    responses((status = 200, body = List<DeliveryView>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn deliveries_list(
    State(app): State<App>,
    admin: Admin,
    Path((env, id)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<DeliveriesQuery>,
) -> ApiResult<Json<List<DeliveryView>>> {
    let (env, e) = load(&app, &admin, &env, &id).await?;
    let limit = match q.limit {
        None => 10,
        Some(n @ 1..=100) => n,
        Some(n) => {
            return Err(ApiError::invalid(format!(
                "limit must be 1 to 100, not {n}"
            )));
        }
    };
    let state = q
        .state
        .as_deref()
        .map(|s| {
            DeliveryState::parse(s).ok_or_else(|| {
                ApiError::invalid(format!(
                    "state must be pending, succeeded or failed, not {s:?}"
                ))
            })
        })
        .transpose()?;
    let before_seq = q
        .after
        .as_deref()
        .map(|a| {
            a.parse::<i64>().map_err(|_| {
                ApiError::invalid(format!(
                    "after must be a cursor from list_metadata, not {a:?}"
                ))
            })
        })
        .transpose()?;
    let f = DeliveryFilter {
        state,
        before_seq,
        limit,
    };
    let (page, more) = app.store.list_deliveries(&env.id, &e.id, &f).await?;
    let after = more
        .then(|| page.last().map(|d| d.event_seq.to_string()))
        .flatten();
    Ok(Json(List::new(
        page.iter().map(DeliveryView::from).collect(),
        after,
    )))
}

async fn load_delivery(
    app: &App,
    admin: &Admin,
    env: &str,
    id: &str,
    dlv: &str,
) -> ApiResult<Delivery> {
    let (env, e) = load(app, admin, env, id).await?;
    let d = DeliveryId::parse(dlv).ok_or_else(|| ApiError::not_found(format!("delivery {dlv}")))?;
    Ok(app.store.get_delivery(&env.id, &e.id, &d).await?)
}

async fn with_attempts(app: &App, d: &Delivery) -> ApiResult<DeliveryView> {
    let log = app.store.delivery_attempts(&d.id).await?;
    let mut v = DeliveryView::from(d);
    v.attempt_log = Some(log.iter().map(AttemptView::from).collect());
    Ok(v)
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/webhook-endpoints/{whk}/deliveries/{dlv}", tag = "webhooks",
    params(("env" = String, Path), ("whk" = String, Path), ("dlv" = String, Path)),
    responses((status = 200, description = "The delivery with its attempt log", body = DeliveryView), (status = 404, body = ErrorBody)))]
pub async fn delivery_get(
    State(app): State<App>,
    admin: Admin,
    Path((env, id, dlv)): Path<(String, String, String)>,
) -> ApiResult<Json<DeliveryView>> {
    let d = load_delivery(&app, &admin, &env, &id, &dlv).await?;
    Ok(Json(with_attempts(&app, &d).await?))
}

/// Sends one delivery again now, with a fresh retry schedule, whatever its state.
#[utoipa::path(post, path = "/admin/v1/environments/{env}/webhook-endpoints/{whk}/deliveries/{dlv}/retry", tag = "webhooks",
    params(("env" = String, Path), ("whk" = String, Path), ("dlv" = String, Path)),
    responses((status = 202, body = DeliveryView), (status = 404, body = ErrorBody)))]
pub async fn delivery_retry(
    State(app): State<App>,
    admin: Admin,
    Path((env, id, dlv)): Path<(String, String, String)>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    let d = load_delivery(&app, &admin, &env, &id, &dlv).await?;
    let d = app
        .store
        .retry_delivery(&admin.actor(), app.now(), &d)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(with_attempts(&app, &d).await?)))
}

/// Where a replay starts: after an event (ID or sequence number), or from a time.
async fn replay_from(app: &App, env: &Environment, since: &str) -> ApiResult<ReplayFrom> {
    if let Ok(n) = since.parse::<i64>() {
        return if n >= 0 {
            Ok(ReplayFrom::AfterSeq(n))
        } else {
            Err(ApiError::invalid("since must not be negative"))
        };
    }
    if since.starts_with("evt_") && since.len() <= 64 {
        return app
            .store
            .event_seq(&env.id, since)
            .await?
            .map(ReplayFrom::AfterSeq)
            .ok_or_else(|| {
                ApiError::invalid(format!(
                    "since: no event {since} exists in this environment"
                ))
            });
    }
    Timestamp::parse_rfc3339(since)
        .map(ReplayFrom::Since)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "since must be an event ID, a sequence number or an RFC 3339 time, not {since:?}"
            ))
        })
}

/// Re-enqueues every event since `since` that the endpoint's filter takes (already delivered or
/// not); the same `webhook-id` as before, so receivers can deduplicate.
#[utoipa::path(post, path = "/admin/v1/environments/{env}/webhook-endpoints/{whk}/replay", tag = "webhooks",
    request_body = Replay, params(("env" = String, Path), ("whk" = String, Path)),
    responses((status = 202, description = "`{\"enqueued\": N}`", body = Object), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn webhook_replay(
    State(app): State<App>,
    admin: Admin,
    Path((env, id)): Path<(String, String)>,
    ApiJson(req): ApiJson<Replay>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let (env, e) = load(&app, &admin, &env, &id).await?;
    let from = replay_from(&app, &env, &req.since).await?;
    let n = app
        .store
        .replay_deliveries(&admin.actor(), app.now(), &e, from)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "enqueued": n })),
    ))
}

pub fn routes() -> axum::Router<App> {
    use axum::routing::{get, post};
    let base = "/environments/{env}/webhook-endpoints";
    axum::Router::new()
        .route(
            base,
            get(webhook_endpoints_list).post(webhook_endpoint_create),
        )
        .route(
            &format!("{base}/{{whk}}"),
            get(webhook_endpoint_get)
                .patch(webhook_endpoint_update)
                .delete(webhook_endpoint_delete),
        )
        .route(
            &format!("{base}/{{whk}}/secret"),
            post(webhook_secret_rotate),
        )
        .route(&format!("{base}/{{whk}}/deliveries"), get(deliveries_list))
        .route(
            &format!("{base}/{{whk}}/deliveries/{{dlv}}"),
            get(delivery_get),
        )
        .route(
            &format!("{base}/{{whk}}/deliveries/{{dlv}}/retry"),
            post(delivery_retry),
        )
        .route(&format!("{base}/{{whk}}/replay"), post(webhook_replay))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    webhook_endpoint_create,
    webhook_endpoints_list,
    webhook_endpoint_get,
    webhook_endpoint_update,
    webhook_endpoint_delete,
    webhook_secret_rotate,
    deliveries_list,
    delivery_get,
    delivery_retry,
    webhook_replay,
))]
pub struct WebhooksApi;
