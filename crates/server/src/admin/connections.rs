//! `/admin/v1/environments/{env}/…/connections`: SSO connections of organizations.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use portcullis_core::event::EventType;
use portcullis_core::ids::{ConnectionId, OrgId, PrefixedId};
use portcullis_core::sso::{Connection, ConnectionState, ConnectionType};
use portcullis_crypto::SystemRandom;
use portcullis_oidc::upstream::UpstreamConfig;
use portcullis_store::ConnectionChange;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::App;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Admin, ApiJson};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnection {
    /// `saml` or `oidc`.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// For `oidc`: the upstream IdP (endpoints by hand, signing keys pinned: no fetch at sign-in).
    #[schema(value_type = Object)]
    pub oidc: Option<Value>,
    /// The upstream client secret for `oidc` (sealed at rest; never returned).
    pub client_secret: Option<String>,
    /// For `saml`: `allow_idp_initiated`, `allow_sha1`, `sign_requests`, `skew_seconds`,
    /// `attribute_mapping`, `idp_initiated` (`{"client_id", "redirect_uri"}`: where an
    /// IdP-initiated sign-in lands). The IdP side comes from metadata (PUT …/saml-metadata) or
    /// from `idp` (`{"entity_id", "sso_url", "certificates_pem"}`) set by hand.
    #[schema(value_type = Object)]
    pub saml: Option<Value>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ConnectionView {
    pub id: String,
    pub object: String,
    pub organization_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// `draft`, `active` or `inactive`.
    pub state: String,
    #[schema(value_type = Object)]
    pub config: Value,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Connection> for ConnectionView {
    fn from(c: &Connection) -> Self {
        Self {
            id: c.id.to_string(),
            object: "connection".into(),
            organization_id: c.org_id.to_string(),
            kind: c.kind.as_str().into(),
            name: c.name.clone(),
            state: c.state.as_str().into(),
            config: c.config.clone(),
            created_at: c.created_at.to_rfc3339(),
            updated_at: c.updated_at.to_rfc3339(),
        }
    }
}

/// The associated data binding a connection's sealed secrets to it.
pub fn secrets_aad(c: &ConnectionId, env: &str) -> String {
    format!("connection|{c}|{env}")
}

pub(crate) fn check_upstream(v: &Value) -> ApiResult<UpstreamConfig> {
    let cfg: UpstreamConfig =
        serde_json::from_value(v.clone()).map_err(|e| ApiError::invalid(format!("oidc: {e}")))?;
    for (name, url) in [
        ("issuer", &cfg.issuer),
        ("authorization_endpoint", &cfg.authorization_endpoint),
        ("token_endpoint", &cfg.token_endpoint),
    ] {
        portcullis_core::validate::base_url(url.trim_end_matches('/'))
            .map_err(|e| ApiError::invalid(format!("oidc.{name}: {e}")))?;
    }
    let keys = cfg
        .jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ApiError::invalid("oidc.jwks must be {\"keys\": [...]}: the IdP's signing keys, pinned")
        })?;
    if keys.is_empty() || keys.len() > 20 {
        return Err(ApiError::invalid("oidc.jwks holds 1 to 20 keys"));
    }
    for k in keys {
        if portcullis_crypto::jws::jwk_alg(k).is_none() {
            return Err(ApiError::invalid(
                "oidc.jwks: every key must be an EC P-256, Ed25519 or RSA public key",
            ));
        }
        if ["d", "p", "q", "k"].iter().any(|m| k.get(m).is_some()) {
            return Err(ApiError::invalid(
                "oidc.jwks: private key material is refused",
            ));
        }
    }
    if let Some(a) = cfg
        .allowed_algs
        .iter()
        .find(|a| !matches!(a.as_str(), "ES256" | "RS256" | "EdDSA"))
    {
        return Err(ApiError::invalid(format!(
            "oidc.allowed_algs: {a:?} is not supported (ES256, RS256, EdDSA)"
        )));
    }
    if cfg.allowed_algs.is_empty() {
        return Err(ApiError::invalid(
            "oidc.allowed_algs: name at least one algorithm",
        ));
    }
    // OIDC Core §3.1.2.1: "OpenID Connect requests MUST contain the openid scope value"; RFC 6749
    // §3.3: scope tokens are joined by spaces, so one holding a space would smuggle in another.
    if let Some(s) = cfg.scopes.iter().find(|s| {
        s.is_empty()
            || s.contains(|c: char| c.is_whitespace() || c.is_control() || c == '"' || c == '\\')
    }) {
        return Err(ApiError::invalid(format!(
            "oidc.scopes: {s:?} is not a scope token"
        )));
    }
    if !cfg.scopes.iter().any(|s| s == "openid") {
        return Err(ApiError::invalid("oidc.scopes must include openid"));
    }
    Ok(cfg)
}

pub(crate) fn seal(app: &App, id: &ConnectionId, env: &str, secrets: &Value) -> ApiResult<Vec<u8>> {
    app.keys
        .master()
        .seal(
            &SystemRandom,
            &secrets_aad(id, env),
            secrets.to_string().as_bytes(),
        )
        .map_err(|e| ApiError::internal("seal", e))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/organizations/{org}/connections", tag = "connections",
    request_body = CreateConnection,
    params(("env" = String, Path, description = "Environment ID or slug"), ("org" = String, Path)),
    responses((status = 201, body = ConnectionView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn connection_create(
    State(app): State<App>,
    admin: Admin,
    Path((env, org)): Path<(String, String)>,
    ApiJson(req): ApiJson<CreateConnection>,
) -> ApiResult<(StatusCode, Json<ConnectionView>)> {
    let env = admin.environment(&app, &env).await?;
    let org =
        OrgId::parse(&org).ok_or_else(|| ApiError::not_found(format!("organization {org}")))?;
    let org = app.store.get_organization(&env.id, &org).await?;
    portcullis_core::validate::name(&req.name).map_err(ApiError::invalid)?;
    let now = app.now();
    let id: ConnectionId = app.store.new_id(now);
    let kind = ConnectionType::parse(&req.kind).ok_or_else(|| {
        ApiError::invalid(format!(
            "type must be \"saml\" or \"oidc\", not {:?}",
            req.kind
        ))
    })?;
    let (config, secrets) = match kind {
        ConnectionType::Oidc => {
            let v = req.oidc.ok_or_else(|| {
                ApiError::invalid("an oidc connection needs its \"oidc\" settings")
            })?;
            check_upstream(&v)?;
            let secret = req
                .client_secret
                .filter(|s| !s.is_empty())
                .ok_or_else(|| ApiError::invalid("an oidc connection needs client_secret"))?;
            (
                v,
                Some(seal(
                    &app,
                    &id,
                    env.id.as_str(),
                    &json!({ "client_secret": secret }),
                )?),
            )
        }
        ConnectionType::Saml => {
            let (config, secrets) = crate::oauth::saml::new_saml_config(
                &app,
                &id,
                env.id.as_str(),
                req.saml.unwrap_or(json!({})),
                now,
            )?;
            (config, Some(secrets))
        }
    };
    let c = Connection {
        id,
        env_id: env.id.clone(),
        org_id: org.id,
        kind,
        name: req.name,
        state: ConnectionState::Draft,
        config,
        sealed_secrets: secrets,
        created_at: now,
        updated_at: now,
    };
    let c = app.store.create_connection(&admin.actor(), now, c).await?;
    Ok((StatusCode::CREATED, Json(ConnectionView::from(&c))))
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/organizations/{org}/connections", tag = "connections",
    params(("env" = String, Path, description = "Environment ID or slug"), ("org" = String, Path)),
    responses((status = 200, body = Object)))]
pub async fn connections_list(
    State(app): State<App>,
    admin: Admin,
    Path((env, org)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let env = admin.environment(&app, &env).await?;
    let org =
        OrgId::parse(&org).ok_or_else(|| ApiError::not_found(format!("organization {org}")))?;
    app.store.get_organization(&env.id, &org).await?;
    let list = app.store.list_connections(&env.id, Some(&org)).await?;
    Ok(Json(
        json!({ "object": "list", "data": list.iter().map(ConnectionView::from).collect::<Vec<_>>() }),
    ))
}

pub async fn load(app: &App, admin: &Admin, env: &str, conn: &str) -> ApiResult<Connection> {
    let env = admin.environment(app, env).await?;
    let id = ConnectionId::parse(conn)
        .ok_or_else(|| ApiError::not_found(format!("connection {conn}")))?;
    Ok(app.store.get_connection(&env.id, &id).await?)
}

#[utoipa::path(get, path = "/admin/v1/environments/{env}/connections/{conn}", tag = "connections",
    params(("env" = String, Path, description = "Environment ID or slug"), ("conn" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 404, body = ErrorBody)))]
pub async fn connection_get(
    State(app): State<App>,
    admin: Admin,
    Path((env, conn)): Path<(String, String)>,
) -> ApiResult<Json<ConnectionView>> {
    Ok(Json(ConnectionView::from(
        &load(&app, &admin, &env, &conn).await?,
    )))
}

/// Why a connection cannot be activated yet, if anything is missing.
fn incomplete(c: &Connection) -> Option<String> {
    match c.kind {
        ConnectionType::Oidc => check_upstream(&c.config).err().map(|e| e.message),
        ConnectionType::Saml => crate::oauth::saml::saml_incomplete(c),
    }
}

/// The event and audit action of a connection moving from `previous` to `state`.
pub(crate) fn state_change(state: ConnectionState, previous: ConnectionState) -> ConnectionChange {
    let (kind, action) = match state {
        ConnectionState::Active => (EventType::ConnectionActivated, "connection.activate"),
        _ => (EventType::ConnectionDeactivated, "connection.deactivate"),
    };
    ConnectionChange {
        kind,
        action,
        detail: json!({ "state": state, "previous_state": previous }),
    }
}

async fn set_state(
    app: &App,
    admin: &Admin,
    env: &str,
    conn: &str,
    state: ConnectionState,
) -> ApiResult<Json<ConnectionView>> {
    let before = load(app, admin, env, conn).await?;
    if before.state == state {
        return Ok(Json(ConnectionView::from(&before)));
    }
    if state == ConnectionState::Active
        && let Some(why) = incomplete(&before)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "connection_incomplete",
            format!("the connection cannot be activated: {why}"),
        ));
    }
    let after = Connection {
        state,
        ..before.clone()
    };
    let c = app
        .store
        .update_connection(
            &admin.actor(),
            app.now(),
            &before,
            after,
            state_change(state, before.state),
        )
        .await?;
    Ok(Json(ConnectionView::from(&c)))
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/connections/{conn}/activate", tag = "connections",
    params(("env" = String, Path, description = "Environment ID or slug"), ("conn" = String, Path)),
    responses((status = 200, body = ConnectionView), (status = 409, body = ErrorBody)))]
pub async fn connection_activate(
    State(app): State<App>,
    admin: Admin,
    Path((env, conn)): Path<(String, String)>,
) -> ApiResult<Json<ConnectionView>> {
    set_state(&app, &admin, &env, &conn, ConnectionState::Active).await
}

#[utoipa::path(post, path = "/admin/v1/environments/{env}/connections/{conn}/deactivate", tag = "connections",
    params(("env" = String, Path, description = "Environment ID or slug"), ("conn" = String, Path)),
    responses((status = 200, body = ConnectionView)))]
pub async fn connection_deactivate(
    State(app): State<App>,
    admin: Admin,
    Path((env, conn)): Path<(String, String)>,
) -> ApiResult<Json<ConnectionView>> {
    set_state(&app, &admin, &env, &conn, ConnectionState::Inactive).await
}

pub fn routes() -> axum::Router<App> {
    use axum::routing::{get, post, put};
    axum::Router::new()
        .route(
            "/environments/{env}/organizations/{org}/connections",
            get(connections_list).post(connection_create),
        )
        .route(
            "/environments/{env}/connections/{conn}",
            get(connection_get),
        )
        .route(
            "/environments/{env}/connections/{conn}/activate",
            post(connection_activate),
        )
        .route(
            "/environments/{env}/connections/{conn}/deactivate",
            post(connection_deactivate),
        )
        .route(
            "/environments/{env}/connections/{conn}/saml-metadata",
            put(crate::oauth::saml::saml_metadata_put),
        )
        .route(
            "/environments/{env}/connections/{conn}/saml-metadata/fetch",
            post(crate::oauth::saml::saml_metadata_fetch_post),
        )
        .route(
            "/environments/{env}/oidc-discovery",
            post(oidc_discovery_post),
        )
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    connection_create,
    connections_list,
    connection_get,
    connection_activate,
    connection_deactivate
))]
pub struct ConnectionsApi;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    /// The upstream issuer; `{issuer}/.well-known/openid-configuration` and its `jwks_uri` are
    /// fetched once through the egress gate (purposes `metadata_fetch` and `jwks_fetch`).
    pub issuer: String,
}

/// `POST /admin/v1/environments/{env}/oidc-discovery`: discovers an upstream IdP through the egress
/// gate and returns the `oidc` settings to create a connection with — endpoints and the IdP's keys
/// pinned, so that sign-ins afterwards fetch nothing.
#[utoipa::path(post, path = "/admin/v1/environments/{env}/oidc-discovery", tag = "connections", request_body = Discover,
    params(("env" = String, Path, description = "Environment ID or slug")),
    responses((status = 200, body = Object), (status = 422, body = ErrorBody)))]
pub async fn oidc_discovery_post(
    State(app): State<App>,
    admin: Admin,
    Path(env): Path<String>,
    ApiJson(req): ApiJson<Discover>,
) -> ApiResult<Json<Value>> {
    use portcullis_egress::Purpose;
    let env = admin.environment(&app, &env).await?;
    let issuer = req.issuer.trim_end_matches('/').to_owned();
    portcullis_core::validate::base_url(&issuer)
        .map_err(|e| ApiError::invalid(format!("issuer: {e}")))?;
    let url = format!("{issuer}/.well-known/openid-configuration");
    let doc: Value = serde_json::from_slice(
        &crate::oauth::saml::fetch_through_gate(&app, &env.id, &url, Purpose::MetadataFetch)
            .await?,
    )
    .map_err(|_| ApiError::invalid(format!("{url} is not JSON")))?;
    // OIDC Discovery §4.3: the issuer in the document MUST be the one it was fetched for.
    if doc["issuer"].as_str() != Some(issuer.as_str()) {
        return Err(ApiError::invalid(format!(
            "the discovery document names issuer {}, not {issuer}",
            doc["issuer"]
        )));
    }
    let s = |k: &str| {
        doc[k]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ApiError::invalid(format!("the discovery document has no {k}")))
    };
    let jwks_uri = s("jwks_uri")?;
    let jwks: Value = serde_json::from_slice(
        &crate::oauth::saml::fetch_through_gate(&app, &env.id, &jwks_uri, Purpose::JwksFetch)
            .await?,
    )
    .map_err(|_| ApiError::invalid(format!("{jwks_uri} is not JSON")))?;
    let public: Vec<Value> = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|k| {
            portcullis_crypto::jws::jwk_alg(k).is_some()
                && ["d", "p", "q", "k"].iter().all(|m| k.get(m).is_none())
        })
        .cloned()
        .collect();
    let settings = json!({
        "issuer": issuer, "client_id": "", "authorization_endpoint": s("authorization_endpoint")?,
        "token_endpoint": s("token_endpoint")?, "jwks": { "keys": public },
    });
    Ok(Json(
        json!({ "oidc": settings, "fetched": { "discovery": url, "jwks": jwks_uri }, "next": "set client_id, then create the connection with these settings and its client_secret" }),
    ))
}
