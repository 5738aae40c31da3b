//! A MogileFS tracker: `!stats` → `<job>.<stat>`, as the original plugin did.
//! `<job>.status` is `ok` or `down`.
//!
//! ```toml
//! [[job]]
//! name = "mogilefsd.tracker1"
//! plugin = "mogilefsd"
//! options = { address = "10.0.0.5:7001" }
//! ```

use spud_plugin_api::kit::{name_value, Health, LineClient};
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};

/// The MogileFS tracker collector.
pub struct Mogilefsd;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    /// `host:port` of the tracker.
    address: String,
}

struct Tracker {
    client: LineClient,
    health: Health,
    host: Host,
}

impl Plugin for Mogilefsd {
    const NAME: &'static str = "mogilefsd";
    const DESCRIPTION: &'static str = "MogileFS tracker statistics";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        Ok(Collector::pull(Tracker {
            client: LineClient::new(options.address, job.timeout.mul_f64(0.9)),
            health: Health::default(),
            host,
        }))
    }
}

impl Pull for Tracker {
    fn collect(&mut self) -> Result<(), Error> {
        match self.client.request("!stats", |l| l == ".") {
            Ok(lines) => {
                for line in &lines {
                    if let Some((name, value)) = name_value(line) {
                        self.host.set(name, value);
                    }
                }
                self.health.report(&self.host, "ok", None);
            }
            Err(e) => self.health.report(&self.host, "down", Some(&e)),
        }
        Ok(())
    }
}

export_plugin!(Mogilefsd);
