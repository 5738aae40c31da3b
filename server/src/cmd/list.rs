//! `list` answers this connection's subscriptions, `listall` everyone's, in the order
//! made: `OK <client> <converted pattern>`, then `OK done`.

use super::Session;

pub(super) fn apply(all: bool, s: &mut Session) {
    let only = (!all).then_some(s.sink.id);
    let subs = s.server.subscriptions().describe(only);
    let mut out = s.reply();
    for (client, pattern) in &subs {
        out.ok(&[client.as_bytes(), b" ", pattern]);
    }
    out.ok(&[b"done"]);
}
