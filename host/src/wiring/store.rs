//! Where the host's samples are stored: its embedded stat server (with the line-protocol
//! and HTTP listeners, tokens, TLS and the snapshot), or a remote `spud-server` through a
//! pusher. With a remote server, runtime control can still be answered on an address of
//! its own (`[host] control`).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use spud_server::client::pusher::Pusher;
use spud_server::control::Control;
use spud_server::faces::metrics::Exporter;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::sinks::Target;

/// The store in use.
pub enum Store {
    /// Stops with the host's stop token.
    Embedded(spud_server::Running),
    Remote(Arc<Pusher>),
}

impl Store {
    /// The embedded server, listening; or a pusher to the remote one.
    pub fn open(
        runtime: &Runtime,
        config: &Config,
        config_path: &Path,
        exporter: Arc<Exporter>,
        stop: &CancellationToken,
    ) -> Result<Store> {
        match &config.server.remote {
            Some(addr) => remote(config, config_path, addr),
            None => embedded(runtime, config, config_path, exporter, stop),
        }
    }

    /// Where samples go.
    pub fn target(&self) -> Target {
        match self {
            Store::Embedded(running) => Target::Embedded(running.server().clone()),
            Store::Remote(pusher) => Target::Remote(Arc::clone(pusher)),
        }
    }

    /// Answers runtime control: on the embedded server's own address, or with a remote
    /// store on `[host] control` (if set), through a server of its own that holds nothing.
    pub fn answer_control(
        &self,
        runtime: &Runtime,
        control: Arc<dyn Control>,
        remote_control: Option<SocketAddr>,
        stop: &CancellationToken,
    ) -> Result<()> {
        match (self, remote_control) {
            (Store::Embedded(running), _) => running.server().set_control(control),
            (Store::Remote(_), Some(addr)) => {
                let server = spud_server::Server::new(spud_server::Config::default());
                server.set_control(control);
                let listener = runtime
                    .block_on(tokio::net::TcpListener::bind(addr))
                    .with_context(|| format!("the control listener cannot listen on {addr}"))?;
                let local = listener.local_addr()?;
                tracing::info!("control listening on {local}");
                let options = spud_server::faces::net::ServeOptions::for_addr(local);
                runtime.spawn(spud_server::faces::net::serve(
                    server,
                    listener,
                    options,
                    stop.clone(),
                ));
            }
            (Store::Remote(_), None) => {}
        }
        Ok(())
    }

    /// After the last sample: the embedded server's listeners end and its last snapshot is
    /// written. (A remote store was flushed with the jobs; see `Gatherer::shut_down`.)
    pub fn close(self, runtime: &Runtime) {
        if let Store::Embedded(running) = self {
            if let Err(e) = runtime.block_on(running.stopped()) {
                tracing::error!("the embedded stat server: {e}");
            }
        }
    }
}

fn remote(config: &Config, config_path: &Path, addr: &str) -> Result<Store> {
    let endpoint = config
        .server
        .endpoint(config_path)
        .expect("a remote server is named")
        .map_err(anyhow::Error::msg)?;
    let backlog = config
        .server
        .waiting(config_path)
        .open("[server] remote", None);
    let pusher = Pusher::start(endpoint, backlog);
    tracing::info!("pushing samples to the remote server {addr}");
    Ok(Store::Remote(pusher))
}

/// The embedded server, started as `spud-server` starts one, from `[server]`, `[munin]`
/// and `[archive]`.
fn embedded(
    runtime: &Runtime,
    config: &Config,
    config_path: &Path,
    exporter: Arc<Exporter>,
    stop: &CancellationToken,
) -> Result<Store> {
    let base = config_path.parent().unwrap_or(Path::new("."));
    let mut embedded = config.server.embedded.clone();
    embedded.archive = embedded.archive.or_else(|| config.archive.dir.clone());
    embedded.rrdcached = embedded
        .rrdcached
        .or_else(|| config.archive.rrdcached.clone());
    embedded.promql = embedded.promql.or_else(|| config.history.promql.clone());
    if let Some(flush) = config.archive.flush {
        embedded.archive_flush = flush;
    }
    let settings = spud_server::Settings {
        munin: config.munin.clone(),
        ..embedded.relative_to(base)
    };
    let running = runtime.block_on(spud_server::start(settings, exporter, stop.clone()))?;
    Ok(Store::Embedded(running))
}
