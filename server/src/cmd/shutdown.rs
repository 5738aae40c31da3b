//! `shutdown`: stop the server gracefully (flush replies, write the snapshot, exit 0).
//! Needs the admin role: without tokens, only a server listening on loopback alone gives it
//! to anyone.

use super::Session;

pub(super) fn apply(s: &mut Session) {
    tracing::info!(client = %s.sink.label, "shutdown requested");
    s.quit = true;
    s.shutdown.cancel();
}
