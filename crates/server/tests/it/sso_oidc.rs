//! Sign-in through an organization's upstream OpenID provider (issue 5), end to end over HTTP.
//!
//! The provider is [`idp::Idp`], served by the test on loopback with an ES256 key generated here
//! and pinned in the connection; the token call crosses the environment's egress gate, which a
//! rule `idp` (loopback, the IdP's port, `token_exchange`) allows.
//!
//! - the whole round trip: application → `/oauth2/authorize` → hosted login → IdP → callback →
//!   code → tokens whose ID token and userinfo carry the profile, with its events and inventory;
//! - every refused callback: a plain page with a reference, an `authentication.sso_failed` event
//!   with the precise reason, no profile, and the pending authorization request left intact;
//! - routing by the connection the pending request was sent to (never across organizations), and
//!   no linking of profiles by email;
//! - the admin API of connections.

mod idp;

use std::collections::BTreeMap;

use portcullis_testkit::server::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use self::idp::{Idp, IdpUser, Reply};
use crate::oauth::{
    Answer, Browser, Pkce, REDIRECT, Tenant, TestClient, assert_page, authorize_url, create_client,
    issued, jwt_header, random_token, redeem, redirected_to, userinfo, web_app,
};
use crate::{assert_error, create_env, create_org, jwk, jwks, str_of};

both_backends!(end_to_end_through_an_upstream_oidc_provider);

/// The test IdP's clients: one per connection.
const CLIENTS: [(&str, &str); 3] = [
    ("portcullis-a", "secret a: with spaces & symbols"),
    ("portcullis-b", "secret-b"),
    ("portcullis-c", "secret-c"),
];
const ALICE: &str = "alice@acme.test";

fn alice() -> IdpUser {
    IdpUser::new("00u-alice", ALICE, &["engineering", "admins"])
}

/// A server, an environment (with its own password organization and user), a web application,
/// and a test IdP reachable through the egress gate.
struct Site {
    s: TestServer,
    t: Tenant,
    app: TestClient,
    idp: Idp,
}

impl Site {
    async fn new(backend: Backend, slug: &str) -> Self {
        let s = TestServer::start(backend).await.unwrap();
        let t = Tenant::new(&s, slug, "ES256").await;
        let app = create_client(&s, &t, web_app()).await;
        let idp = Idp::start(&CLIENTS).await;
        let site = Self { s, t, app, idp };
        site.set_egress(json!([site.idp_rule()])).await;
        site
    }

    fn idp_rule(&self) -> Value {
        json!({ "id": "idp", "scheme": "http", "cidr": "127.0.0.0/8", "port": self.idp.port,
                "purposes": ["token_exchange"] })
    }

    /// Replaces the environment's egress rules.
    async fn set_egress(&self, rules: Value) {
        let path = format!("/environments/{}/egress-policy", self.t.slug);
        let (_, current) = self.s.admin_get(&path).await;
        let doc = json!({ "version": current["version"], "rules": rules, "waivers": [] });
        let (status, v) = self
            .s
            .request(
                Method::PUT,
                &format!("/admin/v1{path}"),
                Some(self.s.admin_key()),
                Some(&doc),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{v}");
    }

    /// An organization owning `domain`; its ID.
    async fn org(&self, name: &str, domain: &str) -> String {
        str_of(
            &create_org(&self.s, &self.t.slug, name, &[domain]).await,
            "id",
        )
        .to_owned()
    }

    /// Creates an OIDC connection of `org` to the test IdP as client `n` of [`CLIENTS`] and
    /// activates it; its ID.
    async fn connection(&self, org: &str, name: &str, n: usize) -> String {
        let (client_id, secret) = CLIENTS[n];
        let (status, c) = self
            .s
            .admin_post(
                &format!(
                    "/environments/{}/organizations/{org}/connections",
                    self.t.slug
                ),
                json!({ "type": "oidc", "name": name, "oidc": self.idp.settings(client_id),
                        "client_secret": secret }),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{c}");
        assert_eq!(c["state"], "draft", "{c}");
        let id = str_of(&c, "id").to_owned();
        let (status, c) = self
            .s
            .admin_post(
                &format!("/environments/{}/connections/{id}/activate", self.t.slug),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{c}");
        assert_eq!(c["state"], "active", "{c}");
        id
    }

    fn callback(&self, conn: &str) -> String {
        self.t.at(&format!("/sso/oidc/{conn}/callback"))
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

    /// The number of SSO profiles, read beside the server.
    async fn profiles(&self) -> i64 {
        let mut tx = self.s.app().store.begin().await.unwrap();
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM profiles")
            .fetch_one(&mut *tx)
            .await
            .unwrap()
    }

    /// Asserts a refused callback: a plain error page (no redirect to the application) whose
    /// reference is that of the latest `authentication.sso_failed` event, which names `reason`.
    /// Returns the event's data.
    async fn assert_refused(&self, a: &Answer, reason: &str) -> Value {
        assert_page(a, StatusCode::BAD_REQUEST);
        assert!(!a.text.contains(REDIRECT), "{}", a.text);
        let failed = self.events("authentication.sso_failed").await;
        let data = failed.last().expect("an sso_failed event")["data"].clone();
        assert_eq!(data["reason"], reason, "{data}\n{}", a.text);
        let reference = str_of(&data, "reference");
        assert!(
            a.text.contains(reference),
            "the page shows the reference {reference}: {}",
            a.text
        );
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

/// One browser's sign-in to the application, from `/oauth2/authorize` on.
struct Flow {
    b: Browser,
    req: String,
    pkce: Pkce,
    /// The authorization request the IdP received last.
    upstream: BTreeMap<String, String>,
    /// Where the hosted login sent the browser without asking the email (a routing hint that
    /// names an SSO connection), if it did.
    direct: Option<String>,
}

impl Flow {
    /// Opens the application's authorization request (with extra `params`, e.g. hints) and
    /// stops at the hosted login's email form.
    async fn start(site: &Site, params: &[(&str, &str)]) -> Self {
        let mut b = Browser::new(&site.s);
        let pkce = Pkce::new();
        let mut p = vec![
            ("response_type", "code"),
            ("client_id", site.app.id.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email profile"),
            ("state", "xyz"),
            ("nonce", "n-0S6_WzA2Mj"),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        p.extend_from_slice(params);
        let a = b.get(&authorize_url(&site.t, &p)).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
        let login = a.location().to_owned();
        let req = crate::oauth::query(&login)
            .remove("req")
            .expect("the login URL names the request");
        let page = b.get(&login).await;
        let direct = (page.status == StatusCode::SEE_OTHER).then(|| page.location().to_owned());
        if direct.is_none() {
            assert_page(&page, StatusCode::OK);
        }
        Self {
            b,
            req,
            pkce,
            upstream: BTreeMap::new(),
            direct,
        }
    }

    /// Enters `email`: the hosted login sends the browser to the IdP, which records the request.
    async fn go_to_idp(&mut self, site: &Site, email: &str) -> &BTreeMap<String, String> {
        let to = match self.direct.take() {
            Some(to) => to,
            None => {
                let a = self.b.submit_email(&site.t, &self.req, email).await;
                assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
                a.location().to_owned()
            }
        };
        assert!(
            to.starts_with(&format!("{}?", site.idp.authorization_endpoint())),
            "{to}"
        );
        let at = self.b.get(&to).await;
        assert_eq!(
            at.status,
            StatusCode::OK,
            "the IdP accepted {to}: {}",
            at.text
        );
        self.upstream = serde_json::from_value(at.json["recorded"].clone()).unwrap();
        &self.upstream
    }

    /// The user signs in at the IdP as `user`; the browser follows the IdP back.
    async fn back(&mut self, site: &Site, user: &IdpUser, reply: Reply) -> Answer {
        let cb = site.idp.approve(&self.upstream, user, reply);
        self.b.get(&cb).await
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

/// Signs `user` in through the connection the hints and `email` lead to; the verified ID token.
async fn sign_in(site: &Site, hints: &[(&str, &str)], email: &str, user: &IdpUser) -> Value {
    let mut flow = Flow::start(site, hints).await;
    flow.go_to_idp(site, email).await;
    let a = flow.back(site, user, Reply::Valid).await;
    let tokens = flow.tokens(site, &a).await;
    verified(site, str_of(&tokens, "id_token")).await
}

// ---------------------------------------------------------------------------------------------
// The round trip

async fn end_to_end_through_an_upstream_oidc_provider(backend: Backend) {
    let site = Site::new(backend, "sso").await;
    let acme = site.org("Acme", "acme.test").await;
    let conn = site.connection(&acme, "Acme IdP", 0).await;
    assert_eq!(site.profiles().await, 0);

    let mut flow = Flow::start(&site, &[]).await;
    let up = flow.go_to_idp(&site, ALICE).await.clone();
    // What the IdP received: code flow with PKCE S256, fresh state and nonce, our callback.
    assert_eq!(up["response_type"], "code");
    assert_eq!(up["client_id"], CLIENTS[0].0);
    assert_eq!(up["redirect_uri"], site.callback(&conn));
    assert_eq!(up["code_challenge_method"], "S256");
    assert_eq!(up["scope"], "openid email profile");
    assert_eq!(up["login_hint"], ALICE);
    for k in ["state", "nonce", "code_challenge"] {
        assert!(up[k].len() >= 43, "{k} carries 256 bits: {up:?}");
    }
    assert_ne!(up["state"], up["nonce"]);

    let a = flow.back(&site, &alice(), Reply::Valid).await;
    let tokens = flow.tokens(&site, &a).await;
    let calls = site.idp.token_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].is_ok(),
        "the IdP accepted the client, code, redirect_uri and verifier: {calls:?}"
    );

    let claims = verified(&site, str_of(&tokens, "id_token")).await;
    let sub = str_of(&claims, "sub").to_owned();
    assert!(sub.starts_with("prof_"), "{claims}");
    assert_eq!(claims["iss"], site.t.issuer);
    assert_eq!(claims["aud"], site.app.id.as_str());
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["org_id"], acme.as_str());
    assert_eq!(claims["connection_id"], conn.as_str());
    assert_eq!(claims["idp_id"], "00u-alice");
    assert_eq!(claims["email"], ALICE);
    assert_eq!(claims["groups"], json!(["engineering", "admins"]));
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
    assert_eq!(site.profiles().await, 1);

    let ok = site.events("authentication.sso_succeeded").await;
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(ok[0]["organization_id"], acme.as_str());
    let d = &ok[0]["data"];
    assert_eq!(d["connection_id"], conn.as_str(), "{d}");
    assert_eq!(d["profile_id"], sub.as_str(), "{d}");
    assert_eq!(d["idp_id"], "00u-alice", "{d}");
    assert_eq!(d["client_id"], site.app.id.as_str(), "{d}");
    let activated = site.events("connection.activated").await;
    assert_eq!(activated.len(), 1, "{activated:?}");
    assert_eq!(activated[0]["data"]["id"], conn.as_str());
    assert!(site.events("authentication.sso_failed").await.is_empty());

    // The inventory lists the connection's network paths.
    let (status, inv) = site
        .s
        .admin_get(&format!("/environments/{}/inventory", site.t.slug))
        .await;
    assert_eq!(status, StatusCode::OK, "{inv}");
    let rows: BTreeMap<String, Value> = inv["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["component"]["id"] == conn.as_str())
        .map(|r| (str_of(r, "kind").to_owned(), r.clone()))
        .collect();
    let row = |k: &str| {
        rows.get(k)
            .unwrap_or_else(|| panic!("no {k} row: {rows:?}"))
    };
    let expect = [
        (
            "redirect",
            "front_channel",
            site.idp.authorization_endpoint(),
            "allowed",
        ),
        ("callback", "inbound", site.callback(&conn), "inbound"),
        (
            "token_exchange",
            "outbound",
            site.idp.token_endpoint(),
            "allowed",
        ),
        (
            "jwks_fetch",
            "outbound",
            site.idp.issuer().to_owned(),
            "internalised",
        ),
    ];
    for (kind, direction, url, decision) in expect {
        let r = row(kind);
        assert_eq!(r["component"]["kind"], "connection", "{r}");
        assert_eq!(r["direction"], direction, "{r}");
        assert_eq!(r["url"], url.as_str(), "{r}");
        assert_eq!(r["decision"], decision, "{r}");
    }
    assert_eq!(row("token_exchange")["detail"], "rule idp");
    assert_eq!(row("token_exchange")["port"], site.idp.port);
}

// ---------------------------------------------------------------------------------------------
// Refusals

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_id_tokens_and_idp_errors_are_refused_and_the_request_survives() {
    let site = Site::new(Backend::Sqlite, "refuse").await;
    let acme = site.org("Acme", "acme.test").await;
    let conn = site.connection(&acme, "Acme IdP", 0).await;
    for (reply, reason) in [
        (Reply::OtherKey, "id_token_signature_invalid"),
        (Reply::WrongIssuer, "id_token_issuer_mismatch"),
        (Reply::WrongAudience, "id_token_audience_mismatch"),
        (Reply::WrongNonce, "id_token_nonce_mismatch"),
        (Reply::Expired, "id_token_expired"),
        (Reply::Hs256, "id_token_alg_refused"),
        (Reply::AlgNone, "id_token_alg_refused"),
        (Reply::Refuse, "token_request_refused"),
    ] {
        let profiles = site.profiles().await;
        let calls = site.idp.token_calls().len();
        let mut flow = Flow::start(&site, &[]).await;
        flow.go_to_idp(&site, ALICE).await;
        let a = flow.back(&site, &alice(), reply).await;
        let data = site.assert_refused(&a, reason).await;
        assert_eq!(data["connection_id"], conn.as_str(), "{data}");
        assert_eq!(data["organization_id"], acme.as_str(), "{data}");
        assert_eq!(site.profiles().await, profiles, "{reply:?}: no profile");
        let now = site.idp.token_calls();
        assert_eq!(now.len(), calls + 1, "{reply:?}: {now:?}");
        assert!(
            now[calls].is_ok(),
            "{reply:?}: Portcullis presented what the IdP expects: {now:?}"
        );
        // What a valid response needs is intact: the same browser, on the same pending request,
        // goes to the IdP again and signs in.
        flow.go_to_idp(&site, ALICE).await;
        let a = flow.back(&site, &alice(), Reply::Valid).await;
        flow.tokens(&site, &a).await;
    }
    assert_eq!(site.profiles().await, 1, "one user, one profile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_replayed_states_are_refused() {
    let site = Site::new(Backend::Sqlite, "state").await;
    let acme = site.org("Acme", "acme.test").await;
    let conn = site.connection(&acme, "Acme IdP", 0).await;

    // An unknown state consumes nothing: the pending request still completes afterwards.
    let mut flow = Flow::start(&site, &[]).await;
    flow.go_to_idp(&site, ALICE).await;
    let forged = format!(
        "{}?{}",
        site.callback(&conn),
        crate::oauth::form(&[("code", &random_token()), ("state", &random_token())])
    );
    let a = flow.b.get(&forged).await;
    site.assert_refused(&a, "state_unknown").await;
    let a = flow
        .b
        .get(&format!("{}?code=abc", site.callback(&conn)))
        .await;
    site.assert_refused(&a, "state_missing").await;
    assert!(site.idp.token_calls().is_empty(), "nothing reached the IdP");
    assert_eq!(site.profiles().await, 0);
    let a = flow.back(&site, &alice(), Reply::Valid).await;
    flow.tokens(&site, &a).await;

    // The same callback a second time (a replay, or the back button) is refused.
    let mut flow = Flow::start(&site, &[]).await;
    flow.go_to_idp(&site, ALICE).await;
    let cb = site.idp.approve(&flow.upstream, &alice(), Reply::Valid);
    let first = flow.b.get(&cb).await;
    let second = flow.b.get(&cb).await;
    site.assert_refused(&second, "state_unknown").await;
    assert_eq!(
        site.idp.token_calls().len(),
        2,
        "the replay did not reach the IdP"
    );
    // The first answer stands.
    flow.tokens(&site, &first).await;

    // The callback carried to another browser (login CSRF) is refused before the IdP is called.
    let mut flow = Flow::start(&site, &[]).await;
    flow.go_to_idp(&site, ALICE).await;
    let cb = site.idp.approve(&flow.upstream, &alice(), Reply::Valid);
    let a = Browser::new(&site.s).get(&cb).await;
    assert_page(&a, StatusCode::FORBIDDEN);
    assert_eq!(site.idp.token_calls().len(), 2);
    assert_eq!(site.profiles().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_call_goes_through_the_egress_gate() {
    let site = Site::new(Backend::Sqlite, "gate").await;
    let acme = site.org("Acme", "acme.test").await;
    site.connection(&acme, "Acme IdP", 0).await;
    site.set_egress(json!([])).await;

    let mut flow = Flow::start(&site, &[]).await;
    flow.go_to_idp(&site, ALICE).await;
    let a = flow.back(&site, &alice(), Reply::Valid).await;
    let data = site.assert_refused(&a, "egress_refused").await;
    assert!(
        str_of(&data, "detail").contains("egress"),
        "the reason names the gate: {data}"
    );
    assert!(site.idp.token_calls().is_empty(), "nothing reached the IdP");
    assert_eq!(site.profiles().await, 0);
    let denied = site.events("egress.denied").await;
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["data"]["purpose"], "token_exchange");
    assert!(
        str_of(&denied[0]["data"], "url").contains(&site.idp.port.to_string()),
        "{denied:?}"
    );
    let (_, inv) = site
        .s
        .admin_get(&format!("/environments/{}/inventory", site.t.slug))
        .await;
    let token_row = inv["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "token_exchange")
        .cloned()
        .unwrap();
    assert_eq!(token_row["decision"], "blocked", "{token_row}");

    // With the rule back, the same pending request signs in.
    site.set_egress(json!([site.idp_rule()])).await;
    flow.go_to_idp(&site, ALICE).await;
    let a = flow.back(&site, &alice(), Reply::Valid).await;
    flow.tokens(&site, &a).await;
}

// ---------------------------------------------------------------------------------------------
// Routing and linking

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_for_another_organizations_connection_is_refused() {
    let site = Site::new(Backend::Sqlite, "cross").await;
    let acme = site.org("Acme", "acme.test").await;
    let globex = site.org("Globex", "globex.test").await;
    let conn_a = site.connection(&acme, "Acme IdP", 0).await;
    let conn_b = site.connection(&globex, "Globex IdP", 1).await;

    // Alice of Acme starts signing in: the request goes to Acme's connection.
    let mut victim = Flow::start(&site, &[]).await;
    let up_a = victim.go_to_idp(&site, ALICE).await.clone();
    assert_eq!(up_a["client_id"], CLIENTS[0].0);
    assert_eq!(up_a["redirect_uri"], site.callback(&conn_a));
    // Mallory of Globex obtains a code from Globex's IdP client.
    let mut mallory = Flow::start(&site, &[]).await;
    let up_b = mallory
        .go_to_idp(&site, "mallory@globex.test")
        .await
        .clone();
    assert_eq!(up_b["redirect_uri"], site.callback(&conn_b));
    let mallory_user = IdpUser::new("00u-mallory", ALICE, &["admins"]);
    let cb_b = site.idp.approve(&up_b, &mallory_user, Reply::Valid);
    let code_b = crate::oauth::query(&cb_b)["code"].clone();

    // Globex's callback with Acme's state: the state belongs to another connection.
    for b in [&mut victim.b, &mut mallory.b] {
        let url = format!(
            "{}?{}",
            site.callback(&conn_b),
            crate::oauth::form(&[("code", &code_b), ("state", &up_a["state"])])
        );
        let a = b.get(&url).await;
        let data = site.assert_refused(&a, "state_unknown").await;
        assert_eq!(data["connection_id"], conn_b.as_str());
    }
    // And the reverse: Acme's callback with Globex's state.
    let url = format!(
        "{}?{}",
        site.callback(&conn_a),
        crate::oauth::form(&[("code", &code_b), ("state", &up_b["state"])])
    );
    let a = mallory.b.get(&url).await;
    site.assert_refused(&a, "state_unknown").await;
    assert!(site.idp.token_calls().is_empty(), "nothing reached the IdP");
    assert_eq!(site.profiles().await, 0);

    // Neither state was consumed: each completes at its own connection, in its organization.
    let a = victim.back(&site, &alice(), Reply::Valid).await;
    let claims = verified(&site, str_of(&victim.tokens(&site, &a).await, "id_token")).await;
    assert_eq!(claims["org_id"], acme.as_str());
    assert_eq!(claims["connection_id"], conn_a.as_str());
    let a = mallory.b.get(&cb_b).await;
    let claims = verified(&site, str_of(&mallory.tokens(&site, &a).await, "id_token")).await;
    assert_eq!(claims["org_id"], globex.as_str());
    assert_eq!(claims["connection_id"], conn_b.as_str());
    assert_eq!(claims["email"], ALICE, "the IdP's claim, bound to Globex");

    // A hint that names Globex's connection or organization goes straight to Globex's IdP,
    // without asking the email: whatever that IdP answers signs into Globex only (above).
    for hint in [
        ("connection", conn_b.as_str()),
        ("organization", globex.as_str()),
    ] {
        let mut b = Browser::new(&site.s);
        let pkce = Pkce::new();
        let url = authorize_url(
            &site.t,
            &[
                ("response_type", "code"),
                ("client_id", site.app.id.as_str()),
                ("redirect_uri", REDIRECT),
                ("scope", "openid email"),
                ("state", "xyz"),
                ("nonce", "n-hint"),
                ("code_challenge", pkce.challenge.as_str()),
                ("code_challenge_method", "S256"),
                hint,
            ],
        );
        let a = b.get(&url).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
        let login = b.get(a.location()).await;
        assert_eq!(
            login.status,
            StatusCode::SEE_OTHER,
            "{hint:?}: {}",
            login.text
        );
        let to = login.location();
        assert!(
            to.starts_with(&format!("{}?", site.idp.authorization_endpoint())),
            "{hint:?}: {to}"
        );
        assert!(
            to.contains(&format!("sso%2Foidc%2F{conn_b}%2Fcallback"))
                || to.contains(&format!("sso/oidc/{conn_b}/callback")),
            "{hint:?} goes to Globex's connection: {to}"
        );
    }
    // A hint for a connection of another organization than the `organization` hint names goes
    // nowhere: the email form, and an Acme address is refused there.
    let mut flow = Flow::start(
        &site,
        &[
            ("connection", conn_b.as_str()),
            ("organization", acme.as_str()),
        ],
    )
    .await;
    let a = flow.b.submit_email(&site.t, &flow.req, ALICE).await;
    assert_page(&a, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_email_through_two_connections_is_two_profiles() {
    let site = Site::new(Backend::Sqlite, "linking").await;
    let acme = site.org("Acme", "acme.test").await;
    let globex = site.org("Globex", "globex.test").await;
    let a1 = site.connection(&acme, "Acme IdP", 0).await;
    let a2 = site.connection(&acme, "Acme IdP (staging)", 1).await;
    let b = site.connection(&globex, "Globex IdP", 2).await;
    // The same upstream subject and email every time.
    let user = alice();

    let one = sign_in(&site, &[("connection", &a1)], ALICE, &user).await;
    let two = sign_in(&site, &[("connection", &a2)], ALICE, &user).await;
    let three = sign_in(&site, &[], "someone@globex.test", &user).await;
    let again = sign_in(&site, &[("connection", &a1)], ALICE, &user).await;

    for (claims, conn, org) in [
        (&one, &a1, &acme),
        (&two, &a2, &acme),
        (&three, &b, &globex),
    ] {
        assert_eq!(claims["connection_id"], conn.as_str(), "{claims}");
        assert_eq!(claims["org_id"], org.as_str(), "{claims}");
        assert_eq!(claims["email"], ALICE, "{claims}");
        assert_eq!(claims["idp_id"], "00u-alice", "{claims}");
    }
    assert_ne!(one["sub"], two["sub"]);
    assert_ne!(one["sub"], three["sub"]);
    assert_ne!(two["sub"], three["sub"]);
    assert_eq!(
        again["sub"], one["sub"],
        "the same connection and subject: the same profile"
    );
    assert_eq!(site.profiles().await, 3);
}

// ---------------------------------------------------------------------------------------------
// The admin API

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_through_the_admin_api() {
    let site = Site::new(Backend::Sqlite, "adm").await;
    let s = &site.s;
    let acme = site.org("Acme", "acme.test").await;
    let base = format!("/environments/adm/organizations/{acme}/connections");
    let secret = format!("upstream-{}", random_token());
    let good = json!({ "type": "oidc", "name": "Acme IdP", "oidc": site.idp.settings(CLIENTS[0].0),
                       "client_secret": secret });
    let with_oidc = |patch: Value| {
        let mut body = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                body["oidc"].as_object_mut().unwrap().remove(k);
            } else {
                body["oidc"][k] = v.clone();
            }
        }
        body
    };
    let jwk = site.idp.jwks()["keys"][0].clone();
    let mut private = jwk.clone();
    private["d"] = json!("c2VjcmV0");
    let body_without = |k: &str| {
        let mut b = good.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let refused = [
        ("no jwks", with_oidc(json!({ "jwks": null }))),
        ("jwks not a key set", with_oidc(json!({ "jwks": [jwk] }))),
        (
            "empty key set",
            with_oidc(json!({ "jwks": { "keys": [] } })),
        ),
        (
            "private key material",
            with_oidc(json!({ "jwks": { "keys": [private] } })),
        ),
        (
            "a symmetric key",
            with_oidc(json!({ "jwks": { "keys": [{ "kty": "oct", "k": "c2VjcmV0" }] } })),
        ),
        (
            "issuer not a URL",
            with_oidc(json!({ "issuer": "acme idp" })),
        ),
        (
            "token endpoint not HTTP",
            with_oidc(json!({ "token_endpoint": "ftp://idp.acme.test/token" })),
        ),
        (
            "authorization endpoint without a host",
            with_oidc(json!({ "authorization_endpoint": "https:///authorize" })),
        ),
        (
            "authorization endpoint with userinfo",
            with_oidc(json!({ "authorization_endpoint": "https://evil@idp.acme.test/authorize" })),
        ),
        (
            "an HMAC algorithm",
            with_oidc(json!({ "allowed_algs": ["HS256"] })),
        ),
        ("alg none", with_oidc(json!({ "allowed_algs": ["none"] }))),
        ("no algorithm", with_oidc(json!({ "allowed_algs": [] }))),
        (
            "scopes without openid",
            with_oidc(json!({ "scopes": ["email", "profile"] })),
        ),
        (
            "a scope smuggling another",
            with_oidc(json!({ "scopes": ["openid", "email admin"] })),
        ),
        (
            "an unknown setting",
            with_oidc(json!({ "discovery_url": "https://idp.acme.test" })),
        ),
        ("no client secret", body_without("client_secret")),
        ("no oidc settings", body_without("oidc")),
        ("an unknown type", with(&good, json!({ "type": "ldap" }))),
        (
            "an empty secret",
            with(&good, json!({ "client_secret": "" })),
        ),
    ];
    for (what, body) in refused {
        let got = s.admin_post(&base, body).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
        let msg = str_of(&got.1, "message");
        assert!(!msg.contains(&secret), "{what}: {msg}");
    }
    let (_, list) = s.admin_get(&base).await;
    assert_eq!(list["data"], json!([]), "nothing was created");

    // Created as a draft, not routed until activated.
    let (status, created) = s.admin_post(&base, good.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["state"], "draft");
    assert_eq!(created["type"], "oidc");
    assert_eq!(created["organization_id"], acme.as_str());
    assert_eq!(created["config"]["issuer"], site.idp.issuer());
    assert_eq!(
        created["config"]["jwks"],
        site.idp.jwks(),
        "the pinned keys are shown"
    );
    let conn = str_of(&created, "id").to_owned();
    let one = format!("/environments/adm/connections/{conn}");
    let password_page = |a: &Answer| {
        assert_page(a, StatusCode::OK);
        assert!(a.text.contains(r#"id="password""#), "{}", a.text);
    };
    let mut flow = Flow::start(&site, &[]).await;
    password_page(&flow.b.submit_email(&site.t, &flow.req, ALICE).await);

    let (status, v) = s.admin_post(&format!("{one}/activate"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "active");
    let (status, v) = s.admin_post(&format!("{one}/activate"), json!({})).await;
    assert_eq!((status, &v["state"]), (StatusCode::OK, &json!("active")));
    let activated = site.events("connection.activated").await;
    assert_eq!(activated.len(), 1, "activating twice is one change");
    assert_eq!(activated[0]["data"]["change"]["previous_state"], "draft");
    assert_eq!(activated[0]["organization_id"], acme.as_str());

    // Active: the same pending request now goes to the IdP.
    flow.go_to_idp(&site, ALICE).await;
    let pending = flow.upstream.clone();

    let (status, v) = s.admin_post(&format!("{one}/deactivate"), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["state"], "inactive");
    let deactivated = site.events("connection.deactivated").await;
    assert_eq!(deactivated.len(), 1);
    assert_eq!(deactivated[0]["data"]["change"]["previous_state"], "active");
    // Inactive: no longer routed (the organization falls back to passwords), and a response to a
    // request sent while it was active is not accepted.
    password_page(&flow.b.submit_email(&site.t, &flow.req, ALICE).await);
    let a = flow
        .b
        .get(&site.idp.approve(&pending, &alice(), Reply::Valid))
        .await;
    assert_page(&a, StatusCode::BAD_REQUEST);
    assert!(site.idp.token_calls().is_empty());
    assert_eq!(site.profiles().await, 0);
    let (status, v) = s.admin_get(&one).await;
    assert_eq!((status, &v["state"]), (StatusCode::OK, &json!("inactive")));

    // Another environment's admin key, and another environment's path, find nothing.
    create_env(s, "other", json!({})).await;
    let (status, scoped) = s
        .admin_post(
            "/environments/other/api-keys",
            json!({ "name": "other-admin", "kind": "admin" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{scoped}");
    let key = str_of(&scoped, "secret").to_owned();
    for (method, path) in [
        (Method::GET, one.clone()),
        (Method::GET, base.clone()),
        (Method::POST, format!("{one}/activate")),
        (Method::POST, format!("{one}/deactivate")),
        (Method::POST, base.clone()),
        (
            Method::GET,
            format!("/environments/other/connections/{conn}"),
        ),
        (
            Method::POST,
            format!("/environments/other/connections/{conn}/activate"),
        ),
    ] {
        let body = (method == Method::POST).then(|| good.clone());
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
    let (status, v) = s.admin_get(&one).await;
    assert_eq!((status, &v["state"]), (StatusCode::OK, &json!("inactive")));

    // The client secret is never shown: not in any answer, event or audit record.
    let (_, listed) = s.admin_get(&base).await;
    let mut seen = vec![created.clone(), listed, v];
    seen.extend(every(s, "/environments/adm/events").await);
    seen.extend(every(s, "/environments/adm/audit").await);
    seen.extend(every(s, "/audit").await);
    let (_, inv) = s.admin_get("/environments/adm/inventory").await;
    seen.push(inv);
    for v in &seen {
        let text = v.to_string();
        assert!(!text.contains(&secret), "{text}");
        assert!(!text.contains("client_secret\":\""), "{text}");
    }
    assert!(seen.iter().any(|v| v["action"] == "connection.create"));
}

/// `base` with the fields of `extra` replaced.
fn with(base: &Value, extra: Value) -> Value {
    crate::oauth::with(base.clone(), extra)
}
