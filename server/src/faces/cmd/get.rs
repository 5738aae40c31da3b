//! `get KEY` answers the key's history, newest first; `get PATTERN` (an argument with `.`
//! or `*` that is not a key) answers each matching key's newest value, keys sorted.

use super::{Command, Count, Session};
use crate::access::auth::Role;
use crate::faces::protocol::parse;
use crate::faces::protocol::reply::Error;
use crate::store::counters::Stat;
use crate::{Pattern, Sample};

pub(super) const GET: Command = Command {
    word: "get",
    prefix: false,
    count: Count::Stat(Stat::ComGet),
    needs: Some(Role::Read),
    apply,
};

fn apply(_: &str, args: &[u8], s: &mut Session) {
    if parse::is_missing(args) {
        return s.reply().err(Error::NoArgs);
    }
    // The count must include this very get, so flush before reading.
    s.flush_counts();
    let key = std::str::from_utf8(args)
        .ok()
        .filter(|k| s.server.contains(k));
    if let Some(key) = key {
        s.reply().begin();
        s.flush_counts();
        let history = s.server.get(key).unwrap_or_default();
        let mut out = s.reply();
        for (n, Sample { time, value }) in history.iter().enumerate() {
            let (mut n_buf, mut t_buf) = (itoa::Buffer::new(), itoa::Buffer::new());
            out.ok(&[
                n_buf.format(n + 1).as_bytes(),
                b" ",
                t_buf.format(*time).as_bytes(),
                b" ",
                value.as_bytes(),
            ]);
        }
        out.ok(&[b"done"]);
        out.end();
    } else if args.iter().any(|&b| b == b'.' || b == b'*') {
        let pattern = match Pattern::new(args) {
            Ok(p) => p,
            Err(e) => return s.reply().err(Error::BadPattern(e.reason)),
        };
        s.reply().begin();
        s.flush_counts();
        let mut rows = s.server.get_matching(&pattern);
        let mut existing = s.server.counters().existing();
        let mut i = 0;
        while i < rows.len() {
            let (key, sample) = &rows[i];
            // A counter is read as its line is written, so, as in the original, it
            // includes the lines of this very reply.
            let live = s.server.counters().is_counter(key);
            let live = live.then(|| s.server.counters().newest(key)).flatten();
            let Sample { time, value } = live.as_ref().unwrap_or(sample);
            let mut t_buf = itoa::Buffer::new();
            s.reply().ok(&[
                key.as_bytes(),
                b" ",
                t_buf.format(*time).as_bytes(),
                b" ",
                value.as_bytes(),
            ]);
            s.flush_counts();
            if s.server.counters().existing() != existing {
                existing = s.server.counters().existing();
                add_new_counters(&mut rows, i, &pattern, s);
            }
            i += 1;
        }
        let mut out = s.reply();
        out.ok(&[b"done"]);
        out.end();
    } else {
        s.reply().err(Error::NotFound);
    }
}

/// Counters that writing row `at` brought into being are listed too when they sort after
/// it: the original re-sorted its key list as it walked it.
fn add_new_counters(rows: &mut Vec<(String, Sample)>, at: usize, pattern: &Pattern, s: &Session) {
    for (key, sample) in s.server.counters().newest_all() {
        if key > rows[at].0 && pattern.is_match(&key) {
            if let Err(place) = rows.binary_search_by(|r| r.0.as_str().cmp(&key)) {
                rows.insert(place, (key, sample));
            }
        }
    }
}
