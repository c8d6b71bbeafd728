//! `TestServer`: the real router, served in-process on `127.0.0.1:0`.
//!
//! A test builds a server with [`TestServer::builder`] (SQLite in a temporary directory by
//! default, or a fresh database on this process's throwaway PostgreSQL cluster), talks to it over
//! HTTP with a real client (redirects off), and may drive time with a [`FakeClock`]. The server
//! is bootstrapped exactly as `portcullis serve` does it ([`Bootstrap::run`] on a configuration
//! from [`Config::load`]), with a known first admin key ([`ADMIN_KEY`]).
//!
//! [`TestServer::stop`] shuts the server down gracefully and hands back its [`Storage`] (data
//! directory with the master key, and database), from which [`TestServerBuilder::storage`] starts
//! another server: a restart. Dropping a `TestServer` shuts it down too.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use portcullis_core::{Clock, FakeClock, SystemClock};
use portcullis_server::{App, Bootstrap, Config};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The first admin key of every test server: `pcadm_` and 40 characters.
pub const ADMIN_KEY: &str = "pcadm_TestKitAdminKey0123456789abcdefghijklmno";

/// The status [`TestServer::request`] reports when no HTTP answer came (599, outside what the
/// server sends, and failing any `< 500` check).
pub const TRANSPORT_FAILED: StatusCode = match StatusCode::from_u16(599) {
    Ok(s) => s,
    Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
};

/// How long [`TestServer::stop`] waits for in-flight requests to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Which storage backend a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    #[default]
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Where a server keeps its state: the data directory (master key file, and the SQLite database
/// unless `database_url` is set) and the PostgreSQL database URL. Clones share the directory,
/// which is removed with the last of them.
#[derive(Debug, Clone)]
pub struct Storage {
    dir: Arc<tempfile::TempDir>,
    /// `None`: SQLite in the data directory.
    pub database_url: Option<String>,
}

impl Storage {
    /// Fresh, empty storage of `backend`.
    pub async fn new(backend: Backend) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("portcullis-test-")
            .tempdir()
            .context("creating the data directory")?;
        let database_url = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(crate::pg::fresh_database().await?),
        };
        Ok(Self {
            dir: Arc::new(dir),
            database_url,
        })
    }

    pub fn backend(&self) -> Backend {
        if self.database_url.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The database URL in effect (SQLite in the data directory, or PostgreSQL).
    pub fn effective_database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.dir.path().join("portcullis.db").display()
            )
        })
    }
}

/// Builds a [`TestServer`].
#[derive(Default)]
pub struct TestServerBuilder {
    backend: Backend,
    storage: Option<Storage>,
    clock: Option<FakeClock>,
    flags: Vec<(String, String)>,
}

impl TestServerBuilder {
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// Start on existing storage (a restart); the backend follows the storage.
    pub fn storage(mut self, storage: Storage) -> Self {
        self.backend = storage.backend();
        self.storage = Some(storage);
        self
    }

    /// Serve with this clock instead of the system clock; clones of it move the server's time.
    pub fn clock(mut self, clock: FakeClock) -> Self {
        self.clock = Some(clock);
        self
    }

    /// A configuration key as the command line would set it, e.g. `("key_lifetime_days", "1")`.
    pub fn flag(mut self, key: &str, value: impl Into<String>) -> Self {
        self.flags.push((key.to_owned(), value.into()));
        self
    }

    pub async fn start(self) -> anyhow::Result<TestServer> {
        let storage = match self.storage {
            Some(s) => s,
            None => Storage::new(self.backend).await?,
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding 127.0.0.1:0")?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let url = format!("http://{addr}");
        let mut flags: Vec<(&str, String)> = vec![
            ("listen", addr.to_string()),
            ("public_url", url.clone()),
            ("data_dir", storage.data_dir().display().to_string()),
            ("bootstrap_admin_key", ADMIN_KEY.to_owned()),
            ("log_level", "warn".to_owned()),
        ];
        if let Some(db) = &storage.database_url {
            flags.push(("database_url", db.clone()));
        }
        flags.extend(self.flags.iter().map(|(k, v)| (k.as_str(), v.clone())));
        let config = Config::load(None, std::iter::empty(), &flags)?;
        let clock: Arc<dyn Clock> = match &self.clock {
            Some(c) => Arc::new(c.clone()),
            None => Arc::new(SystemClock),
        };
        let (app, _report) = Bootstrap::run(&config, clock).await?;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        // A dropped sender ends the wait too: dropping the TestServer shuts the server down.
        let shutdown = async move {
            let _ = stop_rx.await;
        };
        let task = tokio::spawn(portcullis_server::serve(app.clone(), listener, shutdown));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the HTTP client")?;
        Ok(TestServer {
            url,
            app,
            config,
            client,
            clock: self.clock,
            flags: self.flags,
            stop_tx: Some(stop_tx),
            task: Some(task),
            storage: Some(storage),
        })
    }
}

/// A running server; see the module documentation.
pub struct TestServer {
    url: String,
    app: App,
    config: Config,
    client: reqwest::Client,
    clock: Option<FakeClock>,
    flags: Vec<(String, String)>,
    stop_tx: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    storage: Option<Storage>,
}

/// Row counts of what a change writes, read through the store (no SQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    pub environments: usize,
    pub organizations: usize,
    pub api_keys: usize,
    pub signing_keys: usize,
    pub events: usize,
    pub audit_records: usize,
}

impl TestServer {
    /// A server with default settings on `backend`.
    pub async fn start(backend: Backend) -> anyhow::Result<Self> {
        Self::builder().backend(backend).start().await
    }

    pub fn builder() -> TestServerBuilder {
        TestServerBuilder::default()
    }

    /// `http://127.0.0.1:{port}`, also the configured public URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn admin_key(&self) -> &str {
        ADMIN_KEY
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The fake clock the server runs on, if it was built with one.
    pub fn clock(&self) -> Option<&FakeClock> {
        self.clock.as_ref()
    }

    pub fn backend(&self) -> Backend {
        self.storage
            .as_ref()
            .map_or(Backend::Sqlite, Storage::backend)
    }

    /// The database URL in effect (for raw SQL from a test).
    pub fn database_url(&self) -> String {
        self.storage
            .as_ref()
            .map(Storage::effective_database_url)
            .unwrap_or_default()
    }

    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self.storage.as_ref().map(Storage::data_dir)
    }

    /// An HTTP client with redirects off.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// An absolute URL for `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// A request to `path` (absolute on the server, e.g. `/admin/v1/environments`) with `key` as
    /// bearer token and an optional JSON body; the answer's status and JSON (`Null` when empty,
    /// a string when not JSON). A transport failure is [`TRANSPORT_FAILED`] with the error text.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.client.request(method, self.at(path));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        match req.send().await {
            Ok(res) => read_json(res).await,
            Err(e) => (
                TRANSPORT_FAILED,
                Value::String(format!("request failed: {e}")),
            ),
        }
    }

    /// `GET /admin/v1{path}` with the admin key.
    pub async fn admin_get(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::GET, &admin_path(path), Some(ADMIN_KEY), None)
            .await
    }

    pub async fn admin_post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(
            Method::POST,
            &admin_path(path),
            Some(ADMIN_KEY),
            Some(&body),
        )
        .await
    }

    pub async fn admin_patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request(
            Method::PATCH,
            &admin_path(path),
            Some(ADMIN_KEY),
            Some(&body),
        )
        .await
    }

    pub async fn admin_delete(&self, path: &str) -> (StatusCode, Value) {
        self.request(Method::DELETE, &admin_path(path), Some(ADMIN_KEY), None)
            .await
    }

    /// Counts every record a change writes, through the store.
    pub async fn counts(&self) -> anyhow::Result<Counts> {
        let store = &self.app.store;
        let envs = store.list_environments().await?;
        let mut c = Counts {
            environments: envs.len(),
            api_keys: store.list_api_keys(None).await?.len(),
            ..Counts::default()
        };
        for env in &envs {
            c.organizations += store
                .list_organizations(&env.id, None, u32::MAX - 1)
                .await?
                .len();
            c.signing_keys += store.signing_keys(&env.id).await?.len();
            c.events += store
                .list_events(&env.id, 0, u32::MAX - 1)
                .await?
                .events
                .len();
        }
        for chain in store.audit_chains().await? {
            c.audit_records += store.audit_records(&chain, 0, None).await?.len();
        }
        Ok(c)
    }

    /// Shuts the server down gracefully (in-flight requests finish), closes its storage pools
    /// and returns the storage for a restart.
    pub async fn stop(mut self) -> anyhow::Result<Storage> {
        self.shutdown().await?;
        self.storage
            .take()
            .ok_or_else(|| anyhow!("the server's storage is gone"))
    }

    /// [`stop`](Self::stop), then start again on the same storage (same data directory, master
    /// key, database), fake clock and flags.
    pub async fn restart(self) -> anyhow::Result<Self> {
        let clock = self.clock.clone();
        let flags = self.flags.clone();
        let storage = self.stop().await?;
        let mut b = TestServer::builder().storage(storage);
        if let Some(c) = clock {
            b = b.clock(c);
        }
        for (k, v) in flags {
            b = b.flag(&k, v);
        }
        b.start().await
    }

    async fn shutdown(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(STOP_TIMEOUT, task)
                .await
                .map_err(|_| anyhow!("the server did not stop within {STOP_TIMEOUT:?}"))?
                .context("the server task failed")?
                .context("the server failed")?;
        }
        self.app.store.close().await;
        Ok(())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(());
        }
        // The runtime may be gone already (end of a test): then the task is gone with it.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn admin_path(path: &str) -> String {
    format!("/admin/v1{path}")
}

async fn read_json(res: reqwest::Response) -> (StatusCode, Value) {
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}
