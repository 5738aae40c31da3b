//! The original `test` plugin: on every tick, `test.<job>` = 1. A heartbeat that shows the
//! host, its schedule and the store are alive, and the smallest complete plugin.

use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};

/// The heartbeat plugin.
pub struct Test;

struct Heartbeat {
    key: String,
    host: Host,
}

impl Plugin for Test {
    const NAME: &'static str = "test";
    const DESCRIPTION: &'static str = "Heartbeat: test.<job> = 1 on every tick";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        job.options::<NoOptions>()?;
        Ok(Collector::pull(Heartbeat {
            key: format!("test.{}", job.name),
            host,
        }))
    }
}

/// It takes no options; any given is a mistake worth reporting.
#[derive(spud_plugin_api::serde::Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct NoOptions {}

impl Pull for Heartbeat {
    fn collect(&mut self) -> Result<(), Error> {
        // The original's key is absolute: test.<job>, not <job>.test.
        self.host.set_absolute(&self.key, 1);
        Ok(())
    }
}

export_plugin!(Test);
