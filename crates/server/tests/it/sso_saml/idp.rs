//! A SAML identity provider made of Debian's command-line tools, independent of Portcullis's own
//! XML code: its key and self-signed certificate come from `openssl req`, its metadata is written
//! here as text, and every Response is signed (and, when asked, encrypted) by the `xmlsec1` CLI.
//!
//! Copied and adapted from `crates/saml/tests/support` (test support cannot be shared across
//! crates): times are real (the server runs on the system clock), the SP's entity ID, ACS URL and
//! encryption certificate are the ones a connection published, and IDs are fresh per Response.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use portcullis_core::Timestamp;

use crate::oauth::now_seconds;

/// A private key (PEM) and its self-signed certificate (PEM and DER).
pub struct KeyFiles {
    pub key_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub cert_der: Vec<u8>,
}

impl KeyFiles {
    /// An RSA-2048 key and a certificate for `cn`, valid for `days`, made by `openssl req`.
    pub fn new(dir: &Path, name: &str, cn: &str, days: u32) -> Self {
        let key_pem = dir.join(format!("{name}.key.pem"));
        let cert_pem = dir.join(format!("{name}.crt.pem"));
        run(Command::new("openssl")
            .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days"])
            .arg(days.to_string())
            .arg("-subj")
            .arg(format!("/CN={cn}"))
            .arg("-keyout")
            .arg(&key_pem)
            .arg("-out")
            .arg(&cert_pem));
        let cert_der = run(Command::new("openssl")
            .args(["x509", "-outform", "der", "-in"])
            .arg(&cert_pem));
        Self {
            key_pem,
            cert_pem,
            cert_der,
        }
    }

    pub fn cert_b64(&self) -> String {
        B64.encode(&self.cert_der)
    }
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?} (needs the openssl and xmlsec1 CLIs): {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out.stdout
}

/// One IdP: `https://idp.{domain}/saml` with its SSO URL and signing key.
pub struct SamlIdp {
    pub entity_id: String,
    pub sso_url: String,
    pub key: KeyFiles,
    /// Someone else's key with a certificate claiming the same name.
    pub attacker: KeyFiles,
    dir: tempfile::TempDir,
}

impl SamlIdp {
    pub fn new(domain: &str) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let cn = format!("idp.{domain}");
        let key = KeyFiles::new(dir.path(), "idp", &cn, 3650);
        let attacker = KeyFiles::new(dir.path(), "attacker", &cn, 3650);
        Self {
            entity_id: format!("https://idp.{domain}/saml"),
            sso_url: format!("https://idp.{domain}/sso/redirect"),
            key,
            attacker,
            dir,
        }
    }

    /// Another key of this IdP, valid for `days` (rollover, expiry reports).
    pub fn extra_key(&self, name: &str, days: u32) -> KeyFiles {
        let host = self.sso_url.split('/').nth(2).unwrap_or_default();
        KeyFiles::new(self.dir.path(), name, &format!("{host} {name}"), days)
    }

    /// The IdP's metadata (SAML metadata §2.4.3), as an IdP console exports it: signing
    /// certificates, the HTTP-Redirect and HTTP-POST SSO endpoints, NameID formats.
    pub fn metadata_with(&self, certs: &[&KeyFiles]) -> String {
        let keys: String = certs
            .iter()
            .map(|k| {
                format!(
                    "    <md:KeyDescriptor use=\"signing\"><ds:KeyInfo><ds:X509Data>\
<ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>\n",
                    k.cert_b64()
                )
            })
            .collect();
        format!(
            r#"<?xml version="1.0" encoding="UTF-8"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}">
  <md:IDPSSODescriptor WantAuthnRequestsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
{keys}    <md:NameIDFormat>urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress</md:NameIDFormat>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST" Location="{sso}"/>
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso}"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>
"#,
            entity = self.entity_id,
            sso = self.sso_url,
        )
    }

    pub fn metadata(&self) -> String {
        self.metadata_with(&[&self.key])
    }

    /// The Response XML for `r`, signed by this IdP's key.
    pub fn sign(&self, r: &Response) -> String {
        r.build(&self.key)
    }

    /// [`sign`](Self::sign), base64 for the `SAMLResponse` form field.
    pub fn post_value(&self, r: &Response) -> String {
        B64.encode(self.sign(r))
    }
}

/// The service provider a Response is addressed to, as its metadata describes it.
#[derive(Debug, Clone)]
pub struct Sp {
    pub entity_id: String,
    pub acs_url: String,
    /// DER of the `use="encryption"` certificate.
    pub encryption_cert_der: Vec<u8>,
    pub signing_cert_der: Vec<u8>,
}

impl Sp {
    /// Reads SP metadata the way an IdP administrator's tool would: entity ID, the POST ACS,
    /// the signing and encryption certificates.
    pub fn from_metadata(xml: &str) -> Self {
        let attr = |tag: &str, name: &str| -> String {
            let at = xml.find(tag).unwrap_or_else(|| panic!("no {tag} in {xml}"));
            let rest = &xml[at..];
            let key = format!("{name}=\"");
            let start = rest.find(&key).expect("the attribute") + key.len();
            rest[start..start + rest[start..].find('"').unwrap()].to_owned()
        };
        let cert = |usage: &str| -> Vec<u8> {
            let at = xml
                .find(&format!("<md:KeyDescriptor use=\"{usage}\">"))
                .unwrap_or_else(|| panic!("no {usage} key in {xml}"));
            let rest = &xml[at..];
            let start = rest.find("<ds:X509Certificate>").unwrap() + "<ds:X509Certificate>".len();
            let end = rest.find("</ds:X509Certificate>").unwrap();
            B64.decode(rest[start..end].trim())
                .expect("base64 certificate")
        };
        Self {
            entity_id: attr("<md:EntityDescriptor", "entityID"),
            acs_url: attr("<md:AssertionConsumerService", "Location"),
            encryption_cert_der: cert("encryption"),
            signing_cert_der: cert("signing"),
        }
    }
}

/// Everything a Response says. [`Response::new`] makes one the SP accepts.
#[derive(Debug, Clone)]
pub struct Response {
    pub response_id: String,
    pub assertion_id: String,
    pub issuer: String,
    pub destination: String,
    pub in_response_to: Option<String>,
    pub recipient: String,
    pub audience: String,
    pub name_id: String,
    /// Unix seconds.
    pub not_before: i64,
    pub not_on_or_after: i64,
    pub attributes: Vec<(String, Vec<String>)>,
    pub sign_response: bool,
    pub sign_assertion: bool,
    /// Encrypt the (signed) Assertion to this certificate (RSA-OAEP + AES-128-GCM).
    pub encrypt_to: Option<Vec<u8>>,
}

/// A fresh XML ID (an NCName: a letter or `_` first).
pub fn fresh_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    portcullis_core::Random::fill(&portcullis_crypto::SystemRandom, &mut b);
    format!("_{prefix}_{}", portcullis_crypto::secrets::to_hex(&b))
}

/// `xs:dateTime` in whole seconds, as most IdPs write it.
pub fn iso(unix_seconds: i64) -> String {
    let s = Timestamp::from_millis(unix_seconds * 1000).to_rfc3339();
    format!("{}Z", &s[..19])
}

fn escape(v: &str) -> String {
    v.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
}

impl Response {
    /// What `idp` says about `name_id` to `sp`, answering `in_response_to` (or unsolicited):
    /// valid from a minute ago for five minutes, the Assertion signed, with the usual LDAP-style
    /// attributes `email`, `givenName`, `sn` and `groups`.
    pub fn new(idp: &SamlIdp, sp: &Sp, in_response_to: Option<&str>, name_id: &str) -> Self {
        let now = now_seconds();
        Self {
            response_id: fresh_id("resp"),
            assertion_id: fresh_id("assert"),
            issuer: idp.entity_id.clone(),
            destination: sp.acs_url.clone(),
            in_response_to: in_response_to.map(str::to_owned),
            recipient: sp.acs_url.clone(),
            audience: sp.entity_id.clone(),
            name_id: name_id.to_owned(),
            not_before: now - 60,
            not_on_or_after: now + 300,
            attributes: vec![
                ("email".into(), vec![name_id.to_owned()]),
                ("givenName".into(), vec!["Alice".into()]),
                ("sn".into(), vec!["Liddell".into()]),
                (
                    "groups".into(),
                    vec!["engineering".into(), "admins & ops".into()],
                ),
            ],
            sign_response: false,
            sign_assertion: true,
            encrypt_to: None,
        }
    }

    fn signature_template(id: &str) -> String {
        let c14n = "http://www.w3.org/2001/10/xml-exc-c14n#";
        format!(
            "<ds:Signature xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\"><ds:SignedInfo>\
<ds:CanonicalizationMethod Algorithm=\"{c14n}\"/>\
<ds:SignatureMethod Algorithm=\"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256\"/>\
<ds:Reference URI=\"#{id}\"><ds:Transforms>\
<ds:Transform Algorithm=\"http://www.w3.org/2000/09/xmldsig#enveloped-signature\"/>\
<ds:Transform Algorithm=\"{c14n}\"/></ds:Transforms>\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#sha256\"/><ds:DigestValue/>\
</ds:Reference></ds:SignedInfo><ds:SignatureValue/>\
<ds:KeyInfo><ds:X509Data/></ds:KeyInfo></ds:Signature>"
        )
    }

    /// The Assertion (with its signature template when it is to be signed); it declares the
    /// `saml` prefix itself, so that it can also stand alone.
    pub fn assertion_xml(&self) -> String {
        let sig = if self.sign_assertion {
            Self::signature_template(&self.assertion_id)
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
                "<saml:Attribute Name=\"{name}\" NameFormat=\"urn:oasis:names:tc:SAML:2.0:attrname-format:basic\">"
            ));
            for v in values {
                attrs.push_str(&format!(
                    "<saml:AttributeValue xsi:type=\"xs:string\">{}</saml:AttributeValue>",
                    escape(v)
                ));
            }
            attrs.push_str("</saml:Attribute>");
        }
        let now = now_seconds();
        format!(
            "<saml:Assertion xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" \
xmlns:xs=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" \
ID=\"{aid}\" Version=\"2.0\" IssueInstant=\"{issued}\">\
<saml:Issuer>{issuer}</saml:Issuer>{sig}\
<saml:Subject><saml:NameID Format=\"urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress\">{name_id}</saml:NameID>\
<saml:SubjectConfirmation Method=\"urn:oasis:names:tc:SAML:2.0:cm:bearer\">\
<saml:SubjectConfirmationData{irt} NotOnOrAfter=\"{noa}\" Recipient=\"{recipient}\"/>\
</saml:SubjectConfirmation></saml:Subject>\
<saml:Conditions NotBefore=\"{nb}\" NotOnOrAfter=\"{noa}\"><saml:AudienceRestriction>\
<saml:Audience>{audience}</saml:Audience></saml:AudienceRestriction></saml:Conditions>\
<saml:AuthnStatement AuthnInstant=\"{issued}\" SessionIndex=\"{aid}_session\">\
<saml:AuthnContext><saml:AuthnContextClassRef>urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport</saml:AuthnContextClassRef>\
</saml:AuthnContext></saml:AuthnStatement>\
<saml:AttributeStatement>{attrs}</saml:AttributeStatement></saml:Assertion>",
            aid = self.assertion_id,
            issued = iso(now - 2),
            issuer = escape(&self.issuer),
            name_id = escape(&self.name_id),
            recipient = escape(&self.recipient),
            nb = iso(self.not_before),
            noa = iso(self.not_on_or_after),
            audience = escape(&self.audience),
        )
    }

    /// The Response around `assertion` (any XML).
    pub fn response_xml(&self, assertion: &str) -> String {
        let sig = if self.sign_response {
            Self::signature_template(&self.response_id)
        } else {
            String::new()
        };
        let irt = self
            .in_response_to
            .as_ref()
            .map(|r| format!(" InResponseTo=\"{r}\""))
            .unwrap_or_default();
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<samlp:Response xmlns:samlp=\"urn:oasis:names:tc:SAML:2.0:protocol\" \
xmlns:saml=\"urn:oasis:names:tc:SAML:2.0:assertion\" ID=\"{rid}\" Version=\"2.0\" IssueInstant=\"{issued}\" \
Destination=\"{dest}\"{irt}><saml:Issuer>{issuer}</saml:Issuer>{sig}\
<samlp:Status><samlp:StatusCode Value=\"urn:oasis:names:tc:SAML:2.0:status:Success\"/></samlp:Status>\
{assertion}</samlp:Response>",
            rid = self.response_id,
            issued = iso(now_seconds() - 2),
            dest = escape(&self.destination),
            issuer = escape(&self.issuer),
        )
    }

    /// Signs (the Assertion, then — after encryption — the Response, as the spec asks) with `key`.
    pub fn build(&self, key: &KeyFiles) -> String {
        let mut assertion = self.assertion_xml();
        if self.encrypt_to.is_some() {
            assertion = format!("<saml:EncryptedAssertion>{assertion}</saml:EncryptedAssertion>");
        }
        let mut xml = self.response_xml(&assertion);
        if self.sign_assertion {
            xml = xmlsec_sign(&xml, key, &self.assertion_id);
        }
        if let Some(cert) = &self.encrypt_to {
            xml = xmlsec_encrypt(&xml, &self.assertion_id, cert);
        }
        if self.sign_response {
            xml = xmlsec_sign(&xml, key, &self.response_id);
        }
        xml
    }
}

fn id_attrs(cmd: &mut Command) -> &mut Command {
    cmd.args([
        "--id-attr:ID",
        "urn:oasis:names:tc:SAML:2.0:assertion:Assertion",
    ])
    .args([
        "--id-attr:ID",
        "urn:oasis:names:tc:SAML:2.0:protocol:Response",
    ])
}

/// `xmlsec1 --sign` of the `ds:Signature` template under the element with ID `id`; the signer's
/// certificate goes into the template's empty `X509Data`.
pub fn xmlsec_sign(xml: &str, key: &KeyFiles, id: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let (input, output) = (dir.path().join("in.xml"), dir.path().join("out.xml"));
    std::fs::write(&input, xml).unwrap();
    let mut keyarg = key.key_pem.clone().into_os_string();
    keyarg.push(",");
    keyarg.push(&key.cert_pem);
    let mut cmd = Command::new("xmlsec1");
    cmd.arg("--sign").arg("--privkey-pem").arg(keyarg);
    id_attrs(&mut cmd)
        .args(["--node-id", id])
        .arg("--output")
        .arg(&output)
        .arg(&input);
    run(&mut cmd);
    std::fs::read_to_string(&output).unwrap()
}

/// `xmlsec1 --encrypt` of the element with ID `id`: AES-128-GCM content, the session key
/// transported with RSA-OAEP to `cert_der`.
pub fn xmlsec_encrypt(xml: &str, id: &str, cert_der: &[u8]) -> String {
    let template = "<xenc:EncryptedData xmlns:xenc=\"http://www.w3.org/2001/04/xmlenc#\" Type=\"http://www.w3.org/2001/04/xmlenc#Element\">\
<xenc:EncryptionMethod Algorithm=\"http://www.w3.org/2009/xmlenc11#aes128-gcm\"/><ds:KeyInfo xmlns:ds=\"http://www.w3.org/2000/09/xmldsig#\">\
<xenc:EncryptedKey><xenc:EncryptionMethod Algorithm=\"http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p\">\
<ds:DigestMethod Algorithm=\"http://www.w3.org/2000/09/xmldsig#sha1\"/></xenc:EncryptionMethod>\
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedKey></ds:KeyInfo>\
<xenc:CipherData><xenc:CipherValue/></xenc:CipherData></xenc:EncryptedData>";
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("data.xml"), xml).unwrap();
    std::fs::write(p("tmpl.xml"), template).unwrap();
    std::fs::write(p("sp.crt.der"), cert_der).unwrap();
    let mut cmd = Command::new("xmlsec1");
    cmd.arg("--encrypt")
        .arg("--pubkey-cert-der")
        .arg(p("sp.crt.der"))
        .args(["--session-key", "aes-128"])
        .arg("--xml-data")
        .arg(p("data.xml"));
    id_attrs(&mut cmd)
        .args(["--node-id", id])
        .arg("--output")
        .arg(p("out.xml"))
        .arg(p("tmpl.xml"));
    run(&mut cmd);
    std::fs::read_to_string(p("out.xml")).unwrap()
}

/// Verifies the HTTP-Redirect binding's query-string signature (bindings §3.4.4.1) with
/// `openssl dgst`: `signed` is `SAMLRequest=…&RelayState=…&SigAlg=…` exactly as sent.
pub fn openssl_verifies(signed: &str, signature: &[u8], cert_der: &[u8]) -> bool {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n);
    std::fs::write(p("msg"), signed).unwrap();
    std::fs::write(p("sig"), signature).unwrap();
    std::fs::write(p("cert.der"), cert_der).unwrap();
    let pubkey = run(Command::new("openssl")
        .args(["x509", "-inform", "der", "-pubkey", "-noout", "-in"])
        .arg(p("cert.der")));
    std::fs::write(p("pub.pem"), pubkey).unwrap();
    Command::new("openssl")
        .args(["dgst", "-sha256", "-verify"])
        .arg(p("pub.pem"))
        .arg("-signature")
        .arg(p("sig"))
        .arg(p("msg"))
        .output()
        .unwrap()
        .status
        .success()
}
