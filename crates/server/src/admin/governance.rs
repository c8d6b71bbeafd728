//! Network governance in the admin API: the egress policy (a whole document with a version), the
//! decision for one URL, the identity-dependency inventory, and the change-control checks.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::model::Environment;
use portcullis_egress::checks::{
    Finding, IsolationFacts, isolation_findings, policy_diff, policy_findings,
};
use portcullis_egress::inventory::{Dependency, EnvConfig, inventory};
use portcullis_egress::{Policy, Purpose};
use portcullis_store::PolicyChange;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson};

async fn policy_of(app: &App, env: &Environment) -> ApiResult<Policy> {
    crate::egress::context(&app.store, &env.id)
        .await
        .map(|c| (*c.policy).clone())
        .map_err(|e| ApiError::internal("egress policy", e))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/egress-policy", tag = "governance",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, description = "The policy document with its version", body = Object), (status = 404, body = ErrorBody)))]
pub async fn egress_policy_get(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<Policy>> {
    let env = admin.environment(&app, &env).await?;
    Ok(Json(policy_of(&app, &env).await?))
}

/// Replaces the whole policy. The body's `version` must be the current version (0 when none was
/// set); the response carries the new one. Every change is audited with its diff.
#[utoipa::path(put, path = "/admin/v1/environments/{env}/egress-policy", tag = "governance",
    params(("env" = String, Path, description = "Environment ID or slug")),
    request_body(content = Object, description = "{\"version\": N, \"rules\": [...], \"waivers\": [...]}"),
    responses((status = 200, body = Object), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn egress_policy_put(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    if !headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the policy as application/json",
        ));
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::bad_request("invalid_json", "the body is not UTF-8"))?;
    let new = portcullis_egress::policy::parse(text).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_policy",
            e.to_string(),
        )
    })?;
    let old = policy_of(&app, &env).await?;
    let diff = serde_json::to_value(policy_diff(&old, &new)).unwrap_or(Value::Null);
    let stored = Policy {
        version: 0,
        ..new.clone()
    };
    let document = serde_json::to_string(&stored).map_err(|e| ApiError::internal("policy", e))?;
    let ca = app.store.egress_policy(&env.id).await?.ca_bundle;
    let version = app
        .store
        .replace_egress_policy(
            &admin.actor(),
            app.now(),
            &env.id,
            PolicyChange {
                expected_version: new.version,
                document: &document,
                ca_bundle: ca.as_deref(),
                diff: diff.clone(),
            },
        )
        .await?;
    Ok(Json(json!({ "version": version, "changes": diff })))
}

/// Sets the environment's private CA bundle (PEM); only these CAs are trusted for its egress.
#[utoipa::path(put, path = "/admin/v1/environments/{env}/egress-policy/ca-bundle", tag = "governance",
    params(("env" = String, Path, description = "Environment ID or slug")),
    request_body(content = String, content_type = "application/x-pem-file"),
    responses((status = 200, body = Object), (status = 422, body = ErrorBody)))]
pub async fn ca_bundle_put(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    let pem = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("the CA bundle is not PEM text"))?;
    let certs = reqwest_certs(pem)?;
    let current = app.store.egress_policy(&env.id).await?;
    let version = app
        .store
        .replace_egress_policy(
            &admin.actor(),
            app.now(),
            &env.id,
            PolicyChange {
                expected_version: current.version,
                document: &current.document,
                ca_bundle: Some(pem),
                diff: json!({ "ca_bundle_certificates": certs }),
            },
        )
        .await?;
    Ok(Json(json!({ "version": version, "certificates": certs })))
}

fn reqwest_certs(pem: &str) -> ApiResult<usize> {
    let n = pem.matches("-----BEGIN CERTIFICATE-----").count();
    if n == 0 || pem.len() > 1 << 20 {
        return Err(ApiError::invalid(
            "the CA bundle must hold 1 or more PEM certificates (at most 1 MiB)",
        ));
    }
    portcullis_egress::gate::check_ca_bundle(pem.as_bytes()).map_err(ApiError::invalid)?;
    Ok(n)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EgressTest {
    pub url: String,
    /// `metadata_fetch`, `jwks_fetch`, `token_exchange` or `webhook`.
    pub purpose: String,
    /// Also try the connection (a GET through the gate).
    #[serde(default)]
    pub connect: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EgressTestResult {
    #[schema(value_type = Object)]
    pub decision: Value,
    /// With `connect`: the HTTP status reached, or the error.
    #[schema(value_type = Object)]
    pub connect: Option<Value>,
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/egress-policy/test", tag = "governance", request_body = EgressTest,
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, body = EgressTestResult), (status = 422, body = ErrorBody)))]
pub async fn egress_test_post(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiJson(req): ApiJson<EgressTest>,
) -> ApiResult<Json<EgressTestResult>> {
    let env = admin.environment(&app, &env).await?;
    let purpose = Purpose::parse(&req.purpose).ok_or_else(|| {
        ApiError::invalid(format!(
            "unknown purpose {:?} (metadata_fetch, jwks_fetch, token_exchange, webhook)",
            req.purpose
        ))
    })?;
    let ctx = crate::egress::context(&app.store, &env.id)
        .await
        .map_err(|e| ApiError::internal("egress policy", e))?;
    let decision = match app.egress.decide(&ctx.policy, &req.url, purpose).await {
        Ok(d) => serde_json::to_value(d).unwrap_or(Value::Null),
        Err(e) => json!({ "allowed": false, "refusal": e.to_string() }),
    };
    let connect = if req.connect {
        let r = portcullis_egress::gate::Request {
            method: reqwest_get(),
            url: req.url.clone(),
            headers: vec![],
            body: None,
        };
        Some(match app.egress.send(&ctx, purpose, r).await {
            Ok(res) => json!({ "ok": true, "status": res.status, "url": res.url }),
            Err(e) => json!({ "ok": false, "error": e.to_string() }),
        })
    } else {
        None
    };
    Ok(Json(EgressTestResult { decision, connect }))
}

fn reqwest_get() -> portcullis_egress::gate::Method {
    portcullis_egress::gate::Method::GET
}

/// The inputs of the inventory and the policy check.
async fn rows(app: &App, env: &Environment) -> ApiResult<(Policy, Vec<Dependency>, Vec<Finding>)> {
    let policy = policy_of(app, env).await?;
    let clients = app.store.list_clients(&env.id).await?;
    let connections = app.store.list_connections(&env.id, None).await?;
    let webhooks = app.store.list_webhook_endpoints(&env.id).await?;
    let cfg = EnvConfig {
        env,
        policy: &policy,
        clients: &clients,
        connections: &connections,
        webhooks: &webhooks,
    };
    let rows = inventory(&cfg);
    let findings = policy_findings(&cfg, &rows);
    Ok((policy, rows, findings))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/inventory", tag = "governance",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, description = "One row per identity dependency", body = Object), (status = 404, body = ErrorBody)))]
pub async fn inventory_get(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    let (_, rows, _) = rows(&app, &env).await?;
    Ok(Json(
        json!({ "environment": env.slug, "mode": env.mode, "dependencies": rows }),
    ))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/policy-check", tag = "governance",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, description = "Findings; ok is false when there are any", body = Object)))]
pub async fn policy_check_get(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    let (_, _, findings) = rows(&app, &env).await?;
    Ok(Json(
        json!({ "environment": env.slug, "ok": findings.is_empty(), "findings": findings }),
    ))
}

/// Everything of one environment that the isolation check compares.
async fn facts(app: &App, env: &Environment) -> ApiResult<IsolationFacts> {
    let mut items = Vec::new();
    let mut hosts = Vec::new();
    if let Some((_, h, _)) = portcullis_egress::inventory::split_url(&env.issuer) {
        hosts.push(h);
    }
    for w in app.store.list_webhook_endpoints(&env.id).await? {
        items.push((
            "webhook URL".into(),
            w.url.clone(),
            format!("webhook endpoint {}", w.id),
        ));
    }
    for c in app.store.list_clients(&env.id).await? {
        let owner = format!("client {}", c.id);
        for d in [&c.secret_digest, &c.previous_secret_digest]
            .into_iter()
            .flatten()
        {
            items.push(("client secret digest".to_owned(), d.clone(), owner.clone()));
        }
        for u in &c.redirect_uris {
            items.push(("redirect URI".into(), u.clone(), owner.clone()));
            if let Some((_, h, _)) = portcullis_egress::inventory::split_url(u) {
                hosts.push(h);
            }
        }
        for u in &c.post_logout_redirect_uris {
            items.push(("logout URI".into(), u.clone(), owner.clone()));
        }
        for k in c
            .jwks
            .as_ref()
            .and_then(|j| j.get("keys"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = portcullis_crypto::jws::jwk_thumbprint(k) {
                items.push(("client key".into(), t, owner.clone()));
            }
        }
    }
    for k in app.store.signing_keys(&env.id).await? {
        if let Some(t) = portcullis_crypto::jws::jwk_thumbprint(&k.info.public_jwk) {
            items.push(("signing key".into(), t, format!("key {}", k.info.id)));
        }
    }
    hosts.sort();
    hosts.dedup();
    Ok(IsolationFacts {
        env: env.slug.clone(),
        mode: Some(env.mode),
        issuer: env.issuer.clone(),
        items,
        callback_hosts: hosts,
    })
}

#[utoipa::path(get, path = "/admin/v1/isolation-check", tag = "governance",
    responses((status = 200, description = "Findings across every environment", body = Object), (status = 403, body = ErrorBody)))]
pub async fn isolation_check_get(State(app): State<App>, admin: Admin) -> ApiResult<Json<Value>> {
    admin.require_global()?;
    let mut all = Vec::new();
    for env in app.store.list_environments().await? {
        all.push(facts(&app, &env).await?);
    }
    let findings = isolation_findings(&all);
    Ok(Json(
        json!({ "ok": findings.is_empty(), "environments": all.len(), "findings": findings }),
    ))
}

/// The access review: one Markdown document an auditor can sign.
#[utoipa::path(get, path = "/admin/v1/environments/{env}/review", tag = "governance",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, description = "Markdown", content_type = "text/markdown", body = String)))]
pub async fn review_get(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Response> {
    let env = admin.environment(&app, &env).await?;
    let (policy, rows, findings) = rows(&app, &env).await?;
    let mut isolation = Vec::new();
    if admin.is_global() {
        let mut all = Vec::new();
        for e in app.store.list_environments().await? {
            all.push(facts(&app, &e).await?);
        }
        isolation = isolation_findings(&all)
            .into_iter()
            .filter(|f| f.environment.split(',').any(|e| e == env.slug))
            .collect();
    }
    let clients = app.store.list_clients(&env.id).await?;
    let keys = app.store.list_api_keys(Some(&env.id)).await?;
    let doc = crate::review::render(&crate::review::Input {
        env: &env,
        policy: &policy,
        rows: &rows,
        policy_findings: &findings,
        isolation_findings: &isolation,
        isolation_checked: admin.is_global(),
        clients: &clients,
        api_keys: &keys,
        now: app.now(),
    });
    Ok((
        [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
        doc,
    )
        .into_response())
}

pub fn routes() -> axum::Router<App> {
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route(
            "/environments/{env}/egress-policy",
            get(egress_policy_get).put(egress_policy_put),
        )
        .route(
            "/environments/{env}/egress-policy/ca-bundle",
            put(ca_bundle_put),
        )
        .route(
            "/environments/{env}/egress-policy/test",
            post(egress_test_post),
        )
        .route("/environments/{env}/inventory", get(inventory_get))
        .route("/environments/{env}/policy-check", get(policy_check_get))
        .route("/environments/{env}/review", get(review_get))
        .route("/isolation-check", get(isolation_check_get))
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    egress_policy_get,
    egress_policy_put,
    ca_bundle_put,
    egress_test_post,
    inventory_get,
    policy_check_get,
    review_get,
    isolation_check_get,
))]
pub struct GovernanceApi;
