//! `spud-host import-conf stats.conf`: the original gatherer's config as a `gatherer.toml`.
//!
//! The original's format (its `bin/gatherer`): `#` comments; `name = value` options
//! (`server`, `port`); `job: plugin(a, b)` jobs, the plugin's arguments positional; and
//! `plugin(a, b)` alone, a helper. Its plugins took the target first and the interval in
//! seconds second (`memcached(10.0.0.1:11211, 5)`), which become named options here.
//! What has no equivalent is kept as a comment saying what to do instead.

use std::fmt::Write as _;

/// What the original's plugins took, in order, as this host's options: the name of the
/// first argument's option, and the interval when none is given (the original's default).
fn positional(plugin: &str) -> Option<(&'static str, u64)> {
    match plugin {
        "memcached" | "perlbal" | "mogilefsd" => Some(("address", 5)),
        "mogstored" => Some(("url", 60)),
        "test" => Some(("", 1)),
        _ => None,
    }
}

/// The translation, and one line per thing that needs a person's attention.
pub struct Imported {
    pub toml: String,
    pub notes: Vec<String>,
}

/// Translates the text of an original `stats.conf` (named `source` in messages).
pub fn import(text: &str, source: &str) -> Result<Imported, String> {
    let mut options: Vec<(String, String)> = Vec::new();
    let mut jobs = String::new();
    let mut notes = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let at = format!("{source}:{}", n + 1);
        // As the original: `word = value` is an option.
        if let Some((name, value)) = option(line) {
            options.push((name.to_string(), value.to_string()));
            continue;
        }
        let (head, args) = match line.strip_suffix(')').and_then(|l| l.split_once('(')) {
            Some((head, args)) => (head.trim(), split_args(args)),
            None => (line, Vec::new()),
        };
        match head.split_once(':') {
            Some((job, plugin)) => {
                let (job, plugin) = (job.trim(), plugin.trim());
                if job.is_empty() || plugin.is_empty() {
                    return Err(format!("{at}: not `job: plugin(arguments)`: {line}"));
                }
                job_table(&mut jobs, &mut notes, &at, job, plugin, &args);
            }
            None => helper_table(&mut jobs, &mut notes, &at, head, &args),
        }
    }
    let mut toml = format!(
        "# Imported from {source} by `spud-host import-conf`: see docs/differences.md.\n\n"
    );
    server_section(&mut toml, &mut notes, &options, source);
    toml.push_str(&jobs);
    Ok(Imported { toml, notes })
}

/// `name = value`, as the original's `^(\w+)\s*=\s*(.+)$`.
fn option(line: &str) -> Option<(&str, &str)> {
    let (name, value) = line.split_once('=')?;
    let name = name.trim();
    let word = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    (word && !value.trim().is_empty()).then(|| (name, value.trim()))
}

/// The original split arguments on commas and trimmed each.
fn split_args(args: &str) -> Vec<String> {
    if args.trim().is_empty() {
        return Vec::new();
    }
    args.split(',').map(|a| a.trim().to_string()).collect()
}

fn quoted(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

fn server_section(
    out: &mut String,
    notes: &mut Vec<String>,
    options: &[(String, String)],
    source: &str,
) {
    let get = |name: &str| {
        options
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    match (get("server"), get("port")) {
        (Some(server), port) => {
            let port = port.unwrap_or("9107");
            let _ = writeln!(
                out,
                "# The original pushed to a separate stat server; delete `remote` to use this\n\
                 # host's embedded server instead (it speaks the same protocol).\n\
                 [server]\nremote = {}\n",
                quoted(&format!("{server}:{port}"))
            );
        }
        (None, Some(port)) => {
            let _ = writeln!(
                out,
                "[server]\nlisten = {}\n",
                quoted(&format!("127.0.0.1:{port}"))
            );
        }
        (None, None) => {}
    }
    let ssh: Vec<&(String, String)> = options
        .iter()
        .filter(|(n, _)| n.starts_with("ssh_"))
        .collect();
    if !ssh.is_empty() {
        let value = |name: &str| get(name).unwrap_or("?");
        let _ = writeln!(
            out,
            "# {source} configures the replicator, which is `spud replicate` now:\n\
             #   spud replicate --from-cmd 'ssh -i {} -p {} {}@{}' --to {}:{}\n\
             # with `spud cmdshell` as the far end's forced command (conf/sshd_config).\n",
            value("ssh_key"),
            value("ssh_port"),
            value("ssh_user"),
            value("ssh_host"),
            get("server").unwrap_or("127.0.0.1"),
            get("port").unwrap_or("9107"),
        );
        notes.push(format!(
            "{source}: ssh_* options belong to the replicator: run `spud replicate --from-cmd 'ssh …'` (written as a comment)"
        ));
    }
    for (name, value) in options {
        if !matches!(name.as_str(), "server" | "port") && !name.starts_with("ssh_") {
            let _ = writeln!(
                out,
                "# the original's option {name} = {value} has no equivalent\n"
            );
            notes.push(format!(
                "{source}: option {name} has no equivalent; left as a comment"
            ));
        }
    }
}

fn job_table(
    out: &mut String,
    notes: &mut Vec<String>,
    at: &str,
    job: &str,
    plugin: &str,
    args: &[String],
) {
    let _ = writeln!(
        out,
        "[[job]]\nname = {}\nplugin = {}",
        quoted(job),
        quoted(plugin)
    );
    match positional(plugin) {
        Some((first, default_interval)) => {
            let seconds = args
                .get(1)
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(default_interval);
            let _ = writeln!(out, "interval = \"{seconds}s\"");
            match args.first() {
                Some(target) if !first.is_empty() => {
                    let _ = writeln!(out, "options = {{ {first} = {} }}", quoted(target));
                }
                _ => {}
            }
            if args.len() > 2 {
                let _ = writeln!(
                    out,
                    "# the original's further arguments: {}",
                    args[2..].join(", ")
                );
                notes.push(format!(
                    "{at}: job {job}: arguments after the interval have no equivalent"
                ));
            }
        }
        None => {
            if !args.is_empty() {
                let _ = writeln!(
                    out,
                    "# the original's arguments, positional: {}\n# options = {{ … }}  (see the plugin's options in plugins/README.md)",
                    args.join(", ")
                );
            }
            notes.push(format!(
                "{at}: job {job}: plugin {plugin:?} is not one SPUD ships; give it a plugin of that name, or a munin/nagios/exec job"
            ));
        }
    }
    out.push('\n');
}

fn helper_table(
    out: &mut String,
    notes: &mut Vec<String>,
    at: &str,
    plugin: &str,
    args: &[String],
) {
    if plugin == "config_generator" {
        // LiveJournal's own server lists: a discovery file names the targets now.
        let _ = writeln!(
            out,
            "# The original's config_generator({}) read LiveJournal's server lists. List the\n\
             # targets in a file and let the discovery helper start a job for each:\n\
             # [[helper]]\n# plugin = \"discovery\"\n# options = {{ file = \"/etc/spud/targets.toml\" }}\n",
            args.join(", ")
        );
        notes.push(format!(
            "{at}: config_generator read LiveJournal's configuration; use the discovery helper with a targets file (written as a comment)"
        ));
        return;
    }
    let _ = writeln!(out, "[[helper]]\nplugin = {}", quoted(plugin));
    if !args.is_empty() {
        let _ = writeln!(
            out,
            "# the original's arguments, positional: {}",
            args.join(", ")
        );
    }
    out.push('\n');
    notes.push(format!(
        "{at}: helper {plugin}: check its options against the plugin's"
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_helpers_and_options_become_a_gatherer_toml() {
        let text = "# comment\nserver = 10.0.0.9\nport = 9107\n\n\
                    memcached.web1: memcached(10.0.0.1:11211, 10)\n\
                    lb: perlbal(10.0.0.5:60000)\n\
                    dev3: mogstored(http://10.0.0.7:7500/dev3/usage)\n\
                    heartbeat: test\n\
                    mysql.db1: mysql(10.0.0.2)\n\
                    config_generator(mysql = 5, perlbal = 5)\n";
        let imported = import(text, "stats.conf").unwrap();
        let parsed: toml::Table = toml::from_str(&imported.toml).unwrap();
        assert_eq!(parsed["server"]["remote"].as_str(), Some("10.0.0.9:9107"));
        let jobs = parsed["job"].as_array().unwrap();
        assert_eq!(jobs.len(), 5);
        assert_eq!(
            jobs[0]["options"]["address"].as_str(),
            Some("10.0.0.1:11211")
        );
        assert_eq!(jobs[0]["interval"].as_str(), Some("10s"));
        assert_eq!(jobs[1]["interval"].as_str(), Some("5s"));
        assert_eq!(
            jobs[2]["options"]["url"].as_str(),
            Some("http://10.0.0.7:7500/dev3/usage")
        );
        assert_eq!(jobs[2]["interval"].as_str(), Some("60s"));
        assert_eq!(jobs[3]["interval"].as_str(), Some("1s"));
        assert!(imported
            .notes
            .iter()
            .any(|n| n.contains("stats.conf:9: job mysql.db1")));
        assert!(imported
            .notes
            .iter()
            .any(|n| n.contains("config_generator")));
    }

    #[test]
    fn a_line_that_is_nothing_is_refused_with_its_place() {
        let e = import("server = x\n: memcached(1)\n", "s.conf")
            .err()
            .unwrap();
        assert!(
            e.starts_with("s.conf:2: not `job: plugin(arguments)`"),
            "{e}"
        );
    }
}
