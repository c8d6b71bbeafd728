//! `portcullis user …`: local users of an organization (the `password` connection). A generated
//! password is printed once.

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{Client, Conn, Failure, Outcome, body, data, enc, fields, shown_once, table};

#[derive(Subcommand)]
pub enum UserCmd {
    /// Create a user; without a password one is generated and shown once.
    Create {
        #[arg(long)]
        env: String,
        #[arg(long)]
        org: String,
        /// In one of the organization's domains.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        password: PasswordFlags,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
    },
    List {
        #[arg(long)]
        env: String,
        #[arg(long)]
        org: String,
    },
    Show {
        #[arg(long)]
        env: String,
        #[arg(long)]
        org: String,
        user: String,
    },
    /// Change a user's names.
    Update {
        #[arg(long)]
        env: String,
        #[arg(long)]
        org: String,
        user: String,
        #[arg(long)]
        first_name: Option<String>,
        #[arg(long)]
        last_name: Option<String>,
    },
    /// Block sign-in and end the user's sessions and grants.
    Disable {
        #[arg(long)]
        env: String,
        #[arg(long)]
        org: String,
        user: String,
    },
    Enable {
        #[arg(long)]
        env: String,
        #[arg(long)]
        org: String,
        user: String,
    },
    /// Set a new password (generated and shown once when none is given); ends the user's
    /// sessions and grants.
    ResetPassword {
        #[arg(long)]
        env: String,
        #[arg(long)]
        org: String,
        user: String,
        #[command(flatten)]
        password: PasswordFlags,
    },
}

#[derive(Args)]
pub struct PasswordFlags {
    /// The password (prefer --password-stdin: flags show up in process lists).
    #[arg(long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

impl PasswordFlags {
    fn read(self) -> Result<Option<String>, Failure> {
        if !self.password_stdin {
            return Ok(self.password);
        }
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map_err(|e| {
            Failure::Input(format!("reading the password from standard input: {e}"))
        })?;
        let p = line.trim_end_matches(['\r', '\n']);
        if p.is_empty() {
            return Err(Failure::Input("standard input holds no password".into()));
        }
        Ok(Some(p.to_owned()))
    }
}

/// 24 characters of base64url (144 random bits), as the server generates them.
fn generate_password() -> String {
    portcullis_crypto::generate_secret(&portcullis_crypto::SystemRandom, "")
        .expose()
        .chars()
        .take(24)
        .collect()
}

const USER_FIELDS: &[&str] = &[
    "id",
    "email",
    "first_name",
    "last_name",
    "organization_id",
    "disabled",
    "disabled_at",
    "created_at",
    "updated_at",
];

pub async fn run(conn: &Conn, cmd: UserCmd) -> Outcome {
    let c = Client::new(conn)?;
    let base = |env: &str, org: &str| {
        format!(
            "/environments/{}/organizations/{}/users",
            enc(env),
            enc(org)
        )
    };
    let one = |env: &str, org: &str, id: &str| format!("{}/{}", base(env, org), enc(id));
    let v = match cmd {
        UserCmd::Create {
            env,
            org,
            email,
            password,
            first_name,
            last_name,
        } => {
            let v = c
                .post(
                    &base(&env, &org),
                    body(&[
                        ("email", Some(json!(email))),
                        ("password", password.read()?.map(Value::from)),
                        ("first_name", first_name.map(Value::from)),
                        ("last_name", last_name.map(Value::from)),
                    ]),
                )
                .await?;
            let record = fields(&v, USER_FIELDS);
            let h = match v.get("password").and_then(Value::as_str) {
                Some(p) => shown_once(record, "password", p),
                None => record,
            };
            return Ok((v, h, 0));
        }
        UserCmd::List { env, org } => {
            let v = c.get(&base(&env, &org)).await?;
            let t = table(
                &data(&v),
                &["id", "email", "first_name", "last_name", "disabled"],
            );
            return Ok((v, t, 0));
        }
        UserCmd::Show { env, org, user } => c.get(&one(&env, &org, &user)).await?,
        UserCmd::Update {
            env,
            org,
            user,
            first_name,
            last_name,
        } => {
            c.patch(
                &one(&env, &org, &user),
                body(&[
                    ("first_name", first_name.map(Value::from)),
                    ("last_name", last_name.map(Value::from)),
                ]),
            )
            .await?
        }
        UserCmd::Disable { env, org, user } => {
            c.patch(&one(&env, &org, &user), json!({ "disabled": true }))
                .await?
        }
        UserCmd::Enable { env, org, user } => {
            c.patch(&one(&env, &org, &user), json!({ "disabled": false }))
                .await?
        }
        UserCmd::ResetPassword {
            env,
            org,
            user,
            password,
        } => {
            let (password, generated) = match password.read()? {
                Some(p) => (p, false),
                None => (generate_password(), true),
            };
            let v = c
                .patch(&one(&env, &org, &user), json!({ "password": password }))
                .await?;
            let record = fields(&v, USER_FIELDS);
            let h = if generated {
                shown_once(record, "password", &password)
            } else {
                format!("{}\npassword reset\n", record.trim_end())
            };
            // The API never returns a password; --json shows the generated one beside the user.
            let v = if generated {
                let mut v = v;
                v["password"] = json!(password);
                v
            } else {
                v
            };
            return Ok((v, h, 0));
        }
    };
    let h = fields(&v, USER_FIELDS);
    Ok((v, h, 0))
}
