//! `/oauth2/token`, `/oauth2/introspect`, `/oauth2/revoke`, `/oauth2/userinfo`.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use portcullis_core::Secret;
use portcullis_oidc::client_auth::{Credentials, authenticate, parse_basic};
use portcullis_oidc::token::TokenRequest;
use portcullis_oidc::{ErrorCode, OAuthError};

use super::{EnvCtx, oauth_error};
use crate::App;

/// The two headers the form endpoints read, taken alone: the `HeaderMap` extractor copies every
/// header of every request, a visible cost at the token endpoint's rate.
pub struct FormHeaders {
    content_type: Option<HeaderValue>,
    authorization: Option<HeaderValue>,
}

impl<S: Send + Sync> FromRequestParts<S> for FormHeaders {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self {
            content_type: parts.headers.get(header::CONTENT_TYPE).cloned(),
            authorization: parts.headers.get(header::AUTHORIZATION).cloned(),
        })
    }
}

/// Parses an `application/x-www-form-urlencoded` body; a parameter given twice is an error
/// (RFC 6749 §3.2).
fn form(headers: &FormHeaders, body: &Bytes) -> Result<HashMap<String, String>, OAuthError> {
    const FORM: &[u8] = b"application/x-www-form-urlencoded";
    let is_form = headers
        .content_type
        .as_ref()
        .and_then(|v| v.as_bytes().get(..FORM.len()))
        .is_some_and(|p| p.eq_ignore_ascii_case(FORM));
    if !is_form {
        return Err(OAuthError::request(
            "send the parameters as application/x-www-form-urlencoded",
        ));
    }
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(body) {
        if out.insert(k.clone().into_owned(), v.into_owned()).is_some() {
            return Err(OAuthError::request(format!(
                "the parameter {k} is given more than once"
            )));
        }
    }
    Ok(out)
}

fn credentials(
    headers: &FormHeaders,
    params: &mut HashMap<String, String>,
) -> Result<Credentials, OAuthError> {
    let basic = match headers.authorization.as_ref().map(|v| v.to_str()) {
        Some(Ok(h)) => parse_basic(h)?,
        Some(Err(_)) => return Err(OAuthError::client("the Authorization header is not valid")),
        None => None,
    };
    Ok(Credentials {
        basic,
        client_id: params.get("client_id").cloned(),
        client_secret: params.remove("client_secret").map(Secret::new),
        assertion_type: params.remove("client_assertion_type"),
        assertion: params.remove("client_assertion"),
    })
}

fn no_store(v: serde_json::Value) -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        Json(v),
    )
        .into_response()
}

pub async fn token_post(
    State(app): State<App>,
    Path(env): Path<String>,
    headers: FormHeaders,
    body: Bytes,
) -> Response {
    let result = async {
        let mut params = form(&headers, &body)?;
        let creds = credentials(&headers, &mut params)?;
        let ec = EnvCtx::load(&app, &env).await?;
        portcullis_oidc::token::token(&ec.ctx(&app), &TokenRequest { params, creds }).await
    }
    .await;
    let body = result.and_then(|v| {
        v.to_json().map_err(|e| {
            tracing::error!(error = %e, "the token response did not serialize");
            OAuthError::new(
                ErrorCode::ServerError,
                "the server could not write the response",
            )
        })
    });
    match body {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::info!(env = %env, error = %e.code.as_str(), description = %e.description, "token request refused");
            oauth_error(&e)
        }
    }
}

/// Both endpoints authenticate the client and read one `token` parameter.
async fn client_and_token(
    app: &App,
    env: &str,
    headers: &FormHeaders,
    body: &Bytes,
) -> Result<
    (
        EnvCtx,
        std::sync::Arc<portcullis_core::oauth::Client>,
        String,
    ),
    OAuthError,
> {
    let mut params = form(headers, body)?;
    let creds = credentials(headers, &mut params)?;
    let ec = EnvCtx::load(app, env).await?;
    let client = authenticate(&ec.ctx(app), &creds).await?;
    let token = params
        .remove("token")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::request("token is required"))?;
    Ok((ec, client, token))
}

pub async fn introspect_post(
    State(app): State<App>,
    Path(env): Path<String>,
    headers: FormHeaders,
    body: Bytes,
) -> Response {
    let result = async {
        let (ec, client, token) = client_and_token(&app, &env, &headers, &body).await?;
        if client.auth_method == portcullis_core::oauth::AuthMethod::None {
            // RFC 7662 §4: introspection is for authenticated callers.
            return Err(OAuthError::client(
                "public clients may not introspect tokens",
            ));
        }
        portcullis_oidc::introspect::introspect(&ec.ctx(&app), &client, &token).await
    }
    .await;
    match result {
        Ok(v) => no_store(v),
        Err(e) => oauth_error(&e),
    }
}

pub async fn revoke_post(
    State(app): State<App>,
    Path(env): Path<String>,
    headers: FormHeaders,
    body: Bytes,
) -> Response {
    let result = async {
        let (ec, client, token) = client_and_token(&app, &env, &headers, &body).await?;
        portcullis_oidc::introspect::revoke(&ec.ctx(&app), &client, &token).await
    }
    .await;
    match result {
        Ok(()) => no_store(serde_json::json!({})),
        Err(e) => oauth_error(&e),
    }
}

/// OIDC Core §5.3.1: the access token comes as a Bearer header (RFC 6750 §2.1).
pub async fn userinfo(
    State(app): State<App>,
    Path(env): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| {
                h.split_once(' ')
                    .filter(|(s, _)| s.eq_ignore_ascii_case("bearer"))
                    .map(|(_, t)| t.trim().to_owned())
            })
            .ok_or_else(|| {
                OAuthError::new(
                    ErrorCode::InvalidToken,
                    "send the access token as Authorization: Bearer",
                )
            })?;
        let ec = EnvCtx::load(&app, &env).await?;
        portcullis_oidc::introspect::userinfo(&ec.ctx(&app), &token).await
    }
    .await;
    match result {
        Ok(v) => no_store(v),
        Err(e) => oauth_error(&e),
    }
}
