//! `plan`, `apply`, `export-config` and `bundle keygen|create|verify|apply|trust`: declarative
//! configuration, and the signed files that carry it into an isolated network.
//!
//! `bundle keygen` and `bundle create` run offline (the publisher's side); `bundle verify
//! --offline` checks a file with nothing but the publisher's public key; the rest talk to the
//! target environment's server. Exit codes: 0 ok, 1 a bundle was refused, 2 usage or input.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use portcullis_bundle::bundle::{self, Expect, NewBundle};
use portcullis_bundle::publisher::PublisherKey;
use portcullis_core::model::SigningAlg;
use portcullis_core::{Clock, SystemClock};
use serde_json::{Value, json};

use super::{Client, Conn, Failure, enc};

type Out = Result<(Value, String, i32), Failure>;

#[derive(Subcommand)]
pub enum BundleCmd {
    /// Generate a publisher key: KEY (PKCS#8 PEM, mode 0600) and KEY.pub.json (its public JWK,
    /// to be trusted by environments with `bundle trust add`).
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// EdDSA (Ed25519, default) or ES256 (ECDSA P-256).
        #[arg(long, default_value = "EdDSA")]
        alg: String,
    },
    /// Sign a configuration FILE into a bundle for one environment (offline).
    Create {
        /// The target environment's ID (`env_…`): the bundle applies there and nowhere else.
        #[arg(long)]
        env: String,
        #[arg(long)]
        config: PathBuf,
        /// The publisher's private key (from `bundle keygen`).
        #[arg(long)]
        sign_key: PathBuf,
        /// Must be above every sequence applied to the environment before (rollback and replay
        /// are refused).
        #[arg(long)]
        sequence: u64,
        /// Days until the bundle expires.
        #[arg(long, default_value_t = 30)]
        expires_in_days: u32,
        #[arg(long)]
        out: PathBuf,
    },
    /// Check a bundle: against the environment's server (trust, sequence, and the plan it would
    /// apply), or --offline against a public key only.
    Verify {
        file: PathBuf,
        /// The environment (ID or slug) whose server checks it.
        #[arg(long, required_unless_present = "offline")]
        env: Option<String>,
        /// Check without a server: signature (--trust), digests, expiry, target (--target).
        #[arg(long, requires = "trust")]
        offline: bool,
        /// Trusted publisher public keys (JWK files), for --offline.
        #[arg(long)]
        trust: Vec<PathBuf>,
        /// The environment ID it must target, for --offline.
        #[arg(long)]
        target: Option<String>,
        /// With --offline: an `export-config` of the target environment, to print the plan
        /// (compared as files; the server's plan at apply is authoritative).
        #[arg(long, requires = "offline")]
        against: Option<PathBuf>,
    },
    /// Verify and apply a bundle in one transaction; refused bundles change nothing (and are
    /// audited with their digest).
    Apply {
        file: PathBuf,
        #[arg(long)]
        env: String,
    },
    /// The publisher keys an environment trusts.
    Trust {
        #[command(subcommand)]
        cmd: TrustCmd,
    },
}

#[derive(Subcommand)]
pub enum TrustCmd {
    List {
        #[arg(long)]
        env: String,
    },
    /// Trust the public JWK in FILE (needs an admin key; afterwards, trust also changes through
    /// bundles whose `publishers` list is signed by a current publisher).
    Add {
        #[arg(long)]
        env: String,
        file: PathBuf,
    },
    Remove {
        #[arg(long)]
        env: String,
        key_id: String,
    },
}

fn read(path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| Failure::Input(format!("{}: {e}", path.display())))
}

fn write_new(path: &Path, data: &[u8], private: bool) -> Result<(), Failure> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    }
    o.open(path)
        .and_then(|mut f| f.write_all(data))
        .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))
}

fn applied_text(v: &Value) -> String {
    let mut t = v["text"].as_str().unwrap_or_default().to_owned();
    for c in v["created"].as_array().into_iter().flatten() {
        t += &format!(
            "created {} {} {}",
            c["kind"].as_str().unwrap_or(""),
            c["target"].as_str().unwrap_or(""),
            c["id"].as_str().unwrap_or("")
        );
        for k in ["client_secret", "secret"] {
            if let Some(s) = c[k].as_str() {
                t += &format!("\n  {k} (shown once): {s}");
            }
        }
        t.push('\n');
    }
    t
}

/// `plan FILE` and `apply FILE`.
pub async fn plan(conn: &Conn, env: &str, file: &Path, apply: bool) -> Out {
    let c = Client::new(conn)?;
    let body = read(file)?;
    let what = if apply { "apply" } else { "plan" };
    let v = c
        .raw(
            reqwest::Method::POST,
            &format!("/environments/{}/config/{what}", enc(env)),
            "application/toml",
            body,
        )
        .await?;
    let text = if apply {
        applied_text(&v)
    } else {
        v["text"].as_str().unwrap_or_default().to_owned()
    };
    Ok((v, text, 0))
}

pub async fn export_config(conn: &Conn, env: &str, out: Option<PathBuf>) -> Out {
    let c = Client::new(conn)?;
    let v = c.get(&format!("/environments/{}/config", enc(env))).await?;
    let text = v.as_str().unwrap_or_default().to_owned();
    match out {
        Some(p) => {
            std::fs::write(&p, &text)
                .map_err(|e| Failure::Input(format!("{}: {e}", p.display())))?;
            Ok((
                json!({ "written": p.display().to_string() }),
                format!("wrote {}\n", p.display()),
                0,
            ))
        }
        None => Ok((json!({ "config": text }), text, 0)),
    }
}

pub async fn run(conn: &Conn, cmd: BundleCmd) -> Out {
    match cmd {
        BundleCmd::Keygen { out, alg } => keygen(&out, &alg),
        BundleCmd::Create {
            env,
            config,
            sign_key,
            sequence,
            expires_in_days,
            out,
        } => create(&env, &config, &sign_key, sequence, expires_in_days, &out),
        BundleCmd::Verify {
            file,
            env: _,
            offline: true,
            trust,
            target,
            against,
        } => offline(&file, &trust, target.as_deref(), against.as_deref()),
        BundleCmd::Verify { file, env, .. } => {
            let c = Client::new(conn)?;
            let env = env.unwrap_or_default();
            refusal_is_1(
                c.raw(
                    reqwest::Method::POST,
                    &format!("/environments/{}/bundles/verify", enc(&env)),
                    "application/octet-stream",
                    read(&file)?,
                )
                .await,
                |v| {
                    format!(
                        "bundle OK: sequence {}, for {}, signed by {}\n{}",
                        v["bundle"]["manifest"]["sequence"],
                        v["bundle"]["manifest"]["environment"]
                            .as_str()
                            .unwrap_or(""),
                        v["bundle"]["publisher"].as_str().unwrap_or(""),
                        v["text"].as_str().unwrap_or("")
                    )
                },
            )
        }
        BundleCmd::Apply { file, env } => {
            let c = Client::new(conn)?;
            refusal_is_1(
                c.raw(
                    reqwest::Method::POST,
                    &format!("/environments/{}/bundles/apply", enc(&env)),
                    "application/octet-stream",
                    read(&file)?,
                )
                .await,
                |v| {
                    format!(
                        "applied bundle sequence {}\n{}",
                        v["bundle"]["manifest"]["sequence"],
                        applied_text(v)
                    )
                },
            )
        }
        BundleCmd::Trust { cmd } => trust(conn, cmd).await,
    }
}

/// A refusal of the bundle itself exits 1 (a check found a problem); anything else stays 2.
fn refusal_is_1(r: Result<Value, Failure>, ok: impl Fn(&Value) -> String) -> Out {
    match r {
        Ok(v) => {
            let t = ok(&v);
            Ok((v, t, 0))
        }
        Err(Failure::Input(m)) if m.contains("(bundle_") || m.contains("(invalid_config") => {
            Ok((json!({ "refused": m }), format!("refused: {m}\n"), 1))
        }
        Err(e) => Err(e),
    }
}

fn keygen(out: &Path, alg: &str) -> Out {
    let alg = match alg {
        "EdDSA" | "Ed25519" => SigningAlg::EdDSA,
        "ES256" => SigningAlg::ES256,
        other => {
            return Err(Failure::Input(format!(
                "--alg must be EdDSA or ES256, not {other}"
            )));
        }
    };
    let (key, pem) = PublisherKey::generate(alg).map_err(|e| Failure::Input(e.to_string()))?;
    let public = out.with_extension("pub.json");
    write_new(out, pem.as_bytes(), true)?;
    write_new(
        &public,
        format!("{:#}\n", key.public_jwk()).as_bytes(),
        false,
    )?;
    Ok((
        json!({ "key_id": key.key_id(), "private_key": out.display().to_string(), "public_jwk": key.public_jwk() }),
        format!(
            "publisher key {}\n  private: {} (keep it off the target network)\n  public:  {}\n",
            key.key_id(),
            out.display(),
            public.display()
        ),
        0,
    ))
}

fn create(env: &str, config: &Path, sign_key: &Path, sequence: u64, days: u32, out: &Path) -> Out {
    if !env.starts_with("env_") {
        return Err(Failure::Input(
            "--env must be the environment's ID (env_…): a bundle is bound to it".into(),
        ));
    }
    let key = PublisherKey::from_pem(&super::governance::read(sign_key)?)
        .map_err(|e| Failure::Input(format!("{}: {e}", sign_key.display())))?;
    let text = super::governance::read(config)?;
    let now = SystemClock.now();
    let bytes = bundle::create(
        &NewBundle {
            environment: env,
            sequence,
            created_at: now,
            expires_at: now.plus_seconds(i64::from(days) * 86_400),
            config: &text,
        },
        &key,
    )
    .map_err(|e| Failure::Input(format!("{}: {e}", config.display())))?;
    write_new(out, &bytes, false)?;
    let digest = bundle::digest(&bytes);
    Ok((
        json!({ "written": out.display().to_string(), "sha256": digest, "sequence": sequence, "environment": env, "publisher": key.key_id() }),
        format!(
            "wrote {} (sequence {sequence} for {env}, sha256 {digest})\n",
            out.display()
        ),
        0,
    ))
}

fn offline(file: &Path, trust: &[PathBuf], target: Option<&str>, against: Option<&Path>) -> Out {
    let current = match against {
        Some(p) => Some(
            portcullis_bundle::EnvConfig::parse(&super::governance::read(p)?)
                .map_err(|e| Failure::Input(format!("{}: {e}", p.display())))?,
        ),
        None => None,
    };
    let mut keys = Vec::new();
    for t in trust {
        let v: Value = serde_json::from_str(&super::governance::read(t)?)
            .map_err(|e| Failure::Input(format!("{}: {e}", t.display())))?;
        keys.push(v);
    }
    let bytes = read(file)?;
    match bundle::verify(
        &bytes,
        &Expect {
            trusted: &keys,
            environment: target,
            last_sequence: None,
            now: SystemClock.now(),
        },
    ) {
        Ok(v) => {
            let mut text = format!(
                "bundle OK (offline): sequence {} for {}, signed by {}, expires {}\n  organizations: {}, clients: {}, webhook endpoints: {}\n",
                v.manifest.sequence,
                v.manifest.environment,
                v.key_id,
                v.manifest.expires_at,
                v.config.organizations.len(),
                v.config.clients.len(),
                v.config.webhook_endpoints.len()
            );
            let plan = current.map(|c| portcullis_bundle::plan::compare(&c, &v.config));
            if let Some(p) = &plan {
                text += &p.render_text();
            }
            Ok((
                json!({ "sha256": v.digest, "publisher": v.key_id, "manifest": v.manifest, "plan": plan }),
                text,
                0,
            ))
        }
        Err(e) => Ok((
            json!({ "refused": e.to_string(), "code": e.code() }),
            format!("refused: {e} ({})\n", e.code()),
            1,
        )),
    }
}

async fn trust(conn: &Conn, cmd: TrustCmd) -> Out {
    let c = Client::new(conn)?;
    match cmd {
        TrustCmd::List { env } => {
            let v = c
                .get(&format!("/environments/{}/bundle-publishers", enc(&env)))
                .await?;
            let mut t = format!("last applied sequence: {}\n", v["last_sequence"]);
            for k in v["data"].as_array().into_iter().flatten() {
                t += &format!(
                    "{}  {}\n",
                    k["key_id"].as_str().unwrap_or(""),
                    k["jwk"]["kty"].as_str().unwrap_or("")
                );
            }
            Ok((v, t, 0))
        }
        TrustCmd::Add { env, file } => {
            let v = c
                .raw(
                    reqwest::Method::POST,
                    &format!("/environments/{}/bundle-publishers", enc(&env)),
                    "application/json",
                    read(&file)?,
                )
                .await?;
            let t = format!("trusted {}\n", v["key_id"].as_str().unwrap_or(""));
            Ok((v, t, 0))
        }
        TrustCmd::Remove { env, key_id } => {
            let v = c
                .call(
                    reqwest::Method::DELETE,
                    &format!(
                        "/environments/{}/bundle-publishers/{}",
                        enc(&env),
                        enc(&key_id)
                    ),
                    None,
                )
                .await?;
            Ok((v, format!("removed {key_id}\n"), 0))
        }
    }
}
