//! portcullis-saml against an independent signer (xmlsec1 / openssl CLIs): accepted
//! Responses, every refusal reason, signature wrapping, metadata and AuthnRequests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::io::Read as _;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis_saml::verify::{SignatureVerifier, VerifyFailure};
use portcullis_saml::*;
use support::*;

fn expect<'a>(sp: &'a SpConfig, idp: &'a IdpConfig) -> Expectations<'a> {
    Expectations {
        sp,
        idp,
        in_response_to: Some(REQUEST_ID),
        now: now(),
        skew_seconds: 120,
    }
}

fn validate_xml(xml: &str) -> Result<Assertion, SamlError> {
    let (sp, idp) = (sp_config(), idp_config());
    validate_response(&b64(xml), &expect(&sp, &idp))
}

fn validate_spec(spec: &Spec) -> Result<Assertion, SamlError> {
    validate_xml(&build_xml(spec).unwrap())
}

fn code_of(r: Result<Assertion, SamlError>) -> SamlErrorCode {
    match r {
        Ok(a) => panic!("accepted: {a:?}"),
        Err(e) => {
            eprintln!("refused as expected: {e}");
            e.code
        }
    }
}

fn check_alice(a: &Assertion) {
    assert_eq!(a.name_id, "alice@corp.example");
    assert_eq!(a.issuer, IDP_ENTITY);
    assert_eq!(a.assertion_id, "_assert_1d2e3f");
    assert_eq!(a.response_id, "_resp_9a8b7c");
    assert_eq!(a.in_response_to.as_deref(), Some(REQUEST_ID));
    assert_eq!(a.session_index.as_deref(), Some("_session_77"));
    assert_eq!(a.not_on_or_after, now().plus_seconds(300));
    assert_eq!(
        a.attributes["http://schemas.microsoft.com/ws/2008/06/identity/claims/groups"],
        vec!["engineering".to_string(), "admins & ops".to_string()]
    );
}

// ---------------------------------------------------------------- accepted responses

#[test]
fn signed_assertion_is_accepted() {
    let a = validate_spec(&Spec::valid()).unwrap();
    check_alice(&a);
    assert_eq!(
        a.name_id_format.as_deref(),
        Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress")
    );
}

#[test]
fn signed_response_is_accepted() {
    let spec = Spec {
        sign_response: true,
        sign_assertion: false,
        ..Spec::valid()
    };
    check_alice(&validate_spec(&spec).unwrap());
}

#[test]
fn signed_response_and_assertion_are_accepted() {
    let spec = Spec {
        sign_response: true,
        ..Spec::valid()
    };
    check_alice(&validate_spec(&spec).unwrap());
}

#[test]
fn encrypted_signed_assertion_aes128_gcm_is_accepted() {
    let spec = Spec {
        encryption: Encryption::Aes128Gcm,
        ..Spec::valid()
    };
    let xml = build_xml(&spec).unwrap();
    assert!(xml.contains("EncryptedAssertion") && !xml.contains("alice@corp.example"));
    check_alice(&validate_xml(&xml).unwrap());
}

#[test]
fn encrypted_assertion_in_signed_response_aes256_cbc_is_accepted() {
    let spec = Spec {
        encryption: Encryption::Aes256Cbc,
        sign_response: true,
        sign_assertion: false,
        ..Spec::valid()
    };
    check_alice(&validate_spec(&spec).unwrap());
}

#[test]
fn encrypted_assertion_without_sp_key_or_signature_is_refused() {
    let spec = Spec {
        encryption: Encryption::Aes128Gcm,
        ..Spec::valid()
    };
    let xml = build_xml(&spec).unwrap();
    let (mut sp, idp) = (sp_config(), idp_config());
    sp.encryption = None;
    assert_eq!(
        code_of(validate_response(&b64(&xml), &expect(&sp, &idp))),
        SamlErrorCode::DecryptionFailed
    );
    // Decrypted with the wrong SP key.
    sp.encryption = Some(pki().sp_signing.clone());
    assert_eq!(
        code_of(validate_response(&b64(&xml), &expect(&sp, &idp))),
        SamlErrorCode::DecryptionFailed
    );
    // Anyone can encrypt to the SP's public certificate: unsigned content is refused.
    let unsigned = Spec {
        encryption: Encryption::Aes256Cbc,
        sign_assertion: false,
        ..Spec::valid()
    };
    assert_eq!(
        code_of(validate_spec(&unsigned)),
        SamlErrorCode::SignatureMissing
    );
}

#[test]
fn idp_initiated_response_is_accepted_when_allowed() {
    let spec = Spec {
        in_response_to: None,
        response_in_response_to: None,
        ..Spec::valid()
    };
    let xml = build_xml(&spec).unwrap();
    let (sp, idp) = (sp_config(), idp_config());
    let e = Expectations {
        in_response_to: None,
        ..expect(&sp, &idp)
    };
    let a = validate_response(&b64(&xml), &e).unwrap();
    assert_eq!(a.in_response_to, None);
    // The same IdP-initiated Response where an answer to a request was expected.
    assert_eq!(
        code_of(validate_response(&b64(&xml), &expect(&sp, &idp))),
        SamlErrorCode::Unsolicited
    );
}

#[test]
fn rollover_either_configured_certificate_verifies() {
    let xml = build_xml_with(&Spec::valid(), &pki().idp_next).unwrap();
    let (sp, mut idp) = (sp_config(), idp_config());
    assert_eq!(
        code_of(validate_response(&b64(&xml), &expect(&sp, &idp))),
        SamlErrorCode::UntrustedKey
    );
    idp.certificates_der = vec![pki().idp.cert_der.clone(), pki().idp_next.cert_der.clone()];
    validate_response(&b64(&xml), &expect(&sp, &idp)).unwrap();
}

#[test]
fn clock_skew_is_tolerated_within_the_window() {
    let spec = Spec {
        not_before: now().plus_seconds(60),
        ..Spec::valid()
    };
    validate_spec(&spec).unwrap();
}

#[test]
fn idp_config_from_imported_metadata_accepts_both_rollover_keys() {
    let m = parse_idp_metadata(&keycloak_metadata()).unwrap();
    let idp = IdpConfig {
        entity_id: m.entity_id.clone(),
        sso_redirect_url: m.sso_redirect_url.clone().unwrap(),
        certificates_der: m.certificates.iter().map(|c| c.der.clone()).collect(),
        allow_sha1: false,
    };
    let sp = sp_config();
    for key in [&pki().idp, &pki().idp_next] {
        let xml = build_xml_with(&Spec::valid(), key).unwrap();
        check_alice(&validate_response(&b64(&xml), &expect(&sp, &idp)).unwrap());
    }
}

#[test]
fn response_for_one_connection_is_refused_at_another() {
    let xml = build_xml(&Spec::valid()).unwrap();
    // Organization B's connection, same IdP software and even the same IdP key.
    let sp_b = SpConfig {
        entity_id: "https://portcullis.example/e/prod/sso/saml/conn_02".into(),
        acs_url: "https://portcullis.example/e/prod/sso/saml/conn_02/acs".into(),
        ..sp_config()
    };
    let idp = idp_config();
    assert_eq!(
        code_of(validate_response(&b64(&xml), &expect(&sp_b, &idp))),
        SamlErrorCode::DestinationMismatch
    );
    // Organization B's own IdP key: the signature is not one it trusts.
    let idp_b = IdpConfig {
        certificates_der: vec![pki().idp_next.cert_der.clone()],
        ..idp_config()
    };
    assert_eq!(
        code_of(validate_response(&b64(&xml), &expect(&sp_config(), &idp_b))),
        SamlErrorCode::UntrustedKey
    );
}

// ---------------------------------------------------------------- signatures and keys

#[test]
fn unsigned_response_is_refused() {
    let spec = Spec {
        sign_assertion: false,
        ..Spec::valid()
    };
    assert_eq!(
        code_of(validate_spec(&spec)),
        SamlErrorCode::SignatureMissing
    );
}

#[test]
fn wrong_certificate_is_refused() {
    let xml = build_xml(&Spec::valid()).unwrap();
    let (sp, mut idp) = (sp_config(), idp_config());
    idp.certificates_der = vec![pki().idp_next.cert_der.clone()];
    // The message names the real signer's certificate, which is not the configured one.
    assert_eq!(
        code_of(validate_response(&b64(&xml), &expect(&sp, &idp))),
        SamlErrorCode::UntrustedKey
    );
    // Without KeyInfo the failure is a plain invalid signature.
    let bare = build_xml(&Spec {
        key_info: false,
        ..Spec::valid()
    })
    .unwrap();
    assert!(!bare.contains("X509Certificate"));
    assert_eq!(
        code_of(validate_response(&b64(&bare), &expect(&sp, &idp))),
        SamlErrorCode::SignatureInvalid
    );
}

#[test]
fn certificate_embedded_in_the_message_is_never_a_trust_anchor() {
    // The attacker signs with their own key and ships their certificate in KeyInfo.
    let xml = build_xml_with(&Spec::valid(), &pki().attacker).unwrap();
    let attacker_b64 = B64.encode(&pki().attacker.cert_der);
    assert!(xml.replace(['\n', '\r'], "").contains(&attacker_b64[..60]));
    assert_eq!(code_of(validate_xml(&xml)), SamlErrorCode::UntrustedKey);
    // Same, Response-level signature.
    let xml = build_xml_with(
        &Spec {
            sign_response: true,
            sign_assertion: false,
            ..Spec::valid()
        },
        &pki().attacker,
    )
    .unwrap();
    assert_eq!(code_of(validate_xml(&xml)), SamlErrorCode::UntrustedKey);
}

#[test]
fn tampered_signed_content_is_refused() {
    let xml = build_xml(&Spec::valid()).unwrap();
    let tampered = xml.replace("alice@corp.example", "mallory@corp.example");
    assert_eq!(
        code_of(validate_xml(&tampered)),
        SamlErrorCode::SignatureInvalid
    );
}

#[test]
fn sha1_is_refused_unless_allowed() {
    let spec = Spec {
        sha1: true,
        ..Spec::valid()
    };
    let xml = build_xml(&spec).unwrap();
    assert_eq!(code_of(validate_xml(&xml)), SamlErrorCode::Sha1Refused);
    let (sp, mut idp) = (sp_config(), idp_config());
    idp.allow_sha1 = true;
    check_alice(&validate_response(&b64(&xml), &expect(&sp, &idp)).unwrap());
}

#[test]
fn inclusive_canonicalisation_is_refused() {
    let spec = Spec {
        c14n: "http://www.w3.org/TR/2001/REC-xml-c14n-20010315".into(),
        ..Spec::valid()
    };
    assert_eq!(
        code_of(validate_spec(&spec)),
        SamlErrorCode::AlgorithmRefused
    );
}

// ---------------------------------------------------------------- signature wrapping

const EVIL_NAME: &str = "admin@corp.example";

/// An unsigned copy of the assertion naming someone else.
fn evil_assertion() -> String {
    Spec {
        assertion_id: "_evil".into(),
        name_id: EVIL_NAME.into(),
        sign_assertion: false,
        ..Spec::valid()
    }
    .assertion_xml()
    .replace(
        "<saml:Assertion ",
        "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ",
    )
}

fn signed_assertion_of(xml: &str) -> String {
    let start = xml.find("<saml:Assertion").unwrap();
    let end = xml.find("</saml:Assertion>").unwrap() + "</saml:Assertion>".len();
    xml[start..end].to_owned()
}

fn assert_wrapping_refused(xml: &str) {
    let r = validate_xml(xml);
    if let Ok(a) = &r {
        assert_ne!(
            a.name_id, EVIL_NAME,
            "the unsigned assertion's values were used"
        );
    }
    assert_eq!(code_of(r), SamlErrorCode::WrappingDetected);
}

#[test]
fn wrapping_unsigned_assertion_beside_the_signed_one() {
    let xml = build_xml(&Spec::valid()).unwrap();
    let before = xml.replace(
        "<saml:Assertion ",
        &format!("{}<saml:Assertion ", evil_assertion()),
    );
    assert_wrapping_refused(&before);
    let after = xml.replace(
        "</samlp:Response>",
        &format!("{}</samlp:Response>", evil_assertion()),
    );
    assert_wrapping_refused(&after);
}

#[test]
fn wrapping_unsigned_assertion_around_the_signed_one() {
    let xml = build_xml(&Spec::valid()).unwrap();
    let signed = signed_assertion_of(&xml);
    let evil = evil_assertion().replace(
        "<saml:Subject>",
        &format!("<saml:Advice>{signed}</saml:Advice><saml:Subject>"),
    );
    assert_wrapping_refused(&xml.replace(&signed, &evil));
}

#[test]
fn wrapping_signed_assertion_hidden_in_extensions() {
    let xml = build_xml(&Spec::valid()).unwrap();
    let signed = signed_assertion_of(&xml);
    let moved = xml.replace(&signed, &evil_assertion()).replace(
        "<samlp:Status>",
        &format!("<samlp:Extensions>{signed}</samlp:Extensions><samlp:Status>"),
    );
    assert_wrapping_refused(&moved);
}

#[test]
fn wrapping_signed_response_inside_an_evil_response() {
    let spec = Spec {
        sign_response: true,
        sign_assertion: false,
        ..Spec::valid()
    };
    let xml = build_xml(&spec).unwrap();
    let body = xml.split_once("?>").map(|(_, b)| b.trim()).unwrap();
    let evil = Spec {
        response_id: "_evil_resp".into(),
        sign_assertion: false,
        ..Spec::valid()
    };
    let outer = evil.response_xml(&format!(
        "<samlp:Extensions>{body}</samlp:Extensions>{}",
        evil_assertion()
    ));
    assert_wrapping_refused(&outer);
}

#[test]
fn comment_inside_name_id_does_not_truncate_it() {
    let spec = Spec {
        name_id: "user@evil.com.example.com".into(),
        ..Spec::valid()
    };
    let xml = build_xml(&spec).unwrap();
    let injected = xml.replace(
        "user@evil.com.example.com",
        "user@evil.com<!---->.example.com",
    );
    assert_ne!(xml, injected);
    // Exclusive c14n drops comments, so the signature still verifies; the value is whole.
    let a = validate_xml(&injected).unwrap();
    assert_eq!(a.name_id, "user@evil.com.example.com");
}

// ---------------------------------------------------------------- the checks

#[test]
fn issuer_mismatch() {
    let spec = Spec {
        issuer: "https://other-idp.example".into(),
        response_issuer: None,
        ..Spec::valid()
    };
    assert_eq!(code_of(validate_spec(&spec)), SamlErrorCode::IssuerMismatch);
}

#[test]
fn destination_mismatch_and_missing_on_signed_response() {
    let spec = Spec {
        destination: Some("https://evil.example/acs".into()),
        ..Spec::valid()
    };
    assert_eq!(
        code_of(validate_spec(&spec)),
        SamlErrorCode::DestinationMismatch
    );
    let spec = Spec {
        destination: None,
        sign_response: true,
        sign_assertion: false,
        ..Spec::valid()
    };
    assert_eq!(
        code_of(validate_spec(&spec)),
        SamlErrorCode::DestinationMismatch
    );
}

#[test]
fn recipient_mismatch() {
    let spec = Spec {
        recipient: "https://portcullis.example/e/prod/sso/saml/conn_02/acs".into(),
        ..Spec::valid()
    };
    assert_eq!(
        code_of(validate_spec(&spec)),
        SamlErrorCode::RecipientMismatch
    );
}

#[test]
fn audience_mismatch() {
    let spec = Spec {
        audience: "https://portcullis.example/e/prod/sso/saml/conn_02".into(),
        ..Spec::valid()
    };
    assert_eq!(
        code_of(validate_spec(&spec)),
        SamlErrorCode::AudienceMismatch
    );
}

#[test]
fn in_response_to_mismatch() {
    let spec = Spec {
        in_response_to: Some("_req_other".into()),
        response_in_response_to: Some("_req_other".into()),
        ..Spec::valid()
    };
    assert_eq!(
        code_of(validate_spec(&spec)),
        SamlErrorCode::InResponseToMismatch
    );
    // A solicited Response where no request is pending.
    let xml = build_xml(&Spec::valid()).unwrap();
    let (sp, idp) = (sp_config(), idp_config());
    let e = Expectations {
        in_response_to: None,
        ..expect(&sp, &idp)
    };
    assert_eq!(
        code_of(validate_response(&b64(&xml), &e)),
        SamlErrorCode::InResponseToMismatch
    );
}

#[test]
fn expired_and_not_yet_valid() {
    let xml = build_xml(&Spec::valid()).unwrap();
    let (sp, idp) = (sp_config(), idp_config());
    let at = |t| Expectations {
        now: t,
        ..expect(&sp, &idp)
    };
    // NotOnOrAfter is now+300 and the skew 120 s.
    validate_response(&b64(&xml), &at(now().plus_seconds(419))).unwrap();
    assert_eq!(
        code_of(validate_response(&b64(&xml), &at(now().plus_seconds(420)))),
        SamlErrorCode::Expired
    );
    // NotBefore is now-60.
    validate_response(&b64(&xml), &at(now().minus_seconds(180))).unwrap();
    assert_eq!(
        code_of(validate_response(&b64(&xml), &at(now().minus_seconds(181)))),
        SamlErrorCode::NotYetValid
    );
}

#[test]
fn status_failure_is_reported() {
    let spec = Spec {
        status: "urn:oasis:names:tc:SAML:2.0:status:Responder".into(),
        sign_assertion: false,
        ..Spec::valid()
    };
    let xml = spec.response_xml("");
    let e = validate_xml(&xml).unwrap_err();
    assert_eq!(e.code, SamlErrorCode::StatusNotSuccess);
    assert!(e.message.contains("Responder"), "{e}");
    // A signed failure with an assertion still attached is refused too.
    let spec = Spec {
        status: "urn:oasis:names:tc:SAML:2.0:status:Requester".into(),
        sign_response: true,
        ..Spec::valid()
    };
    assert_eq!(
        code_of(validate_spec(&spec)),
        SamlErrorCode::StatusNotSuccess
    );
}

// ---------------------------------------------------------------- hostile XML

/// A verifier that must never be reached: proves the refusal happened before libxml2.
struct MustNotRun(AtomicUsize);

impl SignatureVerifier for MustNotRun {
    fn verify(&self, _: &str, _: &[Vec<u8>], _: bool) -> Result<String, VerifyFailure> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(VerifyFailure("libxml2 must not see this document".into()))
    }
}

fn refused_before_libxml2(xml: &str) -> SamlErrorCode {
    let guard = MustNotRun(AtomicUsize::new(0));
    let (sp, idp) = (sp_config(), idp_config());
    let r = validate_response_with(&guard, &b64(xml), &expect(&sp, &idp));
    assert_eq!(guard.0.load(Ordering::SeqCst), 0, "the verifier was called");
    code_of(r)
}

#[test]
fn doctype_with_entities_is_refused_before_libxml2() {
    let xml = build_xml(&Spec::valid()).unwrap();
    let body = xml.split_once("?>").map(|(_, b)| b).unwrap();
    let billion_laughs = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE samlp:Response [<!ENTITY lol \"lol\">\
<!ENTITY lol2 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">]>{}",
        body.replace("alice@corp.example</saml:NameID>", "&lol2;</saml:NameID>")
    );
    assert_eq!(
        refused_before_libxml2(&billion_laughs),
        SamlErrorCode::DoctypeRefused
    );
    let xxe = format!(
        "<!DOCTYPE r [<!ENTITY x SYSTEM \"file:///etc/passwd\">]>{}",
        body.replace("alice@corp.example</saml:NameID>", "&x;</saml:NameID>")
    );
    assert_eq!(refused_before_libxml2(&xxe), SamlErrorCode::DoctypeRefused);
    let pi = xml.replace(
        "<samlp:Status>",
        "<?xml-stylesheet href=\"x\"?><samlp:Status>",
    );
    assert_eq!(
        refused_before_libxml2(&pi),
        SamlErrorCode::ProcessingInstructionRefused
    );
}

#[test]
fn deep_nesting_is_refused_before_libxml2() {
    let xml = build_xml(&Spec::valid()).unwrap();
    let deep = format!(
        "<samlp:Extensions>{}{}</samlp:Extensions><samlp:Status>",
        "<x>".repeat(10_000),
        "</x>".repeat(10_000)
    );
    let deep = xml.replace("<samlp:Status>", &deep);
    assert_eq!(refused_before_libxml2(&deep), SamlErrorCode::TooDeep);
}

#[test]
fn oversize_is_refused_before_libxml2() {
    let xml = build_xml(&Spec::valid()).unwrap();
    let padding = format!(
        "<samlp:Extensions>{}</samlp:Extensions><samlp:Status>",
        "<p>padding</p>".repeat(MAX_RESPONSE_BYTES / 14 + 1)
    );
    let big = xml.replace("<samlp:Status>", &padding);
    assert_eq!(refused_before_libxml2(&big), SamlErrorCode::TooLarge);
    // And an absurd form value is refused before decoding.
    let (sp, idp) = (sp_config(), idp_config());
    let huge = "A".repeat(4 * 1024 * 1024);
    assert_eq!(
        code_of(validate_response(&huge, &expect(&sp, &idp))),
        SamlErrorCode::TooLarge
    );
}

#[test]
fn garbage_is_malformed() {
    let (sp, idp) = (sp_config(), idp_config());
    for input in ["not base64!", &b64("<a>"), &b64("<samlp:Response>")] {
        assert_eq!(
            code_of(validate_response(input, &expect(&sp, &idp))),
            SamlErrorCode::Malformed
        );
    }
}

// ---------------------------------------------------------------- metadata

fn pem_body(der: &[u8]) -> String {
    let b = B64.encode(der);
    b.as_bytes()
        .chunks(64)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// A Keycloak-style export during a key rollover: two signing keys, one encryption key.
fn keycloak_metadata() -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{IDP_ENTITY}">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo>
        <ds:KeyName>k0Gq0jKqkT7mQZL0Hj3nnPjVGx7W6rBfAwYxqf2y1Yo</ds:KeyName>
        <ds:X509Data>
          <ds:X509Certificate>
{idp}
          </ds:X509Certificate>
        </ds:X509Data>
      </ds:KeyInfo>
    </md:KeyDescriptor>
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo>
        <ds:KeyName>n3wK3yRoll0v3r</ds:KeyName>
        <ds:X509Data>
          <ds:X509Certificate>{next}</ds:X509Certificate>
        </ds:X509Data>
      </ds:KeyInfo>
    </md:KeyDescriptor>
    <md:KeyDescriptor use="encryption">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>{enc}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#rsa-oaep"/>
    </md:KeyDescriptor>
    <md:ArtifactResolutionService Binding="urn:oasis:names:tc:SAML:2.0:bindings:SOAP" Location="{IDP_SSO}/resolve" index="0"/>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{IDP_SSO}"/>
    <md:SingleLogoutService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SSO}"/>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:transient</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{IDP_SSO}"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{IDP_SSO}?kc_idp_hint=corp"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:SOAP" Location="{IDP_SSO}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"#,
        idp = pem_body(&pki().idp.cert_der),
        next = B64.encode(&pki().idp_next.cert_der),
        enc = B64.encode(&pki().attacker.cert_der),
    )
}

#[test]
fn idp_metadata_with_two_signing_certificates() {
    let m = parse_idp_metadata(&keycloak_metadata()).unwrap();
    assert_eq!(m.entity_id, IDP_ENTITY);
    assert_eq!(
        m.sso_redirect_url.as_deref(),
        Some(format!("{IDP_SSO}?kc_idp_hint=corp").as_str())
    );
    assert_eq!(m.sso_post_url.as_deref(), Some(IDP_SSO));
    let ders: Vec<&[u8]> = m.certificates.iter().map(|c| c.der.as_slice()).collect();
    assert_eq!(
        ders,
        vec![
            pki().idp.cert_der.as_slice(),
            pki().idp_next.cert_der.as_slice()
        ]
    );
    assert!(m.certificates[0].subject.contains("idp.example.org"));
    assert_eq!(m.certificates[0].sha256_fingerprint.len(), 32 * 3 - 1);
    // openssl -days 3650 from the real clock: expiry lies years ahead of the fixture clock's
    // epoch start and after 2030.
    assert!(m.certificates[0].not_after > now());
    assert_eq!(m.name_id_formats.len(), 4);
}

#[test]
fn idp_metadata_inside_entities_descriptor() {
    let one = keycloak_metadata();
    let entity = one.split_once("?>").map(|(_, b)| b).unwrap();
    let sp_entity = sp_metadata(&sp_config());
    let sp_entity = sp_entity.split_once("?>").map(|(_, b)| b).unwrap();
    let wrap = |inner: &str| {
        format!(
            "<md:EntitiesDescriptor xmlns:md=\"urn:oasis:names:tc:SAML:2.0:metadata\" Name=\"fed\">{inner}</md:EntitiesDescriptor>"
        )
    };
    let m = parse_idp_metadata(&wrap(&format!("{entity}{sp_entity}"))).unwrap();
    assert_eq!(m.entity_id, IDP_ENTITY);
    let two = wrap(&format!(
        "{entity}{}",
        entity.replace(IDP_ENTITY, "https://idp2.example")
    ));
    assert_eq!(
        parse_idp_metadata(&two).unwrap_err().code,
        SamlErrorCode::InvalidMetadata
    );
    let doctype = format!("<!DOCTYPE x [<!ENTITY a \"b\">]>{entity}");
    assert_eq!(
        parse_idp_metadata(&doctype).unwrap_err().code,
        SamlErrorCode::DoctypeRefused
    );
}

#[test]
fn cert_info_and_pem_input() {
    let pem = std::fs::read_to_string(&pki().idp.cert_pem).unwrap();
    let ders = certificates_from_pem(&pem).unwrap();
    assert_eq!(ders, vec![pki().idp.cert_der.clone()]);
    let both = format!(
        "{pem}\n{}",
        std::fs::read_to_string(&pki().idp_next.cert_pem).unwrap()
    );
    assert_eq!(certificates_from_pem(&both).unwrap().len(), 2);
    let bare = B64.encode(&pki().idp.cert_der);
    assert_eq!(certificates_from_pem(&bare).unwrap(), ders);
    let info = cert_info(&ders[0]).unwrap();
    let fp = String::from_utf8(
        Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&pki().idp.cert_pem)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        fp.trim().ends_with(&info.sha256_fingerprint),
        "{fp} vs {info:?}"
    );
    assert_eq!(
        cert_info(b"nope").unwrap_err().code,
        SamlErrorCode::InvalidCertificate
    );
}

#[test]
fn generated_sp_key_is_rsa_2048_for_ten_years() {
    let key = &pki().sp_signing;
    let info = cert_info(&key.certificate_der).unwrap();
    assert!(
        info.subject.contains("portcullis conn_01 signing"),
        "{info:?}"
    );
    let ten_years = now().plus_seconds(10 * 365 * 24 * 3600);
    assert!(info.not_after >= ten_years && info.not_after < ten_years.plus_seconds(7 * 86400));
    let dir = tempfile::tempdir().unwrap();
    let der = dir.path().join("c.der");
    std::fs::write(&der, &key.certificate_der).unwrap();
    let text = Command::new("openssl")
        .args(["x509", "-inform", "der", "-noout", "-text", "-in"])
        .arg(&der)
        .output()
        .unwrap()
        .stdout;
    let text = String::from_utf8(text).unwrap();
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
    assert!(text.contains("sha256WithRSAEncryption"), "{text}");
}

#[test]
fn sp_metadata_document() {
    let sp = SpConfig {
        entity_id: "https://portcullis.example/e/prod/sso/saml/conn_01".into(),
        acs_url: "https://portcullis.example/e/prod/sso/saml/conn_01/acs?a=1&b=2".into(),
        signing: Some(SpKey {
            private_pkcs8_der: vec![],
            certificate_der: b"signing-cert".to_vec(),
        }),
        encryption: Some(SpKey {
            private_pkcs8_der: vec![],
            certificate_der: b"encryption-cert".to_vec(),
        }),
    };
    // Snapshot: IdP administrators import this document.
    let expected = r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://portcullis.example/e/prod/sso/saml/conn_01">
  <md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:KeyDescriptor use="signing">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>c2lnbmluZy1jZXJ0</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
    </md:KeyDescriptor>
    <md:KeyDescriptor use="encryption">
      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>ZW5jcnlwdGlvbi1jZXJ0</ds:X509Certificate></ds:X509Data></ds:KeyInfo>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes256-gcm"/>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#aes128-gcm"/>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes256-cbc"/>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#aes128-cbc"/>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p"/>
      <md:EncryptionMethod Algorithm="http://www.w3.org/2009/xmlenc11#rsa-oaep"/>
    </md:KeyDescriptor>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:2.0:nameid-format:persistent</md:NameIDFormat>
    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified</md:NameIDFormat>
    <md:AssertionConsumerService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="https://portcullis.example/e/prod/sso/saml/conn_01/acs?a=1&amp;b=2" index="0" isDefault="true"/>
  </md:SPSSODescriptor>
</md:EntityDescriptor>
"#;
    assert_eq!(sp_metadata(&sp), expected);
}

/// Parses the real SP metadata back with a plain event reader (not the crate's own tree).
#[test]
fn sp_metadata_parses_back() {
    use quick_xml::events::Event;
    let sp = sp_config();
    let xml = sp_metadata(&sp);
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut attrs: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    let mut certs: Vec<(String, Vec<u8>)> = Vec::new();
    let mut usage = String::new();
    let mut in_cert = false;
    loop {
        match reader.read_event().unwrap() {
            Event::Start(e) | Event::Empty(e) => {
                let name = e.name().into_inner().to_owned();
                let map: BTreeMap<String, String> = e
                    .attributes()
                    .map(|a| {
                        let a = a.unwrap();
                        (a.key.into_inner().to_owned(), a.value.into_owned())
                    })
                    .collect();
                if name == "md:KeyDescriptor" {
                    usage = map["use"].clone();
                }
                in_cert = name == "ds:X509Certificate";
                attrs.push((name, map));
            }
            Event::Text(t) if in_cert => {
                certs.push((usage.clone(), B64.decode(t.xml10_content().trim()).unwrap()));
                in_cert = false;
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let find = |n: &str| &attrs.iter().find(|(name, _)| name == n).unwrap().1;
    let root = find("md:EntityDescriptor");
    assert_eq!(root["entityID"], SP_ENTITY);
    assert_eq!(root["xmlns:md"], "urn:oasis:names:tc:SAML:2.0:metadata");
    let sso = find("md:SPSSODescriptor");
    assert_eq!(sso["AuthnRequestsSigned"], "true");
    assert_eq!(sso["WantAssertionsSigned"], "true");
    let acs = find("md:AssertionConsumerService");
    assert_eq!(acs["Location"], ACS);
    assert_eq!(
        acs["Binding"],
        "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"
    );
    assert_eq!(
        certs,
        vec![
            (
                "signing".to_string(),
                pki().sp_signing.certificate_der.clone()
            ),
            (
                "encryption".to_string(),
                pki().sp_encryption.certificate_der.clone()
            ),
        ]
    );
    // And it is not mistaken for an IdP's.
    assert_eq!(
        parse_idp_metadata(&xml).unwrap_err().code,
        SamlErrorCode::InvalidMetadata
    );
}

// ---------------------------------------------------------------- AuthnRequest

fn query_pairs(url: &str) -> BTreeMap<String, String> {
    let query = url.split_once('?').unwrap().1;
    form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect()
}

fn inflate(saml_request: &str) -> String {
    let raw = B64.decode(saml_request).unwrap();
    let mut out = String::new();
    flate2::read::DeflateDecoder::new(raw.as_slice())
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[test]
fn authn_request_redirect_signed() {
    let (sp, idp) = (sp_config(), idp_config());
    let relay = "https://app.example/after login?x=1";
    let url = authn_request_redirect(&sp, &idp, REQUEST_ID, Some(relay), true, now()).unwrap();
    assert!(url.starts_with(&format!("{IDP_SSO}?SAMLRequest=")));
    let q = query_pairs(&url);
    assert_eq!(q["RelayState"], relay);
    assert_eq!(
        q["SigAlg"],
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    );
    let xml = inflate(&q["SAMLRequest"]);
    for needle in [
        format!("ID=\"{REQUEST_ID}\""),
        format!("AssertionConsumerServiceURL=\"{ACS}\""),
        format!("Destination=\"{IDP_SSO}\""),
        format!("<saml:Issuer>{SP_ENTITY}</saml:Issuer>"),
        "IssueInstant=\"2030-01-01T00:00:00Z\"".to_owned(),
        "ProtocolBinding=\"urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST\"".to_owned(),
    ] {
        assert!(xml.contains(&needle), "{needle} not in {xml}");
    }
    // Bindings §3.4.4.1: the signature covers the query string exactly as sent, up to SigAlg.
    // Verified by openssl against the SP certificate.
    let query = url.split_once('?').unwrap().1;
    let signed = query.split_once("&Signature=").unwrap().0;
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("msg"), signed).unwrap();
    std::fs::write(p("sig"), B64.decode(&q["Signature"]).unwrap()).unwrap();
    std::fs::write(p("cert.der"), &sp.signing.as_ref().unwrap().certificate_der).unwrap();
    let pubkey = Command::new("openssl")
        .args(["x509", "-inform", "der", "-pubkey", "-noout", "-in"])
        .arg(p("cert.der"))
        .output()
        .unwrap()
        .stdout;
    std::fs::write(p("pub.pem"), pubkey).unwrap();
    let verify = |msg: &std::path::Path| {
        Command::new("openssl")
            .args(["dgst", "-sha256", "-verify"])
            .arg(p("pub.pem"))
            .arg("-signature")
            .arg(p("sig"))
            .arg(msg)
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(verify(&p("msg")));
    std::fs::write(p("msg2"), signed.replace("RelayState=", "RelayState=x")).unwrap();
    assert!(!verify(&p("msg2")));
}

#[test]
fn authn_request_redirect_unsigned_and_bad_input() {
    let (mut sp, mut idp) = (sp_config(), idp_config());
    idp.sso_redirect_url = "https://idp.example/sso?tenant=a".into();
    let url = authn_request_redirect(&sp, &idp, "_r1", None, false, now()).unwrap();
    assert!(url.starts_with("https://idp.example/sso?tenant=a&SAMLRequest="));
    let q = query_pairs(&url);
    assert!(
        !q.contains_key("Signature") && !q.contains_key("SigAlg") && !q.contains_key("RelayState")
    );
    let bad = |id: &str, rs: Option<&str>, sp: &SpConfig| {
        authn_request_redirect(sp, &idp, id, rs, true, now())
            .unwrap_err()
            .code
    };
    assert_eq!(bad("1abc", None, &sp), SamlErrorCode::InvalidInput);
    assert_eq!(bad("_a\"b", None, &sp), SamlErrorCode::InvalidInput);
    assert_eq!(
        bad("_ok", Some(&"x".repeat(81)), &sp),
        SamlErrorCode::InvalidInput
    );
    sp.signing = None;
    assert_eq!(bad("_ok", None, &sp), SamlErrorCode::InvalidInput);
}

// ---------------------------------------------------------------- profile mapping

#[test]
fn profile_from_entra_style_claims() {
    let a = validate_spec(&Spec::valid()).unwrap();
    let p = map_profile(&a, &AttributeMapping::default());
    assert_eq!(p.email.as_deref(), Some("alice@corp.example"));
    assert_eq!(p.first_name.as_deref(), Some("Alice"));
    assert_eq!(p.last_name.as_deref(), Some("Liddell"));
    assert_eq!(p.groups, vec!["engineering", "admins & ops"]);
    assert_eq!(p.idp_id, "alice@corp.example");
    assert_eq!(p.raw_attributes, a.attributes);
}

#[test]
fn profile_from_shibboleth_style_oids_and_custom_mapping() {
    let mut a = validate_spec(&Spec::valid()).unwrap();
    a.name_id = "AAdzZWNyZXQx".into();
    a.name_id_format = Some("urn:oasis:names:tc:SAML:2.0:nameid-format:persistent".into());
    a.attributes = BTreeMap::from([
        (
            "urn:oid:0.9.2342.19200300.100.1.3".to_string(),
            vec!["bob@uni.example".to_string()],
        ),
        ("urn:oid:2.5.4.42".to_string(), vec!["Bob".to_string()]),
        ("urn:oid:2.5.4.4".to_string(), vec!["Builder".to_string()]),
        (
            "urn:oid:1.3.6.1.4.1.5923.1.5.1.1".to_string(),
            vec!["staff".to_string(), "staff".to_string(), " ".to_string()],
        ),
        ("employeeNumber".to_string(), vec!["E-1001".to_string()]),
    ]);
    let p = map_profile(&a, &AttributeMapping::default());
    assert_eq!(p.email.as_deref(), Some("bob@uni.example"));
    assert_eq!(p.first_name.as_deref(), Some("Bob"));
    assert_eq!(p.last_name.as_deref(), Some("Builder"));
    assert_eq!(p.groups, vec!["staff"]);
    assert_eq!(p.idp_id, "AAdzZWNyZXQx");
    let custom = AttributeMapping {
        idp_id: vec!["employeeNumber".into()],
        ..AttributeMapping::default()
    };
    assert_eq!(map_profile(&a, &custom).idp_id, "E-1001");
    // No email attribute: an emailAddress-format NameID stands in.
    a.attributes.clear();
    a.name_id = "carol@corp.example".into();
    a.name_id_format = Some("urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress".into());
    assert_eq!(
        map_profile(&a, &AttributeMapping::default())
            .email
            .as_deref(),
        Some("carol@corp.example")
    );
}
