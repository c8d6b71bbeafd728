//! Signed bundles: one file that carries an environment's configuration across the gap.
//!
//! Layout: a zstd-compressed tar holding exactly two regular files —
//! `manifest.dsse.json` (a DSSE envelope whose payload is the [`Manifest`]) and `config.toml`
//! (the payload). The manifest names the format, the target environment, a sequence number,
//! creation and expiry times, and the SHA-256 and size of every part.
//!
//! Invariants [`verify`] enforces, in this order, each refusal naming what is wrong:
//! 1. The file decompresses within size limits and the tar holds only the two expected regular
//!    files, once each (no links, directories, paths or extra entries — we never `unpack`).
//! 2. The envelope is well formed and of the manifest payload type.
//! 3. It carries a signature by a key the environment trusts, and that signature verifies over
//!    the DSSE pre-authentication encoding. Nothing in the manifest is believed before this.
//! 4. The manifest is of a known format, and every part matches its digest and size: a payload
//!    swapped in from another bundle, or a flipped byte, fails here.
//! 5. The manifest names this environment; it is not expired, nor created in the future.
//! 6. Its sequence number is above the last one applied: an older or the same bundle (rollback,
//!    replay) is refused.
//! 7. The payload is a valid configuration file.
//!
//! The zstd framing itself is not signed: a change to it either breaks decompression, the frame
//! checksum or the canonical tar form (refused), or leaves every signed byte the same (harmless;
//! the audited file digest still names the exact file).

use std::collections::BTreeMap;
use std::io::Read;

use portcullis_core::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{ConfigError, EnvConfig};
use crate::dsse::{self, Envelope};
use crate::publisher::{KeyFileError, PublisherKey, key_id};

pub const FORMAT: &str = "portcullis-bundle/1";
pub const PAYLOAD_TYPE: &str = "application/vnd.portcullis.bundle-manifest+json";
pub const MANIFEST: &str = "manifest.dsse.json";
pub const CONFIG: &str = "config.toml";
/// The compressed file and each unpacked part are bounded (a zstd bomb stops here).
pub const MAX_FILE: usize = 32 << 20;
pub const MAX_PART: u64 = 64 << 20;
/// Clock difference tolerated between the publisher and the environment.
const SKEW_SECONDS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    /// The target environment's ID (`env_…`).
    pub environment: String,
    /// Strictly increasing per environment.
    pub sequence: u64,
    pub created_at: String,
    pub expires_at: String,
    pub parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the file is larger than {} MiB", MAX_FILE >> 20)]
    TooLarge,
    #[error("the file is not a complete bundle (zstd-compressed tar): {0}")]
    Corrupt(String),
    #[error(
        "the bundle holds an unexpected entry {0:?} (only {MANIFEST} and {CONFIG}, each once, as regular files)"
    )]
    UnexpectedEntry(String),
    #[error("the bundle has no {0}")]
    MissingPart(String),
    #[error("the manifest envelope is invalid: {0}")]
    Envelope(String),
    #[error("the bundle is signed by {keys}, which this environment does not trust")]
    Untrusted { keys: String },
    #[error(
        "the signature by trusted key {0} does not verify: the manifest was altered or re-signed"
    )]
    BadSignature(String),
    #[error("the manifest is invalid: {0}")]
    Manifest(String),
    #[error("part {part}: its SHA-256 or size does not match the manifest (altered or swapped)")]
    Digest { part: String },
    #[error("the bundle is for environment {bundle}, not {target}")]
    WrongEnvironment { bundle: String, target: String },
    #[error("the bundle expired at {0}")]
    Expired(String),
    #[error("the bundle was created at {0}, in the future")]
    NotYetValid(String),
    #[error(
        "sequence {sequence} is not above the last applied sequence {last}: an older or replayed bundle"
    )]
    Sequence { sequence: u64, last: u64 },
    #[error("the configuration payload is invalid: {0}")]
    Config(ConfigError),
    #[error("signing failed: {0}")]
    Sign(String),
}

impl BundleError {
    /// A stable code for APIs and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLarge => "bundle_too_large",
            Self::Corrupt(_) => "bundle_corrupt",
            Self::UnexpectedEntry(_) => "bundle_unexpected_entry",
            Self::MissingPart(_) => "bundle_missing_part",
            Self::Envelope(_) => "bundle_envelope_invalid",
            Self::Untrusted { .. } => "bundle_untrusted_key",
            Self::BadSignature(_) => "bundle_signature_invalid",
            Self::Manifest(_) => "bundle_manifest_invalid",
            Self::Digest { .. } => "bundle_digest_mismatch",
            Self::WrongEnvironment { .. } => "bundle_wrong_environment",
            Self::Expired(_) => "bundle_expired",
            Self::NotYetValid(_) => "bundle_not_yet_valid",
            Self::Sequence { .. } => "bundle_sequence_not_newer",
            Self::Config(_) => "bundle_config_invalid",
            Self::Sign(_) => "bundle_sign_failed",
        }
    }
}

impl From<KeyFileError> for BundleError {
    fn from(e: KeyFileError) -> Self {
        Self::Sign(e.to_string())
    }
}

/// What to make a bundle of.
#[derive(Debug, Clone)]
pub struct NewBundle<'a> {
    pub environment: &'a str,
    pub sequence: u64,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub config: &'a str,
}

/// Builds and signs a bundle. The config is checked first: a bundle never carries a file that
/// every environment would refuse.
pub fn create(b: &NewBundle<'_>, key: &PublisherKey) -> Result<Vec<u8>, BundleError> {
    EnvConfig::parse(b.config).map_err(BundleError::Config)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        environment: b.environment.into(),
        sequence: b.sequence,
        created_at: b.created_at.to_rfc3339(),
        expires_at: b.expires_at.to_rfc3339(),
        parts: vec![Part {
            name: CONFIG.into(),
            sha256: portcullis_crypto::sha256_hex(b.config.as_bytes()),
            size: b.config.len() as u64,
        }],
    };
    let body =
        serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Sign(e.to_string()))?;
    let mut env = Envelope::encode(PAYLOAD_TYPE, &body);
    let sig = key.sign(&dsse::pae(PAYLOAD_TYPE, &body))?;
    env.signatures.push(dsse::Signature {
        keyid: key.key_id().to_owned(),
        sig: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, sig),
    });
    let envelope = serde_json::to_vec_pretty(&env).map_err(|e| BundleError::Sign(e.to_string()))?;
    pack(&[(MANIFEST, &envelope), (CONFIG, b.config.as_bytes())])
}

/// A tar of `files` (fixed metadata, so the same input gives the same bytes), zstd-compressed.
pub fn pack(files: &[(&str, &[u8])]) -> Result<Vec<u8>, BundleError> {
    let tar = tar_of(files)?;
    Ok(ruzstd::encoding::compress_to_vec(
        tar.as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    ))
}

fn tar_of(files: &[(&str, &[u8])]) -> Result<Vec<u8>, BundleError> {
    let mut t = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_entry_type(tar::EntryType::Regular);
        t.append_data(&mut h, name, *data)
            .map_err(|e| BundleError::Sign(e.to_string()))?;
    }
    t.into_inner().map_err(|e| BundleError::Sign(e.to_string()))
}

/// The files of a bundle, checked for shape only (step 1): name → bytes.
pub fn unpack(bytes: &[u8]) -> Result<BTreeMap<String, Vec<u8>>, BundleError> {
    if bytes.len() > MAX_FILE {
        return Err(BundleError::TooLarge);
    }
    let mut input = bytes;
    let mut tar = Vec::new();
    {
        let mut dec = ruzstd::decoding::StreamingDecoder::new(&mut input)
            .map_err(|e| BundleError::Corrupt(format!("zstd: {e}")))?;
        (&mut dec)
            .take(2 * MAX_PART + 1)
            .read_to_end(&mut tar)
            .map_err(|e| BundleError::Corrupt(format!("zstd: {e}")))?;
        // The frame's content checksum (which the decoder computes but leaves to us to compare).
        let f = &dec.decoder;
        if f.get_checksum_from_data() != f.get_calculated_checksum() {
            return Err(BundleError::Corrupt(
                "zstd: content checksum mismatch".into(),
            ));
        }
    }
    if !input.is_empty() {
        return Err(BundleError::Corrupt(
            "bytes follow the compressed data".into(),
        ));
    }
    let mut out = BTreeMap::new();
    let mut archive = tar::Archive::new(tar.as_slice());
    let entries = archive
        .entries()
        .map_err(|e| BundleError::Corrupt(format!("tar: {e}")))?;
    for entry in entries {
        let entry = entry.map_err(|e| BundleError::Corrupt(format!("tar: {e}")))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let regular = entry.header().entry_type() == tar::EntryType::Regular;
        if !regular || !(name == MANIFEST || name == CONFIG) || out.contains_key(&name) {
            return Err(BundleError::UnexpectedEntry(name));
        }
        let mut data = Vec::new();
        entry
            .take(MAX_PART + 1)
            .read_to_end(&mut data)
            .map_err(|e| BundleError::Corrupt(format!("tar: {e}")))?;
        if data.len() as u64 > MAX_PART {
            return Err(BundleError::TooLarge);
        }
        out.insert(name, data);
    }
    if out.is_empty() {
        return Err(BundleError::Corrupt("the archive is empty".into()));
    }
    // Bundles are written in one canonical form (fixed metadata, manifest first): anything else
    // in the archive — altered header fields, data in the padding — is refused, so that no byte
    // of an accepted file goes unchecked.
    let canonical = tar_of(
        &[MANIFEST, CONFIG]
            .iter()
            .filter_map(|n| out.get(*n).map(|d| (*n, d.as_slice())))
            .collect::<Vec<_>>(),
    )?;
    if canonical != tar {
        return Err(BundleError::Corrupt(
            "the archive is not in the canonical bundle form".into(),
        ));
    }
    Ok(out)
}

/// What the receiving side expects of a bundle.
#[derive(Debug, Clone)]
pub struct Expect<'a> {
    /// Public JWKs of the trusted publishers.
    pub trusted: &'a [Value],
    /// The environment it must target (`None`: offline check without one).
    pub environment: Option<&'a str>,
    /// The last sequence applied there (`None`: offline check without one).
    pub last_sequence: Option<u64>,
    pub now: Timestamp,
}

/// A bundle that passed every check.
#[derive(Debug, Clone)]
pub struct Verified {
    pub manifest: Manifest,
    pub config_text: String,
    pub config: EnvConfig,
    /// The publisher key that signed it.
    pub key_id: String,
    /// SHA-256 (hex) of the whole file: what the audit trail records.
    pub digest: String,
}

/// The SHA-256 of a bundle file, as audited.
pub fn digest(bytes: &[u8]) -> String {
    portcullis_crypto::sha256_hex(bytes)
}

/// Checks a bundle end to end (steps 1–7 in the module documentation).
pub fn verify(bytes: &[u8], expect: &Expect<'_>) -> Result<Verified, BundleError> {
    let parts = unpack(bytes)?;
    let raw = parts
        .get(MANIFEST)
        .ok_or_else(|| BundleError::MissingPart(MANIFEST.into()))?;
    // 2. The envelope.
    let env: Envelope =
        serde_json::from_slice(raw).map_err(|e| BundleError::Envelope(e.to_string()))?;
    if env.payload_type != PAYLOAD_TYPE {
        return Err(BundleError::Envelope(format!(
            "payload type {:?}, expected {PAYLOAD_TYPE}",
            env.payload_type
        )));
    }
    let body = env
        .payload_bytes()
        .ok_or_else(|| BundleError::Envelope("the payload is not base64".into()))?;
    // 3. A trusted signature.
    let trusted: Vec<(String, &Value)> = expect
        .trusted
        .iter()
        .filter_map(|k| key_id(k).map(|id| (id, k)))
        .collect();
    let signed_by: Vec<&dsse::Signature> = env
        .signatures
        .iter()
        .filter(|s| trusted.iter().any(|(id, _)| *id == s.keyid))
        .collect();
    let Some(sig) = signed_by.first() else {
        let keys = env
            .signatures
            .iter()
            .map(|s| s.keyid.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(BundleError::Untrusted {
            keys: if keys.is_empty() {
                "no key".into()
            } else {
                format!("key {keys}")
            },
        });
    };
    let jwk = trusted
        .iter()
        .find(|(id, _)| *id == sig.keyid)
        .map(|(_, k)| *k)
        .ok_or_else(|| BundleError::BadSignature(sig.keyid.clone()))?;
    let raw_sig = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &sig.sig)
        .map_err(|_| BundleError::BadSignature(sig.keyid.clone()))?;
    if !portcullis_crypto::jws::verify_raw(jwk, &dsse::pae(PAYLOAD_TYPE, &body), &raw_sig) {
        return Err(BundleError::BadSignature(sig.keyid.clone()));
    }
    // 4. The manifest and every part.
    let manifest: Manifest =
        serde_json::from_slice(&body).map_err(|e| BundleError::Manifest(e.to_string()))?;
    if manifest.format != FORMAT {
        return Err(BundleError::Manifest(format!(
            "format {:?} is not {FORMAT}",
            manifest.format
        )));
    }
    if manifest.parts.len() != 1 || manifest.parts[0].name != CONFIG {
        return Err(BundleError::Manifest(format!(
            "it must list exactly one part, {CONFIG}"
        )));
    }
    for p in &manifest.parts {
        let data = parts
            .get(&p.name)
            .ok_or_else(|| BundleError::MissingPart(p.name.clone()))?;
        if data.len() as u64 != p.size || portcullis_crypto::sha256_hex(data) != p.sha256 {
            return Err(BundleError::Digest {
                part: p.name.clone(),
            });
        }
    }
    if parts.len() != manifest.parts.len() + 1 {
        return Err(BundleError::UnexpectedEntry(
            "(a part the manifest does not list)".into(),
        ));
    }
    // 5. Target and validity period.
    if let Some(target) = expect.environment
        && manifest.environment != target
    {
        return Err(BundleError::WrongEnvironment {
            bundle: manifest.environment.clone(),
            target: target.to_owned(),
        });
    }
    let time = |s: &str, what: &str| {
        Timestamp::parse_rfc3339(s)
            .ok_or_else(|| BundleError::Manifest(format!("{what} {s:?} is not an RFC 3339 time")))
    };
    let created = time(&manifest.created_at, "created_at")?;
    let expires = time(&manifest.expires_at, "expires_at")?;
    if expires <= expect.now {
        return Err(BundleError::Expired(manifest.expires_at.clone()));
    }
    if created.millis() > expect.now.millis() + SKEW_SECONDS * 1000 {
        return Err(BundleError::NotYetValid(manifest.created_at.clone()));
    }
    // 6. Rollback and replay.
    if let Some(last) = expect.last_sequence
        && manifest.sequence <= last
    {
        return Err(BundleError::Sequence {
            sequence: manifest.sequence,
            last,
        });
    }
    // 7. The payload.
    let config_text = String::from_utf8(parts.get(CONFIG).cloned().unwrap_or_default())
        .map_err(|_| BundleError::Config(ConfigError::Syntax("not UTF-8".into())))?;
    let config = EnvConfig::parse(&config_text).map_err(BundleError::Config)?;
    Ok(Verified {
        key_id: sig.keyid.clone(),
        manifest,
        config_text,
        config,
        digest: digest(bytes),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_core::model::SigningAlg;

    const ENV: &str = "env_01target";
    const CONFIG_A: &str = "version = 1\n[[organizations]]\nname = \"A\"\n";
    const CONFIG_B: &str = "version = 1\n[[organizations]]\nname = \"B\"\n";

    fn now() -> Timestamp {
        Timestamp(1_800_000_000_000)
    }

    fn make(key: &PublisherKey, seq: u64, config: &str) -> Vec<u8> {
        create(
            &NewBundle {
                environment: ENV,
                sequence: seq,
                created_at: now(),
                expires_at: now().plus_seconds(86_400),
                config,
            },
            key,
        )
        .unwrap()
    }

    fn expect<'a>(trusted: &'a [Value], last: u64) -> Expect<'a> {
        Expect {
            trusted,
            environment: Some(ENV),
            last_sequence: Some(last),
            now: now(),
        }
    }

    /// The bundle rebuilt with `f` applied to its unpacked files.
    fn tamper(bytes: &[u8], f: impl FnOnce(&mut BTreeMap<String, Vec<u8>>)) -> Vec<u8> {
        let mut parts = unpack(bytes).unwrap();
        f(&mut parts);
        // The manifest first, as `create` writes it.
        let mut files: Vec<(&str, &[u8])> = parts
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        files.sort_by_key(|(k, _)| *k != MANIFEST);
        pack(&files).unwrap()
    }

    #[test]
    fn a_good_bundle_verifies_with_either_algorithm() {
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256] {
            let (key, _) = PublisherKey::generate(alg).unwrap();
            let trusted = [key.public_jwk().clone()];
            let b = make(&key, 7, CONFIG_A);
            let v = verify(&b, &expect(&trusted, 6)).unwrap();
            assert_eq!(v.manifest.sequence, 7);
            assert_eq!(v.key_id, key.key_id());
            assert_eq!(v.digest, digest(&b));
            assert_eq!(v.config.organizations[0].name, "A");
        }
    }

    #[test]
    fn every_kind_of_tampering_is_refused_with_its_own_code() {
        let (key, _) = PublisherKey::generate(SigningAlg::EdDSA).unwrap();
        let (other, _) = PublisherKey::generate(SigningAlg::EdDSA).unwrap();
        let trusted = [key.public_jwk().clone()];
        let good = make(&key, 5, CONFIG_A);
        let code = |b: &[u8], last: u64| verify(b, &expect(&trusted, last)).unwrap_err().code();

        // A byte flipped inside the payload, inside the signed manifest, inside the signature.
        let flipped_config = tamper(&good, |p| p.get_mut(CONFIG).unwrap()[12] ^= 1);
        assert_eq!(code(&flipped_config, 0), "bundle_digest_mismatch");
        let flipped_manifest = tamper(&good, |p| {
            let mut env: Envelope = serde_json::from_slice(&p[MANIFEST]).unwrap();
            let mut body = env.payload_bytes().unwrap();
            let i = body.iter().position(|&c| c == b'5').unwrap(); // the sequence number
            body[i] = b'9';
            env.payload = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, body);
            p.insert(MANIFEST.into(), serde_json::to_vec(&env).unwrap());
        });
        assert_eq!(code(&flipped_manifest, 0), "bundle_signature_invalid");
        let flipped_sig = tamper(&good, |p| {
            let mut env: Envelope = serde_json::from_slice(&p[MANIFEST]).unwrap();
            let mut sig = env.signatures[0].sig.clone().into_bytes();
            sig[3] = if sig[3] == b'A' { b'B' } else { b'A' };
            env.signatures[0].sig = String::from_utf8(sig).unwrap();
            p.insert(MANIFEST.into(), serde_json::to_vec(&env).unwrap());
        });
        assert_eq!(code(&flipped_sig, 0), "bundle_signature_invalid");

        // Payloads swapped between two genuine bundles.
        let other_bundle = make(&key, 6, CONFIG_B);
        let swapped = tamper(&good, |p| {
            p.insert(
                CONFIG.into(),
                unpack(&other_bundle).unwrap()[CONFIG].clone(),
            );
        });
        assert_eq!(code(&swapped, 0), "bundle_digest_mismatch");

        // Re-signed (say, after re-targeting) by a key the environment does not trust.
        let resigned = make(&other, 5, CONFIG_A);
        assert_eq!(code(&resigned, 0), "bundle_untrusted_key");

        // Re-targeted without re-signing: the signature breaks; with a good signature for
        // another environment: refused by name.
        let elsewhere = create(
            &NewBundle {
                environment: "env_01other",
                sequence: 5,
                created_at: now(),
                expires_at: now().plus_seconds(60),
                config: CONFIG_A,
            },
            &key,
        )
        .unwrap();
        let e = verify(&elsewhere, &expect(&trusted, 0)).unwrap_err();
        assert_eq!(e.code(), "bundle_wrong_environment");
        assert!(e.to_string().contains("env_01other"), "{e}");

        // Replay and rollback.
        assert_eq!(code(&good, 5), "bundle_sequence_not_newer");
        assert_eq!(code(&good, 9), "bundle_sequence_not_newer");

        // Expired.
        let late = Expect {
            now: now().plus_seconds(86_401),
            ..expect(&trusted, 0)
        };
        assert_eq!(verify(&good, &late).unwrap_err().code(), "bundle_expired");

        // Truncated at every length, and raw bytes flipped across the whole file: never accepted.
        for n in [0, 1, good.len() / 3, good.len() / 2, good.len() - 1] {
            assert!(
                verify(&good[..n], &expect(&trusted, 0)).is_err(),
                "truncated to {n}"
            );
        }
        // Raw flips anywhere in the file: refused, unless the flip only changed the compression
        // framing (a larger window size, say) and every signed byte came out the same.
        let original = verify(&good, &expect(&trusted, 0)).unwrap();
        let mut harmless = 0;
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x20;
            if let Ok(v) = verify(&b, &expect(&trusted, 0)) {
                assert_eq!(v.manifest, original.manifest, "byte {i} flipped");
                assert_eq!(v.config_text, original.config_text, "byte {i} flipped");
                harmless += 1;
            }
        }
        assert!(harmless < good.len() / 20, "{harmless} flips accepted");
        let mut longer = good.clone();
        longer.extend_from_slice(b"trailing");
        assert_eq!(code(&longer, 0), "bundle_corrupt");
    }

    #[test]
    fn only_the_two_regular_files_are_accepted() {
        let (key, _) = PublisherKey::generate(SigningAlg::EdDSA).unwrap();
        let trusted = [key.public_jwk().clone()];
        let good = make(&key, 1, CONFIG_A);
        let extra = tamper(&good, |p| {
            p.insert("extra.txt".into(), b"x".to_vec());
        });
        assert_eq!(
            verify(&extra, &expect(&trusted, 0)).unwrap_err().code(),
            "bundle_unexpected_entry"
        );
        let no_config = tamper(&good, |p| {
            p.remove(CONFIG);
        });
        assert_eq!(
            verify(&no_config, &expect(&trusted, 0)).unwrap_err().code(),
            "bundle_missing_part"
        );
        // A symbolic link named like a part.
        let mut t = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        t.append_link(&mut h, CONFIG, "/etc/passwd").unwrap();
        let tar = t.into_inner().unwrap();
        let link = ruzstd::encoding::compress_to_vec(
            tar.as_slice(),
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(
            verify(&link, &expect(&trusted, 0)).unwrap_err().code(),
            "bundle_unexpected_entry"
        );
    }

    #[test]
    fn an_invalid_config_is_never_bundled() {
        let (key, _) = PublisherKey::generate(SigningAlg::EdDSA).unwrap();
        let e = create(
            &NewBundle {
                environment: ENV,
                sequence: 1,
                created_at: now(),
                expires_at: now().plus_seconds(60),
                config: "version = 1\nbogus = 1\n",
            },
            &key,
        )
        .unwrap_err();
        assert_eq!(e.code(), "bundle_config_invalid");
    }
}
