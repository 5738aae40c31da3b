//! `type = "prometheus_remote_write"`: the host's samples also go to a distributed store by
//! Prometheus remote write (protobuf, snappy-compressed, over HTTP): Prometheus itself, Mimir, VictoriaMetrics,
//! Thanos receive. Keys become series through the same `[metrics]` rules as `/metrics`.
//!
//! Samples wait in a backlog (`buffer` samples in memory, or a `spool` on disk that a
//! restart keeps; the oldest dropped and counted beyond either bound) and leave in batches
//! every `flush` or when a batch is full. A store that is away or answers 5xx/429 is
//! tried again with backoff, the batch kept; one that refuses a batch (4xx) has it dropped
//! with one log line, as retrying the same bytes cannot succeed. Figures go to
//! `host.output.<name>.{sent,buffered,spooled,dropped,oldest_age,refused}`.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use spud_access::{Secret, SecretRef};
use spud_server::faces::metrics::{Exporter, Mapping};
use spud_server::Pattern;
use spud_spool::{Backlog, Record};

use super::{Output, OutputSettings, Sending, Started};

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
    /// HTTP headers added to every request (`X-Scope-OrgID` for Mimir, `Authorization`);
    /// each value may be `env:NAME` or `file:PATH` (see `spud_access::SecretRef`).
    #[serde(default)]
    pub headers: BTreeMap<String, SecretRef>,
    /// HTTP basic authentication: `{ username = "…", password = "env:NAME" }`.
    pub basic_auth: Option<BasicAuth>,
    /// Samples per request.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Samples kept in memory while the receiver is away.
    #[serde(default = "default_buffer")]
    pub buffer: usize,
    /// Samples wait in this directory instead (relative to the config file): an outage
    /// and a restart meanwhile lose nothing.
    pub spool: Option<PathBuf>,
    /// The spool's bound in bytes (default 1 GiB).
    pub spool_max: Option<u64>,
    /// Longest wait before a batch that is not full leaves.
    #[serde(default = "default_flush", with = "humantime_serde")]
    pub flush: Duration,
    /// One request's deadline.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// `basic_auth = { username, password }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    pub password: SecretRef,
}

impl Settings {
    /// The headers to send, secrets resolved (`base`: the config's folder): each header's
    /// value, and basic authentication as an `Authorization` header.
    fn resolved_headers(&self, base: &std::path::Path) -> Result<Vec<(String, Secret)>, String> {
        use base64::Engine;
        let mut headers = Vec::new();
        for (name, value) in &self.headers {
            let value = value
                .resolve(Some(base))
                .map_err(|e| format!("headers.{name}: {e}"))?;
            headers.push((name.clone(), value));
        }
        if let Some(auth) = &self.basic_auth {
            let password = auth
                .password
                .resolve(Some(base))
                .map_err(|e| format!("basic_auth.password: {e}"))?;
            let pair = format!("{}:{}", auth.username, password.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            headers.push((
                "Authorization".into(),
                Secret::new(format!("Basic {encoded}")),
            ));
        }
        Ok(headers)
    }
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

    fn spool(&self) -> Option<&std::path::Path> {
        self.spool.as_deref()
    }

    fn problem(&self, base: &std::path::Path) -> Option<String> {
        if let Err(e) = self.resolved_headers(base) {
            return Some(e);
        }
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
        let backlog = started.backlog(&name, self.spool.as_deref(), self.spool_max, self.buffer);
        let base = started.config_path.parent().unwrap_or(std::path::Path::new("."));
        // Checked with the config; a secret gone since is said, and the header left out.
        let headers = self.resolved_headers(base).unwrap_or_else(|e| {
            tracing::error!("output {name}: {e}; sending without its headers");
            Vec::new()
        });
        RemoteWrite::start(
            name,
            self.clone(),
            headers,
            Arc::clone(&started.exporter),
            backlog,
        )
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
    /// Its headers, secrets resolved.
    headers: Vec<(String, Secret)>,
    pattern: Pattern,
    exporter: Arc<Exporter>,
    /// Per key: the series it goes to, or None (not matched, or dropped by a rule).
    routes: Mutex<HashMap<Box<str>, Option<Arc<Mapping>>>>,
    sending: Sending,
    sent: AtomicU64,
    refused: AtomicU64,
    /// Samples dropped at shutdown (a memory backlog's; a spool keeps them).
    abandoned: AtomicU64,
}

impl RemoteWrite {
    /// Starts its sending thread.
    fn start(
        name: String,
        config: Settings,
        headers: Vec<(String, Secret)>,
        exporter: Arc<Exporter>,
        backlog: Arc<Backlog>,
    ) -> Arc<RemoteWrite> {
        let pattern = Pattern::new(&config.pattern).expect("checked with the config");
        let output = Arc::new(RemoteWrite {
            name,
            config,
            headers,
            pattern,
            exporter,
            routes: Mutex::new(HashMap::new()),
            sending: Sending::new(backlog),
            sent: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            abandoned: AtomicU64::new(0),
        });
        let sender = Arc::clone(&output);
        let send = move || sender.run(&sender.sending.stop);
        Sending::spawn(&output.name, send, &output.sending);
        output
    }

    /// The series a key goes to, if any (cached per key).
    fn route(&self, key: &str) -> Option<Arc<Mapping>> {
        let mut routes = self.routes.lock();
        if let Some(route) = routes.get(key) {
            return route.clone();
        }
        let route = if self.pattern.is_match(key) {
            self.exporter.map(key)
        } else {
            None
        };
        routes.insert(key.into(), route.clone());
        route
    }

    /// Up to a batch of records: as soon as a batch is full, or `flush` after the first.
    fn next_batch(&self, stopping: bool) -> Vec<Record> {
        let mut batch = self.sending.backlog.take(self.config.batch, self.config.flush);
        if batch.is_empty() || stopping {
            return batch;
        }
        let deadline = Instant::now() + self.config.flush;
        while batch.len() < self.config.batch {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.sending.stop.is_cancelled() {
                break;
            }
            batch.extend(self.sending.backlog.take(self.config.batch - batch.len(), left));
        }
        batch
    }

    /// The records as samples of series (those whose key no longer maps are skipped).
    fn queued(&self, records: &[Record]) -> Vec<Queued> {
        records
            .iter()
            .filter_map(|r| {
                let text = std::str::from_utf8(&r.body).ok()?;
                let (key, value) = text.split_once(' ')?;
                Some(Queued {
                    series: self.route(key)?,
                    value: value.parse().ok()?,
                    time: r.time,
                })
            })
            .collect()
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
            // A spool keeps what is left for its successor or the next start.
            if stopping && self.sending.backlog.is_spool() {
                return;
            }
            let records = self.next_batch(stopping);
            if records.is_empty() {
                if stopping {
                    return;
                }
                continue;
            }
            let batch = self.queued(&records);
            let (body, series_newest, count) = self.encode(&batch, &newest);
            loop {
                match self.send(&agent, &body) {
                    Ok(()) => {
                        self.sending.backlog.ack(records.len());
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
                        self.sending.backlog.ack(records.len());
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
                            if !self.sending.backlog.is_spool() {
                                // Give up on what is left: the host is stopping.
                                let left = self.sending.backlog.held();
                                self.abandoned.fetch_add(left, Ordering::Relaxed);
                                tracing::warn!(
                                    "output {}: {left} samples not delivered at shutdown",
                                    self.name
                                );
                            }
                            return;
                        }
                        std::thread::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
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
            let id = format!(
                "{}{}{}",
                q.series.family.name, q.series.suffix, q.series.label_text
            );
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
            let name = format!("{}{}", mapping.family.name, mapping.suffix);
            labels.insert("__name__", &name);
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
        for (k, v) in &self.headers {
            request = request.header(k, v.expose());
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
        let value = value.trim();
        if value.parse::<f64>().is_err() || self.route(key).is_none() {
            return;
        }
        self.sending.push(key, value, time);
    }

    fn figures(&self) -> Vec<(&'static str, u64)> {
        let mut figures = vec![
            ("sent", self.sent.load(Ordering::Relaxed)),
            ("refused", self.refused.load(Ordering::Relaxed)),
        ];
        figures.extend(crate::sinks::backlog::figures(
            &self.sending.backlog,
            spud_server::unix_now(),
        ));
        if let Some(dropped) = figures.iter_mut().find(|(name, _)| *name == "dropped") {
            dropped.1 += self.abandoned.load(Ordering::Relaxed);
        }
        figures
    }

    /// Stops taking samples and waits (up to `within`) until everything held has been
    /// sent, or, with a spool, until the sender has let go of it.
    fn finish(&self, within: Duration) {
        self.sending.finish(within);
    }
}

enum Failure {
    /// Worth sending again later.
    Retry(String),
    /// The receiver will never take these bytes.
    Refused(String),
}
