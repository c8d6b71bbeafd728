//! Sign-in through an organization's SAML 2.0 IdP (issue 5), end to end over HTTP.
//!
//! The IdP is [`idp::SamlIdp`]: keys and certificates from `openssl`, metadata written as text,
//! Responses signed and encrypted by the `xmlsec1` CLI — never by Portcullis's own XML code. The
//! test plays the IdP's part: it reads the AuthnRequest the hosted login sent the browser with,
//! and posts the Response to the ACS as the browser would (POST binding).
//!
//! - the whole round trip: application → `/oauth2/authorize` → hosted login → AuthnRequest →
//!   signed (or encrypted) Response → ACS → code → tokens whose ID token and userinfo carry the
//!   profile, with its events;
//! - every refused Response: a plain page with a reference, an `authentication.sso_failed` event
//!   and audit record with the crate's reason code, no profile, no code, and the pending request
//!   still answered by a valid Response afterwards; replays refused across a restart; another
//!   organization's IdP refused; IdP-initiated login only where enabled;
//! - the admin API of SAML connections: metadata import, expiry report, activation, inventory.

mod idp;

use std::collections::BTreeMap;
use std::io::Read as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis_core::{FakeClock, Timestamp};
use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use self::idp::{Response, SamlIdp, Sp, fresh_id, openssl_verifies};
use crate::oauth::{
    Answer, Browser, Pkce, REDIRECT, Tenant, TestClient, assert_page, authorize_url, create_client,
    issued, jwt_header, now_seconds, post_form, query, redeem, redirected_to, token, userinfo,
    web_app,
};
use crate::{assert_error, create_org, jwk, jwks, str_of};

both_backends!(end_to_end_through_a_saml_idp);

const ALICE: &str = "alice@acme.test";
const BOB: &str = "bob@globex.test";
const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";

/// A server, an environment (with its own password organization and user) and a web application.
struct Site {
    s: TestServer,
    t: Tenant,
    app: TestClient,
}

/// Tables a test counts rows of.
#[derive(Clone, Copy)]
enum Table {
    Profiles,
    Codes,
}

/// A SAML connection as the IdP administrator sees it: its ID and the SP its metadata describes.
struct Conn {
    id: String,
    sp: Sp,
}

impl Site {
    async fn new(backend: Backend, slug: &str) -> Self {
        Self::on(TestServer::start(backend).await.unwrap(), slug).await
    }

    async fn on(s: TestServer, slug: &str) -> Self {
        let t = Tenant::new(&s, slug, "ES256").await;
        let app = create_client(&s, &t, web_app()).await;
        Self { s, t, app }
    }

    /// Stops the server and starts it again on the same storage. The environment keeps its
    /// issuer (the old address); requests go to the new one through [`Site::at`].
    async fn restart(self) -> Self {
        let s = self.s.restart().await.unwrap();
        Self { s, ..self }
    }

    /// A URL of this environment on the running server.
    fn at(&self, path: &str) -> String {
        self.s.at(&format!("/e/{}{path}", self.t.slug))
    }

    fn acs(&self, conn: &str) -> String {
        self.at(&format!("/sso/saml/{conn}/acs"))
    }

    /// An organization owning `domain`; its ID.
    async fn org(&self, name: &str, domain: &str) -> String {
        str_of(
            &create_org(&self.s, &self.t.slug, name, &[domain]).await,
            "id",
        )
        .to_owned()
    }

    /// `POST …/organizations/{org}/connections` of type `saml` with `saml` settings.
    async fn create(&self, org: &str, name: &str, saml: Value) -> (StatusCode, Value) {
        let mut body = json!({ "type": "saml", "name": name });
        if !saml.is_null() {
            body["saml"] = saml;
        }
        self.s
            .admin_post(
                &format!(
                    "/environments/{}/organizations/{org}/connections",
                    self.t.slug
                ),
                body,
            )
            .await
    }

    /// `PUT …/connections/{conn}/saml-metadata` with `xml` as the body.
    async fn upload_metadata(&self, conn: &str, xml: &str) -> (StatusCode, Value) {
        let res = self
            .s
            .client()
            .put(self.s.at(&format!(
                "/admin/v1/environments/{}/connections/{conn}/saml-metadata",
                self.t.slug
            )))
            .bearer_auth(self.s.admin_key())
            .header("content-type", "application/samlmetadata+xml")
            .body(xml.to_owned())
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

    async fn activate(&self, conn: &str) -> (StatusCode, Value) {
        self.s
            .admin_post(
                &format!("/environments/{}/connections/{conn}/activate", self.t.slug),
                json!({}),
            )
            .await
    }

    /// The SP metadata of `conn`, as the IdP administrator downloads it.
    async fn sp_metadata(&self, conn: &str) -> String {
        let res = self
            .s
            .client()
            .get(self.at(&format!("/sso/saml/{conn}/metadata")))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(
            res.headers()["content-type"],
            "application/samlmetadata+xml"
        );
        res.text().await.unwrap()
    }

    /// Creates a SAML connection of `org` with `saml` settings, imports `idp`'s metadata and
    /// activates it.
    async fn connection(&self, org: &str, name: &str, idp: &SamlIdp, saml: Value) -> Conn {
        let (status, c) = self.create(org, name, saml).await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        assert_eq!(c["state"], "draft", "{c}");
        let id = str_of(&c, "id").to_owned();
        let (status, v) = self.upload_metadata(&id, &idp.metadata()).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        let (status, v) = self.activate(&id).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        assert_eq!(v["state"], "active", "{v}");
        let sp = Sp::from_metadata(&self.sp_metadata(&id).await);
        Conn { id, sp }
    }

    /// Events of `kind`, oldest first.
    async fn events(&self, kind: &str) -> Vec<Value> {
        let path = format!("/environments/{}/events", self.t.slug);
        every(&self.s, &path)
            .await
            .into_iter()
            .filter(|e| e["event"] == kind)
            .collect()
    }

    async fn count(&self, table: Table) -> i64 {
        let sql = match table {
            Table::Profiles => "SELECT COUNT(*) FROM profiles",
            Table::Codes => "SELECT COUNT(*) FROM auth_codes",
        };
        let mut tx = self.s.app().store.begin().await.unwrap();
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(&mut *tx)
            .await
            .unwrap()
    }

    /// SSO profiles and authorization codes, read beside the server.
    async fn made(&self) -> (i64, i64) {
        (
            self.count(Table::Profiles).await,
            self.count(Table::Codes).await,
        )
    }

    /// Asserts a refused Response: a plain error page (no redirect to the application) whose
    /// reference is that of the latest `authentication.sso_failed` event, which names `reason`,
    /// as does the audit record with that reference. Returns the event's data.
    async fn assert_refused(&self, a: &Answer, reason: &str) -> Value {
        assert_page(a, StatusCode::BAD_REQUEST);
        assert!(!a.text.contains(REDIRECT), "{}", a.text);
        assert!(!a.text.contains("code="), "{}", a.text);
        let failed = self.events("authentication.sso_failed").await;
        let data = failed.last().expect("an sso_failed event")["data"].clone();
        assert_eq!(data["reason"], reason, "{data}\n{}", a.text);
        let reference = str_of(&data, "reference");
        assert!(
            a.text.contains(reference),
            "the page shows the reference {reference}: {}",
            a.text
        );
        let alert = crate::oauth::alert(a);
        assert!(
            !alert.contains(reason) && !alert.contains(str_of(&data, "detail")),
            "the page does not tell the reason: {alert}"
        );
        let audit = every(&self.s, &format!("/environments/{}/audit", self.t.slug)).await;
        let record = audit
            .iter()
            .find(|r| r["detail"]["reference"] == reference)
            .unwrap_or_else(|| panic!("no audit record with reference {reference}"));
        assert_eq!(record["action"], "authentication.sso", "{record}");
        assert_eq!(record["outcome"], "failure", "{record}");
        assert_eq!(record["detail"]["reason"], reason, "{record}");
        data
    }
}

/// Every item of a paged admin list.
async fn every(s: &TestServer, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut p = format!("{path}?limit=100");
        if let Some(a) = &after {
            p += &format!("&after={a}");
        }
        let (status, v) = s.admin_get(&p).await;
        assert_eq!(status, StatusCode::OK, "{v}");
        out.extend(v["data"].as_array().expect("data").iter().cloned());
        after = v["list_metadata"]["after"].as_str().map(str::to_owned);
        if after.is_none() {
            return out;
        }
    }
}

/// The AuthnRequest the hosted login sent the browser to the IdP with.
#[derive(Debug, Clone)]
struct AuthnRequest {
    url: String,
    params: BTreeMap<String, String>,
    /// The inflated `<samlp:AuthnRequest>`.
    xml: String,
    id: String,
}

impl AuthnRequest {
    fn relay(&self) -> &str {
        &self.params["RelayState"]
    }
}

/// The value of attribute `name` in the first element of `xml` that has it.
fn attr(xml: &str, name: &str) -> String {
    let key = format!(" {name}=\"");
    let start = xml
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {xml}"))
        + key.len();
    xml[start..start + xml[start..].find('"').unwrap()].to_owned()
}

/// One browser's sign-in to the application, from `/oauth2/authorize` on.
struct Flow {
    b: Browser,
    req: String,
    pkce: Pkce,
}

impl Flow {
    /// Opens the application's authorization request and stops at the hosted login's email form.
    async fn start(site: &Site) -> Self {
        let mut b = Browser::new(&site.s);
        let pkce = Pkce::new();
        let p = [
            ("response_type", "code"),
            ("client_id", site.app.id.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email profile"),
            ("state", "xyz"),
            ("nonce", "n-0S6_WzA2Mj"),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        let req = b.start(&site.t, &authorize_url(&site.t, &p)).await;
        Self { b, req, pkce }
    }

    /// Enters `email`: the hosted login answers with a redirect to `idp`'s SSO URL carrying the
    /// AuthnRequest (HTTP-Redirect binding).
    async fn go_to_idp(&mut self, site: &Site, email: &str, idp: &SamlIdp) -> AuthnRequest {
        let a = self.b.submit_email(&site.t, &self.req, email).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
        let url = a.location().to_owned();
        assert!(
            url.starts_with(&format!("{}?SAMLRequest=", idp.sso_url)),
            "{url}"
        );
        let params = query(&url);
        let raw = B64.decode(&params["SAMLRequest"]).expect("base64");
        let mut xml = String::new();
        flate2::read::DeflateDecoder::new(raw.as_slice())
            .read_to_string(&mut xml)
            .expect("DEFLATE (bindings §3.4.4.1)");
        let id = attr(&xml, "ID");
        AuthnRequest {
            url,
            params,
            xml,
            id,
        }
    }

    /// The browser posts `saml_response` (base64) and `relay` to `conn`'s ACS.
    async fn post(
        &mut self,
        site: &Site,
        conn: &str,
        saml_response: &str,
        relay: Option<&str>,
    ) -> Answer {
        let mut form = vec![("SAMLResponse", saml_response)];
        if let Some(r) = relay {
            form.push(("RelayState", r));
        }
        self.b.post(&site.acs(conn), &form).await
    }

    /// Signs `r` with `idp`'s key and posts it to `conn`'s ACS, answering `authn`.
    async fn answer(
        &mut self,
        site: &Site,
        conn: &Conn,
        idp: &SamlIdp,
        authn: &AuthnRequest,
        r: &Response,
    ) -> Answer {
        self.post(site, &conn.id, &idp.post_value(r), Some(authn.relay()))
            .await
    }

    /// Redeems the code the application received in `a`: the token response.
    async fn tokens(&self, site: &Site, a: &Answer) -> Value {
        let q = redirected_to(a, REDIRECT);
        assert_eq!(q["state"], "xyz");
        assert_eq!(q["iss"], site.t.issuer, "RFC 9207");
        issued(&redeem(&site.s, &site.t, &site.app, &q["code"], &self.pkce.verifier).await)
    }
}

/// The claims of an ID token, verified with the environment's published keys.
async fn verified(site: &Site, id_token: &str) -> Value {
    let keys = jwks(&site.s, &site.t.slug).await;
    let kid = str_of(&jwt_header(id_token), "kid").to_owned();
    let key = jwk(&keys, &kid).expect("the ID token's key is published");
    portcullis_crypto::jws::verify_compact(key, id_token).expect("signed by the environment")
}

/// A valid Response of `idp` for `email`, answering `authn`.
fn valid(idp: &SamlIdp, conn: &Conn, authn: &AuthnRequest, email: &str) -> Response {
    Response::new(idp, &conn.sp, Some(&authn.id), email)
}

/// Signs in through `conn` with a valid Response; the verified ID token's claims.
async fn sign_in(site: &Site, conn: &Conn, idp: &SamlIdp, email: &str) -> Value {
    let mut flow = Flow::start(site).await;
    let authn = flow.go_to_idp(site, email, idp).await;
    let a = flow
        .answer(site, conn, idp, &authn, &valid(idp, conn, &authn, email))
        .await;
    let tokens = flow.tokens(site, &a).await;
    verified(site, str_of(&tokens, "id_token")).await
}

// ---------------------------------------------------------------------------------------------
// The round trip

async fn end_to_end_through_a_saml_idp(backend: Backend) {
    let site = Site::new(backend, "saml").await;
    let acme = site.org("Acme", "acme.test").await;
    let idp = SamlIdp::new("acme.test");

    // The connection, as an operator sets it up: created (with its SP keys), SP metadata handed
    // to the IdP administrator, the IdP's metadata imported, activated.
    let (status, c) = site.create(&acme, "Acme IdP", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    assert_eq!((&c["type"], &c["state"]), (&json!("saml"), &json!("draft")));
    let conn = str_of(&c, "id").to_owned();
    let entity = site.t.at(&format!("/sso/saml/{conn}"));
    let acs = format!("{entity}/acs");
    let metadata = site.sp_metadata(&conn).await;
    assert!(
        metadata.contains(&format!("Location=\"{acs}\"")),
        "{metadata}"
    );
    assert!(
        metadata.contains("urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"),
        "{metadata}"
    );
    let sp = Sp::from_metadata(&metadata);
    assert_eq!(sp.entity_id, entity);
    assert_eq!(sp.acs_url, acs);
    assert_eq!(
        B64.encode(&sp.signing_cert_der),
        str_of(&c["config"]["sp"], "signing_certificate")
    );
    assert_eq!(
        B64.encode(&sp.encryption_cert_der),
        str_of(&c["config"]["sp"], "encryption_certificate")
    );
    assert_ne!(sp.signing_cert_der, sp.encryption_cert_der);
    let text = c.to_string();
    assert!(
        !text.contains("PRIVATE") && !text.contains("sp_signing_key"),
        "no private key is shown: {text}"
    );
    let (status, v) = site.upload_metadata(&conn, &idp.metadata()).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["idp"]["entity_id"], idp.entity_id.as_str(), "{v}");
    assert_eq!(v["idp"]["sso_url"], idp.sso_url.as_str(), "{v}");
    let (status, v) = site.activate(&conn).await;
    assert_eq!((status, &v["state"]), (StatusCode::OK, &json!("active")));
    let conn = Conn { id: conn, sp };
    assert_eq!(site.made().await, (0, 0));

    // Alice's address routes to the IdP with a signed AuthnRequest.
    let mut flow = Flow::start(&site).await;
    let authn = flow.go_to_idp(&site, ALICE, &idp).await;
    assert!(
        authn.id.starts_with('_') && authn.id.len() >= 40,
        "an NCName with 160 random bits: {}",
        authn.id
    );
    assert_eq!(authn.relay(), authn.id, "RelayState names the request");
    for needle in [
        "<samlp:AuthnRequest ".to_owned(),
        format!("AssertionConsumerServiceURL=\"{acs}\""),
        format!("Destination=\"{}\"", idp.sso_url),
        format!("<saml:Issuer>{entity}</saml:Issuer>"),
        "ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\"".to_owned(),
        "Version=\"2.0\"".to_owned(),
    ] {
        assert!(authn.xml.contains(&needle), "{needle} not in {}", authn.xml);
    }
    let issued_at = Timestamp::parse_rfc3339(&attr(&authn.xml, "IssueInstant")).unwrap();
    assert!(
        (issued_at.seconds() - now_seconds()).abs() < 60,
        "{}",
        authn.xml
    );
    // Bindings §3.4.4.1: the signature covers `SAMLRequest=…&RelayState=…&SigAlg=…` as sent;
    // openssl verifies it with the signing certificate of the SP metadata.
    assert_eq!(authn.params["SigAlg"], RSA_SHA256);
    let sent = authn.url.split_once('?').unwrap().1;
    let (signed, _) = sent.split_once("&Signature=").unwrap();
    assert!(signed.starts_with("SAMLRequest=") && signed.contains("&RelayState="));
    let signature = B64.decode(&authn.params["Signature"]).unwrap();
    assert!(openssl_verifies(
        signed,
        &signature,
        &conn.sp.signing_cert_der
    ));
    let tampered = signed.replace("RelayState=", "RelayState=x");
    assert!(!openssl_verifies(
        &tampered,
        &signature,
        &conn.sp.signing_cert_der
    ));

    // The IdP answers (xmlsec1 signs the Assertion); the browser posts it to the ACS.
    let r = valid(&idp, &conn, &authn, ALICE);
    let xml = idp.sign(&r);
    assert!(xml.contains(&format!("InResponseTo=\"{}\"", authn.id)));
    assert!(xml.contains("<ds:SignatureValue>"), "{xml}");
    let a = flow
        .post(&site, &conn.id, &B64.encode(&xml), Some(authn.relay()))
        .await;
    let tokens = flow.tokens(&site, &a).await;
    let claims = verified(&site, str_of(&tokens, "id_token")).await;
    let sub = str_of(&claims, "sub").to_owned();
    assert!(sub.starts_with("prof_"), "{claims}");
    assert_eq!(claims["iss"], site.t.issuer);
    assert_eq!(claims["aud"], site.app.id.as_str());
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["org_id"], acme.as_str());
    assert_eq!(claims["connection_id"], conn.id.as_str());
    assert_eq!(claims["idp_id"], ALICE, "the NameID");
    assert_eq!(claims["email"], ALICE);
    assert_eq!(claims["groups"], json!(["engineering", "admins & ops"]));
    assert_eq!(claims["given_name"], "Alice");
    assert_eq!(claims["family_name"], "Liddell");
    let info = userinfo(&site.s, &site.t, str_of(&tokens, "access_token")).await;
    let info = info.ok();
    for k in [
        "sub",
        "org_id",
        "connection_id",
        "idp_id",
        "email",
        "groups",
        "given_name",
        "family_name",
    ] {
        assert_eq!(info[k], claims[k], "userinfo {k}: {info}");
    }
    assert_eq!(site.count(Table::Profiles).await, 1);
    let ok = site.events("authentication.sso_succeeded").await;
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0]["organization_id"], acme.as_str());
    let d = &ok[0]["data"];
    assert_eq!(d["connection_id"], conn.id.as_str(), "{d}");
    assert_eq!(d["profile_id"], sub.as_str(), "{d}");
    assert_eq!(d["idp_id"], ALICE, "{d}");
    assert_eq!(d["client_id"], site.app.id.as_str(), "{d}");
    assert!(site.events("authentication.sso_failed").await.is_empty());

    // An encrypted assertion: xmlsec1 signs the Assertion, then encrypts it (RSA-OAEP,
    // AES-128-GCM) to the encryption certificate of the SP metadata.
    let mut flow = Flow::start(&site).await;
    let authn = flow.go_to_idp(&site, ALICE, &idp).await;
    let r = Response {
        encrypt_to: Some(conn.sp.encryption_cert_der.clone()),
        ..valid(&idp, &conn, &authn, ALICE)
    };
    let xml = idp.sign(&r);
    assert!(xml.contains("EncryptedAssertion>") && xml.contains("CipherValue>"));
    assert!(!xml.contains(ALICE), "the assertion is encrypted: {xml}");
    let a = flow
        .post(&site, &conn.id, &B64.encode(&xml), Some(authn.relay()))
        .await;
    let tokens = flow.tokens(&site, &a).await;
    let again = verified(&site, str_of(&tokens, "id_token")).await;
    assert_eq!(
        again["sub"],
        sub.as_str(),
        "the same subject: the same profile"
    );
    assert_eq!(again["email"], ALICE);
    assert_eq!(again["groups"], json!(["engineering", "admins & ops"]));

    // Encrypted inside a signed Response (the Response signature covers the ciphertext).
    let mut flow = Flow::start(&site).await;
    let authn = flow.go_to_idp(&site, ALICE, &idp).await;
    let r = Response {
        encrypt_to: Some(conn.sp.encryption_cert_der.clone()),
        sign_response: true,
        sign_assertion: false,
        ..valid(&idp, &conn, &authn, ALICE)
    };
    let a = flow.answer(&site, &conn, &idp, &authn, &r).await;
    let tokens = flow.tokens(&site, &a).await;
    let third = verified(&site, str_of(&tokens, "id_token")).await;
    assert_eq!(third["sub"], sub.as_str());
    assert_eq!(site.count(Table::Profiles).await, 1);
    assert_eq!(site.events("authentication.sso_succeeded").await.len(), 3);
    assert!(site.events("authentication.sso_failed").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Refusals

/// Each bad Response is refused at the HTTP level and consumes nothing: the same pending request
/// is then answered by a valid Response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_responses_are_refused_and_the_request_survives() {
    let site = Site::new(Backend::Sqlite, "refuse").await;
    let acme = site.org("Acme", "acme.test").await;
    let idp = SamlIdp::new("acme.test");
    let conn = site.connection(&acme, "Acme IdP", &idp, json!({})).await;
    let alice = sign_in(&site, &conn, &idp, ALICE).await;

    type Forge = fn(&SamlIdp, &Conn, &AuthnRequest) -> String;
    let cases: [(&str, Forge, &str); 6] = [
        (
            "an unsigned second assertion before the signed one",
            |idp, conn, authn| {
                let xml = idp.sign(&valid(idp, conn, authn, ALICE));
                xml.replacen(
                    "<saml:Assertion ",
                    &format!("{}<saml:Assertion ", evil_assertion(idp, conn, authn)),
                    1,
                )
            },
            "wrapping_detected",
        ),
        (
            "an unsigned second assertion after the signed one",
            |idp, conn, authn| {
                let xml = idp.sign(&valid(idp, conn, authn, ALICE));
                xml.replace(
                    "</samlp:Response>",
                    &format!("{}</samlp:Response>", evil_assertion(idp, conn, authn)),
                )
            },
            "wrapping_detected",
        ),
        (
            "signed by the attacker, whose certificate is in the message",
            |idp, conn, authn| {
                let xml = valid(idp, conn, authn, ALICE).build(&idp.attacker);
                let embedded = idp.attacker.cert_b64();
                assert!(xml.replace(['\n', '\r'], "").contains(&embedded[..64]));
                xml
            },
            "untrusted_key",
        ),
        (
            "signed content changed",
            |idp, conn, authn| {
                idp.sign(&valid(idp, conn, authn, ALICE))
                    .replace(">engineering<", ">domain admins<")
            },
            "signature_invalid",
        ),
        (
            "for another audience",
            |idp, conn, authn| {
                idp.sign(&Response {
                    audience: "https://other-sp.example/saml".into(),
                    ..valid(idp, conn, authn, ALICE)
                })
            },
            "audience_mismatch",
        ),
        (
            "expired",
            |idp, conn, authn| {
                let now = now_seconds();
                idp.sign(&Response {
                    not_before: now - 900,
                    not_on_or_after: now - 600,
                    ..valid(idp, conn, authn, ALICE)
                })
            },
            "expired",
        ),
    ];
    for (what, forge, reason) in cases {
        let made = site.made().await;
        let mut flow = Flow::start(&site).await;
        let authn = flow.go_to_idp(&site, ALICE, &idp).await;
        let bad = forge(&idp, &conn, &authn);
        let a = flow
            .post(&site, &conn.id, &B64.encode(&bad), Some(authn.relay()))
            .await;
        let data = site.assert_refused(&a, reason).await;
        assert_eq!(data["connection_id"], conn.id.as_str(), "{what}: {data}");
        assert_eq!(data["organization_id"], acme.as_str(), "{what}: {data}");
        assert_eq!(site.made().await, made, "{what}: no profile, no code");
        // What a valid Response needs is intact: the same pending request signs in.
        let a = flow
            .answer(
                &site,
                &conn,
                &idp,
                &authn,
                &valid(&idp, &conn, &authn, ALICE),
            )
            .await;
        let claims = verified(&site, str_of(&flow.tokens(&site, &a).await, "id_token")).await;
        assert_eq!(claims["sub"], alice["sub"], "{what}");
        assert_eq!(
            claims["idp_id"], ALICE,
            "{what}: the signed assertion's subject"
        );
    }
    assert_eq!(
        site.count(Table::Profiles).await,
        1,
        "one user, one profile"
    );

    // A comment inside the NameID (exclusive c14n drops it, so the signature still verifies):
    // the subject is the whole text, never the part before the comment.
    let whole = "alice@acme.test.evil.example";
    let mut flow = Flow::start(&site).await;
    let authn = flow.go_to_idp(&site, ALICE, &idp).await;
    let r = Response {
        attributes: vec![("email".into(), vec![whole.into()])],
        ..valid(&idp, &conn, &authn, whole)
    };
    let xml = idp.sign(&r);
    let injected = xml.replace(
        &format!(">{whole}</saml:NameID>"),
        ">alice@acme.test<!---->.evil.example</saml:NameID>",
    );
    assert_ne!(xml, injected);
    let a = flow
        .post(&site, &conn.id, &B64.encode(&injected), Some(authn.relay()))
        .await;
    let claims = verified(&site, str_of(&flow.tokens(&site, &a).await, "id_token")).await;
    assert_eq!(claims["idp_id"], whole, "{claims}");
    assert_eq!(claims["email"], whole, "{claims}");
    assert_ne!(claims["sub"], alice["sub"], "not Alice's profile");
    assert_eq!(site.count(Table::Profiles).await, 2);
}

/// An unsigned Assertion naming someone else, beside the signed one.
fn evil_assertion(idp: &SamlIdp, conn: &Conn, authn: &AuthnRequest) -> String {
    Response {
        assertion_id: fresh_id("evil"),
        sign_assertion: false,
        ..valid(idp, conn, authn, "admin@acme.test")
    }
    .assertion_xml()
}

/// The same valid Response posted twice is refused the second time, also after a restart; a
/// second Response to an answered request, and a Response to no request, are refused too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_unsolicited_responses_are_refused_across_a_restart() {
    let site = Site::new(Backend::Sqlite, "replay").await;
    let acme = site.org("Acme", "acme.test").await;
    let idp = SamlIdp::new("acme.test");
    let conn = site.connection(&acme, "Acme IdP", &idp, json!({})).await;

    let mut flow = Flow::start(&site).await;
    let authn = flow.go_to_idp(&site, ALICE, &idp).await;
    let response = idp.post_value(&valid(&idp, &conn, &authn, ALICE));
    let first = flow
        .post(&site, &conn.id, &response, Some(authn.relay()))
        .await;
    let code = redirected_to(&first, REDIRECT)["code"].clone();
    let made = site.made().await;
    let a = flow
        .post(&site, &conn.id, &response, Some(authn.relay()))
        .await;
    let data = site.assert_refused(&a, "replay").await;
    assert!(str_of(&data, "detail").contains("already used"), "{data}");
    // Another browser, the same Response.
    let a = Browser::new(&site.s)
        .post(
            &site.acs(&conn.id),
            &[("SAMLResponse", &response), ("RelayState", authn.relay())],
        )
        .await;
    site.assert_refused(&a, "replay").await;
    // A second, fresh Response to the answered request.
    let a = flow
        .answer(
            &site,
            &conn,
            &idp,
            &authn,
            &valid(&idp, &conn, &authn, ALICE),
        )
        .await;
    site.assert_refused(&a, "in_response_to_used").await;
    assert_eq!(site.made().await, made, "no profile, no code");
    // The first answer stands.
    issued(&redeem(&site.s, &site.t, &site.app, &code, &flow.pkce.verifier).await);

    // IdP-initiated login is off: a Response answering no request is refused, with or without a
    // RelayState, and consumes nothing.
    let mut pending = Flow::start(&site).await;
    let pending_authn = pending.go_to_idp(&site, ALICE, &idp).await;
    let unsolicited = Response::new(&idp, &conn.sp, None, ALICE);
    let value = idp.post_value(&unsolicited);
    for relay in [
        None,
        Some("https://app.example/after"),
        Some(pending_authn.relay()),
    ] {
        let a = Browser::new(&site.s)
            .post(
                &site.acs(&conn.id),
                &relay.map_or(vec![("SAMLResponse", value.as_str())], |r| {
                    vec![("SAMLResponse", value.as_str()), ("RelayState", r)]
                }),
            )
            .await;
        site.assert_refused(&a, "unsolicited").await;
    }
    assert_eq!(site.made().await.0, made.0);

    // After a restart the replay cache still knows the assertion.
    let site = site.restart().await;
    let a = Browser::new(&site.s)
        .post(
            &site.acs(&conn.id),
            &[("SAMLResponse", &response), ("RelayState", authn.relay())],
        )
        .await;
    site.assert_refused(&a, "replay").await;
    // And the request pending across the restart still signs in.
    let mut b = pending.b;
    let a = b
        .post(
            &site.acs(&conn.id),
            &[
                (
                    "SAMLResponse",
                    &idp.post_value(&valid(&idp, &conn, &pending_authn, ALICE)),
                ),
                ("RelayState", pending_authn.relay()),
            ],
        )
        .await;
    let q = redirected_to(&a, REDIRECT);
    let tokens = issued(
        &post_form(
            &site.s,
            &site.at("/oauth2/token"),
            &site.app.auth(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pending.pkce.verifier),
            ],
        )
        .await,
    );
    assert!(tokens["id_token"].is_string());
}

/// Two organizations, each with its own IdP (two certificates): a Response of Acme's IdP is
/// refused at Globex's ACS, whatever request it names, and both pending requests survive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_from_another_organizations_idp_is_refused() {
    let site = Site::new(Backend::Sqlite, "cross").await;
    let acme = site.org("Acme", "acme.test").await;
    let globex = site.org("Globex", "globex.test").await;
    let idp_a = SamlIdp::new("acme.test");
    let idp_b = SamlIdp::new("globex.test");
    let conn_a = site.connection(&acme, "Acme IdP", &idp_a, json!({})).await;
    let conn_b = site
        .connection(&globex, "Globex IdP", &idp_b, json!({}))
        .await;
    assert_ne!(conn_a.sp.entity_id, conn_b.sp.entity_id);

    let mut alice = Flow::start(&site).await;
    let authn_a = alice.go_to_idp(&site, ALICE, &idp_a).await;
    let mut bob = Flow::start(&site).await;
    let authn_b = bob.go_to_idp(&site, BOB, &idp_b).await;

    // Acme's genuine Response for Alice, carried to Globex's ACS with Acme's RelayState.
    let genuine = idp_a.post_value(&valid(&idp_a, &conn_a, &authn_a, ALICE));
    let a = alice
        .post(&site, &conn_b.id, &genuine, Some(authn_a.relay()))
        .await;
    let data = site.assert_refused(&a, "untrusted_key").await;
    assert_eq!(data["connection_id"], conn_b.id.as_str());
    assert_eq!(data["organization_id"], globex.as_str());
    // Acme's IdP (its key) speaking for Globex: addressed to Globex's SP, answering Bob's
    // request, posted with Bob's RelayState.
    let forged = Response {
        issuer: idp_b.entity_id.clone(),
        ..Response::new(&idp_a, &conn_b.sp, Some(&authn_b.id), ALICE)
    };
    let a = bob
        .post(
            &site,
            &conn_b.id,
            &idp_a.post_value(&forged),
            Some(authn_b.relay()),
        )
        .await;
    site.assert_refused(&a, "untrusted_key").await;
    // Without the certificate in the message: the signature verifies with no Globex key.
    let bare = strip_key_info(&idp_a.sign(&forged));
    let a = bob
        .post(&site, &conn_b.id, &B64.encode(&bare), Some(authn_b.relay()))
        .await;
    site.assert_refused(&a, "signature_invalid").await;
    assert_eq!(site.made().await, (0, 0));

    // Nothing was consumed: each request completes at its own connection, in its organization.
    let a = alice
        .post(&site, &conn_a.id, &genuine, Some(authn_a.relay()))
        .await;
    let claims = verified(&site, str_of(&alice.tokens(&site, &a).await, "id_token")).await;
    assert_eq!(claims["org_id"], acme.as_str());
    assert_eq!(claims["connection_id"], conn_a.id.as_str());
    let a = bob
        .answer(
            &site,
            &conn_b,
            &idp_b,
            &authn_b,
            &valid(&idp_b, &conn_b, &authn_b, BOB),
        )
        .await;
    let claims = verified(&site, str_of(&bob.tokens(&site, &a).await, "id_token")).await;
    assert_eq!(claims["org_id"], globex.as_str());
    assert_eq!(claims["connection_id"], conn_b.id.as_str());
    assert_eq!(claims["email"], BOB);
    assert_eq!(site.count(Table::Profiles).await, 2);
}

/// Removes every `ds:KeyInfo` (the signer's certificate) from signed XML: KeyInfo is outside
/// SignedInfo, so the signature is unchanged.
fn strip_key_info(xml: &str) -> String {
    let mut out = xml.to_owned();
    while let Some(start) = out.find("<ds:KeyInfo>") {
        let end = out[start..].find("</ds:KeyInfo>").unwrap() + start + "</ds:KeyInfo>".len();
        out.replace_range(start..end, "");
    }
    out
}

/// IdP-initiated login where the connection enables it: a fresh flow for the configured client,
/// a code at its redirect URI; the same Response again is a replay, also after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_initiated_login_where_enabled() {
    let site = Site::new(Backend::Sqlite, "idpinit").await;
    let acme = site.org("Acme", "acme.test").await;
    let idp = SamlIdp::new("acme.test");
    let settings = json!({
        "allow_idp_initiated": true,
        "idp_initiated": { "client_id": site.app.id, "redirect_uri": REDIRECT },
    });
    let conn = site.connection(&acme, "Acme IdP", &idp, settings).await;

    let value = idp.post_value(&Response::new(&idp, &conn.sp, None, ALICE));
    let mut b = Browser::new(&site.s);
    let a = b
        .post(&site.acs(&conn.id), &[("SAMLResponse", &value)])
        .await;
    let q = redirected_to(&a, REDIRECT);
    assert!(!q.contains_key("state"), "no state was sent: {q:?}");
    assert_eq!(q["iss"], site.t.issuer);
    let tokens = issued(
        &token(
            &site.s,
            &site.t,
            &site.app.auth(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &q["code"]),
                ("redirect_uri", REDIRECT),
            ],
        )
        .await,
    );
    let claims = verified(&site, str_of(&tokens, "id_token")).await;
    assert_eq!(claims["org_id"], acme.as_str());
    assert_eq!(claims["connection_id"], conn.id.as_str());
    assert_eq!(claims["email"], ALICE);
    assert_eq!(claims["aud"], site.app.id.as_str());

    // A Response that claims to answer a request none of ours is pending for.
    let made = site.made().await;
    let answering = Response::new(&idp, &conn.sp, Some(&fresh_id("req")), ALICE);
    let a = b
        .post(
            &site.acs(&conn.id),
            &[("SAMLResponse", &idp.post_value(&answering))],
        )
        .await;
    site.assert_refused(&a, "in_response_to_mismatch").await;

    let a = b
        .post(&site.acs(&conn.id), &[("SAMLResponse", &value)])
        .await;
    site.assert_refused(&a, "replay").await;
    let site = site.restart().await;
    let a = Browser::new(&site.s)
        .post(&site.acs(&conn.id), &[("SAMLResponse", &value)])
        .await;
    site.assert_refused(&a, "replay").await;
    assert_eq!(site.made().await, made);
    // A fresh one still signs in.
    let fresh = idp.post_value(&Response::new(&idp, &conn.sp, None, ALICE));
    let a = Browser::new(&site.s)
        .post(&site.acs(&conn.id), &[("SAMLResponse", &fresh)])
        .await;
    redirected_to(&a, REDIRECT);
}

// ---------------------------------------------------------------------------------------------
// The admin API

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saml_connections_through_the_admin_api() {
    let clock = FakeClock::new(Timestamp::from_millis(now_seconds() * 1000));
    let s = TestServer::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let site = Site::on(s, "samladm").await;
    let acme = site.org("Acme", "acme.test").await;
    let idp = SamlIdp::new("acme.test");

    // Refused settings: nothing created.
    for saml in [
        json!({ "allow_idp_initiated": "yes" }),
        json!({ "skew_seconds": 3600 }),
        json!({ "entity_id": "https://idp.acme.test/saml" }),
        json!({ "attribute_mapping": { "phone": ["tel"] } }),
        json!({ "idp": { "entity_id": idp.entity_id, "sso_url": idp.sso_url } }),
        json!({ "idp": { "entity_id": idp.entity_id, "sso_url": "ftp://idp.acme.test",
                         "certificates_pem": std::fs::read_to_string(&idp.key.cert_pem).unwrap() } }),
        json!({ "idp": { "entity_id": idp.entity_id, "sso_url": idp.sso_url,
                         "certificates_pem": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----" } }),
    ] {
        let got = site.create(&acme, "Acme IdP", saml.clone()).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    let base = format!("/environments/samladm/organizations/{acme}/connections");
    assert_eq!(site.s.admin_get(&base).await.1["data"], json!([]));

    // Without an IdP side the connection cannot be activated.
    let (status, c) = site.create(&acme, "Acme IdP", json!({})).await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    let conn = str_of(&c, "id").to_owned();
    let one = format!("/environments/samladm/connections/{conn}");
    let got = site.activate(&conn).await;
    assert_error(&got, StatusCode::CONFLICT, "connection_incomplete");
    assert_eq!(site.s.admin_get(&one).await.1["state"], "draft");
    assert!(site.events("connection.activated").await.is_empty());
    // Nor routed: the organization still signs in with passwords.
    let mut flow = Flow::start(&site).await;
    let page = flow.b.submit_email(&site.t, &flow.req, ALICE).await;
    assert_page(&page, StatusCode::OK);
    assert!(page.text.contains(r#"id="password""#), "{}", page.text);

    // Metadata with a DOCTYPE (entities, an external DTD) is refused before parsing; nothing
    // changes.
    let before = site.s.admin_get(&one).await.1;
    let updates = site.events("connection.updated").await.len();
    let hostile = idp.metadata().replacen(
        "<md:EntityDescriptor",
        "<!DOCTYPE md:EntityDescriptor [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\n<md:EntityDescriptor",
        1,
    );
    for xml in [
        hostile.clone(),
        hostile.replace(&idp.entity_id, "&xxe;"),
        "not xml at all".to_owned(),
        idp.metadata().replace("HTTP-Redirect", "HTTP-Artifact"),
    ] {
        let (status, v) = site.upload_metadata(&conn, &xml).await;
        assert!(
            status == StatusCode::UNPROCESSABLE_ENTITY,
            "{status} {v} for {xml}"
        );
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    }
    let (status, v) = site.upload_metadata(&conn, &hostile).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(v["code"], "invalid_metadata", "{v}");
    assert!(str_of(&v, "message").contains("doctype"), "{v}");
    assert_eq!(site.s.admin_get(&one).await.1, before, "nothing changed");
    assert_eq!(site.events("connection.updated").await.len(), updates);

    // A rollover: the current key, and one that expires tomorrow. Two days later the upload
    // reports the second as expired.
    let short = idp.extra_key("short-lived", 1);
    clock.advance_seconds(2 * 86_400);
    let (status, v) = site
        .upload_metadata(&conn, &idp.metadata_with(&[&idp.key, &short]))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let certs = v["idp"]["certificates"].as_array().unwrap();
    assert_eq!(certs.len(), 2, "{v}");
    assert_eq!(certs[0]["expired"], false, "{v}");
    assert_eq!(certs[1]["expired"], true, "{v}");
    for c in certs {
        let not_after = Timestamp::parse_rfc3339(str_of(c, "not_after")).unwrap();
        assert!(not_after.seconds() > now_seconds(), "{c}");
        assert!(str_of(c, "subject").contains("CN="), "{c}");
        assert_eq!(str_of(c, "sha256_fingerprint").len(), 95, "{c}");
    }
    let short_after = Timestamp::parse_rfc3339(str_of(&certs[1], "not_after")).unwrap();
    assert!((short_after.seconds() - (now_seconds() + 86_400)).abs() < 300);
    let updated = site.events("connection.updated").await;
    assert_eq!(updated.len(), updates + 1);
    let (_, view) = site.s.admin_get(&one).await;
    assert_eq!(view["config"]["idp"]["entity_id"], idp.entity_id.as_str());
    assert_eq!(
        view["config"]["idp"]["certificates"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );

    // Complete now: activated, and listed in the inventory.
    let (status, v) = site.activate(&conn).await;
    assert_eq!((status, &v["state"]), (StatusCode::OK, &json!("active")));
    assert_eq!(site.events("connection.activated").await.len(), 1);
    let (status, inv) = site.s.admin_get("/environments/samladm/inventory").await;
    assert_eq!(status, StatusCode::OK, "{inv}");
    let rows: BTreeMap<String, Value> = inv["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["component"]["id"] == conn.as_str())
        .map(|r| (str_of(r, "kind").to_owned(), r.clone()))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    let acs = site.t.at(&format!("/sso/saml/{conn}/acs"));
    for (kind, direction, url, decision) in [
        ("redirect", "front_channel", idp.sso_url.as_str(), "allowed"),
        ("callback", "inbound", acs.as_str(), "inbound"),
        (
            "metadata_fetch",
            "outbound",
            idp.sso_url.as_str(),
            "replaced",
        ),
    ] {
        let r = &rows[kind];
        assert_eq!(r["component"]["kind"], "connection", "{r}");
        assert_eq!(r["direction"], direction, "{r}");
        assert_eq!(r["url"], url, "{r}");
        assert_eq!(r["decision"], decision, "{r}");
    }

    // Manual configuration without metadata: complete at creation, activated at once.
    let globex = site.org("Globex", "globex.test").await;
    let pem = std::fs::read_to_string(&idp.key.cert_pem).unwrap();
    let (status, c) = site
        .create(
            &globex,
            "Globex IdP",
            json!({ "idp": { "entity_id": "https://idp.globex.test/saml",
                             "sso_url": "https://idp.globex.test/sso", "certificates_pem": pem } }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{c}");
    assert_eq!(c["config"]["idp"]["sso_url"], "https://idp.globex.test/sso");
    let (status, v) = site.activate(str_of(&c, "id")).await;
    assert_eq!((status, &v["state"]), (StatusCode::OK, &json!("active")));
}
