//! The `portcullis` binary, run as an operator would: the admin client against an in-process
//! `TestServer`, `audit verify` against a chain tampered with through raw SQL, `serve` on a fresh
//! data directory stopped by SIGTERM, and the exit codes of bad input (2: input error, one line on
//! standard error; 1: `audit verify` found a broken chain).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use portcullis_testkit::server::{ADMIN_KEY, Backend, TestServer};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Connection};

#[path = "cli/audit_export.rs"]
mod audit_export;
#[path = "cli/bundles.rs"]
mod bundles;
#[path = "cli/credentials.rs"]
mod credentials;
#[path = "cli/events.rs"]
mod events;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");
/// Longest any one command may take before the test calls it hung.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

macro_rules! both_backends {
    ($($test:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::Postgres).await;
                }
            )+
        }
    };
}

both_backends!(
    audit_verify_passes_on_an_intact_chain,
    audit_verify_names_an_edited_record,
    audit_verify_names_a_deleted_record,
    audit_verify_names_reordered_records,
    audit_verify_names_a_removed_tail,
    audit_verify_names_a_tail_truncated_below_a_checkpoint,
    master_key_rotate_reseals_and_the_same_keys_sign,
);

/// A `portcullis` command with a clean environment (no stray `PORTCULLIS_*` from the caller).
fn portcullis(args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// An admin-client command aimed at `s` with its admin key.
fn client(s: &TestServer, args: &[&str]) -> tokio::process::Command {
    let mut cmd = portcullis(args);
    cmd.env("PORTCULLIS_URL", s.url())
        .env("PORTCULLIS_ADMIN_KEY", ADMIN_KEY);
    cmd
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

async fn run(mut cmd: tokio::process::Command) -> Ran {
    let started = Instant::now();
    let out: Output = tokio::time::timeout(COMMAND_TIMEOUT, cmd.output())
        .await
        .expect("the command finished in time")
        .expect("the command ran");
    Ran {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

impl Ran {
    #[track_caller]
    fn ok(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }

    /// Exit 2 with exactly one line on standard error, starting `error: `; returns that line.
    #[track_caller]
    fn input_error(&self) -> &str {
        assert_eq!(
            self.code, 2,
            "stdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self
            .stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        lines[0]
    }
}

/// A port nobody listens on (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A server with one environment `prod` whose audit chain holds five records (the environment
/// and four organizations).
async fn server_with_chain(backend: Backend) -> (TestServer, String) {
    let s = TestServer::start(backend).await.unwrap();
    let (status, env) = s
        .admin_post("/environments", json!({ "slug": "prod" }))
        .await;
    assert!(status.is_success(), "{env}");
    for i in 0..4 {
        let (status, org) = s
            .admin_post(
                "/environments/prod/organizations",
                json!({ "name": format!("Org {i}") }),
            )
            .await;
        assert!(status.is_success(), "{org}");
    }
    let chain = env["id"].as_str().unwrap().to_owned();
    (s, chain)
}

/// Runs SQL beside the server, as someone with database access would.
async fn tamper(s: &TestServer, statements: &[(&'static str, &[Bind<'_>])]) {
    sqlx::any::install_default_drivers();
    let mut conn = AnyConnection::connect(&s.database_url()).await.unwrap();
    for (sql, binds) in statements {
        let mut q = sqlx::query(*sql);
        for b in *binds {
            q = match b {
                Bind::Text(t) => q.bind((*t).to_owned()),
                Bind::Int(i) => q.bind(*i),
            };
        }
        let n = q.execute(&mut conn).await.unwrap().rows_affected();
        assert_eq!(n, 1, "{sql} changed {n} rows");
    }
    conn.close().await.unwrap();
}

enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// `audit verify --env prod`: exit 1, and the broken link named in human and JSON output.
async fn assert_broken_at(s: &TestServer, seq: i64, reason: &str) {
    let r = run(client(s, &["audit", "verify", "--env", "prod"])).await;
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(&format!("BROKEN at record {seq}:")),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(reason), "{}", r.stdout);
    let r = run(client(s, &["audit", "verify", "--env", "prod", "--json"])).await;
    assert_eq!(r.code, 1);
    let v = r.json();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["broken_at"], seq, "{v}");
    // Another environment's chain is untouched.
    let r = run(client(s, &["audit", "verify"])).await;
    r.ok();
}

async fn audit_verify_passes_on_an_intact_chain(backend: Backend) {
    let (s, chain) = server_with_chain(backend).await;
    let r = run(client(&s, &["audit", "verify", "--env", "prod"])).await;
    r.ok();
    assert!(
        r.stdout
            .contains(&format!("chain {chain}: 5 records, intact")),
        "{}",
        r.stdout
    );
    let r = run(client(&s, &["audit", "verify", "--env", "prod", "--json"])).await;
    r.ok();
    assert_eq!(r.json()["ok"], true);
    assert_eq!(r.json()["records"], 5);
}

async fn audit_verify_names_an_edited_record(backend: Backend) {
    let (s, chain) = server_with_chain(backend).await;
    tamper(
        &s,
        &[(
            "UPDATE audit_records SET detail = $1 WHERE chain = $2 AND seq = $3",
            &[
                Bind::Text(r#"{"name":"Someone else"}"#),
                Bind::Text(&chain),
                Bind::Int(3),
            ],
        )],
    )
    .await;
    assert_broken_at(&s, 3, "altered").await;
}

async fn audit_verify_names_a_deleted_record(backend: Backend) {
    let (s, chain) = server_with_chain(backend).await;
    tamper(
        &s,
        &[(
            "DELETE FROM audit_records WHERE chain = $1 AND seq = $2",
            &[Bind::Text(&chain), Bind::Int(3)],
        )],
    )
    .await;
    assert_broken_at(&s, 3, "expected record 3, found record 4").await;
}

async fn audit_verify_names_reordered_records(backend: Backend) {
    let (s, chain) = server_with_chain(backend).await;
    let swap = "UPDATE audit_records SET seq = $1 WHERE chain = $2 AND seq = $3";
    tamper(
        &s,
        &[
            (swap, &[Bind::Int(-1), Bind::Text(&chain), Bind::Int(2)]),
            (swap, &[Bind::Int(2), Bind::Text(&chain), Bind::Int(3)]),
            (swap, &[Bind::Int(3), Bind::Text(&chain), Bind::Int(-1)]),
        ],
    )
    .await;
    assert_broken_at(&s, 2, "does not point at its predecessor").await;
}

async fn audit_verify_names_a_removed_tail(backend: Backend) {
    let (s, chain) = server_with_chain(backend).await;
    tamper(
        &s,
        &[(
            "DELETE FROM audit_records WHERE chain = $1 AND seq = $2",
            &[Bind::Text(&chain), Bind::Int(5)],
        )],
    )
    .await;
    assert_broken_at(&s, 5, "tail").await;
}

/// `audit checkpoint` signs the head; then the last two records are deleted and the head rewound
/// to the record before them, a consistent chain. `audit verify --env` names the checkpoint and
/// the missing records, no checkpoint is signed over the shorter chain, and an export made now
/// carries the checkpoint that shows the truncation.
async fn audit_verify_names_a_tail_truncated_below_a_checkpoint(backend: Backend) {
    let (s, chain) = server_with_chain(backend).await;
    let r = run(client(
        &s,
        &["audit", "checkpoint", "--env", "prod", "--json"],
    ))
    .await;
    r.ok();
    let cp = r.json()["checkpoint"].clone();
    assert_eq!(r.json()["created"], true, "{}", r.stdout);
    assert_eq!(cp["seq"], 5);
    let at = cp["at"].as_str().unwrap().to_owned();
    let r = run(client(&s, &["audit", "checkpoint", "--env", "prod"])).await;
    r.ok();
    assert_eq!(
        r.stdout,
        format!("the head of prod has not moved since checkpoint 5 (signed {at})\n")
    );
    let r = run(client(&s, &["audit", "verify", "--env", "prod"])).await;
    r.ok();
    assert!(
        r.stdout.contains(&format!(
            "; 1 checkpoints verified, the latest at record 5 signed {at})"
        )),
        "{}",
        r.stdout
    );

    let (_, list) = s.admin_get("/environments/prod/audit?limit=100").await;
    let third = list["data"][2]["hash"].as_str().unwrap().to_owned();
    let delete = "DELETE FROM audit_records WHERE chain = $1 AND seq = $2";
    tamper(
        &s,
        &[
            (delete, &[Bind::Text(&chain), Bind::Int(5)]),
            (delete, &[Bind::Text(&chain), Bind::Int(4)]),
            (
                "UPDATE audit_heads SET seq = $1, hash = $2 WHERE chain = $3",
                &[Bind::Int(3), Bind::Text(&third), Bind::Text(&chain)],
            ),
        ],
    )
    .await;
    let reason = format!(
        "checkpoint 5 (signed {at}) covers record 5, but the chain ends at record 3: records 4 to 5 are missing (the tail was truncated)"
    );
    let r = run(client(&s, &["audit", "verify", "--env", "prod"])).await;
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        format!("chain {chain}: BROKEN at record 4: {reason}\n")
    );
    let r = run(client(&s, &["audit", "verify", "--env", "prod", "--json"])).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["broken_at"], 4);
    assert_eq!(r.json()["latest_checkpoint"]["seq"], 5);

    let r = run(client(&s, &["audit", "checkpoint", "--env", "prod"])).await;
    assert_eq!(r.code, 1, "{} {}", r.stdout, r.stderr);
    assert_eq!(
        r.stdout,
        format!(
            "prod: NOT CHECKPOINTED: the chain is broken at record 4: the chain head is record 3, below checkpoint 5 (signed {at}): the tail was truncated (no checkpoint written)\n"
        )
    );

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("truncated.jsonl");
    run(client(
        &s,
        &[
            "audit",
            "export",
            "--env",
            "prod",
            "--out",
            out.to_str().unwrap(),
        ],
    ))
    .await
    .ok();
    let r = run(portcullis(&[
        "audit",
        "verify",
        "--json",
        "--file",
        out.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(
        r.json(),
        json!({ "ok": false, "line": 1, "reason": reason })
    );
}

/// `master-key rotate` with the server stopped: every signing key and every connection's secrets
/// re-sealed, the old key file kept, and the server starts on the new key with the same keys
/// signing and the same connection secrets opening.
async fn master_key_rotate_reseals_and_the_same_keys_sign(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    let (_, env) = s
        .admin_post(
            "/environments",
            json!({ "slug": "prod", "signing_alg": "RS256" }),
        )
        .await;
    let env_id: portcullis_core::ids::EnvId =
        portcullis_core::ids::PrefixedId::parse(env["id"].as_str().unwrap()).unwrap();
    let kid = s
        .app()
        .keys
        .signer(&env_id, s.app().now())
        .await
        .unwrap()
        .kid()
        .to_owned();
    let (_, jwks_before) = s
        .request(reqwest::Method::GET, "/e/prod/jwks.json", None, None)
        .await;
    // Connections keep secrets sealed under the master key too: an upstream OIDC client secret,
    // a SAML connection's SP private keys.
    let (st, org) = s
        .admin_post(
            "/environments/prod/organizations",
            json!({ "name": "Acme" }),
        )
        .await;
    assert_eq!(st, reqwest::StatusCode::CREATED, "{org}");
    let conns = format!(
        "/environments/prod/organizations/{}/connections",
        org["id"].as_str().unwrap()
    );
    let idp_der =
        portcullis_crypto::jws::generate_pkcs8(portcullis_core::model::SigningAlg::ES256).unwrap();
    let idp_jwk = portcullis_crypto::SigningKey::from_pkcs8(
        "idp-1",
        portcullis_core::model::SigningAlg::ES256,
        &idp_der,
    )
    .unwrap()
    .public_jwk();
    let mut connection_ids = Vec::new();
    for body in [
        json!({ "type": "oidc", "name": "entra", "client_secret": "upstream-secret", "oidc": {
            "issuer": "https://login.acme.test/tenant", "client_id": "portcullis",
            "authorization_endpoint": "https://login.acme.test/tenant/authorize",
            "token_endpoint": "https://login.acme.test/tenant/token",
            "jwks": { "keys": [idp_jwk] },
        }}),
        json!({ "type": "saml", "name": "adfs", "saml": {} }),
    ] {
        let (st, c) = s.admin_post(&conns, body).await;
        assert_eq!(st, reqwest::StatusCode::CREATED, "{c}");
        connection_ids.push(portcullis_core::ids::ConnectionId::from_stored(
            c["id"].as_str().unwrap().to_owned(),
        ));
    }
    let open_secrets = async |s: &TestServer| {
        let mut out = Vec::new();
        for id in &connection_ids {
            let c = s.app().store.get_connection(&env_id, id).await.unwrap();
            let sealed = c.sealed_secrets.expect("sealed secrets");
            let aad = portcullis_server::admin::connection_secrets_aad(id, env_id.as_str());
            let plain = s.app().keys.master().open(&aad, &sealed).unwrap();
            out.push((sealed, plain.to_vec()));
        }
        out
    };
    let secrets_before = open_secrets(&s).await;
    assert!(
        String::from_utf8_lossy(&secrets_before[0].1).contains("upstream-secret"),
        "the OIDC connection's sealed secrets hold its client secret"
    );
    let storage = s.stop().await.unwrap();
    let dir = storage.data_dir().to_owned();
    let old_key = std::fs::read_to_string(dir.join("master.key")).unwrap();

    let mut args = vec!["master-key", "rotate", "--data-dir", dir.to_str().unwrap()];
    if let Some(url) = &storage.database_url {
        args.extend(["--database-url", url.as_str()]);
    }
    let r = run(portcullis(&args)).await;
    r.ok();
    assert!(
        r.stdout.contains("re-sealed 2 signing keys"),
        "{}",
        r.stdout
    );
    let new_key = std::fs::read_to_string(dir.join("master.key")).unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(
        std::fs::read_to_string(dir.join("master.key.previous")).unwrap(),
        old_key
    );
    assert_eq!(mode(&dir.join("master.key")), 0o600);

    let s = TestServer::builder()
        .storage(storage.clone())
        .start()
        .await
        .unwrap();
    let (_, jwks_after) = s
        .request(reqwest::Method::GET, "/e/prod/jwks.json", None, None)
        .await;
    assert_eq!(jwks_after, jwks_before);
    let signer = s.app().keys.signer(&env_id, s.app().now()).await.unwrap();
    assert_eq!(signer.kid(), kid);
    let token = signer.sign_compact(None, &json!({ "sub": "x" })).unwrap();
    let jwk = jwks_after["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap();
    assert!(portcullis_crypto::jws::verify_compact(jwk, &token).is_some());
    let secrets_after = open_secrets(&s).await;
    for ((sealed_before, plain_before), (sealed_after, plain_after)) in
        secrets_before.iter().zip(&secrets_after)
    {
        assert_ne!(sealed_after, sealed_before, "re-sealed, not left as it was");
        assert_eq!(
            plain_after, plain_before,
            "the same secrets under the new key"
        );
    }
    let records = s
        .app()
        .store
        .audit_records(portcullis_core::audit::GLOBAL_CHAIN, 0, None)
        .await
        .unwrap();
    let rotation = records
        .iter()
        .find(|r| r.action == "master_key.rotate")
        .expect("the rotation is audited");
    assert!(
        rotation
            .detail
            .contains(r#""connection_secrets_resealed":2"#),
        "{}",
        rotation.detail
    );
    s.stop().await.unwrap();

    // The old key no longer opens the database.
    std::fs::write(dir.join("master.key"), &old_key).unwrap();
    let err = TestServer::builder()
        .storage(storage)
        .start()
        .await
        .err()
        .expect("refused");
    assert!(format!("{err:#}").contains("does not match"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_commands_drive_a_server() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let r = run(client(
        &s,
        &[
            "env",
            "create",
            "prod",
            "--alg",
            "EdDSA",
            "--name",
            "Production",
        ],
    ))
    .await;
    r.ok();
    assert!(
        r.stdout.contains("EdDSA") && r.stdout.contains(&format!("{}/e/prod", s.url())),
        "{}",
        r.stdout
    );
    let r = run(client(
        &s,
        &[
            "org",
            "create",
            "--env",
            "prod",
            "--name",
            "Acme",
            "--domain",
            "example.com",
            "--domain",
            "acme.test",
        ],
    ))
    .await;
    r.ok();
    let r = run(client(&s, &["org", "list", "--env", "prod", "--json"])).await;
    r.ok();
    let orgs = r.json();
    assert_eq!(
        orgs["data"][0]["domains"],
        json!(["acme.test", "example.com"])
    );
    let r = run(client(&s, &["env", "list"])).await;
    r.ok();
    assert!(
        r.stdout
            .lines()
            .any(|l| l.contains("prod") && l.contains("EdDSA")),
        "{}",
        r.stdout
    );
    let r = run(client(&s, &["keys", "rotate", "--env", "prod"])).await;
    r.ok();
    let r = run(client(&s, &["keys", "list", "--env", "prod", "--json"])).await;
    r.ok();
    let mut states: Vec<String> = r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["state"].as_str().unwrap().to_owned())
        .collect();
    states.sort();
    assert_eq!(states, ["active", "next", "retired"]);
    let r = run(client(&s, &["api-key", "create", "--name", "ci", "--json"])).await;
    r.ok();
    let secret = r.json()["secret"].as_str().unwrap().to_owned();
    let mut cmd = client(&s, &["events", "list", "--env", "prod", "--json"]);
    cmd.env("PORTCULLIS_ADMIN_KEY", &secret);
    let r = run(cmd).await;
    r.ok();
    let events = r.json();
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "environment.created",
            "organization.created",
            "signing_key.rotated"
        ]
    );
    // A refused request: exit 2, the server's message and code on one line.
    let r = run(client(
        &s,
        &[
            "org",
            "create",
            "--env",
            "prod",
            "--name",
            "Imposter",
            "--domain",
            "example.com",
        ],
    ))
    .await;
    let line = r.input_error();
    assert!(
        line.contains("domain_taken") && line.contains("409"),
        "{line}"
    );
    let r = run(client(&s, &["env", "create", "Bad_Slug"])).await;
    assert!(r.input_error().contains("slug"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_or_missing_admin_key_exits_2_with_one_line() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let mut cmd = client(&s, &["env", "list"]);
    cmd.env("PORTCULLIS_ADMIN_KEY", format!("pcadm_{}", "q".repeat(40)));
    let r = run(cmd).await;
    let line = r.input_error();
    assert!(
        line.contains("401") && line.contains("unauthorized"),
        "{line}"
    );
    assert!(r.stdout.is_empty(), "{}", r.stdout);

    let mut cmd = portcullis(&["env", "list"]);
    cmd.env("PORTCULLIS_URL", s.url());
    let r = run(cmd).await;
    assert!(r.input_error().contains("PORTCULLIS_ADMIN_KEY"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_url_exits_2() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let mut cmd = portcullis(&["env", "list", "--url", &url]);
    cmd.env("PORTCULLIS_ADMIN_KEY", ADMIN_KEY);
    let r = run(cmd).await;
    let line = r.input_error();
    assert!(
        line.contains("cannot reach") && line.contains("--url"),
        "{line}"
    );
    assert!(r.took < Duration::from_secs(10), "took {:?}", r.took);
}

/// `serve` flags for a fresh data directory on a free port.
fn serve_args(dir: &Path, port: u16) -> Vec<String> {
    vec![
        "serve".into(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--listen".into(),
        format!("127.0.0.1:{port}"),
        "--public-url".into(),
        format!("http://127.0.0.1:{port}"),
    ]
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_a_corrupt_master_key_file_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("master.key"), "this is not a master key\n").unwrap();
    let args = serve_args(&dir, free_port());
    let mut cmd = portcullis(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.current_dir(tmp.path());
    let r = run(cmd).await;
    let line = r.input_error();
    assert!(
        line.contains("master key file")
            && line.contains(&dir.join("master.key").display().to_string()),
        "{line}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("master.key")).unwrap(),
        "this is not a master key\n",
        "left as it was"
    );
    assert!(
        !dir.join("admin.key").exists(),
        "no admin key without a master key"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_an_unreachable_database_exits_2_quickly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut args = serve_args(&tmp.path().join("data"), free_port());
    args.extend([
        "--database-url".into(),
        "postgres://postgres:hunter2@127.0.0.1:1/x?sslmode=disable&password=hunter3".into(),
    ]);
    let mut cmd = portcullis(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.current_dir(tmp.path());
    let r = run(cmd).await;
    let line = r.input_error();
    assert!(
        line.contains("database") && line.contains("127.0.0.1:1"),
        "{line}"
    );
    assert!(
        !line.contains("hunter2") && !line.contains("hunter3"),
        "passwords are redacted: {line}"
    );
    assert!(r.took < Duration::from_secs(15), "took {:?}", r.took);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_an_unknown_config_key_exits_2_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("portcullis.toml");
    std::fs::write(
        &file,
        "listen = \"127.0.0.1:0\"\nlisten_adress = \"127.0.0.1:9\"\n",
    )
    .unwrap();
    let mut cmd = portcullis(&["serve", "--config", file.to_str().unwrap()]);
    cmd.current_dir(tmp.path());
    let r = run(cmd).await;
    let line = r.input_error();
    assert!(
        line.contains("listen_adress") && line.contains("portcullis.toml"),
        "{line}"
    );
    // The same through the environment.
    let mut cmd = portcullis(&["serve"]);
    cmd.current_dir(tmp.path())
        .env("PORTCULLIS_DATA_DIRECTORY", "x");
    let r = run(cmd).await;
    assert!(r.input_error().contains("PORTCULLIS_DATA_DIRECTORY"));
    // A value out of range names its key (it used to overflow into a panic).
    let mut cmd = portcullis(&["serve"]);
    cmd.current_dir(tmp.path())
        .env("PORTCULLIS_KEY_LIFETIME_DAYS", i64::MAX.to_string());
    let r = run(cmd).await;
    assert!(r.input_error().contains("`key_lifetime_days`"));
    assert!(
        !tmp.path().join("portcullis-data").exists(),
        "nothing created"
    );
}

/// Polls `/readyz` until it answers 200 (at most 20 s), or the process ends.
async fn wait_ready(child: &mut tokio::process::Child, url: &str) {
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the server exited early with {status}");
        }
        if let Ok(res) = http.get(format!("{url}/readyz")).send().await
            && res.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "not ready within 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sends `signal` (TERM, INT) and waits for the exit.
async fn terminate(child: tokio::process::Child, signal: &str) -> Output {
    let pid = child.id().expect("running").to_string();
    let status = std::process::Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(&pid)
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("stopped within 20 s of SIGTERM")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_bootstraps_and_sigterm_stops_gracefully() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let args = serve_args(&dir, port);
    let mut cmd = portcullis(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.current_dir(tmp.path());
    let mut child = cmd.spawn().unwrap();
    wait_ready(&mut child, &url).await;

    assert_eq!(mode(&dir), 0o700, "data directory");
    assert_eq!(mode(&dir.join("master.key")), 0o600, "master key file");
    assert_eq!(mode(&dir.join("admin.key")), 0o600, "admin key file");
    let admin_key = std::fs::read_to_string(dir.join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    assert!(
        admin_key.starts_with("pcadm_") && admin_key.len() >= 38,
        "{admin_key}"
    );
    // The key works, through the same binary.
    let mut cmd = portcullis(&["env", "create", "first", "--url", &url, "--json"]);
    cmd.env("PORTCULLIS_ADMIN_KEY", &admin_key);
    let r = run(cmd).await;
    r.ok();
    assert_eq!(r.json()["issuer"], format!("{url}/e/first"));

    let out = terminate(child, "TERM").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "graceful stop exits 0\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stdout.contains(&admin_key),
        "the first admin key is printed once: {stdout}"
    );
    assert!(stdout.contains("master key"), "{stdout}");

    // The second start bootstraps nothing and prints no key.
    let mut cmd = portcullis(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.current_dir(tmp.path());
    let mut child = cmd.spawn().unwrap();
    wait_ready(&mut child, &url).await;
    let out = terminate(child, "TERM").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0));
    assert!(
        !stdout.contains(&admin_key),
        "the key is shown only once: {stdout}"
    );
    assert!(!stdout.contains("created master key"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_key_demo_json_logs_and_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let r = run(portcullis(&[
        "migrate",
        "--data-dir",
        dir.to_str().unwrap(),
    ]))
    .await;
    r.ok();
    assert!(
        r.stdout.contains("the sqlite database is at version "),
        "{}",
        r.stdout
    );

    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let args = serve_args(&dir, port);
    let mut cmd = portcullis(&args.iter().map(String::as_str).collect::<Vec<_>>());
    cmd.current_dir(tmp.path())
        .args(["--demo", "--log-format", "json"])
        .env("PORTCULLIS_BOOTSTRAP_ADMIN_KEY", ADMIN_KEY);
    let mut child = cmd.spawn().unwrap();
    wait_ready(&mut child, &url).await;
    assert!(
        !dir.join("admin.key").exists(),
        "a given key is not written to disk"
    );
    let mut cmd = portcullis(&["env", "show", "demo", "--url", &url, "--json"]);
    cmd.env("PORTCULLIS_ADMIN_KEY", ADMIN_KEY);
    let r = run(cmd).await;
    r.ok();
    assert_eq!(
        r.json()["issuer"],
        format!("{url}/e/demo"),
        "the demo environment is ready"
    );
    // Ctrl-C stops it as gracefully as SIGTERM.
    let out = terminate(child, "INT").await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stdout.contains(ADMIN_KEY), "a given key is not printed");
    assert!(
        stdout.contains("/e/demo"),
        "the demo is announced: {stdout}"
    );
    let logs: Vec<Value> = stderr
        .lines()
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {l}"))
        })
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["fields"]["message"] == "portcullis is serving"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// Governance: policy check, isolation check, policy diff, egress set, inventory

/// Replaces the egress policy of `env` (at version `version`) through the admin API.
async fn put_policy(s: &TestServer, env: &str, doc: Value) {
    let (status, v) = s
        .request(
            reqwest::Method::PUT,
            &format!("/admin/v1/environments/{env}/egress-policy"),
            Some(ADMIN_KEY),
            Some(&doc),
        )
        .await;
    assert!(status.is_success(), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_check_exits_0_when_clean_and_1_with_findings() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (status, v) = s
        .admin_post("/environments", json!({ "slug": "site" }))
        .await;
    assert!(status.is_success(), "{v}");
    let r = run(client(&s, &["policy", "check", "--env", "site"])).await;
    r.ok();
    assert_eq!(r.stdout, "## Policy check\n\nNo findings.\n");

    put_policy(
        &s,
        "site",
        json!({ "version": 0, "rules": [
            { "id": "idp", "host": "idp.example.com", "purposes": ["jwks_fetch"] },
        ] }),
    )
    .await;
    let r = run(client(&s, &["policy", "check", "--env", "site"])).await;
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("| unused_rule | site | rule idp |")
            && r.stdout.contains("| isolated_egress | site | policy |"),
        "{}",
        r.stdout
    );
    let r = run(client(
        &s,
        &["policy", "check", "--format", "json"], // every environment
    ))
    .await;
    assert_eq!(r.code, 1);
    let v = r.json();
    assert_eq!(v["ok"], false);
    let codes: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["unused_rule", "isolated_egress"]);

    // Waived: clean again.
    put_policy(
        &s,
        "site",
        json!({ "version": 1, "rules": [
            { "id": "idp", "host": "idp.example.com", "purposes": ["jwks_fetch"] },
        ], "waivers": [
            { "finding": "isolated_egress", "reason": "CHG-1: IdP keys through the DMZ" },
            { "finding": "unused_rule", "rule": "idp", "reason": "CHG-1: connection configured next week" },
        ] }),
    )
    .await;
    run(client(&s, &["policy", "check", "--env", "site"]))
        .await
        .ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_check_exits_1_on_a_shared_redirect_uri() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    for slug in ["alpha", "beta"] {
        let (status, v) = s.admin_post("/environments", json!({ "slug": slug })).await;
        assert!(status.is_success(), "{v}");
    }
    let uri = "https://app.shared.example/cb";
    let (status, v) = s
        .admin_post(
            "/environments/alpha/clients",
            json!({ "name": "App", "redirect_uris": [uri] }),
        )
        .await;
    assert!(status.is_success(), "{v}");
    let r = run(client(&s, &["isolation", "check"])).await;
    r.ok();
    assert!(r.stdout.contains("No findings."), "{}", r.stdout);

    let (status, v) = s
        .admin_post(
            "/environments/beta/clients",
            json!({ "name": "App", "redirect_uris": [uri], "allow_cross_environment_uris": true }),
        )
        .await;
    assert!(status.is_success(), "{v}");
    let r = run(client(&s, &["isolation", "check"])).await;
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains(&format!("| shared_redirect_uri | alpha,beta | {uri} |")),
        "{}",
        r.stdout
    );
    let r = run(client(&s, &["isolation", "check", "--json"])).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["ok"], false);
    assert_eq!(r.json()["findings"][0]["code"], "shared_redirect_uri");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_diff_lists_added_and_removed_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let old = tmp.path().join("old.json");
    let new = tmp.path().join("new.json");
    std::fs::write(
        &old,
        r#"{"version": 3, "rules": [
  {"id": "idp", "host": "idp.example.com", "purposes": ["jwks_fetch"]},
  {"id": "legacy", "scheme": "http", "host": "hooks.example.com", "port": 8080, "purposes": ["webhook"]}
]}"#,
    )
    .unwrap();
    std::fs::write(
        &new,
        r#"{"version": 3, "rules": [
  {"id": "idp", "host": "idp.example.com", "purposes": ["jwks_fetch"]},
  {"id": "hooks", "host": "hooks.example.com", "port": 8443, "purposes": ["webhook"]}
]}"#,
    )
    .unwrap();
    let (o, n) = (old.to_str().unwrap(), new.to_str().unwrap());
    // Offline: no server, no key.
    let r = run(portcullis(&["policy", "diff", o, n])).await;
    r.ok();
    assert_eq!(
        r.stdout,
        "| change | rule | path | effect |\n|---|---|---|---|\n\
         | removed | legacy | http://hooks.example.com:8080 | closes http://hooks.example.com:8080 for webhook |\n\
         | added | hooks | https://hooks.example.com:8443 | opens https://hooks.example.com:8443 for webhook |\n"
    );
    let r = run(portcullis(&["policy", "diff", o, n, "--format", "json"])).await;
    r.ok();
    let changes: Vec<(String, String)> = r
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["change"].as_str().unwrap().to_owned(),
                c["rule"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("removed".to_owned(), "legacy".to_owned()),
            ("added".to_owned(), "hooks".to_owned())
        ]
    );
    let r = run(portcullis(&["policy", "diff", o, o])).await;
    r.ok();
    assert_eq!(r.stdout, "No changes.\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_set_with_an_invalid_file_exits_2_naming_the_line() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (status, v) = s
        .admin_post("/environments", json!({ "slug": "site" }))
        .await;
    assert!(status.is_success(), "{v}");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("policy.json");
    for (text, line, reason) in [
        (
            "{\n  \"version\": 0,\n  \"rules\": [\n    {\"id\": \"wide\",\n     \"host\": \"*.com\",\n     \"purposes\": [\"webhook\"]}\n  ]\n}\n",
            4,
            "wildcard broader than one label",
        ),
        (
            "{\n  \"version\": 0,\n  \"rules\": [\n    {\"id\": \"a\", \"host\": \"a.example.com\",\n     \"purposes\": [\"webhook\"], \"colour\": \"red\"}\n  ]\n}\n",
            5,
            "unknown field `colour`",
        ),
    ] {
        std::fs::write(&file, text).unwrap();
        let r = run(client(
            &s,
            &["egress", "set", "--env", "site", file.to_str().unwrap()],
        ))
        .await;
        let err = r.input_error();
        assert!(
            err.contains(&format!("line {line}"))
                && err.contains(reason)
                && err.contains("policy.json"),
            "{err}"
        );
    }
    let r = run(client(&s, &["egress", "show", "--env", "site", "--json"])).await;
    r.ok();
    assert_eq!(
        r.json(),
        json!({ "version": 0, "rules": [], "waivers": [] })
    );

    // A valid file: the new version and what it opens.
    std::fs::write(
        &file,
        r#"{"version": 0, "rules": [{"id": "idp", "host": "idp.example.com", "purposes": ["jwks_fetch"]}]}"#,
    )
    .unwrap();
    let r = run(client(
        &s,
        &["egress", "set", "--env", "site", file.to_str().unwrap()],
    ))
    .await;
    r.ok();
    assert_eq!(
        r.stdout,
        "policy of site is now version 1\n  added idp: opens https://idp.example.com:443 for jwks_fetch\n"
    );
    // Applying the same file again is a stale version: exit 2, the server's code.
    let r = run(client(
        &s,
        &["egress", "set", "--env", "site", file.to_str().unwrap()],
    ))
    .await;
    assert!(r.input_error().contains("version_conflict"));
    // `egress test`: exit 0 when allowed, 1 when refused; the URL under test receives nothing
    // (the admin request, with its key, goes to --url only).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    put_policy(
        &s,
        "site",
        json!({ "version": 1, "rules": [
            { "id": "lo", "scheme": "http", "cidr": "127.0.0.0/8", "port": port, "purposes": ["webhook"] },
        ] }),
    )
    .await;
    let hook = format!("http://127.0.0.1:{port}/hook");
    let r = run(client(&s, &["egress", "test", "--env", "site", &hook])).await;
    r.ok();
    assert_eq!(
        r.stdout,
        format!("{hook} for webhook: ALLOWED\n  127.0.0.1  allowed by rule lo\n")
    );
    assert_eq!(
        listener.accept().unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock,
        "nothing connected to the URL under test"
    );
    let r = run(client(
        &s,
        &[
            "egress",
            "test",
            "--env",
            "site",
            "http://169.254.169.254/latest/meta-data/",
            "--purpose",
            "metadata_fetch",
        ],
    ))
    .await;
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .starts_with("http://169.254.169.254/latest/meta-data/ for metadata_fetch: REFUSED\n"),
        "{}",
        r.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_as_csv_starts_with_its_header() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (status, v) = s
        .admin_post("/environments", json!({ "slug": "site" }))
        .await;
    assert!(status.is_success(), "{v}");
    let (status, v) = s
        .admin_post(
            "/environments/site/clients",
            json!({ "name": "Portal, main", "redirect_uris": ["https://portal.plant.internal/cb"] }),
        )
        .await;
    assert!(status.is_success(), "{v}");
    let r = run(client(
        &s,
        &["inventory", "--env", "site", "--format", "csv"],
    ))
    .await;
    r.ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "kind,component,direction,path,decision,detail,name"
    );
    assert_eq!(lines.len(), 4, "{}", r.stdout);
    assert!(
        lines[1].starts_with("redirect,client client_")
            && lines[1].contains(",front_channel,https://portal.plant.internal:443,allowed,")
            && lines[1].ends_with(",\"Portal, main\""),
        "{}",
        lines[1]
    );
    let r = run(client(
        &s,
        &["inventory", "--env", "site", "--format", "yaml"],
    ))
    .await;
    assert!(r.input_error().contains("unknown format"));
}

/// Runs `cmd` with `input` on its standard input.
async fn run_with_stdin(mut cmd: tokio::process::Command, input: &str) -> Ran {
    use tokio::io::AsyncWriteExt;
    cmd.stdin(Stdio::piped());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("the command ran");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .expect("the command finished in time")
        .expect("the command ran");
    Ran {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_commands_create_list_show_activate_deactivate() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    run(client(&s, &["env", "create", "sso"])).await.ok();
    let r = run(client(
        &s,
        &[
            "org",
            "create",
            "--env",
            "sso",
            "--name",
            "Acme",
            "--domain",
            "acme.test",
            "--json",
        ],
    ))
    .await;
    let org = r.ok().json()["id"].as_str().unwrap().to_owned();
    let tmp = tempfile::tempdir().unwrap();
    let jwks = tmp.path().join("idp-keys.json");
    let jwk = json!({ "kty": "EC", "crv": "P-256", "kid": "k1",
        "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0" });
    std::fs::write(&jwks, json!({ "keys": [jwk] }).to_string()).unwrap();
    let jwks = jwks.display().to_string();
    let oidc = |name: &'static str| {
        vec![
            "connection",
            "create",
            "--env",
            "sso",
            "--org",
            org.as_str(),
            "--type",
            "oidc",
            "--name",
            name,
            "--issuer",
            "https://idp.acme.test",
            "--client-id",
            "portcullis",
            "--authorization-endpoint",
            "https://idp.acme.test/authorize",
            "--token-endpoint",
            "https://idp.acme.test/token",
        ]
    };
    let secret = "upstream-secret-from-stdin";
    let mut args = oidc("Acme IdP");
    args.extend(["--jwks-file", jwks.as_str(), "--client-secret-stdin"]);
    let r = run_with_stdin(client(&s, &args), &format!("{secret}\n")).await;
    r.ok();
    assert!(
        r.stdout.contains("draft") && r.stdout.contains("\"kid\": \"k1\""),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains(secret), "{}", r.stdout);

    let r = run(client(
        &s,
        &[
            "connection",
            "list",
            "--env",
            "sso",
            "--org",
            &org,
            "--json",
        ],
    ))
    .await;
    let list = r.ok().json();
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(list["data"][0]["config"]["jwks"]["keys"][0], jwk);
    let r = run(client(
        &s,
        &["connection", "list", "--env", "sso", "--org", &org],
    ))
    .await;
    assert!(
        r.ok()
            .stdout
            .lines()
            .any(|l| l.contains(&id) && l.contains("draft")),
        "{}",
        r.stdout
    );

    let r = run(client(
        &s,
        &["connection", "activate", "--env", "sso", &id, "--json"],
    ))
    .await;
    assert_eq!(r.ok().json()["state"], "active");
    let r = run(client(&s, &["connection", "show", "--env", "sso", &id])).await;
    assert!(r.ok().stdout.contains("active"), "{}", r.stdout);
    let r = run(client(
        &s,
        &["connection", "deactivate", "--env", "sso", &id, "--json"],
    ))
    .await;
    assert_eq!(r.ok().json()["state"], "inactive");
    let r = run(client(&s, &["events", "list", "--env", "sso", "--json"])).await;
    let events = r.ok().json();
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        types[2..],
        [
            "connection.created",
            "connection.activated",
            "connection.deactivated"
        ]
    );
    assert!(!events.to_string().contains(secret));

    // The server names what is wrong: no pinned keys.
    let mut args = oidc("No keys");
    args.extend(["--client-secret", "s"]);
    let r = run(client(&s, &args)).await;
    let line = r.input_error();
    assert!(line.contains("jwks") && line.contains("422"), "{line}");
    // Unreadable files and flags of the other type are refused before any request.
    let mut args = oidc("Missing file");
    args.extend([
        "--jwks-file",
        "/nonexistent/keys.json",
        "--client-secret",
        "s",
    ]);
    assert!(
        run(client(&s, &args))
            .await
            .input_error()
            .contains("/nonexistent/keys.json")
    );
    let r = run_with_stdin(
        client(&s, &{
            let mut a = oidc("Empty stdin");
            a.extend(["--jwks-file", jwks.as_str(), "--client-secret-stdin"]);
            a
        }),
        "\n",
    )
    .await;
    assert!(r.input_error().contains("standard input"));
    let r = run(client(
        &s,
        &[
            "connection",
            "create",
            "--env",
            "sso",
            "--org",
            &org,
            "--type",
            "saml",
            "--name",
            "S",
            "--issuer",
            "https://idp.acme.test",
        ],
    ))
    .await;
    assert!(r.input_error().contains("--type oidc"));
    let r = run(client(
        &s,
        &["connection", "show", "--env", "sso", "conn_nope"],
    ))
    .await;
    assert!(r.input_error().contains("404"));
    let r = run(client(
        &s,
        &[
            "connection",
            "list",
            "--env",
            "sso",
            "--org",
            &org,
            "--json",
        ],
    ))
    .await;
    assert_eq!(
        r.ok().json()["data"].as_array().unwrap().len(),
        1,
        "nothing else was created"
    );
}
