//! The OpenAPI document, generated from the handler annotations and view types.

use axum::Json;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{api_keys, clients, envs, logs, orgs, signing, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "Portcullis admin API", description = "Administration of environments, organizations, local users, OAuth clients, keys and records. Authenticate with `Authorization: Bearer <admin key>`."),
    paths(
        envs::environment_create, envs::environments_list, envs::environment_get, envs::environment_update,
        orgs::organization_create, orgs::organizations_list, orgs::organization_get, orgs::organization_update, orgs::organization_delete,
        users::user_create, users::users_list, users::user_get, users::user_update,
        clients::client_create, clients::clients_list, clients::client_get, clients::client_update, clients::client_delete,
        clients::client_secret_rotate,
        api_keys::global_api_key_create, api_keys::env_api_key_create, api_keys::api_keys_list, api_keys::env_api_keys_list,
        api_keys::api_key_get, api_keys::api_key_revoke,
        signing::signing_keys_list, signing::signing_keys_rotate,
        logs::events_list, logs::env_audit_list, logs::env_audit_verify,
        logs::env_audit_export, logs::global_audit_list, logs::global_audit_verify,
    ),
    modifiers(&BearerAuth),
    security(("admin_key" = [])),
)]
pub struct AdminApi;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = doc.components.as_mut() {
            c.add_security_scheme(
                "admin_key",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

pub async fn openapi_get() -> Json<utoipa::openapi::OpenApi> {
    let mut doc = AdminApi::openapi();
    doc.merge(super::governance::GovernanceApi::openapi());
    doc.merge(super::connections::ConnectionsApi::openapi());
    doc.merge(super::webhooks::WebhooksApi::openapi());
    doc.merge(super::export::ExportApi::openapi());
    doc.merge(crate::declarative::ConfigApi::openapi());
    doc.merge(super::credentials::CredentialsApi::openapi());
    doc.merge(super::checkpoints::CheckpointsApi::openapi());
    Json(doc)
}
