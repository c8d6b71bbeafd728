//! `/healthz` (the process answers), `/readyz` (storage reachable, migrations current) and
//! `/metrics` (Prometheus text).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;

use crate::App;

pub fn routes() -> Router<App> {
    Router::new()
        .route("/healthz", get(healthz_get))
        .route("/readyz", get(readyz_get))
        .route("/metrics", get(metrics_get))
}

async fn healthz_get() -> impl IntoResponse {
    axum::Json(json!({ "status": "ok" }))
}

async fn readyz_get(State(app): State<App>) -> impl IntoResponse {
    let storage = app.store.ping().await.is_ok();
    let migrations = storage && app.store.migrations_current().await.unwrap_or(false);
    let status = if storage && migrations {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(
            json!({ "storage": storage, "migrations_current": migrations, "backend": app.store.backend().as_str() }),
        ),
    )
}

async fn metrics_get(State(app): State<App>) -> impl IntoResponse {
    for (pool, size, idle) in app.store.pool_stats() {
        metrics::gauge!("portcullis_storage_pool_connections", "pool" => pool).set(f64::from(size));
        metrics::gauge!("portcullis_storage_pool_idle_connections", "pool" => pool)
            .set(idle as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
