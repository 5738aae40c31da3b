//! Runs a command on every tick and stores each `key value` line it prints as
//! `<job>.<key>`. Also `<job>.exit_code`, `<job>.duration_ms` and `<job>.status` = `ok`,
//! `failed` (non-zero exit or could not start) or `timeout`. A command that outlives the
//! job's timeout is killed with its whole process group, so nothing it started lingers.
//! No shell is involved: the command is an argument list.
//!
//! ```toml
//! [[job]]
//! name = "queue"
//! plugin = "exec"
//! interval = "30s"
//! timeout = "10s"
//! options = { command = ["/usr/local/bin/queue-stats", "--brief"] }
//! ```

use std::process::Command;
use std::time::{Duration, Instant};

use spud_plugin_api::kit::run::run;
use spud_plugin_api::kit::{name_value, Health};
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, Plugin, Pull};

/// The exec collector.
pub struct Exec;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    /// The program and its arguments.
    command: Vec<String>,
}

struct Runner {
    command: Vec<String>,
    timeout: Duration,
    health: Health,
    host: Host,
}

impl Plugin for Exec {
    const NAME: &'static str = "exec";
    const DESCRIPTION: &'static str = "Runs a command and stores the `key value` lines it prints";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        if options.command.is_empty() {
            return Err(format!(
                "job {}: option command: needs at least the program",
                job.name
            ));
        }
        Ok(Collector::pull(Runner {
            command: options.command,
            // Leave the host's own deadline a little room to see the job finish.
            timeout: job.timeout.mul_f64(0.9),
            health: Health::default(),
            host,
        }))
    }
}

impl Pull for Runner {
    fn collect(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let ran = run(
            Command::new(&self.command[0]).args(&self.command[1..]),
            self.timeout,
        )
        .map_err(|e| format!("cannot run {}: {e}", self.command[0]));
        self.host.set("duration_ms", started.elapsed().as_millis());
        match ran {
            Ok(ran) if ran.timed_out => {
                let why = format!(
                    "{} ran past {:?}; killed with its process group",
                    self.command[0], self.timeout
                );
                self.health.report(&self.host, "timeout", Some(&why));
            }
            Ok(ran) => {
                let code = ran.code;
                for line in ran.stdout.lines() {
                    if let Some((key, value)) = name_value(line) {
                        self.host.set(key, value);
                    }
                }
                let code = code.map_or("signal".to_string(), |c| c.to_string());
                self.host.set("exit_code", &code);
                if code == "0" {
                    self.health.report(&self.host, "ok", None);
                } else {
                    let why = format!("{} exited with {code}", self.command[0]);
                    self.health.report(&self.host, "failed", Some(&why));
                }
            }
            Err(e) => self.health.report(&self.host, "failed", Some(&e)),
        }
        Ok(())
    }
}

export_plugin!(Exec);
