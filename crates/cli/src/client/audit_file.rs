//! `audit export` and `audit verify --file`: the audit chain carried out of the network and
//! checked on the other side, with nothing but the file (and optionally a trusted JWKS).
//!
//! The checks, in order, each naming the line it fails on: (1) the header is an export; (2) every
//! line is an audit record; (3) the export's signature verifies and covers the header's head,
//! start, chain and carried checkpoints; (4) every record links to its predecessor from the start
//! the export continues, and the last is the signed head (a cut tail is named); (5) every carried
//! checkpoint verifies, and the file's records reach and match it: a chain truncated in the
//! database before the export ends below its latest checkpoint.

use portcullis_core::audit::{AuditRecord, BrokenLink, ChainHead, verify_segment};
use portcullis_core::checkpoint::{check_against_checkpoint, open_checkpoint};
use portcullis_server::checkpoints::open_with_keys;
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
    // Files written before checkpoints existed carry none, in the header or under the signature.
    if signed["checkpoints"].as_array().unwrap_or(&Vec::new())
        != header["checkpoints"].as_array().unwrap_or(&Vec::new())
    {
        return fail(
            1,
            "the header's stored checkpoints do not match its signed checkpoint (removed, added or edited)".into(),
        );
    }
    // Record n of the chain is on line (n - start.seq) + 1 of the file.
    let line_of = |seq: i64| usize::try_from(seq - start.seq).unwrap_or(0) + 1;
    let report = verify_segment(&chain, &records, &start, Some(&head), &|b| {
        portcullis_crypto::sha256_hex(b)
    });
    if let Some(b) = report.broken {
        let last = records.last().map_or(start.seq, |r| r.seq);
        let reason = if b.seq > last && last < head.seq {
            format!(
                "the tail was cut: the file ends at record {last} but its signed head is record {}: {} missing",
                head.seq,
                missing(last + 1, head.seq)
            )
        } else {
            format!("record {}: {}", b.seq, b.reason)
        };
        return fail(line_of(b.seq), reason);
    }
    let keys: Vec<Value> = jwks["keys"].as_array().cloned().unwrap_or_default();
    let carried = match check_carried(&header, &chain, &start, &head, &records, &keys) {
        Ok(c) => c,
        // A problem with a checkpoint itself, or a record beyond the file's head, is the header's.
        Err(b) if b.seq > head.seq => return fail(1, b.reason),
        Err(b) => return fail(line_of(b.seq), b.reason),
    };
    let keys = if trusted_jwks.is_some() {
        "the trusted JWKS given"
    } else {
        "the JWKS carried in the file (give --jwks to pin it)"
    };
    let stored = match &carried {
        Some((n, seq, at)) => {
            format!("; {n} stored checkpoint(s) verified, the latest at record {seq}, signed {at}")
        }
        None => "; no stored checkpoint in the file".to_owned(),
    };
    let v = json!({
        "ok": true, "chain": chain, "records": report.records, "head": head, "verified_with": keys,
        "checkpoints": carried.as_ref().map_or(0, |c| c.0),
        "latest_checkpoint": carried.as_ref().map(|c| json!({ "seq": c.1, "at": c.2 })),
    });
    let text = format!(
        "{}: {} records of chain {chain} intact up to head {} (checkpoint verified with {keys}{stored})\n",
        path.display(),
        report.records,
        head.seq
    );
    Ok((v, text, 0))
}

fn missing(from: i64, to: i64) -> String {
    if from == to {
        format!("record {from} is")
    } else {
        format!("records {from} to {to} are")
    }
}

/// Checks the stored checkpoints an export carries (signature, chain, environment), then the
/// file's records against each: how many verified, and the latest's number and time.
fn check_carried(
    header: &Value,
    chain: &str,
    start: &ChainHead,
    head: &ChainHead,
    records: &[AuditRecord],
    keys: &[Value],
) -> Result<Option<(usize, i64, String)>, BrokenLink> {
    let header_fail = |reason: String| BrokenLink {
        seq: head.seq + 1,
        reason,
    };
    let mut latest = None;
    let carried = header["checkpoints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for (i, jws) in carried.iter().enumerate() {
        let claims = open_checkpoint(jws.as_str().unwrap_or_default(), chain, &|j| {
            open_with_keys(keys, j)
        })
        .map_err(|e| header_fail(format!("stored checkpoint {} in the header: {e}", i + 1)))?;
        if header["environment"]["id"] != claims.environment.as_str() {
            return Err(header_fail(format!(
                "stored checkpoint {} in the header: signed for environment {}, not this one",
                i + 1,
                claims.environment
            )));
        }
        // A checkpoint at or before the start of a tail export attests records not in the file.
        if claims.seq > start.seq {
            check_against_checkpoint(&claims, head, &|n| {
                records.iter().find(|r| r.seq == n).map(|r| r.hash.clone())
            })?;
        }
        if latest.as_ref().is_none_or(|(_, s, _)| claims.seq > *s) {
            latest = Some((i + 1, claims.seq, claims.at.to_rfc3339()));
        }
    }
    Ok(latest.map(|(_, seq, at)| (carried.len(), seq, at)))
}
