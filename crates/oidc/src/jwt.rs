//! Tokens this environment issues and the verification of tokens presented back to it.
//!
//! Access tokens follow RFC 9068 (`typ: at+jwt`; `iss`, `exp`, `aud`, `sub`, `client_id`, `iat`,
//! `jti`, `scope`), plus `org_id` where there is one, `act` for delegation (RFC 8693 §4.1) and
//! `gid`, the grant family, so that revoking a family makes its access tokens inactive.
//! ID tokens follow OIDC Core §2 and §3.1.3.6 (`at_hash`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::Timestamp;
use portcullis_core::model::KeyState;
use serde::Serialize;
use serde_json::{Value, json};

use crate::Ctx;

pub const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// What an access token says.
#[derive(Debug, Clone, Default)]
pub struct AccessClaims {
    pub sub: String,
    pub client_id: String,
    pub aud: String,
    pub scope: String,
    pub org_id: Option<String>,
    pub act: Option<Value>,
    pub family_id: Option<String>,
    pub auth_time: Option<i64>,
    pub amr: Option<Vec<String>>,
}

/// 128 random bits, base64url: unique per token (RFC 7519 §4.1.7) and unguessable, so that a
/// revocation by `jti` cannot be aimed at a token not yet issued. A `jti` is published in the
/// token, so it may come from the batched generator.
fn new_jti() -> String {
    let mut b = [0u8; 16];
    portcullis_core::Random::fill(&portcullis_crypto::PooledRandom, &mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The payload of an access token as it is signed: borrowed from [`AccessClaims`] and written
/// straight to JSON (no intermediate `Value`). RFC 9068 §2.2 claims first.
#[derive(Serialize)]
struct AccessPayload<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    client_id: &'a str,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: &'a str,
    #[serde(skip_serializing_if = "no_scope")]
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    org_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    act: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amr: Option<&'a [String]>,
}

fn no_scope(s: &&str) -> bool {
    s.is_empty()
}

/// Signs an access token valid for `ttl` seconds; returns the token and its `jti`.
pub fn mint_access_token(
    ctx: &Ctx<'_>,
    c: &AccessClaims,
    ttl: i64,
) -> Result<(String, String), String> {
    let iat = ctx.now.seconds();
    let jti = new_jti();
    let payload = AccessPayload {
        iss: &ctx.env.issuer,
        sub: &c.sub,
        aud: &c.aud,
        client_id: &c.client_id,
        iat,
        nbf: iat,
        exp: iat + ttl,
        jti: &jti,
        scope: &c.scope,
        org_id: c.org_id.as_deref(),
        act: c.act.as_ref(),
        gid: c.family_id.as_deref(),
        auth_time: c.auth_time,
        amr: c.amr.as_deref(),
    };
    let token = ctx
        .signer
        .sign_compact(Some(ACCESS_TOKEN_TYP), &payload)
        .map_err(|e| e.to_string())?;
    Ok((token, jti))
}

/// `at_hash` (OIDC Core §3.1.3.6): left half of the hash of the access token, base64url. The hash
/// is the one of the ID token's algorithm: SHA-256 for ES256 and RS256, SHA-512 for EdDSA
/// (Ed25519), as OIDC registries specify.
pub fn at_hash(alg: portcullis_core::model::SigningAlg, access_token: &str) -> String {
    let digest = match alg {
        portcullis_core::model::SigningAlg::EdDSA => {
            portcullis_crypto::secrets::sha512(access_token.as_bytes())
        }
        _ => portcullis_crypto::secrets::sha256(access_token.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

/// Claims of an ID token beyond the registered ones.
pub struct IdTokenInput<'a> {
    pub sub: &'a str,
    pub client_id: &'a str,
    pub nonce: Option<&'a str>,
    pub auth_time: i64,
    pub amr: &'a [String],
    pub access_token: &'a str,
    pub profile: Value,
    pub ttl: i64,
}

pub fn mint_id_token(ctx: &Ctx<'_>, i: &IdTokenInput<'_>) -> Result<String, String> {
    let iat = ctx.now.seconds();
    let mut claims = json!({
        "iss": ctx.env.issuer, "sub": i.sub, "aud": i.client_id, "azp": i.client_id,
        "iat": iat, "exp": iat + i.ttl, "auth_time": i.auth_time, "amr": i.amr,
        "at_hash": at_hash(ctx.signer.alg(), i.access_token),
    });
    if let Some(n) = i.nonce {
        claims["nonce"] = json!(n);
    }
    if let (Some(c), Some(p)) = (claims.as_object_mut(), i.profile.as_object()) {
        for (k, v) in p {
            c.entry(k.clone()).or_insert(v.clone());
        }
    }
    ctx.signer
        .sign_compact(Some("JWT"), &claims)
        .map_err(|e| e.to_string())
}

/// Why a presented token is not one of ours, or no longer good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    Malformed,
    /// Signed by no key this environment publishes (or with another algorithm, `none`, HMAC …).
    UnknownKey,
    BadSignature,
    WrongIssuer,
    Expired,
    NotAnAccessToken,
    Revoked,
}

impl Rejected {
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Malformed => "the token is not a compact JWS",
            Self::UnknownKey => "the token is not signed by a key of this environment",
            Self::BadSignature => "the token's signature does not verify",
            Self::WrongIssuer => "the token was issued by another environment",
            Self::Expired => "the token has expired",
            Self::NotAnAccessToken => "the token is not an access token",
            Self::Revoked => "the token was revoked",
        }
    }
}

fn header_of(token: &str) -> Option<Value> {
    let h = token.split('.').next()?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()
}

/// Verifies an access token issued by this environment and still valid at `ctx.now`: signed by a
/// key it publishes (the algorithm is the key's, so `alg: none` and HMAC are refused), `typ`
/// `at+jwt`, our issuer, not expired, not revoked by `jti` or by grant family.
pub async fn verify_access_token(ctx: &Ctx<'_>, token: &str) -> Result<Value, Rejected> {
    let header = header_of(token).ok_or(Rejected::Malformed)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(Rejected::UnknownKey)?;
    let key = ctx
        .keys
        .iter()
        .find(|k| {
            k.id.as_str() == kid
                && (k.state != KeyState::Retired || k.is_published(ctx.now, &ctx.env.key_policy))
        })
        .ok_or(Rejected::UnknownKey)?;
    let (header, claims) = portcullis_crypto::jws::verify_with_key(&key.public_jwk, token)
        .ok_or(Rejected::BadSignature)?;
    if header
        .get("typ")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
        != Some(ACCESS_TOKEN_TYP)
    {
        return Err(Rejected::NotAnAccessToken);
    }
    if claims.get("iss").and_then(Value::as_str) != Some(ctx.env.issuer.as_str()) {
        return Err(Rejected::WrongIssuer);
    }
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or(Rejected::Malformed)?;
    if exp <= ctx.now.seconds() {
        return Err(Rejected::Expired);
    }
    let jti = claims
        .get("jti")
        .and_then(Value::as_str)
        .ok_or(Rejected::Malformed)?;
    if ctx
        .store
        .jti_revoked(&ctx.env.id, jti)
        .await
        .unwrap_or(true)
    {
        return Err(Rejected::Revoked);
    }
    if let Some(gid) = claims.get("gid").and_then(Value::as_str) {
        match ctx.store.family(&ctx.env.id, gid).await {
            Ok(Some(f)) if f.revoked_at.is_none() => {}
            _ => return Err(Rejected::Revoked),
        }
    }
    Ok(claims)
}

/// Seconds to a timestamp.
pub fn from_seconds(s: i64) -> Timestamp {
    Timestamp::from_millis(s.saturating_mul(1000))
}
