//! The admin client: the same binary talks to a running server's `/admin/v1` API.
//!
//! Human output by default, the API's JSON with `--json`. An HTTP error prints the server's
//! `message` and `code` on one line and exits with 2.

mod audit_checkpoint;
mod audit_file;
mod bundles;
mod connections;
mod credentials;
mod governance;
mod oauth_clients;
mod users;
mod webhooks;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

pub use connections::ConnectionCmd;
pub use governance::{GovernanceCommand, run as run_governance};
pub use oauth_clients::ClientCmd;
pub use users::UserCmd;
pub use webhooks::WebhookCmd;

#[derive(Args, Clone)]
pub struct Conn {
    /// Server URL.
    #[arg(
        long,
        env = "PORTCULLIS_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Admin key (prefer the environment variable: flags show up in process lists).
    #[arg(
        long,
        env = "PORTCULLIS_ADMIN_KEY",
        hide_env_values = true,
        global = true
    )]
    admin_key: Option<String>,
    /// Print the API's JSON instead of human output.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Environments.
    Env {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: EnvCmd,
    },
    /// Organizations.
    Org {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: OrgCmd,
    },
    /// OAuth clients (applications and service accounts) of an environment.
    Client {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: ClientCmd,
    },
    /// SSO connections of organizations (upstream OIDC, SAML).
    Connection {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: ConnectionCmd,
    },
    /// Local users of an organization (the password connection).
    User {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: UserCmd,
    },
    /// Webhook endpoints of an environment: secrets, deliveries, retries, replays.
    Webhook {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: WebhookCmd,
    },
    /// Admin and environment API keys.
    ApiKey {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: ApiKeyCmd,
    },
    /// Signing keys.
    Keys {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// The event log.
    Events {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: EventsCmd,
    },
    /// The audit chain.
    Audit {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: AuditCmd,
    },
}

#[derive(Subcommand)]
pub enum EnvCmd {
    /// Create an environment (global admin key).
    Create {
        slug: String,
        #[arg(long)]
        name: Option<String>,
        /// connected or isolated (default isolated).
        #[arg(long)]
        mode: Option<String>,
        #[arg(long)]
        issuer: Option<String>,
        /// ES256 (default), EdDSA or RS256.
        #[arg(long)]
        alg: Option<String>,
        #[arg(long)]
        key_lifetime_days: Option<i64>,
        #[arg(long)]
        key_grace_days: Option<i64>,
    },
    List,
    Show {
        env: String,
    },
    Update {
        env: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        mode: Option<String>,
        #[arg(long)]
        key_lifetime_days: Option<i64>,
        #[arg(long)]
        key_grace_days: Option<i64>,
    },
}

#[derive(Subcommand)]
pub enum OrgCmd {
    Create {
        #[arg(long)]
        env: String,
        #[arg(long)]
        name: String,
        /// A domain the organization owns (repeatable).
        #[arg(long = "domain")]
        domains: Vec<String>,
    },
    List {
        #[arg(long)]
        env: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[arg(long)]
        after: Option<String>,
    },
    Show {
        #[arg(long)]
        env: String,
        org: String,
    },
    Update {
        #[arg(long)]
        env: String,
        org: String,
        #[arg(long)]
        name: Option<String>,
        /// Replaces all domains (repeatable).
        #[arg(long = "domain")]
        domains: Option<Vec<String>>,
    },
    Delete {
        #[arg(long)]
        env: String,
        org: String,
    },
}

#[derive(Subcommand)]
pub enum ApiKeyCmd {
    /// Create a key: with --env an environment key (or --admin for an admin key scoped to it);
    /// without --env a global admin key.
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        env: Option<String>,
        #[arg(long, requires = "env")]
        admin: bool,
        /// The key is refused DAYS days from now (default: it does not expire).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(i64).range(1..=3650))]
        expires_in: Option<i64>,
    },
    List {
        #[arg(long)]
        env: Option<String>,
    },
    Revoke {
        key: String,
    },
    /// Replace a key by a new one (same kind, environment and name; its secret shown once). The
    /// old key keeps working for the overlap, then it is revoked.
    Rotate {
        key: String,
        /// How long the old key keeps working: 0 (revoked now) to 2592000 seconds (default 86400).
        #[arg(long)]
        overlap_seconds: Option<i64>,
        /// The new key is refused DAYS days from now (default: the old key's lifetime, if any).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(i64).range(1..=3650))]
        expires_in: Option<i64>,
    },
}

#[derive(Subcommand)]
pub enum KeysCmd {
    List {
        #[arg(long)]
        env: String,
    },
    /// Promote the published next key, retire the active one, publish a new next key.
    Rotate {
        #[arg(long)]
        env: String,
    },
}

#[derive(Subcommand)]
pub enum EventsCmd {
    List {
        #[arg(long)]
        env: String,
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Write a signed, self-describing file of events to carry across the gap.
    Export {
        #[arg(long)]
        env: String,
        /// Events after this event ID or sequence number (the last file's cursor.last).
        #[arg(long)]
        after: Option<String>,
        /// At most this many events (1–10000, default 1000).
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Check an export file offline, against the JWKS inside it or, better, a JWKS you trust.
    /// Exit 1 when it does not verify.
    Verify {
        file: std::path::PathBuf,
        /// The environment's published JWKS, obtained independently of the file.
        #[arg(long)]
        jwks: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Recompute the chain (of --env, or the global chain) and name the first broken link.
    /// Exit 1 when the chain is broken.
    ///
    /// For an environment, also checks every stored checkpoint: its signature, and that the
    /// record it signed is still there with the same hash (a chain that ends below a checkpoint
    /// lost its tail).
    ///
    /// With --file, verifies an exported file offline instead: every line's link and hash, the
    /// signed checkpoint (against --jwks, or the JWKS in the file), that no tail is missing, and
    /// the stored checkpoints the file carries.
    Verify {
        #[arg(long)]
        env: Option<String>,
        #[arg(long, conflicts_with = "env")]
        file: Option<std::path::PathBuf>,
        /// A JWKS file the verifier trusts (otherwise the one carried in the export is used).
        #[arg(long, requires = "file")]
        jwks: Option<std::path::PathBuf>,
    },
    /// Sign the head of an environment's chain now (a checkpoint; the server also signs it
    /// every `audit_checkpoint_interval_seconds` when it moved). Exit 1 when the chain since the
    /// latest checkpoint is broken: nothing is signed then.
    Checkpoint {
        #[arg(long)]
        env: String,
    },
    /// Export an environment's chain (or its tail after --after) as signed JSON Lines, with the
    /// latest stored checkpoint of the range.
    Export {
        #[arg(long)]
        env: String,
        #[arg(long, default_value_t = 0)]
        after: i64,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    List {
        #[arg(long)]
        env: Option<String>,
        #[arg(long)]
        after: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
}

struct Client {
    http: reqwest::Client,
    base: String,
    key: String,
}

enum Failure {
    Input(String),
}

impl Client {
    fn new(conn: &Conn) -> Result<Self, Failure> {
        let key = conn
            .admin_key
            .clone()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| {
                Failure::Input("no admin key: set PORTCULLIS_ADMIN_KEY (or --admin-key)".into())
            })?;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .map_err(|e| Failure::Input(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: format!("{}/admin/v1", conn.url.trim_end_matches('/')),
            key,
        })
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, Failure> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.finish(req).await
    }

    /// A request whose body is a file as it is (a configuration, a bundle, PEM, SAML metadata).
    async fn raw(
        &self,
        method: reqwest::Method,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> Result<Value, Failure> {
        let req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body);
        self.finish(req).await
    }

    async fn finish(&self, req: reqwest::RequestBuilder) -> Result<Value, Failure> {
        let res = req.send().await.map_err(|e| {
            Failure::Input(format!(
                "cannot reach {}: {} (check --url)",
                self.base,
                root_cause(&e)
            ))
        })?;
        let status = res.status();
        let text = res
            .text()
            .await
            .map_err(|e| Failure::Input(format!("reading the response: {e}")))?;
        let value: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            Ok(value)
        } else {
            let msg = value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("request failed");
            let code = value.get("code").and_then(Value::as_str).unwrap_or("error");
            Err(Failure::Input(format!(
                "{msg} ({code}, HTTP {})",
                status.as_u16()
            )))
        }
    }
    async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }
    async fn patch(&self, path: &str, body: Value) -> Result<Value, Failure> {
        self.call(reqwest::Method::PATCH, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> Result<Value, Failure> {
        self.call(reqwest::Method::DELETE, path, None).await
    }
}

/// The innermost error: reqwest's own message ("error sending request") hides whether the
/// connection was refused, timed out or failed TLS.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// Drops absent fields from a request body.
fn body(pairs: &[(&str, Option<Value>)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .filter_map(|(k, v)| v.clone().map(|v| ((*k).to_owned(), v)))
            .collect(),
    )
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

pub async fn run(cmd: AdminCommand) -> i32 {
    let (conn, result) = match cmd {
        AdminCommand::Env { conn, cmd } => {
            let r = env(&conn, cmd).await;
            (conn, r)
        }
        AdminCommand::Org { conn, cmd } => {
            let r = org(&conn, cmd).await;
            (conn, r)
        }
        AdminCommand::Client { conn, cmd } => {
            let r = oauth_clients::run(&conn, cmd).await;
            (conn, r)
        }
        AdminCommand::Connection { conn, cmd } => {
            let r = connections::run(&conn, cmd).await;
            (conn, r)
        }
        AdminCommand::User { conn, cmd } => {
            let r = users::run(&conn, cmd).await;
            (conn, r)
        }
        AdminCommand::Webhook { conn, cmd } => {
            let r = webhooks::run(&conn, cmd).await;
            (conn, r)
        }
        AdminCommand::ApiKey { conn, cmd } => {
            let r = api_key(&conn, cmd).await;
            (conn, r)
        }
        AdminCommand::Keys { conn, cmd } => {
            let r = keys(&conn, cmd).await;
            (conn, r)
        }
        AdminCommand::Events { conn, cmd } => {
            let r = events(&conn, cmd).await;
            (conn, r)
        }
        AdminCommand::Audit { conn, cmd } => {
            let r = audit(&conn, cmd).await;
            (conn, r)
        }
    };
    match result {
        Ok((value, human, code)) => {
            if conn.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&value).unwrap_or_default()
                );
            } else {
                print!("{human}");
            }
            code
        }
        Err(Failure::Input(m)) => {
            eprintln!("error: {m}");
            2
        }
    }
}

type Outcome = Result<(Value, String, i32), Failure>;

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("-")
}

fn table(rows: &[Value], cols: &[&str]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            cols.iter()
                .map(|c| match r.get(*c) {
                    Some(Value::String(x)) => x.clone(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned))
                        .collect::<Vec<_>>()
                        .join(","),
                    Some(Value::Null) | None => "-".into(),
                    Some(other) => other.to_string(),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].len())
                .max()
                .unwrap_or(0)
                .max(c.len())
        })
        .collect();
    let line = |vals: Vec<String>| {
        vals.iter()
            .enumerate()
            .map(|(i, v)| format!("{v:<w$}", w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
            + "\n"
    };
    let mut out = line(cols.iter().map(|c| c.to_uppercase()).collect());
    for r in cells {
        out += &line(r);
    }
    out
}

fn fields(v: &Value, keys: &[&str]) -> String {
    keys.iter()
        .map(|k| {
            format!(
                "{k:<14} {}\n",
                match v.get(*k) {
                    Some(Value::String(x)) => x.clone(),
                    Some(Value::Null) | None => "-".into(),
                    Some(o) => o.to_string(),
                }
            )
        })
        .collect()
}

/// A secret or password printed once, after the record it belongs to.
fn shown_once(record: String, label: &str, secret: &str) -> String {
    format!(
        "{}\n{label:<14} {secret}\n(shown once: store it now)\n",
        record.trim_end()
    )
}

fn data(v: &Value) -> Vec<Value> {
    v.get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

const ENV_FIELDS: &[&str] = &[
    "id",
    "slug",
    "name",
    "mode",
    "issuer",
    "jwks_uri",
    "signing_alg",
    "key_policy",
    "created_at",
    "updated_at",
];

async fn env(conn: &Conn, cmd: EnvCmd) -> Outcome {
    let c = Client::new(conn)?;
    let v = match cmd {
        EnvCmd::Create {
            slug,
            name,
            mode,
            issuer,
            alg,
            key_lifetime_days,
            key_grace_days,
        } => {
            c.post(
                "/environments",
                body(&[
                    ("slug", Some(json!(slug))),
                    ("name", name.map(Value::from)),
                    ("mode", mode.map(Value::from)),
                    ("issuer", issuer.map(Value::from)),
                    ("signing_alg", alg.map(Value::from)),
                    ("key_lifetime_days", key_lifetime_days.map(Value::from)),
                    ("key_grace_days", key_grace_days.map(Value::from)),
                ]),
            )
            .await?
        }
        EnvCmd::List => {
            let v = c.get("/environments").await?;
            let t = table(&data(&v), &["id", "slug", "mode", "signing_alg", "issuer"]);
            return Ok((v, t, 0));
        }
        EnvCmd::Show { env } => c.get(&format!("/environments/{}", enc(&env))).await?,
        EnvCmd::Update {
            env,
            name,
            mode,
            key_lifetime_days,
            key_grace_days,
        } => {
            c.call(
                reqwest::Method::PATCH,
                &format!("/environments/{}", enc(&env)),
                Some(body(&[
                    ("name", name.map(Value::from)),
                    ("mode", mode.map(Value::from)),
                    ("key_lifetime_days", key_lifetime_days.map(Value::from)),
                    ("key_grace_days", key_grace_days.map(Value::from)),
                ])),
            )
            .await?
        }
    };
    let h = fields(&v, ENV_FIELDS);
    Ok((v, h, 0))
}

const ORG_FIELDS: &[&str] = &[
    "id",
    "name",
    "domains",
    "environment_id",
    "created_at",
    "updated_at",
];

async fn org(conn: &Conn, cmd: OrgCmd) -> Outcome {
    let c = Client::new(conn)?;
    let v = match cmd {
        OrgCmd::Create { env, name, domains } => {
            c.post(
                &format!("/environments/{}/organizations", enc(&env)),
                json!({ "name": name, "domains": domains }),
            )
            .await?
        }
        OrgCmd::List { env, limit, after } => {
            let mut path = format!("/environments/{}/organizations?limit={limit}", enc(&env));
            if let Some(a) = after {
                path += &format!("&after={}", enc(&a));
            }
            let v = c.get(&path).await?;
            let mut t = table(&data(&v), &["id", "name", "domains"]);
            if let Some(a) = v.pointer("/list_metadata/after").and_then(Value::as_str) {
                t += &format!("(more: --after {a})\n");
            }
            return Ok((v, t, 0));
        }
        OrgCmd::Show { env, org } => {
            c.get(&format!(
                "/environments/{}/organizations/{}",
                enc(&env),
                enc(&org)
            ))
            .await?
        }
        OrgCmd::Update {
            env,
            org,
            name,
            domains,
        } => {
            c.call(
                reqwest::Method::PATCH,
                &format!("/environments/{}/organizations/{}", enc(&env), enc(&org)),
                Some(body(&[
                    ("name", name.map(Value::from)),
                    ("domains", domains.map(|d| json!(d))),
                ])),
            )
            .await?
        }
        OrgCmd::Delete { env, org } => {
            c.call(
                reqwest::Method::DELETE,
                &format!("/environments/{}/organizations/{}", enc(&env), enc(&org)),
                None,
            )
            .await?;
            return Ok((json!({ "deleted": org }), format!("deleted {org}\n"), 0));
        }
    };
    let h = fields(&v, ORG_FIELDS);
    Ok((v, h, 0))
}

async fn api_key(conn: &Conn, cmd: ApiKeyCmd) -> Outcome {
    let c = Client::new(conn)?;
    match cmd {
        ApiKeyCmd::Create {
            name,
            env,
            admin,
            expires_in,
        } => {
            let expires = ("expires_in_seconds", expires_in.map(|d| json!(d * 86_400)));
            let v = match env {
                Some(e) => {
                    let kind = if admin { "admin" } else { "environment" };
                    c.post(
                        &format!("/environments/{}/api-keys", enc(&e)),
                        body(&[
                            ("name", Some(json!(name))),
                            ("kind", Some(json!(kind))),
                            expires,
                        ]),
                    )
                    .await?
                }
                None => {
                    c.post("/api-keys", body(&[("name", Some(json!(name))), expires]))
                        .await?
                }
            };
            let h = format!(
                "{}\nsecret         {}\n(shown once: store it now)\n",
                fields(&v, &["id", "kind", "environment_id", "name", "expires_at"]).trim_end(),
                s(&v, "secret")
            );
            Ok((v, h, 0))
        }
        ApiKeyCmd::Rotate {
            key,
            overlap_seconds,
            expires_in,
        } => {
            let v = c
                .post(
                    &format!("/api-keys/{}/rotate", enc(&key)),
                    body(&[
                        ("overlap_seconds", overlap_seconds.map(Value::from)),
                        ("expires_in_seconds", expires_in.map(|d| json!(d * 86_400))),
                    ]),
                )
                .await?;
            let h = format!(
                "{}\nsecret         {}\n(shown once: store it now)\n{} keeps working until {}\n",
                fields(&v, &["id", "kind", "environment_id", "name", "expires_at"]).trim_end(),
                s(&v, "secret"),
                s(&v["replaced"], "id"),
                s(&v["replaced"], "expires_at"),
            );
            Ok((v, h, 0))
        }
        ApiKeyCmd::List { env } => {
            let v = match env {
                Some(e) => {
                    c.get(&format!("/environments/{}/api-keys", enc(&e)))
                        .await?
                }
                None => c.get("/api-keys").await?,
            };
            let t = table(
                &data(&v),
                &[
                    "id",
                    "kind",
                    "environment_id",
                    "name",
                    "last_used_at",
                    "expires_at",
                    "revoked_at",
                ],
            );
            Ok((v, t, 0))
        }
        ApiKeyCmd::Revoke { key } => {
            let v = c
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api-keys/{}", enc(&key)),
                    None,
                )
                .await?;
            let h = format!("revoked {} at {}\n", s(&v, "id"), s(&v, "revoked_at"));
            Ok((v, h, 0))
        }
    }
}

async fn keys(conn: &Conn, cmd: KeysCmd) -> Outcome {
    let c = Client::new(conn)?;
    let v = match cmd {
        KeysCmd::List { env } => c.get(&format!("/environments/{}/keys", enc(&env))).await?,
        KeysCmd::Rotate { env } => {
            c.post(
                &format!("/environments/{}/keys/rotate", enc(&env)),
                json!({}),
            )
            .await?
        }
    };
    let t = table(
        &data(&v),
        &[
            "id",
            "alg",
            "state",
            "published",
            "created_at",
            "activated_at",
            "retired_at",
        ],
    );
    Ok((v, t, 0))
}

async fn events(conn: &Conn, cmd: EventsCmd) -> Outcome {
    let (env, after, limit) = match cmd {
        EventsCmd::List { env, after, limit } => (env, after, limit),
        EventsCmd::Export {
            env,
            after,
            limit,
            out,
        } => return webhooks::export(conn, &env, after.as_deref(), limit, &out).await,
        EventsCmd::Verify { file, jwks } => return webhooks::verify(&file, jwks.as_deref()),
    };
    let c = Client::new(conn)?;
    let mut path = format!("/environments/{}/events?limit={limit}", enc(&env));
    if let Some(a) = after {
        path += &format!("&after={}", enc(&a));
    }
    let v = c.get(&path).await?;
    let t = table(
        &data(&v),
        &["sequence", "id", "event", "organization_id", "created_at"],
    );
    Ok((v, t, 0))
}

async fn audit(conn: &Conn, cmd: AuditCmd) -> Outcome {
    if let AuditCmd::Verify {
        file: Some(f),
        jwks,
        ..
    } = &cmd
    {
        return audit_file::verify(f, jwks.as_deref());
    }
    let c = Client::new(conn)?;
    match cmd {
        AuditCmd::Export { env, after, out } => audit_file::export(&c, &env, after, &out).await,
        AuditCmd::Checkpoint { env } => audit_checkpoint::checkpoint(&c, &env).await,
        AuditCmd::Verify { env, .. } => {
            let v = match env {
                Some(e) => {
                    c.get(&format!("/environments/{}/audit/verify", enc(&e)))
                        .await?
                }
                None => c.get("/audit/verify").await?,
            };
            let ok = v.get("ok").and_then(Value::as_bool).unwrap_or(false);
            let latest = &v["latest_checkpoint"];
            let checkpoints = if latest.is_object() {
                format!(
                    "; {} checkpoints verified, the latest at record {} signed {}",
                    v["checkpoints"],
                    latest["seq"],
                    s(latest, "at")
                )
            } else {
                String::new()
            };
            let h = if ok {
                format!(
                    "chain {}: {} records, intact (head {}{checkpoints})\n",
                    s(&v, "chain"),
                    v["records"],
                    s(&v, "head_hash")
                )
            } else {
                format!(
                    "chain {}: BROKEN at record {}: {}\n",
                    s(&v, "chain"),
                    v["broken_at"],
                    s(&v, "reason")
                )
            };
            Ok((v, h, if ok { 0 } else { 1 }))
        }
        AuditCmd::List { env, after, limit } => {
            let base = env.map_or_else(
                || "/audit".to_owned(),
                |e| format!("/environments/{}/audit", enc(&e)),
            );
            let mut path = format!("{base}?limit={limit}");
            if let Some(a) = after {
                path += &format!("&after={}", enc(&a));
            }
            let v = c.get(&path).await?;
            let t = table(
                &data(&v),
                &["seq", "at", "actor", "action", "target", "outcome"],
            );
            Ok((v, t, 0))
        }
    }
}
