//! The current state of an environment, read once, and its export in the declarative format
//! (`export-config`): every listed object wholly described, no secret, no generated ID, sorted —
//! so exporting twice gives the same bytes and applying an export is a no-op.

use portcullis_bundle::config::{
    ClientSpec, ConnectionSpec, EnvConfig, ExchangeSpec, OrganizationSpec, VERSION, WebhookSpec,
};
use portcullis_core::model::{Environment, Organization};
use portcullis_core::oauth::{Client, ClientKind};
use portcullis_core::sso::{Connection, ConnectionType};
use portcullis_core::webhook::WebhookEndpoint;
use portcullis_egress::policy::Policy;
use portcullis_oidc::upstream::UpstreamConfig;
use serde_json::{Value, json};

use crate::App;
use crate::error::{ApiError, ApiResult};

/// Everything a plan compares against.
pub struct Current {
    pub orgs: Vec<Organization>,
    pub conns: Vec<Connection>,
    pub clients: Vec<Client>,
    pub hooks: Vec<WebhookEndpoint>,
    pub policy: Policy,
    pub publishers: Vec<(String, Value)>,
}

pub async fn load(app: &App, env: &Environment) -> ApiResult<Current> {
    let mut orgs = Vec::new();
    loop {
        let page = app
            .store
            .list_organizations(&env.id, orgs.last().map(|o: &Organization| &o.id), 1000)
            .await?;
        let done = page.len() < 1000;
        orgs.extend(page);
        if done {
            break;
        }
    }
    let policy = crate::egress::context(&app.store, &env.id)
        .await
        .map(|c| (*c.policy).clone())
        .map_err(|e| ApiError::internal("egress policy", e))?;
    Ok(Current {
        orgs,
        conns: app.store.list_connections(&env.id, None).await?,
        clients: app.store.list_clients(&env.id).await?,
        hooks: app.store.list_webhook_endpoints(&env.id).await?,
        policy,
        publishers: app.store.bundle_publishers(&env.id).await?,
    })
}

/// The policy document as the file holds it: rules and waivers, no version.
pub fn policy_document(p: &Policy) -> Value {
    let mut v = serde_json::to_value(Policy {
        version: 0,
        ..p.clone()
    })
    .unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("version");
    }
    portcullis_bundle::config::strip_nulls(v)
}

/// An upstream OIDC configuration with its defaults filled in (what is compared and exported).
pub fn normalized_oidc(v: &Value) -> Option<Value> {
    let cfg: UpstreamConfig = serde_json::from_value(v.clone()).ok()?;
    serde_json::to_value(cfg).ok()
}

/// The operator's SAML settings of a stored connection: everything but the generated SP side,
/// the IdP side and where metadata came from.
pub fn saml_settings(config: &Value) -> Value {
    let mut s = config.clone();
    if let Some(o) = s.as_object_mut() {
        for k in ["sp", "idp", "metadata_url"] {
            o.remove(k);
        }
    }
    s
}

/// The IdP side as compared: entity ID, SSO URL and certificates (DER, base64).
pub fn idp_identity(idp: &Value) -> Value {
    json!({
        "entity_id": idp["entity_id"], "sso_url": idp["sso_url"],
        "certificates": idp["certificates"].as_array().map(|a| a.iter().map(|c| c["der"].clone()).collect::<Vec<_>>()),
    })
}

fn pem_of(ders: &[Value]) -> String {
    let mut out = String::new();
    for d in ders.iter().filter_map(Value::as_str) {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let b = d.as_bytes();
        for chunk in b.chunks(64) {
            out.push_str(&String::from_utf8_lossy(chunk));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

fn connection_spec(c: &Connection) -> ConnectionSpec {
    let (saml, oidc) = match c.kind {
        ConnectionType::Saml => {
            let mut s = saml_settings(&c.config);
            if let Some(idp) = c.config.get("idp").filter(|i| i.is_object()) {
                let ders: Vec<Value> = idp["certificates"]
                    .as_array()
                    .map(|a| a.iter().map(|c| c["der"].clone()).collect())
                    .unwrap_or_default();
                s["idp"] = json!({
                    "entity_id": idp["entity_id"], "sso_url": idp["sso_url"],
                    "certificates_pem": pem_of(&ders),
                });
            }
            (Some(s), None)
        }
        ConnectionType::Oidc => (
            None,
            Some(normalized_oidc(&c.config).unwrap_or_else(|| c.config.clone())),
        ),
    };
    ConnectionSpec {
        name: c.name.clone(),
        kind: c.kind.as_str().into(),
        state: c.state.as_str().into(),
        saml,
        oidc,
        client_secret: None,
    }
}

pub fn client_spec(c: &Client) -> ClientSpec {
    ClientSpec {
        name: c.name.clone(),
        kind: Some(
            if c.kind == ClientKind::Public {
                "public"
            } else {
                "confidential"
            }
            .into(),
        ),
        token_endpoint_auth_method: Some(c.auth_method.as_str().into()),
        redirect_uris: c.redirect_uris.clone(),
        post_logout_redirect_uris: c.post_logout_redirect_uris.clone(),
        grant_types: Some(
            c.grant_types
                .iter()
                .map(|g| g.as_str().to_owned())
                .collect(),
        ),
        scopes: Some(c.scopes.clone()),
        access_token_ttl_seconds: Some(c.lifetimes.access_token),
        id_token_ttl_seconds: Some(c.lifetimes.id_token),
        refresh_idle_ttl_seconds: Some(c.lifetimes.refresh_idle),
        refresh_absolute_ttl_seconds: Some(c.lifetimes.refresh_absolute),
        token_exchange: (!c.exchange.audiences.is_empty() || !c.exchange.scopes.is_empty()).then(
            || ExchangeSpec {
                audiences: c.exchange.audiences.clone(),
                scopes: c.exchange.scopes.clone(),
            },
        ),
        jwks: c.jwks.clone(),
    }
}

/// The environment as a declarative file (`export-config`).
pub fn export(cur: &Current) -> EnvConfig {
    EnvConfig {
        version: VERSION,
        prune: false,
        egress: Some(policy_document(&cur.policy)),
        publishers: Some(cur.publishers.iter().map(|(_, j)| j.clone()).collect()),
        actions: Default::default(),
        organizations: cur
            .orgs
            .iter()
            .map(|o| OrganizationSpec {
                name: o.name.clone(),
                domains: o.domains.clone(),
                connections: cur
                    .conns
                    .iter()
                    .filter(|c| c.org_id == o.id)
                    .map(connection_spec)
                    .collect(),
            })
            .collect(),
        clients: cur.clients.iter().map(client_spec).collect(),
        webhook_endpoints: cur
            .hooks
            .iter()
            .map(|h| WebhookSpec {
                url: h.url.clone(),
                description: h.description.clone(),
                event_types: h.event_types.clone(),
                enabled: h.enabled,
                headers: None,
            })
            .collect(),
    }
}
