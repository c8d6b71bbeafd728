//! The access review: one Markdown document for an auditor — inventory, policy, findings,
//! non-human credentials — mapped to NIST SP 800-207 tenets and NIST CSF 2.0 outcomes, with the
//! evidence drawn from the live configuration.

use portcullis_core::Timestamp;
use portcullis_core::model::{ApiKey, Environment};
use portcullis_core::oauth::Client;
use portcullis_egress::Policy;
use portcullis_egress::checks::{Finding, findings_markdown};
use portcullis_egress::inventory::{Dependency, Direction, Verdict, render as render_rows};

pub struct Input<'a> {
    pub env: &'a Environment,
    pub policy: &'a Policy,
    pub rows: &'a [Dependency],
    pub policy_findings: &'a [Finding],
    pub isolation_findings: &'a [Finding],
    /// Whether the isolation check could see every environment (global admin key).
    pub isolation_checked: bool,
    pub clients: &'a [Client],
    pub api_keys: &'a [ApiKey],
    pub now: Timestamp,
}

fn age_days(now: Timestamp, t: Timestamp) -> i64 {
    (now.millis() - t.millis()) / 86_400_000
}

pub fn render(i: &Input<'_>) -> String {
    let e = i.env;
    let outbound = i
        .rows
        .iter()
        .filter(|d| d.direction == Direction::Outbound)
        .count();
    let blocked = i
        .rows
        .iter()
        .filter(|d| d.decision == Verdict::Blocked)
        .count();
    let mut md = format!(
        "# Access review: environment `{}`\n\n\
         - Environment: {} (`{}`), mode **{}**\n- Issuer: {}\n- Generated: {}\n- Egress policy version: {} ({} rules, {} waivers)\n\
         - Dependencies: {} in total, {} outbound, {} blocked\n- Policy findings: {}; isolation findings: {}{}\n\n\
         Sign-off: ______________________ (name, role, date)\n\n",
        e.slug,
        e.name,
        e.id,
        e.mode.as_str(),
        e.issuer,
        i.now.to_rfc3339(),
        i.policy.version,
        i.policy.rules.len(),
        i.policy.waivers.len(),
        i.rows.len(),
        outbound,
        blocked,
        i.policy_findings.len(),
        i.isolation_findings.len(),
        if i.isolation_checked {
            ""
        } else {
            " (not checked: needs a global admin key)"
        },
    );
    md += "## Identity dependency inventory\n\n";
    md += &render_rows(i.rows, "markdown").unwrap_or_default();
    md += "\n## Egress policy\n\n";
    if i.policy.rules.is_empty() {
        md += "No rules: every outbound connection is refused (default deny).\n";
    } else {
        md += "| rule | path | purposes | description |\n|---|---|---|---|\n";
        for r in &i.policy.rules {
            let p: Vec<&str> = r.purposes.iter().map(|p| p.as_str()).collect();
            md += &format!(
                "| {} | {} | {} | {} |\n",
                r.id,
                r.path(),
                p.join(", "),
                r.description.replace('|', "\\|")
            );
        }
    }
    for w in &i.policy.waivers {
        md += &format!(
            "\nWaiver of `{}`{}: {}\n",
            w.finding,
            w.rule
                .as_ref()
                .map(|r| format!(" (rule {r})"))
                .unwrap_or_default(),
            w.reason
        );
    }
    md += "\n";
    md += &findings_markdown("Policy check findings", i.policy_findings);
    md += "\n";
    md += &findings_markdown("Isolation check findings", i.isolation_findings);
    md += "\n## Non-human credentials\n\n| credential | kind | owner | created | age (days) | last used | state |\n|---|---|---|---|---|---|---|\n";
    for c in i.clients {
        if let Some(t) = c.secret_created_at {
            let state = match c.previous_secret_expires_at {
                Some(x) if x > i.now => format!("rotating (previous secret valid until {x})"),
                _ => "active".into(),
            };
            md += &format!(
                "| client secret of {} | client secret | {} | {} | {} | - | {} |\n",
                c.id,
                c.name,
                t,
                age_days(i.now, t),
                state
            );
        }
        if c.jwks.is_some() {
            md += &format!(
                "| keys of {} | private_key_jwt | {} | {} | {} | - | active |\n",
                c.id,
                c.name,
                c.created_at,
                age_days(i.now, c.created_at)
            );
        }
    }
    for k in i.api_keys {
        let state = k
            .revoked_at
            .map_or_else(|| "active".to_owned(), |r| format!("revoked {r}"));
        let used = k
            .last_used_at
            .map_or_else(|| "never".to_owned(), |t| t.to_string());
        md += &format!(
            "| {} | {} API key | {} | {} | {} | {} | {} |\n",
            k.id,
            k.kind.as_str(),
            k.name,
            k.created_at,
            age_days(i.now, k.created_at),
            used,
            state
        );
    }
    md += &format!(
        "\n## Mapping to NIST SP 800-207 and NIST CSF 2.0\n\n\
         | reference | what it asks | evidence in this environment |\n|---|---|---|\n\
         | SP 800-207 tenet 1 (all data sources and services are resources) | every network path is inventoried | {} dependencies listed above, generated from the live configuration |\n\
         | SP 800-207 tenet 2 (all communication secured regardless of location) | no plain-text egress | {} rules allow plain http; findings `plain_http`: {} |\n\
         | SP 800-207 tenet 3 (per-session access) | short-lived tokens, per-session grants | access tokens expire after each client's lifetime (default 900 s); refresh tokens rotate on every use and a reuse revokes the grant |\n\
         | SP 800-207 tenet 6 (authentication and authorization strictly enforced) | every request authenticated | admin API keys scoped per environment; clients authenticate by secret digest or private_key_jwt |\n\
         | SP 800-207 tenet 7 (collect information to improve security posture) | audit trail | hash-chained audit records per environment, verifiable with `portcullis audit verify` |\n\
         | CSF PR.AA (identity management, authentication and access control) | credentials managed and reviewed | {} clients, {} API keys listed with age and last use |\n\
         | CSF PR.IR (technology infrastructure resilience) | networks protected from unauthorized access | default-deny egress, mode **{}**, policy version {} |\n\
         | CSF DE.CM (continuous monitoring) | network activity monitored | each refused connection is an audit record, an `egress.denied` event and the metric `portcullis_egress_denied_total` |\n\
         | CSF GV.PO / ID.AM (policy; asset management) | policy is a reviewable artefact | `portcullis policy check` / `policy diff` in change control; {} policy findings |\n",
        i.rows.len(),
        i.policy
            .rules
            .iter()
            .filter(|r| r.scheme == portcullis_egress::Scheme::Http)
            .count(),
        i.policy_findings
            .iter()
            .filter(|f| f.code == "plain_http")
            .count(),
        i.clients.len(),
        i.api_keys.len(),
        e.mode.as_str(),
        i.policy.version,
        i.policy_findings.len(),
    );
    md
}
