//! `spud-server`: the stat server on its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use spud_server::faces::metrics::{Exporter, MetricsConfig, Rules};
use spud_server::faces::munin::MuninConfig;
use spud_server::start::{DEFAULT_HTTP, DEFAULT_LISTEN, DEFAULT_SNAPSHOT_EVERY};
use spud_server::store::journal::Fsync;
use spud_server::Settings;

/// The SPUD stat server: keeps the newest values of every key, answers `get`, and pushes
/// updates to subscribers, over the original SPUD line protocol.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Address to listen on. Anything beyond loopback refuses the `shutdown` command.
    #[arg(long, default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: SocketAddr,

    /// Samples kept per key, newest first.
    #[arg(long, default_value_t = Settings::default().history as u16, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
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
    #[arg(long, default_value_t = DEFAULT_SNAPSHOT_EVERY.as_secs(), value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    snapshot_every: u64,

    /// Longest request line accepted, in bytes; a longer one closes the connection.
    #[arg(long, default_value_t = Settings::default().max_line, value_name = "BYTES")]
    max_line: usize,

    /// Bytes of updates that may wait for one slow subscriber before it is disconnected.
    #[arg(long, default_value_t = Settings::default().max_pending, value_name = "BYTES")]
    max_pending: usize,

    /// Address of the HTTP listener: JSON API, dashboard, /metrics, JSON push.
    #[arg(long, default_value = DEFAULT_HTTP, value_name = "ADDR")]
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

    /// Archive every key's numbers into RRD files in DIR (one per key, in `spud archive`'s
    /// layout and names, readable by rrdtool), written within the server.
    #[arg(long, value_name = "DIR")]
    archive: Option<PathBuf>,

    /// Hand the archive's updates to rrdcached at ADDR (`unix:/run/rrdcached.sock`, a
    /// socket's path, or host:port), which batches them into fewer disk writes.
    #[arg(long, value_name = "ADDR", requires = "archive")]
    rrdcached: Option<String>,

    /// How long a key's new samples wait to be archived together: one file update per key
    /// per DURATION (its history in memory holds them meanwhile, and ranges read it).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration, requires = "archive")]
    archive_flush: Duration,

    /// Read ranges beyond the history in memory from this Prometheus-compatible query API
    /// (VictoriaMetrics `http://HOST:8428`, Prometheus `http://HOST:9090`), where the
    /// fleet's hosts remote-write, instead of from the archive. Keys are asked for as the
    /// series /metrics maps them to.
    #[arg(long, value_name = "URL")]
    promql: Option<String>,

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
    // The manual pages and completions, for the package (see spud-manual).
    spud_manual::serve(<Args as clap::CommandFactory>::command);
    let args = Args::parse();
    spud_server::init_logs();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(args))
}

impl Args {
    /// The settings these flags stand for.
    fn settings(&self) -> Settings {
        Settings {
            listen: Some(self.listen),
            history: self.history.into(),
            state: self.state.clone(),
            fsync: self.fsync,
            snapshot_every: Duration::from_secs(self.snapshot_every),
            max_line: self.max_line,
            max_pending: self.max_pending,
            http: (!self.no_http).then_some(self.http),
            rules: self.rules.clone(),
            archive: self.archive.clone(),
            archive_flush: self.archive_flush,
            rrdcached: self.rrdcached.clone(),
            promql: self.promql.clone(),
            tokens: self.tokens.clone(),
            no_auth: self.no_auth,
            tls_cert: self.tls_cert.clone(),
            tls_key: self.tls_key.clone(),
            tls_client_ca: self.tls_client_ca.clone(),
            munin: MuninConfig {
                listen: self.munin,
                name: None,
                graphs: self.munin_graphs.clone(),
                open: self.munin_open,
            },
        }
    }
}

async fn run(args: Args) -> Result<()> {
    let exporter = Arc::new(Exporter::new(load_rules(args.metrics_rules.as_deref())?));
    let stop = CancellationToken::new();
    tokio::spawn(stop_on_signal(stop.clone()));
    let running = spud_server::start(args.settings(), exporter, stop).await?;
    running.stopped().await?;
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
