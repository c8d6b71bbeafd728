//! The declarative configuration of one environment (format version 1).
//!
//! A file describes the desired state of what it names; `plan` compares it with the environment
//! and `apply` makes the difference in one transaction. The rules a reader can rely on:
//! - Objects are matched by a natural key, never by generated ID, so a file exported from one
//!   environment applies to another: organizations by `name`, connections by `name` within their
//!   organization, clients by `name`, webhook endpoints by `url`. Each key is unique in a file.
//! - A listed object is wholly described: an omitted optional field means its default.
//!   Exceptions, because their values are secrets and are never exported: a connection's
//!   `client_secret` and a webhook endpoint's `headers` — omitted means "keep what is there".
//! - A section that is absent is not managed (`egress`, `publishers`). Objects of a managed kind
//!   that the file does not list are kept and reported, unless `prune = true`.
//! - `actions` are one-time operations (rotate the signing key, revoke API keys); they are never
//!   exported, and a bundle's sequence number keeps them from being replayed.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const VERSION: u32 = 1;

fn is_false(b: &bool) -> bool {
    !*b
}
fn yes() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn active() -> String {
    "active".into()
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EnvConfig {
    /// The format version: 1.
    pub version: u32,
    /// Delete clients, webhook endpoints and organizations (deactivate connections) that the file
    /// does not list.
    #[serde(default, skip_serializing_if = "is_false")]
    pub prune: bool,
    /// The egress policy document (`rules`, `waivers`), as `egress-policy` takes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Value>,
    /// Public JWKs of the bundle publishers this environment trusts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publishers: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Actions::is_empty")]
    pub actions: Actions,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub organizations: Vec<OrganizationSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhook_endpoints: Vec<WebhookSpec>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Actions {
    /// Generate a new signing key and make it active now (the current one retires with grace).
    #[serde(default, skip_serializing_if = "is_false")]
    pub rotate_signing_key: bool,
    /// Environment API keys (`key_…`) to revoke.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revoke_api_keys: Vec<String>,
}

impl Actions {
    pub fn is_empty(&self) -> bool {
        !self.rotate_signing_key && self.revoke_api_keys.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OrganizationSpec {
    pub name: String,
    #[serde(default)]
    pub domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<ConnectionSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConnectionSpec {
    pub name: String,
    /// `saml` or `oidc`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `draft`, `active` (default) or `inactive`.
    #[serde(default = "active")]
    pub state: String,
    /// SAML settings as the admin API takes them, with `idp = { entity_id, sso_url,
    /// certificates_pem }`, or `idp = { metadata_xml }` for the IdP's metadata document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub saml: Option<Value>,
    /// The upstream OIDC settings (endpoints, client ID, pinned `jwks`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Value>,
    /// The upstream client secret of an `oidc` connection. Never exported; omitted: keep.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub post_logout_redirect_uris: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_token_ttl_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token_ttl_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_idle_ttl_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_absolute_ttl_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<ExchangeSpec>,
    /// `{ keys = [...] }` for `private_key_jwt`: public keys only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExchangeSpec {
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub url: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Event types; empty: every type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<String>,
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub enabled: bool,
    /// Extra request headers (values are secrets: never exported; omitted: keep).
    #[serde(default, skip_serializing)]
    pub headers: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the file is not valid configuration TOML: {0}")]
    Syntax(String),
    #[error("version {0} is not supported (this Portcullis reads version {VERSION})")]
    Version(u32),
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

impl EnvConfig {
    /// Parses and checks a file's structure: syntax, version, unknown keys (refused, named),
    /// duplicate natural keys. What needs the environment (certificates, URLs against the egress
    /// policy, references) is checked by the server's plan.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let c: Self = toml::from_str(text).map_err(|e| {
            // One line: where, then what (toml's own message draws the line in several).
            let at = e.span().map(|s| {
                let before = &text[..s.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {col}: ")
            });
            ConfigError::Syntax(format!("{}{}", at.unwrap_or_default(), e.message().trim()))
        })?;
        if c.version != VERSION {
            return Err(ConfigError::Version(c.version));
        }
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let mut orgs = BTreeSet::new();
        let mut domains = BTreeMap::new();
        for (i, o) in self.organizations.iter().enumerate() {
            let p = format!("organizations[{i}]");
            if !orgs.insert(o.name.as_str()) {
                return Err(invalid(
                    format!("{p}.name"),
                    format!("the organization {:?} is listed twice", o.name),
                ));
            }
            for d in &o.domains {
                if let Some(other) = domains.insert(d.to_ascii_lowercase(), o.name.as_str()) {
                    return Err(invalid(
                        format!("{p}.domains"),
                        format!("the domain {d} is also claimed by organization {other:?}"),
                    ));
                }
            }
            let mut names = BTreeSet::new();
            for (j, c) in o.connections.iter().enumerate() {
                let cp = format!("{p}.connections[{j}]");
                if !names.insert(c.name.as_str()) {
                    return Err(invalid(
                        format!("{cp}.name"),
                        format!(
                            "the connection {:?} is listed twice in {:?}",
                            c.name, o.name
                        ),
                    ));
                }
                match (c.kind.as_str(), c.saml.is_some(), c.oidc.is_some()) {
                    ("saml", _, false) | ("oidc", false, true) => {}
                    ("saml", _, true) => {
                        return Err(invalid(cp, "a saml connection takes no oidc settings"));
                    }
                    ("oidc", true, _) => {
                        return Err(invalid(cp, "an oidc connection takes no saml settings"));
                    }
                    ("oidc", _, false) => {
                        return Err(invalid(cp, "an oidc connection needs its oidc settings"));
                    }
                    (k, _, _) => {
                        return Err(invalid(
                            format!("{cp}.type"),
                            format!("must be \"saml\" or \"oidc\", not {k:?}"),
                        ));
                    }
                }
                if !matches!(c.state.as_str(), "draft" | "active" | "inactive") {
                    return Err(invalid(
                        format!("{cp}.state"),
                        format!("must be draft, active or inactive, not {:?}", c.state),
                    ));
                }
            }
        }
        let mut clients = BTreeSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            if !clients.insert(c.name.as_str()) {
                return Err(invalid(
                    format!("clients[{i}].name"),
                    format!("the client {:?} is listed twice", c.name),
                ));
            }
        }
        let mut urls = BTreeSet::new();
        for (i, w) in self.webhook_endpoints.iter().enumerate() {
            if !urls.insert(w.url.as_str()) {
                return Err(invalid(
                    format!("webhook_endpoints[{i}].url"),
                    format!("the endpoint {} is listed twice", w.url),
                ));
            }
        }
        if let Some(p) = &self.publishers {
            let mut ids = BTreeSet::new();
            for (i, k) in p.iter().enumerate() {
                let id = crate::publisher::key_id(k).ok_or_else(|| {
                    invalid(
                        format!("publishers[{i}]"),
                        "not an Ed25519 or P-256 public JWK (private members are refused)",
                    )
                })?;
                if !ids.insert(id.clone()) {
                    return Err(invalid(
                        format!("publishers[{i}]"),
                        format!("the key {id} is listed twice"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The file text: deterministic (objects sorted by their natural key), so that exporting the
    /// same state twice gives the same bytes.
    pub fn render(&self) -> Result<String, ConfigError> {
        let mut c = self.clone();
        c.organizations.sort_by(|a, b| a.name.cmp(&b.name));
        for o in &mut c.organizations {
            o.domains.sort();
            o.connections.sort_by(|a, b| a.name.cmp(&b.name));
            for x in &mut o.connections {
                x.saml = x.saml.take().map(strip_nulls);
                x.oidc = x.oidc.take().map(strip_nulls);
            }
        }
        c.clients.sort_by(|a, b| a.name.cmp(&b.name));
        for x in &mut c.clients {
            x.jwks = x.jwks.take().map(strip_nulls);
        }
        c.webhook_endpoints.sort_by(|a, b| a.url.cmp(&b.url));
        c.egress = c.egress.take().map(strip_nulls);
        c.publishers = c
            .publishers
            .take()
            .map(|p| p.into_iter().map(strip_nulls).collect());
        toml::to_string(&c).map_err(|e| invalid("(export)", e.to_string()))
    }
}

/// TOML has no null: a null member means "absent".
pub fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k, strip_nulls(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(strip_nulls).collect()),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_versions_are_refused_by_name() {
        let e = EnvConfig::parse("version = 1\ncolour = \"red\"\n").unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = EnvConfig::parse("version = 1\n[[clients]]\nname = \"a\"\nsecret = \"x\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("secret"), "{e}");
        assert_eq!(
            EnvConfig::parse("version = 2\n").unwrap_err(),
            ConfigError::Version(2)
        );
        assert!(matches!(
            EnvConfig::parse("").unwrap_err(),
            ConfigError::Syntax(_)
        ));
    }

    #[test]
    fn duplicate_natural_keys_are_refused() {
        let two_orgs =
            "version = 1\n[[organizations]]\nname = \"A\"\n[[organizations]]\nname = \"A\"\n";
        assert!(
            EnvConfig::parse(two_orgs)
                .unwrap_err()
                .to_string()
                .starts_with("organizations[1].name")
        );
        let domain = "version = 1\n[[organizations]]\nname = \"A\"\ndomains = [\"a.test\"]\n[[organizations]]\nname = \"B\"\ndomains = [\"A.test\"]\n";
        assert!(
            EnvConfig::parse(domain)
                .unwrap_err()
                .to_string()
                .contains("also claimed")
        );
        let conn = "version = 1\n[[organizations]]\nname = \"A\"\n[[organizations.connections]]\nname = \"x\"\ntype = \"oidc\"\n";
        assert!(
            EnvConfig::parse(conn)
                .unwrap_err()
                .to_string()
                .contains("needs its oidc settings")
        );
    }

    #[test]
    fn render_is_sorted_and_parses_back_to_the_same_config() {
        let text = "version = 1\n[[clients]]\nname = \"z\"\n[[clients]]\nname = \"a\"\nscopes = [\"openid\"]\n\
                    [[organizations]]\nname = \"Org\"\ndomains = [\"b.test\", \"a.test\"]\n\
                    [[organizations.connections]]\nname = \"s\"\ntype = \"saml\"\nsaml = { allow_sha1 = false }\n";
        let c = EnvConfig::parse(text).unwrap();
        let out = c.render().unwrap();
        assert!(
            out.find("name = \"a\"").unwrap() < out.find("name = \"z\"").unwrap(),
            "{out}"
        );
        let again = EnvConfig::parse(&out).unwrap();
        assert_eq!(again.render().unwrap(), out);
        assert_eq!(again.organizations[0].domains, ["a.test", "b.test"]);
    }
}
