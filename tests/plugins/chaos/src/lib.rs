//! A plugin that does what its `mode` option says, to test the host against every kind of
//! collector: one that works, counts, fails, panics, hangs, or does nothing at all.

use std::time::Duration;

use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull, Service};

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
}

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    mode: Mode,
    #[serde(default = "default_hang")]
    hang_ms: u64,
}

fn default_hang() -> u64 {
    3_600_000
}

struct Job1 {
    options: Options,
    host: Host,
    tick: u64,
}

impl Plugin for Chaos {
    const NAME: &'static str = "chaos";
    const DESCRIPTION: &'static str = "Misbehaves as told, for tests";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        let job = Job1 {
            options,
            host,
            tick: 0,
        };
        Ok(match job.options.mode {
            Mode::Service => Collector::service(job),
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
            Mode::Noop | Mode::Service => Ok(()),
            Mode::Error => Err(format!("failure number {}", self.tick)),
            Mode::Panic => panic!("chaos panic number {}", self.tick),
            Mode::Hang => {
                std::thread::sleep(Duration::from_millis(self.options.hang_ms));
                Ok(())
            }
        }
    }
}

impl Service for Job1 {
    fn run(&mut self) -> Result<(), Error> {
        while !self.host.stop_requested(Duration::from_millis(50)) {
            self.tick += 1;
            self.host.set("beat", self.tick);
        }
        Ok(())
    }
}

export_plugin!(Chaos);
