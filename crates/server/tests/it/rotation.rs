//! The signing-key timeline, driven by a fake clock (key lifetime 1 day, grace 1 day):
//! the next key is published before it signs, a retired key stays verifiable during its grace
//! period and disappears after it, and the scheduler rotates a key past its lifetime.

use std::time::Duration;

use portcullis_core::ids::{EnvId, PrefixedId};
use portcullis_core::{FakeClock, Timestamp};
use portcullis_crypto::jws::verify_compact;
use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{create_env, jwk, jwks, kids, str_of};

both_backends!(
    rotation_timeline_publishes_before_use_and_retires_after_grace,
    scheduler_rotates_keys_past_their_lifetime,
    manual_rotation_through_the_admin_api,
);

const T0: Timestamp = Timestamp(1_800_000_000_000);
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

async fn server(backend: Backend, clock: &FakeClock) -> TestServer {
    TestServer::builder()
        .backend(backend)
        .clock(clock.clone())
        .flag("key_lifetime_days", "1")
        .flag("key_grace_days", "1")
        .start()
        .await
        .unwrap()
}

/// `(kid, state, published)` of each key of `env`, from the admin API.
async fn key_states(s: &TestServer, env: &str) -> Vec<(String, String, bool)> {
    let (status, v) = s.admin_get(&format!("/environments/{env}/keys")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let mut out: Vec<_> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            (
                str_of(k, "id").to_owned(),
                str_of(k, "state").to_owned(),
                k["published"] == true,
            )
        })
        .collect();
    out.sort();
    out
}

fn kid_in_state(states: &[(String, String, bool)], state: &str) -> String {
    let found: Vec<_> = states.iter().filter(|k| k.1 == state).collect();
    assert_eq!(found.len(), 1, "exactly one {state} key: {states:?}");
    found[0].0.clone()
}

async fn sign(s: &TestServer, env: &EnvId, sub: &str) -> (String, String) {
    let signer = s.app().keys.signer(env, s.app().now()).await.unwrap();
    let token = signer
        .sign_compact(Some("JWT"), &json!({ "sub": sub }))
        .unwrap();
    (signer.kid().to_owned(), token)
}

#[track_caller]
fn verifies(set: &Value, kid: &str, token: &str) -> bool {
    jwk(set, kid).is_some_and(|k| verify_compact(k, token).is_some())
}

async fn rotation_timeline_publishes_before_use_and_retires_after_grace(backend: Backend) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    let env = create_env(&s, "rot", json!({})).await;
    assert_eq!(
        env["key_policy"],
        json!({ "lifetime_seconds": DAY, "grace_seconds": DAY })
    );
    let env_id = EnvId::parse(str_of(&env, "id")).unwrap();
    let keys = &s.app().keys;

    // Day 0: the active key signs; the next key is published and does not sign.
    let states = key_states(&s, "rot").await;
    let first = kid_in_state(&states, "active");
    let next = kid_in_state(&states, "next");
    let jwks0 = jwks(&s, "rot").await;
    assert_eq!(kids(&jwks0), {
        let mut k = vec![first.clone(), next.clone()];
        k.sort();
        k
    });
    let (kid, token_first) = sign(&s, &env_id, "before").await;
    assert_eq!(kid, first);
    assert_ne!(
        kid, next,
        "the next key does not sign before it becomes active"
    );
    assert!(verifies(&jwks0, &first, &token_first));

    // Just before the lifetime ends nothing rotates.
    clock.advance_seconds(DAY - 1);
    assert_eq!(
        keys.rotate_due(s.app().now()).await.unwrap(),
        Vec::<EnvId>::new()
    );
    assert_eq!(sign(&s, &env_id, "x").await.0, first);
    assert_eq!(jwks(&s, "rot").await, jwks0);

    // At the lifetime: the published next key signs, the old one retires but stays published.
    clock.advance_seconds(1);
    let retired_at = s.app().now();
    assert_eq!(
        keys.rotate_due(retired_at).await.unwrap(),
        vec![env_id.clone()]
    );
    assert_eq!(
        keys.rotate_due(retired_at).await.unwrap(),
        Vec::<EnvId>::new(),
        "once"
    );
    let (kid, token_second) = sign(&s, &env_id, "after").await;
    assert_eq!(
        kid, next,
        "the key that signs now is the one published a day ago"
    );
    let states = key_states(&s, "rot").await;
    assert_eq!(kid_in_state(&states, "active"), next);
    assert_eq!(kid_in_state(&states, "retired"), first);
    let newest = kid_in_state(&states, "next");
    assert!(newest != first && newest != next);
    assert!(
        states.iter().all(|k| k.2),
        "all three published: {states:?}"
    );
    let jwks1 = jwks(&s, "rot").await;
    assert_eq!(kids(&jwks1).len(), 3, "{jwks1}");
    assert!(
        verifies(&jwks1, &first, &token_first),
        "a token of the retired key still verifies"
    );
    assert!(verifies(&jwks1, &next, &token_second));
    assert!(
        jwk(&jwks1, &newest).is_some(),
        "the following key is published ahead"
    );

    // Within grace (a second before its end), still there.
    clock.set(retired_at.plus_seconds(DAY - 1));
    let jwks2 = jwks(&s, "rot").await;
    assert!(
        verifies(&jwks2, &first, &token_first),
        "still verifiable one second before grace ends"
    );
    assert_eq!(
        keys.rotate_due(s.app().now()).await.unwrap(),
        Vec::<EnvId>::new()
    );

    // After grace: gone from the JWKS (the key list still shows it, unpublished).
    clock.set(retired_at.plus_seconds(DAY));
    let jwks3 = jwks(&s, "rot").await;
    assert!(
        jwk(&jwks3, &first).is_none(),
        "retired key gone after grace: {jwks3}"
    );
    let mut expected = vec![next.clone(), newest.clone()];
    expected.sort();
    assert_eq!(kids(&jwks3), expected);
    let states = key_states(&s, "rot").await;
    assert!(
        states
            .iter()
            .any(|k| k.0 == first && k.1 == "retired" && !k.2),
        "{states:?}"
    );

    // The second rotation follows the same rule.
    assert_eq!(
        keys.rotate_due(s.app().now()).await.unwrap(),
        vec![env_id.clone()]
    );
    assert_eq!(sign(&s, &env_id, "third").await.0, newest);

    // Every rotation is in the event log and the audit chain, by the scheduler.
    let (_, events) = s.admin_get("/environments/rot/events").await;
    let rotations: Vec<&Value> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "signing_key.rotated")
        .collect();
    assert_eq!(rotations.len(), 2, "{events}");
    assert_eq!(rotations[0]["data"]["activated"], next.as_str());
    assert_eq!(rotations[0]["data"]["retired"], first.as_str());
    assert_eq!(rotations[0]["data"]["published"], newest.as_str());
    let (_, audit) = s.admin_get("/environments/rot/audit").await;
    let by_scheduler = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "signing_key.rotate" && r["actor"] == "system:key-scheduler")
        .count();
    assert_eq!(by_scheduler, 2, "{audit}");
}

async fn scheduler_rotates_keys_past_their_lifetime(backend: Backend) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    let env = create_env(&s, "sched", json!({})).await;
    let stay = create_env(&s, "stay", json!({ "key_lifetime_days": 30 })).await;
    let env_id = EnvId::parse(str_of(&env, "id")).unwrap();
    let stay_id = EnvId::parse(str_of(&stay, "id")).unwrap();
    let next = kid_in_state(&key_states(&s, "sched").await, "next");
    let stay_active = sign(&s, &stay_id, "x").await.0;

    // One scheduler pass (the first runs at once; `stop` ends the loop after it).
    let pass = || async {
        let (tx, rx) = tokio::sync::watch::channel(false);
        let task = tokio::spawn(portcullis_server::run_key_scheduler(
            s.app().clone(),
            Duration::from_secs(3_600),
            rx,
        ));
        tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .unwrap()
            .unwrap();
    };
    clock.advance_seconds(12 * HOUR);
    pass().await;
    assert_ne!(sign(&s, &env_id, "x").await.0, next, "not due yet");
    clock.advance_seconds(12 * HOUR);
    pass().await;
    assert_eq!(
        sign(&s, &env_id, "x").await.0,
        next,
        "rotated by the scheduler at its lifetime"
    );
    assert_eq!(
        sign(&s, &stay_id, "x").await.0,
        stay_active,
        "an environment with a longer lifetime is left alone"
    );
}

async fn manual_rotation_through_the_admin_api(backend: Backend) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    create_env(&s, "man", json!({ "signing_alg": "EdDSA" })).await;
    let before = key_states(&s, "man").await;
    let active = kid_in_state(&before, "active");
    let next = kid_in_state(&before, "next");
    // Served from the key ring's cache, which a local rotation must invalidate at once.
    let cached = jwks(&s, "man").await;
    let (status, after) = s
        .admin_post("/environments/man/keys/rotate", json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{after}");
    let states = key_states(&s, "man").await;
    assert_eq!(kid_in_state(&states, "active"), next);
    assert_eq!(kid_in_state(&states, "retired"), active);
    let newest = kid_in_state(&states, "next");
    let now = jwks(&s, "man").await;
    assert_ne!(now, cached);
    assert!(
        jwk(&now, &newest).is_some_and(|k| k["crv"] == "Ed25519"),
        "{now}"
    );
    let env_id = EnvId::parse(str_of(&s.admin_get("/environments/man").await.1, "id")).unwrap();
    assert_eq!(sign(&s, &env_id, "x").await.0, next);
    assert_eq!(after["data"].as_array().unwrap().len(), 3);
}
