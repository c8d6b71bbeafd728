//! A key scoped to environment A learns nothing about environment B: every B path is "not found",
//! exactly like an environment that does not exist. Environment (machine) keys never reach /admin.

use portcullis_testkit::server::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{assert_error, counts, create_env, create_org, str_of};

both_backends!(
    scoped_admin_key_gets_not_found_for_another_environment,
    environment_api_key_is_forbidden_on_admin,
);

async fn scoped_admin_key_gets_not_found_for_another_environment(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    let a = create_env(&s, "env-a", json!({})).await;
    let b = create_env(&s, "env-b", json!({})).await;
    create_org(&s, "env-a", "A Corp", &["a.example"]).await;
    let b_org = create_org(&s, "env-b", "B Corp", &["b.example"]).await;
    let (_, b_key) = s
        .admin_post(
            "/environments/env-b/api-keys",
            json!({ "name": "b-machine" }),
        )
        .await;
    let (status, scoped) = s
        .admin_post(
            "/environments/env-a/api-keys",
            json!({ "name": "a-admin", "kind": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{scoped}");
    assert_eq!(scoped["environment_id"], a["id"]);
    let key = str_of(&scoped, "secret").to_owned();
    let (_, all_keys) = s.admin_get("/api-keys").await;
    let bootstrap_id = all_keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "bootstrap")
        .map(|k| str_of(k, "id").to_owned())
        .unwrap();
    let call = |method: Method, path: String, body: Option<Value>| {
        let s = &s;
        let key = key.clone();
        async move {
            s.request(
                method,
                &format!("/admin/v1{path}"),
                Some(&key),
                body.as_ref(),
            )
            .await
        }
    };

    // Its own environment works.
    let (status, own) = call(Method::GET, "/environments/env-a".into(), None).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    let (status, org) = call(
        Method::POST,
        "/environments/env-a/organizations".into(),
        Some(json!({ "name": "Made by the scoped key" })),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{org}");
    let (_, listed) = call(Method::GET, "/environments".into(), None).await;
    let slugs: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| str_of(e, "slug"))
        .collect();
    assert_eq!(slugs, ["env-a"], "the list shows only its environment");
    let (_, keys) = call(Method::GET, "/api-keys".into(), None).await;
    assert!(
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["environment_id"] == a["id"]),
        "only its environment's keys: {keys}"
    );

    let before = counts(&s).await;
    let b_org_id = str_of(&b_org, "id");
    let a_org_path = format!("/environments/env-a/organizations/{b_org_id}");
    for b_ref in ["env-b", str_of(&b, "id")] {
        let org = format!("/environments/{b_ref}/organizations/{b_org_id}");
        let cases: Vec<(Method, String, Option<Value>)> = vec![
            (Method::GET, format!("/environments/{b_ref}"), None),
            (
                Method::PATCH,
                format!("/environments/{b_ref}"),
                Some(json!({ "name": "taken over" })),
            ),
            (
                Method::GET,
                format!("/environments/{b_ref}/organizations"),
                None,
            ),
            (
                Method::POST,
                format!("/environments/{b_ref}/organizations"),
                Some(json!({ "name": "Intruder" })),
            ),
            (Method::GET, org.clone(), None),
            (
                Method::PATCH,
                org.clone(),
                Some(json!({ "name": "renamed" })),
            ),
            (Method::DELETE, org, None),
            (Method::GET, format!("/environments/{b_ref}/keys"), None),
            (
                Method::POST,
                format!("/environments/{b_ref}/keys/rotate"),
                Some(json!({})),
            ),
            (Method::GET, format!("/environments/{b_ref}/events"), None),
            (Method::GET, format!("/environments/{b_ref}/audit"), None),
            (
                Method::GET,
                format!("/environments/{b_ref}/audit/verify"),
                None,
            ),
            (Method::GET, format!("/environments/{b_ref}/api-keys"), None),
            (
                Method::POST,
                format!("/environments/{b_ref}/api-keys"),
                Some(json!({ "name": "x", "kind": "admin" })),
            ),
            (
                Method::GET,
                format!("/api-keys/{}", str_of(&b_key, "id")),
                None,
            ),
            (
                Method::DELETE,
                format!("/api-keys/{}", str_of(&b_key, "id")),
                None,
            ),
            (Method::GET, format!("/api-keys/{bootstrap_id}"), None),
            (Method::DELETE, format!("/api-keys/{bootstrap_id}"), None),
            // B's organization through A's path.
            (Method::GET, a_org_path.clone(), None),
            (Method::DELETE, a_org_path.clone(), None),
        ];
        for (method, path, body) in cases {
            let got = call(method.clone(), path.clone(), body).await;
            assert_error(&got, StatusCode::NOT_FOUND, "not_found");
            // Indistinguishable from an environment that does not exist.
            let msg = got.1["message"].as_str().unwrap();
            assert!(
                !msg.contains("scope") && !msg.contains("forbidden"),
                "{method} {path}: {msg}"
            );
        }
    }
    let missing = call(Method::GET, "/environments/env-zzz".into(), None).await;
    assert_error(&missing, StatusCode::NOT_FOUND, "not_found");

    // Above environments: forbidden.
    for (method, path, body) in [
        (
            Method::POST,
            "/environments",
            Some(json!({ "slug": "env-c" })),
        ),
        (
            Method::POST,
            "/api-keys",
            Some(json!({ "name": "escalate" })),
        ),
        (Method::GET, "/audit", None),
        (Method::GET, "/audit/verify", None),
    ] {
        let got = call(method, path.into(), body).await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(counts(&s).await, before, "no refused call wrote anything");
    let (_, b_now) = s.admin_get("/environments/env-b").await;
    assert_eq!(b_now, b, "B is untouched");
}

async fn environment_api_key_is_forbidden_on_admin(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let (_, k) = s
        .admin_post("/environments/prod/api-keys", json!({ "name": "machine" }))
        .await;
    let secret = str_of(&k, "secret").to_owned();
    let before = counts(&s).await;
    for (method, path, body) in [
        (Method::GET, "/admin/v1/environments", None),
        (Method::GET, "/admin/v1/environments/prod", None),
        (Method::GET, "/admin/v1/environments/prod/events", None),
        (
            Method::POST,
            "/admin/v1/environments/prod/organizations",
            Some(json!({ "name": "X" })),
        ),
        (
            Method::POST,
            "/admin/v1/environments",
            Some(json!({ "slug": "mine" })),
        ),
    ] {
        let got = s.request(method, path, Some(&secret), body.as_ref()).await;
        assert_error(&got, StatusCode::FORBIDDEN, "forbidden");
    }
    assert_eq!(counts(&s).await, before);
}
