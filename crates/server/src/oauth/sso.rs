//! Sign-in through an organization's own IdP: starting the upstream request, the OIDC callback,
//! and (with `portcullis_saml`) the SAML ACS and SP metadata.
//!
//! Rules:
//! - an upstream response is accepted only for a pending request this server made for that
//!   connection (`state` / `InResponseTo`), consumed once;
//! - the profile is bound to the connection and organization it came from (keyed by connection
//!   and IdP subject, never by email), and the code carries that organization;
//! - every refusal shows a plain page with a reference, writes the precise reason to the audit
//!   chain and an `authentication.sso_failed` event, and creates no session and no profile.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use portcullis_core::audit::{NewAudit, Outcome};
use portcullis_core::event::EventType;
use portcullis_core::ids::{ConnectionId, PrefixedId, ProfileId};
use portcullis_core::sso::{Connection, ConnectionState, ConnectionType, Profile};
use portcullis_egress::Purpose;
use portcullis_oidc::authorize::{Request, issue_code};
use portcullis_oidc::upstream::{Backchannel, Started, UpstreamConfig, futures_like::BoxFuture};
use serde::Deserialize;
use serde_json::{Value, json};

use super::EnvCtx;
use super::login::{code_redirect_for, fail_page, pending_request, see_other_to};
use crate::App;

const SSO_REQUEST_TTL_S: i64 = 600;

/// The egress gate as the upstream token endpoint's path.
struct GateChannel<'a> {
    app: &'a App,
    ctx: portcullis_egress::EgressContext,
}

impl Backchannel for GateChannel<'_> {
    fn post_form(
        &self,
        url: &str,
        form: Vec<(String, String)>,
        basic: (String, String),
    ) -> BoxFuture<'_, Result<(u16, Vec<u8>), String>> {
        let url = url.to_owned();
        Box::pin(async move {
            let body = form
                .iter()
                .map(|(k, v)| {
                    format!(
                        "{}={}",
                        portcullis_oidc::authorize::encode(k),
                        portcullis_oidc::authorize::encode(v)
                    )
                })
                .collect::<Vec<_>>()
                .join("&");
            let auth = base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                format!("{}:{}", basic.0, basic.1),
            );
            let req = portcullis_egress::gate::Request {
                method: portcullis_egress::gate::Method::POST,
                url,
                headers: vec![
                    (
                        "content-type".into(),
                        "application/x-www-form-urlencoded".into(),
                    ),
                    ("accept".into(), "application/json".into()),
                    ("authorization".into(), format!("Basic {auth}")),
                ],
                body: Some(body.into_bytes()),
            };
            let res = self
                .app
                .egress
                .send(&self.ctx, Purpose::TokenExchange, req)
                .await
                .map_err(|e| e.to_string())?;
            Ok((res.status, res.body))
        })
    }
}

/// Opens the connection's sealed secrets.
pub(crate) fn secrets(app: &App, c: &Connection) -> Result<Value, String> {
    let sealed = c
        .sealed_secrets
        .as_ref()
        .ok_or("the connection has no secrets")?;
    let plain = app
        .keys
        .master()
        .open(
            &crate::admin::connection_secrets_aad(&c.id, c.env_id.as_str()),
            sealed,
        )
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&plain).map_err(|e| e.to_string())
}

/// Sends the browser to the connection's IdP for the pending request `auth_request_id`.
pub async fn start(
    app: &App,
    ec: &EnvCtx,
    conn: &Connection,
    auth_request_id: &str,
    req: &Request,
    login_hint: Option<&str>,
) -> Response {
    match conn.kind {
        ConnectionType::Oidc => {
            let Ok(cfg) = serde_json::from_value::<UpstreamConfig>(conn.config.clone()) else {
                return fail_page(
                    ec,
                    "The sign-in method of this organization is misconfigured.",
                    None,
                );
            };
            let callback = format!("{}/sso/oidc/{}/callback", ec.env.issuer, conn.id);
            let started = portcullis_oidc::upstream::start(&cfg, &callback, login_hint);
            let data = json!({ "started": started, "client_id": req.client_id });
            if app
                .store
                .create_sso_request(
                    &ec.env.id,
                    &started.state,
                    &conn.id,
                    auth_request_id,
                    &data,
                    ec.now.plus_seconds(SSO_REQUEST_TTL_S),
                )
                .await
                .is_err()
            {
                return fail_page(ec, "Sign-in is not available; try again in a moment.", None);
            }
            see_other_to(&started.url)
        }
        ConnectionType::Saml => super::saml::saml_start(app, ec, conn, auth_request_id, req).await,
    }
}

/// Records a refused upstream response and shows the page.
pub async fn refuse_public(
    app: &App,
    ec: &EnvCtx,
    conn: &Connection,
    reason: &str,
    detail: &str,
) -> Response {
    refuse(app, ec, conn, reason, detail).await
}

async fn refuse(app: &App, ec: &EnvCtx, conn: &Connection, reason: &str, detail: &str) -> Response {
    let reference = record(app, ec, conn, reason, detail).await;
    fail_page(
        ec,
        "Your organization's identity provider did not complete the sign-in.",
        Some(&reference),
    )
}

/// Writes a refusal to the audit chain and the event log; returns its reference.
async fn record(app: &App, ec: &EnvCtx, conn: &Connection, reason: &str, detail: &str) -> String {
    let reference = {
        let mut b = [0u8; 6];
        portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut b);
        portcullis_crypto::secrets::to_hex(&b)
    };
    let data = json!({ "connection_id": conn.id, "organization_id": conn.org_id, "reason": reason, "detail": detail, "reference": reference });
    let audit = NewAudit {
        actor: format!("connection:{}", conn.id),
        action: "authentication.sso".into(),
        target: conn.id.to_string(),
        outcome: Outcome::Failure,
        detail: data.clone(),
    };
    if let Err(e) = app
        .store
        .record(
            &ec.env.id,
            ec.now,
            Some((EventType::SsoFailed, Some(conn.org_id.clone()), data)),
            audit,
        )
        .await
    {
        tracing::warn!(error = %e, "could not record a refused SSO response");
    }
    reference
}

/// The profile is ready: finish the pending authorization request with a code.
pub async fn complete(
    app: &App,
    ec: &EnvCtx,
    conn: &Connection,
    auth_request_id: &str,
    req: &Request,
    profile: Profile,
    amr: Vec<String>,
) -> Response {
    if !app
        .store
        .complete_auth_request(&ec.env.id, auth_request_id, ec.now)
        .await
        .unwrap_or(false)
    {
        return refuse(
            app,
            ec,
            conn,
            "request_completed",
            "the authorization request was already completed",
        )
        .await;
    }
    let Some(client) = portcullis_core::ids::ClientId::parse(&req.client_id) else {
        return refuse(app, ec, conn, "client_invalid", "").await;
    };
    let Ok(client) = app.store.get_client(&ec.env.id, &client).await else {
        return refuse(app, ec, conn, "client_gone", "").await;
    };
    let profile = match app.store.upsert_profile(ec.now, profile).await {
        Ok(p) => p,
        Err(e) => return refuse(app, ec, conn, "profile_store_failed", &e.to_string()).await,
    };
    let code = match issue_code(
        &ec.ctx(app),
        &client,
        req,
        profile.id.as_str(),
        conn.org_id.as_str(),
        ec.now,
        &amr,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return refuse(app, ec, conn, "code_failed", &e.description).await,
    };
    let data = json!({ "connection_id": conn.id, "organization_id": conn.org_id, "profile_id": profile.id, "idp_id": profile.idp_id, "email": profile.email, "client_id": client.id });
    let audit = NewAudit::success(
        &format!("connection:{}", conn.id),
        "authentication.sso",
        profile.id.as_str(),
        data.clone(),
    );
    if let Err(e) = app
        .store
        .record(
            &ec.env.id,
            ec.now,
            Some((EventType::SsoSucceeded, Some(conn.org_id.clone()), data)),
            audit,
        )
        .await
    {
        tracing::warn!(error = %e, "could not record an SSO sign-in");
    }
    see_other_to(&code_redirect_for(ec, req, &code))
}

async fn connection_of(
    app: &App,
    ec: &EnvCtx,
    id: &str,
    kind: ConnectionType,
) -> Option<Connection> {
    let id = ConnectionId::parse(id)?;
    let c = app.store.get_connection(&ec.env.id, &id).await.ok()?;
    (c.kind == kind).then_some(c)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /e/{env}/sso/oidc/{conn}/callback`.
pub async fn oidc_callback_get(
    State(app): State<App>,
    Path((env, conn)): Path<(String, String)>,
    Query(q): Query<CallbackQuery>,
    headers: HeaderMap,
) -> Response {
    let ec = match EnvCtx::load(&app, &env).await {
        Ok(e) => e,
        Err(e) => {
            return super::pages::error_page(
                StatusCode::NOT_FOUND,
                "Portcullis",
                "Sign-in is not available",
                &e.description,
                None,
            );
        }
    };
    let Some(conn) = connection_of(&app, &ec, &conn, ConnectionType::Oidc).await else {
        return super::pages::error_page(
            StatusCode::NOT_FOUND,
            &ec.env.name,
            "Unknown connection",
            "This sign-in method does not exist.",
            None,
        );
    };
    if conn.state != ConnectionState::Active {
        return refuse(
            &app,
            &ec,
            &conn,
            "connection_inactive",
            "the connection is not active",
        )
        .await;
    }
    let Some(state) = q.state.filter(|s| s.len() <= 256) else {
        return refuse(&app, &ec, &conn, "state_missing", "").await;
    };
    // Checked before anything is consumed: the state names a pending request of this connection,
    // and that request belongs to this browser.
    let Ok(Some(auth_request_id)) = app
        .store
        .peek_sso_request(&ec.env.id, &conn.id, &state, ec.now)
        .await
    else {
        return refuse(
            &app,
            &ec,
            &conn,
            "state_unknown",
            "no pending request of this connection has this state",
        )
        .await;
    };
    let req = match pending_request(&app, &ec, &auth_request_id, &headers).await {
        Ok(r) => r,
        Err(page) => {
            record(
                &app,
                &ec,
                &conn,
                "request_not_this_browser",
                "the pending request expired or was started in another browser",
            )
            .await;
            return page;
        }
    };
    // Consumed once: of two racing callbacks with one state, one goes on.
    let Ok(Some((_, data))) = app
        .store
        .take_sso_request(&ec.env.id, &conn.id, &state, ec.now)
        .await
    else {
        return refuse(
            &app,
            &ec,
            &conn,
            "state_unknown",
            "the pending request was already answered",
        )
        .await;
    };
    if let Some(e) = q.error {
        return refuse(
            &app,
            &ec,
            &conn,
            "idp_error",
            &e.chars().take(200).collect::<String>(),
        )
        .await;
    }
    let Some(code) = q.code else {
        return refuse(&app, &ec, &conn, "code_missing", "").await;
    };
    let (Ok(cfg), Ok(started)) = (
        serde_json::from_value::<UpstreamConfig>(conn.config.clone()),
        serde_json::from_value::<Started>(data["started"].clone()),
    ) else {
        return refuse(&app, &ec, &conn, "misconfigured", "").await;
    };
    let secret = match secrets(&app, &conn) {
        Ok(s) => s["client_secret"].as_str().unwrap_or_default().to_owned(),
        Err(e) => return refuse(&app, &ec, &conn, "secrets_unavailable", &e).await,
    };
    let ctx = match crate::egress::context(&app.store, &ec.env.id).await {
        Ok(c) => c,
        Err(e) => return refuse(&app, &ec, &conn, "egress_policy_unavailable", &e).await,
    };
    let callback = format!("{}/sso/oidc/{}/callback", ec.env.issuer, conn.id);
    let identity = match portcullis_oidc::upstream::finish(
        &cfg,
        &secret,
        &GateChannel { app: &app, ctx },
        &code,
        &callback,
        &started,
        ec.now,
    )
    .await
    {
        Ok(i) => i,
        Err(e) => return refuse(&app, &ec, &conn, e.code, &e.message).await,
    };
    let amr = identity.amr.clone();
    let profile = Profile {
        id: app.store.new_id::<ProfileId>(ec.now),
        env_id: ec.env.id.clone(),
        org_id: conn.org_id.clone(),
        connection_id: conn.id.clone(),
        idp_id: identity.subject,
        email: identity.email.map(|e| e.to_ascii_lowercase()),
        first_name: identity.given_name,
        last_name: identity.family_name,
        groups: identity.groups,
        raw_attributes: identity.claims,
        created_at: ec.now,
        updated_at: ec.now,
    };
    complete(&app, &ec, &conn, &auth_request_id, &req, profile, amr).await
}
