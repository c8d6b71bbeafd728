//! Standard Webhooks signing (standardwebhooks.com, "Signature scheme").
//!
//! - `webhook-id`: the message's unique ID, the same on every attempt: we send the event ID, so a
//!   receiver that also pulls the Events API can deduplicate across both;
//! - `webhook-timestamp`: integer seconds since the epoch at the attempt;
//! - `webhook-signature`: space-separated `v1,<base64 HMAC-SHA256>` signatures of
//!   `{id}.{timestamp}.{body}`, one per valid secret — the current one and, while a rotation
//!   overlaps, the previous one — so a receiver holding either secret verifies;
//! - secrets are `whsec_` followed by the base64 (standard alphabet) of 32 random bytes.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use portcullis_core::{Random, Secret};

pub const SECRET_PREFIX: &str = "whsec_";
pub const HEADER_ID: &str = "webhook-id";
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// A new `whsec_` secret (256 bits).
pub fn generate_secret(random: &dyn Random) -> Secret {
    let mut b = [0u8; 32];
    random.fill(&mut b);
    Secret::new(format!("{SECRET_PREFIX}{}", STANDARD.encode(b)))
}

/// The key bytes of a `whsec_` secret.
pub fn secret_key(secret: &str) -> Option<Vec<u8>> {
    let b = STANDARD.decode(secret.strip_prefix(SECRET_PREFIX)?).ok()?;
    (b.len() >= 24 && b.len() <= 64).then_some(b)
}

/// One `v1,<signature>` for `key`.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(msg_id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// The three Standard Webhooks headers, signed with every key in `keys` (current first).
pub fn headers(
    keys: &[Vec<u8>],
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
) -> [(String, String); 3] {
    let sigs: Vec<String> = keys
        .iter()
        .map(|k| sign(k, msg_id, timestamp, body))
        .collect();
    [
        (HEADER_ID.into(), msg_id.to_owned()),
        (HEADER_TIMESTAMP.into(), timestamp.to_string()),
        (HEADER_SIGNATURE.into(), sigs.join(" ")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_specification_example() {
        // The example of the Standard Webhooks reference implementations.
        let key = secret_key("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            sign(
                &key,
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1_649_367_553,
                br#"{"email":"test@example.com","username":"test_user"}"#
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
        let s = generate_secret(&portcullis_crypto::SystemRandom);
        assert!(secret_key(s.expose()).is_some_and(|k| k.len() == 32));
        assert!(secret_key("whsec_short").is_none());
        let h = headers(&[key.clone(), vec![7; 32]], "evt_1", 5, b"{}");
        assert_eq!(h[2].1.split(' ').count(), 2);
    }
}
