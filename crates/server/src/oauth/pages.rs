//! Server-rendered pages of the hosted login: no JavaScript, no external assets, auto-escaped
//! (minijinja escapes every value in `.html` templates). Operators re-brand by editing the
//! templates under `crates/server/templates/`.

use std::sync::OnceLock;

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use minijinja::Environment;

fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut e = Environment::new();
        for (name, src) in [
            ("layout.html", include_str!("../../templates/layout.html")),
            (
                "login_email.html",
                include_str!("../../templates/login_email.html"),
            ),
            (
                "login_password.html",
                include_str!("../../templates/login_password.html"),
            ),
            ("error.html", include_str!("../../templates/error.html")),
            ("message.html", include_str!("../../templates/message.html")),
        ] {
            if let Err(err) = e.add_template(name, src) {
                tracing::error!(template = name, error = %err, "template does not compile");
            }
        }
        e
    })
}

/// Headers every hosted page carries: no framing, no caching, no external anything.
pub fn page_headers() -> [(axum::http::HeaderName, &'static str); 4] {
    use axum::http::header;
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::REFERRER_POLICY, "no-referrer"),
    ]
}

pub fn render(status: StatusCode, name: &str, ctx: minijinja::Value) -> Response {
    let html = templates()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .unwrap_or_else(|e| {
            tracing::error!(template = name, error = %e, "template rendering failed");
            "<!doctype html><title>Error</title><p>The page could not be shown.</p>".to_owned()
        });
    (status, page_headers(), Html(html)).into_response()
}

/// A plain error page with a reference that the audit record carries too.
pub fn error_page(
    status: StatusCode,
    env_name: &str,
    heading: &str,
    message: &str,
    reference: Option<&str>,
) -> Response {
    render(
        status,
        "error.html",
        minijinja::context! { env_name, heading, message, reference },
    )
}
