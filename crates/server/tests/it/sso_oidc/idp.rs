//! A small upstream OpenID provider on loopback, standing in for an organization's IdP.
//!
//! - `GET /authorize` checks and records the authorization request (code flow, PKCE S256, `state`,
//!   `nonce`, a registered client) and answers with what it recorded; the test plays the user and
//!   completes the sign-in with [`Idp::approve`], which issues a code and builds the callback URL.
//! - `POST /token` checks HTTP Basic client authentication (RFC 6749 §2.3.1), that the code was
//!   issued to that client for that `redirect_uri` and is used once, and the PKCE verifier
//!   (RFC 7636 §4.6), then returns an ID token signed with the IdP's ES256 key — or, as the code's
//!   [`Reply`] says, a deliberately bad one.
//!
//! Every token call is recorded with the IdP's verdict, so a test can tell whether Portcullis
//! reached the IdP at all and whether it presented what the IdP expects.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use portcullis_core::model::SigningAlg;
use portcullis_crypto::jws::{SigningKey, generate_pkcs8};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::oauth::{now_seconds, random_token};

/// How the IdP answers the token request for one code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// A valid ID token.
    Valid,
    /// Signed by a key that is not pinned (same `kid` as the pinned one).
    OtherKey,
    /// `iss` of another IdP.
    WrongIssuer,
    /// `aud` of another client.
    WrongAudience,
    /// A `nonce` that is not the request's.
    WrongNonce,
    /// `exp` an hour ago.
    Expired,
    /// `alg: HS256`, keyed with the pinned public key (the algorithm-confusion forgery).
    Hs256,
    /// `alg: none`, no signature.
    AlgNone,
    /// HTTP 400 `invalid_grant`.
    Refuse,
}

/// A user of the IdP.
#[derive(Debug, Clone)]
pub struct IdpUser {
    pub sub: String,
    pub email: String,
    pub given_name: String,
    pub family_name: String,
    pub groups: Vec<String>,
}

impl IdpUser {
    pub fn new(sub: &str, email: &str, groups: &[&str]) -> Self {
        Self {
            sub: sub.into(),
            email: email.into(),
            given_name: "Alice".into(),
            family_name: "Liddell".into(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        }
    }
}

struct Issued {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
    user: IdpUser,
    answer: Reply,
    used: bool,
}

/// A token call as the IdP judged it: `Ok(code)` when its checks passed, else why not.
pub type TokenCall = Result<String, String>;

#[derive(Default)]
struct Book {
    clients: HashMap<String, String>,
    requests: Vec<BTreeMap<String, String>>,
    codes: HashMap<String, Issued>,
    token_calls: Vec<TokenCall>,
}

struct Shared {
    issuer: String,
    key: SigningKey,
    /// An attacker's key, announcing the pinned key's `kid`.
    other: SigningKey,
    book: Mutex<Book>,
}

pub struct Idp {
    shared: Arc<Shared>,
    pub port: u16,
    task: JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn es256(kid: &str) -> SigningKey {
    let der = generate_pkcs8(SigningAlg::ES256).expect("generating an ES256 key");
    SigningKey::from_pkcs8(kid, SigningAlg::ES256, &der).expect("parsing the new key")
}

impl Idp {
    /// Starts an IdP on `127.0.0.1:0` knowing the `clients` (ID, secret).
    pub async fn start(clients: &[(&str, &str)]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let kid = format!("idp-{}", &random_token()[..8]);
        let shared = Arc::new(Shared {
            issuer: format!("http://127.0.0.1:{port}"),
            key: es256(&kid),
            other: es256(&kid),
            book: Mutex::new(Book {
                clients: clients
                    .iter()
                    .map(|(i, s)| ((*i).to_owned(), (*s).to_owned()))
                    .collect(),
                ..Book::default()
            }),
        });
        let app = Router::new()
            .route("/authorize", get(authorize_get))
            .route("/token", post(token_post))
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { shared, port, task }
    }

    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    pub fn authorization_endpoint(&self) -> String {
        format!("{}/authorize", self.shared.issuer)
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.shared.issuer)
    }

    /// The pinned keys: the IdP's public JWK.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.shared.key.public_jwk()] })
    }

    /// The `oidc` settings of a connection to this IdP as `client_id`.
    pub fn settings(&self, client_id: &str) -> Value {
        json!({
            "issuer": self.issuer(),
            "client_id": client_id,
            "authorization_endpoint": self.authorization_endpoint(),
            "token_endpoint": self.token_endpoint(),
            "jwks": self.jwks(),
        })
    }

    /// The authorization requests received, oldest first.
    #[allow(dead_code)] // kept for tests that inspect every recorded request
    pub fn requests(&self) -> Vec<BTreeMap<String, String>> {
        self.shared.book.lock().unwrap().requests.clone()
    }

    /// The token calls received, oldest first.
    pub fn token_calls(&self) -> Vec<TokenCall> {
        self.shared.book.lock().unwrap().token_calls.clone()
    }

    /// The user signs in: a code for the recorded authorization `request`, answered as `answer`
    /// at the token endpoint; returns the callback URL the IdP sends the browser to.
    pub fn approve(
        &self,
        request: &BTreeMap<String, String>,
        user: &IdpUser,
        answer: Reply,
    ) -> String {
        let code = random_token();
        let redirect_uri = request["redirect_uri"].clone();
        self.shared.book.lock().unwrap().codes.insert(
            code.clone(),
            Issued {
                client_id: request["client_id"].clone(),
                redirect_uri: redirect_uri.clone(),
                challenge: request["code_challenge"].clone(),
                nonce: request["nonce"].clone(),
                user: user.clone(),
                answer,
                used: false,
            },
        );
        let q = crate::oauth::form(&[("code", &code), ("state", &request["state"])]);
        format!("{redirect_uri}?{q}")
    }
}

/// The authorization request, checked as an IdP would (OIDC Core §3.1.2.1, RFC 7636 §4.3).
async fn authorize_get(
    State(idp): State<Arc<Shared>>,
    Query(p): Query<BTreeMap<String, String>>,
) -> Response {
    let mut problems = Vec::new();
    let has = |k: &str| p.get(k).is_some_and(|v| !v.is_empty());
    if p.get("response_type").map(String::as_str) != Some("code") {
        problems.push("response_type must be code");
    }
    if p.get("code_challenge_method").map(String::as_str) != Some("S256") {
        problems.push("code_challenge_method must be S256");
    }
    if !p
        .get("scope")
        .is_some_and(|s| s.split(' ').any(|x| x == "openid"))
    {
        problems.push("scope must include openid");
    }
    for k in ["state", "nonce", "code_challenge", "redirect_uri"] {
        if !has(k) {
            problems.push(k);
        }
    }
    let mut book = idp.book.lock().unwrap();
    if !p
        .get("client_id")
        .is_some_and(|c| book.clients.contains_key(c))
    {
        problems.push("unknown client_id");
    }
    if !problems.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "problems": problems })),
        )
            .into_response();
    }
    book.requests.push(p.clone());
    Json(json!({ "recorded": p })).into_response()
}

fn token_error(status: StatusCode, error: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": "refused by the test IdP" })),
    )
        .into_response()
}

/// `(client_id, secret)` of an HTTP Basic header, each form-decoded (RFC 6749 §2.3.1).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get("authorization")?.to_str().ok()?;
    let raw = String::from_utf8(STANDARD.decode(v.strip_prefix("Basic ")?).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((dec(id), dec(secret)))
}

/// RFC 6749 §4.1.3 with RFC 7636 §4.6, then the ID token the code's [`Reply`] asks for.
async fn token_post(
    State(idp): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(f): Form<BTreeMap<String, String>>,
) -> Response {
    let mut book = idp.book.lock().unwrap();
    let verdict = check_token_request(&mut book, &headers, &f);
    let issued = match verdict {
        Ok(code) => {
            book.token_calls.push(Ok(code.clone()));
            book.codes.get(&code).expect("checked")
        }
        Err((status, error, why)) => {
            book.token_calls.push(Err(why));
            return token_error(status, error);
        }
    };
    if issued.answer == Reply::Refuse {
        return token_error(StatusCode::BAD_REQUEST, "invalid_grant");
    }
    let id_token = id_token(&idp, issued);
    Json(json!({
        "access_token": random_token(),
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token,
    }))
    .into_response()
}

type Refusal = (StatusCode, &'static str, String);

fn check_token_request(
    book: &mut Book,
    headers: &HeaderMap,
    f: &BTreeMap<String, String>,
) -> Result<String, Refusal> {
    let grant = |why: String| (StatusCode::BAD_REQUEST, "invalid_grant", why);
    let Some((client_id, secret)) = basic(headers) else {
        return Err((
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "no HTTP Basic client authentication".into(),
        ));
    };
    if book.clients.get(&client_id) != Some(&secret) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!("wrong secret for {client_id}"),
        ));
    }
    if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return Err(grant("grant_type".into()));
    }
    let code = f.get("code").cloned().unwrap_or_default();
    let Some(issued) = book.codes.get_mut(&code) else {
        return Err(grant("unknown code".into()));
    };
    if issued.used {
        return Err(grant("code used twice".into()));
    }
    issued.used = true;
    if issued.client_id != client_id {
        return Err(grant(format!(
            "code of {} redeemed by {client_id}",
            issued.client_id
        )));
    }
    if f.get("redirect_uri") != Some(&issued.redirect_uri) {
        return Err(grant("redirect_uri differs from the request's".into()));
    }
    let verifier = f.get("code_verifier").cloned().unwrap_or_default();
    let s256 = URL_SAFE_NO_PAD.encode(portcullis_crypto::secrets::sha256(verifier.as_bytes()));
    if verifier.len() < 43 || s256 != issued.challenge {
        return Err(grant("PKCE verifier does not match the challenge".into()));
    }
    Ok(code)
}

fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use portcullis_crypto::secrets::sha256;
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
    let mut inner = pad(0x36);
    inner.extend_from_slice(msg);
    let mut outer = pad(0x5c);
    outer.extend_from_slice(&sha256(&inner));
    sha256(&outer).to_vec()
}

/// An unsigned-by-us JWS with `header`, signed by `sign` over the signing input.
fn compact(header: &Value, claims: &Value, sign: impl Fn(&[u8]) -> Vec<u8>) -> String {
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn id_token(idp: &Shared, issued: &Issued) -> String {
    let now = now_seconds();
    let u = &issued.user;
    let mut claims = json!({
        "iss": idp.issuer, "sub": u.sub, "aud": issued.client_id, "exp": now + 300, "iat": now,
        "nonce": issued.nonce, "email": u.email, "given_name": u.given_name,
        "family_name": u.family_name, "groups": u.groups,
    });
    match issued.answer {
        Reply::WrongIssuer => claims["iss"] = json!("http://127.0.0.1:9/other-idp"),
        Reply::WrongAudience => claims["aud"] = json!("another-client"),
        Reply::WrongNonce => claims["nonce"] = json!(random_token()),
        Reply::Expired => {
            claims["exp"] = json!(now - 3600);
            claims["iat"] = json!(now - 3900);
        }
        _ => {}
    }
    let kid = idp.key.kid();
    match issued.answer {
        Reply::OtherKey => idp.other.sign_compact(Some("JWT"), &claims).unwrap(),
        Reply::Hs256 => {
            let secret = idp.key.public_jwk().to_string();
            let header = json!({ "alg": "HS256", "kid": kid, "typ": "JWT" });
            compact(&header, &claims, |m| hmac_sha256(secret.as_bytes(), m))
        }
        Reply::AlgNone => {
            let header = json!({ "alg": "none", "kid": kid, "typ": "JWT" });
            compact(&header, &claims, |_| Vec::new())
        }
        _ => idp.key.sign_compact(Some("JWT"), &claims).unwrap(),
    }
}

#[test]
fn hmac_matches_rfc_4231_case_2() {
    let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
    assert_eq!(
        portcullis_crypto::secrets::to_hex(&mac),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}
