//! The machine itself, from `/proc` (what kstat and DTrace gave the sister seed's generator):
//!
//! | keys | from | what |
//! |---|---|---|
//! | `cpu.<mode>` | `/proc/stat` | percent of CPU time in user, nice, system, idle, iowait, irq, softirq, steal since the last collect |
//! | `cpu.count` | `/proc/stat` | CPUs online (a load per CPU is `load.1 / cpu.count`) |
//! | `ctxt_per_s`, `forks_per_s`, `procs_running`, `procs_blocked` | `/proc/stat` | context switches and forks per second; runnable and blocked processes |
//! | `load.1`, `load.5`, `load.15` | `/proc/loadavg` | load averages |
//! | `mem.<field>_kb`, `swap.<field>_kb` | `/proc/meminfo` | total, free, available, buffers, cached; swap total, free, used |
//! | `net.<if>.<counter>_per_s` | `/proc/net/dev` | rx/tx bytes, packets, errors, drops per second, per interface |
//! | `disk.<dev>.<counter>_per_s`, `disk.<dev>.busy_pct` | `/proc/diskstats` | reads, writes, bytes read and written per second; time busy |
//!
//! Rates come from counters: the first collect only takes the counters in. A counter that
//! went down wrapped if it was near 2³² (32-bit counters) and was reset otherwise; a reset
//! gives no rate for that one collect. Loop and RAM disks are left out.
//!
//! ```toml
//! [[job]]
//! name = "box"
//! plugin = "procstat"
//! interval = "10s"
//! options = { root = "/proc" }   # the default
//! ```

use std::collections::HashMap;
use std::time::Instant;

use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};

mod parse;

/// The procstat collector.
pub struct Procstat;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    /// Where proc is mounted (a copy of it, for tests).
    #[serde(default = "default_root")]
    root: String,
}

fn default_root() -> String {
    "/proc".into()
}

struct Machine {
    root: String,
    host: Host,
    /// Counters at the last collect, by key.
    last: HashMap<String, u64>,
    last_at: Option<Instant>,
}

impl Plugin for Procstat {
    const NAME: &'static str = "procstat";
    const DESCRIPTION: &'static str = "The machine from /proc: CPU, load, memory, network, disks";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        Ok(Collector::pull(Machine {
            root: options.root,
            host,
            last: HashMap::new(),
            last_at: None,
        }))
    }
}

impl Machine {
    fn read(&self, file: &str) -> Result<String, Error> {
        let path = format!("{}/{file}", self.root);
        std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))
    }
}

/// Counters of this collect, and their rates against the last one's.
struct Rates<'a> {
    last: &'a HashMap<String, u64>,
    seconds: Option<f64>,
    next: HashMap<String, u64>,
}

impl Rates<'_> {
    /// Keeps `value` for next time; its growth since the last collect, if known.
    fn delta(&mut self, key: &str, value: u64) -> Option<u64> {
        self.next.insert(key.to_string(), value);
        counter_delta(*self.last.get(key)?, value)
    }

    /// Per-second rate of a counter since the last collect (None the first time, or on a
    /// reset).
    fn rate(&mut self, key: &str, value: u64) -> Option<f64> {
        let delta = self.delta(key, value)?;
        Some(delta as f64 / self.seconds?)
    }
}

/// How much a counter grew: it wrapped if it went down from near 2³², it was reset if it
/// went down otherwise (no answer then).
pub fn counter_delta(before: u64, now: u64) -> Option<u64> {
    const WRAP32: u64 = 1 << 32;
    if now >= before {
        Some(now - before)
    } else if before < WRAP32 && before > WRAP32 / 4 * 3 {
        Some(WRAP32 - before + now)
    } else {
        None
    }
}

fn fmt(x: f64) -> String {
    format!("{x:.2}")
}

impl Pull for Machine {
    fn collect(&mut self) -> Result<(), Error> {
        let now = Instant::now();
        let seconds = self
            .last_at
            .map(|t| now.duration_since(t).as_secs_f64())
            .filter(|s| *s > 0.0);
        let mut rates = Rates {
            last: &self.last,
            seconds,
            next: HashMap::new(),
        };
        let host = &self.host;

        let stat_text = self.read("stat")?;
        let stat = parse::stat(&stat_text);
        cpu(host, &stat.cpu, &mut rates);
        for (key, counter) in [("ctxt", stat.ctxt), ("forks", stat.forks)] {
            if let Some(r) = counter.and_then(|v| rates.rate(key, v)) {
                host.set(&format!("{key}_per_s"), fmt(r));
            }
        }
        if stat.cpus > 0 {
            host.set("cpu.count", stat.cpus);
        }
        for (name, value) in stat.procs {
            host.set(name, value);
        }
        for (name, value) in parse::loadavg(&self.read("loadavg")?) {
            host.set(name, value);
        }
        for (key, kb) in parse::meminfo(&self.read("meminfo")?) {
            host.set(key, kb);
        }
        for (key, value) in parse::net_dev(&self.read("net/dev")?) {
            if let Some(r) = rates.rate(&key, value) {
                host.set(&format!("{key}_per_s"), fmt(r));
            }
        }
        for disk in parse::diskstats(&self.read("diskstats")?) {
            for (name, value) in disk.counters {
                let key = format!("disk.{}.{name}", disk.device);
                if let Some(r) = rates.rate(&key, value) {
                    host.set(&format!("{key}_per_s"), fmt(r));
                }
            }
            // Milliseconds spent doing I/O: per second of wall time, a share of it.
            let io_ms = format!("disk.{}.io_ms", disk.device);
            if let Some(r) = disk.io_ms.and_then(|v| rates.rate(&io_ms, v)) {
                let key = format!("disk.{}.busy_pct", disk.device);
                host.set(&key, fmt((r / 10.0).min(100.0)));
            }
        }

        self.last = rates.next;
        self.last_at = Some(now);
        Ok(())
    }
}

/// Percent of CPU time per mode since the last collect; nothing until every mode has a
/// delta.
fn cpu(host: &Host, ticks: &[(&str, u64)], rates: &mut Rates) {
    let deltas: Vec<Option<u64>> = ticks
        .iter()
        .map(|(mode, t)| rates.delta(&format!("cpu.{mode}"), *t))
        .collect();
    let total: u64 = deltas.iter().flatten().sum();
    if total == 0 || deltas.iter().any(Option::is_none) {
        return;
    }
    for ((mode, _), d) in ticks.iter().zip(&deltas) {
        let share = d.unwrap_or(0) as f64 * 100.0 / total as f64;
        host.set(&format!("cpu.{mode}"), fmt(share));
    }
}

export_plugin!(Procstat);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_wrap_and_reset() {
        assert_eq!(counter_delta(10, 15), Some(5));
        // A 32-bit counter near its end went round.
        assert_eq!(counter_delta(u32::MAX as u64 - 4, 5), Some(10));
        // Anything else that went down was reset: no rate this time.
        assert_eq!(counter_delta(1_000, 5), None);
        assert_eq!(counter_delta(u64::MAX - 4, 5), None);
    }
}
