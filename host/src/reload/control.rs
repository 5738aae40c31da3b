//! Runtime control, answered on the stat server's connections (see `spud_server::control`):
//!
//! - `jobs`: one line per job: `<job> <state> plugin=<p> generation=<g> every=<interval>
//!   errors=<n> timeouts=<n>`; states are running, paused, wedged, backoff, failed, waiting.
//! - `pause JOB`, `resume JOB`: stop and restart a job's ticks; its schedule is kept.
//!   A paused job stays paused across reloads.
//! - `run JOB`: one collect now, outside the schedule.
//! - `reload`: look at the config and every plugin again, as SIGHUP does.

use crossbeam_channel::Sender;
use std::sync::{Arc, Mutex, Weak};

use spud_server::control::{Control, ControlError};

use crate::gatherer::views;
use crate::gatherer::Gatherer;
use crate::reload::watch::Change;

pub struct HostControl {
    gatherer: Weak<Gatherer>,
    changes: Mutex<Sender<Change>>,
}

impl HostControl {
    /// Control of `gatherer`; `reload` sends on `changes`.
    pub fn new(gatherer: &Arc<Gatherer>, changes: Sender<Change>) -> Arc<HostControl> {
        Arc::new(HostControl {
            gatherer: Arc::downgrade(gatherer),
            changes: Mutex::new(changes),
        })
    }
}

impl Control for HostControl {
    fn commands(&self) -> &[&'static str] {
        &["jobs", "pause", "resume", "run", "reload"]
    }

    fn view(&self, what: &str) -> Option<serde_json::Value> {
        let gatherer = self.gatherer.upgrade()?;
        match what {
            "jobs" => Some(views::jobs(&gatherer)),
            "plugins" => Some(views::plugins(&gatherer)),
            _ => None,
        }
    }

    fn call(&self, command: &str, args: &str) -> Result<Vec<String>, ControlError> {
        let gatherer = self
            .gatherer
            .upgrade()
            .ok_or_else(|| ControlError::new("stopping", "spud-host is stopping"))?;
        let need_job = || {
            if args.is_empty() {
                Err(ControlError::new(
                    "no_args",
                    format!("{command} needs a job name"),
                ))
            } else {
                Ok(args)
            }
        };
        match command {
            "jobs" => Ok(views::job_lines(&gatherer)),
            "pause" | "resume" => {
                let name = need_job()?;
                gatherer
                    .set_paused(name, command == "pause")
                    .map_err(|e| ControlError::new("not_found", e))?;
                Ok(vec![format!("{command}d {name}")])
            }
            "run" => {
                let name = need_job()?;
                if gatherer.scheduler.get(name).is_none() {
                    let e = format!("no running job is called {name}");
                    return Err(ControlError::new("not_found", e));
                }
                gatherer
                    .scheduler
                    .run_now(name)
                    .map_err(|e| ControlError::new("busy", e))?;
                Ok(vec![format!("running {name}")])
            }
            "reload" => {
                let sent = self
                    .changes
                    .lock()
                    .map(|tx| tx.send(Change::Everything).is_ok());
                match sent {
                    Ok(true) => Ok(vec!["reloading".into()]),
                    _ => Err(ControlError::new("stopping", "spud-host is stopping")),
                }
            }
            _ => Err(ControlError::new(
                "unknown_command",
                "Unknown server command",
            )),
        }
    }
}
