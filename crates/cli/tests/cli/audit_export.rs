//! `audit export` and `audit verify --file`: an export verifies offline; an edited line, a
//! removed tail, an edited head, or a checkpoint signed by another environment is named. An
//! export carries the latest stored checkpoint of its range: stripping it, or a stored checkpoint
//! that was forged, is refused.

use portcullis_testkit::server::{Backend, TestServer};
use serde_json::{Value, json};

use super::{Bind, client, portcullis, run, tamper};

async fn exported(
    s: &TestServer,
    env: &str,
    after: i64,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let out = dir.join(format!("{env}-{after}.jsonl"));
    run(client(
        s,
        &[
            "audit",
            "export",
            "--env",
            env,
            "--after",
            &after.to_string(),
            "--out",
            out.to_str().unwrap(),
        ],
    ))
    .await
    .ok();
    out
}

async fn verify(file: &std::path::Path, jwks: Option<&std::path::Path>) -> super::Ran {
    let mut args = vec![
        "audit",
        "verify",
        "--json",
        "--file",
        file.to_str().unwrap(),
    ];
    if let Some(j) = jwks {
        args.extend(["--jwks", j.to_str().unwrap()]);
    }
    run(portcullis(&args)).await
}

fn rewrite(file: &std::path::Path, edit: impl Fn(&mut Vec<String>)) -> std::path::PathBuf {
    let mut lines: Vec<String> = std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    edit(&mut lines);
    let out = file.with_extension("edited.jsonl");
    std::fs::write(&out, lines.join("\n") + "\n").unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_verify_offline_and_name_what_was_changed() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    for slug in ["one", "two"] {
        s.admin_post("/environments", json!({ "slug": slug })).await;
        for i in 0..4 {
            s.admin_post(
                &format!("/environments/{slug}/organizations"),
                json!({ "name": format!("Org {i}") }),
            )
            .await;
        }
    }
    let whole = exported(&s, "one", 0, dir.path()).await;
    let v = verify(&whole, None).await;
    assert_eq!(v.code, 0, "{} {}", v.stdout, v.stderr);
    assert_eq!(v.json()["records"], 5);
    let tail = exported(&s, "one", 3, dir.path()).await;
    assert_eq!(
        verify(&tail, None).await.json()["records"],
        2,
        "a tail verifies from the link it continues"
    );

    // The environment's published keys, as an auditor would pin them.
    let (_, env) = s.admin_get("/environments/one").await;
    let jwks_text = s
        .client()
        .get(env["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let jwks = dir.path().join("one-jwks.json");
    std::fs::write(&jwks, jwks_text).unwrap();
    assert_eq!(verify(&whole, Some(&jwks)).await.code, 0);

    let edited = rewrite(&whole, |l| l[3] = l[3].replace("Org 1", "Org X"));
    let r = verify(&edited, None).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(r.json()["line"], 4, "{}", r.stdout);

    let truncated = rewrite(&whole, |l| {
        l.pop();
    });
    let r = verify(&truncated, None).await;
    assert_eq!(r.code, 1);
    assert!(
        r.json()["reason"].as_str().unwrap().contains("tail"),
        "{}",
        r.stdout
    );

    let forged_head = rewrite(&whole, |l| {
        let mut h: Value = serde_json::from_str(&l[0]).unwrap();
        h["head"]["seq"] = json!(4);
        l[0] = h.to_string();
        l.pop();
    });
    let r = verify(&forged_head, None).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.json()["line"], 1, "{}", r.stdout);

    // A checkpoint signed by another environment's key does not verify against this one's keys.
    let other = exported(&s, "two", 0, dir.path()).await;
    let swapped = rewrite(&whole, |l| {
        let theirs: Value = serde_json::from_str(
            std::fs::read_to_string(&other)
                .unwrap()
                .lines()
                .next()
                .unwrap(),
        )
        .unwrap();
        let mut h: Value = serde_json::from_str(&l[0]).unwrap();
        h["checkpoint"] = theirs["checkpoint"].clone();
        l[0] = h.to_string();
    });
    assert_eq!(verify(&swapped, Some(&jwks)).await.code, 1);

    let garbage = dir.path().join("garbage.jsonl");
    std::fs::write(&garbage, "hello\n").unwrap();
    assert_eq!(verify(&garbage, None).await.code, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_carry_checkpoints_and_a_cut_or_stripped_file_is_refused() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    s.admin_post("/environments", json!({ "slug": "one" }))
        .await;
    for i in 0..4 {
        s.admin_post(
            "/environments/one/organizations",
            json!({ "name": format!("Org {i}") }),
        )
        .await;
    }
    let r = run(client(
        &s,
        &["audit", "checkpoint", "--env", "one", "--json"],
    ))
    .await;
    assert_eq!(r.code, 0, "{} {}", r.stdout, r.stderr);
    let at = r.json()["checkpoint"]["at"].as_str().unwrap().to_owned();
    s.admin_post(
        "/environments/one/organizations",
        json!({ "name": "Later" }),
    )
    .await;

    let whole = exported(&s, "one", 0, dir.path()).await;
    let v = verify(&whole, None).await;
    assert_eq!(v.code, 0, "{} {}", v.stdout, v.stderr);
    assert_eq!(v.json()["records"], 6);
    assert_eq!(v.json()["checkpoints"], 1);
    assert_eq!(v.json()["latest_checkpoint"], json!({ "seq": 5, "at": at }));
    let text = run(portcullis(&[
        "audit",
        "verify",
        "--file",
        whole.to_str().unwrap(),
    ]))
    .await;
    assert!(
        text.stdout.contains(&format!(
            "; 1 stored checkpoint(s) verified, the latest at record 5, signed {at})"
        )),
        "{}",
        text.stdout
    );

    // Lines cut off the end: named with the records missing.
    let cut = rewrite(&whole, |l| {
        l.truncate(l.len() - 2);
    });
    let r = verify(&cut, None).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(
        r.json(),
        json!({ "ok": false, "line": 6, "reason": "the tail was cut: the file ends at record 4 but its signed head is record 6: records 5 to 6 are missing" })
    );
    // An edited line, with the checkpoint in the file.
    let edited = rewrite(&whole, |l| l[5] = l[5].replace("Org 3", "Org 9"));
    let r = verify(&edited, None).await;
    assert_eq!(
        r.json(),
        json!({ "ok": false, "line": 6, "reason": "record 5: record 5 was altered: its hash does not match" })
    );
    // The carried checkpoints are under the export's signature: they cannot be stripped.
    let stripped = rewrite(&whole, |l| {
        let mut h: Value = serde_json::from_str(&l[0]).unwrap();
        h["checkpoints"] = json!([]);
        l[0] = h.to_string();
    });
    let r = verify(&stripped, None).await;
    assert_eq!(
        r.json(),
        json!({ "ok": false, "line": 1, "reason": "the header's stored checkpoints do not match its signed checkpoint (removed, added or edited)" })
    );
    // A tail export after the checkpoint carries none; one before it carries it.
    let after = exported(&s, "one", 5, dir.path()).await;
    let r = verify(&after, None).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["checkpoints"], 0);
    let r = verify(&exported(&s, "one", 3, dir.path()).await, None).await;
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert_eq!(r.json()["checkpoints"], 1);

    // A stored checkpoint forged for "two" (signed with "one"'s key) is carried out, and refused.
    let (_, two) = s
        .admin_post("/environments", json!({ "slug": "two" }))
        .await;
    let (_, one) = s.admin_get("/environments/one").await;
    let (_, two_audit) = s.admin_get("/environments/two/audit").await;
    let head = &two_audit["data"][0];
    let two_id = two["id"].as_str().unwrap();
    let one_id: portcullis_core::ids::EnvId =
        portcullis_core::ids::PrefixedId::parse(one["id"].as_str().unwrap()).unwrap();
    let key = s.app().keys.signer(&one_id, s.app().now()).await.unwrap();
    let forged = key
        .sign_compact(
            Some("audit-checkpoint+jwt"),
            &json!({ "iss": two["issuer"], "environment": two_id, "chain": two_id,
                     "seq": 1, "hash": head["hash"], "at": 0 }),
        )
        .unwrap();
    tamper(
        &s,
        &[(
            "INSERT INTO audit_checkpoints (chain, seq, hash, at, kid, jws) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                Bind::Text(two_id),
                Bind::Int(1),
                Bind::Text(head["hash"].as_str().unwrap()),
                Bind::Int(0),
                Bind::Text(key.kid()),
                Bind::Text(&forged),
            ],
        )],
    )
    .await;
    let r = verify(&exported(&s, "two", 0, dir.path()).await, None).await;
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert_eq!(
        r.json(),
        json!({ "ok": false, "line": 1, "reason": "stored checkpoint 1 in the header: its signature does not verify with the environment's keys (forged, or signed by another key)" })
    );
}
