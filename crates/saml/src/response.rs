//! ACS: validating a `<samlp:Response>` received with the HTTP-POST binding (SAML bindings
//! §3.5, profiles §4.1.4 "Use of Authentication Request Protocol", core §2–§3).
//!
//! Order: bound the input, pre-parse it without libxml2, check its shape for signature
//! wrapping, apply the signature policy, verify with the configured IdP certificates only,
//! and then read every value from the *verified* canonical bytes — the signed Response, or
//! the signed Assertion — never from the document the attacker posted. Each check has its own
//! error code.

use std::collections::BTreeMap;

use portcullis_core::Timestamp;

use crate::cert::{IdpConfig, SpConfig};
use crate::error::{SamlError, SamlErrorCode, clip};
use crate::ns;
use crate::verify::{SignatureVerifier, XmlSecVerifier, explain_failure, inspect_signature};
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

/// The verified content of an accepted Response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assertion {
    pub response_id: String,
    /// Key for the replay cache, to be kept until `not_on_or_after`.
    pub assertion_id: String,
    pub issuer: String,
    /// The NameID's full character data, exactly as signed (comments never split it).
    pub name_id: String,
    pub name_id_format: Option<String>,
    pub session_index: Option<String>,
    pub in_response_to: Option<String>,
    /// The earliest of the bearer confirmation's and the Conditions' NotOnOrAfter.
    pub not_on_or_after: Timestamp,
    pub attributes: BTreeMap<String, Vec<String>>,
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
    let xml = decode(saml_response_base64)?;
    // Pre-parse: size, depth, no DOCTYPE/entities/PIs — before libxml2 sees a byte.
    let outer = Doc::parse(&xml, MAX_RESPONSE_BYTES)?;
    let root = outer.root();
    if !root.is(ns::SAMLP, "Response") {
        return Err(SamlError::malformed(format!(
            "root element is {}, not samlp:Response",
            clip(root.name())
        )));
    }
    let shape = inspect_shape(root)?;
    // Core §3.2.2.2: a failed Response usually carries no assertion and no signature; say so
    // before demanding either. (Its status is the only thing read from it.)
    check_status(root)?;
    let posted = shape
        .assertion
        .ok_or_else(|| SamlError::malformed("successful Response without an assertion"))?;
    let signatures = shape
        .signatures
        .iter()
        .map(|s| inspect_signature(*s, e.idp.allow_sha1))
        .collect::<Result<Vec<_>, _>>()?;
    let response_signed = signatures.iter().any(|s| s.signed.same(&root));

    // Verify whatever is signed in the posted document; keep only the verified element.
    let verified = if signatures.is_empty() {
        None
    } else {
        let c14n = verifier
            .verify(&xml, certs, e.idp.allow_sha1)
            .map_err(|f| explain_failure(f, &signatures, certs))?;
        Some(Doc::parse(&c14n, MAX_RESPONSE_BYTES)?)
    };
    let verified_root = verified.as_ref().map(Doc::root);
    let trusted_response = match verified_root {
        Some(v) if response_signed => {
            expect_same(v, root, ns::SAMLP, "Response")?;
            Some(v)
        }
        _ => None,
    };
    // Response-level values come from the signed Response when there is one; otherwise the
    // envelope is unauthenticated and only checked for consistency (never returned as truth,
    // except its ID, which identifies the message in logs).
    let envelope = trusted_response.unwrap_or(root);

    let decrypted: Option<Doc>;
    let decrypted_verified: Option<Doc>;
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
        decrypted = Some(Doc::parse(&wrapper, MAX_RESPONSE_BYTES).map_err(|e| {
            err(
                SamlErrorCode::DecryptionFailed,
                format!("decrypted assertion: {e}"),
            )
        })?);
        let inner_root = decrypted.as_ref().map(Doc::root);
        let Some(inner_root) = inner_root else {
            return Err(err(SamlErrorCode::Internal, "decrypted document missing"));
        };
        let inner_shape = inspect_decrypted(inner_root)?;
        let inner = inner_shape.assertion.ok_or_else(|| {
            err(
                SamlErrorCode::DecryptionFailed,
                "the encrypted element is not a saml:Assertion",
            )
        })?;
        if let Some(sig) = inner_shape.signatures.first() {
            let info = inspect_signature(*sig, e.idp.allow_sha1)?;
            let c14n = verifier
                .verify(&wrapper, certs, e.idp.allow_sha1)
                .map_err(|f| explain_failure(f, std::slice::from_ref(&info), certs))?;
            decrypted_verified = Some(Doc::parse(&c14n, MAX_RESPONSE_BYTES)?);
            let v = decrypted_verified.as_ref().map(Doc::root);
            let Some(v) = v else {
                return Err(err(SamlErrorCode::Internal, "verified document missing"));
            };
            expect_same(v, inner, ns::SAML, "Assertion")?;
            v
        } else if trusted_response.is_some() {
            // The Response signature covers the ciphertext, hence this plaintext.
            inner
        } else {
            return Err(err(
                SamlErrorCode::SignatureMissing,
                "neither the Response nor the decrypted Assertion is signed",
            ));
        }
    };

    check_envelope(envelope, response_signed, e)?;
    if trusted_response.is_some() {
        check_status(envelope)?;
    }
    let mut out = read_assertion(assertion, e)?;
    out.response_id = root.attr("ID").unwrap_or_default().to_owned();
    Ok(out)
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

fn time_attr(el: El<'_>, name: &str) -> Result<Option<Timestamp>, SamlError> {
    el.attr(name)
        .map(|v| {
            Timestamp::parse_rfc3339(v).ok_or_else(|| {
                SamlError::malformed(format!("{} {name} is not a UTC dateTime", el.name()))
            })
        })
        .transpose()
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

fn check_issuer(issuer: El<'_>, e: &Expectations<'_>) -> Result<(), SamlError> {
    let format = issuer.attr("Format").unwrap_or(ns::NAMEID_ENTITY);
    let value = issuer.text();
    if format != ns::NAMEID_ENTITY || value != e.idp.entity_id {
        return Err(err(
            SamlErrorCode::IssuerMismatch,
            format!("Issuer {} is not the configured IdP", clip(&value)),
        ));
    }
    Ok(())
}

/// Core §2.3.3 (Assertion), §2.4 (Subject), §2.5 (Conditions), §2.7 (statements) and
/// profiles §4.1.4.2, read from the verified Assertion only.
fn read_assertion(a: El<'_>, e: &Expectations<'_>) -> Result<Assertion, SamlError> {
    let assertion_id = a
        .attr("ID")
        .filter(|id| !id.is_empty())
        .ok_or_else(|| SamlError::malformed("Assertion without ID"))?;
    if a.attr("Version") != Some("2.0") {
        return Err(SamlError::malformed("Assertion Version is not 2.0"));
    }
    // 1. "The <Issuer> element MUST be present and MUST contain the unique identifier of the
    //    issuing identity provider."
    let issuer = a
        .single_child(ns::SAML, "Issuer")?
        .ok_or_else(|| err(SamlErrorCode::IssuerMismatch, "Assertion without Issuer"))?;
    check_issuer(issuer, e)?;
    // 2. The Subject and its NameID, taken whole: a comment inside it (possible only where the
    //    plaintext was not re-canonicalised) never splits the value.
    let subject = a
        .single_child(ns::SAML, "Subject")?
        .ok_or_else(|| SamlError::malformed("Assertion without Subject"))?;
    let name_id_el = subject
        .single_child(ns::SAML, "NameID")?
        .ok_or_else(|| err(SamlErrorCode::NameIdMissing, "Subject without NameID"))?;
    if name_id_el.children().next().is_some() {
        return Err(SamlError::malformed("NameID holds elements"));
    }
    let name_id = name_id_el.text();
    if name_id.trim().is_empty() {
        return Err(err(SamlErrorCode::NameIdMissing, "NameID is empty"));
    }
    // 3. "At least one <SubjectConfirmation> element MUST contain a Method of bearer", whose
    //    data carries Recipient = the ACS URL, a NotOnOrAfter, and InResponseTo when solicited.
    let bearers: Vec<El<'_>> = subject
        .children_named(ns::SAML, "SubjectConfirmation")
        .filter(|c| c.attr("Method") == Some(ns::CM_BEARER))
        .collect();
    if bearers.is_empty() {
        return Err(err(
            SamlErrorCode::BearerConfirmationMissing,
            "no bearer SubjectConfirmation",
        ));
    }
    let mut first_error = None;
    let mut confirmed = None;
    for bearer in bearers {
        match check_bearer(bearer, e) {
            Ok(ok) => {
                confirmed = Some(ok);
                break;
            }
            Err(x) => {
                first_error.get_or_insert(x);
            }
        }
    }
    let (scd_not_on_or_after, in_response_to) = match confirmed {
        Some(c) => c,
        None => {
            return Err(first_error
                .unwrap_or_else(|| err(SamlErrorCode::BearerConfirmationMissing, "no bearer")));
        }
    };
    // 4. Conditions (core §2.5.1): the validity window and the audience.
    let conditions = a.single_child(ns::SAML, "Conditions")?;
    let mut not_on_or_after = scd_not_on_or_after;
    if let Some(c) = conditions {
        check_window(c, e)?;
        if let Some(t) = time_attr(c, "NotOnOrAfter")? {
            not_on_or_after = not_on_or_after.min(t);
        }
    }
    // "It MUST contain an <AudienceRestriction> including the service provider's unique
    // identifier as an <Audience>"; several restrictions must each be satisfied (§2.5.1.4).
    let restrictions: Vec<El<'_>> = conditions
        .map(|c| c.children_named(ns::SAML, "AudienceRestriction").collect())
        .unwrap_or_default();
    if restrictions.is_empty() {
        return Err(err(
            SamlErrorCode::AudienceMismatch,
            "Assertion has no AudienceRestriction",
        ));
    }
    for r in restrictions {
        if !r
            .children_named(ns::SAML, "Audience")
            .any(|aud| aud.text() == e.sp.entity_id)
        {
            return Err(err(
                SamlErrorCode::AudienceMismatch,
                "this SP is not among the Audiences",
            ));
        }
    }
    // 5. "The set of one or more bearer assertions MUST contain at least one
    //    <AuthnStatement>"; SessionNotOnOrAfter ends the IdP session.
    let authn = a
        .child(ns::SAML, "AuthnStatement")
        .ok_or_else(|| SamlError::malformed("Assertion without AuthnStatement"))?;
    if let Some(t) = time_attr(authn, "SessionNotOnOrAfter")?
        && t <= e.now.minus_seconds(e.skew_seconds)
    {
        return Err(err(SamlErrorCode::Expired, "the IdP session has ended"));
    }
    Ok(Assertion {
        response_id: String::new(),
        assertion_id: assertion_id.to_owned(),
        issuer: issuer.text(),
        name_id,
        name_id_format: name_id_el.attr("Format").map(str::to_owned),
        session_index: authn.attr("SessionIndex").map(str::to_owned),
        in_response_to,
        not_on_or_after,
        attributes: read_attributes(a),
    })
}

fn check_bearer(
    bearer: El<'_>,
    e: &Expectations<'_>,
) -> Result<(Timestamp, Option<String>), SamlError> {
    let data = bearer
        .single_child(ns::SAML, "SubjectConfirmationData")?
        .ok_or_else(|| {
            err(
                SamlErrorCode::BearerConfirmationMissing,
                "bearer confirmation without SubjectConfirmationData",
            )
        })?;
    match data.attr("Recipient") {
        Some(r) if r == e.sp.acs_url => {}
        other => {
            return Err(err(
                SamlErrorCode::RecipientMismatch,
                format!(
                    "Recipient {} is not this ACS",
                    clip(other.unwrap_or("(none)"))
                ),
            ));
        }
    }
    check_window(data, e)?;
    let not_on_or_after = time_attr(data, "NotOnOrAfter")?.ok_or_else(|| {
        err(
            SamlErrorCode::BearerConfirmationMissing,
            "bearer SubjectConfirmationData without NotOnOrAfter",
        )
    })?;
    let got = data.attr("InResponseTo");
    match (got, e.in_response_to) {
        (Some(g), Some(want)) if g == want => {}
        (Some(g), Some(_)) => {
            return Err(err(
                SamlErrorCode::InResponseToMismatch,
                format!("assertion answers request {}, not the pending one", clip(g)),
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                SamlErrorCode::Unsolicited,
                "an unsolicited assertion arrived where the answer to a request was expected",
            ));
        }
        (Some(g), None) => {
            return Err(err(
                SamlErrorCode::InResponseToMismatch,
                format!(
                    "assertion answers request {} but no request is pending",
                    clip(g)
                ),
            ));
        }
        (None, None) => {}
    }
    Ok((not_on_or_after, got.map(str::to_owned)))
}

/// NotBefore <= now + skew and NotOnOrAfter > now - skew (core §2.5.1.2).
fn check_window(el: El<'_>, e: &Expectations<'_>) -> Result<(), SamlError> {
    if let Some(t) = time_attr(el, "NotBefore")?
        && t > e.now.plus_seconds(e.skew_seconds)
    {
        return Err(err(
            SamlErrorCode::NotYetValid,
            format!("{} is not valid before {t}", el.name()),
        ));
    }
    if let Some(t) = time_attr(el, "NotOnOrAfter")?
        && t <= e.now.minus_seconds(e.skew_seconds)
    {
        return Err(err(
            SamlErrorCode::Expired,
            format!("{} expired at {t}", el.name()),
        ));
    }
    Ok(())
}

/// Core §2.7.3: every Attribute's values, keyed by Name, merged across statements.
fn read_attributes(a: El<'_>) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for statement in a.children_named(ns::SAML, "AttributeStatement") {
        for attribute in statement.children_named(ns::SAML, "Attribute") {
            let Some(name) = attribute.attr("Name") else {
                continue;
            };
            let values = out.entry(name.to_owned()).or_default();
            for v in attribute.children_named(ns::SAML, "AttributeValue") {
                if v.attr_ns(ns::XSI, "nil") == Some("true") {
                    continue;
                }
                values.push(v.deep_text());
            }
        }
    }
    out
}
