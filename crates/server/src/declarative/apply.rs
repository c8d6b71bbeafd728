//! Executes a checked plan in one transaction: every change, its events and audit records, the
//! summary record (with the file's digest) and, for a bundle, its import row commit together or
//! not at all.
//!
//! Invariants:
//! - Everything slow or random (SP key pairs, secrets, sealing) is made before the transaction
//!   begins, so the write transaction (the single writer on SQLite) is held only for writes.
//! - Each store write checks it changes what the plan saw (`updated_at`, policy version): a
//!   concurrent change fails the whole apply with 409 and nothing is written.
//! - New secrets (client secrets, webhook signing secrets) are returned once, in the result.

use portcullis_bundle::plan::Plan;
use portcullis_core::audit::NewAudit;
use portcullis_core::event::EventType;
use portcullis_core::ids::{ConnectionId, OrgId};
use portcullis_core::model::{Environment, KeyState};
use portcullis_core::sso::{Connection, ConnectionState, ConnectionType};
use portcullis_core::webhook::WebhookEndpoint;
use portcullis_crypto::SystemRandom;
use portcullis_store::{ConnectionChange, NewOrganization, OrganizationPatch, PolicyChange};
use serde_json::{Value, json};

use super::diff::{Intent, OrgRef};
use crate::App;
use crate::error::{ApiError, ApiResult};

/// A bundle being applied: recorded with the changes.
pub struct BundleImport {
    pub sequence: u64,
    pub digest: String,
    pub key_id: String,
}

/// What an apply did: the plan it executed and what it created, with secrets shown once.
#[derive(Debug, serde::Serialize)]
pub struct Applied {
    pub plan: Plan,
    pub created: Vec<Value>,
}

/// An intent with everything generated ahead of the transaction.
enum Ready {
    Plain(Intent),
    Connection(Box<Connection>),
    ConnectionUpdate {
        before: Box<Connection>,
        after: Box<Connection>,
    },
    Client(
        Box<portcullis_core::oauth::Client>,
        Option<portcullis_core::Secret>,
    ),
    ClientUpdate {
        before: Box<portcullis_core::oauth::Client>,
        after: Box<portcullis_core::oauth::Client>,
        secret: Option<portcullis_core::Secret>,
    },
    Webhook(Box<WebhookEndpoint>, portcullis_core::Secret),
    SigningKey(Box<portcullis_store::NewSigningKey>),
}

fn sealed_secret(app: &App, id: &ConnectionId, env: &str, secret: &str) -> ApiResult<Vec<u8>> {
    crate::admin::connections::seal(app, id, env, &json!({ "client_secret": secret }))
}

/// SP key pairs for `n` new SAML connections (two RSA-2048 keys each: ~0.1 s), made on every
/// core off the async runtime.
async fn sp_key_pairs(
    app: &App,
    env: &Environment,
    n: usize,
    now: portcullis_core::Timestamp,
) -> ApiResult<Vec<(ConnectionId, Value, Vec<u8>)>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let ids: Vec<ConnectionId> = (0..n).map(|_| app.store.new_id(now)).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, |p| p.get())
        .min(n);
    let (app, env_id) = (app.clone(), env.id.to_string());
    tokio::task::spawn_blocking(move || {
        let chunk = n.div_ceil(threads);
        std::thread::scope(|scope| {
            let workers: Vec<_> = ids
                .chunks(chunk)
                .map(|part| {
                    let (app, env_id) = (&app, &env_id);
                    scope.spawn(move || {
                        part.iter()
                            .map(|id| {
                                let (sp, sealed) =
                                    crate::oauth::saml::sp_keys(app, id, env_id, now)?;
                                Ok((id.clone(), sp, sealed))
                            })
                            .collect::<ApiResult<Vec<_>>>()
                    })
                })
                .collect();
            let mut out = Vec::with_capacity(n);
            for w in workers {
                out.extend(
                    w.join()
                        .map_err(|_| ApiError::internal("sp keys", "a key worker failed"))??,
                );
            }
            Ok(out)
        })
    })
    .await
    .map_err(|e| ApiError::internal("sp keys", e))?
}

async fn prepare(app: &App, env: &Environment, intents: Vec<Intent>) -> ApiResult<Vec<Ready>> {
    let now = app.now();
    let saml = intents
        .iter()
        .filter(|i| {
            matches!(
                i,
                Intent::CreateConnection {
                    kind: ConnectionType::Saml,
                    ..
                }
            )
        })
        .count();
    let mut sp_keys = sp_key_pairs(app, env, saml, now).await?.into_iter();
    let mut out = Vec::with_capacity(intents.len());
    for i in intents {
        out.push(match i {
            Intent::CreateConnection {
                org,
                name,
                kind,
                mut config,
                client_secret,
                state,
            } => {
                let (id, sealed) = match kind {
                    ConnectionType::Saml => {
                        let (id, sp, sealed) = sp_keys
                            .next()
                            .ok_or_else(|| ApiError::internal("sp keys", "one key pair short"))?;
                        config["sp"] = sp;
                        (id, sealed)
                    }
                    ConnectionType::Oidc => {
                        let id: ConnectionId = app.store.new_id(now);
                        let sealed = sealed_secret(
                            app,
                            &id,
                            env.id.as_str(),
                            client_secret.as_deref().unwrap_or_default(),
                        )?;
                        (id, sealed)
                    }
                };
                // The organization's ID is known only once it is created: a placeholder for now.
                let org_id = match org {
                    OrgRef::Existing(o) => o,
                    OrgRef::New(n) => OrgId::from_stored(format!("new:{n}")),
                };
                Ready::Connection(Box::new(Connection {
                    id,
                    env_id: env.id.clone(),
                    org_id,
                    kind,
                    name,
                    state,
                    config,
                    sealed_secrets: Some(sealed),
                    created_at: now,
                    updated_at: now,
                }))
            }
            Intent::UpdateConnection {
                before,
                config,
                client_secret,
                state,
            } => {
                let mut after = before.clone();
                after.config = config;
                after.state = state;
                if let Some(s) = client_secret {
                    after.sealed_secrets =
                        Some(sealed_secret(app, &before.id, env.id.as_str(), &s)?);
                }
                Ready::ConnectionUpdate {
                    before: Box::new(before),
                    after: Box::new(after),
                }
            }
            Intent::CreateClient(mut c) => {
                let secret = crate::admin::clients::settle_secret(&mut c, &SystemRandom, now);
                Ready::Client(c, secret)
            }
            Intent::UpdateClient { before, mut after } => {
                let secret = crate::admin::clients::settle_secret(&mut after, &SystemRandom, now);
                after.updated_at = now;
                Ready::ClientUpdate {
                    before,
                    after,
                    secret,
                }
            }
            Intent::CreateWebhook { spec, headers } => {
                let (e, secret) = crate::admin::webhooks::new_endpoint(
                    app,
                    &env.id,
                    crate::admin::webhooks::NewEndpoint {
                        url: spec.url,
                        description: spec.description,
                        event_types: spec.event_types,
                        enabled: spec.enabled,
                        headers,
                    },
                    now,
                )?;
                Ready::Webhook(Box::new(e), secret)
            }
            Intent::RotateSigningKey => Ready::SigningKey(Box::new(
                app.keys
                    .generate(&env.id, env.signing_alg, KeyState::Next, now)
                    .map_err(|e| ApiError::internal("signing key", e))?,
            )),
            other => Ready::Plain(other),
        });
    }
    Ok(out)
}

/// Applies `intents` (from [`super::diff::diff`]) for `actor`; `file_digest` names the file in
/// the summary audit record.
pub async fn apply(
    app: &App,
    env: &Environment,
    actor: &str,
    plan: Plan,
    intents: Vec<Intent>,
    file_digest: &str,
    bundle: Option<&BundleImport>,
) -> ApiResult<Applied> {
    let ready = prepare(app, env, intents).await?;
    let now = app.now();
    let store = &app.store;
    let mut created = Vec::new();
    let mut new_orgs: std::collections::BTreeMap<String, OrgId> = Default::default();
    let mut rotated = false;
    let mut tx = store.begin().await?;
    for r in ready {
        match r {
            Ready::Plain(Intent::SetPublishers(keys)) => {
                store
                    .set_bundle_publishers_in(&mut tx, actor, now, &env.id, &keys)
                    .await?;
            }
            Ready::Plain(Intent::ReplacePolicy {
                expected_version,
                policy,
                diff,
            }) => {
                let doc = serde_json::to_string(&portcullis_egress::policy::Policy {
                    version: 0,
                    ..policy
                })
                .map_err(|e| ApiError::internal("policy", e))?;
                let ca = store.egress_policy(&env.id).await?.ca_bundle;
                store
                    .replace_egress_policy_in(
                        &mut tx,
                        actor,
                        now,
                        &env.id,
                        PolicyChange {
                            expected_version,
                            document: &doc,
                            ca_bundle: ca.as_deref(),
                            diff,
                        },
                    )
                    .await?;
            }
            Ready::Plain(Intent::CreateOrg { name, domains }) => {
                let id: OrgId = store.new_id(now);
                let o = store
                    .create_organization_in(
                        &mut tx,
                        actor,
                        now,
                        &env.id,
                        NewOrganization {
                            id,
                            name: name.clone(),
                            domains,
                        },
                    )
                    .await?;
                created.push(json!({ "kind": "organization", "target": name, "id": o.id }));
                new_orgs.insert(name, o.id);
            }
            Ready::Plain(Intent::UpdateOrgDomains { before, domains }) => {
                store
                    .update_organization_in(
                        &mut tx,
                        actor,
                        now,
                        &env.id,
                        &before.id,
                        OrganizationPatch {
                            name: None,
                            domains: Some(domains),
                        },
                    )
                    .await?;
            }
            Ready::Connection(mut c) => {
                if let Some(name) = c.org_id.as_str().strip_prefix("new:") {
                    c.org_id = new_orgs.get(name).cloned().ok_or_else(|| {
                        ApiError::internal("apply", format!("organization {name} not created"))
                    })?;
                }
                let target = c.name.clone();
                let state = c.state;
                let draft = Connection {
                    state: ConnectionState::Draft,
                    ..*c
                };
                let made = store
                    .create_connection_in(&mut tx, actor, now, draft)
                    .await?;
                if state != ConnectionState::Draft {
                    let after = Connection {
                        state,
                        ..made.clone()
                    };
                    store
                        .update_connection_in(
                            &mut tx,
                            actor,
                            now,
                            &made,
                            after,
                            crate::admin::connections::state_change(state, ConnectionState::Draft),
                        )
                        .await?;
                }
                created.push(json!({ "kind": "connection", "target": target, "id": made.id }));
            }
            Ready::ConnectionUpdate { before, after } => {
                let change = if before.state != after.state
                    && before.config == after.config
                    && before.sealed_secrets == after.sealed_secrets
                {
                    crate::admin::connections::state_change(after.state, before.state)
                } else {
                    ConnectionChange {
                        kind: EventType::ConnectionUpdated,
                        action: "connection.update",
                        detail: json!({ "by": "config", "state": after.state, "previous_state": before.state }),
                    }
                };
                store
                    .update_connection_in(&mut tx, actor, now, &before, *after, change)
                    .await?;
            }
            Ready::Client(c, secret) => {
                let c = store.create_client_in(&mut tx, actor, now, *c).await?;
                created.push(json!({ "kind": "client", "target": c.name, "id": c.id, "client_secret": secret.map(|s| s.expose().to_owned()) }));
            }
            Ready::ClientUpdate {
                before,
                after,
                secret,
            } => {
                let c = store
                    .update_client_in(&mut tx, actor, now, &before, *after, "client.update")
                    .await?;
                if let Some(s) = secret {
                    created.push(json!({ "kind": "client_secret", "target": c.name, "id": c.id, "client_secret": s.expose() }));
                }
            }
            Ready::Plain(Intent::DeleteClient(c)) => {
                store
                    .delete_client_in(&mut tx, actor, now, &env.id, &c.id)
                    .await?;
            }
            Ready::Webhook(e, secret) => {
                let e = store
                    .create_webhook_endpoint_in(&mut tx, actor, now, *e)
                    .await?;
                created.push(json!({ "kind": "webhook_endpoint", "target": e.url, "id": e.id, "secret": secret.expose() }));
            }
            Ready::Plain(Intent::UpdateWebhook {
                before,
                spec,
                headers,
            }) => {
                let after = WebhookEndpoint {
                    description: spec.description,
                    event_types: spec.event_types,
                    enabled: spec.enabled,
                    headers,
                    ..(*before).clone()
                };
                store
                    .update_webhook_endpoint_in(
                        &mut tx,
                        actor,
                        now,
                        &before,
                        after,
                        EventType::WebhookEndpointUpdated,
                    )
                    .await?;
            }
            Ready::Plain(Intent::DeleteWebhook(e)) => {
                store
                    .delete_webhook_endpoint_in(&mut tx, actor, now, &e)
                    .await?;
            }
            Ready::Plain(Intent::RevokeApiKey(id)) => {
                store
                    .revoke_env_api_key_in(&mut tx, actor, now, &env.id, &id)
                    .await?;
            }
            Ready::SigningKey(k) => {
                store
                    .rotate_signing_keys_in(&mut tx, actor, now, &env.id, *k)
                    .await?;
                rotated = true;
            }
            Ready::Plain(other) => {
                return Err(ApiError::internal(
                    "apply",
                    format!("unprepared step {other:?}"),
                ));
            }
        }
    }
    let summary = json!({
        "file_sha256": file_digest,
        "created": plan.count(portcullis_bundle::Op::Create), "updated": plan.count(portcullis_bundle::Op::Update),
        "deleted": plan.count(portcullis_bundle::Op::Delete), "actions": plan.count(portcullis_bundle::Op::Action),
        "bundle": bundle.map(|b| json!({ "sequence": b.sequence, "sha256": b.digest, "publisher": b.key_id })),
    });
    if let Some(b) = bundle {
        store
            .record_bundle_import_in(&mut tx, &env.id, b.sequence, &b.digest, &b.key_id, now)
            .await?;
    }
    let (action, target) = match bundle {
        Some(b) => ("bundle.apply", b.digest.clone()),
        None => ("config.apply", file_digest.to_owned()),
    };
    store
        .audit_in(
            &mut tx,
            &env.id,
            now,
            NewAudit::success(actor, action, &target, summary),
        )
        .await?;
    tx.commit()
        .await
        .map_err(portcullis_store::StoreError::from)?;
    if rotated {
        app.keys.forget(&env.id);
    }
    Ok(Applied { plan, created })
}
