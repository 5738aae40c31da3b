//! Plugin directory safety: a plugin runs with the host's rights, so whoever can write its
//! file (or the directory that holds it) owns the host. Refused: files or a directory
//! writable by group or others, and files owned by anyone but the host's user or root.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

/// Why a plugin file (or the plugins directory) is refused, in one line; None if it is safe.
pub fn problem(path: &Path, meta: &Metadata, is_dir: bool) -> Option<String> {
    let mode = meta.permissions().mode() & 0o7777;
    let what = if is_dir {
        "the plugins directory"
    } else {
        "plugin file"
    };
    let ours = unsafe { libc::geteuid() };
    if meta.uid() != ours && meta.uid() != 0 {
        return Some(format!(
            "{what} {} refused: owned by uid {}, not by this host's user (uid {ours}) or root; \
             chown it",
            path.display(),
            meta.uid()
        ));
    }
    // A sticky directory (like /tmp) still lets others add files: refused all the same.
    let writable_by = match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (_, true) => "others",
        (true, false) => "its group",
        (false, false) => return None,
    };
    Some(format!(
        "{what} {} refused: writable by {writable_by} (mode {mode:04o}); `chmod go-w` it",
        path.display()
    ))
}

/// Checks the plugins directory itself.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| format!("cannot read the plugins directory {}: {e}", dir.display()))?;
    match problem(dir, &meta, true) {
        Some(p) => Err(p),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn with_mode(mode: u32) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.so");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(mode)).unwrap();
        problem(&file, &fs::metadata(&file).unwrap(), false)
    }

    #[test]
    fn owner_writable_only_is_accepted() {
        assert_eq!(with_mode(0o644), None);
        assert_eq!(with_mode(0o755), None);
        assert_eq!(with_mode(0o600), None);
    }

    #[test]
    fn group_or_world_writable_is_refused_with_the_mode() {
        let group = with_mode(0o664).unwrap();
        assert!(
            group.contains("writable by its group (mode 0664)"),
            "{group}"
        );
        let others = with_mode(0o646).unwrap();
        assert!(
            others.contains("writable by others (mode 0646)"),
            "{others}"
        );
    }
}
