//! Perlbal, through its management interface: `states` → `<job>.<class>.<state>` = count,
//! as the original plugin did (`Perlbal::ClientProxy reading 3` → `<job>.ClientProxy.reading`),
//! and `uptime` → `<job>.uptime`, `<job>.starttime`, `<job>.version`. `<job>.status` is `ok`
//! or `down`.
//!
//! ```toml
//! [[job]]
//! name = "perlbal.web1"
//! plugin = "perlbal"
//! options = { address = "127.0.0.1:60000" }   # a `SET role = management` service
//! ```

use spud_plugin_api::kit::{name_value, Health, LineClient};
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};

/// The Perlbal collector.
pub struct Perlbal;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    /// `host:port` of a management service.
    address: String,
}

struct Management {
    client: LineClient,
    health: Health,
    host: Host,
}

impl Plugin for Perlbal {
    const NAME: &'static str = "perlbal";
    const DESCRIPTION: &'static str = "Perlbal connection states per class, and uptime";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        Ok(Collector::pull(Management {
            client: LineClient::new(options.address, job.timeout.mul_f64(0.9)),
            health: Health::default(),
            host,
        }))
    }
}

impl Management {
    fn collect_all(&mut self) -> Result<(), Error> {
        for line in self.client.request("states", |l| l == ".")? {
            if let Some((class, state, count)) = parse_state(&line) {
                self.host.set(&format!("{class}.{state}"), count);
            }
        }
        for line in self.client.request("uptime", |l| l == ".")? {
            if let Some((name, value)) = name_value(&line) {
                self.host.set(name, value);
            }
        }
        Ok(())
    }
}

impl Pull for Management {
    fn collect(&mut self) -> Result<(), Error> {
        match self.collect_all() {
            Ok(()) => self.health.report(&self.host, "ok", None),
            Err(e) => self.health.report(&self.host, "down", Some(&e)),
        }
        Ok(())
    }
}

/// The original's `^(.+?)\s+(\w+)\s+(\d+)$`, with the class's package path dropped.
fn parse_state(line: &str) -> Option<(&str, &str, &str)> {
    let mut parts = line.rsplitn(3, char::is_whitespace);
    let count = parts.next()?;
    let state = parts.next()?;
    let class = parts.next()?.trim();
    let word = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !count.chars().all(|c| c.is_ascii_digit())
        || count.is_empty()
        || !word(state)
        || class.is_empty()
    {
        return None;
    }
    let class = class.rsplit("::").next().unwrap_or(class);
    word(class).then_some((class, state, count))
}

export_plugin!(Perlbal);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_lines() {
        assert_eq!(
            parse_state("Perlbal::ClientProxy reading 3"),
            Some(("ClientProxy", "reading", "3"))
        );
        assert_eq!(
            parse_state("Perlbal::TCPListener listening 1"),
            Some(("TCPListener", "listening", "1"))
        );
        assert_eq!(parse_state("."), None);
        assert_eq!(parse_state("Perlbal::X state many"), None);
    }
}
