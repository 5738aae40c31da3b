//! What each protocol command does, one file per command. `execute` takes one line, counts
//! it as the original did (`server.clients.process_lines`, `server.clients.commands`,
//! `server.com_<word>`) and hands its arguments to the command.

mod auth;
mod control;
mod get;
mod list;
mod quickset;
mod quit;
mod set;
mod shutdown;
mod sub;
mod uptime;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::{Role, Roles, Tokens};
use crate::counters::{LocalCounts, Stat};
use crate::outbox::Outbox;
use crate::protocol::parse;
use crate::protocol::reply::{Error, Reply};
use crate::subscriptions::Sink;
use crate::Server;

/// One connection's state, as the commands see it.
pub(crate) struct Session {
    pub(crate) server: Server,
    pub(crate) sink: Arc<Sink>,
    pub(crate) outbox: Arc<Outbox>,
    pub(crate) counts: LocalCounts,
    /// Inside a multi-line reply (for counting lines as buffered or immediate).
    pub(crate) buffering: bool,
    /// Unix seconds, read once per batch of lines.
    pub(crate) now: u64,
    /// Set by `quit` (and `shutdown`): no further line is executed.
    pub(crate) quit: bool,
    /// Stops the whole server.
    pub(crate) shutdown: CancellationToken,
    /// What this connection may do (see `crate::auth`).
    pub(crate) roles: Roles,
    /// The server's tokens, if it has any.
    pub(crate) tokens: Option<Arc<Tokens>>,
    /// Wrong secrets sent on this connection.
    pub(crate) failed_auths: u32,
}

impl Session {
    pub(crate) fn reply(&mut self) -> Reply<'_> {
        Reply::new(&self.outbox, &mut self.counts, &mut self.buffering)
    }

    /// Makes this connection's counts visible, for commands that read counters.
    pub(crate) fn flush_counts(&mut self) {
        self.counts.flush(self.server.counters(), self.now);
    }

    fn count_command(&mut self, stat: Stat) {
        self.counts.incr(stat);
    }

    /// Whether this connection may run `command`, which needs `role`; if not, says why.
    pub(crate) fn may(&mut self, role: Role, command: &'static str) -> bool {
        if self.roles.has(role) {
            return true;
        }
        let error = if self.tokens.is_none() {
            Error::NotAllowed
        } else {
            Error::AuthRequired(command, role)
        };
        self.reply().err(error);
        false
    }
}

/// Executes one line.
pub(crate) fn execute(line: &[u8], s: &mut Session) {
    s.counts.incr(Stat::ProcessLines);
    let Some((word, args)) = parse::command(line) else {
        return s.reply().err(Error::UnknownCommand);
    };
    s.counts.incr(Stat::Commands);
    let is = |name: &str| word.eq_ignore_ascii_case(name);
    if is("get") {
        s.count_command(Stat::ComGet);
        if s.may(Role::Read, "get") {
            get::apply(args, s);
        }
    } else if is("set") || is("qset") {
        let quiet = is("qset");
        s.count_command(if quiet { Stat::ComQset } else { Stat::ComSet });
        // A refused qset is answered too: silence would look like success.
        if s.may(Role::Write, "set") {
            set::apply(args, quiet, s);
        }
    } else if word.len() >= 3 && word[..3].eq_ignore_ascii_case("sub") {
        if is("sub") {
            s.count_command(Stat::ComSub);
        } else if is("subscribe") {
            s.count_command(Stat::ComSubscribe);
        } else {
            let word = word.to_ascii_lowercase();
            s.server.counters().add_command(&word, s.now);
        }
        if s.may(Role::Read, "sub") {
            sub::apply(args, s);
        }
    } else if is("list") || is("listall") {
        let all = is("listall");
        s.count_command(if all { Stat::ComListall } else { Stat::ComList });
        if s.may(Role::Read, "list") {
            list::apply(all, s);
        }
    } else if is("shutdown") {
        s.count_command(Stat::ComShutdown);
        if s.may(Role::Admin, "shutdown") {
            shutdown::apply(s);
        }
    } else if is("uptime") {
        s.count_command(Stat::ComUptime);
        if s.may(Role::Read, "uptime") {
            uptime::apply(s);
        }
    } else if is("quickset") {
        s.count_command(Stat::ComQuickset);
        if s.may(Role::Write, "quickset") {
            quickset::apply(args, s);
        }
    } else if is("auth") {
        s.server.counters().add_command("auth", s.now);
        auth::apply(args, s);
    } else if is("quit") {
        s.count_command(Stat::ComQuit);
        quit::apply(s);
    } else if !control::apply(word, args, s) {
        s.reply().err(Error::UnknownCommand);
    }
}
