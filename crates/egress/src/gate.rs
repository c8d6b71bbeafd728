//! The egress gate: the only outbound HTTP client of the server.
//!
//! Invariants:
//! 1. every request is decided against the environment's policy before anything connects: the
//!    gate resolves the name itself and checks every address (an IP literal is checked as is);
//! 2. the connection goes to the addresses that were checked — the HTTP client is built with
//!    those addresses pinned for that name, so DNS cannot change between check and use;
//! 3. redirects are not followed by the HTTP client; the gate follows a bounded number itself,
//!    deciding each new target exactly as the first — or none, through [`EgressGate::send_once`]
//!    (webhooks: a signed event is never forwarded to a URL nobody reviewed);
//! 4. responses are bounded in time and size;
//! 5. every refusal reaches the [`Observer`] (audit record, `egress.denied` event, metric) and the
//!    caller gets the decision, which names the rule it lacked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::decide::{Decision, Target, decide};
use crate::policy::{Policy, Purpose};

pub use reqwest::Method;

/// Checks that a PEM bundle parses into certificates the TLS stack accepts.
pub fn check_ca_bundle(pem: &[u8]) -> Result<(), String> {
    reqwest::Certificate::from_pem_bundle(pem)
        .map(|_| ())
        .map_err(|e| format!("the CA bundle does not parse: {e}"))
}

/// Name resolution, replaceable in tests (a name that resolves to a public and a private address).
pub trait Resolver: Send + Sync + 'static {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>>;
}

/// The system resolver (getaddrinfo through tokio).
pub struct SystemResolver;

impl Resolver for SystemResolver {
    fn lookup(&self, host: &str, port: u16) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let target = format!("{host}:{port}");
        Box::pin(async move {
            let mut out: Vec<IpAddr> = tokio::net::lookup_host(target)
                .await?
                .map(|s| s.ip())
                .collect();
            out.dedup();
            Ok(out)
        })
    }
}

/// Fixed answers, for tests and for sites that pin names without DNS.
#[derive(Default)]
pub struct StaticResolver(pub HashMap<String, Vec<IpAddr>>);

impl Resolver for StaticResolver {
    fn lookup(&self, host: &str, _: u16) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let r = self
            .0
            .get(host)
            .cloned()
            .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "name not known"));
        Box::pin(async move { r })
    }
}

/// Told about every refusal, to audit it and count it.
pub trait Observer: Send + Sync + 'static {
    fn refused(&self, env: &str, decision: &Decision) -> BoxFuture<'static, ()>;
}

/// An observer that only logs (tools and tests that have no store).
pub struct LogObserver;

impl Observer for LogObserver {
    fn refused(&self, env: &str, d: &Decision) -> BoxFuture<'static, ()> {
        tracing::warn!(env, target = %d.target.display(), purpose = d.purpose.as_str(), refusal = ?d.refusal, "egress refused");
        Box::pin(async {})
    }
}

#[derive(Debug, Clone)]
pub struct GateConfig {
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_response_bytes: usize,
    pub max_redirects: usize,
    /// `http://proxy:3128`: every request goes through this HTTP CONNECT proxy.
    pub proxy: Option<String>,
}

impl Default for GateConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            max_response_bytes: 1 << 20,
            max_redirects: 3,
            proxy: None,
        }
    }
}

/// The policy and trust roots of the environment a request is made for.
#[derive(Debug, Clone)]
pub struct EgressContext {
    pub env_id: String,
    pub policy: Arc<Policy>,
    /// PEM bundle of the environment's private CAs; when set, only these are trusted.
    pub ca_bundle_pem: Option<Arc<Vec<u8>>>,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EgressError {
    #[error("egress refused: {}", .0.refusal.clone().unwrap_or_default())]
    Refused(Box<Decision>),
    #[error("invalid outbound URL: {0}")]
    BadUrl(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error("the request timed out")]
    Timeout,
    #[error("the response is larger than {0} bytes")]
    TooLarge(usize),
    #[error("too many redirects")]
    TooManyRedirects,
    #[error("the request failed: {0}")]
    Http(String),
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    env: String,
    version: i64,
    host: String,
    port: u16,
    addrs: Vec<SocketAddr>,
    /// The trust roots the client was built with: a context with another bundle (or none) never
    /// reuses it, whatever its policy version says.
    ca_bundle: Option<Arc<Vec<u8>>>,
}

/// Resolves the one pinned name to its checked addresses and the proxy's name through the system
/// resolver; any other name fails, so a spelling the gate did not check cannot reach DNS.
struct Pinned {
    host: String,
    addrs: Vec<SocketAddr>,
    proxy_host: Option<String>,
}

/// A DNS name as [`Target`] keeps it: lower case, without the root's trailing dot (the HTTP
/// client sees `example.com.` where the gate checked `example.com`).
fn normalise(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl reqwest::dns::Resolve for Pinned {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let n = normalise(name.as_str());
        let pinned = (n == self.host).then(|| self.addrs.clone());
        let proxy = self.proxy_host.as_deref() == Some(n.as_str());
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = match pinned {
                Some(a) => a,
                None if proxy => tokio::net::lookup_host(format!("{host}:0"))
                    .await?
                    .collect(),
                None => {
                    return Err(format!("{host} is not the name the egress gate checked").into());
                }
            };
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Headers that carry credentials: dropped once a redirect leaves the first request's origin,
/// as browsers and reqwest's own redirect handling do (the gate follows redirects itself).
const CREDENTIAL_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

pub struct EgressGate {
    resolver: Arc<dyn Resolver>,
    observer: Arc<dyn Observer>,
    config: GateConfig,
    clients: Mutex<HashMap<ClientKey, (reqwest::Client, Instant)>>,
}

const CLIENT_TTL: Duration = Duration::from_secs(60);

impl EgressGate {
    pub fn new(
        resolver: Arc<dyn Resolver>,
        observer: Arc<dyn Observer>,
        config: GateConfig,
    ) -> Self {
        Self {
            resolver,
            observer,
            config,
            clients: Mutex::new(HashMap::new()),
        }
    }

    pub fn config(&self) -> &GateConfig {
        &self.config
    }

    /// Resolves and decides, connecting to nothing (`portcullis egress test`).
    pub async fn decide(
        &self,
        policy: &Policy,
        url: &str,
        purpose: Purpose,
    ) -> Result<Decision, EgressError> {
        let (_, target) = Target::parse(url).map_err(EgressError::BadUrl)?;
        let addrs = self.addresses(policy, &target, purpose).await?;
        Ok(decide(policy, &target, purpose, &addrs))
    }

    /// The addresses to check: the literal, or the name resolved — only when some rule could
    /// allow it, so that a refused name is not even looked up.
    async fn addresses(
        &self,
        policy: &Policy,
        t: &Target,
        purpose: Purpose,
    ) -> Result<Vec<IpAddr>, EgressError> {
        match t.ip {
            Some(ip) => Ok(vec![ip]),
            None if !crate::decide::covered(policy, t, purpose) => Ok(vec![]),
            None => self
                .resolver
                .lookup(&t.host, t.port)
                .await
                .map_err(|e| EgressError::Resolve(t.host.clone(), e.to_string())),
        }
    }

    fn client(
        &self,
        ctx: &EgressContext,
        target: &Target,
        addrs: &[IpAddr],
    ) -> Result<reqwest::Client, EgressError> {
        let sockets: Vec<SocketAddr> = addrs
            .iter()
            .map(|a| SocketAddr::new(*a, target.port))
            .collect();
        let key = ClientKey {
            env: ctx.env_id.clone(),
            version: ctx.policy.version,
            host: target.host.clone(),
            port: target.port,
            addrs: sockets,
            ca_bundle: ctx.ca_bundle_pem.clone(),
        };
        if let Ok(m) = self.clients.lock()
            && let Some((c, at)) = m.get(&key)
            && at.elapsed() < CLIENT_TTL
        {
            return Ok(c.clone());
        }
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.config.timeout)
            .connect_timeout(self.config.connect_timeout)
            .dns_resolver(Arc::new(Pinned {
                host: target.host.clone(),
                addrs: key.addrs.clone(),
                proxy_host: self
                    .config
                    .proxy
                    .as_deref()
                    .and_then(|p| url::Url::parse(p).ok())
                    .and_then(|u| u.host_str().map(normalise)),
            }));
        b = match &self.config.proxy {
            Some(p) => b.proxy(
                reqwest::Proxy::all(p).map_err(|e| EgressError::Http(format!("proxy {p}: {e}")))?,
            ),
            None => b.no_proxy(),
        };
        if let Some(pem) = &ctx.ca_bundle_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| EgressError::Http(format!("CA bundle: {e}")))?;
            b = b.tls_certs_only(certs);
        }
        let c = b.build().map_err(|e| EgressError::Http(e.to_string()))?;
        if let Ok(mut m) = self.clients.lock() {
            // Expired clients go when a new one is cached, not on every request's lookup.
            m.retain(|_, (_, at)| at.elapsed() < CLIENT_TTL);
            m.insert(key, (c.clone(), Instant::now()));
        }
        Ok(c)
    }

    /// Sends `req` for `purpose` under `ctx`'s policy, following allowed redirects.
    pub async fn send(
        &self,
        ctx: &EgressContext,
        purpose: Purpose,
        req: Request,
    ) -> Result<Response, EgressError> {
        self.send_inner(ctx, purpose, req, true).await
    }

    /// Sends `req` like [`send`](Self::send) but returns a 3xx as the answer, following nothing.
    pub async fn send_once(
        &self,
        ctx: &EgressContext,
        purpose: Purpose,
        req: Request,
    ) -> Result<Response, EgressError> {
        self.send_inner(ctx, purpose, req, false).await
    }

    async fn send_inner(
        &self,
        ctx: &EgressContext,
        purpose: Purpose,
        req: Request,
        follow: bool,
    ) -> Result<Response, EgressError> {
        let mut method = req.method.clone();
        let mut url = req.url.clone();
        let mut body = req.body.clone();
        let mut origin = None;
        let mut left_origin = false;
        for _ in 0..=self.config.max_redirects {
            let (parsed, target) = Target::parse(&url).map_err(EgressError::BadUrl)?;
            match &origin {
                None => origin = Some((target.scheme, target.host.clone(), target.port)),
                Some((scheme, host, port)) => {
                    left_origin |= (*scheme, host.as_str(), *port)
                        != (target.scheme, &target.host, target.port);
                }
            }
            let addrs = self.addresses(&ctx.policy, &target, purpose).await?;
            let decision = decide(&ctx.policy, &target, purpose, &addrs);
            if !decision.allowed {
                metrics::counter!("portcullis_egress_denied_total", "purpose" => purpose.as_str())
                    .increment(1);
                self.observer.refused(&ctx.env_id, &decision).await;
                return Err(EgressError::Refused(Box::new(decision)));
            }
            let client = self.client(ctx, &target, &addrs)?;
            let mut rb = client.request(method.clone(), parsed.clone());
            for (k, v) in &req.headers {
                if left_origin && CREDENTIAL_HEADERS.iter().any(|c| k.eq_ignore_ascii_case(c)) {
                    continue;
                }
                rb = rb.header(k, v);
            }
            if let Some(b) = &body {
                rb = rb.body(b.clone());
            }
            let started = Instant::now();
            let res = rb.send().await.map_err(|e| {
                if e.is_timeout() {
                    EgressError::Timeout
                } else {
                    EgressError::Http(with_causes(&e))
                }
            })?;
            metrics::histogram!("portcullis_egress_request_duration_seconds", "purpose" => purpose.as_str()).record(started.elapsed().as_secs_f64());
            let status = res.status();
            if status.is_redirection()
                && follow
                && let Some(loc) = res
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
            {
                url = parsed
                    .join(loc)
                    .map_err(|e| EgressError::BadUrl(e.to_string()))?
                    .to_string();
                if status == reqwest::StatusCode::SEE_OTHER
                    || (method == reqwest::Method::POST && status.as_u16() < 303)
                {
                    method = reqwest::Method::GET;
                    body = None;
                }
                continue;
            }
            let headers = res
                .headers()
                .iter()
                .filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_owned())))
                .collect();
            let final_url = res.url().to_string();
            let body = read_capped(res, self.config.max_response_bytes).await?;
            return Ok(Response {
                status: status.as_u16(),
                headers,
                body,
                url: final_url,
            });
        }
        Err(EgressError::TooManyRedirects)
    }
}

/// The error and its causes: reqwest's own message ("error sending request for url …") hides
/// whether the connection was refused or the TLS handshake failed, and on which certificate.
fn with_causes(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out = format!("{out}: {text}");
        }
        cur = c.source();
    }
    out
}

async fn read_capped(mut res: reqwest::Response, max: usize) -> Result<Vec<u8>, EgressError> {
    let mut out = Vec::new();
    while let Some(chunk) = res.chunk().await.map_err(|e| {
        if e.is_timeout() {
            EgressError::Timeout
        } else {
            EgressError::Http(with_causes(&e))
        }
    })? {
        if out.len() + chunk.len() > max {
            return Err(EgressError::TooLarge(max));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
