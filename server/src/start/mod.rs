//! One way to start a whole stat server: [`start`] takes [`Settings`] and brings up the
//! store (snapshot, write-ahead log, compaction), alerts, tokens, TLS, the munin face, HTTP
//! and the line protocol, and returns a [`Running`] handle that stops it. `spud-server` and
//! the host's embedded server both call it and do nothing else of their own.

mod compaction;
mod settings;

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use settings::{Settings, DEFAULT_HTTP, DEFAULT_LISTEN, DEFAULT_SNAPSHOT_EVERY};

use crate::access::auth::Tokens;
use crate::faces::metrics::Exporter;
use crate::faces::net::ServeOptions;
use crate::store::journal::JournalError;
use crate::Server;

/// Why a server did not start. Each names what to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Listening beyond loopback with nothing to check who connects.
    #[error(
        "refusing to listen on {0} without authentication: anyone reaching it could read and \
         write every key. Give tokens (--tokens FILE, or [server] tokens = \"FILE\") or a TLS \
         client CA (see docs/security.md), or allow it knowingly (--no-auth, or [server] \
         no_auth = true)"
    )]
    Unprotected(SocketAddr),
    /// An address could not be bound.
    #[error("the stat server cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    /// The state file's folder could not be made.
    #[error("the state folder {path}: {source}")]
    StateDir { path: PathBuf, source: io::Error },
    /// The write-ahead log could not be read or opened.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The alert rules do not load.
    #[error(transparent)]
    Rules(#[from] crate::alerts::rules::RulesError),
    /// The tokens file, a TLS file or the munin face's settings.
    #[error("{0}")]
    Setting(String),
}

/// A server started by [`start`]: its store, its addresses, and what stops it.
pub struct Running {
    server: Server,
    addr: SocketAddr,
    http_addr: Option<SocketAddr>,
    stop: CancellationToken,
    serving: JoinHandle<io::Result<()>>,
    tasks: TaskTracker,
    state: Option<PathBuf>,
}

/// Starts a whole stat server from `settings`; `stop` (or a client's `shutdown`) stops its
/// listeners, and [`Running::stopped`] then writes the last snapshot. `/metrics` and the
/// munin face map keys through `exporter`.
pub async fn start(
    settings: Settings,
    exporter: Arc<Exporter>,
    stop: CancellationToken,
) -> Result<Running, StartError> {
    // Many clients each hold a descriptor; the usual soft limit of 1024 is too few.
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!("could not raise the open-files limit: {e}");
    }
    let listen = settings.listen_addr();
    if let Some(url) = settings.promql.as_deref() {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(StartError::Setting(format!(
                "promql = {url:?}: give the query API's http:// or https:// URL"
            )));
        }
    }
    let tokens = match &settings.tokens {
        Some(path) => Some(Arc::new(Tokens::load(path).map_err(StartError::Setting)?)),
        None => None,
    };
    let tls = match (&settings.tls_cert, &settings.tls_key) {
        (Some(cert), Some(key)) => Some(
            crate::access::tls::server_config(cert, key, settings.tls_client_ca.as_deref())
                .map_err(StartError::Setting)?,
        ),
        _ => None,
    };
    let authenticated = tokens.is_some() || settings.tls_client_ca.is_some() || settings.no_auth;
    if let Some(addr) = std::iter::once(listen)
        .chain(settings.http)
        .find(|a| !authenticated && !a.ip().is_loopback())
    {
        return Err(StartError::Unprotected(addr));
    }

    let server = recover(&settings, &exporter)?;
    if let Some(path) = &settings.rules {
        crate::alerts::Alerts::start_file(&server, path)?;
    }
    let tasks = TaskTracker::new();
    if let Some(path) = &settings.state {
        tasks.spawn(compaction::run(
            server.clone(),
            path.clone(),
            settings.snapshot_every,
            stop.clone(),
        ));
    }
    if let Some(place) = settings.archive_place() {
        let flush = settings.archive_flush;
        tasks.spawn(crate::archiver::run(
            server.clone(),
            place,
            flush,
            stop.clone(),
        ));
    }
    if settings.munin.listen.is_some() {
        let munin_tls = tls.clone().map(|config| crate::faces::munin::MuninTls {
            config,
            mutual: settings.tls_client_ca.is_some(),
        });
        let listener = crate::faces::munin::bind(&settings.munin, munin_tls.as_ref())
            .await
            .map_err(|e| StartError::Setting(format!("{e:#}")))?;
        tracing::info!("munin node on {}", local_addr(&listener)?);
        tasks.spawn(crate::faces::munin::serve(
            server.clone(),
            Arc::clone(&exporter),
            settings.munin.clone(),
            munin_tls,
            listener,
            stop.clone(),
        ));
    }
    let http_addr = match settings.http {
        Some(addr) => {
            let http = bind("HTTP", addr).await?;
            let local = local_addr(&http)?;
            tracing::info!("HTTP on http://{local}/");
            tasks.spawn(crate::faces::http::serve(
                server.clone(),
                exporter,
                tokens.clone(),
                tls.clone(),
                http,
                stop.clone(),
            ));
            Some(local)
        }
        None => None,
    };
    tasks.close();

    let listener = bind("the line protocol", listen).await?;
    let addr = local_addr(&listener)?;
    let mut options = ServeOptions::for_addr(addr);
    options.max_line = settings.max_line;
    options.tokens = tokens;
    options.tls = tls;
    let serving = tokio::spawn(crate::faces::net::serve(
        server.clone(),
        listener,
        options,
        stop.clone(),
    ));
    // Said last: whoever waits for this line finds every listener ready.
    tracing::info!("stat server listening on {addr}");
    Ok(Running {
        server,
        addr,
        http_addr,
        stop,
        serving,
        tasks,
        state: settings.state,
    })
}

impl Running {
    /// The store, in-process.
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Where the line protocol listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where HTTP is served, if it is.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http_addr
    }

    /// Stops the listeners (as a client's `shutdown` does).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Once stopped: every connection flushed, then the last snapshot written. Samples set
    /// in-process before this call are in it.
    pub async fn stopped(self) -> io::Result<()> {
        let served = self
            .serving
            .await
            .unwrap_or_else(|e| Err(io::Error::other(e)));
        self.tasks.wait().await;
        if let Some(path) = self.state {
            compaction::save(self.server, path).await;
        }
        tracing::info!("stat server stopped");
        served
    }
}

async fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { what, addr, source })
}

fn local_addr(listener: &TcpListener) -> Result<SocketAddr, StartError> {
    listener
        .local_addr()
        .map_err(|e| StartError::Setting(e.to_string()))
}

/// The store as the state file and its log left it: the snapshot loaded (a bad one moved
/// aside, never overwritten), the log replayed over it, and the log attached for what comes.
fn recover(settings: &Settings, exporter: &Arc<Exporter>) -> Result<Server, StartError> {
    let config = settings.server_config(exporter);
    let Some(path) = &settings.state else {
        return Ok(Server::new(config));
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| StartError::StateDir {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let started = std::time::Instant::now();
    let server = crate::store::recovery::recover(path, config, settings.fsync)?;
    tracing::info!(
        "recovered {} keys from {} in {:?}",
        server.key_count(),
        path.display(),
        started.elapsed()
    );
    Ok(server)
}
