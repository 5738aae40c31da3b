//! Debian's collectd, started with a config of the test's choosing: `load` and `memory` read
//! every second, sent by the plugins the test adds.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::Process;

/// A running collectd; killed when dropped.
pub struct Collectd {
    /// The process (its stderr is the log).
    pub process: Process,
    _dir: tempfile::TempDir,
}

/// Where Debian's collectd-core puts the daemon.
pub const DAEMON: &str = "/usr/sbin/collectd";

impl Collectd {
    /// Starts collectd as host `hostname`, reading `load` and `memory` each second, with
    /// `plugins` (more `LoadPlugin` lines and `<Plugin>` blocks) appended to its config.
    pub fn start(hostname: &str, plugins: &str) -> Collectd {
        assert!(
            Path::new(DAEMON).exists(),
            "{DAEMON} is missing: scripts/setup-test-deps installs collectd-core"
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path().display();
        let config = format!(
            "Hostname \"{hostname}\"\nFQDNLookup false\nBaseDir \"{d}\"\nPIDFile \"{d}/collectd.pid\"\n\
             TypesDB \"/usr/share/collectd/types.db\"\nInterval 1\nLoadPlugin load\nLoadPlugin memory\n{plugins}\n"
        );
        let path = dir.path().join("collectd.conf");
        std::fs::write(&path, config).unwrap();
        let mut cmd = Command::new(DAEMON);
        cmd.arg("-f").arg("-C").arg(&path);
        let (process, _) = Process::start(cmd, "Initialization complete", Duration::from_secs(20));
        Collectd { process, _dir: dir }
    }

    /// The `network` plugin sending to `server` (`<Server>` options inside), flushed every
    /// second (it otherwise waits for a full packet).
    pub fn network(address: std::net::SocketAddr, server_options: &str) -> String {
        format!(
            "<LoadPlugin network>\n  FlushInterval 1\n</LoadPlugin>\n<Plugin network>\n  <Server \"{}\" \"{}\">\n{server_options}\n  </Server>\n</Plugin>\n",
            address.ip(),
            address.port()
        )
    }
}
