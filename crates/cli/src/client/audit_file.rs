//! `audit export` and `audit verify --file`: the audit chain carried out of the network and
//! checked on the other side, with nothing but the file (and optionally a trusted JWKS).

use portcullis_core::audit::{AuditRecord, ChainHead, verify_segment};
use serde_json::{Value, json};

use super::{Client, Failure, Outcome, enc};

pub async fn export(c: &Client, env: &str, after: i64, out: &std::path::Path) -> Outcome {
    let res = c
        .http
        .get(format!(
            "{}/environments/{}/audit/export?after={after}",
            c.base,
            enc(env)
        ))
        .bearer_auth(&c.key)
        .send()
        .await
        .map_err(|e| Failure::Input(format!("cannot reach {}: {e} (check --url)", c.base)))?;
    let status = res.status();
    let text = res
        .text()
        .await
        .map_err(|e| Failure::Input(format!("reading the export: {e}")))?;
    if !status.is_success() {
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        return Err(Failure::Input(format!(
            "{} (HTTP {})",
            v["message"].as_str().unwrap_or("export refused"),
            status.as_u16()
        )));
    }
    std::fs::write(out, &text).map_err(|e| Failure::Input(format!("{}: {e}", out.display())))?;
    let lines = text.lines().count().saturating_sub(1);
    Ok((
        json!({ "written": out.display().to_string(), "records": lines }),
        format!("exported {lines} records to {}\n", out.display()),
        0,
    ))
}

/// Verifies an export: exit 0 intact, 1 broken (naming the first bad line), 2 unreadable.
pub fn verify(path: &std::path::Path, trusted_jwks: Option<&std::path::Path>) -> Outcome {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Input(format!("{}: {e}", path.display())))?;
    let mut lines = text.lines();
    let header: Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .filter(|h: &Value| h["format"] == "portcullis-audit-export/1")
        .ok_or_else(|| {
            Failure::Input(format!(
                "{} is not a Portcullis audit export",
                path.display()
            ))
        })?;
    let chain = header["chain"].as_str().unwrap_or_default().to_owned();
    let start: ChainHead = serde_json::from_value(header["start"].clone())
        .map_err(|e| Failure::Input(format!("header: {e}")))?;
    let head: ChainHead = serde_json::from_value(header["head"].clone())
        .map_err(|e| Failure::Input(format!("header: {e}")))?;
    let fail = |line: usize, why: String| {
        let v = json!({ "ok": false, "line": line, "reason": why });
        Ok((
            v,
            format!("{}: BROKEN at line {line}: {why}\n", path.display()),
            1,
        ))
    };
    let mut records = Vec::new();
    for (i, l) in lines.enumerate() {
        match serde_json::from_str::<AuditRecord>(l) {
            Ok(r) => records.push(r),
            Err(e) => return fail(i + 2, format!("not an audit record: {e}")),
        }
    }
    // The checkpoint: the head and start of this export, signed by the environment's key.
    let jwks: Value = match trusted_jwks {
        Some(p) => serde_json::from_str(
            &std::fs::read_to_string(p)
                .map_err(|e| Failure::Input(format!("{}: {e}", p.display())))?,
        )
        .map_err(|e| Failure::Input(format!("{}: {e}", p.display())))?,
        None => header["jwks"].clone(),
    };
    let checkpoint = header["checkpoint"].as_str().unwrap_or_default();
    let signed = jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|k| portcullis_crypto::jws::verify_compact(k, checkpoint));
    let Some(signed) = signed else {
        return fail(
            1,
            "the checkpoint's signature does not verify with the environment's keys".into(),
        );
    };
    if signed["head"] != header["head"]
        || signed["start"] != header["start"]
        || signed["chain"] != header["chain"]
    {
        return fail(
            1,
            "the header does not match its signed checkpoint (edited head or start)".into(),
        );
    }
    let report = verify_segment(&chain, &records, &start, Some(&head), &|b| {
        portcullis_crypto::sha256_hex(b)
    });
    if let Some(b) = report.broken {
        // Record n of the chain is on line (n - start.seq) + 1 of the file.
        let line = usize::try_from(b.seq - start.seq).unwrap_or(0) + 1;
        return fail(line, format!("record {}: {}", b.seq, b.reason));
    }
    let keys = if trusted_jwks.is_some() {
        "the trusted JWKS given"
    } else {
        "the JWKS carried in the file (give --jwks to pin it)"
    };
    let v = json!({ "ok": true, "chain": chain, "records": report.records, "head": head, "verified_with": keys });
    let text = format!(
        "{}: {} records of chain {chain} intact up to head {} (checkpoint verified with {keys})\n",
        path.display(),
        report.records,
        head.seq
    );
    Ok((v, text, 0))
}
