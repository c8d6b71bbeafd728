//! The egress gate against real HTTP receivers on loopback.
//!
//! Every receiver is a `TcpListener` on `127.0.0.x:0` answering canned HTTP/1.1 responses, some
//! behind TLS with certificates from a CA made at test time; names are resolved by a
//! [`StaticResolver`] (and by the test's own CONNECT proxy from its own table), so nothing here
//! touches DNS or leaves the machine. Each refusal is checked three ways: the error names what a
//! rule lacks, the [`Observer`] is told exactly once, and the receiver behind the refused address
//! (and the proxy in front of it) never sees a connection.
//!
//! The last test makes bypassing the gate hard: no other crate may hold an HTTP client.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use portcullis_egress::decide::Decision;
use portcullis_egress::gate::{Method, Request, Response};
use portcullis_egress::{
    EgressContext, EgressError, EgressGate, GateConfig, Observer, Purpose, StaticResolver,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

// ---------------------------------------------------------------------------------------------
// Receivers

/// What a receiver answers on a path.
#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    Body(String),
    /// 302 to this `Location`.
    Redirect(String),
    /// 200 with a body of this many bytes.
    Sized(usize),
    /// Never answers.
    Stall,
    /// Sends the headers of a 10-byte body, then nothing.
    StallBody,
}

type Routes = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP/1.1 server on loopback that records every connection and request (before answering,
/// so a finished `send` has been recorded) and answers from its routes, with keep-alive.
struct Receiver {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Receiver {
    async fn start(routes: impl Fn(&str) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), routes).await
    }

    async fn start_on(
        at: SocketAddr,
        routes: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind(at).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let routes: Routes = Arc::new(routes);
        let (c, s) = (connections.clone(), seen.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(serve(stream, routes.clone(), s.clone()));
            }
        });
        Self {
            addr,
            connections,
            seen,
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn paths(&self) -> Vec<String> {
        self.seen().into_iter().map(|s| s.path).collect()
    }
}

async fn serve(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    routes: Routes,
    seen: Arc<Mutex<Vec<Seen>>>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let mut lines = head.split("\r\n");
        let mut first = lines.next().unwrap_or_default().split(' ');
        let method = first.next().unwrap_or_default().to_owned();
        let path = first.next().unwrap_or_default().to_owned();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let body_len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < head_end + body_len {
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..head_end + body_len);
        let reply = routes(&path);
        seen.lock().unwrap().push(Seen {
            method,
            path,
            headers,
        });
        let written = match reply {
            Reply::Body(b) => {
                stream
                    .write_all(&response("200 OK", &[], b.as_bytes()))
                    .await
            }
            Reply::Redirect(to) => {
                stream
                    .write_all(&response("302 Found", &[("location", &to)], b""))
                    .await
            }
            Reply::Sized(n) => {
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {n}\r\n\r\n");
                let mut w = stream.write_all(head.as_bytes()).await;
                let chunk = vec![b'x'; 16 * 1024];
                let mut left = n;
                while w.is_ok() && left > 0 {
                    let k = left.min(chunk.len());
                    w = stream.write_all(&chunk[..k]).await;
                    left -= k;
                }
                w
            }
            Reply::Stall => std::future::pending().await,
            Reply::StallBody => {
                let _ = stream
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc")
                    .await;
                std::future::pending().await
            }
        };
        if written.is_err() {
            return;
        }
    }
}

fn response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in headers {
        out += &format!("{k}: {v}\r\n");
    }
    out += "\r\n";
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

// ---------------------------------------------------------------------------------------------
// The gate

/// Records every refusal it is told about.
#[derive(Default)]
struct Counting(Mutex<Vec<(String, Decision)>>);

impl Counting {
    fn calls(&self) -> Vec<(String, Decision)> {
        self.0.lock().unwrap().clone()
    }
}

impl Observer for Counting {
    fn refused(&self, env: &str, decision: &Decision) -> BoxFuture<'static, ()> {
        self.0
            .lock()
            .unwrap()
            .push((env.to_owned(), decision.clone()));
        Box::pin(async {})
    }
}

const ENV: &str = "env_gate_test";

struct Harness {
    gate: EgressGate,
    observer: Arc<Counting>,
    ctx: EgressContext,
}

impl Harness {
    /// A gate enforcing `policy` (JSON), resolving only `names`.
    fn new(policy: &str, names: &[(&str, &[&str])], config: GateConfig) -> Self {
        let names: HashMap<String, Vec<IpAddr>> = names
            .iter()
            .map(|(n, a)| {
                (
                    (*n).to_owned(),
                    a.iter().map(|s| s.parse().unwrap()).collect(),
                )
            })
            .collect();
        let observer = Arc::new(Counting::default());
        let gate = EgressGate::new(Arc::new(StaticResolver(names)), observer.clone(), config);
        let policy = portcullis_egress::policy::parse(policy)
            .unwrap_or_else(|e| panic!("the test's policy: {e}"));
        Self {
            gate,
            observer,
            ctx: EgressContext {
                env_id: ENV.into(),
                policy: Arc::new(policy),
                ca_bundle_pem: None,
            },
        }
    }

    async fn get(&self, url: &str, purpose: Purpose) -> Result<Response, EgressError> {
        self.send(url, purpose, vec![]).await
    }

    async fn send(
        &self,
        url: &str,
        purpose: Purpose,
        headers: Vec<(String, String)>,
    ) -> Result<Response, EgressError> {
        let req = Request {
            method: Method::GET,
            url: url.into(),
            headers,
            body: None,
        };
        tokio::time::timeout(
            Duration::from_secs(20),
            self.gate.send(&self.ctx, purpose, req),
        )
        .await
        .expect("the gate answered within 20 s")
    }

    /// Sends, expects a refusal whose message contains every needle, and checks that the observer
    /// was told about exactly this refusal, once.
    async fn refused(&self, url: &str, purpose: Purpose, needles: &[&str]) -> Decision {
        let before = self.observer.calls().len();
        let d = match self.get(url, purpose).await {
            Err(EgressError::Refused(d)) => *d,
            other => panic!("{url} for {purpose:?}: expected a refusal, got {other:?}"),
        };
        let message = EgressError::Refused(Box::new(d.clone())).to_string();
        assert!(message.starts_with("egress refused: "), "{message}");
        for n in needles {
            assert!(message.contains(n), "{url}: {message:?} lacks {n:?}");
        }
        assert!(!d.allowed);
        let calls = self.observer.calls();
        assert_eq!(
            calls.len(),
            before + 1,
            "one observer call per refusal: {url}"
        );
        assert_eq!(calls[before], (ENV.to_owned(), d.clone()));
        d
    }
}

fn http_rule(id: &str, port: u16, extra: &str) -> String {
    format!(r#"{{"id":"{id}","scheme":"http","port":{port},"purposes":["webhook"],{extra}}}"#)
}

fn policy(rules: &[String]) -> String {
    format!(r#"{{"rules":[{}]}}"#, rules.join(","))
}

fn loopback_policy(port: u16) -> String {
    policy(&[http_rule("lo", port, r#""cidr":"127.0.0.0/8""#)])
}

fn hello(path: &str) -> Reply {
    Reply::Body(format!("hello from {path}"))
}

// ---------------------------------------------------------------------------------------------
// Allowed: exactly what a rule covers

#[tokio::test]
async fn a_loopback_cidr_rule_allows_exactly_its_receiver() {
    let rx = Receiver::start(hello).await;
    let other = Receiver::start(hello).await;
    let h = Harness::new(&loopback_policy(rx.port()), &[], GateConfig::default());

    let res = h.get(&rx.url("/hook"), Purpose::Webhook).await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"hello from /hook");
    assert_eq!(res.url, rx.url("/hook"));
    let d = h
        .gate
        .decide(&h.ctx.policy, &rx.url("/hook"), Purpose::Webhook)
        .await
        .unwrap();
    assert!(d.allowed);
    assert_eq!(d.addresses.len(), 1);
    assert_eq!(d.addresses[0].allowed_by.as_deref(), Some("lo"));

    // Anything the rule does not name: purpose, port, scheme, address family, mapped address.
    let p = rx.port();
    h.refused(
        &rx.url("/jwks"),
        Purpose::JwksFetch,
        &[
            &format!("no rule allows http://127.0.0.1:{p} for jwks_fetch"),
            "purpose jwks_fetch",
        ],
    )
    .await;
    h.refused(
        &other.url("/hook"),
        Purpose::Webhook,
        &[&format!(
            "no rule allows http://127.0.0.1:{} for webhook",
            other.port()
        )],
    )
    .await;
    h.refused(
        &format!("https://127.0.0.1:{p}/hook"),
        Purpose::Webhook,
        &[
            &format!("no rule allows https://127.0.0.1:{p}"),
            "scheme https",
        ],
    )
    .await;
    h.refused(
        &format!("http://[::1]:{p}/hook"),
        Purpose::Webhook,
        &["::1 is a loopback address: only a rule naming it by CIDR allows it"],
    )
    .await;
    h.refused(
        &format!("http://[::ffff:127.0.0.1]:{p}/hook"),
        Purpose::Webhook,
        &["::ffff:127.0.0.1 is a loopback address"],
    )
    .await;
    // Schemes other than http(s) are not URLs the gate sends at all.
    let e = h
        .get("ftp://127.0.0.1/x", Purpose::Webhook)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EgressError::BadUrl(m) if m.contains("scheme \"ftp\" is not allowed")),
        "{e:?}"
    );

    assert_eq!(rx.paths(), ["/hook"], "only the allowed request arrived");
    assert_eq!(rx.connections(), 1);
    assert_eq!(other.connections(), 0);
}

#[tokio::test]
async fn a_name_is_pinned_to_the_addresses_that_were_checked() {
    // The system resolver knows nothing of `receiver.test`: reaching the receiver proves the
    // connection went to the address the gate checked.
    let rx = Receiver::start(hello).await;
    let h = Harness::new(
        &policy(&[http_rule(
            "named",
            rx.port(),
            r#""host":"receiver.test","cidr":"127.0.0.0/8""#,
        )]),
        &[("receiver.test", &["127.0.0.1"])],
        GateConfig::default(),
    );
    let url = format!("http://receiver.test:{}/ok", rx.port());
    let res = h.get(&url, Purpose::Webhook).await.unwrap();
    assert_eq!(res.body, b"hello from /ok");
    assert_eq!(
        rx.seen()[0].header("host"),
        Some(format!("receiver.test:{}", rx.port()).as_str())
    );
    assert!(h.observer.calls().is_empty());
}

#[tokio::test]
async fn a_trailing_dot_does_not_escape_the_pinned_address() {
    // `localhost` is pinned to 127.0.0.2 (where `pinned` listens); the system resolver would
    // answer 127.0.0.1 (where `elsewhere` listens on the same port). `localhost.` is the same name
    // and must reach the checked address, never a fresh resolution.
    let pinned = Receiver::start_on("127.0.0.2:0".parse().unwrap(), hello).await;
    let elsewhere = Receiver::start_on(
        SocketAddr::new("127.0.0.1".parse().unwrap(), pinned.port()),
        hello,
    )
    .await;
    let h = Harness::new(
        &policy(&[http_rule(
            "pinned",
            pinned.port(),
            r#""host":"localhost","cidr":"127.0.0.2/32""#,
        )]),
        &[("localhost", &["127.0.0.2"])],
        GateConfig::default(),
    );
    for url in [
        format!("http://localhost:{}/a", pinned.port()),
        format!("http://localhost.:{}/b", pinned.port()),
        format!("http://LOCALHOST.:{}/c", pinned.port()),
    ] {
        let res = h.get(&url, Purpose::Webhook).await;
        assert!(res.is_ok(), "{url}: {res:?}");
    }
    assert_eq!(pinned.paths(), ["/a", "/b", "/c"]);
    assert_eq!(
        elsewhere.connections(),
        0,
        "nothing escaped the pinned address"
    );
}

// ---------------------------------------------------------------------------------------------
// Refused: special addresses, reached by name or literally

#[tokio::test]
async fn a_name_resolving_to_loopback_needs_a_cidr_rule() {
    let rx = Receiver::start(hello).await;
    let p = rx.port();
    let names: &[(&str, &[&str])] = &[("loopback.test", &["127.0.0.1"])];
    let url = format!("http://loopback.test:{p}/x");

    // A host rule alone allows ordinary public addresses only.
    let h = Harness::new(
        &policy(&[http_rule("byname", p, r#""host":"loopback.test""#)]),
        names,
        GateConfig::default(),
    );
    let d = h
        .refused(
            &url,
            Purpose::Webhook,
            &["127.0.0.1 is a loopback address: only a rule naming it by CIDR allows it"],
        )
        .await;
    assert_eq!(d.target.host, "loopback.test");
    assert_eq!(d.addresses[0].allowed_by, None);

    // No rule at all (an isolated environment starts so): the refusal names what is missing.
    let h = Harness::new(r#"{"rules":[]}"#, names, GateConfig::default());
    h.refused(
        &url,
        Purpose::Webhook,
        &[&format!(
            "no rule allows http://loopback.test:{p} for webhook (a rule needs scheme http, host loopback.test, port {p} and purpose webhook)"
        )],
    )
    .await;
    h.refused(&rx.url("/x"), Purpose::Webhook, &["no rule allows"])
        .await;
    assert_eq!(rx.connections(), 0);
}

#[tokio::test]
async fn the_metadata_service_is_refused() {
    let h = Harness::new(
        &policy(&[
            http_rule("meta", 80, r#""host":"metadata.test""#),
            http_rule("meta6", 80, r#""host":"metadata6.test""#),
            http_rule("lo", 80, r#""cidr":"127.0.0.0/8""#),
        ]),
        &[
            ("metadata.test", &["169.254.169.254"]),
            ("metadata6.test", &["fd00:ec2::254"]),
            ("linklocal.test", &["169.254.10.10"]),
        ],
        GateConfig::default(),
    );
    h.refused(
        "http://169.254.169.254/latest/meta-data/",
        Purpose::Webhook,
        &["169.254.169.254 is a metadata service address: only a rule naming it by CIDR allows it"],
    )
    .await;
    h.refused(
        "http://169.254.169.254/latest/meta-data/",
        Purpose::MetadataFetch,
        &["no rule allows http://169.254.169.254:80 for metadata_fetch"],
    )
    .await;
    h.refused(
        "http://metadata.test/latest/meta-data/",
        Purpose::Webhook,
        &["169.254.169.254 is a metadata service address"],
    )
    .await;
    h.refused(
        "http://metadata6.test/",
        Purpose::Webhook,
        &["fd00:ec2::254 is a metadata service address"],
    )
    .await;
    h.refused(
        "http://[::ffff:169.254.169.254]/",
        Purpose::Webhook,
        &["::ffff:169.254.169.254 is a metadata service address"],
    )
    .await;
}

#[tokio::test]
async fn ipv4_mapped_ipv6_is_refused_even_when_the_ipv4_address_is_allowed() {
    // On a dual-stack host ::ffff:127.0.0.1 reaches the IPv4 loopback: it must not slip past a
    // rule written for 127.0.0.0/8, by literal or by name.
    let rx = Receiver::start(hello).await;
    let p = rx.port();
    let h = Harness::new(
        &policy(&[
            http_rule("lo", p, r#""cidr":"127.0.0.0/8""#),
            http_rule("named", p, r#""host":"mapped.test","cidr":"127.0.0.0/8""#),
        ]),
        &[("mapped.test", &["::ffff:127.0.0.1"])],
        GateConfig::default(),
    );
    h.refused(
        &format!("http://[::ffff:127.0.0.1]:{p}/x"),
        Purpose::Webhook,
        &["::ffff:127.0.0.1 is a loopback address: only a rule naming it by CIDR allows it"],
    )
    .await;
    let d = h
        .refused(
            &format!("http://mapped.test:{p}/x"),
            Purpose::Webhook,
            &["::ffff:127.0.0.1 is a loopback address"],
        )
        .await;
    assert_eq!(
        d.addresses[0].address,
        "::ffff:127.0.0.1".parse::<IpAddr>().unwrap()
    );
    assert_eq!(rx.connections(), 0);
}

#[tokio::test]
async fn every_address_of_a_name_must_pass() {
    let rx = Receiver::start(hello).await;
    let p = rx.port();
    let h = Harness::new(
        &policy(&[
            http_rule("split", p, r#""host":"split.test""#),
            http_rule("private", p, r#""host":"private.test""#),
            http_rule("fenced", p, r#""host":"fenced.test","cidr":"127.0.0.0/8""#),
        ]),
        &[
            ("split.test", &["93.184.216.34", "127.0.0.1"]),
            ("private.test", &["93.184.216.34", "10.0.0.5"]),
            ("fenced.test", &["127.0.0.1", "93.184.216.34"]),
        ],
        GateConfig::default(),
    );
    let d = h
        .refused(
            &format!("http://split.test:{p}/"),
            Purpose::Webhook,
            &["127.0.0.1 is a loopback address"],
        )
        .await;
    assert_eq!(d.addresses[0].allowed_by.as_deref(), Some("split"), "{d:?}");
    assert_eq!(d.addresses[1].allowed_by, None, "{d:?}");
    h.refused(
        &format!("http://private.test:{p}/"),
        Purpose::Webhook,
        &["10.0.0.5 is a private address"],
    )
    .await;
    // A CIDR rule fences the name in: a public address outside the block is refused too.
    h.refused(
        &format!("http://fenced.test:{p}/"),
        Purpose::Webhook,
        &[&format!(
            "93.184.216.34 is outside the CIDR blocks of every rule for http://fenced.test:{p}"
        )],
    )
    .await;
    // Nothing connected, to the public address or to the receiver.
    assert_eq!(rx.connections(), 0);
}

#[tokio::test]
async fn an_ip_literal_is_not_covered_by_a_host_rule() {
    let rx = Receiver::start(hello).await;
    let p = rx.port();
    let h = Harness::new(
        &policy(&[http_rule(
            "named",
            p,
            r#""host":"receiver.test","cidr":"127.0.0.0/8""#,
        )]),
        &[("receiver.test", &["127.0.0.1"])],
        GateConfig::default(),
    );
    h.get(
        &format!("http://receiver.test:{p}/by-name"),
        Purpose::Webhook,
    )
    .await
    .unwrap();
    // Every spelling of the same address is a literal (the URL parser normalises them).
    for literal in ["127.0.0.1", "127.1", "2130706433", "0x7f.0.0.1"] {
        h.refused(
            &format!("http://{literal}:{p}/literal"),
            Purpose::Webhook,
            &[&format!("no rule allows http://127.0.0.1:{p} for webhook")],
        )
        .await;
    }
    let e = h
        .get(
            &format!("http://user:pw@receiver.test:{p}/"),
            Purpose::Webhook,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EgressError::BadUrl(m) if m.contains("credentials")),
        "{e:?}"
    );
    assert_eq!(rx.paths(), ["/by-name"]);
}

#[tokio::test]
async fn a_name_no_rule_covers_is_not_even_resolved() {
    // The resolver knows no names: a lookup would fail with a resolution error, not a refusal.
    let h = Harness::new(
        &policy(&[http_rule("x", 80, r#""host":"allowed.test""#)]),
        &[],
        GateConfig::default(),
    );
    for (url, purpose) in [
        ("http://exfiltrate.example.com/", Purpose::Webhook),
        ("http://allowed.test:8080/", Purpose::Webhook),
        ("https://allowed.test/", Purpose::Webhook),
        ("http://allowed.test/", Purpose::JwksFetch),
    ] {
        let d = h.refused(url, purpose, &["no rule allows"]).await;
        assert!(d.addresses.is_empty(), "{url}: {d:?}");
    }
}

#[tokio::test]
async fn an_unknown_name_is_an_error_and_connects_nowhere() {
    let h = Harness::new(
        &policy(&[http_rule("x", 80, r#""host":"nowhere.test""#)]),
        &[],
        GateConfig::default(),
    );
    let e = h
        .get("http://nowhere.test/", Purpose::Webhook)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EgressError::Resolve(host, _) if host == "nowhere.test"),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Redirects

#[tokio::test]
async fn a_redirect_to_a_refused_address_is_refused_before_connecting() {
    let target = Receiver::start(|_: &str| Reply::Body("secret".into())).await;
    let tp = target.port();
    let origin = Receiver::start(move |path: &str| match path {
        "/to-name" => Reply::Redirect(format!("http://internal.test:{tp}/secret")),
        "/to-literal" => Reply::Redirect(format!("http://127.0.0.1:{tp}/secret")),
        "/to-metadata" => Reply::Redirect("http://169.254.169.254/latest/meta-data/".into()),
        _ => Reply::Body("?".into()),
    })
    .await;
    let h = Harness::new(
        &policy(&[
            http_rule("origin", origin.port(), r#""cidr":"127.0.0.0/8""#),
            // Allows the name, but only at ordinary public addresses.
            http_rule("internal", tp, r#""host":"internal.test""#),
        ]),
        &[("internal.test", &["127.0.0.1"])],
        GateConfig::default(),
    );
    let d = h
        .refused(
            &origin.url("/to-name"),
            Purpose::Webhook,
            &["127.0.0.1 is a loopback address"],
        )
        .await;
    assert_eq!(
        d.target.host, "internal.test",
        "the refusal is on the redirect target"
    );
    assert_eq!(d.target.port, tp);
    h.refused(
        &origin.url("/to-literal"),
        Purpose::Webhook,
        &[&format!("no rule allows http://127.0.0.1:{tp} for webhook")],
    )
    .await;
    h.refused(
        &origin.url("/to-metadata"),
        Purpose::Webhook,
        &["no rule allows http://169.254.169.254:80"],
    )
    .await;
    assert_eq!(origin.paths(), ["/to-name", "/to-literal", "/to-metadata"]);
    assert_eq!(
        target.connections(),
        0,
        "the refused receiver never saw a connection"
    );
    assert_eq!(h.observer.calls().len(), 3);
}

/// `/hop/N` redirects to `/hop/N-1`; `/hop/0` answers.
fn hops(path: &str) -> Reply {
    match path
        .strip_prefix("/hop/")
        .and_then(|n| n.parse::<u32>().ok())
    {
        Some(0) => Reply::Body("landed".into()),
        Some(n) => Reply::Redirect(format!("/hop/{}", n - 1)),
        None => Reply::Body("?".into()),
    }
}

#[tokio::test]
async fn allowed_redirects_are_followed_up_to_max_redirects() {
    let rx = Receiver::start(hops).await;
    let config = GateConfig {
        max_redirects: 2,
        ..GateConfig::default()
    };
    let h = Harness::new(&loopback_policy(rx.port()), &[], config);

    let res = h.get(&rx.url("/hop/2"), Purpose::Webhook).await.unwrap();
    assert_eq!(res.body, b"landed");
    assert_eq!(res.url, rx.url("/hop/0"));
    assert_eq!(rx.paths(), ["/hop/2", "/hop/1", "/hop/0"]);

    let e = h
        .get(&rx.url("/hop/3"), Purpose::Webhook)
        .await
        .unwrap_err();
    assert!(matches!(e, EgressError::TooManyRedirects), "{e:?}");
    assert_eq!(
        rx.paths()[3..],
        ["/hop/3", "/hop/2", "/hop/1"],
        "the first request and two redirects, no more"
    );
    assert!(
        h.observer.calls().is_empty(),
        "too many redirects is not a refusal"
    );

    let none = Harness::new(
        &loopback_policy(rx.port()),
        &[],
        GateConfig {
            max_redirects: 0,
            ..GateConfig::default()
        },
    );
    let e = none
        .get(&rx.url("/hop/1"), Purpose::Webhook)
        .await
        .unwrap_err();
    assert!(matches!(e, EgressError::TooManyRedirects), "{e:?}");
    assert_eq!(rx.seen().len(), 7);
}

#[tokio::test]
async fn credentials_do_not_follow_a_redirect_to_another_origin() {
    let other = Receiver::start(hello).await;
    let op = other.port();
    let origin = Receiver::start(move |path: &str| match path {
        "/away" => Reply::Redirect(format!("http://127.0.0.1:{op}/landed")),
        "/stay" => Reply::Redirect("/landed".into()),
        _ => Reply::Body("here".into()),
    })
    .await;
    let h = Harness::new(
        &policy(&[
            http_rule("origin", origin.port(), r#""cidr":"127.0.0.0/8""#),
            http_rule("other", op, r#""cidr":"127.0.0.0/8""#),
        ]),
        &[],
        GateConfig::default(),
    );
    let creds = vec![
        (
            "authorization".to_owned(),
            "Basic c2VjcmV0OnNlY3JldA==".to_owned(),
        ),
        ("x-trace".to_owned(), "t1".to_owned()),
    ];
    h.send(&origin.url("/stay"), Purpose::Webhook, creds.clone())
        .await
        .unwrap();
    h.send(&origin.url("/away"), Purpose::Webhook, creds)
        .await
        .unwrap();
    let at_origin = origin.seen();
    assert_eq!(at_origin.len(), 3);
    assert!(
        at_origin
            .iter()
            .all(|s| s.header("authorization").is_some())
    );
    let at_other = other.seen();
    assert_eq!(at_other.len(), 1);
    assert_eq!(at_other[0].method, "GET");
    assert_eq!(
        at_other[0].header("authorization"),
        None,
        "{:?}",
        at_other[0]
    );
    assert_eq!(at_other[0].header("x-trace"), Some("t1"));
}

// ---------------------------------------------------------------------------------------------
// Bounds

#[tokio::test]
async fn responses_larger_than_the_limit_are_refused() {
    let rx = Receiver::start(|path: &str| match path {
        "/exact" => Reply::Sized(4096),
        "/over" => Reply::Sized(4097),
        _ => Reply::Sized(8 << 20),
    })
    .await;
    let h = Harness::new(
        &loopback_policy(rx.port()),
        &[],
        GateConfig {
            max_response_bytes: 4096,
            ..GateConfig::default()
        },
    );
    let res = h.get(&rx.url("/exact"), Purpose::Webhook).await.unwrap();
    assert_eq!(res.body.len(), 4096);
    for path in ["/over", "/huge"] {
        let e = h.get(&rx.url(path), Purpose::Webhook).await.unwrap_err();
        assert!(matches!(e, EgressError::TooLarge(4096)), "{path}: {e:?}");
        assert_eq!(e.to_string(), "the response is larger than 4096 bytes");
    }
    assert!(h.observer.calls().is_empty());
}

#[tokio::test]
async fn a_slow_receiver_times_out() {
    let rx = Receiver::start(|path: &str| match path {
        "/stall" => Reply::Stall,
        _ => Reply::StallBody,
    })
    .await;
    let h = Harness::new(
        &loopback_policy(rx.port()),
        &[],
        GateConfig {
            timeout: Duration::from_millis(300),
            ..GateConfig::default()
        },
    );
    for path in ["/stall", "/stall-body"] {
        let started = Instant::now();
        let e = h.get(&rx.url(path), Purpose::Webhook).await.unwrap_err();
        let took = started.elapsed();
        assert!(matches!(e, EgressError::Timeout), "{path}: {e:?}");
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(5),
            "{path}: {took:?}"
        );
    }
    assert_eq!(rx.paths(), ["/stall", "/stall-body"]);
    assert!(h.observer.calls().is_empty());
}

#[tokio::test]
async fn the_observer_hears_each_refusal_once_and_nothing_else() {
    let rx = Receiver::start(hello).await;
    let h = Harness::new(&loopback_policy(rx.port()), &[], GateConfig::default());
    h.get(&rx.url("/a"), Purpose::Webhook).await.unwrap();
    for purpose in [
        Purpose::MetadataFetch,
        Purpose::JwksFetch,
        Purpose::TokenExchange,
    ] {
        let _ = h.get(&rx.url("/b"), purpose).await.unwrap_err();
    }
    h.get(&rx.url("/c"), Purpose::Webhook).await.unwrap();
    // A dry-run decision (`egress test` without --connect) is not a refusal of traffic.
    let d = h
        .gate
        .decide(&h.ctx.policy, &rx.url("/d"), Purpose::JwksFetch)
        .await
        .unwrap();
    assert!(!d.allowed);
    let calls = h.observer.calls();
    let purposes: Vec<Purpose> = calls.iter().map(|(_, d)| d.purpose).collect();
    assert_eq!(
        purposes,
        [
            Purpose::MetadataFetch,
            Purpose::JwksFetch,
            Purpose::TokenExchange
        ]
    );
    assert!(calls.iter().all(|(env, d)| env == ENV && !d.allowed));
    assert_eq!(rx.paths(), ["/a", "/c"]);
}

// ---------------------------------------------------------------------------------------------
// A private CA per environment (air-gapped sites run their own PKI)

/// A certificate authority made at test time: its key issues server certificates, its
/// certificate (PEM) is what an environment's CA bundle holds. No system store knows it.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(common_name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: pem(cert.der()),
            issuer: Issuer::new(params, key),
        }
    }

    /// This CA's certificate as an environment's bundle.
    fn bundle(&self) -> Arc<Vec<u8>> {
        Arc::new(self.pem.clone().into_bytes())
    }

    /// A TLS server configuration presenting a certificate for `names`, issued by this CA.
    fn server(&self, names: &[&str]) -> Arc<ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let sans: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        Arc::new(config)
    }
}

fn pem(der: &[u8]) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out += std::str::from_utf8(line).unwrap();
        out.push('\n');
    }
    out + "-----END CERTIFICATE-----\n"
}

const IDP: &str = "idp.test";

/// A [`Receiver`] behind TLS on 127.0.0.1, reached as `idp.test`. Records each handshake's
/// outcome: `ok`, or the server's error — which names the alert a client that rejected the
/// certificate sent (`UnknownCA`, `BadCertificate`).
struct TlsReceiver {
    rx: Receiver,
    handshakes: Arc<Mutex<Vec<String>>>,
}

impl TlsReceiver {
    async fn start(
        config: Arc<ServerConfig>,
        routes: impl Fn(&str) -> Reply + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let connections = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handshakes = Arc::new(Mutex::new(Vec::new()));
        let routes: Routes = Arc::new(routes);
        let (c, s, hs) = (connections.clone(), seen.clone(), handshakes.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (acceptor, routes, s, hs) =
                    (acceptor.clone(), routes.clone(), s.clone(), hs.clone());
                tokio::spawn(async move {
                    let accepted =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                            .await;
                    match accepted {
                        Ok(Ok(tls)) => {
                            hs.lock().unwrap().push("ok".to_owned());
                            serve(tls, routes, s).await;
                        }
                        Ok(Err(e)) => hs.lock().unwrap().push(e.to_string()),
                        Err(_) => hs.lock().unwrap().push("handshake timed out".to_owned()),
                    }
                });
            }
        });
        Self {
            rx: Receiver {
                addr,
                connections,
                seen,
            },
            handshakes,
        }
    }

    fn port(&self) -> u16 {
        self.rx.port()
    }

    fn url(&self, path: &str) -> String {
        format!("https://{IDP}:{}{path}", self.port())
    }

    /// The outcome of the `n`th handshake (from 0), waiting up to 5 s for the server to see it
    /// end: a client that rejects the certificate may return before the server reads its alert.
    async fn handshake(&self, n: usize) -> String {
        let started = Instant::now();
        loop {
            if let Some(h) = self.handshakes.lock().unwrap().get(n) {
                return h.clone();
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "handshake {n} never ended"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The rule of the issue's example: `idp.test` at loopback, https (the default) on `port`.
fn idp_policy(port: u16) -> String {
    policy(&[format!(
        r#"{{"id":"idp","host":"{IDP}","cidr":"127.0.0.0/8","port":{port},"purposes":["jwks_fetch"]}}"#
    )])
}

/// A gate that allows `idp.test` on `port`, for an environment trusting `bundle`.
fn idp_harness(port: u16, bundle: Option<Arc<Vec<u8>>>, config: GateConfig) -> Harness {
    let mut h = Harness::new(&idp_policy(port), &[(IDP, &["127.0.0.1"])], config);
    h.ctx.ca_bundle_pem = bundle;
    h
}

/// Expects `url` to fail on the receiver's certificate: the policy allowed it (no refusal is
/// observed), the error says why the certificate was rejected, and the receiver's `n`th handshake
/// ended on the client's `alert`, before any request.
async fn untrusted(h: &Harness, rx: &TlsReceiver, n: usize, why: &str, alert: &str) {
    let before = rx.rx.seen().len();
    let e = h
        .get(&rx.url("/jwks"), Purpose::JwksFetch)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, EgressError::Http(m) if m.contains("invalid peer certificate") && m.contains(why)),
        "expected a certificate error naming {why:?}, got {e:?}"
    );
    let handshake = rx.handshake(n).await;
    assert!(
        handshake.contains(alert),
        "handshake {n}: {handshake:?} lacks {alert:?}"
    );
    assert_eq!(
        rx.rx.seen().len(),
        before,
        "no request crossed the handshake"
    );
    assert!(h.observer.calls().is_empty(), "a TLS failure is no refusal");
}

#[tokio::test]
async fn the_environments_ca_bundle_is_what_verifies_the_receiver() {
    let ca = Ca::new("Portcullis test private CA");
    let stranger = Ca::new("Some other private CA");
    let rx = TlsReceiver::start(ca.server(&[IDP]), hello).await;
    let p = rx.port();

    // With the environment's bundle: verified, end to end.
    let h = idp_harness(p, Some(ca.bundle()), GateConfig::default());
    let res = h.get(&rx.url("/jwks"), Purpose::JwksFetch).await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"hello from /jwks");
    assert_eq!(res.url, rx.url("/jwks"));
    assert_eq!(rx.handshake(0).await, "ok");
    assert_eq!(
        rx.rx.seen()[0].header("host"),
        Some(format!("{IDP}:{p}").as_str())
    );

    // A bundle of several CAs trusts each of them.
    let both = format!("{}{}", stranger.pem, ca.pem).into_bytes();
    let h = idp_harness(p, Some(Arc::new(both)), GateConfig::default());
    let res = h.get(&rx.url("/jwks"), Purpose::JwksFetch).await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(rx.handshake(1).await, "ok");

    // Without a bundle the system's roots apply, and none of them knows the private CA.
    let h = idp_harness(p, None, GateConfig::default());
    untrusted(&h, &rx, 2, "UnknownIssuer", "UnknownCA").await;

    // Another CA's bundle: only that CA is trusted, not the system roots and not ours.
    let h = idp_harness(p, Some(stranger.bundle()), GateConfig::default());
    untrusted(&h, &rx, 3, "UnknownIssuer", "UnknownCA").await;

    assert_eq!(rx.rx.paths(), ["/jwks", "/jwks"]);
    assert_eq!(rx.rx.connections(), 4);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_rejected() {
    // Issued by the trusted CA, for a name other than the one the gate checked and connects as.
    let ca = Ca::new("Portcullis test private CA");
    let rx = TlsReceiver::start(ca.server(&["sso.test", "127.0.0.1"]), hello).await;
    let h = idp_harness(rx.port(), Some(ca.bundle()), GateConfig::default());
    untrusted(&h, &rx, 0, "not valid for name", "BadCertificate").await;
    assert_eq!(rx.rx.connections(), 1);
}

#[tokio::test]
async fn a_changed_bundle_takes_effect_on_the_next_request() {
    // One gate, one environment, one policy version: only the context's bundle changes between
    // requests. Each request must be verified against the bundle it was sent with, never against
    // the one an earlier request's (cached) client was built with.
    let ca = Ca::new("Portcullis test private CA");
    let stranger = Ca::new("Some other private CA");
    let rx = TlsReceiver::start(ca.server(&[IDP]), hello).await;
    let mut h = idp_harness(rx.port(), Some(ca.bundle()), GateConfig::default());
    h.get(&rx.url("/jwks"), Purpose::JwksFetch).await.unwrap();
    assert_eq!(rx.handshake(0).await, "ok");

    h.ctx.ca_bundle_pem = None;
    untrusted(&h, &rx, 1, "UnknownIssuer", "UnknownCA").await;
    h.ctx.ca_bundle_pem = Some(stranger.bundle());
    untrusted(&h, &rx, 2, "UnknownIssuer", "UnknownCA").await;

    h.ctx.ca_bundle_pem = Some(ca.bundle());
    h.get(&rx.url("/jwks"), Purpose::JwksFetch).await.unwrap();
    assert_eq!(rx.rx.paths(), ["/jwks", "/jwks"]);
}

// ---------------------------------------------------------------------------------------------
// An HTTP CONNECT proxy (many firewalled sites mandate one)

/// A tiny HTTP proxy on loopback, as a firewalled site runs: `CONNECT host:port` opens a tunnel,
/// and an absolute-form request (`GET http://host:port/…`) is forwarded as it came. It resolves
/// names from its own table, as a site proxy resolves with its own DNS. Records every connection
/// and every request line, before connecting anywhere.
struct Proxy {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start(names: &[(&str, &str)]) -> Self {
        let names: Arc<HashMap<String, IpAddr>> = Arc::new(
            names
                .iter()
                .map(|(n, a)| ((*n).to_owned(), a.parse().unwrap()))
                .collect(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (c, r) = (connections.clone(), requests.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(relay(stream, names.clone(), r.clone()));
            }
        });
        Self {
            addr,
            connections,
            requests,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

async fn relay(
    mut client: TcpStream,
    names: Arc<HashMap<String, IpAddr>>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match client.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(_) if buf.len() > 16 * 1024 => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let line = head.split("\r\n").next().unwrap_or_default().to_owned();
    requests.lock().unwrap().push(line.clone());
    let mut words = line.split(' ');
    let method = words.next().unwrap_or_default();
    let target = words.next().unwrap_or_default();
    let connect = method == "CONNECT";
    let authority = if connect {
        Some(target)
    } else {
        target
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
    };
    let upstream = match authority.and_then(|a| a.rsplit_once(':')) {
        Some((host, port)) => match (
            names.get(host).copied().or_else(|| host.parse().ok()),
            port.parse::<u16>(),
        ) {
            (Some(ip), Ok(port)) => TcpStream::connect((ip, port)).await.ok(),
            _ => None,
        },
        None => None,
    };
    let Some(mut upstream) = upstream else {
        let _ = client
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
            .await;
        return;
    };
    let forwarded = if connect {
        let answered = client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await;
        match answered {
            Ok(()) => upstream.write_all(&buf[head_end..]).await,
            Err(e) => Err(e),
        }
    } else {
        upstream.write_all(&buf).await
    };
    if forwarded.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

fn through(proxy: &Proxy) -> GateConfig {
    GateConfig {
        proxy: Some(proxy.url()),
        ..GateConfig::default()
    }
}

#[tokio::test]
async fn an_allowed_request_goes_through_the_proxy() {
    // HTTPS: a CONNECT tunnel to the name, TLS end to end through it (the proxy sees ciphertext,
    // the private CA verifies the receiver).
    let ca = Ca::new("Portcullis test private CA");
    let rx = TlsReceiver::start(ca.server(&[IDP]), hello).await;
    let p = rx.port();
    let proxy = Proxy::start(&[(IDP, "127.0.0.1")]).await;
    let h = idp_harness(p, Some(ca.bundle()), through(&proxy));
    let res = h.get(&rx.url("/jwks"), Purpose::JwksFetch).await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(res.body, b"hello from /jwks");
    assert_eq!(proxy.requests(), [format!("CONNECT {IDP}:{p} HTTP/1.1")]);
    assert_eq!(proxy.connections(), 1);
    assert_eq!(rx.handshake(0).await, "ok");
    assert_eq!(rx.rx.paths(), ["/jwks"]);
    assert_eq!(
        rx.rx.seen()[0].header("host"),
        Some(format!("{IDP}:{p}").as_str())
    );

    // Plain HTTP (a loopback rule that says so) goes through the proxy too, in absolute form.
    let plain = Receiver::start(hello).await;
    let proxy = Proxy::start(&[]).await;
    let h = Harness::new(&loopback_policy(plain.port()), &[], through(&proxy));
    let res = h.get(&plain.url("/hook"), Purpose::Webhook).await.unwrap();
    assert_eq!(res.status, 200);
    assert_eq!(
        proxy.requests(),
        [format!("GET {} HTTP/1.1", plain.url("/hook"))]
    );
    assert_eq!(
        plain.paths(),
        [plain.url("/hook")],
        "forwarded as the proxy received it"
    );
    assert!(h.observer.calls().is_empty());
}

#[tokio::test]
async fn a_refused_request_never_reaches_the_proxy() {
    let ca = Ca::new("Portcullis test private CA");
    let rx = TlsReceiver::start(ca.server(&[IDP]), |path: &str| match path {
        "/away" => Reply::Redirect("https://exfiltrate.example.com/collect".into()),
        _ => Reply::Body("keys".into()),
    })
    .await;
    let p = rx.port();
    // The proxy could reach every one of these targets: only the gate stands in the way.
    let proxy = Proxy::start(&[(IDP, "127.0.0.1"), ("exfiltrate.example.com", "127.0.0.1")]).await;
    let h = idp_harness(p, Some(ca.bundle()), through(&proxy));
    h.refused(
        &rx.url("/jwks"),
        Purpose::Webhook,
        &[&format!("no rule allows https://{IDP}:{p} for webhook")],
    )
    .await;
    h.refused(
        &format!("http://{IDP}:{p}/jwks"),
        Purpose::JwksFetch,
        &[&format!("no rule allows http://{IDP}:{p} for jwks_fetch")],
    )
    .await;
    h.refused(
        &format!("https://127.0.0.1:{p}/jwks"),
        Purpose::JwksFetch,
        &[&format!(
            "no rule allows https://127.0.0.1:{p} for jwks_fetch"
        )],
    )
    .await;
    h.refused(
        "https://exfiltrate.example.com/collect",
        Purpose::JwksFetch,
        &["no rule allows https://exfiltrate.example.com:443 for jwks_fetch"],
    )
    .await;
    h.refused(
        "http://169.254.169.254/latest/meta-data/",
        Purpose::JwksFetch,
        &["no rule allows http://169.254.169.254:80"],
    )
    .await;
    assert_eq!(proxy.connections(), 0, "{:?}", proxy.requests());
    assert_eq!(rx.rx.connections(), 0);

    // The proxy works: an allowed request reaches it, and a redirect from there to a refused
    // target is refused before a second tunnel is asked for.
    let d = h
        .refused(
            &rx.url("/away"),
            Purpose::JwksFetch,
            &["no rule allows https://exfiltrate.example.com:443 for jwks_fetch"],
        )
        .await;
    assert_eq!(d.target.host, "exfiltrate.example.com");
    assert_eq!(proxy.requests(), [format!("CONNECT {IDP}:{p} HTTP/1.1")]);
    assert_eq!(rx.rx.paths(), ["/away"]);
    assert_eq!(h.observer.calls().len(), 6);
}

// ---------------------------------------------------------------------------------------------
// Bypassing the gate

/// Source text that opens an outbound connection or builds an HTTP client.
const CLIENT_PATTERNS: &[&str] = &[
    "reqwest::Client",
    "Client::builder",
    "ClientBuilder",
    "reqwest::get",
    "reqwest::blocking",
    "hyper_util::client",
    "hyper::client",
    "TcpStream::connect",
    "UdpSocket::bind",
    "ureq::",
];

/// Where outbound clients may live: the gate itself; the operator's admin client, which only talks
/// to the `--url` it is given (docs/decisions/0005-defaults-that-favour-isolation.md); and the test
/// harness, which is never linked into the server.
const CLIENT_HOMES: &[&str] = &[
    "crates/egress/src/gate.rs",
    "crates/cli/src/",
    "crates/testkit/src/",
];

/// Crates that may depend on an HTTP client library outside `[dev-dependencies]`.
const CLIENT_CRATES: &[&str] = &["portcullis-egress", "portcullis-cli", "portcullis-testkit"];
const CLIENT_LIBRARIES: &[&str] = &[
    "reqwest",
    "ureq",
    "isahc",
    "curl",
    "surf",
    "attohttpc",
    "hyper-util",
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn no_outbound_http_client_outside_the_gate() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let crates = root.join("crates");
    let mut files = Vec::new();
    let mut manifests = Vec::new();
    for entry in std::fs::read_dir(&crates).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("src").is_dir() {
            rust_files(&dir.join("src"), &mut files);
        }
        if dir.join("Cargo.toml").is_file() {
            manifests.push(dir.join("Cargo.toml"));
        }
    }
    assert!(
        files.len() > 20 && manifests.len() >= 5,
        "the scan sees the workspace"
    );

    let mut offences = Vec::new();
    let mut seen_in_gate = false;
    for f in &files {
        let rel = f
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for p in CLIENT_PATTERNS.iter().filter(|p| line.contains(*p)) {
                if CLIENT_HOMES.iter().any(|h| rel.starts_with(h)) {
                    seen_in_gate |= rel == "crates/egress/src/gate.rs";
                } else {
                    offences.push(format!("{rel}:{}: {p}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        seen_in_gate,
        "the scan finds the gate's own client (the scan works)"
    );

    for m in &manifests {
        let doc: toml::Table = toml::from_str(&std::fs::read_to_string(m).unwrap()).unwrap();
        let name = doc["package"]["name"].as_str().unwrap().to_owned();
        if CLIENT_CRATES.contains(&name.as_str()) {
            continue;
        }
        let mut tables: Vec<(String, &toml::Table)> = Vec::new();
        for key in ["dependencies", "build-dependencies"] {
            if let Some(t) = doc.get(key).and_then(|v| v.as_table()) {
                tables.push((key.to_owned(), t));
            }
        }
        for (cfg, t) in doc
            .get("target")
            .and_then(|v| v.as_table())
            .into_iter()
            .flatten()
        {
            for key in ["dependencies", "build-dependencies"] {
                if let Some(d) = t.get(key).and_then(|v| v.as_table()) {
                    tables.push((format!("target.{cfg}.{key}"), d));
                }
            }
        }
        for (section, deps) in tables {
            for lib in CLIENT_LIBRARIES.iter().filter(|l| deps.contains_key(**l)) {
                offences.push(format!("{name}: [{section}] lists {lib}"));
            }
        }
    }
    assert!(
        offences.is_empty(),
        "outbound HTTP goes through portcullis_egress::EgressGate only (see its module docs); \
         found:\n{}",
        offences.join("\n")
    );
}
