//! Debian's Netdata (`netdata-core`), started with its statsd server and nothing else: a
//! reference for the statsd benchmark. Its intake is read from its own self-charts, as
//! collected (exact totals, not per-second rates), through its Prometheus exporter.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{free_port, http, Process};

/// Where Debian's netdata-core puts the daemon.
pub const DAEMON: &str = "/usr/sbin/netdata";

/// A running Netdata; stopped when dropped.
pub struct Netdata {
    /// Where its statsd server listens (UDP).
    pub statsd: SocketAddr,
    /// Its web API.
    pub web: SocketAddr,
    process: Process,
    _dir: tempfile::TempDir,
}

impl Netdata {
    /// Starts Netdata with only its statsd plugin (every collector of the machine off, no
    /// health, no ML, no cloud), its database in memory, flushing each second.
    pub fn start_statsd() -> Netdata {
        assert!(
            Path::new(DAEMON).exists(),
            "{DAEMON} is missing: scripts/setup-test-deps installs netdata-core"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        for sub in ["cache", "lib", "log", "run"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let (statsd, web) = (free_port(), free_port());
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_string();
        let config = format!(
            "[global]\n  run as user = {user}\n  hostname = bench\n  update every = 1\n  memory mode = ram\n\
             [directories]\n  config = {d}\n  stock config = /usr/lib/netdata/conf.d\n  cache = {d}/cache\n  lib = {d}/lib\n  log = {d}/log\n  run = {d}/run\n  home = {d}\n  plugins = /usr/lib/netdata/plugins.d\n  web = /usr/share/netdata/web\n\
             [logs]\n  debug log = none\n  error log = stderr\n  access log = none\n\
             [web]\n  bind to = {web}\n\
             [plugins]\n  proc = no\n  diskspace = no\n  cgroups = no\n  tc = no\n  idlejitter = no\n  apps = no\n  python.d = no\n  charts.d = no\n  go.d = no\n  ebpf = no\n  timex = no\n  checks = no\n  enable running new plugins = no\n  statsd = yes\n\
             [health]\n  enabled = no\n[ml]\n  enabled = no\n[cloud]\n  enabled = no\n\
             [statsd]\n  enabled = yes\n  bind to = udp:{statsd}\n  update every (flushInterval) = 1\n"
        );
        let path = dir.path().join("netdata.conf");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(DAEMON);
        cmd.arg("-D").arg("-c").arg(&path);
        let process = Process::start_listening(cmd, web, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e}"));
        let netdata = Netdata {
            statsd,
            web,
            process,
            _dir: dir,
        };
        // The web server answers before the statsd plugin has started.
        let deadline = Instant::now() + Duration::from_secs(30);
        while netdata.statsd_totals().is_none() {
            assert!(
                Instant::now() < deadline,
                "netdata's statsd did not start; it said:\n{}",
                netdata.process.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        netdata
    }

    /// Its statsd self-charts' totals as collected: (metrics taken, by type summed; lines it
    /// could not take, unknown types and errors). None before the plugin reports, or if an
    /// answer cannot be read whole.
    pub fn statsd_totals(&self) -> Option<(u64, u64)> {
        let (status, body) = http::get(&format!(
            "http://{}/api/v1/allmetrics?format=prometheus&source=as-collected",
            self.web
        ));
        if status != 200 {
            return None;
        }
        let (mut taken, mut refused, mut seen) = (0, 0, false);
        for line in body.lines() {
            let Some(rest) = line.strip_prefix("netdata_netdata_statsd_events_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            // Large totals come in exponent form (`1.52089e+07`).
            let value = value.split(' ').next()?.parse::<f64>().ok()? as u64;
            seen = true;
            if labels.contains("dimension=\"unknown\"") || labels.contains("dimension=\"errors\"") {
                refused += value;
            } else {
                taken += value;
            }
        }
        seen.then_some((taken, refused))
    }
}

impl Drop for Netdata {
    fn drop(&mut self) {
        // A clean stop also ends the spawn server it forked.
        self.process.signal("TERM");
        self.process.wait(Duration::from_secs(10));
    }
}
