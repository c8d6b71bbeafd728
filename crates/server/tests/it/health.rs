//! `/healthz`, `/readyz`, `/metrics` and the OpenAPI document.

use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::assert_error;

both_backends!(
    health_readiness_and_metrics,
    lost_database_is_unavailable_not_an_internal_error,
);

async fn health_readiness_and_metrics(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    let get = |path: &'static str| {
        let s = &s;
        async move { s.client().get(s.at(path)).send().await.unwrap() }
    };
    let res = get("/healthz").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.json::<Value>().await.unwrap()["status"], "ok");

    let res = get("/readyz").await;
    assert_eq!(res.status(), StatusCode::OK);
    let ready: Value = res.json().await.unwrap();
    assert_eq!(ready["migrations_current"], true, "{ready}");
    assert_eq!(ready["storage"], true, "{ready}");
    assert_eq!(ready["backend"], backend.as_str(), "{ready}");

    // A request of each outcome, then the counters by route template and status.
    let (status, _) = s.admin_get("/environments").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.admin_get("/environments/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Any token is a valid HTTP method; methods no route serves share one label, so that a
    // client cannot mint metric series without bound.
    for m in ["FROBNICATE", "X-ANY"] {
        let res = s
            .client()
            .request(
                reqwest::Method::from_bytes(m.as_bytes()).unwrap(),
                s.at("/healthz"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED, "{m}");
    }
    let res = get("/metrics").await;
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = res.text().await.unwrap();
    let has = |needle: &[&str]| {
        text.lines().any(|l| {
            l.starts_with("portcullis_http_requests_total") && needle.iter().all(|n| l.contains(n))
        })
    };
    assert!(
        has(&[r#"route="/admin/v1/environments""#, r#"status="200""#]),
        "{text}"
    );
    assert!(
        has(&[r#"route="/admin/v1/environments/{env}""#, r#"status="404""#]),
        "{text}"
    );
    assert!(
        has(&[
            r#"route="/healthz""#,
            r#"method="other""#,
            r#"status="405""#
        ]),
        "{text}"
    );
    assert!(
        !text.contains("FROBNICATE") && !text.contains("X-ANY"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_http_request_duration_seconds"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_storage_pool_connections"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_lists_the_admin_paths() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let res = s
        .client()
        .get(s.at("/admin/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let doc: Value = res.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/admin/v1/environments",
        "/admin/v1/environments/{env}",
        "/admin/v1/environments/{env}/organizations",
        "/admin/v1/environments/{env}/organizations/{org}",
        "/admin/v1/api-keys",
        "/admin/v1/api-keys/{key}",
        "/admin/v1/environments/{env}/keys/rotate",
        "/admin/v1/environments/{env}/events",
        "/admin/v1/audit/verify",
    ] {
        assert!(
            paths.contains_key(p),
            "{p} missing from {:?}",
            paths.keys().collect::<Vec<_>>()
        );
    }
    assert!(paths["/admin/v1/environments"].get("post").is_some());
    assert_eq!(
        doc["components"]["securitySchemes"]["admin_key"]["scheme"],
        json!("bearer"),
        "{}",
        doc["components"]
    );
    assert!(
        doc["components"]["schemas"]
            .get("EnvironmentView")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_json_not_found() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let got = s
        .request(reqwest::Method::GET, "/nowhere", None, None)
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    let got = s.admin_get("/nowhere").await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
}

/// The storage going away mid-flight is "unavailable" (503) and `/readyz` says so; never a 500.
async fn lost_database_is_unavailable_not_an_internal_error(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    crate::create_env(&s, "prod", json!({})).await;
    s.app().store.close().await;
    let res = s.client().get(s.at("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let ready: Value = res.json().await.unwrap();
    assert_eq!(ready["storage"], false, "{ready}");
    let got = s.admin_get("/environments").await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let got = s
        .admin_post("/environments", json!({ "slug": "later" }))
        .await;
    assert_error(&got, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
    let res = s
        .client()
        .get(s.at("/e/prod/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "JWKS with the database gone"
    );
    let res = s.client().get(s.at("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the process itself is alive");
}
