//! Machines with a plain HTTP client: client credentials (RFC 6749 §4.4) with both secret
//! methods, token exchange with an actor (RFC 8693), introspection (RFC 7662), revocation
//! (RFC 7009) and userinfo (OIDC Core §5.3).

use portcullis_core::{Clock, FakeClock, SystemClock};
use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::json;

use super::{
    ACCESS_TOKEN_TYPE, Auth, TOKEN_EXCHANGE, Tenant, active, assert_oauth_error,
    client_credentials, create_client, event_types, introspect, issued, jwt_claims, jwt_header,
    post_form, revoke, service, token, user_tokens, userinfo, web_app, with,
};
use crate::str_of;

const API: &str = "https://api.example";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_with_basic_and_post() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "machines", "ES256").await;
    let basic = create_client(
        &s,
        &t,
        service("client_secret_basic", &["api.read", "api.write"], &[API]),
    )
    .await;
    let post = create_client(&s, &t, service("client_secret_post", &["api.read"], &[])).await;

    // A subset of the client's scopes; an RFC 9068 access token for the environment.
    let got = client_credentials(&s, &t, &basic, "api.read").await;
    assert_eq!(got["scope"], "api.read");
    assert_eq!(got["expires_in"], 900);
    assert!(
        got.get("refresh_token").is_none() && got.get("id_token").is_none(),
        "{got}"
    );
    let at = str_of(&got, "access_token");
    let h = jwt_header(at);
    assert_eq!(
        (h["typ"].as_str(), h["alg"].as_str()),
        (Some("at+jwt"), Some("ES256"))
    );
    let c = jwt_claims(at);
    assert_eq!(c["iss"], t.issuer);
    assert_eq!(c["sub"], basic.id.as_str());
    assert_eq!(c["client_id"], basic.id.as_str());
    assert_eq!(c["aud"], t.issuer);
    assert_eq!(c["scope"], "api.read");
    assert!(c["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert_eq!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(), 900);
    // No scope asked: every scope of the client.
    let all = client_credentials(&s, &t, &basic, "").await;
    assert_eq!(all["scope"], "api.read api.write");

    // An audience the client may ask for, as `audience` or as `resource` (RFC 8707).
    for param in ["audience", "resource"] {
        let a = token(
            &s,
            &t,
            &basic.auth(),
            &[("grant_type", "client_credentials"), (param, API)],
        )
        .await;
        assert_eq!(jwt_claims(str_of(&issued(&a), "access_token"))["aud"], API);
    }
    let cc = |extra: Vec<(&'static str, &'static str)>| {
        let (s, t, auth) = (&s, &t, basic.auth());
        async move {
            let mut p = vec![("grant_type", "client_credentials")];
            p.extend(extra);
            token(s, t, &auth, &p).await
        }
    };
    let denied = cc(vec![("audience", "https://other.example")]).await;
    assert_oauth_error(&denied, StatusCode::BAD_REQUEST, "invalid_target");
    let split = cc(vec![
        ("audience", API),
        ("resource", "https://other.example"),
    ])
    .await;
    assert_oauth_error(&split, StatusCode::BAD_REQUEST, "invalid_target");
    for scope in ["api.admin", "api.read api.admin", "openid"] {
        let a = cc(vec![("scope", scope)]).await;
        assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_scope");
    }

    // client_secret_post.
    let p = client_credentials(&s, &t, &post, "api.read").await;
    assert_eq!(
        jwt_claims(str_of(&p, "access_token"))["sub"],
        post.id.as_str()
    );
    // Each client authenticates with its registered method only.
    let (bs, ps) = (basic.secret.clone().unwrap(), post.secret.clone().unwrap());
    for (auth, who) in [
        (Auth::Post(basic.id.clone(), bs), "basic client by post"),
        (Auth::Basic(post.id.clone(), ps), "post client by basic"),
        (
            Auth::Public(basic.id.clone()),
            "basic client without a secret",
        ),
    ] {
        let a = token(&s, &t, &auth, &[("grant_type", "client_credentials")]).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{who}: {}", a.text);
        assert_oauth_error(&a, StatusCode::UNAUTHORIZED, "invalid_client");
    }
}

/// A user's token exchanged by a gateway for a downstream API, on behalf of an agent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_exchange_records_the_actor() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "delegation", "EdDSA").await;
    let web = create_client(&s, &t, web_app()).await;
    let agent = create_client(&s, &t, service("client_secret_basic", &["agent"], &[])).await;
    let helper = create_client(&s, &t, service("client_secret_basic", &["agent"], &[])).await;
    let gateway = create_client(
        &s,
        &t,
        json!({
            "name": "Gateway",
            "grant_types": [TOKEN_EXCHANGE],
            "token_exchange": { "audiences": [API], "scopes": ["email", "profile"] },
        }),
    )
    .await;
    let user = user_tokens(&s, &t, &web).await;
    let subject = str_of(&user, "access_token").to_owned();
    let actor = str_of(
        &client_credentials(&s, &t, &agent, "").await,
        "access_token",
    )
    .to_owned();
    let exchange =
        |subject: String, actor: Option<String>, extra: Vec<(&'static str, &'static str)>| {
            let (s, t, auth) = (&s, &t, gateway.auth());
            async move {
                let mut p = vec![
                    ("grant_type", TOKEN_EXCHANGE),
                    ("subject_token", subject.as_str()),
                    ("subject_token_type", ACCESS_TOKEN_TYPE),
                ];
                if let Some(a) = &actor {
                    p.extend([
                        ("actor_token", a.as_str()),
                        ("actor_token_type", ACCESS_TOKEN_TYPE),
                    ]);
                }
                p.extend(extra);
                token(s, t, &auth, &p).await
            }
        };

    let first = exchange(
        subject.clone(),
        Some(actor.clone()),
        vec![("audience", API), ("scope", "email")],
    )
    .await;
    let first = issued(&first);
    assert_eq!(
        first["issued_token_type"], ACCESS_TOKEN_TYPE,
        "RFC 8693 §2.2.1"
    );
    assert_eq!(first["scope"], "email");
    assert!(first.get("refresh_token").is_none(), "{first}");
    let delegated = str_of(&first, "access_token").to_owned();
    let c = jwt_claims(&delegated);
    assert_eq!(c["sub"], t.user_id.as_str(), "the subject stays the user");
    assert_eq!(c["aud"], API);
    assert_eq!(c["client_id"], gateway.id.as_str());
    assert_eq!(c["org_id"], t.org_id.as_str());
    assert_eq!(c["act"], json!({ "sub": agent.id }), "RFC 8693 §4.1");
    let subject_exp = jwt_claims(&subject)["exp"].as_i64().unwrap();
    assert!(
        c["exp"].as_i64().unwrap() <= subject_exp,
        "never outlives the subject"
    );

    // A further hop nests the earlier actor under the current one.
    let helper_token = str_of(
        &client_credentials(&s, &t, &helper, "").await,
        "access_token",
    )
    .to_owned();
    let second = exchange(
        delegated.clone(),
        Some(helper_token.clone()),
        vec![("audience", API)],
    )
    .await;
    let second = str_of(&issued(&second), "access_token").to_owned();
    let nested = json!({ "sub": helper.id, "act": { "sub": agent.id } });
    assert_eq!(jwt_claims(&second)["act"], nested);
    let seen = introspect(&s, &t, &gateway, &second).await;
    assert_eq!(seen["active"], true, "{seen}");
    assert_eq!(seen["act"], nested, "{seen}");
    assert_eq!(seen["sub"], t.user_id.as_str(), "{seen}");
    // Without a scope: the subject's scopes that the policy allows.
    let plain = issued(&exchange(subject.clone(), None, vec![("audience", API)]).await);
    assert_eq!(plain["scope"], "email profile");
    assert!(
        jwt_claims(str_of(&plain, "access_token"))
            .get("act")
            .is_none()
    );

    // The policy: audiences and scopes (RFC 8693 §2.2.2: invalid_target, invalid_scope).
    let refusals: [(Vec<(&'static str, &'static str)>, &str); 5] = [
        (
            vec![("audience", "https://other.example")],
            "invalid_target",
        ),
        (
            vec![("resource", "https://other.example")],
            "invalid_target",
        ),
        (vec![], "invalid_target"),
        (
            vec![("audience", API), ("scope", "openid")],
            "invalid_scope",
        ),
        (
            vec![("audience", API), ("scope", "email agent")],
            "invalid_scope",
        ),
    ];
    for (extra, code) in refusals {
        let a = exchange(subject.clone(), Some(actor.clone()), extra.clone()).await;
        assert_oauth_error(&a, StatusCode::BAD_REQUEST, code);
    }
    // A client without the grant may not exchange.
    let a = token(
        &s,
        &t,
        &web.auth(),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &subject),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("audience", API),
        ],
    )
    .await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "unauthorized_client");

    // Tokens issued by another environment are refused, as subject and as actor.
    let other = Tenant::new(&s, "elsewhere", "EdDSA").await;
    let stranger = create_client(&s, &other, service("client_secret_basic", &["agent"], &[])).await;
    let foreign = str_of(
        &client_credentials(&s, &other, &stranger, "").await,
        "access_token",
    )
    .to_owned();
    let as_subject = exchange(foreign.clone(), None, vec![("audience", API)]).await;
    assert_oauth_error(&as_subject, StatusCode::BAD_REQUEST, "invalid_request");
    let as_actor = exchange(subject.clone(), Some(foreign), vec![("audience", API)]).await;
    assert_oauth_error(&as_actor, StatusCode::BAD_REQUEST, "invalid_request");
    // A subject token type other than an access token or JWT.
    let a = token(
        &s,
        &t,
        &gateway.auth(),
        &[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", &subject),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
            ("audience", API),
        ],
    )
    .await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_request");

    // Exchanges are events and audit records: three succeeded, refusals recorded none.
    let exchanged = event_types(&s, &t.slug)
        .await
        .into_iter()
        .filter(|e| e == "token.exchanged")
        .count();
    assert_eq!(exchanged, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn introspection_reports_only_live_tokens_of_this_environment() {
    let clock = FakeClock::new(SystemClock.now());
    let s = TestServer::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let t = Tenant::new(&s, "introspection", "RS256").await;
    let short = with(
        service("client_secret_basic", &["api.read"], &[]),
        json!({ "access_token_ttl_seconds": 60 }),
    );
    let svc = create_client(&s, &t, short).await;
    let resource = create_client(&s, &t, service("client_secret_post", &["api.read"], &[])).await;
    let issue =
        || async { str_of(&client_credentials(&s, &t, &svc, "").await, "access_token").to_owned() };

    // Active, with the token's claims (RFC 7662 §2.2), to any authenticated client of the
    // environment (a resource server).
    let tok = issue().await;
    let v = introspect(&s, &t, &resource, &tok).await;
    let c = jwt_claims(&tok);
    assert_eq!(v["active"], true, "{v}");
    for k in [
        "scope",
        "client_id",
        "sub",
        "iss",
        "aud",
        "exp",
        "iat",
        "jti",
    ] {
        assert_eq!(v[k], c[k], "{k} in {v}");
    }

    // Expired: the clock moves past the client's 60-second lifetime.
    let expiring = issue().await;
    assert!(active(&s, &t, &resource, &expiring).await);
    clock.advance_seconds(61);
    assert!(!active(&s, &t, &resource, &expiring).await, "expired");
    assert!(!active(&s, &t, &resource, &tok).await, "expired");

    // Revoked (RFC 7009) by the client it was issued to; another client's revocation of it is
    // accepted and does nothing (RFC 7009 §2.1).
    let tok = issue().await;
    revoke(&s, &t, &resource, &tok).await;
    assert!(
        active(&s, &t, &resource, &tok).await,
        "only its own client revokes a token"
    );
    revoke(&s, &t, &svc, &tok).await;
    assert!(!active(&s, &t, &resource, &tok).await, "revoked");
    assert!(!active(&s, &t, &svc, &tok).await, "revoked");
    // Revoking what is not a token is answered the same way (RFC 7009 §2.2).
    revoke(&s, &t, &svc, "not-a-token").await;

    // Another environment's token, whatever it says, and garbage.
    let other = Tenant::new(&s, "elsewhere", "RS256").await;
    let foreign_client = create_client(
        &s,
        &other,
        service("client_secret_basic", &["api.read"], &[]),
    )
    .await;
    let foreign = str_of(
        &client_credentials(&s, &other, &foreign_client, "").await,
        "access_token",
    )
    .to_owned();
    assert!(
        active(&s, &other, &foreign_client, &foreign).await,
        "live at home"
    );
    assert!(
        !active(&s, &t, &resource, &foreign).await,
        "another environment's"
    );
    for garbage in [
        "garbage",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        &"x".repeat(20_000),
    ] {
        assert!(!active(&s, &t, &resource, garbage).await, "{garbage:.20}");
    }

    // Refresh tokens: live for the client they were issued to, and to no other.
    let web = create_client(&s, &t, web_app()).await;
    let user = user_tokens(&s, &t, &web).await;
    let rt = str_of(&user, "refresh_token");
    let v = introspect(&s, &t, &web, rt).await;
    assert_eq!(v["active"], true, "{v}");
    assert_eq!(v["token_type"], "refresh_token");
    assert_eq!(v["client_id"], web.id.as_str());
    assert_eq!(v["sub"], t.user_id.as_str());
    assert!(
        !active(&s, &t, &resource, rt).await,
        "another client's refresh token"
    );
    revoke(&s, &t, &web, rt).await;
    assert!(!active(&s, &t, &web, rt).await, "revoked refresh token");
    assert!(
        !active(&s, &t, &web, str_of(&user, "access_token")).await,
        "revoking the grant ends its access tokens"
    );

    // Only authenticated clients introspect.
    let public = create_client(&s, &t, super::public_app()).await;
    let tok = issue().await;
    let url = t.at("/oauth2/introspect");
    for auth in [
        Auth::Nothing,
        Auth::Public(public.id.clone()),
        Auth::Basic(svc.id.clone(), "pcsec_wrong".into()),
    ] {
        let a = post_form(&s, &url, &auth, &[("token", &tok)]).await;
        assert_oauth_error(&a, StatusCode::UNAUTHORIZED, "invalid_client");
    }
    let a = post_form(&s, &url, &svc.auth(), &[]).await;
    assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userinfo_answers_for_a_signed_in_user() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "userinfo", "ES256").await;
    let web = create_client(&s, &t, web_app()).await;
    let user = user_tokens(&s, &t, &web).await;
    let at = str_of(&user, "access_token");

    let a = userinfo(&s, &t, at).await;
    assert_eq!(a.header("cache-control"), Some("no-store"));
    let info = a.ok();
    let expected = json!({
        "sub": t.user_id, "email": t.email, "email_verified": true, "org_id": t.org_id,
        "name": "Ada Lovelace", "given_name": "Ada", "family_name": "Lovelace",
    });
    assert_eq!(info, &expected);
    // POST works too (OIDC Core §5.3.1).
    let res = s
        .client()
        .post(t.at("/oauth2/userinfo"))
        .bearer_auth(at)
        .send()
        .await
        .unwrap();
    assert_eq!(super::Answer::read(res).await.ok(), &expected);

    // A machine's token, garbage, or nothing: 401 with a Bearer challenge (RFC 6750 §3).
    let svc = create_client(&s, &t, service("client_secret_basic", &["api.read"], &[])).await;
    let machine = str_of(&client_credentials(&s, &t, &svc, "").await, "access_token").to_owned();
    for bad in [machine.as_str(), "garbage", ""] {
        let a = userinfo(&s, &t, bad).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{bad:.20}: {}", a.text);
        assert!(
            a.header("www-authenticate")
                .is_some_and(|h| h.starts_with("Bearer")),
            "{:?}",
            a.headers
        );
    }
    let res = s
        .client()
        .get(t.at("/oauth2/userinfo"))
        .send()
        .await
        .unwrap();
    let a = super::Answer::read(res).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{}", a.text);
}
