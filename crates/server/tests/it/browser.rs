//! End to end in a real browser: headless Chromium, driven over W3C WebDriver through
//! chromedriver, signs in through the hosted login and lands on the client's redirect URI — a
//! loopback receiver this test runs — with a code, which the test then redeems.
//!
//! Chromium is required, never skipped: `scripts/test` installs Debian's `chromium` and
//! `chromium-driver` when they are missing. Every wait is bounded by [`WAIT`].

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::server::{Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::oauth::{
    PASSWORD, Pkce, Tenant, active, create_client, issued, jwt_claims, query, token, web_app, with,
};
use crate::str_of;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The bound of every wait: a start, a page load, an element, a redirect.
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);
/// The key of an element reference in WebDriver answers (W3C WebDriver §12.1).
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver child process in its own process group; dropping it ends the group (the
/// driver and the browsers it started).
struct ChromeDriver {
    child: Child,
    url: String,
    profile: tempfile::TempDir,
    http: reqwest::Client,
}

impl ChromeDriver {
    async fn start() -> Self {
        for bin in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                Path::new(bin).exists(),
                "{bin} is missing: install the Debian packages chromium and chromium-driver \
                 (scripts/test does)"
            );
        }
        let profile = tempfile::Builder::new()
            .prefix("portcullis-chromium-")
            .tempdir()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                profile.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting chromedriver");
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(WAIT)
            .build()
            .unwrap();
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
            http,
        };
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await;
            if let Ok(res) = ready {
                let v: Value = res.json().await.unwrap_or_default();
                if v["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not get ready: {}",
                driver.log()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn log(&self) -> String {
        let log = std::fs::read_to_string(self.profile.path().join("chromedriver.log"))
            .unwrap_or_default();
        let tail = log.len().saturating_sub(4000);
        log[tail..].to_owned()
    }

    /// A new session of headless Chromium with a throwaway profile.
    async fn session(&self) -> Session {
        let profile = self.profile.path().join("profile");
        let caps = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "timeouts": { "pageLoad": WAIT.as_millis() as u64, "script": WAIT.as_millis() as u64, "implicit": 0 },
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let res = self
            .http
            .post(format!("{}/session", self.url))
            .json(&caps)
            .send()
            .await
            .expect("creating a WebDriver session");
        let status = res.status();
        let v: Value = res.json().await.unwrap_or_default();
        assert_eq!(status, StatusCode::OK, "new session: {v}\n{}", self.log());
        Session {
            http: self.http.clone(),
            base: format!("{}/session/{}", self.url, str_of(&v["value"], "sessionId")),
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A WebDriver session (W3C WebDriver, commands by their URL templates).
struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    /// A command's `value`, or its error (status and WebDriver error code).
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.map_err(|e| e.to_string())?;
        let status = res.status();
        let v: Value = res.json().await.map_err(|e| e.to_string())?;
        if status == StatusCode::OK {
            Ok(v["value"].clone())
        } else {
            Err(format!("{status}: {}", v["value"]))
        }
    }

    async fn must(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let what = format!("{method} {path}");
        self.call(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    async fn goto(&self, url: &str) {
        self.must(Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    async fn current_url(&self) -> String {
        let v = self.must(Method::GET, "/url", None).await;
        v.as_str().expect("a URL").to_owned()
    }

    /// The element matching `css`, waiting for it to appear (a page may still be loading).
    async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + WAIT;
        let query = json!({ "using": "css selector", "value": css });
        loop {
            match self
                .call(Method::POST, "/element", Some(query.clone()))
                .await
            {
                Ok(v) => return str_of(&v, ELEMENT).to_owned(),
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "no {css} within {WAIT:?} on {}: {e}",
                    self.current_url().await
                ),
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.must(
            Method::POST,
            &format!("/element/{el}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.must(
            Method::POST,
            &format!("/element/{el}/click"),
            Some(json!({})),
        )
        .await;
    }

    /// Waits until the browser is at a URL starting with `prefix`; returns that URL.
    async fn wait_for_url(&self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let url = self.current_url().await;
            if url.starts_with(prefix) {
                return url;
            }
            assert!(
                Instant::now() < deadline,
                "still at {url} after {WAIT:?}, not {prefix}…"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn close(self) {
        let _ = self.call(Method::DELETE, "", None).await;
    }
}

/// A loopback HTTP server standing in for the client application: it answers every request
/// with a small page and reports each request target.
async fn receiver() -> (String, mpsc::UnboundedReceiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let tx = tx.clone();
            // One task per connection: a browser may open idle speculative connections.
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16_384 {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head);
                if let Some(target) = head.split(' ').nth(1) {
                    let _ = tx.send(target.to_owned());
                }
                let page = "<!doctype html><title>Signed in</title><p>Signed in.</p>";
                let res = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = conn.write_all(res.as_bytes()).await;
            });
        }
    });
    (format!("{base}/callback"), rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_signs_in_through_the_hosted_login() {
    let driver = ChromeDriver::start().await;
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let t = Tenant::new(&s, "browser", "ES256").await;
    let (redirect, mut requests) = receiver().await;
    let app = create_client(
        &s,
        &t,
        with(web_app(), json!({ "redirect_uris": [redirect] })),
    )
    .await;
    let pkce = Pkce::new();
    let state = "browser-state-42";
    let url = crate::oauth::authorize_url(
        &t,
        &[
            ("response_type", "code"),
            ("client_id", &app.id),
            ("redirect_uri", &redirect),
            ("scope", "openid email"),
            ("state", state),
            ("nonce", "browser-nonce"),
            ("code_challenge", &pkce.challenge),
            ("code_challenge_method", "S256"),
        ],
    );

    let browser = driver.session().await;
    browser.goto(&url).await;
    browser.wait_for_url(&t.at("/login?")).await;
    browser.type_into("#email", &t.email).await;
    browser.click("#continue").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("#sign-in").await;
    let landed = browser.wait_for_url(&format!("{redirect}?")).await;
    browser.close().await;

    let q = query(&landed);
    assert_eq!(q["state"], state);
    assert_eq!(q["iss"], t.issuer);
    let code = q.get("code").expect("a code").clone();
    // The application itself was reached, with the same code.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let target = tokio::time::timeout_at(deadline, requests.recv())
            .await
            .expect("the browser reached the application")
            .expect("the receiver runs");
        if target.starts_with("/callback?") {
            assert_eq!(query(&target)["code"], code);
            break;
        }
    }

    // The code is good at the token endpoint.
    let tokens = issued(
        &token(
            &s,
            &t,
            &app.auth(),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await,
    );
    let id = jwt_claims(str_of(&tokens, "id_token"));
    assert_eq!(id["sub"], t.user_id.as_str());
    assert_eq!(id["nonce"], "browser-nonce");
    assert_eq!(id["email"], t.email.as_str());
    assert!(active(&s, &t, &app, str_of(&tokens, "access_token")).await);
}
