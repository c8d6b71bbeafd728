//! The connected alternatives to uploads: OIDC discovery and SAML metadata fetched once through
//! the egress gate — refused without a rule, pinned into the configuration with one.

use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{assert_error, create_env, create_org, str_of};

/// A loopback server answering fixed documents by path.
async fn publisher(
    docs: Vec<(&'static str, &'static str, String)>,
) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut router = axum::Router::new();
    for (path, content_type, body) in docs {
        router = router.route(
            path,
            axum::routing::get(move || async move { ([("content-type", content_type)], body) }),
        );
    }
    (
        port,
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() }),
    )
}

async fn allow(s: &TestServer, env: &str, port: u16, purposes: &[&str]) {
    let (_, p) = s
        .admin_get(&format!("/environments/{env}/egress-policy"))
        .await;
    let body = json!({ "version": p["version"], "rules": [{ "id": "idp", "scheme": "http", "cidr": "127.0.0.0/8", "port": port, "purposes": purposes }] });
    let res = s
        .client()
        .put(s.at(&format!("/admin/v1/environments/{env}/egress-policy")))
        .bearer_auth(s.admin_key())
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_discovery_goes_through_the_gate_and_pins_the_keys() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    create_env(&s, "disc", json!({ "mode": "connected" })).await;
    let der =
        portcullis_crypto::jws::generate_pkcs8(portcullis_core::model::SigningAlg::ES256).unwrap();
    let key = portcullis_crypto::SigningKey::from_pkcs8(
        "idp-1",
        portcullis_core::model::SigningAlg::ES256,
        &der,
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let issuer = format!("http://127.0.0.1:{port}");
    let discovery = json!({ "issuer": issuer, "authorization_endpoint": format!("{issuer}/authorize"), "token_endpoint": format!("{issuer}/token"), "jwks_uri": format!("{issuer}/jwks") });
    let jwks =
        json!({ "keys": [key.public_jwk(), { "kty": "oct", "k": "c2VjcmV0", "kid": "hmac" }] });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let router = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || {
                let d = discovery.to_string();
                async move { ([("content-type", "application/json")], d) }
            }),
        )
        .route(
            "/jwks",
            axum::routing::get(move || {
                let j = jwks.to_string();
                async move { ([("content-type", "application/json")], j) }
            }),
        );
    let _server = tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    // No rule: refused by the gate, and the refusal is on record.
    let r = s
        .admin_post(
            "/environments/disc/oidc-discovery",
            json!({ "issuer": issuer }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "egress_refused");
    assert!(
        str_of(&r.1, "message").contains("metadata_fetch"),
        "{}",
        r.1
    );
    let (_, events) = s
        .admin_get("/environments/disc/events?events=egress.denied")
        .await;
    assert_eq!(events["data"].as_array().unwrap().len(), 1);

    // A rule for discovery only: the JWKS fetch is refused in turn.
    allow(&s, "disc", port, &["metadata_fetch"]).await;
    let r = s
        .admin_post(
            "/environments/disc/oidc-discovery",
            json!({ "issuer": issuer }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "egress_refused");
    assert!(str_of(&r.1, "message").contains("jwks_fetch"), "{}", r.1);

    allow(&s, "disc", port, &["metadata_fetch", "jwks_fetch"]).await;
    let (st, v) = s
        .admin_post(
            "/environments/disc/oidc-discovery",
            json!({ "issuer": issuer }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["oidc"]["token_endpoint"], format!("{issuer}/token"));
    let pinned = v["oidc"]["jwks"]["keys"].as_array().unwrap();
    assert_eq!(pinned.len(), 1, "the symmetric key is dropped: {v}");
    assert_eq!(pinned[0]["kid"], "idp-1");

    // The settings create a working connection; sign-ins then fetch nothing.
    let org = create_org(&s, "disc", "Acme", &["acme.test"]).await;
    let mut settings = v["oidc"].clone();
    settings["client_id"] = json!("portcullis");
    let (st, c) = s
        .admin_post(
            &format!(
                "/environments/disc/organizations/{}/connections",
                str_of(&org, "id")
            ),
            json!({ "type": "oidc", "name": "Acme", "oidc": settings, "client_secret": "s3cret" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");

    let wrong = s
        .admin_post(
            "/environments/disc/oidc-discovery",
            json!({ "issuer": format!("{issuer}/other") }),
        )
        .await;
    assert!(wrong.0.is_client_error(), "{}", wrong.1);
}

fn idp_metadata(cert_der: &[u8], entity: &str, sso: &str) -> String {
    use base64::Engine;
    let cert = base64::engine::general_purpose::STANDARD.encode(cert_der);
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{cert}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saml_metadata_is_fetched_only_through_the_gate() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    create_env(&s, "md", json!({ "mode": "connected" })).await;
    let org = create_org(&s, "md", "Acme", &["acme.test"]).await;
    let (st, conn) = s
        .admin_post(
            &format!(
                "/environments/md/organizations/{}/connections",
                str_of(&org, "id")
            ),
            json!({ "type": "saml", "name": "Acme IdP" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{conn}");
    let id = str_of(&conn, "id").to_owned();
    let idp = portcullis_saml::generate_sp_key(
        "idp.acme.test",
        portcullis_core::Timestamp::from_millis(1_795_000_000_000),
    )
    .unwrap();
    let xml = idp_metadata(
        &idp.certificate_der,
        "https://idp.acme.test/saml",
        "https://idp.acme.test/sso",
    );
    let (port, _server) = publisher(vec![("/metadata", "application/samlmetadata+xml", xml)]).await;
    let url = format!("http://127.0.0.1:{port}/metadata");
    let fetch = format!("/environments/md/connections/{id}/saml-metadata/fetch");

    let r = s.admin_post(&fetch, json!({ "url": url })).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "egress_refused");
    let (_, unchanged) = s
        .admin_get(&format!("/environments/md/connections/{id}"))
        .await;
    assert!(
        unchanged["config"].get("idp").is_none(),
        "nothing changed: {unchanged}"
    );

    allow(&s, "md", port, &["metadata_fetch"]).await;
    let (st, v) = s.admin_post(&fetch, json!({ "url": url })).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["idp"]["entity_id"], "https://idp.acme.test/saml");
    assert_eq!(v["idp"]["fetched_from"], url.as_str());
    let (_, inv) = s.admin_get("/environments/md/inventory").await;
    let row = inv["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "metadata_fetch" && d["component"]["id"] == id.as_str())
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(row["decision"], "allowed", "{row}");
    assert_eq!(row["detail"], "rule idp", "{row}");
    let (st, _) = s
        .admin_post(
            &format!("/environments/md/connections/{id}/activate"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
}
