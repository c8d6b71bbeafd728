//! Migrations and environments.

use std::collections::BTreeSet;

use portcullis_core::model::{EnvMode, KeyPolicy};
use portcullis_crypto::jws::SigningKey;
use serde_json::json;

use crate::support::{ACTOR, Db, T0, at, conflict_code, connect, seal_aad};

pub async fn migrations_apply_once_and_are_idempotent(db: &Db) {
    assert!(db.store.migrations_current().await.unwrap());
    db.store.migrate().await.unwrap();
    assert!(db.store.migrations_current().await.unwrap());

    let fresh = connect(&db.sibling_url("fresh").await).await;
    assert!(
        !fresh.migrations_current().await.unwrap(),
        "an empty database is not current"
    );
    fresh.migrate().await.unwrap();
    fresh.migrate().await.unwrap();
    assert!(fresh.migrations_current().await.unwrap());
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut db.raw().await)
        .await
        .unwrap();
    assert_eq!(applied, fresh.latest_migration(), "each migration once");
    fresh.close().await;
}

pub async fn environment_create_writes_keys_event_and_audit(db: &Db) {
    let env = db.environment("acme").await;
    let store = &db.store;
    assert_eq!(store.find_environment("acme").await.unwrap(), env);
    assert_eq!(store.find_environment(env.id.as_str()).await.unwrap(), env);

    let keys = store.signing_keys(&env.id).await.unwrap();
    let states: BTreeSet<&str> = keys.iter().map(|k| k.info.state.as_str()).collect();
    assert_eq!(states, BTreeSet::from(["active", "next"]));
    for k in &keys {
        let aad = seal_aad(k.info.id.as_str(), env.id.as_str());
        let der = db.master.open(&aad, &k.sealed_private).unwrap();
        SigningKey::from_pkcs8(k.info.id.as_str(), k.info.alg, &der).unwrap();
    }

    let page = store.list_events(&env.id, 0, 10).await.unwrap();
    assert_eq!(page.events.len(), 1);
    let created = &page.events[0];
    assert_eq!(
        (created.seq, created.event.as_str()),
        (1, "environment.created")
    );
    assert_eq!(created.data["slug"], "acme");
    assert_eq!(created.created_at, T0);

    let records = store.audit_records(env.id.as_str(), 0, None).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].action, "environment.create");
    assert_eq!(records[0].target, env.id.as_str());
    assert_eq!(records[0].actor, ACTOR);
    let head = store.audit_head(env.id.as_str()).await.unwrap().unwrap();
    assert_eq!(
        (head.seq, head.hash.as_str()),
        (1, records[0].hash.as_str())
    );
    assert_eq!(db.verify(env.id.as_str()).await.broken, None);
    let chains = store.audit_chains().await.unwrap();
    assert!(chains.contains(&env.id.to_string()), "{chains:?}");
}

pub async fn duplicate_environment_is_refused_and_writes_nothing(db: &Db) {
    let first = db.environment("acme").await;
    let before = db.counts().await;

    let (mut same_slug, keys) = db.new_environment("acme", at(5));
    same_slug.issuer = "https://other.example.test".into();
    let err = db
        .store
        .create_environment(ACTOR, at(5), same_slug, keys)
        .await
        .unwrap_err();
    assert_eq!(conflict_code(&err), "environment_exists");

    let (mut same_issuer, keys) = db.new_environment("other", at(5));
    same_issuer.issuer = first.issuer.clone();
    let err = db
        .store
        .create_environment(ACTOR, at(5), same_issuer, keys)
        .await
        .unwrap_err();
    assert_eq!(conflict_code(&err), "environment_exists");

    assert_eq!(
        db.counts().await,
        before,
        "a refused environment writes nothing"
    );
    assert_eq!(db.store.list_environments().await.unwrap(), vec![first]);
}

pub async fn environment_update_records_previous_attributes(db: &Db) {
    let env = db.environment("acme").await;
    let policy = KeyPolicy {
        lifetime_seconds: 3_600,
        grace_seconds: 60,
    };
    let updated = db
        .store
        .update_environment(
            ACTOR,
            at(10),
            &env.id,
            Some("Renamed".into()),
            Some(EnvMode::Isolated),
            Some(policy),
        )
        .await
        .unwrap();
    assert_eq!(db.store.find_environment("acme").await.unwrap(), updated);
    assert_eq!(
        (updated.mode, updated.key_policy),
        (EnvMode::Isolated, policy)
    );
    assert_eq!(updated.updated_at, at(10));

    let page = db.store.list_events(&env.id, 1, 10).await.unwrap();
    assert_eq!(page.events[0].event, "environment.updated");
    assert_eq!(
        page.events[0].data["previous_attributes"],
        json!({
            "name": env.name,
            "mode": "connected",
            "key_policy": env.key_policy,
        })
    );

    let before = db.counts().await;
    let same = db
        .store
        .update_environment(ACTOR, at(11), &env.id, Some("Renamed".into()), None, None)
        .await
        .unwrap();
    assert_eq!(same, updated);
    assert_eq!(
        db.counts().await,
        before,
        "a change to nothing records nothing"
    );
    assert_eq!(
        db.actions(env.id.as_str()).await,
        ["environment.create", "environment.update"]
    );
}
