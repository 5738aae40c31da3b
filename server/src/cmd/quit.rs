//! `quit`: close this connection after what was already answered; later lines are not run.

use super::Session;

pub(super) fn apply(s: &mut Session) {
    s.quit = true;
}
