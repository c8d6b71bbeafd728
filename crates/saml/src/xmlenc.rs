//! `EncryptedAssertion` decryption (SAML core §2.3.4, §6.2; XML Encryption 1.1 §4.4).
//!
//! Key transport is RSA-OAEP only (`rsa-oaep-mgf1p`, or `xmlenc11#rsa-oaep` with matching
//! digest and MGF1 hash): RSA PKCS#1 v1.5 key transport is refused outright (Bleichenbacher).
//! Content encryption is AES-GCM or AES-CBC (XML Encryption padding, ISO 10126). All
//! primitives are aws-lc-rs. Every failure is the same `decryption_failed`, with detail only in
//! the message, so the outcome of a CBC padding check is not told apart from a bad key.

use aws_lc_rs::aead::{AES_128_GCM, AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::cipher::{
    AES_128, AES_256, DecryptionContext, PaddedBlockDecryptingKey, UnboundCipherKey,
};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512,
    OaepAlgorithm, OaepPrivateDecryptingKey, PrivateDecryptingKey,
};

use crate::cert::{SpKey, decode_base64_lenient};
use crate::error::{SamlError, SamlErrorCode};
use crate::ns;
use crate::xml::El;

fn failed(message: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::DecryptionFailed, message)
}

#[derive(Clone, Copy)]
enum Content {
    Gcm(&'static aws_lc_rs::aead::Algorithm, usize),
    Cbc(&'static aws_lc_rs::cipher::Algorithm, usize),
}

/// Decrypts the `EncryptedData` inside `encrypted` (an `EncryptedAssertion`) and returns the
/// plaintext XML of the element it held.
pub(crate) fn decrypt_element(encrypted: El<'_>, key: Option<&SpKey>) -> Result<String, SamlError> {
    let key = key.ok_or_else(|| {
        failed("the assertion is encrypted but the connection has no SP encryption key")
    })?;
    // §4.4 step 1: the algorithm and parameters.
    let data = encrypted
        .single_child(ns::XENC, "EncryptedData")?
        .ok_or_else(|| failed("EncryptedAssertion without xenc:EncryptedData"))?;
    if let Some(kind) = data.attr("Type")
        && kind != ns::ENC_TYPE_ELEMENT
    {
        return Err(failed(format!("EncryptedData of type {kind} refused")));
    }
    let method = data
        .child(ns::XENC, "EncryptionMethod")
        .and_then(|m| m.attr("Algorithm"))
        .ok_or_else(|| failed("EncryptedData without EncryptionMethod"))?;
    let content = match method {
        ns::AES128_GCM => Content::Gcm(&AES_128_GCM, 16),
        ns::AES256_GCM => Content::Gcm(&AES_256_GCM, 32),
        ns::AES128_CBC => Content::Cbc(&AES_128, 16),
        ns::AES256_CBC => Content::Cbc(&AES_256, 32),
        other => {
            return Err(failed(format!(
                "content encryption {other} is not supported"
            )));
        }
    };
    // Step 2: the content-encryption key, from an EncryptedKey in the EncryptedData's KeyInfo
    // or beside the EncryptedData (SAML core §6.2 allows both placements).
    let mut candidates: Vec<El<'_>> = Vec::new();
    if let Some(ki) = data.child(ns::DS, "KeyInfo") {
        candidates.extend(ki.children_named(ns::XENC, "EncryptedKey"));
    }
    candidates.extend(encrypted.children_named(ns::XENC, "EncryptedKey"));
    if candidates.is_empty() {
        return Err(failed("no xenc:EncryptedKey for the content key"));
    }
    let rsa = PrivateDecryptingKey::from_pkcs8(&key.private_pkcs8_der)
        .map_err(|e| failed(format!("SP encryption key unusable: {e}")))
        .and_then(|k| {
            OaepPrivateDecryptingKey::new(k)
                .map_err(|e| failed(format!("SP encryption key unusable: {e}")))
        })?;
    let mut last_error = failed("no EncryptedKey could be decrypted");
    let mut session_key = None;
    for candidate in candidates {
        match unwrap_key(candidate, &rsa) {
            Ok(k) => {
                session_key = Some(k);
                break;
            }
            Err(e) => last_error = e,
        }
    }
    let session_key = session_key.ok_or(last_error)?;
    // Steps 3–4: decrypt the cipher data.
    let cipher = cipher_value(data)?;
    let plaintext = match content {
        Content::Gcm(alg, len) => {
            check_len(&session_key, len)?;
            // XML Encryption 1.1 §5.2.4: 96-bit IV, then ciphertext, then 128-bit tag.
            if cipher.len() < 12 + 16 {
                return Err(failed("AES-GCM cipher data too short"));
            }
            let (iv, sealed) = cipher.split_at(12);
            let k = UnboundKey::new(alg, &session_key)
                .map(LessSafeKey::new)
                .map_err(|_| failed("bad AES-GCM key"))?;
            let nonce = Nonce::try_assume_unique_for_key(iv).map_err(|_| failed("bad IV"))?;
            let mut in_out = sealed.to_vec();
            let plain = k
                .open_in_place(nonce, Aad::empty(), &mut in_out)
                .map_err(|_| failed("AES-GCM authentication failed"))?;
            plain.to_vec()
        }
        Content::Cbc(alg, len) => {
            check_len(&session_key, len)?;
            // §5.2.1: 128-bit IV, then ciphertext padded per ISO 10126.
            if cipher.len() < 32 || cipher.len() % 16 != 0 {
                return Err(failed("AES-CBC cipher data has a bad length"));
            }
            let (iv, body) = cipher.split_at(16);
            let iv: [u8; 16] = iv.try_into().map_err(|_| failed("bad IV"))?;
            let k = UnboundCipherKey::new(alg, &session_key)
                .and_then(PaddedBlockDecryptingKey::cbc_iso10126)
                .map_err(|_| failed("bad AES-CBC key"))?;
            let mut in_out = body.to_vec();
            let plain = k
                .decrypt(&mut in_out, DecryptionContext::Iv128(iv.into()))
                .map_err(|_| failed("AES-CBC decryption failed"))?;
            plain.to_vec()
        }
    };
    String::from_utf8(plaintext).map_err(|_| failed("decrypted assertion is not UTF-8"))
}

fn check_len(key: &[u8], expected: usize) -> Result<(), SamlError> {
    if key.len() == expected {
        Ok(())
    } else {
        Err(failed("content key has the wrong length"))
    }
}

fn cipher_value(parent: El<'_>) -> Result<Vec<u8>, SamlError> {
    let cipher_data = parent
        .single_child(ns::XENC, "CipherData")?
        .ok_or_else(|| failed("no xenc:CipherData"))?;
    let value = cipher_data
        .single_child(ns::XENC, "CipherValue")?
        .ok_or_else(|| failed("no xenc:CipherValue (CipherReference is not supported)"))?;
    decode_base64_lenient(&value.text()).ok_or_else(|| failed("CipherValue is not base64"))
}

fn unwrap_key(encrypted_key: El<'_>, rsa: &OaepPrivateDecryptingKey) -> Result<Vec<u8>, SamlError> {
    let method = encrypted_key
        .child(ns::XENC, "EncryptionMethod")
        .ok_or_else(|| failed("EncryptedKey without EncryptionMethod"))?;
    let digest = method
        .child(ns::DS, "DigestMethod")
        .and_then(|d| d.attr("Algorithm"));
    let mgf = method
        .child(ns::XENC11, "MGF")
        .and_then(|d| d.attr("Algorithm"));
    if method.child(ns::XENC, "OAEPparams").is_some() {
        return Err(failed("OAEPparams are not supported"));
    }
    let oaep: &'static OaepAlgorithm = match method.attr("Algorithm").unwrap_or("") {
        // §5.5.2: the MGF is always MGF1 with SHA-1; the digest defaults to SHA-1.
        ns::RSA_OAEP_MGF1P => match digest {
            None | Some(ns::SHA1) => &OAEP_SHA1_MGF1SHA1,
            Some(other) => {
                return Err(failed(format!(
                    "rsa-oaep-mgf1p with digest {other} is not supported"
                )));
            }
        },
        ns::RSA_OAEP => match (digest.unwrap_or(ns::SHA1), mgf.unwrap_or(ns::MGF1_SHA1)) {
            (ns::SHA1, ns::MGF1_SHA1) => &OAEP_SHA1_MGF1SHA1,
            (ns::SHA256, ns::MGF1_SHA256) => &OAEP_SHA256_MGF1SHA256,
            (ns::SHA384, ns::MGF1_SHA384) => &OAEP_SHA384_MGF1SHA384,
            (ns::SHA512, ns::MGF1_SHA512) => &OAEP_SHA512_MGF1SHA512,
            (d, m) => {
                return Err(failed(format!(
                    "rsa-oaep with digest {d} and {m} is not supported"
                )));
            }
        },
        ns::RSA_1_5 => {
            return Err(failed(
                "RSA PKCS#1 v1.5 key transport is refused (padding-oracle attacks)",
            ));
        }
        other => return Err(failed(format!("key transport {other} is not supported"))),
    };
    let wrapped = cipher_value(encrypted_key)?;
    let mut out = vec![0u8; rsa.min_output_size()];
    let key = rsa
        .decrypt(oaep, &wrapped, &mut out, None)
        .map_err(|_| failed("RSA-OAEP decryption of the content key failed"))?;
    Ok(key.to_vec())
}
