//! What a whole stat server is started with: `[server]` in `gatherer.toml` deserializes into
//! [`Settings`], and `spud-server`'s flags build one. Every default is written here, once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::faces::metrics::Exporter;
use crate::faces::munin::MuninConfig;
use crate::past::{
    archive::Archived,
    promql::{Promql, SeriesOf},
    Past,
};
use crate::store::journal::Fsync;

/// The line protocol's address unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9107";
/// The HTTP listener's address unless told otherwise, next to the line protocol's.
pub const DEFAULT_HTTP: &str = "127.0.0.1:9108";
/// Seconds between periodic snapshots unless told otherwise.
pub const DEFAULT_SNAPSHOT_EVERY: Duration = Duration::from_secs(60);
/// How long a key's samples wait to be archived together, by default.
pub const DEFAULT_ARCHIVE_FLUSH: Duration = Duration::from_secs(60);

/// Everything a stat server needs to start. Paths are as given; [`Settings::relative_to`]
/// resolves them against a config file's folder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// The line protocol's address (default `127.0.0.1:9107`). None: the default.
    pub listen: Option<SocketAddr>,
    /// Samples kept per key, newest first (default 100).
    #[serde(deserialize_with = "history")]
    pub history: usize,
    /// The snapshot file: loaded at start, written every `snapshot_every`, early when the
    /// write-ahead log beside it outgrows its bound, and at shutdown. Its folder is made on
    /// first start. None: nothing is kept across a restart.
    pub state: Option<PathBuf>,
    /// When the write-ahead log reaches the disk.
    pub fsync: Fsync,
    /// Time between periodic snapshots (default 60 s).
    #[serde(with = "humantime_serde")]
    pub snapshot_every: Duration,
    /// Longest request line accepted, in bytes; a longer one closes the connection.
    pub max_line: usize,
    /// Bytes of updates that may wait for one slow subscriber before it is cut off.
    pub max_pending: usize,
    /// The HTTP listener (JSON API, dashboard, /metrics, JSON push); None for `"off"`.
    #[serde(deserialize_with = "http")]
    pub http: Option<SocketAddr>,
    /// Alert rules and receivers (reloaded when the file changes).
    pub rules: Option<PathBuf>,
    /// The RRD archive's folder: every key's numeric samples, in `spud archive`'s layout.
    pub archive: Option<PathBuf>,
    /// How long a key's new samples wait to be written to its file together (default 60 s,
    /// as `spud archive --flush`): one file update per key per flush, not per sample.
    #[serde(with = "humantime_serde")]
    pub archive_flush: Duration,
    /// rrdcached's address, for the archive's updates (`unix:/run/rrdcached.sock`).
    pub rrdcached: Option<String>,
    /// A Prometheus-compatible query API (VictoriaMetrics, Prometheus) that ranges beyond
    /// the history in memory are read from, instead of the archive.
    pub promql: Option<String>,
    /// Tokens and their roles; clients then authenticate.
    pub tokens: Option<PathBuf>,
    /// Listen beyond loopback without tokens, knowingly.
    pub no_auth: bool,
    /// TLS on every listener: this certificate chain (PEM)…
    pub tls_cert: Option<PathBuf>,
    /// …and its private key (PEM, readable by this user only).
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: only clients with a certificate this CA signed.
    pub tls_client_ca: Option<PathBuf>,
    /// The munin face (`[munin]` in gatherer.toml, `--munin*` for spud-server).
    #[serde(skip)]
    pub munin: MuninConfig,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            listen: None,
            history: 100,
            state: None,
            fsync: Fsync::default(),
            snapshot_every: DEFAULT_SNAPSHOT_EVERY,
            max_line: 128 * 1024,
            max_pending: 8 << 20,
            http: Some(DEFAULT_HTTP.parse().expect("a valid address")),
            rules: None,
            archive: None,
            archive_flush: DEFAULT_ARCHIVE_FLUSH,
            rrdcached: None,
            promql: None,
            tokens: None,
            no_auth: false,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            munin: MuninConfig::default(),
        }
    }
}

impl Settings {
    /// The line protocol's address.
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address"))
    }

    /// The same settings with every relative path taken from `base` (a config file's folder).
    pub fn relative_to(mut self, base: &Path) -> Settings {
        for path in [
            &mut self.state,
            &mut self.rules,
            &mut self.archive,
            &mut self.tokens,
            &mut self.tls_cert,
            &mut self.tls_key,
            &mut self.tls_client_ca,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = spud_access::anchor_path(base, path);
            }
        }
        self
    }

    /// A server that only answers control commands for a process holding no keys (a host
    /// pushing to a remote server): nothing stored, no HTTP.
    pub fn control_only(listen: SocketAddr) -> Settings {
        Settings {
            listen: Some(listen),
            http: None,
            ..Settings::default()
        }
    }

    /// Where the archive is kept, if the server archives.
    pub(crate) fn archive_place(&self) -> Option<spud_archive::Place> {
        self.archive.clone().map(|dir| spud_archive::Place {
            dir,
            rrdcached: self.rrdcached.clone(),
        })
    }

    /// The store's configuration; `/metrics`' mapping (`exporter`) names a key's series in
    /// a query API.
    pub(crate) fn server_config(&self, exporter: &Arc<Exporter>) -> crate::Config {
        let past: Option<Arc<dyn Past>> = match (&self.promql, self.archive_place()) {
            (Some(url), _) => {
                let exporter = Arc::clone(exporter);
                let series_of: SeriesOf = Arc::new(move |key: &str| {
                    let m = exporter.map(key)?;
                    let selector = format!("{}{}{}", m.family.name, m.suffix, m.label_text);
                    Some((selector, m.scale))
                });
                Some(Arc::new(Promql::new(url, series_of)))
            }
            (None, Some(place)) => Some(Arc::new(Archived(place))),
            (None, None) => None,
        };
        crate::Config {
            history: self.history,
            max_pending_pushes: self.max_pending,
            past,
            ..crate::Config::default()
        }
    }
}

fn history<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    match usize::deserialize(d)? {
        0 => Err(serde::de::Error::custom(
            "history must keep at least 1 sample per key",
        )),
        n => Ok(n),
    }
}

fn http<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text == "off" {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "http = {text:?}: an address such as \"{DEFAULT_HTTP}\", or \"off\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_table_is_the_defaults() {
        let s: Settings = toml::from_str("").unwrap();
        assert_eq!(s, Settings::default());
        assert_eq!(s.listen_addr().to_string(), DEFAULT_LISTEN);
        assert_eq!(s.http.unwrap().to_string(), DEFAULT_HTTP);
    }

    #[test]
    fn fields_read_as_written() {
        let s: Settings = toml::from_str(
            "listen = \"127.0.0.1:1\"\nhistory = 7\nstate = \"data/s\"\nsnapshot_every = \"5s\"\n\
             http = \"off\"\nfsync = \"always\"\n",
        )
        .unwrap();
        assert_eq!(s.history, 7);
        assert_eq!(s.snapshot_every, Duration::from_secs(5));
        assert_eq!(s.http, None);
        assert_eq!(s.fsync, Fsync::Always);
        let s = s.relative_to(Path::new("/etc/spud"));
        assert_eq!(s.state.unwrap(), Path::new("/etc/spud/data/s"));
    }

    #[test]
    fn bad_values_are_named() {
        let e = toml::from_str::<Settings>("http = \"nowhere\"").unwrap_err();
        assert!(e.to_string().contains("or \"off\""), "{e}");
        let e = toml::from_str::<Settings>("history = 0").unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
    }
}
