//! The identity-dependency inventory: every network path an environment's identity flows need,
//! generated from the live configuration, each with its decision.
//!
//! Each feature contributes its rows in one function of this module (`client_rows`,
//! `service_rows`, `connection_rows`, `webhook_rows`); [`inventory`] calls them all.

use portcullis_core::model::{EnvMode, Environment};
use portcullis_core::oauth::Client;
use serde::{Deserialize, Serialize};

use crate::policy::{Policy, Purpose, Scheme};

/// The inventory vocabulary (SPEC: identity dependencies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Redirect,
    Callback,
    MetadataFetch,
    JwksFetch,
    TokenExchange,
    Webhook,
    ScimInbound,
    EventsPull,
    AdminApi,
}

impl Kind {
    pub fn purpose(self) -> Option<Purpose> {
        match self {
            Self::MetadataFetch => Some(Purpose::MetadataFetch),
            Self::JwksFetch => Some(Purpose::JwksFetch),
            Self::TokenExchange => Some(Purpose::TokenExchange),
            Self::Webhook => Some(Purpose::Webhook),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Someone connects to us.
    Inbound,
    /// We connect out: the egress gate decides.
    Outbound,
    /// The user's browser goes there; the server opens no connection.
    FrontChannel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allowed,
    Replaced,
    Internalised,
    Blocked,
    Inbound,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Component {
    /// `client`, `service`, later `connection`, `webhook_endpoint`.
    pub kind: String,
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub kind: Kind,
    pub component: Component,
    pub direction: Direction,
    pub protocol: String,
    pub host: String,
    pub port: u16,
    pub url: String,
    pub decision: Verdict,
    /// The rule that allows it, what replaces it, how it is internalised, or why it is blocked.
    pub detail: String,
}

/// What the inventory is generated from.
pub struct EnvConfig<'a> {
    pub env: &'a Environment,
    pub policy: &'a Policy,
    pub clients: &'a [Client],
    pub connections: &'a [portcullis_core::sso::Connection],
    pub webhooks: &'a [portcullis_core::webhook::WebhookEndpoint],
}

/// Scheme, host and port of a URL, without resolving anything.
pub fn split_url(url: &str) -> Option<(String, String, u16)> {
    let u = url::Url::parse(url).ok()?;
    let port = u.port_or_known_default()?;
    Some((
        u.scheme().to_owned(),
        u.host_str()?.trim_matches(['[', ']']).to_ascii_lowercase(),
        port,
    ))
}

/// The decision the policy gives an outbound dependency, judged on its configuration alone (the
/// gate judges each resolved address again at run time).
pub fn outbound_verdict(
    policy: &Policy,
    env: &Environment,
    url: &str,
    purpose: Purpose,
) -> (Verdict, String) {
    let Some((scheme, host, port)) = split_url(url) else {
        return (Verdict::Blocked, format!("{url:?} is not a valid URL"));
    };
    let scheme = match scheme.as_str() {
        "https" => Scheme::Https,
        "http" => Scheme::Http,
        s => return (Verdict::Blocked, format!("scheme {s} is never allowed")),
    };
    let ip: Option<std::net::IpAddr> = host.parse().ok();
    let rule = policy.rules.iter().find(|r| {
        r.scheme == scheme
            && r.effective_port() == port
            && r.purposes.contains(&purpose)
            && match (ip, &r.host, r.cidr) {
                (Some(a), None, Some(c)) => c.contains(a),
                (Some(_), _, _) => false,
                (None, Some(_), _) => r.host_matches(&host),
                (None, None, Some(_)) => true,
                (None, None, None) => false,
            }
    });
    match rule {
        Some(r) => (Verdict::Allowed, format!("rule {}", r.id)),
        None if env.mode == EnvMode::Isolated => (
            Verdict::Blocked,
            format!(
                "isolated environment: no rule allows {}://{host}:{port} for {}",
                scheme.as_str(),
                purpose.as_str()
            ),
        ),
        None => (
            Verdict::Blocked,
            format!(
                "no rule allows {}://{host}:{port} for {}",
                scheme.as_str(),
                purpose.as_str()
            ),
        ),
    }
}

fn row(
    kind: Kind,
    component: Component,
    direction: Direction,
    url: &str,
    decision: Verdict,
    detail: String,
) -> Dependency {
    let (protocol, host, port) = split_url(url).unwrap_or_else(|| ("?".into(), url.to_owned(), 0));
    Dependency {
        kind,
        component,
        direction,
        protocol,
        host,
        port,
        url: url.to_owned(),
        decision,
        detail,
    }
}

/// Client redirect and post-logout URIs: the browser follows them; the server opens nothing.
pub fn client_rows(cfg: &EnvConfig<'_>) -> Vec<Dependency> {
    let mut out = Vec::new();
    for c in cfg.clients {
        let component = Component {
            kind: "client".into(),
            id: c.id.to_string(),
            name: c.name.clone(),
        };
        for (uris, what) in [
            (&c.redirect_uris, "redirect URI"),
            (&c.post_logout_redirect_uris, "post-logout redirect URI"),
        ] {
            for u in uris {
                out.push(row(
                    Kind::Redirect,
                    component.clone(),
                    Direction::FrontChannel,
                    u,
                    Verdict::Allowed,
                    format!("front channel ({what}): the browser follows it, no server egress"),
                ));
            }
        }
    }
    out
}

/// The service's own inbound surfaces in this environment.
pub fn service_rows(cfg: &EnvConfig<'_>) -> Vec<Dependency> {
    let issuer = &cfg.env.issuer;
    let base = issuer.split_once("/e/").map_or(issuer.as_str(), |(b, _)| b);
    let svc = |id: &str, name: &str| Component {
        kind: "service".into(),
        id: id.into(),
        name: name.into(),
    };
    vec![
        row(
            Kind::AdminApi,
            svc("admin_api", "Admin API"),
            Direction::Inbound,
            &format!("{base}/admin/v1"),
            Verdict::Inbound,
            "operators and automation with admin API keys".into(),
        ),
        row(
            Kind::Callback,
            svc(
                "authorization_server",
                "OAuth / OIDC endpoints and hosted login",
            ),
            Direction::Inbound,
            &format!("{issuer}/oauth2/authorize"),
            Verdict::Inbound,
            "browsers and applications reach the issuer".into(),
        ),
    ]
}

/// SSO connections: the IdP's sign-in page (front channel), our callback (inbound), and for OIDC
/// the token endpoint (outbound, through the gate); metadata and keys are replaced by uploads and
/// pinned keys.
pub fn connection_rows(cfg: &EnvConfig<'_>) -> Vec<Dependency> {
    use portcullis_core::sso::ConnectionType;
    let mut out = Vec::new();
    for c in cfg.connections {
        let component = Component {
            kind: "connection".into(),
            id: c.id.to_string(),
            name: format!("{} ({})", c.name, c.state.as_str()),
        };
        let s = |k: &str| {
            c.config
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        match c.kind {
            ConnectionType::Oidc => {
                let (auth, token, issuer) = (
                    s("authorization_endpoint"),
                    s("token_endpoint"),
                    s("issuer"),
                );
                out.push(row(
                    Kind::Redirect,
                    component.clone(),
                    Direction::FrontChannel,
                    &auth,
                    Verdict::Allowed,
                    "front channel: the browser goes to the IdP's sign-in page".into(),
                ));
                let cb = format!("{}/sso/oidc/{}/callback", cfg.env.issuer, c.id);
                out.push(row(
                    Kind::Callback,
                    component.clone(),
                    Direction::Inbound,
                    &cb,
                    Verdict::Inbound,
                    "the browser returns from the IdP".into(),
                ));
                let (v, d) = outbound_verdict(cfg.policy, cfg.env, &token, Purpose::TokenExchange);
                out.push(row(
                    Kind::TokenExchange,
                    component.clone(),
                    Direction::Outbound,
                    &token,
                    v,
                    d,
                ));
                out.push(row(
                    Kind::JwksFetch,
                    component.clone(),
                    Direction::Outbound,
                    &issuer,
                    Verdict::Internalised,
                    "the IdP's signing keys are pinned in the connection; nothing is fetched"
                        .into(),
                ));
                out.push(row(
                    Kind::MetadataFetch,
                    component.clone(),
                    Direction::Outbound,
                    &issuer,
                    Verdict::Replaced,
                    "endpoints configured by hand; no discovery request".into(),
                ));
            }
            ConnectionType::Saml => {
                let sso = c
                    .config
                    .pointer("/idp/sso_url")
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned();
                if !sso.is_empty() {
                    out.push(row(
                        Kind::Redirect,
                        component.clone(),
                        Direction::FrontChannel,
                        &sso,
                        Verdict::Allowed,
                        "front channel: the browser carries the AuthnRequest to the IdP".into(),
                    ));
                }
                let acs = format!("{}/sso/saml/{}/acs", cfg.env.issuer, c.id);
                out.push(row(Kind::Callback, component.clone(), Direction::Inbound, &acs, Verdict::Inbound, "the browser posts the IdP's Response (POST binding: no server-to-server traffic)".into()));
                let origin = if sso.is_empty() {
                    acs.clone()
                } else {
                    sso.clone()
                };
                match c.config.get("metadata_url").and_then(|v| v.as_str()) {
                    // Fetched through the gate: a dependency like any other, judged by the policy.
                    Some(u) => {
                        let (v, d) =
                            outbound_verdict(cfg.policy, cfg.env, u, Purpose::MetadataFetch);
                        out.push(row(
                            Kind::MetadataFetch,
                            component.clone(),
                            Direction::Outbound,
                            u,
                            v,
                            d,
                        ));
                    }
                    None => out.push(row(
                        Kind::MetadataFetch,
                        component.clone(),
                        Direction::Outbound,
                        &origin,
                        Verdict::Replaced,
                        "IdP metadata imported from a file or request body".into(),
                    )),
                }
            }
        }
    }
    out
}

/// Webhook endpoints: each is an outbound `webhook` dependency, allowed by a rule or blocked (the
/// gate decides again at every delivery). Where there are any, the two ways events leave without
/// server egress show as their `replaced` alternatives: the Events API (pulled by the
/// application) and the signed export file (carried across the gap).
pub fn webhook_rows(cfg: &EnvConfig<'_>) -> Vec<Dependency> {
    let mut out = Vec::new();
    for w in cfg.webhooks {
        let component = Component {
            kind: "webhook_endpoint".into(),
            id: w.id.to_string(),
            name: if w.enabled {
                w.description.clone()
            } else {
                format!("{} (disabled)", w.description).trim().to_owned()
            },
        };
        let (v, d) = outbound_verdict(cfg.policy, cfg.env, &w.url, Purpose::Webhook);
        out.push(row(
            Kind::Webhook,
            component,
            Direction::Outbound,
            &w.url,
            v,
            d,
        ));
    }
    if !out.is_empty() {
        let svc = |id: &str, name: &str| Component {
            kind: "service".into(),
            id: id.into(),
            name: name.into(),
        };
        let issuer = &cfg.env.issuer;
        let base = issuer.split_once("/e/").map_or(issuer.as_str(), |(b, _)| b);
        out.push(row(
            Kind::Webhook,
            svc("events_api", "Events API (pull)"),
            Direction::Inbound,
            &format!("{issuer}/events"),
            Verdict::Replaced,
            "replaced by the Events API: the application pulls events with an environment API key"
                .into(),
        ));
        out.push(row(
            Kind::Webhook,
            svc("events_export", "Signed events export"),
            Direction::Inbound,
            &format!("{base}/admin/v1/environments/{}/events/export", cfg.env.slug),
            Verdict::Replaced,
            "replaced by a signed export file carried across the gap (portcullis events export / verify)".into(),
        ));
    }
    out
}

/// Every dependency of the environment, sorted for stable output.
pub fn inventory(cfg: &EnvConfig<'_>) -> Vec<Dependency> {
    let mut rows = Vec::new();
    rows.extend(service_rows(cfg));
    rows.extend(client_rows(cfg));
    rows.extend(connection_rows(cfg));
    rows.extend(webhook_rows(cfg));
    rows.sort_by(|a, b| {
        (a.kind, &a.component.kind, &a.component.id, &a.url).cmp(&(
            b.kind,
            &b.component.kind,
            &b.component.id,
            &b.url,
        ))
    });
    rows
}

fn verdict_str(v: Verdict) -> &'static str {
    match v {
        Verdict::Allowed => "allowed",
        Verdict::Replaced => "replaced",
        Verdict::Internalised => "internalised",
        Verdict::Blocked => "blocked",
        Verdict::Inbound => "inbound",
    }
}

fn kind_str(k: Kind) -> String {
    serde_json::to_value(k)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn dir_str(d: Direction) -> String {
    serde_json::to_value(d)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn cells(d: &Dependency) -> [String; 7] {
    [
        kind_str(d.kind),
        format!("{} {}", d.component.kind, d.component.id),
        dir_str(d.direction),
        format!("{}://{}:{}", d.protocol, d.host, d.port),
        verdict_str(d.decision).into(),
        d.detail.clone(),
        d.component.name.clone(),
    ]
}

const HEADERS: [&str; 7] = [
    "kind",
    "component",
    "direction",
    "path",
    "decision",
    "detail",
    "name",
];

/// Renders rows as `table`, `markdown`, `csv` or `json`.
pub fn render(rows: &[Dependency], format: &str) -> Result<String, String> {
    let all: Vec<[String; 7]> = rows.iter().map(cells).collect();
    match format {
        "json" => serde_json::to_string_pretty(rows).map_err(|e| e.to_string()),
        "csv" => {
            let esc = |s: &str| {
                if s.contains([',', '"', '\n']) {
                    format!("\"{}\"", s.replace('"', "\"\""))
                } else {
                    s.to_owned()
                }
            };
            let mut out = HEADERS.join(",") + "\n";
            for r in &all {
                out += &(r.iter().map(|c| esc(c)).collect::<Vec<_>>().join(",") + "\n");
            }
            Ok(out)
        }
        "markdown" => {
            let mut out = format!(
                "| {} |\n|{}\n",
                HEADERS.join(" | "),
                "---|".repeat(HEADERS.len())
            );
            for r in &all {
                out += &format!(
                    "| {} |\n",
                    r.iter()
                        .map(|c| c.replace('|', "\\|"))
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
            }
            Ok(out)
        }
        "table" => {
            let widths: Vec<usize> = (0..6)
                .map(|i| {
                    all.iter()
                        .map(|r| r[i].len())
                        .max()
                        .unwrap_or(0)
                        .max(HEADERS[i].len())
                })
                .collect();
            let line = |r: Vec<&str>| {
                r.iter()
                    .enumerate()
                    .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_owned()
                    + "\n"
            };
            let mut out = line(HEADERS[..6].to_vec());
            for r in &all {
                out += &line(r[..6].iter().map(String::as_str).collect());
            }
            Ok(out)
        }
        other => Err(format!(
            "unknown format {other:?} (table, json, markdown, csv)"
        )),
    }
}
