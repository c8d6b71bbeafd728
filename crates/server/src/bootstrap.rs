//! First start and every start: data directory, database, migrations, master key, first admin
//! key, demo environment.
//!
//! Rules:
//! - the data directory is created with mode 0700; the master key file and the first admin key
//!   file are created with mode 0600 and never overwritten;
//! - a master key file that is missing while the database holds sealed keys, or that does not
//!   open the database's canary, stops the start with a message naming the file: generating a
//!   new key there would silently orphan every signing key;
//! - the first admin key is created only when no admin key exists, from
//!   `PORTCULLIS_BOOTSTRAP_ADMIN_KEY` when set, otherwise generated, printed once and written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use portcullis_core::model::{ApiKeyKind, KeyPolicy};
use portcullis_core::{Clock, Secret};
use portcullis_crypto::{MasterKey, SystemRandom, generate_secret, secret_digest};
use portcullis_store::{NewApiKey, Store, StoreError, StoreOptions};

use crate::admin::views::CreateEnvironment;
use crate::config::Config;
use crate::keys::KeyRing;
use crate::{App, AppInner};

const CANARY_KEY: &str = "master_key_check";
const CANARY_AAD: &str = "portcullis-master-key-check";
const CANARY: &[u8] = b"portcullis";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("data directory {0}: {1}")]
    DataDir(PathBuf, std::io::Error),
    #[error("cannot use the database at {0}: {1}")]
    Database(String, String),
    #[error("master key file {0}: {1}")]
    MasterKey(PathBuf, String),
    #[error("bootstrap admin key: {0}")]
    AdminKey(String),
    #[error("demo environment: {0}")]
    Demo(String),
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
}

/// What the first start produced, for the operator to read once.
#[derive(Debug, Default)]
pub struct BootstrapReport {
    pub master_key_created: Option<PathBuf>,
    /// The generated first admin key, and the file it was written to.
    pub first_admin_key: Option<(Secret, PathBuf)>,
    pub demo_environment: Option<String>,
}

pub struct Bootstrap;

/// The database URL with any password replaced, for messages.
pub fn redact_url(url: &str) -> String {
    // A password may also travel as a query parameter (`?user=app&password=…`).
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match (base.find("://"), base.rfind('@')) {
        (Some(s), Some(at)) if at > s => match base[s + 3..at].split_once(':') {
            Some((user, _)) => format!("{}{user}:***{}", &base[..s + 3], &base[at..]),
            None => base.to_owned(),
        },
        _ => base.to_owned(),
    };
    match query {
        None => base,
        Some(q) => {
            let params: Vec<String> = q
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{base}?{}", params.join("&"))
        }
    }
}

fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder may already be installed (tests embed several servers): then this
            // handle renders an empty registry, which is still valid Prometheus text.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

fn write_secret_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()
}

fn create_data_dir(dir: &Path) -> Result<(), BootstrapError> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
        .map_err(|e| BootstrapError::DataDir(dir.to_owned(), e))
}

/// Loads or creates the master key and checks it against the database's canary.
async fn master_key(
    store: &Store,
    path: &Path,
    report: &mut BootstrapReport,
) -> Result<MasterKey, BootstrapError> {
    let err = |m: String| BootstrapError::MasterKey(path.to_owned(), m);
    let canary = store
        .setting(CANARY_KEY)
        .await
        .map_err(|e| err(e.to_string()))?;
    let key = match std::fs::read_to_string(path) {
        Ok(text) => MasterKey::from_text(&text).map_err(|e| err(e.to_string()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if canary.is_some() {
                return Err(err(
                    "is missing, but this database holds keys sealed under a master key; \
                     restore the file or point PORTCULLIS_MASTER_KEY_FILE at it"
                        .into(),
                ));
            }
            let (key, text) = MasterKey::generate(&SystemRandom);
            write_secret_file(path, &format!("{text}\n"))
                .map_err(|e| err(format!("cannot create: {e}")))?;
            report.master_key_created = Some(path.to_owned());
            key
        }
        Err(e) => return Err(err(format!("cannot read: {e}"))),
    };
    match canary {
        Some(hex) => {
            let sealed = from_hex(&hex)
                .ok_or_else(|| err("the database's master key check is corrupt".into()))?;
            match key.open(CANARY_AAD, &sealed) {
                Ok(v) if v == CANARY => {}
                _ => {
                    return Err(err(format!(
                        "does not match this database (fingerprint {}): it is not the key the signing keys were sealed with",
                        key.fingerprint()
                    )));
                }
            }
        }
        None => {
            let sealed = key
                .seal(&SystemRandom, CANARY_AAD, CANARY)
                .map_err(|e| err(e.to_string()))?;
            store
                .put_setting(CANARY_KEY, &portcullis_crypto::secrets::to_hex(&sealed))
                .await
                .map_err(|e| err(e.to_string()))?;
        }
    }
    Ok(key)
}

/// The canary value (`settings` key and value) for a master key, used by master-key rotation.
pub fn canary_for(key: &MasterKey) -> Result<(&'static str, String), String> {
    let sealed = key
        .seal(&SystemRandom, CANARY_AAD, CANARY)
        .map_err(|e| e.to_string())?;
    Ok((CANARY_KEY, portcullis_crypto::secrets::to_hex(&sealed)))
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Connects and migrates the store named by the configuration.
pub async fn open_store(config: &Config) -> Result<Store, BootstrapError> {
    let url = config.effective_database_url();
    if config.database_url.is_empty() || !config.master_key_file.is_empty() {
        create_data_dir(&config.data_dir)?;
    }
    let opts = StoreOptions {
        max_connections: config.max_connections,
        ..StoreOptions::default()
    };
    let store = Store::connect(&url, &opts)
        .await
        .map_err(|e| BootstrapError::Database(redact_url(&url), e.to_string()))?;
    store
        .migrate()
        .await
        .map_err(|e| BootstrapError::Database(redact_url(&url), e.to_string()))?;
    Ok(store)
}

impl Bootstrap {
    /// Prepares everything `serve` needs; the returned report says what was created.
    pub async fn run(
        config: &Config,
        clock: Arc<dyn Clock>,
    ) -> Result<(App, BootstrapReport), BootstrapError> {
        let mut report = BootstrapReport::default();
        create_data_dir(&config.data_dir)?;
        let store = open_store(config).await?;
        let master = Arc::new(master_key(&store, &config.master_key_path(), &mut report).await?);
        let (store_for_observer, clock_for_observer) = (store.clone(), clock.clone());
        let app = App(Arc::new(AppInner {
            keys: KeyRing::new(store.clone(), master),
            store,
            clock,
            public_url: config.public_url.trim_end_matches('/').to_owned(),
            key_policy_defaults: KeyPolicy {
                lifetime_seconds: config.key_lifetime_days * 86_400,
                grace_seconds: config.key_grace_days * 86_400,
            },
            credential_policy: config.credential_policy(),
            max_body_bytes: config.max_body_bytes,
            trusted_proxies: config.trusted_proxies()?,
            metrics: metrics_handle(),
            passwords: portcullis_oidc::password::Passwords::new(
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get),
            ),
            account_limiter: portcullis_oidc::ratelimit::Limiter::new(5, 300),
            address_limiter: portcullis_oidc::ratelimit::Limiter::new(30, 300),
            env_cache: std::sync::RwLock::new(std::collections::HashMap::new()),
            egress: portcullis_egress::EgressGate::new(
                Arc::new(portcullis_egress::SystemResolver),
                Arc::new(crate::egress::StoreObserver {
                    store: store_for_observer,
                    clock: clock_for_observer,
                }),
                portcullis_egress::GateConfig {
                    timeout: std::time::Duration::from_secs(config.egress_timeout_seconds),
                    max_response_bytes: config.egress_max_response_bytes,
                    proxy: (!config.egress_proxy.is_empty()).then(|| config.egress_proxy.clone()),
                    ..portcullis_egress::GateConfig::default()
                },
            ),
        }));
        first_admin_key(&app, config, &mut report).await?;
        if config.demo {
            report.demo_environment = Some(demo_environment(&app, &config.data_dir).await?);
        }
        Ok((app, report))
    }
}

async fn first_admin_key(
    app: &App,
    config: &Config,
    report: &mut BootstrapReport,
) -> Result<(), BootstrapError> {
    let err = |e: StoreError| BootstrapError::AdminKey(e.to_string());
    let any_admin = app
        .store
        .list_api_keys(None)
        .await
        .map_err(err)?
        .iter()
        .any(|k| k.kind == ApiKeyKind::Admin);
    if any_admin {
        return Ok(());
    }
    let given = if !config.bootstrap_admin_key.is_empty() {
        Some(config.bootstrap_admin_key.trim().to_owned())
    } else if !config.bootstrap_admin_key_file.is_empty() {
        Some(
            std::fs::read_to_string(&config.bootstrap_admin_key_file)
                .map_err(|e| {
                    BootstrapError::AdminKey(format!("{}: {e}", config.bootstrap_admin_key_file))
                })?
                .trim()
                .to_owned(),
        )
    } else {
        None
    };
    let secret = match given {
        Some(k) => {
            let ok = k
                .strip_prefix("pcadm_")
                .is_some_and(|rest| rest.len() >= 32 && rest.bytes().all(|b| b.is_ascii_graphic()));
            if !ok {
                return Err(BootstrapError::AdminKey(
                    "must start with \"pcadm_\" followed by at least 32 printable characters"
                        .into(),
                ));
            }
            Secret::new(k)
        }
        None => generate_secret(&SystemRandom, ApiKeyKind::Admin.secret_prefix()),
    };
    let now = app.now();
    let new = NewApiKey {
        id: app.store.new_id(now),
        kind: ApiKeyKind::Admin,
        env_id: None,
        name: "bootstrap".into(),
        digest: secret_digest(&secret),
        expires_at: None,
    };
    app.store
        .create_api_key("bootstrap", now, new)
        .await
        .map_err(err)?;
    if config.bootstrap_admin_key.is_empty() && config.bootstrap_admin_key_file.is_empty() {
        let path = config.data_dir.join("admin.key");
        write_secret_file(&path, &format!("{}\n", secret.expose())).map_err(|e| {
            BootstrapError::AdminKey(format!("cannot write {}: {e}", path.display()))
        })?;
        report.first_admin_key = Some((secret, path));
    }
    Ok(())
}

/// Ensures the `demo` environment exists, with an organization, a local user, a public client
/// that signs in through the hosted login, and a service client; returns the text that tells a
/// newcomer what to do (kept in `{data_dir}/demo.txt`, mode 0600, and printed at every start).
async fn demo_environment(app: &App, data_dir: &Path) -> Result<String, BootstrapError> {
    const SLUG: &str = "demo";
    let notes = data_dir.join("demo.txt");
    match app.store.find_environment(SLUG).await {
        Ok(_) => {
            return Ok(std::fs::read_to_string(&notes).unwrap_or_else(|_| {
                format!(
                    "The demo environment exists; its credentials were in {}.",
                    notes.display()
                )
            }));
        }
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(BootstrapError::Demo(e.to_string())),
    }
    let req = CreateEnvironment {
        slug: SLUG.into(),
        name: Some("Demo".into()),
        mode: Some("isolated".into()),
        issuer: None,
        signing_alg: None,
        key_lifetime_days: None,
        key_grace_days: None,
    };
    let demo = |e: String| BootstrapError::Demo(e);
    let env = crate::admin::create_environment(app, "bootstrap", req)
        .await
        .map_err(|e| demo(e.message))?;
    let env_id = portcullis_core::ids::EnvId::from_stored(env.id.clone());
    let now = app.now();
    let org = app
        .store
        .create_organization(
            "bootstrap",
            now,
            &env_id,
            portcullis_store::NewOrganization {
                id: app.store.new_id(now),
                name: "Example Corp".into(),
                domains: vec!["example.com".into()],
            },
        )
        .await
        .map_err(|e| demo(e.to_string()))?;
    let password = generate_secret(&SystemRandom, "")
        .expose()
        .chars()
        .take(20)
        .collect::<String>();
    let hash = app.passwords.hash(&password).await.map_err(demo)?;
    let user = portcullis_core::oauth::User {
        id: app.store.new_id(now),
        env_id: env_id.clone(),
        org_id: org.id.clone(),
        email: "demo@example.com".into(),
        first_name: Some("Demo".into()),
        last_name: Some("User".into()),
        disabled_at: None,
        created_at: now,
        updated_at: now,
    };
    app.store
        .create_user("bootstrap", now, user, &hash)
        .await
        .map_err(|e| demo(e.to_string()))?;
    let issuer = env.issuer.clone();
    let base = |name: &str, kind, method, grants: Vec<portcullis_core::oauth::GrantType>| {
        portcullis_core::oauth::Client {
            id: app.store.new_id(now),
            env_id: env_id.clone(),
            name: name.into(),
            kind,
            auth_method: method,
            redirect_uris: vec![],
            post_logout_redirect_uris: vec![],
            grant_types: grants,
            scopes: vec![
                "openid".into(),
                "email".into(),
                "profile".into(),
                "offline_access".into(),
            ],
            jwks: None,
            exchange: portcullis_core::oauth::ExchangePolicy::default(),
            lifetimes: portcullis_core::oauth::TokenLifetimes::default(),
            secret_digest: None,
            secret_created_at: None,
            secret_expires_at: None,
            previous_secret_digest: None,
            previous_secret_expires_at: None,
            created_at: now,
            updated_at: now,
        }
    };
    use portcullis_core::oauth::{AuthMethod, ClientKind, GrantType};
    let mut app_client = base(
        "Demo app",
        ClientKind::Public,
        AuthMethod::None,
        vec![GrantType::AuthorizationCode, GrantType::RefreshToken],
    );
    app_client.redirect_uris = vec![format!("{issuer}/demo-callback")];
    app_client.post_logout_redirect_uris = vec![format!("{issuer}/demo-callback")];
    let app_client = app
        .store
        .create_client("bootstrap", now, app_client)
        .await
        .map_err(|e| demo(e.to_string()))?;
    let secret = generate_secret(&SystemRandom, "pcsec_");
    let mut service = base(
        "Demo service",
        ClientKind::Confidential,
        AuthMethod::ClientSecretBasic,
        vec![GrantType::ClientCredentials],
    );
    service.scopes = vec!["reports:read".into()];
    service.secret_digest = Some(secret_digest(&secret));
    service.secret_created_at = Some(now);
    let service = app
        .store
        .create_client("bootstrap", now, service)
        .await
        .map_err(|e| demo(e.to_string()))?;
    let verifier = generate_secret(&SystemRandom, "demo-verifier-")
        .expose()
        .to_owned();
    let challenge = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        portcullis_crypto::secrets::sha256(verifier.as_bytes()),
    );
    let enc = portcullis_oidc::authorize::encode;
    let redirect = format!("{issuer}/demo-callback");
    let text = format!(
        "Demo environment \"demo\" (issuer {issuer}):\n\
         \x20 Sign in:  open {issuer}/oauth2/authorize?response_type=code&client_id={cid}&redirect_uri={r}&scope=openid%20email%20profile&state=demo&code_challenge={challenge}&code_challenge_method=S256\n\
         \x20           as demo@example.com with password {password}\n\
         \x20 Then redeem the code shown (within 2 minutes):\n\
         \x20   curl -s {issuer}/oauth2/token -d grant_type=authorization_code -d client_id={cid} -d redirect_uri={r} -d code_verifier={verifier} -d code=CODE\n\
         \x20 Machine token:\n\
         \x20   curl -s -u {sid}:{secret} {issuer}/oauth2/token -d grant_type=client_credentials\n\
         \x20 Discovery {issuer}/.well-known/openid-configuration\n",
        cid = app_client.id,
        r = enc(&redirect),
        sid = service.id,
        secret = secret.expose(),
    );
    write_secret_file(&notes, &text)
        .map_err(|e| demo(format!("cannot write {}: {e}", notes.display())))?;
    Ok(text)
}
