//! `gatherer.toml`: the user's interface. Names here are a contract: add, never rename.
//! Unknown fields are errors, and every error names the file, the line and the field.

pub mod import;
mod metrics;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::model::{Isolation, JobSpec, Limits, Probe};
use crate::signature::Trust;
use crate::sinks::backlog::Waiting;
use crate::sinks::outputs::OutputConfig;
use spud_server::client::endpoint::Endpoint;

/// The whole file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub host: HostSection,
    /// What plugins read with `Host::var` (the original's `get_var`).
    #[serde(default)]
    pub vars: BTreeMap<String, toml::Value>,
    #[serde(default, rename = "job")]
    pub jobs: Vec<JobConfig>,
    #[serde(default, rename = "helper")]
    pub helpers: Vec<HelperConfig>,
    /// How keys map to Prometheus series (`/metrics` and remote-write outputs).
    #[serde(default)]
    pub metrics: spud_server::faces::metrics::MetricsConfig,
    /// Where samples go besides the store.
    #[serde(default, rename = "output")]
    pub outputs: Vec<OutputConfig>,
    /// The embedded server as a munin node: `listen`, `name`, `graphs`, `open`.
    #[serde(default)]
    pub munin: spud_server::faces::munin::MuninConfig,
    /// The embedded server's RRD archive: `dir`, and `rrdcached`.
    #[serde(default)]
    pub archive: ArchiveSection,
    /// Where the embedded server reads ranges beyond its memory: `promql`.
    #[serde(default)]
    pub history: HistorySection,
    /// Settings per plugin, by the name it declares: `[plugin.memcached]`.
    #[serde(default, rename = "plugin")]
    pub plugins: BTreeMap<String, PluginSettings>,
}

/// `[archive]`: the embedded server writes every key's numbers into RRD files in `dir`
/// (relative to this file), in `spud archive`'s layout, through rrdcached when `rrdcached`
/// names its address; ranges beyond memory read them.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ArchiveSection {
    pub dir: Option<PathBuf>,
    /// How long a key's new samples wait to be written together (default 60 s).
    #[serde(default, with = "humantime_serde")]
    pub flush: Option<std::time::Duration>,
    /// rrdcached's address for the updates (`unix:/run/rrdcached.sock`).
    pub rrdcached: Option<String>,
}

/// `[history]`: with `promql = URL`, ranges beyond the samples in memory come from that
/// Prometheus-compatible query API (VictoriaMetrics, Prometheus) instead of the archive.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct HistorySection {
    pub promql: Option<String>,
}

/// `[plugin.NAME]`: what applies to every job of one plugin.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct PluginSettings {
    /// Where its jobs run, unless a job says otherwise.
    pub isolation: Option<Isolation>,
}

/// `[server]`: where samples go. The embedded server (the default) takes every field of
/// `spud_server::Settings`; a remote one is named by `remote`, with what the host needs to
/// reach it.
#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Push to a remote `spud-server` instead.
    pub remote: Option<String>,
    /// Samples kept in memory while the remote server is away (default 100,000).
    pub buffer: Option<usize>,
    /// With `remote`: samples wait in this directory (relative to this file) instead, so
    /// that an outage and a restart meanwhile lose nothing.
    pub spool: Option<PathBuf>,
    /// The spool's bound in bytes (default 1 GiB); past it the oldest samples are dropped.
    pub spool_max: Option<u64>,
    /// The token the host presents to the `remote` server: a file whose first line is the
    /// secret, relative to this file.
    pub token_file: Option<PathBuf>,
    /// With `remote`: speak TLS to it, trusting server certificates this CA signed.
    pub tls_ca: Option<PathBuf>,
    /// The embedded server's settings (paths relative to this file). With `remote`,
    /// `tls_cert` and `tls_key` are the host's own client certificate, for a server that
    /// asks for one.
    #[serde(flatten)]
    pub embedded: spud_server::Settings,
}

impl ServerSection {
    /// Samples kept while the remote server is away, unless `buffer` says otherwise.
    pub const DEFAULT_BUFFER: usize = 100_000;

    /// How to reach the `remote` server (None: the embedded one), with its token and TLS
    /// files taken relative to the config file at `config_path`.
    pub fn endpoint(&self, config_path: &Path) -> Option<Result<Endpoint, String>> {
        let addr = self.remote.as_ref()?;
        let file = |p: &Option<PathBuf>| p.as_ref().map(|p| relative_to(config_path, p));
        let (token, ca, cert, key) = (
            file(&self.token_file),
            file(&self.tls_ca),
            file(&self.embedded.tls_cert),
            file(&self.embedded.tls_key),
        );
        Some(
            Endpoint::new(addr.to_string())
                .token_file(token.as_deref())
                .and_then(|e| e.tls(ca.as_deref(), cert.as_deref().zip(key.as_deref()))),
        )
    }

    /// Samples kept while the remote server is away.
    pub fn buffer(&self) -> usize {
        self.buffer.unwrap_or(Self::DEFAULT_BUFFER)
    }

    /// Where samples for the remote server wait.
    pub fn waiting(&self, config_path: &Path) -> Waiting {
        Waiting {
            spool: self.spool.as_ref().map(|p| relative_to(config_path, p)),
            spool_max: self.spool_max.unwrap_or(Waiting::DEFAULT_SPOOL_MAX),
            buffer: self.buffer(),
        }
    }
}

/// The host's own settings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostSection {
    /// The plugins directory, relative to this file.
    #[serde(default = "default_plugins")]
    pub plugins: PathBuf,
    /// Default interval for jobs that name none.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
    /// Default collect deadline.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Threads that run pull collectors (collectors may block on sockets).
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Where to answer runtime control (`jobs`, `pause`, ...) when samples go to a remote
    /// server; with the embedded server, its own address answers them.
    pub control: Option<SocketAddr>,
    /// Where jobs run unless their plugin or they say otherwise: `"none"` (in this process)
    /// or `"process"` (a worker each). With `"process"`, the host itself maps no plugin
    /// that no in-process job or helper needs.
    #[serde(default)]
    pub isolation: Isolation,
    /// An isolated job's worker: its address space, in MiB.
    #[serde(default = "default_worker_memory_mib")]
    pub worker_memory_mib: u64,
    /// An isolated job's worker: the most threads it may have.
    #[serde(default = "default_worker_threads")]
    pub worker_threads: u64,
    /// minisign public keys (a `minisign.pub` file's second line): when set, a plugin
    /// loads only with a signature by one of them beside it (`name.so.minisig`).
    #[serde(default)]
    pub trusted_keys: Vec<String>,
    /// A file of such keys (one or more `minisign.pub` files), relative to this file.
    pub trusted_keys_file: Option<PathBuf>,
    /// The keys above, read and checked when the config is.
    #[serde(skip)]
    pub trust: Trust,
}

impl HostSection {
    /// What an isolated job's worker may use.
    pub fn limits(&self) -> Limits {
        Limits {
            memory: self.worker_memory_mib.saturating_mul(1 << 20),
            threads: self.worker_threads,
        }
    }
}

fn default_worker_memory_mib() -> u64 {
    1024
}
fn default_worker_threads() -> u64 {
    64
}

impl Default for HostSection {
    fn default() -> Self {
        HostSection {
            plugins: default_plugins(),
            interval: default_interval(),
            timeout: default_timeout(),
            workers: default_workers(),
            control: None,
            isolation: Isolation::None,
            worker_memory_mib: default_worker_memory_mib(),
            worker_threads: default_worker_threads(),
            trusted_keys: Vec::new(),
            trusted_keys_file: None,
            trust: Trust::default(),
        }
    }
}

fn default_plugins() -> PathBuf {
    "plugins".into()
}
fn default_interval() -> Duration {
    Duration::from_secs(5)
}
fn default_timeout() -> Duration {
    Duration::from_secs(3)
}
fn default_workers() -> usize {
    16
}

/// One `[[job]]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Samples land under this name (`memcached.local.curr_items`).
    pub name: String,
    /// The name the plugin declares.
    pub plugin: String,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// `"process"`: run in a worker process of its own (see `[host] isolation`).
    pub isolation: Option<Isolation>,
    /// Handed to the plugin, which parses it into its own type.
    #[serde(default)]
    pub options: toml::Table,
}

/// One `[[helper]]`: a plugin that decides which jobs exist.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HelperConfig {
    /// Its name (default: the plugin's name).
    pub name: Option<String>,
    pub plugin: String,
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    #[serde(default)]
    pub options: toml::Table,
}

impl HelperConfig {
    /// What it is called: its `name`, or its plugin's.
    pub fn called(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.plugin)
    }
}

/// The prefix of the variables the host sets for plugins; `[vars]` may not use it.
pub const HOST_VARS: &str = "spud.";

/// A config that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}", .problems.join("\n"))]
pub struct ConfigError {
    /// One line per problem, each naming the file and, where known, the line.
    pub problems: Vec<String>,
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            problems: vec![format!("{}: {e}", path.display())],
        })?;
        Config::parse(&text, path)
    }

    /// Parses and checks `text`, naming `path` in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError {
            problems: vec![spud_server::toml_error::describe(&e, text, path)],
        })?;
        let mut problems = config.problems(text, path);
        let keys_file = config.host.trusted_keys_file.as_ref();
        match Trust::new(
            &config.host.trusted_keys,
            keys_file.map(|f| relative_to(path, f)).as_deref(),
        ) {
            Ok(trust) => config.host.trust = trust,
            Err(e) => problems.push(format!(
                "{}: [host] {e}",
                locate(text, "trusted_keys", path)
            )),
        }
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    fn problems(&self, text: &str, path: &Path) -> Vec<String> {
        let at = |needle: &str| locate(text, needle, path);
        let mut problems = Vec::new();
        if self.server.embedded.listen.is_some() && self.server.remote.is_some() {
            problems.push(format!(
                "{}: [server] has both `listen` and `remote`; choose one",
                at("remote")
            ));
        }
        if let Some(name) = self.vars.keys().find(|k| k.starts_with(HOST_VARS)) {
            problems.push(format!(
                "{}: [vars] {name}: names starting with {HOST_VARS:?} are the host's own",
                at(name)
            ));
        }
        if self.server.remote.is_some() && self.server.embedded.no_auth {
            problems.push(format!(
                "{}: [server] `no_auth` is for the embedded server, not a remote one",
                at("remote")
            ));
        }
        if self.server.embedded.tls_cert.is_some() != self.server.embedded.tls_key.is_some() {
            problems.push(format!(
                "{}: [server] `tls_cert` and `tls_key` go together",
                at("tls_")
            ));
        }
        if self.server.remote.is_some() && self.server.embedded.tls_client_ca.is_some() {
            problems.push(format!(
                "{}: [server] `tls_client_ca` is for the embedded server, not a remote one",
                at("tls_client_ca")
            ));
        }
        if self.server.remote.is_some() && self.archive.dir.is_some() {
            problems.push(format!(
                "{}: [archive] is the embedded server's; with a remote server, give --archive DIR to that spud-server",
                at("[archive]")
            ));
        }
        if self.server.remote.is_some() && self.history.promql.is_some() {
            problems.push(format!(
                "{}: [history] is the embedded server's; with a remote server, give --promql URL to that spud-server",
                at("[history]")
            ));
        }
        if let Some(url) = &self.history.promql {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                problems.push(format!(
                    "{}: promql = {url:?}: give the query API's http:// or https:// URL",
                    at("[history]")
                ));
            }
        }
        if self.archive.rrdcached.is_some() && self.archive.dir.is_none() {
            problems.push(format!(
                "{}: rrdcached takes the archive's updates, so it needs dir = the archive's folder",
                at("[archive]")
            ));
        }
        if self.server.remote.is_some() && self.munin.listen.is_some() {
            problems.push(format!(
                "{}: [munin] serves the embedded server's keys; with a remote server, give --munin to that spud-server",
                at("[munin]")
            ));
        }
        if self.server.remote.is_some() && self.server.embedded.rules.is_some() {
            problems.push(format!(
                "{}: [server] `rules` are evaluated by the embedded server; give them to the remote spud-server (--rules FILE)",
                at("rules")
            ));
        }
        if self.server.remote.is_none() && self.server.tls_ca.is_some() {
            problems.push(format!(
                "{}: [server] `tls_ca` is for speaking TLS to a `remote` server",
                at("tls_ca")
            ));
        }
        if self.server.remote.is_none() && self.server.token_file.is_some() {
            problems.push(format!(
                "{}: [server] `token_file` is what the host presents to a `remote` server; \
                 without `remote` it is unused",
                at("token_file")
            ));
        }
        if let Err(e) = spud_server::faces::metrics::Rules::new(&self.metrics_rules()) {
            problems.push(format!("{}: {e}", at("[metrics")));
        }
        for (i, output) in self.outputs.iter().enumerate() {
            let settings = output.settings();
            let base = path.parent().unwrap_or(Path::new("."));
            if let Some(e) = settings.problem(base) {
                problems.push(format!(
                    "{}: [[output]] {}: {e}",
                    at(settings.locator()),
                    output.name(i)
                ));
            }
        }
        if self.server.remote.is_none() && self.server.spool.is_some() {
            problems.push(format!(
                "{}: [server] `spool` keeps samples for a `remote` server; outputs take a `spool` of their own",
                at("spool")
            ));
        }
        // One destination per spool: its records are taken by one sender.
        let mut spools: Vec<(&Path, String)> = Vec::new();
        let named = self
            .server
            .spool
            .as_deref()
            .map(|p| (p, "[server] remote".to_string()))
            .into_iter()
            .chain(self.outputs.iter().enumerate().filter_map(|(i, o)| {
                Some((o.settings().spool()?, format!("[[output]] {}", o.name(i))))
            }));
        for (spool, owner) in named {
            if let Some((_, first)) = spools.iter().find(|(p, _)| *p == spool) {
                problems.push(format!(
                    "{}: {owner} and {first} both spool to {}; give each its own folder",
                    at(&spool.display().to_string()),
                    spool.display()
                ));
            }
            spools.push((spool, owner));
        }
        if self.host.workers == 0 {
            problems.push(format!(
                "{}: [host] workers must be at least 1",
                at("workers")
            ));
        }
        let mut seen = HashMap::new();
        for job in &self.jobs {
            // Located only when there is something to say: finding a line costs a scan.
            let where_ = || at(&format!("\"{}\"", job.name));
            if !spud_plugin_api::is_valid_key(&job.name) {
                problems.push(format!(
                    "{}: job name {:?} must be made of letters, digits and - _ . :",
                    where_(),
                    job.name
                ));
            }
            if seen.insert(job.name.as_str(), ()).is_some() {
                problems.push(format!("{}: job {:?} is defined twice", where_(), job.name));
            }
            if job.interval.is_some_and(|d| d.is_zero()) {
                problems.push(format!(
                    "{}: job {:?}: interval must be more than 0",
                    where_(),
                    job.name
                ));
            }
            if job.timeout.is_some_and(|d| d.is_zero()) {
                problems.push(format!(
                    "{}: job {:?}: timeout must be more than 0",
                    where_(),
                    job.name
                ));
            }
        }
        if self.host.interval.is_zero() {
            problems.push(format!(
                "{}: [host] interval must be more than 0",
                at("interval")
            ));
        }
        if self.host.timeout.is_zero() {
            problems.push(format!(
                "{}: [host] timeout must be more than 0",
                at("timeout")
            ));
        }
        problems
    }

    /// The jobs, with the host's defaults filled in.
    pub fn job_specs(&self) -> Vec<JobSpec> {
        self.jobs
            .iter()
            .map(|j| JobSpec {
                name: j.name.clone(),
                plugin: j.plugin.clone(),
                interval: j.interval.unwrap_or(self.host.interval),
                timeout: j.timeout.unwrap_or(self.host.timeout),
                options: j.options.clone(),
                isolation: self.isolation(j.isolation, &j.plugin),
            })
            .collect()
    }

    /// Where a job of `plugin` runs: the job's own setting, else its plugin's, else the host's.
    pub fn isolation(&self, job: Option<Isolation>, plugin: &str) -> Isolation {
        job.or_else(|| self.plugins.get(plugin).and_then(|p| p.isolation))
            .unwrap_or(self.host.isolation)
    }

    /// Whether plugins are read by workers, the host mapping none it does not need.
    pub fn probe(&self) -> Probe {
        match self.host.isolation {
            Isolation::Process => Probe::Worker,
            Isolation::None => Probe::InProcess,
        }
    }

    /// `[vars]` as text, the way plugins read them, and what the host tells plugins under
    /// names of its own: `spud.tokens`, the tokens file receivers check (`[server] tokens`).
    pub fn vars_as_text(&self, config_path: &Path) -> HashMap<String, String> {
        let mut vars: HashMap<String, String> = self
            .vars
            .iter()
            .map(|(k, v)| {
                let text = match v {
                    toml::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (k.clone(), text)
            })
            .collect();
        if let Some(tokens) = &self.server.embedded.tokens {
            let path = relative_to(config_path, tokens);
            vars.insert(HOST_VARS.to_string() + "tokens", path.display().to_string());
        }
        vars
    }

    /// Where the plugins are: `[host] plugins`, relative to the config file's folder.
    pub fn plugins_dir(&self, config_path: &Path) -> PathBuf {
        relative_to(config_path, &self.host.plugins)
    }
}

/// `p` relative to the folder holding `config_path`, unless absolute.
/// A path of the config, taken from the config file's folder; a secret's `file:` and
/// `env:` references are kept as such (see `spud_access::anchor_path`).
pub fn relative_to(config_path: &Path, p: &Path) -> PathBuf {
    let base = config_path.parent().unwrap_or(Path::new("."));
    spud_access::anchor_path(base, p)
}

/// `file:line` of the first occurrence of `needle`, or just the file.
fn locate(text: &str, needle: &str, path: &Path) -> String {
    match text.find(needle) {
        Some(i) => format!("{}:{}", path.display(), text[..i].matches('\n').count() + 1),
        None => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests;
