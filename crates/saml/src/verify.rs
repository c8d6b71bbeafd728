//! XML Signature checks (XML-DSig Core 1.1 §3.2 "Core Validation", §4; SAML core §5.4).
//!
//! Two halves. [`inspect_signature`] is our own policy, applied to the bounded parse *before*
//! any cryptography: exclusive canonicalisation only, the enveloped-signature and exc-c14n
//! transforms only, one same-document `Reference` to the signature's parent (SAML core §5.4.2),
//! SHA-1 only when the connection allows it, no `ds:Object`. The cryptography is
//! libxmlsec1's, reached through samael and hidden behind [`SignatureVerifier`]: it is given
//! only the configured IdP certificates (its context has no key manager, so `KeyInfo` in the
//! message can never supply a key) and returns the pre-digest bytes — the canonical form of
//! the element the verified reference covers — which are the only bytes values are read from.

use samael::crypto::{
    AllowedSignatureAlgorithm, CertificateDer, CryptoProvider as _, ReduceMode, XmlSec,
};

use crate::cert::{cert_info, decode_base64_lenient};
use crate::error::{SamlError, SamlErrorCode};
use crate::ns;
use crate::xml::El;

/// Why a signature did not verify (detail for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyFailure(pub String);

/// Cryptographic verification of the signatures in a document.
pub trait SignatureVerifier: Send + Sync {
    /// Verifies every `ds:Signature` in `xml`, each with the key of one of `trusted_der`
    /// (X.509 DER) and never with a key taken from the message, accepting SHA-1 only when
    /// `allow_sha1`. Returns the canonical (pre-digest) bytes of the signed element; when both
    /// a Response and its Assertion are signed, those of the Response.
    ///
    /// Callers pass only documents that went through the bounded pre-parse and
    /// [`inspect_signature`].
    fn verify(
        &self,
        xml: &str,
        trusted_der: &[Vec<u8>],
        allow_sha1: bool,
    ) -> Result<String, VerifyFailure>;
}

/// libxmlsec1 (OpenSSL backend) through samael.
#[derive(Debug, Clone, Copy, Default)]
pub struct XmlSecVerifier;

const STRONG: &[AllowedSignatureAlgorithm] = &[
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

impl SignatureVerifier for XmlSecVerifier {
    fn verify(
        &self,
        xml: &str,
        trusted_der: &[Vec<u8>],
        allow_sha1: bool,
    ) -> Result<String, VerifyFailure> {
        let certs: Vec<CertificateDer> = trusted_der
            .iter()
            .map(|d| CertificateDer::from(d.clone()))
            .collect();
        // samael has no SHA-1 entry in its allowlist; with SHA-1 allowed the algorithm gate is
        // `inspect_signature` alone, otherwise both gates apply.
        let allowed = if allow_sha1 { None } else { Some(STRONG) };
        XmlSec::reduce_xml_to_signed_with_allowed_algorithms(
            xml,
            &certs,
            ReduceMode::PreDigest,
            allowed,
        )
        .map_err(|e| match std::error::Error::source(&e) {
            Some(cause) => VerifyFailure(format!("{e}: {cause}")),
            None => VerifyFailure(e.to_string()),
        })
    }
}

/// A signature that passed the policy, and what it claims to sign.
#[derive(Debug, Clone)]
pub(crate) struct SignatureInfo<'d> {
    /// The element the signature is enveloped in, which its single reference points at.
    pub signed: El<'d>,
    /// Certificates carried in `KeyInfo`: never trusted, used only to explain a failure.
    pub embedded_certificates: Vec<Vec<u8>>,
}

fn refused(message: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::AlgorithmRefused, message)
}

fn sha1_refused(what: &str) -> SamlError {
    SamlError::new(
        SamlErrorCode::Sha1Refused,
        format!("{what} uses SHA-1, which this connection does not allow"),
    )
}

fn algorithm<'d>(parent: El<'d>, name: &'static str) -> Result<&'d str, SamlError> {
    parent
        .single_child(ns::DS, name)?
        .and_then(|m| m.attr("Algorithm"))
        .ok_or_else(|| SamlError::malformed(format!("ds:{name} without Algorithm")))
}

/// Applies the signature policy to one `ds:Signature` element.
pub(crate) fn inspect_signature(
    sig: El<'_>,
    allow_sha1: bool,
) -> Result<SignatureInfo<'_>, SamlError> {
    let signed = sig
        .parent()
        .ok_or_else(|| SamlError::new(SamlErrorCode::WrappingDetected, "detached signature"))?;
    // XML-DSig §4.1: SignedInfo, SignatureValue, KeyInfo?, Object*. SAML signatures never need
    // an Object, and one could carry a Manifest whose references xmlsec would not check.
    if sig.child(ns::DS, "Object").is_some() {
        return Err(refused("ds:Object in a signature is refused"));
    }
    let signed_info = sig
        .single_child(ns::DS, "SignedInfo")?
        .ok_or_else(|| SamlError::malformed("ds:Signature without SignedInfo"))?;
    if sig.single_child(ns::DS, "SignatureValue")?.is_none() {
        return Err(SamlError::malformed("ds:Signature without SignatureValue"));
    }
    // SAML core §5.4.3: exclusive canonicalisation (without comments, so a comment can never
    // change what a signed value says).
    let c14n = algorithm(signed_info, "CanonicalizationMethod")?;
    if c14n != ns::EXC_C14N {
        return Err(refused(format!(
            "canonicalisation {c14n} refused; exclusive c14n required"
        )));
    }
    match algorithm(signed_info, "SignatureMethod")? {
        ns::RSA_SHA256 | ns::RSA_SHA384 | ns::RSA_SHA512 => {}
        ns::ECDSA_SHA256 | ns::ECDSA_SHA384 | ns::ECDSA_SHA512 => {}
        ns::RSA_SHA1 | ns::ECDSA_SHA1 if allow_sha1 => {}
        ns::RSA_SHA1 | ns::ECDSA_SHA1 => return Err(sha1_refused("the signature method")),
        other => return Err(refused(format!("signature method {other} refused"))),
    }
    // SAML core §5.4.2: a single Reference, to the ID of the element the signature is in.
    let mut references = signed_info.children_named(ns::DS, "Reference");
    let reference = references
        .next()
        .ok_or_else(|| SamlError::malformed("ds:SignedInfo without Reference"))?;
    if references.next().is_some() {
        return Err(SamlError::new(
            SamlErrorCode::WrappingDetected,
            "a SAML signature must hold exactly one Reference",
        ));
    }
    let uri = reference.attr("URI").unwrap_or("");
    let id = signed.attr("ID").unwrap_or("");
    if id.is_empty() || uri.strip_prefix('#') != Some(id) {
        return Err(SamlError::new(
            SamlErrorCode::WrappingDetected,
            "the signature's Reference does not point at the element that encloses it",
        ));
    }
    // SAML core §5.4.4: only the enveloped-signature and exclusive c14n transforms.
    let transforms: Vec<&str> = match reference.single_child(ns::DS, "Transforms")? {
        Some(t) => t
            .children()
            .map(|t| {
                if t.is(ns::DS, "Transform") {
                    t.attr("Algorithm")
                        .ok_or_else(|| SamlError::malformed("ds:Transform without Algorithm"))
                } else {
                    Err(SamlError::malformed("unexpected element in ds:Transforms"))
                }
            })
            .collect::<Result<_, _>>()?,
        None => Vec::new(),
    };
    if transforms != [ns::ENVELOPED, ns::EXC_C14N] {
        return Err(refused(format!(
            "transforms {transforms:?} refused; enveloped-signature then exclusive c14n required"
        )));
    }
    match algorithm(reference, "DigestMethod")? {
        ns::SHA256 | ns::SHA384 | ns::SHA512 => {}
        ns::SHA1 if allow_sha1 => {}
        ns::SHA1 => return Err(sha1_refused("the digest method")),
        other => return Err(refused(format!("digest method {other} refused"))),
    }
    let mut embedded_certificates = Vec::new();
    if let Some(key_info) = sig.child(ns::DS, "KeyInfo") {
        for data in key_info.children_named(ns::DS, "X509Data") {
            for cert in data.children_named(ns::DS, "X509Certificate") {
                if let Some(der) = decode_base64_lenient(&cert.text()) {
                    embedded_certificates.push(der);
                }
            }
        }
    }
    Ok(SignatureInfo {
        signed,
        embedded_certificates,
    })
}

/// The configured certificates, those the message names first: the verifier tries them in
/// order, so during a rollover the right one is found at once. Never adds a certificate.
pub(crate) fn trusted_in_likely_order(
    signatures: &[SignatureInfo<'_>],
    trusted_der: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let named = |t: &Vec<u8>| {
        signatures
            .iter()
            .any(|s| s.embedded_certificates.iter().any(|c| c == t))
    };
    let mut out: Vec<Vec<u8>> = trusted_der.iter().filter(|t| named(t)).cloned().collect();
    out.extend(trusted_der.iter().filter(|t| !named(t)).cloned());
    out
}

/// Turns a verification failure into the reason an operator can act on: a message that names a
/// certificate we were not configured with was signed by a key we do not trust (an attacker's,
/// or an IdP rollover not yet imported); anything else is a signature that does not verify.
pub(crate) fn explain_failure(
    failure: VerifyFailure,
    signatures: &[SignatureInfo<'_>],
    trusted_der: &[Vec<u8>],
) -> SamlError {
    let untrusted = signatures
        .iter()
        .flat_map(|s| s.embedded_certificates.iter())
        .find(|c| !trusted_der.iter().any(|t| t == *c));
    match untrusted {
        Some(der) => {
            let who = cert_info(der)
                .map(|i| format!("{} (SHA-256 {})", i.subject, i.sha256_fingerprint))
                .unwrap_or_else(|_| "an unparseable certificate".to_owned());
            SamlError::new(
                SamlErrorCode::UntrustedKey,
                format!(
                    "signature does not verify with a configured IdP certificate; the message names {who}, which is not configured"
                ),
            )
        }
        None => SamlError::new(
            SamlErrorCode::SignatureInvalid,
            format!(
                "signature does not verify with a configured IdP certificate ({})",
                failure.0
            ),
        ),
    }
}
