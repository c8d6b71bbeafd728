//! Migrations, embedded in the binary: one set per backend, applied at start and by
//! `portcullis migrate`. On PostgreSQL sqlx's migrator takes an advisory lock, so several nodes
//! starting at once apply each migration exactly once.

use std::borrow::Cow;

use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::{Backend, Result, Store, StoreError};

const SQLITE: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/sqlite/0001_foundation.sql"),
    ),
    (
        2,
        "oauth",
        include_str!("../migrations/sqlite/0002_oauth.sql"),
    ),
    (
        3,
        "egress",
        include_str!("../migrations/sqlite/0003_egress.sql"),
    ),
    (
        4,
        "connections",
        include_str!("../migrations/sqlite/0004_connections.sql"),
    ),
    (
        5,
        "webhooks",
        include_str!("../migrations/sqlite/0005_webhooks.sql"),
    ),
    (
        6,
        "audit_checkpoints",
        include_str!("../migrations/sqlite/0006_audit_checkpoints.sql"),
    ),
    (
        7,
        "credentials",
        include_str!("../migrations/sqlite/0007_credentials.sql"),
    ),
    (
        8,
        "bundles",
        include_str!("../migrations/sqlite/0008_bundles.sql"),
    ),
    (
        9,
        "webhook_perf",
        include_str!("../migrations/sqlite/0009_webhook_perf.sql"),
    ),
];
const POSTGRES: &[(i64, &str, &str)] = &[
    (
        1,
        "foundation",
        include_str!("../migrations/postgres/0001_foundation.sql"),
    ),
    (
        2,
        "oauth",
        include_str!("../migrations/postgres/0002_oauth.sql"),
    ),
    (
        3,
        "egress",
        include_str!("../migrations/postgres/0003_egress.sql"),
    ),
    (
        4,
        "connections",
        include_str!("../migrations/postgres/0004_connections.sql"),
    ),
    (
        5,
        "webhooks",
        include_str!("../migrations/postgres/0005_webhooks.sql"),
    ),
    (
        6,
        "audit_checkpoints",
        include_str!("../migrations/postgres/0006_audit_checkpoints.sql"),
    ),
    (
        7,
        "credentials",
        include_str!("../migrations/postgres/0007_credentials.sql"),
    ),
    (
        8,
        "bundles",
        include_str!("../migrations/postgres/0008_bundles.sql"),
    ),
    (
        9,
        "webhook_perf",
        include_str!("../migrations/postgres/0009_webhook_perf.sql"),
    ),
];

fn migrator(backend: Backend) -> Migrator {
    let set = match backend {
        Backend::Sqlite => SQLITE,
        Backend::Postgres => POSTGRES,
    };
    let migrations: Vec<Migration> = set
        .iter()
        .map(|(v, d, sql)| {
            Migration::new(
                *v,
                Cow::Borrowed(*d),
                MigrationType::Simple,
                sqlx::SqlStr::from_static(sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
        table_name: Cow::Borrowed("_sqlx_migrations"),
        create_schemas: Cow::Borrowed(&[]),
    }
}

impl Store {
    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<()> {
        let mut conn = self.write.acquire().await?;
        migrator(self.backend)
            .run(&mut *conn)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    /// The latest migration version compiled into this binary.
    pub fn latest_migration(&self) -> i64 {
        migrator(self.backend)
            .migrations
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0)
    }

    /// Whether the database has every migration this binary knows (for `/readyz`).
    pub async fn migrations_current(&self) -> Result<bool> {
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE")
                .fetch_optional(self.reader())
                .await
                .ok()
                .flatten();
        Ok(applied == Some(self.latest_migration()))
    }
}
