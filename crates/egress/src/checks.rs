//! Checks for change control: `policy check` (findings on one environment), `policy diff` (what a
//! policy change opens or closes) and `isolation check` (nothing shared between environments).

use std::collections::BTreeMap;

use portcullis_core::model::EnvMode;
use serde::{Deserialize, Serialize};

use crate::inventory::{Dependency, Direction, EnvConfig, Verdict};
use crate::policy::{Policy, Rule, Scheme};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `blocked_dependency`, `unused_rule`, `isolated_egress`, `plain_http`, `shared_*`, …
    pub code: String,
    pub environment: String,
    pub subject: String,
    pub message: String,
}

fn waived(policy: &Policy, code: &str, rule: Option<&str>) -> bool {
    policy
        .waivers
        .iter()
        .any(|w| w.finding == code && (w.rule.is_none() || w.rule.as_deref() == rule))
}

fn loopback_only(r: &Rule) -> bool {
    match r.cidr {
        Some(c) => match c.addr {
            std::net::IpAddr::V4(a) => a.octets()[0] == 127 && c.prefix >= 8,
            std::net::IpAddr::V6(a) => a.is_loopback() && c.prefix == 128,
        },
        None => false,
    }
}

/// A block so wide it takes in addresses no identity flow should reach: the metadata services,
/// or more than a /8 (IPv4) or /16 (IPv6).
fn broad(c: &crate::addr::Cidr) -> bool {
    let metadata = [
        std::net::IpAddr::from([169, 254, 169, 254]),
        std::net::IpAddr::from([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]),
    ];
    metadata.iter().any(|m| c.contains(*m))
        || if c.addr.is_ipv4() {
            c.prefix < 8
        } else {
            c.prefix < 16
        }
}

/// Findings of `policy check` for one environment.
pub fn policy_findings(cfg: &EnvConfig<'_>, rows: &[Dependency]) -> Vec<Finding> {
    let env = cfg.env.slug.clone();
    let f = |code: &str, subject: String, message: String| Finding {
        code: code.into(),
        environment: env.clone(),
        subject,
        message,
    };
    let mut out = Vec::new();
    for d in rows.iter().filter(|d| d.decision == Verdict::Blocked) {
        out.push(f(
            "blocked_dependency",
            format!("{} {}", d.component.kind, d.component.id),
            format!("{} is blocked: {}", d.url, d.detail),
        ));
    }
    let outbound: Vec<&Dependency> = rows
        .iter()
        .filter(|d| d.direction == Direction::Outbound)
        .collect();
    for r in &cfg.policy.rules {
        let serves = outbound
            .iter()
            .any(|d| d.decision == Verdict::Allowed && d.detail == format!("rule {}", r.id));
        if !serves && !waived(cfg.policy, "unused_rule", Some(&r.id)) {
            out.push(f("unused_rule", format!("rule {}", r.id), format!("rule {} ({}) serves no configured dependency: remove it (least privilege) or waive it", r.id, r.path())));
        }
        if let Some(c) = r.cidr.filter(broad)
            && !waived(cfg.policy, "broad_cidr", Some(&r.id))
        {
            out.push(f(
                    "broad_cidr",
                    format!("rule {}", r.id),
                    format!("rule {} allows {c}, which includes special addresses such as the cloud metadata service: name the hosts' block exactly", r.id),
                ));
        }
        if r.scheme == Scheme::Http
            && !loopback_only(r)
            && !waived(cfg.policy, "plain_http", Some(&r.id))
        {
            out.push(f(
                "plain_http",
                format!("rule {}", r.id),
                format!(
                    "rule {} allows plain http outside loopback ({})",
                    r.id,
                    r.path()
                ),
            ));
        }
    }
    if cfg.env.mode == EnvMode::Isolated
        && !cfg.policy.rules.is_empty()
        && !waived(cfg.policy, "isolated_egress", None)
    {
        out.push(f("isolated_egress", "policy".into(), format!("the isolated environment allows egress ({} rules) without an isolated_egress waiver", cfg.policy.rules.len())));
    }
    out
}

/// One line of `policy diff`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub change: String,
    pub rule: String,
    pub path: String,
    pub purposes: Vec<String>,
    pub effect: String,
}

fn purposes(r: &Rule) -> Vec<String> {
    r.purposes.iter().map(|p| p.as_str().to_owned()).collect()
}

/// What changes between two policies, rule by rule, and what each change enables or removes.
pub fn policy_diff(old: &Policy, new: &Policy) -> Vec<Change> {
    let mut out = Vec::new();
    let by_id = |p: &Policy| {
        p.rules
            .iter()
            .map(|r| (r.id.clone(), r.clone()))
            .collect::<BTreeMap<_, _>>()
    };
    let (o, n) = (by_id(old), by_id(new));
    for (id, r) in &o {
        match n.get(id) {
            None => out.push(Change {
                change: "removed".into(),
                rule: id.clone(),
                path: r.path(),
                purposes: purposes(r),
                effect: format!("closes {} for {}", r.path(), purposes(r).join(", ")),
            }),
            Some(nr) if nr != r => out.push(Change {
                change: "changed".into(),
                rule: id.clone(),
                path: format!("{} -> {}", r.path(), nr.path()),
                purposes: purposes(nr),
                effect: format!(
                    "now allows {} for {} (was {} for {})",
                    nr.path(),
                    purposes(nr).join(", "),
                    r.path(),
                    purposes(r).join(", ")
                ),
            }),
            Some(_) => {}
        }
    }
    for (id, r) in &n {
        if !o.contains_key(id) {
            let http = if r.scheme == Scheme::Http {
                " over plain http"
            } else {
                ""
            };
            out.push(Change {
                change: "added".into(),
                rule: id.clone(),
                path: r.path(),
                purposes: purposes(r),
                effect: format!("opens {}{http} for {}", r.path(), purposes(r).join(", ")),
            });
        }
    }
    for w in new.waivers.iter().filter(|w| !old.waivers.contains(w)) {
        out.push(Change {
            change: "waiver added".into(),
            rule: w.rule.clone().unwrap_or_default(),
            path: String::new(),
            purposes: vec![],
            effect: format!("waives {}: {}", w.finding, w.reason),
        });
    }
    for w in old.waivers.iter().filter(|w| !new.waivers.contains(w)) {
        out.push(Change {
            change: "waiver removed".into(),
            rule: w.rule.clone().unwrap_or_default(),
            path: String::new(),
            purposes: vec![],
            effect: format!("{} is checked again", w.finding),
        });
    }
    out
}

/// Everything of one environment that must not appear in another.
#[derive(Debug, Clone, Default)]
pub struct IsolationFacts {
    pub env: String,
    pub mode: Option<EnvMode>,
    pub issuer: String,
    /// (what, value): `client secret digest`, `signing key`, `redirect URI`, `logout URI`, `webhook URL`.
    pub items: Vec<(String, String, String)>,
    /// Hosts of inbound callbacks and redirect URIs, for the connected/isolated host check.
    pub callback_hosts: Vec<String>,
}

/// `isolation check`: any value shared by two environments, and any connected/isolated pair that
/// shares a host name in a callback.
pub fn isolation_findings(envs: &[IsolationFacts]) -> Vec<Finding> {
    let mut seen: BTreeMap<(String, String), Vec<(String, String)>> = BTreeMap::new();
    for e in envs {
        seen.entry(("issuer".into(), e.issuer.clone()))
            .or_default()
            .push((e.env.clone(), "environment".into()));
        for (what, value, owner) in &e.items {
            seen.entry((what.clone(), value.clone()))
                .or_default()
                .push((e.env.clone(), owner.clone()));
        }
    }
    let mut out = Vec::new();
    for ((what, value), owners) in seen {
        let mut envs: Vec<&String> = owners.iter().map(|(e, _)| e).collect();
        envs.sort();
        envs.dedup();
        if envs.len() > 1 {
            let shown = if what.contains("digest") || what == "signing key" {
                format!("{}…", value.chars().take(12).collect::<String>())
            } else {
                value.clone()
            };
            let list = owners
                .iter()
                .map(|(e, o)| format!("{e} ({o})"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push(Finding {
                code: format!("shared_{}", what.replace(' ', "_").to_lowercase()),
                environment: envs
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                subject: shown.clone(),
                message: format!("the {what} {shown} is shared by {list}"),
            });
        }
    }
    for (i, a) in envs.iter().enumerate() {
        for b in &envs[i + 1..] {
            if a.mode == b.mode {
                continue;
            }
            for h in a
                .callback_hosts
                .iter()
                .filter(|h| b.callback_hosts.contains(h))
            {
                out.push(Finding {
                    code: "shared_callback_host".into(),
                    environment: format!("{},{}", a.env, b.env),
                    subject: h.clone(),
                    message: format!("connected and isolated environments {} and {} both use the host {h} in callbacks", a.env, b.env),
                });
            }
        }
    }
    out
}

/// Findings as Markdown, for people.
pub fn findings_markdown(title: &str, findings: &[Finding]) -> String {
    let mut out = format!("## {title}\n\n");
    if findings.is_empty() {
        out += "No findings.\n";
        return out;
    }
    out += "| finding | environment | subject | detail |\n|---|---|---|---|\n";
    for f in findings {
        out += &format!(
            "| {} | {} | {} | {} |\n",
            f.code,
            f.environment,
            f.subject.replace('|', "\\|"),
            f.message.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use portcullis_core::Timestamp;
    use portcullis_core::ids::{EnvId, PrefixedId};
    use portcullis_core::model::{EnvMode, Environment, KeyPolicy, SigningAlg};

    use super::*;
    use crate::inventory::EnvConfig;

    #[test]
    fn broad_blocks_are_findings_unless_waived() {
        let env = Environment {
            id: EnvId::from_parts("01J00000000000000000000000"),
            slug: "c".into(),
            name: "c".into(),
            mode: EnvMode::Connected,
            issuer: "https://id.example.com/e/c".into(),
            signing_alg: SigningAlg::ES256,
            key_policy: KeyPolicy::default(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        };
        let check = |doc: &str| {
            let policy = crate::policy::parse(doc).unwrap();
            let cfg = EnvConfig {
                env: &env,
                policy: &policy,
                clients: &[],
                connections: &[],
                webhooks: &[],
            };
            policy_findings(&cfg, &[])
                .into_iter()
                .map(|f| f.code)
                .collect::<Vec<_>>()
        };
        let wide = r#"{"rules":[{"id":"all","cidr":"0.0.0.0/0","purposes":["webhook"]}]}"#;
        assert!(check(wide).contains(&"broad_cidr".to_owned()));
        let meta = r#"{"rules":[{"id":"ll","cidr":"169.254.0.0/16","purposes":["webhook"]}]}"#;
        assert!(check(meta).contains(&"broad_cidr".to_owned()));
        let exact = r#"{"rules":[{"id":"net","cidr":"10.20.0.0/16","purposes":["webhook"]}]}"#;
        assert!(!check(exact).contains(&"broad_cidr".to_owned()));
        let waived = r#"{"rules":[{"id":"all","cidr":"0.0.0.0/0","purposes":["webhook"]}],
                         "waivers":[{"finding":"broad_cidr","rule":"all","reason":"lab network"}]}"#;
        assert!(!check(waived).contains(&"broad_cidr".to_owned()));
    }
}
