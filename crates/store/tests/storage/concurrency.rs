//! Changes racing each other: numbering stays gapless, constraints hold, nothing is recorded twice.
//! On SQLite the writes queue on the single writer connection; on PostgreSQL they run in parallel
//! transactions and row locks decide.

use std::collections::BTreeSet;

use portcullis_core::ids::OrgId;
use portcullis_core::model::{ApiKeyKind, KeyState};
use portcullis_store::StoreError;

use crate::keys::{in_state, new_api_key};
use crate::support::{ACTOR, Db, at, connect, one_to};

/// Runs `n` copies of a store call at once, each with its index, and returns their results.
async fn race<T, F, Fut>(db: &Db, n: i64, call: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(portcullis_store::Store, i64) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(call(db.store.clone(), i)))
        .collect();
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

pub async fn concurrent_creates_number_events_without_gaps(db: &Db) {
    let env = db.environment("busy").await;
    let results = race(db, 20, |store, i| {
        let env = env.id.clone();
        let domain = format!("org{i}.example.com");
        let new = db.new_organization(&format!("Org {i}"), &[&domain]);
        async move { store.create_organization(ACTOR, at(i), &env, new).await }
    })
    .await;
    let created: BTreeSet<OrgId> = results.into_iter().map(|r| r.unwrap().id).collect();
    assert_eq!(created.len(), 20);

    let events = db.store.list_events(&env.id, 0, 100).await.unwrap().events;
    assert_eq!(events.iter().map(|e| e.seq).collect::<Vec<_>>(), one_to(21));
    assert_eq!(events[0].event, "environment.created");
    let numbered: BTreeSet<OrgId> = events[1..]
        .iter()
        .map(|e| e.organization_id.clone().unwrap())
        .collect();
    assert_eq!(numbered, created, "one event per organization");
    let report = db.verify(env.id.as_str()).await;
    assert_eq!((report.records, report.broken), (21, None));
}

pub async fn concurrent_claims_of_one_domain_admit_exactly_one(db: &Db) {
    let env = db.environment("contested").await;
    let results = race(db, 20, |store, i| {
        let env = env.id.clone();
        let new = db.new_organization(&format!("Claimant {i}"), &["contested.com"]);
        async move { store.create_organization(ACTOR, at(i), &env, new).await }
    })
    .await;
    let mut winners = Vec::new();
    for r in results {
        match r {
            Ok(org) => winners.push(org.id),
            Err(e) => assert!(matches!(e, StoreError::Conflict { .. }), "{e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one organization gets the domain");
    assert_eq!(
        db.owner(&env.id, "contested.com").await.as_ref(),
        winners.first()
    );
    let counts = db.counts().await;
    assert_eq!(
        (counts["organizations"], counts["organization_domains"]),
        (1, 1)
    );
    assert_eq!(db.event_seqs(&env.id).await, one_to(2));
    assert_eq!(db.verify(env.id.as_str()).await.broken, None);
}

pub async fn concurrent_rotations_keep_one_active_and_one_next(db: &Db) {
    let env = db.environment("rotating").await;
    let results = race(db, 5, |store, i| {
        let env = env.id.clone();
        let new_next = db.signing_key(&env, KeyState::Next, at(i));
        async move {
            store
                .rotate_signing_keys(ACTOR, at(100 + i), &env, new_next)
                .await
        }
    })
    .await;
    for r in results {
        r.unwrap();
    }
    let keys: Vec<_> = db
        .store
        .signing_keys(&env.id)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.info)
        .collect();
    assert_eq!(keys.len(), 7);
    assert_eq!(in_state(&keys, KeyState::Active).len(), 1);
    assert_eq!(in_state(&keys, KeyState::Next).len(), 1);
    assert_eq!(in_state(&keys, KeyState::Retired).len(), 5);
    assert_eq!(db.event_seqs(&env.id).await, one_to(6));
    assert_eq!(db.verify(env.id.as_str()).await.broken, None);
}

pub async fn concurrent_revocations_record_one_revocation(db: &Db) {
    let env = db.environment("acme").await;
    let key = new_api_key(db, ApiKeyKind::Environment, Some(env.id.clone()), "leaked");
    let key = db.store.create_api_key(ACTOR, at(1), key).await.unwrap();
    let results = race(db, 20, |store, i| {
        let id = key.id.clone();
        async move { store.revoke_api_key(ACTOR, at(100 + i), &id).await }
    })
    .await;
    let stored = db.store.get_api_key(&key.id).await.unwrap().revoked_at;
    assert!(stored.is_some());
    for r in results {
        assert_eq!(
            r.unwrap().revoked_at,
            stored,
            "every caller sees the revocation that stands"
        );
    }
    let revocations = db
        .actions(env.id.as_str())
        .await
        .into_iter()
        .filter(|a| a == "api_key.revoke")
        .count();
    assert_eq!(revocations, 1, "one revocation, one audit record");
}

pub async fn concurrent_migrations_apply_each_once(db: &Db) {
    let url = db.sibling_url("racing").await;
    let (a, b) = (connect(&url).await, connect(&url).await);
    let (ra, rb) = tokio::join!(a.migrate(), b.migrate());
    ra.unwrap();
    rb.unwrap();
    assert!(a.migrations_current().await.unwrap());
    let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut db.raw().await)
        .await
        .unwrap();
    assert_eq!(applied, a.latest_migration());
    a.close().await;
    b.close().await;
}
