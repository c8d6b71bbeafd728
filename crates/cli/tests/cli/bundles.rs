//! `plan`, `apply`, `export-config` and `bundle keygen|create|verify|apply|trust` as an operator
//! runs them: a publisher key made offline, trusted by the environment, a bundle signed, checked
//! offline and against the server, applied once; the replay, a wrong target and an unknown key
//! exit 1 naming the problem; a file with an unknown key exits 2 naming it.

use portcullis_testkit::server::{Backend, TestServer};
use serde_json::json;

use super::{client, portcullis, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundle_workflow_from_keygen_to_apply() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (_, env) = s
        .admin_post(
            "/environments",
            json!({ "slug": "site", "mode": "isolated" }),
        )
        .await;
    let id = env["id"].as_str().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_owned();

    run(portcullis(&[
        "bundle",
        "keygen",
        "--out",
        &p("publisher.key"),
    ]))
    .await
    .ok();
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(p("publisher.key")).unwrap().permissions(),
    );
    assert_eq!(
        mode & 0o777,
        0o600,
        "the private key is readable by its owner only"
    );
    run(portcullis(&[
        "bundle",
        "keygen",
        "--out",
        &p("stranger.key"),
        "--alg",
        "ES256",
    ]))
    .await
    .ok();
    let r = run(portcullis(&[
        "bundle",
        "keygen",
        "--out",
        &p("publisher.key"),
    ]))
    .await;
    assert!(
        r.input_error().contains("exists"),
        "never overwrites a key: {}",
        r.stderr
    );
    run(client(
        &s,
        &[
            "bundle",
            "trust",
            "add",
            "--env",
            "site",
            &p("publisher.pub.json"),
        ],
    ))
    .await
    .ok();

    std::fs::write(
        p("site.toml"),
        "version = 1\n\n[[organizations]]\nname = \"Initech\"\ndomains = [\"initech.test\"]\n",
    )
    .unwrap();
    let r = run(client(&s, &["plan", "--env", "site", &p("site.toml")])).await;
    assert!(
        r.ok().stdout.contains("+ organization Initech"),
        "{}",
        r.stdout
    );

    let create = |seq: &str, out: &str| {
        portcullis(&[
            "bundle",
            "create",
            "--env",
            &id,
            "--config",
            &p("site.toml"),
            "--sign-key",
            &p("publisher.key"),
            "--sequence",
            seq,
            "--out",
            &p(out),
        ])
    };
    run(create("1", "one.bundle")).await.ok();
    let offline = |trust: &str, target: &str| {
        portcullis(&[
            "bundle",
            "verify",
            &p("one.bundle"),
            "--offline",
            "--trust",
            &p(trust),
            "--target",
            target,
        ])
    };
    let r = run(offline("publisher.pub.json", &id)).await;
    assert!(
        r.ok().stdout.contains("bundle OK (offline): sequence 1"),
        "{}",
        r.stdout
    );
    let r = run(offline("publisher.pub.json", "env_01someoneelse")).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("bundle_wrong_environment"),
        "{}",
        r.stdout
    );
    let r = run(offline("stranger.pub.json", &id)).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("bundle_untrusted_key"), "{}", r.stdout);

    // Offline, against an export of the (still empty) site: the plan without a server.
    run(client(
        &s,
        &[
            "export-config",
            "--env",
            "site",
            "--out",
            &p("site-now.toml"),
        ],
    ))
    .await
    .ok();
    let r = run(portcullis(&[
        "bundle",
        "verify",
        &p("one.bundle"),
        "--offline",
        "--trust",
        &p("publisher.pub.json"),
        "--against",
        &p("site-now.toml"),
    ]))
    .await;
    assert!(
        r.ok().stdout.contains("+ organization Initech"),
        "{}",
        r.stdout
    );
    let r = run(client(
        &s,
        &["bundle", "verify", &p("one.bundle"), "--env", "site"],
    ))
    .await;
    assert!(
        r.ok().stdout.contains("+ organization Initech"),
        "verify prints the plan: {}",
        r.stdout
    );
    let r = run(client(
        &s,
        &["bundle", "apply", &p("one.bundle"), "--env", "site"],
    ))
    .await;
    assert!(
        r.ok().stdout.contains("created organization Initech"),
        "{}",
        r.stdout
    );
    let r = run(client(
        &s,
        &["bundle", "apply", &p("one.bundle"), "--env", "site"],
    ))
    .await;
    assert_eq!(r.code, 1, "a replay is refused: {}", r.stdout);
    assert!(
        r.stdout.contains("bundle_sequence_not_newer"),
        "{}",
        r.stdout
    );
    let r = run(client(&s, &["bundle", "trust", "list", "--env", "site"])).await;
    assert!(
        r.ok().stdout.contains("last applied sequence: 1"),
        "{}",
        r.stdout
    );

    run(client(
        &s,
        &[
            "export-config",
            "--env",
            "site",
            "--out",
            &p("exported.toml"),
        ],
    ))
    .await
    .ok();
    assert!(
        std::fs::read_to_string(p("exported.toml"))
            .unwrap()
            .contains("name = \"Initech\"")
    );
    let r = run(client(&s, &["apply", "--env", "site", &p("exported.toml")])).await;
    assert!(r.ok().stdout.contains("No changes"), "{}", r.stdout);

    std::fs::write(p("bad.toml"), "version = 1\ncolour = \"blue\"\n").unwrap();
    let r = run(client(&s, &["plan", "--env", "site", &p("bad.toml")])).await;
    assert!(r.input_error().contains("colour"), "{}", r.stderr);
    let r = run(portcullis(&[
        "bundle",
        "create",
        "--env",
        &id,
        "--config",
        &p("bad.toml"),
        "--sign-key",
        &p("publisher.key"),
        "--sequence",
        "2",
        "--out",
        &p("bad.bundle"),
    ]))
    .await;
    assert!(
        r.input_error().contains("colour"),
        "an invalid file is never bundled: {}",
        r.stderr
    );
}
