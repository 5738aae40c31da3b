//! A real rrdcached (Debian's `rrdcached`) for the tests and benchmarks: it holds updates
//! for an hour unless asked to flush, so a test reading through it sees that its client
//! asked.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{free_port, Process};

pub struct Rrdcached {
    pub process: Process,
    /// Its unix socket.
    pub socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Rrdcached {
    /// rrdcached for files under `base` (absolute paths), on a socket of its own.
    pub fn start(base: &Path) -> Rrdcached {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("rrdcached.sock");
        // A loopback port too, only to tell when it is ready.
        let probe: SocketAddr = free_port();
        let mut cmd = Command::new("rrdcached");
        cmd.arg("-g")
            .arg("-l")
            .arg(format!("unix:{}", socket.display()))
            .arg("-l")
            .arg(probe.to_string())
            .arg("-p")
            .arg(dir.path().join("rrdcached.pid"))
            .arg("-b")
            .arg(base)
            .args(["-w", "3600", "-f", "7200"]);
        let process = Process::start_listening(cmd, probe, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e} (scripts/setup-test-deps installs rrdcached)"));
        Rrdcached {
            process,
            socket,
            _dir: dir,
        }
    }

    /// Its address as `--rrdcached` and `rrdtool --daemon` take it.
    pub fn address(&self) -> String {
        format!("unix:{}", self.socket.display())
    }
}
