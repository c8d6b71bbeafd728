//! The `*_in` writes that `apply` runs in one transaction: they commit together or not at all,
//! and what they return is what the rows hold (a later optimistic check on it passes).

use portcullis_core::event::EventType;
use portcullis_core::ids::ConnectionId;
use portcullis_core::sso::{Connection, ConnectionState, ConnectionType};
use portcullis_store::ConnectionChange;
use serde_json::json;

use crate::support::{ACTOR, Db, at};

async fn write_org_and_connection(db: &Db, env: &portcullis_core::ids::EnvId, commit: bool) {
    let now = at(100);
    let mut tx = db.store.begin().await.unwrap();
    let org = db
        .store
        .create_organization_in(
            &mut tx,
            ACTOR,
            now,
            env,
            db.new_organization("Initech", &["initech.test"]),
        )
        .await
        .unwrap();
    let id: ConnectionId = db.store.new_id(now);
    // Built earlier than it is written (as apply does): the returned value carries the row's time.
    let made = db
        .store
        .create_connection_in(
            &mut tx,
            ACTOR,
            now,
            Connection {
                id,
                env_id: env.clone(),
                org_id: org.id.clone(),
                kind: ConnectionType::Oidc,
                name: "sso".into(),
                state: ConnectionState::Draft,
                config: json!({}),
                sealed_secrets: None,
                created_at: at(99),
                updated_at: at(99),
            },
        )
        .await
        .unwrap();
    assert_eq!(made.updated_at, now);
    let change = ConnectionChange {
        kind: EventType::ConnectionActivated,
        action: "connection.activate",
        detail: json!({}),
    };
    let after = Connection {
        state: ConnectionState::Active,
        ..made.clone()
    };
    db.store
        .update_connection_in(&mut tx, ACTOR, now, &made, after, change)
        .await
        .unwrap();
    if commit {
        tx.commit().await.unwrap();
    } else {
        drop(tx);
    }
}

pub async fn writes_in_one_transaction_commit_together_or_not_at_all(db: &Db) {
    let env = db.environment("acme").await;
    let before = db.counts().await;
    write_org_and_connection(db, &env.id, false).await;
    assert_eq!(
        db.counts().await,
        before,
        "rolled back: no organization, event or audit record"
    );
    assert!(
        db.store
            .list_connections(&env.id, None)
            .await
            .unwrap()
            .is_empty()
    );
    write_org_and_connection(db, &env.id, true).await;
    let after = db.counts().await;
    assert_eq!(after["organizations"], before["organizations"] + 1);
    assert_eq!(
        after["events"],
        before["events"] + 3,
        "organization.created, connection.created, connection.activated"
    );
    let conns = db.store.list_connections(&env.id, None).await.unwrap();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].state, ConnectionState::Active);
}
