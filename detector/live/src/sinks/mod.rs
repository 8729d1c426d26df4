//! Alert sinks: Alertmanager's API v2, webhooks (Alertmanager's webhook JSON) and
//! stdout. Each sink has a bounded queue of alert updates: an update replaces a queued one
//! of the same alert (only the latest state matters), an unreachable endpoint is retried
//! with exponential backoff, and when the queue is full the oldest update is dropped and
//! counted. Alertmanager forgets a firing alert it has not heard of for its
//! `resolve_timeout`, so firing alerts are re-sent to it periodically.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::{info, warn};

use crate::client::HttpClient;
use crate::engine::alert::Alert;

/// Alerts posted to Alertmanager in one request at most.
const BATCH: usize = 64;
const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Replies read at most (error messages are logged).
const MAX_REPLY_BYTES: usize = 4096;

/// Where a sink delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An Alertmanager base URL.
    Alertmanager(String),
    /// A URL that receives Alertmanager's webhook JSON.
    Webhook(String),
    Stdout,
}

impl Target {
    /// The `sink` label of the self-metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Alertmanager(_) => "alertmanager",
            Self::Webhook(_) => "webhook",
            Self::Stdout => "stdout",
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Alert>,
    /// Firing alerts, re-sent to Alertmanager every `resend`.
    firing: BTreeMap<String, Alert>,
}

#[derive(Debug, Default)]
struct Counts {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    queued: AtomicU64,
}

/// One sink: its queue, its counters, and the task delivering from the queue.
#[derive(Debug)]
pub struct Sink {
    target: Target,
    capacity: usize,
    queue: Mutex<Queue>,
    counts: Counts,
    wake: Notify,
}

impl Sink {
    pub fn new(target: Target, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            target,
            capacity: capacity.max(1),
            queue: Mutex::new(Queue::default()),
            counts: Counts::default(),
            wake: Notify::new(),
        })
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues an alert update for delivery.
    pub fn push(&self, alert: Alert) {
        let mut queue = self.lock();
        let fingerprint = alert.fingerprint();
        if matches!(self.target, Target::Alertmanager(_)) {
            if alert.is_resolved() {
                queue.firing.remove(&fingerprint);
            } else {
                queue.firing.insert(fingerprint.clone(), alert.clone());
            }
        }
        self.enqueue(&mut queue, alert, &fingerprint);
        drop(queue);
        self.wake.notify_one();
    }

    fn enqueue(&self, queue: &mut Queue, alert: Alert, fingerprint: &str) {
        if let Some(queued) = queue
            .items
            .iter_mut()
            .find(|a| a.fingerprint() == fingerprint)
        {
            *queued = alert;
            return;
        }
        if queue.items.len() >= self.capacity {
            queue.items.pop_front();
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queue.items.push_back(alert);
        self.counts
            .queued
            .store(queue.items.len() as u64, Ordering::Relaxed);
    }

    /// Queues every firing alert again (Alertmanager only).
    fn requeue_firing(&self) {
        let mut queue = self.lock();
        let firing: Vec<(String, Alert)> = queue
            .firing
            .iter()
            .map(|(k, a)| (k.clone(), a.clone()))
            .collect();
        for (fingerprint, alert) in firing {
            self.enqueue(&mut queue, alert, &fingerprint);
        }
        drop(queue);
        self.wake.notify_one();
    }

    /// Whether every queued update was delivered.
    pub fn is_idle(&self) -> bool {
        self.lock().items.is_empty()
    }

    pub fn counts(&self) -> SinkCounts {
        SinkCounts {
            sent: self.counts.sent.load(Ordering::Relaxed),
            failed: self.counts.failed.load(Ordering::Relaxed),
            dropped: self.counts.dropped.load(Ordering::Relaxed),
            queued: self.counts.queued.load(Ordering::Relaxed),
        }
    }

    /// Delivers from the queue until the process ends: batches go out in order; a failed
    /// batch stays at the front and is retried after a growing pause.
    pub async fn run(self: Arc<Self>, client: HttpClient, resend: Duration, dashboard_url: String) {
        let mut backoff = BACKOFF_START;
        let mut resend_timer = tokio::time::interval(resend);
        resend_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        resend_timer.tick().await;
        loop {
            let batch: Vec<Alert> = {
                let queue = self.lock();
                let size = if matches!(self.target, Target::Alertmanager(_)) {
                    BATCH
                } else {
                    1
                };
                queue.items.iter().take(size).cloned().collect()
            };
            if batch.is_empty() {
                tokio::select! {
                    () = self.wake.notified() => {}
                    _ = resend_timer.tick(), if matches!(self.target, Target::Alertmanager(_)) => {
                        self.requeue_firing();
                    }
                }
                continue;
            }
            match self.deliver(&client, &batch, &dashboard_url).await {
                Ok(()) => {
                    backoff = BACKOFF_START;
                    let mut queue = self.lock();
                    // Remove what was delivered, unless a newer update replaced it meanwhile.
                    for sent in &batch {
                        if let Some(i) = queue.items.iter().position(|a| a == sent) {
                            queue.items.remove(i);
                        }
                    }
                    self.counts
                        .queued
                        .store(queue.items.len() as u64, Ordering::Relaxed);
                    self.counts
                        .sent
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
                Err(error) => {
                    self.counts.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(sink = self.target.kind(), %error, retry_in = ?backoff, "alert delivery failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    async fn deliver(
        &self,
        client: &HttpClient,
        batch: &[Alert],
        dashboard_url: &str,
    ) -> Result<(), String> {
        let (url, body) = match &self.target {
            Target::Stdout => {
                for alert in batch {
                    println!("{}", alert.webhook_payload("stdout", dashboard_url));
                }
                return Ok(());
            }
            Target::Alertmanager(base) => (
                format!("{}/api/v2/alerts", base.trim_end_matches('/')),
                serde_json::to_vec(batch).map_err(|e| e.to_string())?,
            ),
            Target::Webhook(url) => (
                url.clone(),
                serde_json::to_vec(&batch[0].webhook_payload("omen", dashboard_url))
                    .map_err(|e| e.to_string())?,
            ),
        };
        let response = client
            .request(reqwest::Method::POST, &url)
            .map_err(|e| format!("{url}: {e}"))?
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status();
        if status.is_success() {
            if matches!(self.target, Target::Alertmanager(_)) {
                info!(alerts = batch.len(), "alerts posted to alertmanager");
            }
            return Ok(());
        }
        // The start of the reply says why; the rest is not read.
        let reply = match crate::ingest::body::read_capped(response, MAX_REPLY_BYTES).await {
            Ok(reply) | Err((_, reply)) => reply,
        };
        let reply = String::from_utf8_lossy(&reply).into_owned();
        Err(format!("{url}: {status}: {reply}"))
    }
}

/// Delivery counts of one alert sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub queued: u64,
}

/// Counts of every sink, summed by kind, for `/metrics`.
pub fn counts_by_kind(sinks: &[Arc<Sink>]) -> Vec<(String, SinkCounts)> {
    let mut by_kind: BTreeMap<&str, SinkCounts> = BTreeMap::new();
    for sink in sinks {
        let counts = sink.counts();
        let total = by_kind.entry(sink.target.kind()).or_default();
        total.sent += counts.sent;
        total.failed += counts.failed;
        total.dropped += counts.dropped;
        total.queued += counts.queued;
    }
    by_kind
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(id: &str, resolved: bool) -> Alert {
        Alert {
            labels: BTreeMap::from([("incident".to_owned(), id.to_owned())]),
            annotations: BTreeMap::new(),
            starts_at: "2026-01-01T00:00:00.000Z".to_owned(),
            ends_at: resolved.then(|| "2026-01-01T00:01:00.000Z".to_owned()),
            generator_url: String::new(),
        }
    }

    #[test]
    fn updates_of_one_alert_coalesce_and_a_full_queue_drops_the_oldest() {
        let sink = Sink::new(Target::Alertmanager("http://127.0.0.1:1".to_owned()), 2);
        sink.push(alert("a", false));
        sink.push(alert("a", true));
        assert_eq!(sink.counts().queued, 1);
        assert!(sink.lock().items[0].is_resolved());
        assert!(sink.lock().firing.is_empty());
        sink.push(alert("b", false));
        sink.push(alert("c", false));
        let counts = sink.counts();
        assert_eq!((counts.queued, counts.dropped), (2, 1));
        let queued: Vec<String> = sink
            .lock()
            .items
            .iter()
            .map(|a| a.labels["incident"].clone())
            .collect();
        assert_eq!(queued, ["b", "c"]);
        // Both are still firing: the resend brings them back even after delivery.
        sink.lock().items.clear();
        sink.requeue_firing();
        assert_eq!(sink.lock().items.len(), 2);
    }
}
