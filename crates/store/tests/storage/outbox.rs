//! The webhook outbox's hot path: a batch of attempts recorded in one transaction applies each
//! outcome only under its own lease, and a commit wakes whoever watches the store.

use portcullis_core::Timestamp;
use portcullis_core::ids::WebhookId;
use portcullis_core::webhook::{Attempt, Delivery, DeliveryState, EndpointState, WebhookEndpoint};
use portcullis_store::{AttemptOutcome, LeasedAttempt};

use crate::support::{ACTOR, Db, T0, at};

async fn endpoint(db: &Db, env: &portcullis_core::ids::EnvId) -> WebhookEndpoint {
    let e = WebhookEndpoint {
        id: db.store.new_id(T0),
        env_id: env.clone(),
        url: "https://hooks.example.test/in".into(),
        description: "test".into(),
        event_types: vec![],
        enabled: true,
        headers: vec![],
        state: EndpointState::Active,
        sealed_secret: vec![1, 2, 3],
        sealed_previous_secret: None,
        previous_secret_expires_at: None,
        created_at: T0,
        updated_at: T0,
    };
    db.store
        .create_webhook_endpoint(ACTOR, T0, e)
        .await
        .unwrap()
}

fn ended(lease: &str, d: &Delivery, status: u16, outcome: AttemptOutcome) -> LeasedAttempt {
    let succeeded = outcome == AttemptOutcome::Succeeded;
    LeasedAttempt {
        lease: lease.into(),
        endpoint_id: d.endpoint_id.clone(),
        attempt: Attempt {
            delivery_id: d.id.clone(),
            attempted_at: at(10),
            node: "n1".into(),
            status: Some(status),
            latency_ms: 3,
            response: Some(String::new()),
            error: (!succeeded).then(|| format!("the receiver answered {status}")),
            succeeded,
        },
        outcome,
    }
}

async fn lease(db: &Db, e: &WebhookId, owner: &str, now: Timestamp) -> Vec<Delivery> {
    db.store
        .lease_deliveries(e, owner, now, now.plus_seconds(60), 10)
        .await
        .unwrap()
}

pub async fn a_batch_applies_each_outcome_only_under_its_lease(db: &Db) {
    let env = db.environment("hooks").await.id;
    let e = endpoint(db, &env).await;
    db.organization(&env, "One", &[]).await;
    db.organization(&env, "Two", &[]).await;
    let due = db.store.due_webhook_endpoints(at(2), 10).await.unwrap();
    assert_eq!(due.iter().map(|d| &d.id).collect::<Vec<_>>(), vec![&e.id]);
    // The endpoint's own creation event and the two organizations, oldest first.
    let held = lease(db, &e.id, "A", at(2)).await;
    assert_eq!(held.len(), 3);
    assert!(held.windows(2).all(|w| w[0].event_seq < w[1].event_seq));
    assert!(
        db.store
            .due_webhook_endpoints(at(2), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let batch = [
        ended("A", &held[0], 204, AttemptOutcome::Succeeded),
        ended("A", &held[1], 500, AttemptOutcome::RetryAt(at(100))),
        // Lease B never held this delivery (A's lease expired and came back to A, say).
        ended("B", &held[2], 200, AttemptOutcome::Succeeded),
    ];
    let rec = db.store.record_attempts(&batch, at(11)).await.unwrap();
    assert_eq!(rec.lease_lost, vec![held[2].id.clone()]);
    assert!(rec.endpoints_failing.is_empty() && rec.endpoints_recovered.is_empty());
    let get = |i: usize| db.store.get_delivery(&env, &e.id, &held[i].id);
    let d0 = get(0).await.unwrap();
    assert_eq!(
        (d0.state, d0.attempts, d0.last_status, d0.completed_at),
        (DeliveryState::Succeeded, 1, Some(204), Some(at(11)))
    );
    let d1 = get(1).await.unwrap();
    assert_eq!(
        (d1.state, d1.attempts, d1.last_status, d1.next_attempt_at),
        (DeliveryState::Pending, 1, Some(500), Some(at(100)))
    );
    let d2 = get(2).await.unwrap();
    assert_eq!((d2.state, d2.attempts), (DeliveryState::Pending, 0));
    // Every attempt is logged, the one without its lease too.
    for d in &held {
        assert_eq!(db.store.delivery_attempts(&d.id).await.unwrap().len(), 1);
    }
    // Still leased (d2) or not yet due (d1).
    assert!(lease(db, &e.id, "C", at(12)).await.is_empty());

    // A's lease has expired and d1 is due: both fail for good, the endpoint turns failing once.
    let again = lease(db, &e.id, "C", at(100)).await;
    assert_eq!(again.len(), 2);
    let batch: Vec<_> = again
        .iter()
        .map(|d| ended("C", d, 500, AttemptOutcome::GaveUp))
        .collect();
    let rec = db.store.record_attempts(&batch, at(101)).await.unwrap();
    assert_eq!(rec.endpoints_failing, vec![e.id.clone()]);
    assert!(rec.lease_lost.is_empty());
    let failing = db.store.get_webhook_endpoint(&env, &e.id).await.unwrap();
    assert_eq!(failing.state, EndpointState::Failing);
    for d in &again {
        assert_eq!(get_state(db, &env, &e.id, d).await, DeliveryState::Failed);
    }

    // The `webhook_endpoint.failing` event is itself delivered; its success recovers the
    // endpoint.
    let last = lease(db, &e.id, "D", at(102)).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].event_type, "webhook_endpoint.failing");
    let rec = db
        .store
        .record_attempts(
            &[ended("D", &last[0], 200, AttemptOutcome::Succeeded)],
            at(103),
        )
        .await
        .unwrap();
    assert_eq!(rec.endpoints_recovered, vec![e.id.clone()]);
    let active = db.store.get_webhook_endpoint(&env, &e.id).await.unwrap();
    assert_eq!(active.state, EndpointState::Active);
}

async fn get_state(
    db: &Db,
    env: &portcullis_core::ids::EnvId,
    e: &WebhookId,
    d: &Delivery,
) -> DeliveryState {
    db.store.get_delivery(env, e, &d.id).await.unwrap().state
}

pub async fn a_commit_wakes_the_watchers_and_a_rollback_does_not(db: &Db) {
    let env = db.environment("wake").await.id;
    let mut commits = db.store.watch_commits();
    commits.borrow_and_update();
    let tx = db.store.begin().await.unwrap();
    tx.rollback().await.unwrap();
    assert!(!commits.has_changed().unwrap());
    db.organization(&env, "One", &[]).await;
    assert!(commits.has_changed().unwrap());
}

pub async fn a_released_lease_makes_its_delivery_due_again_at_once(db: &Db) {
    let env = db.environment("release").await.id;
    let e = endpoint(db, &env).await;
    db.organization(&env, "One", &[]).await;
    let held = lease(db, &e.id, "A", at(2)).await;
    assert_eq!(held.len(), 2);
    // Only the lease that holds a delivery can give it back.
    db.store
        .release_leases(&[("A", &held[0].id), ("B", &held[1].id)])
        .await
        .unwrap();
    let again = lease(db, &e.id, "C", at(3)).await;
    assert_eq!(
        again.iter().map(|d| &d.id).collect::<Vec<_>>(),
        vec![&held[0].id]
    );
}
