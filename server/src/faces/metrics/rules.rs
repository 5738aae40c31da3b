//! Mapping rules from SPUD keys to Prometheus series, in the spirit of graphite_exporter:
//! a glob whose `*` matches one dot-separated part (or part of one) and `**` one or more
//! parts, and a name and labels that may use what they matched as `$1`, `$2`... With
//! `tags = true`, a key's `name:value` parts (DogStatsD, Graphite and Influx tags, as the
//! receivers write them) become labels and the rest is matched. `type = "summary"` with
//! `quantile` makes StatsD timers' `p90`, `median`, `sum` and `count` one summary.
//!
//! ```toml
//! [[metrics.rule]]
//! match = "memcached.*.curr_items"
//! name = "memcached_curr_items"
//! labels = { instance = "$1" }
//! ```
//!
//! The first matching rule wins. The server's and host's own keys (`server.*`, `host.*`)
//! have built-in rules ahead of yours, so their series keep their names and types. A numeric
//! key no rule matches is exported under its own name made valid (`web1.load` →
//! `web1_load`), unless `unmatched = "drop"`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use regex::{Regex, RegexSet};
use serde::Deserialize;

/// A series' Prometheus type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Gauge,
    Counter,
    Untyped,
    /// Quantiles, `_sum` and `_count` of one family (see `RuleConfig::quantile`).
    Summary,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Untyped => "untyped",
            Kind::Summary => "summary",
        }
    }
}

/// One `[[metrics.rule]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// A glob over keys: `*` matches one part between dots (`[^.]+`).
    #[serde(rename = "match")]
    pub glob: String,
    /// The series' name (default: the key's, made valid); `$N` is the N-th `*`.
    pub name: Option<String>,
    /// Labels; values may use `$N`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default, rename = "type")]
    pub kind: Kind,
    /// `# HELP` text.
    pub help: Option<String>,
    /// Multiply values by this (`0.001` turns milliseconds into seconds).
    pub scale: Option<f64>,
    /// Keys this rule matches are not exported.
    #[serde(default)]
    pub drop: bool,
    /// The key's `name:value` parts become labels, and the rest is matched.
    #[serde(default)]
    pub tags: bool,
    /// With `type = "summary"`: which part of the summary the key is, after `$N`: `pNN`
    /// (`p90` → quantile 0.9, `p99_9` → 0.999), `median` (0.5), `sum` or `count`. A key for
    /// which it reads as none of them falls to the next rule.
    pub quantile: Option<String>,
}

/// What to do with numeric keys no rule matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unmatched {
    /// Exported as a gauge named after the key.
    #[default]
    Gauge,
    /// Not exported.
    Drop,
}

/// The `[metrics]` settings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    #[serde(default, rename = "rule")]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub unmatched: Unmatched,
    /// Keys whose newest sample is older than this are not exported (default 5 minutes;
    /// the server's and host's own series never expire).
    #[serde(default, with = "humantime_serde")]
    pub expiry: Option<Duration>,
}

/// Rules that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    /// One rule is wrong.
    #[error("metrics rule {index} (match = {glob:?}): {why}")]
    Rule {
        index: usize,
        glob: String,
        why: String,
    },
    /// Each rule is fine, but together they are more than one matcher can hold.
    #[error("metrics rules: the {count} rules together are too large to match at once ({why}); use fewer, or fewer `*`")]
    TooLarge { count: usize, why: String },
}

/// A series family: the name, type and help shared by its series.
#[derive(Debug, PartialEq)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: Option<String>,
    /// A key whose collector may describe it better than `help` (munin's graph_title,
    /// a field's label and info, graph_vlabel): the key no rule matched.
    pub described_by: Option<Box<str>>,
}

/// Where one key's value goes.
#[derive(Debug)]
pub struct Mapping {
    pub family: Arc<Family>,
    /// Label pairs, sorted by name, values unescaped.
    pub labels: Vec<(String, String)>,
    pub scale: f64,
    /// Built-in series (the server's and host's own) do not expire.
    pub builtin: bool,
    /// The labels as exposed: `{a="x",b="y"}`, or nothing without labels.
    pub label_text: String,
    /// What follows the family's name in the series' name: `_sum` and `_count` of a summary.
    pub suffix: &'static str,
}

impl Mapping {
    fn new(
        family: Arc<Family>,
        labels: Vec<(String, String)>,
        scale: f64,
        builtin: bool,
    ) -> Mapping {
        let label_text = label_text(&labels);
        Mapping {
            family,
            labels,
            scale,
            builtin,
            label_text,
            suffix: "",
        }
    }
}

fn label_text(labels: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (name, value)) in labels.iter().enumerate() {
        out.push(if i == 0 { '{' } else { ',' });
        let _ = write!(out, "{name}=\"");
        for c in value.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    if !out.is_empty() {
        out.push('}');
    }
    out
}

struct Rule {
    regex: Regex,
    config: RuleConfig,
    builtin: bool,
    /// The family when the name has no `$N`.
    fixed: Option<Arc<Family>>,
}

/// Compiled rules: built-in ones first, then the configured ones.
pub struct Rules {
    rules: Vec<Rule>,
    /// Whether some rule takes tags as labels (then keys are matched untagged too).
    any_tags: bool,
    set: RegexSet,
    unmatched: Unmatched,
    pub expiry: Duration,
}

impl RuleConfig {
    /// A rule naming the keys `glob` matches `name`, with `labels`, `kind` and `help`.
    pub fn named(
        glob: &str,
        name: &str,
        labels: &[(&str, &str)],
        kind: Kind,
        help: &str,
    ) -> RuleConfig {
        RuleConfig {
            glob: glob.into(),
            name: Some(name.into()),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            kind,
            help: Some(help.into()),
            scale: None,
            drop: false,
            tags: false,
            quantile: None,
        }
    }
}

/// The server's and the host's own keys.
fn builtin() -> Vec<RuleConfig> {
    let rule = RuleConfig::named;
    use Kind::{Counter, Gauge};
    let mut rules = vec![
        rule(
            "server.com_*",
            "spud_server_commands_total",
            &[("command", "$1")],
            Counter,
            "Protocol commands handled, by command word.",
        ),
        rule(
            "server.clients.total",
            "spud_server_connections_total",
            &[],
            Counter,
            "Connections accepted.",
        ),
        rule(
            "server.clients.*",
            "spud_server_clients_$1_total",
            &[],
            Counter,
            "Per-connection events.",
        ),
        rule(
            "server.lines.*.*",
            "spud_server_lines_total",
            &[("kind", "$1"), ("how", "$2")],
            Counter,
            "Lines written to clients.",
        ),
        rule(
            "server.lines.*",
            "spud_server_lines_$1_total",
            &[],
            Counter,
            "Output batches.",
        ),
    ];
    for what in ["samples", "errors", "timeouts", "skipped", "crashes"] {
        rules.push(rule(
            &format!("host.job.*.{what}"),
            &format!("spud_host_job_{what}_total"),
            &[("job", "$1")],
            Counter,
            "Per-job totals of spud-host.",
        ));
    }
    let mut ms = rule(
        "host.job.*.collect_ms",
        "spud_host_job_collect_seconds",
        &[("job", "$1")],
        Gauge,
        "How long the job's last collect took.",
    );
    ms.scale = Some(0.001);
    rules.push(ms);
    for what in [
        "samples",
        "generations",
        "scheduler.collects",
        "remote.sent",
        "remote.dropped",
    ] {
        rules.push(rule(
            &format!("host.{what}"),
            &format!("spud_host_{}_total", what.replace('.', "_")),
            &[],
            Counter,
            "spud-host totals.",
        ));
    }
    // Milliseconds as seconds, the base unit Prometheus names carry.
    let mut load = rule(
        "host.plugin.*.load_ms",
        "spud_host_plugin_load_seconds",
        &[("plugin", "$1")],
        Gauge,
        "How long loading the plugin's library took.",
    );
    load.scale = Some(0.001);
    rules.push(load);
    let mut lateness = rule(
        "host.scheduler.lateness_*_ms",
        "spud_host_scheduler_lateness_seconds",
        &[("stat", "$1")],
        Gauge,
        "How late the scheduler started collects (p50, p99, max).",
    );
    lateness.scale = Some(0.001);
    rules.push(lateness);
    rules.push(rule(
        "host.job.*.*",
        "spud_host_job_$2",
        &[("job", "$1")],
        Gauge,
        "Per-job figures of spud-host.",
    ));
    rules.push(rule(
        "host.plugin.*.*",
        "spud_host_plugin_$2",
        &[("plugin", "$1")],
        Gauge,
        "Per-plugin figures of spud-host.",
    ));
    rules.push(rule(
        "host.*.*",
        "spud_host_$1_$2",
        &[],
        Gauge,
        "spud-host figures.",
    ));
    rules.push(rule(
        "host.*",
        "spud_host_$1",
        &[],
        Gauge,
        "spud-host figures.",
    ));
    rules
}

/// `memcached.*.curr_items` → `^memcached\.([^.]+)\.curr_items$`; `**` is `(.+)`.
fn glob_regex(glob: &str) -> String {
    let any: Vec<String> = glob
        .split("**")
        .map(|piece| {
            let parts: Vec<String> = piece.split('*').map(regex::escape).collect();
            parts.join("([^.]+)")
        })
        .collect();
    format!("^{}$", any.join("(.+)"))
}

/// A key without its `name:value` parts, and those parts as labels (names made valid).
fn untag(key: &str) -> (String, Vec<(String, String)>) {
    let mut rest = Vec::new();
    let mut tags = Vec::new();
    for part in key.split('.') {
        match part.split_once(':') {
            Some((name, value)) if !name.is_empty() => {
                let mut name = valid_name(name);
                if name.starts_with("__") {
                    name.insert_str(0, "tag");
                }
                tags.push((name, value.to_string()));
            }
            _ => rest.push(part),
        }
    }
    (rest.join("."), tags)
}

/// What a summary rule's `quantile` reads as: a quantile's label value, or a suffix.
enum Part {
    Quantile(String),
    Suffix(&'static str),
}

fn summary_part(text: &str) -> Option<Part> {
    match text {
        "sum" => return Some(Part::Suffix("_sum")),
        "count" => return Some(Part::Suffix("_count")),
        "median" => return Some(Part::Quantile("0.5".into())),
        _ => {}
    }
    let digits = text.strip_prefix('p')?.replacen('_', ".", 1);
    let percent: f64 = digits.parse().ok().filter(|p| (0.0..=100.0).contains(p))?;
    if !digits.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    // Rounded: 99.9 / 100 is 0.9990000000000001 in binary.
    Some(Part::Quantile(format!("{}", (percent * 1e7).round() / 1e9)))
}

/// Replaces invalid characters with `_` (and puts one before a leading digit). A `:` too:
/// Prometheus keeps it for recording rules' names.
pub fn valid_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

fn valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// `$N` (digits only, so `$1_total` is part 1 then `_total`) becomes the N-th `*`'s text.
fn substitute(template: &str, caps: &regex::Captures<'_>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..]
            .bytes()
            .take_while(u8::is_ascii_digit)
            .count();
        let n: Option<usize> = rest[at + 1..at + 1 + digits].parse().ok();
        match n.and_then(|n| caps.get(n)) {
            Some(part) => out.push_str(part.as_str()),
            None => out.push('$'),
        }
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
}

impl Rules {
    pub fn new(config: &MetricsConfig) -> Result<Rules, RuleError> {
        let mut rules = Vec::new();
        let builtins = builtin();
        let all = builtins
            .iter()
            .map(|c| (c, true))
            .chain(config.rules.iter().map(|c| (c, false)));
        for (index, (config, builtin)) in all.enumerate() {
            let error = |why: String| RuleError::Rule {
                index: index + 1 - if builtin { 0 } else { builtins.len() },
                glob: config.glob.clone(),
                why,
            };
            if config.glob.is_empty() {
                return Err(error("the glob is empty".into()));
            }
            let regex = Regex::new(&glob_regex(&config.glob)).map_err(|e| error(e.to_string()))?;
            // `**` is one capture, as is each lone `*`.
            let pieces: Vec<&str> = config.glob.split("**").collect();
            let stars =
                pieces.len() - 1 + pieces.iter().map(|p| p.matches('*').count()).sum::<usize>();
            let templates = config
                .name
                .iter()
                .chain(config.labels.values())
                .chain(config.quantile.iter());
            for t in templates {
                for n in t.match_indices('$').filter_map(|(i, _)| {
                    t[i + 1..]
                        .chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                        .parse::<usize>()
                        .ok()
                }) {
                    if n == 0 || n > stars {
                        return Err(error(format!(
                            "${n} refers to no `*` (the glob has {stars})"
                        )));
                    }
                }
            }
            if let Some(bad) = config.labels.keys().find(|k| !valid_label_name(k)) {
                return Err(error(format!(
                    "{bad:?} is not a label name ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __)"
                )));
            }
            if config.scale.is_some_and(|s| !s.is_finite()) {
                return Err(error("scale must be a finite number".into()));
            }
            let fixed = match &config.name {
                Some(name) if !name.contains('$') => Some(Arc::new(Family {
                    name: valid_name(name),
                    kind: config.kind,
                    help: config.help.clone(),
                    described_by: None,
                })),
                _ => None,
            };
            rules.push(Rule {
                regex,
                config: config.clone(),
                builtin,
                fixed,
            });
        }
        let set = RegexSet::new(rules.iter().map(|r| r.regex.as_str())).map_err(|e| {
            RuleError::TooLarge {
                count: config.rules.len(),
                why: e.to_string().lines().next().unwrap_or("").to_string(),
            }
        })?;
        Ok(Rules {
            any_tags: rules.iter().any(|r| r.config.tags),
            rules,
            set,
            unmatched: config.unmatched,
            expiry: config.expiry.unwrap_or(Duration::from_secs(300)),
        })
    }

    /// Where `key` goes; None if it is dropped.
    pub fn map(&self, key: &str) -> Option<Mapping> {
        let plain = self.set.matches(key);
        let untagged = self.any_tags.then(|| {
            let (rest, tags) = untag(key);
            (self.set.matches(&rest), rest, tags)
        });
        for (index, rule) in self.rules.iter().enumerate() {
            let (subject, tags) = match (&untagged, rule.config.tags) {
                (Some((matches, rest, tags)), true) if matches.matched(index) => {
                    (rest.as_str(), tags.as_slice())
                }
                (_, false) if plain.matched(index) => (key, &[][..]),
                _ => continue,
            };
            if rule.config.drop {
                return None;
            }
            if let Some(mapping) = self.apply(rule, subject, tags) {
                return Some(mapping);
            }
        }
        match self.unmatched {
            Unmatched::Drop => None,
            Unmatched::Gauge => Some(Mapping::new(
                Arc::new(Family {
                    name: valid_name(key),
                    kind: Kind::Gauge,
                    help: Some(format!("The SPUD key {key}.")),
                    described_by: Some(key.into()),
                }),
                Vec::new(),
                1.0,
                false,
            )),
        }
    }

    /// `rule` applied to `subject` (the key, or the key less its tags), or None when its
    /// `quantile` does not read as a part of a summary.
    fn apply(&self, rule: &Rule, subject: &str, tags: &[(String, String)]) -> Option<Mapping> {
        let caps = rule.regex.captures(subject).expect("the set matched it");
        let part = match &rule.config.quantile {
            Some(template) => Some(summary_part(&substitute(template, &caps))?),
            None => None,
        };
        let family = match (&rule.fixed, &rule.config.name) {
            (Some(f), _) => Arc::clone(f),
            (None, name) => Arc::new(Family {
                name: valid_name(
                    &name
                        .as_deref()
                        .map_or(subject.to_string(), |t| substitute(t, &caps)),
                ),
                kind: rule.config.kind,
                help: rule.config.help.clone(),
                described_by: None,
            }),
        };
        let mut labels: Vec<(String, String)> = rule
            .config
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v, &caps)))
            .collect();
        for (name, value) in tags {
            if !labels.iter().any(|(n, _)| n == name) {
                labels.push((name.clone(), value.clone()));
            }
        }
        let mut suffix = "";
        match part {
            Some(Part::Quantile(q)) => labels.push(("quantile".into(), q)),
            Some(Part::Suffix(s)) => suffix = s,
            None => {}
        }
        labels.sort();
        let mut mapping = Mapping::new(
            family,
            labels,
            rule.config.scale.unwrap_or(1.0),
            rule.builtin,
        );
        mapping.suffix = suffix;
        Some(mapping)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_too_large_together_are_refused_not_a_panic() {
        // Each of these compiles alone; two thousand of them do not fit in one set.
        let rules: Vec<RuleConfig> = (0..2000)
            .map(|i| RuleConfig {
                glob: format!("k{i}.*.*.*.*.*.*.*.*"),
                name: None,
                labels: BTreeMap::new(),
                kind: Kind::default(),
                help: None,
                scale: None,
                drop: false,
                tags: false,
                quantile: None,
            })
            .collect();
        let config = MetricsConfig {
            rules,
            ..MetricsConfig::default()
        };
        let e = Rules::new(&config).err().expect("refused");
        assert!(matches!(e, RuleError::TooLarge { count: 2000, .. }), "{e}");
        assert!(e.to_string().contains("too large to match at once"), "{e}");
    }

    fn rules(toml_text: &str) -> Rules {
        #[derive(Deserialize)]
        struct File {
            metrics: MetricsConfig,
        }
        let file: File = toml::from_str(toml_text).unwrap();
        Rules::new(&file.metrics).unwrap()
    }

    #[test]
    fn a_glob_part_becomes_a_label() {
        let r = rules(
            r#"
            [[metrics.rule]]
            match = "memcached.*.curr_items"
            name = "memcached_curr_items"
            labels = { instance = "$1" }
            "#,
        );
        let m = r.map("memcached.web1:11211.curr_items").unwrap();
        assert_eq!(m.family.name, "memcached_curr_items");
        assert_eq!(m.label_text, r#"{instance="web1:11211"}"#);
        // `*` is one part: two parts do not match, and fall to the default.
        let m = r.map("memcached.a.b.curr_items").unwrap();
        assert_eq!(m.family.name, "memcached_a_b_curr_items");
        assert!(m.labels.is_empty());
    }

    #[test]
    fn tags_become_labels_and_a_timer_one_summary() {
        let r = rules(
            r#"
            [[metrics.rule]]
            match = "statsd.**.p*"
            name = "statsd_$1"
            type = "summary"
            quantile = "p$2"
            tags = true
            [[metrics.rule]]
            match = "statsd.**.count"
            name = "statsd_$1"
            type = "summary"
            quantile = "count"
            tags = true
            [[metrics.rule]]
            match = "statsd.**"
            name = "statsd_$1"
            tags = true
            "#,
        );
        let m = r.map("statsd.api.latency.route:_users.p99_9").unwrap();
        assert_eq!(
            (m.family.name.as_str(), m.family.kind, m.suffix),
            ("statsd_api_latency", Kind::Summary, "")
        );
        assert_eq!(m.label_text, r#"{quantile="0.999",route="_users"}"#);
        let m = r.map("statsd.api.latency.route:_users.count").unwrap();
        assert_eq!(
            (m.family.name.as_str(), m.suffix),
            ("statsd_api_latency", "_count")
        );
        assert_eq!(m.label_text, r#"{route="_users"}"#);
        // `p` and a word is not a percentile: the next rule takes it.
        let m = r.map("statsd.app.perf").unwrap();
        assert_eq!(
            (m.family.name.as_str(), m.family.kind),
            ("statsd_app_perf", Kind::Gauge)
        );
        // Unmatched: a `:` is not kept in a name, and the key is the help.
        let m = r.map("memcached.web1:11211.curr_items").unwrap();
        assert_eq!(m.family.name, "memcached_web1_11211_curr_items");
        assert_eq!(
            m.family.described_by.as_deref(),
            Some("memcached.web1:11211.curr_items")
        );
    }

    #[test]
    fn names_from_parts_drop_and_unmatched() {
        let r = rules(
            r#"
            [metrics]
            unmatched = "drop"
            [[metrics.rule]]
            match = "web.*.*"
            name = "web_$2"
            labels = { host = "$1" }
            type = "counter"
            [[metrics.rule]]
            match = "secret.*"
            drop = true
            "#,
        );
        let m = r.map("web.w1.requests").unwrap();
        assert_eq!(
            (m.family.name.as_str(), m.family.kind),
            ("web_requests", Kind::Counter)
        );
        assert!(r.map("secret.x").is_none());
        assert!(r.map("other.key").is_none());
    }

    #[test]
    fn builtins_come_first_and_are_counters() {
        let r = rules("[metrics]");
        let m = r.map("server.com_get").unwrap();
        assert_eq!(m.family.name, "spud_server_commands_total");
        assert_eq!(m.family.kind, Kind::Counter);
        assert_eq!(m.label_text, r#"{command="get"}"#);
        let m = r.map("host.job.mc.collect_ms").unwrap();
        assert_eq!(
            (m.family.name.as_str(), m.scale),
            ("spud_host_job_collect_seconds", 0.001)
        );
        assert!(m.builtin);
        let m = r.map("9lives.x-y").unwrap();
        assert_eq!(m.family.name, "_9lives_x_y");
    }

    #[test]
    fn bad_rules_say_which_and_why() {
        let bad = |text: &str| {
            #[derive(Deserialize)]
            struct File {
                metrics: MetricsConfig,
            }
            let file: File = toml::from_str(text).unwrap();
            Rules::new(&file.metrics).err().unwrap().to_string()
        };
        let e = bad("[[metrics.rule]]\nmatch = \"a.*\"\nname = \"x_$2\"");
        assert_eq!(
            e,
            "metrics rule 1 (match = \"a.*\"): $2 refers to no `*` (the glob has 1)"
        );
        let e = bad("[[metrics.rule]]\nmatch = \"a.*\"\nlabels = { \"bad-name\" = \"$1\" }");
        assert!(e.contains("\"bad-name\" is not a label name"), "{e}");
    }
}
