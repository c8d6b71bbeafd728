//! Request count and latency by route template, method and status, for `/metrics`.
//!
//! A tower layer rather than `axum::middleware::from_fn`: the latter clones the inner route
//! service and boxes a future per request, and the label key used to be an owned `String`. At the
//! token endpoint's rate those were about 1% of the server's CPU (issue 3); here a request costs
//! a clone of the matched path (a reference count), one read lock and two atomic updates.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{OnceLock, RwLock};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::response::Response;

/// Wraps each route (applied with `Router::layer`, so the matched path is known).
#[derive(Clone, Copy, Default)]
pub struct TrackLayer;

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;
    fn layer(&self, inner: S) -> Track<S> {
        Track { inner }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        TrackFuture {
            inner: self.inner.call(req),
            route,
            method,
            started: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    pub struct TrackFuture<F> {
        #[pin]
        inner: F,
        route: Option<MatchedPath>,
        method: &'static str,
        started: Instant,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Ok(res) = &out {
            let route = this.route.as_ref().map_or("unmatched", MatchedPath::as_str);
            record(
                route,
                this.method,
                res.status().as_u16(),
                this.started.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(out)
    }
}

/// The method as a label: HTTP allows any token as a method, and every distinct label set is a
/// series the recorder keeps forever, so methods no route serves are counted together.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

type Handles = (metrics::Counter, metrics::Histogram);
/// Route template → (method, status) → handles. Two levels so that a lookup borrows the route.
/// Bounded: routes are templates (or "unmatched"), methods the labels above, and statuses those
/// the handlers answer.
type HandleMap = HashMap<String, HashMap<(&'static str, u16), Handles>>;

/// Counts one request and records its latency. Each label set is registered with the recorder
/// once: building a metric key with its labels on every request costs more than the request's
/// own bookkeeping.
fn record(route: &str, method: &'static str, status: u16, seconds: f64) {
    static HANDLES: OnceLock<RwLock<HandleMap>> = OnceLock::new();
    let map = HANDLES.get_or_init(Default::default);
    let key = (method, status);
    if let Ok(m) = map.read()
        && let Some((requests, latency)) = m.get(route).and_then(|r| r.get(&key))
    {
        requests.increment(1);
        latency.record(seconds);
        return;
    }
    let (requests, latency) = (
        metrics::counter!("portcullis_http_requests_total", "route" => route.to_owned(), "method" => method, "status" => status.to_string()),
        metrics::histogram!("portcullis_http_request_duration_seconds", "route" => route.to_owned(), "method" => method),
    );
    requests.increment(1);
    latency.record(seconds);
    if let Ok(mut m) = map.write() {
        // Routes are templates, so the map stays small; the bound only guards against surprises.
        if m.len() < 4096 {
            m.entry(route.to_owned())
                .or_default()
                .insert(key, (requests, latency));
        }
    }
}
