//! `spud-server`: the stat server on its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use spud_server::auth::Tokens;
use spud_server::journal::{self, Fsync};
use spud_server::metrics::{Exporter, MetricsConfig, Rules};
use spud_server::net::{serve, ServeOptions};
use spud_server::snapshot::{self, SnapshotError};
use spud_server::{Config, Server};

/// The SPUD stat server: keeps the newest values of every key, answers `get`, and pushes
/// updates to subscribers, over the original SPUD line protocol.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on. Anything beyond loopback refuses the `shutdown` command.
    #[arg(long, default_value = "127.0.0.1:9107", value_name = "ADDR")]
    listen: SocketAddr,

    /// Samples kept per key, newest first.
    #[arg(long, default_value_t = 100, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    history: u16,

    /// Snapshot file: loaded at start, written atomically every --snapshot-every seconds
    /// and at shutdown. Without it, a restart starts empty.
    #[arg(long, value_name = "FILE")]
    state: Option<PathBuf>,

    /// With --state, a write-ahead log (`FILE.wal`) keeps every sample stored since the last
    /// snapshot: `always` acknowledges a set only once it is on disk, `everysec` fsyncs once
    /// a second, `no` leaves it to the system.
    #[arg(long, value_enum, default_value_t = Fsync::Everysec, value_name = "POLICY")]
    fsync: Fsync,

    /// Seconds between periodic snapshots (with --state).
    #[arg(long, default_value_t = 60, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: u64,

    /// Longest request line accepted, in bytes; a longer one closes the connection.
    #[arg(long, default_value_t = 128 * 1024, value_name = "BYTES")]
    max_line: usize,

    /// Bytes of updates that may wait for one slow subscriber before it is disconnected.
    #[arg(long, default_value_t = 8 << 20, value_name = "BYTES")]
    max_pending: usize,

    /// Address of the HTTP listener: JSON API, dashboard, /metrics, JSON push.
    #[arg(long, default_value = spud_server::http::DEFAULT_ADDR, value_name = "ADDR")]
    http: SocketAddr,

    /// No HTTP listener.
    #[arg(long, conflicts_with = "http")]
    no_http: bool,

    /// Rules mapping keys to Prometheus series for /metrics (a TOML file of `[[rule]]`s;
    /// see docs/metrics.md).
    #[arg(long, value_name = "FILE")]
    metrics_rules: Option<PathBuf>,

    /// Alert rules and receivers (a TOML file of `[[alert]]`s and `[[notify]]`s; see
    /// docs/alerts.md). Reloaded when it changes; a bad edit is refused and the running
    /// rules stay.
    #[arg(long, value_name = "FILE")]
    rules: Option<PathBuf>,

    /// Speak the munin-node protocol here, so a munin master graphs the keys (see
    /// docs/metrics.md). Read-only; with --tls-cert it offers STARTTLS, and with
    /// --tls-client-ca requires it (then it may listen beyond loopback); else loopback
    /// unless --munin-open.
    #[arg(long, value_name = "ADDR")]
    munin: Option<SocketAddr>,

    /// With --munin: one graph of the keys this glob matches (repeatable); other keys are
    /// grouped by prefix.
    #[arg(long = "munin-graph", value_name = "GLOB", requires = "munin")]
    munin_graphs: Vec<String>,

    /// With --munin: listen beyond loopback knowingly (anyone reaching it reads every
    /// numeric key).
    #[arg(long, requires = "munin")]
    munin_open: bool,

    /// Tokens and their roles (read, write, admin): clients then need `auth TOKEN`, HTTP
    /// requests a bearer token (see docs/security.md). Readable by this user only.
    #[arg(long, value_name = "FILE")]
    tokens: Option<PathBuf>,

    /// Listen beyond loopback without tokens: anyone who can reach the ports may read and
    /// write every key. Without this, such a server refuses to start.
    #[arg(long, conflicts_with = "tokens")]
    no_auth: bool,

    /// TLS on both listeners: this certificate chain (PEM)…
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,

    /// …and its private key (PEM, readable by this user only).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,

    /// Mutual TLS: only clients with a certificate signed by this CA (PEM) get in.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    spud_server::init_logs();
    // Many clients each hold a descriptor; the usual soft limit of 1024 is too few.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        warn!("could not raise the open-files limit: {e}");
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let config = Config {
        history: args.history.into(),
        max_pending_pushes: args.max_pending,
        ..Config::default()
    };
    let server = match &args.state {
        Some(path) => load_state(path, config),
        None => Server::new(config),
    };
    let shutdown = CancellationToken::new();
    if let Some(path) = &args.state {
        let replayed = journal::recover(&server, path, args.fsync)?;
        if replayed.records > 0 {
            info!(
                "write-ahead log: {} samples replayed ({} already in the snapshot)",
                replayed.applied,
                replayed.records - replayed.applied
            );
        }
    }

    if let Some(path) = &args.rules {
        spud_server::alerts::Alerts::start_file(&server, path).map_err(anyhow::Error::msg)?;
    }

    let tokens = match &args.tokens {
        Some(path) => Some(Arc::new(Tokens::load(path).map_err(anyhow::Error::msg)?)),
        None => None,
    };
    let http_addr = (!args.no_http).then_some(args.http);
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            spud_server::tls::server_config(cert, key, args.tls_client_ca.as_deref())
                .map_err(anyhow::Error::msg)?,
        ),
        _ => None,
    };
    spud_server::auth::protected_mode(
        tokens.is_some() || args.tls_client_ca.is_some() || args.no_auth,
        std::iter::once(args.listen).chain(http_addr),
        "--tokens FILE",
        "--no-auth",
    )
    .map_err(anyhow::Error::msg)?;

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    let mut options = ServeOptions::for_addr(addr);
    options.max_line = args.max_line;
    options.tokens = tokens.clone();
    options.tls = tls.clone();

    tokio::spawn(stop_on_signal(shutdown.clone()));
    let exporter = Arc::new(Exporter::new(load_rules(args.metrics_rules.as_deref())?));
    if let Some(addr) = args.munin {
        let config = spud_server::munin::MuninConfig {
            listen: Some(addr),
            name: None,
            graphs: args.munin_graphs.clone(),
            open: args.munin_open,
        };
        let munin_tls = tls.clone().map(|config| spud_server::munin::MuninTls {
            config,
            mutual: args.tls_client_ca.is_some(),
        });
        let listener = spud_server::munin::bind(&config, munin_tls.as_ref()).await?;
        info!("munin node on {}", listener.local_addr()?);
        tokio::spawn(spud_server::munin::serve(
            server.clone(),
            Arc::clone(&exporter),
            config,
            munin_tls,
            listener,
            shutdown.clone(),
        ));
    }
    if !args.no_http {
        let http = tokio::net::TcpListener::bind(args.http)
            .await
            .with_context(|| format!("cannot listen for HTTP on {}", args.http))?;
        info!("HTTP on http://{}/", http.local_addr()?);
        tokio::spawn(spud_server::http::serve(
            server.clone(),
            exporter,
            tokens,
            tls,
            http,
            shutdown.clone(),
        ));
    }
    // Said last: whoever waits for this line finds every listener ready.
    info!("listening on {addr}");
    let snapshots = args.state.clone().map(|path| {
        tokio::spawn(snapshot_periodically(
            server.clone(),
            path,
            Duration::from_secs(args.snapshot_every),
            shutdown.clone(),
        ))
    });

    serve(server.clone(), listener, options, shutdown.clone()).await?;

    if let (Some(task), Some(path)) = (snapshots, args.state) {
        let _ = task.await;
        save(server, path).await;
    }
    info!("stopped");
    Ok(())
}

/// The /metrics mapping rules: the built-in ones, and those of `path`.
fn load_rules(path: Option<&std::path::Path>) -> Result<Rules> {
    let config = match path {
        None => MetricsConfig::default(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            toml::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
    };
    Rules::new(&config).map_err(|e| anyhow::anyhow!("{e}"))
}

/// Loads the snapshot; a missing one starts empty, a bad one is moved aside (never
/// overwritten) and the server starts empty.
fn load_state(path: &std::path::Path, config: Config) -> Server {
    match snapshot::load(path, config.clone()) {
        Ok(server) => {
            info!("loaded {} keys from {}", server.key_count(), path.display());
            server
        }
        Err(SnapshotError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            info!("no snapshot at {} yet; starting empty", path.display());
            Server::new(config)
        }
        Err(e) => {
            match snapshot::move_aside(path) {
                Ok(to) => error!("{e}; moved it to {} and starting empty", to.display()),
                Err(m) => error!("{e}; could not move it aside ({m}); starting empty"),
            }
            Server::new(config)
        }
    }
}

async fn save(server: Server, path: PathBuf) {
    let started = std::time::Instant::now();
    let result = tokio::task::spawn_blocking(move || snapshot::save(&server, &path)).await;
    match result {
        Ok(Ok(samples)) => info!(
            "snapshot written: {samples} samples in {:?}",
            started.elapsed()
        ),
        Ok(Err(e)) => error!("snapshot not written, the previous one is kept: {e}"),
        Err(e) => error!("snapshot task failed: {e}"),
    }
}

async fn snapshot_periodically(
    server: Server,
    path: PathBuf,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => save(server.clone(), path.clone()).await,
        }
    }
}

async fn stop_on_signal(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("cannot install signal handlers; stop with the shutdown command");
        return;
    };
    tokio::select! {
        _ = int.recv() => info!("interrupted; shutting down"),
        _ = term.recv() => info!("terminated; shutting down"),
    }
    shutdown.cancel();
}
