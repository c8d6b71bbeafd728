//! OAuth 2 / OpenID Connect domain types: clients, local users, and the grant that travels from
//! an authorization code to the tokens and refresh tokens it yields.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::ids::{ClientId, EnvId, OrgId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    Confidential,
    Public,
}

/// Token endpoint authentication (RFC 7591 §2 names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::None => "none",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::ClientSecretBasic,
            Self::ClientSecretPost,
            Self::PrivateKeyJwt,
            Self::None,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GrantType {
    #[serde(rename = "authorization_code")]
    AuthorizationCode,
    #[serde(rename = "refresh_token")]
    RefreshToken,
    #[serde(rename = "client_credentials")]
    ClientCredentials,
    #[serde(rename = "urn:ietf:params:oauth:grant-type:token-exchange")]
    TokenExchange,
}

impl GrantType {
    pub const ALL: [GrantType; 4] = [
        Self::AuthorizationCode,
        Self::RefreshToken,
        Self::ClientCredentials,
        Self::TokenExchange,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
            Self::TokenExchange => "urn:ietf:params:oauth:grant-type:token-exchange",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }
}

/// Token lifetimes of one client, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenLifetimes {
    pub access_token: i64,
    pub id_token: i64,
    /// A refresh token unused this long expires.
    pub refresh_idle: i64,
    /// A refresh-token family ends this long after the sign-in, however it is used.
    pub refresh_absolute: i64,
}

impl Default for TokenLifetimes {
    fn default() -> Self {
        Self {
            access_token: 900,
            id_token: 3600,
            refresh_idle: 14 * 86_400,
            refresh_absolute: 90 * 86_400,
        }
    }
}

/// Which audiences and scopes a client may obtain through token exchange (RFC 8693).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangePolicy {
    pub audiences: Vec<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub id: ClientId,
    pub env_id: EnvId,
    pub name: String,
    pub kind: ClientKind,
    pub auth_method: AuthMethod,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    pub grant_types: Vec<GrantType>,
    pub scopes: Vec<String>,
    /// Public keys for `private_key_jwt`, inline (never fetched).
    pub jwks: Option<serde_json::Value>,
    pub exchange: ExchangePolicy,
    pub lifetimes: TokenLifetimes,
    pub secret_digest: Option<String>,
    pub secret_created_at: Option<Timestamp>,
    /// The current secret is refused from then on (`None`: it does not expire).
    pub secret_expires_at: Option<Timestamp>,
    /// The secret replaced at the last rotation, valid until `previous_secret_expires_at`.
    pub previous_secret_digest: Option<String>,
    pub previous_secret_expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Client {
    pub fn allows(&self, g: GrantType) -> bool {
        self.grant_types.contains(&g)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub env_id: EnvId,
    pub org_id: OrgId,
    pub email: String,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub disabled_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a person's sign-in granted a client: carried by the authorization code and by every
/// refresh token of its family.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantData {
    pub client_id: String,
    pub user_id: String,
    pub org_id: Option<String>,
    pub scope: String,
    pub redirect_uri: String,
    /// Whether the authorization request named `redirect_uri`: then the token request must name
    /// the same one (RFC 6749 §4.1.3).
    #[serde(default)]
    pub redirect_uri_given: bool,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub auth_time: i64,
    pub amr: Vec<String>,
}

/// `http` is allowed only for loopback redirect URIs (RFC 8252 §7.3, OAuth 2.1 §2.3.1).
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > 2000 || uri.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!("redirect URI {uri:?} is too long or has spaces"));
    }
    if uri.contains('#') {
        return Err(format!("redirect URI {uri:?} must not have a fragment"));
    }
    if uri.contains('*') {
        return Err(format!("redirect URI {uri:?}: wildcards are not allowed"));
    }
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| format!("redirect URI {uri:?} is not absolute"))?;
    let host_port = rest.split(['/', '?']).next().unwrap_or_default();
    if host_port.is_empty() || host_port.contains('@') {
        return Err(format!("redirect URI {uri:?} has no host or has userinfo"));
    }
    let host = host_port.rsplit_once(':').map_or(host_port, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host_port
        }
    });
    match scheme {
        "https" => Ok(()),
        "http" if matches!(host, "127.0.0.1" | "[::1]" | "localhost") => Ok(()),
        "http" => Err(format!(
            "redirect URI {uri:?}: http is allowed only for loopback (127.0.0.1, [::1], localhost)"
        )),
        _ => Err(format!(
            "redirect URI {uri:?} must use https (or http on loopback)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_uris() {
        for ok in [
            "https://app.example.com/cb",
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:9/cb",
        ] {
            assert!(validate_redirect_uri(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://app.example.com/cb",
            "https://*.example.com/cb",
            "https://x/cb#f",
            "ftp://x/",
            "cb",
            "https://u@x/",
            "http://127.0.0.1.evil.com/cb",
        ] {
            assert!(validate_redirect_uri(bad).is_err(), "{bad}");
        }
    }
}
