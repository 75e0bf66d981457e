//! Batching, delivery to the leaf workers, dead letters, acknowledgement.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use timeline::StreamSpec;
use tokio::sync::{Notify, mpsc, watch};

use crate::metrics::Metrics;
use crate::prepare::{DeadLetter, Incoming, prepare};
use crate::routes::{Routes, StreamRoutes};
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
    /// Batches being delivered at once.
    pub in_flight: usize,
    /// One request per batch to the stream's events (`/v1/events` for the
    /// default stream) instead of one per worker.
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

/// Delivers batches of messages of one stream to the runtime.
#[derive(Clone)]
pub struct Pipeline {
    /// The stream the messages belong to.
    pub stream: String,
    /// The stream's fields while the runtime names none (the default stream,
    /// with `--key-field` or the runtime's key field); other streams wait
    /// until the runtime knows them.
    pub fallback: Option<StreamSpec>,
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

/// What the runtime took of a batch: events held, and dead letters.
type Delivered = Result<(u64, Vec<DeadLetter>), Fatal>;

/// A batch of messages with the tokens that acknowledge them.
struct Batch<T> {
    messages: Vec<Incoming>,
    tokens: Vec<T>,
    started: Instant,
}

impl Pipeline {
    /// Runs until `messages` is closed and drained.
    ///
    /// Up to `in_flight` batches are delivered at once (the runtime commits
    /// concurrent batches together), but they are settled strictly in the order
    /// they were read, so that a cumulative acknowledgement never covers a
    /// message whose delivery has not finished.
    pub async fn run<T: Send + 'static, S: Settle<T>>(
        self,
        messages: mpsc::Receiver<(Incoming, T)>,
        mut settle: S,
    ) -> anyhow::Result<Summary> {
        let mut summary = Summary::default();
        let max_in_flight = self.settings.in_flight.max(1);
        let (batch_tx, mut batches) = mpsc::channel(1);
        let batcher = tokio::spawn(collect_batches(
            messages,
            batch_tx,
            self.settings.batch_size,
            self.settings.linger,
        ));
        let mut in_flight = FuturesOrdered::new();
        let mut reading = true;
        while reading || !in_flight.is_empty() {
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    let (batch, result): (Batch<T>, Delivered) = done;
                    self.settle(batch, result?, &mut settle, &mut summary).await?;
                }
                batch = batches.recv(), if reading && in_flight.len() < max_in_flight => match batch {
                    Some(batch) => {
                        let batch: Batch<T> = batch;
                        self.metrics.consumed.inc_by(batch.messages.len() as u64);
                        summary.consumed += batch.messages.len() as u64;
                        let mut worker = self.clone();
                        in_flight.push_back(async move {
                            let result = worker.deliver(&batch.messages).await;
                            (batch, result)
                        });
                    }
                    None => reading = false,
                },
            }
        }
        batcher.await?;
        Ok(summary)
    }

    /// Dead-letters what the runtime or the feeder refused, then acknowledges
    /// the whole batch.
    async fn settle<T, S: Settle<T>>(
        &self,
        batch: Batch<T>,
        (delivered, dead): (u64, Vec<DeadLetter>),
        settle: &mut S,
        summary: &mut Summary,
    ) -> anyhow::Result<()> {
        for d in &dead {
            settle.dead_letter(&batch.messages[d.index], &d.reason).await?;
        }
        summary.delivered += delivered;
        summary.dead_lettered += dead.len() as u64;
        let n = batch.tokens.len() as u64;
        settle.ack(batch.tokens).await?;
        self.metrics.acknowledged.inc_by(n);
        self.metrics.batches.inc();
        self.metrics
            .delivery_seconds
            .observe(batch.started.elapsed().as_secs_f64());
        Ok(())
    }

    /// Delivers one batch; returns the number of events the runtime holds
    /// and the dead letters (refused by the feeder or by the runtime).
    async fn deliver(&mut self, batch: &[Incoming]) -> Delivered {
        let routes = self.stream_routes(!self.settings.bulk).await;
        let prepared = prepare(&routes.spec.parser(), &routes.spec.time, batch);
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
            let url = if routes.spec.is_default_stream() {
                self.target.url(["v1", "events"])
            } else {
                self.target.url(["v1", "streams", self.stream.as_str(), "events"])
            };
            if let Outcome::Accepted(rejected) = self.target.deliver(&url, &events, true).await? {
                for (i, reason) in rejected {
                    if let Some(r) = ready.get(i) {
                        refused.insert(r.index);
                        reasons.entry(r.index).or_insert(reason);
                    }
                }
            }
        } else {
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
            self.refresh_contributors(&routes, ready).await?;
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

    /// Tells each aggregate's contributor, and each key watcher of a job that
    /// records changes, of every key of the batch that the key's leaves
    /// changed, once they hold the events durably: on Golem, the contributor
    /// then pushes the key's new contributions to its aggregators, and the
    /// watcher records how the key's result changed.
    async fn refresh_contributors(&self, routes: &StreamRoutes, ready: &[crate::prepare::Ready]) -> Result<(), Fatal> {
        if routes.aggregates.is_empty() && routes.watched.is_empty() {
            return Ok(());
        }
        let mut keys: Vec<&str> = ready.iter().map(|r| r.key.as_str()).collect();
        keys.sort_unstable();
        keys.dedup();
        let mut urls = Vec::with_capacity((routes.aggregates.len() + routes.watched.len()) * keys.len());
        for aggregate in &routes.aggregates {
            for key in &keys {
                urls.push(self.target.url(["v1", "aggregate-feed", aggregate, key, "refresh"]));
            }
        }
        for job in &routes.watched {
            for key in &keys {
                urls.push(self.target.url(["v1", "changes-feed", job, key, "refresh"]));
            }
        }
        let target = &self.target;
        let results: Vec<Result<(), Fatal>> = futures::stream::iter(urls)
            .map(|url| async move { target.trigger(&url).await })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for result in results {
            result?;
            self.metrics.refreshes.inc();
        }
        // Then each watched job's aggregates, once their contributors took
        // the keys in.
        if !routes.aggregates.is_empty() {
            for job in &routes.watched {
                target
                    .trigger(&self.target.url(["v1", "changes-feed", job, "refresh"]))
                    .await?;
                self.metrics.refreshes.inc();
            }
        }
        Ok(())
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
                let runs = self
                    .routes
                    .borrow()
                    .stream(&self.stream)
                    .is_some_and(|s| s.leaves.contains(leaf));
                if !runs {
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

    /// The stream's routes, once the runtime knows the stream (and, with
    /// `leaves`, once a job reads it): events are not consumed into nowhere.
    async fn stream_routes(&mut self, leaves: bool) -> StreamRoutes {
        let mut told = false;
        loop {
            let known = self.routes.borrow().stream(&self.stream).cloned().or_else(|| {
                self.fallback.clone().map(|spec| StreamRoutes {
                    spec,
                    ..StreamRoutes::default()
                })
            });
            match known {
                Some(routes) if !leaves || !routes.leaves.is_empty() => return routes,
                _ => {}
            }
            if !told {
                tracing::info!(
                    stream = %self.stream,
                    "no job reads the stream yet: waiting for one before delivering"
                );
                told = true;
            }
            let _ = self.routes.changed().await;
        }
    }
}

/// Groups messages into batches of at most `size`, each waiting at most
/// `linger` after its first message for more.
async fn collect_batches<T>(
    mut messages: mpsc::Receiver<(Incoming, T)>,
    batches: mpsc::Sender<Batch<T>>,
    size: usize,
    linger: Duration,
) {
    while let Some((first, token)) = messages.recv().await {
        let mut batch = Batch {
            messages: Vec::with_capacity(size),
            tokens: Vec::with_capacity(size),
            started: Instant::now(),
        };
        batch.messages.push(first);
        batch.tokens.push(token);
        let deadline = tokio::time::Instant::now() + linger;
        while batch.messages.len() < size {
            match tokio::time::timeout_at(deadline, messages.recv()).await {
                Ok(Some((m, t))) => {
                    batch.messages.push(m);
                    batch.tokens.push(t);
                }
                _ => break,
            }
        }
        if batches.send(batch).await.is_err() {
            return;
        }
    }
}

/// Keeps `routes` up to date with the runtime's jobs: every `every`, and at
/// once when `now` is notified.
/// With `streams`, streams no job reads yet are read too (the local runtime's
/// `GET /v1/streams`).
pub async fn refresh_routes(
    target: Target,
    routes: watch::Sender<Routes>,
    every: Duration,
    now: Arc<Notify>,
    metrics: Arc<Metrics>,
    streams: bool,
) {
    let mut failing = false;
    loop {
        match target.routes(streams).await {
            Ok(fresh) => {
                if failing {
                    tracing::info!("job plans readable again");
                    failing = false;
                }
                metrics.leaves.set(fresh.leaves() as i64);
                metrics.jobs.set(fresh.jobs().len() as i64);
                routes.send_if_modified(|current| {
                    if *current != fresh {
                        let streams: Vec<&String> = fresh.streams.keys().collect();
                        tracing::info!(jobs = ?fresh.jobs(), ?streams, leaves = fresh.leaves(), "routes changed");
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::routing::post;

    /// A runtime that takes every batch, but answers one whose events mention
    /// `slow` only after a later batch has arrived (or after 2 s); `overlap`
    /// tells whether one did.
    async fn runtime(overlap: Arc<std::sync::atomic::AtomicBool>) -> String {
        use std::sync::atomic::Ordering::SeqCst;
        let fast_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let app = Router::new().route(
            "/v1/events",
            post(move |body: String| async move {
                if body.contains("slow") {
                    for _ in 0..200 {
                        if fast_seen.load(SeqCst) {
                            overlap.store(true, SeqCst);
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                } else {
                    fast_seen.store(true, SeqCst);
                }
                r#"{"accepted": 1, "rejected": []}"#
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    }

    struct Record(Arc<std::sync::Mutex<Vec<u64>>>);

    impl Settle<u64> for Record {
        async fn dead_letter(&mut self, _: &Incoming, reason: &str) -> anyhow::Result<()> {
            anyhow::bail!("unexpected dead letter: {reason}")
        }
        async fn ack(&mut self, tokens: Vec<u64>) -> anyhow::Result<()> {
            self.0.lock().unwrap().extend(tokens);
            Ok(())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_in_flight_are_acknowledged_in_the_order_they_were_read() {
        let metrics = Metrics::new();
        let overlap = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let base = runtime(overlap.clone()).await;
        let target = Target::new(&base, None, Duration::from_secs(1), metrics.clone()).unwrap();
        let (_, routes) = watch::channel(Routes::default());
        let pipeline = Pipeline {
            stream: "default".into(),
            fallback: Some(StreamSpec::default()),
            target,
            routes,
            refresh: Arc::new(Notify::new()),
            settings: Settings {
                batch_size: 1,
                linger: Duration::from_millis(1),
                concurrency: 4,
                in_flight: 4,
                bulk: true,
            },
            metrics,
        };
        let (tx, rx) = mpsc::channel(16);
        for (i, state) in ["slow", "fast", "fast"].iter().enumerate() {
            let payload = format!(r#"{{"session_id":"k","time":{i},"state":"{state}"}}"#);
            let incoming = Incoming {
                payload: payload.into_bytes(),
                source_id: None,
                key: None,
                origin: format!("line {}", i + 1),
                time: None,
                undecodable: None,
            };
            tx.send((incoming, i as u64 + 1)).await.unwrap();
        }
        drop(tx);
        let acked = Arc::new(std::sync::Mutex::new(Vec::new()));
        let summary = pipeline.run(rx, Record(acked.clone())).await.unwrap();
        assert_eq!(summary.delivered, 3);
        assert!(
            overlap.load(std::sync::atomic::Ordering::SeqCst),
            "a later batch was not delivered while the first was in flight"
        );
        assert_eq!(
            *acked.lock().unwrap(),
            [1, 2, 3],
            "the slow first batch is acknowledged first"
        );
    }
}
