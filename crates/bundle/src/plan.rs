//! What a plan says: one [`Change`] per object that `apply` would create, update or delete, and
//! per action, in the order `apply` makes them. The server computes plans; the CLI prints them.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Create,
    Update,
    Delete,
    /// A one-time action (`rotate`, `revoke`).
    Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub op: Op,
    /// `organization`, `connection`, `client`, `webhook_endpoint`, `egress_policy`,
    /// `bundle_publishers`, `signing_key`, `api_key`.
    pub kind: String,
    /// The natural key: `Acme`, `Acme/okta`, a client name, a URL, an API key ID.
    pub target: String,
    /// The existing object's ID, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// For updates: the fields that change (never their secret values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub changes: Vec<Change>,
    /// Objects of a managed kind that the file does not list, kept because `prune` is off.
    #[serde(default)]
    pub unmanaged: Vec<String>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub fn count(&self, op: Op) -> usize {
        self.changes.iter().filter(|c| c.op == op).count()
    }

    /// The plan as a reviewer reads it: `+` create, `~` update (with the fields), `-` delete,
    /// `!` action, then a summary line.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        for c in &self.changes {
            let sign = match c.op {
                Op::Create => '+',
                Op::Update => '~',
                Op::Delete => '-',
                Op::Action => '!',
            };
            out.push_str(&format!("{sign} {} {}", c.kind, c.target));
            if let Some(id) = &c.id {
                out.push_str(&format!(" ({id})"));
            }
            if !c.fields.is_empty() {
                out.push_str(&format!(": {}", c.fields.join(", ")));
            }
            out.push('\n');
        }
        for u in &self.unmanaged {
            out.push_str(&format!("  (not in the file, kept: {u})\n"));
        }
        if self.is_empty() {
            out.push_str("No changes: the environment matches the file.\n");
        } else {
            out.push_str(&format!(
                "Plan: {} to create, {} to update, {} to delete, {} actions.\n",
                self.count(Op::Create),
                self.count(Op::Update),
                self.count(Op::Delete),
                self.count(Op::Action)
            ));
        }
        out
    }
}

/// The fields of two serialized objects that differ (top-level keys).
fn changed_fields(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["(all)".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| k.to_string())
        .collect()
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

fn push(plan: &mut Plan, op: Op, kind: &str, target: &str, fields: Vec<String>) {
    plan.changes.push(Change {
        op,
        kind: kind.into(),
        target: target.into(),
        id: None,
        fields,
    });
}

/// An offline plan: `desired` against `current`, an `export-config` of the target environment,
/// compared as files (by natural key, field by field as written). The server's plan is the
/// authoritative one — it fills in defaults and checks certificates, URLs and references — but
/// this one lets a reviewer on the far side of the gap see what a bundle will do.
pub fn compare(current: &crate::EnvConfig, desired: &crate::EnvConfig) -> Plan {
    let mut plan = Plan::default();
    if let Some(p) = &desired.publishers
        && Some(p) != current.publishers.as_ref()
    {
        push(
            &mut plan,
            Op::Update,
            "bundle_publishers",
            "trusted keys",
            vec![],
        );
    }
    if let Some(e) = &desired.egress
        && Some(e) != current.egress.as_ref()
    {
        push(
            &mut plan,
            Op::Update,
            "egress_policy",
            "policy",
            changed_fields(&to_value(&current.egress), &to_value(e)),
        );
    }
    for o in &desired.organizations {
        let now = current.organizations.iter().find(|c| c.name == o.name);
        match now {
            None => push(&mut plan, Op::Create, "organization", &o.name, vec![]),
            Some(c) if c.domains != o.domains => push(
                &mut plan,
                Op::Update,
                "organization",
                &o.name,
                vec!["domains".into()],
            ),
            Some(_) => {}
        }
        for x in &o.connections {
            let target = format!("{}/{}", o.name, x.name);
            match now.and_then(|c| c.connections.iter().find(|y| y.name == x.name)) {
                None => push(&mut plan, Op::Create, "connection", &target, vec![]),
                Some(y) => {
                    let mut f = changed_fields(&to_value(y), &to_value(x));
                    if x.client_secret.is_some() {
                        f.push("client_secret (if it differs)".into());
                    }
                    if !f.is_empty() {
                        push(&mut plan, Op::Update, "connection", &target, f);
                    }
                }
            }
        }
    }
    for x in &desired.clients {
        match current.clients.iter().find(|c| c.name == x.name) {
            None => push(&mut plan, Op::Create, "client", &x.name, vec![]),
            Some(c) => {
                let f = changed_fields(&to_value(c), &to_value(x));
                if !f.is_empty() {
                    push(&mut plan, Op::Update, "client", &x.name, f);
                }
            }
        }
    }
    for x in &desired.webhook_endpoints {
        match current.webhook_endpoints.iter().find(|c| c.url == x.url) {
            None => push(&mut plan, Op::Create, "webhook_endpoint", &x.url, vec![]),
            Some(c) => {
                let f = changed_fields(&to_value(c), &to_value(x));
                if !f.is_empty() {
                    push(&mut plan, Op::Update, "webhook_endpoint", &x.url, f);
                }
            }
        }
    }
    for c in current
        .clients
        .iter()
        .filter(|c| !desired.clients.iter().any(|x| x.name == c.name))
    {
        if desired.prune {
            push(&mut plan, Op::Delete, "client", &c.name, vec![]);
        } else {
            plan.unmanaged.push(format!("client {}", c.name));
        }
    }
    for c in current
        .webhook_endpoints
        .iter()
        .filter(|c| !desired.webhook_endpoints.iter().any(|x| x.url == c.url))
    {
        if desired.prune {
            push(&mut plan, Op::Delete, "webhook_endpoint", &c.url, vec![]);
        } else {
            plan.unmanaged.push(format!("webhook_endpoint {}", c.url));
        }
    }
    for o in current
        .organizations
        .iter()
        .filter(|o| !desired.organizations.iter().any(|x| x.name == o.name))
    {
        plan.unmanaged.push(format!("organization {}", o.name));
    }
    for k in &desired.actions.revoke_api_keys {
        push(&mut plan, Op::Action, "api_key", k, vec!["revoke".into()]);
    }
    if desired.actions.rotate_signing_key {
        push(&mut plan, Op::Action, "signing_key", "rotate", vec![]);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EnvConfig;

    #[test]
    fn an_offline_plan_compares_files_by_natural_key() {
        let current = EnvConfig::parse(
            "version = 1\n[[organizations]]\nname = \"A\"\ndomains = [\"a.test\"]\n\
             [[clients]]\nname = \"web\"\nscopes = [\"openid\"]\n[[clients]]\nname = \"old\"\n",
        )
        .unwrap();
        let desired = EnvConfig::parse(
            "version = 1\n[[organizations]]\nname = \"A\"\ndomains = [\"a.test\", \"b.test\"]\n\
             [[organizations]]\nname = \"B\"\n[[clients]]\nname = \"web\"\nscopes = [\"openid\", \"email\"]\n",
        )
        .unwrap();
        let p = compare(&current, &desired);
        let text = p.render_text();
        assert!(text.contains("~ organization A: domains"), "{text}");
        assert!(text.contains("+ organization B"), "{text}");
        assert!(text.contains("~ client web: scopes"), "{text}");
        assert!(text.contains("kept: client old"), "{text}");
        assert!(compare(&desired, &desired).is_empty());
    }
}
