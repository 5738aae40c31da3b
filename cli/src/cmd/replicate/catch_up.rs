//! Catching up after a break. The replicator notes the newest sample it copied of each
//! key; once subscribed again, it asks the source (on a second connection, through the
//! same transport) which matching keys have newer samples (`get PATTERN`), reads each
//! one's history (`get KEY`), and pushes what it had not copied, oldest first. What the
//! new subscription also delivers is then skipped once.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use spud_server::client::pusher::Pusher;

use super::{open, read_line, ReplicateArgs, Sample, Source};

/// What was copied so far.
#[derive(Default)]
pub struct Seen {
    /// Per key: the newest sample copied (time, value).
    newest: HashMap<String, (u64, String)>,
    /// The newest time copied of any key: where a key first set during a break starts.
    newest_any: u64,
    /// Whether a subscription was made before (the next one follows a break).
    subscribed_before: bool,
}

impl Seen {
    /// A sample was copied.
    pub fn copied(&mut self, key: &str, time: u64, value: &str) {
        self.newest_any = self.newest_any.max(time);
        match self.newest.get_mut(key) {
            Some(newest) if newest.0 > time => {}
            Some(newest) => *newest = (time, value.to_string()),
            None => {
                self.newest
                    .insert(key.to_string(), (time, value.to_string()));
            }
        }
    }

    /// A subscription was answered: whether a break came before it (then catch up).
    pub fn after_break(&mut self) -> bool {
        std::mem::replace(&mut self.subscribed_before, true)
    }

    /// Whether the source's newest sample of `key`, `(time, value)`, was not copied.
    fn missed(&self, key: &str, time: u64, value: &str) -> bool {
        match self.newest.get(key) {
            Some((t, v)) => time > *t || (time == *t && value != v),
            None => time >= self.newest_any,
        }
    }

    /// Of a key's history, newest first: the samples after the last one copied.
    fn not_copied<'a>(&self, key: &str, history: &'a [(u64, String)]) -> &'a [(u64, String)] {
        let end = history
            .iter()
            .position(|(time, value)| match self.newest.get(key) {
                Some((t, v)) => time < t || (time == t && value == v),
                None => *time < self.newest_any,
            })
            .unwrap_or(history.len());
        &history[..end]
    }
}

/// Whether a line is the answer to `auth` (sent before `sub` through a command).
pub fn is_auth_answer(line: &str) -> bool {
    line.starts_with("OK authenticated") || line.starts_with("OK no authentication")
}

/// Reads what the source holds that was not copied, pushes it, and returns it.
pub fn run(
    args: &ReplicateArgs,
    identity: Option<(&Path, &Path)>,
    seen: &mut Seen,
    pusher: &Pusher,
) -> Result<HashSet<Sample>, String> {
    let mut source = open(args, identity)?;
    let newest = ask(&mut source, &format!("get {}", args.pattern))?;
    let missed: Vec<String> = newest
        .iter()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            let (key, time, value) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
            let time = time.parse().ok()?;
            seen.missed(key, time, value).then(|| key.to_string())
        })
        .collect();
    // What was copied before the break decides, for every key alike: `seen` learns of
    // what is pushed here only once all is read.
    let mut pushed = Vec::new();
    for key in missed {
        let history: Vec<(u64, String)> = ask(&mut source, &format!("get {key}"))?
            .iter()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let (_, time, value) = (parts.next()?, parts.next()?, parts.next().unwrap_or(""));
                Some((time.parse().ok()?, value.to_string()))
            })
            .collect();
        for (time, value) in seen.not_copied(&key, &history).iter().rev() {
            pusher.push(&key, value, *time);
            pushed.push((key.clone(), *time, value.clone()));
        }
    }
    for (key, time, value) in &pushed {
        seen.copied(key, *time, value);
    }
    let _ = source.writer.write_all(b"quit\r\n");
    if !pushed.is_empty() {
        eprintln!(
            "spud replicate: caught up {} samples set while the source was away",
            pushed.len()
        );
    }
    Ok(pushed.into_iter().collect())
}

/// Sends `command` and returns its answer's lines (without `OK `) up to `OK done`.
fn ask(source: &mut Source, command: &str) -> Result<Vec<String>, String> {
    source
        .writer
        .write_all(format!("{command}\r\n").as_bytes())
        .and_then(|()| source.writer.flush())
        .map_err(|e| format!("cannot send {command:?}: {e}"))?;
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    loop {
        let text = read_line(&mut *source.reader, &mut buf)?;
        if text == "OK done" {
            return Ok(lines);
        }
        if text.starts_with("ERR not_found") {
            return Ok(lines);
        }
        if let Some(err) = text.strip_prefix("ERR ") {
            return Err(format!("the source says: {err}"));
        }
        // The answer to `auth`, or a pty's echo of what was sent, is not an answer line.
        if let Some(line) = text.strip_prefix("OK ").filter(|_| !is_auth_answer(&text)) {
            lines.push(line.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(samples: &[(u64, &str)]) -> Vec<(u64, String)> {
        samples.iter().map(|(t, v)| (*t, v.to_string())).collect()
    }

    #[test]
    fn only_what_came_after_the_last_copied_sample_is_taken() {
        let mut seen = Seen::default();
        seen.copied("a", 100, "one");
        seen.copied("b", 90, "x");
        // Newest first, as `get KEY` answers.
        let a = history(&[
            (103, "four"),
            (101, "three"),
            (100, "two"),
            (100, "one"),
            (99, "zero"),
        ]);
        assert_eq!(seen.not_copied("a", &a), &a[..3]);
        assert!(seen.missed("a", 103, "four"));
        assert!(!seen.missed("a", 100, "one"));
        assert!(seen.missed("a", 100, "two"));
        // A key first set during the break: from the newest time copied of any key.
        let c = history(&[(102, "new"), (100, "same second"), (50, "old")]);
        assert_eq!(seen.not_copied("c", &c), &c[..2]);
        assert!(!seen.missed("b", 90, "x"));
    }

    #[test]
    fn the_first_subscription_is_no_break() {
        let mut seen = Seen::default();
        assert!(!seen.after_break());
        assert!(seen.after_break());
    }
}
