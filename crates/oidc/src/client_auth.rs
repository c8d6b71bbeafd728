//! Client authentication at the token, introspection and revocation endpoints (RFC 6749 §2.3,
//! RFC 7523 §2.2 and §3 for `private_key_jwt`, OIDC Core §9).
//!
//! Rules:
//! - a request uses exactly one method; the one the client registered, no other;
//! - secrets are compared by digest in constant time, against the current secret (refused from
//!   its `secret_expires_at` on) and, until its overlap window ends, the previous one;
//! - a client assertion is a JWS by a key in the client's inline JWKS (never fetched), with
//!   `iss` = `sub` = client ID, `aud` naming our token endpoint or issuer, an `exp` in the future
//!   and at most 10 minutes away, and a `jti` never seen before for this client;
//! - every failure is `invalid_client` with the reason in the description, and the client is not
//!   identified to an unauthenticated caller beyond what it sent.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis_core::Secret;
use portcullis_core::ids::{ClientId, PrefixedId};
use std::sync::Arc;

use portcullis_core::credential::{client_jwk_reference, client_secret_reference};
use portcullis_core::oauth::{AuthMethod, Client};
use portcullis_crypto::secrets::constant_time_eq;
use serde_json::Value;

use crate::jwt::from_seconds;
use crate::{Ctx, OAuthError};

pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const MAX_ASSERTION_LIFETIME_S: i64 = 600;

/// The credentials a request carried, before they are checked.
#[derive(Debug, Default, Clone)]
pub struct Credentials {
    /// `Authorization: Basic` (already base64-decoded and form-decoded).
    pub basic: Option<(String, Secret)>,
    pub client_id: Option<String>,
    pub client_secret: Option<Secret>,
    pub assertion_type: Option<String>,
    pub assertion: Option<String>,
}

/// Parses an `Authorization` header value of the Basic scheme (RFC 6749 §2.3.1: both parts are
/// form-urlencoded before base64).
pub fn parse_basic(header: &str) -> Result<Option<(String, Secret)>, OAuthError> {
    let Some((scheme, rest)) = header.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    let bad = || OAuthError::client("the Basic authorization header is malformed");
    let raw = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let dec = |s: &str| form_decode(s).ok_or_else(bad);
    Ok(Some((dec(id)?, Secret::new(dec(secret)?))))
}

fn form_decode(s: &str) -> Option<String> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Some(s.to_owned());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let h = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(h, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

async fn load(ctx: &Ctx<'_>, id: &str) -> Result<Arc<Client>, OAuthError> {
    let unknown = || OAuthError::client("client authentication failed: unknown client");
    let cid = ClientId::parse(id).ok_or_else(unknown)?;
    match ctx
        .store
        .get_client_cached(&ctx.env.id, &cid, ctx.now)
        .await
    {
        Ok(c) => Ok(c),
        Err(portcullis_store::StoreError::NotFound(_)) => Err(unknown()),
        Err(e) => Err(e.into()),
    }
}

/// Checks `secret` against the client's current secret (refused from its expiry on) and, until
/// its overlap window ends, the previous one; records the use of the one that matched.
async fn check_secret(
    ctx: &Ctx<'_>,
    client: Arc<Client>,
    secret: &Secret,
) -> Result<Arc<Client>, OAuthError> {
    let digest = portcullis_crypto::secret_digest(secret);
    let is = |d: Option<&str>| d.is_some_and(|d| constant_time_eq(d.as_bytes(), digest.as_bytes()));
    let current = is(client.secret_digest.as_deref());
    let previous = is(client.previous_secret_digest.as_deref())
        && client
            .previous_secret_expires_at
            .is_some_and(|t| ctx.now < t);
    if current && client.secret_expires_at.is_some_and(|t| ctx.now >= t) {
        // Only the holder of the secret learns this: anyone else gets the generic failure.
        return Err(OAuthError::client(
            "client authentication failed: the client secret has expired",
        ));
    }
    if !(current || previous) {
        return Err(OAuthError::client("client authentication failed"));
    }
    note_use(
        ctx,
        &client,
        &client_secret_reference(client.id.as_str(), &digest),
    )
    .await;
    Ok(client)
}

/// Records a successful use for the credential inventory. Never fails the authentication: a
/// missed last-use time is better than a refused client.
async fn note_use(ctx: &Ctx<'_>, client: &Client, reference: &str) {
    if let Err(e) = ctx
        .store
        .note_credential_use(&ctx.env.id, client.id.as_str(), reference, ctx.now)
        .await
    {
        tracing::warn!(error = %e, client = %client.id, "could not record a credential use");
    }
}

/// Authenticates the client of a request.
pub async fn authenticate(ctx: &Ctx<'_>, creds: &Credentials) -> Result<Arc<Client>, OAuthError> {
    let used = [
        creds.basic.is_some(),
        creds.client_secret.is_some(),
        creds.assertion.is_some(),
    ];
    if used.iter().filter(|u| **u).count() > 1 {
        return Err(OAuthError::request(
            "use exactly one client authentication method",
        ));
    }
    let wrong_method = |c: &Client| {
        OAuthError::client(format!(
            "this client authenticates with {}",
            c.auth_method.as_str()
        ))
    };
    if let Some((id, secret)) = &creds.basic {
        if creds.client_id.as_ref().is_some_and(|c| c != id) {
            return Err(OAuthError::request(
                "client_id in the body does not match the Authorization header",
            ));
        }
        let client = load(ctx, id).await?;
        if client.auth_method != AuthMethod::ClientSecretBasic {
            return Err(wrong_method(&client));
        }
        return check_secret(ctx, client, secret).await;
    }
    if let Some(secret) = &creds.client_secret {
        let id = creds
            .client_id
            .as_deref()
            .ok_or_else(|| OAuthError::request("client_secret needs client_id"))?;
        let client = load(ctx, id).await?;
        if client.auth_method != AuthMethod::ClientSecretPost {
            return Err(wrong_method(&client));
        }
        return check_secret(ctx, client, secret).await;
    }
    if let Some(assertion) = &creds.assertion {
        if creds.assertion_type.as_deref() != Some(JWT_BEARER_ASSERTION) {
            return Err(OAuthError::request(format!(
                "client_assertion_type must be {JWT_BEARER_ASSERTION}"
            )));
        }
        return verify_assertion(ctx, assertion, creds.client_id.as_deref()).await;
    }
    let id = creds
        .client_id
        .as_deref()
        .ok_or_else(|| OAuthError::client("client authentication is required"))?;
    let client = load(ctx, id).await?;
    if client.auth_method != AuthMethod::None {
        return Err(wrong_method(&client));
    }
    Ok(client)
}

/// RFC 7523 §3, steps in order.
async fn verify_assertion(
    ctx: &Ctx<'_>,
    assertion: &str,
    form_client_id: Option<&str>,
) -> Result<Arc<Client>, OAuthError> {
    let fail = |why: &str| OAuthError::client(format!("client assertion refused: {why}"));
    // The subject names the client; read it unverified only to find the keys to verify with.
    let payload = assertion
        .split('.')
        .nth(1)
        .ok_or_else(|| fail("not a compact JWS"))?;
    let unverified: Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| fail("the payload is not JSON"))?;
    let sub = unverified
        .get("sub")
        .and_then(Value::as_str)
        .ok_or_else(|| fail("no sub"))?
        .to_owned();
    if form_client_id.is_some_and(|c| c != sub) {
        return Err(fail("client_id does not match the assertion's subject"));
    }
    let client = load(ctx, &sub).await?;
    if client.auth_method != AuthMethod::PrivateKeyJwt {
        return Err(OAuthError::client(format!(
            "this client authenticates with {}",
            client.auth_method.as_str()
        )));
    }
    let keys = client
        .jwks
        .as_ref()
        .and_then(|j| j.get("keys"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let (key, claims) = keys
        .iter()
        .find_map(|k| portcullis_crypto::jws::verify_with_key(k, assertion).map(|(_, c)| (k, c)))
        .ok_or_else(|| {
            fail("the signature does not verify with any key registered for this client")
        })?;
    // 1. iss and sub are the client.
    if claims.get("iss").and_then(Value::as_str) != Some(client.id.as_str())
        || claims.get("sub").and_then(Value::as_str) != Some(client.id.as_str())
    {
        return Err(fail("iss and sub must both be the client ID"));
    }
    // 3. aud identifies this authorization server: the token endpoint URL or the issuer.
    let token_endpoint = ctx.token_endpoint();
    let names_us = |v: &Value| {
        v.as_str()
            .is_some_and(|a| a == token_endpoint || a == ctx.env.issuer)
    };
    let aud_ok = match claims.get("aud") {
        Some(Value::Array(a)) => a.iter().any(names_us),
        Some(v) => names_us(v),
        None => false,
    };
    if !aud_ok {
        return Err(fail(
            "aud must be this environment's token endpoint or issuer",
        ));
    }
    // 4. exp is in the future, and not so far that the jti record would have to live forever.
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or_else(|| fail("exp is required"))?;
    let now = ctx.now.seconds();
    if exp <= now {
        return Err(fail("it has expired"));
    }
    if exp > now + MAX_ASSERTION_LIFETIME_S {
        return Err(fail("exp is more than 10 minutes away"));
    }
    if claims
        .get("nbf")
        .and_then(Value::as_i64)
        .is_some_and(|nbf| nbf > now + 60)
    {
        return Err(fail("it is not valid yet"));
    }
    // 7. jti is single use.
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| fail("jti is required"))?;
    if !ctx
        .store
        .use_assertion_jti(&ctx.env.id, client.id.as_str(), jti, from_seconds(exp))
        .await?
    {
        return Err(fail("its jti was already used (replay)"));
    }
    if let Some(kid) = key.get("kid").and_then(Value::as_str) {
        note_use(ctx, &client, &client_jwk_reference(client.id.as_str(), kid)).await;
    }
    Ok(client)
}
