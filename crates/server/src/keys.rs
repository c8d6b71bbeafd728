//! The key ring: each environment's signing keys, unsealed once and held in memory.
//!
//! Invariants (the rotation timeline test attacks each):
//! 1. the JWKS publishes the `next` key before it ever signs: a key is created as `next` and
//!    becomes `active` only at a later rotation;
//! 2. exactly one key signs per environment, the `active` one;
//! 3. a retired key stays in the JWKS for the environment's grace period, then disappears;
//! 4. a key older than its lifetime is rotated by the scheduler (`rotate_due`), whatever the
//!    clock says, without a restart.
//!
//! The cache is keyed by environment and refreshed after a local rotation or after `CACHE_TTL_MS`,
//! so that a rotation made by another node reaches this one within that time.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use portcullis_core::Timestamp;
use portcullis_core::ids::{EnvId, SigningKeyId};
use portcullis_core::model::{Environment, KeyState, SigningAlg, SigningKeyInfo, rotation_due};
use portcullis_crypto::jws::{SigningKey, generate_pkcs8};
use portcullis_crypto::{MasterKey, SystemRandom};
use portcullis_store::{NewSigningKey, Store, StoreError};

const CACHE_TTL_MS: i64 = 30_000;

#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("signing key {0} cannot be unsealed: {1}")]
    Unseal(String, String),
    #[error("environment {0} has no active signing key")]
    NoActiveKey(String),
    #[error("key generation failed: {0}")]
    Generate(String),
}

/// One environment's keys as loaded.
pub struct EnvKeys {
    pub infos: Vec<SigningKeyInfo>,
    pub active: Arc<SigningKey>,
    loaded_at: Timestamp,
}

pub struct KeyRing {
    store: Store,
    master: Arc<MasterKey>,
    cache: RwLock<HashMap<EnvId, Arc<EnvKeys>>>,
}

/// The associated data that binds a sealed key to its row.
pub fn seal_aad(kid: &str, env: &str) -> String {
    format!("signing-key|{kid}|{env}")
}

impl KeyRing {
    pub fn new(store: Store, master: Arc<MasterKey>) -> Self {
        Self {
            store,
            master,
            cache: RwLock::new(HashMap::new()),
        }
    }

    pub fn master(&self) -> &Arc<MasterKey> {
        &self.master
    }

    /// A fresh key of `alg`, sealed for `env`, ready to insert.
    pub fn generate(
        &self,
        env: &EnvId,
        alg: SigningAlg,
        state: KeyState,
        now: Timestamp,
    ) -> Result<NewSigningKey, KeyRingError> {
        let id: SigningKeyId = self.store.new_id(now);
        let der = generate_pkcs8(alg).map_err(|e| KeyRingError::Generate(e.to_string()))?;
        let key = SigningKey::from_pkcs8(id.as_str(), alg, &der)
            .map_err(|e| KeyRingError::Generate(e.to_string()))?;
        let sealed = self
            .master
            .seal(&SystemRandom, &seal_aad(id.as_str(), env.as_str()), &der)
            .map_err(|e| KeyRingError::Generate(e.to_string()))?;
        Ok(NewSigningKey {
            id,
            alg,
            state,
            public_jwk: key.public_jwk(),
            sealed_private: sealed,
        })
    }

    /// The keys of `env`, from cache when fresh.
    pub async fn env_keys(
        &self,
        env: &EnvId,
        now: Timestamp,
    ) -> Result<Arc<EnvKeys>, KeyRingError> {
        if let Some(k) = self
            .cached(env)
            .filter(|k| now.millis() - k.loaded_at.millis() < CACHE_TTL_MS)
        {
            return Ok(k);
        }
        let stored = self.store.signing_keys(env).await?;
        let active = stored
            .iter()
            .find(|k| k.info.state == KeyState::Active)
            .ok_or_else(|| KeyRingError::NoActiveKey(env.to_string()))?;
        // Reuse the parsed key when it has not changed: RSA parsing is not free.
        let signer = match self
            .cached(env)
            .filter(|c| c.active.kid() == active.info.id.as_str())
        {
            Some(c) => c.active.clone(),
            None => {
                let kid = active.info.id.as_str();
                let der = self
                    .master
                    .open(&seal_aad(kid, env.as_str()), &active.sealed_private)
                    .map_err(|e| KeyRingError::Unseal(kid.to_owned(), e.to_string()))?;
                Arc::new(
                    SigningKey::from_pkcs8(kid, active.info.alg, &der)
                        .map_err(|e| KeyRingError::Unseal(kid.to_owned(), e.to_string()))?,
                )
            }
        };
        let keys = Arc::new(EnvKeys {
            infos: stored.into_iter().map(|k| k.info).collect(),
            active: signer,
            loaded_at: now,
        });
        if let Ok(mut c) = self.cache.write() {
            c.insert(env.clone(), keys.clone());
        }
        Ok(keys)
    }

    fn cached(&self, env: &EnvId) -> Option<Arc<EnvKeys>> {
        self.cache.read().ok().and_then(|c| c.get(env).cloned())
    }

    pub(crate) fn forget(&self, env: &EnvId) {
        if let Ok(mut c) = self.cache.write() {
            c.remove(env);
        }
    }

    /// The published JWKS of `env` at `now`.
    pub async fn jwks(
        &self,
        env: &Environment,
        now: Timestamp,
    ) -> Result<serde_json::Value, KeyRingError> {
        let keys = self.env_keys(&env.id, now).await?;
        let published: Vec<_> = keys
            .infos
            .iter()
            .filter(|k| k.is_published(now, &env.key_policy))
            .map(|k| k.public_jwk.clone())
            .collect();
        Ok(serde_json::json!({ "keys": published }))
    }

    /// The key that signs for `env` now.
    pub async fn signer(
        &self,
        env: &EnvId,
        now: Timestamp,
    ) -> Result<Arc<SigningKey>, KeyRingError> {
        Ok(self.env_keys(env, now).await?.active.clone())
    }

    pub async fn rotate(
        &self,
        actor: &str,
        env: &Environment,
        now: Timestamp,
    ) -> Result<Vec<SigningKeyInfo>, KeyRingError> {
        let next = self.generate(&env.id, env.signing_alg, KeyState::Next, now)?;
        let infos = self
            .store
            .rotate_signing_keys(actor, now, &env.id, next)
            .await?;
        self.forget(&env.id);
        Ok(infos)
    }

    /// Rotates every environment whose active key has outlived its lifetime. Returns the
    /// environments rotated.
    pub async fn rotate_due(&self, now: Timestamp) -> Result<Vec<EnvId>, KeyRingError> {
        let mut rotated = Vec::new();
        for env in self.store.list_environments().await? {
            let infos: Vec<_> = self
                .store
                .signing_keys(&env.id)
                .await?
                .into_iter()
                .map(|k| k.info)
                .collect();
            if rotation_due(&infos, now, &env.key_policy) {
                self.rotate("system:key-scheduler", &env, now).await?;
                rotated.push(env.id);
            }
        }
        Ok(rotated)
    }
}
