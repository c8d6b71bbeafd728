//! The Portcullis HTTP server: admin API, per-environment endpoints, health and metrics.
//!
//! Handlers extract input, call one store or domain function with `now` read once from the
//! [`Clock`], and map the result; errors become HTTP only in [`error`].

pub mod admin;
pub mod bootstrap;
pub mod checkpoints;
pub mod client_addr;
pub mod config;
pub mod credentials;
pub mod declarative;
pub mod egress;
pub mod error;
pub mod events_api;
mod extract;
mod health;
pub mod keys;
pub mod oauth;
mod public;
mod request_metrics;
mod review;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::Response;
use portcullis_core::{Clock, Timestamp};
use portcullis_store::Store;
use tower_http::catch_panic::CatchPanicLayer;

pub use bootstrap::{Bootstrap, BootstrapError, BootstrapReport};
pub use config::Config;
pub use keys::KeyRing;

/// What every handler shares.
pub struct AppInner {
    pub store: Store,
    pub clock: Arc<dyn Clock>,
    pub keys: KeyRing,
    pub public_url: String,
    pub key_policy_defaults: portcullis_core::model::KeyPolicy,
    /// When each kind of machine credential is due for rotation (`credentials report`).
    pub credential_policy: portcullis_core::credential::RotationPolicy,
    pub max_body_bytes: usize,
    /// Reverse proxies whose `X-Forwarded-For` names the client (`client_addr`).
    pub trusted_proxies: Vec<portcullis_egress::addr::Cidr>,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
    /// Argon2id hashing and verification, bounded to the number of cores.
    pub passwords: portcullis_oidc::password::Passwords,
    /// Failed sign-ins per account (`env|email`) and per client address.
    pub account_limiter: portcullis_oidc::ratelimit::Limiter,
    pub address_limiter: portcullis_oidc::ratelimit::Limiter,
    /// The only outbound HTTP client.
    pub egress: portcullis_egress::EgressGate,
    /// Environments by slug, for the per-request lookups of the protocol endpoints; shared, so
    /// that a hit costs a reference count rather than a copy of every string in the record.
    pub env_cache: std::sync::RwLock<
        std::collections::HashMap<String, (Arc<portcullis_core::model::Environment>, Timestamp)>,
    >,
}

#[derive(Clone)]
pub struct App(pub Arc<AppInner>);

impl std::ops::Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

/// How long a cached environment is trusted: changes made on another node show within this time.
const ENV_CACHE_MS: i64 = 5_000;

impl App {
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// The environment with this slug (or ID), from a short-lived cache.
    pub async fn environment_cached(
        &self,
        slug: &str,
        now: Timestamp,
    ) -> Result<Arc<portcullis_core::model::Environment>, portcullis_store::StoreError> {
        if let Some((env, at)) = self
            .env_cache
            .read()
            .ok()
            .and_then(|c| c.get(slug).cloned())
            && now.millis() - at.millis() < ENV_CACHE_MS
            && now >= at
        {
            return Ok(env);
        }
        let well_formed = portcullis_core::validate::slug(slug).is_ok()
            || <portcullis_core::ids::EnvId as portcullis_core::ids::PrefixedId>::parse(slug)
                .is_some();
        if !well_formed {
            return Err(portcullis_store::StoreError::NotFound(format!(
                "environment {slug}"
            )));
        }
        let env = Arc::new(self.store.find_environment(slug).await?);
        if let Ok(mut c) = self.env_cache.write() {
            if c.len() > 10_000 {
                c.clear();
            }
            c.insert(slug.to_owned(), (env.clone(), now));
        }
        Ok(env)
    }
}

/// The full router.
pub fn router(app: App) -> Router {
    let limit = app.max_body_bytes;
    Router::new()
        .merge(health::routes())
        .merge(public::routes())
        .merge(oauth::routes())
        .nest("/admin/v1", admin::routes())
        .fallback(extract::not_found)
        .method_not_allowed_fallback(extract::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(CatchPanicLayer::custom(|_| {
            // Defence in depth: no handler panics by design (clippy denies unwrap/expect/panic).
            error::ApiError::internal("panic", "a handler panicked").into_response_owned()
        }))
        // Outside the panic catcher, so that a caught panic's 500 is counted too.
        .layer(request_metrics::TrackLayer)
        .with_state(app)
}

impl error::ApiError {
    fn into_response_owned(self) -> Response {
        axum::response::IntoResponse::into_response(self)
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then drains in-flight requests.
pub async fn serve(
    app: App,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address is what the per-address sign-in limit and the audit record key on.
    let service = router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Runs the key scheduler: every `interval`, rotate keys past their lifetime. Ends with `stop`.
pub async fn run_key_scheduler(
    app: App,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        match app.keys.rotate_due(app.now()).await {
            Ok(rotated) if !rotated.is_empty() => {
                tracing::info!(?rotated, "rotated signing keys past their lifetime")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "key scheduler pass failed; will retry"),
        }
        // Housekeeping on the same beat: expired pending requests, revoked-token and
        // client-assertion records past their expiry.
        if let Err(e) = app.store.purge_expired(app.now()).await {
            tracing::warn!(error = %e, "purging expired records failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
    }
}
