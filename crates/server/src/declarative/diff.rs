//! Desired (a declarative file) against current (the environment): the [`Plan`] a reviewer reads
//! and the [`Intent`]s `apply` executes. Every check that can fail is made here, so that a plan
//! that succeeds is an apply that succeeds (short of a concurrent change, which apply detects):
//! names, domains, certificates, OIDC settings, client rules, webhook URLs against the policy the
//! file leaves in force, references to existing objects. Nothing is generated or written here.

use std::collections::{BTreeMap, BTreeSet};

use portcullis_bundle::config::{ConnectionSpec, EnvConfig, WebhookSpec};
use portcullis_bundle::plan::{Change, Op, Plan};
use portcullis_core::ids::{ApiKeyId, PrefixedId};
use portcullis_core::model::{Environment, Organization};
use portcullis_core::oauth::Client;
use portcullis_core::sso::{Connection, ConnectionState, ConnectionType};
use portcullis_core::webhook::{WebhookEndpoint, check_filter};
use portcullis_egress::policy::Policy;
use serde_json::{Value, json};

use super::state::{Current, idp_identity, normalized_oidc, policy_document, saml_settings};
use crate::App;
use crate::admin::views::{CreateClient, TokenExchangeView};
use crate::error::{ApiError, ApiResult};

/// Where a new connection's organization comes from.
#[derive(Debug, Clone)]
pub enum OrgRef {
    Existing(portcullis_core::ids::OrgId),
    /// Created earlier in the same apply, by name.
    New(String),
}

/// One step of an apply, fully checked.
#[derive(Debug, Clone)]
pub enum Intent {
    SetPublishers(Vec<(String, Value)>),
    ReplacePolicy {
        expected_version: i64,
        policy: Policy,
        diff: Value,
    },
    CreateOrg {
        name: String,
        domains: Vec<String>,
    },
    UpdateOrgDomains {
        before: Organization,
        domains: Vec<String>,
    },
    CreateConnection {
        org: OrgRef,
        name: String,
        kind: ConnectionType,
        /// For SAML: the settings and IdP side (the SP keys are made at apply).
        config: Value,
        client_secret: Option<String>,
        state: ConnectionState,
    },
    UpdateConnection {
        before: Connection,
        config: Value,
        client_secret: Option<String>,
        state: ConnectionState,
    },
    CreateClient(Box<Client>),
    UpdateClient {
        before: Box<Client>,
        after: Box<Client>,
    },
    DeleteClient(Box<Client>),
    CreateWebhook {
        spec: WebhookSpec,
        headers: Vec<(String, String)>,
    },
    UpdateWebhook {
        before: Box<WebhookEndpoint>,
        spec: WebhookSpec,
        headers: Vec<(String, String)>,
    },
    DeleteWebhook(Box<WebhookEndpoint>),
    RevokeApiKey(String),
    RotateSigningKey,
}

fn bad(path: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_config",
        format!("{path}: {e}"),
    )
}

/// Prefixes an admin-API validation error with the file path it concerns.
fn at(path: &str) -> impl Fn(ApiError) -> ApiError + '_ {
    move |e| bad(path, e.message)
}

fn change(op: Op, kind: &str, target: &str, id: Option<String>, fields: Vec<String>) -> Change {
    Change {
        op,
        kind: kind.into(),
        target: target.into(),
        id,
        fields,
    }
}

/// Compares `cfg` with `cur`. `now` stamps the clients built for comparison.
pub async fn diff(
    app: &App,
    env: &Environment,
    cur: &Current,
    cfg: &EnvConfig,
) -> ApiResult<(Plan, Vec<Intent>)> {
    let mut plan = Plan::default();
    let mut intents = Vec::new();

    // Publishers.
    if let Some(keys) = &cfg.publishers {
        let wanted: Vec<(String, Value)> = keys
            .iter()
            .filter_map(|k| portcullis_bundle::publisher::key_id(k).map(|id| (id, k.clone())))
            .collect();
        let a: BTreeSet<&String> = wanted.iter().map(|(k, _)| k).collect();
        let b: BTreeSet<&String> = cur.publishers.iter().map(|(k, _)| k).collect();
        if a != b {
            let mut fields: Vec<String> = a.difference(&b).map(|k| format!("+{k}")).collect();
            fields.extend(b.difference(&a).map(|k| format!("-{k}")));
            plan.changes.push(change(
                Op::Update,
                "bundle_publishers",
                "trusted keys",
                None,
                fields,
            ));
            intents.push(Intent::SetPublishers(wanted));
        }
    }

    // The egress policy, and the policy webhook URLs are checked against.
    let mut policy = cur.policy.clone();
    if let Some(doc) = &cfg.egress {
        let mut doc = doc.clone();
        doc["version"] = json!(cur.policy.version);
        let new =
            portcullis_egress::policy::parse(&doc.to_string()).map_err(|e| bad("egress", e))?;
        if policy_document(&new) != policy_document(&cur.policy) {
            let d = portcullis_egress::checks::policy_diff(&cur.policy, &new);
            let fields = d
                .iter()
                .filter_map(|c| serde_json::to_value(c).ok())
                .map(|c| {
                    format!(
                        "{} {}",
                        c["change"]
                            .as_str()
                            .or(c["kind"].as_str())
                            .unwrap_or("changed"),
                        c["rule"].as_str().or(c["id"].as_str()).unwrap_or("")
                    )
                    .trim()
                    .to_owned()
                })
                .collect();
            plan.changes
                .push(change(Op::Update, "egress_policy", "policy", None, fields));
            intents.push(Intent::ReplacePolicy {
                expected_version: cur.policy.version,
                diff: serde_json::to_value(d).unwrap_or(Value::Null),
                policy: new.clone(),
            });
        }
        policy = new;
    }

    organizations(app, cur, cfg, &mut plan, &mut intents)?;
    clients(app, env, cur, cfg, &mut plan, &mut intents).await?;
    webhooks(app, env, cur, cfg, &policy, &mut plan, &mut intents).await?;
    actions(app, env, cfg, &mut plan, &mut intents).await?;
    Ok((plan, intents))
}

fn organizations(
    app: &App,
    cur: &Current,
    cfg: &EnvConfig,
    plan: &mut Plan,
    intents: &mut Vec<Intent>,
) -> ApiResult<()> {
    let mut by_name: BTreeMap<&str, &Organization> = BTreeMap::new();
    for o in &cur.orgs {
        if by_name.insert(o.name.as_str(), o).is_some()
            && cfg.organizations.iter().any(|s| s.name == o.name)
        {
            return Err(bad(
                "organizations",
                format!(
                    "the environment has two organizations named {:?}: rename one, so the file can name each",
                    o.name
                ),
            ));
        }
    }
    let client_ids: BTreeSet<&str> = cur.clients.iter().map(|c| c.id.as_str()).collect();
    for (i, spec) in cfg.organizations.iter().enumerate() {
        let p = format!("organizations[{i}]");
        portcullis_core::validate::name(&spec.name).map_err(|e| bad(&format!("{p}.name"), e))?;
        let domains = crate::admin::orgs::domains(spec.domains.clone())
            .map_err(at(&format!("{p}.domains")))?;
        let existing = by_name.get(spec.name.as_str()).copied();
        match existing {
            None => {
                plan.changes
                    .push(change(Op::Create, "organization", &spec.name, None, vec![]));
                intents.push(Intent::CreateOrg {
                    name: spec.name.clone(),
                    domains,
                });
            }
            Some(o) if o.domains != domains => {
                plan.changes.push(change(
                    Op::Update,
                    "organization",
                    &spec.name,
                    Some(o.id.to_string()),
                    vec!["domains".into()],
                ));
                intents.push(Intent::UpdateOrgDomains {
                    before: o.clone(),
                    domains,
                });
            }
            Some(_) => {}
        }
        let current: Vec<&Connection> = existing
            .map(|o| cur.conns.iter().filter(|c| c.org_id == o.id).collect())
            .unwrap_or_default();
        for (j, cs) in spec.connections.iter().enumerate() {
            let cp = format!("{p}.connections[{j}]");
            let target = format!("{}/{}", spec.name, cs.name);
            let mut same = current.iter().filter(|c| c.name == cs.name);
            let before = same.next().copied();
            if same.next().is_some() {
                return Err(bad(
                    &cp,
                    format!(
                        "organization {:?} has two connections named {:?}: rename one",
                        spec.name, cs.name
                    ),
                ));
            }
            let desired = desired_connection(app, &cp, cs, before, &client_ids)?;
            match before {
                None => {
                    plan.changes
                        .push(change(Op::Create, "connection", &target, None, vec![]));
                    intents.push(Intent::CreateConnection {
                        org: existing.map_or_else(
                            || OrgRef::New(spec.name.clone()),
                            |o| OrgRef::Existing(o.id.clone()),
                        ),
                        name: cs.name.clone(),
                        kind: desired.kind,
                        config: desired.config,
                        client_secret: desired.secret,
                        state: desired.state,
                    });
                }
                Some(b) => {
                    let mut fields = desired.changed;
                    if b.state != desired.state {
                        fields.push("state".into());
                    }
                    if !fields.is_empty() {
                        plan.changes.push(change(
                            Op::Update,
                            "connection",
                            &target,
                            Some(b.id.to_string()),
                            fields,
                        ));
                        intents.push(Intent::UpdateConnection {
                            before: b.clone(),
                            config: desired.config,
                            client_secret: desired.secret,
                            state: desired.state,
                        });
                    }
                }
            }
        }
        // Connections of a listed organization that the file leaves out.
        for c in current
            .iter()
            .filter(|c| !spec.connections.iter().any(|s| s.name == c.name))
        {
            let target = format!("{}/{}", spec.name, c.name);
            if cfg.prune && c.state != ConnectionState::Inactive {
                plan.changes.push(change(
                    Op::Update,
                    "connection",
                    &target,
                    Some(c.id.to_string()),
                    vec!["state".into()],
                ));
                intents.push(Intent::UpdateConnection {
                    before: (*c).clone(),
                    config: c.config.clone(),
                    client_secret: None,
                    state: ConnectionState::Inactive,
                });
            } else if !cfg.prune {
                plan.unmanaged.push(format!("connection {target}"));
            }
        }
    }
    for o in cur
        .orgs
        .iter()
        .filter(|o| !cfg.organizations.iter().any(|s| s.name == o.name))
    {
        // Organizations are never deleted by omission, even with prune: a tenant's users,
        // profiles and history go with it (decision 0011).
        plan.unmanaged.push(format!("organization {}", o.name));
    }
    Ok(())
}

struct DesiredConnection {
    kind: ConnectionType,
    config: Value,
    secret: Option<String>,
    state: ConnectionState,
    /// Against the current connection, if there is one.
    changed: Vec<String>,
}

fn desired_connection(
    app: &App,
    p: &str,
    cs: &ConnectionSpec,
    before: Option<&Connection>,
    client_ids: &BTreeSet<&str>,
) -> ApiResult<DesiredConnection> {
    let kind = ConnectionType::parse(&cs.kind)
        .ok_or_else(|| bad(&format!("{p}.type"), "must be saml or oidc"))?;
    let state = ConnectionState::parse(&cs.state)
        .ok_or_else(|| bad(&format!("{p}.state"), "must be draft, active or inactive"))?;
    if let Some(b) = before
        && b.kind != kind
    {
        return Err(bad(
            &format!("{p}.type"),
            format!(
                "the connection is {}; a type never changes (create one under another name)",
                b.kind.as_str()
            ),
        ));
    }
    let mut changed = Vec::new();
    let (config, secret) = match kind {
        ConnectionType::Oidc => {
            let v = cs.oidc.clone().unwrap_or(Value::Null);
            crate::admin::connections::check_upstream(&v).map_err(at(&format!("{p}.oidc")))?;
            let v =
                normalized_oidc(&v).ok_or_else(|| bad(&format!("{p}.oidc"), "invalid settings"))?;
            let secret = cs.client_secret.clone().filter(|s| !s.is_empty());
            match before {
                None if secret.is_none() => {
                    return Err(bad(
                        &format!("{p}.client_secret"),
                        "a new oidc connection needs its client_secret (it is never exported)",
                    ));
                }
                None => {}
                Some(b) => {
                    if normalized_oidc(&b.config).as_ref() != Some(&v) {
                        changed.push("oidc".into());
                    }
                    if let Some(s) = &secret
                        && current_secret(app, b).as_deref() != Some(s.as_str())
                    {
                        changed.push("client_secret".into());
                    }
                }
            }
            (v, secret)
        }
        ConnectionType::Saml => {
            let mut settings = cs.saml.clone().unwrap_or_else(|| json!({}));
            let obj = settings
                .as_object_mut()
                .ok_or_else(|| bad(&format!("{p}.saml"), "must be a table"))?;
            let idp_in = obj.remove("idp");
            crate::oauth::saml::check_saml_settings(obj).map_err(at(&format!("{p}.saml")))?;
            if let Some(id) = obj
                .get("idp_initiated")
                .and_then(|t| t.get("client_id"))
                .and_then(Value::as_str)
                && !client_ids.contains(id)
            {
                return Err(bad(
                    &format!("{p}.saml.idp_initiated.client_id"),
                    format!("no client {id} exists in this environment (a dangling reference)"),
                ));
            }
            let mut config = crate::oauth::saml::saml_defaults();
            for (k, v) in obj.iter() {
                config[k] = v.clone();
            }
            let idp = match idp_in {
                None => None,
                Some(i) => Some(idp_of(&format!("{p}.saml.idp"), &i)?),
            };
            if let Some(b) = before {
                if saml_settings(&b.config) != config {
                    changed.push("saml".into());
                }
                let old = b.config.get("idp").map(idp_identity);
                if old != idp.as_ref().map(idp_identity) {
                    changed.push("saml.idp".into());
                }
                // Keep what the environment generated: its SP keys, and fetched metadata's origin
                // when the IdP side is unchanged.
                if let Some(sp) = b.config.get("sp") {
                    config["sp"] = sp.clone();
                }
                if !changed.iter().any(|c| c == "saml.idp")
                    && let Some(m) = b.config.get("metadata_url")
                {
                    config["metadata_url"] = m.clone();
                }
                if let (Some(bi), Some(_)) = (b.config.get("idp"), &idp)
                    && !changed.iter().any(|c| c == "saml.idp")
                {
                    config["idp"] = bi.clone();
                }
            }
            if let Some(i) = idp
                && config.get("idp").is_none()
            {
                config["idp"] = i;
            }
            (config, None)
        }
    };
    if state == ConnectionState::Active {
        let incomplete = match kind {
            ConnectionType::Oidc => None,
            ConnectionType::Saml => (!crate::oauth::saml::idp_configured(&config)).then_some("the IdP is not configured: set saml.idp (entity_id, sso_url, certificates_pem, or metadata_xml)"),
        };
        if let Some(why) = incomplete {
            return Err(bad(
                &format!("{p}.state"),
                format!("cannot be active: {why}"),
            ));
        }
    }
    Ok(DesiredConnection {
        kind,
        config,
        secret,
        state,
        changed,
    })
}

/// The IdP side from the file: `{ entity_id, sso_url, certificates_pem }` or `{ metadata_xml }`.
fn idp_of(p: &str, v: &Value) -> ApiResult<Value> {
    if let Some(xml) = v.get("metadata_xml").and_then(Value::as_str) {
        if v.as_object().is_some_and(|o| o.len() != 1) {
            return Err(bad(
                p,
                "metadata_xml stands alone (the metadata names the rest)",
            ));
        }
        let md = portcullis_saml::parse_idp_metadata(xml).map_err(|e| {
            bad(
                &format!("{p}.metadata_xml"),
                format!("{}: {}", e.code.as_str(), e.message),
            )
        })?;
        let sso = md.sso_redirect_url.clone().ok_or_else(|| {
            bad(
                &format!("{p}.metadata_xml"),
                "no SingleSignOnService with the HTTP-Redirect binding",
            )
        })?;
        let certs: Vec<Vec<u8>> = md.certificates.iter().map(|c| c.der.clone()).collect();
        return crate::oauth::saml::idp_json(&md.entity_id, &sso, &certs, &md.name_id_formats)
            .map_err(at(p));
    }
    if let Some(k) = v.as_object().and_then(|o| {
        o.keys()
            .find(|k| !["entity_id", "sso_url", "certificates_pem"].contains(&k.as_str()))
    }) {
        return Err(bad(
            p,
            format!("unknown key {k:?} (entity_id, sso_url, certificates_pem, or metadata_xml)"),
        ));
    }
    crate::oauth::saml::manual_idp(v).map_err(at(p))
}

/// The upstream client secret a connection holds now (to tell whether the file changes it).
fn current_secret(app: &App, c: &Connection) -> Option<String> {
    let v = crate::oauth::sso::secrets(app, c).ok()?;
    v["client_secret"].as_str().map(str::to_owned)
}

fn create_request(s: &portcullis_bundle::config::ClientSpec) -> CreateClient {
    CreateClient {
        name: s.name.clone(),
        allow_cross_environment_uris: false,
        secret_expires_in_seconds: None,
        kind: s.kind.clone(),
        token_endpoint_auth_method: s.token_endpoint_auth_method.clone(),
        redirect_uris: s.redirect_uris.clone(),
        post_logout_redirect_uris: s.post_logout_redirect_uris.clone(),
        grant_types: s.grant_types.clone(),
        scopes: s.scopes.clone(),
        jwks: s.jwks.clone(),
        token_exchange: s.token_exchange.as_ref().map(|x| TokenExchangeView {
            audiences: x.audiences.clone(),
            scopes: x.scopes.clone(),
        }),
        access_token_ttl_seconds: s.access_token_ttl_seconds,
        id_token_ttl_seconds: s.id_token_ttl_seconds,
        refresh_idle_ttl_seconds: s.refresh_idle_ttl_seconds,
        refresh_absolute_ttl_seconds: s.refresh_absolute_ttl_seconds,
    }
}

/// The fields of a client that a file describes, by name (for comparing).
fn client_fields(c: &Client) -> Vec<(&'static str, Value)> {
    vec![
        ("kind", json!(c.kind)),
        ("token_endpoint_auth_method", json!(c.auth_method)),
        ("redirect_uris", json!(c.redirect_uris)),
        (
            "post_logout_redirect_uris",
            json!(c.post_logout_redirect_uris),
        ),
        (
            "grant_types",
            json!(c.grant_types.iter().map(|g| g.as_str()).collect::<Vec<_>>()),
        ),
        ("scopes", json!(c.scopes)),
        ("jwks", json!(c.jwks)),
        ("token_exchange", json!(c.exchange)),
        ("lifetimes", json!(c.lifetimes)),
    ]
}

async fn clients(
    app: &App,
    env: &Environment,
    cur: &Current,
    cfg: &EnvConfig,
    plan: &mut Plan,
    intents: &mut Vec<Intent>,
) -> ApiResult<()> {
    let now = app.now();
    // Every environment's clients, read once for the whole file (callbacks are not shared).
    let all_clients = app.store.all_clients().await?;
    for (i, spec) in cfg.clients.iter().enumerate() {
        let p = format!("clients[{i}]");
        let mut same = cur.clients.iter().filter(|c| c.name == spec.name);
        let before = same.next();
        if same.next().is_some() {
            return Err(bad(
                &p,
                format!(
                    "the environment has two clients named {:?}: rename one",
                    spec.name
                ),
            ));
        }
        let id = before.map_or_else(|| app.store.new_id(now), |b| b.id.clone());
        let desired =
            crate::admin::clients::new_client(create_request(spec), id, env.id.clone(), now)
                .map_err(|e| bad(&p, e))?;
        crate::admin::clients::uris_not_in(&all_clients, &desired).map_err(at(&p))?;
        match before {
            None => {
                plan.changes
                    .push(change(Op::Create, "client", &spec.name, None, vec![]));
                intents.push(Intent::CreateClient(Box::new(desired)));
            }
            Some(b) => {
                let old = client_fields(b);
                let fields: Vec<String> = client_fields(&desired)
                    .into_iter()
                    .zip(old)
                    .filter(|(n, o)| n.1 != o.1)
                    .map(|(n, _)| n.0.to_owned())
                    .collect();
                if !fields.is_empty() {
                    let mut after = desired;
                    after.created_at = b.created_at;
                    after.secret_digest = b.secret_digest.clone();
                    after.secret_created_at = b.secret_created_at;
                    after.previous_secret_digest = b.previous_secret_digest.clone();
                    after.previous_secret_expires_at = b.previous_secret_expires_at;
                    plan.changes.push(change(
                        Op::Update,
                        "client",
                        &spec.name,
                        Some(b.id.to_string()),
                        fields,
                    ));
                    intents.push(Intent::UpdateClient {
                        before: Box::new(b.clone()),
                        after: Box::new(after),
                    });
                }
            }
        }
    }
    for c in cur
        .clients
        .iter()
        .filter(|c| !cfg.clients.iter().any(|s| s.name == c.name))
    {
        if cfg.prune {
            plan.changes.push(change(
                Op::Delete,
                "client",
                &c.name,
                Some(c.id.to_string()),
                vec![],
            ));
            intents.push(Intent::DeleteClient(Box::new(c.clone())));
        } else {
            plan.unmanaged.push(format!("client {}", c.name));
        }
    }
    Ok(())
}

async fn webhooks(
    app: &App,
    env: &Environment,
    cur: &Current,
    cfg: &EnvConfig,
    policy: &Policy,
    plan: &mut Plan,
    intents: &mut Vec<Intent>,
) -> ApiResult<()> {
    // Read once for the whole file, not once per endpoint.
    let elsewhere = crate::admin::webhooks::urls_of_other_environments(app, &env.id).await?;
    for (i, spec) in cfg.webhook_endpoints.iter().enumerate() {
        let p = format!("webhook_endpoints[{i}]");
        check_filter(&spec.event_types).map_err(|e| bad(&format!("{p}.event_types"), e))?;
        crate::admin::webhooks::check_description(&spec.description).map_err(at(&p))?;
        let headers = match &spec.headers {
            Some(h) => crate::admin::webhooks::headers_of(
                h.iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect(),
            )
            .map_err(at(&format!("{p}.headers")))?,
            None => Vec::new(),
        };
        crate::admin::webhooks::check_url_against(app, policy, &spec.url)
            .await
            .map_err(at(&format!("{p}.url")))?;
        crate::admin::webhooks::url_not_in(&elsewhere, &spec.url)
            .map_err(at(&format!("{p}.url")))?;
        let mut same = cur.hooks.iter().filter(|h| h.url == spec.url);
        let before = same.next();
        if same.next().is_some() {
            return Err(bad(
                &p,
                format!(
                    "the environment has two endpoints for {}: delete one",
                    spec.url
                ),
            ));
        }
        match before {
            None => {
                plan.changes.push(change(
                    Op::Create,
                    "webhook_endpoint",
                    &spec.url,
                    None,
                    vec![],
                ));
                intents.push(Intent::CreateWebhook {
                    spec: spec.clone(),
                    headers,
                });
            }
            Some(b) => {
                let mut fields = Vec::new();
                if b.description != spec.description {
                    fields.push("description".to_owned());
                }
                if b.event_types != spec.event_types {
                    fields.push("event_types".into());
                }
                if b.enabled != spec.enabled {
                    fields.push("enabled".into());
                }
                if spec.headers.is_some() && b.headers != headers {
                    fields.push("headers".into());
                }
                if !fields.is_empty() {
                    plan.changes.push(change(
                        Op::Update,
                        "webhook_endpoint",
                        &spec.url,
                        Some(b.id.to_string()),
                        fields,
                    ));
                    let headers = if spec.headers.is_some() {
                        headers
                    } else {
                        b.headers.clone()
                    };
                    intents.push(Intent::UpdateWebhook {
                        before: Box::new(b.clone()),
                        spec: spec.clone(),
                        headers,
                    });
                }
            }
        }
    }
    for h in cur
        .hooks
        .iter()
        .filter(|h| !cfg.webhook_endpoints.iter().any(|s| s.url == h.url))
    {
        if cfg.prune {
            plan.changes.push(change(
                Op::Delete,
                "webhook_endpoint",
                &h.url,
                Some(h.id.to_string()),
                vec![],
            ));
            intents.push(Intent::DeleteWebhook(Box::new(h.clone())));
        } else {
            plan.unmanaged.push(format!("webhook_endpoint {}", h.url));
        }
    }
    Ok(())
}

async fn actions(
    app: &App,
    env: &Environment,
    cfg: &EnvConfig,
    plan: &mut Plan,
    intents: &mut Vec<Intent>,
) -> ApiResult<()> {
    for (i, id) in cfg.actions.revoke_api_keys.iter().enumerate() {
        let p = format!("actions.revoke_api_keys[{i}]");
        let dangling = || {
            bad(
                &p,
                format!(
                    "no environment API key {id} exists in this environment (a dangling reference)"
                ),
            )
        };
        let key_id = ApiKeyId::parse(id).ok_or_else(dangling)?;
        let key = match app.store.get_api_key(&key_id).await {
            Ok(k) => k,
            Err(portcullis_store::StoreError::NotFound(_)) => return Err(dangling()),
            Err(e) => return Err(e.into()),
        };
        if key.env_id.as_ref() != Some(&env.id)
            || key.kind != portcullis_core::model::ApiKeyKind::Environment
        {
            return Err(dangling());
        }
        if key.revoked_at.is_none() {
            plan.changes.push(change(
                Op::Action,
                "api_key",
                id,
                Some(id.clone()),
                vec!["revoke".into()],
            ));
            intents.push(Intent::RevokeApiKey(id.clone()));
        }
    }
    if cfg.actions.rotate_signing_key {
        plan.changes
            .push(change(Op::Action, "signing_key", "rotate", None, vec![]));
        intents.push(Intent::RotateSigningKey);
    }
    Ok(())
}
