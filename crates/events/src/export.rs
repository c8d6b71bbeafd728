//! Offline export: a self-describing, signed file of an environment's events that can be carried
//! out of an isolated network and checked on the other side with nothing but the file (and,
//! better, a JWKS the operator already trusts).
//!
//! ```json
//! { "format": "portcullis.events-export.v1",
//!   "environment": { "id": "env_…", "slug": "plant", "issuer": "https://…/e/plant" },
//!   "exported_at": "2026-…Z",
//!   "cursor": { "after": "evt_…" | null, "after_sequence": 0, "last": "evt_…" | null,
//!               "last_sequence": 42, "has_more": false },
//!   "events": [ { …the event object… } ],
//!   "jwks": { "keys": [ … ] },
//!   "signature": "<compact JWS>" }
//! ```
//! The JWS (signed by the environment's active key, `kid` in its header) carries every field but
//! `events`, `jwks` and `signature`, plus `events_sha256`: the base64url SHA-256 of the canonical
//! JSON of the `events` array (object keys sorted, no whitespace). Verifying checks the
//! signature, that the signed fields equal the file's, and the digest of the events. A consumer
//! resumes from `cursor.last`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use portcullis_crypto::SigningKey;
use serde_json::{Map, Value, json};

pub const FORMAT: &str = "portcullis.events-export.v1";
const JWS_TYP: &str = "portcullis-events-export+jws";

/// JSON with object keys sorted at every level and no insignificant whitespace.
pub fn canonical_json(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .into_iter()
                .map(|k| {
                    format!(
                        "{}:{}",
                        Value::String(k.clone()),
                        canonical_json(&m[k.as_str()])
                    )
                })
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(canonical_json).collect::<Vec<_>>().join(",")
        ),
        other => other.to_string(),
    }
}

/// base64url SHA-256 of the canonical `events` array.
pub fn events_digest(events: &[Value]) -> String {
    URL_SAFE_NO_PAD.encode(portcullis_crypto::secrets::sha256(
        canonical_json(&Value::Array(events.to_vec())).as_bytes(),
    ))
}

/// What goes into a file.
pub struct ExportInput {
    pub environment: Value,
    pub exported_at: String,
    pub cursor: Value,
    pub events: Vec<Value>,
    pub jwks: Value,
}

/// The signed fields of a document.
fn claims(doc: &Map<String, Value>, digest: &str) -> Value {
    json!({
        "format": doc.get("format"), "environment": doc.get("environment"),
        "exported_at": doc.get("exported_at"), "cursor": doc.get("cursor"),
        "count": doc.get("events").and_then(Value::as_array).map_or(0, Vec::len),
        "events_sha256": digest,
    })
}

/// Builds and signs an export document.
pub fn build(input: ExportInput, key: &SigningKey) -> Result<Value, portcullis_crypto::KeyError> {
    let digest = events_digest(&input.events);
    let mut doc = Map::new();
    doc.insert("format".into(), json!(FORMAT));
    doc.insert("environment".into(), input.environment);
    doc.insert("exported_at".into(), json!(input.exported_at));
    doc.insert("cursor".into(), input.cursor);
    doc.insert("events".into(), Value::Array(input.events));
    let signature = key.sign_compact(Some(JWS_TYP), &claims(&doc, &digest))?;
    doc.insert("jwks".into(), input.jwks);
    doc.insert("signature".into(), json!(signature));
    Ok(Value::Object(doc))
}

/// Which keys a verification trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    /// The JWKS the operator supplied (`--jwks`): the file's own keys were not used.
    Trusted,
    /// The JWKS inside the file: proves integrity and origin only as far as the file itself is
    /// trusted; compare its key with one obtained another way.
    Embedded,
}

/// A file that verified.
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub environment: Value,
    pub cursor: Value,
    pub count: usize,
    pub kid: String,
    pub key_source: KeySource,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not an events export file: {0}")]
    Format(String),
    #[error("no key {0:?} in the {1} JWKS")]
    UnknownKey(String, &'static str),
    #[error("the signature does not verify with key {0}")]
    BadSignature(String),
    #[error("the signed {0} does not match the file's")]
    Mismatch(&'static str),
    #[error("the events were altered: their digest does not match the signed one")]
    EventsAltered,
}

/// Verifies `doc` with `trusted` when given, else with the JWKS embedded in it.
pub fn verify(doc: &Value, trusted: Option<&Value>) -> Result<Verified, VerifyError> {
    let fmt = |m: &str| VerifyError::Format(m.to_owned());
    let obj = doc.as_object().ok_or_else(|| fmt("not a JSON object"))?;
    if obj.get("format").and_then(Value::as_str) != Some(FORMAT) {
        return Err(fmt(&format!("format is not {FORMAT}")));
    }
    let events = obj
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| fmt("no events array"))?;
    let jws = obj
        .get("signature")
        .and_then(Value::as_str)
        .ok_or_else(|| fmt("no signature"))?;
    let header: Value = jws
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| fmt("the signature is not a compact JWS"))?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or_else(|| fmt("the signature names no kid"))?
        .to_owned();
    let (jwks, source, label) = match trusted {
        Some(t) => (t, KeySource::Trusted, "trusted"),
        None => (
            obj.get("jwks").ok_or_else(|| fmt("no jwks"))?,
            KeySource::Embedded,
            "embedded",
        ),
    };
    let jwk = jwks
        .get("keys")
        .and_then(Value::as_array)
        .and_then(|ks| {
            ks.iter()
                .find(|k| k.get("kid").and_then(Value::as_str) == Some(&kid))
        })
        .ok_or_else(|| VerifyError::UnknownKey(kid.clone(), label))?;
    let (h, payload) = portcullis_crypto::jws::verify_with_key(jwk, jws)
        .ok_or_else(|| VerifyError::BadSignature(kid.clone()))?;
    if h.get("typ").and_then(Value::as_str) != Some(JWS_TYP) {
        return Err(VerifyError::BadSignature(kid));
    }
    let digest = events_digest(events);
    let expected = claims(obj, &digest);
    for field in ["format", "environment", "exported_at", "cursor", "count"] {
        if payload.get(field) != expected.get(field) {
            return Err(VerifyError::Mismatch(field));
        }
    }
    if payload.get("events_sha256") != expected.get("events_sha256") {
        return Err(VerifyError::EventsAltered);
    }
    Ok(Verified {
        environment: obj.get("environment").cloned().unwrap_or(Value::Null),
        cursor: obj.get("cursor").cloned().unwrap_or(Value::Null),
        count: events.len(),
        kid,
        key_source: source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::model::SigningAlg;

    fn key(kid: &str) -> SigningKey {
        let der = portcullis_crypto::jws::generate_pkcs8(SigningAlg::ES256).unwrap();
        SigningKey::from_pkcs8(kid, SigningAlg::ES256, &der).unwrap()
    }

    #[test]
    fn a_document_verifies_and_any_change_is_caught() {
        let k = key("sk_1");
        let jwks = json!({ "keys": [k.public_jwk()] });
        let doc = build(
            ExportInput {
                environment: json!({ "id": "env_1", "slug": "plant", "issuer": "https://x/e/plant" }),
                exported_at: "2026-01-01T00:00:00.000Z".into(),
                cursor: json!({ "after": null, "last": "evt_2" }),
                events: vec![json!({ "id": "evt_1", "data": { "b": 1, "a": "é" } }), json!({ "id": "evt_2" })],
                jwks: jwks.clone(),
            },
            &k,
        )
        .unwrap();
        let text = serde_json::to_string_pretty(&doc).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        let v = verify(&back, None).unwrap();
        assert_eq!((v.count, v.key_source), (2, KeySource::Embedded));
        assert_eq!(
            verify(&back, Some(&jwks)).unwrap().key_source,
            KeySource::Trusted
        );
        let other = json!({ "keys": [key("sk_1").public_jwk()] });
        assert_eq!(
            verify(&back, Some(&other)),
            Err(VerifyError::BadSignature("sk_1".into()))
        );
        let mut altered = back.clone();
        altered["events"][0]["data"]["b"] = json!(2);
        assert_eq!(verify(&altered, None), Err(VerifyError::EventsAltered));
        let mut moved = back.clone();
        moved["cursor"]["last"] = json!("evt_9");
        assert_eq!(verify(&moved, None), Err(VerifyError::Mismatch("cursor")));
        assert_eq!(
            canonical_json(&json!({"b": [1, {"d": 1, "c": 2}], "a": null})),
            r#"{"a":null,"b":[1,{"c":2,"d":1}]}"#
        );
    }
}
