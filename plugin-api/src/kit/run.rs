//! Running another program within a deadline, as the exec, nagios and munin collectors do:
//! in a process group of its own, so that a timeout kills everything it started; stdout
//! and stderr read on their own threads (a chatty program never blocks on a full pipe) and
//! kept up to a limit (a runaway one cannot fill memory).

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Bytes of stdout, and of stderr, kept; the rest is read and dropped.
pub const KEPT: usize = 1 << 20;

/// What a run gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// Its exit code; None when a signal ended it (or the timeout did).
    pub code: Option<i32>,
    /// Whether it was still running at the deadline (then it and its group were killed).
    pub timed_out: bool,
    /// What it printed, up to [`KEPT`] bytes (invalid UTF-8 replaced).
    pub stdout: String,
    /// What it said on stderr, likewise.
    pub stderr: String,
}

/// Runs `command` (stdin from /dev/null) and waits at most `timeout`.
pub fn run(command: &mut Command, timeout: Duration) -> std::io::Result<Ran> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()?;
    let stdout = keep(child.stdout.take().expect("piped"));
    let stderr = keep(child.stderr.take().expect("piped"));
    let status = wait_timeout::ChildExt::wait_timeout(&mut child, timeout)?;
    let timed_out = status.is_none();
    let code = match status {
        Some(status) => status.code(),
        None => {
            if let Some(group) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            }
            let _ = child.wait();
            None
        }
    };
    // With the group gone, no grandchild holds the pipes open: the readers end.
    Ok(Ran {
        code,
        timed_out,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

fn keep(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = pipe.by_ref().take(KEPT as u64).read_to_end(&mut kept);
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        String::from_utf8_lossy(&kept).into_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_code_and_a_timeout_that_kills_the_group() {
        let ran = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!((ran.code, ran.timed_out), (Some(3), false));
        assert_eq!(
            (ran.stdout.as_str(), ran.stderr.as_str()),
            ("out\n", "err\n")
        );
        let started = std::time::Instant::now();
        // The grandchild `sleep` holds stdout: only a group kill ends the run this soon.
        let ran = run(
            Command::new("sh").args(["-c", "sleep 30 & echo started; wait"]),
            Duration::from_millis(300),
        )
        .unwrap();
        assert!(ran.timed_out && ran.code.is_none());
        assert_eq!(ran.stdout, "started\n");
        assert!(started.elapsed() < Duration::from_secs(5));
        let ran = run(
            Command::new("sh").args(["-c", "head -c 3000000 /dev/zero"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(ran.stdout.len(), KEPT);
    }
}
