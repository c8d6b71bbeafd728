//! The server's side of the egress gate: where policies come from and where refusals go.

use std::sync::Arc;

use futures_lite::BoxFuture;
use portcullis_core::Clock;
use portcullis_core::audit::{NewAudit, Outcome};
use portcullis_core::event::EventType;
use portcullis_core::ids::EnvId;
use portcullis_egress::{Decision, EgressContext, Observer, Policy};
use portcullis_store::Store;

mod futures_lite {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

/// Records every refusal: an audit record and an `egress.denied` event in the environment's
/// chain and log (the metric is counted by the gate).
pub struct StoreObserver {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
}

impl Observer for StoreObserver {
    fn refused(&self, env: &str, d: &Decision) -> BoxFuture<'static, ()> {
        let store = self.store.clone();
        let now = self.clock.now();
        let env = EnvId::from_stored(env.to_owned());
        let data = serde_json::json!({
            "url": d.target.display(), "purpose": d.purpose.as_str(), "refusal": d.refusal,
            "addresses": d.addresses,
        });
        Box::pin(async move {
            let audit = NewAudit {
                actor: "system:egress-gate".into(),
                action: "egress.denied".into(),
                target: data["url"].as_str().unwrap_or_default().to_owned(),
                outcome: Outcome::Failure,
                detail: data.clone(),
            };
            if let Err(e) = store
                .record(
                    &env,
                    now,
                    Some((EventType::EgressDenied, None, data)),
                    audit,
                )
                .await
            {
                tracing::warn!(error = %e, "could not record an egress refusal");
            }
        })
    }
}

/// The environment's policy as the gate enforces it.
pub async fn context(store: &Store, env: &EnvId) -> Result<EgressContext, String> {
    let stored = store.egress_policy(env).await.map_err(|e| e.to_string())?;
    let mut policy: Policy = portcullis_egress::policy::parse(&stored.document)
        .map_err(|e| format!("stored policy: {e}"))?;
    policy.version = stored.version;
    Ok(EgressContext {
        env_id: env.to_string(),
        policy: Arc::new(policy),
        ca_bundle_pem: stored.ca_bundle.map(|p| Arc::new(p.into_bytes())),
    })
}
