//! The Assertion, read from verified bytes only (SAML core §2.3.3 Assertion, §2.4 Subject,
//! §2.5 Conditions, §2.7 statements; profiles §4.1.4.2 "<Response> Usage" for bearer
//! assertions). Every check quotes the profile's rule it enforces.

use std::collections::BTreeMap;

use portcullis_core::Timestamp;

use crate::error::{SamlError, SamlErrorCode, clip};
use crate::ns;
use crate::response::Expectations;
use crate::xml::El;

fn err(code: SamlErrorCode, message: impl Into<String>) -> SamlError {
    SamlError::new(code, message)
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

pub(crate) fn time_attr(el: El<'_>, name: &str) -> Result<Option<Timestamp>, SamlError> {
    el.attr(name)
        .map(|v| {
            Timestamp::parse_rfc3339(v).ok_or_else(|| {
                SamlError::malformed(format!("{} {name} is not a UTC dateTime", el.name()))
            })
        })
        .transpose()
}

pub(crate) fn check_issuer(issuer: El<'_>, e: &Expectations<'_>) -> Result<(), SamlError> {
    let format = issuer.attr("Format").unwrap_or(ns::NAMEID_ENTITY);
    // xs:anyURI collapses surrounding whitespace; nothing else is forgiven.
    let value = issuer.text();
    if format != ns::NAMEID_ENTITY || value.trim() != e.idp.entity_id {
        return Err(err(
            SamlErrorCode::IssuerMismatch,
            format!("Issuer {} is not the configured IdP", clip(&value)),
        ));
    }
    Ok(())
}

/// Checks a verified Assertion against the expectations and reads its values.
pub(crate) fn validate_assertion(a: El<'_>, e: &Expectations<'_>) -> Result<Assertion, SamlError> {
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
            .any(|aud| aud.text().trim() == e.sp.entity_id)
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
        issuer: issuer.text().trim().to_owned(),
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
