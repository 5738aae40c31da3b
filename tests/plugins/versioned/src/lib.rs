//! A plugin that says which version it is: `<job>.version` (1, or 2 when built with the `v2`
//! feature) as soon as a job is made, then `version` and `tick` on every collect. Version 2
//! refuses the option `flavor = "v1-only"`, so a reload can be refused by one job alone.

use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};

const VERSION: u32 = if cfg!(feature = "v2") { 2 } else { 1 };

/// The versioned plugin.
pub struct Versioned;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    #[serde(default)]
    flavor: String,
}

struct Ticker {
    host: Host,
    tick: u64,
}

impl Plugin for Versioned {
    const NAME: &'static str = "versioned";
    const DESCRIPTION: &'static str = "Says which version it is";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        if VERSION == 2 && options.flavor == "v1-only" {
            return Err("option flavor: \"v1-only\" is gone in version 2".into());
        }
        // The new generation's first sample: the moment the job is made.
        host.set("version", VERSION);
        Ok(Collector::pull(Ticker { host, tick: 0 }))
    }
}

impl Pull for Ticker {
    fn collect(&mut self) -> Result<(), Error> {
        self.tick += 1;
        self.host.set("version", VERSION);
        self.host.set("tick", self.tick);
        Ok(())
    }
}

export_plugin!(Versioned);
