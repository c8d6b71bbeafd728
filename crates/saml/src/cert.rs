//! Certificates and keys: IdP signing certificates (reported with their expiry, RFC 5280
//! §4.1.2.5), and the SP's own RSA-2048 signing/encryption key with a self-signed certificate.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis_core::Timestamp;

use crate::error::{SamlError, SamlErrorCode};

/// How an identity provider is trusted: its entity ID, where to send users, and the
/// certificates whose keys may sign its messages (several during a rollover).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpConfig {
    pub entity_id: String,
    pub sso_redirect_url: String,
    pub certificates_der: Vec<Vec<u8>>,
    /// Accept RSA-SHA1 signatures and SHA-1 digests (legacy IdPs only).
    pub allow_sha1: bool,
}

/// This service provider as one connection presents itself to its IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpConfig {
    pub entity_id: String,
    pub acs_url: String,
    /// Signs AuthnRequests (HTTP-Redirect binding).
    pub signing: Option<SpKey>,
    /// Decrypts `EncryptedAssertion`s.
    pub encryption: Option<SpKey>,
}

/// An RSA key pair (PKCS#8 DER) and its X.509 certificate (DER).
#[derive(Clone, PartialEq, Eq)]
pub struct SpKey {
    pub private_pkcs8_der: Vec<u8>,
    pub certificate_der: Vec<u8>,
}

impl std::fmt::Debug for SpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpKey")
            .field("private_pkcs8_der", &"[redacted]")
            .field(
                "certificate_der",
                &format!("{} bytes", self.certificate_der.len()),
            )
            .finish()
    }
}

/// What an operator needs to know about a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub der: Vec<u8>,
    pub not_after: Timestamp,
    pub subject: String,
    /// SHA-256 of the DER, upper-case hex pairs joined by `:` (as IdP consoles show it).
    pub sha256_fingerprint: String,
}

fn invalid(message: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::InvalidCertificate, message)
}

/// Parses an X.509 certificate (DER) for configuration and expiry reporting.
pub fn cert_info(der: &[u8]) -> Result<CertInfo, SamlError> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| invalid(format!("not an X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(invalid("trailing bytes after the certificate"));
    }
    let not_after = cert.validity().not_after.timestamp();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let sha256_fingerprint = digest
        .as_ref()
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":");
    Ok(CertInfo {
        der: der.to_vec(),
        not_after: Timestamp::from_millis(not_after.saturating_mul(1000)),
        subject: cert.subject().to_string(),
        sha256_fingerprint,
    })
}

/// Reads certificates pasted by an operator: one or more PEM `CERTIFICATE` blocks, or a bare
/// base64 DER body (as IdP consoles and metadata `X509Certificate` elements show it).
pub fn certificates_from_pem(text: &str) -> Result<Vec<Vec<u8>>, SamlError> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    if !text.contains("-----BEGIN") {
        let der = decode_base64_lenient(text)
            .ok_or_else(|| invalid("neither PEM nor base64 certificate text"))?;
        cert_info(&der)?;
        out.push(der);
        return Ok(out);
    }
    let mut rest = text;
    while let Some(start) = rest.find(BEGIN) {
        let body_start = start + BEGIN.len();
        let end = rest[body_start..]
            .find(END)
            .ok_or_else(|| invalid("PEM block without END line"))?;
        let der = decode_base64_lenient(&rest[body_start..body_start + end])
            .ok_or_else(|| invalid("PEM block is not base64"))?;
        cert_info(&der)?;
        out.push(der);
        rest = &rest[body_start + end + END.len()..];
    }
    if out.is_empty() {
        return Err(invalid("no CERTIFICATE block found"));
    }
    Ok(out)
}

/// Base64 with any ASCII whitespace ignored (XML and PEM wrap lines).
pub(crate) fn decode_base64_lenient(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_ascii();
    if text.is_empty() {
        return None;
    }
    if !text.bytes().any(|b| b.is_ascii_whitespace()) {
        return B64.decode(text).ok();
    }
    let compact: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    B64.decode(compact).ok()
}

/// Creates an RSA-2048 key and a self-signed certificate valid for ten years from `now`,
/// for one connection's AuthnRequest signing or assertion decryption.
pub fn generate_sp_key(common_name: &str, now: Timestamp) -> Result<SpKey, SamlError> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyUsagePurpose, SerialNumber};
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        SamlError::new(SamlErrorCode::Internal, format!("{what}: {e}"))
    };
    if common_name.is_empty() || common_name.len() > 64 {
        return Err(SamlError::new(
            SamlErrorCode::InvalidInput,
            "common name must be 1 to 64 bytes",
        ));
    }
    let key_pair =
        rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048)
            .map_err(|e| internal("RSA key generation", &e))?;
    let at = |t: Timestamp| {
        time::OffsetDateTime::from_unix_timestamp(t.seconds())
            .map_err(|e| internal("certificate validity", &e))
    };
    let mut serial = [0u8; 16];
    aws_lc_rs::rand::fill(&mut serial).map_err(|e| internal("serial number", &e))?;
    serial[0] &= 0x7f; // a positive INTEGER (RFC 5280 §4.1.2.2)
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    // A minute of slack so an IdP whose clock runs slightly behind accepts it at once.
    params.not_before = at(now.minus_seconds(60))?;
    params.not_after = at(now.plus_seconds(10 * 365 * 24 * 3600 + 3 * 24 * 3600))?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let cert = params
        .self_signed(&key_pair)
        .map_err(|e| internal("self-signed certificate", &e))?;
    Ok(SpKey {
        private_pkcs8_der: key_pair.serialize_der(),
        certificate_der: cert.der().to_vec(),
    })
}
