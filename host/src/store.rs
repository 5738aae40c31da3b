//! Where the host's samples are stored: its embedded stat server (with the line-protocol
//! and HTTP listeners, tokens, TLS and the snapshot), or a remote `spud-server` through a
//! pusher. With a remote server, runtime control can still be answered on an address of
//! its own (`[host] control`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use spud_server::auth::Tokens;
use spud_server::control::Control;
use spud_server::endpoint::Endpoint;
use spud_server::journal;
use spud_server::metrics::Exporter;
use spud_server::pusher::Pusher;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

use crate::config::{relative_to, Config};
use crate::sink::Target;

const DEFAULT_LISTEN: &str = "127.0.0.1:9107";

/// The store in use.
pub enum Store {
    Embedded {
        server: spud_server::Server,
        /// The line-protocol listener; ends once the host's stop token is cancelled.
        serving: tokio::task::JoinHandle<std::io::Result<()>>,
        /// Where its snapshot goes.
        snapshot: Option<PathBuf>,
    },
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
            Store::Embedded { server, .. } => Target::Embedded(server.clone()),
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
            (Store::Embedded { server, .. }, _) => server.set_control(control),
            (Store::Remote(_), Some(addr)) => {
                let server = spud_server::Server::new(spud_server::Config::default());
                server.set_control(control);
                let listener = runtime
                    .block_on(tokio::net::TcpListener::bind(addr))
                    .with_context(|| format!("the control listener cannot listen on {addr}"))?;
                let local = listener.local_addr()?;
                tracing::info!("control listening on {local}");
                let options = spud_server::net::ServeOptions::for_addr(local);
                runtime.spawn(spud_server::net::serve(
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

    /// After the last sample: the embedded server's listener ends and its snapshot is
    /// written. (A remote store was flushed with the jobs; see `Gatherer::shut_down`.)
    pub fn close(self, runtime: &Runtime) {
        let Store::Embedded {
            server,
            serving,
            snapshot,
        } = self
        else {
            return;
        };
        let _ = runtime.block_on(serving);
        if let Some(path) = snapshot {
            match spud_server::snapshot::save(&server, &path) {
                Ok(n) => tracing::info!("snapshot written: {n} samples"),
                Err(e) => tracing::error!("snapshot not written, the previous one is kept: {e}"),
            }
        }
    }
}

fn remote(config: &Config, config_path: &Path, addr: &str) -> Result<Store> {
    let file = |p: &Option<PathBuf>| p.as_ref().map(|p| relative_to(config_path, p));
    let (token, ca, cert, key) = (
        file(&config.server.token_file),
        file(&config.server.tls_ca),
        file(&config.server.tls_cert),
        file(&config.server.tls_key),
    );
    let endpoint = Endpoint::new(addr.to_string())
        .token_file(token.as_deref())
        .and_then(|e| e.tls(ca.as_deref(), cert.as_deref().zip(key.as_deref())))
        .map_err(anyhow::Error::msg)?;
    let pusher = Pusher::start(endpoint, config.server.buffer.unwrap_or(100_000));
    tracing::info!("pushing samples to the remote server {addr}");
    Ok(Store::Remote(pusher))
}

fn embedded(
    runtime: &Runtime,
    config: &Config,
    config_path: &Path,
    exporter: Arc<Exporter>,
    stop: &CancellationToken,
) -> Result<Store> {
    let file = |p: &Option<PathBuf>| p.as_ref().map(|p| relative_to(config_path, p));
    let snapshot = file(&config.server.state);
    let server = load_snapshot(snapshot.as_deref());
    if let Some(path) = &snapshot {
        let replayed = journal::recover(&server, path, config.server.fsync)?;
        if replayed.records > 0 {
            tracing::info!(
                "write-ahead log: {} samples replayed ({} already in the snapshot)",
                replayed.applied,
                replayed.records - replayed.applied
            );
        }
    }
    if let Some(path) = file(&config.server.rules) {
        spud_server::alerts::Alerts::start_file(&server, &path).map_err(anyhow::Error::msg)?;
    }
    let addr = config
        .server
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address"));
    let http_addr = config.server.http_addr().map_err(anyhow::Error::msg)?;
    let tokens = match file(&config.server.tokens) {
        Some(path) => Some(Arc::new(Tokens::load(&path).map_err(anyhow::Error::msg)?)),
        None => None,
    };
    let tls = match (file(&config.server.tls_cert), file(&config.server.tls_key)) {
        (Some(cert), Some(key)) => Some(
            spud_server::tls::server_config(
                &cert,
                &key,
                file(&config.server.tls_client_ca).as_deref(),
            )
            .map_err(anyhow::Error::msg)?,
        ),
        _ => None,
    };
    spud_server::auth::protected_mode(
        tokens.is_some() || config.server.tls_client_ca.is_some() || config.server.no_auth,
        std::iter::once(addr).chain(http_addr),
        "[server] tokens = \"FILE\"",
        "[server] no_auth = true",
    )
    .map_err(anyhow::Error::msg)?;
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("the embedded stat server cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    tracing::info!("stat server listening on {local}");
    if config.munin.listen.is_some() {
        let munin_tls = tls.clone().map(|config_tls| spud_server::munin::MuninTls {
            config: config_tls,
            mutual: config.server.tls_client_ca.is_some(),
        });
        let listener =
            runtime.block_on(spud_server::munin::bind(&config.munin, munin_tls.as_ref()))?;
        tracing::info!("munin node on {}", listener.local_addr()?);
        runtime.spawn(spud_server::munin::serve(
            server.clone(),
            Arc::clone(&exporter),
            config.munin.clone(),
            munin_tls,
            listener,
            stop.clone(),
        ));
    }
    if let Some(addr) = http_addr {
        let http = runtime
            .block_on(tokio::net::TcpListener::bind(addr))
            .with_context(|| format!("the embedded stat server cannot serve HTTP on {addr}"))?;
        tracing::info!("HTTP on http://{}/", http.local_addr()?);
        runtime.spawn(spud_server::http::serve(
            server.clone(),
            exporter,
            tokens.clone(),
            tls.clone(),
            http,
            stop.clone(),
        ));
    }
    let mut options = spud_server::net::ServeOptions::for_addr(local);
    options.tokens = tokens;
    options.tls = tls;
    let serving = runtime.spawn(spud_server::net::serve(
        server.clone(),
        listener,
        options,
        stop.clone(),
    ));
    Ok(Store::Embedded {
        server,
        serving,
        snapshot,
    })
}

/// The server as its snapshot left it; empty without one, or (said, and the file moved
/// aside) when it cannot be read.
fn load_snapshot(path: Option<&Path>) -> spud_server::Server {
    let server_config = spud_server::Config::default();
    let Some(path) = path.filter(|p| p.exists()) else {
        return spud_server::Server::new(server_config);
    };
    match spud_server::snapshot::load(path, server_config.clone()) {
        Ok(server) => server,
        Err(e) => {
            let moved = spud_server::snapshot::move_aside(path)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|m| format!("nowhere ({m})"));
            tracing::error!("{e}; moved it to {moved} and starting empty");
            spud_server::Server::new(server_config)
        }
    }
}
