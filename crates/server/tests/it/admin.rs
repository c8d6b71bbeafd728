//! Admin API CRUD over HTTP: environments and their JWKS, organizations and domains, API keys,
//! the event log and the audit chain.

use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{assert_error, counts, create_env, create_org, jwks, kids, str_of};

both_backends!(
    environments_of_each_algorithm_publish_matching_jwks,
    environment_update_and_listing,
    organizations_crud_and_domain_ownership,
    duplicate_domain_is_refused_and_writes_nothing,
    api_keys_are_shown_once_track_use_and_revoke,
    last_global_admin_key_cannot_be_revoked,
    events_page_in_order_without_gaps,
    audit_chain_pages_links_and_verifies,
);

async fn environments_of_each_algorithm_publish_matching_jwks(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    for (alg, kty, crv) in [
        ("ES256", "EC", Some("P-256")),
        ("EdDSA", "OKP", Some("Ed25519")),
        ("RS256", "RSA", None),
    ] {
        let slug = format!("env-{}", alg.to_ascii_lowercase());
        let env = create_env(&s, &slug, json!({ "signing_alg": alg })).await;
        let issuer = format!("{}/e/{slug}", s.url());
        assert_eq!(env["object"], "environment");
        assert_eq!(env["slug"], slug.as_str());
        assert_eq!(env["signing_alg"], alg);
        assert_eq!(env["mode"], "isolated", "isolated is the default mode");
        assert_eq!(env["issuer"], issuer.as_str(), "default issuer");
        assert_eq!(env["jwks_uri"], format!("{issuer}/jwks.json").as_str());
        assert_eq!(env["key_policy"]["lifetime_seconds"], 90 * 86_400);
        assert_eq!(env["key_policy"]["grace_seconds"], 7 * 86_400);
        assert!(str_of(&env, "id").starts_with("env_"), "{env}");

        let set = jwks(&s, &slug).await;
        let keys = set["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 2, "the active and the next key: {set}");
        for k in keys {
            assert_eq!(k["kty"], kty, "{k}");
            assert_eq!(k["alg"], alg, "{k}");
            assert_eq!(k["use"], "sig", "{k}");
            match crv {
                Some(c) => assert_eq!(k["crv"], c, "{k}"),
                None => assert!(k["n"].is_string() && k["e"] == "AQAB", "{k}"),
            }
            for private in ["d", "p", "q", "dp", "dq", "qi"] {
                assert!(k.get(private).is_none(), "private member {private} in {k}");
            }
            assert!(
                portcullis_crypto::jws::jwk_thumbprint(k).is_some(),
                "a complete public key: {k}"
            );
        }
        // The same JWKS by environment ID; the admin key list agrees with it.
        assert_eq!(jwks(&s, str_of(&env, "id")).await, set);
        let (status, listed) = s.admin_get(&format!("/environments/{slug}/keys")).await;
        assert_eq!(status, StatusCode::OK, "{listed}");
        let mut states: Vec<(String, String)> = listed["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                assert_eq!(k["published"], true, "{k}");
                (str_of(k, "id").to_owned(), str_of(k, "state").to_owned())
            })
            .collect();
        states.sort_by(|a, b| a.1.cmp(&b.1));
        assert_eq!(
            states.iter().map(|s| s.1.as_str()).collect::<Vec<_>>(),
            ["active", "next"]
        );
        let mut listed_kids: Vec<String> = states.into_iter().map(|s| s.0).collect();
        listed_kids.sort();
        assert_eq!(listed_kids, kids(&set));
    }
    // Unknown environments have no JWKS.
    let res = s
        .client()
        .get(s.at("/e/nope/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

async fn environment_update_and_listing(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    let custom = "https://id.example.test/tenants/beta";
    let a = create_env(&s, "alpha", json!({ "name": "Alpha", "mode": "connected" })).await;
    let b = create_env(
        &s,
        "beta",
        json!({ "issuer": custom, "key_lifetime_days": 30, "key_grace_days": 2 }),
    )
    .await;
    assert_eq!(a["name"], "Alpha");
    assert_eq!(a["mode"], "connected");
    assert_eq!(b["name"], "beta", "the name defaults to the slug");
    assert_eq!(b["issuer"], custom);
    assert_eq!(b["key_policy"]["lifetime_seconds"], 30 * 86_400);
    assert_eq!(b["key_policy"]["grace_seconds"], 2 * 86_400);

    let (status, list) = s.admin_get("/environments").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["object"], "list");
    let slugs: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| str_of(e, "slug"))
        .collect();
    assert!(
        slugs.contains(&"alpha") && slugs.contains(&"beta"),
        "{list}"
    );

    // By ID and by slug, the same environment.
    let (_, by_id) = s
        .admin_get(&format!("/environments/{}", str_of(&a, "id")))
        .await;
    let (_, by_slug) = s.admin_get("/environments/alpha").await;
    assert_eq!(by_id, a);
    assert_eq!(by_slug, a);

    let (status, updated) = s
        .admin_patch(
            "/environments/alpha",
            json!({ "name": "Alpha Prime", "mode": "isolated", "key_grace_days": 3 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Alpha Prime");
    assert_eq!(updated["mode"], "isolated");
    assert_eq!(updated["key_policy"]["grace_seconds"], 3 * 86_400);
    assert_eq!(
        updated["key_policy"]["lifetime_seconds"],
        90 * 86_400,
        "unchanged"
    );
    assert_eq!(updated["slug"], "alpha", "the slug never changes");
    let (_, again) = s.admin_get("/environments/alpha").await;
    assert_eq!(again, updated, "the update is stored");

    let (_, events) = s.admin_get("/environments/alpha/events").await;
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| str_of(e, "event"))
        .collect();
    assert_eq!(
        types,
        ["environment.created", "environment.updated"],
        "{events}"
    );
    let (status, missing) = s.admin_get("/environments/gamma").await;
    assert_error(&(status, missing), StatusCode::NOT_FOUND, "not_found");
}

async fn organizations_crud_and_domain_ownership(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    create_env(&s, "staging", json!({})).await;
    let acme = create_org(&s, "prod", "Acme", &["Example.COM", " a.example.org "]).await;
    let acme_id = str_of(&acme, "id").to_owned();
    assert!(acme_id.starts_with("org_"), "{acme}");
    assert_eq!(acme["object"], "organization");
    assert_eq!(
        acme["domains"],
        json!(["a.example.org", "example.com"]),
        "lower-cased, trimmed, sorted"
    );
    let (status, got) = s
        .admin_get(&format!("/environments/prod/organizations/{acme_id}"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(got, acme);

    // The same domain is free in another environment.
    create_org(&s, "staging", "Acme staging", &["example.com"]).await;

    // Rename and hand back one domain; another organization can then claim it.
    let (status, updated) = s
        .admin_patch(
            &format!("/environments/prod/organizations/{acme_id}"),
            json!({ "name": "Acme Corp", "domains": ["example.com"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Acme Corp");
    assert_eq!(updated["domains"], json!(["example.com"]));
    let globex = create_org(&s, "prod", "Globex", &["a.example.org"]).await;

    // Paging through the environment's organizations.
    let (status, page) = s
        .admin_get("/environments/prod/organizations?limit=1")
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    let after = str_of(&page["list_metadata"], "after").to_owned();
    let (_, rest) = s
        .admin_get(&format!(
            "/environments/prod/organizations?limit=10&after={after}"
        ))
        .await;
    let mut names: Vec<&str> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["data"].as_array().unwrap())
        .map(|o| str_of(o, "name"))
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["Acme Corp", "Globex"]);
    assert!(
        rest["list_metadata"]["after"].is_null(),
        "last page: {rest}"
    );

    // Delete: gone, and its domain is free again.
    let (status, body) = s
        .admin_delete(&format!("/environments/prod/organizations/{acme_id}"))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let got = s
        .admin_get(&format!("/environments/prod/organizations/{acme_id}"))
        .await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    let again = s
        .admin_delete(&format!("/environments/prod/organizations/{acme_id}"))
        .await;
    assert_error(&again, StatusCode::NOT_FOUND, "not_found");
    create_org(&s, "prod", "Initech", &["example.com"]).await;

    let (_, events) = s.admin_get("/environments/prod/events?limit=100").await;
    let seen: Vec<(String, Value)> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (str_of(e, "event").to_owned(), e["organization_id"].clone()))
        .collect();
    let acme_v = json!(acme_id);
    let globex_v = globex["id"].clone();
    assert_eq!(
        seen[..5],
        [
            ("environment.created".to_owned(), Value::Null),
            ("organization.created".to_owned(), acme_v.clone()),
            ("organization.updated".to_owned(), acme_v.clone()),
            ("organization.created".to_owned(), globex_v),
            ("organization.deleted".to_owned(), acme_v),
        ],
        "{events}"
    );
    let update = &events["data"][2]["data"];
    assert_eq!(update["previous_attributes"]["name"], "Acme", "{update}");
}

async fn duplicate_domain_is_refused_and_writes_nothing(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let acme = create_org(&s, "prod", "Acme", &["example.com"]).await;
    let other = create_org(&s, "prod", "Other", &["other.example"]).await;
    let before = counts(&s).await;

    let got = s
        .admin_post(
            "/environments/prod/organizations",
            json!({ "name": "Imposter", "domains": ["fresh.example", "EXAMPLE.com"] }),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "domain_taken");
    assert!(
        got.1["message"].as_str().unwrap().contains("example.com"),
        "{}",
        got.1
    );
    assert_eq!(
        counts(&s).await,
        before,
        "a refused create writes no row, event or audit record"
    );

    // Taking it by update is refused the same way, and the organization keeps its domains.
    let path = format!("/environments/prod/organizations/{}", str_of(&other, "id"));
    let got = s
        .admin_patch(&path, json!({ "domains": ["example.com", "x.example"] }))
        .await;
    assert_error(&got, StatusCode::CONFLICT, "domain_taken");
    assert_eq!(counts(&s).await, before, "a refused update writes nothing");
    let (_, still) = s.admin_get(&path).await;
    assert_eq!(still["domains"], json!(["other.example"]));
    let (_, owner) = s
        .admin_get(&format!(
            "/environments/prod/organizations/{}",
            str_of(&acme, "id")
        ))
        .await;
    assert_eq!(owner["domains"], json!(["example.com"]));
    // The fresh domain of the refused create was not claimed either.
    create_org(&s, "prod", "Fresh", &["fresh.example"]).await;
}

async fn api_keys_are_shown_once_track_use_and_revoke(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let (status, created) = s.admin_post("/api-keys", json!({ "name": "ops" })).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = str_of(&created, "secret").to_owned();
    let id = str_of(&created, "id").to_owned();
    assert!(
        secret.starts_with("pcadm_") && secret.len() > 30,
        "{created}"
    );
    assert!(id.starts_with("key_"));
    assert_eq!(created["kind"], "admin");
    assert!(created["environment_id"].is_null(), "a global key");
    assert!(created["last_used_at"].is_null());

    // Never shown again.
    let (_, shown) = s.admin_get(&format!("/api-keys/{id}")).await;
    assert!(shown.get("secret").is_none(), "{shown}");
    let (_, list) = s.admin_get("/api-keys").await;
    assert!(
        !list.to_string().contains(&secret),
        "the list leaks the secret"
    );
    assert!(shown["last_used_at"].is_null());

    // Using it records when.
    let used = s
        .request(
            reqwest::Method::GET,
            "/admin/v1/environments",
            Some(&secret),
            None,
        )
        .await;
    assert_eq!(used.0, StatusCode::OK, "{}", used.1);
    let (_, shown) = s.admin_get(&format!("/api-keys/{id}")).await;
    assert!(
        shown["last_used_at"].is_string(),
        "last use recorded: {shown}"
    );

    // An environment key: its own prefix, its environment, listed under it.
    let (status, env_key) = s
        .admin_post("/environments/prod/api-keys", json!({ "name": "puller" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{env_key}");
    assert_eq!(env_key["kind"], "environment");
    assert!(str_of(&env_key, "secret").starts_with("pcenv_"));
    let (_, env_keys) = s.admin_get("/environments/prod/api-keys").await;
    let ids: Vec<&str> = env_keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| str_of(k, "id"))
        .collect();
    assert_eq!(ids, [str_of(&env_key, "id")]);

    // Revoked: refused from then on, and the refusal is audited.
    let (status, revoked) = s.admin_delete(&format!("/api-keys/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    let refused = s
        .request(
            reqwest::Method::GET,
            "/admin/v1/environments",
            Some(&secret),
            None,
        )
        .await;
    assert_error(&refused, StatusCode::UNAUTHORIZED, "unauthorized");
    let (_, audit) = s.admin_get("/audit?limit=100").await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| str_of(r, "action"))
        .collect();
    assert!(actions.contains(&"api_key.create"), "{actions:?}");
    assert!(actions.contains(&"api_key.revoke"), "{actions:?}");
    assert!(actions.contains(&"api_key.use_revoked"), "{actions:?}");
    // Revoking again changes nothing.
    let (status, twice) = s.admin_delete(&format!("/api-keys/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(twice["revoked_at"], revoked["revoked_at"]);
}

async fn last_global_admin_key_cannot_be_revoked(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    // A scoped admin key does not count as a way back in.
    let (status, _) = s
        .admin_post(
            "/environments/prod/api-keys",
            json!({ "name": "prod-admin", "kind": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, list) = s.admin_get("/api-keys").await;
    let bootstrap = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "bootstrap")
        .unwrap_or_else(|| panic!("no bootstrap key in {list}"));
    let path = format!("/api-keys/{}", str_of(bootstrap, "id"));
    let before = counts(&s).await;
    let got = s.admin_delete(&path).await;
    assert_error(&got, StatusCode::CONFLICT, "last_admin_key");
    assert_eq!(counts(&s).await, before, "writes nothing");
    let (status, _) = s.admin_get("/environments").await;
    assert_eq!(status, StatusCode::OK, "the key still works");

    // With a second global key, the first may go.
    let (_, second) = s.admin_post("/api-keys", json!({ "name": "second" })).await;
    let (status, body) = s.admin_delete(&path).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let got = s
        .request(
            reqwest::Method::DELETE,
            &format!("/admin/v1/api-keys/{}", str_of(&second, "id")),
            Some(str_of(&second, "secret")),
            None,
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "last_admin_key");
}

async fn events_page_in_order_without_gaps(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    create_env(&s, "other", json!({})).await;
    for i in 0..5 {
        create_org(&s, "prod", &format!("Org {i}"), &[]).await;
    }
    create_org(&s, "other", "Elsewhere", &[]).await;
    let mut seen = Vec::new();
    let mut path = "/environments/prod/events?limit=2".to_owned();
    let mut pages = 0;
    loop {
        let (status, page) = s.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        pages += 1;
        for e in data {
            assert_eq!(e["object"], "event");
            assert!(str_of(e, "id").starts_with("evt_"));
            seen.push((
                e["sequence"].as_i64().unwrap(),
                str_of(e, "event").to_owned(),
            ));
        }
        match page["list_metadata"]["after"].as_str() {
            Some(a) => path = format!("/environments/prod/events?limit=2&after={a}"),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3, "6 events in pages of 2: the last page says so");
    assert_eq!(
        seen.iter().map(|e| e.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
    assert_eq!(seen[0].1, "environment.created");
    assert!(
        seen[1..].iter().all(|e| e.1 == "organization.created"),
        "{seen:?}"
    );
    // Each environment numbers its own log.
    let (_, other) = s.admin_get("/environments/other/events").await;
    let seqs: Vec<i64> = other["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [1, 2]);
    let (_, tail) = s.admin_get("/environments/prod/events?after=6").await;
    assert_eq!(tail["data"], json!([]));
}

async fn audit_chain_pages_links_and_verifies(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    let env = create_env(&s, "prod", json!({})).await;
    for i in 0..4 {
        create_org(&s, "prod", &format!("Org {i}"), &[]).await;
    }
    let (status, _) = s
        .admin_post("/environments/prod/keys/rotate", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut records: Vec<Value> = Vec::new();
    let mut path = "/environments/prod/audit?limit=4".to_owned();
    for _ in 0..10 {
        let (status, page) = s.admin_get(&path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        records.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["list_metadata"]["after"].as_str() {
            Some(a) => path = format!("/environments/prod/audit?limit=4&after={a}"),
            None => break,
        }
    }
    let actions: Vec<&str> = records.iter().map(|r| str_of(r, "action")).collect();
    assert_eq!(
        actions,
        [
            "environment.create",
            "organization.create",
            "organization.create",
            "organization.create",
            "organization.create",
            "signing_key.rotate"
        ]
    );
    let admin_actor = records[0]["actor"].as_str().unwrap();
    assert!(
        admin_actor.starts_with("admin_key:key_"),
        "who: {admin_actor}"
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as i64 + 1);
        assert_eq!(r["chain"], env["id"]);
        assert_eq!(r["outcome"], "success");
        if i > 0 {
            assert_eq!(
                r["prev_hash"],
                records[i - 1]["hash"],
                "record {} links to its predecessor",
                i + 1
            );
        }
    }
    let (status, report) = s.admin_get("/environments/prod/audit/verify").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["records"], 6);
    assert_eq!(report["head_hash"], records[5]["hash"]);
    // The global chain holds the bootstrap key's creation.
    let (_, global) = s.admin_get("/audit").await;
    let first = &global["data"][0];
    assert_eq!(first["chain"], "global");
    assert_eq!(first["action"], "api_key.create");
    assert_eq!(first["actor"], "bootstrap");
    let (_, report) = s.admin_get("/audit/verify").await;
    assert_eq!(report["ok"], true, "{report}");
}
