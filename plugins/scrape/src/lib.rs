//! Scrapes a Prometheus or OpenMetrics endpoint (node_exporter, any `/metrics`, SPUD's own)
//! once per interval, within the job's timeout: Tahoe's "the gatherer polls its producers",
//! in today's terms.
//!
//! Every sample becomes a key by the tag rule (`spud_plugin_api::kit::intake::tagged_key`):
//! `<job>.<name>[.<label>:<value>…]`, labels in name order, empty labels left out (as
//! Prometheus reads them), characters a key cannot hold made `_`. So a counter
//! `http_requests_total{code="200",method="get"}` is
//! `<job>.http_requests_total.code:200.method:get`; a histogram's buckets are
//! `<job>.x_bucket.le:0.5` … `.le:_Inf` beside `x_sum` and `x_count`; a summary's quantiles
//! `<job>.x.quantile:0.99`. Values are stored exactly as exposed (counters as their running
//! totals: alert rules take `rate()`), at the exposition's timestamp when it gives one.
//!
//! The job's own figures: `<job>.scrape.up` (1 or 0; one log line when it changes),
//! `.scrape.duration_seconds`, `.scrape.samples`; and `host.job.<job>.received`, `.bad`
//! (lines that could not be read), `.dropped` (samples beyond `max_samples`).
//!
//! ```toml
//! [[job]]
//! name = "node"
//! plugin = "scrape"
//! interval = "15s"
//! timeout = "10s"
//! options = { url = "http://127.0.0.1:9100/metrics" }
//! ```
//!
//! Options: `url`; `bearer_token` or `bearer_token_file` (read at every scrape, so a rotated
//! token is picked up); `ca` (a PEM file of the CA that signed the endpoint's certificate);
//! `honor_timestamps` (default true); `max_body` (bytes, default 16 MiB); `max_samples`
//! (default 200,000).

pub mod exposition;

use std::time::{Duration, Instant};

use spud_plugin_api::kit::intake::{tagged_key, Intake};
use spud_plugin_api::kit::Health;
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};

use exposition::Format;

/// The scraper.
pub struct Scrape;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    url: String,
    bearer_token: Option<String>,
    bearer_token_file: Option<String>,
    ca: Option<String>,
    #[serde(default = "yes")]
    honor_timestamps: bool,
    #[serde(default = "max_body")]
    max_body: u64,
    #[serde(default = "max_samples")]
    max_samples: usize,
}

fn yes() -> bool {
    true
}
fn max_body() -> u64 {
    16 << 20
}
fn max_samples() -> usize {
    200_000
}

/// What a scrape asks for: OpenMetrics first, Prometheus text otherwise.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

struct Scraper {
    options: Options,
    agent: ureq::Agent,
    host: Host,
    intake: Intake,
    health: Health,
}

impl Plugin for Scrape {
    const NAME: &'static str = "scrape";
    const DESCRIPTION: &'static str = "Prometheus / OpenMetrics endpoints, scraped";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        if options.bearer_token.is_some() && options.bearer_token_file.is_some() {
            return Err("options: give bearer_token or bearer_token_file, not both".into());
        }
        let mut config = ureq::Agent::config_builder()
            .timeout_global(Some(job.timeout))
            .http_status_as_error(false);
        if let Some(ca) = &options.ca {
            config = config.tls_config(tls_with_ca(ca)?);
        }
        Ok(Collector::pull(Scraper {
            agent: config.build().into(),
            intake: Intake::new(&job.name, host.clone()),
            health: Health::default(),
            options,
            host,
        }))
    }
}

/// TLS that trusts the CA in the PEM file `path` (and nothing else).
fn tls_with_ca(path: &str) -> Result<ureq::tls::TlsConfig, Error> {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let pem = std::fs::read(path).map_err(|e| format!("options: ca = {path:?}: {e}"))?;
    let certs: Vec<_> = parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(c)) => Some(c),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(format!("options: ca = {path:?}: no PEM certificate in it"));
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&certs))
        .build())
}

impl Scraper {
    /// One scrape: the body and its format, or why there is none.
    fn fetch(&self) -> Result<(String, Format), String> {
        let mut request = self.agent.get(&self.options.url).header("Accept", ACCEPT);
        let token = match (&self.options.bearer_token, &self.options.bearer_token_file) {
            (Some(t), _) => Some(t.trim().to_string()),
            (None, Some(file)) => Some(
                std::fs::read_to_string(file)
                    .map_err(|e| format!("bearer_token_file {file:?}: {e}"))?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let mut response = request.call().map_err(|e| e.to_string())?;
        if response.status() != 200 {
            return Err(format!("HTTP {}", response.status()));
        }
        let format = match response.headers().get("content-type") {
            Some(t) if t.to_str().unwrap_or("").contains("openmetrics") => Format::OpenMetrics,
            _ => Format::Prometheus,
        };
        let body = response
            .body_mut()
            .with_config()
            .limit(self.options.max_body)
            .read_to_string()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => {
                    format!(
                        "the body is over max_body ({} bytes)",
                        self.options.max_body
                    )
                }
                e => e.to_string(),
            })?;
        Ok((body, format))
    }
}

impl Pull for Scraper {
    fn collect(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let fetched = self.fetch();
        let host = &self.host;
        let (body, format) = match fetched {
            Ok(f) => f,
            Err(why) => {
                self.health.report_as(host, "scrape.up", "0", Some(&why));
                host.set("scrape.duration_seconds", seconds(started.elapsed()));
                self.intake.publish();
                return Ok(());
            }
        };
        let (samples, bad) = exposition::parse(&body, format);
        for b in &bad {
            self.intake.bad(
                "line unreadable",
                format_args!("line {}: {}", b.line, b.why),
            );
        }
        let kept = samples.len().min(self.options.max_samples);
        if samples.len() > kept {
            self.intake.dropped(
                (samples.len() - kept) as u64,
                "too many samples",
                format_args!(
                    "{} samples, max_samples is {}: the rest were let go",
                    samples.len(),
                    self.options.max_samples
                ),
            );
        }
        for s in &samples[..kept] {
            let key = tagged_key(
                s.name,
                s.labels
                    .iter()
                    .filter(|(_, v)| !v.is_empty())
                    .map(|(k, v)| (*k, v.as_str())),
            );
            match s.time {
                Some(t) if self.options.honor_timestamps => host.set_at(&key, s.value, t),
                _ => host.set(&key, s.value),
            }
        }
        self.intake.received(kept as u64);
        self.health.report_as(host, "scrape.up", "1", None);
        host.set("scrape.samples", kept);
        host.set("scrape.duration_seconds", seconds(started.elapsed()));
        self.intake.publish();
        Ok(())
    }
}

fn seconds(d: Duration) -> String {
    format!("{:.6}", d.as_secs_f64())
}

export_plugin!(Scrape);
