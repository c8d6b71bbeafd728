//! Bad input: each gets a 4xx with a stable `code` and a `message`, and writes nothing; no input
//! makes the server answer 5xx.

use portcullis_testkit::server::{ADMIN_KEY, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{assert_error, counts, create_env, create_org, str_of};

both_backends!(
    bad_environment_input_is_refused_and_writes_nothing,
    bad_organization_and_key_input_is_refused_and_writes_nothing,
    missing_or_wrong_admin_key_is_unauthorized,
    no_input_makes_the_server_answer_5xx,
);

/// Sends a raw body to `path` with the admin key.
async fn raw(
    s: &TestServer,
    method: Method,
    path: &str,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (StatusCode, Value) {
    let res = s
        .client()
        .request(method, s.at(path))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn bad_environment_input_is_refused_and_writes_nothing(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let before = counts(&s).await;
    let json_ct = "application/json";

    let got = raw(
        &s,
        Method::POST,
        "/admin/v1/environments",
        json_ct,
        r#"{"slug": "x", "#,
    )
    .await;
    assert_error(&got, StatusCode::BAD_REQUEST, "invalid_json");
    let got = raw(&s, Method::POST, "/admin/v1/environments", json_ct, "").await;
    assert!(got.0 == StatusCode::BAD_REQUEST, "empty body: {got:?}");
    let got = raw(
        &s,
        Method::POST,
        "/admin/v1/environments",
        "text/plain",
        r#"{"slug": "x"}"#,
    )
    .await;
    assert_error(
        &got,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    );

    let got = s
        .admin_post("/environments", json!({ "slug": "ok", "colour": "red" }))
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert!(
        got.1["message"].as_str().unwrap().contains("colour"),
        "names the field: {}",
        got.1
    );
    let got = s
        .admin_patch("/environments/prod", json!({ "slug": "renamed" }))
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert!(
        got.1["message"].as_str().unwrap().contains("slug"),
        "{}",
        got.1
    );
    let got = s.admin_post("/environments", json!({ "slug": 7 })).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let got = s.admin_post("/environments", json!({})).await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert!(
        got.1["message"].as_str().unwrap().contains("slug"),
        "names the missing field: {}",
        got.1
    );

    let max = s.config().max_body_bytes;
    let huge = json!({ "slug": "big", "name": "n".repeat(max + 10) }).to_string();
    let got = raw(&s, Method::POST, "/admin/v1/environments", json_ct, huge).await;
    assert_error(&got, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    for slug in [
        "Not_A_Slug",
        "-lead",
        "trail-",
        "",
        "has space",
        "ünï",
        &"x".repeat(64),
        "../etc",
    ] {
        let got = s.admin_post("/environments", json!({ "slug": slug })).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert!(
            got.1["message"].as_str().unwrap().contains("slug"),
            "{slug:?}: {}",
            got.1
        );
    }
    let got = s
        .admin_post("/environments", json!({ "slug": "prod" }))
        .await;
    assert_error(&got, StatusCode::CONFLICT, "environment_exists");
    let issuer = format!("{}/e/prod", s.url());
    let got = s
        .admin_post(
            "/environments",
            json!({ "slug": "prod2", "issuer": issuer }),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "environment_exists");
    for (field, value) in [
        ("signing_alg", json!("HS256")),
        ("signing_alg", json!("none")),
        ("mode", json!("airgapped")),
        ("issuer", json!("ftp://id.example")),
        ("issuer", json!("https://id.example/")),
        ("key_lifetime_days", json!(0)),
        ("key_lifetime_days", json!(100_000)),
        ("key_grace_days", json!(-1)),
        ("name", json!("   ")),
        ("name", json!("tab\there")),
    ] {
        let got = s
            .admin_post("/environments", json!({ "slug": "fresh", field: value }))
            .await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    for patch in [
        json!({ "mode": "sideways" }),
        json!({ "key_lifetime_days": 0 }),
        json!({ "name": "" }),
    ] {
        let got = s.admin_patch("/environments/prod", patch).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    for q in [
        "limit=0",
        "limit=101",
        "limit=-1",
        "limit=abc",
        "after=-3",
        "after=x",
        "page=2",
    ] {
        let got = s.admin_get(&format!("/environments/prod/events?{q}")).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        let got = s.admin_get(&format!("/environments/prod/audit?{q}")).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    let got = s
        .admin_get("/environments/prod/organizations?limit=1000")
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert!(
        got.1["message"].as_str().unwrap().contains("limit"),
        "{}",
        got.1
    );

    assert_eq!(
        counts(&s).await,
        before,
        "no refused request wrote anything"
    );
    let (_, env) = s.admin_get("/environments/prod").await;
    assert_eq!(env["name"], "prod", "unchanged by the refused updates");
}

async fn bad_organization_and_key_input_is_refused_and_writes_nothing(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let org = create_org(&s, "prod", "Acme", &["example.com"]).await;
    let org_path = format!("/environments/prod/organizations/{}", str_of(&org, "id"));
    let before = counts(&s).await;
    let many: Vec<String> = (0..101).map(|i| format!("d{i}.example")).collect();
    let bad_domains = [
        json!(["not a domain"]),
        json!(["com"]),
        json!(["10.0.0.1"]),
        json!(["bücher.example"]),
        json!(["x.example", "X.example"]),
        json!(many),
        json!("example.org"),
        json!([null]),
    ];
    for domains in bad_domains {
        let got = s
            .admin_post(
                "/environments/prod/organizations",
                json!({ "name": "X", "domains": domains }),
            )
            .await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        let got = s
            .admin_patch(&org_path, json!({ "domains": domains }))
            .await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    for body in [
        json!({ "name": "" }),
        json!({ "domains": ["x.example"] }),
        json!({ "name": "X", "owner": "me" }),
    ] {
        let got = s.admin_post("/environments/prod/organizations", body).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    for body in [
        json!({ "name": " " }),
        json!({ "owner": "me" }),
        json!({ "name": null, "id": "org_x" }),
    ] {
        let got = s.admin_patch(&org_path, body).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    for body in [
        json!({ "name": "" }),
        json!({ "name": "k", "kind": "root" }),
        json!({ "name": "k", "scopes": [] }),
    ] {
        let got = s
            .admin_post("/environments/prod/api-keys", body.clone())
            .await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    let got = s
        .admin_post("/api-keys", json!({ "name": "k", "environment_id": "x" }))
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    for id in [
        "org_XYZ",
        "org_",
        "env_01J00000000000000000000000",
        "../../etc",
    ] {
        let got = s
            .admin_get(&format!("/environments/prod/organizations/{id}"))
            .await;
        assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    }
    for id in [
        "key_XYZ",
        "key_01J00000000000000000000000",
        "org_01J00000000000000000000000",
    ] {
        let got = s.admin_get(&format!("/api-keys/{id}")).await;
        assert_error(&got, StatusCode::NOT_FOUND, "not_found");
        let got = s.admin_delete(&format!("/api-keys/{id}")).await;
        assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    }
    assert_eq!(
        counts(&s).await,
        before,
        "no refused request wrote anything"
    );
}

async fn missing_or_wrong_admin_key_is_unauthorized(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let before = counts(&s).await;
    let wrong = format!("pcadm_{}", "z".repeat(40));
    for (method, path, body) in [
        (Method::GET, "/admin/v1/environments", None),
        (
            Method::POST,
            "/admin/v1/environments",
            Some(json!({ "slug": "sneaky" })),
        ),
        (Method::GET, "/admin/v1/environments/prod/audit", None),
        (
            Method::POST,
            "/admin/v1/api-keys",
            Some(json!({ "name": "sneaky" })),
        ),
    ] {
        let got = s.request(method.clone(), path, None, body.as_ref()).await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
        let got = s
            .request(method.clone(), path, Some(&wrong), body.as_ref())
            .await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
        let got = s
            .request(method.clone(), path, Some(""), body.as_ref())
            .await;
        assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
        // The right key in the wrong scheme.
        let res = s
            .client()
            .request(method, s.at(path))
            .header("authorization", format!("Basic {ADMIN_KEY}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    }
    assert_eq!(counts(&s).await, before);
}

/// Weird paths, queries and bodies: none may get a 5xx, and the server keeps answering.
async fn no_input_makes_the_server_answer_5xx(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    let env = create_env(&s, "prod", json!({})).await;
    let env_id = str_of(&env, "id").to_owned();
    let long = "a".repeat(10_000);
    let deep = format!("{}{}", "[".repeat(5_000), "]".repeat(5_000));
    let mut paths: Vec<String> = [
        "/admin/v1/environments/ünïcødé",
        "/admin/v1/environments/%C3%BCn%C3%AF",
        "/admin/v1/environments/..%2F..%2Fetc%2Fpasswd",
        "/admin/v1/environments/../../etc/passwd",
        "/admin/v1/environments/%00",
        "/admin/v1/environments/%ZZ",
        "/admin/v1/environments/%FF%FE",
        "/admin/v1/environments/env_XYZ",
        "/admin/v1/environments/env_XYZ/organizations/org_XYZ",
        "/admin/v1/environments/prod/organizations/org_XYZ",
        "/admin/v1/environments/prod/organizations?after=org_XYZ",
        "/admin/v1/environments/prod/organizations?after=%FF",
        "/admin/v1/environments/prod/organizations?limit=4294967296",
        "/admin/v1/environments/prod/events?after=99999999999999999999",
        "/admin/v1/environments/prod/events?after=9223372036854775807",
        "/admin/v1/environments/prod/audit?after=9223372036854775807&limit=100",
        "/admin/v1/environments/prod/events?limit=1&limit=2",
        "/admin/v1/api-keys/key_XYZ",
        "/admin/v1/api-keys/%E2%80%AE",
        "/admin/v1/openapi.json/extra",
        "/admin/v1/",
        "/admin/v2/environments",
        "/e/%2e%2e/jwks.json",
        "/e/ünï/jwks.json",
        "/e/env_XYZ/jwks.json",
        "/e//jwks.json",
        "/readyz?verbose=1",
        "/%2F%2F",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    paths.push(format!("/admin/v1/environments/{long}"));
    paths.push(format!(
        "/admin/v1/environments/{long}/organizations?after={long}"
    ));
    paths.push(format!("/e/{long}/jwks.json"));
    paths.push(format!(
        "/admin/v1/environments/{env_id}/organizations/{env_id}"
    ));
    for p in &paths {
        for method in [
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::PUT,
        ] {
            let (status, body) = s
                .request(method.clone(), p, Some(ADMIN_KEY), Some(&json!({})))
                .await;
            assert!(status.as_u16() < 500, "{method} {p}: {status} {body}");
        }
    }
    let bodies: Vec<String> = vec![
        deep.clone(),
        format!("{{\"slug\": {deep}}}"),
        "null".into(),
        "[]".into(),
        "\"slug\"".into(),
        "1e999999".into(),
        "{\"slug\": 1e999999}".into(),
        "{\"slug\": \"a\\u0000b\"}".into(),
        "{\"slug\": \"\\ud800\"}".into(),
        "{\"slug\": \"ok\", \"slug\": \"twice\"}".into(),
        "{\"name\": \"\u{202e}evil\"}".into(),
        "{\"name\": \"x\", \"domains\": [null]}".into(),
        "{\"name\": \"x\", \"domains\": [\"\u{0}.example\"]}".into(),
        "{\"key_lifetime_days\": 9223372036854775807, \"key_grace_days\": -9223372036854775808}"
            .into(),
        format!("{{\"name\": \"{long}\"}}"),
        "\u{feff}{}".into(),
        "{\"slug\": \"nul\"".into(),
    ];
    let targets = [
        (Method::POST, "/admin/v1/environments".to_owned()),
        (Method::PATCH, "/admin/v1/environments/prod".to_owned()),
        (
            Method::POST,
            "/admin/v1/environments/prod/organizations".to_owned(),
        ),
        (
            Method::POST,
            "/admin/v1/environments/prod/api-keys".to_owned(),
        ),
        (Method::POST, "/admin/v1/api-keys".to_owned()),
        (
            Method::POST,
            "/admin/v1/environments/prod/keys/rotate".to_owned(),
        ),
    ];
    for (method, path) in &targets {
        for b in &bodies {
            let res = s
                .client()
                .request(method.clone(), s.at(path))
                .bearer_auth(ADMIN_KEY)
                .header("content-type", "application/json")
                .body(b.clone())
                .send()
                .await
                .unwrap();
            let status = res.status();
            let text = res.text().await.unwrap();
            assert!(
                status.as_u16() < 500,
                "{method} {path} {:.80}: {status} {text}",
                b
            );
        }
    }
    // Odd headers.
    for auth in [
        "Bearer",
        "Bearer  ",
        "bearer pcadm_\u{7f}",
        "Bearer pcadm_😀",
        &format!("Bearer {long}"),
    ] {
        let res = s
            .client()
            .get(s.at("/admin/v1/environments"))
            .header("authorization", auth)
            .send()
            .await;
        if let Ok(res) = res {
            assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{auth:.40}");
        }
    }
    let res = s.client().get(s.at("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK, "the server still answers");
}
