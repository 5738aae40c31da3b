//! Words answered by a registered `Control` (spud-host's `jobs`, `pause`, `resume`, `run`,
//! `reload`). Like `shutdown`, they need the admin role.

use super::{Command, Count, Session};
use crate::access::auth::Role;
use crate::faces::protocol::reply::Error;

/// Any word a registered control answers, counted under that word.
const CONTROL: Command = Command {
    word: "host control",
    prefix: false,
    count: Count::Word,
    needs: Some(Role::Admin),
    apply,
};

/// The command for `word`, if a registered control answers it.
pub(super) fn lookup(word: &str, s: &Session) -> Option<&'static Command> {
    let control = s.server.control()?;
    let known = control
        .commands()
        .iter()
        .any(|c| c.eq_ignore_ascii_case(word));
    known.then_some(&CONTROL)
}

fn apply(word: &str, args: &[u8], s: &mut Session) {
    let Some(control) = s.server.control() else {
        return;
    };
    let word = word.to_ascii_lowercase();
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
}
