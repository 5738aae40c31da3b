//! Process isolation: a job with `isolation = "process"` runs in a worker of its own — the
//! same `spud-host` binary, started as `spud-host worker` — which loads the plugin's private
//! copy and talks to the host over a Unix socket on its fd 3, one JSON message per line.
//! A segfault, an abort, a memory or thread limit, or a hang then costs that worker alone:
//! the host reports it, kills what is left (SIGKILL after a grace period) and starts a new
//! one after the job's backoff. Retiring a job ends its worker: a true unload.
//!
//! | host → worker | worker → host |
//! |---|---|
//! | `probe` (declaration, then exit) | `declared` |
//! | `start` (job, options, vars) | `ready` or `refused` |
//! | `collect`, `run` | `set`…, `log`…, then `done` |
//! | `vars`, `stop` | |

pub mod serve;

use std::collections::HashMap;
use std::io::{self, BufRead, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::loading::library::Declaration;
use crate::model::{Failure, Limits};

/// How long a worker gets to go once asked, or past a collect's timeout, before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(1);

/// The fd a worker finds its socket on.
const WORKER_FD: i32 = 3;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum ToWorker {
    Probe {
        library: PathBuf,
    },
    Start {
        library: PathBuf,
        job: String,
        options: String,
        interval_ms: u64,
        timeout_ms: u64,
        vars: HashMap<String, String>,
    },
    Collect,
    Run,
    Vars {
        vars: HashMap<String, String>,
    },
    Stop,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum FromWorker {
    Declared(Declaration),
    Ready {
        service: bool,
    },
    Refused {
        failure: Failure,
    },
    Set {
        key: String,
        value: String,
        time: Option<u64>,
    },
    Log {
        level: u8,
        message: String,
    },
    Done {
        failure: Option<Failure>,
    },
}

pub(crate) fn send<T: Serialize>(out: &mut impl Write, message: &T) -> io::Result<()> {
    let mut line = serde_json::to_vec(message).map_err(io::Error::other)?;
    line.push(b'\n');
    out.write_all(&line)
}

/// The next message; None at the end of the stream.
pub(crate) fn receive<T: for<'de> Deserialize<'de>>(
    input: &mut impl BufRead,
) -> io::Result<Option<T>> {
    let mut line = Vec::new();
    if input.read_until(b'\n', &mut line)? == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A running worker process and the host's end of its socket.
pub(crate) struct Spawned {
    pub(crate) child: std::process::Child,
    pub(crate) socket: UnixStream,
}

/// Starts `spud-host worker` with its socket on fd 3, its address space limited, and a
/// SIGKILL for it should the host die.
pub(crate) fn spawn(limits: Option<Limits>) -> io::Result<Spawned> {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    let (ours, theirs) = UnixStream::pair()?;
    let fd = theirs.as_raw_fd();
    let exe = std::env::current_exe()?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("worker")
        // glibc reserves 64 MiB of address space per thread arena (up to 8 per core):
        // under an address-space limit, two arenas leave it for the plugin's own use.
        .env("MALLOC_ARENA_MAX", "2")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl, setrlimit,
    // prctl), on values computed before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if fd == WORKER_FD {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if libc::fcntl(fd, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(fd, WORKER_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(limits) = limits {
                let rlimit = libc::rlimit {
                    rlim_cur: limits.memory,
                    rlim_max: limits.memory,
                };
                if libc::setrlimit(libc::RLIMIT_AS, &rlimit) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(theirs);
    Ok(Spawned {
        child,
        socket: ours,
    })
}

/// Reads a plugin's declaration in a short-lived worker: the host maps nothing.
pub fn probe(library: &Path) -> Result<Declaration, String> {
    let fail = |e: io::Error| format!("cannot start a worker to read it: {e}");
    let mut spawned = spawn(None).map_err(fail)?;
    let _ = spawned
        .socket
        .set_read_timeout(Some(Duration::from_secs(30)));
    let asked = send(
        &mut spawned.socket,
        &ToWorker::Probe {
            library: library.to_path_buf(),
        },
    );
    let mut reader = io::BufReader::new(spawned.socket.try_clone().map_err(fail)?);
    let answer = asked.and_then(|()| receive::<FromWorker>(&mut reader));
    let _ = spawned.child.kill();
    let status = spawned.child.wait();
    match answer {
        Ok(Some(FromWorker::Declared(d))) => Ok(d),
        Ok(Some(FromWorker::Refused { failure })) => Err(failure.message),
        Ok(_) | Err(_) => Err(format!(
            "the worker reading it ended without an answer ({})",
            status.map(describe_exit).unwrap_or_else(|e| e.to_string())
        )),
    }
}

/// "exited with 3", "killed by signal 11 (SIGSEGV)".
pub(crate) fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return format!("exited with {code}");
    }
    let signal = status.signal().unwrap_or(0);
    let name = match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        _ => "",
    };
    if name.is_empty() {
        format!("killed by signal {signal}")
    } else {
        format!("killed by signal {signal} ({name})")
    }
}
