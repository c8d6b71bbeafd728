//! Storage for Portcullis: one interface, SQLite (embedded default) and PostgreSQL.
//!
//! Both backends run the same SQL text through sqlx's `Any` driver: queries use `$n` placeholders
//! (which sqlx's SQLite driver binds by number), timestamps are BIGINT milliseconds, and booleans
//! are nullable timestamps, so no query is written twice. What differs per backend lives in
//! [`Backend`]: connection setup (WAL and foreign keys on SQLite), the migration set, and write
//! concurrency — SQLite has one writer connection, so write transactions queue instead of failing
//! with `SQLITE_BUSY`; PostgreSQL serialises the few contended rows (an environment's event
//! counter, a chain head) with row locks taken by `UPDATE … RETURNING`.
//!
//! Every multi-row change is one transaction: the row, its event and its audit record commit
//! together or not at all.

mod api_keys;
mod bundles;
mod checkpoints;
mod clients;
mod connections;
mod credential_rotation;
mod credentials;
mod egress;
mod envs;
mod grants;
mod log;
mod migrate;
mod orgs;
mod outbox;
mod signing;
mod users;
mod webhooks;

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Executor};

pub use api_keys::NewApiKey;
pub use clients::{client_json, parse_grants};
pub use connections::{ConnectionChange, connection_json};
pub use credential_rotation::{Rotated, rotated_json};
pub use egress::{PolicyChange, StoredPolicy};
pub use envs::NewEnvironment;
pub use grants::{Family, NewCode, Redeem, SessionRow};
pub use log::{EventFilter, EventPage};
pub use orgs::{NewOrganization, OrganizationPatch};
pub use outbox::{AttemptOutcome, Lease, LeasedAttempt, Recorded};
pub use signing::{NewSigningKey, Reseal, Sealed, StoredSigningKey};
pub use users::{UserPatch, user_json};
pub use webhooks::{DeliveryFilter, ReplayFrom, webhook_json};

/// A write transaction ([`Store::begin`]); use it as the connection (`&mut *tx`). Dropping it
/// without [`Tx::commit`] rolls everything back.
pub struct Tx {
    inner: sqlx::Transaction<'static, sqlx::Any>,
    commits: outbox::CommitSignal,
}

impl Tx {
    /// Commits, then wakes this process's webhook dispatchers: the transaction may have appended
    /// events, and so enqueued deliveries (see `outbox`).
    pub async fn commit(self) -> std::result::Result<(), sqlx::Error> {
        self.inner.commit().await?;
        self.commits.committed();
        Ok(())
    }

    pub async fn rollback(self) -> std::result::Result<(), sqlx::Error> {
        self.inner.rollback().await
    }
}

impl std::ops::Deref for Tx {
    type Target = Conn;
    fn deref(&self) -> &Conn {
        &self.inner
    }
}

impl std::ops::DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.inner
    }
}

pub type Conn = sqlx::AnyConnection;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is inconsistent: {0}")]
    Corrupt(String),
}

impl StoreError {
    pub(crate) fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::Database(d) if d.is_unique_violation() => {
                Self::conflict("conflict", "the change conflicts with an existing record")
            }
            sqlx::Error::Database(d) if d.is_foreign_key_violation() => Self::conflict(
                "conflict",
                "the change refers to a record that does not exist",
            ),
            sqlx::Error::RowNotFound => Self::NotFound("record".into()),
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::Decode(_)
            | sqlx::Error::ColumnNotFound(_) => Self::Corrupt(e.to_string()),
            _ => Self::Unavailable(e.to_string()),
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
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

/// Connection settings.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub connect_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The handle every component uses for storage. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    random: std::sync::Arc<dyn portcullis_core::Random>,
    /// Clients by ID, read through on the token endpoint's hot path (see `get_client_cached`).
    client_cache: clients::ClientCache,
    /// Last credential uses written by this node (see `note_credential_use`).
    usage_memo: credentials::UsageMemo,
    /// Reads (and, on PostgreSQL, writes too).
    read: AnyPool,
    /// Write transactions: one connection on SQLite, the same pool as `read` on PostgreSQL.
    write: AnyPool,
    /// Bumped by every committed [`Tx`]: the webhook dispatchers' wake-up.
    commits: outbox::CommitSignal,
}

impl Store {
    /// Connects to `url`: `sqlite:PATH` / `sqlite://PATH` or `postgres://…` / `postgresql://…`.
    pub async fn connect(url: &str, opts: &StoreOptions) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Unavailable(
                "the database URL must start with sqlite: or postgres://".into(),
            ));
        };
        let options = AnyConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("invalid database URL: {e}")))?;
        let pool = |n: u32| {
            AnyPoolOptions::new()
                .max_connections(n)
                .acquire_timeout(opts.connect_timeout)
                .after_connect(move |conn, _| {
                    Box::pin(async move {
                        if backend == Backend::Sqlite {
                            conn.execute(
                                "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; \
                                 PRAGMA busy_timeout = 5000; PRAGMA synchronous = NORMAL;",
                            )
                            .await?;
                        }
                        Ok(())
                    })
                })
                .connect_with(options.clone())
        };
        let map_err = |e: sqlx::Error| StoreError::Unavailable(describe_connect_error(&e));
        let store = match backend {
            Backend::Sqlite => {
                // The writer connects first so that it creates the file (mode=rwc) and sets WAL.
                let write = pool(1).await.map_err(map_err)?;
                let read = pool(opts.max_connections.max(1)).await.map_err(map_err)?;
                Self {
                    backend,
                    random: std::sync::Arc::new(portcullis_crypto::SystemRandom),
                    client_cache: clients::ClientCache::default(),
                    usage_memo: credentials::UsageMemo::default(),
                    read,
                    write,
                    commits: outbox::CommitSignal::new(),
                }
            }
            Backend::Postgres => {
                let p = pool(opts.max_connections.max(2)).await.map_err(map_err)?;
                Self {
                    backend,
                    random: std::sync::Arc::new(portcullis_crypto::SystemRandom),
                    client_cache: clients::ClientCache::default(),
                    usage_memo: credentials::UsageMemo::default(),
                    read: p.clone(),
                    write: p,
                    commits: outbox::CommitSignal::new(),
                }
            }
        };
        Ok(store)
    }

    /// A new prefixed ID.
    pub fn new_id<T: portcullis_core::ids::PrefixedId>(
        &self,
        now: portcullis_core::Timestamp,
    ) -> T {
        portcullis_core::IdGen {
            random: self.random.as_ref(),
        }
        .new_id(now)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a write transaction. Dropping it without `commit` rolls everything back.
    pub async fn begin(&self) -> Result<Tx> {
        Ok(Tx {
            inner: self.write.begin().await?,
            commits: self.commits.clone(),
        })
    }

    pub(crate) fn reader(&self) -> &AnyPool {
        &self.read
    }

    /// `SELECT 1` through the read pool.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    /// Pool statistics for `/metrics`: (open connections, idle connections) per pool.
    pub fn pool_stats(&self) -> [(&'static str, u32, usize); 2] {
        [
            ("read", self.read.size(), self.read.num_idle()),
            ("write", self.write.size(), self.write.num_idle()),
        ]
    }

    pub async fn close(&self) {
        self.write.close().await;
        self.read.close().await;
    }

    /// A settings value (`master_key_check`, …).
    pub async fn setting(&self, key: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(&self.read)
                .await?,
        )
    }

    pub async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.write)
        .await?;
        Ok(())
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.backend.as_str())
    }
}

fn describe_connect_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::PoolTimedOut => "timed out connecting to the database".into(),
        other => other.to_string(),
    }
}
