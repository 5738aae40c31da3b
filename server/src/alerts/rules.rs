//! The rules file: `[[alert]]` rules and `[[notify]]` receivers, in TOML. Every problem is
//! reported as `FILE:LINE: [[alert]] NAME: FIELD: what is wrong`, all of them at once.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use spud_access::SecretRef;
use toml::Spanned;

use super::expr::Condition;
use super::glob::{self, KeyGlob};

/// A parsed rules file.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    pub receivers: Vec<Receiver>,
}

/// One `[[alert]]`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// The glob as written, and compiled: whole keys, its wildcards captured.
    pub keys_text: String,
    pub keys: KeyGlob,
    pub warn: Option<Condition>,
    pub crit: Option<Condition>,
    /// Leave warning or critical only when this holds (hysteresis).
    pub clear: Option<Condition>,
    /// Seconds a condition holds (as `pending`) before the alert fires.
    pub pending_for: u64,
    /// Seconds an alert keeps firing after its condition stops holding.
    pub keep_firing_for: u64,
    /// No sample for this many seconds: `nodata`.
    pub nodata: Option<u64>,
    /// No matching key at all this many seconds after the rules were loaded: `nodata`,
    /// for an instance named by the glob itself.
    pub absent: Option<u64>,
    /// The `severity` label of a `nodata` alert (and of an absence): `nodata` unless the
    /// rule says `warning` or `critical`.
    pub nodata_severity: NodataSeverity,
    /// `{key}`, `{value}`, `{name}`, `{state}` are filled in.
    pub summary: String,
    pub labels: BTreeMap<String, String>,
    pub flapping: Flapping,
    /// The rule's own text, to tell an edited rule from an unchanged one.
    pub source: String,
    /// Whether a condition reads another key (`key(…)`, `breaches(…)`).
    pub reads_other_keys: bool,
}

/// The `severity` label a rule's `nodata` alerts carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodataSeverity {
    Nodata,
    Warning,
    Critical,
}

impl NodataSeverity {
    pub fn word(self) -> &'static str {
        match self {
            NodataSeverity::Nodata => "nodata",
            NodataSeverity::Warning => "warning",
            NodataSeverity::Critical => "critical",
        }
    }
}

impl Rule {
    /// What the wildcards of `keys` matched in `key` (`$1`…), if the rule reads them.
    pub fn captures(&self, key: &str) -> Vec<String> {
        if self.keys.wildcards() == 0 {
            return Vec::new();
        }
        self.keys.captures(key).unwrap_or_default()
    }
}

/// More than `changes` state changes within `window` seconds is flapping; it settles once
/// the window holds at most half as many. `changes = 0` turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flapping {
    pub changes: usize,
    pub window: u64,
}

impl Default for Flapping {
    fn default() -> Flapping {
        Flapping {
            changes: 6,
            window: 600,
        }
    }
}

/// One `[[notify]]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Receiver {
    pub name: String,
    pub kind: ReceiverKind,
    /// Re-notify a still-firing alert this often (Alertmanager: re-send so it stays active).
    pub repeat: u64,
    /// Every label here (severity included) must match, as a glob.
    pub matches: Vec<(String, String)>,
    /// Seconds one delivery may take.
    pub timeout: u64,
    /// Notifications held while the receiver is down; beyond, the oldest are dropped.
    pub queue: usize,
    /// How long a notification is retried before it is dropped.
    pub retry_for: u64,
}

#[derive(Clone, PartialEq)]
pub enum ReceiverKind {
    /// Alertmanager's base URL (`http://am:9093`): `POST /api/v2/alerts`.
    Alertmanager { url: String },
    /// A POST of Alertmanager's webhook JSON to this URL.
    Webhook { url: String },
    /// A command run per notification, with the alert in its environment and on stdin.
    Exec { command: Vec<String> },
}

impl Receiver {
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            ReceiverKind::Alertmanager { .. } => "alertmanager",
            ReceiverKind::Webhook { .. } => "webhook",
            ReceiverKind::Exec { .. } => "exec",
        }
    }
}

/// A URL as messages show it: its scheme, host and port only. A webhook's path or
/// credentials often hold its secret, which must not reach a log.
pub fn shown(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority = rest.split('/').next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let more = if rest.len() > authority.len() {
        "/…"
    } else {
        ""
    };
    format!("{scheme}://{host}{more}")
}

impl std::fmt::Debug for ReceiverKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReceiverKind::Alertmanager { url } => write!(f, "Alertmanager({})", shown(url)),
            ReceiverKind::Webhook { url } => write!(f, "Webhook({})", shown(url)),
            ReceiverKind::Exec { command } => write!(f, "Exec({command:?})"),
        }
    }
}

/// Every problem found in a rules file, one line each.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", problems.join("\n"))]
pub struct RulesError {
    pub problems: Vec<String>,
}

#[derive(Deserialize)]
struct File {
    #[serde(default, rename = "alert")]
    alerts: Vec<Spanned<RawRule>>,
    #[serde(default, rename = "notify")]
    receivers: Vec<Spanned<RawReceiver>>,
}

/// Unknown fields are found before (see `unknown_fields`), so that every problem of a
/// file is said at once.
#[derive(Deserialize)]
struct RawRule {
    name: Spanned<String>,
    keys: Spanned<String>,
    warn: Option<Spanned<String>>,
    crit: Option<Spanned<String>>,
    clear: Option<Spanned<String>>,
    #[serde(rename = "for")]
    pending_for: Option<Spanned<String>>,
    keep_firing_for: Option<Spanned<String>>,
    nodata: Option<Spanned<String>>,
    absent: Option<Spanned<String>>,
    nodata_severity: Option<Spanned<String>>,
    summary: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    flapping: Option<Spanned<RawFlapping>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlapping {
    changes: usize,
    window: Spanned<String>,
}

#[derive(Deserialize)]
struct RawReceiver {
    name: Option<String>,
    #[serde(rename = "type")]
    kind: Spanned<String>,
    url: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
    repeat: Option<Spanned<String>>,
    #[serde(default, rename = "match")]
    matches: BTreeMap<String, String>,
    timeout: Option<Spanned<String>>,
    queue: Option<usize>,
    retry_for: Option<Spanned<String>>,
}

/// The fields of each table, for the unknown-field check.
const TOP_FIELDS: &[&str] = &["alert", "notify"];
const RULE_FIELDS: &[&str] = &[
    "name",
    "keys",
    "warn",
    "crit",
    "clear",
    "for",
    "keep_firing_for",
    "nodata",
    "absent",
    "nodata_severity",
    "summary",
    "labels",
    "flapping",
];
const RECEIVER_FIELDS: &[&str] = &[
    "name",
    "type",
    "url",
    "command",
    "repeat",
    "match",
    "timeout",
    "queue",
    "retry_for",
];

/// Every field the file's tables do not know, each with its line: said with the other
/// problems rather than stopping at the first.
fn unknown_fields(p: &mut Problems<'_>) {
    let Ok(doc) = toml_edit::ImDocument::parse(p.text) else {
        return; // toml::from_str said why already
    };
    let table = doc.as_table();
    let mut found: Vec<(usize, String, String, &[&str])> = Vec::new();
    for (key, _) in table.iter() {
        if !TOP_FIELDS.contains(&key) {
            let at = table.key(key).and_then(|k| k.span()).map_or(0, |s| s.start);
            found.push((at, "the file".into(), key.to_string(), TOP_FIELDS));
        }
    }
    for (array, fields, what) in [
        ("alert", RULE_FIELDS, "[[alert]]"),
        ("notify", RECEIVER_FIELDS, "[[notify]]"),
    ] {
        let Some(tables) = table.get(array).and_then(|i| i.as_array_of_tables()) else {
            continue;
        };
        for t in tables.iter() {
            let name = t.get("name").and_then(|n| n.as_str()).unwrap_or("?");
            for (key, _) in t.iter() {
                if !fields.contains(&key) {
                    let at = t.key(key).and_then(|k| k.span()).map_or(0, |s| s.start);
                    found.push((at, format!("{what} {name}"), key.to_string(), fields));
                }
            }
        }
    }
    for (at, whose, key, fields) in found {
        p.add(
            at,
            &whose,
            format!(
                "unknown field `{key}`; the fields are {}",
                fields.join(", ")
            ),
        );
    }
}

/// Collects problems with their places.
struct Problems<'a> {
    text: &'a str,
    path: &'a Path,
    list: Vec<String>,
}

impl Problems<'_> {
    fn line(&self, at: usize) -> usize {
        crate::toml_error::line_of(self.text, at)
    }

    fn add(&mut self, at: usize, what: &str, message: impl std::fmt::Display) {
        let line = self.line(at);
        self.list
            .push(format!("{}:{line}: {what}: {message}", self.path.display()));
    }

    /// A duration field (`30s`, `1m`, `1h30m`) in whole seconds.
    fn duration(&mut self, field: &Option<Spanned<String>>, what: &str) -> Option<u64> {
        let field = field.as_ref()?;
        match humantime::parse_duration(field.get_ref()) {
            Ok(d) => Some(d.as_secs()),
            Err(e) => {
                self.add(
                    field.span().start,
                    what,
                    format!(
                        "{:?} is not a duration such as 30s or 5m ({e})",
                        field.get_ref()
                    ),
                );
                None
            }
        }
    }

    fn condition(&mut self, field: &Option<Spanned<String>>, what: &str) -> Option<Condition> {
        let field = field.as_ref()?;
        match Condition::parse(field.get_ref()) {
            Ok(c) => Some(c),
            Err(e) => {
                self.add(
                    field.span().start,
                    what,
                    format!("{:?}: {e}", field.get_ref()),
                );
                None
            }
        }
    }
}

impl RuleSet {
    /// Reads and checks the rules file at `path`.
    pub fn load(path: &Path) -> Result<RuleSet, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|e| RulesError {
            problems: vec![format!("{}: {e}", path.display())],
        })?;
        RuleSet::parse(&text, path)
    }

    /// Checks `text`, naming `path` in its problems.
    pub fn parse(text: &str, path: &Path) -> Result<RuleSet, RulesError> {
        let file: File = toml::from_str(text).map_err(|e| RulesError {
            problems: vec![crate::toml_error::describe(&e, text, path)],
        })?;
        let mut problems = Problems {
            text,
            path,
            list: Vec::new(),
        };
        unknown_fields(&mut problems);
        let mut set = RuleSet::default();
        for raw in &file.alerts {
            if let Some(rule) = rule(raw, &mut problems) {
                if set.rules.iter().any(|r| r.name == rule.name) {
                    let at = raw.get_ref().name.span().start;
                    problems.add(
                        at,
                        "[[alert]] name",
                        format!("{:?} is used twice", rule.name),
                    );
                } else {
                    set.rules.push(rule);
                }
            }
        }
        for (n, raw) in file.receivers.iter().enumerate() {
            if let Some(receiver) = receiver(n, raw, &mut problems) {
                if set.receivers.iter().any(|r| r.name == receiver.name) {
                    let at = raw.span().start;
                    let message = format!("{:?} is used twice", receiver.name);
                    problems.add(at, "[[notify]] name", message);
                } else {
                    set.receivers.push(receiver);
                }
            }
        }
        if problems.list.is_empty() {
            Ok(set)
        } else {
            // In the file's order, whichever check found them.
            let line = |p: &String| -> usize {
                p.strip_prefix(&format!("{}:", path.display()))
                    .and_then(|rest| rest.split(':').next()?.parse().ok())
                    .unwrap_or(0)
            };
            problems.list.sort_by_key(line);
            Err(RulesError {
                problems: problems.list,
            })
        }
    }
}

fn rule(raw: &Spanned<RawRule>, p: &mut Problems<'_>) -> Option<Rule> {
    let r = raw.get_ref();
    let name = r.name.get_ref().clone();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b != b'.' && spud_plugin_api::is_key_byte(b));
    if !valid_name {
        p.add(
            r.name.span().start,
            "[[alert]] name",
            format!("{name:?}: a name is made of letters, digits, - _ and : (it becomes part of the key alert.NAME.KEY)"),
        );
        return None;
    }
    let what = |field: &str| format!("[[alert]] {name}: {field}");
    let before = p.list.len();
    let keys = match KeyGlob::new(r.keys.get_ref()) {
        Ok(k) => Some(k),
        Err(e) => {
            p.add(
                r.keys.span().start,
                &what("keys"),
                format!("{:?}: {e}", r.keys.get_ref()),
            );
            None
        }
    };
    // `$N` beyond the glob's wildcards would read nothing: said, not left to fail quietly.
    if let Some(k) = &keys {
        let fields = [("warn", &r.warn), ("crit", &r.crit), ("clear", &r.clear)];
        let at = r.name.span().start;
        let texts = fields
            .iter()
            .filter_map(|(f, t)| {
                let t = t.as_ref()?;
                Some((*f, t.get_ref().as_str(), t.span().start))
            })
            .chain(r.summary.iter().map(|t| ("summary", t.as_str(), at)))
            .chain(r.labels.values().map(|v| ("labels", v.as_str(), at)));
        for (field, text, at) in texts {
            let n = glob::highest_capture(text);
            if n > k.wildcards() {
                p.add(
                    at,
                    &what(field),
                    format!(
                        "${n}, but keys {:?} has {} wildcard(s) to capture: $1 is the first `*` or `**`",
                        k.text(),
                        k.wildcards()
                    ),
                );
            }
        }
    }
    let warn = p.condition(&r.warn, &what("warn"));
    let crit = p.condition(&r.crit, &what("crit"));
    let clear = p.condition(&r.clear, &what("clear"));
    if r.warn.is_none() && r.crit.is_none() && r.nodata.is_none() && r.absent.is_none() {
        p.add(
            raw.span().start,
            &what("warn"),
            "a rule needs `warn`, `crit`, `nodata` or `absent`",
        );
    }
    let absent = p.duration(&r.absent, &what("absent"));
    let nodata_severity = match &r.nodata_severity {
        None => Some(NodataSeverity::Nodata),
        Some(word) => match word.get_ref().as_str() {
            "nodata" => Some(NodataSeverity::Nodata),
            "warning" => Some(NodataSeverity::Warning),
            "critical" => Some(NodataSeverity::Critical),
            other => {
                p.add(
                    word.span().start,
                    &what("nodata_severity"),
                    format!("{other:?}: one of \"warning\", \"critical\" or \"nodata\""),
                );
                None
            }
        },
    };
    for label in r.labels.keys() {
        let valid = label
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let reserved = ["alertname", "key", "severity", "alertstate"].contains(&label.as_str());
        if !valid || reserved {
            // The labels' own line: found in the rule's text, as labels carry no span.
            let rule_at = raw.span().start;
            let at = p.text[rule_at..raw.span().end]
                .find("labels")
                .map_or(r.name.span().start, |i| rule_at + i);
            p.add(
                at,
                &what("labels"),
                format!("{label:?}: a label name is [A-Za-z_][A-Za-z0-9_]*, and not alertname, key, severity or alertstate (SPUD sets those)"),
            );
        }
    }
    let pending_for = p.duration(&r.pending_for, &what("for"));
    let keep_firing_for = p.duration(&r.keep_firing_for, &what("keep_firing_for"));
    let nodata = p.duration(&r.nodata, &what("nodata"));
    if nodata == Some(0) {
        p.add(
            r.nodata.as_ref()?.span().start,
            &what("nodata"),
            "must be longer than 0s",
        );
    }
    let flapping = match &r.flapping {
        None => Some(Flapping::default()),
        Some(f) => p
            .duration(&Some(f.get_ref().window.clone()), &what("flapping.window"))
            .map(|window| Flapping {
                changes: f.get_ref().changes,
                window,
            }),
    };
    if p.list.len() != before {
        return None;
    }
    let reads_other_keys = [&warn, &crit, &clear]
        .into_iter()
        .flatten()
        .any(|c| c.reads_other_keys());
    Some(Rule {
        reads_other_keys,
        source: p.text[raw.span()].to_string(),
        name,
        keys_text: r.keys.get_ref().clone(),
        keys: keys?,
        warn,
        crit,
        clear,
        pending_for: pending_for.unwrap_or(0),
        keep_firing_for: keep_firing_for.unwrap_or(0),
        nodata,
        absent,
        nodata_severity: nodata_severity?,
        summary: r
            .summary
            .clone()
            .unwrap_or_else(|| "{key} is {state} ({value})".to_string()),
        labels: r.labels.clone(),
        flapping: flapping?,
    })
}

fn receiver(n: usize, raw: &Spanned<RawReceiver>, p: &mut Problems<'_>) -> Option<Receiver> {
    let r = raw.get_ref();
    let kind_name = r.kind.get_ref().as_str();
    let name = r
        .name
        .clone()
        .unwrap_or_else(|| format!("{kind_name}{}", n + 1));
    let what = |field: &str| format!("[[notify]] {name}: {field}");
    let before = p.list.len();
    // The URL may be `env:NAME` or `file:PATH` (a webhook's URL often holds its token);
    // a problem names where it came from, never what it holds.
    let url = |p: &mut Problems<'_>| -> Option<String> {
        let Some(u) = &r.url else {
            p.add(
                raw.span().start,
                &what("url"),
                format!("type = {kind_name:?} needs a url"),
            );
            return None;
        };
        let written = SecretRef::new(u.get_ref().as_str());
        let resolved = match written.resolve(p.path.parent()) {
            Ok(secret) => secret.expose().to_string(),
            Err(e) => {
                p.add(u.span().start, &what("url"), e.to_string());
                return None;
            }
        };
        if resolved.starts_with("http://") || resolved.starts_with("https://") {
            return Some(resolved.trim_end_matches('/').to_string());
        }
        let shown = match written.source() {
            "inline" => format!("{resolved:?}"),
            source => source.to_string(),
        };
        p.add(
            u.span().start,
            &what("url"),
            format!("{shown} is not an http:// or https:// URL"),
        );
        None
    };
    let kind = match kind_name {
        "alertmanager" => url(p).map(|url| ReceiverKind::Alertmanager { url }),
        "webhook" => url(p).map(|url| ReceiverKind::Webhook { url }),
        "exec" => match &r.command {
            Some(c) if !c.get_ref().is_empty() => Some(ReceiverKind::Exec {
                command: c.get_ref().clone(),
            }),
            _ => {
                let at = r
                    .command
                    .as_ref()
                    .map_or(raw.span().start, |c| c.span().start);
                p.add(
                    at,
                    &what("command"),
                    "type = \"exec\" needs command = [\"/path/to/program\", \"arg\", …]",
                );
                None
            }
        },
        other => {
            p.add(
                r.kind.span().start,
                &what("type"),
                format!("{other:?}: expected \"alertmanager\", \"webhook\" or \"exec\""),
            );
            None
        }
    };
    let default_repeat = if kind_name == "alertmanager" {
        60
    } else {
        4 * 3600
    };
    let repeat = p.duration(&r.repeat, &what("repeat"));
    let timeout = p.duration(&r.timeout, &what("timeout"));
    let retry_for = p.duration(&r.retry_for, &what("retry_for"));
    if repeat == Some(0) || timeout == Some(0) {
        p.add(
            raw.span().start,
            &what("repeat/timeout"),
            "must be longer than 0s",
        );
    }
    if p.list.len() != before {
        return None;
    }
    Some(Receiver {
        name,
        kind: kind?,
        repeat: repeat.unwrap_or(default_repeat),
        matches: r.matches.clone().into_iter().collect(),
        timeout: timeout.unwrap_or(10),
        queue: r.queue.unwrap_or(1000).max(1),
        retry_for: retry_for.unwrap_or(3600),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<RuleSet, RulesError> {
        RuleSet::parse(text, Path::new("alerts.toml"))
    }

    #[test]
    fn urls_show_only_their_scheme_and_host() {
        assert_eq!(
            shown("https://user:pw@hooks.example.com:8443/services/T0/B0/secret"),
            "https://hooks.example.com:8443/…"
        );
        assert_eq!(shown("http://am:9093"), "http://am:9093");
        let kind = ReceiverKind::Webhook {
            url: "https://hooks.example.com/secret-path".into(),
        };
        assert_eq!(format!("{kind:?}"), "Webhook(https://hooks.example.com/…)");
    }

    #[test]
    fn a_receivers_url_from_the_environment_is_named_by_where_it_came_from() {
        std::env::set_var(
            "SPUD_RULES_TEST_HOOK",
            "https://hooks.example.com/T0/B0/secret",
        );
        let rules = "[[alert]]\nname = \"a\"\nkeys = \"x\"\nwarn = \"last > 1\"\n\
                     [[notify]]\ntype = \"webhook\"\nurl = \"env:SPUD_RULES_TEST_HOOK\"\n";
        let set = parse(rules).unwrap();
        assert_eq!(
            set.receivers[0].kind,
            ReceiverKind::Webhook {
                url: "https://hooks.example.com/T0/B0/secret".into()
            }
        );
        std::env::set_var("SPUD_RULES_TEST_NOT_A_URL", "secret-not-a-url");
        let e = parse(&rules.replace("SPUD_RULES_TEST_HOOK", "SPUD_RULES_TEST_NOT_A_URL"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("env:SPUD_RULES_TEST_NOT_A_URL is not an http"),
            "{e}"
        );
        assert!(!e.contains("secret-not-a-url"), "{e}");
        let e = parse(&rules.replace("SPUD_RULES_TEST_HOOK", "SPUD_RULES_TEST_UNSET"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("env:SPUD_RULES_TEST_UNSET: the environment variable is not set"),
            "{e}"
        );
    }

    #[test]
    fn the_documented_rule_parses() {
        let set = parse(
            r#"
[[alert]]
name = "load_high"
keys = "web*.load.1"
warn = "avg(1m) > 4"
crit = "last > 8"
clear = "avg(1m) < 3"
for = "30s"
keep_firing_for = "1m"
nodata = "2m"
summary = "{key} is {value}"
labels = { team = "web" }

[[notify]]
type = "alertmanager"
url = "http://127.0.0.1:9093/"
match = { severity = "critical" }

[[notify]]
name = "pager"
type = "exec"
command = ["/bin/true"]
repeat = "1h"
"#,
        )
        .unwrap();
        let r = &set.rules[0];
        assert_eq!(
            (r.pending_for, r.keep_firing_for, r.nodata),
            (30, 60, Some(120))
        );
        assert_eq!(r.labels["team"], "web");
        assert_eq!(r.flapping, Flapping::default());
        assert_eq!(set.receivers[0].name, "alertmanager1");
        assert_eq!(
            set.receivers[0].kind,
            ReceiverKind::Alertmanager {
                url: "http://127.0.0.1:9093".into()
            }
        );
        assert_eq!(set.receivers[0].repeat, 60);
        assert_eq!(set.receivers[1].repeat, 3600);
    }

    #[test]
    fn every_problem_names_file_line_and_field() {
        let e = parse(
            "[[alert]]\nname = \"a\"\nkeys = \"x.*\"\nwarn = \"avg(1m) >\"\nfor = \"soon\"\n\n\
             [[alert]]\nname = \"b.c\"\nkeys = \"y\"\nwarn = \"last > 1\"\n\n\
             [[alert]]\nname = \"d\"\nkeys = \"(\"\n\n\
             [[notify]]\ntype = \"pager\"\n",
        )
        .unwrap_err();
        let p = &e.problems;
        assert!(
            p[0].starts_with("alerts.toml:4: [[alert]] a: warn: \"avg(1m) >\""),
            "{p:?}"
        );
        assert!(
            p[1].starts_with("alerts.toml:5: [[alert]] a: for: \"soon\""),
            "{p:?}"
        );
        assert!(
            p[2].starts_with("alerts.toml:8: [[alert]] name: \"b.c\""),
            "{p:?}"
        );
        assert!(p[3].contains("[[alert]] d: warn: a rule needs"), "{p:?}");
        assert!(
            p[4].starts_with("alerts.toml:14: [[alert]] d: keys"),
            "{p:?}"
        );
        assert!(
            p[5].starts_with("alerts.toml:17: [[notify]] pager1: type"),
            "{p:?}"
        );
        let e = parse("[[alert]]\nname = \"a\"\nkeys = \"x\"\nwarn = \"last > 1\"\nwran = 1\n")
            .unwrap_err();
        assert!(
            e.problems[0].starts_with(
                "alerts.toml:5: [[alert]] a: unknown field `wran`; the fields are name, keys, warn"
            ),
            "{e}"
        );
        // Every problem at once: an unknown field does not hide the others.
        let e = parse(
            "[[alert]]\nname = \"a\"\nkeys = \"x\"\nwarn = \"last >\"\nwran = 1\n\n\
             [[alert]]\nname = \"b\"\nkeys = \"y\"\ncrit = \"avg(5mins) > 1\"\n\n\
             [[alert]]\nname = \"c\"\nkeys = \"z\"\ncrit = \"last < key(box.mem.total_kb)\"\n\n\
             [[alert]]\nname = \"d\"\nkeys = \"z\"\ncrit = \"last > 1\"\nlabels = { \"bad-label\" = \"x\" }\n",
        )
        .unwrap_err();
        let p = &e.problems;
        assert_eq!(p.len(), 5, "{p:#?}");
        assert!(
            p.iter()
                .any(|l| l.starts_with("alerts.toml:5: [[alert]] a: unknown field `wran`")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("alerts.toml:4: [[alert]] a: warn")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("alerts.toml:10: [[alert]] b: crit")
                    && l.contains("5mins")
                    && l.contains("5m")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("alerts.toml:15: [[alert]] c: crit")
                    && l.contains("key(\"box.mem.total_kb\")")),
            "{p:#?}"
        );
        assert!(
            p.iter()
                .any(|l| l.starts_with("alerts.toml:21: [[alert]] d: labels")),
            "{p:#?}"
        );
        let e = parse("[[alert]]\nname = \"a\"\nkeys = \"x\"\nwarn = \"last > 1\"\n[[alert]]\nname = \"a\"\nkeys = \"y\"\ncrit = \"last > 1\"\n").unwrap_err();
        assert!(
            e.problems[0].starts_with("alerts.toml:6: [[alert]] name: \"a\" is used twice"),
            "{e}"
        );
    }
}
