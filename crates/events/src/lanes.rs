//! The dispatcher's in-memory side: per endpoint, a lane of deliveries leased and not yet sent,
//! and the workers that send them one after another.
//!
//! A worker holds one of the endpoint's `per_endpoint` slots (and one of `max_in_flight`) and
//! takes the lane's next delivery as soon as its previous attempt ends, so sending never waits
//! for a database round trip. Each pass tops the lanes up: the free slots, plus a prefetch sized
//! to what the endpoint's workers send in [`PREFETCH_WINDOW`] at its recent latency (nothing for
//! an endpoint not yet measured, little for a slow one), so a queued delivery waits about that
//! long, whatever the receiver's speed.
//!
//! Invariants:
//! - at most `per_endpoint` workers per endpoint and `max_in_flight` in all: the receivers'
//!   isolation (see the dispatcher);
//! - a queued delivery is sent only while its lease has more than `send_margin` left, so its
//!   lease outlasts the request; one that waited too long is dropped and taken again once its
//!   lease expires;
//! - a worker gives its slot back when its lane is empty, when the dispatcher stops, or when
//!   another lane waits for a slot (so a busy endpoint cannot keep every slot).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use portcullis_core::Timestamp;
use portcullis_core::event::Event;
use portcullis_core::ids::{DeliveryId, WebhookId};
use portcullis_core::webhook::{Delivery, WebhookEndpoint};
use portcullis_egress::EgressContext;

/// How long a prefetched delivery should wait for a worker, at the endpoint's recent latency.
pub const PREFETCH_WINDOW: Duration = Duration::from_millis(50);
/// At most this many windows of `per_endpoint` deliveries are prefetched per endpoint.
const PREFETCH_MAX_WINDOWS: usize = 8;
/// Lanes left empty this long are forgotten (with their latency).
const IDLE_LANE_MS: i64 = 10 * 60 * 1000;

/// A leased delivery waiting for a worker.
pub struct Job {
    pub delivery: Delivery,
    pub event: Option<Arc<Event>>,
    pub lease: Arc<str>,
    pub until: Timestamp,
}

/// The egress context a lane's deliveries go out under, or why there is none.
pub type Context = Result<Arc<EgressContext>, String>;

/// What a worker needs to send one job.
pub struct Work {
    pub endpoint: Arc<WebhookEndpoint>,
    pub ctx: Context,
    pub job: Job,
}

struct Lane {
    endpoint: Arc<WebhookEndpoint>,
    ctx: Context,
    queue: VecDeque<Job>,
    workers: usize,
    /// Recent attempt latency (moving average), once measured.
    latency_us: Option<u64>,
    touched: Timestamp,
}

#[derive(Default)]
struct Book {
    lanes: HashMap<WebhookId, Lane>,
    workers: usize,
    queued: usize,
    /// Lanes with queued deliveries and no worker, for want of a free slot.
    starved: usize,
    stopping: bool,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub per_endpoint: usize,
    pub max_in_flight: usize,
    /// A queued delivery is sent only while its lease has more than this left.
    pub send_margin: Duration,
}

/// Cheap to clone; clones share the lanes.
#[derive(Clone)]
pub struct Lanes {
    book: Arc<Mutex<Book>>,
    limits: Limits,
}

impl Lanes {
    pub fn new(limits: Limits) -> Self {
        Self {
            book: Arc::new(Mutex::new(Book::default())),
            limits,
        }
    }

    fn book(&self) -> MutexGuard<'_, Book> {
        // A poisoned book is still consistent: every change under the lock is a few counters.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn prefetch(&self, latency_us: Option<u64>) -> usize {
        let window = u64::try_from(PREFETCH_WINDOW.as_micros()).unwrap_or(u64::MAX);
        latency_us.map_or(0, |us| {
            let windows = usize::try_from(window / us.max(100)).unwrap_or(usize::MAX);
            self.limits.per_endpoint * windows.min(PREFETCH_MAX_WINDOWS)
        })
    }

    /// How many deliveries to lease for each of `due` (in order): its free slots plus its
    /// prefetch, less what its lane holds, within the global bounds.
    pub fn wants(&self, due: &[&WebhookId]) -> Vec<usize> {
        let b = self.book();
        let mut slots = self.limits.max_in_flight.saturating_sub(b.workers);
        let mut room = (self.limits.max_in_flight * PREFETCH_MAX_WINDOWS).saturating_sub(b.queued);
        due.iter()
            .map(|id| {
                let lane = b.lanes.get(*id);
                let (workers, queued) = lane.map_or((0, 0), |l| (l.workers, l.queue.len()));
                let free = self.limits.per_endpoint.saturating_sub(workers).min(slots);
                slots -= free;
                let ahead = self.prefetch(lane.and_then(|l| l.latency_us));
                let want = (free + ahead).saturating_sub(queued).min(room);
                room -= want;
                want
            })
            .collect()
    }

    /// Queues leased deliveries of `endpoint`; the lane sends under this snapshot of the endpoint
    /// and its egress context from now on.
    pub fn push(
        &self,
        endpoint: Arc<WebhookEndpoint>,
        ctx: Context,
        jobs: Vec<Job>,
        now: Timestamp,
    ) {
        let mut b = self.book();
        b.queued += jobs.len();
        let lane = b.lanes.entry(endpoint.id.clone()).or_insert_with(|| Lane {
            endpoint: endpoint.clone(),
            ctx: ctx.clone(),
            queue: VecDeque::new(),
            workers: 0,
            latency_us: None,
            touched: now,
        });
        lane.endpoint = endpoint;
        lane.ctx = ctx;
        lane.queue.extend(jobs);
        lane.touched = now;
    }

    /// Takes slots for the workers the lanes need now; start one task per returned worker.
    pub fn hire(&self, now: Timestamp) -> Vec<Worker> {
        let mut b = self.book();
        if b.stopping {
            return vec![];
        }
        b.lanes.retain(|_, l| {
            !(l.queue.is_empty()
                && l.workers == 0
                && now.millis().saturating_sub(l.touched.millis()) > IDLE_LANE_MS)
        });
        let mut hired = Vec::new();
        let mut free = self.limits.max_in_flight.saturating_sub(b.workers);
        // A lane without a worker gets one first, so a busy lane cannot keep every slot.
        for first in [true, false] {
            for (id, lane) in &mut b.lanes {
                let cap = if first {
                    usize::from(lane.workers == 0)
                } else {
                    self.limits.per_endpoint.saturating_sub(lane.workers)
                };
                let n = cap.min(lane.queue.len()).min(free);
                free -= n;
                lane.workers += n;
                hired.extend((0..n).map(|_| Worker {
                    lanes: self.clone(),
                    id: id.clone(),
                    active: true,
                }));
            }
        }
        let starved = b
            .lanes
            .values()
            .filter(|l| l.workers == 0 && !l.queue.is_empty())
            .count();
        b.workers += hired.len();
        b.starved = starved;
        hired
    }

    /// Stops handing out work and empties the lanes; returns the (lease, delivery) of every
    /// queued delivery, to give back.
    pub fn stop(&self) -> Vec<(Arc<str>, DeliveryId)> {
        let mut b = self.book();
        b.stopping = true;
        b.queued = 0;
        b.lanes
            .values_mut()
            .flat_map(|l| l.queue.drain(..))
            .map(|j| (j.lease, j.delivery.id))
            .collect()
    }

    /// Whether no worker runs and nothing is queued.
    #[cfg(test)]
    pub fn idle(&self) -> bool {
        let b = self.book();
        b.workers == 0 && b.queued == 0
    }
}

/// One in-flight slot of one endpoint; given back when [`Worker::next`] finds no work, or on drop.
pub struct Worker {
    lanes: Lanes,
    id: WebhookId,
    active: bool,
}

impl Worker {
    /// The lane's next delivery whose lease still has `send_margin` left (older ones are dropped
    /// to their leases), or `None`, and the slot is given back.
    pub fn next(&mut self, now: Timestamp) -> Option<Work> {
        if !self.active {
            return None;
        }
        let margin = i64::try_from(self.lanes.limits.send_margin.as_millis()).unwrap_or(i64::MAX);
        let mut b = self.lanes.book();
        let book = &mut *b;
        let give_back = book.stopping || book.starved > 0;
        if let Some(lane) = book.lanes.get_mut(&self.id) {
            while !give_back && let Some(job) = lane.queue.pop_front() {
                book.queued = book.queued.saturating_sub(1);
                if job.until.millis().saturating_sub(now.millis()) > margin {
                    return Some(Work {
                        endpoint: lane.endpoint.clone(),
                        ctx: lane.ctx.clone(),
                        job,
                    });
                }
            }
            lane.workers = lane.workers.saturating_sub(1);
        }
        book.workers = book.workers.saturating_sub(1);
        self.active = false;
        None
    }

    /// Feeds an attempt's latency into the lane's prefetch.
    pub fn observed(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        if let Some(lane) = self.lanes.book().lanes.get_mut(&self.id) {
            lane.latency_us = Some(lane.latency_us.map_or(us, |m| (m * 7 + us) / 8));
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.active {
            let mut b = self.lanes.book();
            if let Some(l) = b.lanes.get_mut(&self.id) {
                l.workers = l.workers.saturating_sub(1);
            }
            b.workers = b.workers.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use portcullis_core::ids::{EnvId, EventId};
    use portcullis_core::webhook::{DeliveryState, EndpointState};

    const T: Timestamp = Timestamp(1_800_000_000_000);

    fn lanes(per_endpoint: usize, max_in_flight: usize) -> Lanes {
        Lanes::new(Limits {
            per_endpoint,
            max_in_flight,
            send_margin: Duration::from_secs(10),
        })
    }

    fn endpoint(n: u8) -> Arc<WebhookEndpoint> {
        Arc::new(WebhookEndpoint {
            id: WebhookId::from_stored(format!("whk_{n:026}")),
            env_id: EnvId::from_stored("env_01J00000000000000000000000".into()),
            url: "https://hooks.example.test/".into(),
            description: String::new(),
            event_types: vec![],
            enabled: true,
            headers: vec![],
            state: EndpointState::Active,
            sealed_secret: vec![],
            sealed_previous_secret: None,
            previous_secret_expires_at: None,
            created_at: T,
            updated_at: T,
        })
    }

    fn jobs(e: &WebhookEndpoint, n: usize, until: Timestamp) -> Vec<Job> {
        (0..n)
            .map(|i| Job {
                delivery: Delivery {
                    id: DeliveryId::from_stored(format!("dlv_{i:026}")),
                    env_id: e.env_id.clone(),
                    endpoint_id: e.id.clone(),
                    event_id: EventId::from_stored(format!("evt_{i:026}")),
                    event_seq: i64::try_from(i).unwrap(),
                    event_type: "organization.created".into(),
                    state: DeliveryState::Pending,
                    attempts: 0,
                    next_attempt_at: Some(T),
                    last_status: None,
                    last_error: None,
                    created_at: T,
                    updated_at: T,
                    completed_at: None,
                },
                event: None,
                lease: Arc::from("lease"),
                until,
            })
            .collect()
    }

    #[test]
    fn an_unmeasured_endpoint_gets_its_slots_and_a_fast_one_a_prefetch() {
        let l = lanes(4, 64);
        let e = endpoint(1);
        assert_eq!(l.wants(&[&e.id]), vec![4]);
        l.push(
            e.clone(),
            Err("none".into()),
            jobs(&e, 4, T.plus_seconds(60)),
            T,
        );
        let mut w = l.hire(T);
        assert_eq!(w.len(), 4);
        for w in &mut w {
            assert!(w.next(T).is_some());
        }
        assert_eq!(
            l.wants(&[&e.id]),
            vec![0],
            "all slots busy, nothing measured"
        );
        w[0].observed(Duration::from_millis(2));
        // 50 ms at 2 ms per attempt is 25 windows of 4: capped at 8.
        assert_eq!(l.wants(&[&e.id]), vec![32]);
        w[1].observed(Duration::from_secs(10));
        w[1].observed(Duration::from_secs(10));
        assert_eq!(
            l.wants(&[&e.id]),
            vec![0],
            "a slow receiver gets no prefetch"
        );
        assert!(w.iter_mut().all(|w| w.next(T).is_none()));
        assert!(l.idle());
    }

    #[test]
    fn a_queued_delivery_whose_lease_runs_short_is_dropped() {
        let l = lanes(1, 64);
        let e = endpoint(1);
        let mut j = jobs(&e, 2, T.plus_seconds(60));
        j[0].until = T.plus_seconds(5);
        l.push(e, Err("none".into()), j, T);
        let mut w = l.hire(T);
        let work = w[0].next(T).unwrap();
        assert_eq!(work.job.delivery.event_seq, 1);
        assert!(w[0].next(T).is_none());
        assert!(l.idle());
    }

    #[test]
    fn a_waiting_lane_takes_the_next_free_slot() {
        let l = lanes(2, 2);
        let (a, b) = (endpoint(1), endpoint(2));
        l.push(
            a.clone(),
            Err("none".into()),
            jobs(&a, 5, T.plus_seconds(60)),
            T,
        );
        let mut first = l.hire(T);
        assert_eq!(first.len(), 2);
        l.push(
            b.clone(),
            Err("none".into()),
            jobs(&b, 1, T.plus_seconds(60)),
            T,
        );
        assert!(l.hire(T).is_empty(), "no slot left");
        // A's workers give their slots back instead of taking A's next delivery.
        assert!(first[0].next(T).is_none());
        let second = l.hire(T);
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].id, b.id);
    }

    #[test]
    fn stopping_gives_back_every_queued_lease() {
        let l = lanes(1, 64);
        let e = endpoint(1);
        l.push(
            e.clone(),
            Err("none".into()),
            jobs(&e, 3, T.plus_seconds(60)),
            T,
        );
        let mut w = l.hire(T);
        assert_eq!(l.stop().len(), 3);
        assert!(w[0].next(T).is_none());
        assert!(l.hire(T).is_empty());
        assert!(l.idle());
    }
}
