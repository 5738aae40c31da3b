//! Runs a Nagios / Monitoring Plugins check on every tick, unchanged, and stores what it
//! says: `<job>.status` from its exit code (`ok`, `warning`, `critical`, `unknown`),
//! `<job>.output` its first line of text, and per perfdata item `<job>.<label>` in base
//! units (`ms` → s, `KB` → B; `%` kept) with `.warn`, `.crit` (ranges, in base units),
//! `.min` and `.max` where given. Labels become keys as `key_safe` makes them (`/boot` →
//! `_boot`). A check that outlives the job's timeout is killed with its process group and
//! reported `unknown`.
//!
//! ```toml
//! [[job]]
//! name = "load"
//! plugin = "nagios"
//! interval = "1m"
//! options = { command = ["/usr/lib/nagios/plugins/check_load", "-w", "5,4,3", "-c", "10,8,6"] }
//! ```

pub mod perfdata;

use std::process::Command;

use spud_plugin_api::kit::run::run;
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, key_safe, Collector, Error, Host, Job, Plugin, Pull};

/// The nagios collector.
pub struct Nagios;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    /// The check and its arguments.
    command: Vec<String>,
}

struct Check {
    command: Vec<String>,
    timeout: std::time::Duration,
    host: Host,
    /// What was last said about unreadable perfdata, so it is said once.
    said: Option<String>,
}

impl Plugin for Nagios {
    const NAME: &'static str = "nagios";
    const DESCRIPTION: &'static str = "Runs a Nagios plugin: status, output and perfdata";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        if options.command.is_empty() {
            return Err("option command: needs at least the program".into());
        }
        Ok(Collector::pull(Check {
            command: options.command,
            // Leave the host's own deadline a little room to see the job finish.
            timeout: job.timeout.mul_f64(0.9),
            host,
            said: None,
        }))
    }
}

/// Nagios' exit codes.
fn status(code: Option<i32>) -> &'static str {
    match code {
        Some(0) => "ok",
        Some(1) => "warning",
        Some(2) => "critical",
        _ => "unknown",
    }
}

impl Pull for Check {
    fn collect(&mut self) -> Result<(), Error> {
        let program = &self.command[0];
        let ran = match run(Command::new(program).args(&self.command[1..]), self.timeout) {
            Ok(ran) => ran,
            Err(e) => {
                self.host.set("status", "unknown");
                self.host
                    .set("output", format!("cannot run {program}: {e}"));
                return Err(format!("cannot run {program}: {e}"));
            }
        };
        if ran.timed_out {
            self.host.set("status", "unknown");
            self.host
                .set("output", format!("timed out after {:?}", self.timeout));
            return Err(format!(
                "{program} ran past {:?}; killed with its process group",
                self.timeout
            ));
        }
        let out = perfdata::parse(&ran.stdout);
        self.host.set("status", status(ran.code));
        let text = if out.text.is_empty() {
            ran.stderr.lines().next().unwrap_or("").trim()
        } else {
            &out.text
        };
        self.host.set("output", text);
        for p in &out.perfdata {
            let key = key_safe(&p.label);
            match p.value {
                Some(v) => self.host.set(&key, v),
                None => self.host.set(&key, "U"),
            }
            for (suffix, range) in [("warn", p.warn), ("crit", p.crit)] {
                if let Some(r) = range {
                    self.host.set(&format!("{key}.{suffix}"), r);
                }
            }
            for (suffix, bound) in [("min", p.min), ("max", p.max)] {
                if let Some(b) = bound {
                    self.host.set(&format!("{key}.{suffix}"), b);
                }
            }
        }
        let bad = (!out.bad.is_empty()).then(|| out.bad.join(" "));
        if bad != self.said {
            if let Some(items) = &bad {
                self.host.warn(format_args!(
                    "{program}: perfdata not understood, left out: {items}"
                ));
            }
            self.said = bad;
        }
        Ok(())
    }
}

export_plugin!(Nagios);
