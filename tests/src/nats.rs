//! A real NATS (Debian's `nats-server`) for the tests: one node or a cluster on loopback
//! ports, JetStream on, each node with its own store; nodes can be killed and started again.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{free_port, Process};

/// One node's addresses and files.
struct Node {
    client: SocketAddr,
    monitor: SocketAddr,
    config: PathBuf,
    process: Option<Process>,
}

pub struct Nats {
    nodes: Vec<Node>,
    _dir: tempfile::TempDir,
}

impl Nats {
    /// One node; `extra` is added to its config (`authorization { token: "…" }`, say).
    pub fn single(extra: &str) -> Nats {
        Nats::start(1, extra)
    }

    /// `n` nodes in one cluster, JetStream on each.
    pub fn cluster(n: usize) -> Nats {
        Nats::start(n, "")
    }

    fn start(n: usize, extra: &str) -> Nats {
        let dir = tempfile::tempdir().unwrap();
        let routes: Vec<SocketAddr> = (0..n).map(|_| free_port()).collect();
        let mut nodes = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            let (client, monitor) = (free_port(), free_port());
            let cluster = if n > 1 {
                let others: Vec<String> = routes
                    .iter()
                    .filter(|r| *r != route)
                    .map(|r| format!("\"nats-route://{r}\""))
                    .collect();
                format!(
                    "cluster {{\n  name: spud\n  listen: \"{route}\"\n  routes: [{}]\n}}\n",
                    others.join(", ")
                )
            } else {
                String::new()
            };
            let store = dir.path().join(format!("n{i}"));
            let config = dir.path().join(format!("n{i}.conf"));
            std::fs::write(
                &config,
                format!(
                    "server_name: n{i}\nlisten: \"{client}\"\nhttp: \"{monitor}\"\n\
                     jetstream {{\n  store_dir: \"{}\"\n}}\n{cluster}{extra}\n",
                    store.display()
                ),
            )
            .unwrap();
            nodes.push(Node {
                client,
                monitor,
                config,
                process: None,
            });
        }
        let mut nats = Nats { nodes, _dir: dir };
        for i in 0..n {
            nats.start_node(i);
        }
        nats.wait_ready();
        nats
    }

    /// Starts node `i` (again).
    pub fn start_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let mut cmd = Command::new("nats-server");
        cmd.arg("-c").arg(&node.config);
        let process = Process::start_listening(cmd, node.client, Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("{e} (scripts/setup-test-deps installs nats-server)"));
        node.process = Some(process);
    }

    /// Waits until every running node says JetStream is healthy (a cluster has elected its
    /// meta leader).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        for node in self.nodes.iter().filter(|n| n.process.is_some()) {
            let url = format!("http://{}/healthz", node.monitor);
            loop {
                let (status, body) = crate::http::get(&url);
                if status == 200 {
                    break;
                }
                assert!(Instant::now() < deadline, "NATS {url}: {status} {body}");
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    /// kill -9 of node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(process) = self.nodes[i].process.take() {
            process.signal("KILL");
            drop(process);
        }
    }

    /// `nats://` addresses of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| format!("nats://{}", n.client))
            .collect()
    }

    /// The `servers = [...]` of a SPUD config.
    pub fn servers_toml(&self) -> String {
        let urls: Vec<String> = self.urls().iter().map(|u| format!("\"{u}\"")).collect();
        format!("[{}]", urls.join(", "))
    }

    /// A stream's message count, as a running node reports it (None: no such stream).
    pub fn stream_messages(&self, stream: &str) -> Option<u64> {
        let node = self.nodes.iter().find(|n| n.process.is_some())?;
        let info = crate::http::get_json(&format!(
            "http://{}/jsz?streams=true&config=true",
            node.monitor
        ));
        info["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == stream)
            .and_then(|s| s["state"]["messages"].as_u64())
    }

    /// The stream sequence up to which a durable consumer has had every message acknowledged.
    pub fn consumer_acked(&self, stream: &str, durable: &str) -> Option<u64> {
        let node = self.nodes.iter().find(|n| n.process.is_some())?;
        let info = crate::http::get_json(&format!(
            "http://{}/jsz?streams=true&consumers=true",
            node.monitor
        ));
        info["account_details"]
            .as_array()?
            .iter()
            .flat_map(|a| a["stream_detail"].as_array().cloned().unwrap_or_default())
            .find(|s| s["name"] == stream)?["consumer_detail"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == durable)
            .and_then(|c| c["ack_floor"]["stream_seq"].as_u64())
    }
}
