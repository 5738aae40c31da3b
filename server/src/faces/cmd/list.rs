//! `list` answers this connection's subscriptions, `listall` everyone's, in the order
//! made: `OK <client> <converted pattern>`, then `OK done`.

use super::{Command, Count, Session};
use crate::access::auth::Role;
use crate::store::counters::Stat;

pub(super) const LIST: Command = Command {
    word: "list",
    prefix: false,
    count: Count::Stat(Stat::ComList),
    needs: Some(Role::Read),
    apply: |_, _, s| describe(false, s),
};

pub(super) const LISTALL: Command = Command {
    word: "listall",
    count: Count::Stat(Stat::ComListall),
    apply: |_, _, s| describe(true, s),
    ..LIST
};

fn describe(all: bool, s: &mut Session) {
    let only = (!all).then_some(s.sink.id);
    let subs = s.server.subscriptions().describe(only);
    let mut out = s.reply();
    for (client, pattern) in &subs {
        out.ok(&[client.as_bytes(), b" ", pattern]);
    }
    out.ok(&[b"done"]);
}
