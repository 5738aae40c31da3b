//! A helper (the original's `config_generator`, without LiveJournal's config): reads a file
//! of target groups, in the spirit of Prometheus' `file_sd`, and wants one job per target.
//! Each target becomes the `address` option of a job of the group's plugin, named
//! `<plugin>.<target>` unless the group gives a `prefix`. Edit the file and, on the helper's
//! next round, new targets start, vanished ones stop, and the rest are left alone.
//!
//! TOML (`*.toml`):
//! ```toml
//! [[group]]
//! plugin = "memcached"
//! targets = ["10.0.0.1:11211", "10.0.0.2:11211"]
//! interval = "10s"             # optional
//! options = { slabs = true }   # optional, given to every job of the group
//! ```
//! JSON (any other name): `[{"plugin": "memcached", "targets": ["10.0.0.1:11211"]}]`.
//!
//! In `gatherer.toml`:
//! ```toml
//! [[helper]]
//! plugin = "discovery"
//! interval = "30s"
//! options = { file = "targets.toml" }
//! ```

use spud_plugin_api::serde::Deserialize;
use spud_plugin_api::toml;
use spud_plugin_api::{export_plugin, Collector, Error, Host, Job, JobDef, Plugin};

/// The discovery helper.
pub struct Discovery;

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Options {
    /// The file of target groups.
    file: String,
}

#[derive(Deserialize)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct TomlFile {
    #[serde(default)]
    group: Vec<Group>,
}

#[derive(Deserialize, Debug)]
#[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
struct Group {
    plugin: String,
    targets: Vec<String>,
    /// Job names are `<prefix>.<target>`; the plugin's name by default.
    prefix: Option<String>,
    interval: Option<String>,
    #[serde(default)]
    options: toml::Table,
}

impl Plugin for Discovery {
    const NAME: &'static str = "discovery";
    const DESCRIPTION: &'static str = "One job per target listed in a file";
    const IS_HELPER: bool = true;

    fn new_job(job: &Job, _host: Host) -> Result<Collector, Error> {
        Err(format!(
            "job {}: discovery is a helper: use it in [[helper]], not [[job]]",
            job.name
        ))
    }

    fn helper_jobs(job: &Job, _host: Host) -> Result<Vec<JobDef>, Error> {
        let options: Options = job.options()?;
        let text =
            std::fs::read_to_string(&options.file).map_err(|e| format!("{}: {e}", options.file))?;
        let groups = parse(&options.file, &text)?;
        jobs(&options.file, groups)
    }
}

fn parse(file: &str, text: &str) -> Result<Vec<Group>, Error> {
    if file.ends_with(".toml") {
        toml::from_str::<TomlFile>(text)
            .map(|f| f.group)
            .map_err(|e| format!("{file}: {}", e.message().trim()))
    } else {
        // JSON options arrive as a JSON object; TOML tables are what jobs take.
        #[derive(Deserialize)]
        #[serde(crate = "spud_plugin_api::serde", deny_unknown_fields)]
        struct JsonGroup {
            plugin: String,
            targets: Vec<String>,
            prefix: Option<String>,
            interval: Option<String>,
            #[serde(default)]
            options: serde_json::Map<String, serde_json::Value>,
        }
        let groups: Vec<JsonGroup> =
            serde_json::from_str(text).map_err(|e| format!("{file}: {e}"))?;
        groups
            .into_iter()
            .map(|g| {
                let options = toml::Table::try_from(serde_json::Value::Object(g.options))
                    .map_err(|e| format!("{file}: options of {}: {e}", g.plugin))?;
                Ok(Group {
                    plugin: g.plugin,
                    targets: g.targets,
                    prefix: g.prefix,
                    interval: g.interval,
                    options,
                })
            })
            .collect()
    }
}

fn jobs(file: &str, groups: Vec<Group>) -> Result<Vec<JobDef>, Error> {
    let mut jobs = Vec::new();
    for group in groups {
        let interval =
            match &group.interval {
                None => None,
                Some(text) => Some(humantime::parse_duration(text).map_err(|e| {
                    format!("{file}: group {}: interval {text:?}: {e}", group.plugin)
                })?),
            };
        let prefix = group.prefix.as_deref().unwrap_or(&group.plugin);
        for target in &group.targets {
            let mut options = group.options.clone();
            options.insert("address".into(), target.clone().into());
            jobs.push(JobDef {
                name: format!("{prefix}.{}", spud_plugin_api::key_safe(target)),
                plugin: group.plugin.clone(),
                options,
                interval,
            });
        }
    }
    Ok(jobs)
}

export_plugin!(Discovery);

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn toml_and_json_give_the_same_jobs() {
        let t = parse(
            "t.toml",
            "[[group]]\nplugin = \"memcached\"\ntargets = [\"10.0.0.1:11211\", \"h/x\"]\ninterval = \"10s\"\noptions = { slabs = true }\n",
        )
        .unwrap();
        let j = parse(
            "t.json",
            r#"[{"plugin": "memcached", "targets": ["10.0.0.1:11211", "h/x"], "interval": "10s", "options": {"slabs": true}}]"#,
        )
        .unwrap();
        let (t, j) = (jobs("t", t).unwrap(), jobs("t", j).unwrap());
        assert_eq!(t, j);
        assert_eq!(t[0].name, "memcached.10.0.0.1:11211");
        assert_eq!(t[1].name, "memcached.h_x");
        assert_eq!(t[0].options["address"].as_str(), Some("10.0.0.1:11211"));
        assert_eq!(t[0].options["slabs"].as_bool(), Some(true));
        assert_eq!(t[0].interval, Some(Duration::from_secs(10)));
    }

    #[test]
    fn mistakes_name_the_file() {
        let e = parse("t.toml", "[[group]]\nplugn = \"x\"\n").unwrap_err();
        assert!(e.starts_with("t.toml: unknown field `plugn`"), "{e}");
        let e = jobs(
            "t",
            parse(
                "t.json",
                r#"[{"plugin": "m", "targets": ["a"], "interval": "soon"}]"#,
            )
            .unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("interval \"soon\""), "{e}");
    }
}
