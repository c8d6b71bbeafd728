//! The event log and the audit chain.

use portcullis_core::audit::{BrokenLink, ChainReport};

use crate::orgs::rename;
use crate::support::{ACTOR, Bind, Db, at, one_to};

pub async fn events_are_numbered_per_environment_without_gaps(db: &Db) {
    let a = db.environment("a").await;
    let b = db.environment("b").await;
    let a1 = db.organization(&a.id, "A1", &["a1.com"]).await;
    let b1 = db.organization(&b.id, "B1", &[]).await;
    db.organization(&a.id, "A2", &[]).await;
    let store = &db.store;
    store
        .update_organization(ACTOR, at(3), &a.id, &a1.id, rename("A1 renamed"))
        .await
        .unwrap();
    // A refused change takes no number.
    let refused = db.new_organization("Dup", &["a1.com"]);
    store
        .create_organization(ACTOR, at(4), &a.id, refused)
        .await
        .unwrap_err();
    store
        .delete_organization(ACTOR, at(5), &b.id, &b1.id)
        .await
        .unwrap();
    db.organization(&a.id, "A3", &[]).await;

    assert_eq!(db.event_seqs(&a.id).await, one_to(5));
    assert_eq!(db.event_seqs(&b.id).await, one_to(3));
    let page = store.list_events(&b.id, 0, 10).await.unwrap();
    let types: Vec<&str> = page.events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        types,
        [
            "environment.created",
            "organization.created",
            "organization.deleted"
        ]
    );
    for env in [&a, &b] {
        let report = db.verify(env.id.as_str()).await;
        assert_eq!(report.broken, None);
        let events = db.event_seqs(&env.id).await.len();
        assert_eq!(report.records, events, "one audit record per event");
    }
}

pub async fn events_page_with_after_limit_and_has_more(db: &Db) {
    let env = db.environment("acme").await;
    for i in 0..6 {
        db.organization(&env.id, &format!("Org {i}"), &[]).await;
    }
    let page = async |after: i64, limit: u32| {
        let p = db.store.list_events(&env.id, after, limit).await.unwrap();
        (
            p.events.iter().map(|e| e.seq).collect::<Vec<_>>(),
            p.has_more,
        )
    };
    assert_eq!(page(0, 3).await, (vec![1, 2, 3], true));
    assert_eq!(page(3, 3).await, (vec![4, 5, 6], true));
    assert_eq!(page(6, 3).await, (vec![7], false));
    assert_eq!(page(4, 3).await, (vec![5, 6, 7], false));
    assert_eq!(page(7, 3).await, (vec![], false));
    assert_eq!(page(0, 100).await, (one_to(7), false));
    assert_eq!(page(2, 1).await, (vec![3], true));
}

pub async fn audit_chain_names_the_tampered_record(db: &Db) {
    // One environment (one chain) per kind of tampering, five records each.
    let mut chains = Vec::new();
    for slug in ["edit", "delete", "reorder", "truncate", "untouched"] {
        let env = db.environment(slug).await;
        for i in 0..4 {
            db.organization(&env.id, &format!("{slug} {i}"), &[]).await;
        }
        let report = db.verify(env.id.as_str()).await;
        assert_eq!((report.records, report.broken), (5, None));
        chains.push(env.id.to_string());
    }
    let [edit, delete, reorder, truncate, untouched] = &chains[..] else {
        unreachable!()
    };
    let broken_at = |report: ChainReport| report.broken.map(|BrokenLink { seq, .. }| seq);

    let n = db
        .exec(
            "UPDATE audit_records SET detail = $1 WHERE chain = $2 AND seq = $3",
            &[
                Bind::Text(r#"{"name":"forged"}"#),
                Bind::Text(edit),
                Bind::Int(3),
            ],
        )
        .await;
    assert_eq!(n, 1);
    let report = db.verify(edit).await;
    let reason = report.broken.as_ref().map(|b| b.reason.clone());
    assert!(reason.is_some_and(|r| r.contains("altered")), "{report:?}");
    assert_eq!(broken_at(report), Some(3));

    db.exec(
        "DELETE FROM audit_records WHERE chain = $1 AND seq = $2",
        &[Bind::Text(delete), Bind::Int(3)],
    )
    .await;
    assert_eq!(broken_at(db.verify(delete).await), Some(3));

    // Swap records 2 and 3 (through a free number: the key is (chain, seq)).
    for (from, to) in [(2, -1), (3, 2), (-1, 3)] {
        db.exec(
            "UPDATE audit_records SET seq = $1 WHERE chain = $2 AND seq = $3",
            &[Bind::Int(to), Bind::Text(reorder), Bind::Int(from)],
        )
        .await;
    }
    assert_eq!(broken_at(db.verify(reorder).await), Some(2));

    db.exec(
        "DELETE FROM audit_records WHERE chain = $1 AND seq = $2",
        &[Bind::Text(truncate), Bind::Int(5)],
    )
    .await;
    let report = db.verify(truncate).await;
    let reason = report.broken.as_ref().map(|b| b.reason.clone());
    assert!(reason.is_some_and(|r| r.contains("head")), "{report:?}");
    assert_eq!(broken_at(report), Some(5));

    assert_eq!(
        db.verify(untouched).await.broken,
        None,
        "chains are independent"
    );
}
