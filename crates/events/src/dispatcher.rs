//! The outbox dispatcher: leases due deliveries, sends them through the egress gate, logs every
//! attempt and reschedules on the retry schedule.
//!
//! A pass records the attempts that ended since the last one and leases what is due for the
//! endpoints' lanes, in one transaction, then starts the workers the lanes need (see
//! [`crate::lanes`]: workers send a lane's deliveries one after another, without waiting for the
//! database). Passes run when an attempt ends, when a write transaction of this process commits
//! (it may have enqueued deliveries: [`Store::watch_commits`]), and every `poll_interval` for the
//! deliveries that other nodes enqueue and for retries coming due.
//!
//! Invariants:
//! - at least once: a delivery leaves `pending` only when its attempt is recorded under a lease
//!   this node still holds; a crash before that (the send or the recording) leaves the lease to
//!   expire and the delivery to be taken again (by any node); a stopping dispatcher records what
//!   ended and gives back the leases of what it had not sent;
//! - the same `webhook-id` (the event ID) on every attempt;
//! - isolation between receivers: at most `per_endpoint` deliveries of one endpoint are in flight
//!   on this node, and at most `max_in_flight` in all, so a slow, failing or silent receiver
//!   occupies only its own slots; every request is bounded by the gate's timeouts and size limit;
//! - redirects are not followed (`send_once` returns the 3xx as the answer): a 3xx fails the
//!   attempt, so a receiver cannot bounce signed events to a URL nobody reviewed;
//! - the URL passes the environment's egress policy at every attempt (the gate decides each one).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use portcullis_core::event::Event;
use portcullis_core::ids::{DeliveryId, EnvId, EventId, WebhookId};
use portcullis_core::webhook::{Attempt, Delivery, WebhookEndpoint, response_snippet};
use portcullis_core::{IdGen, Timestamp};
use portcullis_crypto::{MasterKey, SystemRandom};
use portcullis_egress::gate::{Method, Request};
use portcullis_egress::{EgressContext, EgressError, EgressGate, Purpose};
use portcullis_store::{AttemptOutcome, Lease, LeasedAttempt, Recorded, Store, StoreError};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::lanes::{Job, Lanes, Limits, Work, Worker};
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
    /// The gate's request timeout: a delivery queued for a worker is sent only while its lease
    /// has more than this left (or half the lease, if that is shorter).
    pub request_timeout: Duration,
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
            request_timeout: Duration::from_secs(10),
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

/// The shortest time between two passes woken by commits: commits come in bursts (this
/// dispatcher's own among them), and one pass serves a burst.
const COMMIT_WAKE_GAP: Duration = Duration::from_millis(1);

/// How long a stopping dispatcher waits for the attempts in flight.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Cheap to clone; clones share the lanes.
#[derive(Clone)]
pub struct Dispatcher {
    deps: Arc<dyn Deps>,
    config: Arc<DispatcherConfig>,
    lanes: Lanes,
}

type Ended = mpsc::UnboundedSender<LeasedAttempt>;

impl Dispatcher {
    pub fn new(deps: Arc<dyn Deps>, config: DispatcherConfig) -> Self {
        let lanes = Lanes::new(Limits {
            per_endpoint: config.per_endpoint,
            max_in_flight: config.max_in_flight,
            send_margin: config.request_timeout.min(config.lease / 2),
        });
        Self {
            deps,
            config: Arc::new(config),
            lanes,
        }
    }

    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// One pass: records the attempts of `ended` and leases what the lanes of the due endpoints
    /// want, in one transaction, then queues the leased deliveries and starts workers. Returns
    /// how many were leased. `ended` is empty afterwards: recorded, or (on an error) left to its
    /// leases.
    async fn pass(
        &self,
        workers: &mut JoinSet<()>,
        out: &Ended,
        ended: &mut Vec<LeasedAttempt>,
    ) -> Result<usize, StoreError> {
        let store = self.deps.store();
        let now = self.deps.now();
        let until = Timestamp(
            now.millis()
                .saturating_add(i64::try_from(self.config.lease.as_millis()).unwrap_or(60_000)),
        );
        let due = store.due_webhook_endpoints(now, 500).await?;
        let ids: Vec<&WebhookId> = due.iter().map(|e| &e.id).collect();
        let wants = self.lanes.wants(&ids);
        let asks: Vec<(&WebhookId, u32)> = ids
            .iter()
            .zip(&wants)
            .filter(|(_, n)| **n > 0)
            .map(|(id, n)| (*id, u32::try_from(*n).unwrap_or(u32::MAX)))
            .collect();
        if asks.is_empty() && ended.is_empty() {
            self.start_workers(workers, out, now);
            return Ok(0);
        }
        let batch = std::mem::take(ended);
        let owner = format!(
            "{}/{}",
            self.config.node,
            IdGen {
                random: &SystemRandom
            }
            .ulid(now)
        );
        let lease = Lease {
            owner: &owner,
            now,
            until,
        };
        let (recorded, leased) = store.record_and_lease(&batch, &asks, &lease).await?;
        log_recorded(&recorded);
        let n = leased.len();
        if n > 0 {
            self.queue(due, leased, Arc::from(owner), until, now)
                .await?;
        }
        self.start_workers(workers, out, now);
        Ok(n)
    }

    /// Puts leased deliveries in their endpoints' lanes, with their events and egress contexts.
    async fn queue(
        &self,
        due: Vec<WebhookEndpoint>,
        leased: Vec<Delivery>,
        owner: Arc<str>,
        until: Timestamp,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut ids: Vec<&EventId> = leased.iter().map(|d| &d.event_id).collect();
        ids.sort();
        ids.dedup();
        let events: HashMap<String, Arc<Event>> = self
            .deps
            .store()
            .events_by_id(&ids)
            .await?
            .into_iter()
            .map(|e| (e.id.as_str().to_owned(), Arc::new(e)))
            .collect();
        let mut jobs: HashMap<WebhookId, Vec<Job>> = HashMap::new();
        for d in leased {
            let event = events.get(d.event_id.as_str()).cloned();
            jobs.entry(d.endpoint_id.clone()).or_default().push(Job {
                delivery: d,
                event,
                lease: owner.clone(),
                until,
            });
        }
        let mut contexts: HashMap<EnvId, Result<Arc<EgressContext>, String>> = HashMap::new();
        for endpoint in due {
            let Some(jobs) = jobs.remove(&endpoint.id) else {
                continue;
            };
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
            self.lanes.push(Arc::new(endpoint), ctx, jobs, now);
        }
        Ok(())
    }

    fn start_workers(&self, workers: &mut JoinSet<()>, out: &Ended, now: Timestamp) {
        for w in self.lanes.hire(now) {
            let (me, out) = (self.clone(), out.clone());
            workers.spawn(me.work(w, out));
        }
    }

    /// A worker: sends its lane's deliveries one after another and hands each ended attempt to
    /// the loop. It takes its next delivery (or gives its slot back) before handing the last
    /// one over, so that the pass this wakes sees the slot free.
    async fn work(self, mut w: Worker, out: Ended) {
        let mut next = w.next(self.deps.now());
        while let Some(Work { endpoint, ctx, job }) = next {
            let started = Instant::now();
            let ended = self
                .attempt(&endpoint, ctx, job.delivery, job.event, &job.lease)
                .await;
            w.observed(started.elapsed());
            next = w.next(self.deps.now());
            if out.send(ended).is_err() {
                return;
            }
        }
    }

    /// One attempt of one leased delivery, to be recorded with the next batch.
    async fn attempt(
        &self,
        endpoint: &WebhookEndpoint,
        ctx: Result<Arc<EgressContext>, String>,
        d: Delivery,
        event: Option<Arc<Event>>,
        lease: &str,
    ) -> LeasedAttempt {
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
        LeasedAttempt {
            lease: lease.to_owned(),
            endpoint_id: endpoint.id.clone(),
            attempt,
            outcome,
        }
    }

    /// Builds and sends the request; the receiver's status and body, or why there is none.
    async fn send(
        &self,
        endpoint: &WebhookEndpoint,
        ctx: Result<Arc<EgressContext>, String>,
        d: &Delivery,
        event: Option<Arc<Event>>,
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

    /// Records a batch of ended attempts in one transaction. On failure the batch is dropped:
    /// its leases expire and its deliveries are attempted again (at least once).
    async fn record(&self, ended: &mut Vec<LeasedAttempt>) -> Result<(), StoreError> {
        if ended.is_empty() {
            return Ok(());
        }
        let batch = std::mem::take(ended);
        let now = self.deps.now();
        log_recorded(&self.deps.store().record_attempts(&batch, now).await?);
        Ok(())
    }

    async fn record_or_log(&self, ended: &mut Vec<LeasedAttempt>) {
        let n = ended.len();
        if let Err(e) = self.record(ended).await {
            tracing::warn!(attempts = n, error = %e, "could not record delivery attempts; they will be made again when their leases expire");
        }
    }

    /// One pass for tests and tools: lease what is due now, send all of it, and record every
    /// attempt.
    pub async fn run_once(&self) -> Result<PassReport, StoreError> {
        let (out, mut results) = mpsc::unbounded_channel();
        let mut workers = JoinSet::new();
        let leased = self.pass(&mut workers, &out, &mut Vec::new()).await?;
        loop {
            while workers.join_next().await.is_some() {}
            // A worker that gave its slot to another lane may leave deliveries queued.
            self.start_workers(&mut workers, &out, self.deps.now());
            if workers.is_empty() {
                break;
            }
        }
        drop(out);
        let mut report = PassReport {
            leased,
            ..PassReport::default()
        };
        let mut ended = Vec::with_capacity(leased);
        while let Some(a) = results.recv().await {
            if a.attempt.succeeded {
                report.succeeded += 1;
            } else {
                report.failed += 1;
            }
            ended.push(a);
        }
        report.failed += leased.saturating_sub(ended.len());
        self.record(&mut ended).await?;
        Ok(report)
    }

    /// Passes until `stop` turns true (see the module comment for when a pass runs), without
    /// waiting for slow attempts. On stop, attempts in flight get a few seconds to finish and are
    /// recorded, and queued deliveries are given back; the rest is left to its leases.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let (out, mut results) = mpsc::unbounded_channel();
        let mut workers: JoinSet<()> = JoinSet::new();
        let mut commits = self.deps.store().watch_commits();
        let mut ended: Vec<LeasedAttempt> = Vec::new();
        loop {
            while let Ok(a) = results.try_recv() {
                ended.push(a);
            }
            while workers.try_join_next().is_some() {}
            // Commits from here on (this pass's own included) wake the next pass.
            commits.borrow_and_update();
            let pass = tokio::time::Instant::now();
            let recording = ended.len();
            if let Err(e) = self.pass(&mut workers, &out, &mut ended).await {
                tracing::warn!(error = %e, attempts = recording, "webhook dispatcher pass failed; its attempts will be made again when their leases expire");
            }
            tokio::select! {
                _ = stop.changed() => break,
                Some(a) = results.recv() => ended.push(a),
                Ok(()) = commits.changed() => {
                    tokio::time::sleep_until(pass + COMMIT_WAKE_GAP).await;
                }
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        let queued = self.lanes.stop();
        let deadline = tokio::time::Instant::now() + STOP_GRACE;
        while let Ok(Some(_)) = tokio::time::timeout_at(deadline, workers.join_next()).await {}
        workers.abort_all();
        while let Ok(a) = results.try_recv() {
            ended.push(a);
        }
        self.record_or_log(&mut ended).await;
        let queued: Vec<(&str, &DeliveryId)> = queued.iter().map(|(l, d)| (&**l, d)).collect();
        if let Err(e) = self.deps.store().release_leases(&queued).await {
            tracing::warn!(deliveries = queued.len(), error = %e, "could not give back the leases of queued deliveries; they will be taken again when the leases expire");
        }
    }
}

fn log_recorded(r: &Recorded) {
    for d in &r.lease_lost {
        tracing::info!(delivery = %d, "lease expired during the attempt; another node holds the delivery");
    }
    for e in &r.endpoints_failing {
        tracing::warn!(endpoint = %e, "webhook endpoint marked failing");
    }
}
