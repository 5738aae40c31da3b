//! `type = "prometheus_remote_write"`: the host's samples also go to a distributed store by
//! Prometheus remote write (protobuf, snappy-compressed, over HTTP): Prometheus itself, Mimir, VictoriaMetrics,
//! Thanos receive. Keys become series through the same `[metrics]` rules as `/metrics`.
//!
//! Samples wait in a bounded buffer (the oldest dropped and counted beyond it) and leave in
//! batches every `flush` or when a batch is full. A store that is away or answers 5xx/429 is
//! tried again with backoff, the batch kept; one that refuses a batch (4xx) has it dropped
//! with one log line, as retrying the same bytes cannot succeed. Figures go to
//! `host.output.<name>.{sent,buffered,dropped,refused}`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use spud_server::faces::metrics::{Exporter, Mapping};
use spud_server::Pattern;

use super::{Output, OutputSettings, Started};

/// Its `[[output]]` settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Names its figures (default: its position, `output1`).
    pub name: Option<String>,
    /// The receiver, e.g. `http://127.0.0.1:9090/api/v1/write`.
    pub url: String,
    /// Which keys to send (a pattern; default all).
    #[serde(rename = "match", default = "everything")]
    pub pattern: String,
    /// Labels added to every series (`instance`, `cluster`...).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// HTTP headers added to every request (`X-Scope-OrgID` for Mimir...).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Samples per request.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Samples kept while the receiver is away.
    #[serde(default = "default_buffer")]
    pub buffer: usize,
    /// Longest wait before a batch that is not full leaves.
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush: Duration,
    /// One request's deadline.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn everything() -> String {
    "*".into()
}
fn default_batch() -> usize {
    1000
}
fn default_buffer() -> usize {
    100_000
}
fn default_flush() -> Duration {
    Duration::from_secs(1)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

impl OutputSettings for Settings {
    fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn locator(&self) -> &str {
        &self.url
    }

    fn problem(&self) -> Option<String> {
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Some(format!(
                "url {:?} must start with http:// or https://",
                self.url
            ));
        }
        if let Err(e) = Pattern::new(&self.pattern) {
            return Some(format!("match = {:?}: {e}", self.pattern));
        }
        if self.batch == 0 || self.buffer == 0 {
            return Some("batch and buffer must be at least 1".into());
        }
        None
    }

    fn start(&self, name: String, started: &Started) -> Arc<dyn Output> {
        tracing::info!("output {name}: remote write to {}", self.url);
        RemoteWrite::start(name, self.clone(), Arc::clone(&started.exporter))
    }
}

/// The remote-write messages (prometheus/prompb/remote.proto and types.proto), the fields
/// SPUD sends.
mod prompb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

struct Queued {
    series: Arc<Mapping>,
    value: f64,
    time: u64,
}

/// A running remote-write output.
pub struct RemoteWrite {
    name: String,
    config: Settings,
    pattern: Pattern,
    exporter: Arc<Exporter>,
    /// Per key: the series it goes to, or None (not matched, or dropped by a rule).
    routes: Mutex<HashMap<Box<str>, Option<Arc<Mapping>>>>,
    queue: Mutex<VecDeque<Queued>>,
    wake: Condvar,
    /// Samples taken from the queue whose request has not settled yet.
    in_flight: AtomicU64,
    sent: AtomicU64,
    dropped: AtomicU64,
    refused: AtomicU64,
    stop: CancellationToken,
}

impl RemoteWrite {
    /// Starts its sending thread.
    fn start(name: String, config: Settings, exporter: Arc<Exporter>) -> Arc<RemoteWrite> {
        let pattern = Pattern::new(&config.pattern).expect("checked with the config");
        let output = Arc::new(RemoteWrite {
            name,
            config,
            pattern,
            exporter,
            routes: Mutex::new(HashMap::new()),
            queue: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            in_flight: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            stop: CancellationToken::new(),
        });
        let sender = Arc::clone(&output);
        std::thread::Builder::new()
            .name(format!("output {}", output.name))
            .spawn(move || sender.run(&sender.stop))
            .expect("a thread");
        output
    }

    pub fn buffered(&self) -> usize {
        self.queue.lock().len()
    }

    fn run(&self, stop: &CancellationToken) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(self.config.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        // Per series: the newest timestamp sent, as receivers refuse going back in time.
        let mut newest: HashMap<String, i64> = HashMap::new();
        let mut backoff = Duration::from_millis(250);
        let mut down_since: Option<Instant> = None;
        loop {
            let stopping = stop.is_cancelled();
            let batch: Vec<Queued> = {
                let mut queue = self.queue.lock();
                if queue.len() < self.config.batch && !stopping {
                    self.wake.wait_for(&mut queue, self.config.flush);
                }
                let n = queue.len().min(self.config.batch);
                self.in_flight.store(n as u64, Ordering::Relaxed);
                queue.drain(..n).collect()
            };
            if batch.is_empty() {
                if stopping {
                    return;
                }
                continue;
            }
            let (body, series_newest, count) = self.encode(&batch, &newest);
            loop {
                match self.send(&agent, &body) {
                    Ok(()) => {
                        self.sent.fetch_add(count, Ordering::Relaxed);
                        newest.extend(series_newest);
                        if let Some(since) = down_since.take() {
                            tracing::info!(
                                "output {}: {} takes samples again (away {:.0?})",
                                self.name,
                                self.config.url,
                                since.elapsed()
                            );
                        }
                        backoff = Duration::from_millis(250);
                        break;
                    }
                    Err(Failure::Refused(why)) => {
                        self.refused.fetch_add(count, Ordering::Relaxed);
                        tracing::error!(
                            "output {}: {} refused a batch of {count} samples: {why}",
                            self.name,
                            self.config.url
                        );
                        break;
                    }
                    Err(Failure::Retry(why)) => {
                        if down_since.is_none() {
                            down_since = Some(Instant::now());
                            tracing::warn!(
                                "output {}: {}: {why}; keeping samples and trying again",
                                self.name,
                                self.config.url
                            );
                        }
                        if stop.is_cancelled() {
                            // Give up on what is left: the host is stopping.
                            self.dropped
                                .fetch_add(count + self.buffered() as u64, Ordering::Relaxed);
                            self.queue.lock().clear();
                            self.in_flight.store(0, Ordering::Relaxed);
                            return;
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
            self.in_flight.store(0, Ordering::Relaxed);
        }
    }

    /// The batch as one snappy-compressed WriteRequest; with each series' newest time and the
    /// number of samples in it (one per series and millisecond, newer than what was sent).
    fn encode(
        &self,
        batch: &[Queued],
        sent: &HashMap<String, i64>,
    ) -> (Vec<u8>, HashMap<String, i64>, u64) {
        let mut by_series: BTreeMap<String, (Arc<Mapping>, BTreeMap<i64, f64>)> = BTreeMap::new();
        for q in batch {
            let id = format!("{}{}", q.series.family.name, q.series.label_text);
            let entry = by_series
                .entry(id)
                .or_insert_with(|| (Arc::clone(&q.series), BTreeMap::new()));
            // The last value of a second wins: timestamps are whole seconds.
            entry.1.insert(q.time as i64 * 1000, q.value);
        }
        let mut newest = HashMap::new();
        let mut count = 0u64;
        let mut request = prompb::WriteRequest::default();
        for (id, (mapping, samples)) in by_series {
            let floor = sent.get(&id).copied().unwrap_or(i64::MIN);
            let samples: Vec<prompb::Sample> = samples
                .into_iter()
                .filter(|&(t, _)| t > floor)
                .map(|(timestamp, value)| prompb::Sample {
                    value: value * mapping.scale,
                    timestamp,
                })
                .collect();
            let Some(last) = samples.last() else { continue };
            newest.insert(id, last.timestamp);
            count += samples.len() as u64;
            let mut labels: BTreeMap<&str, &str> = self
                .config
                .labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            for (k, v) in &mapping.labels {
                labels.insert(k, v);
            }
            labels.insert("__name__", &mapping.family.name);
            request.timeseries.push(prompb::TimeSeries {
                labels: labels
                    .into_iter()
                    .map(|(name, value)| prompb::Label {
                        name: name.into(),
                        value: value.into(),
                    })
                    .collect(),
                samples,
            });
        }
        let raw = prost::Message::encode_to_vec(&request);
        let body = snap::raw::Encoder::new()
            .compress_vec(&raw)
            .expect("snappy compresses any input");
        (body, newest, count)
    }

    fn send(&self, agent: &ureq::Agent, body: &[u8]) -> Result<(), Failure> {
        let mut request = agent
            .post(&self.config.url)
            .header("Content-Encoding", "snappy")
            .header("Content-Type", "application/x-protobuf")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .header(
                "User-Agent",
                concat!("spud-host/", env!("CARGO_PKG_VERSION")),
            );
        for (k, v) in &self.config.headers {
            request = request.header(k, v);
        }
        let mut response = request
            .send(body)
            .map_err(|e| Failure::Retry(e.to_string()))?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(());
        }
        let text = response
            .body_mut()
            .read_to_string()
            .unwrap_or_default()
            .trim()
            .to_string();
        let why = format!("HTTP {status}: {text}");
        if status == 429 || status >= 500 {
            Err(Failure::Retry(why))
        } else {
            Err(Failure::Refused(why))
        }
    }
}

impl Output for RemoteWrite {
    fn name(&self) -> &str {
        &self.name
    }

    /// Keeps one sample if its key matches and its value is a number.
    fn offer(&self, key: &str, value: &str, time: u64) {
        let Ok(number) = value.trim().parse::<f64>() else {
            return;
        };
        let series = {
            let mut routes = self.routes.lock();
            match routes.get(key) {
                Some(route) => route.clone(),
                None => {
                    let route = if self.pattern.is_match(key) {
                        self.exporter.map(key)
                    } else {
                        None
                    };
                    routes.insert(key.into(), route.clone());
                    route
                }
            }
        };
        let Some(series) = series else { return };
        let mut queue = self.queue.lock();
        if queue.len() >= self.config.buffer {
            queue.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        queue.push_back(Queued {
            series,
            value: number,
            time,
        });
        if queue.len() >= self.config.batch {
            self.wake.notify_one();
        }
    }

    fn figures(&self) -> Vec<(&'static str, u64)> {
        vec![
            ("sent", self.sent.load(Ordering::Relaxed)),
            ("buffered", self.buffered() as u64),
            ("dropped", self.dropped.load(Ordering::Relaxed)),
            ("refused", self.refused.load(Ordering::Relaxed)),
        ]
    }

    /// Stops taking samples and waits (up to `within`) until everything buffered has been
    /// sent (or given up on).
    fn finish(&self, within: Duration) {
        self.stop.cancel();
        let deadline = Instant::now() + within;
        self.wake.notify_one();
        while (self.buffered() > 0 || self.in_flight.load(Ordering::Relaxed) > 0)
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

enum Failure {
    /// Worth sending again later.
    Retry(String),
    /// The receiver will never take these bytes.
    Refused(String),
}
