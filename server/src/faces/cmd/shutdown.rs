//! `shutdown`: stop the server gracefully (flush replies, write the snapshot, exit 0).
//! Needs the admin role: without tokens, only a server listening on loopback alone gives it
//! to anyone.

use super::{Command, Count, Session};
use crate::access::auth::Role;
use crate::store::counters::Stat;

pub(super) const SHUTDOWN: Command = Command {
    word: "shutdown",
    prefix: false,
    count: Count::Stat(Stat::ComShutdown),
    needs: Some(Role::Admin),
    apply,
};

fn apply(_: &str, _: &[u8], s: &mut Session) {
    tracing::info!(client = %s.sink.label, "shutdown requested");
    s.quit = true;
    s.shutdown.cancel();
}
