//! The database under test, and the fixtures every test builds on.

use std::collections::BTreeMap;

use portcullis_core::Timestamp;
use portcullis_core::audit::{ChainReport, verify_chain};
use portcullis_core::ids::{EnvId, OrgId, SigningKeyId};
use portcullis_core::model::{EnvMode, Environment, KeyPolicy, KeyState, Organization, SigningAlg};
use portcullis_crypto::jws::{SigningKey, generate_pkcs8};
use portcullis_crypto::{MasterKey, SystemRandom, sha256_hex};
use portcullis_store::{
    NewEnvironment, NewOrganization, NewSigningKey, Store, StoreError, StoreOptions,
};
use sqlx::{AnyConnection, Connection};

pub const ACTOR: &str = "test";
/// Tests run at fixed times from here on: storage never reads the clock itself.
pub const T0: Timestamp = Timestamp(1_800_000_000_000);

pub fn at(seconds: i64) -> Timestamp {
    T0.plus_seconds(seconds)
}

pub fn one_to(n: i64) -> Vec<i64> {
    (1..=n).collect()
}

/// The associated data a sealed signing key is bound to (as the server's key ring seals them).
pub fn seal_aad(kid: &str, env: &str) -> String {
    format!("signing-key|{kid}|{env}")
}

pub fn conflict_code(e: &StoreError) -> &'static str {
    match e {
        StoreError::Conflict { code, .. } => code,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// A value bound to a raw statement.
pub enum Bind<'a> {
    Text(&'a str),
    Int(i64),
}

/// One migrated database of one backend, and the master key its signing keys are sealed under.
pub struct Db {
    pub store: Store,
    pub master: MasterKey,
    url: String,
    /// The SQLite file's directory (removed on drop).
    dir: Option<tempfile::TempDir>,
}

impl Db {
    pub async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(&dir, "db");
        Self::open(url, Some(dir)).await
    }

    pub async fn postgres() -> Self {
        let url = portcullis_testkit::pg::fresh_database().await.unwrap();
        Self::open(url, None).await
    }

    async fn open(url: String, dir: Option<tempfile::TempDir>) -> Self {
        let store = connect(&url).await;
        store.migrate().await.unwrap();
        let (master, _) = MasterKey::generate(&SystemRandom);
        Self {
            store,
            master,
            url,
            dir,
        }
    }

    /// The URL of another, empty and unmigrated, database of the same backend.
    pub async fn sibling_url(&self, name: &str) -> String {
        match &self.dir {
            Some(dir) => sqlite_url(dir, name),
            None => portcullis_testkit::pg::fresh_database().await.unwrap(),
        }
    }

    /// A connection beside the store, for SQL the store would never run.
    pub async fn raw(&self) -> AnyConnection {
        sqlx::any::install_default_drivers();
        AnyConnection::connect(&self.url).await.unwrap()
    }

    /// Runs one raw statement; returns the number of rows it changed.
    pub async fn exec(&self, sql: &'static str, binds: &[Bind<'_>]) -> u64 {
        let mut conn = self.raw().await;
        let mut q = sqlx::query(sql);
        for b in binds {
            q = match *b {
                Bind::Text(s) => q.bind(s.to_owned()),
                Bind::Int(i) => q.bind(i),
            };
        }
        let n = q.execute(&mut conn).await.unwrap().rows_affected();
        conn.close().await.unwrap();
        n
    }

    /// Row counts of every table a change writes to.
    pub async fn counts(&self) -> BTreeMap<&'static str, i64> {
        let mut conn = self.raw().await;
        let mut out = BTreeMap::new();
        for table in [
            "environments",
            "organizations",
            "organization_domains",
            "api_keys",
            "signing_keys",
            "events",
            "audit_records",
            "audit_heads",
            "settings",
        ] {
            let sql = format!("SELECT COUNT(*) FROM {table}");
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut conn)
                .await
                .unwrap();
            out.insert(table, n);
        }
        conn.close().await.unwrap();
        out
    }

    /// A fresh ES256 key, sealed under [`Db::master`] for `env`.
    pub fn signing_key(&self, env: &EnvId, state: KeyState, now: Timestamp) -> NewSigningKey {
        let id: SigningKeyId = self.store.new_id(now);
        let der = generate_pkcs8(SigningAlg::ES256).unwrap();
        let key = SigningKey::from_pkcs8(id.as_str(), SigningAlg::ES256, &der).unwrap();
        let aad = seal_aad(id.as_str(), env.as_str());
        let sealed = self.master.seal(&SystemRandom, &aad, &der).unwrap();
        NewSigningKey {
            id,
            alg: SigningAlg::ES256,
            state,
            public_jwk: key.public_jwk(),
            sealed_private: sealed,
        }
    }

    pub fn new_environment(
        &self,
        slug: &str,
        now: Timestamp,
    ) -> (NewEnvironment, [NewSigningKey; 2]) {
        let id: EnvId = self.store.new_id(now);
        let keys = [
            self.signing_key(&id, KeyState::Active, now),
            self.signing_key(&id, KeyState::Next, now),
        ];
        let env = NewEnvironment {
            id,
            slug: slug.to_owned(),
            name: format!("Environment {slug}"),
            mode: EnvMode::Connected,
            issuer: format!("https://id.example.test/e/{slug}"),
            signing_alg: SigningAlg::ES256,
            key_policy: KeyPolicy::default(),
        };
        (env, keys)
    }

    /// Creates an environment at [`T0`].
    pub async fn environment(&self, slug: &str) -> Environment {
        let (env, keys) = self.new_environment(slug, T0);
        let store = &self.store;
        store
            .create_environment(ACTOR, T0, env, keys)
            .await
            .unwrap()
    }

    pub fn new_organization(&self, name: &str, domains: &[&str]) -> NewOrganization {
        NewOrganization {
            id: self.store.new_id(T0),
            name: name.to_owned(),
            domains: domains.iter().map(|d| (*d).to_owned()).collect(),
        }
    }

    /// Creates an organization at `at(1)`.
    pub async fn organization(&self, env: &EnvId, name: &str, domains: &[&str]) -> Organization {
        let new = self.new_organization(name, domains);
        let store = &self.store;
        store
            .create_organization(ACTOR, at(1), env, new)
            .await
            .unwrap()
    }

    pub async fn owner(&self, env: &EnvId, domain: &str) -> Option<OrgId> {
        self.store
            .organization_by_domain(env, domain)
            .await
            .unwrap()
    }

    /// The numbers of every event of `env`.
    pub async fn event_seqs(&self, env: &EnvId) -> Vec<i64> {
        let page = self.store.list_events(env, 0, 1_000).await.unwrap();
        assert!(!page.has_more);
        page.events.iter().map(|e| e.seq).collect()
    }

    /// The actions recorded in `chain`, in order.
    pub async fn actions(&self, chain: &str) -> Vec<String> {
        let records = self.store.audit_records(chain, 0, None).await.unwrap();
        records.into_iter().map(|r| r.action).collect()
    }

    pub async fn verify(&self, chain: &str) -> ChainReport {
        let records = self.store.audit_records(chain, 0, None).await.unwrap();
        let head = self.store.audit_head(chain).await.unwrap();
        verify_chain(chain, &records, head.as_ref(), &sha256_hex)
    }
}

pub async fn connect(url: &str) -> Store {
    Store::connect(url, &StoreOptions::default()).await.unwrap()
}

fn sqlite_url(dir: &tempfile::TempDir, name: &str) -> String {
    format!("sqlite://{}/{name}.sqlite?mode=rwc", dir.path().display())
}
