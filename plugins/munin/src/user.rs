//! Whom a plugin runs as. As root, munin-node runs each plugin as its `user` (default
//! `nobody`) and `group` from plugin-conf.d; otherwise as whoever runs it. Names are
//! looked up in /etc/passwd and /etc/group.

use std::path::Path;

use crate::conf::Settings;

pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Who to run as, when that means switching (we are root); None otherwise.
pub fn identity(settings: &Settings) -> Option<Identity> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let name = settings
        .user
        .clone()
        .unwrap_or_else(|| "nobody".to_string());
    let (uid, primary) = lookup("/etc/passwd", &name).or_else(|| {
        let uid = name.parse().ok()?;
        Some((uid, uid))
    })?;
    // `adm, (Debian-exim)`: the first group that exists; parenthesised ones may not.
    let gid = settings
        .group
        .as_deref()
        .and_then(|groups| {
            groups
                .split(',')
                .map(|g| g.trim().trim_start_matches('(').trim_end_matches(')'))
                .find_map(|g| lookup("/etc/group", g).map(|(gid, _)| gid))
        })
        .unwrap_or(primary);
    Some(Identity { name, uid, gid })
}

/// The name of whoever runs this (for the state directory).
pub fn current_name() -> String {
    let uid = rustix::process::geteuid().as_raw();
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() > 3 && f[2] == uid.to_string()).then(|| f[0].to_string())
            })
        })
        .unwrap_or_else(|| uid.to_string())
}

/// `name:x:ID:PRIMARY…` → (ID, PRIMARY) (for /etc/group, PRIMARY is the ID again).
fn lookup(file: &str, name: &str) -> Option<(u32, u32)> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 3 || f[0] != name {
            return None;
        }
        let id = f[2].parse().ok()?;
        let primary = f.get(3).and_then(|g| g.parse().ok()).unwrap_or(id);
        Some((id, primary))
    })
}

/// The plugin state directory, owned by the plugin's user, as munin-node keeps it.
pub fn prepare_state_dir(dir: &Path, identity: &Identity) {
    if std::fs::create_dir_all(dir).is_ok() {
        let _ = rustix::fs::chown(
            dir,
            Some(rustix::fs::Uid::from_raw(identity.uid)),
            Some(rustix::fs::Gid::from_raw(identity.gid)),
        );
        // Its parents must let that user through.
        if let Some(parent) = dir.parent() {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o755));
        }
    }
}
