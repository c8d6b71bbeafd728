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
