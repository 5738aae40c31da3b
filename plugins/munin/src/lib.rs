//! Runs munin plugins unchanged, as munin-node runs them: one plugin (`plugin = "PATH"`) or
//! every executable in a directory (`dir = "/etc/munin/plugins"`, wildcard plugins by their
//! symlink names, `if_eth0`), with `plugin-conf.d` settings (`conf`: `env.*`, `user` and
//! `group` when run as root — `nobody` otherwise, as munin-node does — `timeout`, `command`)
//! and the environment munin-node gives them (`MUNIN_LIBDIR`, `MUNIN_PLUGSTATE`,
//! `MUNIN_STATEFILE`, `MUNIN_CAP_MULTIGRAPH`, `MUNIN_CAP_DIRTYCONFIG`, `LC_ALL=C`).
//!
//! Keys: `<job>.<graph>.<field>`, the graph being the plugin's name or its `multigraph`
//! name, fields cleaned as munin cleans them. GAUGE values as they are; DERIVE, COUNTER and
//! ABSOLUTE as the per-second rate munin would graph (counter wrap handled; a DERIVE with a
//! `min` drops a reset, as rrdtool does), the raw value beside it as `<field>.raw`. The
//! graph's metadata, read with `config` (cached until the plugin file changes), as keys:
//! `<graph>.graph_title`, `graph_vlabel`, `graph_category`, `graph_info`, and per field
//! `<field>.label`, `type`, `min`, `max`, `warning`, `critical`, `cdef`, `info`.
//!
//! Beside them: `<job>.plugins` (how many), `<job>.failed` (how many failed this round) and
//! `<job>.round_ms` (how long the round took).
//!
//! The plugins of a `dir` run concurrently (at most `parallel` at once), each within the
//! job's deadline: a hung one is killed with its process group and never delays the
//! others. A plugin's stderr goes to the log under the job's name; every other problem (not
//! executable, exits non-zero, prints what is not munin, gone) is one log line, said again
//! only when it changes.
//!
//! ```toml
//! [[job]]
//! name = "munin"
//! plugin = "munin"
//! interval = "10s"
//! options = { dir = "/etc/munin/plugins", conf = "/etc/munin/plugin-conf.d" }
//! ```

pub mod conf;
pub mod output;
mod user;

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spud_plugin_api::kit::run::{run, Ran};
use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::{export_plugin, key_safe, Collector, Error, Host, Job, Plugin, Pull};

use conf::{Conf, Settings};
use output::Parsed;

/// The munin collector.
pub struct Munin;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    /// One plugin.
    plugin: Option<PathBuf>,
    /// Every executable in this directory.
    dir: Option<PathBuf>,
    /// munin's `plugin-conf.d`.
    conf: Option<PathBuf>,
    /// `MUNIN_PLUGSTATE` lives under it (default: the system's temporary directory).
    state_dir: Option<PathBuf>,
    /// With `dir`: run `autoconf` first and leave out plugins that do not answer `yes`.
    #[serde(default)]
    autoconf: bool,
    /// Plugins run at once.
    parallel: Option<usize>,
}

struct Gatherer {
    source: Source,
    conf: Option<PathBuf>,
    state_dir: PathBuf,
    autoconf: bool,
    parallel: usize,
    timeout: Duration,
    host: Host,
    plugins: HashMap<String, Known>,
    /// The last problem said per plugin (or about the directory or plugin-conf.d, under
    /// names no plugin file can have), said once.
    said: HashMap<String, String>,
}

/// Where problems of the directory and of plugin-conf.d are kept in `said`.
const DIR: &str = "/dir";
const CONF: &str = "/conf";

enum Source {
    One(PathBuf),
    Dir(PathBuf),
}

/// What is kept of a plugin between rounds.
#[derive(Default)]
struct Known {
    /// The plugin file as its `config` was read (modified, length, inode).
    stamp: Option<(SystemTime, u64, u64)>,
    config: Option<Parsed>,
    autoconf: Option<bool>,
    /// Per `graph.field`: the previous raw value and its time, for rates.
    previous: HashMap<String, (f64, f64)>,
}

impl Plugin for Munin {
    const NAME: &'static str = "munin";
    const DESCRIPTION: &'static str = "Runs munin plugins as munin-node does";

    fn new_job(job: &Job, host: Host) -> Result<Collector, Error> {
        let options: Options = job.options()?;
        let source = match (options.plugin, options.dir) {
            (Some(p), None) => Source::One(p),
            (None, Some(d)) => Source::Dir(d),
            _ => return Err("options: give either plugin = \"PATH\" or dir = \"DIR\"".into()),
        };
        if let Some(conf) = &options.conf {
            Conf::load(conf).map_err(|e| format!("option conf: {e}"))?;
        }
        let state_dir = options.state_dir.unwrap_or_else(|| {
            std::env::temp_dir()
                .join("spud-munin")
                .join(key_safe(&job.name))
        });
        Ok(Collector::pull(Gatherer {
            source,
            conf: options.conf,
            state_dir,
            autoconf: options.autoconf,
            parallel: options.parallel.unwrap_or(8).max(1),
            // Leave the host's own deadline a little room to see the job finish.
            timeout: job.timeout.mul_f64(0.9),
            host,
            plugins: HashMap::new(),
            said: HashMap::new(),
        }))
    }
}

/// One plugin's run this round, done on a worker thread.
struct Round {
    name: String,
    config: Option<Parsed>,
    values: Option<Parsed>,
    autoconf: Option<bool>,
    stamp: Option<(SystemTime, u64, u64)>,
    problem: Option<String>,
    stderr: Vec<String>,
}

/// What a worker needs to run one plugin.
struct Task {
    name: String,
    path: PathBuf,
    settings: Settings,
    stamp: Option<(SystemTime, u64, u64)>,
    /// Read `config` (first time, or the file changed).
    configure: bool,
    autoconf: bool,
}

impl Gatherer {
    /// The plugins to run: (name, path), with the problems of those left out.
    fn list(&mut self) -> Vec<(String, PathBuf)> {
        let paths: Vec<PathBuf> = match &self.source {
            Source::One(p) => vec![p.clone()],
            Source::Dir(d) => match std::fs::read_dir(d) {
                Ok(entries) => {
                    let mut paths: Vec<PathBuf> =
                        entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
                    paths.sort();
                    paths
                }
                Err(e) => {
                    self.say(DIR, Some(format!("cannot read {}: {e}", d.display())));
                    return Vec::new();
                }
            },
        };
        let mut list = Vec::new();
        for path in paths {
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("")
                .to_string();
            if name.starts_with('.') || name.ends_with('~') {
                continue;
            }
            match std::fs::metadata(&path) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                    list.push((name, path))
                }
                Ok(m) if m.is_file() => self.say(
                    &name,
                    Some(format!("{} is not executable: left out", path.display())),
                ),
                Ok(_) => {}
                Err(e) => self.say(&name, Some(format!("{}: {e}", path.display()))),
            }
        }
        let present: Vec<&String> = list.iter().map(|(n, _)| n).collect();
        let gone: Vec<String> = self
            .plugins
            .keys()
            .filter(|n| !present.contains(n))
            .cloned()
            .collect();
        for name in gone {
            self.plugins.remove(&name);
            self.host.info(format_args!("plugin {name} is gone"));
            self.said.remove(&name);
        }
        list
    }

    /// Logs `problem` for `name` if it differs from the last one said; None clears it.
    fn say(&mut self, name: &str, problem: Option<String>) {
        match problem {
            Some(p) => {
                if self.said.get(name) != Some(&p) {
                    self.host.warn(&p);
                    self.said.insert(name.to_string(), p);
                }
            }
            None => {
                if self.said.remove(name).is_some() && !name.contains('/') {
                    self.host.info(format_args!("plugin {name} works again"));
                }
            }
        }
    }
}

/// The environment munin-node gives a plugin; `MUNIN_PLUGSTATE` is per user.
fn environment(state_dir: &Path, name: &str, user: &str) -> (PathBuf, Vec<(String, String)>) {
    let plugstate = state_dir.join(user);
    let env = vec![
        ("MUNIN_LIBDIR".into(), "/usr/share/munin".into()),
        ("MUNIN_PLUGSTATE".into(), plugstate.display().to_string()),
        (
            "MUNIN_STATEFILE".into(),
            plugstate.join(format!("{name}-spud")).display().to_string(),
        ),
        ("MUNIN_CAP_MULTIGRAPH".into(), "1".into()),
        ("MUNIN_CAP_DIRTYCONFIG".into(), "1".into()),
        ("MUNIN_MASTER_IP".into(), "127.0.0.1".into()),
        ("LC_ALL".into(), "C".into()),
    ];
    (plugstate, env)
}

/// Runs `task` (autoconf, config, fetch as needed) within `timeout`.
fn run_task(task: &Task, state_dir: &Path, timeout: Duration) -> Round {
    // plugin-conf.d's `timeout` may shorten the job's deadline for this plugin.
    let timeout = task
        .settings
        .timeout
        .map_or(timeout, |s| timeout.min(Duration::from_secs(s)));
    let deadline = Instant::now() + timeout;
    let mut round = Round {
        name: task.name.clone(),
        config: None,
        values: None,
        autoconf: None,
        stamp: task.stamp,
        problem: None,
        stderr: Vec::new(),
    };
    let identity = user::identity(&task.settings);
    let user_name = identity
        .as_ref()
        .map_or_else(user::current_name, |i| i.name.clone());
    let (plugstate, env) = environment(state_dir, &task.name, &user_name);
    match &identity {
        Some(i) => user::prepare_state_dir(&plugstate, i),
        None => {
            let _ = std::fs::create_dir_all(&plugstate);
        }
    }
    let call = |argument: Option<&str>, round: &mut Round| -> Option<Ran> {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut command = match &task.settings.command {
            Some(line) => {
                let words: Vec<String> = line
                    .split_whitespace()
                    .map(|w| w.replace("%c", &task.path.display().to_string()))
                    .collect();
                let mut c = Command::new(&words[0]);
                c.args(&words[1..]);
                c
            }
            None => Command::new(&task.path),
        };
        command
            .args(argument)
            .envs(env.iter().cloned())
            .envs(&task.settings.env);
        if let Some(i) = &identity {
            command
                .uid(i.uid)
                .gid(i.gid)
                .env("USER", &i.name)
                .env("HOME", "/");
        }
        let what = argument.unwrap_or("fetch");
        match run(&mut command, left) {
            Err(e) => {
                round.problem = Some(format!(
                    "plugin {}: cannot run {}: {e}",
                    task.name,
                    task.path.display()
                ));
                None
            }
            Ok(ran) => {
                round.stderr.extend(
                    ran.stderr
                        .lines()
                        .take(5)
                        .map(|l| format!("plugin {}: {l}", task.name)),
                );
                if ran.timed_out {
                    round.problem = Some(format!(
                        "plugin {} {what}: still running after {:?}: killed with its process group",
                        task.name, timeout
                    ));
                    None
                } else if ran.code != Some(0) {
                    let code = ran
                        .code
                        .map_or("a signal".to_string(), |c| format!("status {c}"));
                    round.problem =
                        Some(format!("plugin {} {what}: exited with {code}", task.name));
                    None
                } else {
                    Some(ran)
                }
            }
        }
    };
    if task.autoconf {
        let answer = call(Some("autoconf"), &mut round);
        let yes = answer.is_some_and(|r| r.stdout.trim_start().starts_with("yes"));
        round.autoconf = Some(yes);
        if !yes {
            return round;
        }
    }
    if task.configure {
        let Some(ran) = call(Some("config"), &mut round) else {
            return round;
        };
        let parsed = output::parse(&task.name, &ran.stdout);
        // With dirtyconfig, `config` may carry this round's values: no fetch needed.
        if parsed.has_values() {
            round.values = Some(parsed.clone());
        }
        round.config = Some(parsed);
        if round.values.is_some() {
            return round;
        }
    }
    if let Some(ran) = call(None, &mut round) {
        round.values = Some(output::parse(&task.name, &ran.stdout));
    }
    round
}

fn stamp_of(path: &Path) -> Option<(SystemTime, u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len(), m.ino()))
}

fn now_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The per-second rate munin would graph for a field of `kind` (GAUGE: the value itself).
fn rate(
    kind: &str,
    previous: Option<(f64, f64)>,
    time: f64,
    value: f64,
    min: Option<f64>,
    max: Option<f64>,
) -> Option<f64> {
    let r = match kind {
        "DERIVE" | "COUNTER" | "ABSOLUTE" => {
            let (t0, v0) = previous?;
            let dt = time - t0;
            if dt <= 0.0 {
                return None;
            }
            match kind {
                "ABSOLUTE" => value / dt,
                "COUNTER" => {
                    let mut d = value - v0;
                    if d < 0.0 {
                        // A wrap, at 32 bits if the counter was below them, else at 64.
                        d += if v0 < 4_294_967_296.0 {
                            4_294_967_296.0
                        } else {
                            18_446_744_073_709_551_616.0
                        };
                    }
                    d / dt
                }
                _ => (value - v0) / dt,
            }
        }
        _ => return Some(value),
    };
    let within = min.is_none_or(|m| r >= m) && max.is_none_or(|m| r <= m);
    within.then_some(r)
}

impl Gatherer {
    /// Stores what one plugin's run gave, and says its problem if it is new.
    fn store(&mut self, round: Round) {
        for line in &round.stderr {
            self.host.warn(line);
        }
        let known = self.plugins.entry(round.name.clone()).or_default();
        if let Some(yes) = round.autoconf {
            known.autoconf = Some(yes);
            if !yes {
                self.host.info(format_args!(
                    "plugin {}: autoconf does not say yes: left out",
                    round.name
                ));
                return;
            }
        }
        if let Some(config) = &round.config {
            known.config = Some(config.clone());
            known.stamp = round.stamp;
            self.store_config(config);
        }
        let mut problem = round.problem.clone();
        if let Some(values) = &round.values {
            if !values.bad.is_empty() && problem.is_none() {
                problem = Some(format!(
                    "plugin {}: {} lines are not munin's, left out, such as {:?}",
                    round.name,
                    values.bad.len(),
                    values.bad[0]
                ));
            }
            self.store_values(&round.name, values);
        }
        self.say(&round.name, problem);
    }

    /// Stores a config's metadata as keys.
    fn store_config(&self, config: &Parsed) {
        const GRAPH: &[&str] = &[
            "graph_title",
            "graph_vlabel",
            "graph_category",
            "graph_info",
        ];
        const FIELD: &[&str] = &[
            "label", "type", "min", "max", "warning", "critical", "cdef", "info",
        ];
        for graph in &config.graphs {
            let g = key_safe(&graph.name);
            for (name, value) in &graph.attributes {
                if GRAPH.contains(&name.as_str()) {
                    self.host.set(&format!("{g}.{name}"), value);
                }
            }
            for field in &graph.fields {
                for (name, value) in &field.attributes {
                    if FIELD.contains(&name.as_str()) {
                        self.host.set(&format!("{g}.{}.{name}", field.name), value);
                    }
                }
            }
        }
    }

    fn store_values(&mut self, name: &str, values: &Parsed) {
        let now = now_seconds();
        let Some(known) = self.plugins.get_mut(name) else {
            return;
        };
        for graph in &values.graphs {
            let g = key_safe(&graph.name);
            let configured = known
                .config
                .as_ref()
                .and_then(|c| c.graphs.iter().find(|c| c.name == graph.name));
            for field in &graph.fields {
                let Some(value) = field.value else { continue };
                let key = format!("{g}.{}", field.name);
                let Some(number) = value.number else {
                    self.host.set(&key, "U");
                    continue;
                };
                let attribute = |a: &str| {
                    configured
                        .and_then(|c| c.fields.iter().find(|f| f.name == field.name))
                        .and_then(|f| f.attribute(a))
                        .or_else(|| field.attribute(a))
                };
                let kind = attribute("type").unwrap_or("GAUGE").to_ascii_uppercase();
                let bound = |a: &str| attribute(a).and_then(|v| v.parse::<f64>().ok());
                let time = value.time.map_or(now, |t| t as f64);
                let set = |key: &str, v: f64| match value.time {
                    Some(t) => self.host.set_at(key, v, t),
                    None => self.host.set(key, v),
                };
                if kind == "GAUGE" {
                    set(&key, number);
                    continue;
                }
                set(&format!("{key}.raw"), number);
                let previous = known.previous.insert(key.clone(), (time, number));
                if let Some(r) = rate(&kind, previous, time, number, bound("min"), bound("max")) {
                    set(&key, r);
                }
            }
        }
    }
}

impl Pull for Gatherer {
    fn collect(&mut self) -> Result<(), Error> {
        let started = Instant::now();
        let conf = match &self.conf {
            Some(dir) => match Conf::load(dir) {
                Ok(c) => {
                    self.say(CONF, None);
                    c
                }
                Err(e) => {
                    self.say(
                        CONF,
                        Some(format!("plugin-conf.d: {e}; running without it")),
                    );
                    Conf::default()
                }
            },
            None => Conf::default(),
        };
        let list = self.list();
        let tasks: Vec<Task> = list
            .into_iter()
            .filter_map(|(name, path)| {
                let known = self.plugins.entry(name.clone()).or_default();
                if known.autoconf == Some(false) {
                    return None;
                }
                let stamp = stamp_of(&path);
                Some(Task {
                    configure: known.config.is_none() || known.stamp != stamp,
                    autoconf: self.autoconf
                        && matches!(self.source, Source::Dir(_))
                        && known.autoconf.is_none(),
                    settings: conf.for_plugin(&name),
                    name,
                    path,
                    stamp,
                })
            })
            .collect();
        // Workers run the plugins; this thread stores each one's result as it comes, so a
        // slow plugin delays nobody's values but its own.
        let timeout = self.timeout;
        let parallel = self.parallel.min(tasks.len());
        let state_dir = self.state_dir.clone();
        let next = AtomicUsize::new(0);
        let mut failed = 0;
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel::<Round>();
            for _ in 0..parallel {
                let (tx, tasks, next, state_dir) = (tx.clone(), &tasks, &next, &state_dir);
                scope.spawn(move || loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(task) = tasks.get(i) else { break };
                    if tx.send(run_task(task, state_dir, timeout)).is_err() {
                        break;
                    }
                });
            }
            drop(tx);
            for round in rx {
                failed += usize::from(round.problem.is_some());
                self.store(round);
            }
        });
        self.host.set("plugins", self.plugins.len());
        self.host.set("failed", failed);
        self.host.set("round_ms", started.elapsed().as_millis());
        Ok(())
    }
}

export_plugin!(Munin);

#[cfg(test)]
mod tests {
    use super::rate;

    #[test]
    fn rates_as_rrdtool_makes_them() {
        assert_eq!(rate("GAUGE", None, 10.0, 5.0, None, None), Some(5.0));
        assert_eq!(rate("DERIVE", None, 10.0, 5.0, None, None), None);
        assert_eq!(
            rate("DERIVE", Some((0.0, 100.0)), 10.0, 150.0, Some(0.0), None),
            Some(5.0)
        );
        // A reset: dropped when min is 0, a negative rate otherwise.
        assert_eq!(
            rate("DERIVE", Some((0.0, 100.0)), 10.0, 50.0, Some(0.0), None),
            None
        );
        assert_eq!(
            rate("DERIVE", Some((0.0, 100.0)), 10.0, 50.0, None, None),
            Some(-5.0)
        );
        // A 32-bit wrap.
        assert_eq!(
            rate(
                "COUNTER",
                Some((0.0, 4_294_967_290.0)),
                2.0,
                4.0,
                None,
                None
            ),
            Some(5.0)
        );
        assert_eq!(
            rate("COUNTER", Some((0.0, 1e6)), 1.0, 0.0, None, Some(1e9)),
            None
        );
        assert_eq!(
            rate("ABSOLUTE", Some((0.0, 7.0)), 4.0, 20.0, None, None),
            Some(5.0)
        );
        assert_eq!(rate("DERIVE", Some((5.0, 1.0)), 5.0, 2.0, None, None), None);
    }
}
