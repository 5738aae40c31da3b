//! Writing replies the way the original did, and counting them under `server.lines.*`.
//! Between `begin` and `end` lines count as buffered, as in the original's multi-line replies.

use crate::store::counters::{LocalCounts, Stat};
use crate::store::outbox::Outbox;

/// An `ERR` reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Error {
    UnknownCommand,
    NotFound,
    NoArgs,
    NeedTwoArgs,
    NotOnOrOff,
    /// New: a pattern that is not a valid expression (the original crashed).
    BadPattern(String),
    /// New: a time too large to be a Unix time.
    BadTime,
    /// New: `shutdown` from a client that may not stop this server.
    NotAllowed,
    /// New: a line past the limit; the connection is closed after it.
    LineTooLong(usize),
    /// New: an error from a registered control command.
    Control(&'static str, String),
    /// New: on a server with tokens, a command this connection's roles do not cover.
    AuthRequired(&'static str, crate::access::auth::Role),
    /// New: `auth` with a secret no token has.
    AuthFailed,
    /// New: with `fsync = always`, the write-ahead log could not take the sample.
    NotDurable,
    /// New: `range` with arguments that are not a range, and why.
    BadRange(String),
}

impl Error {
    fn code(&self) -> &'static str {
        match self {
            Error::UnknownCommand => "unknown_command",
            Error::NotFound => "not_found",
            Error::NoArgs => "no_args",
            Error::NeedTwoArgs => "need_two_args",
            Error::NotOnOrOff => "not_on_or_off",
            Error::BadPattern(_) => "bad_pattern",
            Error::BadTime => "bad_time",
            Error::NotAllowed => "not_allowed",
            Error::LineTooLong(_) => "line_too_long",
            Error::Control(code, _) => code,
            Error::AuthRequired(..) => "auth_required",
            Error::AuthFailed => "auth_failed",
            Error::NotDurable => "not_durable",
            Error::BadRange(_) => "bad_range",
        }
    }

    fn text(&self) -> String {
        match self {
            Error::UnknownCommand => "Unknown server command".into(),
            Error::NotFound => "Information not in record".into(),
            Error::NoArgs => "No arguments provided".into(),
            Error::NeedTwoArgs => "Two arguments needed".into(),
            Error::NotOnOrOff => "Argument wasn't of form 'on' or 'off'".into(),
            Error::BadPattern(reason) | Error::BadRange(reason) => reason.clone(),
            Error::BadTime => "Time is beyond 18446744073709551615".into(),
            Error::NotAllowed => {
                "This command is only accepted on a server that listens on loopback alone".into()
            }
            Error::LineTooLong(max) => format!("Line longer than {max} bytes; disconnected"),
            Error::Control(_, text) => text.clone(),
            Error::AuthRequired(command, role) => format!(
                "{command} needs the {} role: send auth TOKEN with a token that has it",
                role.name()
            ),
            Error::AuthFailed => "No token has this secret".into(),
            Error::NotDurable => {
                "The write-ahead log could not take this sample: it is in memory only".into()
            }
        }
    }

    /// The whole `ERR` line.
    pub(crate) fn line(&self) -> Vec<u8> {
        format!("ERR {} {}\r\n", self.code(), self.text()).into_bytes()
    }
}

/// One connection's way out: its outbox, and its counts of what it wrote.
pub(crate) struct Reply<'a> {
    outbox: &'a Outbox,
    counts: &'a mut LocalCounts,
    /// Inside a multi-line reply; kept by the connection across `Reply` values.
    buffered: &'a mut bool,
}

impl<'a> Reply<'a> {
    pub(crate) fn new(
        outbox: &'a Outbox,
        counts: &'a mut LocalCounts,
        buffered: &'a mut bool,
    ) -> Reply<'a> {
        Reply {
            outbox,
            counts,
            buffered,
        }
    }

    /// `OK <parts...>\r\n`.
    pub(crate) fn ok(&mut self, parts: &[&[u8]]) {
        self.counts.incr(if *self.buffered {
            Stat::OkBuffered
        } else {
            Stat::OkImmediate
        });
        match parts {
            [] => self.outbox.reply(&[b"OK \r\n"]),
            [one] => self.outbox.reply(&[b"OK ", one, b"\r\n"]),
            _ => {
                let mut line = Vec::with_capacity(64);
                line.extend_from_slice(b"OK ");
                parts.iter().for_each(|p| line.extend_from_slice(p));
                line.extend_from_slice(b"\r\n");
                self.outbox.reply(&[&line]);
            }
        }
    }

    /// `ERR <code> <text>\r\n`.
    pub(crate) fn err(&mut self, error: Error) {
        self.counts.incr(if *self.buffered {
            Stat::ErrBuffered
        } else {
            Stat::ErrImmediate
        });
        self.outbox.reply(&[&error.line()]);
    }

    /// Starts a multi-line reply.
    pub(crate) fn begin(&mut self) {
        self.counts.incr(Stat::BeginOutputs);
        *self.buffered = true;
    }

    /// Ends a multi-line reply.
    pub(crate) fn end(&mut self) {
        self.counts.incr(Stat::EndOutputs);
        *self.buffered = false;
    }
}
