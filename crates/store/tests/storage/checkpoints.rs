//! Audit checkpoints as stored: one per chain and number (a second signer of the same head is
//! ignored), the latest overall or at or below a number, and pages in number order.

use portcullis_core::checkpoint::Checkpoint;

use crate::support::{Db, at};

fn checkpoint(chain: &str, seq: i64, jws: &str) -> Checkpoint {
    Checkpoint {
        chain: chain.to_owned(),
        seq,
        hash: format!("{seq:064x}"),
        at: at(seq),
        kid: "sk_test".to_owned(),
        jws: jws.to_owned(),
    }
}

pub async fn audit_checkpoints_are_kept_once_per_number(db: &Db) {
    let store = &db.store;
    assert_eq!(store.latest_checkpoint("env_a", None).await.unwrap(), None);
    for seq in [3, 7, 12] {
        assert!(
            store
                .insert_checkpoint(&checkpoint("env_a", seq, "first"))
                .await
                .unwrap()
        );
    }
    assert!(
        store
            .insert_checkpoint(&checkpoint("env_b", 20, "b"))
            .await
            .unwrap()
    );
    // Another node signed the same head: the first checkpoint stays as it was.
    assert!(
        !store
            .insert_checkpoint(&checkpoint("env_a", 7, "second"))
            .await
            .unwrap()
    );
    let seven = store
        .latest_checkpoint("env_a", Some(11))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(seven, checkpoint("env_a", 7, "first"));
    assert_eq!(
        store
            .latest_checkpoint("env_a", None)
            .await
            .unwrap()
            .map(|c| c.seq),
        Some(12)
    );
    assert_eq!(
        store.latest_checkpoint("env_a", Some(2)).await.unwrap(),
        None
    );
    let seqs = |v: Vec<Checkpoint>| v.into_iter().map(|c| c.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(store.checkpoints("env_a", 0, None).await.unwrap()),
        [3, 7, 12]
    );
    assert_eq!(
        seqs(store.checkpoints("env_a", 3, Some(1)).await.unwrap()),
        [7]
    );
    assert_eq!(
        seqs(store.checkpoints("env_a", 12, None).await.unwrap()),
        Vec::<i64>::new()
    );
}
