//! Refusals of the authorization endpoint (RFC 6749 §4.1.2.1, OAuth 2.1, RFC 7636), the hosted
//! login (enumeration, guessing, login CSRF) and RP-initiated logout. Errors about the client or
//! its redirect URI are pages; every other error goes back to the client with `state` and `iss`.

use portcullis_core::{Clock, FakeClock, SystemClock};
use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;

use super::{
    Auth, Browser, LOGOUT_REDIRECT, PASSWORD, Pkce, REDIRECT, Tenant, alert, assert_page, audit,
    authorize_url, code_request, create_client, create_user, event_types, issued, jwt_claims,
    public_app, query, redeem, redirected_to, sign_in_for_code, web_app,
};
use crate::str_of;

/// The parameters of an error redirect to [`REDIRECT`], after checking `state` and `iss`.
#[track_caller]
fn error_redirect(a: &super::Answer, t: &Tenant, state: &str, code: &str) {
    let q = redirected_to(a, REDIRECT);
    assert_eq!(q.get("error").map(String::as_str), Some(code), "{q:?}");
    assert!(
        q.get("error_description").is_some_and(|d| !d.is_empty()),
        "{q:?}"
    );
    assert_eq!(q["state"], state, "state echoed");
    assert_eq!(q["iss"], t.issuer, "RFC 9207");
    assert!(!q.contains_key("code"), "{q:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_uri_mismatch_shows_a_page_and_redirects_nowhere() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "redirects", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    let pkce = Pkce::new();
    let request = |client_id: &str, redirect_uri: &str, response_type: &str| {
        authorize_url(
            &t,
            &[
                ("response_type", response_type),
                ("client_id", client_id),
                ("redirect_uri", redirect_uri),
                ("state", "s1"),
                ("code_challenge", &pkce.challenge),
                ("code_challenge_method", "S256"),
            ],
        )
    };
    // Exact string comparison: no prefix, no normalisation, no other host. Even a request with
    // another error (response_type=token) is not sent to an unregistered URI.
    let mut b = Browser::new(&s);
    for (redirect, response_type) in [
        ("http://127.0.0.1:9/cb/", "code"),
        ("http://127.0.0.1:9/cb?next=1", "code"),
        ("http://127.0.0.1:9/CB", "code"),
        ("http://127.0.0.1:9/cb/../cb", "code"),
        ("http://localhost:9/cb", "code"),
        ("https://evil.example/cb", "code"),
        ("https://evil.example/cb", "token"),
    ] {
        let a = b.get(&request(&app.id, redirect, response_type)).await;
        assert_page(&a, StatusCode::BAD_REQUEST);
        assert!(
            alert(&a).contains("redirect_uri"),
            "{redirect}: {}",
            alert(&a)
        );
        assert!(!a.text.contains("evil.example/cb?"), "no link onwards");
    }
    for bad_client in ["client_unknown", "", "<script>"] {
        let a = b.get(&request(bad_client, REDIRECT, "code")).await;
        assert_page(&a, StatusCode::BAD_REQUEST);
        assert!(!a.text.contains("<script>"), "escaped");
    }
    let dup = format!(
        "{}&redirect_uri=https%3A%2F%2Fevil.example%2Fcb",
        request(&app.id, REDIRECT, "code")
    );
    assert_page(&b.get(&dup).await, StatusCode::BAD_REQUEST);
    assert!(b.cookie("pc_flow").is_none(), "no sign-in was started");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_code_flow_with_s256_is_accepted() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "flows", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    let spa = create_client(&s, &t, public_app()).await;
    let pkce = Pkce::new();
    let mut b = Browser::new(&s);
    let send = |client: &str, extra: &[(&'static str, &str)]| {
        let mut p = vec![
            ("client_id", client),
            ("redirect_uri", REDIRECT),
            ("scope", "openid email"),
            ("state", "st-1"),
        ];
        p.extend_from_slice(extra);
        authorize_url(&t, &p)
    };
    let s256 = [
        ("code_challenge", pkce.challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];

    // Implicit and hybrid are refused (OAuth 2.1 §4.1.1); a missing response_type too.
    for rt in ["token", "id_token", "code id_token", "code token", "none"] {
        let mut extra = vec![("response_type", rt)];
        extra.extend(s256);
        let a = b.get(&send(&app.id, &extra)).await;
        error_redirect(&a, &t, "st-1", "unsupported_response_type");
    }
    error_redirect(
        &b.get(&send(&app.id, &s256)).await,
        &t,
        "st-1",
        "invalid_request",
    );

    // PKCE: required for a public client; `plain` refused for everyone; a method needs a
    // challenge and a challenge a method.
    let code = ("response_type", "code");
    let cases: [(&str, Vec<(&'static str, &str)>); 6] = [
        (&spa.id, vec![code]),
        (
            &spa.id,
            vec![
                code,
                ("code_challenge", &pkce.verifier),
                ("code_challenge_method", "plain"),
            ],
        ),
        (
            &app.id,
            vec![
                code,
                ("code_challenge", &pkce.verifier),
                ("code_challenge_method", "plain"),
            ],
        ),
        (&app.id, vec![code, ("code_challenge", &pkce.challenge)]),
        (&app.id, vec![code, ("code_challenge_method", "S256")]),
        (
            &app.id,
            vec![
                code,
                ("code_challenge", "short"),
                ("code_challenge_method", "S256"),
            ],
        ),
    ];
    for (client, extra) in cases {
        let a = b.get(&send(client, &extra)).await;
        error_redirect(&a, &t, "st-1", "invalid_request");
    }
    // Other stage-two refusals.
    for (extra, err) in [
        (vec![code, ("scope", "openid admin")], "invalid_scope"),
        (vec![code, ("prompt", "consent")], "invalid_request"),
        (vec![code, ("max_age", "-1")], "invalid_request"),
        (vec![code, ("response_mode", "fragment")], "invalid_request"),
        (
            vec![code, ("request", "eyJhbGciOiJub25lIn0.e30.")],
            "invalid_request",
        ),
    ] {
        let mut p = vec![
            ("client_id", app.id.as_str()),
            ("redirect_uri", REDIRECT),
            ("state", "st-1"),
        ];
        p.extend(extra);
        if !p.iter().any(|(k, _)| *k == "scope") {
            p.push(("scope", "openid"));
        }
        error_redirect(&b.get(&authorize_url(&t, &p)).await, &t, "st-1", err);
    }
    assert!(b.cookie("pc_flow").is_none(), "no sign-in was started");

    // With S256 a public client signs in and redeems without a secret, the verifier proving
    // possession; without the verifier the code is refused and stays good.
    let code = sign_in_for_code(&s, &t, &spa, &pkce).await;
    let a = super::token(
        &s,
        &t,
        &Auth::Public(spa.id.clone()),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ],
    )
    .await;
    super::assert_oauth_error(&a, StatusCode::BAD_REQUEST, "invalid_grant");
    let tokens = issued(&redeem(&s, &t, &spa, &code, &pkce.verifier).await);
    assert_eq!(
        jwt_claims(str_of(&tokens, "access_token"))["client_id"],
        spa.id.as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_none_needs_a_session_and_state_is_echoed_exactly() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "prompts", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    let pkce = Pkce::new();
    let state = "a b&c=d/é+%25?#end";
    let silent = |state: &str| {
        authorize_url(
            &t,
            &[
                ("response_type", "code"),
                ("client_id", &app.id),
                ("redirect_uri", REDIRECT),
                ("scope", "openid"),
                ("state", state),
                ("prompt", "none"),
                ("code_challenge", &pkce.challenge),
                ("code_challenge_method", "S256"),
            ],
        )
    };
    let mut b = Browser::new(&s);
    error_redirect(&b.get(&silent(state)).await, &t, state, "login_required");

    // Signed in, the state comes back byte for byte with the code.
    let a = b
        .sign_in(
            &t,
            &code_request(&t, &app, &pkce, state),
            &t.email,
            PASSWORD,
        )
        .await;
    let q = redirected_to(&a, REDIRECT);
    assert_eq!(q["state"], state);
    assert!(b.cookie("pc_session").is_some(), "a browser session");
    assert!(b.cookie("pc_flow").is_none(), "the flow cookie is spent");

    // The session now answers prompt=none; prompt=login asks again.
    let q = redirected_to(&b.get(&silent("again")).await, REDIRECT);
    assert_eq!(q["state"], "again");
    assert!(q.contains_key("code"), "{q:?}");
    let fresh = authorize_url(
        &t,
        &[
            ("response_type", "code"),
            ("client_id", &app.id),
            ("redirect_uri", REDIRECT),
            ("prompt", "login"),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ],
    );
    let a = b.get(&fresh).await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(
        a.location().starts_with(&t.at("/login?")),
        "{}",
        a.location()
    );
}

/// The address a sign-in is audited (and rate limited) under: the peer's, unless the peer is a
/// configured trusted proxy, and then the client its `X-Forwarded-For` names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_trusted_proxies() {
    let actors = async |s: &TestServer, slug: &str| -> Vec<String> {
        audit(s, slug)
            .await
            .into_iter()
            .filter(|r| r["action"] == "authentication.password")
            .map(|r| r["actor"].as_str().unwrap().to_owned())
            .collect()
    };
    // Default: no trusted proxies, so a client that writes the header is not believed.
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "direct", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    let mut b = Browser::new(&s).forwarded_for("203.0.113.7");
    let req = b
        .start(&t, &code_request(&t, &app, &Pkce::new(), "s"))
        .await;
    let wrong = b
        .submit_password(&t, &req, &t.email, "wrong password")
        .await;
    assert_page(&wrong, StatusCode::UNAUTHORIZED);
    assert_eq!(actors(&s, &t.slug).await, ["browser:127.0.0.1"]);

    // Behind a trusted proxy (the tests connect from 127.0.0.1): the right-most hop that is not a
    // trusted proxy is the client, and what the client wrote left of it is ignored.
    let s = TestServer::builder()
        .flag("trusted_proxies", "127.0.0.0/8, 10.0.0.0/8")
        .start()
        .await
        .unwrap();
    let t = Tenant::new(&s, "proxied", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    for (header, _) in [
        (
            "198.51.100.1, 203.0.113.7",
            "client-written hop on the left",
        ),
        ("203.0.113.7, 10.1.2.3", "an inner proxy on the right"),
    ] {
        let mut b = Browser::new(&s).forwarded_for(header);
        let req = b
            .start(&t, &code_request(&t, &app, &Pkce::new(), "s"))
            .await;
        let wrong = b
            .submit_password(&t, &req, &t.email, "wrong password")
            .await;
        assert_page(&wrong, StatusCode::UNAUTHORIZED);
    }
    let mut b = Browser::new(&s).forwarded_for("unknown");
    let req = b
        .start(&t, &code_request(&t, &app, &Pkce::new(), "s"))
        .await;
    let wrong = b
        .submit_password(&t, &req, &t.email, "wrong password")
        .await;
    assert_page(&wrong, StatusCode::UNAUTHORIZED);
    assert_eq!(
        actors(&s, &t.slug).await,
        [
            "browser:203.0.113.7",
            "browser:203.0.113.7",
            "browser:127.0.0.1"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_users_and_wrong_passwords_look_alike_and_are_audited() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "guessing", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    let pkce = Pkce::new();
    let mut b = Browser::new(&s);
    let req = b.start(&t, &code_request(&t, &app, &pkce, "s")).await;
    let wrong_pw = "not the password at all";

    let wrong = b.submit_password(&t, &req, &t.email, wrong_pw).await;
    assert_page(&wrong, StatusCode::UNAUTHORIZED);
    // An unknown address of the organization's domain gets the password form as well, and then
    // exactly the same page.
    let nobody = format!("nobody@{}.example", t.slug);
    let form = b.submit_email(&t, &req, &nobody).await;
    assert_page(&form, StatusCode::OK);
    assert!(form.text.contains(r#"id="password""#));
    let unknown = b.submit_password(&t, &req, &nobody, wrong_pw).await;
    assert_page(&unknown, StatusCode::UNAUTHORIZED);
    assert_eq!(alert(&wrong), alert(&unknown));
    assert_eq!(alert(&wrong), "The email or password is not correct.");
    assert_eq!(
        wrong.text.replace(&t.email, "@"),
        unknown.text.replace(&nobody, "@")
    );

    // The failures are audited (outcome failure, reason kept for the operator, the peer address
    // as actor, no password) and are events.
    let records: Vec<_> = audit(&s, &t.slug)
        .await
        .into_iter()
        .filter(|r| r["action"] == "authentication.password")
        .collect();
    assert_eq!(records.len(), 2, "{records:?}");
    for (r, reason) in records.iter().zip(["wrong_password", "unknown_user"]) {
        assert_eq!(r["outcome"], "failure", "{r}");
        assert_eq!(r["detail"]["reason"], reason, "{r}");
        assert_eq!(r["actor"], "browser:127.0.0.1", "{r}");
    }
    assert_eq!(records[0]["target"], t.user_id.as_str());
    assert!(!serde_json::to_string(&records).unwrap().contains(wrong_pw));
    let failed = event_types(&s, &t.slug)
        .await
        .into_iter()
        .filter(|e| e == "authentication.password_failed")
        .count();
    assert_eq!(failed, 2);

    // The pending request is still good for the right password.
    let ok = b.submit_password(&t, &req, &t.email, PASSWORD).await;
    assert!(redirected_to(&ok, REDIRECT).contains_key("code"));
    let success = audit(&s, &t.slug).await;
    let last = success.last().unwrap();
    assert_eq!(
        (last["action"].as_str(), last["outcome"].as_str()),
        (Some("authentication.password"), Some("success")),
        "{last}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_is_locked_after_five_failures() {
    let clock = FakeClock::new(SystemClock.now());
    let s = TestServer::builder()
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let t = Tenant::new(&s, "limits", "ES256").await;
    let colleague = format!("grace@{}.example", t.slug);
    create_user(&s, &t.slug, &t.org_id, &colleague).await;
    let app = create_client(&s, &t, web_app()).await;
    let pkce = Pkce::new();
    let mut b = Browser::new(&s);
    let req = b.start(&t, &code_request(&t, &app, &pkce, "s")).await;
    for i in 0..5 {
        let a = b
            .submit_password(&t, &req, &t.email, &format!("guess number {i}"))
            .await;
        assert_page(&a, StatusCode::UNAUTHORIZED);
    }
    // The sixth attempt is refused before the password is looked at, even the right one.
    let a = b.submit_password(&t, &req, &t.email, PASSWORD).await;
    assert_page(&a, StatusCode::TOO_MANY_REQUESTS);
    assert!(alert(&a).contains("Too many attempts"), "{}", alert(&a));
    let limited = audit(&s, &t.slug).await;
    assert_eq!(limited.last().unwrap()["detail"]["reason"], "rate_limited");

    // Per account: a colleague signs in meanwhile.
    let mut other = Browser::new(&s);
    let a = other
        .sign_in(
            &t,
            &code_request(&t, &app, &pkce, "s"),
            &colleague,
            PASSWORD,
        )
        .await;
    assert!(redirected_to(&a, REDIRECT).contains_key("code"));

    // The window slides: five minutes later the right password works again.
    clock.advance_seconds(301);
    let mut later = Browser::new(&s);
    let a = later
        .sign_in(&t, &code_request(&t, &app, &pkce, "s"), &t.email, PASSWORD)
        .await;
    assert!(redirected_to(&a, REDIRECT).contains_key("code"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_forms_need_the_browsers_flow_cookie() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "csrf", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    let pkce = Pkce::new();
    let url = code_request(&t, &app, &pkce, "s");

    // The flow cookie binds the pending request to this browser; scripts cannot read it.
    let raw = s.client().get(&url).send().await.unwrap();
    let set = raw.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(set.starts_with("pc_flow="), "{set}");
    for attr in ["HttpOnly", "SameSite=Lax", &format!("Path=/e/{}", t.slug)] {
        assert!(set.contains(attr), "{attr} in {set}");
    }

    let mut victim = Browser::new(&s);
    let req = victim.start(&t, &url).await;
    // A cross-site form post carries no cookie (SameSite=Lax); another browser's cookie is not
    // this request's.
    let mut attacker = Browser::new(&s);
    let mut other = Browser::new(&s);
    other.start(&t, &url).await;
    for b in [&mut attacker, &mut other] {
        let a = b.submit_password(&t, &req, &t.email, PASSWORD).await;
        assert_page(&a, StatusCode::FORBIDDEN);
        assert_page(
            &b.submit_email(&t, &req, &t.email).await,
            StatusCode::FORBIDDEN,
        );
        assert_page(
            &b.get(&t.at(&format!("/login?req={req}"))).await,
            StatusCode::FORBIDDEN,
        );
    }
    assert!(attacker.cookie("pc_session").is_none());

    // Nothing changed: the victim completes, once.
    let a = victim.submit_password(&t, &req, &t.email, PASSWORD).await;
    let code = redirected_to(&a, REDIRECT)["code"].clone();
    let replay = victim.submit_password(&t, &req, &t.email, PASSWORD).await;
    assert!(replay.status.is_client_error(), "{}", replay.text);
    assert!(replay.header("location").is_none(), "no second code");
    issued(&redeem(&s, &t, &app, &code, &pkce.verifier).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_redirects_only_to_registered_uris() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "logout", "ES256").await;
    let app = create_client(&s, &t, web_app()).await;
    let pkce = Pkce::new();
    let mut b = Browser::new(&s);
    let a = b
        .sign_in(&t, &code_request(&t, &app, &pkce, "s"), &t.email, PASSWORD)
        .await;
    let code = redirected_to(&a, REDIRECT)["code"].clone();
    let tokens = issued(&redeem(&s, &t, &app, &code, &pkce.verifier).await);
    let session = b.cookie("pc_session").unwrap().to_owned();
    let logout = |params: &[(&str, &str)]| format!("{}?{}", t.at("/logout"), super::form(params));
    let silent = authorize_url(
        &t,
        &[
            ("response_type", "code"),
            ("client_id", &app.id),
            ("redirect_uri", REDIRECT),
            ("prompt", "none"),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ],
    );

    // Unregistered, or registered for nobody named: a page, and the session lives on.
    for params in [
        vec![
            ("client_id", app.id.as_str()),
            ("post_logout_redirect_uri", "https://evil.example/"),
        ],
        vec![
            ("client_id", app.id.as_str()),
            ("post_logout_redirect_uri", REDIRECT),
        ],
        vec![("post_logout_redirect_uri", LOGOUT_REDIRECT)],
        vec![
            ("id_token_hint", "not.a.token"),
            ("post_logout_redirect_uri", LOGOUT_REDIRECT),
        ],
    ] {
        let a = b.get(&logout(&params)).await;
        assert_page(&a, StatusCode::BAD_REQUEST);
    }
    assert_eq!(b.cookie("pc_session"), Some(session.as_str()));
    assert!(redirected_to(&b.get(&silent).await, REDIRECT).contains_key("code"));

    // Registered, named by the ID token: redirected with the state; the session ends.
    let a = b
        .get(&logout(&[
            ("id_token_hint", str_of(&tokens, "id_token")),
            ("post_logout_redirect_uri", LOGOUT_REDIRECT),
            ("state", "bye now"),
        ]))
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.text);
    assert_eq!(a.location(), format!("{LOGOUT_REDIRECT}?state=bye%20now"));
    assert_eq!(query(a.location())["state"], "bye now");
    assert!(b.cookie("pc_session").is_none(), "the cookie is cleared");
    // The old cookie no longer signs anyone in.
    b.set_cookie("pc_session", &session);
    let q = redirected_to(&b.get(&silent).await, REDIRECT);
    assert_eq!(q.get("error").map(String::as_str), Some("login_required"));
}
