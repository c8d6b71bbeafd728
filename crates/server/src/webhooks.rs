//! The server's side of webhook delivery: the dispatcher's dependencies taken from the [`App`],
//! and its settings from the configuration. The delivery logic lives in `portcullis-events`.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::BoxFuture;
use portcullis_core::Timestamp;
use portcullis_core::ids::EnvId;
use portcullis_crypto::MasterKey;
use portcullis_egress::{EgressContext, EgressGate};
use portcullis_events::{Deps, Dispatcher, DispatcherConfig, RetrySchedule};
use portcullis_store::Store;

use crate::{App, Config};

mod futures_lite {
    pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;
}

impl Deps for App {
    fn store(&self) -> &Store {
        &self.store
    }
    fn gate(&self) -> &EgressGate {
        &self.egress
    }
    fn master(&self) -> &MasterKey {
        self.keys.master()
    }
    fn now(&self) -> Timestamp {
        self.clock.now()
    }
    fn egress_context(&self, env: &EnvId) -> BoxFuture<'_, Result<EgressContext, String>> {
        let env = env.clone();
        Box::pin(async move { crate::egress::context(&self.store, &env).await })
    }
}

/// The dispatcher settings of `config`.
pub fn dispatcher_config(config: &Config) -> DispatcherConfig {
    DispatcherConfig {
        node: if config.node_name.is_empty() {
            format!("node-{}", std::process::id())
        } else {
            config.node_name.clone()
        },
        lease: Duration::from_secs(config.webhook_lease_seconds),
        request_timeout: Duration::from_secs(config.egress_timeout_seconds),
        per_endpoint: config.webhook_per_endpoint_in_flight,
        max_in_flight: config.webhook_max_in_flight,
        poll_interval: Duration::from_millis(config.webhook_poll_interval_ms),
        schedule: RetrySchedule {
            first_delay_seconds: config.webhook_retry_first_seconds,
            max_delay_seconds: config.webhook_retry_max_delay_seconds,
            max_attempts: config.webhook_retry_max_attempts,
            jitter_percent: config.webhook_retry_jitter_percent,
        },
    }
}

/// A dispatcher delivering for `app` (run it with [`Dispatcher::run`], or pass by pass with
/// [`Dispatcher::run_once`]).
pub fn dispatcher(app: &App, config: &Config) -> Dispatcher {
    Dispatcher::new(Arc::new(app.clone()), dispatcher_config(config))
}
