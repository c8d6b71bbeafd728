//! Refusals of the token endpoint (RFC 6749 §5.2, RFC 8693 §2.2.2): each gets its error code and
//! changes nothing, except where the RFCs say to revoke — a code redeemed twice (RFC 6749
//! §4.1.2) and a rotated refresh token presented again (RFC 9700 §4.14.2).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::model::SigningAlg;
use portcullis_crypto::SigningKey;
use portcullis_crypto::jws::generate_pkcs8;
use portcullis_crypto::secrets::sha256;
use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{
    ACCESS_TOKEN_TYPE, Auth, Pkce, REDIRECT, TOKEN_EXCHANGE, Tenant, active, assert_oauth_error,
    client_credentials, create_client, event_types, issued, jwt_claims, now_seconds, redeem,
    refresh, service, sign_in_for_code, token, user_tokens, userinfo, web_app,
};
use crate::str_of;

both_backends!(concurrent_redemptions_of_one_code);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_code_redemption_changes_nothing() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "verifier", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    let other = create_client(&s, &t, web_app()).await;
    let pkce = Pkce::new();
    let code = sign_in_for_code(&s, &t, &app, &pkce).await;
    let attempt = |auth: Auth, params: Vec<(&'static str, String)>| {
        let (s, t) = (&s, &t);
        async move {
            let mut p = vec![("grant_type", "authorization_code".to_owned())];
            p.extend(params);
            let p: Vec<(&str, &str)> = p.iter().map(|(k, v)| (*k, v.as_str())).collect();
            token(s, t, &auth, &p).await
        }
    };
    let c = || ("code", code.clone());
    let r = || ("redirect_uri", REDIRECT.to_owned());
    let v = |x: &str| ("code_verifier", x.to_owned());
    for (auth, params) in [
        (app.auth(), vec![c(), r(), v(&Pkce::new().verifier)]),
        (app.auth(), vec![c(), r()]),
        (app.auth(), vec![c(), r(), v("too-short")]),
        (
            app.auth(),
            vec![
                c(),
                ("redirect_uri", "http://127.0.0.1:9/other".into()),
                v(&pkce.verifier),
            ],
        ),
        (other.auth(), vec![c(), r(), v(&pkce.verifier)]),
        (
            app.auth(),
            vec![("code", "unknown".into()), r(), v(&pkce.verifier)],
        ),
    ] {
        let a = attempt(auth, params).await;
        assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_grant");
    }
    // A missing code is a malformed request rather than a bad grant.
    let a = attempt(app.auth(), vec![r(), v(&pkce.verifier)]).await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_request");
    // The right verifier still works: the refusals spent nothing.
    let tokens = issued(&redeem(&s, &t, &app, &code, &pkce.verifier).await);
    assert!(active(&s, &t, &app, str_of(&tokens, "access_token")).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_code_revokes_what_it_issued() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "replay", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    let pkce = Pkce::new();
    let code = sign_in_for_code(&s, &t, &app, &pkce).await;
    let first = issued(&redeem(&s, &t, &app, &code, &pkce.verifier).await);
    let at = str_of(&first, "access_token");
    assert!(active(&s, &t, &app, at).await);

    let second = redeem(&s, &t, &app, &code, &pkce.verifier).await;
    assert_oauth_error(&second, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(
        !active(&s, &t, &app, at).await,
        "the first access token is revoked"
    );
    let rt = refresh(&s, &t, &app, str_of(&first, "refresh_token")).await;
    assert_oauth_error(&rt, StatusCode::BAD_REQUEST, "invalid_grant");
    assert_eq!(userinfo(&s, &t, at).await.status, StatusCode::UNAUTHORIZED);
    assert!(
        event_types(&s, &t.slug)
            .await
            .contains(&"token.code_reuse_detected".to_owned())
    );
}

/// Two redemptions of one code at the same time: the database lets exactly one win.
async fn concurrent_redemptions_of_one_code(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    let t = Tenant::new(&s, "race", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    for round in 0..3 {
        let pkce = Pkce::new();
        let code = sign_in_for_code(&s, &t, &app, &pkce).await;
        let (a, b) = tokio::join!(
            redeem(&s, &t, &app, &code, &pkce.verifier),
            redeem(&s, &t, &app, &code, &pkce.verifier),
        );
        let (won, lost) = match (a.status, b.status) {
            (StatusCode::OK, StatusCode::BAD_REQUEST) => (a, b),
            (StatusCode::BAD_REQUEST, StatusCode::OK) => (b, a),
            _ => panic!("round {round}: exactly one wins: {} / {}", a.text, b.text),
        };
        assert_oauth_error(&lost, StatusCode::BAD_REQUEST, "invalid_grant");
        // The loser is a second redemption: what the winner got is revoked.
        let won = issued(&won);
        assert!(!active(&s, &t, &app, str_of(&won, "access_token")).await);
        let rt = refresh(&s, &t, &app, str_of(&won, "refresh_token")).await;
        assert_oauth_error(&rt, StatusCode::BAD_REQUEST, "invalid_grant");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "rotation", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    let other = create_client(&s, &t, web_app()).await;
    let user = user_tokens(&s, &t, &app).await;
    let rt0 = str_of(&user, "refresh_token").to_owned();

    // Refusals that spend nothing: another client's, a wider scope, an unknown token.
    let a = refresh(&s, &t, &other, &rt0).await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_grant");
    let wider = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt0.as_str()),
        ("scope", "openid offline_access"),
    ];
    let a = token(&s, &t, &app.auth(), &wider).await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_scope");
    let a = refresh(&s, &t, &app, "unknown").await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_grant");

    // Rotation: each use gives a new refresh token and spends the old one.
    let r1 = issued(&refresh(&s, &t, &app, &rt0).await);
    let rt1 = str_of(&r1, "refresh_token").to_owned();
    assert_ne!(rt1, rt0);
    assert_eq!(r1["scope"], "openid email profile");
    let narrower = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt1.as_str()),
        ("scope", "openid"),
    ];
    let r2 = issued(&token(&s, &t, &app.auth(), &narrower).await);
    assert_eq!(r2["scope"], "openid", "RFC 6749 §6: a narrower scope");
    let rt2 = str_of(&r2, "refresh_token").to_owned();
    assert!(!active(&s, &t, &app, &rt0).await && !active(&s, &t, &app, &rt1).await);
    assert!(active(&s, &t, &app, &rt2).await);

    // Reuse of a spent token (whatever scope it asks for): refused, and the whole family with
    // it, the newest included.
    let a = token(&s, &t, &app.auth(), &wider).await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_grant");
    let a = refresh(&s, &t, &app, &rt2).await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_grant");
    assert!(!active(&s, &t, &app, &rt2).await);
    for r in [&user, &r1, &r2] {
        assert!(!active(&s, &t, &app, str_of(r, "access_token")).await);
    }
    assert!(
        event_types(&s, &t.slug)
            .await
            .contains(&"token.refresh_reuse_detected".to_owned())
    );
    // Another sign-in is another family, untouched.
    let again = user_tokens(&s, &t, &app).await;
    issued(&refresh(&s, &t, &app, str_of(&again, "refresh_token")).await);
}

/// A client assertion (RFC 7523 §3) signed by `key`.
fn assertion(key: &SigningKey, client: &str, aud: &str, exp: i64, jti: &str) -> String {
    let claims = json!({
        "iss": client, "sub": client, "aud": aud, "jti": jti,
        "iat": now_seconds(), "exp": exp,
    });
    key.sign_compact(None, &claims).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_key_jwt_checks_audience_expiry_and_replay() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "assertions", "ES256").await;
    let key = SigningKey::from_pkcs8(
        "k1",
        SigningAlg::ES256,
        &generate_pkcs8(SigningAlg::ES256).unwrap(),
    )
    .unwrap();
    let stranger = SigningKey::from_pkcs8(
        "k1",
        SigningAlg::ES256,
        &generate_pkcs8(SigningAlg::ES256).unwrap(),
    )
    .unwrap();
    let mut body = service("private_key_jwt", &["api.read"], &[]);
    body["jwks"] = json!({ "keys": [key.public_jwk()] });
    let c = create_client(&s, &t, body).await;
    assert!(c.secret.is_none(), "no secret for private_key_jwt");
    let endpoint = t.at("/oauth2/token");
    let exp = now_seconds() + 60;
    let cc = |jwt: String| {
        let (s, t, id) = (&s, &t, c.id.clone());
        async move {
            token(
                s,
                t,
                &Auth::Assertion(id, jwt),
                &[("grant_type", "client_credentials")],
            )
            .await
        }
    };

    let good = assertion(&key, &c.id, &endpoint, exp, "jti-1");
    let got = issued(&cc(good.clone()).await);
    assert_eq!(
        jwt_claims(str_of(&got, "access_token"))["sub"],
        c.id.as_str()
    );
    // The issuer is an audience too (RFC 7523 §3 item 3).
    issued(&cc(assertion(&key, &c.id, &t.issuer, exp, "jti-2")).await);

    for (jwt, why) in [
        (good, "replayed jti"),
        (
            assertion(&key, &c.id, "https://other.example/token", exp, "jti-3"),
            "wrong aud",
        ),
        (
            assertion(
                &key,
                &c.id,
                &s.at("/e/elsewhere/oauth2/token"),
                exp,
                "jti-4",
            ),
            "another environment's aud",
        ),
        (
            assertion(&key, &c.id, &endpoint, now_seconds() - 5, "jti-5"),
            "expired",
        ),
        (
            assertion(&key, &c.id, &endpoint, now_seconds() + 3600, "jti-6"),
            "exp too far",
        ),
        (
            assertion(&stranger, &c.id, &endpoint, exp, "jti-7"),
            "unregistered key",
        ),
    ] {
        let a = cc(jwt).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{why}: {}", a.text);
        assert_oauth_error(&a, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    // The refused jtis were not burnt by the refusals that came before the replay check.
    issued(&cc(assertion(&key, &c.id, &endpoint, exp, "jti-7")).await);
}

/// HMAC-SHA-256 (RFC 2104) from the hash alone, to forge an HS256 token by hand.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha256(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let inner: Vec<u8> = k
        .iter()
        .map(|b| b ^ 0x36)
        .chain(msg.iter().copied())
        .collect();
    let outer: Vec<u8> = k.iter().map(|b| b ^ 0x5c).chain(sha256(&inner)).collect();
    sha256(&outer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_and_hmac_tokens_are_refused() {
    // RFC 4231 test case 1, so that the forgery below is a real HS256 token.
    assert_eq!(
        portcullis_crypto::secrets::to_hex(&hmac_sha256(&[0x0b; 20], b"Hi There")),
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    );
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "forgery", "ES256").await;
    let svc = create_client(
        &s,
        &t,
        service(
            "client_secret_basic",
            &["api.read"],
            &["https://api.example"],
        ),
    )
    .await;
    let gateway = create_client(
        &s,
        &t,
        json!({
            "name": "Gateway",
            "grant_types": [TOKEN_EXCHANGE],
            "token_exchange": { "audiences": ["https://api.example"], "scopes": ["api.read"] },
        }),
    )
    .await;
    let real = str_of(&client_credentials(&s, &t, &svc, "").await, "access_token").to_owned();
    let jwk = crate::jwks(&s, &t.slug).await["keys"][0].clone();
    let kid = str_of(&jwk, "kid");
    let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let claims = jwt_claims(&real);
    let header = |alg: &str| enc(&json!({ "alg": alg, "typ": "at+jwt", "kid": kid }));
    let signature = real.rsplit('.').next().unwrap();
    let hs_input = format!("{}.{}", header("HS256"), enc(&claims));
    // The classic confusion: the public key used as the HMAC secret.
    let mac = hmac_sha256(jwk.to_string().as_bytes(), hs_input.as_bytes());
    let forged = [
        format!("{}.{}.", header("none"), enc(&claims)),
        format!("{}.{}.{signature}", header("none"), enc(&claims)),
        format!("{}.{}.", header("None"), enc(&claims)),
        format!("{hs_input}.{}", URL_SAFE_NO_PAD.encode(mac)),
    ];
    assert!(
        active(&s, &t, &svc, &real).await,
        "the genuine token is live"
    );
    for f in &forged {
        assert!(!active(&s, &t, &svc, f).await, "introspection: {f}");
        assert_eq!(userinfo(&s, &t, f).await.status, StatusCode::UNAUTHORIZED);
        for (subject, actor) in [(f.as_str(), real.as_str()), (real.as_str(), f.as_str())] {
            let a = token(
                &s,
                &t,
                &gateway.auth(),
                &[
                    ("grant_type", TOKEN_EXCHANGE),
                    ("subject_token", subject),
                    ("subject_token_type", ACCESS_TOKEN_TYPE),
                    ("actor_token", actor),
                    ("actor_token_type", ACCESS_TOKEN_TYPE),
                    ("audience", "https://api.example"),
                ],
            )
            .await;
            assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_request");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_token_requests_get_their_error_codes() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "malformed", "ES256").await;
    let basic = create_client(&s, &t, service("client_secret_basic", &["api.read"], &[])).await;
    let post = create_client(&s, &t, service("client_secret_post", &["api.read"], &[])).await;
    let cc = ("grant_type", "client_credentials");

    // RFC 6749 §3.2: a parameter at most once.
    for dup in [
        vec![cc, cc],
        vec![cc, ("scope", "api.read"), ("scope", "api.read")],
    ] {
        let a = token(&s, &t, &basic.auth(), &dup).await;
        assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_request");
    }
    let a = token(&s, &t, &basic.auth(), &[("scope", "api.read")]).await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_request");
    for g in [
        "password",
        "implicit",
        "urn:ietf:params:oauth:grant-type:device_code",
        "client_credentials ",
    ] {
        let a = token(&s, &t, &basic.auth(), &[("grant_type", g)]).await;
        assert_oauth_error(&a, StatusCode::BAD_REQUEST, "unsupported_grant_type");
    }
    let a = token(
        &s,
        &t,
        &basic.auth(),
        &[("grant_type", "authorization_code"), ("code", "x")],
    )
    .await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "unauthorized_client");
    // Not a form.
    let res = s
        .client()
        .post(t.at("/oauth2/token"))
        .json(&json!({ "grant_type": "client_credentials" }))
        .send()
        .await
        .unwrap();
    assert_oauth_error(
        &super::Answer::read(res).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );

    // Client authentication (RFC 6749 §5.2): 401 with a challenge, Basic for Basic.
    let wrong = "pcsec_not-the-secret".to_owned();
    let a = token(&s, &t, &Auth::Basic(basic.id.clone(), wrong.clone()), &[cc]).await;
    assert_oauth_error(&a, StatusCode::UNAUTHORIZED, "invalid_client");
    assert!(
        a.header("www-authenticate").unwrap().starts_with("Basic"),
        "{:?}",
        a.headers
    );
    for auth in [
        Auth::Post(post.id.clone(), wrong),
        Auth::Basic("client_unknown".into(), "x".into()),
        Auth::Nothing,
    ] {
        let a = token(&s, &t, &auth, &[cc]).await;
        assert_oauth_error(&a, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let res = s
        .client()
        .post(t.at("/oauth2/token"))
        .header("authorization", "Basic %%%")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_oauth_error(
        &super::Answer::read(res).await,
        StatusCode::UNAUTHORIZED,
        "invalid_client",
    );
    // Two methods at once.
    let both = [cc, ("client_secret", post.secret.as_deref().unwrap())];
    let a = token(&s, &t, &basic.auth(), &both).await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_request");
    // Environments: an unknown one.
    let res = s
        .client()
        .post(s.at("/e/nowhere/oauth2/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    let a = super::Answer::read(res).await;
    assert!(a.status.is_client_error(), "{}", a.text);

    // None of it affected the clients.
    client_credentials(&s, &t, &basic, "api.read").await;
    client_credentials(&s, &t, &post, "api.read").await;
}
