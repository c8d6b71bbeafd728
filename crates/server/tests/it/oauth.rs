//! The authorization server of every environment (issue 3), end to end over HTTP.
//!
//! - [`rp`]: an independent relying party, the `openidconnect` crate, signs in through the hosted
//!   login (discovery, code with PKCE, ID token validation against the JWKS, userinfo, refresh,
//!   revocation) for each signing algorithm;
//! - [`machine`]: client credentials, token exchange with an actor (RFC 8693), introspection
//!   (RFC 7662), revocation (RFC 7009) and userinfo with a plain HTTP client;
//! - [`authorize`]: refusals of the authorization endpoint, the hosted login and logout;
//! - [`token`]: refusals of the token endpoint (PKCE, code replay and races, refresh reuse,
//!   `private_key_jwt`, forged tokens, malformed requests).
//!
//! This module holds what they share: a tenant (environment, organization, local user), clients
//! made through the admin API, a cookie-keeping [`Browser`] that drives the login form, PKCE, and
//! calls to the token, introspection, revocation and userinfo endpoints. Every answer read through
//! these helpers is checked to be below 500: no request of these tests may make the server fail.

mod authorize;
mod machine;
mod rp;
mod token;

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_testkit::server::TestServer;
use reqwest::StatusCode;
use reqwest::header::{self, HeaderMap};
use serde_json::{Value, json};

use crate::{create_env, create_org, str_of};

/// The password of every tenant's user (the policy wants at least 12 characters).
pub const PASSWORD: &str = "correct horse battery staple";
/// The registered redirect URI of the test clients. Nothing listens there: the tests read the
/// `Location` of the server's redirect instead of following it.
pub const REDIRECT: &str = "http://127.0.0.1:9/cb";
pub const LOGOUT_REDIRECT: &str = "http://127.0.0.1:9/signed-out";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An environment signing with one algorithm, an organization owning `{slug}.example`, and a
/// local user of it who signs in with [`PASSWORD`].
pub struct Tenant {
    pub slug: String,
    pub issuer: String,
    pub org_id: String,
    pub user_id: String,
    pub email: String,
}

impl Tenant {
    pub async fn new(s: &TestServer, slug: &str, alg: &str) -> Self {
        let env = create_env(s, slug, json!({ "signing_alg": alg })).await;
        let issuer = s.at(&format!("/e/{slug}"));
        assert_eq!(env["issuer"], issuer.as_str(), "{env}");
        assert_eq!(env["signing_alg"], alg, "{env}");
        let domain = format!("{slug}.example");
        let org = create_org(s, slug, "Acme", &[domain.as_str()]).await;
        let org_id = str_of(&org, "id").to_owned();
        let email = format!("ada@{domain}");
        let user = create_user(s, slug, &org_id, &email).await;
        Self {
            slug: slug.to_owned(),
            issuer,
            org_id,
            user_id: str_of(&user, "id").to_owned(),
            email,
        }
    }

    /// An endpoint under the issuer, e.g. `/oauth2/token`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }
}

/// Creates a local user with [`PASSWORD`] through the admin API; returns its view.
pub async fn create_user(s: &TestServer, env: &str, org_id: &str, email: &str) -> Value {
    let (status, user) = s
        .admin_post(
            &format!("/environments/{env}/organizations/{org_id}/users"),
            json!({ "email": email, "password": PASSWORD, "first_name": "Ada", "last_name": "Lovelace" }),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "creating {email}: {user}");
    assert!(
        user.get("password").is_none(),
        "a given password is never echoed: {user}"
    );
    user
}

/// A client as the admin API created it, with its secret (shown once) if it has one.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub id: String,
    pub secret: Option<String>,
    pub method: String,
}

impl TestClient {
    /// The credentials this client presents by its registered method (not `private_key_jwt`,
    /// whose assertions a test signs itself).
    pub fn auth(&self) -> Auth {
        let secret = || self.secret.clone().expect("the client has a secret");
        match self.method.as_str() {
            "client_secret_basic" => Auth::Basic(self.id.clone(), secret()),
            "client_secret_post" => Auth::Post(self.id.clone(), secret()),
            "none" => Auth::Public(self.id.clone()),
            m => panic!("sign an assertion for a {m} client"),
        }
    }
}

pub async fn create_client(s: &TestServer, t: &Tenant, body: Value) -> TestClient {
    let (status, c) = s
        .admin_post(&format!("/environments/{}/clients", t.slug), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "creating a client: {c}");
    TestClient {
        id: str_of(&c, "id").to_owned(),
        secret: c["client_secret"].as_str().map(str::to_owned),
        method: str_of(&c, "token_endpoint_auth_method").to_owned(),
    }
}

/// A confidential web application (`client_secret_basic`) signing people in.
pub fn web_app() -> Value {
    json!({
        "name": "Web app",
        "redirect_uris": [REDIRECT],
        "post_logout_redirect_uris": [LOGOUT_REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "email", "profile", "offline_access"],
    })
}

/// A public client (a single-page or native app): no secret, PKCE required.
pub fn public_app() -> Value {
    json!({
        "name": "Public app",
        "kind": "public",
        "redirect_uris": [REDIRECT],
        "grant_types": ["authorization_code", "refresh_token"],
        "scopes": ["openid", "email", "profile"],
    })
}

/// A service acting as itself (client credentials) with `scopes`, allowed to ask for tokens to
/// the `audiences`.
pub fn service(method: &str, scopes: &[&str], audiences: &[&str]) -> Value {
    json!({
        "name": "Service",
        "token_endpoint_auth_method": method,
        "grant_types": ["client_credentials"],
        "scopes": scopes,
        "token_exchange": { "audiences": audiences, "scopes": [] },
    })
}

/// How a request authenticates its client.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `client_secret_basic` (RFC 6749 §2.3.1: both parts form-encoded, then base64).
    Basic(String, String),
    /// `client_secret_post`.
    Post(String, String),
    /// A public client naming itself.
    Public(String),
    /// `private_key_jwt` (RFC 7523 §2.2): the client ID and a signed assertion.
    Assertion(String, String),
    Nothing,
}

/// `application/x-www-form-urlencoded` of `pairs`, in order (a key may repeat).
pub fn form(pairs: &[(&str, &str)]) -> String {
    let mut f = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        f.append_pair(k, v);
    }
    f.finish()
}

fn form_encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An HTTP answer, read whole. Building one asserts that the server did not fail (no 5xx).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub async fn read(res: reqwest::Response) -> Self {
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("reading the answer");
        assert!(
            !status.is_server_error(),
            "the server failed with {status}: {text}"
        );
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Location` of a redirect.
    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("{} without a Location: {}", self.status, self.text))
    }

    /// The body of a successful JSON answer.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "{}", self.text);
        &self.json
    }
}

/// POSTs a form with client authentication to `url`.
pub async fn post_form(s: &TestServer, url: &str, auth: &Auth, params: &[(&str, &str)]) -> Answer {
    let mut pairs: Vec<(&str, &str)> = params.to_vec();
    let mut req = s.client().post(url);
    match auth {
        Auth::Basic(id, secret) => {
            let raw = format!("{}:{}", form_encode(id), form_encode(secret));
            req = req.header(
                header::AUTHORIZATION,
                format!("Basic {}", STANDARD.encode(raw)),
            );
        }
        Auth::Post(id, secret) => {
            pairs.extend([("client_id", id.as_str()), ("client_secret", secret)])
        }
        Auth::Public(id) => pairs.push(("client_id", id)),
        Auth::Assertion(id, jwt) => pairs.extend([
            ("client_id", id.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", jwt),
        ]),
        Auth::Nothing => {}
    }
    let res = req
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(form(&pairs))
        .send()
        .await
        .expect("sending the request");
    Answer::read(res).await
}

pub async fn token(s: &TestServer, t: &Tenant, auth: &Auth, params: &[(&str, &str)]) -> Answer {
    post_form(s, &t.at("/oauth2/token"), auth, params).await
}

/// A successful token response (RFC 6749 §5.1: never cached).
#[track_caller]
pub fn issued(a: &Answer) -> Value {
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.header("cache-control"), Some("no-store"), "RFC 6749 §5.1");
    assert_eq!(a.json["token_type"], "Bearer", "{}", a.text);
    a.json.clone()
}

/// An error answer of the token, introspection or revocation endpoint: RFC 6749 §5.2's status and
/// `error` code, a description, and (for `invalid_client`) a `WWW-Authenticate` challenge.
#[track_caller]
pub fn assert_oauth_error(a: &Answer, status: StatusCode, code: &str) {
    assert_eq!(a.status, status, "expected {code}: {}", a.text);
    assert_eq!(a.json["error"], code, "{}", a.text);
    assert!(
        a.json["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "an error carries a description: {}",
        a.text
    );
    assert_eq!(a.header("cache-control"), Some("no-store"), "{}", a.text);
    if code == "invalid_client" {
        assert!(
            a.header("www-authenticate").is_some(),
            "RFC 6749 §5.2: invalid_client carries a challenge"
        );
    }
}

pub async fn client_credentials(s: &TestServer, t: &Tenant, c: &TestClient, scope: &str) -> Value {
    let mut p = vec![("grant_type", "client_credentials")];
    if !scope.is_empty() {
        p.push(("scope", scope));
    }
    issued(&token(s, t, &c.auth(), &p).await)
}

/// RFC 7662 introspection by `c`; the (successful) answer.
pub async fn introspect(s: &TestServer, t: &Tenant, c: &TestClient, tok: &str) -> Value {
    let a = post_form(s, &t.at("/oauth2/introspect"), &c.auth(), &[("token", tok)]).await;
    a.ok().clone()
}

/// Whether introspection by `c` says `tok` is active.
pub async fn active(s: &TestServer, t: &Tenant, c: &TestClient, tok: &str) -> bool {
    let v = introspect(s, t, c, tok).await;
    let active = v["active"]
        .as_bool()
        .unwrap_or_else(|| panic!("active is a boolean: {v}"));
    if !active {
        assert_eq!(v, json!({ "active": false }), "RFC 7662 §2.2: nothing more");
    }
    active
}

/// RFC 7009 revocation by `c`: always 200 for an authenticated client.
pub async fn revoke(s: &TestServer, t: &Tenant, c: &TestClient, tok: &str) {
    let a = post_form(s, &t.at("/oauth2/revoke"), &c.auth(), &[("token", tok)]).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
}

pub async fn userinfo(s: &TestServer, t: &Tenant, access_token: &str) -> Answer {
    let res = s
        .client()
        .get(t.at("/oauth2/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap();
    Answer::read(res).await
}

fn b64_json(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
}

/// The (unverified) header of a compact JWS.
pub fn jwt_header(jwt: &str) -> Value {
    b64_json(jwt.split('.').next().expect("a JWS"))
}

/// The (unverified) payload of a compact JWS.
pub fn jwt_claims(jwt: &str) -> Value {
    b64_json(jwt.split('.').nth(1).expect("a JWS with a payload"))
}

/// A PKCE pair (RFC 7636 §4.1–4.2, S256).
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn new() -> Self {
        let verifier = random_token();
        let challenge =
            URL_SAFE_NO_PAD.encode(portcullis_crypto::secrets::sha256(verifier.as_bytes()));
        Self {
            verifier,
            challenge,
        }
    }
}

/// 256 random bits, base64url (43 characters).
pub fn random_token() -> String {
    let mut b = [0u8; 32];
    portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// An authorization request URL of `t`.
pub fn authorize_url(t: &Tenant, params: &[(&str, &str)]) -> String {
    format!("{}?{}", t.at("/oauth2/authorize"), form(params))
}

/// The usual request of `c`: code flow with PKCE, `openid email profile`, a state and a nonce.
pub fn code_request(t: &Tenant, c: &TestClient, pkce: &Pkce, state: &str) -> String {
    authorize_url(
        t,
        &[
            ("response_type", "code"),
            ("client_id", &c.id),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email profile"),
            ("state", state),
            ("nonce", "n-0S6_WzA2Mj"),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ],
    )
}

/// The query parameters of a URL.
pub fn query(url: &str) -> BTreeMap<String, String> {
    let q = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(q.as_bytes()).into_owned().collect()
}

/// The parameters of a 303 redirect to `redirect_uri` (exactly that URI, plus a query).
#[track_caller]
pub fn redirected_to(a: &Answer, redirect_uri: &str) -> BTreeMap<String, String> {
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
    let loc = a.location();
    let base = loc.split_once('?').map_or(loc, |(b, _)| b);
    assert_eq!(base, redirect_uri, "redirected to {loc}");
    query(loc)
}

/// An HTML page of the hosted login (no JavaScript, not cacheable, not framable).
#[track_caller]
pub fn assert_page(a: &Answer, status: StatusCode) {
    assert_eq!(a.status, status, "{}", a.text);
    assert!(
        a.header("content-type")
            .is_some_and(|c| c.starts_with("text/html")),
        "{:?}",
        a.headers
    );
    assert!(a.header("location").is_none(), "a page, not a redirect");
    assert_eq!(a.header("cache-control"), Some("no-store"));
    assert_eq!(a.header("x-frame-options"), Some("DENY"));
}

/// The text of the page's alert (`<p class="error" role="alert">…</p>`).
pub fn alert(a: &Answer) -> String {
    let start = a
        .text
        .find(r#"role="alert">"#)
        .unwrap_or_else(|| panic!("the page has no alert: {}", a.text));
    let rest = &a.text[start + r#"role="alert">"#.len()..];
    rest[..rest.find("</p>").expect("the alert ends")].to_owned()
}

/// A browser: an HTTP client with redirects off that keeps the cookies the server sets.
pub struct Browser {
    http: reqwest::Client,
    cookies: BTreeMap<String, String>,
    forwarded_for: Option<String>,
}

impl Browser {
    pub fn new(s: &TestServer) -> Self {
        Self {
            http: s.client().clone(),
            cookies: BTreeMap::new(),
            forwarded_for: None,
        }
    }

    /// Sends `X-Forwarded-For: value` with every request, as a reverse proxy (or a client
    /// pretending to be one) would.
    pub fn forwarded_for(mut self, value: &str) -> Self {
        self.forwarded_for = Some(value.to_owned());
        self
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies.get(name).map(String::as_str)
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.cookies.insert(name.to_owned(), value.to_owned());
    }

    fn with_cookies(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let req = match &self.forwarded_for {
            Some(v) => req.header("x-forwarded-for", v),
            None => req,
        };
        if self.cookies.is_empty() {
            return req;
        }
        let jar: Vec<String> = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        req.header(header::COOKIE, jar.join("; "))
    }

    async fn keep(&mut self, res: reqwest::Response) -> Answer {
        let a = Answer::read(res).await;
        for c in a.headers.get_all(header::SET_COOKIE) {
            let c = c.to_str().expect("a text cookie");
            let (pair, attrs) = c.split_once(';').unwrap_or((c, ""));
            let (name, value) = pair.split_once('=').expect("name=value");
            if value.is_empty() || attrs.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
        a
    }

    pub async fn get(&mut self, url: &str) -> Answer {
        let req = self.with_cookies(self.http.get(url));
        let res = req.send().await.expect("GET");
        self.keep(res).await
    }

    pub async fn post(&mut self, url: &str, params: &[(&str, &str)]) -> Answer {
        let req = self
            .with_cookies(self.http.post(url))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form(params));
        let res = req.send().await.expect("POST");
        self.keep(res).await
    }

    /// Opens an authorization request that needs a sign-in: follows the redirect to the email
    /// form and returns the pending request's handle (`req`).
    pub async fn start(&mut self, t: &Tenant, url: &str) -> String {
        let a = self.get(url).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
        let login = a.location().to_owned();
        assert!(login.starts_with(&t.at("/login?")), "{login}");
        assert!(self.cookie("pc_flow").is_some(), "the flow cookie is set");
        let page = self.get(&login).await;
        assert_page(&page, StatusCode::OK);
        assert!(page.text.contains(r#"id="email""#), "{}", page.text);
        query(&login)
            .remove("req")
            .expect("the login URL names the request")
    }

    pub async fn submit_email(&mut self, t: &Tenant, req: &str, email: &str) -> Answer {
        self.post(&t.at("/login"), &[("req", req), ("email", email)])
            .await
    }

    pub async fn submit_password(
        &mut self,
        t: &Tenant,
        req: &str,
        email: &str,
        pw: &str,
    ) -> Answer {
        self.post(
            &t.at("/login/password"),
            &[("req", req), ("email", email), ("password", pw)],
        )
        .await
    }

    /// Signs in through the hosted login: the email form, then the password form. The answer
    /// is the password form's (a redirect to the client when the sign-in succeeded).
    pub async fn sign_in(&mut self, t: &Tenant, url: &str, email: &str, pw: &str) -> Answer {
        let req = self.start(t, url).await;
        let page = self.submit_email(t, &req, email).await;
        assert_page(&page, StatusCode::OK);
        assert!(page.text.contains(r#"id="password""#), "{}", page.text);
        self.submit_password(t, &req, email, pw).await
    }
}

/// Signs `t`'s user in to `c` (PKCE, state `xyz`) and returns the authorization code.
pub async fn sign_in_for_code(s: &TestServer, t: &Tenant, c: &TestClient, pkce: &Pkce) -> String {
    let mut b = Browser::new(s);
    let a = b
        .sign_in(t, &code_request(t, c, pkce, "xyz"), &t.email, PASSWORD)
        .await;
    let q = redirected_to(&a, REDIRECT);
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], t.issuer, "RFC 9207");
    q["code"].clone()
}

/// Redeems `code` with `verifier` at the token endpoint.
pub async fn redeem(
    s: &TestServer,
    t: &Tenant,
    c: &TestClient,
    code: &str,
    verifier: &str,
) -> Answer {
    token(
        s,
        t,
        &c.auth(),
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// Signs `t`'s user in to `c` and redeems the code: the token response.
pub async fn user_tokens(s: &TestServer, t: &Tenant, c: &TestClient) -> Value {
    let pkce = Pkce::new();
    let code = sign_in_for_code(s, t, c, &pkce).await;
    issued(&redeem(s, t, c, &code, &pkce.verifier).await)
}

pub async fn refresh(s: &TestServer, t: &Tenant, c: &TestClient, rt: &str) -> Answer {
    token(
        s,
        t,
        &c.auth(),
        &[("grant_type", "refresh_token"), ("refresh_token", rt)],
    )
    .await
}

/// The audit records of `env`, oldest first (the first 100).
pub async fn audit(s: &TestServer, env: &str) -> Vec<Value> {
    let (status, v) = s
        .admin_get(&format!("/environments/{env}/audit?limit=100"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["data"].as_array().expect("data").clone()
}

/// The event types of `env`, oldest first (the first 100).
pub async fn event_types(s: &TestServer, env: &str) -> Vec<String> {
    let (status, v) = s
        .admin_get(&format!("/environments/{env}/events?limit=100"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|e| str_of(e, "event").to_owned())
        .collect()
}

/// The current time in seconds, read where the system clock may be read.
pub fn now_seconds() -> i64 {
    portcullis_core::Clock::now(&portcullis_core::SystemClock).seconds()
}

/// `base` with the fields of `extra` added or replaced.
pub fn with(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    base
}
