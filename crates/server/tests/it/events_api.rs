//! The Events API (`GET /e/{env}/events`): environment API keys, filters, cursors, and a
//! consumer that pages from the start while events are being written sees each exactly once.

use std::collections::BTreeSet;

use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

both_backends!(
    consumer_sees_every_event_once_in_order_while_writes_go_on,
    filters_cursors_and_keys
);

async fn setup(backend: Backend) -> (TestServer, String) {
    let s = TestServer::start(backend).await.unwrap();
    let (st, _) = s
        .admin_post(
            "/environments",
            json!({ "slug": "ev", "mode": "connected" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, key) = s
        .admin_post(
            "/environments/ev/api-keys",
            json!({ "name": "events reader" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    (s, key["secret"].as_str().unwrap().to_owned())
}

async fn pull(s: &TestServer, key: &str, query: &str) -> (StatusCode, Value) {
    let res = s
        .client()
        .get(s.at(&format!("/e/ev/events?{query}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = res.status();
    assert!(status.as_u16() < 500, "{status}");
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn consumer_sees_every_event_once_in_order_while_writes_go_on(backend: Backend) {
    let (s, key) = setup(backend).await;
    let writer = {
        let (url, admin) = (
            s.at("/admin/v1/environments/ev/organizations"),
            s.admin_key().to_owned(),
        );
        let client = s.client().clone();
        tokio::spawn(async move {
            let mut tasks = Vec::new();
            for i in 0..40 {
                let (client, url, admin) = (client.clone(), url.clone(), admin.clone());
                tasks.push(tokio::spawn(async move {
                    let r = client
                        .post(url)
                        .bearer_auth(admin)
                        .json(&json!({ "name": format!("Org {i}") }))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::CREATED);
                }));
            }
            for t in tasks {
                t.await.unwrap();
            }
        })
    };
    let mut seen: Vec<(i64, String)> = Vec::new();
    let mut after = String::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let q = if after.is_empty() {
            "limit=7".to_owned()
        } else {
            format!("limit=7&after={after}")
        };
        // Whether the writer had finished before this page was read: only then does an empty
        // page mean the end (a page read just before the last commit may be empty too).
        let finished = writer.is_finished();
        let (st, page) = pull(&s, &key, &q).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        let data = page["data"].as_array().unwrap().clone();
        for e in &data {
            seen.push((
                e["sequence"].as_i64().unwrap(),
                e["id"].as_str().unwrap().to_owned(),
            ));
        }
        if let Some(last) = data.last() {
            after = last["id"].as_str().unwrap().to_owned();
        }
        // 1 environment.created + 1 (the key is audited, not an event) + 40 organizations.
        if finished && data.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the consumer did not reach the end"
        );
    }
    writer.await.unwrap();
    let seqs: Vec<i64> = seen.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        seqs,
        (1..=41).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    let ids: BTreeSet<&String> = seen.iter().map(|(_, id)| id).collect();
    assert_eq!(ids.len(), 41);
}

async fn filters_cursors_and_keys(backend: Backend) {
    let (s, key) = setup(backend).await;
    let (_, org) = s
        .admin_post(
            "/environments/ev/organizations",
            json!({ "name": "Acme", "domains": ["acme.test"] }),
        )
        .await;
    let org_id = org["id"].as_str().unwrap();
    s.admin_patch(
        &format!("/environments/ev/organizations/{org_id}"),
        json!({ "name": "Acme 2" }),
    )
    .await;
    s.admin_post("/environments/ev/organizations", json!({ "name": "Other" }))
        .await;

    let (_, all) = pull(&s, &key, "limit=100").await;
    let types: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "environment.created",
            "organization.created",
            "organization.updated",
            "organization.created"
        ]
    );
    let (_, only) = pull(&s, &key, "events=organization.updated").await;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        only["data"][0]["data"]["previous_attributes"]["name"],
        "Acme"
    );
    let (_, by_org) = pull(&s, &key, &format!("organization_id={org_id}")).await;
    assert_eq!(by_org["data"].as_array().unwrap().len(), 2);
    let second = all["data"][1]["id"].as_str().unwrap();
    let (_, after) = pull(&s, &key, &format!("after={second}&limit=1")).await;
    assert_eq!(after["data"][0]["event"], "organization.updated");
    assert_eq!(
        after["list_metadata"]["after"], after["data"][0]["id"],
        "more pages remain"
    );
    let fourth = all["data"][3]["id"].as_str().unwrap();
    let (_, before) = pull(&s, &key, &format!("before={fourth}&limit=2")).await;
    let b: Vec<i64> = before["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(b, [2, 3], "the page just before, oldest first");
    let (_, none) = pull(&s, &key, "range_start=2999-01-01T00:00:00Z").await;
    assert!(none["data"].as_array().unwrap().is_empty());

    for q in [
        "limit=0",
        "limit=101",
        "events=no.such",
        "after=evt_00000000000000000000000000",
        "range_end=yesterday",
        "organization_id=nope",
        "colour=blue",
    ] {
        let (st, body) = pull(&s, &key, q).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{q}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{q}"
        );
    }
    let res = s.client().get(s.at("/e/ev/events")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);
    let (_, other) = s
        .admin_post("/environments", json!({ "slug": "other" }))
        .await;
    assert_eq!(other["slug"], "other");
    let (_, k2) = s
        .admin_post("/environments/other/api-keys", json!({ "name": "x" }))
        .await;
    let (st, _) = pull(&s, k2["secret"].as_str().unwrap(), "").await;
    assert_eq!(
        st,
        StatusCode::NOT_FOUND,
        "a key of another environment learns nothing"
    );
    let (_, keys) = s.admin_get("/environments/ev/api-keys").await;
    let id = keys["data"][0]["id"].as_str().unwrap();
    s.admin_delete(&format!("/api-keys/{id}")).await;
    let (st, _) = pull(&s, &key, "").await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "revoked");
}

/// `*.updated` events carry `previous_attributes`: the fields that changed, as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updated_events_carry_previous_attributes() {
    let (s, key) = setup(Backend::Sqlite).await;
    let (st, c) = s
        .admin_post(
            "/environments/ev/clients",
            json!({ "name": "Web", "redirect_uris": ["https://app.example.com/cb"] }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let id = c["id"].as_str().unwrap();
    let (st, _) = s
        .admin_patch(
            &format!("/environments/ev/clients/{id}"),
            json!({ "name": "Web 2" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (_, org) = s
        .admin_post(
            "/environments/ev/organizations",
            json!({ "name": "Acme", "domains": ["acme.test"] }),
        )
        .await;
    let org = org["id"].as_str().unwrap();
    let (st, u) = s
        .admin_post(
            &format!("/environments/ev/organizations/{org}/users"),
            json!({ "email": "a@acme.test", "first_name": "Ann" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{u}");
    let uid = u["id"].as_str().unwrap();
    s.admin_patch(
        &format!("/environments/ev/organizations/{org}/users/{uid}"),
        json!({ "first_name": "Anne" }),
    )
    .await;

    let (_, ev) = pull(&s, &key, "events=client.updated,user.updated&limit=10").await;
    let data = ev["data"].as_array().unwrap();
    assert_eq!(data.len(), 2, "{ev}");
    assert_eq!(
        data[0]["data"]["previous_attributes"],
        json!({ "name": "Web" })
    );
    assert_eq!(data[1]["data"]["previous_attributes"]["first_name"], "Ann");
}
