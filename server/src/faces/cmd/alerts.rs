//! `alerts [PATTERN]`: every alert instance that is not ok (firing or pending), whose key
//! matches PATTERN if given, by rule then key:
//! `OK <state> <since> <rule> <key> <value> <summary>`, then `OK done`. `since` is Unix
//! seconds; `value` is `-` when the rule's subject has no number. A server without alert
//! rules answers `ERR no_rules`.

use super::{Command, Count, Session};
use crate::access::auth::Role;
use crate::faces::protocol::parse;
use crate::faces::protocol::reply::Error;
use crate::Pattern;

pub(super) const ALERTS: Command = Command {
    word: "alerts",
    prefix: false,
    count: Count::Word,
    needs: Some(Role::Read),
    apply,
};

fn apply(_: &str, args: &[u8], s: &mut Session) {
    let Some(alerts) = crate::alerts::Alerts::of(&s.server) else {
        return s.reply().err(Error::Control(
            "no_rules",
            "This server evaluates no alert rules (start it with --rules FILE)".into(),
        ));
    };
    let pattern = if parse::is_missing(args) {
        None
    } else {
        match Pattern::new(args) {
            Ok(p) => Some(p),
            Err(e) => return s.reply().err(Error::BadPattern(e.reason)),
        }
    };
    let rows = alerts.active(pattern.as_ref());
    let mut out = s.reply();
    out.begin();
    for row in rows {
        let value = crate::alerts::format_value(row.value);
        let summary = crate::alerts::summary(
            &row.rule.summary,
            &row.rule.name,
            &row.key,
            row.state,
            &value,
        );
        let line = format!(
            "{} {} {} {} {value} {}",
            row.state.word(),
            row.since,
            row.rule.name,
            row.key,
            summary.replace(['\r', '\n'], " ")
        );
        out.ok(&[line.as_bytes()]);
    }
    out.ok(&[b"done"]);
    out.end();
}
