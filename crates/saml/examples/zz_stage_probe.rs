#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#[path = "../tests/support/mod.rs"]
mod support;
use std::time::Instant;
use portcullis_saml::verify::{SignatureVerifier, VerifyFailure, XmlSecVerifier};
use portcullis_saml::*;
use support::*;
struct Cached(String);
impl SignatureVerifier for Cached {
    fn verify(&self, _: &str, _: &[Vec<u8>], _: bool) -> Result<String, VerifyFailure> { Ok(self.0.clone()) }
}
fn main() {
    let xml = build_xml(&Spec::valid()).unwrap();
    let b = b64(&xml);
    let (sp, idp) = (sp_config(), idp_config());
    let e = Expectations { sp: &sp, idp: &idp, in_response_to: Some(REQUEST_ID), now: now(), skew_seconds: 120 };
    let c14n = XmlSecVerifier.verify(&xml, &idp.certificates_der, false).unwrap();
    let n = 3000;
    let t = Instant::now(); for _ in 0..n { validate_response(&b, &e).unwrap(); } let total = t.elapsed().as_secs_f64() / n as f64;
    let cv = Cached(c14n);
    let t = Instant::now(); for _ in 0..n { validate_response_with(&cv, &b, &e).unwrap(); } let ours = t.elapsed().as_secs_f64() / n as f64;
    let t = Instant::now(); for _ in 0..n { XmlSecVerifier.verify(&xml, &idp.certificates_der, false).unwrap(); } let xs = t.elapsed().as_secs_f64() / n as f64;
    use samael::crypto::CryptoProvider;
    let cert = samael::crypto::CertificateDer::from(idp.certificates_der[0].clone());
    let t = Instant::now(); for _ in 0..n { samael::crypto::XmlSec::verify_signed_xml(xml.as_bytes(), &cert, Some("ID")).unwrap(); } let vs = t.elapsed().as_secs_f64() / n as f64;
    let t = Instant::now(); for _ in 0..n { let p = libxml::parser::Parser::default(); std::hint::black_box(p.parse_string(&xml).unwrap()); } let parse = t.elapsed().as_secs_f64() / n as f64;
    println!("samael verify_signed_xml {:.1} us, libxml parse {:.1} us", vs*1e6, parse*1e6);
    println!("total {:.1} us, ours (no xmlsec) {:.1} us, xmlsec verify {:.1} us", total*1e6, ours*1e6, xs*1e6);
}
