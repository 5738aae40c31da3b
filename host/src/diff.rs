//! Reloading a config is a diff: which jobs to add, which to change, which to remove, by
//! name. A pure function, so that what a reload will do can be tested without running it.

use crate::model::JobSpec;

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
    use std::time::Duration;

    use super::*;

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
