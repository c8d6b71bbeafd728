//! ACS validations per second for typical signed Responses (issue 5 target: ≥ 2,000/s).
//!
//!     cargo run --release -p portcullis-saml --example acs_bench [-- SECONDS]
//!
//! Fixtures come from the xmlsec1/openssl CLIs (as in the tests). Each case is measured on one
//! thread and then on as many threads as the machine has cores. The full path is measured:
//! base64, pre-parse, policy, libxmlsec1 verification, re-parse of the verified bytes, checks.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use portcullis_saml::{Expectations, validate_response};
use support::*;

fn run(b64: &str, threads: usize, budget: Duration) -> f64 {
    let (sp, idp) = (sp_config(), idp_config());
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let e = Expectations {
                        sp: &sp,
                        idp: &idp,
                        in_response_to: Some(REQUEST_ID),
                        now: now(),
                        skew_seconds: 120,
                    };
                    let mut n = 0u64;
                    while start.elapsed() < budget {
                        for _ in 0..50 {
                            let a = validate_response(b64, &e).expect("fixture validates");
                            std::hint::black_box(a);
                        }
                        n += 50;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let budget = Duration::from_secs(seconds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cases = [
        ("signed Assertion (Entra ID/ADFS style)", Spec::valid()),
        (
            "signed Response + signed Assertion (Okta style)",
            Spec {
                sign_response: true,
                ..Spec::valid()
            },
        ),
        (
            "signed Assertion, encrypted AES-128-GCM",
            Spec {
                encryption: Encryption::Aes128Gcm,
                ..Spec::valid()
            },
        ),
    ];
    println!("acs_bench: {seconds} s per measurement, {cores} core(s)");
    for (name, spec) in cases {
        let xml = build_xml(&spec).expect("xmlsec1 and openssl make the fixture");
        let b64 = b64(&xml);
        // Warm up (xmlsec initialisation, allocator).
        run(&b64, 1, Duration::from_millis(200));
        let one = run(&b64, 1, budget);
        let all = run(&b64, cores, budget);
        println!(
            "{name} ({:.1} KiB): {one:.0} validations/s on 1 thread, {all:.0} validations/s on {cores} threads",
            xml.len() as f64 / 1024.0
        );
    }
}
