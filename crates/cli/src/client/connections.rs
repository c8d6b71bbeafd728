//! `portcullis connection …`: SSO connections of organizations (upstream OIDC and SAML).
//!
//! An OIDC connection is configured by hand with the IdP's signing keys pinned from a file (no
//! discovery, nothing fetched); its client secret is sent once and never shown again. A SAML
//! connection takes the IdP's metadata from a file.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Client, Conn, Failure, Outcome, body, data, enc, fields, table};

#[derive(Subcommand)]
pub enum ConnectionCmd {
    /// Create a connection of an organization (state `draft`; activate it to route sign-ins).
    Create {
        #[arg(long)]
        env: String,
        #[arg(long)]
        org: String,
        /// `oidc` or `saml`.
        #[arg(long = "type", value_parser = ["oidc", "saml"])]
        kind: String,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        oidc: Box<OidcFlags>,
        /// SAML: the IdP's metadata XML, uploaded after the connection is created.
        #[arg(long)]
        metadata_file: Option<std::path::PathBuf>,
    },
    /// The connections of an organization.
    List {
        #[arg(long)]
        env: String,
        #[arg(long)]
        org: String,
    },
    Show {
        #[arg(long)]
        env: String,
        connection: String,
    },
    /// Route the organization's sign-ins through this connection.
    Activate {
        #[arg(long)]
        env: String,
        connection: String,
    },
    /// Stop routing sign-ins through this connection.
    Deactivate {
        #[arg(long)]
        env: String,
        connection: String,
    },
}

#[derive(Args)]
pub struct OidcFlags {
    /// OIDC: the IdP's issuer identifier (exactly the `iss` of its ID tokens).
    #[arg(long)]
    issuer: Option<String>,
    /// OIDC: the client ID registered at the IdP.
    #[arg(long)]
    client_id: Option<String>,
    /// OIDC: the client secret (prefer --client-secret-stdin: flags show up in process lists).
    #[arg(long, conflicts_with = "client_secret_stdin")]
    client_secret: Option<String>,
    /// OIDC: read the client secret from the first line of standard input.
    #[arg(long)]
    client_secret_stdin: bool,
    #[arg(long)]
    authorization_endpoint: Option<String>,
    #[arg(long)]
    token_endpoint: Option<String>,
    /// OIDC: a JSON file with the IdP's public signing keys, {"keys": [...]}, pinned.
    #[arg(long)]
    jwks_file: Option<std::path::PathBuf>,
    /// OIDC: a scope to request (repeatable; default openid email profile).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// OIDC: an ID token algorithm to accept (repeatable; default ES256, RS256, EdDSA).
    #[arg(long = "allowed-alg")]
    allowed_algs: Vec<String>,
}

impl OidcFlags {
    fn given(&self) -> bool {
        self.issuer.is_some()
            || self.client_id.is_some()
            || self.client_secret.is_some()
            || self.client_secret_stdin
            || self.authorization_endpoint.is_some()
            || self.token_endpoint.is_some()
            || self.jwks_file.is_some()
            || !self.scopes.is_empty()
            || !self.allowed_algs.is_empty()
    }

    fn secret(&self) -> Result<Option<String>, Failure> {
        if !self.client_secret_stdin {
            return Ok(self.client_secret.clone());
        }
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| {
            Failure::Input(format!(
                "reading the client secret from standard input: {e}"
            ))
        })?;
        let s = line.trim_end_matches(['\r', '\n']);
        if s.is_empty() {
            return Err(Failure::Input(
                "standard input holds no client secret".into(),
            ));
        }
        Ok(Some(s.to_owned()))
    }

    /// The `oidc` settings and the client secret; the server names what is missing or wrong.
    fn request(self) -> Result<(Value, Option<String>), Failure> {
        let secret = self.secret()?;
        let list = |v: Vec<String>| (!v.is_empty()).then(|| json!(v));
        let jwks = self.jwks_file.map(|p| read_json(&p)).transpose()?;
        let settings = body(&[
            ("issuer", self.issuer.map(Value::from)),
            ("client_id", self.client_id.map(Value::from)),
            (
                "authorization_endpoint",
                self.authorization_endpoint.map(Value::from),
            ),
            ("token_endpoint", self.token_endpoint.map(Value::from)),
            ("jwks", jwks),
            ("scopes", list(self.scopes)),
            ("allowed_algs", list(self.allowed_algs)),
        ]);
        Ok((settings, secret))
    }
}

fn read_json(path: &std::path::Path) -> Result<Value, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Failure::Input(format!("{}: not JSON: {e}", path.display())))
}

const CONNECTION_FIELDS: &[&str] = &[
    "id",
    "name",
    "type",
    "state",
    "organization_id",
    "created_at",
    "updated_at",
];

/// The connection's fields, then its configuration (never a secret: the server keeps those).
fn human(v: &Value) -> String {
    let mut out = fields(v, CONNECTION_FIELDS);
    if let Some(cfg) = v.get("config") {
        out += &format!(
            "config\n{}\n",
            serde_json::to_string_pretty(cfg).unwrap_or_default()
        );
    }
    out
}

pub async fn run(conn: &Conn, cmd: ConnectionCmd) -> Outcome {
    let c = Client::new(conn)?;
    let one = |env: &str, id: &str| format!("/environments/{}/connections/{}", enc(env), enc(id));
    let v = match cmd {
        ConnectionCmd::Create {
            env,
            org,
            kind,
            name,
            oidc,
            metadata_file,
        } => {
            let path = format!(
                "/environments/{}/organizations/{}/connections",
                enc(&env),
                enc(&org)
            );
            match kind.as_str() {
                "oidc" => {
                    if metadata_file.is_some() {
                        return Err(Failure::Input("--metadata-file is for --type saml".into()));
                    }
                    let (settings, secret) = oidc.request()?;
                    let b = body(&[
                        ("type", Some(json!("oidc"))),
                        ("name", Some(json!(name))),
                        ("oidc", Some(settings)),
                        ("client_secret", secret.map(Value::from)),
                    ]);
                    c.post(&path, b).await?
                }
                _ => {
                    if oidc.given() {
                        return Err(Failure::Input(
                            "the OIDC flags are for --type oidc; a SAML IdP comes from --metadata-file".into(),
                        ));
                    }
                    // Read before creating, so that a bad path leaves nothing behind.
                    let metadata = metadata_file
                        .map(|p| {
                            std::fs::read_to_string(&p)
                                .map_err(|e| Failure::Input(format!("{}: {e}", p.display())))
                        })
                        .transpose()?;
                    let created = c
                        .post(&path, json!({ "type": "saml", "name": name, "saml": {} }))
                        .await?;
                    match metadata {
                        None => created,
                        Some(xml) => {
                            let id = created.get("id").and_then(Value::as_str).unwrap_or("-");
                            let v = c
                                .raw(
                                    reqwest::Method::PUT,
                                    &format!("{}/saml-metadata", one(&env, id)),
                                    "application/samlmetadata+xml",
                                    xml,
                                )
                                .await
                                .map_err(|Failure::Input(m)| {
                                    Failure::Input(format!(
                                        "created {id}, but its IdP metadata was refused: {m}"
                                    ))
                                })?;
                            v.get("connection").cloned().unwrap_or(v)
                        }
                    }
                }
            }
        }
        ConnectionCmd::List { env, org } => {
            let v = c
                .get(&format!(
                    "/environments/{}/organizations/{}/connections",
                    enc(&env),
                    enc(&org)
                ))
                .await?;
            let t = table(&data(&v), &["id", "name", "type", "state", "updated_at"]);
            return Ok((v, t, 0));
        }
        ConnectionCmd::Show { env, connection } => c.get(&one(&env, &connection)).await?,
        ConnectionCmd::Activate { env, connection } => {
            c.post(&format!("{}/activate", one(&env, &connection)), json!({}))
                .await?
        }
        ConnectionCmd::Deactivate { env, connection } => {
            c.post(&format!("{}/deactivate", one(&env, &connection)), json!({}))
                .await?
        }
    };
    let h = human(&v);
    Ok((v, h, 0))
}
