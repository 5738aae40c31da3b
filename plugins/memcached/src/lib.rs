//! memcached: `stats` → `<job>.<stat>`, as the original plugin did (`curr_items`,
//! `get_hits`, ...). With `slabs = true`, `stats slabs` → `<job>.slabs.<id>.<stat>` (and
//! `<job>.slabs.<stat>` for totals); with `items = true`, `stats items` →
//! `<job>.items.<id>.<stat>`. `<job>.status` is `ok` or `down`.
//!
//! ```toml
//! [[job]]
//! name = "memcached.local"
//! plugin = "memcached"
//! interval = "5s"
//! options = { address = "127.0.0.1:11211", slabs = false, items = false }
//! ```

use spud_plugin_api::kit::{Health, LineClient};
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};

/// The memcached collector.
pub struct Memcached;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    /// `host:port` of the memcached.
    address: String,
    #[serde(default)]
    slabs: bool,
    #[serde(default)]
    items: bool,
}

struct Stats {
    options: Options,
    client: LineClient,
    health: Health,
    host: Host,
}

impl Plugin for Memcached {
    const NAME: &'static str = "memcached";
    const DESCRIPTION: &'static str = "memcached's stats (and optionally slabs and items)";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        Ok(Collector::pull(Stats {
            client: LineClient::new(&options.address, job.timeout.mul_f64(0.9)),
            options,
            health: Health::default(),
            host,
        }))
    }
}

impl Stats {
    /// `STAT name value` lines of one stats command, until `END`.
    fn stats(&mut self, command: &str) -> Result<Vec<(String, String)>, Error> {
        let lines = self.client.request(command, |l| l == "END")?;
        Ok(lines
            .iter()
            .filter_map(|l| parse_stat(l))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    fn collect_all(&mut self) -> Result<(), Error> {
        for (name, value) in self.stats("stats")? {
            self.host.set(&name, value);
        }
        if self.options.slabs {
            for (name, value) in self.stats("stats slabs")? {
                // "1:chunk_size" → slabs.1.chunk_size; "active_slabs" → slabs.active_slabs
                self.host
                    .set(&format!("slabs.{}", name.replace(':', ".")), value);
            }
        }
        if self.options.items {
            for (name, value) in self.stats("stats items")? {
                // "items:1:number" → items.1.number
                let name = name
                    .strip_prefix("items:")
                    .unwrap_or(&name)
                    .replace(':', ".");
                self.host.set(&format!("items.{name}"), value);
            }
        }
        Ok(())
    }
}

impl Pull for Stats {
    fn collect(&mut self) -> Result<(), Error> {
        match self.collect_all() {
            Ok(()) => self.health.report(&self.host, "ok", None),
            // A memcached that is down is a sample and one log line, not a failing job.
            Err(e) => self.health.report(&self.host, "down", Some(&e)),
        }
        Ok(())
    }
}

/// `STAT <name> <value>`, the original's `^STAT\s+([\w:]+)\s+(.+)$`.
fn parse_stat(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix("STAT")?.trim_start();
    let (name, value) = rest.split_once(char::is_whitespace)?;
    let value = value.trim();
    let name_ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    (name_ok && !value.is_empty()).then_some((name, value))
}

export_plugin!(Memcached);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        assert_eq!(parse_stat("STAT curr_items 42"), Some(("curr_items", "42")));
        assert_eq!(
            parse_stat("STAT version 1.6.18"),
            Some(("version", "1.6.18"))
        );
        assert_eq!(
            parse_stat("STAT 1:chunk_size 96"),
            Some(("1:chunk_size", "96"))
        );
        assert_eq!(
            parse_stat("STAT libevent 2.1.12-stable"),
            Some(("libevent", "2.1.12-stable"))
        );
        assert_eq!(parse_stat("END"), None);
        assert_eq!(parse_stat("STAT bad-name 1"), None);
    }
}
