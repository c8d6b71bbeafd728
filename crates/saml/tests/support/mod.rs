//! Test fixtures made by an independent signer: IdP keys from the `openssl` CLI, Responses
//! signed and encrypted by the `xmlsec1` CLI (Debian packages openssl, xmlsec1). Shared by
//! the integration tests and the `acs_bench` example.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis_core::Timestamp;
use portcullis_saml::{IdpConfig, SpConfig, SpKey, generate_sp_key};

pub const IDP_ENTITY: &str = "https://idp.example.org/realms/corp";
pub const IDP_SSO: &str = "https://idp.example.org/realms/corp/protocol/saml";
pub const SP_ENTITY: &str = "https://portcullis.example/e/prod/sso/saml/conn_01";
pub const ACS: &str = "https://portcullis.example/e/prod/sso/saml/conn_01/acs";
pub const REQUEST_ID: &str = "_req_4f1c2b";

/// 2030-01-01T00:00:00Z
pub fn now() -> Timestamp {
    Timestamp::from_millis(1_893_456_000_000)
}

pub fn iso(t: Timestamp) -> String {
    let s = t.to_rfc3339();
    // Whole seconds, as most IdPs write them.
    format!("{}Z", &s[..19])
}

/// A key pair on disk: PEM private key, PEM and DER certificate.
pub struct KeyFiles {
    pub key_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub cert_der: Vec<u8>,
}

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub idp: KeyFiles,
    /// The IdP's next key (rollover).
    pub idp_next: KeyFiles,
    pub attacker: KeyFiles,
    pub sp_encryption: SpKey,
    pub sp_encryption_cert_der_path: PathBuf,
    pub sp_signing: SpKey,
}

fn run(cmd: &mut Command) -> Result<Vec<u8>> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout)
}

fn openssl_key(dir: &Path, name: &str, cn: &str) -> Result<KeyFiles> {
    let key_pem = dir.join(format!("{name}.key.pem"));
    let cert_pem = dir.join(format!("{name}.crt.pem"));
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
        ])
        .arg("-subj")
        .arg(format!("/CN={cn}"))
        .arg("-keyout")
        .arg(&key_pem)
        .arg("-out")
        .arg(&cert_pem))?;
    let cert_der = run(Command::new("openssl")
        .args(["x509", "-outform", "der", "-in"])
        .arg(&cert_pem))?;
    Ok(KeyFiles {
        key_pem,
        cert_pem,
        cert_der,
    })
}

pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| make_pki().expect("test PKI (needs the openssl CLI)"))
}

fn make_pki() -> Result<Pki> {
    let dir = tempfile::tempdir()?;
    let idp = openssl_key(dir.path(), "idp", "idp.example.org")?;
    let idp_next = openssl_key(dir.path(), "idp-next", "idp.example.org 2031")?;
    let attacker = openssl_key(dir.path(), "attacker", "idp.example.org")?;
    let sp_encryption = generate_sp_key("portcullis conn_01 encryption", now())?;
    let sp_encryption_cert_der_path = dir.path().join("sp-enc.crt.der");
    std::fs::write(&sp_encryption_cert_der_path, &sp_encryption.certificate_der)?;
    let sp_signing = generate_sp_key("portcullis conn_01 signing", now())?;
    Ok(Pki {
        dir,
        idp,
        idp_next,
        attacker,
        sp_encryption,
        sp_encryption_cert_der_path,
        sp_signing,
    })
}

pub fn idp_config() -> IdpConfig {
    IdpConfig {
        entity_id: IDP_ENTITY.into(),
        sso_redirect_url: IDP_SSO.into(),
        certificates_der: vec![pki().idp.cert_der.clone()],
        allow_sha1: false,
    }
}

pub fn sp_config() -> SpConfig {
    SpConfig {
        entity_id: SP_ENTITY.into(),
        acs_url: ACS.into(),
        signing: Some(pki().sp_signing.clone()),
        encryption: Some(pki().sp_encryption.clone()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encryption {
    None,
    Aes128Gcm,
    Aes256Cbc,
}

/// Everything a Response fixture says; `Spec::valid()` is accepted as is.
#[derive(Debug, Clone)]
pub struct Spec {
    pub response_id: String,
    pub assertion_id: String,
    pub response_issuer: Option<String>,
    pub issuer: String,
    pub destination: Option<String>,
    pub response_in_response_to: Option<String>,
    pub in_response_to: Option<String>,
    pub recipient: String,
    pub audience: String,
    pub name_id: String,
    pub not_before: Timestamp,
    pub not_on_or_after: Timestamp,
    pub status: String,
    pub attributes: Vec<(String, Vec<String>)>,
    pub sign_response: bool,
    pub sign_assertion: bool,
    pub sha1: bool,
    pub c14n: String,
    /// Put an empty `X509Data` in the templates, which xmlsec1 fills with the signer's cert.
    pub key_info: bool,
    pub encryption: Encryption,
}

impl Spec {
    pub fn valid() -> Self {
        Self {
            response_id: "_resp_9a8b7c".into(),
            assertion_id: "_assert_1d2e3f".into(),
            response_issuer: Some(IDP_ENTITY.into()),
            issuer: IDP_ENTITY.into(),
            destination: Some(ACS.into()),
            response_in_response_to: Some(REQUEST_ID.into()),
            in_response_to: Some(REQUEST_ID.into()),
            recipient: ACS.into(),
            audience: SP_ENTITY.into(),
            name_id: "alice@corp.example".into(),
            not_before: now().minus_seconds(60),
            not_on_or_after: now().plus_seconds(300),
            status: "urn:oasis:names:tc:SAML:2.0:status:Success".into(),
            attributes: vec![
                (
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress".into(),
                    vec!["alice@corp.example".into()],
                ),
                (
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname".into(),
                    vec!["Alice".into()],
                ),
                (
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname".into(),
                    vec!["Liddell".into()],
                ),
                (
                    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups".into(),
                    vec!["engineering".into(), "admins & ops".into()],
                ),
            ],
            sign_response: false,
            sign_assertion: true,
            sha1: false,
            c14n: "http://www.w3.org/2001/10/xml-exc-c14n#".into(),
            key_info: true,
            encryption: Encryption::None,
        }
    }

    fn signature_template(&self, id: &str) -> String {
        let (sig, dig) = if self.sha1 {
            (
                "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
                "http://www.w3.org/2000/09/xmldsig#sha1",
            )
        } else {
            (
                "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
                "http://www.w3.org/2001/04/xmlenc#sha256",
            )
        };
        let key_info = if self.key_info {
            "<ds:KeyInfo><ds:X509Data/></ds:KeyInfo>"
        } else {
            ""
        };
        format!(
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"{c14n}\"/><ds:SignatureMethod Algorithm=\"{sig}\"/>\
<ds:Reference URI=\"#{id}\"><ds:Transforms>\
<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
<ds:Transform Algorithm=\"{c14n}\"/></ds:Transforms>\
<ds:DigestMethod Algorithm=\"{dig}\"/><ds:DigestValue/></ds:Reference></ds:SignedInfo>\
<ds:SignatureValue/>{key_info}</ds:Signature>",
            c14n = self.c14n
        )
    }

    pub fn assertion_xml(&self) -> String {
        let sig = if self.sign_assertion {
            self.signature_template(&self.assertion_id)
        } else {
            String::new()
        };
        let irt = self
            .in_response_to
            .as_ref()
            .map(|r| format!(" InResponseTo=\"{r}\""))
            .unwrap_or_default();
        let mut attrs = String::new();
        for (name, values) in &self.attributes {
            attrs.push_str(&format!(
                "<saml:Attribute Name=\"{name}\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:uri\">"
            ));
            for v in values {
                attrs.push_str(&format!(
                    "<saml:AttributeValue xsi:type=\"xs:string\">{}</saml:AttributeValue>",
                    v.replace('&', "&amp;").replace('<', "&lt;")
                ));
            }
            attrs.push_str("</saml:Attribute>");
        }
        format!(
            "<saml:Assertion xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
ID=\"{aid}\" Version=\"2.0\" IssueInstant=\"{issued}\">\
<saml:Issuer>{issuer}</saml:Issuer>{sig}\
<saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">{name_id}</saml:NameID>\
<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\">\
<saml:SubjectConfirmationData{irt} NotOnOrAfter=\"{scd_noa}\" Recipient=\"{recipient}\"/>\
</saml:SubjectConfirmation></saml:Subject>\
<saml:Conditions NotBefore=\"{nb}\" NotOnOrAfter=\"{noa}\"><saml:AudienceRestriction>\
<saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>\
<saml:AuthnStatement AuthnInstant=\"{issued}\" SessionIndex=\"_session_77\">\
<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef>\
</saml:AuthnContext></saml:AuthnStatement>\
<saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion>",
            aid = self.assertion_id,
            issued = iso(now().minus_seconds(5)),
            issuer = self.issuer,
            name_id = self.name_id,
            scd_noa = iso(self.not_on_or_after),
            recipient = self.recipient,
            nb = iso(self.not_before),
            noa = iso(self.not_on_or_after),
            audience = self.audience,
        )
    }

    /// The Response around `assertion` (any XML), with the Response signature template.
    pub fn response_xml(&self, assertion: &str) -> String {
        let sig = if self.sign_response {
            self.signature_template(&self.response_id)
        } else {
            String::new()
        };
        let dest = self
            .destination
            .as_ref()
            .map(|d| format!(" Destination=\"{d}\""))
            .unwrap_or_default();
        let irt = self
            .response_in_response_to
            .as_ref()
            .map(|r| format!(" InResponseTo=\"{r}\""))
            .unwrap_or_default();
        let issuer = self
            .response_issuer
            .as_ref()
            .map(|i| format!("<saml:Issuer>{i}</saml:Issuer>"))
            .unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{rid}\" Version=\"2.0\" IssueInstant=\"{issued}\"{dest}{irt}>\
{issuer}{sig}<samlp:Status><samlp:StatusCode Value=\"{status}\"/></samlp:Status>{assertion}</samlp:Response>",
            rid = self.response_id,
            issued = iso(now().minus_seconds(5)),
            status = self.status,
        )
    }
}

/// Signs the `ds:Signature` under the element with ID `id` using `key` (its cert goes into
/// an empty `X509Data` if the template has one).
pub fn xmlsec_sign(xml: &str, key: &KeyFiles, id: &str) -> Result<String> {
    let dir = tempfile::tempdir()?;
    let input = dir.path().join("in.xml");
    let output = dir.path().join("out.xml");
    std::fs::write(&input, xml)?;
    let mut keyarg = key.key_pem.clone().into_os_string();
    keyarg.push(",");
    keyarg.push(&key.cert_pem);
    run(Command::new("xmlsec1")
        .arg("--sign")
        .arg("--privkey-pem")
        .arg(keyarg)
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:protocol:Response",
        ])
        .args(["--node-id", id])
        .arg("--output")
        .arg(&output)
        .arg(&input))?;
    Ok(std::fs::read_to_string(&output)?)
}

/// Encrypts the element with ID `id` (RSA-OAEP key transport to the SP encryption cert).
pub fn xmlsec_encrypt(xml: &str, id: &str, enc: Encryption) -> Result<String> {
    let (alg, session) = match enc {
        Encryption::Aes128Gcm => ("http://www.w3.org/2009/xmlenc11#aes128-gcm", "aes-128"),
        Encryption::Aes256Cbc => ("http://www.w3.org/2001/04/xmlenc#aes256-cbc", "aes-256"),
        Encryption::None => return Ok(xml.to_owned()),
    };
    let template = format!(
        "<xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\" Type=\"http://www.w3.org/2001/04/xmlenc#Element\">\
<xenc:EncryptionMethod Algorithm=\"{alg}\"/><ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">\
<xenc:EncryptedKey><xenc:EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p\">\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\"/></xenc:EncryptionMethod>\
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>\
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedData>"
    );
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data.xml");
    let tmpl = dir.path().join("tmpl.xml");
    let output = dir.path().join("out.xml");
    std::fs::write(&data, xml)?;
    std::fs::write(&tmpl, template)?;
    run(Command::new("xmlsec1")
        .arg("--encrypt")
        .arg("--pubkey-cert-der")
        .arg(&pki().sp_encryption_cert_der_path)
        .args(["--session-key", session])
        .arg("--xml-data")
        .arg(&data)
        .args([
            "--id-attr:ID",
            "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
        ])
        .args(["--node-id", id])
        .arg("--output")
        .arg(&output)
        .arg(&tmpl))?;
    Ok(std::fs::read_to_string(&output)?)
}

/// The Response XML for `spec`, signed with `key` and encrypted as the spec says.
pub fn build_xml_with(spec: &Spec, key: &KeyFiles) -> Result<String> {
    let mut assertion = spec.assertion_xml();
    if spec.encryption != Encryption::None {
        assertion = format!("<saml:EncryptedAssertion>{assertion}</saml:EncryptedAssertion>");
    }
    let mut xml = spec.response_xml(&assertion);
    if spec.sign_assertion {
        xml = xmlsec_sign(&xml, key, &spec.assertion_id)?;
    }
    xml = xmlsec_encrypt(&xml, &spec.assertion_id, spec.encryption)?;
    if spec.sign_response {
        xml = xmlsec_sign(&xml, key, &spec.response_id)?;
    }
    Ok(xml)
}

pub fn build_xml(spec: &Spec) -> Result<String> {
    build_xml_with(spec, &pki().idp)
}

pub fn b64(xml: &str) -> String {
    B64.encode(xml.as_bytes())
}
