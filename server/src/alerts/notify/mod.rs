//! Receivers: where alerts go. One thread per `[[notify]]` holds a bounded queue, so a slow
//! or absent receiver never blocks evaluation. Deliveries that fail are retried with
//! doubling backoff (1 s up to a minute) for `retry_for`; beyond `queue` waiting
//! notifications the oldest are dropped. Both are counted, and the receiver going down
//! and coming back are one log line each.

mod alertmanager;
mod exec;
mod webhook;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver as Inbox, RecvTimeoutError, Sender};

use super::instance::State;
use super::rules::{shown, Receiver, ReceiverKind};

/// An alert as receivers see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// `rule/key`: one alert instance.
    pub id: String,
    pub firing: bool,
    pub state: State,
    /// `alertname`, `key`, `severity` and the rule's labels.
    pub labels: BTreeMap<String, String>,
    /// `summary`, `value`, `state`.
    pub annotations: BTreeMap<String, String>,
    /// Unix seconds the alert began firing.
    pub starts_at: u64,
    /// Unix seconds it resolved (None while firing).
    pub ends_at: Option<u64>,
    /// The severity this one replaces: a firing alert that moved between warning and
    /// critical. Alertmanager keys alerts by their labels, severity among them, so the old
    /// severity must be resolved there, not left to run out.
    pub replaces: Option<Replaced>,
    /// Not news: the firing alert as it is now (its value), for the next repeat to carry.
    pub refresh: bool,
}

/// What a severity change left behind.
#[derive(Debug, Clone, PartialEq)]
pub struct Replaced {
    pub state: State,
    /// Its `severity` label.
    pub severity: String,
    /// Unix seconds of the change.
    pub at: u64,
}

impl Notice {
    /// The old severity's alert, resolved when it was replaced.
    pub fn replaced(&self) -> Option<Notice> {
        let old = self.replaces.as_ref()?;
        let mut labels = self.labels.clone();
        labels.insert("severity".into(), old.severity.clone());
        Some(Notice {
            firing: false,
            state: old.state,
            labels,
            ends_at: Some(old.at),
            replaces: None,
            ..self.clone()
        })
    }
}

/// How one receiver delivers.
trait Deliver: Send {
    /// Sends `batch` (every notice in it, or none of them: the caller retries all).
    fn deliver(&mut self, batch: &[Notice]) -> Result<(), String>;
    /// Whether a delivery carries several notices (Alertmanager) or one (a webhook
    /// payload per alert, a command run per alert).
    fn batches(&self) -> bool {
        false
    }
}

/// A receiver's figures, as `server.notify.<name>.*` keys and in `alerts`.
#[derive(Debug, Default)]
pub struct Stats {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub queued: AtomicU64,
    pub down: AtomicBool,
}

/// A running receiver.
pub struct Handle {
    pub spec: Receiver,
    pub stats: Arc<Stats>,
    tx: Sender<Notice>,
}

impl Handle {
    pub fn start(spec: Receiver) -> Handle {
        let deliver: Box<dyn Deliver> = match &spec.kind {
            ReceiverKind::Alertmanager { url } => Box::new(alertmanager::Alertmanager::new(
                url,
                spec.timeout,
                spec.repeat,
            )),
            ReceiverKind::Webhook { url } => {
                Box::new(webhook::Webhook::new(url, &spec.name, spec.timeout))
            }
            ReceiverKind::Exec { command } => Box::new(exec::Exec::new(command, spec.timeout)),
        };
        // Generous: a full channel drops (and counts) rather than block evaluation.
        let (tx, rx) = crossbeam_channel::bounded(spec.queue.max(1024));
        let stats = Arc::new(Stats::default());
        let worker = Worker {
            spec: spec.clone(),
            stats: Arc::clone(&stats),
            deliver,
            queue: VecDeque::new(),
            active: HashMap::new(),
            backoff: None,
            down_since: None,
        };
        std::thread::Builder::new()
            .name(format!("notify-{}", spec.name))
            .spawn(move || worker.run(rx))
            .expect("spawn a receiver thread");
        Handle { spec, stats, tx }
    }

    /// Whether this receiver wants `notice` (its `match`).
    pub fn wants(&self, notice: &Notice) -> bool {
        self.spec.matches.iter().all(|(label, allowed)| {
            let have = notice.labels.get(label).map_or("", String::as_str);
            allowed.split('|').any(|a| a == have)
        })
    }

    /// Queues `notice`; never blocks.
    pub fn send(&self, notice: Notice) {
        if self.tx.try_send(notice).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct Queued {
    notice: Notice,
    since: Instant,
}

struct Active {
    notice: Notice,
    last_sent: Instant,
}

struct Worker {
    spec: Receiver,
    stats: Arc<Stats>,
    deliver: Box<dyn Deliver>,
    queue: VecDeque<Queued>,
    /// Firing alerts this receiver was told of, for `repeat`.
    active: HashMap<String, Active>,
    /// While failing: when to try again, and the current delay.
    backoff: Option<(Instant, Duration)>,
    down_since: Option<(Instant, String)>,
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

impl Worker {
    fn run(mut self, rx: Inbox<Notice>) {
        loop {
            let wait = self.next_wake().saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(notice) => {
                    self.accept(notice);
                    // Take whatever else is waiting, so one delivery carries a burst.
                    while let Ok(notice) = rx.try_recv() {
                        self.accept(notice);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // Replaced or removed: one last try for what is waiting.
                    if self.backoff.is_none() {
                        self.flush();
                    }
                    return;
                }
            }
            self.repeat_due();
            if self.backoff.is_none_or(|(at, _)| Instant::now() >= at) {
                self.flush();
            }
            self.stats
                .queued
                .store(self.queue.len() as u64, Ordering::Relaxed);
        }
    }

    fn next_wake(&self) -> Instant {
        let mut at = Instant::now() + Duration::from_secs(1);
        if let Some((retry, _)) = self.backoff {
            if !self.queue.is_empty() {
                at = at.min(retry);
            }
        }
        at
    }

    fn accept(&mut self, notice: Notice) {
        if notice.refresh {
            if let Some(active) = self.active.get_mut(&notice.id) {
                active.notice = Notice {
                    refresh: false,
                    replaces: None,
                    ..notice
                };
            }
            return;
        }
        if notice.firing {
            // A repeat tells the severity as it is, not the change again.
            let repeat = Notice {
                replaces: None,
                ..notice.clone()
            };
            self.active.insert(
                notice.id.clone(),
                Active {
                    notice: repeat,
                    last_sent: Instant::now(),
                },
            );
        } else if self.active.remove(&notice.id).is_none() {
            // Never told it fired (filtered, or before a restart): nothing to resolve.
            return;
        }
        self.enqueue(notice);
    }

    fn enqueue(&mut self, notice: Notice) {
        if self.queue.len() >= self.spec.queue {
            self.queue.pop_front();
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        self.queue.push_back(Queued {
            notice,
            since: Instant::now(),
        });
    }

    /// Firing alerts told more than `repeat` ago are told again. Alertmanager hears all
    /// of them (it needs them re-sent to keep them active); others are not re-told of a
    /// flapping alert: once until it settles.
    fn repeat_due(&mut self) {
        let every = Duration::from_secs(self.spec.repeat);
        let keep_alive = self.deliver.batches();
        let mut due = Vec::new();
        for a in self.active.values_mut() {
            if a.last_sent.elapsed() >= every && (keep_alive || a.notice.state != State::Flapping) {
                a.last_sent = Instant::now();
                due.push(a.notice.clone());
            }
        }
        due.sort_by(|a, b| a.id.cmp(&b.id));
        for notice in due {
            if !self.queue.iter().any(|q| q.notice == notice) {
                self.enqueue(notice);
            }
        }
    }

    fn flush(&mut self) {
        let retry_for = Duration::from_secs(self.spec.retry_for);
        while let Some(front) = self.queue.front() {
            if front.since.elapsed() > retry_for {
                self.queue.pop_front();
                self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let n = if self.deliver.batches() {
                self.queue.len()
            } else {
                1
            };
            let batch: Vec<Notice> = self
                .queue
                .iter()
                .take(n)
                .map(|q| q.notice.clone())
                .collect();
            match self.deliver.deliver(&batch) {
                Ok(()) => {
                    self.queue.drain(..n);
                    self.stats.sent.fetch_add(n as u64, Ordering::Relaxed);
                    self.backoff = None;
                    if let Some((since, _)) = self.down_since.take() {
                        self.stats.down.store(false, Ordering::Relaxed);
                        tracing::info!(
                            "notify {}: delivering again after {:.0?} away",
                            self.spec.name,
                            since.elapsed()
                        );
                    }
                }
                Err(why) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    let delay = self
                        .backoff
                        .map_or(FIRST_RETRY, |(_, d)| (d * 2).min(LONGEST_RETRY));
                    self.backoff = Some((Instant::now() + delay, delay));
                    if self.down_since.is_none() {
                        self.stats.down.store(true, Ordering::Relaxed);
                        tracing::warn!(
                            "notify {} ({}): {why}; retrying with backoff, holding up to {} notifications for {:?}",
                            self.spec.name,
                            self.spec.kind_name(),
                            self.spec.queue,
                            retry_for
                        );
                        self.down_since = Some((Instant::now(), why));
                    }
                    return;
                }
            }
        }
    }
}

/// RFC 3339, as Alertmanager writes times.
fn rfc3339(unix: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(unix)).to_string()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// An HTTP agent for one receiver: its timeout, statuses read by the caller.
fn agent(timeout: u64) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(timeout)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// POSTs JSON; anything but 2xx is a failure naming the status and the body's start.
fn post_json(agent: &ureq::Agent, url: &str, body: &serde_json::Value) -> Result<(), String> {
    let body = serde_json::to_vec(body).expect("JSON serialises");
    let mut response = agent
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("spud/", env!("CARGO_PKG_VERSION")))
        .send(&body[..])
        .map_err(|e| format!("{}: {}", shown(url), e.to_string().replace(url, "…")))?;
    if response.status().is_success() {
        return Ok(());
    }
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let text: String = text.trim().chars().take(200).collect();
    Err(format!(
        "{}: HTTP {}: {text}",
        shown(url),
        response.status().as_u16()
    ))
}
