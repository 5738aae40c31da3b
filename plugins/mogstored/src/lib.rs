//! A mogstored device: HTTP GET of its usage document (`time:`, `used:`, `available:`,
//! `total:` lines), as the original plugin did: `<job>.used`, `.available`, `.total`,
//! `.time`, `.delay` (seconds the fetch took) and `.status` = `success`, `fetch_failure`
//! or `parse_failure`.
//!
//! ```toml
//! [[job]]
//! name = "mogstored.dev1"
//! plugin = "mogstored"
//! interval = "60s"
//! options = { url = "http://10.0.0.7:7500/dev1/usage" }
//! ```

use std::time::Instant;

use spud_plugin_api::kit::Health;
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};

/// The mogstored collector.
pub struct Mogstored;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    /// The device's usage document.
    url: String,
}

struct Device {
    url: String,
    agent: ureq::Agent,
    health: Health,
    host: Host,
}

impl Plugin for Mogstored {
    const NAME: &'static str = "mogstored";
    const DESCRIPTION: &'static str = "A mogstored device's usage";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        if !options.url.starts_with("http://") {
            return Err(format!(
                "job {}: option url: {:?} is not an http:// URL",
                job.name, options.url
            ));
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(job.timeout.mul_f64(0.9)))
            .build()
            .into();
        Ok(Collector::pull(Device {
            url: options.url,
            agent,
            health: Health::default(),
            host,
        }))
    }
}

impl Pull for Device {
    fn collect(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let document = self
            .agent
            .get(&self.url)
            .call()
            .and_then(|mut r| r.body_mut().read_to_string());
        let delay = started.elapsed().as_secs_f64();
        let document = match document {
            Ok(d) => d,
            Err(e) => {
                self.health.report(
                    &self.host,
                    "fetch_failure",
                    Some(&format!("{}: {e}", self.url)),
                );
                return Ok(());
            }
        };
        let Some(usage) = Usage::parse(&document) else {
            let why = format!(
                "{}: no time, used, available and total in the document",
                self.url
            );
            self.health.report(&self.host, "parse_failure", Some(&why));
            return Ok(());
        };
        self.health.report(&self.host, "success", None);
        self.host.set("time", usage.time);
        self.host.set("used", usage.used);
        self.host.set("available", usage.available);
        self.host.set("total", usage.total);
        self.host.set("delay", format!("{delay:5.3}"));
        Ok(())
    }
}

struct Usage<'a> {
    time: &'a str,
    used: &'a str,
    available: &'a str,
    total: &'a str,
}

impl<'a> Usage<'a> {
    /// `name: value` lines; all four must be there (the original's test).
    fn parse(document: &'a str) -> Option<Usage<'a>> {
        let field = |name: &str| {
            document.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                let v = v.trim();
                (k == name && !v.is_empty()).then_some(v)
            })
        };
        Some(Usage {
            time: field("time")?,
            used: field("used")?,
            available: field("available")?,
            total: field("total")?,
        })
    }
}

export_plugin!(Mogstored);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_documents() {
        let u =
            Usage::parse("available: 90\ndevice: dev1\ntime: 1700000000\ntotal: 100\nused: 10\n")
                .unwrap();
        assert_eq!(
            (u.time, u.used, u.available, u.total),
            ("1700000000", "10", "90", "100")
        );
        assert!(Usage::parse("time: 1\nused: 2\n").is_none());
        assert!(Usage::parse("<html>not found</html>").is_none());
    }
}
