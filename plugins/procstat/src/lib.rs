//! The machine itself, from `/proc` (what kstat and DTrace gave the sister seed's generator):
//!
//! | keys | from | what |
//! |---|---|---|
//! | `cpu.<mode>` | `/proc/stat` | percent of CPU time in user, nice, system, idle, iowait, irq, softirq, steal since the last collect |
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

const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

impl Machine {
    fn read(&self, file: &str) -> Result<String, Error> {
        let path = format!("{}/{file}", self.root);
        std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))
    }

    /// Per-second rate of a counter since the last collect (None the first time, or on a reset).
    fn rate(
        &self,
        key: &str,
        now: u64,
        seconds: Option<f64>,
        next: &mut HashMap<String, u64>,
    ) -> Option<f64> {
        next.insert(key.to_string(), now);
        let before = *self.last.get(key)?;
        let delta = counter_delta(before, now)?;
        Some(delta as f64 / seconds?)
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
        let mut next = HashMap::new();

        // CPU, context switches, forks, processes.
        let stat = self.read("stat")?;
        for line in stat.lines() {
            let mut f = line.split_whitespace();
            match f.next() {
                Some("cpu") => {
                    let ticks: Vec<u64> = f
                        .take(CPU_MODES.len())
                        .filter_map(|v| v.parse().ok())
                        .collect();
                    let deltas: Vec<Option<u64>> = CPU_MODES
                        .iter()
                        .zip(&ticks)
                        .map(|(mode, t)| {
                            let key = format!("cpu.{mode}");
                            next.insert(key.clone(), *t);
                            counter_delta(*self.last.get(&key)?, *t)
                        })
                        .collect();
                    let total: u64 = deltas.iter().flatten().sum();
                    if total > 0 && deltas.iter().all(Option::is_some) {
                        for (mode, d) in CPU_MODES.iter().zip(&deltas) {
                            self.host.set(
                                &format!("cpu.{mode}"),
                                fmt(d.unwrap_or(0) as f64 * 100.0 / total as f64),
                            );
                        }
                    }
                }
                Some("ctxt") => {
                    if let Some(r) = f
                        .next()
                        .and_then(|v| v.parse().ok())
                        .and_then(|v| self.rate("ctxt", v, seconds, &mut next))
                    {
                        self.host.set("ctxt_per_s", fmt(r));
                    }
                }
                Some("processes") => {
                    if let Some(r) = f
                        .next()
                        .and_then(|v| v.parse().ok())
                        .and_then(|v| self.rate("forks", v, seconds, &mut next))
                    {
                        self.host.set("forks_per_s", fmt(r));
                    }
                }
                Some(name @ ("procs_running" | "procs_blocked")) => {
                    if let Some(v) = f.next() {
                        self.host.set(name, v);
                    }
                }
                _ => {}
            }
        }

        // Load.
        let load = self.read("loadavg")?;
        for (name, value) in ["load.1", "load.5", "load.15"]
            .iter()
            .zip(load.split_whitespace())
        {
            self.host.set(name, value);
        }

        // Memory and swap, in kB as /proc gives them.
        let meminfo = self.read("meminfo")?;
        let field = |name: &str| {
            meminfo.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                rest.split_whitespace().next()?.parse::<u64>().ok()
            })
        };
        for (key, name) in [
            ("mem.total_kb", "MemTotal"),
            ("mem.free_kb", "MemFree"),
            ("mem.available_kb", "MemAvailable"),
            ("mem.buffers_kb", "Buffers"),
            ("mem.cached_kb", "Cached"),
            ("swap.total_kb", "SwapTotal"),
            ("swap.free_kb", "SwapFree"),
        ] {
            if let Some(v) = field(name) {
                self.host.set(key, v);
            }
        }
        if let (Some(total), Some(free)) = (field("SwapTotal"), field("SwapFree")) {
            self.host.set("swap.used_kb", total.saturating_sub(free));
        }

        // Network, per interface.
        let net = self.read("net/dev")?;
        const NET: [(usize, &str); 8] = [
            (0, "rx_bytes"),
            (1, "rx_packets"),
            (2, "rx_errors"),
            (3, "rx_drops"),
            (8, "tx_bytes"),
            (9, "tx_packets"),
            (10, "tx_errors"),
            (11, "tx_drops"),
        ];
        for line in net.lines().skip(2) {
            let Some((iface, counters)) = line.split_once(':') else {
                continue;
            };
            let iface = iface.trim();
            let values: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            for (i, name) in NET {
                let key = format!("net.{iface}.{name}");
                if let Some(r) = values
                    .get(i)
                    .and_then(|v| self.rate(&key, *v, seconds, &mut next))
                {
                    self.host.set(&format!("{key}_per_s"), fmt(r));
                }
            }
        }

        // Disks, per device (not partitions' loop and RAM devices).
        let disks = self.read("diskstats")?;
        for line in disks.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 14 || f[2].starts_with("loop") || f[2].starts_with("ram") {
                continue;
            }
            let dev = f[2];
            let num = |i: usize| f[i].parse::<u64>().ok();
            for (name, value) in [
                ("reads", num(3)),
                ("writes", num(7)),
                ("read_bytes", num(5).map(|s| s * 512)),
                ("write_bytes", num(9).map(|s| s * 512)),
            ] {
                let key = format!("disk.{dev}.{name}");
                if let Some(r) = value.and_then(|v| self.rate(&key, v, seconds, &mut next)) {
                    self.host.set(&format!("{key}_per_s"), fmt(r));
                }
            }
            // Milliseconds spent doing I/O: per second of wall time, a share of it.
            if let Some(r) =
                num(12).and_then(|v| self.rate(&format!("disk.{dev}.io_ms"), v, seconds, &mut next))
            {
                self.host
                    .set(&format!("disk.{dev}.busy_pct"), fmt((r / 10.0).min(100.0)));
            }
        }

        self.last = next;
        self.last_at = Some(now);
        Ok(())
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
