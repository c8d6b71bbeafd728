//! Introspection (RFC 7662), revocation (RFC 7009) and userinfo (OIDC Core §5.3).

use portcullis_core::ids::{PrefixedId, UserId};
use portcullis_core::oauth::{Client, User};
use serde_json::{Value, json};

use crate::jwt::{Rejected, from_seconds, verify_access_token};
use crate::{Ctx, ErrorCode, OAuthError, scopes};

/// The standard claims a user's scopes release (OIDC Core §5.4), plus the organization.
pub fn profile_claims(user: &User, granted: &[String]) -> Value {
    let mut c = json!({ "org_id": user.org_id });
    if granted.iter().any(|s| s == "email") {
        c["email"] = json!(user.email);
        // Local accounts are created by an administrator for an address they vouch for.
        c["email_verified"] = json!(true);
    }
    if granted.iter().any(|s| s == "profile") {
        if let Some(f) = &user.first_name {
            c["given_name"] = json!(f);
        }
        if let Some(l) = &user.last_name {
            c["family_name"] = json!(l);
        }
        let name = [user.first_name.as_deref(), user.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            c["name"] = json!(name);
        }
    }
    c
}

/// The claims of a signed-in subject — a local user (`user_…`) or an SSO profile (`prof_…`) —
/// or `None` when it no longer exists or is disabled. A profile always carries its organization,
/// connection, IdP subject and groups; email and names follow the scopes.
pub async fn subject_claims(
    ctx: &Ctx<'_>,
    sub: &str,
    granted: &[String],
) -> Result<Option<Value>, OAuthError> {
    if let Some(uid) = UserId::parse(sub) {
        return match ctx.store.get_user(&ctx.env.id, &uid).await {
            Ok(u) if u.disabled_at.is_none() => Ok(Some(profile_claims(&u, granted))),
            Ok(_) | Err(portcullis_store::StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        };
    }
    let Some(pid) = portcullis_core::ids::ProfileId::parse(sub) else {
        return Ok(None);
    };
    let p = match ctx.store.get_profile(&ctx.env.id, &pid).await {
        Ok(p) => p,
        Err(portcullis_store::StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut c = json!({ "org_id": p.org_id, "connection_id": p.connection_id, "idp_id": p.idp_id, "groups": p.groups });
    if granted.iter().any(|s| s == "email")
        && let Some(e) = &p.email
    {
        c["email"] = json!(e);
    }
    if granted.iter().any(|s| s == "profile") {
        if let Some(f) = &p.first_name {
            c["given_name"] = json!(f);
        }
        if let Some(l) = &p.last_name {
            c["family_name"] = json!(l);
        }
        let name = [p.first_name.as_deref(), p.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !name.is_empty() {
            c["name"] = json!(name);
        }
    }
    Ok(Some(c))
}

/// RFC 7662 §2.2. Inactive (`{"active": false}`) for anything that is not a current token of
/// this environment: expired, revoked, from another environment, or not ours at all.
pub async fn introspect(ctx: &Ctx<'_>, client: &Client, token: &str) -> Result<Value, OAuthError> {
    let inactive = json!({ "active": false });
    if token.contains('.') {
        let Ok(claims) = verify_access_token(ctx, token).await else {
            return Ok(inactive);
        };
        let mut out = json!({ "active": true, "token_type": "Bearer" });
        for k in [
            "scope",
            "client_id",
            "sub",
            "aud",
            "iss",
            "exp",
            "iat",
            "nbf",
            "jti",
            "org_id",
            "act",
            "auth_time",
        ] {
            if let Some(v) = claims.get(k) {
                out[k] = v.clone();
            }
        }
        return Ok(out);
    }
    // A refresh token: only the client it was issued to may learn about it.
    let digest = portcullis_crypto::sha256_hex(token.as_bytes());
    let Some((family_id, grant, expires_at, rotated)) =
        ctx.store.refresh_token(&ctx.env.id, &digest).await?
    else {
        return Ok(inactive);
    };
    let family = ctx.store.family(&ctx.env.id, &family_id).await?;
    let live = !rotated
        && expires_at > ctx.now
        && grant.client_id == client.id.as_str()
        && family.is_some_and(|f| f.revoked_at.is_none() && f.absolute_expires_at > ctx.now);
    if !live {
        return Ok(inactive);
    }
    Ok(json!({
        "active": true, "token_type": "refresh_token", "scope": grant.scope, "client_id": grant.client_id,
        "sub": grant.user_id, "exp": expires_at.seconds(), "iss": ctx.env.issuer, "org_id": grant.org_id,
    }))
}

/// RFC 7009 §2.1: the token is revoked if it is the client's; the answer is the same either way.
pub async fn revoke(ctx: &Ctx<'_>, client: &Client, token: &str) -> Result<(), OAuthError> {
    if token.contains('.') {
        if let Ok(claims) = verify_access_token(ctx, token).await {
            let mine = claims.get("client_id").and_then(Value::as_str) == Some(client.id.as_str());
            if let (true, Some(jti), Some(exp)) = (
                mine,
                claims.get("jti").and_then(Value::as_str),
                claims.get("exp").and_then(Value::as_i64),
            ) {
                ctx.store
                    .revoke_jti(&ctx.env.id, jti, from_seconds(exp))
                    .await?;
            }
        }
        return Ok(());
    }
    let digest = portcullis_crypto::sha256_hex(token.as_bytes());
    if let Some((family_id, grant, _, _)) = ctx.store.refresh_token(&ctx.env.id, &digest).await?
        && grant.client_id == client.id.as_str()
    {
        ctx.store
            .revoke_family(&ctx.env.id, &family_id, "revoked_by_client", ctx.now)
            .await?;
    }
    Ok(())
}

/// OIDC Core §5.3: the claims of the user an access token with `openid` was issued for.
pub async fn userinfo(ctx: &Ctx<'_>, access_token: &str) -> Result<Value, OAuthError> {
    let claims = verify_access_token(ctx, access_token)
        .await
        .map_err(|r: Rejected| OAuthError::new(ErrorCode::InvalidToken, r.describe()))?;
    let granted = scopes(
        claims
            .get("scope")
            .and_then(Value::as_str)
            .unwrap_or_default(),
    );
    if !granted.iter().any(|s| s == "openid") {
        return Err(OAuthError::new(
            ErrorCode::InvalidToken,
            "the access token was not issued with the openid scope",
        ));
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut out = subject_claims(ctx, sub, &granted)
        .await?
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidToken, "the user is no longer active"))?;
    out["sub"] = json!(sub);
    Ok(out)
}
