//! `quickset on|off`: accepted silently, as in the original, where it changed nothing.

use super::{Command, Count, Session};
use crate::access::auth::Role;
use crate::faces::protocol::reply::Error;
use crate::store::counters::Stat;

pub(super) const QUICKSET: Command = Command {
    word: "quickset",
    prefix: false,
    count: Count::Stat(Stat::ComQuickset),
    needs: Some(Role::Write),
    apply,
};

fn apply(_: &str, args: &[u8], s: &mut Session) {
    if args != b"on" && args != b"off" {
        s.reply().err(Error::NotOnOrOff);
    }
}
