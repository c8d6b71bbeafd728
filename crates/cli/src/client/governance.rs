//! Governance commands: `egress`, `inventory`, `policy check|diff`, `isolation check`, `review`,
//! `credentials report`.
//!
//! Exit codes follow the rest of the CLI: 0 fine, 1 a check found problems, 2 usage or input.

use clap::Subcommand;
use portcullis_egress::checks::{Finding, findings_markdown, policy_diff};
use portcullis_egress::inventory::{Dependency, render};
use serde_json::{Value, json};

use super::{Client, Conn, Failure, enc};

#[derive(Subcommand)]
pub enum GovernanceCommand {
    /// An environment's egress policy.
    Egress {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: EgressCmd,
    },
    /// The identity-dependency inventory of one environment (--env) or of all.
    Inventory {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        env: Option<String>,
        /// table, json, markdown or csv.
        #[arg(long, default_value = "table")]
        format: String,
    },
    /// Change-control checks on policies.
    Policy {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
    /// Checks that no secret, key, URI or issuer is shared by two environments.
    Isolation {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: IsolationCmd,
    },
    /// Machine credentials: client secrets, private_key_jwt keys, API keys, webhook secrets.
    Credentials {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: super::credentials::CredentialsCmd,
    },
    /// Show what applying a declarative configuration FILE would change (nothing is written).
    Plan {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        env: String,
        file: std::path::PathBuf,
    },
    /// Apply a declarative configuration FILE in one transaction (or not at all), each change
    /// audited. New secrets are printed once.
    Apply {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        env: String,
        file: std::path::PathBuf,
    },
    /// Write an environment's current state as a declarative configuration (no secrets).
    ExportConfig {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        env: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Signed bundles that carry configuration across the gap.
    Bundle {
        #[command(flatten)]
        conn: Conn,
        #[command(subcommand)]
        cmd: super::bundles::BundleCmd,
    },
    /// The access review of an environment: one Markdown document for an auditor.
    Review {
        #[command(flatten)]
        conn: Conn,
        #[arg(long)]
        env: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
}

#[derive(Subcommand)]
pub enum EgressCmd {
    /// Print the policy document (JSON) with its version.
    Show {
        #[arg(long)]
        env: String,
    },
    /// Replace the whole policy with FILE (JSON; its "version" must be the current version).
    Set {
        #[arg(long)]
        env: String,
        file: std::path::PathBuf,
    },
    /// Set the environment's private CA bundle (PEM) for egress TLS.
    CaBundle {
        #[arg(long)]
        env: String,
        file: std::path::PathBuf,
    },
    /// Show the decision for one URL, for every address it resolves to; --connect also tries it.
    Test {
        #[arg(long)]
        env: String,
        /// The outbound URL to decide. Not named `url`: that id belongs to the global `--url` of
        /// the server, and clap would send the admin request (and its key) to this URL instead.
        #[arg(value_name = "URL")]
        target: String,
        /// metadata_fetch, jwks_fetch, token_exchange or webhook.
        #[arg(long, default_value = "webhook")]
        purpose: String,
        #[arg(long)]
        connect: bool,
    },
}

#[derive(Subcommand)]
pub enum PolicyCmd {
    /// Findings: blocked dependencies, unused rules, egress from an isolated environment without
    /// a waiver, plain http outside loopback. Exit 1 when there are any.
    Check {
        /// One environment; all environments when absent.
        #[arg(long)]
        env: Option<String>,
        /// markdown or json.
        #[arg(long, default_value = "markdown")]
        format: String,
    },
    /// What changes between two policy files and what each change enables (offline).
    Diff {
        old: std::path::PathBuf,
        new: std::path::PathBuf,
        #[arg(long, default_value = "markdown")]
        format: String,
    },
}

#[derive(Subcommand)]
pub enum IsolationCmd {
    /// Exit 1 when anything is shared.
    Check {
        #[arg(long, default_value = "markdown")]
        format: String,
    },
}

pub(super) fn read(path: &std::path::Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| Failure::Input(format!("{}: {e}", path.display())))
}

fn parse_policy(path: &std::path::Path) -> Result<portcullis_egress::Policy, Failure> {
    portcullis_egress::policy::parse(&read(path)?)
        .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))
}

async fn env_slugs(c: &Client, env: Option<String>) -> Result<Vec<String>, Failure> {
    if let Some(e) = env {
        return Ok(vec![e]);
    }
    let v = c.get("/environments").await?;
    Ok(v["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["slug"].as_str().map(str::to_owned))
        .collect())
}

fn findings_of(v: &Value) -> Vec<Finding> {
    serde_json::from_value(v["findings"].clone()).unwrap_or_default()
}

/// (JSON for --json, text for people, exit code).
type Out = Result<(Value, String, i32), Failure>;

async fn exec(cmd: GovernanceCommand) -> (bool, Out) {
    match cmd {
        GovernanceCommand::Egress { conn, cmd } => (conn.json, egress(&conn, cmd).await),
        GovernanceCommand::Inventory { conn, env, format } => (
            false,
            inventory(&conn, env, &if conn.json { "json".into() } else { format }).await,
        ),
        GovernanceCommand::Policy { conn, cmd } => (false, policy(&conn, cmd).await),
        GovernanceCommand::Isolation {
            conn,
            cmd: IsolationCmd::Check { format },
        } => {
            let format = if conn.json { "json".to_owned() } else { format };
            (false, isolation(&conn, &format).await)
        }
        GovernanceCommand::Review { conn, env, out } => (false, review(&conn, &env, out).await),
        GovernanceCommand::Plan { conn, env, file } => (
            conn.json,
            super::bundles::plan(&conn, &env, &file, false).await,
        ),
        GovernanceCommand::Apply { conn, env, file } => (
            conn.json,
            super::bundles::plan(&conn, &env, &file, true).await,
        ),
        GovernanceCommand::ExportConfig { conn, env, out } => (
            conn.json,
            super::bundles::export_config(&conn, &env, out).await,
        ),
        GovernanceCommand::Bundle { conn, cmd } => {
            (conn.json, super::bundles::run(&conn, cmd).await)
        }
        GovernanceCommand::Credentials { conn, cmd } => {
            (conn.json, super::credentials::run(&conn, cmd).await)
        }
    }
}

pub async fn run(cmd: GovernanceCommand) -> i32 {
    match exec(cmd).await {
        (json, Ok((v, text, code))) => {
            if json {
                println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                print!("{text}");
            }
            code
        }
        (_, Err(Failure::Input(m))) => {
            eprintln!("error: {m}");
            2
        }
    }
}

async fn egress(conn: &Conn, cmd: EgressCmd) -> Out {
    let c = Client::new(conn)?;
    match cmd {
        EgressCmd::Show { env } => {
            let v = c
                .get(&format!("/environments/{}/egress-policy", enc(&env)))
                .await?;
            let text = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
            Ok((v, text, 0))
        }
        EgressCmd::Set { env, file } => {
            let policy = parse_policy(&file)?;
            let body = serde_json::to_value(&policy).map_err(|e| Failure::Input(e.to_string()))?;
            let v = c
                .call(
                    reqwest::Method::PUT,
                    &format!("/environments/{}/egress-policy", enc(&env)),
                    Some(body),
                )
                .await?;
            let mut text = format!("policy of {env} is now version {}\n", v["version"]);
            for ch in v["changes"].as_array().into_iter().flatten() {
                text += &format!(
                    "  {} {}: {}\n",
                    ch["change"].as_str().unwrap_or(""),
                    ch["rule"].as_str().unwrap_or(""),
                    ch["effect"].as_str().unwrap_or("")
                );
            }
            Ok((v, text, 0))
        }
        EgressCmd::CaBundle { env, file } => {
            let pem = read(&file)?;
            let v = c
                .raw(
                    reqwest::Method::PUT,
                    &format!("/environments/{}/egress-policy/ca-bundle", enc(&env)),
                    "application/x-pem-file",
                    pem,
                )
                .await?;
            let text = format!(
                "CA bundle of {env} set: {} certificates (policy version {})\n",
                v["certificates"], v["version"]
            );
            Ok((v, text, 0))
        }
        EgressCmd::Test {
            env,
            target: url,
            purpose,
            connect,
        } => {
            let v = c
                .post(
                    &format!("/environments/{}/egress-policy/test", enc(&env)),
                    json!({ "url": url, "purpose": purpose, "connect": connect }),
                )
                .await?;
            let d = &v["decision"];
            let allowed = d["allowed"].as_bool().unwrap_or(false);
            let mut text = format!(
                "{url} for {purpose}: {}\n",
                if allowed { "ALLOWED" } else { "REFUSED" }
            );
            for a in d["addresses"].as_array().into_iter().flatten() {
                match a["allowed_by"].as_str() {
                    Some(r) => {
                        text += &format!(
                            "  {}  allowed by rule {r}\n",
                            a["address"].as_str().unwrap_or("")
                        )
                    }
                    None => {
                        text += &format!(
                            "  {}  refused: {}\n",
                            a["address"].as_str().unwrap_or(""),
                            a["refused"].as_str().unwrap_or("")
                        )
                    }
                }
            }
            if let Some(r) = d["refusal"].as_str() {
                text += &format!("  reason: {r}\n");
            }
            if let Some(cn) = v.get("connect").filter(|c| !c.is_null()) {
                text += &match cn["ok"].as_bool() {
                    Some(true) => format!(
                        "  connect: HTTP {} from {}\n",
                        cn["status"],
                        cn["url"].as_str().unwrap_or("")
                    ),
                    _ => format!(
                        "  connect: failed: {}\n",
                        cn["error"].as_str().unwrap_or("")
                    ),
                };
            }
            let ok = allowed
                && v.get("connect")
                    .is_none_or(|c| c.is_null() || c["ok"].as_bool() == Some(true));
            Ok((v, text, if ok { 0 } else { 1 }))
        }
    }
}

async fn inventory(conn: &Conn, env: Option<String>, format: &str) -> Out {
    let c = Client::new(conn)?;
    let mut all: Vec<Dependency> = Vec::new();
    let mut raw = Vec::new();
    for slug in env_slugs(&c, env).await? {
        let v = c
            .get(&format!("/environments/{}/inventory", enc(&slug)))
            .await?;
        let rows: Vec<Dependency> = serde_json::from_value(v["dependencies"].clone())
            .map_err(|e| Failure::Input(format!("unexpected inventory: {e}")))?;
        all.extend(rows);
        raw.push(v);
    }
    let text = if format == "json" {
        serde_json::to_string_pretty(&raw).unwrap_or_default() + "\n"
    } else {
        render(&all, format).map_err(Failure::Input)?
    };
    Ok((Value::Array(raw), text, 0))
}

async fn policy(conn: &Conn, cmd: PolicyCmd) -> Out {
    match cmd {
        PolicyCmd::Diff { old, new, format } => {
            let changes = policy_diff(&parse_policy(&old)?, &parse_policy(&new)?);
            let v = serde_json::to_value(&changes).unwrap_or(Value::Null);
            let text = if format == "json" || conn.json {
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
            } else if changes.is_empty() {
                "No changes.\n".into()
            } else {
                let mut t = "| change | rule | path | effect |\n|---|---|---|---|\n".to_owned();
                for ch in &changes {
                    t += &format!(
                        "| {} | {} | {} | {} |\n",
                        ch.change, ch.rule, ch.path, ch.effect
                    );
                }
                t
            };
            Ok((v, text, 0))
        }
        PolicyCmd::Check { env, format } => {
            let c = Client::new(conn)?;
            let mut findings = Vec::new();
            for slug in env_slugs(&c, env).await? {
                findings.extend(findings_of(
                    &c.get(&format!("/environments/{}/policy-check", enc(&slug)))
                        .await?,
                ));
            }
            let v = json!({ "ok": findings.is_empty(), "findings": findings });
            let text = if format == "json" || conn.json {
                serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
            } else {
                findings_markdown("Policy check", &findings)
            };
            Ok((v, text, if findings.is_empty() { 0 } else { 1 }))
        }
    }
}

async fn isolation(conn: &Conn, format: &str) -> Out {
    let c = Client::new(conn)?;
    let v = c.get("/isolation-check").await?;
    let findings = findings_of(&v);
    let text = if format == "json" {
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    } else {
        findings_markdown("Isolation check", &findings)
    };
    Ok((v, text, if findings.is_empty() { 0 } else { 1 }))
}

async fn review(conn: &Conn, env: &str, out: Option<std::path::PathBuf>) -> Out {
    let c = Client::new(conn)?;
    let v = c.get(&format!("/environments/{}/review", enc(env))).await?;
    let doc = v.as_str().unwrap_or_default().to_owned();
    match out {
        Some(p) => {
            std::fs::write(&p, &doc)
                .map_err(|e| Failure::Input(format!("{}: {e}", p.display())))?;
            Ok((
                json!({ "written": p.display().to_string() }),
                format!("review written to {}\n", p.display()),
                0,
            ))
        }
        None => Ok((Value::String(doc.clone()), doc, 0)),
    }
}
