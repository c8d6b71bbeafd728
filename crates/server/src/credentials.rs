//! The credential sweep: a background task that, every `credential_sweep_interval_seconds`,
//! announces each machine credential that passed its expiry (one `credential.expired` event and
//! audit record per credential and expiry, whatever the number of nodes) and ends the overlap of
//! rotated API keys. See `Store::sweep_credentials`.

use std::time::Duration;

use crate::App;

/// How the sweep appears in the audit chain.
pub const SWEEP_ACTOR: &str = "system:credential-sweep";

/// One pass at the app's current time; the references it announced.
pub async fn sweep_credentials(app: &App) -> Result<Vec<String>, portcullis_store::StoreError> {
    app.store.sweep_credentials(SWEEP_ACTOR, app.now()).await
}

/// Runs the sweep every `interval` until `stop` changes.
pub async fn run_credential_sweeper(
    app: App,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match sweep_credentials(&app).await {
            Ok(expired) if !expired.is_empty() => {
                tracing::info!(?expired, "machine credentials passed their expiry");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "credential sweep failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}
