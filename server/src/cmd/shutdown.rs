//! `shutdown`: stop the server gracefully (flush replies, write the snapshot, exit 0).
//! Only a server listening on loopback alone accepts it from anyone, as the original did.

use super::Session;
use crate::protocol::reply::Error;

pub(super) fn apply(s: &mut Session) {
    if !s.shutdown_allowed {
        return s.reply().err(Error::NotAllowed);
    }
    tracing::info!(client = %s.sink.label, "shutdown requested");
    s.quit = true;
    s.shutdown.cancel();
}
