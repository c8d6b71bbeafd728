//! The token endpoint: authorization code (RFC 6749 §4.1.3, RFC 7636 §4.6), refresh token
//! (§6, with rotation and reuse detection per OAuth 2.1 §4.3.1 / RFC 9700 §4.14), client
//! credentials (§4.4) and token exchange (RFC 8693). Errors per RFC 6749 §5.2 and RFC 8693 §2.2.2.
//!
//! A refused request issues nothing and changes nothing, except where the RFCs say to revoke:
//! a second redemption of a code revokes what the first issued (RFC 6749 §4.1.2), and the reuse
//! of a rotated refresh token revokes its family.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::audit::{NewAudit, Outcome};
use portcullis_core::event::EventType;
use portcullis_core::oauth::{Client, GrantData, GrantType};
use portcullis_store::Redeem;
use serde::Serialize;
use serde_json::{Value, json};

use crate::client_auth::{Credentials, authenticate};
use crate::jwt::{
    AccessClaims, IdTokenInput, mint_access_token, mint_id_token, verify_access_token,
};
use crate::{Ctx, ErrorCode, OAuthError, scopes};

pub const TOKEN_TYPE_ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_token_type: Option<&'static str>,
}

impl TokenResponse {
    /// The JSON body (RFC 6749 §5.1), written into a buffer sized for the tokens it carries.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        let tokens = [&self.refresh_token, &self.id_token]
            .iter()
            .filter_map(|t| t.as_ref().map(String::len))
            .sum::<usize>();
        let scope = self.scope.as_ref().map_or(0, String::len);
        let mut out = Vec::with_capacity(self.access_token.len() + tokens + scope + 160);
        serde_json::to_writer(&mut out, self)?;
        Ok(out)
    }
}

/// A token request: its form parameters (each at most once) and its client credentials.
pub struct TokenRequest {
    pub params: HashMap<String, String>,
    pub creds: Credentials,
}

impl TokenRequest {
    fn get(&self, k: &str) -> Option<&str> {
        self.params
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
    fn require(&self, k: &str) -> Result<&str, OAuthError> {
        self.get(k)
            .ok_or_else(|| OAuthError::request(format!("{k} is required")))
    }
}

fn random_token() -> String {
    let mut b = [0u8; 32];
    portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn digest(t: &str) -> String {
    portcullis_crypto::sha256_hex(t.as_bytes())
}

fn internal(e: String) -> OAuthError {
    tracing::error!(error = %e, "token signing failed");
    OAuthError::new(
        ErrorCode::ServerError,
        "the server could not sign the token",
    )
}

/// Handles a token request after parsing. `refused` audits failures the caller should record.
pub async fn token(ctx: &Ctx<'_>, req: &TokenRequest) -> Result<TokenResponse, OAuthError> {
    let grant_type = req.require("grant_type")?;
    let grant = GrantType::parse(grant_type).ok_or_else(|| {
        OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            format!("grant_type {grant_type:?} is not supported"),
        )
    })?;
    let client = authenticate(ctx, &req.creds).await?;
    if !client.allows(grant) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            format!("this client may not use the {} grant", grant.as_str()),
        ));
    }
    match grant {
        GrantType::AuthorizationCode => authorization_code(ctx, &client, req).await,
        GrantType::RefreshToken => refresh_token(ctx, &client, req).await,
        GrantType::ClientCredentials => client_credentials(ctx, &client, req),
        GrantType::TokenExchange => token_exchange(ctx, &client, req).await,
    }
}

/// RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge.
fn pkce_ok(verifier: &str, challenge: &str) -> bool {
    let valid = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    valid
        && URL_SAFE_NO_PAD.encode(portcullis_crypto::secrets::sha256(verifier.as_bytes()))
            == challenge
}

async fn authorization_code(
    ctx: &Ctx<'_>,
    client: &Client,
    req: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let code = req.require("code")?;
    let redirect_uri = req.get("redirect_uri");
    let verifier = req.get("code_verifier");
    let code_digest = digest(code);
    let Some((grant, family_id, expires_at, redeemed)) =
        ctx.store.peek_code(&ctx.env.id, &code_digest).await?
    else {
        return Err(OAuthError::grant("the authorization code is invalid"));
    };
    if grant.client_id != client.id.as_str() {
        return Err(OAuthError::grant(
            "the authorization code was issued to another client",
        ));
    }
    if redeemed {
        return Err(code_reused(ctx, client, &family_id).await);
    }
    // Every check happens before the code is spent, so that a refused request changes nothing.
    if expires_at <= ctx.now {
        return Err(OAuthError::grant("the authorization code has expired"));
    }
    match redirect_uri {
        Some(r) if r != grant.redirect_uri => {
            return Err(OAuthError::grant(
                "redirect_uri does not match the authorization request",
            ));
        }
        None if grant.redirect_uri_given => {
            return Err(OAuthError::grant(
                "redirect_uri is required: the authorization request named one",
            ));
        }
        _ => {}
    }
    match (&grant.code_challenge, verifier) {
        (Some(c), Some(v)) if pkce_ok(v, c) => {}
        (Some(_), Some(_)) => {
            return Err(OAuthError::grant(
                "the code_verifier does not match the code_challenge",
            ));
        }
        (Some(_), None) => return Err(OAuthError::grant("code_verifier is required")),
        (None, Some(_)) => {
            return Err(OAuthError::grant(
                "code_verifier given but the authorization request had no code_challenge",
            ));
        }
        (None, None) => {}
    }
    // The database decides between racing redemptions: exactly one wins.
    match ctx
        .store
        .redeem_code(&ctx.env.id, &code_digest, ctx.now)
        .await?
    {
        Redeem::Ok { .. } => {}
        Redeem::Reused { family_id } => return Err(code_reused(ctx, client, &family_id).await),
        Redeem::NotFound => return Err(OAuthError::grant("the authorization code is invalid")),
    }
    issue_user_tokens(ctx, client, &grant, &family_id, true).await
}

/// RFC 6749 §4.1.2: a code used twice revokes the tokens issued from it.
async fn code_reused(ctx: &Ctx<'_>, client: &Client, family_id: &str) -> OAuthError {
    let detail = json!({ "client_id": client.id, "grant_id": family_id });
    let revoked = ctx
        .store
        .revoke_family(&ctx.env.id, family_id, "code_reused", ctx.now)
        .await;
    let recorded = ctx
        .store
        .record(
            &ctx.env.id,
            ctx.now,
            Some((EventType::CodeReuseDetected, None, detail.clone())),
            NewAudit {
                actor: format!("client:{}", client.id),
                action: "token.code_reuse_detected".into(),
                target: family_id.to_owned(),
                outcome: Outcome::Failure,
                detail,
            },
        )
        .await;
    match revoked.and(recorded) {
        Ok(_) => OAuthError::grant(
            "the authorization code was already used; the tokens issued from it are revoked",
        ),
        Err(e) => e.into(),
    }
}

/// Access token, ID token (with `openid`) and refresh token (when the client may refresh).
async fn issue_user_tokens(
    ctx: &Ctx<'_>,
    client: &Client,
    grant: &GrantData,
    family_id: &str,
    with_refresh: bool,
) -> Result<TokenResponse, OAuthError> {
    let granted = scopes(&grant.scope);
    let Some(profile) = crate::introspect::subject_claims(ctx, &grant.user_id, &granted).await?
    else {
        return Err(OAuthError::grant(
            "the user no longer exists or is disabled",
        ));
    };
    let claims = AccessClaims {
        sub: grant.user_id.clone(),
        client_id: client.id.to_string(),
        aud: ctx.env.issuer.clone(),
        scope: grant.scope.clone(),
        org_id: grant.org_id.clone(),
        act: None,
        family_id: Some(family_id.to_owned()),
        auth_time: Some(grant.auth_time),
        amr: None,
    };
    let ttl = client.lifetimes.access_token;
    let (access_token, _) = mint_access_token(ctx, &claims, ttl).map_err(internal)?;
    let id_token = if granted.iter().any(|s| s == "openid") {
        Some(
            mint_id_token(
                ctx,
                &IdTokenInput {
                    sub: &grant.user_id,
                    client_id: client.id.as_str(),
                    nonce: grant.nonce.as_deref(),
                    auth_time: grant.auth_time,
                    amr: &grant.amr,
                    access_token: &access_token,
                    profile,
                    ttl: client.lifetimes.id_token,
                },
            )
            .map_err(internal)?,
        )
    } else {
        None
    };
    let refresh_token = if with_refresh && client.allows(GrantType::RefreshToken) {
        let t = random_token();
        ctx.store
            .insert_refresh(
                &ctx.env.id,
                &digest(&t),
                family_id,
                grant,
                next_refresh_expiry(ctx, client, family_id).await?,
                ctx.now,
            )
            .await?;
        Some(t)
    } else {
        None
    };
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: Some(grant.scope.clone()),
        refresh_token,
        id_token,
        issued_token_type: None,
    })
}

/// A refresh token expires after the idle lifetime, never after the family's absolute end.
async fn next_refresh_expiry(
    ctx: &Ctx<'_>,
    client: &Client,
    family_id: &str,
) -> Result<portcullis_core::Timestamp, OAuthError> {
    let idle = ctx.now.plus_seconds(client.lifetimes.refresh_idle);
    let family = ctx.store.family(&ctx.env.id, family_id).await?;
    Ok(family.map_or(idle, |f| idle.min(f.absolute_expires_at)))
}

async fn refresh_token(
    ctx: &Ctx<'_>,
    client: &Client,
    req: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let presented = req.require("refresh_token")?;
    let old = digest(presented);
    // Check ownership and family state before rotating, so that a refused request changes nothing.
    let Some((family_id, grant, expires_at, rotated)) =
        ctx.store.refresh_token(&ctx.env.id, &old).await?
    else {
        return Err(OAuthError::grant("the refresh token is invalid"));
    };
    if grant.client_id != client.id.as_str() {
        return Err(OAuthError::grant(
            "the refresh token was issued to another client",
        ));
    }
    let family = ctx
        .store
        .family(&ctx.env.id, &family_id)
        .await?
        .ok_or_else(|| OAuthError::grant("the refresh token is invalid"))?;
    if family.revoked_at.is_some() {
        return Err(OAuthError::grant("the refresh token was revoked"));
    }
    if !rotated && (expires_at <= ctx.now || family.absolute_expires_at <= ctx.now) {
        return Err(OAuthError::grant("the refresh token has expired"));
    }
    // A narrower scope may be asked for (RFC 6749 §6), never a wider one. Checked before
    // rotating, so that a refused request leaves the token usable; a spent token goes on to
    // reuse detection whatever it asks for.
    let mut grant = grant;
    if let Some(s) = req.get("scope") {
        let asked = scopes(s);
        let had = scopes(&grant.scope);
        if let Some(bad) = asked.iter().find(|x| !had.contains(x)).filter(|_| !rotated) {
            return Err(OAuthError::new(
                ErrorCode::InvalidScope,
                format!("scope {bad:?} was not granted originally"),
            ));
        }
        grant.scope = asked.join(" ");
    }
    let next = random_token();
    let next_expiry = ctx
        .now
        .plus_seconds(client.lifetimes.refresh_idle)
        .min(family.absolute_expires_at);
    match ctx
        .store
        .rotate_refresh(&ctx.env.id, &old, &digest(&next), next_expiry, ctx.now)
        .await?
    {
        Redeem::Ok { .. } => {}
        Redeem::Reused { family_id } => {
            ctx.store
                .revoke_family(&ctx.env.id, &family_id, "refresh_reused", ctx.now)
                .await?;
            let detail =
                json!({ "client_id": client.id, "grant_id": family_id, "user_id": grant.user_id });
            ctx.store
                .record(
                    &ctx.env.id,
                    ctx.now,
                    Some((EventType::RefreshReuseDetected, None, detail.clone())),
                    NewAudit {
                        actor: format!("client:{}", client.id),
                        action: "token.refresh_reuse_detected".into(),
                        target: family_id,
                        outcome: Outcome::Failure,
                        detail,
                    },
                )
                .await?;
            return Err(OAuthError::grant(
                "the refresh token was already used; every token of this grant is revoked",
            ));
        }
        Redeem::NotFound => return Err(OAuthError::grant("the refresh token is invalid")),
    }
    let mut res = issue_user_tokens(ctx, client, &grant, &family_id, false).await?;
    res.refresh_token = Some(next);
    Ok(res)
}

fn requested_audience(
    client: &Client,
    req: &TokenRequest,
    default: &str,
) -> Result<String, OAuthError> {
    let aud = match (req.get("audience"), req.get("resource")) {
        (Some(a), Some(r)) if a != r => {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "audience and resource name different targets",
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => return Ok(default.to_owned()),
    };
    if client.exchange.audiences.iter().any(|x| x == aud) {
        Ok(aud.to_owned())
    } else {
        Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            format!("this client may not obtain tokens for the audience {aud:?}"),
        ))
    }
}

fn client_credentials(
    ctx: &Ctx<'_>,
    client: &Client,
    req: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    let requested = req
        .get("scope")
        .map_or_else(|| client.scopes.clone(), scopes);
    if let Some(bad) = requested
        .iter()
        .find(|s| !client.scopes.contains(s) || *s == "openid")
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("the scope {bad:?} is not allowed for this client"),
        ));
    }
    let aud = requested_audience(client, req, &ctx.env.issuer)?;
    let claims = AccessClaims {
        sub: client.id.to_string(),
        client_id: client.id.to_string(),
        aud,
        scope: requested.join(" "),
        ..AccessClaims::default()
    };
    let ttl = client.lifetimes.access_token;
    let (access_token, _) = mint_access_token(ctx, &claims, ttl).map_err(internal)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: (!claims.scope.is_empty()).then_some(claims.scope),
        refresh_token: None,
        id_token: None,
        issued_token_type: None,
    })
}

/// Verifies a token presented to the exchange: one of our access tokens, of an accepted type.
async fn exchange_input(
    ctx: &Ctx<'_>,
    req: &TokenRequest,
    token: &str,
    type_param: &str,
) -> Result<Value, OAuthError> {
    let t = req.require(token)?;
    let ty = req.require(type_param)?;
    if ty != TOKEN_TYPE_ACCESS && ty != TOKEN_TYPE_JWT {
        return Err(OAuthError::request(format!(
            "{type_param} {ty:?} is not supported (access_token or jwt)"
        )));
    }
    verify_access_token(ctx, t)
        .await
        .map_err(|r| OAuthError::request(format!("{token} is not acceptable: {}", r.describe())))
}

async fn token_exchange(
    ctx: &Ctx<'_>,
    client: &Client,
    req: &TokenRequest,
) -> Result<TokenResponse, OAuthError> {
    if let Some(t) = req
        .get("requested_token_type")
        .filter(|t| *t != TOKEN_TYPE_ACCESS)
    {
        return Err(OAuthError::request(format!(
            "requested_token_type {t:?} is not supported; only access tokens are issued"
        )));
    }
    let subject = exchange_input(ctx, req, "subject_token", "subject_token_type").await?;
    let actor = if req.get("actor_token").is_some() || req.get("actor_token_type").is_some() {
        Some(exchange_input(ctx, req, "actor_token", "actor_token_type").await?)
    } else {
        None
    };
    // Policy: the audience must be one this client may exchange into.
    let aud = match (req.get("audience"), req.get("resource")) {
        (None, None) => {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "audience (or resource) is required for token exchange",
            ));
        }
        _ => requested_audience(client, req, "")?,
    };
    // Scopes: what was asked (default: the subject's), within the subject's and the policy's.
    let subject_scopes = scopes(
        subject
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    let asked = req.get("scope").map_or_else(
        || {
            subject_scopes
                .iter()
                .filter(|s| client.exchange.scopes.contains(s))
                .cloned()
                .collect()
        },
        scopes,
    );
    if let Some(bad) = asked
        .iter()
        .find(|s| !subject_scopes.contains(s) || !client.exchange.scopes.contains(s))
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            format!("the scope {bad:?} is not available to this exchange"),
        ));
    }
    let str_claim = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_owned);
    // RFC 8693 §4.1: the current actor on top, earlier actors nested below it.
    let act = actor.as_ref().map(|a| {
        let mut act = json!({ "sub": str_claim(a, "sub") });
        if let Some(prior) = subject.get("act") {
            act["act"] = prior.clone();
        }
        act
    });
    let claims = AccessClaims {
        sub: str_claim(&subject, "sub")
            .ok_or_else(|| OAuthError::request("subject_token has no sub"))?,
        client_id: client.id.to_string(),
        aud,
        scope: asked.join(" "),
        org_id: str_claim(&subject, "org_id"),
        act: act.or_else(|| subject.get("act").cloned()),
        family_id: str_claim(&subject, "gid"),
        auth_time: subject.get("auth_time").and_then(Value::as_i64),
        amr: None,
    };
    // Never outlive the subject token.
    let subject_exp = subject.get("exp").and_then(Value::as_i64).unwrap_or(0);
    let ttl = client
        .lifetimes
        .access_token
        .min(subject_exp - ctx.now.seconds())
        .max(1);
    let (access_token, jti) = mint_access_token(ctx, &claims, ttl).map_err(internal)?;
    let detail = json!({
        "client_id": client.id, "subject": claims.sub, "actor": actor.as_ref().and_then(|a| str_claim(a, "sub")),
        "audience": claims.aud, "scope": claims.scope, "jti": jti,
    });
    ctx.store
        .record(
            &ctx.env.id,
            ctx.now,
            Some((
                EventType::TokenExchanged,
                claims
                    .org_id
                    .clone()
                    .map(portcullis_core::ids::OrgId::from_stored),
                detail.clone(),
            )),
            NewAudit::success(
                &format!("client:{}", client.id),
                "token.exchange",
                &claims.sub,
                detail,
            ),
        )
        .await?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        scope: (!claims.scope.is_empty()).then_some(claims.scope),
        refresh_token: None,
        id_token: None,
        issued_token_type: Some(TOKEN_TYPE_ACCESS),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn pkce_rfc7636_appendix_b() {
        assert!(super::pkce_ok(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!super::pkce_ok(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
    }
}
