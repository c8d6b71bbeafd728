//! SAML 2.0 Service Provider logic for Portcullis: IdP metadata in, SP metadata out,
//! AuthnRequests (HTTP-Redirect), Response validation at the ACS (HTTP-POST), and the mapping
//! of a verified assertion to the normalised profile.
//!
//! Pure functions: no HTTP, no storage, no clock (every time check takes `now`). The XML
//! signature cryptography is libxmlsec1's, behind [`verify::SignatureVerifier`]; see
//! `docs/decisions/0006-saml-signature-verification.md` for why and for what surrounds it.

mod assertion;
mod authn;
mod cert;
mod error;
mod metadata;
mod ns;
mod profile;
mod response;
pub mod verify;
mod xml;
mod xmlenc;

pub use authn::authn_request_redirect;
pub use cert::{
    CertInfo, IdpConfig, SpConfig, SpKey, cert_info, certificates_from_pem, generate_sp_key,
};
pub use error::{SamlError, SamlErrorCode};
pub use metadata::{IdpMetadata, MAX_METADATA_BYTES, parse_idp_metadata, sp_metadata};
pub use profile::{AttributeMapping, Profile, map_profile};
pub use response::{
    Assertion, Expectations, MAX_RESPONSE_BYTES, validate_response, validate_response_with,
};
pub use xml::MAX_DEPTH;
