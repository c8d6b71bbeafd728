//! Stop, start on the same data directory and database: everything is still there, the JWKS is
//! identical and the same key signs. A wrong or missing master key stops the start, naming the
//! file, and damages nothing.

use portcullis_core::ids::{EnvId, PrefixedId};
use portcullis_crypto::jws::verify_compact;
use portcullis_crypto::{MasterKey, SystemRandom};
use portcullis_testkit::server::{Backend, Storage, TestServer};
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{counts, create_env, create_org, jwk, jwks, str_of};

both_backends!(
    restart_keeps_everything_and_the_same_keys_sign,
    wrong_or_missing_master_key_stops_the_start,
    master_key_file_outside_the_data_directory,
);

async fn restart_keeps_everything_and_the_same_keys_sign(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    let env = create_env(&s, "prod", json!({})).await;
    create_env(&s, "edge", json!({ "signing_alg": "EdDSA" })).await;
    let org = create_org(&s, "prod", "Acme", &["example.com"]).await;
    let (_, key) = s.admin_post("/api-keys", json!({ "name": "ops" })).await;
    let env_id = EnvId::parse(str_of(&env, "id")).unwrap();
    let now = s.app().now();
    let signer = s.app().keys.signer(&env_id, now).await.unwrap();
    let token = signer
        .sign_compact(
            Some("JWT"),
            &json!({ "sub": "user-1", "iss": env["issuer"] }),
        )
        .unwrap();
    let jwks_before = jwks(&s, "prod").await;
    let edge_before = jwks(&s, "edge").await;
    let counts_before = counts(&s).await;
    let (_, orgs_before) = s.admin_get("/environments/prod/organizations").await;
    let (_, envs_before) = s.admin_get("/environments").await;
    let (_, events_before) = s.admin_get("/environments/prod/events?limit=100").await;

    let storage = s.stop().await.unwrap();
    assert!(storage.data_dir().join("master.key").is_file());
    let s = TestServer::builder()
        .storage(storage)
        .start()
        .await
        .unwrap();

    assert_eq!(s.backend(), backend);
    assert_eq!(
        counts(&s).await,
        counts_before,
        "nothing lost, nothing added"
    );
    assert_eq!(s.admin_get("/environments").await.1, envs_before);
    assert_eq!(
        s.admin_get("/environments/prod/organizations").await.1,
        orgs_before
    );
    assert_eq!(
        s.admin_get(&format!(
            "/environments/prod/organizations/{}",
            str_of(&org, "id")
        ))
        .await
        .1,
        org
    );
    assert_eq!(
        s.admin_get("/environments/prod/events?limit=100").await.1,
        events_before
    );
    let jwks_after = jwks(&s, "prod").await;
    assert_eq!(jwks_after, jwks_before, "the same keys are published");
    assert_eq!(jwks(&s, "edge").await, edge_before);
    let signer_after = s.app().keys.signer(&env_id, s.app().now()).await.unwrap();
    assert_eq!(signer_after.kid(), signer.kid(), "the same key signs");
    let jwk = jwk(&jwks_after, signer.kid()).expect("the signing key is published");
    let claims = verify_compact(jwk, &token).expect("a token from before the restart verifies");
    assert_eq!(claims["sub"], "user-1");
    let fresh = signer_after
        .sign_compact(None, &json!({ "sub": "user-2" }))
        .unwrap();
    assert!(
        verify_compact(jwk, &fresh).is_some(),
        "the unsealed key is the same key"
    );

    // Keys survive: the API key made before, and the bootstrap key (not created a second time).
    let used = s
        .request(
            Method::GET,
            "/admin/v1/environments",
            Some(str_of(&key, "secret")),
            None,
        )
        .await;
    assert_eq!(used.0, StatusCode::OK);
    let (_, keys) = s.admin_get("/api-keys").await;
    let bootstraps = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["name"] == "bootstrap")
        .count();
    assert_eq!(bootstraps, 1);
    for path in ["/environments/prod/audit/verify", "/audit/verify"] {
        let (_, report) = s.admin_get(path).await;
        assert_eq!(report["ok"], true, "{path}: {report}");
    }
    // And it keeps working: a write after the restart continues the numbering.
    create_org(&s, "prod", "After", &[]).await;
    let (_, events) = s.admin_get("/environments/prod/events?limit=100").await;
    let last = events["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        last["sequence"],
        events_before["data"].as_array().unwrap().len() as i64 + 1
    );
}

async fn wrong_or_missing_master_key_stops_the_start(backend: Backend) {
    let s = TestServer::start(backend).await.unwrap();
    create_env(&s, "prod", json!({})).await;
    let jwks_before = jwks(&s, "prod").await;
    let storage = s.stop().await.unwrap();
    let path = storage.data_dir().join("master.key");
    let original = std::fs::read_to_string(&path).unwrap();

    // Another valid key: refused, naming the file.
    let (_, other) = MasterKey::generate(&SystemRandom);
    std::fs::write(&path, format!("{other}\n")).unwrap();
    let (storage, err) = start_err(storage).await;
    assert!(
        err.contains("master key file") && err.contains(&path.display().to_string()),
        "{err}"
    );
    assert!(err.contains("does not match"), "{err}");

    // Garbage.
    std::fs::write(&path, "not a key\n").unwrap();
    let (storage, err) = start_err(storage).await;
    assert!(err.contains("master key file"), "{err}");

    // Missing, while the database holds sealed keys: refused, and no new key is generated.
    std::fs::remove_file(&path).unwrap();
    let (storage, err) = start_err(storage).await;
    assert!(
        err.contains("master key file") && err.contains("missing"),
        "{err}"
    );
    assert!(
        !path.exists(),
        "no new master key was written over the lost one"
    );

    // The right key again: everything is as it was.
    std::fs::write(&path, original).unwrap();
    let s = TestServer::builder()
        .storage(storage)
        .start()
        .await
        .unwrap();
    assert_eq!(jwks(&s, "prod").await, jwks_before);
}

/// `master_key_file` (`PORTCULLIS_MASTER_KEY_FILE`) puts the key elsewhere, e.g. a mounted secret.
async fn master_key_file_outside_the_data_directory(backend: Backend) {
    let secrets = tempfile::tempdir().unwrap();
    let path = secrets.path().join("portcullis-master.key");
    let s = TestServer::builder()
        .backend(backend)
        .flag("master_key_file", path.display().to_string())
        .start()
        .await
        .unwrap();
    let data_dir = s.data_dir().unwrap().to_owned();
    assert!(!data_dir.join("master.key").exists());
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    create_env(&s, "prod", json!({})).await;
    let before = jwks(&s, "prod").await;
    let s = s.restart().await.unwrap();
    assert_eq!(jwks(&s, "prod").await, before);
    // Without the setting, the default file is missing and the start is refused.
    let storage = s.stop().await.unwrap();
    let (_, err) = start_err(storage).await;
    assert!(
        err.contains("missing") && err.contains("master.key"),
        "{err}"
    );
}

/// Starts on `storage`, expecting failure; gives the storage back with the error text.
async fn start_err(storage: Storage) -> (Storage, String) {
    match TestServer::builder().storage(storage.clone()).start().await {
        Ok(_) => panic!("the server started"),
        Err(e) => (storage, format!("{e:#}")),
    }
}
