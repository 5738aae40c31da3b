//! `auth TOKEN`: take on a token's roles (new; a server without tokens needs none).
//! Wrong secrets are answered and counted; after a few the connection is closed, so one
//! connection cannot try many.

use super::{Command, Count, Session};
use crate::faces::protocol::reply::Error;

/// Wrong secrets one connection may send before it is closed.
const MAX_FAILURES: u32 = 3;

/// Anyone may authenticate; counted as `server.com_auth`.
pub(super) const AUTH: Command = Command {
    word: "auth",
    prefix: false,
    count: Count::Word,
    needs: None,
    apply,
};

fn apply(_: &str, args: &[u8], s: &mut Session) {
    let Some(tokens) = s.tokens.clone() else {
        return s.reply().ok(&[b"no authentication on this server"]);
    };
    let secret = args.trim_ascii();
    match tokens.check(secret) {
        Some((name, roles)) => {
            s.roles = roles;
            tracing::debug!(client = %s.sink.label, "authenticated as {name} ({})", roles.names());
            let text = format!("authenticated as {name} ({})", roles.names());
            s.reply().ok(&[text.as_bytes()]);
        }
        None => {
            s.failed_auths += 1;
            s.server.counters().add_command("auth_failed", s.now);
            tracing::warn!(client = %s.sink.label, "auth with an unknown secret");
            s.reply().err(Error::AuthFailed);
            if s.failed_auths >= MAX_FAILURES {
                s.quit = true;
            }
        }
    }
}
