//! `[[output]]`: where the host's samples go besides the store. Each output is one file
//! implementing [`Output`] (take samples, report figures, finish) and, for its `[[output]]`
//! table, [`OutputSettings`] on a type named `Settings`; one line of `registry!` below names
//! its file and its `type`.
//!
//! Outputs are offered every sample at the host's sink, so they see the same samples with
//! the embedded server and with a remote one. An output must never block the caller: it
//! buffers, and sends on a thread of its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use spud_server::faces::metrics::Exporter;
use spud_spool::Backlog;
use tokio_util::sync::CancellationToken;

use crate::sinks::backlog::Waiting;

/// A running output.
pub trait Output: Send + Sync {
    /// Names its figures: `host.output.<name>.*`.
    fn name(&self) -> &str;
    /// One sample the host stored. Must not block.
    fn offer(&self, key: &str, value: &str, time: u64);
    /// Its running figures (sent, buffered, spooled, dropped, oldest_age ...), reported
    /// every few seconds.
    fn figures(&self) -> Vec<(&'static str, u64)>;
    /// Takes no more samples and sends what it holds, giving up after `within`; a spool
    /// keeps what is left for its successor or the next start.
    fn finish(&self, within: Duration);
}

/// One output's `[[output]]` table.
pub trait OutputSettings {
    /// Its `name`, if given.
    fn name(&self) -> Option<&str>;
    /// Text of its table that finds its line in the config (its URL, say).
    fn locator(&self) -> &str;
    /// What is wrong with it, if anything; `base` is the config's folder, where its
    /// relative paths and `file:` secrets start.
    fn problem(&self, base: &Path) -> Option<String>;
    /// Its `spool` folder, if it has one (as written, relative to the config file).
    fn spool(&self) -> Option<&Path>;
    /// Starts it.
    fn start(&self, name: String, started: &Started) -> Arc<dyn Output>;
}

/// What an output shares with its sending thread: where samples wait, and the signals of
/// its end.
pub struct Sending {
    pub backlog: Arc<Backlog>,
    /// Asks the sender to stop.
    pub stop: CancellationToken,
    /// Cancelled once the sender has let go of the backlog.
    pub done: CancellationToken,
}

impl Sending {
    pub fn new(backlog: Arc<Backlog>) -> Sending {
        Sending {
            backlog,
            stop: CancellationToken::new(),
            done: CancellationToken::new(),
        }
    }

    /// Keeps one sample, as `key value` at `time`.
    pub fn push(&self, key: &str, value: &str, time: u64) {
        let mut body = Vec::with_capacity(key.len() + value.len() + 1);
        body.extend_from_slice(key.as_bytes());
        body.push(b' ');
        body.extend_from_slice(value.as_bytes());
        self.backlog.push(time, &body);
    }

    /// Runs `send` on a thread named after the output, as the backlog's one sender; `done`
    /// once it returns.
    pub fn spawn(name: &str, send: impl FnOnce() + Send + 'static, sending: &Sending) {
        let (backlog, done) = (Arc::clone(&sending.backlog), sending.done.clone());
        std::thread::Builder::new()
            .name(format!("output {name}"))
            .spawn(move || {
                let consumer = backlog.consume();
                send();
                drop(consumer);
                done.cancel();
            })
            .expect("a thread");
    }

    /// `Output::finish`: in memory, waits (up to `within`) until everything held was
    /// sent; then stops the sender and waits until it has let go (a spool keeps the rest).
    pub fn finish(&self, within: Duration) {
        if !self.backlog.is_spool() {
            self.backlog.drained(within);
        }
        self.stop.cancel();
        let deadline = std::time::Instant::now() + within;
        while !self.done.is_cancelled() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.backlog.sync();
    }
}

/// What the host hands a starting output.
pub struct Started {
    /// The `[metrics]` rules, for outputs that speak in series.
    pub exporter: Arc<Exporter>,
    /// The config file, that relative paths (a `spool`) start from.
    pub config_path: PathBuf,
}

impl Started {
    /// A path of the output's table, relative to the config file (a secret's `file:` or
    /// `env:` reference kept as such: see `spud_access::anchor_path`).
    pub fn path(&self, p: &Path) -> PathBuf {
        spud_access::anchor_path(self.config_path.parent().unwrap_or(Path::new(".")), p)
    }

    /// Where an output's samples wait: its `spool` (relative to the config file) bounded by
    /// `spool_max`, else `buffer` samples in memory.
    pub fn backlog(
        &self,
        name: &str,
        spool: Option<&Path>,
        spool_max: Option<u64>,
        buffer: usize,
    ) -> Arc<Backlog> {
        Waiting {
            spool: spool.map(|p| self.path(p)),
            spool_max: spool_max.unwrap_or(Waiting::DEFAULT_SPOOL_MAX),
            buffer,
        }
        .open(&format!("output {name}"), None)
    }
}

/// Every output: `file: Variant`, the output's module and its `type` (the variant's name in
/// snake_case). Adding an output is its file and a line here.
macro_rules! registry {
    ($($module:ident: $variant:ident),* $(,)?) => {
        $(mod $module;)*

        /// One `[[output]]`, by its `type`.
        #[derive(Debug, Clone, PartialEq, Deserialize)]
        #[serde(tag = "type", rename_all = "snake_case")]
        pub enum OutputConfig {
            $($variant($module::Settings),)*
        }

        impl OutputConfig {
            /// Its settings, whatever its type.
            pub fn settings(&self) -> &dyn OutputSettings {
                match self {
                    $(OutputConfig::$variant(settings) => settings,)*
                }
            }
        }
    };
}

registry! {
    remote_write: PrometheusRemoteWrite,
    nats: Nats,
}

impl OutputConfig {
    /// Its name: `name`, or its position (`output1`).
    pub fn name(&self, index: usize) -> String {
        self.settings()
            .name()
            .map(str::to_string)
            .unwrap_or_else(|| format!("output{}", index + 1))
    }
}

/// Starts every configured output.
pub fn start_all(configs: &[OutputConfig], started: &Started) -> Vec<Arc<dyn Output>> {
    configs
        .iter()
        .enumerate()
        .map(|(i, config)| config.settings().start(config.name(i), started))
        .collect()
}
