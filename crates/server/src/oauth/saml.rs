//! SAML 2.0 connections: SP metadata, SP-initiated login (HTTP-Redirect), the ACS (POST binding)
//! and IdP metadata import. XML and signatures are `portcullis_saml`'s; this module binds them to
//! connections, pending requests, the replay cache and the authorization flow.

use axum::body::Bytes;
use axum::extract::{Form, Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis_core::Timestamp;
use portcullis_core::event::EventType;
use portcullis_core::ids::{ConnectionId, PrefixedId, ProfileId};
use portcullis_core::sso::{Connection, ConnectionState, ConnectionType, Profile};
use portcullis_oidc::authorize::Request;
use portcullis_saml::{AttributeMapping, Expectations, IdpConfig, SpConfig, SpKey};
use portcullis_store::ConnectionChange;
use serde::Deserialize;
use serde_json::{Value, json};

use super::EnvCtx;
use super::login::{fail_page, see_other_to};
use super::sso::{complete, refuse_public};
use crate::App;
use crate::error::{ApiError, ApiResult};
use crate::extract::Admin;

const SSO_REQUEST_TTL_S: i64 = 600;
const SETTINGS: &[&str] = &[
    "allow_sha1",
    "allow_idp_initiated",
    "sign_requests",
    "skew_seconds",
    "attribute_mapping",
    "idp",
    "idp_initiated",
];

fn sp_urls(issuer: &str, conn: &ConnectionId) -> (String, String) {
    (
        format!("{issuer}/sso/saml/{conn}"),
        format!("{issuer}/sso/saml/{conn}/acs"),
    )
}

/// Validates the operator's settings and creates the SP keys of a new SAML connection.
pub fn new_saml_config(
    app: &App,
    id: &ConnectionId,
    env: &str,
    settings: Value,
    now: Timestamp,
) -> ApiResult<(Value, Vec<u8>)> {
    let obj = settings
        .as_object()
        .ok_or_else(|| ApiError::invalid("saml settings must be an object"))?;
    check_saml_settings(obj)?;
    let (sp, sealed) = sp_keys(app, id, env, now)?;
    let mut config = saml_defaults();
    config["sp"] = sp;
    for (k, v) in obj {
        if k == "idp" {
            config["idp"] = manual_idp(v)?;
        } else {
            config[k] = v.clone();
        }
    }
    Ok((config, sealed))
}

/// The settings a SAML connection has unless the operator says otherwise.
pub(crate) fn saml_defaults() -> Value {
    json!({ "allow_sha1": false, "allow_idp_initiated": false, "sign_requests": true, "skew_seconds": 120 })
}

/// The checks of a connection's SAML settings (not the IdP side), without creating anything.
pub(crate) fn check_saml_settings(obj: &serde_json::Map<String, Value>) -> ApiResult<()> {
    if let Some(k) = obj.keys().find(|k| !SETTINGS.contains(&k.as_str())) {
        return Err(ApiError::invalid(format!(
            "saml: unknown setting {k:?} (known: {})",
            SETTINGS.join(", ")
        )));
    }
    for b in ["allow_sha1", "allow_idp_initiated", "sign_requests"] {
        if obj.get(b).is_some_and(|v| !v.is_boolean()) {
            return Err(ApiError::invalid(format!("saml.{b} must be true or false")));
        }
    }
    // IdP-initiated login lands on a client the connection names; without one it could never work.
    if obj.get("allow_idp_initiated") == Some(&Value::Bool(true)) {
        let target = obj.get("idp_initiated");
        let named = |k: &str| {
            target
                .and_then(|t| t.get(k))
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        };
        if !named("client_id") || !named("redirect_uri") {
            return Err(ApiError::invalid(
                "saml.allow_idp_initiated needs saml.idp_initiated {client_id, redirect_uri}",
            ));
        }
    }
    if obj
        .get("skew_seconds")
        .is_some_and(|v| !v.as_i64().is_some_and(|n| (0..=600).contains(&n)))
    {
        return Err(ApiError::invalid("saml.skew_seconds must be 0 to 600"));
    }
    if let Some(m) = obj.get("attribute_mapping") {
        mapping_from(Some(m))
            .map_err(|e| ApiError::invalid(format!("saml.attribute_mapping: {e}")))?;
    }
    Ok(())
}

/// New SP signing and encryption keys for connection `id`: the public `sp` settings and the
/// sealed private keys.
pub(crate) fn sp_keys(
    app: &App,
    id: &ConnectionId,
    env: &str,
    now: Timestamp,
) -> ApiResult<(Value, Vec<u8>)> {
    let signing = portcullis_saml::generate_sp_key(&format!("{id} signing"), now)
        .map_err(|e| ApiError::internal("sp key", e.message))?;
    let encryption = portcullis_saml::generate_sp_key(&format!("{id} encryption"), now)
        .map_err(|e| ApiError::internal("sp key", e.message))?;
    let sp = json!({ "signing_certificate": B64.encode(&signing.certificate_der), "encryption_certificate": B64.encode(&encryption.certificate_der) });
    let secrets = json!({ "sp_signing_key": B64.encode(&signing.private_pkcs8_der), "sp_encryption_key": B64.encode(&encryption.private_pkcs8_der) });
    let sealed = app
        .keys
        .master()
        .seal(
            &portcullis_crypto::SystemRandom,
            &crate::admin::connection_secrets_aad(id, env),
            secrets.to_string().as_bytes(),
        )
        .map_err(|e| ApiError::internal("seal", e))?;
    Ok((sp, sealed))
}

/// An attribute mapping from its JSON form: each of `email`, `first_name`, `last_name`, `groups`,
/// `idp_id` may list the attribute names to try, replacing the default list for that field.
fn mapping_from(v: Option<&Value>) -> Result<AttributeMapping, String> {
    let mut m = AttributeMapping::default();
    let Some(v) = v else { return Ok(m) };
    let obj = v.as_object().ok_or("must be an object")?;
    for (k, names) in obj {
        let list: Vec<String> = names
            .as_array()
            .ok_or_else(|| format!("{k} must be a list of attribute names"))?
            .iter()
            .map(|n| {
                n.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("{k} must be a list of attribute names"))
            })
            .collect::<Result<_, _>>()?;
        let slot = match k.as_str() {
            "email" => &mut m.email,
            "first_name" => &mut m.first_name,
            "last_name" => &mut m.last_name,
            "groups" => &mut m.groups,
            "idp_id" => &mut m.idp_id,
            other => {
                return Err(format!(
                    "unknown field {other:?} (email, first_name, last_name, groups, idp_id)"
                ));
            }
        };
        *slot = list;
    }
    Ok(m)
}

/// Manual configuration without metadata: entity ID, SSO URL, certificates (PEM).
pub(crate) fn manual_idp(v: &Value) -> ApiResult<Value> {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    let entity_id =
        s("entity_id").ok_or_else(|| ApiError::invalid("saml.idp.entity_id is required"))?;
    let sso_url = s("sso_url").ok_or_else(|| ApiError::invalid("saml.idp.sso_url is required"))?;
    portcullis_core::validate::base_url(sso_url.trim_end_matches('/'))
        .map_err(|e| ApiError::invalid(format!("saml.idp.sso_url: {e}")))?;
    let pem = s("certificates_pem")
        .ok_or_else(|| ApiError::invalid("saml.idp.certificates_pem is required"))?;
    let certs = portcullis_saml::certificates_from_pem(&pem)
        .map_err(|e| ApiError::invalid(format!("saml.idp.certificates_pem: {}", e.message)))?;
    idp_json(&entity_id, &sso_url, &certs, &[])
}

pub(crate) fn idp_json(
    entity_id: &str,
    sso_url: &str,
    certs: &[Vec<u8>],
    formats: &[String],
) -> ApiResult<Value> {
    let mut infos = Vec::new();
    for der in certs {
        let i = portcullis_saml::cert_info(der)
            .map_err(|e| ApiError::invalid(format!("IdP certificate: {}", e.message)))?;
        infos.push(json!({ "der": B64.encode(der), "subject": i.subject, "sha256_fingerprint": i.sha256_fingerprint, "not_after": i.not_after.to_rfc3339() }));
    }
    if infos.is_empty() {
        return Err(ApiError::invalid(
            "the IdP needs at least one signing certificate",
        ));
    }
    Ok(
        json!({ "entity_id": entity_id, "sso_url": sso_url, "certificates": infos, "name_id_formats": formats }),
    )
}

pub fn saml_incomplete(c: &Connection) -> Option<String> {
    (!idp_configured(&c.config))
        .then(|| "the IdP is not configured: upload its metadata (PUT …/saml-metadata) or set entity ID, SSO URL and certificates".into())
}

/// Whether a SAML connection's configuration has a usable IdP side (what activation needs). A
/// connection created without `idp` has no IdP side at all: that is incomplete too.
pub(crate) fn idp_configured(config: &Value) -> bool {
    idp_config_of(config).is_some_and(|i| !i.certificates_der.is_empty())
}

/// The IdP side of a connection, as configured.
fn idp_config(c: &Connection) -> Option<IdpConfig> {
    idp_config_of(&c.config)
}

fn idp_config_of(config: &Value) -> Option<IdpConfig> {
    let idp = config.get("idp")?;
    let certificates_der = idp["certificates"]
        .as_array()?
        .iter()
        .filter_map(|x| B64.decode(x["der"].as_str()?).ok())
        .collect();
    Some(IdpConfig {
        entity_id: idp["entity_id"].as_str()?.to_owned(),
        sso_redirect_url: idp["sso_url"].as_str()?.to_owned(),
        certificates_der,
        allow_sha1: config["allow_sha1"].as_bool().unwrap_or(false),
    })
}

/// This SP as the connection presents itself, with its private keys when `secrets` is given.
fn sp_config(app: &App, ec: &EnvCtx, c: &Connection, with_keys: bool) -> Result<SpConfig, String> {
    let (entity_id, acs_url) = sp_urls(&ec.env.issuer, &c.id);
    let cert = |k: &str| {
        c.config["sp"][k]
            .as_str()
            .and_then(|b| B64.decode(b).ok())
            .unwrap_or_default()
    };
    let (signing, encryption) = if with_keys {
        let sealed = c
            .sealed_secrets
            .as_ref()
            .ok_or("the connection has no keys")?;
        let plain = app
            .keys
            .master()
            .open(
                &crate::admin::connection_secrets_aad(&c.id, c.env_id.as_str()),
                sealed,
            )
            .map_err(|e| e.to_string())?;
        let s: Value = serde_json::from_slice(&plain).map_err(|e| e.to_string())?;
        let key = |k: &str| {
            s[k].as_str()
                .and_then(|b| B64.decode(b).ok())
                .unwrap_or_default()
        };
        (
            SpKey {
                private_pkcs8_der: key("sp_signing_key"),
                certificate_der: cert("signing_certificate"),
            },
            SpKey {
                private_pkcs8_der: key("sp_encryption_key"),
                certificate_der: cert("encryption_certificate"),
            },
        )
    } else {
        // Metadata needs only the certificates.
        (
            SpKey {
                private_pkcs8_der: vec![],
                certificate_der: cert("signing_certificate"),
            },
            SpKey {
                private_pkcs8_der: vec![],
                certificate_der: cert("encryption_certificate"),
            },
        )
    };
    Ok(SpConfig {
        entity_id,
        acs_url,
        signing: Some(signing),
        encryption: Some(encryption),
    })
}

/// SP-initiated login: an AuthnRequest over the HTTP-Redirect binding, its ID remembered.
pub async fn saml_start(
    app: &App,
    ec: &EnvCtx,
    conn: &Connection,
    auth_request_id: &str,
    req: &Request,
) -> Response {
    let (Some(idp), Ok(sp)) = (idp_config(conn), sp_config(app, ec, conn, true)) else {
        return fail_page(
            ec,
            "The sign-in method of this organization is misconfigured.",
            None,
        );
    };
    let mut b = [0u8; 20];
    portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut b);
    // An XML ID must not start with a digit.
    let request_id = format!("_{}", portcullis_crypto::secrets::to_hex(&b));
    let sign = conn.config["sign_requests"].as_bool().unwrap_or(true);
    let url = match portcullis_saml::authn_request_redirect(
        &sp,
        &idp,
        &request_id,
        Some(&request_id),
        sign,
        ec.now,
    ) {
        Ok(u) => u,
        Err(e) => {
            return fail_page(
                ec,
                &format!("The sign-in request could not be made: {}", e.message),
                None,
            );
        }
    };
    let data = json!({ "client_id": req.client_id });
    if app
        .store
        .create_sso_request(
            &ec.env.id,
            &request_id,
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
    see_other_to(&url)
}

async fn load(app: &App, env: &str, conn: &str) -> Result<(EnvCtx, Connection), Response> {
    let ec = EnvCtx::load(app, env).await.map_err(|e| {
        super::pages::error_page(
            StatusCode::NOT_FOUND,
            "Portcullis",
            "Sign-in is not available",
            &e.description,
            None,
        )
    })?;
    let c = match ConnectionId::parse(conn) {
        Some(id) => app.store.get_connection(&ec.env.id, &id).await.ok(),
        None => None,
    };
    match c {
        Some(c) if c.kind == ConnectionType::Saml => Ok((ec, c)),
        _ => Err(super::pages::error_page(
            StatusCode::NOT_FOUND,
            &ec.env.name,
            "Unknown connection",
            "This SAML connection does not exist.",
            None,
        )),
    }
}

/// `GET /e/{env}/sso/saml/{conn}/metadata`: this SP's metadata for the IdP administrator.
pub async fn saml_metadata_get(
    State(app): State<App>,
    Path((env, conn)): Path<(String, String)>,
) -> Response {
    let (ec, c) = match load(&app, &env, &conn).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match sp_config(&app, &ec, &c, false) {
        Ok(sp) => (
            [(header::CONTENT_TYPE, "application/samlmetadata+xml")],
            portcullis_saml::sp_metadata(&sp),
        )
            .into_response(),
        Err(e) => fail_page(&ec, &e, None),
    }
}

#[derive(Deserialize)]
pub struct AcsForm {
    #[serde(rename = "SAMLResponse")]
    saml_response: Option<String>,
    #[serde(rename = "RelayState")]
    relay_state: Option<String>,
}

/// `POST /e/{env}/sso/saml/{conn}/acs` (POST binding).
pub async fn saml_acs_post(
    State(app): State<App>,
    Path((env, conn)): Path<(String, String)>,
    Form(f): Form<AcsForm>,
) -> Response {
    let (ec, c) = match load(&app, &env, &conn).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if c.state != ConnectionState::Active {
        return refuse_public(
            &app,
            &ec,
            &c,
            "connection_inactive",
            "the connection is not active",
        )
        .await;
    }
    let Some(response) = f.saml_response.filter(|r| !r.is_empty()) else {
        return refuse_public(&app, &ec, &c, "malformed", "no SAMLResponse").await;
    };
    let (Some(idp), Ok(sp)) = (idp_config(&c), sp_config(&app, &ec, &c, true)) else {
        return refuse_public(&app, &ec, &c, "misconfigured", "").await;
    };
    // Solicited: RelayState names a pending request of this connection; the assertion must answer
    // it. Unsolicited only when the connection allows IdP-initiated login.
    let relay = f.relay_state.filter(|r| r.len() <= 80);
    let solicited = match &relay {
        Some(r) => app
            .store
            .peek_sso_request(&ec.env.id, &c.id, r, ec.now)
            .await
            .ok()
            .flatten()
            .map(|_| r.clone()),
        None => None,
    };
    let allow_unsolicited = c.config["allow_idp_initiated"].as_bool().unwrap_or(false);
    // Without a pending request, and with IdP-initiated login off, the Response can only answer
    // a request of ours that is no longer pending (answered, or expired): it is still validated
    // against that request, so that a replayed Response is refused as a replay, and a forged one
    // for what it is, before the request's state is.
    let in_response_to = match (&solicited, &relay) {
        (Some(r), _) => Some(r.as_str()),
        (None, _) if allow_unsolicited => None,
        (None, Some(r)) => Some(r.as_str()),
        (None, None) => {
            return refuse_public(
                &app,
                &ec,
                &c,
                "unsolicited",
                "no pending request matches, and IdP-initiated login is off",
            )
            .await;
        }
    };
    let skew = c.config["skew_seconds"].as_i64().unwrap_or(120);
    let expect = Expectations {
        sp: &sp,
        idp: &idp,
        in_response_to,
        now: ec.now,
        skew_seconds: skew,
    };
    let assertion = match portcullis_saml::validate_response(&response, &expect) {
        Ok(a) => a,
        Err(e) => return refuse_public(&app, &ec, &c, e.code.as_str(), &e.message).await,
    };
    // Replay cache: recorded only now, after every other check passed, so a refused response
    // consumes nothing a valid one would need.
    let keep_until = assertion.not_on_or_after.plus_seconds(skew);
    match app
        .store
        .remember_assertion(&ec.env.id, &c.id, &assertion.assertion_id, keep_until)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            return refuse_public(
                &app,
                &ec,
                &c,
                "replay",
                &format!("assertion {} was already used", assertion.assertion_id),
            )
            .await;
        }
        Err(e) => return refuse_public(&app, &ec, &c, "replay_cache_failed", &e.to_string()).await,
    }
    if solicited.is_none() && !allow_unsolicited {
        return refuse_public(
            &app,
            &ec,
            &c,
            "in_response_to_used",
            "the request this answers is no longer pending (answered or expired)",
        )
        .await;
    }
    let (auth_request_id, req) = match solicited {
        Some(id) => match app
            .store
            .take_sso_request(&ec.env.id, &c.id, &id, ec.now)
            .await
        {
            Ok(Some((auth_request_id, _))) => match app
                .store
                .auth_request(&ec.env.id, &auth_request_id, ec.now)
                .await
            {
                Ok(Some((_, params))) => match serde_json::from_value::<Request>(params) {
                    Ok(r) => (auth_request_id, r),
                    Err(_) => return refuse_public(&app, &ec, &c, "request_unreadable", "").await,
                },
                _ => {
                    return refuse_public(
                        &app,
                        &ec,
                        &c,
                        "request_expired",
                        "the sign-in request expired",
                    )
                    .await;
                }
            },
            _ => {
                return refuse_public(
                    &app,
                    &ec,
                    &c,
                    "in_response_to_used",
                    "the request this answers was already answered",
                )
                .await;
            }
        },
        None => match idp_initiated_request(&app, &ec, &c).await {
            Ok(v) => v,
            Err(why) => {
                return refuse_public(&app, &ec, &c, "idp_initiated_unconfigured", &why).await;
            }
        },
    };
    let mapping = mapping_from(c.config.get("attribute_mapping")).unwrap_or_default();
    let p = portcullis_saml::map_profile(&assertion, &mapping);
    let profile = Profile {
        id: app.store.new_id::<ProfileId>(ec.now),
        env_id: ec.env.id.clone(),
        org_id: c.org_id.clone(),
        connection_id: c.id.clone(),
        idp_id: p.idp_id,
        email: p.email.map(|e| e.to_ascii_lowercase()),
        first_name: p.first_name,
        last_name: p.last_name,
        groups: p.groups,
        raw_attributes: serde_json::to_value(&p.raw_attributes).unwrap_or_default(),
        created_at: ec.now,
        updated_at: ec.now,
    };
    complete(&app, &ec, &c, &auth_request_id, &req, profile, Vec::new()).await
}

/// IdP-initiated login, bound to a fresh server-side flow for the client the connection names.
async fn idp_initiated_request(
    app: &App,
    ec: &EnvCtx,
    c: &Connection,
) -> Result<(String, Request), String> {
    let cfg = &c.config["idp_initiated"];
    let client_id = cfg["client_id"]
        .as_str()
        .ok_or("idp_initiated.client_id is not configured")?;
    let redirect_uri = cfg["redirect_uri"]
        .as_str()
        .ok_or("idp_initiated.redirect_uri is not configured")?;
    let client = portcullis_core::ids::ClientId::parse(client_id)
        .ok_or("idp_initiated.client_id is invalid")?;
    let client = app
        .store
        .get_client(&ec.env.id, &client)
        .await
        .map_err(|e| e.to_string())?;
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err("idp_initiated.redirect_uri is not registered for that client".into());
    }
    let req = Request {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        redirect_uri_given: false,
        scope: "openid email profile".into(),
        state: None,
        nonce: None,
        code_challenge: None,
        prompt_login: false,
        prompt_none: false,
        max_age: None,
        login_hint: None,
        organization: None,
        connection: None,
    };
    let mut b = [0u8; 32];
    portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut b);
    let id = B64.encode(b).replace(['+', '/', '='], "");
    let params = serde_json::to_value(&req).map_err(|e| e.to_string())?;
    app.store
        .create_auth_request(
            &ec.env.id,
            &id,
            "idp-initiated",
            &params,
            ec.now.plus_seconds(60),
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok((id, req))
}

/// `PUT …/connections/{conn}/saml-metadata`: imports the IdP's metadata (the offline default).
pub async fn saml_metadata_put(
    State(app): State<App>,
    admin: Admin,
    Path((env, conn)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<axum::Json<Value>> {
    let before = crate::admin::load_connection(&app, &admin, &env, &conn).await?;
    if before.kind != ConnectionType::Saml {
        return Err(ApiError::invalid("only SAML connections take IdP metadata"));
    }
    if body.len() > 1 << 20 {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "metadata is larger than 1 MiB",
        ));
    }
    let xml = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("the metadata is not UTF-8 XML"))?;
    import_metadata(&app, &admin, before, xml, None).await
}

/// Parses IdP metadata and makes it the connection's IdP side; `fetched_from` records the URL
/// when it came through the egress gate (the inventory then shows that dependency).
async fn import_metadata(
    app: &App,
    admin: &Admin,
    before: Connection,
    xml: &str,
    fetched_from: Option<&str>,
) -> ApiResult<axum::Json<Value>> {
    let md = portcullis_saml::parse_idp_metadata(xml).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_metadata",
            format!("{}: {}", e.code.as_str(), e.message),
        )
    })?;
    let sso = md.sso_redirect_url.clone().ok_or_else(|| {
        ApiError::invalid("the metadata has no SingleSignOnService with the HTTP-Redirect binding")
    })?;
    let certs: Vec<Vec<u8>> = md.certificates.iter().map(|c| c.der.clone()).collect();
    let idp = idp_json(&md.entity_id, &sso, &certs, &md.name_id_formats)?;
    let mut after = before.clone();
    after.config["idp"] = idp.clone();
    match fetched_from {
        Some(u) => after.config["metadata_url"] = json!(u),
        None => {
            if let Some(o) = after.config.as_object_mut() {
                o.remove("metadata_url");
            }
        }
    }
    let now = app.now();
    let expiring: Vec<Value> = md.certificates.iter().map(|c| json!({ "subject": c.subject, "sha256_fingerprint": c.sha256_fingerprint, "not_after": c.not_after.to_rfc3339(), "expired": c.not_after <= now })).collect();
    let detail = json!({ "entity_id": md.entity_id, "sso_url": sso, "certificates": expiring, "fetched_from": fetched_from });
    let c = app
        .store
        .update_connection(
            &admin.actor(),
            now,
            &before,
            after,
            ConnectionChange {
                kind: EventType::ConnectionUpdated,
                action: "connection.saml_metadata.replace",
                detail: detail.clone(),
            },
        )
        .await?;
    Ok(axum::Json(
        json!({ "connection": crate::admin::connection_view(&c), "idp": detail }),
    ))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FetchMetadata {
    /// Where the IdP publishes its metadata. Fetched through the egress gate (purpose
    /// `metadata_fetch`): the environment's policy must allow it.
    pub url: String,
}

/// `POST …/connections/{conn}/saml-metadata/fetch`: the connected alternative to uploading the
/// file — only through the egress gate, and only when a rule allows it.
pub async fn saml_metadata_fetch_post(
    State(app): State<App>,
    admin: Admin,
    Path((env, conn)): Path<(String, String)>,
    crate::extract::ApiJson(req): crate::extract::ApiJson<FetchMetadata>,
) -> ApiResult<axum::Json<Value>> {
    let before = crate::admin::load_connection(&app, &admin, &env, &conn).await?;
    if before.kind != ConnectionType::Saml {
        return Err(ApiError::invalid("only SAML connections take IdP metadata"));
    }
    let body = fetch_through_gate(
        &app,
        &before.env_id,
        &req.url,
        portcullis_egress::Purpose::MetadataFetch,
    )
    .await?;
    let xml = std::str::from_utf8(&body)
        .map_err(|_| ApiError::invalid("the fetched metadata is not UTF-8 XML"))?;
    import_metadata(&app, &admin, before, xml, Some(&req.url)).await
}

/// GETs `url` through the egress gate for `purpose`; a refusal is a 422 naming the rule it lacks.
pub async fn fetch_through_gate(
    app: &App,
    env: &portcullis_core::ids::EnvId,
    url: &str,
    purpose: portcullis_egress::Purpose,
) -> ApiResult<Vec<u8>> {
    let ctx = crate::egress::context(&app.store, env)
        .await
        .map_err(|e| ApiError::internal("egress policy", e))?;
    let req = portcullis_egress::gate::Request {
        method: portcullis_egress::gate::Method::GET,
        url: url.to_owned(),
        headers: vec![],
        body: None,
    };
    match app.egress.send(&ctx, purpose, req).await {
        Ok(r) if r.status == 200 => Ok(r.body),
        Ok(r) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "fetch_failed",
            format!("{url} answered HTTP {}", r.status),
        )),
        Err(e @ portcullis_egress::EgressError::Refused(_)) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "egress_refused",
            e.to_string(),
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "fetch_failed",
            format!("{url}: {e}"),
        )),
    }
}
