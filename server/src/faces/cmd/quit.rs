//! `quit`: close this connection after what was already answered; later lines are not run.

use super::{Command, Count, Session};
use crate::store::counters::Stat;

pub(super) const QUIT: Command = Command {
    word: "quit",
    prefix: false,
    count: Count::Stat(Stat::ComQuit),
    needs: None,
    apply,
};

fn apply(_: &str, _: &[u8], s: &mut Session) {
    s.quit = true;
}
