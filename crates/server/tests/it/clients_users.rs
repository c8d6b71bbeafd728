//! OAuth clients and local users over the admin API: every registration rule refused with 422 and
//! nothing written; secrets and generated passwords shown once, never again; rotation with an
//! overlap; users routed by domain; another environment's records are "not found".

use portcullis_core::ids::{ClientId, PrefixedId};
use portcullis_core::model::SigningAlg;
use portcullis_crypto::jws::{SigningKey, generate_pkcs8};
use portcullis_testkit::server::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{assert_error, counts, create_env, create_org, str_of};

both_backends!(
    clients_are_created_shown_and_deleted,
    every_client_rule_is_refused_and_nothing_is_written,
    secret_rotation_keeps_the_old_secret_for_the_overlap,
    client_changes_are_checked_as_a_whole,
    users_are_created_disabled_and_reset,
    another_environment_sees_no_clients_or_users,
);

const CLIENTS: &str = "/environments/prod/clients";

/// The events of `env`, via the API.
async fn events(s: &TestServer, env: &str) -> Vec<Value> {
    let (status, v) = s
        .admin_get(&format!("/environments/{env}/events?limit=100"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["data"].as_array().unwrap().clone()
}

fn public_jwk(alg: SigningAlg, kid: &str) -> Value {
    let der = generate_pkcs8(alg).unwrap();
    let mut jwk = SigningKey::from_pkcs8(kid, alg, &der).unwrap().public_jwk();
    // `alg` is optional on registration: the server fills it in from kty/crv.
    jwk.as_object_mut().unwrap().remove("alg");
    jwk
}

async fn create_client(s: &TestServer, body: Value) -> Value {
    let (status, v) = s.admin_post(CLIENTS, body).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v
}

async fn clients_are_created_shown_and_deleted(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;

    // A confidential client with the defaults: client_secret_basic and a secret, shown once.
    let conf = create_client(
        &s,
        json!({ "name": "Web app", "redirect_uris": ["https://app.example.com/cb"] }),
    )
    .await;
    assert_eq!(conf["object"], "client");
    assert!(str_of(&conf, "id").starts_with("client_"));
    assert_eq!(conf["kind"], "confidential");
    assert_eq!(conf["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(
        conf["grant_types"],
        json!(["authorization_code", "refresh_token"])
    );
    assert_eq!(
        conf["scopes"],
        json!(["openid", "email", "profile", "offline_access"])
    );
    assert_eq!(conf["access_token_ttl_seconds"], 900);
    assert_eq!(conf["id_token_ttl_seconds"], 3600);
    assert_eq!(conf["has_secret"], true);
    assert!(conf["secret_created_at"].is_string());
    let secret = str_of(&conf, "client_secret").to_owned();
    assert!(
        secret.starts_with("pcsec_") && secret.len() > 40,
        "{secret}"
    );
    assert!(conf.get("secret_digest").is_none());
    let id = str_of(&conf, "id").to_owned();

    // A public client: method none, no secret.
    let public = create_client(
        &s,
        json!({ "name": "SPA", "kind": "public", "redirect_uris": ["http://127.0.0.1:5173/cb"] }),
    )
    .await;
    assert_eq!(public["token_endpoint_auth_method"], "none");
    assert_eq!(public["has_secret"], false);
    assert!(public.get("client_secret").is_none(), "{public}");

    // A service account with private_key_jwt: keys inline, no secret, alg filled in.
    let keys = json!({ "keys": [
        public_jwk(SigningAlg::ES256, "k-ec"),
        public_jwk(SigningAlg::EdDSA, "k-ed"),
        public_jwk(SigningAlg::RS256, "k-rsa"),
    ] });
    let svc = create_client(
        &s,
        json!({
            "name": "Billing job",
            "token_endpoint_auth_method": "private_key_jwt",
            "grant_types": ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
            "scopes": ["billing:read", "billing:write"],
            "jwks": keys,
            "token_exchange": { "audiences": ["https://api.example.com"], "scopes": ["billing:read"] },
            "access_token_ttl_seconds": 300,
        }),
    )
    .await;
    assert_eq!(svc["has_secret"], false);
    assert!(svc.get("client_secret").is_none(), "{svc}");
    let algs: Vec<&str> = svc["jwks"]["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| str_of(k, "alg"))
        .collect();
    assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);
    assert_eq!(
        svc["token_exchange"],
        json!({ "audiences": ["https://api.example.com"], "scopes": ["billing:read"] })
    );
    assert_eq!(svc["access_token_ttl_seconds"], 300);

    // The secret is never shown again: not by GET, the list, the events or the audit chain.
    let (status, shown) = s.admin_get(&format!("{CLIENTS}/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    assert_eq!(shown["has_secret"], true);
    assert!(shown.get("client_secret").is_none());
    let (_, list) = s.admin_get(CLIENTS).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 3);
    let (_, audit) = s.admin_get("/environments/prod/audit?limit=100").await;
    for text in [
        shown.to_string(),
        list.to_string(),
        json!(events(&s, "prod").await).to_string(),
        audit.to_string(),
    ] {
        assert!(!text.contains(&secret), "the secret leaked: {text}");
        assert!(!text.contains("secret_digest"), "a digest leaked: {text}");
    }
    let kinds: Vec<String> = events(&s, "prod")
        .await
        .iter()
        .map(|e| str_of(e, "event").to_owned())
        .filter(|e| e.starts_with("client."))
        .collect();
    assert_eq!(kinds, ["client.created"; 3]);

    // Delete: gone, and a second delete is "not found".
    let (status, _) = s.admin_delete(&format!("{CLIENTS}/{id}")).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let got = s.admin_get(&format!("{CLIENTS}/{id}")).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    let got = s.admin_delete(&format!("{CLIENTS}/{id}")).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    let got = s.admin_get(&format!("{CLIENTS}/not-an-id")).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        events(&s, "prod").await.last().unwrap()["event"],
        "client.deleted"
    );
}

async fn every_client_rule_is_refused_and_nothing_is_written(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let cb = json!(["https://app.example.com/cb"]);
    let ec = public_jwk(SigningAlg::ES256, "k1");
    let with = |k: &str, v: Value| {
        let mut key = ec.clone();
        key[k] = v;
        json!({ "keys": [key] })
    };
    let jwt = |jwks: Value| {
        json!({ "name": "svc", "token_endpoint_auth_method": "private_key_jwt",
                "grant_types": ["client_credentials"], "jwks": jwks })
    };
    let many = |n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("https://app.example.com/{i}"))
            .collect()
    };
    let cases = [
        (json!({ "redirect_uris": cb }), "name"),
        (json!({ "name": "", "redirect_uris": cb }), "name"),
        (
            json!({ "name": "a", "kind": "secret", "redirect_uris": cb }),
            "kind",
        ),
        (
            json!({ "name": "a", "kind": "public", "token_endpoint_auth_method": "client_secret_basic", "redirect_uris": cb }),
            "public client has no credentials",
        ),
        (
            json!({ "name": "a", "token_endpoint_auth_method": "none", "redirect_uris": cb }),
            "confidential client authenticates",
        ),
        (
            json!({ "name": "a", "token_endpoint_auth_method": "client_secret_jwt", "redirect_uris": cb }),
            "token_endpoint_auth_method",
        ),
        (
            json!({ "name": "a", "kind": "public", "grant_types": ["client_credentials"] }),
            "public client cannot use the client_credentials",
        ),
        (
            json!({ "name": "a", "kind": "public", "redirect_uris": cb, "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:token-exchange"] }),
            "public client cannot use",
        ),
        (json!({ "name": "a" }), "at least one redirect URI"),
        (
            json!({ "name": "a", "grant_types": ["implicit"], "redirect_uris": cb }),
            "unknown grant type",
        ),
        (
            json!({ "name": "a", "grant_types": ["password"], "redirect_uris": cb }),
            "unknown grant type",
        ),
        (
            json!({ "name": "a", "grant_types": [], "redirect_uris": cb }),
            "at least one grant type",
        ),
        (
            json!({ "name": "a", "grant_types": ["refresh_token", "refresh_token"], "redirect_uris": cb }),
            "listed twice",
        ),
        (
            json!({ "name": "a", "redirect_uris": ["http://app.example.com/cb"] }),
            "loopback",
        ),
        (
            json!({ "name": "a", "redirect_uris": ["https://*.example.com/cb"] }),
            "wildcards",
        ),
        (
            json!({ "name": "a", "redirect_uris": ["https://app.example.com/cb#x"] }),
            "fragment",
        ),
        (
            json!({ "name": "a", "redirect_uris": ["/cb"] }),
            "not absolute",
        ),
        (
            json!({ "name": "a", "redirect_uris": ["https://app.example.com/cb", "https://app.example.com/cb"] }),
            "listed twice",
        ),
        (
            json!({ "name": "a", "redirect_uris": many(21) }),
            "at most 20",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "post_logout_redirect_uris": ["http://app.example.com/"] }),
            "post_logout_redirect_uris",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "scopes": ["read write"] }),
            "scopes",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "scopes": ["\"q\""] }),
            "scopes",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "scopes": [""] }),
            "scopes",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "scopes": (0..51).map(|i| format!("s{i}")).collect::<Vec<_>>() }),
            "at most 50",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "token_exchange": { "audiences": ["a b"] } }),
            "token_exchange.audiences",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "access_token_ttl_seconds": 59 }),
            "access_token_ttl_seconds",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "access_token_ttl_seconds": 86_401 }),
            "access_token_ttl_seconds",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "id_token_ttl_seconds": 10 }),
            "id_token_ttl_seconds",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "refresh_idle_ttl_seconds": 7200, "refresh_absolute_ttl_seconds": 3600 }),
            "must not exceed",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "client_secret": "mine" }),
            "unknown field",
        ),
        (
            json!({ "name": "a", "redirect_uris": cb, "jwks": { "keys": [ec.clone()] } }),
            "only for private_key_jwt",
        ),
        (
            json!({ "name": "svc", "token_endpoint_auth_method": "private_key_jwt", "grant_types": ["client_credentials"] }),
            "needs jwks",
        ),
        (jwt(with("d", json!("AAAA"))), "private member \"d\""),
        (jwt(with("kid", Value::Null)), "kid"),
        (jwt(with("crv", json!("P-384"))), "EC P-256"),
        (jwt(with("alg", json!("HS256"))), "EC P-256"),
        (
            jwt(json!({ "keys": [{ "kty": "oct", "kid": "h", "k": "c2VjcmV0" }] })),
            "private member \"k\"",
        ),
        (
            jwt(json!({ "keys": [{ "kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB" }] })),
            "RSA key",
        ),
        (jwt(json!({ "keys": [] })), "1 to 10 keys"),
        (jwt(json!([ec.clone()])), "JSON object"),
        (
            jwt(json!({ "keys": [ec.clone(), ec.clone()] })),
            "used twice",
        ),
    ];
    let before = counts(&s).await;
    let events_before = events(&s, "prod").await.len();
    for (body, want) in cases {
        let got = s.admin_post(CLIENTS, body.clone()).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        let msg = str_of(&got.1, "message");
        assert!(msg.contains(want), "{body}: {want:?} not in {msg:?}");
    }
    assert_eq!(counts(&s).await, before, "a refused client writes nothing");
    assert_eq!(events(&s, "prod").await.len(), events_before);
    let (_, list) = s.admin_get(CLIENTS).await;
    assert_eq!(list["data"], json!([]));
}

async fn secret_rotation_keeps_the_old_secret_for_the_overlap(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let c = create_client(
        &s,
        json!({ "name": "svc", "token_endpoint_auth_method": "client_secret_post",
                "grant_types": ["client_credentials"], "scopes": ["jobs"] }),
    )
    .await;
    let id = str_of(&c, "id");
    let first = str_of(&c, "client_secret").to_owned();
    let rotate = format!("{CLIENTS}/{id}/secret");

    let (status, r) = s.admin_post(&rotate, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let second = str_of(&r, "client_secret").to_owned();
    assert!(second.starts_with("pcsec_"));
    assert_ne!(second, first);
    assert_eq!(r["has_secret"], true);
    let created = str_of(&r, "secret_created_at");
    let expires = str_of(&r, "previous_secret_expires_at");
    let gap = portcullis_core::Timestamp::parse_rfc3339(expires)
        .unwrap()
        .seconds()
        - portcullis_core::Timestamp::parse_rfc3339(created)
            .unwrap()
            .seconds();
    assert_eq!(gap, 86_400, "the default overlap is one day");
    let kinds: Vec<Value> = events(&s, "prod")
        .await
        .iter()
        .rev()
        .take(2)
        .map(|e| e["event"].clone())
        .collect();
    assert_eq!(
        kinds,
        ["credential.rotated", "client.secret_rotated"],
        "the client's event, then the credential's"
    );

    // Both secrets verify during the overlap; the store holds digests only.
    let stored = s
        .app()
        .store
        .get_client(
            &s.app().store.find_environment("prod").await.unwrap().id,
            &ClientId::parse(id).unwrap(),
        )
        .await
        .unwrap();
    let digest = |x: &str| portcullis_crypto::secret_digest(&portcullis_core::Secret::new(x));
    assert_eq!(stored.secret_digest, Some(digest(&second)));
    assert_eq!(stored.previous_secret_digest, Some(digest(&first)));

    let (_, shown) = s.admin_get(&format!("{CLIENTS}/{id}")).await;
    assert!(shown.get("client_secret").is_none());
    assert_eq!(shown["has_secret"], true);

    // overlap 0 ends the old secret at once.
    let (status, r) = s.admin_post(&rotate, json!({ "overlap_seconds": 0 })).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    assert!(r["previous_secret_expires_at"].is_null(), "{r}");

    // A client without a secret has nothing to rotate.
    let public = create_client(
        &s,
        json!({ "name": "spa", "kind": "public", "redirect_uris": ["http://localhost:3000/cb"] }),
    )
    .await;
    let before = counts(&s).await;
    for (path, body) in [
        (&rotate, json!({ "overlap_seconds": -1 })),
        (&rotate, json!({ "overlap_seconds": 2_592_001 })),
        (&rotate, json!({ "overlap": 5 })),
        (
            &format!("{CLIENTS}/{}/secret", str_of(&public, "id")),
            json!({}),
        ),
    ] {
        let got = s.admin_post(path, body).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    assert_eq!(
        counts(&s).await,
        before,
        "a refused rotation writes nothing"
    );
}

async fn client_changes_are_checked_as_a_whole(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let c = create_client(
        &s,
        json!({ "name": "app", "redirect_uris": ["https://app.example.com/cb"] }),
    )
    .await;
    let path = format!("{CLIENTS}/{}", str_of(&c, "id"));

    // Each change alone is fine; the result must be too.
    let before = counts(&s).await;
    for (body, want) in [
        (json!({ "redirect_uris": [] }), "at least one redirect URI"),
        (
            json!({ "token_endpoint_auth_method": "none" }),
            "confidential client authenticates",
        ),
        (
            json!({ "token_endpoint_auth_method": "private_key_jwt" }),
            "needs jwks",
        ),
        (
            json!({ "kind": "public", "token_endpoint_auth_method": "client_secret_post" }),
            "public client",
        ),
        (
            json!({ "refresh_idle_ttl_seconds": 99_999_999 }),
            "refresh_idle_ttl_seconds",
        ),
        (json!({ "secret": "x" }), "unknown field"),
    ] {
        let got = s.admin_patch(&path, body.clone()).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert!(
            str_of(&got.1, "message").contains(want),
            "{body}: {}",
            got.1
        );
    }
    assert_eq!(counts(&s).await, before, "a refused change writes nothing");

    let (status, v) = s
        .admin_patch(
            &path,
            json!({ "name": "renamed", "scopes": ["openid"], "access_token_ttl_seconds": 600 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["name"], "renamed");
    assert_eq!(v["scopes"], json!(["openid"]));
    assert_eq!(v["has_secret"], true);
    assert!(
        v.get("client_secret").is_none(),
        "an unchanged secret is not shown"
    );

    // Public: the kind's method follows and the secret goes.
    let (status, v) = s.admin_patch(&path, json!({ "kind": "public" })).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["token_endpoint_auth_method"], "none");
    assert_eq!(v["has_secret"], false);
    // Back to confidential: a new secret, shown once.
    let (status, v) = s
        .admin_patch(&path, json!({ "kind": "confidential" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["token_endpoint_auth_method"], "client_secret_basic");
    assert!(str_of(&v, "client_secret").starts_with("pcsec_"));
    let kinds: Vec<String> = events(&s, "prod")
        .await
        .iter()
        .map(|e| str_of(e, "event").to_owned())
        .collect();
    assert_eq!(
        kinds[kinds.len() - 3..],
        ["client.updated", "client.updated", "client.updated"]
    );
}

async fn users_are_created_disabled_and_reset(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let org = create_org(&s, "prod", "Acme", &["acme.example"]).await;
    let other = create_org(&s, "prod", "Other", &["other.example"]).await;
    let users = format!(
        "/environments/prod/organizations/{}/users",
        str_of(&org, "id")
    );

    let (status, ann) = s
        .admin_post(
            &users,
            json!({ "email": "Ann@ACME.example", "password": "correct horse battery", "first_name": "Ann" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{ann}");
    assert_eq!(ann["object"], "user");
    assert_eq!(ann["email"], "ann@acme.example");
    assert_eq!(ann["first_name"], "Ann");
    assert_eq!(ann["disabled"], false);
    assert!(
        ann.get("password").is_none(),
        "a given password is not echoed"
    );
    let ann_path = format!("{users}/{}", str_of(&ann, "id"));

    // No password: one is generated and shown once.
    let (status, bob) = s
        .admin_post(&users, json!({ "email": "bob@acme.example" }))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{bob}");
    let generated = str_of(&bob, "password").to_owned();
    assert_eq!(generated.len(), 24);
    let (_, shown) = s
        .admin_get(&format!("{users}/{}", str_of(&bob, "id")))
        .await;
    assert!(shown.get("password").is_none());
    let (_, audit) = s.admin_get("/environments/prod/audit?limit=100").await;
    for text in [
        shown.to_string(),
        json!(events(&s, "prod").await).to_string(),
        audit.to_string(),
    ] {
        assert!(
            !text.contains(&generated) && !text.contains("argon2"),
            "{text}"
        );
    }
    let env_id = s.app().store.find_environment("prod").await.unwrap().id;
    let login = |email: &'static str| {
        let env_id = env_id.clone();
        let s = &s;
        async move {
            s.app()
                .store
                .user_for_login(&env_id, email)
                .await
                .unwrap()
                .unwrap()
                .1
        }
    };
    let bob_hash = login("bob@acme.example").await;
    assert!(bob_hash.starts_with("$argon2id$"));
    assert!(s.app().passwords.verify(&generated, Some(&bob_hash)).await);

    // Refusals write nothing.
    let before = counts(&s).await;
    let events_before = events(&s, "prod").await.len();
    let dup = s
        .admin_post(
            &users,
            json!({ "email": "ANN@acme.example", "password": "another good password" }),
        )
        .await;
    assert_error(&dup, StatusCode::CONFLICT, "user_exists");
    for (body, want) in [
        (
            json!({ "email": "eve@elsewhere.example" }),
            "organization's domains",
        ),
        (
            json!({ "email": "eve@other.example" }),
            "organization's domains",
        ),
        (
            json!({ "email": "eve@acme.example", "password": "short" }),
            "12 characters",
        ),
        (json!({ "email": "not-an-email" }), "'@'"),
        (json!({ "email": "a@b@acme.example" }), "exactly one '@'"),
        (json!({ "email": "\"a b\"@acme.example" }), "local part"),
        (
            json!({ "email": "eve@acme.example", "first_name": "" }),
            "first_name",
        ),
        (
            json!({ "email": "eve@acme.example", "role": "admin" }),
            "unknown field",
        ),
    ] {
        let got = s.admin_post(&users, body.clone()).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        assert!(
            str_of(&got.1, "message").contains(want),
            "{body}: {}",
            got.1
        );
    }
    let got = s
        .admin_patch(&ann_path, json!({ "password": "too short" }))
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert_eq!(counts(&s).await, before);
    assert_eq!(events(&s, "prod").await.len(), events_before);

    // Another organization's path does not show the user.
    let elsewhere = format!(
        "/environments/prod/organizations/{}/users/{}",
        str_of(&other, "id"),
        str_of(&ann, "id")
    );
    assert_error(
        &s.admin_get(&elsewhere).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &s.admin_patch(&elsewhere, json!({ "disabled": true })).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let (_, listed) = s
        .admin_get(&format!(
            "/environments/prod/organizations/{}/users",
            str_of(&other, "id")
        ))
        .await;
    assert_eq!(listed["data"], json!([]));
    let (_, listed) = s.admin_get(&users).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 2);

    // Disable, enable, clear a name, reset the password.
    let (status, v) = s.admin_patch(&ann_path, json!({ "disabled": true })).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["disabled"], true);
    assert!(v["disabled_at"].is_string());
    let (_, v) = s
        .admin_patch(
            &ann_path,
            json!({ "disabled": false, "first_name": null, "last_name": "Lee" }),
        )
        .await;
    assert_eq!(v["disabled"], false);
    assert!(v["first_name"].is_null(), "{v}");
    assert_eq!(v["last_name"], "Lee");
    let old_hash = login("ann@acme.example").await;
    let (status, v) = s
        .admin_patch(&ann_path, json!({ "password": "a brand new passphrase" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v.get("password").is_none());
    let new_hash = login("ann@acme.example").await;
    assert_ne!(old_hash, new_hash);
    assert!(
        s.app()
            .passwords
            .verify("a brand new passphrase", Some(&new_hash))
            .await
    );
    assert!(
        !s.app()
            .passwords
            .verify("correct horse battery", Some(&new_hash))
            .await
    );
    let last = events(&s, "prod").await.last().unwrap().clone();
    assert_eq!(last["event"], "user.updated");
    assert_eq!(last["data"]["password_reset"], true);
    assert!(!last.to_string().contains("passphrase"));
}

async fn another_environment_sees_no_clients_or_users(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    create_env(&s, "other", json!({})).await;
    let org = create_org(&s, "prod", "Acme", &["acme.example"]).await;
    let users = format!(
        "/environments/prod/organizations/{}/users",
        str_of(&org, "id")
    );
    let client = create_client(
        &s,
        json!({ "name": "app", "redirect_uris": ["https://app.example.com/cb"] }),
    )
    .await;
    let (_, user) = s
        .admin_post(&users, json!({ "email": "ann@acme.example" }))
        .await;
    let (status, scoped) = s
        .admin_post(
            "/environments/other/api-keys",
            json!({ "name": "other-admin", "kind": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{scoped}");
    let key = str_of(&scoped, "secret").to_owned();
    let client_path = format!("{CLIENTS}/{}", str_of(&client, "id"));
    let user_path = format!("{users}/{}", str_of(&user, "id"));

    let before = counts(&s).await;
    let calls = [
        (Method::GET, CLIENTS.to_owned(), None),
        (
            Method::POST,
            CLIENTS.to_owned(),
            Some(json!({ "name": "x", "redirect_uris": ["https://x.example/cb"] })),
        ),
        (Method::GET, client_path.clone(), None),
        (
            Method::PATCH,
            client_path.clone(),
            Some(json!({ "name": "y" })),
        ),
        (Method::DELETE, client_path.clone(), None),
        (
            Method::POST,
            format!("{client_path}/secret"),
            Some(json!({})),
        ),
        (Method::GET, users.clone(), None),
        (
            Method::POST,
            users.clone(),
            Some(json!({ "email": "eve@acme.example" })),
        ),
        (Method::GET, user_path.clone(), None),
        (
            Method::PATCH,
            user_path.clone(),
            Some(json!({ "disabled": true })),
        ),
    ];
    for (method, path, body) in calls {
        let got = s
            .request(
                method.clone(),
                &format!("/admin/v1{path}"),
                Some(&key),
                body.as_ref(),
            )
            .await;
        assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    }
    // The same paths with the client of prod under the other environment: not found either.
    let cross = format!(
        "/admin/v1/environments/other/clients/{}",
        str_of(&client, "id")
    );
    let got = s.request(Method::GET, &cross, Some(&key), None).await;
    assert_error(&got, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(counts(&s).await, before);

    // The global key still sees them unchanged.
    let (_, c) = s.admin_get(&client_path).await;
    assert_eq!(c["name"], "app");
    let (_, u) = s.admin_get(&user_path).await;
    assert_eq!(u["disabled"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_documents_clients_and_users() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (status, doc) = s.admin_get("/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    let paths = &doc["paths"];
    for (path, methods) in [
        ("/admin/v1/environments/{env}/clients", &["get", "post"][..]),
        (
            "/admin/v1/environments/{env}/clients/{client}",
            &["get", "patch", "delete"],
        ),
        (
            "/admin/v1/environments/{env}/clients/{client}/secret",
            &["post"],
        ),
        (
            "/admin/v1/environments/{env}/organizations/{org}/users",
            &["get", "post"],
        ),
        (
            "/admin/v1/environments/{env}/organizations/{org}/users/{user}",
            &["get", "patch"],
        ),
    ] {
        for m in methods {
            assert!(
                paths[path].get(*m).is_some(),
                "{m} {path} is not documented"
            );
        }
    }
    for schema in [
        "CreateClient",
        "UpdateClient",
        "ClientView",
        "CreatedClient",
        "RotateClientSecret",
        "CreateUser",
        "UpdateUser",
        "UserView",
        "CreatedUser",
    ] {
        assert!(
            doc["components"]["schemas"].get(schema).is_some(),
            "{schema} missing"
        );
    }
}
