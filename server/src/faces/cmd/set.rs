//! `set [TIME] KEY VALUE` stores a value and answers `OK `; `qset` does the same silently.
//! A first argument of digits is a time only when a key and a value follow it.

use super::{Command, Count, Session};
use crate::access::auth::Role;
use crate::faces::protocol::parse;
use crate::faces::protocol::reply::Error;
use crate::store::counters::Stat;
use crate::store::journal::Fsync;
use crate::store::server::Stamp;

pub(super) const SET: Command = Command {
    word: "set",
    prefix: false,
    count: Count::Stat(Stat::ComSet),
    needs: Some(Role::Write),
    apply: |_, args, s| store(args, false, s),
};

/// A refused qset is answered too: silence would look like success.
pub(super) const QSET: Command = Command {
    word: "qset",
    count: Count::Stat(Stat::ComQset),
    apply: |_, args, s| store(args, true, s),
    ..SET
};

fn store(args: &[u8], quiet: bool, s: &mut Session) {
    let Some((first, rest)) = parse::key_and_rest(args) else {
        return s.reply().err(Error::NeedTwoArgs);
    };
    let (time, key, value) = match parse::key_and_rest(rest) {
        Some((key, value)) if first.bytes().all(|b| b.is_ascii_digit()) => {
            let Ok(time) = first.parse::<u64>() else {
                return s.reply().err(Error::BadTime);
            };
            (Stamp::Given(time), key, value)
        }
        _ => (Stamp::Taken(s.now), first, rest),
    };
    let done = s.server.set_unchecked(key, value, time);
    s.counts.add(Stat::SetImmediate, done.lines);
    s.counts.add(Stat::SlowSubscribers, done.cut_off);
    if let Some(ticket) = done.ticket {
        s.journal_ticket = s.journal_ticket.max(Some(ticket));
        if s.server
            .journal()
            .is_some_and(|j| j.policy() == Fsync::Always)
        {
            // The acknowledgement waits for the disk (see `net::connection`).
            let at = if s.acks.is_empty() {
                s.outbox.hold()
            } else {
                s.outbox.held_len()
            };
            s.acks.push((at, !quiet));
        }
    }
    if !quiet {
        s.reply().ok(&[]);
    }
}
