//! ACS: validating a `<samlp:Response>` received with the HTTP-POST binding (SAML bindings
//! §3.5, profiles §4.1.4 "Use of Authentication Request Protocol", core §2–§3).
//!
//! Order: bound the input, pre-parse it without libxml2, check its shape for signature
//! wrapping, apply the signature policy, verify with the configured IdP certificates only,
//! and then read every value from the *verified* canonical bytes — the signed Response, or
//! the signed Assertion — never from the document the attacker posted. Each check has its own
//! error code.

use portcullis_core::Timestamp;

pub use crate::assertion::Assertion;
use crate::assertion::{check_issuer, validate_assertion};
use crate::cert::{IdpConfig, SpConfig};
use crate::error::{SamlError, SamlErrorCode, clip};
use crate::ns;
use crate::verify::{
    SignatureVerifier, XmlSecVerifier, explain_failure, inspect_signature, trusted_in_likely_order,
};
use crate::xml::{Doc, El, escape};
use crate::xmlenc::decrypt_element;

/// Largest decoded Response accepted (a typical one is 5–15 KiB).
pub const MAX_RESPONSE_BYTES: usize = 256 * 1024;

/// What the ACS expects of the Response it was posted.
#[derive(Debug, Clone, Copy)]
pub struct Expectations<'a> {
    pub sp: &'a SpConfig,
    pub idp: &'a IdpConfig,
    /// The pending AuthnRequest's ID, or `None` when an IdP-initiated (unsolicited) Response is
    /// acceptable. With `Some`, a Response answering nothing is `unsolicited` and one answering
    /// another request is `in_response_to_mismatch`; with `None`, one that claims to answer a
    /// request is `in_response_to_mismatch` (no request of ours is pending).
    pub in_response_to: Option<&'a str>,
    pub now: Timestamp,
    /// Tolerated clock difference with the IdP, in seconds, applied to every time check.
    pub skew_seconds: i64,
}

fn err(code: SamlErrorCode, message: impl Into<String>) -> SamlError {
    SamlError::new(code, message)
}

fn wrapping(message: impl Into<String>) -> SamlError {
    err(SamlErrorCode::WrappingDetected, message)
}

/// Validates a base64 `SAMLResponse` form value with libxmlsec1 as the signature verifier.
pub fn validate_response(
    saml_response_base64: &str,
    e: &Expectations<'_>,
) -> Result<Assertion, SamlError> {
    validate_response_with(&XmlSecVerifier, saml_response_base64, e)
}

/// [`validate_response`] with another [`SignatureVerifier`].
pub fn validate_response_with(
    verifier: &dyn SignatureVerifier,
    saml_response_base64: &str,
    e: &Expectations<'_>,
) -> Result<Assertion, SamlError> {
    let certs = &e.idp.certificates_der;
    if certs.is_empty() {
        return Err(err(
            SamlErrorCode::InvalidInput,
            "no IdP signing certificate is configured",
        ));
    }
    // 1. Bindings §3.5.4: the form value is base64; bound it before and after decoding.
    let xml = decode(saml_response_base64)?;
    // 2. Pre-parse: size, depth, no DOCTYPE/entities/PIs — before libxml2 sees a byte.
    let outer = Doc::parse(&xml, MAX_RESPONSE_BYTES)?;
    let root = outer.root();
    if !root.is(ns::SAMLP, "Response") {
        return Err(SamlError::malformed(format!(
            "root element is {}, not samlp:Response",
            clip(root.name())
        )));
    }
    // 3. Shape: every assertion and signature in its one legitimate place.
    let shape = inspect_shape(root)?;
    // 4. Core §3.2.2.2: a failed Response usually carries no assertion and no signature; say so
    //    before demanding either. (Its status is the only thing read from it.)
    check_status(root)?;
    let posted = shape
        .assertion
        .ok_or_else(|| SamlError::malformed("successful Response without an assertion"))?;
    // 5. Signature policy, then verification with the configured certificates only.
    let signatures = shape
        .signatures
        .iter()
        .map(|s| inspect_signature(*s, e.idp.allow_sha1))
        .collect::<Result<Vec<_>, _>>()?;
    let response_signed = signatures.iter().any(|s| s.signed.same(&root));
    let verified = if signatures.is_empty() {
        None
    } else {
        let ordered = trusted_in_likely_order(&signatures, certs);
        let c14n = verifier
            .verify(&xml, &ordered, e.idp.allow_sha1)
            .map_err(|f| explain_failure(f, &signatures, certs))?;
        Some(Doc::parse(&c14n, MAX_RESPONSE_BYTES)?)
    };
    // 6. Keep only the verified element. Response-level values come from the signed Response
    //    when there is one; otherwise the envelope is unauthenticated and only checked for
    //    consistency (its ID alone is returned, to name the message in logs).
    let verified_root = verified.as_ref().map(Doc::root);
    let trusted_response = match verified_root {
        Some(v) if response_signed => {
            expect_same(v, root, ns::SAMLP, "Response")?;
            Some(v)
        }
        _ => None,
    };
    let envelope = trusted_response.unwrap_or(root);
    let opened: Opened;
    let assertion: El<'_> = if posted.is(ns::SAML, "Assertion") {
        match (trusted_response, verified_root) {
            (Some(resp), _) => resp
                .single_child(ns::SAML, "Assertion")?
                .ok_or_else(|| wrapping("the signed Response holds no Assertion"))?,
            (None, Some(v)) => {
                expect_same(v, posted, ns::SAML, "Assertion")?;
                v
            }
            (None, None) => {
                return Err(err(
                    SamlErrorCode::SignatureMissing,
                    "neither the Response nor its Assertion is signed",
                ));
            }
        }
    } else {
        let encrypted = envelope
            .single_child(ns::SAML, "EncryptedAssertion")?
            .ok_or_else(|| wrapping("the signed Response holds no EncryptedAssertion"))?;
        opened = open_encrypted(verifier, encrypted, trusted_response.is_some(), e)?;
        opened.assertion()?
    };
    // 7. The Response's own attributes, then the Assertion's conditions and values.
    check_envelope(envelope, response_signed, e)?;
    if trusted_response.is_some() {
        check_status(envelope)?;
    }
    let mut out = validate_assertion(assertion, e)?;
    out.response_id = root.attr("ID").unwrap_or_default().to_owned();
    Ok(out)
}

/// A decrypted assertion, and whether its own signature or the Response's vouches for it.
enum Opened {
    /// The verified canonical bytes of the Assertion's own signature; the root is the Assertion.
    SignedItself(Doc),
    /// Plaintext under a verified Response signature (which covers the ciphertext); the
    /// Assertion is the root's only child.
    CoveredByResponse(Doc),
}

impl Opened {
    fn assertion(&self) -> Result<El<'_>, SamlError> {
        match self {
            Opened::SignedItself(doc) => Ok(doc.root()),
            Opened::CoveredByResponse(doc) => doc
                .root()
                .children()
                .next()
                .ok_or_else(|| err(SamlErrorCode::DecryptionFailed, "no decrypted Assertion")),
        }
    }
}

/// Core §6.2: decrypts an EncryptedAssertion; the plaintext gets the same pre-parse, shape
/// and signature rules as the posted document.
fn open_encrypted(
    verifier: &dyn SignatureVerifier,
    encrypted: El<'_>,
    response_verified: bool,
    e: &Expectations<'_>,
) -> Result<Opened, SamlError> {
    let certs = &e.idp.certificates_der;
    let plaintext = decrypt_element(encrypted, e.sp.encryption.as_ref())?;
    // The plaintext may use prefixes declared on its ancestors: re-declare them around it.
    let mut wrapper = String::from("<portcullis-decrypted");
    for (prefix, uri) in encrypted.in_scope_namespaces() {
        if prefix.is_empty() {
            wrapper.push_str(&format!(" xmlns=\"{}\"", escape(&uri)));
        } else {
            wrapper.push_str(&format!(" xmlns:{prefix}=\"{}\"", escape(&uri)));
        }
    }
    wrapper.push('>');
    wrapper.push_str(&plaintext);
    wrapper.push_str("</portcullis-decrypted>");
    let doc = Doc::parse(&wrapper, MAX_RESPONSE_BYTES).map_err(|x| {
        err(
            SamlErrorCode::DecryptionFailed,
            format!("decrypted assertion: {x}"),
        )
    })?;
    let shape = inspect_decrypted(doc.root())?;
    let inner = shape.assertion.ok_or_else(|| {
        err(
            SamlErrorCode::DecryptionFailed,
            "the encrypted element is not a saml:Assertion",
        )
    })?;
    if let Some(sig) = shape.signatures.first() {
        let info = [inspect_signature(*sig, e.idp.allow_sha1)?];
        let ordered = trusted_in_likely_order(&info, certs);
        let c14n = verifier
            .verify(&wrapper, &ordered, e.idp.allow_sha1)
            .map_err(|f| explain_failure(f, &info, certs))?;
        let verified = Doc::parse(&c14n, MAX_RESPONSE_BYTES)?;
        expect_same(verified.root(), inner, ns::SAML, "Assertion")?;
        Ok(Opened::SignedItself(verified))
    } else if response_verified {
        Ok(Opened::CoveredByResponse(doc))
    } else {
        Err(err(
            SamlErrorCode::SignatureMissing,
            "neither the Response nor the decrypted Assertion is signed",
        ))
    }
}

fn decode(b64: &str) -> Result<String, SamlError> {
    // Base64 grows 4/3; allow line breaks on top.
    if b64.len() > MAX_RESPONSE_BYTES / 3 * 4 + MAX_RESPONSE_BYTES / 32 {
        return Err(err(
            SamlErrorCode::TooLarge,
            format!("SAMLResponse of {} base64 bytes is too large", b64.len()),
        ));
    }
    let bytes = crate::cert::decode_base64_lenient(b64)
        .ok_or_else(|| SamlError::malformed("SAMLResponse is not base64"))?;
    if bytes.len() > MAX_RESPONSE_BYTES {
        return Err(err(
            SamlErrorCode::TooLarge,
            format!("Response of {} bytes is too large", bytes.len()),
        ));
    }
    String::from_utf8(bytes).map_err(|_| SamlError::malformed("Response is not UTF-8"))
}

/// Where the assertion and the signatures sit in a document.
struct Shape<'d> {
    assertion: Option<El<'d>>,
    signatures: Vec<El<'d>>,
}

/// Signature wrapping moves a signed element and puts an unsigned one where a naive reader
/// looks. Refuse any document in which an assertion, a Response or a signature is anywhere
/// but its one legitimate place: one (Encrypted)Assertion as a child of the root Response; a
/// signature only as a direct child of the Response or of that Assertion.
fn inspect_shape(root: El<'_>) -> Result<Shape<'_>, SamlError> {
    let mut shape = Shape {
        assertion: None,
        signatures: Vec::new(),
    };
    for el in root.descendants() {
        if el.same(&root) {
            continue;
        }
        let parent_is_root = el.parent().is_some_and(|p| p.same(&root));
        if el.is(ns::SAML, "Assertion") || el.is(ns::SAML, "EncryptedAssertion") {
            if !parent_is_root || shape.assertion.is_some() {
                return Err(wrapping(
                    "more than one assertion, or an assertion outside its place",
                ));
            }
            shape.assertion = Some(el);
        } else if el.is(ns::SAMLP, "Response") {
            return Err(wrapping("a Response nested inside the Response"));
        } else if el.is(ns::DS, "Signature") {
            let parent = el.parent();
            let placed = parent.is_some_and(|p| {
                p.same(&root)
                    || (p.is(ns::SAML, "Assertion") && p.parent().is_some_and(|g| g.same(&root)))
            });
            let twin = shape
                .signatures
                .iter()
                .any(|s| s.parent().zip(parent).is_some_and(|(a, b)| a.same(&b)));
            if !placed || twin {
                return Err(wrapping("a signature outside its place"));
            }
            shape.signatures.push(el);
        }
    }
    Ok(shape)
}

/// The same rules for the decrypted plaintext: exactly one Assertion and nothing else.
fn inspect_decrypted(wrapper: El<'_>) -> Result<Shape<'_>, SamlError> {
    let mut kids = wrapper.children();
    let assertion = kids.next();
    if kids.next().is_some() || !assertion.is_some_and(|a| a.is(ns::SAML, "Assertion")) {
        return Err(err(
            SamlErrorCode::DecryptionFailed,
            "the decrypted content is not a single saml:Assertion",
        ));
    }
    let mut shape = Shape {
        assertion,
        signatures: Vec::new(),
    };
    for el in wrapper.descendants().into_iter().skip(2) {
        if el.is(ns::SAML, "Assertion")
            || el.is(ns::SAML, "EncryptedAssertion")
            || el.is(ns::SAMLP, "Response")
        {
            return Err(wrapping(
                "an assertion nested inside the encrypted assertion",
            ));
        }
        if el.is(ns::DS, "Signature") {
            let placed = el.parent().zip(assertion).is_some_and(|(p, a)| p.same(&a));
            if !placed || !shape.signatures.is_empty() {
                return Err(wrapping("a signature outside its place"));
            }
            shape.signatures.push(el);
        }
    }
    Ok(shape)
}

/// The verified canonical element must be the very one we located in the posted document.
fn expect_same(verified: El<'_>, posted: El<'_>, ns: &str, name: &str) -> Result<(), SamlError> {
    let id = posted.attr("ID");
    if !verified.is(ns, name) || verified.attr("ID") != id || id.is_none() {
        return Err(wrapping(format!(
            "the verified element is not the {name} the message presents"
        )));
    }
    Ok(())
}

/// Core §3.2.2.2: the top-level StatusCode must be Success.
fn check_status(response: El<'_>) -> Result<(), SamlError> {
    let code = response
        .single_child(ns::SAMLP, "Status")?
        .and_then(|s| s.child(ns::SAMLP, "StatusCode"));
    let value = code.and_then(|c| c.attr("Value")).unwrap_or("");
    if value == ns::STATUS_SUCCESS {
        return Ok(());
    }
    let sub = code
        .and_then(|c| c.child(ns::SAMLP, "StatusCode"))
        .and_then(|c| c.attr("Value"))
        .unwrap_or("");
    let message = response
        .child(ns::SAMLP, "Status")
        .and_then(|s| s.child(ns::SAMLP, "StatusMessage"))
        .map(|m| m.text())
        .unwrap_or_default();
    Err(err(
        SamlErrorCode::StatusNotSuccess,
        format!(
            "IdP returned status {} {} {}",
            clip(value),
            clip(sub),
            clip(&message)
        ),
    ))
}

/// Core §3.2.2 and profiles §4.1.4.3: the Response's own attributes.
fn check_envelope(response: El<'_>, signed: bool, e: &Expectations<'_>) -> Result<(), SamlError> {
    if response.attr("Version") != Some("2.0") {
        return Err(SamlError::malformed("Response Version is not 2.0"));
    }
    // Profiles §4.1.4.2: "the <Issuer> element MAY be omitted, but if present it MUST contain
    // the unique identifier of the issuing identity provider".
    if let Some(issuer) = response.single_child(ns::SAML, "Issuer")? {
        check_issuer(issuer, e)?;
    }
    // Bindings §3.5.5.2: a signed message MUST carry Destination; when present it MUST match
    // the URL at which it was received.
    match response.attr("Destination") {
        Some(d) if d == e.sp.acs_url => {}
        Some(d) => {
            return Err(err(
                SamlErrorCode::DestinationMismatch,
                format!("Destination {} is not this ACS", clip(d)),
            ));
        }
        None if signed => {
            return Err(err(
                SamlErrorCode::DestinationMismatch,
                "a signed Response must carry a Destination",
            ));
        }
        None => {}
    }
    match (response.attr("InResponseTo"), e.in_response_to) {
        (Some(got), Some(want)) if got != want => Err(err(
            SamlErrorCode::InResponseToMismatch,
            format!(
                "Response answers request {}, not the pending one",
                clip(got)
            ),
        )),
        (Some(got), None) => Err(err(
            SamlErrorCode::InResponseToMismatch,
            format!(
                "Response answers request {} but no request is pending",
                clip(got)
            ),
        )),
        _ => Ok(()),
    }
}
