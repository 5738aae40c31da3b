//! `spud-host`'s wiring: read the config, open the store, start the outputs and the
//! gatherer, load everything, watch for changes, and wait for a signal. Each step lives in
//! its own module; `run` is their table of contents.

use crossbeam_channel::Sender;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context as _, Result};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::gatherer::report;
use crate::gatherer::stop::Stop;
use crate::gatherer::Gatherer;
use crate::loading::library;
use crate::reload;
use crate::reload::control::HostControl;
use crate::reload::watch::{self, Change};
use crate::wiring::store::Store;

/// Runs the gatherer until SIGINT or SIGTERM.
pub fn run(config_path: &Path) -> Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    let config = Config::parse(&text, config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let _lock = lock(config_path)?;
    library::remove_stale_copies();
    // Receiving plugins share one socket per job across their generations (jobs::sockets).
    library::offer_sockets(crate::jobs::sockets::HOOK);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let stop = CancellationToken::new();
    let (changes, changed) = crossbeam_channel::unbounded();
    runtime.spawn(signals(stop.clone(), changes.clone()));

    let rules = spud_server::faces::metrics::Rules::new(&config.metrics_rules())
        .map_err(anyhow::Error::msg)?;
    let exporter = Arc::new(spud_server::faces::metrics::Exporter::new(rules));
    let store = Store::open(&runtime, &config, config_path, Arc::clone(&exporter), &stop)?;
    let control_addr = config.host.control;
    // The host's threads wait on a channel that closes when the token is cancelled (by a
    // signal, or a client's `shutdown`).
    let stopped = Stop::new();
    runtime.spawn({
        let (stop, stopped) = (stop.clone(), Arc::clone(&stopped));
        async move {
            stop.cancelled().await;
            stopped.stop();
        }
    });
    let gatherer = Arc::new(Gatherer::new(
        config_path,
        config,
        &text,
        store.target(),
        exporter,
        stopped,
    ));
    let control = HostControl::new(&gatherer, changes.clone());
    store.answer_control(&runtime, control, control_addr, &stop)?;

    // Startup is a reload from nothing: every plugin file, then every job and helper.
    reload::startup(&gatherer);
    let _watcher = watch::start(&gatherer.plugins_dir, config_path, changes.clone());
    spawn("reload", &gatherer, move |g| reload::run(g, &changed))?;
    spawn("report", &gatherer, |g| report::run(g))?;
    tracing::info!(
        "running {} jobs from {} plugins in {}",
        gatherer.scheduler.jobs().len(),
        gatherer.state().plugins.len(),
        gatherer.plugins_dir.display()
    );

    runtime.block_on(stop.cancelled());
    tracing::info!("stopping");
    drop(changes);
    gatherer.shut_down();
    store.close(&runtime);
    library::remove_own_copies();
    tracing::info!("stopped");
    Ok(())
}

/// Runs `body` on a named thread of its own.
fn spawn(
    name: &str,
    gatherer: &Arc<Gatherer>,
    body: impl FnOnce(&Arc<Gatherer>) + Send + 'static,
) -> std::io::Result<()> {
    let gatherer = Arc::clone(gatherer);
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || body(&gatherer))
        .map(drop)
}

/// remstats' lock: two hosts must not run one config. The config's folder is locked (an
/// advisory lock on the folder itself): it needs no write access there (the package's
/// host, as the spud user, only reads /etc/spud), and it holds whatever an editor does to
/// the file (a save by rename makes a new file; the folder stays). One host per folder.
fn lock(config_path: &Path) -> Result<std::fs::File> {
    let folder = match config_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file = std::fs::File::open(&folder)
        .with_context(|| format!("cannot open {} to lock it", folder.display()))?;
    file.try_lock().map_err(|_| {
        anyhow::anyhow!(
            "another spud-host is already running with {} (or another config in {}: one host per config folder)",
            config_path.display(),
            folder.display()
        )
    })?;
    Ok(file)
}

/// SIGINT and SIGTERM stop; SIGHUP looks at everything again.
async fn signals(stop: CancellationToken, changes: Sender<Change>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::warn!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = int.recv() => break,
            _ = term.recv() => break,
            _ = stop.cancelled() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: looking at the config and every plugin again");
                let _ = changes.send(Change::Everything);
            }
        }
    }
    stop.cancel();
}
