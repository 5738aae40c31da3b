//! `sub PATTERN` (any word starting with `sub`) subscribes this connection: every later set
//! of a matching key is pushed to it as `SET <time> <key> <value>`. Answers the converted
//! expression; the same pattern twice is answered twice and kept once.

use super::{Command, Count, Session};
use crate::access::auth::Role;
use crate::faces::protocol::parse;
use crate::faces::protocol::reply::Error;
use crate::store::counters::Stat;
use crate::Pattern;

pub(super) const SUB: Command = Command {
    word: "sub",
    prefix: false,
    count: Count::Stat(Stat::ComSub),
    needs: Some(Role::Read),
    apply,
};

pub(super) const SUBSCRIBE: Command = Command {
    word: "subscribe",
    count: Count::Stat(Stat::ComSubscribe),
    ..SUB
};

/// Any other word starting with `sub`, counted under that word.
pub(super) const SUB_ANY: Command = Command {
    prefix: true,
    count: Count::Word,
    ..SUB
};

fn apply(_: &str, args: &[u8], s: &mut Session) {
    if parse::is_missing(args) {
        return s.reply().err(Error::NoArgs);
    }
    let pattern = match Pattern::new(args) {
        Ok(p) => p,
        Err(e) => return s.reply().err(Error::BadPattern(e.reason)),
    };
    let converted = pattern.converted().to_vec();
    s.server.subscriptions().add(&s.sink, pattern);
    s.reply().ok(&[&converted]);
}
