//! `portcullis client …`: OAuth clients of an environment. A generated secret is printed once.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Client, Conn, Failure, Outcome, body, data, enc, fields, shown_once, table};

#[derive(Subcommand)]
pub enum ClientCmd {
    /// Register a client. Confidential clients with a secret method get a secret, shown once.
    Create {
        #[arg(long)]
        env: String,
        #[arg(long)]
        name: String,
        /// The generated secret is refused DAYS days from now (default: it does not expire).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(i64).range(1..=3650))]
        secret_expires_in: Option<i64>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    List {
        #[arg(long)]
        env: String,
    },
    Show {
        #[arg(long)]
        env: String,
        client: String,
    },
    /// Change a client; each given flag replaces that setting (repeatable flags: the whole list).
    Update {
        #[arg(long)]
        env: String,
        client: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: Box<Settings>,
    },
    /// Generate a new secret (shown once); the current one keeps working for the overlap.
    RotateSecret {
        #[arg(long)]
        env: String,
        client: String,
        /// How long the current secret stays valid: 0 to 2592000 seconds (default 86400).
        #[arg(long)]
        overlap_seconds: Option<i64>,
        /// The new secret is refused DAYS days from now (default: the current secret's lifetime,
        /// if it has one).
        #[arg(long, value_name = "DAYS", value_parser = clap::value_parser!(i64).range(1..=3650))]
        expires_in: Option<i64>,
    },
    /// Delete a client and end every grant it holds.
    Delete {
        #[arg(long)]
        env: String,
        client: String,
    },
}

#[derive(Args)]
pub struct Settings {
    /// A public client (browser or native app: no secret, PKCE).
    #[arg(long, conflicts_with = "confidential")]
    public: bool,
    /// A confidential client (the default on create).
    #[arg(long)]
    confidential: bool,
    /// client_secret_basic, client_secret_post, private_key_jwt or none.
    #[arg(long)]
    auth_method: Option<String>,
    /// An exact redirect URI (repeatable).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// An exact post-logout redirect URI (repeatable).
    #[arg(long = "post-logout-redirect-uri")]
    post_logout_redirect_uris: Vec<String>,
    /// authorization_code, refresh_token, client_credentials or
    /// urn:ietf:params:oauth:grant-type:token-exchange (repeatable).
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// A scope the client may request (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// A JSON file with the client's public keys, {"keys": [...]} (private_key_jwt).
    #[arg(long)]
    jwks_file: Option<std::path::PathBuf>,
    /// An audience the client may obtain by token exchange (repeatable).
    #[arg(long = "exchange-audience")]
    exchange_audiences: Vec<String>,
    /// A scope the client may obtain by token exchange (repeatable).
    #[arg(long = "exchange-scope")]
    exchange_scopes: Vec<String>,
    /// Access token lifetime, 60 to 86400 seconds.
    #[arg(long)]
    access_token_ttl: Option<i64>,
    /// ID token lifetime, 60 to 86400 seconds.
    #[arg(long)]
    id_token_ttl: Option<i64>,
    /// A refresh token unused this long expires (seconds).
    #[arg(long)]
    refresh_idle_ttl: Option<i64>,
    /// A refresh-token family ends this long after sign-in (seconds).
    #[arg(long)]
    refresh_absolute_ttl: Option<i64>,
}

impl Settings {
    /// The request fields these flags set. `exchange` is the current token-exchange policy (on
    /// update), so that `--exchange-scope` alone keeps the audiences, and the reverse.
    fn fields(
        self,
        exchange: Option<&Value>,
    ) -> Result<Vec<(&'static str, Option<Value>)>, Failure> {
        let list = |v: Vec<String>| (!v.is_empty()).then(|| json!(v));
        let kind = match (self.public, self.confidential) {
            (true, _) => Some(json!("public")),
            (_, true) => Some(json!("confidential")),
            _ => None,
        };
        let jwks = self.jwks_file.map(|p| read_jwks(&p)).transpose()?;
        let token_exchange = (!self.exchange_audiences.is_empty()
            || !self.exchange_scopes.is_empty())
        .then(|| {
            let current = |k: &str| {
                exchange
                    .and_then(|e| e.get(k))
                    .cloned()
                    .unwrap_or(json!([]))
            };
            json!({
                "audiences": list(self.exchange_audiences).unwrap_or_else(|| current("audiences")),
                "scopes": list(self.exchange_scopes).unwrap_or_else(|| current("scopes")),
            })
        });
        Ok(vec![
            ("kind", kind),
            (
                "token_endpoint_auth_method",
                self.auth_method.map(Value::from),
            ),
            ("redirect_uris", list(self.redirect_uris)),
            (
                "post_logout_redirect_uris",
                list(self.post_logout_redirect_uris),
            ),
            ("grant_types", list(self.grants)),
            ("scopes", list(self.scopes)),
            ("jwks", jwks),
            ("token_exchange", token_exchange),
            (
                "access_token_ttl_seconds",
                self.access_token_ttl.map(Value::from),
            ),
            ("id_token_ttl_seconds", self.id_token_ttl.map(Value::from)),
            (
                "refresh_idle_ttl_seconds",
                self.refresh_idle_ttl.map(Value::from),
            ),
            (
                "refresh_absolute_ttl_seconds",
                self.refresh_absolute_ttl.map(Value::from),
            ),
        ])
    }

    fn touches_exchange(&self) -> bool {
        !self.exchange_audiences.is_empty() || !self.exchange_scopes.is_empty()
    }
}

fn read_jwks(path: &std::path::Path) -> Result<Value, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Failure::Input(format!("{}: not JSON: {e}", path.display())))
}

const CLIENT_FIELDS: &[&str] = &[
    "id",
    "name",
    "kind",
    "token_endpoint_auth_method",
    "redirect_uris",
    "post_logout_redirect_uris",
    "grant_types",
    "scopes",
    "token_exchange",
    "access_token_ttl_seconds",
    "id_token_ttl_seconds",
    "refresh_idle_ttl_seconds",
    "refresh_absolute_ttl_seconds",
    "has_secret",
    "secret_created_at",
    "secret_expires_at",
    "previous_secret_expires_at",
    "created_at",
    "updated_at",
];

/// The client's fields, and its new secret when the answer carries one.
fn human(v: &Value) -> String {
    let record = fields(v, CLIENT_FIELDS);
    match v.get("client_secret").and_then(Value::as_str) {
        Some(secret) => shown_once(record, "client_secret", secret),
        None => record,
    }
}

pub async fn run(conn: &Conn, cmd: ClientCmd) -> Outcome {
    let c = Client::new(conn)?;
    let base = |env: &str| format!("/environments/{}/clients", enc(env));
    let one = |env: &str, id: &str| format!("{}/{}", base(env), enc(id));
    let v = match cmd {
        ClientCmd::Create {
            env,
            name,
            secret_expires_in,
            settings,
        } => {
            let mut f = settings.fields(None)?;
            f.insert(0, ("name", Some(json!(name))));
            f.push((
                "secret_expires_in_seconds",
                secret_expires_in.map(|d| json!(d * 86_400)),
            ));
            c.post(&base(&env), body(&f)).await?
        }
        ClientCmd::List { env } => {
            let v = c.get(&base(&env)).await?;
            let t = table(
                &data(&v),
                &[
                    "id",
                    "name",
                    "kind",
                    "token_endpoint_auth_method",
                    "grant_types",
                ],
            );
            return Ok((v, t, 0));
        }
        ClientCmd::Show { env, client } => c.get(&one(&env, &client)).await?,
        ClientCmd::Update {
            env,
            client,
            name,
            settings,
        } => {
            let current = if settings.touches_exchange() {
                Some(c.get(&one(&env, &client)).await?)
            } else {
                None
            };
            let mut f = settings.fields(current.as_ref().and_then(|v| v.get("token_exchange")))?;
            f.insert(0, ("name", name.map(Value::from)));
            c.patch(&one(&env, &client), body(&f)).await?
        }
        ClientCmd::RotateSecret {
            env,
            client,
            overlap_seconds,
            expires_in,
        } => {
            c.post(
                &format!("{}/secret", one(&env, &client)),
                body(&[
                    ("overlap_seconds", overlap_seconds.map(Value::from)),
                    ("expires_in_seconds", expires_in.map(|d| json!(d * 86_400))),
                ]),
            )
            .await?
        }
        ClientCmd::Delete { env, client } => {
            c.delete(&one(&env, &client)).await?;
            return Ok((
                json!({ "deleted": client }),
                format!("deleted {client}\n"),
                0,
            ));
        }
    };
    let h = human(&v);
    Ok((v, h, 0))
}
