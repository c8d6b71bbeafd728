//! `portcullis credentials report` as an operator runs it, against a server on a fake clock:
//! exit 0 when every credential is in order, 1 when one is stale (`--stale`), past its rotation
//! due date or expired, 0 again once rotated with the CLI; 2 for bad input.

use portcullis_core::{FakeClock, Timestamp};
use portcullis_testkit::server::{Backend, TestServer};
use reqwest::StatusCode;
use serde_json::json;

use super::{client, run};

const T0: Timestamp = Timestamp(1_800_000_000_000);
const DAY: i64 = 86_400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_report_exits_1_when_something_is_due_and_0_after_rotation() {
    let clock = FakeClock::new(T0);
    let s = TestServer::builder()
        .backend(Backend::Sqlite)
        .clock(clock.clone())
        .start()
        .await
        .unwrap();
    let (st, _) = s
        .admin_post("/environments", json!({ "slug": "ops" }))
        .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, c) = s
        .admin_post(
            "/environments/ops/clients",
            json!({ "name": "Billing", "grant_types": ["client_credentials"], "scopes": ["jobs"] }),
        )
        .await;
    assert_eq!(st, StatusCode::CREATED, "{c}");
    let client_id = c["id"].as_str().unwrap().to_owned();
    let r = run(client(
        &s,
        &[
            "api-key",
            "create",
            "--env",
            "ops",
            "--name",
            "puller",
            "--expires-in",
            "365",
        ],
    ))
    .await;
    r.ok();
    assert!(r.stdout.contains("secret"), "{}", r.stdout);
    let r = run(client(&s, &["api-key", "list", "--env", "ops", "--json"])).await;
    let key = r.json()["data"][0].clone();
    let key_id = key["id"].as_str().unwrap().to_owned();
    assert_eq!(key["expires_at"], T0.plus_seconds(365 * DAY).to_rfc3339());

    // Everything fresh: exit 0, a table naming each credential and its owner.
    let r = run(client(&s, &["credentials", "report", "--env", "ops"])).await;
    r.ok();
    for want in [
        "KIND",
        "OWNER",
        "ROTATION_DUE",
        "client_secret",
        "environment_api_key",
        "Billing",
        "puller",
        "2 credentials, 0 with problems",
    ] {
        assert!(r.stdout.contains(want), "{want} in {}", r.stdout);
    }
    let r = run(client(
        &s,
        &["credentials", "report", "--env", "ops", "--json"],
    ))
    .await;
    r.ok();
    assert_eq!(r.json()["object"], "credential_report");
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);

    // Two days unused: stale with --stale 1 (exit 1), fine without it (exit 0).
    clock.advance_seconds(2 * DAY);
    let r = run(client(
        &s,
        &["credentials", "report", "--env", "ops", "--stale", "1"],
    ))
    .await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("stale"), "{}", r.stdout);
    assert!(r.stdout.contains("2 with problems"), "{}", r.stdout);
    run(client(&s, &["credentials", "report", "--env", "ops"]))
        .await
        .ok();

    // Past the 90 days: both are due for rotation.
    clock.set(T0.plus_seconds(91 * DAY));
    let r = run(client(&s, &["credentials", "report", "--env", "ops"])).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("rotation_overdue"), "{}", r.stdout);
    assert!(r.stdout.contains("2 rotation overdue"), "{}", r.stdout);
    let r = run(client(
        &s,
        &["credentials", "report", "--env", "ops", "--json"],
    ))
    .await;
    assert_eq!(r.code, 1, "--json keeps the exit code");
    assert_eq!(r.json()["summary"]["rotation_overdue"], 2);

    // Rotated with the CLI: in order again (the old secret is in its overlap, the old key revoked).
    let r = run(client(
        &s,
        &[
            "client",
            "rotate-secret",
            "--env",
            "ops",
            &client_id,
            "--expires-in",
            "30",
        ],
    ))
    .await;
    r.ok();
    assert!(r.stdout.contains("pcsec_"), "{}", r.stdout);
    assert!(r.stdout.contains("secret_expires_at"), "{}", r.stdout);
    let r = run(client(
        &s,
        &[
            "api-key",
            "rotate",
            &key_id,
            "--overlap-seconds",
            "0",
            "--json",
        ],
    ))
    .await;
    r.ok();
    let rotated = r.json();
    assert!(rotated["secret"].as_str().unwrap().starts_with("pcenv_"));
    assert_eq!(rotated["replaced"]["id"], key_id.as_str());
    assert!(rotated["replaced"]["revoked_at"].is_string());
    assert_eq!(
        rotated["expires_at"],
        T0.plus_seconds(91 * DAY + 365 * DAY).to_rfc3339(),
        "the new key keeps the old key's lifetime"
    );
    let r = run(client(&s, &["credentials", "report", "--env", "ops"])).await;
    r.ok();
    assert!(r.stdout.contains("overlap"), "{}", r.stdout);
    assert!(r.stdout.contains("revoked"), "{}", r.stdout);

    // Without --env the global admin keys count too: the bootstrap key is 91 days old.
    let r = run(client(&s, &["credentials", "report"])).await;
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("(global)"), "{}", r.stdout);
    assert!(r.stdout.contains("bootstrap"), "{}", r.stdout);

    // Bad input: exit 2.
    let r = run(client(&s, &["credentials", "report", "--stale", "0"])).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--stale"), "{}", r.stderr);
    let r = run(client(&s, &["credentials", "report", "--env", "nowhere"])).await;
    assert!(r.input_error().contains("not found"), "{}", r.stderr);
}
