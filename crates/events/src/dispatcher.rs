//! The outbox dispatcher: leases due deliveries, sends them through the egress gate, logs every
//! attempt and reschedules on the retry schedule.
//!
//! Invariants:
//! - at least once: a delivery leaves `pending` only when its attempt is recorded under a lease
//!   this node still holds; a crash before that leaves the lease to expire and the delivery to be
//!   taken again (by any node);
//! - the same `webhook-id` (the event ID) on every attempt;
//! - isolation between receivers: at most `per_endpoint` deliveries of one endpoint are in flight
//!   on this node, and at most `max_in_flight` in all, so a slow, failing or silent receiver
//!   occupies only its own slots; every request is bounded by the gate's timeouts and size limit;
//! - redirects are not followed (`send_once` returns the 3xx as the answer): a 3xx fails the
//!   attempt, so a receiver cannot bounce signed events to a URL nobody reviewed;
//! - the URL passes the environment's egress policy at every attempt (the gate decides each one).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use portcullis_core::event::Event;
use portcullis_core::ids::{EnvId, WebhookId};
use portcullis_core::webhook::{Attempt, Delivery, WebhookEndpoint, response_snippet};
use portcullis_core::{IdGen, Timestamp};
use portcullis_crypto::{MasterKey, SystemRandom};
use portcullis_egress::gate::{Method, Request};
use portcullis_egress::{EgressContext, EgressError, EgressGate, Purpose};
use portcullis_store::{AttemptOutcome, Store, StoreError};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::schedule::RetrySchedule;
use crate::signing;

/// What the dispatcher needs from the process that runs it.
pub trait Deps: Send + Sync + 'static {
    fn store(&self) -> &Store;
    fn gate(&self) -> &EgressGate;
    fn master(&self) -> &MasterKey;
    /// The clock, read at the edge: once per pass and once per attempt.
    fn now(&self) -> Timestamp;
    fn egress_context(&self, env: &EnvId) -> BoxFuture<'_, Result<EgressContext, String>>;
}

#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// This node's name in leases and attempt logs.
    pub node: String,
    /// How long a lease lasts; must exceed the gate's request timeout.
    pub lease: Duration,
    pub per_endpoint: usize,
    pub max_in_flight: usize,
    /// How often to look for due deliveries when idle.
    pub poll_interval: Duration,
    pub schedule: RetrySchedule,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            node: "node".into(),
            lease: Duration::from_secs(60),
            per_endpoint: 4,
            max_in_flight: 64,
            poll_interval: Duration::from_millis(250),
            schedule: RetrySchedule::default(),
        }
    }
}

/// The associated data binding a sealed webhook secret to its endpoint.
pub fn secret_aad(id: &WebhookId, env: &EnvId) -> String {
    format!("webhook-secret|{id}|{env}")
}

/// The endpoint's signing keys valid at `now`: the current one, then the previous one while its
/// overlap lasts.
pub fn signing_keys(
    master: &MasterKey,
    e: &WebhookEndpoint,
    now: Timestamp,
) -> Result<Vec<Vec<u8>>, String> {
    let aad = secret_aad(&e.id, &e.env_id);
    let open = |sealed: &[u8]| -> Result<Vec<u8>, String> {
        let plain = master.open(&aad, sealed).map_err(|e| e.to_string())?;
        let text = String::from_utf8(plain).map_err(|_| "the secret is not text".to_owned())?;
        signing::secret_key(&text).ok_or_else(|| "the secret is not a whsec_ secret".to_owned())
    };
    let mut keys = vec![open(&e.sealed_secret)?];
    if let (Some(p), Some(until)) = (&e.sealed_previous_secret, e.previous_secret_expires_at)
        && until > now
    {
        keys.push(open(p)?);
    }
    Ok(keys)
}

/// What one pass did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassReport {
    pub leased: usize,
    pub succeeded: usize,
    pub failed: usize,
}

#[derive(Default)]
struct InFlight {
    per_endpoint: HashMap<WebhookId, usize>,
    total: usize,
}

/// Gives back an in-flight slot when a delivery task ends, however it ends.
struct Slot {
    book: Arc<Mutex<InFlight>>,
    endpoint: WebhookId,
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut b) = self.book.lock() {
            b.total = b.total.saturating_sub(1);
            if let Some(n) = b.per_endpoint.get_mut(&self.endpoint) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    b.per_endpoint.remove(&self.endpoint);
                }
            }
        }
    }
}

/// Cheap to clone; clones share the in-flight book.
#[derive(Clone)]
pub struct Dispatcher {
    deps: Arc<dyn Deps>,
    config: Arc<DispatcherConfig>,
    book: Arc<Mutex<InFlight>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Ok,
    Failed,
}

impl Dispatcher {
    pub fn new(deps: Arc<dyn Deps>, config: DispatcherConfig) -> Self {
        Self {
            deps,
            config: Arc::new(config),
            book: Arc::new(Mutex::new(InFlight::default())),
        }
    }

    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    fn free_slots(&self, endpoint: &WebhookId) -> usize {
        self.book.lock().map_or(0, |b| {
            let mine = b.per_endpoint.get(endpoint).copied().unwrap_or(0);
            self.config
                .per_endpoint
                .saturating_sub(mine)
                .min(self.config.max_in_flight.saturating_sub(b.total))
        })
    }

    fn take_slot(&self, endpoint: &WebhookId) -> Slot {
        if let Ok(mut b) = self.book.lock() {
            b.total += 1;
            *b.per_endpoint.entry(endpoint.clone()).or_default() += 1;
        }
        Slot {
            book: self.book.clone(),
            endpoint: endpoint.clone(),
        }
    }

    /// Leases what is due and starts sending it on `tasks`; returns how many were leased.
    async fn start_due(&self, tasks: &mut JoinSet<Sent>) -> Result<usize, StoreError> {
        let store = self.deps.store();
        let now = self.deps.now();
        let until = Timestamp(
            now.millis()
                .saturating_add(i64::try_from(self.config.lease.as_millis()).unwrap_or(60_000)),
        );
        let mut contexts: HashMap<EnvId, Result<Arc<EgressContext>, String>> = HashMap::new();
        let mut leased = 0;
        for endpoint in store.due_webhook_endpoints(now, 500).await? {
            let free = self.free_slots(&endpoint.id);
            if free == 0 {
                continue;
            }
            let lease = format!(
                "{}/{}",
                self.config.node,
                IdGen {
                    random: &SystemRandom
                }
                .ulid(now)
            );
            let batch = store
                .lease_deliveries(
                    &endpoint.id,
                    &lease,
                    now,
                    until,
                    u32::try_from(free).unwrap_or(1),
                )
                .await?;
            if batch.is_empty() {
                continue;
            }
            leased += batch.len();
            let ids: Vec<_> = batch.iter().map(|d| &d.event_id).collect();
            let events: HashMap<String, Event> = store
                .events_by_id(&ids)
                .await?
                .into_iter()
                .map(|e| (e.id.as_str().to_owned(), e))
                .collect();
            let ctx = match contexts.get(&endpoint.env_id) {
                Some(c) => c.clone(),
                None => {
                    let c = self
                        .deps
                        .egress_context(&endpoint.env_id)
                        .await
                        .map(Arc::new);
                    contexts.insert(endpoint.env_id.clone(), c.clone());
                    c
                }
            };
            let endpoint = Arc::new(endpoint);
            for d in batch {
                let slot = self.take_slot(&endpoint.id);
                let event = events.get(d.event_id.as_str()).cloned();
                let (me, endpoint, ctx, lease) =
                    (self.clone(), endpoint.clone(), ctx.clone(), lease.clone());
                tasks.spawn(async move {
                    let _slot = slot;
                    me.attempt(&endpoint, ctx, d, event, &lease).await
                });
            }
        }
        Ok(leased)
    }

    /// One attempt of one leased delivery, recorded.
    async fn attempt(
        &self,
        endpoint: &WebhookEndpoint,
        ctx: Result<Arc<EgressContext>, String>,
        d: Delivery,
        event: Option<Event>,
        lease: &str,
    ) -> Sent {
        let started_at = self.deps.now();
        let started = Instant::now();
        let result = self.send(endpoint, ctx, &d, event, started_at).await;
        let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
        let now = self.deps.now();
        let (status, response, error) = match result {
            Ok((status, body)) if (200..300).contains(&status) => {
                (Some(status), Some(response_snippet(&body)), None)
            }
            Ok((status, body)) if (300..400).contains(&status) => (
                Some(status),
                Some(response_snippet(&body)),
                Some(format!(
                    "the receiver answered {status}: redirects are not followed for webhooks"
                )),
            ),
            Ok((status, body)) => (
                Some(status),
                Some(response_snippet(&body)),
                Some(format!("the receiver answered {status}")),
            ),
            Err(e) => (None, None, Some(e)),
        };
        let succeeded = error.is_none();
        let outcome = if succeeded {
            AttemptOutcome::Succeeded
        } else {
            match self.config.schedule.next_attempt(
                d.attempts.saturating_add(1),
                now,
                &SystemRandom,
            ) {
                Some(t) => AttemptOutcome::RetryAt(t),
                None => AttemptOutcome::GaveUp,
            }
        };
        let attempt = Attempt {
            delivery_id: d.id.clone(),
            attempted_at: started_at,
            node: self.config.node.clone(),
            status,
            latency_ms,
            response,
            error,
            succeeded,
        };
        let label = if succeeded { "succeeded" } else { "failed" };
        metrics::counter!("portcullis_webhook_attempts_total", "outcome" => label).increment(1);
        metrics::histogram!("portcullis_webhook_attempt_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        match self
            .deps
            .store()
            .record_attempt(lease, &attempt, outcome, now)
            .await
        {
            Ok(r) if !r.lease_held => {
                tracing::info!(delivery = %d.id, "lease expired during the attempt; another node holds the delivery")
            }
            Ok(r) if r.endpoint_failing => {
                tracing::warn!(endpoint = %endpoint.id, "webhook endpoint marked failing")
            }
            Ok(_) => {}
            // The lease will expire and the delivery be attempted again: at least once.
            Err(e) => {
                tracing::warn!(delivery = %d.id, error = %e, "could not record a delivery attempt")
            }
        }
        if succeeded { Sent::Ok } else { Sent::Failed }
    }

    /// Builds and sends the request; the receiver's status and body, or why there is none.
    async fn send(
        &self,
        endpoint: &WebhookEndpoint,
        ctx: Result<Arc<EgressContext>, String>,
        d: &Delivery,
        event: Option<Event>,
        now: Timestamp,
    ) -> Result<(u16, Vec<u8>), String> {
        let ctx = ctx.map_err(|e| format!("egress policy unavailable: {e}"))?;
        let event = event.ok_or_else(|| format!("event {} not found", d.event_id))?;
        let keys = signing_keys(self.deps.master(), endpoint, now)
            .map_err(|e| format!("signing secret: {e}"))?;
        let body = crate::event_object(&event).to_string().into_bytes();
        let mut headers: Vec<(String, String)> = vec![
            ("content-type".into(), "application/json".into()),
            (
                "user-agent".into(),
                concat!("Portcullis-Webhooks/", env!("CARGO_PKG_VERSION")).into(),
            ),
        ];
        headers.extend(signing::headers(
            &keys,
            event.id.as_str(),
            now.seconds(),
            &body,
        ));
        headers.extend(endpoint.headers.iter().cloned());
        let req = Request {
            method: Method::POST,
            url: endpoint.url.clone(),
            headers,
            body: Some(body),
        };
        match self
            .deps
            .gate()
            .send_once(&ctx, Purpose::Webhook, req)
            .await
        {
            Ok(res) => Ok((res.status, res.body)),
            Err(EgressError::Refused(d)) => {
                Err(format!("egress refused: {}", d.refusal.unwrap_or_default()))
            }
            Err(e) => Err(e.to_string()),
        }
    }

    /// One pass for tests and tools: lease what is due now, send it, wait for every attempt.
    pub async fn run_once(&self) -> Result<PassReport, StoreError> {
        let mut tasks = JoinSet::new();
        let leased = self.start_due(&mut tasks).await?;
        let mut report = PassReport {
            leased,
            ..PassReport::default()
        };
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Sent::Ok) => report.succeeded += 1,
                _ => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// Passes until `stop` turns true: a new pass starts every `poll_interval`, and sooner when
    /// an attempt ends, without waiting for the slow ones. On stop, attempts in flight get a few
    /// seconds to finish; the rest are abandoned to their leases.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut tasks: JoinSet<Sent> = JoinSet::new();
        loop {
            if let Err(e) = self.start_due(&mut tasks).await {
                tracing::warn!(error = %e, "webhook dispatcher pass failed; will retry");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = stop.changed() => break,
            }
            while tasks.try_join_next().is_some() {}
        }
        let drain = async { while tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tasks.abort_all();
        }
    }
}
