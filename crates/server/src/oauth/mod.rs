//! Per-environment OAuth 2 / OpenID Connect endpoints under the issuer path `/e/{env}`. The
//! protocol logic is in `portcullis_oidc`; these handlers parse, call, and render.

mod login;
pub mod pages;
pub mod saml;
pub mod sso;
mod token;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use portcullis_core::Timestamp;
use portcullis_core::model::Environment;
use portcullis_oidc::{Ctx, ErrorCode, OAuthError};
use serde_json::json;

use crate::App;
use crate::keys::EnvKeys;

pub fn routes() -> Router<App> {
    Router::new()
        .route(
            "/e/{env}/.well-known/openid-configuration",
            get(openid_configuration_get),
        )
        .route(
            "/e/{env}/.well-known/oauth-authorization-server",
            get(oauth_metadata_get),
        )
        .route("/e/{env}/oauth2/authorize", get(login::authorize_get))
        .route(
            "/e/{env}/login",
            get(login::login_get).post(login::login_post),
        )
        .route("/e/{env}/login/password", post(login::password_post))
        .route("/e/{env}/logout", get(login::logout_get))
        .route("/e/{env}/demo-callback", get(login::demo_callback_get))
        .route(
            "/e/{env}/sso/oidc/{conn}/callback",
            get(sso::oidc_callback_get),
        )
        .route(
            "/e/{env}/sso/saml/{conn}/metadata",
            get(saml::saml_metadata_get),
        )
        .route("/e/{env}/sso/saml/{conn}/acs", post(saml::saml_acs_post))
        .route("/e/{env}/oauth2/token", post(token::token_post))
        .route("/e/{env}/oauth2/introspect", post(token::introspect_post))
        .route("/e/{env}/oauth2/revoke", post(token::revoke_post))
        .route(
            "/e/{env}/oauth2/userinfo",
            get(token::userinfo).post(token::userinfo),
        )
}

/// The environment named in the path and its keys, loaded once per request.
pub struct EnvCtx {
    pub env: std::sync::Arc<Environment>,
    pub keys: std::sync::Arc<EnvKeys>,
    pub now: Timestamp,
}

impl EnvCtx {
    pub async fn load(app: &App, slug: &str) -> Result<Self, OAuthError> {
        let now = app.now();
        let env = app
            .environment_cached(slug, now)
            .await
            .map_err(|e| match e {
                portcullis_store::StoreError::NotFound(_) => {
                    OAuthError::new(ErrorCode::InvalidRequest, "no such environment")
                }
                other => other.into(),
            })?;
        let keys = app.keys.env_keys(&env.id, now).await.map_err(|e| {
            tracing::error!(error = %e, "signing keys unavailable");
            OAuthError::new(
                ErrorCode::ServerError,
                "the environment's signing keys are unavailable",
            )
        })?;
        Ok(Self { env, keys, now })
    }

    pub fn ctx<'a>(&'a self, app: &'a App) -> Ctx<'a> {
        Ctx {
            store: &app.store,
            env: &self.env,
            signer: &self.keys.active,
            keys: &self.keys.infos,
            now: self.now,
        }
    }
}

/// RFC 6749 §5.2: JSON error, 400 (401 with a challenge for `invalid_client`), never cached.
pub fn oauth_error(e: &OAuthError) -> Response {
    let status = match e.code {
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    // A 401 carries a challenge (RFC 9110 §15.5.2); RFC 6749 §5.2 asks for the scheme the client
    // used, and Basic is the scheme this endpoint supports whatever the client tried.
    if e.code == ErrorCode::InvalidClient {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"portcullis\""),
        );
    }
    if e.code == ErrorCode::InvalidToken {
        headers.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    (
        status,
        headers,
        Json(json!({ "error": e.code.as_str(), "error_description": e.description })),
    )
        .into_response()
}

async fn metadata(app: App, slug: String, oidc: bool) -> Response {
    match app.environment_cached(&slug, app.now()).await {
        Ok(env) => (
            [(header::CACHE_CONTROL, "public, max-age=300")],
            Json(portcullis_oidc::discovery::metadata(&env, oidc)),
        )
            .into_response(),
        Err(_) => (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "not_found", "error_description": "no such environment" })),
        )
            .into_response(),
    }
}

async fn openid_configuration_get(State(app): State<App>, Path(env): Path<String>) -> Response {
    metadata(app, env, true).await
}

async fn oauth_metadata_get(State(app): State<App>, Path(env): Path<String>) -> Response {
    metadata(app, env, false).await
}
