//! Input rules shared by the admin API, the CLI and (later) configuration bundles.

/// A slug: 1–63 characters of `a-z`, `0-9` and `-`, starting and ending with a letter or digit.
pub fn slug(s: &str) -> Result<(), String> {
    let ok_char = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 63 {
        return Err("a slug has 1 to 63 characters".into());
    }
    if !b.iter().all(|&c| ok_char(c) || c == b'-') {
        return Err("a slug uses only lowercase letters, digits and '-'".into());
    }
    if !ok_char(b[0]) || !ok_char(b[b.len() - 1]) {
        return Err("a slug starts and ends with a letter or digit".into());
    }
    Ok(())
}

/// A DNS domain as an organization claims it: lowercase ASCII labels (IDNs in punycode), at least
/// two labels, each 1–63 characters of letters, digits and inner hyphens, 253 characters at most.
pub fn domain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err(format!("domain {s:?} must have 1 to 253 characters"));
    }
    let labels: Vec<&str> = s.split('.').collect();
    if labels.len() < 2 {
        return Err(format!(
            "domain {s:?} needs at least two labels (example.com)"
        ));
    }
    for l in &labels {
        let b = l.as_bytes();
        let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
        if b.is_empty()
            || b.len() > 63
            || !b.iter().all(inner)
            || b[0] == b'-'
            || b[b.len() - 1] == b'-'
        {
            return Err(format!(
                "domain {s:?} has an invalid label {l:?} (lowercase letters, digits, inner '-')"
            ));
        }
    }
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(format!("domain {s:?} looks like an IP address"));
    }
    Ok(())
}

/// A display name: 1–200 characters, no control characters.
pub fn name(s: &str) -> Result<(), String> {
    let n = s.chars().count();
    if n == 0 || n > 200 || s.trim().is_empty() {
        return Err("a name has 1 to 200 characters and is not blank".into());
    }
    if s.chars().any(char::is_control) {
        return Err("a name has no control characters".into());
    }
    Ok(())
}

/// An absolute `http(s)` URL without fragment, userinfo or query, used as an issuer or public URL.
pub fn base_url(s: &str) -> Result<(), String> {
    let rest = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .ok_or_else(|| format!("{s:?} must start with https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{s:?} has no host"));
    }
    if s.contains(['#', '?', '@', ' ']) || s.chars().any(char::is_control) || s.len() > 2000 {
        return Err(format!(
            "{s:?} must not contain a fragment, query, userinfo or spaces"
        ));
    }
    if s.ends_with('/') {
        return Err(format!("{s:?} must not end with '/'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "prod", "eu-west-1", "0abc"] {
            assert!(slug(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a b", &"x".repeat(64)] {
            assert!(slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains() {
        for ok in ["example.com", "a.b.c.example.org", "xn--bcher-kva.example"] {
            assert!(domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "com",
            "Example.com",
            "-a.com",
            "a-.com",
            "a..com",
            "1.2.3.4",
            "a.com.",
        ] {
            assert!(domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert!(base_url("https://id.example.com/e/prod").is_ok());
        assert!(base_url("http://127.0.0.1:8080").is_ok());
        for bad in [
            "ftp://x",
            "https://",
            "https://x/#f",
            "https://u@x",
            "https://x/",
            "https://x?q",
        ] {
            assert!(base_url(bad).is_err(), "{bad}");
        }
    }
}
