//! Machine credentials (issue 7, part 4) over HTTP with a fake clock: the inventory lists every
//! kind with its owner, dates and last use; an expired client secret or API key is refused at
//! use; each kind rotates with an overlap (both credentials work, then only the new one) and
//! says so with `credential.rotated`; the sweep announces each expiry with exactly one
//! `credential.expired`, however often and on however many nodes it runs.

use std::time::Duration;

use portcullis_core::model::SigningAlg;
use portcullis_core::{FakeClock, Timestamp};
use portcullis_crypto::SigningKey;
use portcullis_crypto::jws::generate_pkcs8;
use portcullis_testkit::server::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::oauth::{Answer, Auth, assert_oauth_error, issued, post_form, service};
use crate::webhooks::{Answer as Reply, Receiver, allow_receiver, create_endpoint, signed_by};
use crate::{assert_error, create_env, str_of};

both_backends!(
    inventory_lists_each_kind_with_owner_dates_and_last_use,
    expired_client_secrets_and_api_keys_are_refused_at_use,
    rotation_keeps_both_credentials_during_the_overlap_then_only_the_new_one,
    expiry_is_announced_once_per_credential,
);

const T0: Timestamp = Timestamp(1_800_000_000_000);
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

async fn server(backend: Backend, clock: &FakeClock) -> TestServer {
    TestServer::builder()
        .backend(backend)
        .clock(clock.clone())
        .start()
        .await
        .unwrap()
}

fn at(seconds: i64) -> String {
    T0.plus_seconds(seconds).to_rfc3339()
}

/// The credential report of `env` (or of everything with `None`).
async fn report(s: &TestServer, env: Option<&str>, stale_days: Option<u32>) -> Value {
    let mut path = env.map_or_else(
        || "/credentials".to_owned(),
        |e| format!("/environments/{e}/credentials"),
    );
    if let Some(d) = stale_days {
        path += &format!("?stale_days={d}");
    }
    let (st, v) = s.admin_get(&path).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    for secret in ["pcsec_", "pcenv_", "pcadm_", "whsec_"] {
        assert!(!v.to_string().contains(secret), "no secret in {v}");
    }
    v
}

/// The rows of `kind`.
fn rows<'a>(r: &'a Value, kind: &str) -> Vec<&'a Value> {
    r["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == kind)
        .collect()
}

/// The one row with this reference.
#[track_caller]
fn row<'a>(r: &'a Value, id: &str) -> &'a Value {
    let found: Vec<_> = r["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["id"] == id)
        .collect();
    assert_eq!(found.len(), 1, "one row {id} in {r}");
    found[0]
}

/// Every event of `kind` in `env`, oldest first.
async fn events(s: &TestServer, env: &str, kind: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut path = format!("/environments/{env}/events?limit=100");
        if let Some(a) = &after {
            path += &format!("&after={a}");
        }
        let (st, v) = s.admin_get(&path).await;
        assert_eq!(st, StatusCode::OK, "{v}");
        let page = v["data"].as_array().unwrap().clone();
        for e in &page {
            for secret in ["pcsec_", "pcenv_", "pcadm_", "whsec_"] {
                assert!(!e.to_string().contains(secret), "no secret in {e}");
            }
        }
        out.extend(page.into_iter().filter(|e| e["event"] == kind));
        match v["list_metadata"]["after"].as_str() {
            Some(a) => after = Some(a.to_owned()),
            None => return out,
        }
    }
}

async fn create_client(s: &TestServer, env: &str, body: Value) -> Value {
    let (st, c) = s
        .admin_post(&format!("/environments/{env}/clients"), body)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    c
}

fn basic(c: &Value, secret: &str) -> Auth {
    Auth::Basic(str_of(c, "id").to_owned(), secret.to_owned())
}

/// A client-credentials request at `env`'s token endpoint.
async fn cc(s: &TestServer, env: &str, auth: &Auth) -> Answer {
    post_form(
        s,
        &s.at(&format!("/e/{env}/oauth2/token")),
        auth,
        &[("grant_type", "client_credentials")],
    )
    .await
}

fn es256(kid: &str) -> SigningKey {
    SigningKey::from_pkcs8(
        kid,
        SigningAlg::ES256,
        &generate_pkcs8(SigningAlg::ES256).unwrap(),
    )
    .unwrap()
}

/// A `private_key_jwt` request signed by `key`, valid at the server's (fake) time.
async fn cc_jwt(s: &TestServer, env: &str, client: &str, key: &SigningKey, jti: &str) -> Answer {
    let now = s.app().now().seconds();
    let claims = json!({
        "iss": client, "sub": client, "aud": s.at(&format!("/e/{env}/oauth2/token")),
        "jti": jti, "iat": now, "exp": now + 60,
    });
    let jwt = key.sign_compact(None, &claims).unwrap();
    cc(s, env, &Auth::Assertion(client.to_owned(), jwt)).await
}

/// `GET /e/{env}/events` with an environment API key: the status and the error code.
async fn pull(s: &TestServer, env: &str, key: &str) -> (StatusCode, Value) {
    s.request(Method::GET, &format!("/e/{env}/events"), Some(key), None)
        .await
}

async fn api_key(s: &TestServer, env: Option<&str>, body: Value) -> Value {
    let path = env.map_or_else(
        || "/api-keys".to_owned(),
        |e| format!("/environments/{e}/api-keys"),
    );
    let (st, k) = s.admin_post(&path, body).await;
    assert_eq!(st, StatusCode::CREATED, "{k}");
    k
}

async fn deliver_all(s: &TestServer) {
    let d = portcullis_server::webhooks::dispatcher(s.app(), s.config());
    while d.run_once().await.unwrap().leased > 0 {}
}

async fn inventory_lists_each_kind_with_owner_dates_and_last_use(backend: Backend) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    create_env(&s, "inv", json!({})).await;
    let receiver = Receiver::start(&[], Reply::Status(200)).await;
    allow_receiver(&s, "inv", receiver.port, 0).await;
    let hook_url = receiver.url("/hook");
    let (whk, _) = create_endpoint(&s, "inv", json!({ "url": hook_url })).await;
    let billing = create_client(
        &s,
        "inv",
        json!({ "name": "Billing", "grant_types": ["client_credentials"], "scopes": ["api.read"] }),
    )
    .await;
    let secret = str_of(&billing, "client_secret").to_owned();
    let (k1, k2) = (es256("k1"), es256("k2"));
    let mut signer = service("private_key_jwt", &["api.read"], &[]);
    signer["name"] = json!("Signer");
    signer["jwks"] = json!({ "keys": [k1.public_jwk(), k2.public_jwk()] });
    let signer = create_client(&s, "inv", signer).await;
    let signer_id = str_of(&signer, "id");
    let puller = api_key(
        &s,
        Some("inv"),
        json!({ "name": "puller", "expires_in_seconds": 30 * DAY }),
    )
    .await;
    assert_eq!(puller["expires_at"], at(30 * DAY), "{puller}");
    let ops = api_key(&s, Some("inv"), json!({ "name": "ops", "kind": "admin" })).await;

    // An hour later each credential is used once.
    clock.advance_seconds(HOUR);
    issued(&cc(&s, "inv", &basic(&billing, &secret)).await);
    issued(&cc_jwt(&s, "inv", signer_id, &k2, "j-1").await);
    assert_eq!(
        pull(&s, "inv", str_of(&puller, "secret")).await.0,
        StatusCode::OK
    );
    deliver_all(&s).await;
    assert!(!receiver.seen().is_empty(), "a delivery went out");

    let r = report(&s, Some("inv"), None).await;
    assert_eq!(r["object"], "credential_report");
    assert_eq!(r["generated_at"], at(HOUR));
    assert_eq!(r["summary"]["total"], 6, "{r}");
    assert_eq!(r["summary"]["with_problems"], 0, "{r}");

    let cs = rows(&r, "client_secret");
    assert_eq!(cs.len(), 1, "{r}");
    let cs = cs[0];
    assert!(
        str_of(cs, "id").starts_with(&format!("{}/secret/", str_of(&billing, "id"))),
        "{cs}"
    );
    assert_eq!(cs["owner_type"], "client");
    assert_eq!(cs["owner_id"], billing["id"]);
    assert_eq!(cs["owner_name"], "Billing");
    assert_eq!(cs["environment_id"], billing["environment_id"]);
    assert_eq!(cs["created_at"], at(0));
    assert_eq!(cs["last_used_at"], at(HOUR));
    assert_eq!(cs["expires_at"], Value::Null);
    assert_eq!(cs["rotation_due_at"], at(90 * DAY), "90 days by default");
    assert_eq!(cs["state"], "active");
    assert_eq!(cs["problems"], json!([]));

    let jwk1 = row(&r, &format!("{signer_id}/jwk/k1"));
    let jwk2 = row(&r, &format!("{signer_id}/jwk/k2"));
    for k in [jwk1, jwk2] {
        assert_eq!(k["kind"], "private_key_jwt");
        assert_eq!(k["owner_name"], "Signer");
        assert_eq!(k["created_at"], at(0));
        assert_eq!(
            k["rotation_due_at"],
            at(365 * DAY),
            "a year for public keys"
        );
    }
    assert_eq!(jwk1["last_used_at"], Value::Null, "k1 never signed");
    assert_eq!(jwk2["last_used_at"], at(HOUR));

    let env_key = row(&r, str_of(&puller, "id"));
    assert_eq!(env_key["kind"], "environment_api_key");
    assert_eq!(env_key["owner_type"], "api_key");
    assert_eq!(env_key["owner_name"], "puller");
    assert_eq!(env_key["last_used_at"], at(HOUR));
    assert_eq!(env_key["expires_at"], at(30 * DAY));
    assert_eq!(
        env_key["rotation_due_at"],
        at(30 * DAY),
        "due at its expiry, before the 90 days"
    );
    let admin_key = row(&r, str_of(&ops, "id"));
    assert_eq!(admin_key["kind"], "admin_api_key");
    assert_eq!(admin_key["owner_name"], "ops");

    let hook = row(&r, &format!("{whk}/secret"));
    assert_eq!(hook["kind"], "webhook_secret");
    assert_eq!(hook["owner_type"], "webhook_endpoint");
    assert_eq!(hook["owner_id"], whk.as_str());
    assert_eq!(hook["owner_name"], hook_url.as_str());
    assert_eq!(hook["created_at"], at(0));
    assert_eq!(
        hook["last_used_at"],
        at(HOUR),
        "the latest accepted delivery"
    );

    // The global report adds the global admin keys; the environment report does not.
    let all = report(&s, None, None).await;
    let bootstrap: Vec<_> = rows(&all, "admin_api_key")
        .into_iter()
        .filter(|k| k["owner_name"] == "bootstrap")
        .collect();
    assert_eq!(bootstrap.len(), 1, "{all}");
    assert_eq!(bootstrap[0]["environment_id"], Value::Null);
    assert!(
        rows(&r, "admin_api_key")
            .iter()
            .all(|k| k["owner_name"] != "bootstrap")
    );

    // An hour after creation nothing is stale yet.
    assert_eq!(
        report(&s, Some("inv"), Some(1)).await["summary"]["stale"],
        0
    );
    // A day and half an hour after creation the secret is used again: with stale_days = 1, what
    // was never used (k1, the admin key) is flagged; what was used within a day is not.
    clock.advance_seconds(DAY - HOUR / 2);
    issued(&cc(&s, "inv", &basic(&billing, &secret)).await);
    let r = report(&s, Some("inv"), Some(1)).await;
    assert_eq!(
        row(&r, &format!("{signer_id}/jwk/k1"))["problems"],
        json!(["stale"]),
        "{r}"
    );
    assert_eq!(
        row(&r, str_of(cs, "id"))["last_used_at"],
        at(DAY + HOUR / 2)
    );
    assert_eq!(row(&r, str_of(cs, "id"))["problems"], json!([]));
    assert_eq!(
        row(&r, &format!("{signer_id}/jwk/k2"))["problems"],
        json!([]),
        "used 23.5 hours ago"
    );
    assert_eq!(row(&r, str_of(&ops, "id"))["problems"], json!(["stale"]));
    assert_eq!(r["summary"]["stale"], 2, "k1 and the unused admin key: {r}");
    let (st, v) = s
        .admin_get("/environments/inv/credentials?stale_days=0")
        .await;
    assert_error(
        &(st, v),
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_request",
    );

    // The routes are in the OpenAPI document like the others.
    let (_, doc) = s.admin_get("/openapi.json").await;
    for (path, method) in [
        ("/admin/v1/credentials", "get"),
        ("/admin/v1/environments/{env}/credentials", "get"),
        ("/admin/v1/api-keys/{key}/rotate", "post"),
    ] {
        assert!(doc["paths"][path][method].is_object(), "{path} {method}");
    }
    assert!(doc["components"]["schemas"]["CredentialReport"].is_object());
}

async fn expired_client_secrets_and_api_keys_are_refused_at_use(backend: Backend) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    create_env(&s, "exp", json!({})).await;
    let c = create_client(
        &s,
        "exp",
        json!({ "name": "Short", "grant_types": ["client_credentials"], "scopes": ["api.read"], "secret_expires_in_seconds": HOUR }),
    )
    .await;
    assert_eq!(c["secret_expires_at"], at(HOUR), "{c}");
    let secret = str_of(&c, "client_secret").to_owned();
    let env_key = api_key(
        &s,
        Some("exp"),
        json!({ "name": "puller", "expires_in_seconds": HOUR }),
    )
    .await;
    let admin = api_key(
        &s,
        None,
        json!({ "name": "temp", "expires_in_seconds": HOUR }),
    )
    .await;
    let admin_secret = str_of(&admin, "secret");

    // Valid until the last millisecond before the expiry.
    clock.set(Timestamp(T0.millis() + HOUR * 1000 - 1));
    issued(&cc(&s, "exp", &basic(&c, &secret)).await);
    assert_eq!(
        pull(&s, "exp", str_of(&env_key, "secret")).await.0,
        StatusCode::OK
    );
    let (st, _) = s
        .request(
            Method::GET,
            "/admin/v1/environments",
            Some(admin_secret),
            None,
        )
        .await;
    assert_eq!(st, StatusCode::OK);

    // From the expiry on, each is refused.
    clock.set(T0.plus_seconds(HOUR));
    let refused = cc(&s, "exp", &basic(&c, &secret)).await;
    assert_oauth_error(&refused, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(refused.text.contains("expired"), "{}", refused.text);
    let wrong = cc(&s, "exp", &basic(&c, "pcsec_wrong")).await;
    assert_oauth_error(&wrong, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(
        !wrong.text.contains("expired"),
        "a caller without the secret learns nothing: {}",
        wrong.text
    );
    let got = pull(&s, "exp", str_of(&env_key, "secret")).await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(
        got.1["message"].as_str().unwrap().contains("expired"),
        "{}",
        got.1
    );
    let got = s
        .request(
            Method::GET,
            "/admin/v1/environments",
            Some(admin_secret),
            None,
        )
        .await;
    assert_error(&got, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(
        got.1["message"].as_str().unwrap().contains("expired"),
        "{}",
        got.1
    );

    // The report flags both as expired (still configured), with exit-worthy problems.
    let r = report(&s, Some("exp"), None).await;
    let cs = &rows(&r, "client_secret")[0];
    assert_eq!(cs["state"], "expired");
    assert_eq!(cs["problems"], json!(["expired"]));
    let k = row(&r, str_of(&env_key, "id"));
    assert_eq!(k["state"], "expired");
    assert_eq!(k["problems"], json!(["expired"]));
    // Revoking the key clears its problem.
    let (st, _) = s
        .admin_delete(&format!("/api-keys/{}", str_of(&env_key, "id")))
        .await;
    assert_eq!(st, StatusCode::OK);
    let r = report(&s, Some("exp"), None).await;
    assert_eq!(row(&r, str_of(&env_key, "id"))["problems"], json!([]));

    // Bad lifetimes are refused by name.
    let bad = s
        .admin_post(
            "/environments/exp/clients",
            json!({ "name": "x", "grant_types": ["client_credentials"], "scopes": ["api.read"],
                    "secret_expires_in_seconds": 10 }),
        )
        .await;
    assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    assert!(
        bad.1["message"]
            .as_str()
            .unwrap()
            .contains("secret_expires_in_seconds")
    );
    let public = s
        .admin_post(
            "/environments/exp/clients",
            json!({ "name": "spa", "kind": "public", "redirect_uris": ["http://127.0.0.1:9/cb"],
                    "secret_expires_in_seconds": HOUR }),
        )
        .await;
    assert_error(&public, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let bad = s
        .admin_post(
            "/environments/exp/api-keys",
            json!({ "name": "x", "expires_in_seconds": -1 }),
        )
        .await;
    assert_error(&bad, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
}

async fn rotation_keeps_both_credentials_during_the_overlap_then_only_the_new_one(
    backend: Backend,
) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    create_env(&s, "rot", json!({})).await;
    let overlap = 600;

    // Client secret.
    let c = create_client(
        &s,
        "rot",
        json!({ "name": "Billing", "grant_types": ["client_credentials"], "scopes": ["api.read"] }),
    )
    .await;
    let old_secret = str_of(&c, "client_secret").to_owned();
    let (st, rotated) = s
        .admin_post(
            &format!("/environments/rot/clients/{}/secret", str_of(&c, "id")),
            json!({ "overlap_seconds": overlap, "expires_in_seconds": 30 * DAY }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    let new_secret = str_of(&rotated, "client_secret").to_owned();
    assert_eq!(rotated["secret_expires_at"], at(30 * DAY));
    assert_eq!(rotated["previous_secret_expires_at"], at(overlap));

    // API key.
    let key_a = api_key(&s, Some("rot"), json!({ "name": "puller" })).await;
    let (st, key_b) = s
        .admin_post(
            &format!("/api-keys/{}/rotate", str_of(&key_a, "id")),
            json!({ "overlap_seconds": overlap }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key_b}");
    assert_eq!(key_b["name"], "puller");
    assert_eq!(key_b["kind"], "environment");
    assert_eq!(
        key_b["expires_at"],
        Value::Null,
        "the old key had no expiry"
    );
    assert_eq!(key_b["replaced"]["id"], key_a["id"]);
    assert_eq!(key_b["replaced"]["replaced_by"], key_b["id"]);
    assert_eq!(key_b["replaced"]["expires_at"], at(overlap));
    let again = s
        .admin_post(
            &format!("/api-keys/{}/rotate", str_of(&key_a, "id")),
            json!({}),
        )
        .await;
    assert_error(&again, StatusCode::CONFLICT, "api_key_rotated");

    // A global admin key rotated without overlap is revoked at once.
    let g = api_key(&s, None, json!({ "name": "automation" })).await;
    let (st, g2) = s
        .admin_post(
            &format!("/api-keys/{}/rotate", str_of(&g, "id")),
            json!({ "overlap_seconds": 0 }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{g2}");
    assert_eq!(g2["replaced"]["revoked_at"], at(0));
    let as_key = |k: &str| {
        let s = &s;
        let k = k.to_owned();
        async move {
            s.request(Method::GET, "/admin/v1/environments", Some(&k), None)
                .await
                .0
        }
    };
    assert_eq!(as_key(str_of(&g, "secret")).await, StatusCode::UNAUTHORIZED);
    assert_eq!(as_key(str_of(&g2, "secret")).await, StatusCode::OK);

    // Webhook secret.
    let receiver = Receiver::start(&[], Reply::Status(200)).await;
    allow_receiver(&s, "rot", receiver.port, 0).await;
    let (whk, old_whsec) =
        create_endpoint(&s, "rot", json!({ "url": receiver.url("/hook") })).await;
    let (st, w) = s
        .admin_post(
            &format!("/environments/rot/webhook-endpoints/{whk}/secret"),
            json!({ "overlap_seconds": overlap }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{w}");
    let new_whsec = str_of(&w, "secret").to_owned();

    // private_key_jwt: the new key is added beside the old one.
    let (k1, k2) = (es256("k1"), es256("k2"));
    let mut body = service("private_key_jwt", &[], &[]);
    body["jwks"] = json!({ "keys": [k1.public_jwk()] });
    let jc = create_client(&s, "rot", body).await;
    let jc_id = str_of(&jc, "id").to_owned();
    clock.advance_seconds(60);
    let (st, v) = s
        .admin_patch(
            &format!("/environments/rot/clients/{jc_id}"),
            json!({ "jwks": { "keys": [k1.public_jwk(), k2.public_jwk()] } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // During the overlap every credential, old and new, works.
    issued(&cc(&s, "rot", &basic(&c, &old_secret)).await);
    issued(&cc(&s, "rot", &basic(&c, &new_secret)).await);
    assert_eq!(
        pull(&s, "rot", str_of(&key_a, "secret")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        pull(&s, "rot", str_of(&key_b, "secret")).await.0,
        StatusCode::OK
    );
    issued(&cc_jwt(&s, "rot", &jc_id, &k1, "j-1").await);
    issued(&cc_jwt(&s, "rot", &jc_id, &k2, "j-2").await);
    deliver_all(&s).await;
    let during = receiver.seen();
    assert!(!during.is_empty());
    assert!(
        during
            .iter()
            .all(|r| signed_by(&old_whsec, r) && signed_by(&new_whsec, r)),
        "both secrets sign during the overlap"
    );

    let r = report(&s, Some("rot"), None).await;
    let previous = rows(&r, "client_secret_previous");
    assert_eq!(previous.len(), 1, "{r}");
    assert_eq!(previous[0]["state"], "overlap");
    assert_eq!(previous[0]["expires_at"], at(overlap));
    assert_eq!(previous[0]["created_at"], at(0));
    assert_eq!(previous[0]["problems"], json!([]));
    assert_eq!(row(&r, str_of(&key_a, "id"))["state"], "overlap");
    assert_eq!(
        row(&r, &format!("{whk}/secret/previous"))["state"],
        "overlap"
    );
    assert_eq!(
        row(&r, &format!("{jc_id}/jwk/k2"))["created_at"],
        at(60),
        "first seen when it was added"
    );

    // Each rotation said so, naming references and never a secret.
    let rotated_events = events(&s, "rot", "credential.rotated").await;
    let kinds: Vec<&str> = rotated_events
        .iter()
        .map(|e| e["data"]["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "client_secret",
            "environment_api_key",
            "webhook_secret",
            "private_key_jwt"
        ],
        "{rotated_events:?}"
    );
    let cs = &rotated_events[0]["data"];
    assert_eq!(cs["owner_id"], c["id"]);
    assert_eq!(cs["owner_name"], "Billing");
    assert_eq!(cs["overlap_until"], at(overlap));
    assert_eq!(cs["expires_at"], at(30 * DAY));
    assert_eq!(cs["id"], rows(&r, "client_secret")[0]["id"]);
    assert_eq!(cs["previous"], previous[0]["id"]);
    let key = &rotated_events[1]["data"];
    assert_eq!((&key["id"], &key["previous"]), (&key_b["id"], &key_a["id"]));
    let jwk = &rotated_events[3]["data"];
    assert_eq!(jwk["id"], format!("{jc_id}/jwk/k2"));
    assert_eq!(jwk["previous"], format!("{jc_id}/jwk/k1"));
    assert_eq!(jwk["overlap_until"], Value::Null, "until k1 is removed");

    // The old key of private_key_jwt is removed: only the new one verifies.
    let (st, v) = s
        .admin_patch(
            &format!("/environments/rot/clients/{jc_id}"),
            json!({ "jwks": { "keys": [k2.public_jwk()] } }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_oauth_error(
        &cc_jwt(&s, "rot", &jc_id, &k1, "j-3").await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    issued(&cc_jwt(&s, "rot", &jc_id, &k2, "j-4").await);

    // After the overlap only the new credentials work.
    clock.set(T0.plus_seconds(overlap));
    assert_oauth_error(
        &cc(&s, "rot", &basic(&c, &old_secret)).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    issued(&cc(&s, "rot", &basic(&c, &new_secret)).await);
    assert_eq!(
        pull(&s, "rot", str_of(&key_a, "secret")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        pull(&s, "rot", str_of(&key_b, "secret")).await.0,
        StatusCode::OK
    );
    let before = receiver.seen().len();
    let (st, _) = s
        .admin_patch(
            &format!("/environments/rot/clients/{}", str_of(&c, "id")),
            json!({ "name": "Billing 2" }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    deliver_all(&s).await;
    assert!(receiver.wait_for(before + 1, Duration::from_secs(10)).await);
    let after = &receiver.seen()[before..];
    assert!(
        after
            .iter()
            .all(|r| signed_by(&new_whsec, r) && !signed_by(&old_whsec, r)),
        "only the new secret signs after the overlap"
    );
    let r = report(&s, Some("rot"), None).await;
    assert!(rows(&r, "client_secret_previous").is_empty(), "{r}");
    assert!(rows(&r, "webhook_secret_previous").is_empty(), "{r}");
    assert_eq!(rows(&r, "private_key_jwt").len(), 1);
    assert_eq!(r["summary"]["with_problems"], 0, "{r}");
}

async fn expiry_is_announced_once_per_credential(backend: Backend) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    create_env(&s, "once", json!({})).await;
    let sweep = || portcullis_server::credentials::sweep_credentials(s.app());

    let short = create_client(
        &s,
        "once",
        json!({ "name": "Short", "grant_types": ["client_credentials"], "scopes": ["api.read"], "secret_expires_in_seconds": HOUR }),
    )
    .await;
    let rotated = create_client(
        &s,
        "once",
        json!({ "name": "Rotated", "grant_types": ["client_credentials"], "scopes": ["api.read"] }),
    )
    .await;
    let (st, _) = s
        .admin_post(
            &format!(
                "/environments/once/clients/{}/secret",
                str_of(&rotated, "id")
            ),
            json!({ "overlap_seconds": 600 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let expiring_key = api_key(
        &s,
        Some("once"),
        json!({ "name": "expiring", "expires_in_seconds": HOUR }),
    )
    .await;
    let old_key = api_key(&s, Some("once"), json!({ "name": "rotating" })).await;
    let (st, _) = s
        .admin_post(
            &format!("/api-keys/{}/rotate", str_of(&old_key, "id")),
            json!({ "overlap_seconds": 600 }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let global = api_key(
        &s,
        None,
        json!({ "name": "temp", "expires_in_seconds": HOUR }),
    )
    .await;

    assert_eq!(
        sweep().await.unwrap(),
        Vec::<String>::new(),
        "nothing due yet"
    );
    clock.advance_seconds(HOUR);
    let first = sweep().await.unwrap();
    assert_eq!(first.len(), 5, "{first:?}");
    assert_eq!(
        sweep().await.unwrap(),
        Vec::<String>::new(),
        "announced once"
    );

    let expired = events(&s, "once", "credential.expired").await;
    assert_eq!(
        expired.len(),
        4,
        "the global key has no event log: {expired:?}"
    );
    let by_kind = |k: &str| {
        expired
            .iter()
            .filter(|e| e["data"]["kind"] == k)
            .map(|e| e["data"].clone())
            .collect::<Vec<_>>()
    };
    let cs = by_kind("client_secret");
    assert_eq!(cs.len(), 1);
    assert_eq!(cs[0]["owner_id"], short["id"]);
    assert_eq!(cs[0]["reason"], "expired");
    assert_eq!(cs[0]["expires_at"], at(HOUR));
    let prev = by_kind("client_secret_previous");
    assert_eq!(prev.len(), 1);
    assert_eq!(prev[0]["owner_id"], rotated["id"]);
    assert_eq!(prev[0]["reason"], "overlap_ended");
    assert_eq!(prev[0]["expires_at"], at(600));
    let keys = by_kind("environment_api_key");
    assert_eq!(keys.len(), 2);
    let reason_of = |id: &Value| {
        keys.iter()
            .find(|k| k["id"] == *id)
            .map(|k| k["reason"].clone())
    };
    assert_eq!(reason_of(&expiring_key["id"]), Some(json!("expired")));
    assert_eq!(reason_of(&old_key["id"]), Some(json!("overlap_ended")));

    // The rotated key's overlap ended: it is revoked (at the end of the overlap) and not flagged;
    // the expiring key is flagged until someone revokes it.
    let (_, k) = s
        .admin_get(&format!("/api-keys/{}", str_of(&old_key, "id")))
        .await;
    assert_eq!(k["revoked_at"], at(600), "{k}");
    let r = report(&s, Some("once"), None).await;
    assert_eq!(row(&r, str_of(&old_key, "id"))["state"], "revoked");
    assert_eq!(row(&r, str_of(&old_key, "id"))["problems"], json!([]));
    assert_eq!(
        row(&r, str_of(&expiring_key, "id"))["problems"],
        json!(["expired"])
    );

    // The global admin key's expiry is in the global audit chain.
    let (st, audit) = s.admin_get("/audit?limit=100").await;
    assert_eq!(st, StatusCode::OK, "{audit}");
    let noted: Vec<_> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["action"] == "credential.expire" && a["target"] == global["id"])
        .collect();
    assert_eq!(noted.len(), 1, "{audit}");

    // Two sweeps at once (two nodes) still announce a new expiry once.
    let another = api_key(
        &s,
        Some("once"),
        json!({ "name": "another", "expires_in_seconds": HOUR }),
    )
    .await;
    clock.advance_seconds(HOUR);
    let (a, b) = tokio::join!(sweep(), sweep());
    let mut both = a.unwrap();
    both.extend(b.unwrap());
    assert_eq!(both, vec![str_of(&another, "id").to_owned()]);
    let expired = events(&s, "once", "credential.expired").await;
    assert_eq!(expired.len(), 5);
}
