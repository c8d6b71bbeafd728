//! API keys, signing-key rotation and master-key rotation (resealing).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};

use portcullis_core::audit::GLOBAL_CHAIN;
use portcullis_core::ids::{ApiKeyId, ConnectionId, EnvId, SigningKeyId};
use portcullis_core::model::{ApiKey, ApiKeyKind, KeyState, SigningKeyInfo};
use portcullis_core::sso::{Connection, ConnectionState, ConnectionType};
use portcullis_crypto::{MasterKey, SystemRandom, generate_secret, secret_digest};
use portcullis_store::{NewApiKey, Reseal, Sealed, StoreError};
use serde_json::json;

use crate::support::{ACTOR, Bind, Db, T0, at, seal_aad};

/// A new key and the digest of its secret.
pub fn new_api_key(db: &Db, kind: ApiKeyKind, env_id: Option<EnvId>, name: &str) -> NewApiKey {
    let secret = generate_secret(&SystemRandom, kind.secret_prefix());
    NewApiKey {
        id: db.store.new_id(T0),
        kind,
        env_id,
        name: name.to_owned(),
        digest: secret_digest(&secret),
        expires_at: None,
    }
}

/// The IDs of the keys in `state`.
pub fn in_state(keys: &[SigningKeyInfo], state: KeyState) -> Vec<SigningKeyId> {
    let mut ids: Vec<_> = keys
        .iter()
        .filter(|k| k.state == state)
        .map(|k| k.id.clone())
        .collect();
    ids.sort();
    ids
}

pub async fn api_key_lifecycle(db: &Db) {
    let env = db.environment("acme").await;
    let store = &db.store;
    let admin = new_api_key(db, ApiKeyKind::Admin, None, "root");
    let admin_digest = admin.digest.clone();
    let admin = store.create_api_key(ACTOR, at(1), admin).await.unwrap();
    let machine = new_api_key(db, ApiKeyKind::Environment, Some(env.id.clone()), "events");
    let digest = machine.digest.clone();
    let machine = store.create_api_key(ACTOR, at(1), machine).await.unwrap();
    assert_eq!((machine.last_used_at, machine.revoked_at), (None, None));

    let ids = |keys: Vec<ApiKey>| {
        keys.into_iter()
            .map(|k| k.id)
            .collect::<BTreeSet<ApiKeyId>>()
    };
    assert_eq!(
        ids(store.list_api_keys(None).await.unwrap()),
        BTreeSet::from([admin.id.clone(), machine.id.clone()])
    );
    assert_eq!(
        ids(store.list_api_keys(Some(&env.id)).await.unwrap()),
        BTreeSet::from([machine.id.clone()])
    );

    let mut dup = new_api_key(db, ApiKeyKind::Admin, None, "dup");
    dup.digest = admin_digest;
    let err = store.create_api_key(ACTOR, at(1), dup).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict { .. }),
        "a digest is unique: {err:?}"
    );

    // Found by digest; the last use is written at most once a minute.
    let last_used = async || store.get_api_key(&machine.id).await.unwrap().last_used_at;
    let found = store
        .api_key_by_digest(&digest, at(100))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&found.id, found.last_used_at),
        (&machine.id, Some(at(100)))
    );
    store.api_key_by_digest(&digest, at(130)).await.unwrap();
    assert_eq!(last_used().await, Some(at(100)));
    store.api_key_by_digest(&digest, at(160)).await.unwrap();
    assert_eq!(last_used().await, Some(at(160)));
    let unknown = store
        .api_key_by_digest(&"0".repeat(64), at(160))
        .await
        .unwrap();
    assert_eq!(unknown, None);

    let revoked = store
        .revoke_api_key(ACTOR, at(200), &machine.id)
        .await
        .unwrap();
    assert_eq!(revoked.revoked_at, Some(at(200)));
    let again = store
        .revoke_api_key(ACTOR, at(300), &machine.id)
        .await
        .unwrap();
    assert_eq!(
        again.revoked_at,
        Some(at(200)),
        "the first revocation stands"
    );
    let found = store
        .api_key_by_digest(&digest, at(400))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.revoked_at,
        Some(at(200)),
        "found, and the caller sees it is revoked"
    );
    assert_eq!(
        found.last_used_at,
        Some(at(160)),
        "a revoked key's use is not recorded"
    );

    assert_eq!(db.actions(GLOBAL_CHAIN).await, ["api_key.create"]);
    assert_eq!(
        db.actions(env.id.as_str()).await,
        ["environment.create", "api_key.create", "api_key.revoke"]
    );
    assert_eq!(db.verify(GLOBAL_CHAIN).await.broken, None);
    assert_eq!(db.verify(env.id.as_str()).await.broken, None);
}

pub async fn signing_key_rotation_keeps_one_active_and_one_next(db: &Db) {
    let env = db.environment("acme").await;
    let store = &db.store;
    let initial: Vec<_> = store
        .signing_keys(&env.id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.info)
        .collect();
    let mut active = in_state(&initial, KeyState::Active);
    let mut next = in_state(&initial, KeyState::Next);
    assert_eq!((active.len(), next.len()), (1, 1));
    let mut retired = Vec::new();

    for round in 1..=3 {
        let now = at(round * 1_000);
        let new_next = db.signing_key(&env.id, KeyState::Next, now);
        let published = vec![new_next.id.clone()];
        let keys = store
            .rotate_signing_keys(ACTOR, now, &env.id, new_next)
            .await
            .unwrap();
        retired.append(&mut active);
        retired.sort();
        assert_eq!(
            in_state(&keys, KeyState::Active),
            next,
            "round {round}: next signs"
        );
        assert_eq!(in_state(&keys, KeyState::Next), published);
        assert_eq!(in_state(&keys, KeyState::Retired), retired);
        let signing = keys.iter().find(|k| k.state == KeyState::Active).unwrap();
        assert_eq!(signing.activated_at, Some(now));
        assert_eq!(keys.iter().filter(|k| k.retired_at == Some(now)).count(), 1);
        active = next;
        next = published;
    }
    let rotated = store.list_events(&env.id, 1, 10).await.unwrap().events;
    assert_eq!(rotated.len(), 3);
    assert!(rotated.iter().all(|e| e.event == "signing_key.rotated"));
    assert_eq!(rotated[2].data["activated"], json!(active[0]));

    // Repair: with the next key gone, a rotation only publishes a new one; the active key stays.
    let sql = "DELETE FROM signing_keys WHERE env_id = $1 AND state = 'next'";
    db.exec(sql, &[Bind::Text(env.id.as_str())]).await;
    let repair = db.signing_key(&env.id, KeyState::Next, at(9_000));
    let published = vec![repair.id.clone()];
    let keys = store
        .rotate_signing_keys(ACTOR, at(9_000), &env.id, repair)
        .await
        .unwrap();
    assert_eq!(in_state(&keys, KeyState::Active), active);
    assert_eq!(in_state(&keys, KeyState::Next), published);
    assert_eq!(db.verify(env.id.as_str()).await.broken, None);
}

pub async fn master_key_reseal_is_all_or_nothing(db: &Db) {
    let a = db.environment("a").await;
    let b = db.environment("b").await;
    let sealed = async || {
        let mut out = BTreeMap::new();
        for env in [&a.id, &b.id] {
            for k in db.store.signing_keys(env).await.unwrap() {
                out.insert(k.info.id.to_string(), (env.clone(), k.sealed_private));
            }
        }
        out
    };
    let original = sealed().await;
    assert_eq!(original.len(), 4);
    // A connection's secrets are sealed under the master key too (the store does not care with
    // which associated data; here the same as the keys').
    let org = db
        .store
        .create_organization(
            ACTOR,
            at(40),
            &a.id,
            db.new_organization("Acme", &["acme.test"]),
        )
        .await
        .unwrap();
    let conn_id: ConnectionId = db.store.new_id(at(40));
    let conn_secret = db
        .master
        .seal(
            &SystemRandom,
            &seal_aad(conn_id.as_str(), a.id.as_str()),
            b"upstream-secret",
        )
        .unwrap();
    db.store
        .create_connection(
            ACTOR,
            at(40),
            Connection {
                id: conn_id.clone(),
                env_id: a.id.clone(),
                org_id: org.id,
                kind: ConnectionType::Oidc,
                name: "sso".into(),
                state: ConnectionState::Draft,
                config: json!({}),
                sealed_secrets: Some(conn_secret.clone()),
                created_at: at(40),
                updated_at: at(40),
            },
        )
        .await
        .unwrap();
    let conn_sealed = async || {
        db.store
            .get_connection(&a.id, &conn_id)
            .await
            .unwrap()
            .sealed_secrets
            .unwrap()
    };
    let (new_master, _) = MasterKey::generate(&SystemRandom);
    let reseal_all = |_: Sealed, kid: &str, env: &str, blob: &[u8]| -> Result<Vec<u8>, String> {
        let aad = seal_aad(kid, env);
        let der = db.master.open(&aad, blob).map_err(|e| e.to_string())?;
        new_master
            .seal(&SystemRandom, &aad, &der)
            .map_err(|e| e.to_string())
    };
    let calls = AtomicUsize::new(0);
    let fail_second =
        |kind: Sealed, kid: &str, env: &str, blob: &[u8]| -> Result<Vec<u8>, String> {
            if calls.fetch_add(1, Ordering::SeqCst) == 1 {
                return Err("the HSM went away".into());
            }
            reseal_all(kind, kid, env, blob)
        };
    // Fails on the connection, after every signing key was re-sealed.
    let fail_connection =
        |kind: Sealed, kid: &str, env: &str, blob: &[u8]| -> Result<Vec<u8>, String> {
            if kind == Sealed::ConnectionSecrets {
                return Err("the connection's secrets do not open".into());
            }
            reseal_all(kind, kid, env, blob)
        };
    let check = ("master_key_check", "new-canary");

    let before = db.counts().await;
    let head = db.store.audit_head(GLOBAL_CHAIN).await.unwrap();
    let err = db
        .store
        .reseal_signing_keys(ACTOR, at(50), &fail_second as &Reseal, check, "fp-new")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("the HSM went away"), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(sealed().await, original, "a failed reseal changes no key");
    let err = db
        .store
        .reseal_signing_keys(ACTOR, at(55), &fail_connection as &Reseal, check, "fp-new")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("secrets of connection"), "{err}");
    assert_eq!(
        sealed().await,
        original,
        "a reseal failing late changes no key"
    );
    assert_eq!(conn_sealed().await, conn_secret);
    assert_eq!(db.counts().await, before);
    assert_eq!(db.store.setting(check.0).await.unwrap(), None);
    assert_eq!(db.store.audit_head(GLOBAL_CHAIN).await.unwrap(), head);

    let n = db
        .store
        .reseal_signing_keys(ACTOR, at(60), &reseal_all as &Reseal, check, "fp-new")
        .await
        .unwrap();
    assert_eq!(n, 4);
    let resealed = sealed().await;
    assert!(resealed.keys().eq(original.keys()));
    for (kid, (env, blob)) in &resealed {
        let aad = seal_aad(kid, env.as_str());
        assert!(
            new_master.open(&aad, blob).is_ok(),
            "{kid} opens under the new key"
        );
        assert!(
            db.master.open(&aad, blob).is_err(),
            "{kid} no longer opens under the old"
        );
    }
    assert_eq!(
        db.store.setting(check.0).await.unwrap().as_deref(),
        Some(check.1)
    );
    let records = db.store.audit_records(GLOBAL_CHAIN, 0, None).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, "master_key.rotate");
    let rotation = records
        .iter()
        .find(|r| r.action == "master_key.rotate")
        .expect("the rotation is audited");
    assert!(
        rotation.detail.contains(r#""keys_resealed":4"#)
            && rotation
                .detail
                .contains(r#""connection_secrets_resealed":1"#),
        "{}",
        rotation.detail
    );
    let conn_aad = seal_aad(conn_id.as_str(), a.id.as_str());
    let resealed_secret = conn_sealed().await;
    assert_eq!(
        new_master
            .open(&conn_aad, &resealed_secret)
            .unwrap()
            .to_vec(),
        b"upstream-secret".to_vec()
    );
    assert!(db.master.open(&conn_aad, &resealed_secret).is_err());
    assert_eq!(db.verify(GLOBAL_CHAIN).await.broken, None);
}
