//! Organizations and their domains.

use portcullis_core::ids::OrgId;
use portcullis_store::{NewOrganization, OrganizationPatch, StoreError};
use serde_json::json;

use crate::support::{ACTOR, Db, at, conflict_code, one_to};

/// A patch that only renames.
pub fn rename(name: &str) -> OrganizationPatch {
    OrganizationPatch {
        name: Some(name.into()),
        domains: None,
    }
}

pub async fn organization_create_claims_domains(db: &Db) {
    let env = db.environment("acme").await;
    let org = db
        .organization(&env.id, "Acme", &["acme.io", "acme.com"])
        .await;
    let stored = db.store.get_organization(&env.id, &org.id).await.unwrap();
    assert_eq!(stored.name, "Acme");
    assert_eq!(stored.domains, ["acme.com", "acme.io"]);
    for d in ["acme.com", "acme.io"] {
        assert_eq!(db.owner(&env.id, d).await, Some(org.id.clone()));
    }
    assert_eq!(db.owner(&env.id, "other.com").await, None);
    let listed = db
        .store
        .list_organizations(&env.id, None, 10)
        .await
        .unwrap();
    assert_eq!(listed, vec![stored]);

    let page = db.store.list_events(&env.id, 1, 10).await.unwrap();
    let e = &page.events[0];
    assert_eq!((e.seq, e.event.as_str()), (2, "organization.created"));
    assert_eq!(e.organization_id.as_ref(), Some(&org.id));
    let records = db
        .store
        .audit_records(env.id.as_str(), 1, None)
        .await
        .unwrap();
    assert_eq!(records[0].action, "organization.create");
    assert_eq!(records[0].target, org.id.as_str());

    // Another environment's organization is "not found" here.
    let other = db.environment("other").await;
    let err = db
        .store
        .get_organization(&other.id, &org.id)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
}

pub async fn domain_taken_in_the_environment_is_refused_and_writes_nothing(db: &Db) {
    let env = db.environment("acme").await;
    let owner = db.organization(&env.id, "Acme", &["acme.com"]).await;
    let bystander = db.organization(&env.id, "Beta", &["beta.com"]).await;
    let before = db.counts().await;

    let intruder: OrgId = db.store.new_id(at(2));
    let new = NewOrganization {
        id: intruder.clone(),
        name: "Intruder".into(),
        // The first domain is free: it must not stay claimed either.
        domains: vec!["intruder.com".into(), "acme.com".into()],
    };
    let err = db
        .store
        .create_organization(ACTOR, at(2), &env.id, new)
        .await
        .unwrap_err();
    assert_eq!(conflict_code(&err), "domain_taken");
    assert!(err.to_string().contains(owner.id.as_str()), "{err}");

    let patch = OrganizationPatch {
        name: Some("Beta renamed".into()),
        domains: Some(vec!["acme.com".into()]),
    };
    let err = db
        .store
        .update_organization(ACTOR, at(3), &env.id, &bystander.id, patch)
        .await
        .unwrap_err();
    assert_eq!(conflict_code(&err), "domain_taken");

    assert_eq!(db.counts().await, before, "a refused change writes nothing");
    assert!(matches!(
        db.store.get_organization(&env.id, &intruder).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.owner(&env.id, "intruder.com").await, None);
    let kept = db
        .store
        .get_organization(&env.id, &bystander.id)
        .await
        .unwrap();
    assert_eq!(
        (kept.name.as_str(), &kept.domains[..]),
        ("Beta", &["beta.com".to_owned()][..])
    );
    assert_eq!(db.event_seqs(&env.id).await, one_to(3));
}

pub async fn same_domain_is_free_in_another_environment(db: &Db) {
    let a = db.environment("a").await;
    let b = db.environment("b").await;
    let in_a = db.organization(&a.id, "Acme A", &["acme.com"]).await;
    let in_b = db.organization(&b.id, "Acme B", &["acme.com"]).await;
    assert_eq!(db.owner(&a.id, "acme.com").await, Some(in_a.id));
    assert_eq!(db.owner(&b.id, "acme.com").await, Some(in_b.id));
}

pub async fn organization_update_replaces_domains_and_records_previous(db: &Db) {
    let env = db.environment("acme").await;
    let org = db.organization(&env.id, "Acme", &["a.com", "b.com"]).await;
    let patch = OrganizationPatch {
        name: Some("Acme Inc".into()),
        domains: Some(vec!["b.com".into(), "c.com".into()]),
    };
    let updated = db
        .store
        .update_organization(ACTOR, at(10), &env.id, &org.id, patch)
        .await
        .unwrap();
    assert_eq!(updated.updated_at, at(10));
    let stored = db.store.get_organization(&env.id, &org.id).await.unwrap();
    assert_eq!(stored.name, "Acme Inc");
    assert_eq!(stored.domains, ["b.com", "c.com"]);
    assert_eq!(stored.updated_at, at(10));
    assert_eq!(db.owner(&env.id, "a.com").await, None);
    assert_eq!(db.owner(&env.id, "c.com").await, Some(org.id.clone()));

    let page = db.store.list_events(&env.id, 2, 10).await.unwrap();
    assert_eq!(page.events.len(), 1);
    let e = &page.events[0];
    assert_eq!((e.seq, e.event.as_str()), (3, "organization.updated"));
    assert_eq!(
        e.data["previous_attributes"],
        json!({ "name": "Acme", "domains": ["a.com", "b.com"] })
    );
    assert_eq!(e.data["domains"], json!(["b.com", "c.com"]));
    let records = db
        .store
        .audit_records(env.id.as_str(), 2, None)
        .await
        .unwrap();
    assert_eq!(records[0].action, "organization.update");

    let before = db.counts().await;
    let store = &db.store;
    store
        .update_organization(ACTOR, at(11), &env.id, &org.id, rename("Acme Inc"))
        .await
        .unwrap();
    assert_eq!(
        db.counts().await,
        before,
        "a change to nothing records nothing"
    );

    // The released domain is free for another organization.
    db.organization(&env.id, "Other", &["a.com"]).await;
    assert_eq!(db.verify(env.id.as_str()).await.broken, None);
}

pub async fn organization_delete_releases_domains(db: &Db) {
    let env = db.environment("acme").await;
    let org = db.organization(&env.id, "Acme", &["acme.com"]).await;
    let store = &db.store;
    store
        .delete_organization(ACTOR, at(20), &env.id, &org.id)
        .await
        .unwrap();
    assert!(matches!(
        store.get_organization(&env.id, &org.id).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(db.owner(&env.id, "acme.com").await, None);
    assert!(
        store
            .list_organizations(&env.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let page = store.list_events(&env.id, 2, 10).await.unwrap();
    assert_eq!(page.events[0].event, "organization.deleted");
    assert_eq!(page.events[0].organization_id.as_ref(), Some(&org.id));

    let before = db.counts().await;
    let err = store
        .delete_organization(ACTOR, at(21), &env.id, &org.id)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(db.counts().await, before);
    db.organization(&env.id, "Acme again", &["acme.com"]).await;
}
