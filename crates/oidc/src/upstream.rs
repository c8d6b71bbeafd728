//! Upstream OpenID Connect connections: Portcullis as the relying party of an organization's IdP.
//!
//! Offline by default: endpoints are configured by hand and the IdP's signing keys are pinned in
//! the connection (no discovery, no JWKS fetch at sign-in). The one call that must cross the
//! network, the token request, goes through the caller's [`Backchannel`] — the egress gate.
//!
//! ID token validation follows OIDC Core §3.1.3.7, steps quoted below.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The non-secret configuration of an upstream connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    pub issuer: String,
    pub client_id: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    /// Pinned public keys (`{"keys": [...]}`).
    pub jwks: Value,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// ID token algorithms accepted (default: ES256, RS256, EdDSA).
    #[serde(default = "default_algs")]
    pub allowed_algs: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_algs() -> Vec<String> {
    vec!["ES256".into(), "RS256".into(), "EdDSA".into()]
}

/// Where a sign-in at the IdP starts, and what to keep until it comes back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    pub url: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
}

fn random() -> String {
    let mut b = [0u8; 32];
    portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The authorization request to the IdP: code flow with PKCE S256, `state` and `nonce`.
pub fn start(cfg: &UpstreamConfig, redirect_uri: &str, login_hint: Option<&str>) -> Started {
    let (state, nonce, code_verifier) = (random(), random(), random());
    let challenge =
        URL_SAFE_NO_PAD.encode(portcullis_crypto::secrets::sha256(code_verifier.as_bytes()));
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", &cfg.client_id),
        ("redirect_uri", redirect_uri),
        ("state", &state),
        ("nonce", &nonce),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ];
    let scope = cfg.scopes.join(" ");
    params.push(("scope", &scope));
    if let Some(h) = login_hint {
        params.push(("login_hint", h));
    }
    let url = crate::authorize::redirect_with(&cfg.authorization_endpoint, &params);
    Started {
        url,
        state,
        nonce,
        code_verifier,
    }
}

/// The network path to the IdP's token endpoint.
pub trait Backchannel: Send + Sync {
    /// POSTs a form with HTTP Basic client authentication; returns (status, body).
    fn post_form(
        &self,
        url: &str,
        form: Vec<(String, String)>,
        basic: (String, String),
    ) -> futures_like::BoxFuture<'_, Result<(u16, Vec<u8>), String>>;
}

pub mod futures_like {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// Why an upstream sign-in failed; `code` is stable, for the audit chain and the error page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct UpstreamError {
    pub code: &'static str,
    pub message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> UpstreamError {
    UpstreamError {
        code,
        message: message.into(),
    }
}

/// The verified identity the IdP asserted.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub subject: String,
    pub email: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub groups: Vec<String>,
    pub amr: Vec<String>,
    pub claims: Value,
}

fn form_percent(s: &str) -> String {
    // RFC 6749 §2.3.1: client credentials are form-encoded before Basic.
    crate::authorize::encode(s)
}

/// Redeems `code` at the IdP and validates the ID token it returns.
pub async fn finish(
    cfg: &UpstreamConfig,
    client_secret: &str,
    channel: &dyn Backchannel,
    code: &str,
    redirect_uri: &str,
    started: &Started,
    now: Timestamp,
) -> Result<Identity, UpstreamError> {
    let form = vec![
        ("grant_type".to_owned(), "authorization_code".to_owned()),
        ("code".to_owned(), code.to_owned()),
        ("redirect_uri".to_owned(), redirect_uri.to_owned()),
        ("code_verifier".to_owned(), started.code_verifier.clone()),
    ];
    let (status, body) = channel
        .post_form(
            &cfg.token_endpoint,
            form,
            (form_percent(&cfg.client_id), form_percent(client_secret)),
        )
        .await
        .map_err(|e| {
            if e.starts_with("egress refused") {
                err("egress_refused", e)
            } else {
                err("token_request_failed", e)
            }
        })?;
    let v: Value = serde_json::from_slice(&body).map_err(|_| {
        err(
            "token_response_invalid",
            format!("the IdP answered HTTP {status} without JSON"),
        )
    })?;
    if status != 200 {
        let e = v.get("error").and_then(Value::as_str).unwrap_or("unknown");
        return Err(err(
            "token_request_refused",
            format!("the IdP refused the code: HTTP {status} {e}"),
        ));
    }
    let id_token = v
        .get("id_token")
        .and_then(Value::as_str)
        .ok_or_else(|| err("id_token_missing", "the IdP returned no id_token"))?;
    validate_id_token(cfg, id_token, &started.nonce, now)
}

/// OIDC Core §3.1.3.7.
pub fn validate_id_token(
    cfg: &UpstreamConfig,
    token: &str,
    nonce: &str,
    now: Timestamp,
) -> Result<Identity, UpstreamError> {
    let header: Value = token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| err("id_token_malformed", "the ID token is not a compact JWS"))?;
    // 7. "The alg value SHOULD be the default of RS256 or the algorithm sent by the Client": here,
    //    an explicit allowlist; `none` and HMAC never pass because keys are public keys.
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !cfg.allowed_algs.iter().any(|a| a == alg) {
        return Err(err(
            "id_token_alg_refused",
            format!("algorithm {alg:?} is not allowed for this connection"),
        ));
    }
    // 6. Validate the signature with the keys of the issuer: the pinned ones, by kid when given.
    let kid = header.get("kid").and_then(Value::as_str);
    let keys = cfg
        .jwks
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let claims = keys
        .iter()
        .filter(|k| kid.is_none_or(|id| k.get("kid").and_then(Value::as_str) == Some(id)))
        .find_map(|k| portcullis_crypto::jws::verify_with_key(k, token).map(|(_, c)| c))
        .ok_or_else(|| {
            err(
                "id_token_signature_invalid",
                "the ID token is not signed by a pinned key of this IdP",
            )
        })?;
    // 2. The Issuer Identifier MUST exactly match the iss claim.
    if claims.get("iss").and_then(Value::as_str) != Some(cfg.issuer.as_str()) {
        return Err(err(
            "id_token_issuer_mismatch",
            "the ID token's iss is not this connection's issuer",
        ));
    }
    // 3. The aud claim MUST contain the client_id, and the token MUST be rejected if it contains
    //    additional audiences not trusted by the client: we trust no other audience.
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == cfg.client_id,
        Some(Value::Array(a)) => a.len() == 1 && a[0].as_str() == Some(cfg.client_id.as_str()),
        _ => false,
    };
    if !aud_ok {
        return Err(err(
            "id_token_audience_mismatch",
            "the ID token's audience is not exactly this connection's client",
        ));
    }
    // 5. If an azp claim is present, it SHOULD be the client_id.
    if claims
        .get("azp")
        .is_some_and(|a| a.as_str() != Some(cfg.client_id.as_str()))
    {
        return Err(err(
            "id_token_audience_mismatch",
            "the ID token's azp is another client",
        ));
    }
    // 9. The current time MUST be before exp (60 s of clock skew tolerated).
    // NumericDate may carry a fraction (RFC 7519 §2).
    let exp = claims
        .get("exp")
        .and_then(Value::as_f64)
        .map(|e| e as i64)
        .ok_or_else(|| err("id_token_malformed", "exp is missing"))?;
    if exp + 60 <= now.seconds() {
        return Err(err("id_token_expired", "the ID token has expired"));
    }
    // 10. iat can be used to reject tokens issued too far away from the current time.
    let iat = claims
        .get("iat")
        .and_then(Value::as_f64)
        .map(|i| i as i64)
        .ok_or_else(|| err("id_token_malformed", "iat is missing"))?;
    if iat > now.seconds() + 300 {
        return Err(err(
            "id_token_not_yet_valid",
            "the ID token was issued in the future",
        ));
    }
    // 11. The nonce MUST match the one sent in the Authentication Request.
    if claims.get("nonce").and_then(Value::as_str) != Some(nonce) {
        return Err(err(
            "id_token_nonce_mismatch",
            "the ID token's nonce does not match the request",
        ));
    }
    let s = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
    let subject = s("sub")
        .filter(|x| !x.is_empty())
        .ok_or_else(|| err("id_token_malformed", "sub is missing"))?;
    let groups = claims
        .get("groups")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    // The IdP's own authentication methods (RFC 8176 values), when it says.
    let amr = claims
        .get("amr")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Identity {
        subject,
        email: s("email"),
        given_name: s("given_name"),
        family_name: s("family_name"),
        groups,
        amr,
        claims,
    })
}
