//! The authorization endpoint's browser side and the hosted login (email first, routed by domain
//! to the organization; the `password` connection), sessions and logout.
//!
//! Threats handled here:
//! - login CSRF: a pending request is bound to the browser that started it by a `SameSite=Lax`
//!   cookie whose digest the request stores; a form posted from elsewhere carries no such cookie;
//! - account enumeration: unknown users, wrong passwords and disabled users get the same message
//!   after the same Argon2id work (a dummy hash for unknown users);
//! - guessing: failures are limited per account and per client address;
//! - cross-organization sign-in: the user must belong to the organization that owns the email
//!   domain and to the `organization` hint when one is given.

use axum::extract::{Form, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use minijinja::context;
use portcullis_core::audit::{NewAudit, Outcome};
use portcullis_core::event::EventType;
use portcullis_core::ids::{ClientId, OrgId, PrefixedId, UserId};
use portcullis_oidc::authorize::{
    Failure, Request, encode, issue_code, redirect_with, session_satisfies, validate,
};
use serde::Deserialize;
use serde_json::json;

use super::EnvCtx;
use super::pages::{error_page, render};
use crate::App;

const FLOW_COOKIE: &str = "pc_flow";
const SESSION_COOKIE: &str = "pc_session";
const AUTH_REQUEST_TTL_S: i64 = 600;
const SESSION_TTL_S: i64 = 8 * 3600;

fn random_handle() -> String {
    let mut b = [0u8; 32];
    portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn digest(s: &str) -> String {
    portcullis_crypto::sha256_hex(s.as_bytes())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            let (k, v) = c.trim().split_once('=')?;
            (k == name).then(|| v.to_owned())
        })
}

fn set_cookie(ec: &EnvCtx, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let path = ec
        .env
        .issuer
        .split_once("://")
        .and_then(|(_, r)| r.find('/').map(|i| r[i..].to_owned()))
        .unwrap_or_else(|| "/".into());
    let secure = if ec.env.issuer.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let v =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("pc_invalid=1"))
}

fn see_other(location: &str, cookies: Vec<HeaderValue>) -> Response {
    let mut res = Redirect::to(location).into_response();
    *res.status_mut() = StatusCode::SEE_OTHER;
    for c in cookies {
        res.headers_mut().append(header::SET_COOKIE, c);
    }
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn reference() -> String {
    let mut b = [0u8; 6];
    portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut b);
    portcullis_crypto::secrets::to_hex(&b)
}

async fn load_env(app: &App, slug: &str) -> Result<EnvCtx, Response> {
    EnvCtx::load(app, slug).await.map_err(|e| {
        let status = if e.code == portcullis_oidc::ErrorCode::InvalidRequest {
            StatusCode::NOT_FOUND
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        error_page(
            status,
            "Portcullis",
            "Sign-in is not available",
            &e.description,
            None,
        )
    })
}

/// The user of a live session cookie, if any.
async fn session_user(
    app: &App,
    ec: &EnvCtx,
    headers: &HeaderMap,
) -> Option<(portcullis_core::oauth::User, portcullis_store::SessionRow)> {
    let raw = cookie(headers, SESSION_COOKIE)?;
    let s = app
        .store
        .session(&ec.env.id, &digest(&raw), ec.now)
        .await
        .ok()??;
    let user = app
        .store
        .get_user(&ec.env.id, &UserId::parse(&s.user_id)?)
        .await
        .ok()?;
    user.disabled_at.is_none().then_some((user, s))
}

fn code_redirect(ec: &EnvCtx, req: &Request, code: &str) -> String {
    let mut p = vec![("code", code)];
    if let Some(s) = &req.state {
        p.push(("state", s));
    }
    p.push(("iss", &ec.env.issuer));
    redirect_with(&req.redirect_uri, &p)
}

pub async fn authorize_get(
    State(app): State<App>,
    Path(env): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
) -> Response {
    let ec = match load_env(&app, &env).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let params: Vec<(String, String)> = form_urlencoded::parse(q.unwrap_or_default().as_bytes())
        .into_owned()
        .collect();
    let ctx = ec.ctx(&app);
    let (client, req) = match validate(&ctx, &params).await {
        Ok(v) => v,
        Err(Failure::Page(msg)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &ec.env.name,
                "This sign-in link is not valid",
                &msg,
                None,
            );
        }
        Err(Failure::Redirect {
            redirect_uri,
            state,
            error,
        }) => {
            let mut p = vec![
                ("error", error.code.as_str()),
                ("error_description", error.description.as_str()),
            ];
            if let Some(s) = &state {
                p.push(("state", s));
            }
            p.push(("iss", &ec.env.issuer));
            return see_other(&redirect_with(&redirect_uri, &p), vec![]);
        }
    };
    if let Some((user, session)) = session_user(&app, &ec, &headers).await
        && session_satisfies(&req, session.auth_time, user.org_id.as_str(), ec.now)
    {
        return match issue_code(
            &ctx,
            &client,
            &req,
            user.id.as_str(),
            user.org_id.as_str(),
            session.auth_time,
            &session.amr,
        )
        .await
        {
            Ok(code) => see_other(&code_redirect(&ec, &req, &code), vec![]),
            Err(e) => error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                &ec.env.name,
                "Sign-in failed",
                &e.description,
                None,
            ),
        };
    }
    if req.prompt_none {
        let mut p = vec![
            ("error", "login_required"),
            ("error_description", "the user is not signed in"),
        ];
        if let Some(s) = &req.state {
            p.push(("state", s));
        }
        p.push(("iss", &ec.env.issuer));
        return see_other(&redirect_with(&req.redirect_uri, &p), vec![]);
    }
    let id = random_handle();
    let browser = random_handle();
    let params = match serde_json::to_value(&req) {
        Ok(v) => v,
        Err(_) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &ec.env.name,
                "Sign-in failed",
                "the request could not be kept",
                None,
            );
        }
    };
    if let Err(e) = app
        .store
        .create_auth_request(
            &ec.env.id,
            &id,
            &digest(&browser),
            &params,
            ec.now.plus_seconds(AUTH_REQUEST_TTL_S),
        )
        .await
    {
        tracing::error!(error = %e, "cannot store the authorization request");
        return error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &ec.env.name,
            "Sign-in is not available",
            "try again in a moment",
            None,
        );
    }
    let login = format!("{}/login?req={}", ec.env.issuer, encode(&id));
    see_other(
        &login,
        vec![set_cookie(&ec, FLOW_COOKIE, &browser, AUTH_REQUEST_TTL_S)],
    )
}

#[derive(Deserialize)]
pub struct LoginQuery {
    req: Option<String>,
}

/// The pending request `id`, if this browser started it.
async fn pending(
    app: &App,
    ec: &EnvCtx,
    id: &str,
    headers: &HeaderMap,
) -> Result<Request, Response> {
    let expired = || {
        error_page(
            StatusCode::BAD_REQUEST,
            &ec.env.name,
            "This sign-in has expired",
            "Go back to the application and start again.",
            None,
        )
    };
    let Ok(Some((browser, params))) = app.store.auth_request(&ec.env.id, id, ec.now).await else {
        return Err(expired());
    };
    let mine = cookie(headers, FLOW_COOKIE).is_some_and(|c| {
        portcullis_crypto::secrets::constant_time_eq(digest(&c).as_bytes(), browser.as_bytes())
    });
    if !mine {
        return Err(error_page(
            StatusCode::FORBIDDEN,
            &ec.env.name,
            "This sign-in was started in another browser",
            "Go back to the application and start again from this browser.",
            None,
        ));
    }
    serde_json::from_value(params).map_err(|_| expired())
}

fn email_page(
    ec: &EnvCtx,
    id: &str,
    email: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let action = format!("{}/login", ec.env.issuer);
    render(
        status,
        "login_email.html",
        context! { env_name => &ec.env.name, req => id, email, error, action },
    )
}

fn password_page(
    ec: &EnvCtx,
    id: &str,
    email: &str,
    org_name: &str,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let action = format!("{}/login/password", ec.env.issuer);
    render(
        status,
        "login_password.html",
        context! { env_name => &ec.env.name, req => id, email, org_name, error, action },
    )
}

pub async fn login_get(
    State(app): State<App>,
    Path(env): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LoginQuery>,
    headers: HeaderMap,
) -> Response {
    let ec = match load_env(&app, &env).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let id = q.req.unwrap_or_default();
    let req = match pending(&app, &ec, &id, &headers).await {
        Ok(req) => req,
        Err(r) => return r,
    };
    // The routing hints go straight to the IdP when they name one: `connection=conn_…`, or an
    // `organization` whose sign-in is an active SSO connection. Everything else asks the email.
    if let Some(conn) = hinted_connection(&app, &ec, &req).await {
        return super::sso::start(&app, &ec, &conn, &id, &req, req.login_hint.as_deref()).await;
    }
    email_page(
        &ec,
        &id,
        req.login_hint.as_deref().unwrap_or_default(),
        None,
        StatusCode::OK,
    )
}

async fn hinted_connection(
    app: &App,
    ec: &EnvCtx,
    req: &Request,
) -> Option<portcullis_core::sso::Connection> {
    use portcullis_core::sso::ConnectionState;
    if let Some(c) = req
        .connection
        .as_deref()
        .and_then(portcullis_core::ids::ConnectionId::parse)
    {
        let conn = app.store.get_connection(&ec.env.id, &c).await.ok()?;
        let org_ok = req
            .organization
            .as_deref()
            .is_none_or(|o| o == conn.org_id.as_str());
        return (conn.state == ConnectionState::Active && org_ok).then_some(conn);
    }
    if req.connection.as_deref() == Some("password") {
        return None;
    }
    let org = req
        .organization
        .as_deref()
        .and_then(portcullis_core::ids::OrgId::parse)?;
    app.store
        .list_connections(&ec.env.id, Some(&org))
        .await
        .ok()?
        .into_iter()
        .find(|c| c.state == ConnectionState::Active)
}

#[derive(Deserialize)]
pub struct EmailForm {
    req: String,
    email: String,
}

fn normalize_email(raw: &str) -> Option<(String, String)> {
    let e = raw.trim().to_ascii_lowercase();
    let (local, domain) = e.rsplit_once('@')?;
    (!local.is_empty()
        && local.len() <= 64
        && e.len() <= 254
        && portcullis_core::validate::domain(domain).is_ok())
    .then(|| (e.clone(), domain.to_owned()))
}

/// Where an email leads: the organization's SSO connection, or its password connection.
enum Route {
    Password(String, portcullis_core::model::Organization),
    Sso(String, portcullis_core::sso::Connection),
}

/// Routes an email to its organization — the owner of the domain, which must also be the
/// `organization` hint when there is one — and to a connection: the `connection` hint
/// (`password`, or a `conn_…` of that organization), else the organization's active SSO
/// connection, else its password connection.
async fn route(app: &App, ec: &EnvCtx, req: &Request, email: &str) -> Result<Route, &'static str> {
    let (email, domain) = normalize_email(email).ok_or("Enter a valid email address.")?;
    let org_id = app
        .store
        .organization_by_domain(&ec.env.id, &domain)
        .await
        .ok()
        .flatten()
        .ok_or("No organization in this environment uses this email domain.")?;
    if req
        .organization
        .as_deref()
        .is_some_and(|o| o != org_id.as_str())
    {
        return Err(
            "This email address does not belong to the organization this application asked for.",
        );
    }
    let org = app
        .store
        .get_organization(&ec.env.id, &org_id)
        .await
        .map_err(|_| "No organization in this environment uses this email domain.")?;
    let active: Vec<_> = app
        .store
        .list_connections(&ec.env.id, Some(&org.id))
        .await
        .map_err(|_| "Sign-in is not available; try again in a moment.")?
        .into_iter()
        .filter(|c| c.state == portcullis_core::sso::ConnectionState::Active)
        .collect();
    let unavailable =
        "The sign-in method this application asked for is not available for this organization.";
    match req.connection.as_deref() {
        Some("password") => Ok(Route::Password(email, org)),
        Some(c) => active
            .into_iter()
            .find(|x| x.id.as_str() == c)
            .map(|x| Route::Sso(email, x))
            .ok_or(unavailable),
        None => Ok(match active.into_iter().next() {
            Some(c) => Route::Sso(email, c),
            None => Route::Password(email, org),
        }),
    }
}

/// Helpers the SSO module shares.
pub async fn pending_request(
    app: &App,
    ec: &EnvCtx,
    id: &str,
    headers: &HeaderMap,
) -> Result<Request, Response> {
    pending(app, ec, id, headers).await
}

pub fn see_other_to(location: &str) -> Response {
    see_other(location, vec![])
}

pub fn code_redirect_for(ec: &EnvCtx, req: &Request, code: &str) -> String {
    code_redirect(ec, req, code)
}

pub fn fail_page(ec: &EnvCtx, message: &str, reference: Option<&str>) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        &ec.env.name,
        "Sign-in did not complete",
        message,
        reference,
    )
}

pub async fn login_post(
    State(app): State<App>,
    Path(env): Path<String>,
    headers: HeaderMap,
    Form(f): Form<EmailForm>,
) -> Response {
    let ec = match load_env(&app, &env).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let req = match pending(&app, &ec, &f.req, &headers).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    match route(&app, &ec, &req, &f.email).await {
        Ok(Route::Password(email, org)) => {
            password_page(&ec, &f.req, &email, &org.name, None, StatusCode::OK)
        }
        Ok(Route::Sso(email, conn)) => {
            super::sso::start(&app, &ec, &conn, &f.req, &req, Some(&email)).await
        }
        Err(msg) => email_page(
            &ec,
            &f.req,
            &f.email,
            Some(msg),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    req: String,
    email: String,
    password: String,
}

const WRONG: &str = "The email or password is not correct.";

pub async fn password_post(
    State(app): State<App>,
    Path(env): Path<String>,
    crate::client_addr::ClientAddr(addr): crate::client_addr::ClientAddr,
    headers: HeaderMap,
    Form(f): Form<PasswordForm>,
) -> Response {
    let ec = match load_env(&app, &env).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let req = match pending(&app, &ec, &f.req, &headers).await {
        Ok(r) => r,
        Err(r) => return r,
    };
    let (email, org) = match route(&app, &ec, &req, &f.email).await {
        Ok(Route::Password(email, org)) => (email, org),
        // An organization with an active SSO connection signs in there; its local accounts stay
        // reachable through the `connection=password` hint (break-glass).
        Ok(Route::Sso(..)) => {
            return email_page(
                &ec,
                &f.req,
                &f.email,
                Some("This organization signs in through its identity provider."),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
        Err(msg) => {
            return email_page(
                &ec,
                &f.req,
                &f.email,
                Some(msg),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    let account_key = format!("{}|{email}", ec.env.id);
    let address_key = format!("{}|{addr}", ec.env.id);
    let audit = |outcome: Outcome, reason: &str, user: Option<&str>, reference: &str| NewAudit {
        actor: format!("browser:{addr}"),
        action: "authentication.password".into(),
        target: user.unwrap_or(&email).to_owned(),
        outcome,
        detail: json!({ "email": email, "organization_id": org.id, "client_id": req.client_id, "reason": reason, "reference": reference }),
    };
    if !app.account_limiter.allowed(&account_key, ec.now)
        || !app.address_limiter.allowed(&address_key, ec.now)
    {
        let r = reference();
        let _ = app
            .store
            .record(
                &ec.env.id,
                ec.now,
                None,
                audit(Outcome::Failure, "rate_limited", None, &r),
            )
            .await;
        return password_page(
            &ec,
            &f.req,
            &email,
            &org.name,
            Some("Too many attempts. Wait a few minutes and try again."),
            StatusCode::TOO_MANY_REQUESTS,
        );
    }
    let found = app
        .store
        .user_for_login(&ec.env.id, &email)
        .await
        .ok()
        .flatten();
    let ok = app
        .passwords
        .verify(&f.password, found.as_ref().map(|(_, h)| h.as_str()))
        .await;
    let failure = match &found {
        None => Some("unknown_user"),
        Some(_) if !ok => Some("wrong_password"),
        Some((u, _)) if u.disabled_at.is_some() => Some("user_disabled"),
        Some((u, _)) if u.org_id != org.id => Some("organization_mismatch"),
        Some(_) => None,
    };
    if let Some(reason) = failure {
        app.account_limiter.failed(&account_key, ec.now);
        app.address_limiter.failed(&address_key, ec.now);
        let r = reference();
        let user = found.as_ref().map(|(u, _)| u.id.to_string());
        let data =
            json!({ "email": email, "organization_id": org.id, "reason": reason, "reference": r });
        let _ = app
            .store
            .record(
                &ec.env.id,
                ec.now,
                Some((EventType::PasswordFailed, Some(org.id.clone()), data)),
                audit(Outcome::Failure, reason, user.as_deref(), &r),
            )
            .await;
        return password_page(
            &ec,
            &f.req,
            &email,
            &org.name,
            Some(WRONG),
            StatusCode::UNAUTHORIZED,
        );
    }
    let Some((user, _)) = found else {
        return password_page(
            &ec,
            &f.req,
            &email,
            &org.name,
            Some(WRONG),
            StatusCode::UNAUTHORIZED,
        );
    };
    app.account_limiter.succeeded(&account_key);
    complete_sign_in(
        &app,
        &ec,
        &f.req,
        &req,
        &user,
        &org.id,
        &audit(Outcome::Success, "ok", Some(user.id.as_str()), ""),
    )
    .await
}

async fn complete_sign_in(
    app: &App,
    ec: &EnvCtx,
    id: &str,
    req: &Request,
    user: &portcullis_core::oauth::User,
    org: &OrgId,
    audit: &NewAudit,
) -> Response {
    let fail = |m: &str| {
        error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            &ec.env.name,
            "Sign-in failed",
            m,
            None,
        )
    };
    // A pending request completes once: a replayed form post finds it gone.
    match app
        .store
        .complete_auth_request(&ec.env.id, id, ec.now)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                &ec.env.name,
                "This sign-in was already completed",
                "Go back to the application.",
                None,
            );
        }
        Err(_) => return fail("try again in a moment"),
    }
    let Some(client) = ClientId::parse(&req.client_id) else {
        return fail("the client is invalid");
    };
    let Ok(client) = app.store.get_client(&ec.env.id, &client).await else {
        return fail("the application is no longer registered");
    };
    let amr = vec!["pwd".to_owned()];
    let session = random_handle();
    if app
        .store
        .create_session(
            &ec.env.id,
            &digest(&session),
            user.id.as_str(),
            ec.now,
            &amr,
            ec.now.plus_seconds(SESSION_TTL_S),
        )
        .await
        .is_err()
    {
        return fail("try again in a moment");
    }
    let code = match issue_code(
        &ec.ctx(app),
        &client,
        req,
        user.id.as_str(),
        org.as_str(),
        ec.now,
        &amr,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return fail(&e.description),
    };
    let data = json!({ "user_id": user.id, "email": user.email, "organization_id": org, "client_id": client.id });
    if let Err(e) = app
        .store
        .record(
            &ec.env.id,
            ec.now,
            Some((EventType::PasswordSucceeded, Some(org.clone()), data)),
            audit.clone(),
        )
        .await
    {
        tracing::warn!(error = %e, "could not record a successful sign-in");
    }
    see_other(
        &code_redirect(ec, req, &code),
        vec![
            set_cookie(ec, SESSION_COOKIE, &session, SESSION_TTL_S),
            set_cookie(ec, FLOW_COOKIE, "", 0),
        ],
    )
}

#[derive(Deserialize)]
pub struct LogoutQuery {
    id_token_hint: Option<String>,
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    client_id: Option<String>,
}

/// OIDC RP-Initiated Logout 1.0 §2–3: `post_logout_redirect_uri` is honoured only when it is
/// registered for the client named by `client_id` or by the `aud` of `id_token_hint`.
pub async fn logout_get(
    State(app): State<App>,
    Path(env): Path<String>,
    axum::extract::Query(q): axum::extract::Query<LogoutQuery>,
    headers: HeaderMap,
) -> Response {
    let ec = match load_env(&app, &env).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    let hinted = q.id_token_hint.as_deref().and_then(|t| {
        ec.keys
            .infos
            .iter()
            .find_map(|k| portcullis_crypto::jws::verify_compact(&k.public_jwk, t))
            .and_then(|c| {
                (c.get("iss").and_then(|v| v.as_str()) == Some(ec.env.issuer.as_str()))
                    .then(|| c.get("aud").and_then(|a| a.as_str()).map(str::to_owned))
                    .flatten()
            })
    });
    if q.id_token_hint.is_some() && hinted.is_none() {
        return error_page(
            StatusCode::BAD_REQUEST,
            &ec.env.name,
            "Sign-out request is not valid",
            "id_token_hint was not issued by this environment.",
            None,
        );
    }
    if let (Some(a), Some(b)) = (&hinted, &q.client_id)
        && a != b
    {
        return error_page(
            StatusCode::BAD_REQUEST,
            &ec.env.name,
            "Sign-out request is not valid",
            "client_id does not match id_token_hint.",
            None,
        );
    }
    let target = match &q.post_logout_redirect_uri {
        None => None,
        Some(uri) => {
            let client = match hinted
                .or(q.client_id.clone())
                .and_then(|c| ClientId::parse(&c))
            {
                Some(c) => app.store.get_client(&ec.env.id, &c).await.ok(),
                None => None,
            };
            match client {
                Some(c) if c.post_logout_redirect_uris.iter().any(|u| u == uri) => {
                    Some(uri.clone())
                }
                _ => {
                    return error_page(
                        StatusCode::BAD_REQUEST,
                        &ec.env.name,
                        "Sign-out request is not valid",
                        "post_logout_redirect_uri is not registered for this client (name the client with client_id or id_token_hint).",
                        None,
                    );
                }
            }
        }
    };
    if let Some(raw) = cookie(&headers, SESSION_COOKIE) {
        let _ = app
            .store
            .end_session(&ec.env.id, &digest(&raw), ec.now)
            .await;
    }
    let clear = vec![set_cookie(&ec, SESSION_COOKIE, "", 0)];
    match target {
        Some(uri) => {
            let loc = match &q.state {
                Some(s) => redirect_with(&uri, &[("state", s)]),
                None => uri,
            };
            see_other(&loc, clear)
        }
        None => {
            let mut res = render(
                StatusCode::OK,
                "message.html",
                context! { env_name => &ec.env.name, heading => "Signed out", message => "You are signed out." },
            );
            for c in clear {
                res.headers_mut().append(header::SET_COOKIE, c);
            }
            res
        }
    }
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the demo client lands: shows the code so a newcomer sees the flow work end to end.
pub async fn demo_callback_get(
    State(app): State<App>,
    Path(env): Path<String>,
    axum::extract::Query(q): axum::extract::Query<CallbackQuery>,
) -> Response {
    let ec = match load_env(&app, &env).await {
        Ok(e) => e,
        Err(r) => return r,
    };
    match (q.code, q.error) {
        (Some(code), _) => render(
            StatusCode::OK,
            "message.html",
            context! {
                env_name => &ec.env.name, heading => "Signed in", code,
                message => format!("The application received an authorization code (state {}).", q.state.unwrap_or_default()),
                hint => "Redeem it at the token endpoint with the demo client's code_verifier within two minutes.",
            },
        ),
        (None, Some(e)) => error_page(
            StatusCode::BAD_REQUEST,
            &ec.env.name,
            "Sign-in did not complete",
            &format!("{e}: {}", q.error_description.unwrap_or_default()),
            None,
        ),
        (None, None) => error_page(
            StatusCode::BAD_REQUEST,
            &ec.env.name,
            "Nothing to show",
            "This page receives the demo client's sign-in result.",
            None,
        ),
    }
}
