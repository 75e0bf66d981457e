//! Batching, delivery to the leaf workers, dead letters, acknowledgement.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use timeline::EventParser;
use tokio::sync::{Notify, mpsc, watch};

use crate::metrics::Metrics;
use crate::prepare::{DeadLetter, Incoming, prepare};
use crate::routes::Routes;
use crate::target::{Fatal, Outcome, Target};

/// Where a source settles its messages once the runtime holds them.
pub trait Settle<T>: Send {
    /// Parks an undeliverable message with its reason (the dead-letter topic);
    /// returns once that is durable.
    fn dead_letter(&mut self, message: &Incoming, reason: &str) -> impl Future<Output = anyhow::Result<()>> + Send;
    /// Acknowledges messages whose events the runtime holds durably.
    fn ack(&mut self, tokens: Vec<T>) -> impl Future<Output = anyhow::Result<()>> + Send;
}

/// How the pipeline delivers.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest batch, in messages.
    pub batch_size: usize,
    /// How long a batch waits for more messages once it has one.
    pub linger: Duration,
    /// Requests in flight at once (per-worker delivery).
    pub concurrency: usize,
    /// One request per batch to `/v1/events` instead of one per worker.
    pub bulk: bool,
}

/// What a finished run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Messages read.
    pub consumed: u64,
    /// Events delivered.
    pub delivered: u64,
    /// Messages dead-lettered.
    pub dead_lettered: u64,
}

/// A worker's answer, the batch positions it was sent, and its leaf's index.
type WorkerOutcome = (Outcome, Vec<usize>, usize);

/// Delivers batches of messages to the runtime.
pub struct Pipeline {
    /// Validates events as the runtime does.
    pub parser: EventParser,
    /// The runtime.
    pub target: Target,
    /// The current routes (kept fresh by [`refresh_routes`]).
    pub routes: watch::Receiver<Routes>,
    /// Asks for an immediate refresh of the routes.
    pub refresh: Arc<Notify>,
    /// Batching and delivery settings.
    pub settings: Settings,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

impl Pipeline {
    /// Runs until `messages` is closed and drained.
    pub async fn run<T: Send, S: Settle<T>>(
        mut self,
        mut messages: mpsc::Receiver<(Incoming, T)>,
        mut settle: S,
    ) -> anyhow::Result<Summary> {
        let mut summary = Summary::default();
        let mut batch: Vec<Incoming> = Vec::with_capacity(self.settings.batch_size);
        let mut tokens: Vec<T> = Vec::with_capacity(self.settings.batch_size);
        loop {
            let Some((first, token)) = messages.recv().await else {
                break;
            };
            let started = Instant::now();
            batch.push(first);
            tokens.push(token);
            let deadline = tokio::time::Instant::now() + self.settings.linger;
            while batch.len() < self.settings.batch_size {
                match tokio::time::timeout_at(deadline, messages.recv()).await {
                    Ok(Some((m, t))) => {
                        batch.push(m);
                        tokens.push(t);
                    }
                    _ => break,
                }
            }
            self.metrics.consumed.inc_by(batch.len() as u64);
            summary.consumed += batch.len() as u64;
            let (delivered, dead) = self.deliver(&batch).await?;
            for d in &dead {
                settle.dead_letter(&batch[d.index], &d.reason).await?;
            }
            summary.delivered += delivered;
            summary.dead_lettered += dead.len() as u64;
            let n = tokens.len() as u64;
            settle.ack(std::mem::take(&mut tokens)).await?;
            self.metrics.acknowledged.inc_by(n);
            self.metrics.batches.inc();
            self.metrics.delivery_seconds.observe(started.elapsed().as_secs_f64());
            batch.clear();
        }
        Ok(summary)
    }

    /// Delivers one batch; returns the number of events the runtime holds
    /// and the dead letters (refused by the feeder or by the runtime).
    async fn deliver(&mut self, batch: &[Incoming]) -> Result<(u64, Vec<DeadLetter>), Fatal> {
        let prepared = prepare(&self.parser, batch);
        let mut dead = prepared.dead;
        for _ in &dead {
            self.metrics.dead_letter("invalid");
        }
        let ready = prepared.ready;
        if ready.is_empty() {
            return Ok((0, dead));
        }
        let mut refused: BTreeSet<usize> = BTreeSet::new();
        let mut reasons: HashMap<usize, String> = HashMap::new();
        if self.settings.bulk {
            let events: Vec<&str> = ready.iter().map(|r| r.json.as_str()).collect();
            let url = self.target.url(["v1", "events"]);
            if let Outcome::Accepted(rejected) = self.target.deliver(&url, &events, true).await? {
                for (i, reason) in rejected {
                    if let Some(r) = ready.get(i) {
                        refused.insert(r.index);
                        reasons.entry(r.index).or_insert(reason);
                    }
                }
            }
        } else {
            let routes = self.wait_for_routes().await;
            // One request per (leaf, key): the worker that owns them.
            let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
            for (i, r) in ready.iter().enumerate() {
                by_key.entry(r.key.as_str()).or_default().push(i);
            }
            let mut deliveries: Vec<(usize, Vec<usize>)> = Vec::with_capacity(by_key.len() * routes.leaves.len());
            for positions in by_key.into_values() {
                for leaf in 0..routes.leaves.len() {
                    deliveries.push((leaf, positions.clone()));
                }
            }
            let target = &self.target;
            let ready = &ready;
            let leaves = &routes.leaves;
            let results: Vec<Result<WorkerOutcome, Fatal>> = futures::stream::iter(deliveries)
                .map(|(leaf, positions)| async move {
                    let key = ready[positions[0]].key.as_str();
                    let url = target.url(["v1", "event-processor", leaves[leaf].as_str(), key, "events"]);
                    let events: Vec<&str> = positions.iter().map(|&p| ready[p].json.as_str()).collect();
                    target.deliver(&url, &events, false).await.map(|o| (o, positions, leaf))
                })
                .buffer_unordered(self.settings.concurrency.max(1))
                .collect()
                .await;
            let mut gone = Vec::new();
            for result in results {
                match result? {
                    (Outcome::Accepted(rejected), positions, _) => {
                        for (i, reason) in rejected {
                            if let Some(&p) = positions.get(i) {
                                refused.insert(ready[p].index);
                                reasons.entry(ready[p].index).or_insert(reason);
                            }
                        }
                    }
                    (Outcome::UnknownWorker, positions, leaf) => gone.push((leaves[leaf].clone(), positions)),
                }
            }
            if !gone.is_empty() {
                self.redeliver_to_vanished_workers(&gone, ready).await?;
            }
        }
        for index in &refused {
            self.metrics.dead_letter("rejected");
            dead.push(DeadLetter {
                index: *index,
                reason: reasons.remove(index).unwrap_or_default(),
            });
        }
        dead.sort_by_key(|d| d.index);
        let delivered = (ready.len() - refused.len()) as u64;
        self.metrics.delivered.inc_by(delivered);
        Ok((delivered, dead))
    }

    /// A worker answered 404: its job may have gone. Refresh the routes; if the
    /// leaf still runs (a worker being created), deliver again, else drop the
    /// delivery: no job needs it any more.
    async fn redeliver_to_vanished_workers(
        &mut self,
        gone: &[(String, Vec<usize>)],
        ready: &[crate::prepare::Ready],
    ) -> Result<(), Fatal> {
        for (leaf, positions) in gone {
            let mut backoff = Duration::from_millis(100);
            loop {
                self.refresh.notify_one();
                let _ = tokio::time::timeout(Duration::from_secs(2), self.routes.changed()).await;
                if !self.routes.borrow().leaves.contains(leaf) {
                    tracing::info!(%leaf, "the leaf's job was removed; its events are not delivered to it");
                    break;
                }
                let key = &ready[positions[0]].key;
                let url = self.target.url(["v1", "event-processor", leaf, key, "events"]);
                let events: Vec<&str> = positions.iter().map(|&p| ready[p].json.as_str()).collect();
                if let Outcome::Accepted(_) = self.target.deliver(&url, &events, false).await? {
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
        Ok(())
    }

    /// The routes, once at least one job runs: events are not consumed into
    /// nowhere.
    async fn wait_for_routes(&mut self) -> Routes {
        let mut told = false;
        loop {
            let routes = self.routes.borrow().clone();
            if !routes.is_empty() {
                return routes;
            }
            if !told {
                tracing::info!("no job runs yet: waiting for one before delivering");
                told = true;
            }
            let _ = self.routes.changed().await;
        }
    }
}

/// Keeps `routes` up to date with the runtime's jobs: every `every`, and at
/// once when `now` is notified.
pub async fn refresh_routes(
    target: Target,
    routes: watch::Sender<Routes>,
    every: Duration,
    now: Arc<Notify>,
    metrics: Arc<Metrics>,
) {
    let mut failing = false;
    loop {
        match target.routes().await {
            Ok(fresh) => {
                if failing {
                    tracing::info!("job plans readable again");
                    failing = false;
                }
                metrics.leaves.set(fresh.leaves.len() as i64);
                metrics.jobs.set(fresh.jobs.len() as i64);
                routes.send_if_modified(|current| {
                    if *current != fresh {
                        tracing::info!(jobs = ?fresh.jobs, leaves = fresh.leaves.len(), "routes changed");
                        *current = fresh;
                        true
                    } else {
                        false
                    }
                });
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read the job plans; keeping the last routes");
                    failing = true;
                }
            }
        }
        let _ = tokio::time::timeout(every, now.notified()).await;
    }
}
