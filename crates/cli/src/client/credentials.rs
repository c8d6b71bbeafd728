//! `portcullis credentials report`: the machine-credential inventory of one environment (--env)
//! or of everything the admin key sees, as a table (or the API's JSON with --json).
//!
//! Exit 1 when any credential is past its rotation due date, expired and still configured, or
//! (with --stale DAYS) active and unused for more than DAYS; 0 otherwise; 2 for input errors.
//! The problems are computed by the server, at the server's time.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Client, Conn, Failure, enc, table};

#[derive(Subcommand)]
pub enum CredentialsCmd {
    /// Every client secret, private_key_jwt key, API key and webhook secret with its owner,
    /// created, last used, expiry, rotation due date, state and problems. Exit 1 when a
    /// credential is past rotation due, expired but not revoked, or stale (--stale).
    Report {
        /// One environment (ID or slug); all the admin key sees when absent (with a global admin
        /// key, the global admin keys too).
        #[arg(long)]
        env: Option<String>,
        /// Also flag active credentials unused (never, or not since) for more than DAYS days.
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(u32).range(1..))]
        stale: Option<u32>,
    },
}

const COLUMNS: &[&str] = &[
    "kind",
    "id",
    "owner",
    "created",
    "last_used",
    "expires",
    "rotation_due",
    "state",
    "problems",
];

/// `2031-01-02T03:04:05Z` → `2031-01-02`: a table of dates, the JSON keeps the instants.
fn day(v: &Value) -> Value {
    v.as_str()
        .map_or(Value::Null, |s| json!(s.get(..10).unwrap_or(s)))
}

fn row(c: &Value, with_env: bool) -> Value {
    let owner = c["owner_name"].as_str().unwrap_or("-");
    let mut r = json!({
        "kind": c["kind"], "id": c["id"], "owner": owner,
        "created": day(&c["created_at"]), "last_used": day(&c["last_used_at"]),
        "expires": day(&c["expires_at"]), "rotation_due": day(&c["rotation_due_at"]),
        "state": c["state"], "problems": c["problems"],
    });
    if with_env {
        r["environment"] = c
            .get("environment_id")
            .cloned()
            .filter(|e| !e.is_null())
            .unwrap_or(json!("(global)"));
    }
    r
}

pub async fn run(conn: &Conn, cmd: CredentialsCmd) -> Result<(Value, String, i32), Failure> {
    let CredentialsCmd::Report { env, stale } = cmd;
    let c = Client::new(conn)?;
    let mut path = match &env {
        Some(e) => format!("/environments/{}/credentials", enc(e)),
        None => "/credentials".to_owned(),
    };
    if let Some(d) = stale {
        path += &format!("?stale_days={d}");
    }
    let v = c.get(&path).await?;
    let data = v["data"].as_array().cloned().unwrap_or_default();
    let with_env = env.is_none();
    let rows: Vec<Value> = data.iter().map(|c| row(c, with_env)).collect();
    let mut cols: Vec<&str> = Vec::new();
    if with_env {
        cols.push("environment");
    }
    cols.extend_from_slice(COLUMNS);
    let sum = &v["summary"];
    let count = |k: &str| sum[k].as_u64().unwrap_or(0);
    let mut text = if rows.is_empty() {
        "no machine credentials\n".to_owned()
    } else {
        table(&rows, &cols)
    };
    text += &format!(
        "{} credentials, {} with problems ({} rotation overdue, {} expired, {} stale)\n",
        count("total"),
        count("with_problems"),
        count("rotation_overdue"),
        count("expired"),
        count("stale"),
    );
    let code = i32::from(count("with_problems") > 0);
    Ok((v, text, code))
}
