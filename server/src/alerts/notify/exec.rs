//! A command per notification: the alert in its environment (`SPUD_ALERT_*`) and, as
//! Alertmanager's webhook JSON, on its stdin. It must exit 0 within the timeout, or it is
//! killed and the notification retried.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{webhook, Deliver, Notice};

pub(super) struct Exec {
    command: Vec<String>,
    timeout: Duration,
}

impl Exec {
    pub(super) fn new(command: &[String], timeout: u64) -> Exec {
        Exec {
            command: command.to_vec(),
            timeout: Duration::from_secs(timeout),
        }
    }

    fn run(&self, n: &Notice) -> Result<(), String> {
        let program = &self.command[0];
        let mut command = Command::new(program);
        command
            .args(&self.command[1..])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env("SPUD_ALERT_ID", &n.id)
            .env(
                "SPUD_ALERT_STATUS",
                if n.firing { "firing" } else { "resolved" },
            )
            .env("SPUD_ALERT_STATE", n.state.word())
            .env("SPUD_ALERT_SINCE", n.starts_at.to_string());
        // A severity change: the severity it replaces, resolved now.
        if let Some(old) = &n.replaces {
            command.env("SPUD_ALERT_REPLACES", &old.severity);
        }
        for (label, value) in &n.labels {
            command.env(format!("SPUD_ALERT_{}", env_name(label)), value);
        }
        for (name, value) in &n.annotations {
            command.env(format!("SPUD_ALERT_{}", env_name(name)), value);
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let body = serde_json::to_vec(&webhook::payload(n, "exec")).expect("JSON serialises");
        if let Some(mut stdin) = child.stdin.take() {
            // A command that does not read its stdin is fine: a closed pipe is not an error.
            let _ = stdin.write_all(&body);
        }
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => return Err(format!("{program} failed: {status}")),
                Ok(None) if started.elapsed() >= self.timeout => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(format!(
                        "{program} still running after its {:?} timeout: killed",
                        self.timeout
                    ));
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => return Err(format!("{program}: {e}")),
            }
        }
    }
}

/// `alertname` → `ALERTNAME`; anything but letters and digits becomes `_`.
fn env_name(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

impl Deliver for Exec {
    fn deliver(&mut self, batch: &[Notice]) -> Result<(), String> {
        batch.iter().try_for_each(|n| self.run(n))
    }
}
