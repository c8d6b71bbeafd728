//! Audit checkpoints: the periodic task signs an environment's chain head only when it moved;
//! `POST …/audit/checkpoints` does the same on demand; `GET …/audit/verify` checks every stored
//! checkpoint, so a tail deleted together with a rewound head is named; nothing is signed over a
//! truncated or rewritten chain; a forged checkpoint is refused; and a checkpoint signed by a key
//! retired long ago still verifies, on the live chain and in an export.

use std::time::Duration;

use portcullis_core::ids::{EnvId, PrefixedId};
use portcullis_core::{FakeClock, Timestamp};
use portcullis_crypto::jws::{SigningKey, generate_pkcs8, verify_with_key};
use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{assert_error, create_env, create_org, jwk, jwks, str_of};

both_backends!(
    audit_checkpoints_are_written_only_when_the_head_moved,
    audit_verify_names_a_tail_truncated_below_a_checkpoint,
    audit_verify_refuses_a_forged_checkpoint,
    audit_checkpoint_by_a_retired_key_still_verifies,
);

const T0: Timestamp = Timestamp(1_800_000_000_000);
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

/// One pass of the periodic task: the first runs at once, and `stop` ends the loop after it.
async fn task_pass(s: &TestServer) {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(portcullis_server::checkpoints::run_checkpointer(
        s.app().clone(),
        Duration::from_secs(900),
        rx,
    ));
    tx.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();
}

/// The stored checkpoints of `env`: `(seq, at)`, oldest first.
async fn checkpoints(s: &TestServer, env: &str) -> Vec<(i64, String)> {
    let (status, v) = s
        .admin_get(&format!("/environments/{env}/audit/checkpoints?limit=100"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["seq"].as_i64().unwrap(), str_of(c, "at").to_owned()))
        .collect()
}

async fn checkpoint_now(s: &TestServer, env: &str) -> (StatusCode, Value) {
    s.admin_post(&format!("/environments/{env}/audit/checkpoints"), json!({}))
        .await
}

async fn verify(s: &TestServer, env: &str) -> Value {
    let (status, v) = s
        .admin_get(&format!("/environments/{env}/audit/verify"))
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    v
}

/// The stored audit records of `env`'s chain, through the API.
async fn records(s: &TestServer, env: &str) -> Vec<Value> {
    let (_, v) = s
        .admin_get(&format!("/environments/{env}/audit?limit=100"))
        .await;
    v["data"].as_array().unwrap().clone()
}

/// SQL beside the server, as someone with write access to the database would run it.
async fn tamper(s: &TestServer, sql: &str, binds: &[Value]) {
    let mut tx = s.app().store.begin().await.unwrap();
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()));
    for b in binds {
        q = match b {
            Value::Number(n) => q.bind(n.as_i64().unwrap()),
            other => q.bind(other.as_str().unwrap().to_owned()),
        };
    }
    let n = q.execute(&mut *tx).await.unwrap().rows_affected();
    assert_eq!(n, 1, "{sql} changed {n} rows");
    tx.commit().await.unwrap();
}

/// Deletes the records of `env`'s chain after `keep` and rewinds the head to record `keep`: a
/// consistent, shorter chain.
async fn truncate(s: &TestServer, env: &str, keep: i64) {
    let all = records(s, env).await;
    let chain = str_of(&all[0], "chain").to_owned();
    for r in all.iter().filter(|r| r["seq"].as_i64().unwrap() > keep) {
        tamper(
            s,
            "DELETE FROM audit_records WHERE chain = $1 AND seq = $2",
            &[json!(chain), r["seq"].clone()],
        )
        .await;
    }
    let kept = &all[usize::try_from(keep).unwrap() - 1];
    tamper(
        s,
        "UPDATE audit_heads SET seq = $1, hash = $2 WHERE chain = $3",
        &[json!(keep), kept["hash"].clone(), json!(chain)],
    )
    .await;
}

async fn audit_checkpoints_are_written_only_when_the_head_moved(backend: Backend) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    create_env(&s, "a", json!({})).await;
    create_env(&s, "b", json!({})).await;
    assert!(checkpoints(&s, "a").await.is_empty());

    task_pass(&s).await;
    let first = checkpoints(&s, "a").await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].1, T0.to_rfc3339(), "signed at the clock's now");
    assert_eq!(checkpoints(&s, "b").await.len(), 1);

    clock.advance_seconds(900);
    task_pass(&s).await;
    assert_eq!(checkpoints(&s, "a").await, first, "the head did not move");

    create_org(&s, "a", "Acme", &[]).await;
    clock.advance_seconds(900);
    task_pass(&s).await;
    let a = checkpoints(&s, "a").await;
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[1].0, a[0].0 + 1, "the new head");
    assert_eq!(checkpoints(&s, "b").await.len(), 1, "b did not move");

    // On demand: nothing new while the head stays, a new checkpoint once it moves.
    let (status, v) = checkpoint_now(&s, "a").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["created"], false);
    assert_eq!(v["checkpoint"]["seq"], a[1].0);
    create_org(&s, "b", "Beta", &[]).await;
    let (status, v) = checkpoint_now(&s, "b").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["created"], true);
    // A checkpoint is not an audit record: writing one leaves the head where it was.
    let head = records(&s, "b").await.last().unwrap().clone();
    assert_eq!(v["checkpoint"]["seq"], head["seq"]);
    assert_eq!(v["checkpoint"]["hash"], head["hash"]);

    // The JWS: the environment's active key, its own `typ`, the head and whose chain it is.
    let cp = &v["checkpoint"];
    let keys = jwks(&s, "b").await;
    let (header, payload) =
        verify_with_key(jwk(&keys, str_of(cp, "kid")).unwrap(), str_of(cp, "jws")).unwrap();
    assert_eq!(header["typ"], "audit-checkpoint+jwt");
    let (_, env) = s.admin_get("/environments/b").await;
    assert_eq!(
        payload,
        json!({
            "iss": env["issuer"], "environment": env["id"], "chain": env["id"],
            "seq": head["seq"], "hash": head["hash"], "at": T0.plus_seconds(1_800).millis(),
        })
    );

    let report = verify(&s, "a").await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checkpoints"], 2, "{report}");
    assert_eq!(report["latest_checkpoint"]["seq"], a[1].0);
    // The global chain has no environment key, hence no checkpoints.
    let (_, global) = s.admin_get("/audit/verify").await;
    assert_eq!(global["ok"], true);
    assert_eq!(global["checkpoints"], 0);
    assert_eq!(global["latest_checkpoint"], Value::Null);

    let (_, doc) = s.admin_get("/openapi.json").await;
    let path = &doc["paths"]["/admin/v1/environments/{env}/audit/checkpoints"];
    assert!(
        path["get"].is_object() && path["post"].is_object(),
        "{path}"
    );
}

async fn audit_verify_names_a_tail_truncated_below_a_checkpoint(backend: Backend) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    create_env(&s, "t", json!({})).await;
    for i in 0..4 {
        create_org(&s, "t", &format!("Org {i}"), &[]).await;
    }
    let (status, v) = checkpoint_now(&s, "t").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["checkpoint"]["seq"], 5);
    let at = T0.to_rfc3339();

    truncate(&s, "t", 3).await;
    let report = verify(&s, "t").await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["broken_at"], 4);
    assert_eq!(
        report["reason"],
        format!(
            "checkpoint 5 (signed {at}) covers record 5, but the chain ends at record 3: records 4 to 5 are missing (the tail was truncated)"
        )
    );
    // Nothing is signed over the shorter chain, on demand or by the task.
    let refused = checkpoint_now(&s, "t").await;
    assert_error(&refused, StatusCode::CONFLICT, "audit_chain_broken");
    assert_eq!(
        refused.1["message"],
        format!(
            "the chain is broken at record 4: the chain head is record 3, below checkpoint 5 (signed {at}): the tail was truncated (no checkpoint written)"
        )
    );
    task_pass(&s).await;
    assert_eq!(checkpoints(&s, "t").await.len(), 1);

    // New records after the truncation do not hide it: record 5 comes back with another hash.
    create_org(&s, "t", "After 1", &[]).await;
    let report = verify(&s, "t").await;
    assert_eq!(report["broken_at"], 5, "{report}");
    assert!(
        report["reason"]
            .as_str()
            .unwrap()
            .ends_with("record 5 is missing (the tail was truncated)"),
        "{report}"
    );
    create_org(&s, "t", "After 2", &[]).await;
    let report = verify(&s, "t").await;
    assert_eq!(report["broken_at"], 5, "{report}");
    assert_eq!(
        report["reason"],
        format!(
            "record 5 does not match checkpoint 5 (signed {at}): the chain was rewritten after the checkpoint"
        )
    );
    assert_error(
        &checkpoint_now(&s, "t").await,
        StatusCode::CONFLICT,
        "audit_chain_broken",
    );

    // Editing a record in the middle is named as the broken link it is, before any checkpoint.
    let s2 = server(backend, &clock).await;
    create_env(&s2, "m", json!({})).await;
    create_org(&s2, "m", "Org", &[]).await;
    checkpoint_now(&s2, "m").await;
    let chain = str_of(&records(&s2, "m").await[0], "chain").to_owned();
    tamper(
        &s2,
        "UPDATE audit_records SET detail = $1 WHERE chain = $2 AND seq = $3",
        &[json!("{}"), json!(chain), json!(1)],
    )
    .await;
    let report = verify(&s2, "m").await;
    assert_eq!(report["broken_at"], 1, "{report}");
    assert_eq!(
        report["reason"],
        "record 1 was altered: its hash does not match"
    );
}

async fn audit_verify_refuses_a_forged_checkpoint(backend: Backend) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    let env = create_env(&s, "f", json!({})).await;
    create_org(&s, "f", "Org", &[]).await;
    let head = records(&s, "f").await.last().unwrap().clone();
    let chain = str_of(&env, "id");
    let active = {
        let (_, keys) = s.admin_get("/environments/f/keys").await;
        keys["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["state"] == "active")
            .map(|k| str_of(k, "id").to_owned())
            .unwrap()
    };
    let claims = json!({
        "iss": env["issuer"], "environment": chain, "chain": chain,
        "seq": head["seq"], "hash": head["hash"], "at": T0.millis(),
    });
    // Another key presenting the environment's active kid; then another environment's key.
    let der = generate_pkcs8(portcullis_core::model::SigningAlg::ES256).unwrap();
    let impostor =
        SigningKey::from_pkcs8(&active, portcullis_core::model::SigningAlg::ES256, &der).unwrap();
    let forged = impostor
        .sign_compact(Some("audit-checkpoint+jwt"), &claims)
        .unwrap();
    let insert = "INSERT INTO audit_checkpoints (chain, seq, hash, at, kid, jws) VALUES ($1, $2, $3, $4, $5, $6)";
    tamper(
        &s,
        insert,
        &[
            json!(chain),
            head["seq"].clone(),
            head["hash"].clone(),
            json!(T0.millis()),
            json!(active),
            json!(forged),
        ],
    )
    .await;
    let report = verify(&s, "f").await;
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(report["broken_at"], 2);
    assert_eq!(
        report["reason"],
        "checkpoint 2: its signature does not verify with the environment's keys (forged, or signed by another key)"
    );

    let other = create_env(&s, "other", json!({})).await;
    let other_id: EnvId = PrefixedId::parse(str_of(&other, "id")).unwrap();
    let theirs = s.app().keys.signer(&other_id, T0).await.unwrap();
    let signed_elsewhere = theirs
        .sign_compact(Some("audit-checkpoint+jwt"), &claims)
        .unwrap();
    tamper(
        &s,
        "UPDATE audit_checkpoints SET jws = $1, kid = $2 WHERE chain = $3",
        &[json!(signed_elsewhere), json!(theirs.kid()), json!(chain)],
    )
    .await;
    assert_eq!(
        verify(&s, "f").await["reason"],
        "checkpoint 2: its signature does not verify with the environment's keys (forged, or signed by another key)"
    );

    // The environment's own key, but another kind of token: not a checkpoint.
    let ours_id: EnvId = PrefixedId::parse(chain).unwrap();
    let ours = s.app().keys.signer(&ours_id, T0).await.unwrap();
    let wrong_typ = ours.sign_compact(Some("JWT"), &claims).unwrap();
    tamper(
        &s,
        "UPDATE audit_checkpoints SET jws = $1 WHERE chain = $2",
        &[json!(wrong_typ), json!(chain)],
    )
    .await;
    assert_eq!(
        verify(&s, "f").await["reason"],
        "checkpoint 2: it is not an audit checkpoint (typ \"JWT\")"
    );
    // A genuine checkpoint whose row was edited to claim a later record.
    let genuine = ours
        .sign_compact(Some("audit-checkpoint+jwt"), &claims)
        .unwrap();
    tamper(
        &s,
        "UPDATE audit_checkpoints SET jws = $1, seq = $2 WHERE chain = $3",
        &[json!(genuine), json!(9), json!(chain)],
    )
    .await;
    let report = verify(&s, "f").await;
    assert_eq!(report["broken_at"], 9, "{report}");
    assert!(
        report["reason"].as_str().unwrap().starts_with(
            "checkpoint 9: the stored row does not match its signed payload (record 2 "
        ),
        "{report}"
    );
}

async fn audit_checkpoint_by_a_retired_key_still_verifies(backend: Backend) {
    let clock = FakeClock::new(T0);
    let s = server(backend, &clock).await;
    create_env(&s, "r", json!({})).await;
    let (status, v) = checkpoint_now(&s, "r").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let kid = str_of(&v["checkpoint"], "kid").to_owned();
    // Two rotations and a grace period later, the key that signed it is no longer published.
    for _ in 0..2 {
        clock.advance_seconds(2 * DAY);
        let (status, r) = s.admin_post("/environments/r/keys/rotate", json!({})).await;
        assert_eq!(status, StatusCode::OK, "{r}");
    }
    clock.advance_seconds(2 * DAY);
    assert!(jwk(&jwks(&s, "r").await, &kid).is_none());
    let report = verify(&s, "r").await;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["checkpoints"], 1);
    // The export carries that checkpoint and, beside the published keys, the key that signed it.
    let text = s
        .client()
        .get(s.at("/admin/v1/environments/r/audit/export"))
        .bearer_auth(s.admin_key())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let header: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(header["checkpoints"], json!([v["checkpoint"]["jws"]]));
    assert!(jwk(&header["jwks"], &kid).is_some(), "{}", header["jwks"]);
}
