//! Metadata in and out (SAML metadata §2.3–§2.4, §4.1).
//!
//! IdP metadata is imported from a file an operator supplied (the offline default), read
//! through the same bounded pre-parse as responses. Its own signature, if any, is not
//! checked: the operator who uploads the file is the trust decision.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::cert::{CertInfo, SpConfig, cert_info, decode_base64_lenient};
use crate::error::{SamlError, SamlErrorCode, clip};
use crate::ns;
use crate::xml::{Doc, El, escape};

/// Largest metadata document accepted (Entra ID's is ~60 KiB, ADFS's ~80 KiB).
pub const MAX_METADATA_BYTES: usize = 2 * 1024 * 1024;

/// What an IdP's metadata tells us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpMetadata {
    pub entity_id: String,
    pub sso_redirect_url: Option<String>,
    pub sso_post_url: Option<String>,
    /// Signing certificates, in document order (several during a rollover).
    pub certificates: Vec<CertInfo>,
    pub name_id_formats: Vec<String>,
}

fn invalid(message: impl Into<String>) -> SamlError {
    SamlError::new(SamlErrorCode::InvalidMetadata, message)
}

/// Reads an `EntityDescriptor`, or an `EntitiesDescriptor` that holds exactly one IdP.
pub fn parse_idp_metadata(xml: &str) -> Result<IdpMetadata, SamlError> {
    let doc = Doc::parse(xml, MAX_METADATA_BYTES)?;
    let root = doc.root();
    let entity = if root.is(ns::MD, "EntityDescriptor") {
        root
    } else if root.is(ns::MD, "EntitiesDescriptor") {
        let idps: Vec<El<'_>> = root
            .descendants()
            .into_iter()
            .filter(|e| e.is(ns::MD, "EntityDescriptor") && idp_descriptor(*e).is_some())
            .collect();
        match idps.as_slice() {
            [one] => *one,
            [] => return Err(invalid("no EntityDescriptor with an IDPSSODescriptor")),
            _ => {
                return Err(invalid(format!(
                    "{} identity providers in one file; import one",
                    idps.len()
                )));
            }
        }
    } else {
        return Err(invalid(format!(
            "root element {} is not md:EntityDescriptor",
            clip(root.name())
        )));
    };
    let entity_id = entity
        .attr("entityID")
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| invalid("EntityDescriptor without entityID"))?;
    let idp =
        idp_descriptor(entity).ok_or_else(|| invalid("no IDPSSODescriptor supporting SAML 2.0"))?;
    let sso = |binding: &str| {
        idp.children_named(ns::MD, "SingleSignOnService")
            .find(|s| s.attr("Binding") == Some(binding))
            .and_then(|s| s.attr("Location"))
            .map(str::to_owned)
    };
    let sso_redirect_url = sso(ns::BINDING_REDIRECT);
    let sso_post_url = sso(ns::BINDING_POST);
    if sso_redirect_url.is_none() && sso_post_url.is_none() {
        return Err(invalid(
            "no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding",
        ));
    }
    // §2.4.1.1: a KeyDescriptor without `use` serves both signing and encryption.
    let mut certificates: Vec<CertInfo> = Vec::new();
    for kd in idp.children_named(ns::MD, "KeyDescriptor") {
        if kd.attr("use").is_some_and(|u| u != "signing") {
            continue;
        }
        let certs = kd
            .children_named(ns::DS, "KeyInfo")
            .flat_map(|ki| ki.children_named(ns::DS, "X509Data"))
            .flat_map(|d| d.children_named(ns::DS, "X509Certificate"));
        for c in certs {
            let der = decode_base64_lenient(&c.text())
                .ok_or_else(|| invalid("X509Certificate is not base64"))?;
            let info = cert_info(&der)?;
            if !certificates.iter().any(|known| known.der == info.der) {
                certificates.push(info);
            }
        }
    }
    if certificates.is_empty() {
        return Err(invalid("no signing certificate in the IDPSSODescriptor"));
    }
    let name_id_formats = idp
        .children_named(ns::MD, "NameIDFormat")
        .map(|f| f.text().trim().to_owned())
        .filter(|f| !f.is_empty())
        .collect();
    Ok(IdpMetadata {
        entity_id: entity_id.trim().to_owned(),
        sso_redirect_url,
        sso_post_url,
        certificates,
        name_id_formats,
    })
}

fn idp_descriptor(entity: El<'_>) -> Option<El<'_>> {
    entity.children_named(ns::MD, "IDPSSODescriptor").find(|d| {
        d.attr("protocolSupportEnumeration")
            .is_some_and(|p| p.split_ascii_whitespace().any(|x| x == ns::SAMLP))
    })
}

/// This SP's metadata for one connection: entity ID, the ACS (HTTP-POST), the signing and
/// encryption certificates, and the promise to sign requests and to want signed assertions.
pub fn sp_metadata(sp: &SpConfig) -> String {
    let mut x = String::new();
    x.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<md:EntityDescriptor xmlns:md=\"{}\" xmlns:ds=\"{}\" entityID=\"{}\">\n",
        ns::MD,
        ns::DS,
        escape(&sp.entity_id)
    ));
    x.push_str(&format!(
        "  <md:SPSSODescriptor AuthnRequestsSigned=\"{}\" WantAssertionsSigned=\"true\" protocolSupportEnumeration=\"{}\">\n",
        sp.signing.is_some(),
        ns::SAMLP
    ));
    if let Some(k) = &sp.signing {
        key_descriptor(&mut x, "signing", &k.certificate_der, &[]);
    }
    if let Some(k) = &sp.encryption {
        key_descriptor(
            &mut x,
            "encryption",
            &k.certificate_der,
            &[
                ns::AES256_GCM,
                ns::AES128_GCM,
                ns::AES256_CBC,
                ns::AES128_CBC,
                ns::RSA_OAEP_MGF1P,
                ns::RSA_OAEP,
            ],
        );
    }
    for f in [
        ns::NAMEID_EMAIL,
        "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent",
        "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified",
    ] {
        x.push_str(&format!("    <md:NameIDFormat>{f}</md:NameIDFormat>\n"));
    }
    x.push_str(&format!(
        "    <md:AssertionConsumerService Binding=\"{}\" Location=\"{}\" index=\"0\" isDefault=\"true\"/>\n",
        ns::BINDING_POST,
        escape(&sp.acs_url)
    ));
    x.push_str("  </md:SPSSODescriptor>\n</md:EntityDescriptor>\n");
    x
}

fn key_descriptor(x: &mut String, usage: &str, cert_der: &[u8], methods: &[&str]) {
    x.push_str(&format!("    <md:KeyDescriptor use=\"{usage}\">\n"));
    x.push_str("      <ds:KeyInfo><ds:X509Data><ds:X509Certificate>");
    x.push_str(&B64.encode(cert_der));
    x.push_str("</ds:X509Certificate></ds:X509Data></ds:KeyInfo>\n");
    for m in methods {
        x.push_str(&format!("      <md:EncryptionMethod Algorithm=\"{m}\"/>\n"));
    }
    x.push_str("    </md:KeyDescriptor>\n");
}
