//! Prefixed, sortable identifiers (`env_…`, `org_…`, `evt_…`).
//!
//! An ID is a type prefix, `_`, and 26 Crockford base32 characters encoding 48 bits of milliseconds
//! and 80 random bits (the ULID layout), so IDs of one kind sort by creation time as strings. The
//! prefix makes a pasted ID self-describing and lets the API refuse an `org_` where an `env_` belongs.

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

/// A source of random bytes. The system implementation lives in the crypto crate.
pub trait Random: Send + Sync + 'static {
    fn fill(&self, buf: &mut [u8]);
}

const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Whether `b` is in [`CROCKFORD`] (no I, L, O, U), as ranges: client authentication parses an
/// ID on every token request.
fn is_crockford(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'A'..=b'H' | b'J' | b'K' | b'M' | b'N' | b'P'..=b'T' | b'V'..=b'Z')
}

/// Generates IDs from a clock reading and a random source.
pub struct IdGen<'a> {
    pub random: &'a dyn Random,
}

impl IdGen<'_> {
    pub fn ulid(&self, now: Timestamp) -> String {
        let mut rnd = [0u8; 10];
        self.random.fill(&mut rnd);
        encode_ulid(now, rnd)
    }
    pub fn new_id<T: PrefixedId>(&self, now: Timestamp) -> T {
        T::from_parts(&self.ulid(now))
    }
}

pub fn encode_ulid(now: Timestamp, rnd: [u8; 10]) -> String {
    let ms = u128::try_from(now.millis().max(0)).unwrap_or(0) & ((1u128 << 48) - 1);
    let mut value = ms << 80;
    for (i, b) in rnd.iter().enumerate() {
        value |= u128::from(*b) << (8 * (9 - i));
    }
    let mut out = [0u8; 26];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (25 - i);
        let idx = usize::try_from((value >> shift) & 0x1f).unwrap_or(0);
        *slot = CROCKFORD[idx];
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An ID newtype with a fixed prefix.
pub trait PrefixedId: Sized {
    const PREFIX: &'static str;
    fn from_parts(ulid: &str) -> Self;
    fn as_str(&self) -> &str;
    /// Accepts `prefix_` followed by 26 Crockford characters, nothing else.
    fn parse(s: &str) -> Option<Self>;
}

macro_rules! prefixed_id {
    ($(#[$m:meta])* $name:ident, $prefix:literal) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl PrefixedId for $name {
            const PREFIX: &'static str = $prefix;
            fn from_parts(ulid: &str) -> Self {
                Self(format!("{}_{}", $prefix, ulid))
            }
            fn as_str(&self) -> &str {
                &self.0
            }
            fn parse(s: &str) -> Option<Self> {
                let rest = s.strip_prefix(concat!($prefix, "_"))?;
                (rest.len() == 26 && rest.bytes().all(is_crockford))
                    .then(|| Self(s.to_owned()))
            }
        }

        impl $name {
            /// Wraps a value read back from storage, where it was validated on the way in.
            pub fn from_stored(s: String) -> Self {
                Self(s)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

prefixed_id!(/// An environment.
    EnvId, "env");
prefixed_id!(/// An organization.
    OrgId, "org");
prefixed_id!(/// An admin or environment API key.
    ApiKeyId, "key");
prefixed_id!(/// A signing key; also its JWK `kid`.
    SigningKeyId, "sk");
prefixed_id!(/// An event in an environment's log.
    EventId, "evt");
prefixed_id!(/// An OAuth client.
    ClientId, "client");
prefixed_id!(/// A local (password) user.
    UserId, "user");
prefixed_id!(/// A pending authorization request.
    AuthRequestId, "authreq");
prefixed_id!(/// An SSO connection of an organization.
    ConnectionId, "conn");
prefixed_id!(/// A profile yielded by an SSO connection.
    ProfileId, "prof");
prefixed_id!(/// A refresh-token family (one sign-in's grant to one client).
    FamilyId, "grant");
prefixed_id!(/// A webhook endpoint of an environment.
    WebhookId, "whk");
prefixed_id!(/// One event's delivery to one webhook endpoint (the outbox row).
    DeliveryId, "dlv");

#[cfg(test)]
mod tests {
    use super::*;

    struct Counter(std::sync::atomic::AtomicU8);
    impl Random for Counter {
        fn fill(&self, buf: &mut [u8]) {
            for b in buf {
                *b = self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    #[test]
    fn ids_sort_by_time_and_parse_back() {
        let r = Counter(Default::default());
        let g = IdGen { random: &r };
        let a: OrgId = g.new_id(Timestamp(1_000));
        let b: OrgId = g.new_id(Timestamp(2_000));
        assert!(a < b);
        assert_eq!(OrgId::parse(a.as_str()), Some(a.clone()));
        assert_eq!(EnvId::parse(a.as_str()), None, "prefix must match");
        assert_eq!(OrgId::parse("org_short"), None);
        assert_eq!(OrgId::parse(&format!("{}!", a.as_str())), None);
    }

    #[test]
    fn crockford_ranges_match_the_alphabet() {
        for b in 0..=u8::MAX {
            assert_eq!(is_crockford(b), CROCKFORD.contains(&b), "byte {b}");
        }
    }
}
