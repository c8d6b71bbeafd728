//! An independent relying party, the `openidconnect` crate, against each signing algorithm:
//! discovery, the authorization code flow with PKCE S256 through the hosted login, ID token
//! validation against the published JWKS (signature, issuer, audience, nonce, `at_hash`),
//! userinfo, refresh and revocation — all done by the crate, whose HTTP client is ours.

use openidconnect::core::{
    CoreClient, CoreErrorResponseType, CoreIdTokenVerifier, CoreJwsSigningAlgorithm,
    CoreProviderMetadata, CoreResponseType, CoreRevocableToken, CoreUserInfoClaims,
};
use openidconnect::{
    AccessTokenHash, AuthenticationFlow, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    HttpRequest, HttpResponse, IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    RedirectUrl, RequestTokenError, RevocationUrl, Scope,
};
use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;

use super::{Browser, PASSWORD, REDIRECT, Tenant, active, create_client, redirected_to, web_app};

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct HttpError(String);

/// The relying party's HTTP client: one reqwest client, redirects off.
///
/// The crate sends revocation requests only to `https` URLs (RFC 7009 §2) and the test server
/// speaks plain HTTP on loopback, so the RP is given the revocation endpoint as `https://{host}`
/// and this client stands in for a TLS terminator for that host and nothing else.
async fn send(
    http: reqwest::Client,
    tls_host: String,
    req: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let uri = parts.uri.to_string();
    let url = match uri.strip_prefix(&format!("https://{tls_host}/")) {
        Some(path) => format!("http://{tls_host}/{path}"),
        None => uri,
    };
    let res = http
        .request(parts.method, url)
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        .map_err(|e| HttpError(e.to_string()))?;
    let status = res.status();
    assert!(!status.is_server_error(), "the server failed: {status}");
    let headers = res.headers().clone();
    let body = res
        .bytes()
        .await
        .map_err(|e| HttpError(e.to_string()))?
        .to_vec();
    let mut out = HttpResponse::new(body);
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

async fn relying_party_signs_in(alg: &str, signing: CoreJwsSigningAlgorithm) {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "rp", alg).await;
    let app = create_client(&s, &t, web_app()).await;
    let tls_host = s.url().trim_start_matches("http://").to_owned();
    let reqwest_client = s.client().clone();
    let http = move |req: HttpRequest| send(reqwest_client.clone(), tls_host.clone(), req);

    // Discovery (OIDC Discovery §4), which also fetches the JWKS.
    let issuer = IssuerUrl::new(t.issuer.clone()).unwrap();
    let meta = CoreProviderMetadata::discover_async(issuer.clone(), &http)
        .await
        .expect("discovery");
    assert_eq!(meta.issuer(), &issuer);
    assert_eq!(
        meta.id_token_signing_alg_values_supported(),
        &vec![signing.clone()]
    );
    let jwks = meta.jwks().clone();
    assert!(!jwks.keys().is_empty(), "the JWKS has the signing key");
    let revocation = t.at("/oauth2/revoke").replacen("http://", "https://", 1);
    let rp = CoreClient::from_provider_metadata(
        meta,
        ClientId::new(app.id.clone()),
        Some(ClientSecret::new(app.secret.clone().unwrap())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap())
    .set_revocation_url(RevocationUrl::new(revocation).unwrap());

    // Authorization code with PKCE S256; the test is the user at the hosted login.
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce) = rp
        .authorize_url(
            AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .set_pkce_challenge(challenge)
        .url();
    let mut browser = Browser::new(&s);
    let landed = browser.sign_in(&t, url.as_str(), &t.email, PASSWORD).await;
    let q = redirected_to(&landed, REDIRECT);
    assert_eq!(&q["state"], state.secret(), "state echoed");
    assert_eq!(q["iss"], t.issuer, "RFC 9207 iss");

    let tokens = rp
        .exchange_code(AuthorizationCode::new(q["code"].clone()))
        .unwrap()
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .expect("code exchange");

    // ID token: signature by the JWKS, issuer, audience, expiry, nonce (OIDC Core §3.1.3.7).
    let verifier: CoreIdTokenVerifier = rp.id_token_verifier().set_allowed_algs([signing.clone()]);
    let id_token = tokens.extra_fields().id_token().expect("an ID token");
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("a valid ID token");
    assert_eq!(claims.subject().as_str(), t.user_id);
    assert_eq!(claims.issuer(), &issuer);
    assert_eq!(
        claims.audiences(),
        &vec![openidconnect::Audience::new(app.id.clone())]
    );
    assert_eq!(claims.email().map(|e| e.as_str()), Some(t.email.as_str()));
    assert_eq!(claims.email_verified(), Some(true));
    assert!(claims.auth_time().is_some(), "auth_time");
    let amr: Vec<&str> = claims
        .auth_method_refs()
        .expect("amr")
        .iter()
        .map(|a| a.as_str())
        .collect();
    assert_eq!(amr, ["pwd"]);
    // at_hash with the hash of the signing algorithm (SHA-512 for Ed25519).
    let at_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&at_hash));
    // The same token fails a verifier expecting another nonce, audience or algorithm.
    assert!(
        id_token
            .claims(&verifier, &Nonce::new("another".into()))
            .is_err()
    );
    let stranger = CoreIdTokenVerifier::new_confidential_client(
        ClientId::new("client_someone_else".into()),
        ClientSecret::new("irrelevant".into()),
        issuer.clone(),
        jwks.clone(),
    )
    .set_allowed_algs([signing.clone()]);
    assert!(
        id_token.claims(&stranger, &nonce).is_err(),
        "audience checked"
    );
    let other_alg = if signing == CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 {
        CoreJwsSigningAlgorithm::EcdsaP256Sha256
    } else {
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256
    };
    let picky = rp.id_token_verifier().set_allowed_algs([other_alg]);
    assert!(
        id_token.claims(&picky, &nonce).is_err(),
        "algorithm checked"
    );

    // Userinfo (OIDC Core §5.3), its sub matched against the ID token's by the crate.
    let info: CoreUserInfoClaims = rp
        .user_info(
            tokens.access_token().clone(),
            Some(claims.subject().clone()),
        )
        .unwrap()
        .request_async(&http)
        .await
        .expect("userinfo");
    assert_eq!(info.email().map(|e| e.as_str()), Some(t.email.as_str()));
    assert_eq!(
        info.name().and_then(|n| n.get(None)).map(|n| n.as_str()),
        Some("Ada Lovelace")
    );

    // Refresh: a new access token and a rotated refresh token; the new ID token verifies too.
    let first_refresh = tokens.refresh_token().expect("a refresh token").clone();
    let refreshed = rp
        .exchange_refresh_token(&first_refresh)
        .unwrap()
        .request_async(&http)
        .await
        .expect("refresh");
    let second_refresh = refreshed.refresh_token().expect("rotated").clone();
    assert_ne!(second_refresh.secret(), first_refresh.secret());
    assert_ne!(
        refreshed.access_token().secret(),
        tokens.access_token().secret()
    );
    let again = refreshed.extra_fields().id_token().expect("an ID token");
    let again = again
        .claims(&verifier, |_: Option<&Nonce>| Ok(()))
        .expect("the refreshed ID token verifies");
    assert_eq!(again.subject(), claims.subject());

    // Revocation (RFC 7009) of the refresh token ends the grant: its tokens stop working.
    rp.revoke_token(CoreRevocableToken::from(second_refresh.clone()))
        .unwrap()
        .request_async(&http)
        .await
        .expect("revocation");
    match rp
        .exchange_refresh_token(&second_refresh)
        .unwrap()
        .request_async(&http)
        .await
    {
        Err(RequestTokenError::ServerResponse(e)) => {
            assert_eq!(e.error(), &CoreErrorResponseType::InvalidGrant, "{e:?}");
        }
        other => panic!("a revoked refresh token still works: {other:?}"),
    }
    assert!(!active(&s, &t, &app, refreshed.access_token().secret()).await);
    let after = super::userinfo(&s, &t, refreshed.access_token().secret()).await;
    assert_eq!(after.status, StatusCode::UNAUTHORIZED, "{}", after.text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relying_party_signs_in_es256() {
    relying_party_signs_in("ES256", CoreJwsSigningAlgorithm::EcdsaP256Sha256).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relying_party_signs_in_eddsa() {
    relying_party_signs_in("EdDSA", CoreJwsSigningAlgorithm::EdDsa).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relying_party_signs_in_rs256() {
    relying_party_signs_in("RS256", CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256).await;
}
