//! The rules a client registration satisfies, checked on the whole client after every create or
//! change: RFC 6749 §2.1 (client types) and §3.1.2 (redirection endpoint), OAuth 2.1 §2.3 (exact
//! redirect URIs), RFC 8252 §7.3 (`http` only on loopback), RFC 7591 §2 (metadata names), RFC 7523
//! §2.2 with RFC 7517 §4–§5 (the inline JWKS of `private_key_jwt`), RFC 6749 §3.3 (scope tokens).
//!
//! Pure functions: no HTTP and no storage. An error is one sentence naming the field and the rule.

use std::ops::RangeInclusive;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_core::oauth::{AuthMethod, Client, ClientKind, GrantType, validate_redirect_uri};
use portcullis_core::validate;
use serde_json::{Map, Value};

pub const MAX_URIS: usize = 20;
pub const MAX_SCOPES: usize = 50;
pub const MAX_AUDIENCES: usize = 50;
pub const MAX_KEYS: usize = 10;
pub const TOKEN_TTL: RangeInclusive<i64> = 60..=86_400;
/// One minute to one year.
pub const REFRESH_TTL: RangeInclusive<i64> = 60..=31_536_000;
/// Members that only a private JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

pub fn parse_kind(s: &str) -> Result<ClientKind, String> {
    match s {
        "confidential" => Ok(ClientKind::Confidential),
        "public" => Ok(ClientKind::Public),
        _ => Err(format!(
            "kind must be \"confidential\" or \"public\", not {s:?}"
        )),
    }
}

pub fn kind_str(k: ClientKind) -> &'static str {
    match k {
        ClientKind::Confidential => "confidential",
        ClientKind::Public => "public",
    }
}

pub fn parse_auth_method(s: &str) -> Result<AuthMethod, String> {
    AuthMethod::parse(s).ok_or_else(|| {
        format!(
            "token_endpoint_auth_method must be client_secret_basic, client_secret_post, \
             private_key_jwt or none, not {s:?}"
        )
    })
}

/// RFC 6749 §2.1: a public client cannot authenticate; a confidential one must.
pub fn default_auth_method(kind: ClientKind) -> AuthMethod {
    match kind {
        ClientKind::Confidential => AuthMethod::ClientSecretBasic,
        ClientKind::Public => AuthMethod::None,
    }
}

/// Whether clients with this method hold a generated secret.
pub fn uses_secret(m: AuthMethod) -> bool {
    matches!(
        m,
        AuthMethod::ClientSecretBasic | AuthMethod::ClientSecretPost
    )
}

pub fn default_grants() -> Vec<GrantType> {
    vec![GrantType::AuthorizationCode, GrantType::RefreshToken]
}

pub fn default_scopes() -> Vec<String> {
    portcullis_oidc::discovery::SCOPES
        .iter()
        .map(|s| (*s).to_owned())
        .collect()
}

pub fn parse_grants(names: &[String]) -> Result<Vec<GrantType>, String> {
    names
        .iter()
        .map(|n| {
            GrantType::parse(n).ok_or_else(|| {
                let allowed: Vec<&str> = GrantType::ALL.iter().map(|g| g.as_str()).collect();
                format!("unknown grant type {n:?}; allowed: {}", allowed.join(", "))
            })
        })
        .collect()
}

/// Checks every rule on a whole client and returns it with its JWKS normalised (`alg` set on
/// every key). Run on the result of a change too, never on the change alone: a valid patch of a
/// valid client can still yield an invalid one.
pub fn check_client(mut c: Client) -> Result<Client, String> {
    validate::name(&c.name).map_err(|e| format!("name: {e}"))?;
    check_kind_and_method(&c)?;
    check_grants(&c)?;
    // RFC 6749 §3.1.2.3 and OAuth 2.1 §2.3.1: redirect URIs are registered in full and compared
    // as exact strings, so each one is checked here, once.
    check_uris("redirect_uris", &c.redirect_uris)?;
    check_uris("post_logout_redirect_uris", &c.post_logout_redirect_uris)?;
    if c.allows(GrantType::AuthorizationCode) && c.redirect_uris.is_empty() {
        return Err("the authorization_code grant needs at least one redirect URI".into());
    }
    check_tokens("scopes", &c.scopes, MAX_SCOPES)?;
    check_tokens(
        "token_exchange.audiences",
        &c.exchange.audiences,
        MAX_AUDIENCES,
    )?;
    check_tokens("token_exchange.scopes", &c.exchange.scopes, MAX_SCOPES)?;
    c.jwks = match (c.auth_method, c.jwks.take()) {
        (AuthMethod::PrivateKeyJwt, Some(j)) => Some(check_jwks(&j)?),
        (AuthMethod::PrivateKeyJwt, None) => {
            return Err("private_key_jwt needs jwks: the client's public keys, inline".into());
        }
        (m, Some(_)) => {
            return Err(format!(
                "jwks is only for private_key_jwt; this client uses {}",
                m.as_str()
            ));
        }
        (_, None) => None,
    };
    check_lifetimes(&c)?;
    Ok(c)
}

/// RFC 6749 §2.1 and §2.3: public clients have no credentials (`none`, with PKCE), confidential
/// clients always authenticate.
fn check_kind_and_method(c: &Client) -> Result<(), String> {
    match (c.kind, c.auth_method) {
        (ClientKind::Public, AuthMethod::None) => Ok(()),
        (ClientKind::Public, m) => Err(format!(
            "a public client has no credentials: its token_endpoint_auth_method is none, not {}",
            m.as_str()
        )),
        (ClientKind::Confidential, AuthMethod::None) => Err(
            "a confidential client authenticates: use client_secret_basic, client_secret_post \
             or private_key_jwt, or make it public"
                .into(),
        ),
        (ClientKind::Confidential, _) => Ok(()),
    }
}

fn check_grants(c: &Client) -> Result<(), String> {
    if c.grant_types.is_empty() {
        return Err("grant_types needs at least one grant type".into());
    }
    for (i, g) in c.grant_types.iter().enumerate() {
        if c.grant_types[..i].contains(g) {
            return Err(format!("grant type {} is listed twice", g.as_str()));
        }
    }
    if c.kind == ClientKind::Public {
        // A public client cannot keep a secret, so it cannot act as itself (RFC 6749 §4.4) nor
        // be trusted with delegation (RFC 8693 §2.1 wants the client authenticated).
        for g in [GrantType::ClientCredentials, GrantType::TokenExchange] {
            if c.allows(g) {
                return Err(format!(
                    "a public client cannot use the {} grant",
                    g.as_str()
                ));
            }
        }
    }
    Ok(())
}

fn check_uris(field: &str, uris: &[String]) -> Result<(), String> {
    if uris.len() > MAX_URIS {
        return Err(format!("{field} has at most {MAX_URIS} entries"));
    }
    for (i, u) in uris.iter().enumerate() {
        validate_redirect_uri(u).map_err(|e| format!("{field}: {e}"))?;
        if uris[..i].contains(u) {
            return Err(format!("{field}: {u:?} is listed twice"));
        }
    }
    Ok(())
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`, printable ASCII without space,
/// `"` or `\`. Audiences follow the same rule: they are compared as exact strings too.
fn check_tokens(field: &str, list: &[String], max: usize) -> Result<(), String> {
    if list.len() > max {
        return Err(format!("{field} has at most {max} entries"));
    }
    let ok = |b: u8| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E);
    for (i, t) in list.iter().enumerate() {
        if t.is_empty() || t.len() > 2000 || !t.bytes().all(ok) {
            return Err(format!(
                "{field}: {t:?} is not a valid token (printable ASCII without spaces, quotes or \
                 backslashes, at most 2000 characters)"
            ));
        }
        if list[..i].contains(t) {
            return Err(format!("{field}: {t:?} is listed twice"));
        }
    }
    Ok(())
}

fn check_lifetimes(c: &Client) -> Result<(), String> {
    let l = &c.lifetimes;
    let range = |field: &str, v: i64, r: &RangeInclusive<i64>| {
        if r.contains(&v) {
            Ok(())
        } else {
            Err(format!(
                "{field} must be {} to {}, not {v}",
                r.start(),
                r.end()
            ))
        }
    };
    range("access_token_ttl_seconds", l.access_token, &TOKEN_TTL)?;
    range("id_token_ttl_seconds", l.id_token, &TOKEN_TTL)?;
    range("refresh_idle_ttl_seconds", l.refresh_idle, &REFRESH_TTL)?;
    range(
        "refresh_absolute_ttl_seconds",
        l.refresh_absolute,
        &REFRESH_TTL,
    )?;
    if l.refresh_idle > l.refresh_absolute {
        return Err(format!(
            "refresh_idle_ttl_seconds ({}) must not exceed refresh_absolute_ttl_seconds ({})",
            l.refresh_idle, l.refresh_absolute
        ));
    }
    Ok(())
}

/// RFC 7517 §5: `{"keys": [...]}`, each a public signing key we can verify with. Returns the set
/// with `alg` filled in where it was missing, so verification never guesses.
pub fn check_jwks(jwks: &Value) -> Result<Value, String> {
    let obj = jwks
        .as_object()
        .ok_or("jwks must be a JSON object {\"keys\": [...]}")?;
    if let Some(other) = obj.keys().find(|k| *k != "keys") {
        return Err(format!(
            "jwks has an unknown member {other:?}; it holds only \"keys\""
        ));
    }
    let keys = obj
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("jwks must have a \"keys\" array")?;
    if keys.is_empty() || keys.len() > MAX_KEYS {
        return Err(format!("jwks holds 1 to {MAX_KEYS} keys"));
    }
    let mut out: Vec<Value> = Vec::with_capacity(keys.len());
    for key in keys {
        let key = check_jwk(key)?;
        if out.iter().any(|k| k.get("kid") == key.get("kid")) {
            return Err(format!("jwks: the kid {} is used twice", key["kid"]));
        }
        out.push(Value::Object(key));
    }
    Ok(serde_json::json!({ "keys": out }))
}

fn check_jwk(key: &Value) -> Result<Map<String, Value>, String> {
    let obj = key.as_object().ok_or("jwks: every key is a JSON object")?;
    let kid = obj
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty() && k.len() <= 200 && !k.chars().any(char::is_control))
        .ok_or("jwks: every key needs a kid (1 to 200 characters)")?;
    // A private key sent to us is a leaked key: refuse it rather than store it.
    if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
        return Err(format!(
            "jwks: key {kid:?} has the private member {m:?}; register public keys only (and \
             treat this key as compromised)"
        ));
    }
    if let Some(u) = obj.get("use").filter(|u| u.as_str() != Some("sig")) {
        return Err(format!(
            "jwks: key {kid:?} has use {u}; client assertion keys are for \"sig\""
        ));
    }
    let alg = portcullis_crypto::jws::jwk_alg(key).ok_or_else(|| {
        format!(
            "jwks: key {kid:?} must be EC P-256 (ES256), OKP Ed25519 (EdDSA) or RSA (RS256), \
             with a matching alg if it has one"
        )
    })?;
    let bytes = |m: &str| {
        obj.get(m)
            .and_then(Value::as_str)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .ok_or_else(|| format!("jwks: key {kid:?} needs {m:?} in base64url"))
    };
    let exact = |m: &str, len: usize| {
        bytes(m).and_then(|b| {
            if b.len() == len {
                Ok(())
            } else {
                Err(format!("jwks: key {kid:?}: {m:?} must be {len} bytes"))
            }
        })
    };
    match alg {
        "ES256" => {
            exact("x", 32)?;
            exact("y", 32)?;
        }
        "EdDSA" => exact("x", 32)?,
        _ => {
            let bits = rsa_bits(&bytes("n")?);
            if !(2048..=8192).contains(&bits) {
                return Err(format!(
                    "jwks: key {kid:?} is a {bits}-bit RSA key; 2048 to 8192 bits are accepted"
                ));
            }
            if bytes("e")?.iter().all(|b| *b == 0) {
                return Err(format!("jwks: key {kid:?} has no RSA exponent"));
            }
        }
    }
    let mut out = obj.clone();
    out.entry("alg").or_insert_with(|| Value::from(alg));
    Ok(out)
}

/// The bit length of a big-endian unsigned integer.
fn rsa_bits(n: &[u8]) -> usize {
    let n: &[u8] = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => &[],
    };
    n.first()
        .map_or(0, |top| n.len() * 8 - top.leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::Timestamp;
    use portcullis_core::ids::{ClientId, EnvId, PrefixedId};
    use portcullis_core::oauth::{ExchangePolicy, TokenLifetimes};
    use serde_json::json;

    fn client() -> Client {
        Client {
            id: ClientId::from_parts("01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            env_id: EnvId::from_parts("01ARZ3NDEKTSV4RRFFQ69G5FAV"),
            name: "App".into(),
            kind: ClientKind::Confidential,
            auth_method: AuthMethod::ClientSecretBasic,
            redirect_uris: vec!["https://app.example.com/cb".into()],
            post_logout_redirect_uris: vec![],
            grant_types: default_grants(),
            scopes: default_scopes(),
            jwks: None,
            exchange: ExchangePolicy::default(),
            lifetimes: TokenLifetimes::default(),
            secret_digest: None,
            secret_created_at: None,
            secret_expires_at: None,
            previous_secret_digest: None,
            previous_secret_expires_at: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    fn b64(n: usize, first: u8) -> String {
        let mut v = vec![1u8; n];
        v[0] = first;
        URL_SAFE_NO_PAD.encode(v)
    }

    #[test]
    fn a_default_client_passes() {
        assert!(check_client(client()).is_ok());
    }

    #[test]
    fn each_rule_refuses() {
        type Change = Box<dyn Fn(&mut Client)>;
        let cases: Vec<(&str, Change)> = vec![
            ("public client", Box::new(|c| c.kind = ClientKind::Public)),
            (
                "confidential client",
                Box::new(|c| c.auth_method = AuthMethod::None),
            ),
            (
                "public client cannot use",
                Box::new(|c| {
                    c.kind = ClientKind::Public;
                    c.auth_method = AuthMethod::None;
                    c.grant_types.push(GrantType::ClientCredentials);
                }),
            ),
            ("redirect URI", Box::new(|c| c.redirect_uris.clear())),
            (
                "http is allowed only",
                Box::new(|c| c.redirect_uris = vec!["http://app.example.com/cb".into()]),
            ),
            (
                "wildcards",
                Box::new(|c| c.redirect_uris = vec!["https://*.example.com/cb".into()]),
            ),
            (
                "listed twice",
                Box::new(|c| {
                    c.redirect_uris
                        .push("https://app.example.com/cb".to_owned())
                }),
            ),
            (
                "at most 20",
                Box::new(|c| {
                    c.redirect_uris = (0..21).map(|i| format!("https://a.example/{i}")).collect()
                }),
            ),
            (
                "post_logout_redirect_uris",
                Box::new(|c| c.post_logout_redirect_uris = vec!["x".into()]),
            ),
            (
                "not a valid token",
                Box::new(|c| c.scopes.push("two words".into())),
            ),
            (
                "not a valid token",
                Box::new(|c| c.scopes.push("\"q\"".into())),
            ),
            (
                "not a valid token",
                Box::new(|c| c.scopes.push(String::new())),
            ),
            (
                "at most 50",
                Box::new(|c| c.scopes = (0..51).map(|i| format!("s{i}")).collect()),
            ),
            ("at least one grant", Box::new(|c| c.grant_types.clear())),
            (
                "needs jwks",
                Box::new(|c| c.auth_method = AuthMethod::PrivateKeyJwt),
            ),
            (
                "only for private_key_jwt",
                Box::new(|c| c.jwks = Some(json!({"keys": []}))),
            ),
            (
                "access_token_ttl_seconds",
                Box::new(|c| c.lifetimes.access_token = 59),
            ),
            (
                "id_token_ttl_seconds",
                Box::new(|c| c.lifetimes.id_token = 86_401),
            ),
            (
                "must not exceed",
                Box::new(|c| c.lifetimes.refresh_idle = c.lifetimes.refresh_absolute + 1),
            ),
            ("name", Box::new(|c| c.name = " ".into())),
        ];
        for (want, change) in cases {
            let mut c = client();
            change(&mut c);
            let err = check_client(c).expect_err(want);
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }

    #[test]
    fn jwks_rules() {
        let ec = json!({"kty": "EC", "crv": "P-256", "kid": "a", "x": b64(32, 1), "y": b64(32, 1)});
        let ed = json!({"kty": "OKP", "crv": "Ed25519", "kid": "b", "x": b64(32, 1)});
        let rsa = json!({"kty": "RSA", "kid": "c", "n": b64(256, 0x80), "e": "AQAB"});
        let set = check_jwks(&json!({ "keys": [ec, ed, rsa] })).unwrap();
        let algs: Vec<&str> = set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["alg"].as_str().unwrap())
            .collect();
        assert_eq!(algs, ["ES256", "EdDSA", "RS256"]);

        let with = |k: &Value, m: &str, v: Value| {
            let mut k = k.clone();
            k[m] = v;
            json!({ "keys": [k] })
        };
        let refused = [
            (with(&ec, "d", json!("AAAA")), "private member \"d\""),
            (with(&rsa, "p", json!("AAAA")), "private member \"p\""),
            (with(&rsa, "q", json!("AAAA")), "private member \"q\""),
            (with(&ec, "kid", json!("")), "kid"),
            (with(&ec, "crv", json!("P-384")), "must be EC P-256"),
            (with(&ec, "alg", json!("RS256")), "must be EC P-256"),
            (with(&ed, "x", json!(b64(31, 1))), "32 bytes"),
            (with(&rsa, "n", json!(b64(256, 0x7f))), "2047-bit"),
            (with(&ec, "use", json!("enc")), "use"),
            (json!({ "keys": [ec.clone(), ec.clone()] }), "used twice"),
            (json!({ "keys": [] }), "1 to 10 keys"),
            (json!({ "keys": [ec.clone()], "x": 1 }), "unknown member"),
            (json!([ec]), "JSON object"),
        ];
        for (jwks, want) in refused {
            let err = check_jwks(&jwks).expect_err(want);
            assert!(err.contains(want), "{want:?} not in {err:?}");
        }
    }
}
