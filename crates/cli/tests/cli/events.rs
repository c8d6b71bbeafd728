//! Events across failures and gaps, with the real binary: `portcullis serve` killed with SIGKILL
//! while deliveries are in flight and events are being written (SQLite; PostgreSQL; two nodes on
//! one PostgreSQL), and `events export` / `events verify` on a file that is then altered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_testkit::server::{ADMIN_KEY, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{client, free_port, portcullis, run, serve_args, wait_ready};

/// A receiver that notes each delivery's `webhook-id` and answers 200 after `delay`, so that
/// deliveries are in flight when the server is killed.
struct Receiver {
    port: u16,
    ids: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Receiver {
    async fn start(delay: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let ids = Arc::new(Mutex::new(Vec::new()));
        let seen = ids.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    // Headers, then the body by Content-Length.
                    let (head_end, len) = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_ascii_lowercase();
                            let len = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (i + 4, len);
                        }
                    };
                    while buf.len() < head_end + len {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                    }
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let id = head.lines().find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("webhook-id")
                            .then(|| v.trim().to_owned())
                    });
                    tokio::time::sleep(delay).await;
                    if let Some(id) = id {
                        seen.lock().unwrap().push(id);
                    }
                    let _ = sock
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                        )
                        .await;
                });
            }
        });
        Self { port, ids, task }
    }

    fn ids(&self) -> Vec<String> {
        self.ids.lock().unwrap().clone()
    }
}

/// A `portcullis serve` process.
struct Node {
    child: tokio::process::Child,
    url: String,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    log: PathBuf,
}

impl Node {
    async fn start(dir: &Path, database_url: Option<&str>, name: &str) -> Self {
        let port = free_port();
        let mut args = serve_args(dir, port);
        if let Some(db) = database_url {
            args.extend(["--database-url".into(), db.into()]);
        }
        let envs: Vec<(String, String)> = [
            ("PORTCULLIS_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY),
            ("PORTCULLIS_NODE_NAME", name),
            ("PORTCULLIS_WEBHOOK_LEASE_SECONDS", "15"),
            ("PORTCULLIS_WEBHOOK_POLL_INTERVAL_MS", "50"),
            ("PORTCULLIS_LOG_LEVEL", "warn"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
        let log = dir.parent().unwrap().join(format!("{name}-{port}.log"));
        let mut node = Self {
            child: Self::spawn(&args, &envs, &log),
            url: format!("http://127.0.0.1:{port}"),
            args,
            envs,
            log,
        };
        wait_ready(&mut node.child, &node.url).await;
        node
    }

    fn spawn(args: &[String], envs: &[(String, String)], log: &Path) -> tokio::process::Child {
        let mut cmd = portcullis(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        cmd.envs(envs.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::from(file));
        cmd.spawn().unwrap()
    }

    /// SIGKILL: no graceful anything.
    async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        self.child.wait().await.unwrap();
    }

    async fn restart(&mut self) {
        self.child = Self::spawn(&self.args, &self.envs, &self.log);
        wait_ready(&mut self.child, &self.url).await;
    }
}

async fn call(url: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut req = http
        .request(method, format!("{url}/admin/v1{path}"))
        .bearer_auth(ADMIN_KEY);
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(res) => {
            let status = res.status();
            (status, res.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, json!(e.to_string())),
    }
}

/// Every event of `env` through the Events API (admin twin), paging from the start.
async fn all_events(url: &str, env: &str) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    loop {
        let mut path = format!("/environments/{env}/events?limit=100");
        if let Some(last) = out.last() {
            path += &format!("&after={}", last["id"].as_str().unwrap());
        }
        let (st, page) = call(url, Method::GET, &path, None).await;
        assert_eq!(st, StatusCode::OK, "{page}");
        let data = page["data"].as_array().unwrap().clone();
        if data.is_empty() {
            return out;
        }
        out.extend(data);
    }
}

/// Writes organizations through `url` until one fails (the node died) or `n` are written.
async fn write_orgs(url: String, prefix: &'static str, n: usize) -> usize {
    for i in 0..n {
        let (st, _) = call(
            &url,
            Method::POST,
            "/environments/crash/organizations",
            Some(json!({ "name": format!("{prefix} {i}") })),
        )
        .await;
        if st != StatusCode::CREATED {
            return i;
        }
    }
    n
}

/// How many deliveries of the endpoint are in `state`.
async fn unfinished(url: &str, whk: &str, state: &str) -> usize {
    let path =
        format!("/environments/crash/webhook-endpoints/{whk}/deliveries?state={state}&limit=100");
    let (_, d) = call(url, Method::GET, &path, None).await;
    d["data"].as_array().map_or(0, Vec::len)
}

/// The scenario: nodes deliver to a slow receiver while organizations are written; node A is
/// killed mid-flight and restarted. Every event the Events API shows (each exactly once) must be
/// delivered at least once; duplicates are bounded by what the killed node had in flight.
async fn deliveries_survive_sigkill(database_url: Option<String>, two_nodes: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let rx = Receiver::start(Duration::from_millis(100)).await;
    let db = database_url.as_deref();
    let mut a = Node::start(&dir, db, "node-a").await;
    let b = if two_nodes {
        Some(Node::start(&dir, db, "node-b").await)
    } else {
        None
    };
    let (st, v) = call(
        &a.url,
        Method::POST,
        "/environments",
        Some(json!({ "slug": "crash" })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let policy = json!({ "version": 0, "rules": [
        { "id": "recv", "scheme": "http", "cidr": "127.0.0.0/8", "port": rx.port, "purposes": ["webhook"] }
    ]});
    let (st, v) = call(
        &a.url,
        Method::PUT,
        "/environments/crash/egress-policy",
        Some(policy),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = call(
        &a.url,
        Method::POST,
        "/environments/crash/webhook-endpoints",
        Some(json!({ "url": format!("http://127.0.0.1:{}/in", rx.port) })),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");

    // A backlog builds up (the receiver takes 100 ms a delivery, 4 at a time per node) while
    // more events are written, through both nodes when there are two.
    assert_eq!(write_orgs(a.url.clone(), "First", 25).await, 25);
    let mut writers = vec![tokio::spawn(write_orgs(a.url.clone(), "During", 40))];
    if let Some(b) = &b {
        writers.push(tokio::spawn(write_orgs(b.url.clone(), "Beside", 40)));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while rx.ids().len() < 8 {
        assert!(Instant::now() < deadline, "no deliveries before the kill");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill().await;
    let at_kill = rx.ids().len();
    for w in writers {
        w.await.unwrap();
    }
    a.restart().await;
    assert_eq!(write_orgs(a.url.clone(), "After", 10).await, 10);

    // Every event, once, in order, in the Events API; every one delivered at least once; and no
    // delivery left pending (those the killed node held come back when their leases expire).
    let (st, v) = call(
        &a.url,
        Method::GET,
        "/environments/crash/webhook-endpoints",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let whk = v["data"][0]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(90);
    let (events, missing, pending) = loop {
        let events = all_events(&a.url, "crash").await;
        let first = events
            .iter()
            .position(|e| e["event"] == "webhook_endpoint.created")
            .unwrap();
        let got: BTreeSet<String> = rx.ids().into_iter().collect();
        let missing: Vec<String> = events[first..]
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .filter(|id| !got.contains(id))
            .collect();
        let pending = unfinished(&a.url, &whk, "pending").await;
        if (missing.is_empty() && pending == 0) || Instant::now() > deadline {
            break (events, missing, pending);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let log = std::fs::read_to_string(&a.log).unwrap_or_default();
    assert!(
        missing.is_empty(),
        "never delivered: {missing:?}\nnode a log:\n{log}"
    );
    assert_eq!(pending, 0, "deliveries left pending\nnode a log:\n{log}");
    assert_eq!(
        unfinished(&a.url, &whk, "failed").await,
        0,
        "no delivery failed"
    );
    let seqs: Vec<i64> = events
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "each event once, in order"
    );
    let ids: BTreeSet<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), events.len());
    assert!(events.len() >= 2 + 1 + 25 + 10, "{}", events.len());

    // At least once, and duplicates only from what the killed node had in flight.
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for id in rx.ids() {
        *per_id.entry(id).or_default() += 1;
    }
    let duplicates: usize = per_id.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= 4,
        "{duplicates} duplicate deliveries (at most the killed node's 4 in flight); {at_kill} delivered at the kill: {:?}\nnode a log:\n{log}",
        rx.ids()
    );
    drop(b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_loses_no_event_on_sqlite() {
    deliveries_survive_sigkill(None, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_delivery_loses_no_event_on_postgres() {
    let db = portcullis_testkit::pg::fresh_database().await.unwrap();
    deliveries_survive_sigkill(Some(db), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_postgres_share_deliveries_and_survive_a_sigkill() {
    let db = portcullis_testkit::pg::fresh_database().await.unwrap();
    deliveries_survive_sigkill(Some(db), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_export_then_verify_and_an_altered_byte_fails() {
    let s = TestServer::start(portcullis_testkit::server::Backend::Sqlite)
        .await
        .unwrap();
    let (st, v) = s
        .admin_post("/environments", json!({ "slug": "far" }))
        .await;
    assert!(st.is_success(), "{v}");
    for i in 0..3 {
        let (st, _) = s
            .admin_post(
                "/environments/far/organizations",
                json!({ "name": format!("Site {i}") }),
            )
            .await;
        assert!(st.is_success());
    }
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("events.json");
    let f = file.to_str().unwrap();
    let r = run(client(
        &s,
        &["events", "export", "--env", "far", "--out", f],
    ))
    .await;
    r.ok();
    assert!(r.stdout.contains("wrote 4 events"), "{}", r.stdout);

    // Offline: no server, no key.
    let r = run(portcullis(&["events", "verify", f])).await;
    r.ok();
    assert!(
        r.stdout.starts_with("OK: 4 events of environment far") && r.stdout.contains("embedded"),
        "{}",
        r.stdout
    );
    let jwks = tmp.path().join("jwks.json");
    let published: Value = s
        .client()
        .get(s.at("/e/far/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    std::fs::write(&jwks, published.to_string()).unwrap();
    let r = run(portcullis(&[
        "events",
        "verify",
        f,
        "--jwks",
        jwks.to_str().unwrap(),
        "--json",
    ]))
    .await;
    r.ok();
    assert_eq!(r.json()["key_source"], "trusted");

    // Resume from the last cursor.
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let last = doc["cursor"]["last"].as_str().unwrap().to_owned();
    let (st, _) = s
        .admin_post(
            "/environments/far/organizations",
            json!({ "name": "Later" }),
        )
        .await;
    assert!(st.is_success());
    let next = tmp.path().join("next.json");
    let r = run(client(
        &s,
        &[
            "events",
            "export",
            "--env",
            "far",
            "--after",
            &last,
            "--out",
            next.to_str().unwrap(),
        ],
    ))
    .await;
    r.ok();
    assert!(r.stdout.contains("wrote 1 events"), "{}", r.stdout);

    // One byte changed inside an event: exit 1, whichever keys are trusted.
    let text = std::fs::read_to_string(&file).unwrap();
    let at = text.find("Site 1").unwrap();
    let mut bytes = text.into_bytes();
    bytes[at] = b's';
    std::fs::write(&file, &bytes).unwrap();
    for extra in [vec![], vec!["--jwks", jwks.to_str().unwrap()]] {
        let mut args = vec!["events", "verify", f];
        args.extend(extra);
        let r = run(portcullis(&args)).await;
        assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
        assert!(r.stdout.contains("FAILED"), "{}", r.stdout);
    }
    // A missing file is an input error.
    let r = run(portcullis(&[
        "events",
        "verify",
        "/nonexistent/export.json",
    ]))
    .await;
    r.input_error();
}

/// `master-key rotate` re-seals webhook secrets (current and previous) with the signing keys: after
/// it the same secrets sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn master_key_rotate_reseals_webhook_secrets() {
    use portcullis_core::ids::{EnvId, PrefixedId, WebhookId};
    use portcullis_events::dispatcher::signing_keys;
    use portcullis_events::signing::secret_key;
    let s = TestServer::start(portcullis_testkit::server::Backend::Sqlite)
        .await
        .unwrap();
    let (_, env) = s
        .admin_post("/environments", json!({ "slug": "rot" }))
        .await;
    let policy = json!({ "version": 0, "rules": [
        { "id": "recv", "scheme": "http", "cidr": "127.0.0.0/8", "port": 9, "purposes": ["webhook"] }
    ]});
    let (st, _) = s
        .request(
            Method::PUT,
            "/admin/v1/environments/rot/egress-policy",
            Some(ADMIN_KEY),
            Some(&policy),
        )
        .await;
    assert_eq!(st, StatusCode::OK);
    let (st, ep) = s
        .admin_post(
            "/environments/rot/webhook-endpoints",
            json!({ "url": "http://127.0.0.1:9/in" }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{ep}");
    let whk = ep["id"].as_str().unwrap().to_owned();
    let (_, rotated) = s
        .admin_post(
            &format!("/environments/rot/webhook-endpoints/{whk}/secret"),
            json!({}),
        )
        .await;
    let want = vec![
        secret_key(rotated["secret"].as_str().unwrap()).unwrap(),
        secret_key(ep["secret"].as_str().unwrap()).unwrap(),
    ];
    let storage = s.stop().await.unwrap();
    let dir = storage.data_dir().to_owned();
    let r = run(portcullis(&[
        "master-key",
        "rotate",
        "--data-dir",
        dir.to_str().unwrap(),
    ]))
    .await;
    r.ok();
    let s = TestServer::builder()
        .storage(storage)
        .start()
        .await
        .unwrap();
    let env_id = EnvId::parse(env["id"].as_str().unwrap()).unwrap();
    let e = s
        .app()
        .store
        .get_webhook_endpoint(&env_id, &WebhookId::parse(&whk).unwrap())
        .await
        .unwrap();
    let keys = signing_keys(s.app().keys.master(), &e, s.app().now()).unwrap();
    assert_eq!(
        keys, want,
        "both secrets open under the new master key, unchanged"
    );
}
