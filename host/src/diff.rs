//! Reloading a config is a diff of the whole file, as a pure function, so that what a reload
//! will do can be tested without running it: which jobs to add, change or remove (by name),
//! which helpers, whether `[vars]` or `[metrics]` changed, which `[[output]]`s to start, replace
//! or stop (by name), whether the remote server moved, and which fields changed that only a
//! restart can apply (each named, so that one line can say so while the rest is applied).

use crate::config::{Config, HelperConfig};
use crate::model::JobSpec;
use crate::sinks::outputs::OutputConfig;

/// What turning one whole config into another takes.
#[derive(Debug, Default)]
pub struct ConfigDiff<'a> {
    pub jobs: Diff<'a>,
    pub helpers_to_add: Vec<&'a HelperConfig>,
    pub helpers_to_remove: Vec<&'a HelperConfig>,
    pub vars: bool,
    pub metrics: bool,
    /// `[[output]]`s by name: new ones, changed ones (with their new settings), gone ones.
    pub outputs_to_add: Vec<(String, &'a OutputConfig)>,
    pub outputs_to_change: Vec<(String, &'a OutputConfig)>,
    pub outputs_to_remove: Vec<String>,
    /// The remote server's address, credentials or buffer changed (a remote to a remote).
    pub remote: bool,
    /// Fields that changed but take effect only when spud-host restarts.
    pub need_restart: Vec<&'static str>,
}

impl ConfigDiff<'_> {
    /// Whether anything that applies live changed.
    pub fn is_live_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.helpers_to_add.is_empty()
            && self.helpers_to_remove.is_empty()
            && !self.vars
            && !self.metrics
            && self.outputs_to_add.is_empty()
            && self.outputs_to_change.is_empty()
            && self.outputs_to_remove.is_empty()
            && !self.remote
    }
}

/// The changes from `old` to `new`; `old_jobs` and `new_jobs` are their job specs.
pub fn config_diff<'a>(
    old: &'a Config,
    new: &'a Config,
    old_jobs: &'a [JobSpec],
    new_jobs: &'a [JobSpec],
) -> ConfigDiff<'a> {
    let mut d = ConfigDiff {
        jobs: diff(old_jobs, new_jobs),
        vars: old.vars != new.vars,
        metrics: old.metrics_rules() != new.metrics_rules(),
        ..ConfigDiff::default()
    };
    d.helpers_to_add = new
        .helpers
        .iter()
        .filter(|h| !old.helpers.contains(h))
        .collect();
    d.helpers_to_remove = old
        .helpers
        .iter()
        .filter(|h| !new.helpers.contains(h))
        .collect();

    let named = |c: &'a Config| -> Vec<(String, &'a OutputConfig)> {
        c.outputs
            .iter()
            .enumerate()
            .map(|(i, o)| (o.name(i), o))
            .collect()
    };
    let (before, after) = (named(old), named(new));
    for (name, output) in &after {
        match before.iter().find(|(n, _)| n == name) {
            None => d.outputs_to_add.push((name.clone(), output)),
            Some((_, was)) if was != output => d.outputs_to_change.push((name.clone(), output)),
            Some(_) => {}
        }
    }
    for (name, _) in &before {
        if !after.iter().any(|(n, _)| n == name) {
            d.outputs_to_remove.push(name.clone());
        }
    }

    let (o, n) = (&old.server, &new.server);
    match (&o.remote, &n.remote) {
        (Some(_), Some(_)) => {
            d.remote = o.remote != n.remote
                || o.buffer != n.buffer
                || o.token_file != n.token_file
                || o.tls_ca != n.tls_ca
                || o.embedded.tls_cert != n.embedded.tls_cert
                || o.embedded.tls_key != n.embedded.tls_key;
        }
        (None, None) => d
            .need_restart
            .extend(embedded_changes(&o.embedded, &n.embedded)),
        _ => d.need_restart.push("[server] remote"),
    }
    if old.munin != new.munin {
        d.need_restart.push("[munin]");
    }
    if old.archive != new.archive {
        d.need_restart.push("[archive]");
    }
    if old.history != new.history {
        d.need_restart.push("[history]");
    }
    let (o, n) = (&old.host, &new.host);
    for (field, changed) in [
        ("[host] plugins", o.plugins != n.plugins),
        ("[host] workers", o.workers != n.workers),
        ("[host] control", o.control != n.control),
        (
            "[host] worker_memory_mib",
            o.worker_memory_mib != n.worker_memory_mib,
        ),
        (
            "[host] worker_threads",
            o.worker_threads != n.worker_threads,
        ),
        // Every running plugin was checked against the keys in force when it loaded: a
        // restart checks them all again under the new ones.
        ("[host] trusted_keys", o.trust != n.trust),
    ] {
        if changed {
            d.need_restart.push(field);
        }
    }
    d
}

/// The embedded server's fields that differ: its listeners and files are opened at start.
fn embedded_changes(o: &spud_server::Settings, n: &spud_server::Settings) -> Vec<&'static str> {
    [
        ("[server] listen", o.listen != n.listen),
        ("[server] http", o.http != n.http),
        ("[server] history", o.history != n.history),
        ("[server] state", o.state != n.state),
        ("[server] fsync", o.fsync != n.fsync),
        (
            "[server] snapshot_every",
            o.snapshot_every != n.snapshot_every,
        ),
        ("[server] max_line", o.max_line != n.max_line),
        ("[server] max_pending", o.max_pending != n.max_pending),
        ("[server] rules", o.rules != n.rules),
        ("[server] archive", o.archive != n.archive),
        ("[server] rrdcached", o.rrdcached != n.rrdcached),
        ("[server] archive_flush", o.archive_flush != n.archive_flush),
        ("[server] promql", o.promql != n.promql),
        ("[server] tokens", o.tokens != n.tokens),
        ("[server] no_auth", o.no_auth != n.no_auth),
        ("[server] tls_cert", o.tls_cert != n.tls_cert),
        ("[server] tls_key", o.tls_key != n.tls_key),
        ("[server] tls_client_ca", o.tls_client_ca != n.tls_client_ca),
    ]
    .into_iter()
    .filter_map(|(field, changed)| changed.then_some(field))
    .collect()
}

/// What runs after a reload: `new`, less what only a restart applies, which stays as in
/// `old` (so that editing it back is no change).
pub fn running(old: &Config, new: &Config) -> Config {
    let mut running = new.clone();
    match (&old.server.remote, &new.server.remote) {
        (Some(_), Some(_)) => {}
        (None, None) => running.server.embedded = old.server.embedded.clone(),
        _ => running.server = old.server.clone(),
    }
    running.munin = old.munin.clone();
    running.archive = old.archive.clone();
    running.history = old.history.clone();
    running.host.plugins = old.host.plugins.clone();
    running.host.workers = old.host.workers;
    running.host.control = old.host.control;
    running.host.worker_memory_mib = old.host.worker_memory_mib;
    running.host.worker_threads = old.host.worker_threads;
    running.host.trusted_keys = old.host.trusted_keys.clone();
    running.host.trusted_keys_file = old.host.trusted_keys_file.clone();
    running.host.trust = old.host.trust.clone();
    running
}

/// What turning `old` into `new` takes.
#[derive(Debug, Default, PartialEq)]
pub struct Diff<'a> {
    /// In `new` only.
    pub to_add: Vec<&'a JobSpec>,
    /// In both, with any difference (plugin, interval, timeout or options).
    pub to_change: Vec<&'a JobSpec>,
    /// In `old` only.
    pub to_remove: Vec<&'a str>,
}

impl Diff<'_> {
    pub fn is_empty(&self) -> bool {
        self.to_add.is_empty() && self.to_change.is_empty() && self.to_remove.is_empty()
    }
}

/// The changes from `old` to `new`, each list in the order of the config it comes from.
pub fn diff<'a>(old: &'a [JobSpec], new: &'a [JobSpec]) -> Diff<'a> {
    let find = |list: &'a [JobSpec], name: &str| list.iter().find(|j| j.name == name);
    let mut d = Diff::default();
    for job in new {
        match find(old, &job.name) {
            None => d.to_add.push(job),
            Some(before) if before != job => d.to_change.push(job),
            Some(_) => {}
        }
    }
    for job in old {
        if find(new, &job.name).is_none() {
            d.to_remove.push(&job.name);
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("gatherer.toml")).unwrap()
    }

    fn whole(old: &str, new: &str, check: impl FnOnce(&ConfigDiff<'_>)) {
        let (old, new) = (config(old), config(new));
        let (a, b) = (old.job_specs(), new.job_specs());
        check(&config_diff(&old, &new, &a, &b));
    }

    const OUTPUT: &str = "[[output]]\ntype = \"prometheus_remote_write\"\nname = \"vm\"\nurl = \"http://127.0.0.1:1/api/v1/write\"\n";

    #[test]
    fn a_whole_config_diff_names_each_part_that_changed() {
        let base = "[server]\nremote = \"a:1\"\n[vars]\nx = 1\n";
        whole(base, base, |d| {
            assert!(d.is_live_empty() && d.need_restart.is_empty(), "{d:?}")
        });
        whole(base, "[server]\nremote = \"b:1\"\n[vars]\nx = 2\n", |d| {
            assert!(d.remote && d.vars);
            assert!(d.need_restart.is_empty(), "a remote moves live: {d:?}");
        });
        whole(base, &format!("{base}{OUTPUT}"), |d| {
            assert_eq!(d.outputs_to_add.len(), 1);
            assert_eq!(d.outputs_to_add[0].0, "vm");
        });
        let changed = OUTPUT.replace("127.0.0.1:1", "127.0.0.1:2");
        whole(
            &format!("{base}{OUTPUT}"),
            &format!("{base}{changed}"),
            |d| {
                assert_eq!(d.outputs_to_change.len(), 1);
                assert!(d.outputs_to_add.is_empty() && d.outputs_to_remove.is_empty());
            },
        );
        whole(&format!("{base}{OUTPUT}"), base, |d| {
            assert_eq!(d.outputs_to_remove, ["vm"])
        });
        whole(
            base,
            "[server]\nremote = \"a:1\"\n[metrics]\nunmatched = \"drop\"\n[vars]\nx = 1\n",
            |d| assert!(d.metrics && !d.vars),
        );
    }

    #[test]
    fn the_shipped_configs_diff_against_themselves_and_each_other() {
        let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf");
        let configs: Vec<Config> = ["gatherer.toml", "gatherer.example.toml"]
            .iter()
            .map(|f| {
                let path = conf.join(f);
                Config::parse(&std::fs::read_to_string(&path).unwrap(), &path).unwrap()
            })
            .collect();
        for a in &configs {
            for b in &configs {
                let (x, y) = (a.job_specs(), b.job_specs());
                let d = config_diff(a, b, &x, &y);
                if std::ptr::eq(a, b) {
                    assert!(d.is_live_empty() && d.need_restart.is_empty(), "{d:?}");
                } else {
                    assert!(!d.jobs.is_empty());
                }
            }
        }
    }

    #[test]
    fn what_only_a_restart_applies_is_named_and_kept_running() {
        let base = "[server]\nlisten = \"127.0.0.1:1\"\n[host]\nworkers = 4\n";
        let edited = "[server]\nlisten = \"127.0.0.1:2\"\nhttp = \"off\"\n[host]\nworkers = 8\n[vars]\nx = 1\n";
        whole(base, edited, |d| {
            assert_eq!(
                d.need_restart,
                ["[server] listen", "[server] http", "[host] workers"]
            );
            assert!(d.vars, "the rest is applied");
        });
        whole(
            base,
            "[server]\nremote = \"a:1\"\n[host]\nworkers = 4\n",
            |d| assert_eq!(d.need_restart, ["[server] remote"]),
        );
        let (old, new) = (config(base), config(edited));
        let kept = running(&old, &new);
        assert_eq!(kept.server, old.server);
        assert_eq!(kept.host.workers, 4);
        assert_eq!(kept.vars, new.vars);
        // Editing it back is then no change at all.
        let (a, b) = (kept.job_specs(), old.job_specs());
        let back = config_diff(&kept, &old, &a, &b);
        assert!(back.need_restart.is_empty(), "{back:?}");
    }

    fn job(name: &str, plugin: &str, interval_s: u64, options: &str) -> JobSpec {
        JobSpec {
            isolation: Default::default(),
            name: name.into(),
            plugin: plugin.into(),
            interval: Duration::from_secs(interval_s),
            timeout: Duration::from_secs(3),
            options: toml::from_str(options).unwrap(),
        }
    }

    fn names(jobs: &[&JobSpec]) -> Vec<String> {
        jobs.iter().map(|j| j.name.clone()).collect()
    }

    #[test]
    fn identical_configs_change_nothing() {
        let a = vec![job("a", "p", 5, "x = 1"), job("b", "p", 5, "")];
        assert!(diff(&a, &a.clone()).is_empty());
    }

    #[test]
    fn adds_changes_and_removes_by_name() {
        let old = vec![
            job("same", "p", 5, ""),
            job("options", "p", 5, "x = 1"),
            job("interval", "p", 5, ""),
            job("plugin", "p", 5, ""),
            job("gone", "p", 5, ""),
        ];
        let new = vec![
            job("plugin", "q", 5, ""),
            job("interval", "p", 10, ""),
            job("same", "p", 5, ""),
            job("options", "p", 5, "x = 2"),
            job("new", "p", 5, ""),
        ];
        let d = diff(&old, &new);
        assert_eq!(names(&d.to_add), ["new"]);
        assert_eq!(names(&d.to_change), ["plugin", "interval", "options"]);
        assert_eq!(d.to_remove, ["gone"]);
    }

    #[test]
    fn order_alone_is_no_change() {
        let a = vec![job("a", "p", 5, ""), job("b", "p", 5, "")];
        let b = vec![job("b", "p", 5, ""), job("a", "p", 5, "")];
        assert!(diff(&a, &b).is_empty());
    }

    #[test]
    fn option_tables_compare_by_value() {
        let a = vec![job("a", "p", 5, "x = 1\ny = \"s\"")];
        let b = vec![job("a", "p", 5, "y = \"s\"\nx = 1")];
        assert!(diff(&a, &b).is_empty());
        let c = vec![job("a", "p", 5, "y = \"s\"\nx = 1.0")];
        assert_eq!(names(&diff(&a, &c).to_change), ["a"]);
    }
}
