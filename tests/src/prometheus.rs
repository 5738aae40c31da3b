//! A real Prometheus (Debian's package) for the tests: started on a free port with its own
//! data directory, and asked instant queries.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{free_port, Process};

pub struct Prometheus {
    pub process: Process,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Whether Prometheus is installed (scripts/setup-test-deps installs it).
    pub fn installed() -> bool {
        Command::new("prometheus").arg("--version").output().is_ok()
    }

    /// Starts it with `config` (prometheus.yml) and extra flags.
    pub fn start(config: &str, flags: &[&str]) -> Prometheus {
        Prometheus::start_on(free_port(), config, flags)
    }

    /// The same, on a given address.
    pub fn start_on(addr: SocketAddr, config: &str, flags: &[&str]) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("prometheus.yml");
        std::fs::write(&file, config).unwrap();
        let mut cmd = Command::new("prometheus");
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .args(flags);
        let (process, _) = Process::start(
            cmd,
            "Server is ready to receive web requests",
            Duration::from_secs(60),
        );
        Prometheus {
            process,
            addr,
            _dir: dir,
        }
    }

    /// The instant query's result: (labels, value) per series.
    pub fn query(&self, expr: &str) -> Vec<(serde_json::Value, f64)> {
        let url = format!(
            "http://{}/api/v1/query?query={}",
            self.addr,
            url_escape(expr)
        );
        let reply = crate::http::get_json(&url);
        reply["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|r| {
                let value = r["value"][1]
                    .as_str()
                    .unwrap_or("NaN")
                    .parse()
                    .unwrap_or(f64::NAN);
                (r["metric"].clone(), value)
            })
            .collect()
    }

    /// Waits until `expr` has a series whose value satisfies `ok`; returns the series.
    pub fn wait_for(
        &self,
        expr: &str,
        within: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> Vec<(serde_json::Value, f64)> {
        let deadline = Instant::now() + within;
        loop {
            let result = self.query(expr);
            if result.iter().any(|(_, v)| ok(*v)) {
                return result;
            }
            assert!(
                Instant::now() < deadline,
                "{expr}: last result {result:?}\nprometheus said:\n{}",
                self.process.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

pub fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
