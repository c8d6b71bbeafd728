//! The egress policy of an environment: a reviewable document of allow rules.
//!
//! ```json
//! { "version": 3,
//!   "rules": [ { "id": "okta", "scheme": "https", "host": "*.okta.com", "port": 443,
//!                "purposes": ["metadata_fetch", "jwks_fetch", "token_exchange"] } ],
//!   "waivers": [ { "finding": "isolated_egress", "reason": "IdP token endpoint via DMZ proxy" } ] }
//! ```
//! Default deny: no rule, no egress. A rule allows a (scheme, host, port, purpose) and, for each
//! resolved address, either an ordinary public address (host rules) or an address inside its
//! `cidr` (the only way to allow loopback, private or other special addresses).

use serde::{Deserialize, Serialize};

use crate::addr::Cidr;

/// What an outbound call is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    MetadataFetch,
    JwksFetch,
    TokenExchange,
    Webhook,
}

impl Purpose {
    pub const ALL: [Purpose; 4] = [
        Self::MetadataFetch,
        Self::JwksFetch,
        Self::TokenExchange,
        Self::Webhook,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MetadataFetch => "metadata_fetch",
            Self::JwksFetch => "jwks_fetch",
            Self::TokenExchange => "token_exchange",
            Self::Webhook => "webhook",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Https,
    Http,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Https => "https",
            Self::Http => "http",
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            Self::Https => 443,
            Self::Http => 80,
        }
    }
}

fn https() -> Scheme {
    Scheme::Https
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A short name that findings and refusals cite.
    pub id: String,
    #[serde(default = "https")]
    pub scheme: Scheme,
    /// An exact DNS name, or `*.suffix` for exactly one more label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Addresses this rule allows; needed to allow loopback, private and other special addresses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Cidr>,
    /// Defaults to the scheme's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub purposes: Vec<Purpose>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl Rule {
    pub fn effective_port(&self) -> u16 {
        self.port.unwrap_or(self.scheme.default_port())
    }

    pub fn host_matches(&self, host: &str) -> bool {
        match &self.host {
            None => true,
            Some(p) => match p.strip_prefix("*.") {
                Some(suffix) => host
                    .strip_suffix(suffix)
                    .and_then(|h| h.strip_suffix('.'))
                    .is_some_and(|label| !label.is_empty() && !label.contains('.')),
                None => p.eq_ignore_ascii_case(host),
            },
        }
    }

    /// The network path the rule opens, for people: `https://*.okta.com:443`.
    pub fn path(&self) -> String {
        let host = match (&self.host, &self.cidr) {
            (Some(h), Some(c)) => format!("{h} in {c}"),
            (Some(h), None) => h.clone(),
            (None, Some(c)) => c.to_string(),
            (None, None) => "any host".into(),
        };
        format!(
            "{}://{host}:{}",
            self.scheme.as_str(),
            self.effective_port()
        )
    }
}

/// A documented exception to a policy-check finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Waiver {
    /// The finding code it waives (`isolated_egress`, `plain_http`, `unused_rule`).
    pub finding: String,
    /// A rule ID, when the waiver concerns one rule only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Assigned by the server; a replacement must name the version it replaces.
    #[serde(default)]
    pub version: i64,
    #[serde(default)]
    pub rules: Vec<Rule>,
    #[serde(default)]
    pub waivers: Vec<Waiver>,
}

/// A problem with a policy document, naming the rule (and its line, when known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyError {
    pub line: Option<usize>,
    pub rule: Option<String>,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(l) = self.line {
            write!(f, "line {l}: ")?;
        }
        if let Some(r) = &self.rule {
            write!(f, "rule {r:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

fn check_host(h: &str) -> Result<(), String> {
    let (wild, name) = match h.strip_prefix("*.") {
        Some(rest) => (true, rest),
        None => (false, h),
    };
    if name.contains('*') {
        return Err(format!(
            "host {h:?}: a wildcard is allowed only as the whole first label (*.example.com)"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if name.len() > 253 || !labels.iter().all(|l| valid_label(l)) {
        return Err(format!("host {h:?} is not a lowercase DNS name"));
    }
    if wild && labels.len() < 2 {
        return Err(format!(
            "host {h:?}: a wildcard broader than one label under a registrable domain is not allowed"
        ));
    }
    Ok(())
}

/// Parses a policy document (JSON) and checks every rule. `text` gives line numbers to errors.
pub fn parse(text: &str) -> Result<Policy, PolicyError> {
    let policy: Policy = serde_json::from_str(text).map_err(|e| PolicyError {
        line: Some(e.line()),
        rule: None,
        message: e.to_string(),
    })?;
    validate(&policy).map_err(|mut e| {
        if let Some(r) = &e.rule {
            // The failing rule is the first whose prefix of the policy fails (each rule is checked
            // against those before it): a duplicated id, or an id that is also an earlier rule's
            // host, must not send the reader to the wrong rule.
            let index = (0..policy.rules.len()).find(|&j| {
                policy.rules[j].id == *r
                    && validate(&Policy {
                        rules: policy.rules[..=j].to_vec(),
                        ..Policy::default()
                    })
                    .is_err()
            });
            let at = match index {
                Some(j) => id_keys(text).nth(j),
                None => text.find(&format!("\"{r}\"")),
            };
            e.line = at.map(|i| text[..i].matches('\n').count() + 1);
        }
        e
    })?;
    Ok(policy)
}

/// Byte offsets of the `"id"` keys in a policy text, one per rule in order (only rules have an
/// `id`, and a string followed by `:` is a key).
fn id_keys(text: &str) -> impl Iterator<Item = usize> + '_ {
    text.match_indices("\"id\"")
        .filter(|(i, _)| text[i + 4..].trim_start().starts_with(':'))
        .map(|(i, _)| i)
}

/// Checks a policy's rules: IDs unique and well-formed, hosts, ports, purposes, duplicates.
pub fn validate(policy: &Policy) -> Result<(), PolicyError> {
    let err = |rule: &Rule, m: String| PolicyError {
        line: None,
        rule: Some(rule.id.clone()),
        message: m,
    };
    if policy.rules.len() > 1000 {
        return Err(PolicyError {
            line: None,
            rule: None,
            message: "a policy has at most 1000 rules".into(),
        });
    }
    for (i, r) in policy.rules.iter().enumerate() {
        let id_ok = !r.id.is_empty()
            && r.id.len() <= 64
            && r.id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !id_ok {
            return Err(err(
                r,
                "the id has 1–64 characters of letters, digits, '-', '_', '.'".into(),
            ));
        }
        if policy.rules[..i].iter().any(|o| o.id == r.id) {
            return Err(err(r, "the id is used by an earlier rule".into()));
        }
        if r.host.is_none() && r.cidr.is_none() {
            return Err(err(r, "a rule names a host, a CIDR block, or both".into()));
        }
        if let Some(h) = &r.host {
            check_host(h).map_err(|m| err(r, m))?;
        }
        if r.port == Some(0) {
            return Err(err(r, "port 0 is out of range 1..=65535".into()));
        }
        if r.purposes.is_empty() {
            return Err(err(r, "a rule serves at least one purpose".into()));
        }
        if let Some(o) = policy.rules[..i].iter().find(|o| {
            o.scheme == r.scheme
                && o.host == r.host
                && o.cidr == r.cidr
                && o.effective_port() == r.effective_port()
                && {
                    let mut a = o.purposes.clone();
                    let mut b = r.purposes.clone();
                    a.sort();
                    b.sort();
                    a == b
                }
        }) {
            return Err(err(r, format!("duplicates rule {:?}", o.id)));
        }
    }
    for w in &policy.waivers {
        if w.reason.trim().is_empty() {
            return Err(PolicyError {
                line: None,
                rule: w.rule.clone(),
                message: format!("the waiver of {} needs a reason", w.finding),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(json: &str) -> Result<Policy, PolicyError> {
        parse(&format!(r#"{{"rules": [{json}]}}"#))
    }

    #[test]
    fn errors_name_the_line_of_the_failing_rule() {
        let text = "{\"rules\": [\n  {\"id\": \"a\", \"host\": \"b\", \"purposes\": [\"webhook\"]},\n  {\"id\": \"b\", \"host\": \"*.com\", \"purposes\": [\"webhook\"]},\n  {\"id\": \"a\", \"host\": \"c\", \"purposes\": [\"webhook\"]}\n]}";
        let e = parse(text).unwrap_err();
        assert_eq!(
            e.line,
            Some(3),
            "{e}: rule b is on line 3, not where \"b\" first appears"
        );
        let text = text.replace("*.com", "d");
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, Some(4), "{e}: the second rule \"a\"");
        assert!(e.message.contains("used by an earlier rule"), "{e}");
    }

    #[test]
    fn wildcards_match_one_label() {
        let p = rule(r#"{"id":"a","host":"*.example.com","purposes":["webhook"]}"#).unwrap();
        let r = &p.rules[0];
        assert!(r.host_matches("api.example.com"));
        assert!(!r.host_matches("example.com"));
        assert!(!r.host_matches("a.b.example.com"));
        assert!(!r.host_matches("evilexample.com"));
        assert_eq!(r.effective_port(), 443);
    }

    #[test]
    fn bad_documents_name_the_rule_and_line() {
        for (doc, needle) in [
            (
                r#"{"id":"a","host":"*.com","purposes":["webhook"]}"#,
                "wildcard broader",
            ),
            (
                r#"{"id":"a","host":"*.*.example.com","purposes":["webhook"]}"#,
                "wildcard",
            ),
            (
                r#"{"id":"a","host":"x.example.com","purposes":["webhook"],"colour":1}"#,
                "unknown field",
            ),
            (
                r#"{"id":"a","cidr":"10.0.0.1/8","purposes":["webhook"]}"#,
                "host bits",
            ),
            (
                r#"{"id":"a","cidr":"10.0.0.0/99","purposes":["webhook"]}"#,
                "out of range",
            ),
            (
                r#"{"id":"a","host":"x.example.com","port":70000,"purposes":["webhook"]}"#,
                "70000",
            ),
            (
                r#"{"id":"a","host":"x.example.com","port":0,"purposes":["webhook"]}"#,
                "port 0",
            ),
            (
                r#"{"id":"a","host":"x.example.com","purposes":[]}"#,
                "at least one purpose",
            ),
            (
                r#"{"id":"a","host":"x.example.com","purposes":["teleport"]}"#,
                "unknown variant",
            ),
            (
                r#"{"id":"a","host":"x.example.com","purposes":["webhook"]},{"id":"b","host":"x.example.com","purposes":["webhook"]}"#,
                "duplicates rule \"a\"",
            ),
        ] {
            let e = rule(doc).unwrap_err();
            assert!(e.to_string().contains(needle), "{doc}: {e}");
            assert!(e.line.is_some(), "{doc}: {e}");
        }
    }
}
