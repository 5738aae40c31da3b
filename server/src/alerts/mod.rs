//! Alerting inside the stat server: rules over keys' stored history, evaluated as sets
//! arrive, with states kept as keys (`alert.<rule>.<key>`) and notifications sent to
//! Alertmanager, webhooks or commands. Works the same embedded in `spud-host` and in
//! `spud-server`.
//!
//! - [`expr`]: the expression language; [`rules`]: the rules file;
//! - [`instance`]: one instance's state machine; [`engine`]: every instance, driven by a
//!   [`engine::Source`] and a clock;
//! - [`notify`]: receivers; [`replay`]: `spud rules test`;
//! - this file: the server's side. A set to a key some rule matches queues that key (once,
//!   however many sets arrive before it is looked at) for the `alerts` thread, which
//!   evaluates it, writes state keys and hands notices to the receivers. The thread also
//!   looks at what time alone changes, once a second, and reloads the rules file when it
//!   changes.

pub mod engine;
pub mod expr;
pub mod glob;
pub mod instance;
pub mod notify;
pub mod replay;
pub mod rules;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver as Inbox, RecvTimeoutError, Sender};
use parking_lot::{Mutex, RwLock};

use crate::store::keyspace::{EntryMut, Quiet};
use crate::store::server::WeakServer;
use crate::store::watcher::Watcher;
use crate::Server;
use engine::{Change, Engine, Matcher, Row, Source};
use expr::Point;
use instance::State;
use notify::Notice;
use rules::RuleSet;

/// The alerting state a server shares with its `alerts` thread.
pub struct Alerts {
    /// Which keys some rule watches; swapped on reload.
    matcher: RwLock<Arc<Matcher>>,
    /// Bumped with each new matcher: a key's cached "watched" is valid for one generation.
    generation: AtomicU32,
    /// Keys set since they were last evaluated.
    dirty: Sender<Box<str>>,
    engine: Mutex<Engine>,
    receivers: Mutex<Vec<notify::Handle>>,
    path: Option<PathBuf>,
    /// The rules file's problems at the last (refused) reload.
    problems: Mutex<Vec<String>>,
}

/// Receivers' figures, as listed by `alerts` and `/api/alerts`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReceiverFigures {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub queued: u64,
    pub down: bool,
}

impl Alerts {
    /// Loads the rules at `path` and starts alerting on `server`.
    pub fn start_file(server: &Server, path: &Path) -> Result<Arc<Alerts>, rules::RulesError> {
        let set = RuleSet::load(path)?;
        Ok(Alerts::start(server, set, Some(path.to_path_buf())))
    }

    /// Starts alerting on `server` with `set`; with `path`, reloads it when it changes.
    pub fn start(server: &Server, set: RuleSet, path: Option<PathBuf>) -> Arc<Alerts> {
        let (dirty, inbox) = crossbeam_channel::unbounded();
        let engine = Engine::new(set.rules);
        let alerts = Arc::new(Alerts {
            matcher: RwLock::new(engine.matcher()),
            generation: AtomicU32::new(1),
            dirty,
            engine: Mutex::new(engine),
            receivers: Mutex::new(
                set.receivers
                    .into_iter()
                    .map(notify::Handle::start)
                    .collect(),
            ),
            path,
            problems: Mutex::new(Vec::new()),
        });
        tracing::info!(
            "alerting: {} rules, {} receivers{}",
            alerts.engine.lock().rules().len(),
            alerts.receivers.lock().len(),
            alerts
                .path
                .as_ref()
                .map_or(String::new(), |p| format!(" from {}", p.display()))
        );
        if !server.attach_watcher(Arc::clone(&alerts) as Arc<dyn Watcher>) {
            tracing::error!("alert rules were started twice on one server; the first stay");
        }
        let thread = Runner {
            alerts: Arc::clone(&alerts),
            server: server.downgrade(),
            inbox,
            file: alerts.path.as_deref().and_then(file_stamp),
            told: std::collections::HashMap::new(),
        };
        std::thread::Builder::new()
            .name("alerts".into())
            .spawn(move || thread.run())
            .expect("spawn the alerts thread");
        // Keys already stored (a snapshot, or a server that was running) are looked at once.
        alerts.queue_all(server);
        alerts
    }

    /// The alert rules evaluated on `server`, if any were started.
    pub fn of(server: &Server) -> Option<Arc<Alerts>> {
        server.watcher()?.clone().as_any().downcast().ok()
    }
}

impl Watcher for Alerts {
    /// Under the key's shard lock, on every set of `number` (None: text): queues the key
    /// if a rule watches it, it is not queued already, and the set is not one the alerts
    /// thread proved quiet (see `AlertMark::take_quiet`).
    fn note_set(&self, entry: &mut EntryMut<'_>, number: Option<f64>, taken: Option<u64>) {
        let generation = self.generation.load(Ordering::Acquire);
        let watched = (entry.alert.generation != generation)
            .then(|| self.matcher.read().is_match(entry.key()));
        let mark = &mut entry.alert;
        if let Some(watched) = watched {
            mark.set_watched(watched);
            mark.set_quiet(None);
            mark.generation = generation;
        }
        if !mark.watched() || mark.queued() {
            return;
        }
        if number.is_some_and(|n| mark.take_quiet(n, taken)) {
            return;
        }
        mark.set_queued(true);
        let _ = self.dirty.send(entry.key().into());
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn std::any::Any + Send + Sync> {
        self
    }
}

impl Alerts {
    /// Every instance not `ok`, whose key matches `pattern` if given.
    pub fn active(&self, pattern: Option<&crate::Pattern>) -> Vec<Row> {
        let mut rows = self.engine.lock().active();
        if let Some(p) = pattern {
            rows.retain(|r| p.is_match(&r.key));
        }
        rows
    }

    /// The rules in force.
    pub fn rules(&self) -> Vec<Arc<rules::Rule>> {
        self.engine.lock().rules().to_vec()
    }

    pub fn instance_count(&self) -> usize {
        self.engine.lock().instance_count()
    }

    pub fn receivers(&self) -> Vec<ReceiverFigures> {
        self.receivers
            .lock()
            .iter()
            .map(|r| ReceiverFigures {
                name: r.spec.name.clone(),
                kind: r.spec.kind_name(),
                sent: r.stats.sent.load(Ordering::Relaxed),
                failed: r.stats.failed.load(Ordering::Relaxed),
                dropped: r.stats.dropped.load(Ordering::Relaxed),
                queued: r.stats.queued.load(Ordering::Relaxed),
                down: r.stats.down.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// The rules file, if the rules came from one.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Why the rules file's last edit was refused (empty when it was taken).
    pub fn problems(&self) -> Vec<String> {
        self.problems.lock().clone()
    }

    /// Re-reads the rules file now; a bad one is refused, line by line, and the rules in
    /// force stay. Returns whether the new rules were taken.
    pub fn reload(&self, server: &Server) -> bool {
        let Some(path) = &self.path else { return false };
        let set = match RuleSet::load(path) {
            Ok(set) => set,
            Err(e) => {
                for problem in &e.problems {
                    tracing::error!("{problem}");
                }
                tracing::error!("{}: refused; the running rules stay", path.display());
                *self.problems.lock() = e.problems;
                return false;
            }
        };
        self.problems.lock().clear();
        warn_of_narrowed_keys(server, path, &set.rules);
        let now = crate::unix_now();
        let mut changes = Vec::new();
        let (rules, matcher) = {
            let mut engine = self.engine.lock();
            engine.replace_rules(set.rules, now, &mut changes);
            (engine.rules().len(), engine.matcher())
        };
        *self.matcher.write() = matcher;
        self.generation.fetch_add(1, Ordering::AcqRel);
        let fresh = self.replace_receivers(set.receivers);
        apply(server, &self.receivers.lock(), &changes);
        // New receivers hear of what is firing now.
        let firing: Vec<Notice> = self
            .active(None)
            .iter()
            .filter(|r| r.state.is_firing())
            .map(notice_of_row)
            .collect();
        for receiver in self
            .receivers
            .lock()
            .iter()
            .filter(|r| fresh.contains(&r.spec.name))
        {
            for n in firing.iter().filter(|n| receiver.wants(n)) {
                receiver.send(n.clone());
            }
        }
        tracing::info!("{}: {rules} rules in force", path.display());
        self.queue_all(server);
        true
    }

    /// Receivers whose settings are unchanged keep running (and what they hold); the
    /// others are replaced. Returns the names of the new ones.
    fn replace_receivers(&self, specs: Vec<rules::Receiver>) -> Vec<String> {
        let mut running = self.receivers.lock();
        let mut old: Vec<notify::Handle> = std::mem::take(&mut *running);
        let mut fresh = Vec::new();
        for spec in specs {
            match old.iter().position(|h| h.spec == spec) {
                Some(at) => running.push(old.swap_remove(at)),
                None => {
                    fresh.push(spec.name.clone());
                    running.push(notify::Handle::start(spec));
                }
            }
        }
        fresh
    }

    /// Queues every stored key some rule watches.
    fn queue_all(&self, server: &Server) {
        let matcher = self.matcher.read().clone();
        let mut keys = Vec::new();
        server.keyspace().for_each(|e| {
            if matcher.is_match(e.key()) {
                keys.push(e.key().into());
            }
        });
        for key in keys {
            let _ = self.dirty.send(key);
        }
    }
}

/// `keys` were once the protocol's pattern, unanchored (`bx.load.1` matched `bx.load.15`)
/// with `*` crossing dots. A rule that matched stored keys that way and no longer does is
/// said in one line, so an old rules file never changes what fires unseen.
fn warn_of_narrowed_keys(server: &Server, path: &Path, rules: &[rules::Rule]) {
    let old: Vec<Option<crate::Pattern>> = rules
        .iter()
        .map(|r| crate::Pattern::new(&r.keys_text).ok())
        .collect();
    let mut lost: Vec<(usize, Option<String>)> = vec![(0, None); rules.len()];
    server.keyspace().for_each(|e| {
        let key = e.key();
        if key.starts_with("alert.") {
            return;
        }
        for (i, rule) in rules.iter().enumerate() {
            if old[i].as_ref().is_some_and(|p| p.is_match(key)) && !rule.keys.is_match(key) {
                lost[i].0 += 1;
                lost[i].1.get_or_insert_with(|| key.to_string());
            }
        }
    });
    for (rule, (n, example)) in rules.iter().zip(lost) {
        if let Some(example) = example {
            tracing::warn!(
                "{}: [[alert]] {}: keys {:?} matches whole keys, `*` one part and `**` any: it no longer matches {example:?} and {} other stored key(s) that the old unanchored pattern did",
                path.display(),
                rule.name,
                rule.keys_text,
                n - 1
            );
        }
    }
}

/// The `alerts` thread.
struct Runner {
    alerts: Arc<Alerts>,
    server: WeakServer,
    inbox: Inbox<Box<str>>,
    /// The rules file as last seen.
    file: Option<FileStamp>,
    /// Each firing alert's value as receivers last had it (see `every_second`).
    told: std::collections::HashMap<String, String>,
}

/// Keys evaluated under one hold of the engine's lock.
const BATCH: usize = 256;

impl Runner {
    fn run(mut self) {
        let mut changes = Vec::new();
        let mut keys = Vec::with_capacity(BATCH);
        let mut last_tick = 0;
        loop {
            let wait =
                Duration::from_millis(1000 - (now_millis() % 1000)).max(Duration::from_millis(1));
            match self.inbox.recv_timeout(wait) {
                Ok(key) => {
                    keys.push(key);
                    while keys.len() < BATCH {
                        match self.inbox.try_recv() {
                            Ok(key) => keys.push(key),
                            Err(_) => break,
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            let Some(server) = self.server.upgrade() else {
                return;
            };
            let now = crate::unix_now();
            let source = StoreSource(&server);
            {
                let mut engine = self.alerts.engine.lock();
                for key in keys.drain(..) {
                    engine.evaluate(&key, now, &source, &mut changes);
                }
                if now != last_tick {
                    engine.tick(now, &source, &mut changes);
                }
            }
            if !changes.is_empty() {
                apply(&server, &self.alerts.receivers.lock(), &changes);
                changes.clear();
            }
            if now != last_tick {
                last_tick = now;
                self.every_second(&server);
            }
        }
    }

    fn every_second(&mut self, server: &Server) {
        let stamp = self.alerts.path.as_deref().and_then(file_stamp);
        if stamp != self.file {
            self.file = stamp;
            match stamp {
                Some(_) => {
                    self.alerts.reload(server);
                }
                None => tracing::error!(
                    "{}: cannot read it; the running rules stay",
                    self.alerts
                        .path
                        .as_deref()
                        .unwrap_or(Path::new(""))
                        .display()
                ),
            }
        }
        // Firing alerts whose value moved: receivers' stored notices are brought up to date,
        // so a repeat carries the current value (a flapping alert's too), not the one it had
        // when it changed.
        let mut told = std::collections::HashMap::new();
        let mut firing: Vec<Notice> = Vec::new();
        for row in self
            .alerts
            .active(None)
            .iter()
            .filter(|r| r.state.is_firing())
        {
            let notice = notice_of_row(row);
            let value = notice.annotations.get("value").cloned().unwrap_or_default();
            if self.told.get(&notice.id) != Some(&value) {
                firing.push(Notice {
                    refresh: true,
                    ..notice.clone()
                });
            }
            told.insert(notice.id, value);
        }
        self.told = told;
        if !firing.is_empty() {
            let receivers = self.alerts.receivers.lock();
            for notice in &firing {
                for receiver in receivers.iter().filter(|r| r.wants(notice)) {
                    receiver.send(notice.clone());
                }
            }
        }
        let now = crate::unix_now();
        for r in self.alerts.receivers() {
            for (figure, value) in [
                ("sent", r.sent),
                ("failed", r.failed),
                ("dropped", r.dropped),
                ("queued", r.queued),
            ] {
                let key = format!(
                    "server.notify.{}.{figure}",
                    spud_plugin_api::key_safe(&r.name)
                );
                let unchanged = server
                    .newest_number(&key)
                    .is_some_and(|v| v == value as f64);
                if !unchanged {
                    let _ = server.set(&key, value.to_string(), Some(now));
                }
            }
        }
    }
}

/// What identifies a version of the rules file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: std::time::SystemTime,
    len: u64,
    inode: u64,
}

fn file_stamp(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        modified: m.modified().ok()?,
        len: m.len(),
        inode: m.ino(),
    })
}

fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Writes each change's state key and tells the receivers that want it.
fn apply(server: &Server, receivers: &[notify::Handle], changes: &[Change]) {
    for change in changes {
        // An absence is named by its glob, which may hold `*`.
        let key = format!(
            "alert.{}.{}",
            change.rule.name,
            spud_plugin_api::key_safe(&change.key)
        );
        if let Err(e) = server.set(&key, change.state.word(), Some(change.since)) {
            tracing::warn!("alert state {key} not stored: {e}");
        }
        if let Some(notice) = notice_of_change(change) {
            let replaced = notice.replaced();
            for receiver in receivers {
                if receiver.wants(&notice) {
                    receiver.send(notice.clone());
                } else if let Some(old) = replaced.as_ref().filter(|old| receiver.wants(old)) {
                    // It heard of the old severity only: it hears that one resolved.
                    receiver.send(old.clone());
                }
            }
        }
    }
}

/// Firing when it enters a firing state (or changes between them); resolved when it
/// leaves them. Pending is nobody's business but `alerts`.
fn notice_of_change(c: &Change) -> Option<Notice> {
    let firing = c.state.is_firing();
    let was_firing = c.before.is_some_and(State::is_firing);
    if !firing && !was_firing {
        return None;
    }
    let severity = if firing {
        c.state
    } else {
        c.before.unwrap_or(c.state)
    };
    let mut notice = notice(
        &c.rule,
        &c.key,
        c.state,
        severity,
        c.value,
        c.active_since,
        (!firing).then_some(c.since),
    );
    // From one firing state to another (warning, critical, nodata, flapping) whose
    // `severity` label differs: the old one is resolved.
    if let Some(before) = c.before.filter(|_| firing && was_firing) {
        let old = severity_label(&c.rule, before);
        if old != severity_label(&c.rule, c.state) {
            notice.replaces = Some(notify::Replaced {
                state: before,
                severity: old.to_string(),
                at: c.since,
            });
        }
    }
    Some(notice)
}

/// The `severity` label of a firing state: its word, or for `nodata` the rule's choice.
fn severity_label(rule: &rules::Rule, state: State) -> &'static str {
    match state {
        State::Nodata => rule.nodata_severity.word(),
        other => other.word(),
    }
}

pub(crate) fn notice_of_row(r: &Row) -> Notice {
    notice(
        &r.rule,
        &r.key,
        r.state,
        r.state,
        r.value,
        r.active_since,
        None,
    )
}

fn notice(
    rule: &rules::Rule,
    key: &str,
    state: State,
    severity: State,
    value: Option<f64>,
    starts_at: u64,
    ends_at: Option<u64>,
) -> Notice {
    // `$1`… in labels and summary: what the rule's wildcards matched in this key.
    let captures = rule.captures(key);
    let mut labels: std::collections::BTreeMap<String, String> = rule
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), glob::expand(v, &captures).into_owned()))
        .collect();
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("key".into(), key.to_string());
    labels.insert("severity".into(), severity_label(rule, severity).into());
    let value_text = format_value(value);
    let summary = summary(
        &glob::expand(&rule.summary, &captures),
        &rule.name,
        key,
        state,
        &value_text,
    );
    let annotations = [
        ("summary".to_string(), summary),
        ("value".to_string(), value_text),
        ("state".to_string(), state.word().to_string()),
    ]
    .into_iter()
    .collect();
    Notice {
        id: format!("{}/{key}", rule.name),
        firing: ends_at.is_none(),
        state,
        labels,
        annotations,
        starts_at,
        ends_at,
        replaces: None,
        refresh: false,
    }
}

/// A rule's subject as shown: `-` without a number, at most four decimals otherwise
/// (`5.3333`, `9`).
pub fn format_value(value: Option<f64>) -> String {
    match value {
        None => "-".to_string(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{}", v as i64),
        Some(v) => {
            let text = format!("{v:.4}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    }
}

/// Fills `{key}`, `{value}`, `{name}` and `{state}` in a rule's summary.
pub fn summary(template: &str, name: &str, key: &str, state: State, value: &str) -> String {
    template
        .replace("{key}", key)
        .replace("{value}", value)
        .replace("{name}", name)
        .replace("{state}", state.word())
}

/// The evaluator's view of the store.
struct StoreSource<'a>(&'a Server);

impl Source for StoreSource<'_> {
    fn points(&self, key: &str, into: &mut Vec<Point>) {
        into.clear();
        self.0.keyspace().read_mut(key, |entry| {
            // Cleared under the lock the setter queues under: a set after this queues again.
            entry.alert.set_queued(false);
            into.extend(entry.history().oldest_first().map(|(time, value)| Point {
                time,
                value: value.number(),
            }));
        });
        into.reverse();
    }

    fn newest(&self, key: &str) -> Option<f64> {
        self.0.newest_number(key)
    }

    fn newest_text(&self, key: &str) -> Option<String> {
        // The newest sample only: `get` would copy the whole history at every evaluation.
        self.0
            .keyspace()
            .read(key, |entry| {
                let (_, value) = entry.history().newest()?;
                Some(value.to_value().to_string_lossy())
            })
            .flatten()
    }

    fn set_quiet(&self, key: &str, band: Option<Quiet>) {
        self.0.keyspace().read_mut(key, |entry| {
            entry.alert.set_quiet(band);
        });
    }
}
