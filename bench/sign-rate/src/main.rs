//! `sign-rate [SECONDS] [THREADS]`: signatures per second for ES256, EdDSA and RS256 over a
//! signing input the size of a client-credentials access token's header and payload, on 1 thread
//! and then on THREADS threads (default 2). Keys are generated, serialised to PKCS#8 and parsed
//! back exactly as the server does, and signed with the same calls (a fresh `SystemRandom` per
//! signature, as `SigningKey::sign` does). Prints one JSON object per line.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    self, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair,
};

enum Key {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

impl Key {
    fn new(alg: &str) -> Key {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match alg {
            "ES256" => {
                let d = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
                Key::Es256(EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, d.as_ref()).unwrap())
            }
            "EdDSA" => {
                let d = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
                Key::EdDsa(Ed25519KeyPair::from_pkcs8_maybe_unchecked(d.as_ref()).unwrap())
            }
            _ => {
                let kp = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
                let d: aws_lc_rs::encoding::Pkcs8V1Der<'_> = kp.as_der().unwrap();
                Key::Rs256(RsaKeyPair::from_pkcs8(d.as_ref()).unwrap())
            }
        }
    }

    fn sign(&self, msg: &[u8]) -> usize {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        match self {
            Key::Es256(k) => k.sign(&rng, msg).unwrap().as_ref().len(),
            Key::EdDsa(k) => k.sign(msg).as_ref().len(),
            Key::Rs256(k) => {
                let mut sig = vec![0u8; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, msg, &mut sig).unwrap();
                sig.len()
            }
        }
    }
}

fn run(key: &Key, msg: &[u8], dur: Duration) -> u64 {
    let start = Instant::now();
    let mut n = 0u64;
    let mut sink = 0usize;
    loop {
        for _ in 0..16 {
            sink = sink.wrapping_add(key.sign(msg));
        }
        n += 16;
        if start.elapsed() >= dur {
            break;
        }
    }
    std::hint::black_box(sink);
    n
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let dur = Duration::from_secs_f64(secs);
    // About the size of header.payload of a client-credentials access token (base64url).
    let msg: Arc<Vec<u8>> = Arc::new(b"eyJhbGciOiJFUzI1NiIsImtpZCI6InNpZ18wMUs".iter().copied().cycle().take(420).collect());
    for alg in ["ES256", "EdDSA", "RS256"] {
        let key = Arc::new(Key::new(alg));
        run(&key, &msg, Duration::from_millis(200)); // warm up
        let t = Instant::now();
        let n1 = run(&key, &msg, dur);
        let single = n1 as f64 / t.elapsed().as_secs_f64();
        let t = Instant::now();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let (key, msg) = (key.clone(), msg.clone());
                std::thread::spawn(move || run(&key, &msg, dur))
            })
            .collect();
        let nt: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let multi = nt as f64 / t.elapsed().as_secs_f64();
        println!(
            "{{\"alg\":\"{alg}\",\"single_core_per_s\":{single:.0},\"threads\":{threads},\"measured_multi_per_s\":{multi:.0}}}"
        );
    }
}
