//! `plugin-conf.d`, as munin-node reads it: every file in the directory, sections named
//! after a plugin (`[load]`) or a glob (`[if_*]`, `[*]`), each with `env.NAME value`,
//! `user`, `group`, `timeout` (seconds) and `command` (`%c` is the plugin). Glob sections
//! apply first, in the order read, then the plugin's own section, so the specific wins.

use std::collections::BTreeMap;
use std::path::Path;

/// What applies to one plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub env: BTreeMap<String, String>,
    pub user: Option<String>,
    /// Groups as written: `adm, (Debian-exim)`; parenthesised ones are optional.
    pub group: Option<String>,
    pub timeout: Option<u64>,
    pub command: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Conf {
    sections: Vec<(String, Vec<(String, String)>)>,
}

impl Conf {
    /// Reads every file of `dir` (not dot files or `~` backups), in name order.
    pub fn load(dir: &Path) -> Result<Conf, String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                p.is_file() && !name.starts_with('.') && !name.ends_with('~')
            })
            .collect();
        names.sort();
        let mut conf = Conf::default();
        for path in names {
            let text =
                std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            conf.add(&text);
        }
        Ok(conf)
    }

    pub fn add(&mut self, text: &str) {
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                self.sections.push((name.trim().to_string(), Vec::new()));
            } else if let Some((_, settings)) = self.sections.last_mut() {
                let (key, value) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
                settings.push((key.to_string(), value.trim().to_string()));
            }
        }
    }

    /// The settings for `plugin` (its file name, `if_eth0`).
    pub fn for_plugin(&self, plugin: &str) -> Settings {
        let globs = self
            .sections
            .iter()
            .filter(|(name, _)| name.contains('*') && glob(name, plugin));
        let own = self.sections.iter().filter(|(name, _)| name == plugin);
        let mut settings = Settings::default();
        for (_, lines) in globs.chain(own) {
            for (key, value) in lines {
                match key.as_str() {
                    "user" => settings.user = Some(value.clone()),
                    "group" => settings.group = Some(value.clone()),
                    "timeout" => settings.timeout = value.parse().ok(),
                    "command" => settings.command = Some(value.clone()),
                    k => {
                        if let Some(name) = k.strip_prefix("env.") {
                            settings.env.insert(name.to_string(), value.clone());
                        }
                    }
                }
            }
        }
        settings
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || name.len() < first.len() + last.len() || !name.ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(at) => rest = &rest[at + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_first_then_the_plugins_own_section() {
        let mut conf = Conf::default();
        conf.add("[*]\nenv.everyone 1\ntimeout 20\n\n[df*]\nenv.warning 92\nenv.critical 98 # comment\n\n[df]\nenv.warning 80\nuser root\ngroup adm, (Debian-exim)\ncommand /usr/bin/nice %c\n");
        let s = conf.for_plugin("df");
        assert_eq!(s.env["warning"], "80");
        assert_eq!(s.env["critical"], "98");
        assert_eq!(s.env["everyone"], "1");
        assert_eq!((s.user.as_deref(), s.timeout), (Some("root"), Some(20)));
        assert_eq!(s.group.as_deref(), Some("adm, (Debian-exim)"));
        assert_eq!(s.command.as_deref(), Some("/usr/bin/nice %c"));
        let s = conf.for_plugin("df_inode");
        assert_eq!((s.env["warning"].as_str(), s.user), ("92", None));
        assert!(conf.for_plugin("load").env.contains_key("everyone"));
        assert!(glob("if_*", "if_eth0") && !glob("if_*", "cpu") && glob("*_err_*", "if_err_eth0"));
    }
}
