#![allow(clippy::unwrap_used)]
use portcullis_egress::gate::LogObserver;
use portcullis_egress::{EgressGate, GateConfig, Purpose, StaticResolver};
use std::sync::Arc;
use std::time::Instant;
#[tokio::main(flavor = "current_thread")]
async fn main() {
    let gate = EgressGate::new(
        Arc::new(StaticResolver::default()),
        Arc::new(LogObserver),
        GateConfig::default(),
    );
    let policy = portcullis_egress::policy::parse(r#"{"rules":[{"id":"lo","scheme":"http","cidr":"127.0.0.0/8","port":9000,"purposes":["jwks_fetch"]}]}"#).unwrap();
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        let d = gate
            .decide(
                &policy,
                "http://127.0.0.1:9000/jwks.json",
                Purpose::JwksFetch,
            )
            .await
            .unwrap();
        assert!(d.allowed);
    }
    println!(
        "decide: {:.3} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
    let t = Instant::now();
    for _ in 0..n {
        let u = reqwest::Url::parse("http://127.0.0.1:9000/jwks.json").unwrap();
        std::hint::black_box(u);
    }
    println!(
        "url parse: {:.3} µs",
        t.elapsed().as_secs_f64() * 1e6 / n as f64
    );
}
