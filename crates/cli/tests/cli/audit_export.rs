//! `audit export` and `audit verify --file`: an export verifies offline; an edited line, a
//! removed tail, an edited head, or a checkpoint signed by another environment is named.

use portcullis_testkit::server::{Backend, TestServer};
use serde_json::{Value, json};

use super::{client, portcullis, run};

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
