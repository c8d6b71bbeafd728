//! SAML failure reasons, one stable code per check (they go to the audit chain and the
//! `authentication.sso_failed` event; the user only ever sees a reference code).

/// Why a SAML operation was refused. `as_str` is stable: logs, audit records and metrics key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SamlErrorCode {
    /// Not base64, not UTF-8, not well-formed XML, not namespace-well-formed, or not the SAML shape.
    Malformed,
    /// The message (or metadata document) exceeds the size limit.
    TooLarge,
    /// Elements nest deeper than the limit.
    TooDeep,
    /// A DOCTYPE, entity declaration or non-predefined entity reference.
    DoctypeRefused,
    /// A processing instruction other than the leading XML declaration.
    ProcessingInstructionRefused,
    /// Neither the Response nor its Assertion carries a signature.
    SignatureMissing,
    /// A signature does not verify with any configured IdP certificate.
    SignatureInvalid,
    /// The message names a signing certificate that is not configured for this IdP.
    UntrustedKey,
    /// RSA-SHA1 or a SHA-1 digest, and the connection does not allow SHA-1.
    Sha1Refused,
    /// A canonicalisation, transform, signature or digest algorithm outside the allowlist.
    AlgorithmRefused,
    /// Extra, misplaced or mismatched Assertion/Signature elements (XML signature wrapping).
    WrappingDetected,
    IssuerMismatch,
    DestinationMismatch,
    RecipientMismatch,
    AudienceMismatch,
    InResponseToMismatch,
    /// The assertion answers a request although none was expected (IdP-initiated flow).
    Unsolicited,
    /// No bearer `SubjectConfirmation` in the assertion.
    BearerConfirmationMissing,
    /// The Subject carries no `NameID` (an `EncryptedID` is not supported).
    NameIdMissing,
    NotYetValid,
    Expired,
    StatusNotSuccess,
    DecryptionFailed,
    /// A certificate or key that cannot be parsed or used.
    InvalidCertificate,
    /// Metadata that does not describe exactly one usable SAML 2.0 IdP.
    InvalidMetadata,
    /// A caller-supplied value is unusable (request ID, RelayState, missing SP key…).
    InvalidInput,
    /// A local cryptographic operation failed (key generation, signing).
    Internal,
}

impl SamlErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::TooLarge => "too_large",
            Self::TooDeep => "too_deep",
            Self::DoctypeRefused => "doctype_refused",
            Self::ProcessingInstructionRefused => "processing_instruction_refused",
            Self::SignatureMissing => "signature_missing",
            Self::SignatureInvalid => "signature_invalid",
            Self::UntrustedKey => "untrusted_key",
            Self::Sha1Refused => "sha1_refused",
            Self::AlgorithmRefused => "algorithm_refused",
            Self::WrappingDetected => "wrapping_detected",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::DestinationMismatch => "destination_mismatch",
            Self::RecipientMismatch => "recipient_mismatch",
            Self::AudienceMismatch => "audience_mismatch",
            Self::InResponseToMismatch => "in_response_to_mismatch",
            Self::Unsolicited => "unsolicited",
            Self::BearerConfirmationMissing => "bearer_confirmation_missing",
            Self::NameIdMissing => "name_id_missing",
            Self::NotYetValid => "not_yet_valid",
            Self::Expired => "expired",
            Self::StatusNotSuccess => "status_not_success",
            Self::DecryptionFailed => "decryption_failed",
            Self::InvalidCertificate => "invalid_certificate",
            Self::InvalidMetadata => "invalid_metadata",
            Self::InvalidInput => "invalid_input",
            Self::Internal => "internal",
        }
    }
}

impl std::fmt::Display for SamlErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused SAML operation: a stable `code` and a `message` for the log and the audit record
/// (never shown to the end user: it can echo attacker-chosen values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", code.as_str())]
pub struct SamlError {
    pub code: SamlErrorCode,
    pub message: String,
}

impl SamlError {
    pub fn new(code: SamlErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self::new(SamlErrorCode::Malformed, message)
    }
}

/// Shortens an attacker-chosen value before it goes into an error message.
pub(crate) fn clip(value: &str) -> String {
    const MAX: usize = 120;
    if value.len() <= MAX {
        return value.to_owned();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &value[..end])
}
