//! `/admin/v1/environments/{env}/clients`: OAuth clients and their secrets.
//!
//! A secret (`pcsec_…`, 256 random bits) is shown once, in the answer that generated it; only its
//! SHA-256 digest is stored. Rotation keeps the replaced secret working for an overlap window so
//! that a deployment can roll the new one out without downtime.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portcullis_core::credential::{check_expires_in, successor_expiry};
use portcullis_core::ids::{ClientId, EnvId, PrefixedId};
use portcullis_core::oauth::{AuthMethod, Client, ClientKind, ExchangePolicy, TokenLifetimes};
use portcullis_core::{Random, Secret, Timestamp};
use portcullis_crypto::{SystemRandom, generate_secret, secret_digest};

use super::client_rules::{
    check_client, default_auth_method, default_grants, default_scopes, parse_auth_method,
    parse_grants, parse_kind, uses_secret,
};
use super::views::{
    ClientView, CreateClient, CreatedClient, List, RotateClientSecret, TokenExchangeView,
    UpdateClient,
};
use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson};

pub const SECRET_PREFIX: &str = "pcsec_";
/// 0 to 30 days.
const OVERLAP: std::ops::RangeInclusive<i64> = 0..=2_592_000;
const DEFAULT_OVERLAP: i64 = 86_400;

fn client_id(s: &str) -> ApiResult<ClientId> {
    ClientId::parse(s).ok_or_else(|| ApiError::not_found(format!("client {s}")))
}

fn exchange(v: TokenExchangeView) -> ExchangePolicy {
    ExchangePolicy {
        audiences: v.audiences,
        scopes: v.scopes,
    }
}

/// A new client from a create request, defaults filled in and every rule checked.
pub fn new_client(
    req: CreateClient,
    id: ClientId,
    env: EnvId,
    now: Timestamp,
) -> Result<Client, String> {
    let kind = req
        .kind
        .as_deref()
        .map_or(Ok(ClientKind::Confidential), parse_kind)?;
    let auth_method = match req.token_endpoint_auth_method.as_deref() {
        Some(m) => parse_auth_method(m)?,
        None => default_auth_method(kind),
    };
    let d = TokenLifetimes::default();
    check_client(Client {
        id,
        env_id: env,
        name: req.name,
        kind,
        auth_method,
        redirect_uris: req.redirect_uris,
        post_logout_redirect_uris: req.post_logout_redirect_uris,
        grant_types: req
            .grant_types
            .map_or_else(|| Ok(default_grants()), |g| parse_grants(&g))?,
        scopes: req.scopes.unwrap_or_else(default_scopes),
        jwks: req.jwks,
        exchange: req.token_exchange.map(exchange).unwrap_or_default(),
        lifetimes: TokenLifetimes {
            access_token: req.access_token_ttl_seconds.unwrap_or(d.access_token),
            id_token: req.id_token_ttl_seconds.unwrap_or(d.id_token),
            refresh_idle: req.refresh_idle_ttl_seconds.unwrap_or(d.refresh_idle),
            refresh_absolute: req
                .refresh_absolute_ttl_seconds
                .unwrap_or(d.refresh_absolute),
        },
        secret_digest: None,
        secret_created_at: None,
        secret_expires_at: None,
        previous_secret_digest: None,
        previous_secret_expires_at: None,
        created_at: now,
        updated_at: now,
    })
}

/// `before` with the request's fields applied, checked as a whole. The secret is left to
/// [`settle_secret`].
pub fn patch_client(before: &Client, req: UpdateClient, now: Timestamp) -> Result<Client, String> {
    let mut c = before.clone();
    if let Some(k) = req.kind.as_deref() {
        c.kind = parse_kind(k)?;
    }
    c.auth_method = match req.token_endpoint_auth_method.as_deref() {
        Some(m) => parse_auth_method(m)?,
        // A new kind whose rules the current method breaks takes the kind's default.
        None if (c.kind == ClientKind::Public) != (c.auth_method == AuthMethod::None) => {
            default_auth_method(c.kind)
        }
        None => c.auth_method,
    };
    if let Some(n) = req.name {
        c.name = n;
    }
    if let Some(u) = req.redirect_uris {
        c.redirect_uris = u;
    }
    if let Some(u) = req.post_logout_redirect_uris {
        c.post_logout_redirect_uris = u;
    }
    if let Some(g) = req.grant_types {
        c.grant_types = parse_grants(&g)?;
    }
    if let Some(s) = req.scopes {
        c.scopes = s;
    }
    c.jwks = match req.jwks {
        Some(j) => Some(j),
        None if c.auth_method == AuthMethod::PrivateKeyJwt => c.jwks,
        None => None,
    };
    if let Some(x) = req.token_exchange {
        c.exchange = exchange(x);
    }
    let l = &mut c.lifetimes;
    l.access_token = req.access_token_ttl_seconds.unwrap_or(l.access_token);
    l.id_token = req.id_token_ttl_seconds.unwrap_or(l.id_token);
    l.refresh_idle = req.refresh_idle_ttl_seconds.unwrap_or(l.refresh_idle);
    l.refresh_absolute = req
        .refresh_absolute_ttl_seconds
        .unwrap_or(l.refresh_absolute);
    c.updated_at = now;
    check_client(c)
}

/// Gives a client the secret its method calls for: a new one (returned, to show once) when it
/// needs one and has none; none at all when its method uses no secret.
pub fn settle_secret(c: &mut Client, random: &dyn Random, now: Timestamp) -> Option<Secret> {
    if !uses_secret(c.auth_method) {
        c.secret_digest = None;
        c.secret_created_at = None;
        c.secret_expires_at = None;
        c.previous_secret_digest = None;
        c.previous_secret_expires_at = None;
        return None;
    }
    if c.secret_digest.is_some() {
        return None;
    }
    let secret = generate_secret(random, SECRET_PREFIX);
    c.secret_digest = Some(secret_digest(&secret));
    c.secret_created_at = Some(now);
    c.secret_expires_at = None;
    Some(secret)
}

/// A new secret; the current one stays valid for `overlap` seconds (none when 0). One previous
/// secret is kept: rotating again inside the window ends the oldest at once. The new secret
/// expires `expires_in` seconds from now (default: the lifetime the replaced secret had, if it
/// had one). The replaced secret's overlap never outlasts its own expiry: an expired secret is
/// not revived by rotating it.
pub fn rotate_secret(
    before: &Client,
    overlap: i64,
    expires_in: Option<i64>,
    random: &dyn Random,
    now: Timestamp,
) -> Result<(Client, Secret), String> {
    if let Some(s) = expires_in {
        check_expires_in("expires_in_seconds", s)?;
    }
    if !uses_secret(before.auth_method) {
        return Err(format!(
            "client {} authenticates with {} and has no secret to rotate",
            before.id,
            before.auth_method.as_str()
        ));
    }
    if !OVERLAP.contains(&overlap) {
        return Err(format!(
            "overlap_seconds must be {} to {}, not {overlap}",
            OVERLAP.start(),
            OVERLAP.end()
        ));
    }
    let mut c = before.clone();
    let secret = generate_secret(random, SECRET_PREFIX);
    let until = match before.secret_expires_at {
        Some(e) => e.min(now.plus_seconds(overlap)),
        None => now.plus_seconds(overlap),
    };
    (c.previous_secret_digest, c.previous_secret_expires_at) = if until > now {
        (before.secret_digest.clone(), Some(until))
    } else {
        (None, None)
    };
    c.secret_digest = Some(secret_digest(&secret));
    c.secret_created_at = Some(now);
    c.secret_expires_at = successor_expiry(
        now,
        expires_in,
        before.secret_created_at,
        before.secret_expires_at,
    );
    c.updated_at = now;
    Ok((c, secret))
}

fn created(c: &Client, secret: Option<Secret>) -> CreatedClient {
    CreatedClient {
        client: ClientView::from(c),
        client_secret: secret.map(|s| s.expose().to_owned()),
    }
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/clients", tag = "clients",
    request_body = CreateClient, params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 201, body = CreatedClient), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn client_create(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiJson(req): ApiJson<CreateClient>,
) -> ApiResult<(StatusCode, Json<CreatedClient>)> {
    let env = admin.environment(&app, &env).await?;
    let now = app.now();
    let allow_shared = req.allow_cross_environment_uris;
    let expires_in = req.secret_expires_in_seconds;
    let mut client =
        new_client(req, app.store.new_id(now), env.id, now).map_err(ApiError::invalid)?;
    ensure_uris_not_elsewhere(&app, &client, allow_shared).await?;
    let secret = settle_secret(&mut client, &SystemRandom, now);
    if let Some(s) = expires_in {
        check_expires_in("secret_expires_in_seconds", s).map_err(ApiError::invalid)?;
        if secret.is_none() {
            return Err(ApiError::invalid(format!(
                "secret_expires_in_seconds applies to clients with a secret; this one authenticates with {}",
                client.auth_method.as_str()
            )));
        }
        client.secret_expires_at = Some(now.plus_seconds(s));
    }
    let client = app.store.create_client(&admin.actor(), now, client).await?;
    if client.jwks.is_some() {
        app.store.note_client_keys(&client, now).await?;
    }
    Ok((StatusCode::CREATED, Json(created(&client, secret))))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/clients", tag = "clients",
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, body = List<ClientView>), (status = 404, body = ErrorBody)))]
pub async fn clients_list(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
) -> ApiResult<Json<List<ClientView>>> {
    let env = admin.environment(&app, &env).await?;
    let clients = app.store.list_clients(&env.id).await?;
    Ok(Json(List::new(
        clients.iter().map(ClientView::from).collect(),
        None,
    )))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/clients/{client}", tag = "clients",
    params(("env" = String, Path, description = "Environment ID or slug"), ("client" = String, Path)),
    responses((status = 200, body = ClientView), (status = 404, body = ErrorBody)))]
pub async fn client_get(
    State(app): State<App>,
    admin: Admin,
    Path((env, client)): Path<(String, String)>,
) -> ApiResult<Json<ClientView>> {
    let env = admin.environment(&app, &env).await?;
    let c = app.store.get_client(&env.id, &client_id(&client)?).await?;
    Ok(Json(ClientView::from(&c)))
}

#[utoipa::path(patch, path = "/admin/v1/environments/{env}/clients/{client}", tag = "clients",
    request_body = UpdateClient,
    params(("env" = String, Path, description = "Environment ID or slug"), ("client" = String, Path)),
    responses((status = 200, body = CreatedClient), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn client_update(
    State(app): State<App>,
    admin: Admin,
    Path((env, client)): Path<(String, String)>,
    ApiJson(req): ApiJson<UpdateClient>,
) -> ApiResult<Json<CreatedClient>> {
    let env = admin.environment(&app, &env).await?;
    let before = app.store.get_client(&env.id, &client_id(&client)?).await?;
    let now = app.now();
    let allow_shared = req.allow_cross_environment_uris;
    let mut after = patch_client(&before, req, now).map_err(ApiError::invalid)?;
    ensure_uris_not_elsewhere(&app, &after, allow_shared).await?;
    let secret = settle_secret(&mut after, &SystemRandom, now);
    let after = app
        .store
        .update_client_keys(&admin.actor(), now, &before, after)
        .await?;
    Ok(Json(created(&after, secret)))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/clients/{client}/secret", tag = "clients",
    request_body = RotateClientSecret,
    params(("env" = String, Path, description = "Environment ID or slug"), ("client" = String, Path)),
    responses((status = 200, body = CreatedClient), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn client_secret_rotate(
    State(app): State<App>,
    admin: Admin,
    Path((env, client)): Path<(String, String)>,
    ApiJson(req): ApiJson<RotateClientSecret>,
) -> ApiResult<Json<CreatedClient>> {
    let env = admin.environment(&app, &env).await?;
    let before = app.store.get_client(&env.id, &client_id(&client)?).await?;
    let now = app.now();
    let overlap = req.overlap_seconds.unwrap_or(DEFAULT_OVERLAP);
    let (after, secret) =
        rotate_secret(&before, overlap, req.expires_in_seconds, &SystemRandom, now)
            .map_err(ApiError::invalid)?;
    let after = app
        .store
        .rotate_client_secret(&admin.actor(), now, &before, after)
        .await?;
    Ok(Json(created(&after, Some(secret))))
}

#[utoipa::path(delete, path = "/admin/v1/environments/{env}/clients/{client}", tag = "clients",
    params(("env" = String, Path, description = "Environment ID or slug"), ("client" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn client_delete(
    State(app): State<App>,
    admin: Admin,
    Path((env, client)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let env = admin.environment(&app, &env).await?;
    app.store
        .delete_client(&admin.actor(), app.now(), &env.id, &client_id(&client)?)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Environment isolation at run time: a redirect or logout URI registered by a client of another
/// environment is refused unless the request explicitly allows it.
pub(crate) async fn ensure_uris_not_elsewhere(
    app: &App,
    client: &Client,
    allow: bool,
) -> ApiResult<()> {
    if allow {
        return Ok(());
    }
    uris_not_in(&app.store.all_clients().await?, client)
}

/// [`ensure_uris_not_elsewhere`] against clients already read (`all`: every environment's), for
/// callers that check many clients at once.
pub(crate) fn uris_not_in(all: &[Client], client: &Client) -> ApiResult<()> {
    let mine: Vec<&String> = client
        .redirect_uris
        .iter()
        .chain(&client.post_logout_redirect_uris)
        .collect();
    for other in all.iter().filter(|c| c.env_id != client.env_id) {
        if let Some(u) = other
            .redirect_uris
            .iter()
            .chain(&other.post_logout_redirect_uris)
            .find(|u| mine.contains(u))
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "uri_in_other_environment",
                format!(
                    "the URI {u} is already registered in environment {}: environments share no callbacks \
                     (set allow_cross_environment_uris to override, and expect `isolation check` to report it)",
                    other.env_id
                ),
            ));
        }
    }
    Ok(())
}
