//! Declarative configuration and signed bundles over the admin API: export → apply into an empty
//! environment on another server → export gives the same file; plan shows what apply does; apply
//! is all or nothing; every way a bundle can be wrong is refused, audited with its digest, and
//! leaves the database as it was (a dump of every table compared before and after).

use base64::Engine;
use portcullis_bundle::bundle::{self, NewBundle};
use portcullis_bundle::publisher::PublisherKey;
use portcullis_core::model::SigningAlg;
use portcullis_core::{FakeClock, Timestamp};
use portcullis_testkit::server::{ADMIN_KEY, Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Column, Connection, Row};

use crate::{create_env, create_org, str_of};

both_backends!(
    export_apply_export_into_an_empty_environment_is_identical,
    plan_lists_changes_and_a_failed_apply_changes_nothing,
    bad_files_are_refused_naming_the_problem,
    every_bad_bundle_is_refused_audited_and_changes_nothing,
    bundles_change_trust_rotate_keys_and_revoke_api_keys,
);

/// 2026-01-01T00:00:00Z.
const T0: Timestamp = Timestamp(1_767_225_600_000);

async fn server(backend: Backend) -> TestServer {
    TestServer::builder()
        .backend(backend)
        .clock(FakeClock::new(T0))
        .start()
        .await
        .unwrap()
}

/// Every row of every table, as sorted text lines — except the audit chain (refusals are audited
/// by design), API keys (the admin key's last use moves with every request) and bookkeeping.
async fn dump(s: &TestServer) -> Vec<String> {
    sqlx::any::install_default_drivers();
    let mut c = sqlx::AnyConnection::connect(&s.database_url())
        .await
        .unwrap();
    let list = if s.database_url().starts_with("sqlite") {
        "SELECT name FROM sqlite_master WHERE type = 'table'"
    } else {
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema()"
    };
    let mut tables: Vec<String> = sqlx::query_scalar(list).fetch_all(&mut c).await.unwrap();
    tables.retain(|t| {
        ![
            "audit_records",
            "audit_heads",
            "audit_checkpoints",
            "api_keys",
            "_sqlx_migrations",
            "sqlite_sequence",
        ]
        .contains(&t.as_str())
    });
    tables.sort();
    let mut out = Vec::new();
    for t in tables {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT * FROM {t}")))
            .fetch_all(&mut c)
            .await
            .unwrap();
        for r in rows {
            let mut line = format!("{t}:");
            for i in 0..r.len() {
                let v = if let Ok(v) = r.try_get::<Option<String>, _>(i) {
                    format!("{v:?}")
                } else if let Ok(v) = r.try_get::<Option<i64>, _>(i) {
                    format!("{v:?}")
                } else if let Ok(v) = r.try_get::<Option<Vec<u8>>, _>(i) {
                    format!("{:?}", v.map(|b| portcullis_crypto::sha256_hex(&b)))
                } else {
                    panic!(
                        "{t}.{}: a column type the dump cannot read",
                        r.column(i).name()
                    )
                };
                line.push_str(&format!(" {v}"));
            }
            out.push(line);
        }
    }
    out.sort();
    out
}

/// Every audit record of `env`, oldest first.
async fn audit_all(s: &TestServer, env: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let cursor = if after.is_empty() {
            String::new()
        } else {
            format!("&after={after}")
        };
        let (st, page) = s
            .admin_get(&format!("/environments/{env}/audit?limit=100{cursor}"))
            .await;
        assert_eq!(st, StatusCode::OK, "{page}");
        out.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["list_metadata"]["after"].as_str() {
            Some(a) => after = a.to_owned(),
            None => return out,
        }
    }
}

async fn post_raw(
    s: &TestServer,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (StatusCode, Value) {
    let res = s
        .client()
        .post(s.at(&format!("/admin/v1{path}")))
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

async fn export(s: &TestServer, env: &str) -> String {
    let res = s
        .client()
        .get(s.at(&format!("/admin/v1/environments/{env}/config")))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/toml")
    );
    res.text().await.unwrap()
}

async fn plan(s: &TestServer, env: &str, text: &str) -> (StatusCode, Value) {
    post_raw(
        s,
        &format!("/environments/{env}/config/plan"),
        "application/toml",
        text.as_bytes().to_vec(),
    )
    .await
}

async fn apply(s: &TestServer, env: &str, text: &str) -> (StatusCode, Value) {
    post_raw(
        s,
        &format!("/environments/{env}/config/apply"),
        "application/toml",
        text.as_bytes().to_vec(),
    )
    .await
}

fn cert_pem(cn: &str) -> String {
    let k = portcullis_saml::generate_sp_key(cn, T0).unwrap();
    let b = base64::engine::general_purpose::STANDARD.encode(k.certificate_der);
    let lines: Vec<&str> = b
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

fn public_jwk(alg: SigningAlg, kid: &str) -> Value {
    let der = portcullis_crypto::jws::generate_pkcs8(alg).unwrap();
    portcullis_crypto::SigningKey::from_pkcs8(kid, alg, &der)
        .unwrap()
        .public_jwk()
}

/// Populates `env` through the ordinary admin API with one of everything a file describes.
async fn populate(s: &TestServer, env: &str) {
    let (st, v) = s
        .request(
            reqwest::Method::PUT,
            &format!("/admin/v1/environments/{env}/egress-policy"),
            Some(ADMIN_KEY),
            Some(&json!({ "version": 0, "rules": [
                { "id": "hooks", "scheme": "http", "cidr": "127.0.0.0/8", "port": 9, "purposes": ["webhook"] }
            ]})),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let acme = create_org(s, env, "Acme", &["acme.test", "acme.example"]).await;
    create_org(s, env, "Globex", &["globex.test"]).await;
    let (st, saml) = s
        .admin_post(
            &format!("/environments/{env}/organizations/{}/connections", str_of(&acme, "id")),
            json!({ "type": "saml", "name": "adfs", "saml": {
                "allow_sha1": false, "skew_seconds": 60,
                "idp": { "entity_id": "https://adfs.acme.test/adfs", "sso_url": "https://adfs.acme.test/adfs/ls", "certificates_pem": cert_pem("adfs") },
            }}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{saml}");
    let (st, v) = s
        .admin_post(
            &format!(
                "/environments/{env}/connections/{}/activate",
                str_of(&saml, "id")
            ),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = s
        .admin_post(
            &format!(
                "/environments/{env}/organizations/{}/connections",
                str_of(&acme, "id")
            ),
            json!({ "type": "oidc", "name": "entra", "client_secret": "upstream-secret", "oidc": {
                "issuer": "https://login.acme.test/tenant", "client_id": "portcullis",
                "authorization_endpoint": "https://login.acme.test/tenant/authorize",
                "token_endpoint": "https://login.acme.test/tenant/token",
                "jwks": { "keys": [public_jwk(SigningAlg::RS256, "idp-1")] },
            }}),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    for body in [
        json!({ "name": "web", "redirect_uris": ["https://app.test/callback"], "scopes": ["openid", "email"] }),
        json!({ "name": "spa", "kind": "public", "redirect_uris": ["http://127.0.0.1:3000/cb"] }),
        json!({ "name": "batch", "grant_types": ["client_credentials", "urn:ietf:params:oauth:grant-type:token-exchange"],
                "scopes": ["reports:read"], "token_exchange": { "audiences": ["https://api.test"], "scopes": ["reports:read"] },
                "token_endpoint_auth_method": "private_key_jwt", "jwks": { "keys": [public_jwk(SigningAlg::ES256, "batch-1")] },
                "access_token_ttl_seconds": 300 }),
    ] {
        let (st, v) = s
            .admin_post(&format!("/environments/{env}/clients"), body)
            .await;
        assert_eq!(st, StatusCode::CREATED, "{v}");
    }
    let (st, v) = s
        .admin_post(
            &format!("/environments/{env}/webhook-endpoints"),
            json!({ "url": "http://127.0.0.1:9/hooks", "description": "audit sink", "event_types": ["organization.created"] }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

/// The exported text with `client_secret` set on the OIDC connection `org/name` (secrets are
/// never exported, so a file that creates one must add it).
fn with_oidc_secret(text: &str, org: &str, name: &str, secret: &str) -> String {
    let mut doc: toml::Table = toml::from_str(text).unwrap();
    for o in doc["organizations"].as_array_mut().unwrap() {
        if o["name"].as_str() == Some(org) {
            for c in o["connections"].as_array_mut().unwrap() {
                if c["name"].as_str() == Some(name) {
                    c.as_table_mut()
                        .unwrap()
                        .insert("client_secret".into(), secret.into());
                }
            }
        }
    }
    toml::to_string(&doc).unwrap()
}

async fn export_apply_export_into_an_empty_environment_is_identical(backend: Backend) {
    let a = server(backend).await;
    create_env(&a, "cloud", json!({})).await;
    populate(&a, "cloud").await;
    let (_, key_a) = (0, PublisherKey::generate(SigningAlg::EdDSA).unwrap().0);
    let (st, v) = post_raw(
        &a,
        "/environments/cloud/bundle-publishers",
        "application/json",
        key_a.public_jwk().to_string().into_bytes(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let exported = export(&a, "cloud").await;
    assert!(exported.starts_with("version = 1"), "{exported}");
    for secretish in ["upstream-secret", "pcsec_", "whsec_", "sealed", "\"sp\""] {
        assert!(
            !exported.contains(secretish),
            "the export holds no secret ({secretish}): {exported}"
        );
    }
    // The same file against its own environment: nothing to do, and applying writes no change.
    let (st, p) = plan(&a, "cloud", &exported).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    assert_eq!(p["plan"]["changes"], json!([]), "{p}");
    let before = dump(&a).await;
    let (st, v) = apply(&a, "cloud", &exported).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        dump(&a).await,
        before,
        "applying an export to its own environment is a no-op"
    );

    // Another server, an empty environment: the OIDC secret must be supplied.
    let b = server(backend).await;
    create_env(&b, "site", json!({ "mode": "isolated" })).await;
    let (st, v) = plan(&b, "site", &exported).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "invalid_config");
    assert!(
        str_of(&v, "message").contains("organizations[0].connections[1].client_secret"),
        "{v}"
    );
    let file = with_oidc_secret(&exported, "Acme", "entra", "upstream-secret");
    let (st, p) = plan(&b, "site", &file).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let text = str_of(&p, "text");
    for line in [
        "+ organization Acme",
        "+ connection Acme/adfs",
        "+ connection Acme/entra",
        "+ client batch",
        "+ webhook_endpoint http://127.0.0.1:9/hooks",
        "~ egress_policy policy",
        "~ bundle_publishers",
    ] {
        assert!(text.contains(line), "{line:?} in {text}");
    }
    assert!(text.contains("Plan: 8 to create, 2 to update"), "{text}");
    let (st, done) = apply(&b, "site", &file).await;
    assert_eq!(st, StatusCode::OK, "{done}");
    let created = done["created"].as_array().unwrap();
    let web = created.iter().find(|c| c["target"] == "web").unwrap();
    assert!(
        str_of(web, "client_secret").starts_with("pcsec_"),
        "a new confidential client's secret is shown once: {web}"
    );
    assert!(created.iter().any(|c| {
        c["kind"] == "webhook_endpoint"
            && c["secret"]
                .as_str()
                .is_some_and(|s| s.starts_with("whsec_"))
    }));
    assert_eq!(
        export(&b, "site").await,
        exported,
        "export → apply → export is identical"
    );
    let (_, p) = plan(&b, "site", &file).await;
    assert_eq!(p["plan"]["changes"], json!([]), "{p}");
    // The created SAML connection is active and has its own SP keys; the OIDC one its secret.
    let (_, orgs) = b.admin_get("/environments/site/organizations").await;
    let acme = orgs["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "Acme")
        .unwrap()
        .clone();
    let (_, conns) = b
        .admin_get(&format!(
            "/environments/site/organizations/{}/connections",
            str_of(&acme, "id")
        ))
        .await;
    let adfs = conns["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "adfs")
        .unwrap();
    assert_eq!(adfs["state"], "active");
    assert!(adfs["config"]["sp"]["signing_certificate"].is_string());
    // Every change is audited, and the apply itself with the file's digest.
    let audit = audit_all(&b, "site").await;
    let actions: Vec<&str> = audit.iter().map(|r| str_of(r, "action")).collect();
    for a in [
        "organization.create",
        "connection.create",
        "connection.activate",
        "client.create",
        "webhook_endpoint.create",
        "egress_policy.replace",
        "bundle_publishers.replace",
        "config.apply",
    ] {
        assert!(actions.contains(&a), "{a} audited: {actions:?}");
    }
    let summary = audit
        .iter()
        .find(|r| r["action"] == "config.apply")
        .unwrap();
    assert_eq!(
        summary["target"],
        portcullis_crypto::sha256_hex(file.as_bytes())
    );
}

async fn plan_lists_changes_and_a_failed_apply_changes_nothing(backend: Backend) {
    let s = server(backend).await;
    create_env(&s, "prod", json!({})).await;
    populate(&s, "prod").await;
    let base = export(&s, "prod").await;
    // Edit: Globex gains a domain, web loses a scope, the webhook is disabled, spa is dropped.
    let mut doc: toml::Table = toml::from_str(&base).unwrap();
    for o in doc["organizations"].as_array_mut().unwrap() {
        if o["name"].as_str() == Some("Globex") {
            o.as_table_mut().unwrap().insert(
                "domains".into(),
                toml::Value::try_from(["globex.test", "globex.example"]).unwrap(),
            );
        }
    }
    let clients = doc["clients"].as_array_mut().unwrap();
    clients.retain(|c| c["name"].as_str() != Some("spa"));
    for c in clients.iter_mut() {
        if c["name"].as_str() == Some("web") {
            c.as_table_mut()
                .unwrap()
                .insert("scopes".into(), toml::Value::try_from(["openid"]).unwrap());
        }
    }
    doc["webhook_endpoints"].as_array_mut().unwrap()[0]
        .as_table_mut()
        .unwrap()
        .insert("enabled".into(), false.into());
    let edited = toml::to_string(&doc).unwrap();
    let (st, p) = plan(&s, "prod", &edited).await;
    assert_eq!(st, StatusCode::OK, "{p}");
    let text = str_of(&p, "text");
    assert!(text.contains("~ organization Globex"), "{text}");
    assert!(text.contains(": domains"), "{text}");
    assert!(
        text.contains("~ client web") && text.contains(": scopes"),
        "{text}"
    );
    assert!(
        text.contains("~ webhook_endpoint http://127.0.0.1:9/hooks") && text.contains(": enabled"),
        "{text}"
    );
    assert!(
        text.contains("(not in the file, kept: client spa)"),
        "without prune nothing is deleted: {text}"
    );
    assert_eq!(p["plan"]["changes"].as_array().unwrap().len(), 3, "{p}");
    // With prune the client goes too.
    let pruned = format!("prune = true\n{edited}");
    let (_, p) = plan(&s, "prod", &pruned).await;
    assert!(str_of(&p, "text").contains("- client spa"), "{p}");

    // All or nothing: the second new organization claims a domain Acme owns, which only the
    // write finds; the first new organization must not survive the failure.
    let before = dump(&s).await;
    // (Globex is left out of the file, so only the database knows it owns globex.test.)
    let mut doc: toml::Table = toml::from_str(&base).unwrap();
    doc["organizations"]
        .as_array_mut()
        .unwrap()
        .retain(|o| o["name"].as_str() != Some("Globex"));
    let clash = format!(
        "{}\n[[organizations]]\nname = \"Aaa First\"\ndomains = [\"first.test\"]\n\n[[organizations]]\nname = \"Zzz Clash\"\ndomains = [\"globex.test\"]\n",
        toml::to_string(&doc).unwrap()
    );
    let (st, v) = apply(&s, "prod", &clash).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["code"], "domain_taken");
    assert_eq!(
        dump(&s).await,
        before,
        "a failed apply leaves every table as it was"
    );

    let (st, v) = apply(&s, "prod", &pruned).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (_, p) = plan(&s, "prod", &pruned).await;
    assert_eq!(p["plan"]["changes"], json!([]), "applied: {p}");
    let (_, list) = s.admin_get("/environments/prod/clients").await;
    assert!(
        !list["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "spa")
    );
}

async fn bad_files_are_refused_naming_the_problem(backend: Backend) {
    let s = server(backend).await;
    create_env(&s, "prod", json!({})).await;
    populate(&s, "prod").await;
    let base = export(&s, "prod").await;
    let before = dump(&s).await;
    let cases: Vec<(String, &str)> = vec![
        (format!("{base}\ncolour = \"blue\"\n"), "colour"),
        ("version = 2\n".into(), "version 2"),
        (format!("{base}\n[[clients]]\nname = \"x\"\nsecret = \"s\"\n"), "secret"),
        (format!("{base}\n[actions]\nrevoke_api_keys = [\"key_01doesnotexist0000000000\"]\n"), "actions.revoke_api_keys[0]"),
        (
            base.replace("allow_idp_initiated = false", "allow_idp_initiated = true\nidp_initiated = { client_id = \"client_01nope\", redirect_uri = \"https://app.test/callback\" }"),
            "idp_initiated.client_id",
        ),
        (
            format!("{base}\n[[organizations]]\nname = \"Bad Cert\"\n[[organizations.connections]]\nname = \"s\"\ntype = \"saml\"\nsaml = {{ idp = {{ entity_id = \"e\", sso_url = \"https://idp.test/sso\", certificates_pem = \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\" }} }}\n"),
            "saml.idp",
        ),
        (format!("{base}\n[[webhook_endpoints]]\nurl = \"http://127.0.0.1:10/nope\"\n"), "egress policy refuses"),
        (format!("{base}\n[[clients]]\nname = \"bad\"\nredirect_uris = [\"http://evil.test/cb\"]\n"), "clients["),
    ];
    for (file, needle) in cases {
        for path in ["plan", "apply"] {
            let (st, v) = post_raw(
                &s,
                &format!("/environments/prod/config/{path}"),
                "application/toml",
                file.clone().into_bytes(),
            )
            .await;
            assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{needle}: {v}");
            assert_eq!(v["code"], "invalid_config", "{v}");
            assert!(str_of(&v, "message").contains(needle), "{needle:?} in {v}");
        }
    }
    assert_eq!(dump(&s).await, before, "refused files change nothing");
}

struct Publisher {
    key: PublisherKey,
}

impl Publisher {
    fn new() -> Self {
        Self {
            key: PublisherKey::generate(SigningAlg::EdDSA).unwrap().0,
        }
    }
    fn bundle(&self, env: &str, seq: u64, config: &str, expires: Timestamp) -> Vec<u8> {
        bundle::create(
            &NewBundle {
                environment: env,
                sequence: seq,
                created_at: T0,
                expires_at: expires,
                config,
            },
            &self.key,
        )
        .unwrap()
    }
}

async fn trust(s: &TestServer, env: &str, p: &Publisher) {
    let (st, v) = post_raw(
        s,
        &format!("/environments/{env}/bundle-publishers"),
        "application/json",
        p.key.public_jwk().to_string().into_bytes(),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
}

async fn apply_bundle(s: &TestServer, env: &str, b: &[u8]) -> (StatusCode, Value) {
    post_raw(
        s,
        &format!("/environments/{env}/bundles/apply"),
        "application/octet-stream",
        b.to_vec(),
    )
    .await
}

const ONE_ORG: &str =
    "version = 1\n[[organizations]]\nname = \"Initech\"\ndomains = [\"initech.test\"]\n";
const TWO_ORGS: &str = "version = 1\n[[organizations]]\nname = \"Initech\"\ndomains = [\"initech.test\"]\n[[organizations]]\nname = \"Hooli\"\n";

fn repack(b: &[u8], f: impl FnOnce(&mut std::collections::BTreeMap<String, Vec<u8>>)) -> Vec<u8> {
    let mut parts = bundle::unpack(b).unwrap();
    f(&mut parts);
    let manifest = parts.remove(bundle::MANIFEST).unwrap();
    let mut files: Vec<(&str, &[u8])> = vec![(bundle::MANIFEST, manifest.as_slice())];
    files.extend(parts.iter().map(|(k, v)| (k.as_str(), v.as_slice())));
    bundle::pack(&files).unwrap()
}

async fn every_bad_bundle_is_refused_audited_and_changes_nothing(backend: Backend) {
    let s = server(backend).await;
    let env = create_env(&s, "site", json!({ "mode": "isolated" })).await;
    let other = create_env(&s, "lab", json!({ "mode": "isolated" })).await;
    let (id, other_id) = (
        str_of(&env, "id").to_owned(),
        str_of(&other, "id").to_owned(),
    );
    let publisher = Publisher::new();
    let stranger = Publisher::new();
    trust(&s, "site", &publisher).await;
    trust(&s, "lab", &publisher).await;
    let later = T0.plus_seconds(86_400);
    let first = publisher.bundle(&id, 10, ONE_ORG, later);
    let (st, v) = apply_bundle(&s, "site", &first).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["bundle"]["manifest"]["sequence"], 10);

    let second = publisher.bundle(&id, 11, TWO_ORGS, later);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("replayed", first.clone(), "bundle_sequence_not_newer"),
        (
            "older sequence",
            publisher.bundle(&id, 9, TWO_ORGS, later),
            "bundle_sequence_not_newer",
        ),
        (
            "byte flipped in the config",
            repack(&second, |p| p.get_mut(bundle::CONFIG).unwrap()[20] ^= 1),
            "bundle_digest_mismatch",
        ),
        (
            "byte flipped in the manifest",
            repack(&second, |p| {
                let m = p.get_mut(bundle::MANIFEST).unwrap();
                let i = m.len() / 2;
                m[i] = if m[i] == b'A' { b'B' } else { b'A' };
            }),
            "bundle_signature_invalid",
        ),
        (
            "payload swapped with another bundle's",
            repack(&second, |p| {
                p.insert(
                    bundle::CONFIG.into(),
                    bundle::unpack(&first).unwrap()[bundle::CONFIG].clone(),
                );
            }),
            "bundle_digest_mismatch",
        ),
        (
            "re-targeted to another environment",
            publisher.bundle(&other_id, 12, TWO_ORGS, later),
            "bundle_wrong_environment",
        ),
        (
            "signed by an untrusted key",
            stranger.bundle(&id, 12, TWO_ORGS, later),
            "bundle_untrusted_key",
        ),
        (
            "expired",
            publisher.bundle(&id, 12, TWO_ORGS, T0.plus_seconds(30)),
            "bundle_expired",
        ),
        (
            "truncated",
            second[..second.len() / 2].to_vec(),
            "bundle_corrupt",
        ),
    ];
    s.clock().unwrap().advance_seconds(60);
    for (what, b, code) in cases {
        let before = dump(&s).await;
        let audit_before = audit_all(&s, "site").await.len();
        let (st, v) = post_raw(
            &s,
            "/environments/site/bundles/verify",
            "application/octet-stream",
            b.clone(),
        )
        .await;
        assert_eq!(
            (st, v["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
            "verify, {what}: {v}"
        );
        let (st, v) = apply_bundle(&s, "site", &b).await;
        assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {v}");
        assert_eq!(v["code"], code, "{what}: {v}");
        assert_eq!(dump(&s).await, before, "{what}: the database is unchanged");
        let audit = audit_all(&s, "site").await;
        assert_eq!(
            audit.len(),
            audit_before + 1,
            "{what}: the refusal is audited, once"
        );
        let last = audit.last().unwrap();
        assert_eq!(
            (last["action"].as_str(), last["outcome"].as_str()),
            (Some("bundle.apply"), Some("failure")),
            "{what}: {last}"
        );
        assert_eq!(
            last["target"],
            bundle::digest(&b),
            "{what}: audited with the file's digest"
        );
    }
    // The genuine next bundle still applies, and is audited with its digest.
    let (st, v) = apply_bundle(&s, "site", &second).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let audit = audit_all(&s, "site").await;
    let last = audit.last().unwrap();
    assert_eq!(last["action"], "bundle.apply");
    assert_eq!(last["outcome"], "success");
    assert_eq!(last["target"], bundle::digest(&second));
    let (_, trust) = s.admin_get("/environments/site/bundle-publishers").await;
    assert_eq!(trust["last_sequence"], 11);
}

async fn bundles_change_trust_rotate_keys_and_revoke_api_keys(backend: Backend) {
    let s = server(backend).await;
    let env = create_env(&s, "site", json!({ "mode": "isolated" })).await;
    let id = str_of(&env, "id").to_owned();
    let old = Publisher::new();
    let new = Publisher::new();
    trust(&s, "site", &old).await;
    let (st, key) = s
        .admin_post("/environments/site/api-keys", json!({ "name": "etl" }))
        .await;
    assert_eq!(st, StatusCode::CREATED, "{key}");
    let key_id = str_of(&key, "id").to_owned();
    let (_, jwks_before) = s.admin_get("/environments/site/keys").await;
    let later = T0.plus_seconds(86_400);
    let config = portcullis_bundle::EnvConfig {
        version: 1,
        publishers: Some(vec![new.key.public_jwk().clone()]),
        actions: portcullis_bundle::config::Actions {
            rotate_signing_key: true,
            revoke_api_keys: vec![key_id.clone()],
        },
        ..Default::default()
    }
    .render()
    .unwrap();
    let (st, v) = post_raw(
        &s,
        "/environments/site/bundles/verify",
        "application/octet-stream",
        old.bundle(&id, 1, &config, later),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let text = str_of(&v, "text");
    assert!(
        text.contains("! signing_key rotate") && text.contains(&format!("! api_key {key_id}")),
        "{text}"
    );
    let (st, v) = apply_bundle(&s, "site", &old.bundle(&id, 1, &config, later)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // Trust moved to the new key: the old one can no longer sign, the new one can.
    let (st, v) = apply_bundle(&s, "site", &old.bundle(&id, 2, ONE_ORG, later)).await;
    assert_eq!(
        (st, v["code"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("bundle_untrusted_key")
        ),
        "{v}"
    );
    let (st, v) = apply_bundle(&s, "site", &new.bundle(&id, 3, ONE_ORG, later)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    // The key rotated, the API key is revoked.
    let (_, jwks_after) = s.admin_get("/environments/site/keys").await;
    let active = |v: &Value| {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["state"] == "active")
            .map(|k| k["id"].clone())
    };
    assert_ne!(active(&jwks_before), active(&jwks_after), "{jwks_after}");
    let (_, k) = s.admin_get(&format!("/api-keys/{key_id}")).await;
    assert!(k["revoked_at"].is_string(), "{k}");
}
