//! `uptime`: how long the server has run, and how many subscriptions and keys it holds
//! (the server's own `server.*` keys included).

use super::{Command, Count, Session};
use crate::access::auth::Role;
use crate::store::counters::Stat;

pub(super) const UPTIME: Command = Command {
    word: "uptime",
    prefix: false,
    count: Count::Stat(Stat::ComUptime),
    needs: Some(Role::Read),
    apply,
};

fn apply(_: &str, _: &[u8], s: &mut Session) {
    let c = s.server.uptime().as_secs();
    let line = format!(
        "stats-server up {} days {:02}:{:02}:{:02}",
        c / 86400,
        (c % 86400) / 3600,
        (c % 3600) / 60,
        c % 60
    );
    let mut out = s.reply();
    out.begin();
    out.ok(&[line.as_bytes()]);
    // The key count includes the counters this very command just created.
    s.flush_counts();
    let line = format!(
        "{} subscriptions, {} total keys",
        s.server.subscription_count(),
        s.server.key_count()
    );
    let mut out = s.reply();
    out.ok(&[line.as_bytes()]);
    out.ok(&[b"done"]);
    out.end();
}
