//! A real Alertmanager (Debian's `prometheus-alertmanager`) for the tests, on a free port
//! with its own storage, clustering off; and `amtool` against it.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use crate::{free_port, Process};

pub struct Alertmanager {
    pub process: Process,
    pub addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts it with `config` (alertmanager.yml).
    pub fn start(config: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("alertmanager.yml");
        std::fs::write(&file, config).unwrap();
        let addr = free_port();
        let mut cmd = Command::new("prometheus-alertmanager");
        cmd.arg(format!("--config.file={}", file.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .arg("--cluster.listen-address=");
        let process =
            Process::start_listening(cmd, addr, Duration::from_secs(60)).unwrap_or_else(|e| {
                panic!("{e} (scripts/setup-test-deps installs prometheus-alertmanager)")
            });
        let am = Alertmanager {
            process,
            addr,
            _dir: dir,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while crate::http::get(&format!("{}/-/ready", am.url())).0 != 200 {
            assert!(
                std::time::Instant::now() < deadline,
                "alertmanager never became ready"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        am
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Its `/api/v2/alerts` (active, silenced and inhibited alike).
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        let v = crate::http::get_json(&format!("{}/api/v2/alerts", self.url()));
        v.as_array().cloned().unwrap_or_default()
    }

    /// Runs `amtool ARGS --alertmanager.url=…` and returns its stdout.
    pub fn amtool(&self, args: &[&str]) -> String {
        let out = Command::new("amtool")
            .args(args)
            .arg(format!("--alertmanager.url={}", self.url()))
            .output()
            .expect("amtool (scripts/setup-test-deps installs prometheus-alertmanager)");
        assert!(
            out.status.success(),
            "amtool {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// An HTTP receiver of JSON POSTs (a webhook, as a team would run one): keeps every body.
pub struct Receiver {
    pub addr: SocketAddr,
    pub bodies: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    /// Listens on `addr` (a port from `free_port`, so it can start after its sender).
    pub fn start(addr: SocketAddr) -> Receiver {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind(addr).expect("bind the receiver");
        listener.set_nonblocking(true).unwrap();
        let bodies = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (keep, stopping) = (bodies.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_ok() {
                    if let Ok(v) = serde_json::from_slice(&body) {
                        keep.lock().unwrap().push(v);
                    }
                }
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver { addr, bodies, stop }
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }

    /// Waits until `ok` holds for the bodies received so far.
    pub fn wait(
        &self,
        within: Duration,
        what: &str,
        ok: impl Fn(&[serde_json::Value]) -> bool,
    ) -> Vec<serde_json::Value> {
        let deadline = std::time::Instant::now() + within;
        loop {
            let bodies = self.bodies();
            if ok(&bodies) {
                return bodies;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the receiver never got {what}; it got {bodies:#?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}
