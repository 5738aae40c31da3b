//! Mapping rules from SPUD keys to Prometheus series, in the spirit of graphite_exporter:
//! a glob whose `*` matches one dot-separated part, and a name and labels that may use the
//! parts as `$1`, `$2`...
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
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
            Kind::Untyped => "untyped",
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
    set: RegexSet,
    unmatched: Unmatched,
    pub expiry: Duration,
}

/// The server's and the host's own keys.
fn builtin() -> Vec<RuleConfig> {
    let rule =
        |glob: &str, name: &str, labels: &[(&str, &str)], kind: Kind, help: &str| RuleConfig {
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
        };
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

/// `memcached.*.curr_items` → `^memcached\.([^.]+)\.curr_items$`.
fn glob_regex(glob: &str) -> String {
    let parts: Vec<String> = glob.split('*').map(regex::escape).collect();
    format!("^{}$", parts.join("([^.]+)"))
}

/// Replaces invalid characters with `_` (and puts one before a leading digit).
pub fn valid_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
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
            let stars = config.glob.matches('*').count();
            let templates = config.name.iter().chain(config.labels.values());
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
            rules,
            set,
            unmatched: config.unmatched,
            expiry: config.expiry.unwrap_or(Duration::from_secs(300)),
        })
    }

    /// Where `key` goes; None if it is dropped.
    pub fn map(&self, key: &str) -> Option<Mapping> {
        let Some(index) = self.set.matches(key).iter().next() else {
            return match self.unmatched {
                Unmatched::Drop => None,
                Unmatched::Gauge => Some(Mapping::new(
                    Arc::new(Family {
                        name: valid_name(key),
                        kind: Kind::Gauge,
                        help: None,
                    }),
                    Vec::new(),
                    1.0,
                    false,
                )),
            };
        };
        let rule = &self.rules[index];
        if rule.config.drop {
            return None;
        }
        let caps = rule.regex.captures(key).expect("the set matched it");
        let family = match (&rule.fixed, &rule.config.name) {
            (Some(f), _) => Arc::clone(f),
            (None, name) => Arc::new(Family {
                name: valid_name(
                    &name
                        .as_deref()
                        .map_or(key.to_string(), |t| substitute(t, &caps)),
                ),
                kind: rule.config.kind,
                help: rule.config.help.clone(),
            }),
        };
        let labels = rule
            .config
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), substitute(v, &caps)))
            .collect();
        Some(Mapping::new(
            family,
            labels,
            rule.config.scale.unwrap_or(1.0),
            rule.builtin,
        ))
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
