//! The admin API under `/admin/v1`: JSON in and out, bearer admin key, OpenAPI at
//! `/admin/v1/openapi.json` generated from these handlers.

mod api_keys;
mod checkpoints;
mod client_rules;
pub(crate) mod clients;
pub(crate) mod connections;
mod credentials;
pub(crate) mod envs;
mod export;
mod governance;
mod logs;
mod openapi;
pub(crate) mod orgs;
mod signing;
mod users;
pub mod views;
pub(crate) mod webhooks;

use axum::Router;
use axum::routing::{get, post};

use crate::App;

pub fn routes() -> Router<App> {
    Router::new()
        .merge(governance::routes())
        .merge(connections::routes())
        .merge(webhooks::routes())
        .merge(export::routes())
        .merge(crate::declarative::routes())
        .merge(credentials::routes())
        .merge(checkpoints::routes())
        .route("/openapi.json", get(openapi::openapi_get))
        .route(
            "/environments",
            get(envs::environments_list).post(envs::environment_create),
        )
        .route(
            "/environments/{env}",
            get(envs::environment_get).patch(envs::environment_update),
        )
        .route(
            "/environments/{env}/organizations",
            get(orgs::organizations_list).post(orgs::organization_create),
        )
        .route(
            "/environments/{env}/organizations/{org}",
            get(orgs::organization_get)
                .patch(orgs::organization_update)
                .delete(orgs::organization_delete),
        )
        .route(
            "/environments/{env}/organizations/{org}/users",
            get(users::users_list).post(users::user_create),
        )
        .route(
            "/environments/{env}/organizations/{org}/users/{user}",
            get(users::user_get).patch(users::user_update),
        )
        .route(
            "/environments/{env}/clients",
            get(clients::clients_list).post(clients::client_create),
        )
        .route(
            "/environments/{env}/clients/{client}",
            get(clients::client_get)
                .patch(clients::client_update)
                .delete(clients::client_delete),
        )
        .route(
            "/environments/{env}/clients/{client}/secret",
            post(clients::client_secret_rotate),
        )
        .route(
            "/environments/{env}/api-keys",
            get(api_keys::env_api_keys_list).post(api_keys::env_api_key_create),
        )
        .route(
            "/api-keys",
            get(api_keys::api_keys_list).post(api_keys::global_api_key_create),
        )
        .route(
            "/api-keys/{key}",
            get(api_keys::api_key_get).delete(api_keys::api_key_revoke),
        )
        .route("/environments/{env}/keys", get(signing::signing_keys_list))
        .route(
            "/environments/{env}/keys/rotate",
            post(signing::signing_keys_rotate),
        )
        .route("/environments/{env}/events", get(logs::events_list))
        .route("/environments/{env}/audit", get(logs::env_audit_list))
        .route(
            "/environments/{env}/audit/verify",
            get(logs::env_audit_verify),
        )
        .route(
            "/environments/{env}/audit/export",
            get(logs::env_audit_export),
        )
        .route("/audit", get(logs::global_audit_list))
        .route("/audit/verify", get(logs::global_audit_verify))
}

pub(crate) use connections::load as load_connection;
pub use connections::secrets_aad as connection_secrets_aad;

/// The admin view of a connection.
pub(crate) fn connection_view(c: &portcullis_core::sso::Connection) -> connections::ConnectionView {
    connections::ConnectionView::from(c)
}
pub(crate) use envs::create_environment;
