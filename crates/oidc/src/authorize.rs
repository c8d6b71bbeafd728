//! The authorization endpoint (RFC 6749 §4.1.1, OAuth 2.1 §4.1, RFC 7636, OIDC Core §3.1.2).
//!
//! Validation happens in two stages, as RFC 6749 §4.1.2.1 requires: until the client and the
//! redirect URI are known to be valid, an error is shown to the user ([`Failure::Page`]) and never
//! sent anywhere; after that, errors go back to the client's redirect URI ([`Failure::Redirect`]).

use portcullis_core::ids::{ClientId, PrefixedId};
use portcullis_core::oauth::{Client, ClientKind, GrantData, GrantType};
use serde::{Deserialize, Serialize};

use crate::{Ctx, ErrorCode, OAuthError, scopes};

/// Authorization codes live this long (OAuth 2.1 recommends short-lived codes).
pub const CODE_TTL_S: i64 = 120;

/// A validated authorization request, kept while the user signs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(default)]
    pub redirect_uri_given: bool,
    pub scope: String,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub prompt_login: bool,
    pub prompt_none: bool,
    pub max_age: Option<i64>,
    pub login_hint: Option<String>,
    pub organization: Option<String>,
    pub connection: Option<String>,
}

#[derive(Debug)]
pub enum Failure {
    /// Shown to the user; nothing is sent to the client.
    Page(String),
    /// Sent back to the client's redirect URI.
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: OAuthError,
    },
}

impl From<OAuthError> for Failure {
    fn from(e: OAuthError) -> Self {
        Self::Page(e.description)
    }
}

fn valid_pkce_challenge(c: &str) -> bool {
    // RFC 7636 §4.2: BASE64URL(SHA256(verifier)) is 43 characters; accept the verifier alphabet.
    (43..=128).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// Validates the query parameters of an authorization request. `params` are in request order;
/// a parameter given twice is an error (RFC 6749 §3.1).
pub async fn validate(
    ctx: &Ctx<'_>,
    params: &[(String, String)],
) -> Result<(Client, Request), Failure> {
    let mut seen = std::collections::HashSet::new();
    let mut dup = None;
    for (k, _) in params {
        if !seen.insert(k.as_str()) {
            dup = Some(k.clone());
        }
    }
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };

    // Stage 1: the client and its redirect URI. Errors here never leave this page.
    let client_id =
        get("client_id").ok_or_else(|| Failure::Page("the request has no client_id".into()))?;
    let unknown = || {
        Failure::Page(format!(
            "no client {client_id:?} is registered in this environment"
        ))
    };
    let cid = ClientId::parse(&client_id).ok_or_else(unknown)?;
    let client = match ctx.store.get_client(&ctx.env.id, &cid).await {
        Ok(c) => c,
        Err(portcullis_store::StoreError::NotFound(_)) => return Err(unknown()),
        Err(e) => return Err(Failure::Page(OAuthError::from(e).description)),
    };
    let redirect_uri = match get("redirect_uri") {
        // Exact string comparison (OAuth 2.1 §2.3.1): no wildcards, no prefix, no normalisation.
        Some(r) if client.redirect_uris.contains(&r) => r,
        Some(r) => {
            return Err(Failure::Page(format!(
                "the redirect_uri {r:?} is not registered for this client"
            )));
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Err(Failure::Page(
                "the request has no redirect_uri and the client registered several".into(),
            ));
        }
    };
    if let Some(k) = dup
        .as_ref()
        .filter(|k| *k == "client_id" || *k == "redirect_uri")
    {
        return Err(Failure::Page(format!(
            "the parameter {k} is given more than once"
        )));
    }

    // Stage 2: everything else goes back to the client.
    let state = get("state");
    let fail = |code: ErrorCode, d: String| Failure::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        error: OAuthError::new(code, d),
    };
    if let Some(k) = dup {
        return Err(fail(
            ErrorCode::InvalidRequest,
            format!("the parameter {k} is given more than once"),
        ));
    }
    if get("request").is_some() || get("request_uri").is_some() {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "request objects are not supported".into(),
        ));
    }
    match get("response_type").as_deref() {
        Some("code") => {}
        None => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "response_type is required".into(),
            ));
        }
        Some(other) => {
            return Err(fail(
                ErrorCode::UnsupportedResponseType,
                format!(
                    "response_type {other:?} is not supported: only \"code\" (implicit and hybrid flows are refused)"
                ),
            ));
        }
    }
    if get("response_mode").is_some_and(|m| m != "query") {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "only response_mode=query is supported".into(),
        ));
    }
    if !client.allows(GrantType::AuthorizationCode) {
        return Err(fail(
            ErrorCode::UnauthorizedClient,
            "this client may not use the authorization code grant".into(),
        ));
    }
    let code_challenge = get("code_challenge");
    match (get("code_challenge_method").as_deref(), &code_challenge) {
        (Some("S256"), Some(c)) if valid_pkce_challenge(c) => {}
        (Some("S256"), Some(_)) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "code_challenge is malformed".into(),
            ));
        }
        (Some("plain"), _) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "PKCE method plain is not allowed; use S256".into(),
            ));
        }
        (Some(m), _) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                format!("unsupported code_challenge_method {m:?}; use S256"),
            ));
        }
        (None, Some(_)) => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "code_challenge_method is required (S256); plain is not allowed".into(),
            ));
        }
        (None, None) if client.kind == ClientKind::Public => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "PKCE (code_challenge with S256) is required for public clients".into(),
            ));
        }
        (None, None) => {}
    }
    let requested = get("scope").map_or_else(|| client.scopes.clone(), |s| scopes(&s));
    if let Some(bad) = requested.iter().find(|s| !client.scopes.contains(s)) {
        return Err(fail(
            ErrorCode::InvalidScope,
            format!("the scope {bad:?} is not allowed for this client"),
        ));
    }
    let prompts = get("prompt").map(|p| scopes(&p)).unwrap_or_default();
    if let Some(bad) = prompts
        .iter()
        .find(|p| !matches!(p.as_str(), "none" | "login"))
    {
        return Err(fail(
            ErrorCode::InvalidRequest,
            format!("prompt {bad:?} is not supported (none, login)"),
        ));
    }
    let prompt_none = prompts.iter().any(|p| p == "none");
    if prompt_none && prompts.len() > 1 {
        return Err(fail(
            ErrorCode::InvalidRequest,
            "prompt=none cannot be combined with other values".into(),
        ));
    }
    let max_age = match get("max_age") {
        None => None,
        Some(m) => Some(m.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            fail(
                ErrorCode::InvalidRequest,
                "max_age must be a non-negative integer".into(),
            )
        })?),
    };
    let too_long = ["state", "nonce", "login_hint", "organization", "connection"]
        .into_iter()
        .find(|k| get(k).is_some_and(|v| v.len() > 1024));
    if let Some(k) = too_long {
        return Err(fail(
            ErrorCode::InvalidRequest,
            format!("{k} is longer than 1024 characters"),
        ));
    }
    let req = Request {
        client_id: client.id.to_string(),
        redirect_uri: redirect_uri.clone(),
        redirect_uri_given: get("redirect_uri").is_some(),
        scope: requested.join(" "),
        state: state.clone(),
        nonce: get("nonce"),
        code_challenge,
        prompt_login: prompts.iter().any(|p| p == "login"),
        prompt_none,
        max_age,
        login_hint: get("login_hint"),
        organization: get("organization"),
        connection: get("connection"),
    };
    Ok((client, req))
}

/// Whether an existing session may answer this request without a new sign-in.
pub fn session_satisfies(
    req: &Request,
    auth_time: portcullis_core::Timestamp,
    user_org: &str,
    now: portcullis_core::Timestamp,
) -> bool {
    !req.prompt_login
        && req
            .max_age
            .is_none_or(|m| now.seconds() - auth_time.seconds() <= m)
        && req.organization.as_deref().is_none_or(|o| o == user_org)
}

/// Issues an authorization code for a signed-in user; returns the code.
pub async fn issue_code(
    ctx: &Ctx<'_>,
    client: &Client,
    req: &Request,
    user_id: &str,
    org_id: &str,
    auth_time: portcullis_core::Timestamp,
    amr: &[String],
) -> Result<String, OAuthError> {
    let mut raw = [0u8; 32];
    portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut raw);
    let code = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, raw);
    let grant = GrantData {
        client_id: client.id.to_string(),
        user_id: user_id.to_owned(),
        org_id: Some(org_id.to_owned()),
        scope: req.scope.clone(),
        redirect_uri: req.redirect_uri.clone(),
        redirect_uri_given: req.redirect_uri_given,
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        auth_time: auth_time.seconds(),
        amr: amr.to_vec(),
    };
    let family: portcullis_core::ids::FamilyId = ctx.store.new_id(ctx.now);
    ctx.store
        .create_code(
            &ctx.env.id,
            portcullis_store::NewCode {
                family_id: family.as_str(),
                code_digest: &portcullis_crypto::sha256_hex(code.as_bytes()),
                grant: &grant,
                code_expires_at: ctx.now.plus_seconds(CODE_TTL_S),
                absolute_expires_at: ctx.now.plus_seconds(client.lifetimes.refresh_absolute),
            },
            ctx.now,
        )
        .await?;
    Ok(code)
}

/// `redirect_uri` with the response parameters appended to its query (RFC 6749 §4.1.2; RFC 9207
/// `iss`).
pub fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> String {
    let mut out = redirect_uri.to_owned();
    let mut sep = if redirect_uri.contains('?') { '&' } else { '?' };
    for (k, v) in params {
        out.push(sep);
        out.push_str(k);
        out.push('=');
        out.push_str(&encode(v));
        sep = '&';
    }
    out
}

/// Percent-encodes everything but the unreserved characters (RFC 3986 §2.3).
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
