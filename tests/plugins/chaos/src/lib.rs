//! A plugin that does what its `mode` option says, to test the host against every kind of
//! collector: one that works, counts, fails, panics, hangs, or does nothing at all.

use std::time::Duration;

use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, JobDef, Plugin, Pull, Service};

/// The misbehaving plugin.
pub struct Chaos;

#[derive(Deserialize, Clone, Copy, PartialEq)]
#[serde(crate = "spud_plugin_api::serde", rename_all = "lowercase")]
enum Mode {
    /// `tick` = the tick number, and `site` = the `site` var.
    Ok,
    /// Nothing at all (for measuring the host's own cost).
    Noop,
    /// Every collect is an error.
    Error,
    /// Every collect panics.
    Panic,
    /// Every collect sleeps for `hang_ms`.
    Hang,
    /// A service that sets `beat` every 50 ms until stopped.
    Service,
    /// A service that sets samples as fast as it can (keys `k0`..`k999`), and `seq`, the
    /// number set so far, after every thousand.
    Flood,
    /// Sets `tick`, and dereferences a null pointer on every second collect (only ever run
    /// it isolated: in-process it takes the host down).
    Segfault,
    /// Sets `tick`, and starts 20 threads that never end on every collect.
    #[serde(rename = "leak_threads")]
    LeakThreads,
    /// Sets `tick`, and allocates (and writes, and keeps) 64 MiB more on every collect.
    Alloc,
}

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    mode: Mode,
    #[serde(default = "default_hang")]
    hang_ms: u64,
    /// How long making the job takes (a slow plugin start, for tests of what waits on it).
    #[serde(default)]
    start_ms: u64,
}

fn default_hang() -> u64 {
    3_600_000
}

struct Job1 {
    options: Options,
    host: Host,
    tick: u64,
}

/// As a helper: one `mode = "ok"` job per line of `file`, every 100 ms.
#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct HelperOptions {
    file: String,
}

impl Plugin for Chaos {
    const NAME: &'static str = "chaos";
    const DESCRIPTION: &'static str = "Misbehaves as told, for tests";
    const IS_HELPER: bool = true;

    fn helper_jobs(job: &Job, _host: Host) -> Result<Vec<JobDef>, Error> {
        let options: HelperOptions = job.options()?;
        let text = std::fs::read_to_string(&options.file)
            .map_err(|e| format!("cannot read {}: {e}", options.file))?;
        Ok(text
            .split_whitespace()
            .map(|name| JobDef {
                name: name.to_string(),
                plugin: "chaos".into(),
                options: [("mode".to_string(), "ok".into())].into_iter().collect(),
                interval: Some(Duration::from_millis(100)),
            })
            .collect())
    }

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        if options.start_ms > 0 {
            host.info(format_args!("starting slowly: {} ms", options.start_ms));
            std::thread::sleep(Duration::from_millis(options.start_ms));
        }
        let job = Job1 {
            options,
            host,
            tick: 0,
        };
        Ok(match job.options.mode {
            Mode::Service | Mode::Flood => Collector::service(job),
            _ => Collector::pull(job),
        })
    }
}

impl Pull for Job1 {
    fn collect(&mut self) -> Result<(), Error> {
        self.tick += 1;
        match self.options.mode {
            Mode::Ok => {
                self.host.set("tick", self.tick);
                if let Some(site) = self.host.var("site") {
                    self.host.set("site", site);
                }
                self.host.count("collects", 1.0);
                Ok(())
            }
            Mode::Noop | Mode::Service | Mode::Flood => Ok(()),
            Mode::Error => Err(format!("failure number {}", self.tick)),
            Mode::Panic => panic!("chaos panic number {}", self.tick),
            Mode::Hang => {
                std::thread::sleep(Duration::from_millis(self.options.hang_ms));
                Ok(())
            }
            Mode::Segfault => {
                self.host.set("tick", self.tick);
                if self.tick.is_multiple_of(2) {
                    // SAFETY: none; crashing is the point.
                    unsafe { std::ptr::null_mut::<u64>().write_volatile(self.tick) };
                }
                Ok(())
            }
            Mode::LeakThreads => {
                self.host.set("tick", self.tick);
                for _ in 0..20 {
                    std::thread::spawn(|| loop {
                        std::thread::sleep(Duration::from_secs(3600));
                    });
                }
                Ok(())
            }
            Mode::Alloc => {
                self.host.set("tick", self.tick);
                std::mem::forget(vec![1u8; 64 << 20]);
                Ok(())
            }
        }
    }
}

impl Service for Job1 {
    fn run(&mut self) -> Result<(), Error> {
        if self.options.mode == Mode::Flood {
            let keys: Vec<String> = (0..1000).map(|k| format!("k{k}")).collect();
            while !self.host.stop_requested(Duration::ZERO) {
                for key in &keys {
                    self.tick += 1;
                    self.host.set(key, self.tick);
                }
                self.host.set("seq", self.tick);
            }
            return Ok(());
        }
        while !self.host.stop_requested(Duration::from_millis(50)) {
            self.tick += 1;
            self.host.set("beat", self.tick);
        }
        Ok(())
    }
}

export_plugin!(Chaos);
