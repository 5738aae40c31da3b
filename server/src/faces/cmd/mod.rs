//! What each protocol command does, one file per command. Each file declares its
//! [`Command`]s (the word, the counter, the role it needs, the handler) and `COMMANDS` lists
//! them; `execute` takes one line, counts it as the original did
//! (`server.clients.process_lines`, `server.clients.commands`, `server.com_<word>`), checks
//! the role once, and hands the arguments to the handler.

mod alerts;
mod auth;
mod control;
mod get;
mod list;
mod quickset;
mod quit;
mod range;
mod set;
mod shutdown;
mod sub;
mod uptime;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::access::auth::{Role, Roles, Tokens};
use crate::faces::protocol::parse;
use crate::faces::protocol::reply::{Error, Reply};
use crate::store::counters::{LocalCounts, Stat};
use crate::store::outbox::Outbox;
use crate::store::subscriptions::Sink;
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
    /// What this batch's sets need of the write-ahead log (None: nothing logged).
    pub(crate) journal_ticket: Option<crate::store::journal::Ticket>,
    /// With `fsync = always`: where each set of this batch is acknowledged in the held
    /// outbox, and whether with an `OK` (a `qset` has none).
    pub(crate) acks: Vec<(usize, bool)>,
}

impl Session {
    pub(crate) fn reply(&mut self) -> Reply<'_> {
        Reply::new(&self.outbox, &mut self.counts, &mut self.buffering)
    }

    /// Makes this connection's counts visible, for commands that read counters.
    pub(crate) fn flush_counts(&mut self) {
        self.counts.flush(self.server.counters(), self.now);
    }

    /// Whether this connection may run `command`, which needs `role`; if not, says why.
    fn may(&mut self, role: Role, command: &'static str) -> bool {
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

/// One protocol command.
pub(crate) struct Command {
    /// The word it answers, in any case; also names it in a role error.
    pub(crate) word: &'static str,
    /// Answers any word starting with `word`.
    pub(crate) prefix: bool,
    /// How it is counted.
    pub(crate) count: Count,
    /// The role a connection needs to run it; None for anyone.
    pub(crate) needs: Option<Role>,
    /// Runs it, given the word as sent and the rest of the line.
    pub(crate) apply: fn(word: &str, args: &[u8], s: &mut Session),
}

/// How a command is counted.
pub(crate) enum Count {
    /// Its own counter (`server.com_get`).
    Stat(Stat),
    /// `server.com_<word>`, under the word as sent (lowercased).
    Word,
}

/// Every command, exact words before the prefix that would also match them.
const COMMANDS: &[Command] = &[
    get::GET,
    set::SET,
    set::QSET,
    sub::SUB,
    sub::SUBSCRIBE,
    sub::SUB_ANY,
    list::LIST,
    list::LISTALL,
    shutdown::SHUTDOWN,
    uptime::UPTIME,
    quickset::QUICKSET,
    auth::AUTH,
    alerts::ALERTS,
    range::RANGE,
    quit::QUIT,
];

impl Command {
    fn answers(&self, word: &str) -> bool {
        if self.prefix {
            word.len() >= self.word.len()
                && word.as_bytes()[..self.word.len()].eq_ignore_ascii_case(self.word.as_bytes())
        } else {
            word.eq_ignore_ascii_case(self.word)
        }
    }
}

/// Executes one line.
pub(crate) fn execute(line: &[u8], s: &mut Session) {
    s.counts.incr(Stat::ProcessLines);
    let Some((word, args)) = parse::command(line) else {
        return s.reply().err(Error::UnknownCommand);
    };
    s.counts.incr(Stat::Commands);
    let command = COMMANDS
        .iter()
        .find(|c| c.answers(word))
        .or_else(|| control::lookup(word, s));
    let Some(command) = command else {
        return s.reply().err(Error::UnknownCommand);
    };
    match command.count {
        Count::Stat(stat) => s.counts.incr(stat),
        Count::Word => {
            let word = word.to_ascii_lowercase();
            s.server.counters().add_command(&word, s.now);
        }
    }
    if let Some(role) = command.needs {
        if !s.may(role, command.word) {
            return;
        }
    }
    (command.apply)(word, args, s);
}
