//! The egress gate's overhead per request over a bare HTTP client, on loopback.
//!
//! ```sh
//! cargo run --release -p portcullis-egress --example gate_overhead            # N = 5000
//! cargo run --release -p portcullis-egress --example gate_overhead -- 20000   # another N
//! ```
//!
//! One receiver on 127.0.0.1 answers `200 ok` with keep-alive. The same N sequential GETs go
//! through a bare `reqwest::Client` (redirects off, no proxy: what the gate builds) and through
//! `EgressGate::send` (URL parsing, the policy decision, the pinned-client cache, redirect and size
//! handling) under a one-rule policy (`cidr: 127.0.0.0/8`). Both run in alternating rounds after a
//! warm-up, so drift on a shared machine falls on both alike, on one runtime thread shared with
//! the receiver: no hand-offs between cores, so the difference is the CPU work the gate adds, set
//! against the cheapest round trip there is. Prints Markdown: mean, p50 and p99 per request and
//! the overhead of the gate. Target: under 5 %.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_egress::gate::{LogObserver, Method, Request};
use portcullis_egress::{EgressContext, EgressGate, GateConfig, Purpose, StaticResolver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ROUNDS: usize = 50;
const WARM_UP: usize = 500;

/// Answers every request on a connection with `200 ok`, keeping the connection open.
async fn serve(mut s: TcpStream) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        while let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            buf.drain(..i + 4);
            let answer =
                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok";
            if s.write_all(answer).await.is_err() {
                return;
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

struct Stats {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).saturating_sub(1)];
    Stats {
        mean: v.iter().sum::<Duration>() / v.len() as u32,
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

/// The gate's extra time over the bare client, in µs and in per cent (negative: noise).
fn overhead(gate: Duration, bare: Duration) -> String {
    let (g, b) = (gate.as_secs_f64(), bare.as_secs_f64());
    format!("{:+.1} µs ({:+.1} %)", (g - b) * 1e6, (g / b - 1.0) * 100.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("N is a number"))
        .unwrap_or(5000);
    let per_round = n.div_ceil(ROUNDS);

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            tokio::spawn(serve(s));
        }
    });
    let url = format!("http://{addr}/jwks.json");

    let bare = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let gate = EgressGate::new(
        Arc::new(StaticResolver::default()),
        Arc::new(LogObserver),
        GateConfig::default(),
    );
    let policy = portcullis_egress::policy::parse(&format!(
        r#"{{"rules":[{{"id":"lo","scheme":"http","cidr":"127.0.0.0/8","port":{},"purposes":["jwks_fetch"]}}]}}"#,
        addr.port()
    ))
    .unwrap();
    let ctx = EgressContext {
        env_id: "env_bench".into(),
        policy: Arc::new(policy),
        ca_bundle_pem: None,
    };

    let bare_once = || async {
        let started = Instant::now();
        let res = bare.get(&url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let body = res.bytes().await.unwrap();
        assert_eq!(&body[..], b"ok");
        started.elapsed()
    };
    let gate_once = || async {
        let started = Instant::now();
        let req = Request {
            method: Method::GET,
            url: url.clone(),
            headers: vec![],
            body: None,
        };
        let res = gate.send(&ctx, Purpose::JwksFetch, req).await.unwrap();
        assert_eq!(res.status, 200);
        assert_eq!(res.body, b"ok");
        started.elapsed()
    };

    for _ in 0..WARM_UP {
        bare_once().await;
        gate_once().await;
    }
    let (mut b, mut g) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for round in 0..ROUNDS {
        let k = per_round.min(n - b.len());
        // Alternate which goes first, so neither always runs on a freshly idle connection.
        if round % 2 == 0 {
            for _ in 0..k {
                b.push(bare_once().await);
            }
            for _ in 0..k {
                g.push(gate_once().await);
            }
        } else {
            for _ in 0..k {
                g.push(gate_once().await);
            }
            for _ in 0..k {
                b.push(bare_once().await);
            }
        }
    }
    let (sb, sg) = (stats(b), stats(g));
    println!(
        "N = {n} sequential GETs per client on 127.0.0.1 (keep-alive, 2-byte body), \
         {ROUNDS} alternating rounds after {WARM_UP} warm-up requests each.\n"
    );
    println!("| client | mean | p50 | p99 |\n|---|---|---|---|");
    println!(
        "| bare reqwest | {} | {} | {} |",
        us(sb.mean),
        us(sb.p50),
        us(sb.p99)
    );
    println!(
        "| egress gate | {} | {} | {} |",
        us(sg.mean),
        us(sg.p50),
        us(sg.p99)
    );
    println!(
        "| overhead | {} | {} | {} |",
        overhead(sg.mean, sb.mean),
        overhead(sg.p50, sb.p50),
        overhead(sg.p99, sb.p99),
    );
}
