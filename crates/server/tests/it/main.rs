//! The server's integration tests: the real router served in-process by
//! `portcullis_testkit::server::TestServer`, driven over HTTP.
//!
//! Where storage matters a test runs on both backends: `both_backends!(name, …)` in a module
//! turns each `async fn name(backend: Backend)` into `module::sqlite::name` and
//! `module::postgres::name` (a fresh database on this process's throwaway cluster).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use portcullis_testkit::server::{Counts, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

macro_rules! both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(portcullis_testkit::server::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(portcullis_testkit::server::Backend::Postgres).await;
                }
            )+
        }
    };
}

mod admin;
mod audit_checkpoints;
mod bad_input;
mod browser;
mod clients_users;
mod config;
mod credentials;
mod discovery;
mod events_api;
mod governance;
mod health;
mod oauth;
mod restart;
mod rotation;
mod scoping;
mod sso_oidc;
mod sso_saml;
mod webhooks;

/// Creates an environment (with extra body fields) and returns its view.
pub async fn create_env(s: &TestServer, slug: &str, extra: Value) -> Value {
    let mut body = json!({ "slug": slug });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, v) = s.admin_post("/environments", body).await;
    assert_eq!(status, StatusCode::CREATED, "creating {slug}: {v}");
    v
}

/// Creates an organization in `env` and returns its view.
pub async fn create_org(s: &TestServer, env: &str, name: &str, domains: &[&str]) -> Value {
    let (status, v) = s
        .admin_post(
            &format!("/environments/{env}/organizations"),
            json!({ "name": name, "domains": domains }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "creating {name} in {env}: {v}");
    v
}

/// Asserts an error answer: its status, its stable `code`, and a non-empty `message`.
#[track_caller]
pub fn assert_error(got: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(got.0, status, "{}", got.1);
    assert_eq!(got.1["code"], code, "{}", got.1);
    assert!(
        got.1["message"].as_str().is_some_and(|m| !m.is_empty()),
        "an error carries a message: {}",
        got.1
    );
}

pub async fn counts(s: &TestServer) -> Counts {
    s.counts().await.expect("counting records")
}

/// The string at `key` of a JSON object.
#[track_caller]
pub fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {v}"))
}

/// The public JWKS of `env`, fetched over HTTP without credentials.
pub async fn jwks(s: &TestServer, env: &str) -> Value {
    let res = s
        .client()
        .get(s.at(&format!("/e/{env}/jwks.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-type"],
        "application/jwk-set+json",
        "JWKS media type (RFC 7517 §8.5.1)"
    );
    res.json().await.unwrap()
}

/// The `kid`s of a JWKS, sorted.
pub fn kids(jwks: &Value) -> Vec<String> {
    let mut k: Vec<String> = jwks["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|k| str_of(k, "kid").to_owned())
        .collect();
    k.sort();
    k
}

/// The JWK with `kid` in a JWKS.
pub fn jwk<'a>(jwks: &'a Value, kid: &str) -> Option<&'a Value> {
    jwks["keys"].as_array()?.iter().find(|k| k["kid"] == kid)
}
