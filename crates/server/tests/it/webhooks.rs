//! Webhooks: a scripted receiver on loopback that verifies every delivery with an independent
//! Standard Webhooks implementation (the `standardwebhooks` crate), the retry schedule walked
//! with a fake clock and explicit dispatcher passes, bad input refused with nothing written,
//! receivers that misbehave without blocking others, and the signed offline export.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use portcullis_core::{Clock, FakeClock, SystemClock};
use portcullis_events::DispatcherConfig;
use portcullis_testkit::server::{ADMIN_KEY, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::{assert_error, counts, create_env, create_org, str_of};

both_backends!(
    every_event_arrives_signed_with_one_webhook_id_through_failures_and_a_timeout,
    refused_urls_and_bad_input_write_nothing,
    slow_redirecting_huge_and_closing_receivers_never_block_another_endpoint,
    a_committed_event_wakes_the_dispatcher_without_waiting_for_the_poll,
);

/// What the receiver does with one request.
#[derive(Debug, Clone, Copy)]
pub enum Answer {
    Status(u16),
    /// Reads the request and never answers (the gate times out).
    Hang,
    /// Reads the request and closes the connection.
    Close,
    /// 302 to another path of the same receiver.
    Redirect,
    /// 200 with a 2 MiB body.
    Huge,
}

/// One request as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// A webhook receiver on 127.0.0.1 that answers from a script (then with `fallback`).
pub struct Receiver {
    pub port: u16,
    script: Arc<Mutex<VecDeque<Answer>>>,
    fallback: Arc<Mutex<Answer>>,
    seen: Arc<Mutex<Vec<Received>>>,
    notify: Arc<tokio::sync::Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_request(sock: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let mut headers = http::HeaderMap::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, v) = l.split_once(':')?;
        headers.append(
            http::HeaderName::from_bytes(k.trim().as_bytes()).ok()?,
            http::HeaderValue::from_str(v.trim()).ok()?,
        );
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = sock.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        path,
        headers,
        body,
    })
}

impl Receiver {
    pub async fn start(script: &[Answer], fallback: Answer) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(script.iter().copied().collect::<VecDeque<_>>()));
        let fallback = Arc::new(Mutex::new(fallback));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let notify = Arc::new(tokio::sync::Notify::new());
        let (s, f, r, n) = (
            script.clone(),
            fallback.clone(),
            seen.clone(),
            notify.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (s, f, r, n) = (s.clone(), f.clone(), r.clone(), n.clone());
                tokio::spawn(async move {
                    let Some(req) = read_request(&mut sock).await else {
                        return;
                    };
                    let answer = s.lock().unwrap().pop_front().unwrap_or(*f.lock().unwrap());
                    r.lock().unwrap().push(req);
                    n.notify_waiters();
                    let reply = |status: u16, extra: &str, body: &[u8]| {
                        let mut out = format!(
                            "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n",
                            body.len()
                        )
                        .into_bytes();
                        out.extend_from_slice(body);
                        out
                    };
                    let bytes = match answer {
                        Answer::Status(code) => {
                            reply(code, "", format!("answer {code}").as_bytes())
                        }
                        Answer::Hang => {
                            tokio::time::sleep(Duration::from_secs(60)).await;
                            return;
                        }
                        Answer::Close => return,
                        Answer::Redirect => reply(302, "location: /elsewhere\r\n", b""),
                        Answer::Huge => reply(200, "", &vec![b'x'; 2 << 20]),
                    };
                    let _ = sock.write_all(&bytes).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self {
            port,
            script,
            fallback,
            seen,
            notify,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    pub fn set_fallback(&self, a: Answer) {
        *self.fallback.lock().unwrap() = a;
    }

    pub fn script_left(&self) -> usize {
        self.script.lock().unwrap().len()
    }

    /// Waits (at most `within`) until `n` requests have arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.notify.notified();
            if self.seen.lock().unwrap().len() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.seen.lock().unwrap().len() >= n;
            }
        }
    }
}

/// Verifies a delivery with the independent implementation: the HMAC it computes for
/// (`webhook-id`, `webhook-timestamp`, body) must be one of the `v1` signatures sent. (Its own
/// `verify` also checks the timestamp against the wall clock, which a fake-clock server leaves.)
pub fn signed_by(secret: &str, r: &Received) -> bool {
    let wh = standardwebhooks::Webhook::new(secret).unwrap();
    let ts: i64 = r.header("webhook-timestamp").parse().unwrap();
    let expected = wh.sign(r.header("webhook-id"), ts, &r.body).unwrap();
    r.header("webhook-signature")
        .split(' ')
        .any(|s| s == expected)
}

/// Allows http to 127.0.0.0/8 on `port` for webhooks in `env`.
pub async fn allow_receiver(s: &TestServer, env: &str, port: u16, version: i64) {
    let doc = json!({ "version": version, "rules": [
        { "id": "recv", "scheme": "http", "cidr": "127.0.0.0/8", "port": port, "purposes": ["webhook"] }
    ]});
    let (st, v) = s
        .request(
            Method::PUT,
            &format!("/admin/v1/environments/{env}/egress-policy"),
            Some(ADMIN_KEY),
            Some(&doc),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
}

pub async fn create_endpoint(s: &TestServer, env: &str, body: Value) -> (String, String) {
    let (st, v) = s
        .admin_post(&format!("/environments/{env}/webhook-endpoints"), body)
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    assert!(str_of(&v, "secret").starts_with("whsec_"), "{v}");
    (str_of(&v, "id").to_owned(), str_of(&v, "secret").to_owned())
}

fn dispatcher(s: &TestServer) -> portcullis_events::Dispatcher {
    portcullis_events::Dispatcher::new(
        Arc::new(s.app().clone()),
        DispatcherConfig {
            node: "test".into(),
            ..portcullis_server::webhooks::dispatcher_config(s.config())
        },
    )
}

async fn deliveries(s: &TestServer, env: &str, whk: &str, query: &str) -> Vec<Value> {
    let (st, v) = s
        .admin_get(&format!(
            "/environments/{env}/webhook-endpoints/{whk}/deliveries?limit=100{query}"
        ))
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    v["data"].as_array().unwrap().clone()
}

async fn every_event_arrives_signed_with_one_webhook_id_through_failures_and_a_timeout(
    backend: Backend,
) {
    // The fake clock starts at the wall clock, so the first attempts also pass the independent
    // implementation's timestamp check.
    let clock = FakeClock::new(SystemClock.now());
    let s = TestServer::builder()
        .backend(backend)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    create_env(&s, "hooks", json!({ "mode": "isolated" })).await;
    // Four events will be delivered: the endpoint's own creation and three organizations. The
    // first attempt of each gets a 500; the second attempts meet a 500, a silent receiver (the
    // gate times out), a closed connection and a 200; then the receiver recovers.
    use Answer::*;
    let rx = Receiver::start(
        &[
            Status(500),
            Status(500),
            Status(500),
            Status(500),
            Status(503),
            Hang,
            Close,
        ],
        Status(204),
    )
    .await;
    allow_receiver(&s, "hooks", rx.port, 0).await;
    let (whk, secret) = create_endpoint(
        &s,
        "hooks",
        json!({ "url": rx.url("/hook"), "description": "receiver",
                "headers": { "X-Tenant": "plant-7" } }),
    )
    .await;
    for i in 0..3 {
        create_org(&s, "hooks", &format!("Org {i}"), &[]).await;
    }
    let d = dispatcher(&s);

    let pass = d.run_once().await.unwrap();
    assert_eq!((pass.leased, pass.failed), (4, 4), "{pass:?}");
    let pass = d.run_once().await.unwrap();
    assert_eq!(
        pass.leased, 0,
        "nothing is due before the first retry delay"
    );
    clock.advance_seconds(37); // 30 s + 20% jitter at most
    let pass = d.run_once().await.unwrap();
    assert_eq!((pass.leased, pass.succeeded), (4, 1), "{pass:?}");
    assert_eq!(rx.script_left(), 0);
    clock.advance_seconds(73); // 60 s + 20%
    let pass = d.run_once().await.unwrap();
    assert_eq!((pass.leased, pass.succeeded), (3, 3), "{pass:?}");
    assert_eq!(d.run_once().await.unwrap().leased, 0, "nothing left");

    // Every event arrived, every request verified with the independent implementation, and all
    // attempts of one event carried the same webhook-id and body.
    let seen = rx.seen();
    assert_eq!(seen.len(), 4 + 4 + 3, "every attempt reached the receiver");
    let mut by_id: BTreeMap<String, Vec<&Received>> = BTreeMap::new();
    for r in &seen {
        assert!(
            signed_by(&secret, r),
            "signature of {:?}",
            r.header("webhook-id")
        );
        assert_eq!(r.path, "/hook");
        assert_eq!(r.header("content-type"), "application/json");
        assert_eq!(r.header("x-tenant"), "plant-7", "custom headers are sent");
        by_id
            .entry(r.header("webhook-id").to_owned())
            .or_default()
            .push(r);
    }
    let first = &seen[0];
    let wh = standardwebhooks::Webhook::new(&secret).unwrap();
    wh.verify(&first.body, &first.headers)
        .expect("the first attempt verifies completely, timestamp included");
    let (st, log) = s.admin_get("/environments/hooks/events?limit=100").await;
    assert_eq!(st, StatusCode::OK);
    let events: Vec<&Value> = log["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] != "egress_policy.updated" && e["event"] != "environment.created")
        .collect();
    assert_eq!(events.len(), 4, "{log}");
    let ids: BTreeSet<String> = events.iter().map(|e| str_of(e, "id").to_owned()).collect();
    assert_eq!(
        ids,
        by_id.keys().cloned().collect(),
        "every event arrived, under its own ID"
    );
    for (id, reqs) in &by_id {
        let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
        assert_eq!(body["id"], id.as_str(), "webhook-id is the event ID");
        assert_eq!(body["object"], "event");
        assert!(
            reqs.iter().all(|r| r.body == reqs[0].body),
            "one body across the retries of {id}"
        );
        assert!(
            reqs.len() >= 2 && reqs.len() <= 3,
            "{id}: {} attempts",
            reqs.len()
        );
    }
    let mut timestamps: Vec<i64> = seen
        .iter()
        .map(|r| r.header("webhook-timestamp").parse().unwrap())
        .collect();
    timestamps.dedup();
    assert_eq!(
        timestamps.len(),
        3,
        "one timestamp per pass, read from the server's clock"
    );

    // The attempt log tells the story of each delivery.
    let all = deliveries(&s, "hooks", &whk, "").await;
    assert_eq!(all.len(), 4);
    assert!(all.iter().all(|d| d["state"] == "succeeded"), "{all:?}");
    let mut errors = Vec::new();
    for d in &all {
        let (st, one) = s
            .admin_get(&format!(
                "/environments/hooks/webhook-endpoints/{whk}/deliveries/{}",
                str_of(d, "id")
            ))
            .await;
        assert_eq!(st, StatusCode::OK);
        let log = one["attempt_log"].as_array().unwrap();
        assert_eq!(log[0]["status"], 500);
        assert_eq!(
            log[0]["response"], "answer 500",
            "the receiver's answer is kept"
        );
        assert_eq!(log.last().unwrap()["succeeded"], true);
        errors.extend(
            log.iter()
                .filter_map(|a| a["error"].as_str().map(str::to_owned)),
        );
    }
    assert!(errors.iter().any(|e| e.contains("timed out")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("503")), "{errors:?}");
    let (_, ep) = s
        .admin_get(&format!("/environments/hooks/webhook-endpoints/{whk}"))
        .await;
    assert_eq!(ep["state"], "active");
    assert_eq!(ep["header_names"], json!(["X-Tenant"]));
    assert!(ep.get("secret").is_none(), "the secret is shown once");

    // A manual retry and a replay send events again under the same webhook-id.
    let one = str_of(&all[0], "id");
    let (st, v) = s
        .admin_post(
            &format!("/environments/hooks/webhook-endpoints/{whk}/deliveries/{one}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["state"], "pending");
    assert_eq!(d.run_once().await.unwrap().succeeded, 1);
    let before = rx.seen().len();
    let second = str_of(events[1], "id");
    let (st, v) = s
        .admin_post(
            &format!("/environments/hooks/webhook-endpoints/{whk}/replay"),
            json!({ "since": second }),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["enqueued"], 2, "the two events after {second}");
    assert_eq!(d.run_once().await.unwrap().succeeded, 2);
    let replayed: BTreeSet<String> = rx.seen()[before..]
        .iter()
        .map(|r| r.header("webhook-id").to_owned())
        .collect();
    assert_eq!(
        replayed,
        [str_of(events[2], "id"), str_of(events[3], "id")]
            .into_iter()
            .map(str::to_owned)
            .collect()
    );

    // Rotation: during the overlap both secrets verify, each on its own.
    let (st, rotated) = s
        .admin_post(
            &format!("/environments/hooks/webhook-endpoints/{whk}/secret"),
            json!({ "overlap_seconds": 3600 }),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{rotated}");
    let new_secret = str_of(&rotated, "secret").to_owned();
    assert_ne!(new_secret, secret);
    create_org(&s, "hooks", "After rotation", &[]).await;
    assert_eq!(
        d.run_once().await.unwrap().succeeded,
        3,
        "the rotation's two events (webhook_endpoint.secret_rotated, credential.rotated) and org"
    );
    let last = rx.seen().last().cloned().unwrap();
    assert!(signed_by(&secret, &last) && signed_by(&new_secret, &last));
    clock.advance_seconds(3601);
    create_org(&s, "hooks", "After overlap", &[]).await;
    assert_eq!(d.run_once().await.unwrap().succeeded, 1);
    let last = rx.seen().last().cloned().unwrap();
    assert!(signed_by(&new_secret, &last) && !signed_by(&secret, &last));
}

async fn refused_urls_and_bad_input_write_nothing(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "strict", json!({ "mode": "isolated" })).await;
    let base = "/environments/strict/webhook-endpoints";
    let before = counts(&s).await;
    // No rule allows it: 422 naming what a rule would need, nothing written.
    let r = s
        .admin_post(base, json!({ "url": "https://hooks.example.com/in" }))
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "egress_refused");
    let msg = str_of(&r.1, "message");
    assert!(
        msg.contains("no rule allows https://hooks.example.com:443 for webhook"),
        "{msg}"
    );
    for body in [
        json!({ "url": "ftp://127.0.0.1/x" }),
        json!({ "url": "https://u:p@hooks.example.com/" }),
        json!({ "url": "not a url" }),
        json!({ "url": format!("https://x.example/{}", "a".repeat(3000)) }),
        json!({ "url": "https://hooks.example.com/", "event_types": "organization.created" }),
        json!({ "url": "https://hooks.example.com/", "event_types": ["organization.exploded"] }),
        json!({ "url": "https://hooks.example.com/", "event_types": vec!["user.created"; 101] }),
        json!({ "url": "https://hooks.example.com/", "headers": { "webhook-id": "forged" } }),
        json!({ "url": "https://hooks.example.com/", "headers": { "X-A": 5 } }),
        json!({ "url": "https://hooks.example.com/", "unknown": true }),
    ] {
        let (st, v) = s.admin_post(base, body.clone()).await;
        assert!(st.is_client_error(), "{body}: {st} {v}");
    }
    assert_eq!(counts(&s).await, before, "nothing written");
    let (_, list) = s.admin_get(base).await;
    assert_eq!(list["data"], json!([]));

    // With a rule the same endpoint is accepted; then bad cursors and limits are 422.
    allow_receiver(&s, "strict", 9, 0).await;
    let (whk, _) = create_endpoint(&s, "strict", json!({ "url": "http://127.0.0.1:9/in" })).await;
    let before = counts(&s).await;
    let unknown = "evt_01J00000000000000000000000";
    for (path, body) in [
        (format!("{base}/{whk}/replay"), json!({ "since": unknown })),
        (
            format!("{base}/{whk}/replay"),
            json!({ "since": "yesterday" }),
        ),
        (format!("{base}/{whk}/replay"), json!({ "since": -1 })),
        (
            format!("{base}/{whk}/secret"),
            json!({ "overlap_seconds": -5 }),
        ),
    ] {
        let (st, v) = s.admin_post(&path, body.clone()).await;
        assert!(st.is_client_error(), "{path} {body}: {st} {v}");
    }
    for q in ["limit=0", "limit=101", "state=lost", "after=evt_x"] {
        let r = s.admin_get(&format!("{base}/{whk}/deliveries?{q}")).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    for q in [
        format!("after={unknown}"),
        "limit=0".into(),
        "limit=10001".into(),
    ] {
        let r = s
            .admin_get(&format!("/environments/strict/events/export?{q}"))
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    }
    // Changing the URL to one the policy refuses is refused too.
    let r = s
        .admin_patch(
            &format!("{base}/{whk}"),
            json!({ "url": "http://127.0.0.1:10/in" }),
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "egress_refused");
    assert_eq!(counts(&s).await, before, "nothing written");
    let r = s
        .admin_get(&format!("{base}/whk_01J00000000000000000000000"))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

async fn slow_redirecting_huge_and_closing_receivers_never_block_another_endpoint(
    backend: Backend,
) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "mixed", json!({ "mode": "connected" })).await;
    let fast = Receiver::start(&[], Answer::Status(200)).await;
    let slow = Receiver::start(&[], Answer::Hang).await;
    let redirect = Receiver::start(&[], Answer::Redirect).await;
    let huge = Receiver::start(&[], Answer::Huge).await;
    let closing = Receiver::start(&[], Answer::Close).await;
    let doc = json!({ "version": 0, "rules": [
        { "id": "loopback", "scheme": "http", "cidr": "127.0.0.0/8", "port": fast.port, "purposes": ["webhook"] },
        { "id": "slow", "scheme": "http", "cidr": "127.0.0.0/8", "port": slow.port, "purposes": ["webhook"] },
        { "id": "redirect", "scheme": "http", "cidr": "127.0.0.0/8", "port": redirect.port, "purposes": ["webhook"] },
        { "id": "huge", "scheme": "http", "cidr": "127.0.0.0/8", "port": huge.port, "purposes": ["webhook"] },
        { "id": "closing", "scheme": "http", "cidr": "127.0.0.0/8", "port": closing.port, "purposes": ["webhook"] },
    ]});
    let (st, v) = s
        .request(
            Method::PUT,
            "/admin/v1/environments/mixed/egress-policy",
            Some(ADMIN_KEY),
            Some(&doc),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let org_only = json!(["organization.created"]);
    let mut ids = BTreeMap::new();
    for (name, rx) in [
        ("slow", &slow),
        ("redirect", &redirect),
        ("huge", &huge),
        ("closing", &closing),
        ("fast", &fast),
    ] {
        let (id, _) = create_endpoint(
            &s,
            "mixed",
            json!({ "url": rx.url("/in"), "event_types": org_only, "description": name }),
        )
        .await;
        ids.insert(name, id);
    }
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(dispatcher(&s).run(stop_rx));
    for i in 0..12 {
        create_org(&s, "mixed", &format!("Org {i}"), &[]).await;
    }
    // The fast receiver gets all 12 while the slow one holds its 4 slots for the gate's full
    // 10-second timeout.
    assert!(
        fast.wait_for(12, Duration::from_secs(8)).await,
        "the fast receiver got {} of 12 while another endpoint hung",
        fast.seen().len()
    );
    assert!(
        slow.seen().len() <= 4,
        "at most 4 in flight per endpoint: {}",
        slow.seen().len()
    );
    let _ = stop_tx.send(true);
    running.await.unwrap();
    assert!(
        redirect.seen().iter().all(|r| r.path == "/in"),
        "the redirect was not followed"
    );
    let errs = last_errors(&s, &ids["redirect"]).await;
    assert!(
        !errs.is_empty()
            && errs
                .iter()
                .all(|e| e.contains("redirects are not followed")),
        "{errs:?}"
    );
    let errs = last_errors(&s, &ids["huge"]).await;
    assert!(
        !errs.is_empty() && errs.iter().all(|e| e.contains("larger than")),
        "{errs:?}"
    );
    assert!(!last_errors(&s, &ids["closing"]).await.is_empty());
    let fast_ok = deliveries(&s, "mixed", &ids["fast"], "&state=succeeded").await;
    assert_eq!(fast_ok.len(), 12);
}

/// A running dispatcher whose next poll is an hour away still delivers each new event at once:
/// the event's commit wakes it. Each delivery is recorded as succeeded too.
async fn a_committed_event_wakes_the_dispatcher_without_waiting_for_the_poll(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "wake", json!({ "mode": "isolated" })).await;
    let rx = Receiver::start(&[], Answer::Status(204)).await;
    allow_receiver(&s, "wake", rx.port, 0).await;
    let (whk, _) = create_endpoint(&s, "wake", json!({ "url": rx.url("/in") })).await;
    let d = portcullis_events::Dispatcher::new(
        Arc::new(s.app().clone()),
        DispatcherConfig {
            node: "test".into(),
            poll_interval: Duration::from_secs(3600),
            ..portcullis_server::webhooks::dispatcher_config(s.config())
        },
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(d.run(stop_rx));
    // The pass at start delivers the endpoint's own `webhook_endpoint.created`.
    assert!(rx.wait_for(1, Duration::from_secs(10)).await);
    for i in 0..3 {
        create_org(&s, "wake", &format!("Org {i}"), &[]).await;
        assert!(
            rx.wait_for(2 + i, Duration::from_secs(10)).await,
            "event {i} was not delivered before the next poll (got {})",
            rx.seen().len()
        );
    }
    let _ = stop_tx.send(true);
    running.await.unwrap();
    let done = deliveries(&s, "wake", &whk, "&state=succeeded").await;
    assert_eq!(done.len(), 4, "{done:?}");
}

/// The last errors of an endpoint's deliveries, all of which must still be pending (retried).
async fn last_errors(s: &TestServer, whk: &str) -> Vec<String> {
    let d = deliveries(s, "mixed", whk, "").await;
    assert!(d.iter().all(|d| d["state"] == "pending"), "{d:?}");
    d.iter()
        .filter_map(|d| d["last_error"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_schedule_marks_the_endpoint_failing_and_says_so() {
    let clock = FakeClock::new(SystemClock.now());
    let s = TestServer::builder()
        .clock(clock.clone())
        .flag("webhook_retry_max_attempts", "2")
        .start()
        .await
        .unwrap();
    create_env(&s, "gone", json!({ "mode": "connected" })).await;
    let rx = Receiver::start(&[], Answer::Status(500)).await;
    allow_receiver(&s, "gone", rx.port, 0).await;
    let (whk, _) = create_endpoint(
        &s,
        "gone",
        json!({ "url": rx.url("/in"), "event_types": ["organization.created"] }),
    )
    .await;
    create_org(&s, "gone", "Acme", &[]).await;
    let d = dispatcher(&s);
    assert_eq!(d.run_once().await.unwrap().failed, 1);
    clock.advance_seconds(37);
    assert_eq!(d.run_once().await.unwrap().failed, 1);
    let all = deliveries(&s, "gone", &whk, "").await;
    assert_eq!(all[0]["state"], "failed", "kept, never dropped: {all:?}");
    let (_, ep) = s
        .admin_get(&format!("/environments/gone/webhook-endpoints/{whk}"))
        .await;
    assert_eq!(ep["state"], "failing");
    let (_, log) = s
        .admin_get("/environments/gone/events?events=webhook_endpoint.failing")
        .await;
    assert_eq!(log["data"][0]["data"]["id"], whk.as_str(), "{log}");
    // The receiver comes back: a manual retry succeeds and the endpoint recovers.
    rx.set_fallback(Answer::Status(200));
    let id = str_of(&all[0], "id");
    let (st, _) = s
        .admin_post(
            &format!("/environments/gone/webhook-endpoints/{whk}/deliveries/{id}/retry"),
            json!({}),
        )
        .await;
    assert_eq!(st, StatusCode::ACCEPTED);
    assert_eq!(d.run_once().await.unwrap().succeeded, 1);
    let (_, ep) = s
        .admin_get(&format!("/environments/gone/webhook-endpoints/{whk}"))
        .await;
    assert_eq!(ep["state"], "active");
    // The inventory shows the endpoint's dependency and the replaced alternatives.
    let (_, inv) = s.admin_get("/environments/gone/inventory").await;
    let rows = inv["dependencies"].as_array().unwrap();
    let webhook: Vec<&Value> = rows.iter().filter(|r| r["kind"] == "webhook").collect();
    assert_eq!(webhook.len(), 3, "{inv}");
    assert!(webhook.iter().any(|r| r["component"]["id"] == whk.as_str()
        && r["decision"] == "allowed"
        && r["detail"] == "rule recv"));
    assert_eq!(
        webhook
            .iter()
            .filter(|r| r["decision"] == "replaced")
            .count(),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_verifies_offline_and_any_altered_byte_is_caught() {
    use portcullis_events::export::{KeySource, verify};
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    create_env(&s, "far", json!({ "mode": "isolated" })).await;
    for i in 0..5 {
        create_org(&s, "far", &format!("Org {i}"), &[]).await;
    }
    let (st, doc) = s.admin_get("/environments/far/events/export?limit=4").await;
    assert_eq!(st, StatusCode::OK, "{doc}");
    assert_eq!(doc["events"].as_array().unwrap().len(), 4);
    assert_eq!(doc["cursor"]["has_more"], true);
    let trusted = crate::jwks(&s, "far").await;
    let text = serde_json::to_string_pretty(&doc).unwrap();
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        verify(&parsed, None).unwrap().key_source,
        KeySource::Embedded
    );
    assert_eq!(
        verify(&parsed, Some(&trusted)).unwrap().key_source,
        KeySource::Trusted
    );
    // The next file resumes from the last cursor.
    let last = str_of(&doc["cursor"], "last");
    let (_, next) = s
        .admin_get(&format!("/environments/far/events/export?after={last}"))
        .await;
    assert_eq!(next["events"].as_array().unwrap().len(), 2);
    assert_eq!(next["cursor"]["after"], last);
    assert_eq!(next["cursor"]["has_more"], false);
    // Flip one byte inside an event: still JSON, no longer the signed events.
    let at = text.find("Org 2").unwrap();
    let mut bytes = text.clone().into_bytes();
    bytes[at] = b'0';
    let altered: Value = serde_json::from_slice(&bytes).unwrap();
    assert!(verify(&altered, None).is_err());
    assert!(verify(&altered, Some(&trusted)).is_err());
}

/// Environment isolation: a webhook URL already used by another environment is refused unless
/// explicitly allowed, and `isolation-check` reports it when it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_of_another_environment_is_refused_unless_allowed() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    for env in ["blue", "green"] {
        create_env(&s, env, json!({ "mode": "connected" })).await;
        allow_receiver(&s, env, 9, 0).await;
    }
    create_endpoint(&s, "blue", json!({ "url": "http://127.0.0.1:9/in" })).await;
    let before = counts(&s).await;
    let r = s
        .admin_post(
            "/environments/green/webhook-endpoints",
            json!({ "url": "http://127.0.0.1:9/in" }),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "url_in_other_environment");
    assert_eq!(counts(&s).await, before, "nothing written");
    let (_, ok) = s.admin_get("/isolation-check").await;
    assert_eq!(ok["ok"], true, "{ok}");

    let (st, v) = s
        .admin_post(
            "/environments/green/webhook-endpoints",
            json!({ "url": "http://127.0.0.1:9/in", "allow_cross_environment_url": true }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{v}");
    let (_, report) = s.admin_get("/isolation-check").await;
    assert_eq!(report["ok"], false);
    assert!(
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "shared_webhook_url"),
        "{report}"
    );
}
