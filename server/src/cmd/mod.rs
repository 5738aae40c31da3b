//! What each protocol command does, one file per command. `execute` takes one line, counts
//! it as the original did (`server.clients.process_lines`, `server.clients.commands`,
//! `server.com_<word>`) and hands its arguments to the command.

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
    pub(crate) shutdown_allowed: bool,
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
        get::apply(args, s);
    } else if is("set") || is("qset") {
        let quiet = is("qset");
        s.count_command(if quiet { Stat::ComQset } else { Stat::ComSet });
        set::apply(args, quiet, s);
    } else if word.len() >= 3 && word[..3].eq_ignore_ascii_case("sub") {
        if is("sub") {
            s.count_command(Stat::ComSub);
        } else if is("subscribe") {
            s.count_command(Stat::ComSubscribe);
        } else {
            let word = word.to_ascii_lowercase();
            s.server.counters().add_command(&word, s.now);
        }
        sub::apply(args, s);
    } else if is("list") || is("listall") {
        let all = is("listall");
        s.count_command(if all { Stat::ComListall } else { Stat::ComList });
        list::apply(all, s);
    } else if is("shutdown") {
        s.count_command(Stat::ComShutdown);
        shutdown::apply(s);
    } else if is("uptime") {
        s.count_command(Stat::ComUptime);
        uptime::apply(s);
    } else if is("quickset") {
        s.count_command(Stat::ComQuickset);
        quickset::apply(args, s);
    } else if is("quit") {
        s.count_command(Stat::ComQuit);
        quit::apply(s);
    } else if !control::apply(word, args, s) {
        s.reply().err(Error::UnknownCommand);
    }
}
