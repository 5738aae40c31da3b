//! A real VictoriaMetrics (Debian's `victoria-metrics`, single node) for the tests, and its
//! `vmagent` in front of it; samples read back raw through the export API.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, Process};

pub struct Victoria {
    pub process: Process,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Victoria {
    pub fn start() -> Victoria {
        Victoria::start_with(&[])
    }

    /// With these flags added (`-httpAuth.username=…`, say).
    pub fn start_with(flags: &[&str]) -> Victoria {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_port();
        let mut cmd = Command::new("victoria-metrics");
        cmd.arg(format!("-httpListenAddr={addr}"))
            .arg(format!("-storageDataPath={}", dir.path().display()))
            .arg("-retentionPeriod=100y")
            .args(flags);
        let process = Process::start_listening(cmd, addr, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e} (scripts/setup-test-deps installs victoria-metrics)"));
        Victoria {
            process,
            addr,
            _dir: dir,
        }
    }

    /// Where remote write goes.
    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    /// Every raw sample of the series `selector` matches: (labels, [(ms, value)]).
    pub fn export(&self, selector: &str) -> Vec<(serde_json::Value, Vec<(i64, f64)>)> {
        // What it holds in memory becomes searchable at once.
        crate::http::get(&format!("http://{}/internal/force_flush", self.addr));
        let (status, body) = crate::http::get(&format!(
            "http://{}/api/v1/export?match[]={}",
            self.addr,
            crate::prometheus::url_escape(selector)
        ));
        assert_eq!(status, 200, "{body}");
        body.lines()
            .map(|line| {
                let series: serde_json::Value = serde_json::from_str(line).unwrap();
                let times = series["timestamps"].as_array().unwrap();
                let values = series["values"].as_array().unwrap();
                let samples = times
                    .iter()
                    .zip(values)
                    .map(|(t, v)| (t.as_i64().unwrap(), v.as_f64().unwrap()))
                    .collect();
                (series["metric"].clone(), samples)
            })
            .collect()
    }

    /// A PromQL instant query's result: (labels, value) per series.
    pub fn query(&self, expr: &str) -> Vec<(serde_json::Value, f64)> {
        let reply = crate::http::get_json(&format!(
            "http://{}/api/v1/query?query={}",
            self.addr,
            crate::prometheus::url_escape(expr)
        ));
        reply["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().unwrap().parse().unwrap();
                (r["metric"].clone(), value)
            })
            .collect()
    }
}

/// `vmagent` forwarding remote write to `to`, buffering on its own disk while it is away.
pub struct VmAgent {
    pub process: Process,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl VmAgent {
    pub fn start(to: &str) -> VmAgent {
        let dir = tempfile::tempdir().unwrap();
        let addr = free_port();
        let mut cmd = Command::new("vmagent");
        cmd.arg(format!("-httpListenAddr={addr}"))
            .arg(format!("-remoteWrite.url={to}"))
            .arg(format!("-remoteWrite.tmpDataPath={}", dir.path().display()))
            .arg("-remoteWrite.flushInterval=100ms");
        let process = Process::start_listening(cmd, addr, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e} (scripts/setup-test-deps installs victoria-metrics)"));
        VmAgent {
            process,
            addr,
            _dir: dir,
        }
    }

    pub fn write_url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }
}
