//! `audit checkpoint --env E`: sign the head of an environment's audit chain now, as the server
//! does every `audit_checkpoint_interval_seconds`. Exit 1 when the chain since the latest
//! checkpoint does not verify (nothing is signed then), 2 on any other refusal.

use serde_json::{Value, json};

use super::{Client, Failure, Outcome, enc};

pub async fn checkpoint(c: &Client, env: &str) -> Outcome {
    let res = c
        .http
        .post(format!(
            "{}/environments/{}/audit/checkpoints",
            c.base,
            enc(env)
        ))
        .bearer_auth(&c.key)
        .send()
        .await
        .map_err(|e| Failure::Input(format!("cannot reach {}: {e} (check --url)", c.base)))?;
    let status = res.status();
    let v: Value = res
        .json()
        .await
        .map_err(|e| Failure::Input(format!("reading the response: {e}")))?;
    let message = v["message"].as_str().unwrap_or("checkpoint refused");
    match status.as_u16() {
        200 | 201 => {
            let cp = &v["checkpoint"];
            let text = match (v["created"].as_bool(), cp.is_null()) {
                (_, true) => format!("the audit chain of {env} is empty: nothing to checkpoint\n"),
                (Some(true), _) => format!(
                    "checkpoint of {env} written: record {} signed {} by key {}\n",
                    cp["seq"],
                    cp["at"].as_str().unwrap_or(""),
                    cp["kid"].as_str().unwrap_or("")
                ),
                _ => format!(
                    "the head of {env} has not moved since checkpoint {} (signed {})\n",
                    cp["seq"],
                    cp["at"].as_str().unwrap_or("")
                ),
            };
            Ok((v, text, 0))
        }
        409 => Ok((
            json!({ "ok": false, "code": v["code"], "reason": message }),
            format!("{env}: NOT CHECKPOINTED: {message}\n"),
            1,
        )),
        s => Err(Failure::Input(format!(
            "{message} ({}, HTTP {s})",
            v["code"].as_str().unwrap_or("error")
        ))),
    }
}
