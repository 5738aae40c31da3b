//! Etsy's statsd daemon (npm `statsd`, installed by scripts/setup-test-deps into
//! `tests/etsy-statsd`), the reference the statsd collector is compared with. Its graphite
//! backend delivers every flush as plaintext lines to a listener of the test's own, so what
//! it computed is read exactly (its console backend prints JavaScript objects, not data).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::{free_port, workspace_root, Process};

/// A running Etsy statsd and what its flushes said.
pub struct EtsyStatsd {
    /// Where it listens for metrics (UDP).
    pub addr: SocketAddr,
    /// The process.
    pub process: Process,
    flushes: Arc<Mutex<Vec<Flush>>>,
    _dir: tempfile::TempDir,
}

/// One flush: graphite path → value.
pub type Flush = HashMap<String, f64>;

impl EtsyStatsd {
    /// Starts it with `flush_ms` and these percentiles; `extra` is more of its JS config.
    pub fn start(flush_ms: u64, percentiles: &[f64], extra: &str) -> EtsyStatsd {
        let stats = workspace_root().join("tests/etsy-statsd/node_modules/statsd/stats.js");
        assert!(
            stats.exists(),
            "{} is missing: scripts/setup-test-deps installs Etsy's statsd from npm",
            stats.display()
        );
        let graphite = TcpListener::bind("127.0.0.1:0").unwrap();
        let graphite_port = graphite.local_addr().unwrap().port();
        let flushes = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&flushes);
        std::thread::spawn(move || {
            // The backend opens one connection per flush and closes it.
            for conn in graphite.incoming() {
                let Ok(conn) = conn else { break };
                let mut flush = Flush::new();
                for line in BufReader::new(conn).lines() {
                    let Ok(line) = line else { break };
                    let mut f = line.split(' ');
                    if let (Some(path), Some(Ok(v))) = (f.next(), f.next().map(str::parse)) {
                        flush.insert(path.to_string(), v);
                    }
                }
                keep.lock().unwrap().push(flush);
            }
        });
        let addr = free_port();
        let mgmt = free_port();
        let dir = tempfile::tempdir().unwrap();
        let pct: Vec<String> = percentiles.iter().map(f64::to_string).collect();
        let config = format!(
            "{{ port: {}, address: \"127.0.0.1\", mgmt_port: {}, mgmt_address: \"127.0.0.1\", flushInterval: {flush_ms}, \
             percentThreshold: [{}], backends: [\"./backends/graphite\"], graphiteHost: \"127.0.0.1\", graphitePort: {graphite_port}, \
             graphite: {{ legacyNamespace: false, globalPrefix: \"stats\" }}, {extra} }}",
            addr.port(),
            mgmt.port(),
            pct.join(", ")
        );
        let path = dir.path().join("config.js");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new("node");
        cmd.arg(&stats)
            .arg(&path)
            .current_dir(stats.parent().unwrap());
        let (process, _) = Process::start_stdout(cmd, "server is up", Duration::from_secs(30));
        EtsyStatsd {
            addr,
            process,
            flushes,
            _dir: dir,
        }
    }

    /// Every flush so far, oldest first.
    pub fn flushes(&self) -> Vec<Flush> {
        self.flushes.lock().unwrap().clone()
    }
}
