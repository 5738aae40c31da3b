//! The store as Prometheus series: `/metrics` in the text exposition format, and the
//! mapping the host's remote-write output shares.

pub mod rules;

use std::fmt::Write as _;
use std::sync::Arc;

use parking_lot::Mutex;

pub use rules::{Family, Kind, Mapping, MetricsConfig, RuleConfig, RuleError, Rules};

use crate::{unix_now, Server};

/// Renders `/metrics`. Each key's mapping is worked out once and remembered, so a scrape
/// costs a walk over the keys and the formatting, not a regular expression per key.
pub struct Exporter {
    cache: Mutex<Cache>,
}

/// The rules, and what they said of each key so far (forgotten with the rules).
struct Cache {
    rules: Rules,
    /// Per key: where it goes, or None (not exported).
    routes: hashbrown::HashMap<Box<str>, Option<Arc<Mapping>>>,
    /// One family per name, so that a family's series can be found by pointer.
    families: hashbrown::HashMap<String, Arc<Family>>,
    /// Per family described by its key's metadata: the `HELP` it gives, if any, and when
    /// that was looked for (a key without metadata is looked at again a minute later).
    described: hashbrown::HashMap<String, (Option<String>, u64)>,
}

impl Cache {
    fn new(rules: Rules) -> Cache {
        Cache {
            rules,
            routes: hashbrown::HashMap::new(),
            families: hashbrown::HashMap::new(),
            described: hashbrown::HashMap::new(),
        }
    }

    fn route(&mut self, key: &str) -> Option<Arc<Mapping>> {
        if let Some(m) = self.routes.get(key) {
            return m.clone();
        }
        let m = self.rules.map(key).map(|mut m| {
            let family = self
                .families
                .entry(m.family.name.clone())
                .or_insert_with(|| Arc::clone(&m.family));
            m.family = Arc::clone(family);
            Arc::new(m)
        });
        self.routes.insert(key.into(), m.clone());
        m
    }
}

impl Exporter {
    pub fn new(rules: Rules) -> Exporter {
        Exporter {
            cache: Mutex::new(Cache::new(rules)),
        }
    }

    /// New rules from now on (a reloaded `[metrics]`): every key is mapped again.
    pub fn set_rules(&self, rules: Rules) {
        *self.cache.lock() = Cache::new(rules);
    }

    /// The mapping of `key`, remembered.
    pub fn map(&self, key: &str) -> Option<Arc<Mapping>> {
        self.cache.lock().route(key)
    }

    /// Every numeric key's newest value, as the text exposition format.
    pub fn render(&self, server: &Server) -> String {
        let now = unix_now();
        let mut rows: Vec<(Arc<Mapping>, f64)> = Vec::with_capacity(server.key_count());
        {
            let mut cache = self.cache.lock();
            let expiry = cache.rules.expiry.as_secs();
            server.for_each_newest_number(|key, time, value| {
                if let Some(m) = cache.route(key) {
                    if m.builtin || now.saturating_sub(time) <= expiry {
                        let v = value * m.scale;
                        rows.push((m, v));
                    }
                }
            });
        }
        // A family's series must be together (families are interned: by pointer); two keys
        // mapped to one series keep the first.
        rows.sort_unstable_by(|a, b| {
            Arc::as_ptr(&a.0.family)
                .cmp(&Arc::as_ptr(&b.0.family))
                .then_with(|| a.0.suffix.cmp(b.0.suffix))
                .then_with(|| a.0.label_text.cmp(&b.0.label_text))
        });
        rows.dedup_by(|a, b| {
            Arc::ptr_eq(&a.0.family, &b.0.family)
                && a.0.suffix == b.0.suffix
                && a.0.label_text == b.0.label_text
        });

        let mut out = String::with_capacity(rows.len() * 64 + 512);
        let own = [
            (
                "spud_server_keys",
                "Keys stored, the server's own included.",
                server.key_count() as f64,
            ),
            (
                "spud_server_subscriptions",
                "Subscriptions, of every subscriber.",
                server.subscription_count() as f64,
            ),
            (
                "spud_server_uptime_seconds",
                "How long the server has run.",
                server.uptime().as_secs_f64(),
            ),
        ];
        for (name, help, value) in own {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        // What collectors say of the keys no rule matched, read once per family (the walk
        // above is over, so reading keys takes no lock it holds).
        let mut cache = self.cache.lock();
        let mut current: *const Family = std::ptr::null();
        for (m, value) in &rows {
            let family = m.family.name.as_str();
            if Arc::as_ptr(&m.family) != current {
                current = Arc::as_ptr(&m.family);
                let described = m.family.described_by.as_deref().and_then(|key| {
                    match cache.described.get(family) {
                        Some((help, at)) if help.is_some() || now < at + 60 => help.clone(),
                        _ => {
                            let help = describe(server, key);
                            cache
                                .described
                                .insert(family.to_string(), (help.clone(), now));
                            help
                        }
                    }
                });
                if let Some(help) = described.as_ref().or(m.family.help.as_ref()) {
                    let _ = writeln!(out, "# HELP {family} {}", help.replace('\n', " "));
                }
                let _ = writeln!(out, "# TYPE {family} {}", m.family.kind.as_str());
            }
            out.push_str(family);
            out.push_str(m.suffix);
            out.push_str(&m.label_text);
            out.push(' ');
            push_value(&mut out, *value);
            out.push('\n');
        }
        if let Some(alerts) = crate::alerts::Alerts::of(server) {
            render_alerts(&mut out, &alerts.active(None));
        }
        out
    }
}

/// A `HELP` from what the key's collector wrote beside it: munin's `graph_title`, the
/// field's `label` and `info`, and `graph_vlabel` (its unit); None without any.
fn describe(server: &Server, key: &str) -> Option<String> {
    let text = |k: &str| {
        server
            .get(k)
            .and_then(|h| {
                h.first()
                    .map(|s| s.value.to_string_lossy().trim().to_string())
            })
            .filter(|t| !t.is_empty())
    };
    let graph = key.rsplit_once('.').map_or(key, |(g, _)| g);
    let title = text(&format!("{graph}.graph_title"));
    let label = text(&format!("{key}.label"));
    let info = text(&format!("{key}.info")).or_else(|| text(&format!("{graph}.graph_info")));
    let unit = text(&format!("{graph}.graph_vlabel"));
    if title.is_none() && label.is_none() && info.is_none() {
        return None;
    }
    let mut help = [title, label]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    if let Some(info) = info {
        help = if help.is_empty() {
            info
        } else {
            format!("{help}. {info}")
        };
    }
    if let Some(unit) = unit {
        help = format!("{help} ({unit})");
    }
    Some(help)
}

/// Alert instances that are not ok, as Prometheus' own `ALERTS` series: `alertstate` is
/// `pending` or `firing`, `severity` the state (`warning`, `critical`, `nodata`,
/// `flapping`), beside the rule's labels and the key.
fn render_alerts(out: &mut String, rows: &[crate::alerts::engine::Row]) {
    if rows.is_empty() {
        return;
    }
    out.push_str("# HELP ALERTS Alert instances that are not ok.\n# TYPE ALERTS gauge\n");
    for row in rows {
        let mut labels = row.rule.labels.clone();
        labels.insert("alertname".into(), row.rule.name.clone());
        labels.insert("key".into(), row.key.to_string());
        let firing = row.state.is_firing();
        labels.insert(
            "alertstate".into(),
            if firing { "firing" } else { "pending" }.into(),
        );
        if firing {
            labels.insert("severity".into(), row.state.word().into());
        }
        out.push_str("ALERTS{");
        for (n, (name, value)) in labels.iter().enumerate() {
            if n > 0 {
                out.push(',');
            }
            let value = value
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = write!(out, "{name}=\"{value}\"");
        }
        out.push_str("} 1\n");
    }
}

/// Prometheus spells the non-finite values its own way.
fn push_value(out: &mut String, v: f64) {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        out.push_str(itoa::Buffer::new().format(v as i64));
    } else if v.is_nan() {
        out.push_str("NaN");
    } else if v.is_infinite() {
        out.push_str(if v > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{v}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;

    #[test]
    fn families_are_grouped_typed_and_deduplicated() {
        let server = Server::new(Config::default());
        server
            .set("memcached.a:11211.curr_items", "5", None)
            .unwrap();
        server
            .set("memcached.b:11211.curr_items", "7", None)
            .unwrap();
        server.set("web1.load", "0.5", None).unwrap();
        server.set("web1_load", "9", None).unwrap(); // maps to the same series as web1.load
        server.set("web1.status", "ok", None).unwrap(); // not a number
        server.set("old.key", "1", Some(unix_now() - 3600)).unwrap(); // expired
        let config: MetricsConfig = toml::from_str(
            r#"
            [[rule]]
            match = "memcached.*.curr_items"
            name = "memcached_curr_items"
            labels = { instance = "$1" }
            help = "Items stored."
            "#,
        )
        .unwrap();
        let exporter = Exporter::new(Rules::new(&config).unwrap());
        let text = exporter.render(&server);
        assert!(
            text.contains(
                "# HELP memcached_curr_items Items stored.\n# TYPE memcached_curr_items gauge\n\
             memcached_curr_items{instance=\"a:11211\"} 5\n\
             memcached_curr_items{instance=\"b:11211\"} 7\n"
            ),
            "{text}"
        );
        assert_eq!(text.matches("\nweb1_load ").count(), 1, "{text}");
        assert!(!text.contains("old_key"), "{text}");
        assert!(!text.contains("status"), "{text}");
        assert!(
            text.contains("# TYPE spud_server_keys gauge\nspud_server_keys 6\n"),
            "{text}"
        );
    }

    #[test]
    fn a_collectors_metadata_is_the_help_of_the_keys_no_rule_names() {
        let server = Server::new(Config::default());
        server.set("m.load.load", "0.5", None).unwrap();
        server
            .set("m.load.graph_title", "Load average", None)
            .unwrap();
        server.set("m.load.graph_vlabel", "load", None).unwrap();
        server.set("m.load.load.label", "load", None).unwrap();
        server.set("plain.key", "1", None).unwrap();
        let exporter = Exporter::new(Rules::new(&MetricsConfig::default()).unwrap());
        let text = exporter.render(&server);
        assert!(
            text.contains("# HELP m_load_load Load average: load (load)\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP plain_key The SPUD key plain.key.\n"),
            "{text}"
        );
    }
}
