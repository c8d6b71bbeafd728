//! Request extractors: the admin caller, JSON bodies and query strings with errors in our format.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use portcullis_core::Secret;
use portcullis_core::audit::NewAudit;
use portcullis_core::audit::Outcome;
use portcullis_core::ids::{EnvId, PrefixedId};
use portcullis_core::model::{ApiKey, ApiKeyKind, Environment};
use portcullis_core::validate;
use serde::de::DeserializeOwned;

use crate::App;
use crate::error::{ApiError, ApiResult};

pub async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not accept that method",
    )
}

/// A JSON body; malformed, oversized or unknown-field bodies are 4xx with a precise message.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::invalid(e.body_text())),
            Err(JsonRejection::JsonSyntaxError(e)) => {
                Err(ApiError::bad_request("invalid_json", e.body_text()))
            }
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as JSON with Content-Type: application/json",
            )),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "the request body is too large",
                ))
            }
            Err(e) => Err(ApiError::bad_request("invalid_body", e.body_text())),
        }
    }
}

/// A query string with errors in our format.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| ApiError::invalid(e.body_text()))
    }
}

/// An authenticated admin caller.
#[derive(Debug, Clone)]
pub struct Admin {
    pub key: ApiKey,
}

impl Admin {
    /// How the caller appears in the audit chain.
    pub fn actor(&self) -> String {
        format!("admin_key:{}", self.key.id)
    }

    pub fn is_global(&self) -> bool {
        self.key.env_id.is_none()
    }

    pub fn require_global(&self) -> ApiResult<()> {
        if self.is_global() {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "this needs a global admin key; this key is scoped to one environment",
            ))
        }
    }

    /// The environment `id_or_slug`, if this caller may see it. Another environment is "not
    /// found", exactly like one that does not exist: a scoped key learns nothing about others.
    pub async fn environment(&self, app: &App, id_or_slug: &str) -> ApiResult<Environment> {
        let env = find_environment(app, id_or_slug).await?;
        if self.key.can_access(&env.id) {
            Ok(env)
        } else {
            Err(ApiError::not_found(format!("environment {id_or_slug}")))
        }
    }

    pub fn can_access(&self, env: &EnvId) -> bool {
        self.key.can_access(env)
    }
}

/// The environment named by a path segment (its ID or slug). A segment that is neither is "not
/// found" without a query: PostgreSQL refuses some strings outright (a NUL byte), which would
/// otherwise surface as a storage failure.
pub async fn find_environment(app: &App, id_or_slug: &str) -> ApiResult<Environment> {
    let not_found = || ApiError::not_found(format!("environment {id_or_slug}"));
    if EnvId::parse(id_or_slug).is_none() && validate::slug(id_or_slug).is_err() {
        return Err(not_found());
    }
    app.store
        .find_environment(id_or_slug)
        .await
        .map_err(|e| match e {
            portcullis_store::StoreError::NotFound(_) => not_found(),
            other => other.into(),
        })
}

/// Reads `Authorization: Bearer <secret>`.
pub fn bearer(parts: &Parts) -> Option<Secret> {
    let h = parts
        .headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = h.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Secret::new(token.trim()))
}

impl FromRequestParts<App> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Self, ApiError> {
        let secret = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("missing admin key: send Authorization: Bearer <admin key>")
        })?;
        let now = app.now();
        let key = app
            .store
            .api_key_by_digest(&portcullis_crypto::secret_digest(&secret), now)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the admin key is not valid"))?;
        let refused = if key.revoked_at.is_some() {
            Some(("api_key.use_revoked", "the admin key was revoked"))
        } else if key.is_expired(now) {
            Some(("api_key.use_expired", "the admin key has expired"))
        } else {
            None
        };
        if let Some((action, message)) = refused {
            let chain = key
                .env_id
                .as_ref()
                .map_or(portcullis_core::audit::GLOBAL_CHAIN, |e| e.as_str())
                .to_owned();
            let audit = NewAudit {
                actor: format!("admin_key:{}", key.id),
                action: action.into(),
                target: key.id.to_string(),
                outcome: Outcome::Failure,
                detail: serde_json::json!({ "path": parts.uri.path() }),
            };
            if let Err(e) = app.store.record_audit(&chain, now, audit).await {
                tracing::warn!(error = %e, "could not audit the use of a refused key");
            }
            return Err(ApiError::unauthorized(message));
        }
        if key.kind != ApiKeyKind::Admin {
            return Err(ApiError::forbidden(
                "environment API keys cannot use the admin API; use an admin key",
            ));
        }
        Ok(Self { key })
    }
}
