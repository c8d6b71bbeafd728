//! `portcullis webhook …`: webhook endpoints, their secrets and deliveries; and
//! `portcullis events export|verify`: the signed offline export, written and checked.

use clap::Subcommand;
use serde_json::{Value, json};

use super::{Client, Conn, Failure, Outcome, body, data, enc, fields, shown_once, table};

#[derive(Subcommand)]
pub enum WebhookCmd {
    /// Create an endpoint; its URL must pass the environment's egress policy. The signing secret
    /// (`whsec_…`) is shown once.
    Create {
        #[arg(long)]
        env: String,
        #[arg(long)]
        url: String,
        /// An event type to deliver (repeatable); none: every type.
        #[arg(long = "event")]
        events: Vec<String>,
        /// A custom header `Name: value` (repeatable).
        #[arg(long = "header")]
        headers: Vec<String>,
        #[arg(long)]
        description: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
    },
    List {
        #[arg(long)]
        env: String,
    },
    Show {
        #[arg(long)]
        env: String,
        endpoint: String,
    },
    Update {
        #[arg(long)]
        env: String,
        endpoint: String,
        #[arg(long)]
        url: Option<String>,
        /// Replaces the event filter (repeatable); `--event all` delivers every type.
        #[arg(long = "event")]
        events: Option<Vec<String>>,
        /// Replaces every custom header (repeatable).
        #[arg(long = "header")]
        headers: Option<Vec<String>>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        #[arg(long)]
        disable: bool,
    },
    /// Delete an endpoint with its deliveries.
    Delete {
        #[arg(long)]
        env: String,
        endpoint: String,
    },
    /// A new signing secret; the previous one keeps signing for the overlap.
    RotateSecret {
        #[arg(long)]
        env: String,
        endpoint: String,
        /// Seconds the previous secret stays valid (default 86400).
        #[arg(long)]
        overlap_seconds: Option<i64>,
    },
    /// Deliveries of an endpoint, newest first; with a delivery ID, its attempt log.
    Deliveries {
        #[arg(long)]
        env: String,
        endpoint: String,
        delivery: Option<String>,
        /// pending, succeeded or failed.
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
    /// Send one delivery again now.
    Retry {
        #[arg(long)]
        env: String,
        endpoint: String,
        delivery: String,
    },
    /// Send every event since an event ID, a sequence number or an RFC 3339 time again.
    Replay {
        #[arg(long)]
        env: String,
        endpoint: String,
        #[arg(long)]
        since: String,
    },
}

const FIELDS: &[&str] = &[
    "id",
    "url",
    "description",
    "event_types",
    "enabled",
    "state",
    "header_names",
    "previous_secret_expires_at",
    "created_at",
    "updated_at",
];

fn headers(list: &[String]) -> Result<Value, Failure> {
    let mut m = serde_json::Map::new();
    for h in list {
        let (k, v) = h.split_once(':').ok_or_else(|| {
            Failure::Input(format!("--header {h:?}: write it as \"Name: value\""))
        })?;
        m.insert(k.trim().to_owned(), json!(v.trim()));
    }
    Ok(Value::Object(m))
}

pub async fn run(conn: &Conn, cmd: WebhookCmd) -> Outcome {
    let c = Client::new(conn)?;
    let base = |env: &str| format!("/environments/{}/webhook-endpoints", enc(env));
    let one = |env: &str, id: &str| format!("{}/{}", base(env), enc(id));
    let v = match cmd {
        WebhookCmd::Create {
            env,
            url,
            events,
            headers: h,
            description,
            disabled,
        } => {
            let v = c
                .post(
                    &base(&env),
                    body(&[
                        ("url", Some(json!(url))),
                        ("event_types", Some(json!(events))),
                        ("headers", Some(headers(&h)?)),
                        ("description", description.map(Value::from)),
                        ("enabled", Some(json!(!disabled))),
                    ]),
                )
                .await?;
            let h = shown_once(fields(&v, FIELDS), "secret", super::s(&v, "secret"));
            return Ok((v, h, 0));
        }
        WebhookCmd::List { env } => {
            let v = c.get(&base(&env)).await?;
            let t = table(&data(&v), &["id", "url", "state", "enabled", "event_types"]);
            return Ok((v, t, 0));
        }
        WebhookCmd::Show { env, endpoint } => c.get(&one(&env, &endpoint)).await?,
        WebhookCmd::Update {
            env,
            endpoint,
            url,
            events,
            headers: h,
            description,
            enable,
            disable,
        } => {
            let events = events.map(|e| {
                if e.iter().any(|t| t == "all") {
                    json!([])
                } else {
                    json!(e)
                }
            });
            let h = h.map(|h| headers(&h)).transpose()?;
            let enabled = if enable {
                Some(json!(true))
            } else if disable {
                Some(json!(false))
            } else {
                None
            };
            c.patch(
                &one(&env, &endpoint),
                body(&[
                    ("url", url.map(Value::from)),
                    ("event_types", events),
                    ("headers", h),
                    ("description", description.map(Value::from)),
                    ("enabled", enabled),
                ]),
            )
            .await?
        }
        WebhookCmd::Delete { env, endpoint } => {
            c.delete(&one(&env, &endpoint)).await?;
            return Ok((
                json!({ "deleted": endpoint }),
                format!("deleted {endpoint}\n"),
                0,
            ));
        }
        WebhookCmd::RotateSecret {
            env,
            endpoint,
            overlap_seconds,
        } => {
            let v = c
                .post(
                    &format!("{}/secret", one(&env, &endpoint)),
                    body(&[("overlap_seconds", overlap_seconds.map(Value::from))]),
                )
                .await?;
            let h = shown_once(fields(&v, FIELDS), "secret", super::s(&v, "secret"));
            return Ok((v, h, 0));
        }
        WebhookCmd::Deliveries {
            env,
            endpoint,
            delivery: Some(d),
            ..
        } => {
            let v = c
                .get(&format!("{}/deliveries/{}", one(&env, &endpoint), enc(&d)))
                .await?;
            let mut h = fields(
                &v,
                &[
                    "id",
                    "event_id",
                    "event_type",
                    "state",
                    "attempts",
                    "next_attempt_at",
                ],
            );
            let log = v
                .get("attempt_log")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            h += &table(
                &log,
                &["attempted_at", "node", "status", "latency_ms", "error"],
            );
            return Ok((v, h, 0));
        }
        WebhookCmd::Deliveries {
            env,
            endpoint,
            delivery: None,
            state,
            limit,
        } => {
            let mut path = format!("{}/deliveries?limit={limit}", one(&env, &endpoint));
            if let Some(s) = state {
                path += &format!("&state={}", enc(&s));
            }
            let v = c.get(&path).await?;
            let t = table(
                &data(&v),
                &[
                    "id",
                    "event_type",
                    "state",
                    "attempts",
                    "last_status",
                    "next_attempt_at",
                    "last_error",
                ],
            );
            return Ok((v, t, 0));
        }
        WebhookCmd::Retry {
            env,
            endpoint,
            delivery,
        } => {
            let v = c
                .post(
                    &format!(
                        "{}/deliveries/{}/retry",
                        one(&env, &endpoint),
                        enc(&delivery)
                    ),
                    json!({}),
                )
                .await?;
            let h = format!(
                "{} is {} again\n",
                super::s(&v, "id"),
                super::s(&v, "state")
            );
            return Ok((v, h, 0));
        }
        WebhookCmd::Replay {
            env,
            endpoint,
            since,
        } => {
            let v = c
                .post(
                    &format!("{}/replay", one(&env, &endpoint)),
                    json!({ "since": since }),
                )
                .await?;
            let h = format!("enqueued {} deliveries\n", v["enqueued"]);
            return Ok((v, h, 0));
        }
    };
    Ok((v.clone(), fields(&v, FIELDS), 0))
}

/// `events export`: fetches the signed document and writes it to `out`.
pub async fn export(
    conn: &Conn,
    env: &str,
    after: Option<&str>,
    limit: Option<u32>,
    out: &std::path::Path,
) -> Outcome {
    let c = Client::new(conn)?;
    let mut path = format!("/environments/{}/events/export?", enc(env));
    if let Some(a) = after {
        path += &format!("after={}&", enc(a));
    }
    if let Some(l) = limit {
        path += &format!("limit={l}");
    }
    let doc = c.get(path.trim_end_matches(['?', '&'])).await?;
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| Failure::Input(format!("encoding the export: {e}")))?;
    std::fs::write(out, text + "\n")
        .map_err(|e| Failure::Input(format!("cannot write {}: {e}", out.display())))?;
    let n = doc["events"].as_array().map_or(0, Vec::len);
    let cursor = &doc["cursor"];
    let more = if cursor["has_more"] == true {
        format!(
            "; more follow: export again with --after {}",
            super::s(cursor, "last")
        )
    } else {
        String::new()
    };
    let h = format!(
        "wrote {n} events (sequence {} to {}) to {}{more}\n",
        cursor["after_sequence"].as_i64().unwrap_or(0) + i64::from(n > 0),
        cursor["last_sequence"],
        out.display()
    );
    let summary = json!({ "file": out.display().to_string(), "events": n, "cursor": cursor });
    Ok((summary, h, 0))
}

/// `events verify`: offline; exit 1 when the file does not verify.
pub fn verify(file: &std::path::Path, jwks: Option<&std::path::Path>) -> Outcome {
    use portcullis_events::export::{KeySource, verify};
    let read = |p: &std::path::Path| -> Result<String, Failure> {
        std::fs::read_to_string(p).map_err(|e| Failure::Input(format!("{}: {e}", p.display())))
    };
    let text = read(file)?;
    let trusted: Option<Value> = match jwks {
        Some(p) => Some(
            serde_json::from_str(&read(p)?)
                .map_err(|e| Failure::Input(format!("{}: not a JWKS: {e}", p.display())))?,
        ),
        None => None,
    };
    let result = serde_json::from_str::<Value>(&text)
        .map_err(|e| format!("the file is not JSON: {e}"))
        .and_then(|doc| verify(&doc, trusted.as_ref()).map_err(|e| e.to_string()));
    Ok(match result {
        Ok(v) => {
            let source = match v.key_source {
                KeySource::Trusted => format!(
                    "the trusted JWKS {}",
                    jwks.map(|p| p.display().to_string()).unwrap_or_default()
                ),
                KeySource::Embedded => "the JWKS embedded in the file (not independently trusted: pass --jwks with the environment's published keys to check its origin)".into(),
            };
            let h = format!(
                "OK: {} events of environment {} (cursor {} → {}), signed by key {} from {source}\n",
                v.count,
                super::s(&v.environment, "slug"),
                v.cursor["after_sequence"],
                v.cursor["last_sequence"],
                v.kid,
            );
            let key_source = match v.key_source {
                KeySource::Trusted => "trusted",
                KeySource::Embedded => "embedded",
            };
            let out = json!({ "ok": true, "events": v.count, "environment": v.environment,
                              "cursor": v.cursor, "kid": v.kid, "key_source": key_source });
            (out, h, 0)
        }
        Err(e) => (
            json!({ "ok": false, "error": e }),
            format!("FAILED: {}: {e}\n", file.display()),
            1,
        ),
    })
}
