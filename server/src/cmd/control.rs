//! Words answered by a registered `Control` (spud-host's `jobs`, `pause`, `resume`, `run`,
//! `reload`). Like `shutdown`, they need the admin role.

use super::Session;
use crate::auth::Role;
use crate::protocol::reply::Error;

/// Answers `word` if a registered control knows it; false if not (an unknown command).
pub(super) fn apply(word: &str, args: &[u8], s: &mut Session) -> bool {
    let Some(control) = s.server.control() else {
        return false;
    };
    let word = word.to_ascii_lowercase();
    if !control.commands().contains(&word.as_str()) {
        return false;
    }
    s.server.counters().add_command(&word, s.now);
    if !s.may(Role::Admin, "host control") {
        return true;
    }
    let args = String::from_utf8_lossy(args);
    match control.call(&word, args.trim()) {
        Ok(lines) => {
            let mut out = s.reply();
            out.begin();
            for line in &lines {
                out.ok(&[line.as_bytes()]);
            }
            out.ok(&[b"done"]);
            out.end();
        }
        Err(e) => s.reply().err(Error::Control(e.code, e.text)),
    }
    true
}
