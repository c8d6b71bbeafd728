//! Network governance over the admin API: the egress policy as a versioned, audited document;
//! the decision for one URL (and a real connection through the gate to a receiver on loopback);
//! the identity-dependency inventory of a connected and an isolated environment; the change-control
//! checks; the isolation check across environments; the access review.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_core::ids::{ClientId, EnvId, PrefixedId};
use portcullis_core::{FakeClock, Timestamp};
use portcullis_testkit::server::{ADMIN_KEY, Backend, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{assert_error, counts, create_env, str_of};

both_backends!(
    policy_round_trips_with_versions_and_every_change_is_audited,
    bad_policy_documents_are_refused_with_line_and_reason,
    egress_test_decides_connects_and_records_refusals,
    inventory_of_a_connected_and_an_isolated_environment,
    policy_check_findings_and_waivers,
    isolation_check_finds_shared_redirect_uri_and_secret_digest,
);

/// 2026-01-01T00:00:00Z.
const T0: Timestamp = Timestamp(1_767_225_600_000);

fn policy_path(env: &str) -> String {
    format!("/environments/{env}/egress-policy")
}

async fn put_policy(s: &TestServer, env: &str, doc: &Value) -> (StatusCode, Value) {
    s.request(
        Method::PUT,
        &format!("/admin/v1{}", policy_path(env)),
        Some(ADMIN_KEY),
        Some(doc),
    )
    .await
}

/// PUTs the policy text exactly as given (for line numbers).
async fn put_policy_text(s: &TestServer, env: &str, text: &str) -> (StatusCode, Value) {
    let res = s
        .client()
        .put(s.at(&format!("/admin/v1{}", policy_path(env))))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "application/json")
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Replaces the policy of `env` (at its current version) and returns the new version.
async fn set_policy(s: &TestServer, env: &str, rules: Value, waivers: Value) -> i64 {
    let (_, current) = s.admin_get(&policy_path(env)).await;
    let doc = json!({ "version": current["version"], "rules": rules, "waivers": waivers });
    let (status, v) = put_policy(s, env, &doc).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["version"].as_i64().unwrap()
}

async fn create_client(s: &TestServer, env: &str, body: Value) -> Value {
    let (status, v) = s
        .admin_post(&format!("/environments/{env}/clients"), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    v
}

/// The `data` array of an admin list.
fn data(v: &Value) -> &Vec<Value> {
    v["data"]
        .as_array()
        .unwrap_or_else(|| panic!("no data: {v}"))
}

async fn events_of(s: &TestServer, env: &str, kind: &str) -> Vec<Value> {
    let (_, v) = s.admin_get(&format!("/environments/{env}/events")).await;
    data(&v)
        .iter()
        .filter(|e| e["event"] == kind)
        .cloned()
        .collect()
}

async fn audit_of(s: &TestServer, env: &str, action: &str) -> Vec<Value> {
    let (_, v) = s.admin_get(&format!("/environments/{env}/audit")).await;
    data(&v)
        .iter()
        .filter(|a| a["action"] == action)
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The policy document

async fn policy_round_trips_with_versions_and_every_change_is_audited(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "site", json!({})).await;

    let (status, empty) = s.admin_get(&policy_path("site")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        empty,
        json!({ "version": 0, "rules": [], "waivers": [] }),
        "an isolated environment starts with no rules"
    );

    let rules_v1 = json!([
        { "id": "idp", "host": "idp.example.com", "purposes": ["jwks_fetch", "metadata_fetch"],
          "description": "customer IdP" },
        { "id": "lo", "scheme": "http", "cidr": "127.0.0.0/8", "port": 9000, "purposes": ["webhook"] },
    ]);
    let waivers = json!([{ "finding": "isolated_egress", "reason": "CHG-1234: IdP reached through the DMZ" }]);
    let (status, v) = put_policy(
        &s,
        "site",
        &json!({ "version": 0, "rules": rules_v1, "waivers": waivers }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    // Purposes keep the document's order.
    let diff_v1 = json!([
        { "change": "added", "rule": "idp", "path": "https://idp.example.com:443",
          "purposes": ["jwks_fetch", "metadata_fetch"],
          "effect": "opens https://idp.example.com:443 for jwks_fetch, metadata_fetch" },
        { "change": "added", "rule": "lo", "path": "http://127.0.0.0/8:9000", "purposes": ["webhook"],
          "effect": "opens http://127.0.0.0/8:9000 over plain http for webhook" },
        { "change": "waiver added", "rule": "", "path": "", "purposes": [],
          "effect": "waives isolated_egress: CHG-1234: IdP reached through the DMZ" },
    ]);
    assert_eq!(v, json!({ "version": 1, "changes": diff_v1 }));

    // The document comes back as it was sent, with the server's version and the default scheme
    // written out.
    let (_, got) = s.admin_get(&policy_path("site")).await;
    let mut rules_back = rules_v1.clone();
    rules_back[0]["scheme"] = json!("https");
    assert_eq!(
        got,
        json!({ "version": 1, "rules": rules_back, "waivers": waivers })
    );

    // A stale version: 409, nothing written.
    let before = counts(&s).await;
    let stale = put_policy(&s, "site", &json!({ "version": 0, "rules": [] })).await;
    assert_error(&stale, StatusCode::CONFLICT, "version_conflict");
    assert!(
        str_of(&stale.1, "message").contains("at version 1, not 0"),
        "{}",
        stale.1
    );
    let ahead = put_policy(&s, "site", &json!({ "version": 7, "rules": [] })).await;
    assert_error(&ahead, StatusCode::CONFLICT, "version_conflict");
    assert_eq!(counts(&s).await, before);
    assert_eq!(s.admin_get(&policy_path("site")).await.1, got);

    // Not JSON: 415, nothing written.
    let res = s
        .client()
        .put(s.at(&format!("/admin/v1{}", policy_path("site"))))
        .bearer_auth(ADMIN_KEY)
        .header("content-type", "text/plain")
        .body(r#"{"version":1,"rules":[]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(counts(&s).await, before);

    // Version 2: one rule changed, one removed, one added, the waiver dropped.
    let (status, v) = put_policy(
        &s,
        "site",
        &json!({ "version": 1, "rules": [
            { "id": "idp", "host": "idp.example.com", "purposes": ["jwks_fetch"] },
            { "id": "hooks", "host": "*.hooks.example.com", "port": 8443, "purposes": ["webhook"] },
        ] }),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let diff_v2 = json!([
        { "change": "changed", "rule": "idp",
          "path": "https://idp.example.com:443 -> https://idp.example.com:443",
          "purposes": ["jwks_fetch"],
          "effect": "now allows https://idp.example.com:443 for jwks_fetch (was https://idp.example.com:443 for jwks_fetch, metadata_fetch)" },
        { "change": "removed", "rule": "lo", "path": "http://127.0.0.0/8:9000", "purposes": ["webhook"],
          "effect": "closes http://127.0.0.0/8:9000 for webhook" },
        { "change": "added", "rule": "hooks", "path": "https://*.hooks.example.com:8443",
          "purposes": ["webhook"], "effect": "opens https://*.hooks.example.com:8443 for webhook" },
        { "change": "waiver removed", "rule": "", "path": "", "purposes": [],
          "effect": "isolated_egress is checked again" },
    ]);
    assert_eq!(v, json!({ "version": 2, "changes": diff_v2 }));
    assert_eq!(s.admin_get(&policy_path("site")).await.1["version"], 2);

    // Every change is audited with its diff, and announced as an event.
    let audits = audit_of(&s, "site", "egress_policy.replace").await;
    assert_eq!(audits.len(), 2, "{audits:?}");
    for (a, (version, diff)) in audits.iter().zip([(1, &diff_v1), (2, &diff_v2)]) {
        assert_eq!(a["outcome"], "success");
        assert!(str_of(a, "actor").starts_with("admin_key:"), "{a}");
        assert_eq!(a["detail"], json!({ "version": version, "diff": diff }));
    }
    let events = events_of(&s, "site", "egress_policy.updated").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["data"], json!({ "version": 2, "diff": diff_v2 }));
    let (_, chain) = s.admin_get("/environments/site/audit/verify").await;
    assert_eq!(chain["ok"], true, "{chain}");
}

/// A policy with a good rule and `bad` as its second rule, pretty-printed one key a line.
fn doc_with(version: i64, bad: &[&str]) -> String {
    let mut lines = vec![
        "{".to_owned(),
        format!("  \"version\": {version},"),
        "  \"rules\": [".into(),
        "    {".into(),
        "      \"id\": \"idp\",".into(),
        "      \"host\": \"idp.example.com\",".into(),
        "      \"purposes\": [\"jwks_fetch\"]".into(),
        "    },".into(),
        "    {".into(),
    ];
    lines.extend(bad.iter().map(|l| format!("      {l}")));
    lines.extend(["    }".into(), "  ]".into(), "}".into()]);
    lines.join("\n")
}

/// The 1-based line of `text` holding `needle`, the last such line (the bad rule comes last).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .collect::<Vec<_>>()
        .iter()
        .rposition(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} not in {text}"))
        + 1
}

async fn bad_policy_documents_are_refused_with_line_and_reason(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "site", json!({})).await;
    let good = doc_with(
        0,
        &[
            r#""id": "hooks","#,
            r#""host": "hooks.example.com","#,
            r#""purposes": ["webhook"]"#,
        ],
    );
    let (status, v) = put_policy_text(&s, "site", &good).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, stored) = s.admin_get(&policy_path("site")).await;
    assert_eq!(stored["version"], 1);
    let before = counts(&s).await;

    // (the rule's lines, the line the error must name, what the message must say)
    let cases: &[(&[&str], &str, &[&str])] = &[
        (
            &[
                r#""id": "hooks","#,
                r#""host": "hooks.example.com","#,
                r#""colour": "red","#,
                r#""purposes": ["webhook"]"#,
            ],
            "colour",
            &["unknown field `colour`"],
        ),
        (
            &[
                r#""id": "net","#,
                r#""cidr": "10.0.0.1/8","#,
                r#""purposes": ["webhook"]"#,
            ],
            "10.0.0.1/8",
            &["10.0.0.1/8 has host bits set; write it as 10.0.0.0/8"],
        ),
        (
            &[
                r#""id": "net","#,
                r#""cidr": "10.0.0.0/33","#,
                r#""purposes": ["webhook"]"#,
            ],
            "10.0.0.0/33",
            &["prefix /33 is out of range 0..=32"],
        ),
        (
            &[
                r#""id": "net","#,
                r#""cidr": "ten.0.0.0/8","#,
                r#""purposes": ["webhook"]"#,
            ],
            "ten.0.0.0/8",
            &["\"ten.0.0.0\" is not an IP address"],
        ),
        (
            &[
                r#""id": "wide","#,
                r#""host": "*.com","#,
                r#""purposes": ["webhook"]"#,
            ],
            "\"wide\"",
            &[
                "rule \"wide\"",
                "host \"*.com\": a wildcard broader than one label",
            ],
        ),
        (
            &[
                r#""id": "deep","#,
                r#""host": "*.*.example.com","#,
                r#""purposes": ["webhook"]"#,
            ],
            "\"deep\"",
            &[
                "rule \"deep\"",
                "a wildcard is allowed only as the whole first label",
            ],
        ),
        (
            &[
                r#""id": "far","#,
                r#""host": "hooks.example.com","#,
                r#""port": 70000,"#,
                r#""purposes": ["webhook"]"#,
            ],
            "70000",
            &["70000", "u16"],
        ),
        (
            &[
                r#""id": "zero","#,
                r#""host": "hooks.example.com","#,
                r#""port": 0,"#,
                r#""purposes": ["webhook"]"#,
            ],
            "\"zero\"",
            &["rule \"zero\"", "port 0 is out of range 1..=65535"],
        ),
        (
            &[
                r#""id": "again","#,
                r#""host": "idp.example.com","#,
                r#""port": 443,"#,
                r#""purposes": ["jwks_fetch"]"#,
            ],
            "\"again\"",
            &["rule \"again\"", "duplicates rule \"idp\""],
        ),
        (
            &[
                r#""id": "idp","#,
                r#""host": "other.example.com","#,
                r#""purposes": ["jwks_fetch"]"#,
            ],
            "\"idp\"",
            &["rule \"idp\"", "the id is used by an earlier rule"],
        ),
        (
            &[
                r#""id": "what","#,
                r#""host": "hooks.example.com","#,
                r#""purposes": ["teleport"]"#,
            ],
            "teleport",
            &["unknown variant `teleport`"],
        ),
    ];
    for (rule, at, needles) in cases {
        let text = doc_with(1, rule);
        let got = put_policy_text(&s, "site", &text).await;
        assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
        let message = str_of(&got.1, "message");
        let line = line_of(&text, at);
        assert!(
            message.contains(&format!("line {line}")),
            "{rule:?}: {message:?} names line {line}"
        );
        for n in *needles {
            assert!(message.contains(n), "{rule:?}: {message:?} lacks {n:?}");
        }
        assert_eq!(counts(&s).await, before, "nothing written: {rule:?}");
        assert_eq!(
            s.admin_get(&policy_path("site")).await.1,
            stored,
            "unchanged: {rule:?}"
        );
    }
    // A waiver without a reason, and JSON that is not a policy at all.
    let got = put_policy(
        &s,
        "site",
        &json!({ "version": 1, "waivers": [{ "finding": "isolated_egress", "reason": " " }] }),
    )
    .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
    assert!(str_of(&got.1, "message").contains("needs a reason"));
    let got = put_policy_text(&s, "site", "{\n  \"version\": 1,\n  \"rules\": {}\n}").await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_policy");
    assert!(str_of(&got.1, "message").contains("line 3"), "{}", got.1);
    assert_eq!(counts(&s).await, before);
    assert_eq!(s.admin_get(&policy_path("site")).await.1, stored);
}

// ---------------------------------------------------------------------------------------------
// The decision for one URL

/// An HTTP receiver on loopback answering `200 reached` to every request, counting connections.
struct Receiver {
    port: u16,
    connections: Arc<AtomicUsize>,
}

impl Receiver {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let count = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\nreached",
                        )
                        .await;
                });
            }
        });
        Self { port, connections }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn egress_test(s: &TestServer, env: &str, body: Value) -> Value {
    let (status, v) = s
        .admin_post(&format!("/environments/{env}/egress-policy/test"), body)
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

async fn egress_test_decides_connects_and_records_refusals(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "site", json!({})).await;
    let rx = Receiver::start().await;
    let other = Receiver::start().await;
    let p = rx.port;
    set_policy(
        &s,
        "site",
        json!([{ "id": "lo", "scheme": "http", "cidr": "127.0.0.0/8", "port": p, "purposes": ["webhook"] }]),
        json!([]),
    )
    .await;
    let url = format!("http://127.0.0.1:{p}/hook");

    // The decision alone connects nowhere.
    let v = egress_test(&s, "site", json!({ "url": url, "purpose": "webhook" })).await;
    assert_eq!(
        v,
        json!({
            "decision": {
                "target": { "scheme": "http", "host": "127.0.0.1", "port": p, "ip": "127.0.0.1" },
                "purpose": "webhook",
                "allowed": true,
                "addresses": [{ "address": "127.0.0.1", "allowed_by": "lo", "refused": null }],
                "refusal": null,
            },
            "connect": null,
        })
    );
    assert_eq!(rx.connections(), 0);

    // With connect: one request through the gate reaches the receiver.
    let v = egress_test(
        &s,
        "site",
        json!({ "url": url, "purpose": "webhook", "connect": true }),
    )
    .await;
    assert_eq!(v["decision"]["allowed"], true);
    assert_eq!(
        v["connect"],
        json!({ "ok": true, "status": 200, "url": url })
    );
    assert_eq!(rx.connections(), 1);
    assert!(events_of(&s, "site", "egress.denied").await.is_empty());

    // Refused: the metadata service, and the other receiver's port (no rule names it).
    let meta = "http://169.254.169.254/latest/meta-data/";
    let v = egress_test(&s, "site", json!({ "url": meta, "purpose": "webhook" })).await;
    let refusal = "no rule allows http://169.254.169.254:80 for webhook (a rule needs scheme http, host 169.254.169.254, port 80 and purpose webhook)";
    assert_eq!(v["decision"]["allowed"], false);
    assert_eq!(v["decision"]["refusal"], refusal);
    assert_eq!(v["decision"]["addresses"][0]["refused"], refusal);
    assert!(
        events_of(&s, "site", "egress.denied").await.is_empty(),
        "a dry run is not a refusal of traffic"
    );
    let before = counts(&s).await;
    let v = egress_test(
        &s,
        "site",
        json!({ "url": meta, "purpose": "webhook", "connect": true }),
    )
    .await;
    assert_eq!(
        v["connect"],
        json!({ "ok": false, "error": format!("egress refused: {refusal}") })
    );
    let other_url = format!("http://127.0.0.1:{}/hook", other.port);
    let v = egress_test(
        &s,
        "site",
        json!({ "url": other_url, "purpose": "webhook", "connect": true }),
    )
    .await;
    let missing = format!(
        "no rule allows http://127.0.0.1:{0} for webhook (a rule needs scheme http, host 127.0.0.1, port {0} and purpose webhook)",
        other.port
    );
    assert_eq!(v["decision"]["refusal"], missing.as_str());
    assert_eq!(v["connect"]["ok"], false);
    assert_eq!(other.connections(), 0, "the refused receiver saw nothing");

    // Each refusal of traffic: one egress.denied event and one failed audit record.
    let after = counts(&s).await;
    assert_eq!(after.events, before.events + 2);
    assert_eq!(after.audit_records, before.audit_records + 2);
    let denied = events_of(&s, "site", "egress.denied").await;
    assert_eq!(denied.len(), 2);
    assert_eq!(denied[0]["data"]["url"], "http://169.254.169.254:80");
    assert_eq!(denied[0]["data"]["purpose"], "webhook");
    assert_eq!(denied[0]["data"]["refusal"], refusal);
    assert_eq!(
        denied[0]["data"]["addresses"],
        json!([{ "address": "169.254.169.254", "allowed_by": null, "refused": refusal }])
    );
    assert_eq!(denied[1]["data"]["refusal"], missing.as_str());
    let audits = audit_of(&s, "site", "egress.denied").await;
    assert_eq!(audits.len(), 2);
    assert_eq!(audits[0]["outcome"], "failure");
    assert_eq!(audits[0]["actor"], "system:egress-gate");
    assert_eq!(audits[0]["target"], "http://169.254.169.254:80");
    assert_eq!(audits[0]["detail"], denied[0]["data"]);

    // Bad requests.
    let got = s
        .admin_post(
            "/environments/site/egress-policy/test",
            json!({ "url": url, "purpose": "teleport" }),
        )
        .await;
    assert_error(&got, StatusCode::UNPROCESSABLE_ENTITY, "invalid_request");
    let v = egress_test(
        &s,
        "site",
        json!({ "url": "ftp://127.0.0.1/", "purpose": "webhook" }),
    )
    .await;
    assert_eq!(v["decision"]["allowed"], false);
    assert!(
        str_of(&v["decision"], "refusal").contains("scheme \"ftp\" is not allowed"),
        "{v}"
    );
    assert_eq!(rx.connections(), 1);
}

// ---------------------------------------------------------------------------------------------
// Inventory

/// The inventory rows of `env`, with the server's URL and port and the given IDs replaced by
/// stable names.
async fn inventory_rows(s: &TestServer, env: &str, ids: &[(&str, &str)]) -> Value {
    let (status, v) = s.admin_get(&format!("/environments/{env}/inventory")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let port = s.url().rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let mut text = v.to_string().replace(s.url(), "http://SERVER");
    for (id, name) in ids {
        text = text.replace(id, name);
    }
    let mut v: Value = serde_json::from_str(&text).unwrap();
    for row in v["dependencies"].as_array_mut().unwrap() {
        if row["host"] == "127.0.0.1" && row["port"] == port {
            row["port"] = json!("PORT");
        }
    }
    v
}

fn redirect_row(client: &str, name: &str, url: &str, port: u16, what: &str) -> Value {
    let (proto, rest) = url.split_once("://").unwrap();
    let host = rest.split(['/', ':']).next().unwrap();
    json!({
        "kind": "redirect",
        "component": { "kind": "client", "id": client, "name": name },
        "direction": "front_channel",
        "protocol": proto,
        "host": host,
        "port": port,
        "url": url,
        "decision": "allowed",
        "detail": format!("front channel ({what}): the browser follows it, no server egress"),
    })
}

fn service_rows(env: &str) -> [Value; 2] {
    [
        json!({
            "kind": "callback",
            "component": { "kind": "service", "id": "authorization_server",
                           "name": "OAuth / OIDC endpoints and hosted login" },
            "direction": "inbound",
            "protocol": "http",
            "host": "127.0.0.1",
            "port": "PORT",
            "url": format!("http://SERVER/e/{env}/oauth2/authorize"),
            "decision": "inbound",
            "detail": "browsers and applications reach the issuer",
        }),
        json!({
            "kind": "admin_api",
            "component": { "kind": "service", "id": "admin_api", "name": "Admin API" },
            "direction": "inbound",
            "protocol": "http",
            "host": "127.0.0.1",
            "port": "PORT",
            "url": "http://SERVER/admin/v1",
            "decision": "inbound",
            "detail": "operators and automation with admin API keys",
        }),
    ]
}

async fn inventory_of_a_connected_and_an_isolated_environment(backend: Backend) {
    // A fake clock moved between creations makes client IDs (time-ordered) sort in creation order.
    let clock = FakeClock::new(T0);
    let s = TestServer::builder()
        .backend(backend)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    create_env(&s, "vendor", json!({ "mode": "connected" })).await;
    create_env(&s, "site", json!({})).await;
    let mut ids = Vec::new();
    for (env, body, name) in [
        (
            "vendor",
            json!({ "name": "Web app",
                    "redirect_uris": ["https://app.vendor.example/callback", "https://app.vendor.example/alt"],
                    "post_logout_redirect_uris": ["https://app.vendor.example/signed-out"] }),
            "{web}",
        ),
        (
            "vendor",
            json!({ "name": "SPA", "kind": "public", "redirect_uris": ["http://127.0.0.1:5173/cb"] }),
            "{spa}",
        ),
        (
            "vendor",
            json!({ "name": "Billing job", "grant_types": ["client_credentials"], "scopes": ["billing:read"] }),
            "{job}",
        ),
        (
            "site",
            json!({ "name": "Plant portal", "redirect_uris": ["https://portal.plant.internal:8443/oidc/cb"] }),
            "{portal}",
        ),
    ] {
        clock.advance_seconds(1);
        let c = create_client(&s, env, body).await;
        ids.push((str_of(&c, "id").to_owned(), name));
    }
    let ids: Vec<(&str, &str)> = ids.iter().map(|(i, n)| (i.as_str(), *n)).collect();

    let [callback, admin] = service_rows("vendor");
    assert_eq!(
        inventory_rows(&s, "vendor", &ids).await,
        json!({
            "environment": "vendor",
            "mode": "connected",
            "dependencies": [
                redirect_row("{web}", "Web app", "https://app.vendor.example/alt", 443, "redirect URI"),
                redirect_row("{web}", "Web app", "https://app.vendor.example/callback", 443, "redirect URI"),
                redirect_row("{web}", "Web app", "https://app.vendor.example/signed-out", 443, "post-logout redirect URI"),
                redirect_row("{spa}", "SPA", "http://127.0.0.1:5173/cb", 5173, "redirect URI"),
                callback,
                admin,
            ],
        })
    );
    let [callback, admin] = service_rows("site");
    assert_eq!(
        inventory_rows(&s, "site", &ids).await,
        json!({
            "environment": "site",
            "mode": "isolated",
            "dependencies": [
                redirect_row("{portal}", "Plant portal", "https://portal.plant.internal:8443/oidc/cb", 8443, "redirect URI"),
                callback,
                admin,
            ],
        })
    );
    // A rule changes no row today (nothing goes out yet), but the inventory stays generated
    // from the live configuration: a deleted client's rows go with it.
    let (status, _) = s
        .admin_delete(&format!("/environments/vendor/clients/{}", ids[1].0))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let rows = inventory_rows(&s, "vendor", &ids).await;
    assert_eq!(rows["dependencies"].as_array().unwrap().len(), 5);
    assert!(!rows.to_string().contains("{spa}"));
}

// ---------------------------------------------------------------------------------------------
// Change-control checks

async fn findings(s: &TestServer, env: &str) -> Vec<(String, String)> {
    let (status, v) = s
        .admin_get(&format!("/environments/{env}/policy-check"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let list: Vec<(String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert_eq!(f["environment"], env);
            assert!(!str_of(f, "message").is_empty());
            (
                str_of(f, "code").to_owned(),
                str_of(f, "subject").to_owned(),
            )
        })
        .collect();
    assert_eq!(v["ok"], list.is_empty(), "{v}");
    list
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

async fn policy_check_findings_and_waivers(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "site", json!({})).await;
    create_env(&s, "vendor", json!({ "mode": "connected" })).await;
    create_client(
        &s,
        "site",
        json!({ "name": "Portal", "redirect_uris": ["https://portal.plant.internal/cb"] }),
    )
    .await;
    assert_eq!(
        findings(&s, "site").await,
        [],
        "a fresh isolated environment is clean"
    );
    assert_eq!(findings(&s, "vendor").await, []);

    let idp = json!({ "id": "idp", "host": "idp.example.com", "purposes": ["jwks_fetch"] });
    let plain = json!({ "id": "plain", "scheme": "http", "host": "hooks.example.com", "port": 8080, "purposes": ["webhook"] });
    let lo = json!({ "id": "lo", "scheme": "http", "cidr": "127.0.0.0/8", "port": 9000, "purposes": ["webhook"] });

    // Isolated, one rule, no waiver: the rule serves nothing and egress is not waived.
    set_policy(&s, "site", json!([idp]), json!([])).await;
    assert_eq!(
        findings(&s, "site").await,
        pairs(&[("unused_rule", "rule idp"), ("isolated_egress", "policy")])
    );
    // With the waiver, only least privilege remains.
    let waiver = json!({ "finding": "isolated_egress", "reason": "CHG-7: IdP keys over the DMZ" });
    set_policy(&s, "site", json!([idp]), json!([waiver])).await;
    assert_eq!(
        findings(&s, "site").await,
        pairs(&[("unused_rule", "rule idp")])
    );
    // Plain http outside loopback is a finding; on loopback it is not.
    set_policy(&s, "site", json!([idp, plain, lo]), json!([waiver])).await;
    assert_eq!(
        findings(&s, "site").await,
        pairs(&[
            ("unused_rule", "rule idp"),
            ("unused_rule", "rule plain"),
            ("plain_http", "rule plain"),
            ("unused_rule", "rule lo"),
        ])
    );
    // Waivers per rule and for every rule.
    let unused = json!({ "finding": "unused_rule", "reason": "paths prepared for CHG-8" });
    let plain_ok = json!({ "finding": "plain_http", "rule": "plain", "reason": "legacy receiver, TLS by the VPN" });
    set_policy(
        &s,
        "site",
        json!([idp, plain, lo]),
        json!([waiver, unused, plain_ok]),
    )
    .await;
    assert_eq!(findings(&s, "site").await, []);

    // A connected environment needs no isolated_egress waiver.
    set_policy(&s, "vendor", json!([idp]), json!([])).await;
    assert_eq!(
        findings(&s, "vendor").await,
        pairs(&[("unused_rule", "rule idp")])
    );
}

// ---------------------------------------------------------------------------------------------
// Isolation between environments

async fn isolation(s: &TestServer) -> Value {
    let (status, v) = s.admin_get("/isolation-check").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

async fn isolation_check_finds_shared_redirect_uri_and_secret_digest(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    let alpha = create_env(&s, "alpha", json!({})).await;
    let beta = create_env(&s, "beta", json!({})).await;
    let shared = "https://app.shared.example/cb";
    let first = create_client(
        &s,
        "alpha",
        json!({ "name": "App", "redirect_uris": [shared] }),
    )
    .await;
    create_client(
        &s,
        "beta",
        json!({ "name": "Own", "redirect_uris": ["https://beta.example/cb"] }),
    )
    .await;
    assert_eq!(
        isolation(&s).await,
        json!({ "ok": true, "environments": 2, "findings": [] })
    );

    // At run time the shared URI is refused unless explicitly allowed.
    let before = counts(&s).await;
    let got = s
        .admin_post(
            "/environments/beta/clients",
            json!({ "name": "Copy", "redirect_uris": [shared] }),
        )
        .await;
    assert_error(&got, StatusCode::CONFLICT, "uri_in_other_environment");
    assert_eq!(counts(&s).await, before);
    create_client(
        &s,
        "beta",
        json!({ "name": "Copy", "redirect_uris": [shared], "allow_cross_environment_uris": true }),
    )
    .await;

    // A client in beta holding alpha's secret digest (as a copied database row would).
    let store = &s.app().store;
    let alpha_id: EnvId = PrefixedId::parse(str_of(&alpha, "id")).unwrap();
    let beta_id: EnvId = PrefixedId::parse(str_of(&beta, "id")).unwrap();
    let original = store
        .get_client(&alpha_id, &ClientId::parse(str_of(&first, "id")).unwrap())
        .await
        .unwrap();
    let digest = original.secret_digest.clone().unwrap();
    let mut twin = original.clone();
    twin.id = store.new_id(s.app().now());
    twin.env_id = beta_id;
    twin.name = "Twin".into();
    twin.redirect_uris = vec![];
    store
        .create_client("test", s.app().now(), twin)
        .await
        .unwrap();

    let v = isolation(&s).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["environments"], 2);
    let mut found: Vec<(String, String, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                str_of(f, "code").to_owned(),
                str_of(f, "environment").to_owned(),
                str_of(f, "subject").to_owned(),
            )
        })
        .collect();
    found.sort();
    let shown: String = digest.chars().take(12).collect::<String>() + "…";
    assert_eq!(
        found,
        [
            (
                "shared_client_secret_digest".to_owned(),
                "alpha,beta".to_owned(),
                shown.clone()
            ),
            (
                "shared_redirect_uri".to_owned(),
                "alpha,beta".to_owned(),
                shared.to_owned()
            ),
        ]
    );
    let messages = v["findings"].to_string();
    assert!(
        !messages.contains(&digest),
        "the full digest is never shown"
    );

    // A connected and an isolated environment sharing a callback host: served by one server,
    // they share even the issuer's host.
    let (status, _) = s
        .admin_patch("/environments/beta", json!({ "mode": "connected" }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let v = isolation(&s).await;
    let hosts: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["code"] == "shared_callback_host")
        .map(|f| str_of(f, "subject"))
        .collect();
    assert_eq!(hosts, ["127.0.0.1", "app.shared.example"]);

    // An environment-scoped key may not look across environments.
    let (_, key) = s
        .admin_post(
            "/environments/alpha/api-keys",
            json!({ "name": "alpha only", "kind": "admin" }),
        )
        .await;
    let got = s
        .request(
            Method::GET,
            "/admin/v1/isolation-check",
            Some(str_of(&key, "secret")),
            None,
        )
        .await;
    assert_eq!(got.0, StatusCode::FORBIDDEN, "{}", got.1);
}

// ---------------------------------------------------------------------------------------------
// Access review

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_is_one_markdown_document_for_an_auditor() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    create_env(&s, "site", json!({})).await;
    create_client(
        &s,
        "site",
        json!({ "name": "Portal", "redirect_uris": ["https://portal.plant.internal/cb"] }),
    )
    .await;
    set_policy(
        &s,
        "site",
        json!([{ "id": "idp", "host": "idp.example.com", "purposes": ["jwks_fetch"],
                 "description": "customer IdP keys" }]),
        json!([]),
    )
    .await;
    let res = s
        .client()
        .get(s.at("/admin/v1/environments/site/review"))
        .bearer_auth(ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()["content-type"],
        "text/markdown; charset=utf-8"
    );
    let md = res.text().await.unwrap();
    assert!(
        md.starts_with("# Access review: environment `site`\n"),
        "{md}"
    );
    for needle in [
        "## Identity dependency inventory",
        "| kind | component | direction | path | decision | detail | name |",
        "| redirect | client ",
        "https://portal.plant.internal:443",
        "| admin_api | service admin_api | inbound |",
        "## Egress policy",
        "| idp | https://idp.example.com:443 | jwks_fetch | customer IdP keys |",
        "## Policy check findings",
        "| unused_rule | site | rule idp |",
        "| isolated_egress | site | policy |",
        "## Isolation check findings",
        "## Non-human credentials",
        "| client secret of client_",
        "NIST SP 800-207",
        "PR.AA",
        "PR.IR",
        "DE.CM",
        "`egress.denied`",
        "Sign-off:",
    ] {
        assert!(md.contains(needle), "the review lacks {needle:?}:\n{md}");
    }
}
