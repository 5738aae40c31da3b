//! Probes (remstats' pinger and monitors): for each TCP target, `<job>.<target>.up` (1 or 0)
//! and `.connect_ms`; for each HTTP target, `.up`, `.status` (the HTTP code, or `error`) and
//! `.latency_ms`. Targets become keys with characters a key cannot hold replaced by `_`
//! (`http://web1/health` → `http:__web1_health`; `db1:5432` stays as it is). Every probe is bounded by the job's timeout.
//!
//! ```toml
//! [[job]]
//! name = "probe"
//! plugin = "probe"
//! interval = "10s"
//! timeout = "3s"
//! options = { tcp = ["db1:5432"], http = ["http://web1:8080/health"] }
//! ```

use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use spud_plugin_api::kit::Health;
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};

/// The probe collector.
pub struct Probe;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    #[serde(default)]
    tcp: Vec<String>,
    #[serde(default)]
    http: Vec<String>,
}

struct Prober {
    options: Options,
    timeout: Duration,
    agent: ureq::Agent,
    /// Per target: one log line when it goes down or comes back.
    health: HashMap<String, Health>,
    host: Host,
}

impl Plugin for Probe {
    const NAME: &'static str = "probe";
    const DESCRIPTION: &'static str = "TCP connect time, HTTP status and latency";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        if options.tcp.is_empty() && options.http.is_empty() {
            return Err(format!(
                "job {}: options: give tcp or http targets",
                job.name
            ));
        }
        // Probes run one after another: each gets a share of the job's deadline.
        let count = (options.tcp.len() + options.http.len()) as u32;
        let timeout = job.timeout.mul_f64(0.9) / count;
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Collector::pull(Prober {
            options,
            timeout,
            agent,
            health: HashMap::new(),
            host,
        }))
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1000.0)
}

impl Prober {
    fn tcp(&self, target: &str) -> Result<Duration, String> {
        let addr = target
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or("no address")?;
        let started = Instant::now();
        TcpStream::connect_timeout(&addr, self.timeout).map_err(|e| e.to_string())?;
        Ok(started.elapsed())
    }
}

impl Pull for Prober {
    fn collect(&mut self) -> Result<(), Error> {
        for target in &self.options.tcp {
            let key = spud_plugin_api::key_safe(target);
            let result = self.tcp(target);
            let health = self.health.entry(key.clone()).or_default();
            match result {
                Ok(took) => {
                    health.report_as(&self.host, &format!("{key}.up"), "1", None);
                    self.host.set(&format!("{key}.connect_ms"), ms(took));
                }
                Err(e) => health.report_as(
                    &self.host,
                    &format!("{key}.up"),
                    "0",
                    Some(&format!("{target}: {e}")),
                ),
            }
        }
        for url in &self.options.http {
            let key = spud_plugin_api::key_safe(url);
            let started = Instant::now();
            let result = self.agent.get(url).call();
            let took = started.elapsed();
            let health = self.health.entry(key.clone()).or_default();
            let up = format!("{key}.up");
            match result {
                Ok(response) => {
                    let code = response.status().as_u16();
                    self.host.set(&format!("{key}.status"), code);
                    self.host.set(&format!("{key}.latency_ms"), ms(took));
                    if code < 400 {
                        health.report_as(&self.host, &up, "1", None);
                    } else {
                        health.report_as(
                            &self.host,
                            &up,
                            "0",
                            Some(&format!("{url}: HTTP {code}")),
                        );
                    }
                }
                Err(e) => {
                    self.host.set(&format!("{key}.status"), "error");
                    health.report_as(&self.host, &up, "0", Some(&format!("{url}: {e}")));
                }
            }
        }
        Ok(())
    }
}

export_plugin!(Probe);
