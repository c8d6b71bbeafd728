//! SP-initiated login: an `<samlp:AuthnRequest>` (core §3.4.1) sent with the HTTP-Redirect
//! binding (bindings §3.4.4: DEFLATE, base64, URL-encode; §3.4.4.1: query-string signature).

use std::io::Write as _;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis_core::Timestamp;

use crate::cert::{IdpConfig, SpConfig};
use crate::error::{SamlError, SamlErrorCode};
use crate::ns;
use crate::xml::escape;

fn input(message: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::InvalidInput, message)
}

/// The full IdP URL that starts a login: `SAMLRequest`, then `RelayState` if any, then — when
/// `sign` — `SigAlg` (RSA-SHA256) and `Signature` over exactly that query string.
pub fn authn_request_redirect(
    sp: &SpConfig,
    idp: &IdpConfig,
    request_id: &str,
    relay_state: Option<&str>,
    sign: bool,
    now: Timestamp,
) -> Result<String, SamlError> {
    // Core §1.3.4: an ID is an xs:ID, i.e. an NCName; the pending-request store keys on it.
    let mut chars = request_id.chars();
    let ncname = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !ncname || request_id.len() > 256 {
        return Err(input("request ID must be an NCName (letter or _ first)"));
    }
    // Bindings §3.4.3: "RelayState data MUST NOT exceed 80 bytes in length".
    if relay_state.is_some_and(|r| r.len() > 80) {
        return Err(input("RelayState longer than 80 bytes"));
    }
    if idp.sso_redirect_url.is_empty() {
        return Err(input("the IdP has no HTTP-Redirect SSO URL"));
    }
    let xml = authn_request_xml(sp, idp, request_id, now);
    let mut deflater =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    deflater
        .write_all(xml.as_bytes())
        .map_err(|e| SamlError::new(SamlErrorCode::Internal, format!("deflate: {e}")))?;
    let deflated = deflater
        .finish()
        .map_err(|e| SamlError::new(SamlErrorCode::Internal, format!("deflate: {e}")))?;

    let enc = |v: &str| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>();
    let mut query = format!("SAMLRequest={}", enc(&B64.encode(deflated)));
    if let Some(rs) = relay_state {
        query.push_str(&format!("&RelayState={}", enc(rs)));
    }
    if sign {
        let key = sp
            .signing
            .as_ref()
            .ok_or_else(|| input("signing requested but the connection has no SP signing key"))?;
        // §3.4.4.1: sign "SAMLRequest=value&RelayState=value&SigAlg=value", values URL-encoded.
        query.push_str(&format!("&SigAlg={}", enc(ns::RSA_SHA256)));
        let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&key.private_pkcs8_der)
            .map_err(|e| input(format!("SP signing key unusable: {e}")))?;
        let mut sig = vec![0u8; pair.public_modulus_len()];
        pair.sign(
            &aws_lc_rs::signature::RSA_PKCS1_SHA256,
            &aws_lc_rs::rand::SystemRandom::new(),
            query.as_bytes(),
            &mut sig,
        )
        .map_err(|e| SamlError::new(SamlErrorCode::Internal, format!("signing: {e}")))?;
        query.push_str(&format!("&Signature={}", enc(&B64.encode(sig))));
    }
    let sep = if idp.sso_redirect_url.contains('?') {
        '&'
    } else {
        '?'
    };
    Ok(format!("{}{sep}{query}", idp.sso_redirect_url))
}

fn authn_request_xml(sp: &SpConfig, idp: &IdpConfig, request_id: &str, now: Timestamp) -> String {
    let instant = time::OffsetDateTime::from_unix_timestamp(now.seconds())
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| now.to_rfc3339());
    format!(
        "<samlp:AuthnRequest xmlns:samlp=\"{samlp}\" xmlns:saml=\"{saml}\" ID=\"{id}\" Version=\"2.0\" \
IssueInstant=\"{instant}\" Destination=\"{dest}\" AssertionConsumerServiceURL=\"{acs}\" \
ProtocolBinding=\"{post}\"><saml:Issuer>{issuer}</saml:Issuer>\
<samlp:NameIDPolicy AllowCreate=\"true\"/></samlp:AuthnRequest>",
        samlp = ns::SAMLP,
        saml = ns::SAML,
        id = escape(request_id),
        dest = escape(&idp.sso_redirect_url),
        acs = escape(&sp.acs_url),
        post = ns::BINDING_POST,
        issuer = escape(&sp.entity_id),
    )
}
